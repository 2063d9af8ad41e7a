-- Looking at journeys: a dry run, why a customer got what they got, and
-- what each journey achieved.

-- simulate(as_of): the messages a tick at as_of would write, with
-- everything the tick would do rolled back.  Returns outbox rows.
CREATE FUNCTION automation.simulate(as_of timestamptz DEFAULT now())
RETURNS SETOF automation.outbox
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result jsonb;
    last_id bigint;
BEGIN
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(as_of, 'as_of');
    BEGIN
        SELECT coalesce(max(o.id), 0) INTO last_id FROM automation.outbox o;
        PERFORM * FROM automation.tick(as_of);
        SELECT jsonb_agg(to_jsonb(o) ORDER BY o.id) INTO result FROM automation.outbox o WHERE o.id > last_id;
        RAISE EXCEPTION 'simulation done' USING ERRCODE = 'AUSIM';
    EXCEPTION WHEN SQLSTATE 'AUSIM' THEN
        NULL;
    END;
    RETURN QUERY SELECT * FROM jsonb_populate_recordset(NULL::automation.outbox, coalesce(result, '[]'));
END
$$;
COMMENT ON FUNCTION automation.simulate(timestamptz) IS 'the messages a tick at as_of would write; writes nothing';

-- explain_customer(key): every decision about one customer, oldest first,
-- then what is still waiting, then the journeys they are not in.
CREATE FUNCTION automation.explain_customer(customer_key anyelement)
RETURNS TABLE (at timestamptz, journey text, step integer, subject text, decision text, reason text,
               variant text, message_id bigint, message_status text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key text;
    key_type regtype := automation.customer_key_type();
    canon text;
BEGIN
    IF customer_key IS NULL THEN
        RAISE EXCEPTION 'customer_key must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_key_type(pg_typeof(customer_key), key_type, 'customer_key');
    key := customer_key::text;
    -- The key as the shop writes it (compared as text below: 534.0 would
    -- name no one, and miss customer 534).
    IF key_type IS NOT NULL THEN
        BEGIN
            EXECUTE format('SELECT %L::%s::text', key, key_type) INTO canon;
        EXCEPTION WHEN data_exception THEN
            canon := NULL;
        END;
        IF canon IS DISTINCT FROM key THEN
            RAISE EXCEPTION 'customer_key % is not a key of the shop''s type %', key, key_type
                USING ERRCODE = 'datatype_mismatch',
                      HINT = format('Pass the key as %s, or as text.', key_type);
        END IF;
    END IF;
    -- A customer the shop no longer has may still have a history to explain;
    -- a key that names no one, neither.
    IF EXISTS (SELECT FROM automation.source s WHERE s.kind = 'customers')
       AND NOT EXISTS (SELECT FROM automation._customer_lookup(ARRAY[key]))
       AND NOT EXISTS (SELECT FROM automation.enrollment e WHERE e.customer_key::text = key)
       AND NOT EXISTS (SELECT FROM automation.decision_note n WHERE n.customer_key::text = key) THEN
        RAISE EXCEPTION 'no customer has the key %', key
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The shop''s customers have no such key, and no journey has a record of it.';
    END IF;
    -- At one moment in one journey: the enrollment, its steps, then the
    -- completion.
    RETURN QUERY
    SELECT x.at, x.journey, x.step, x.subject, x.decision, x.reason, x.variant, x.message_id, x.message_status
      FROM (
        SELECT l.at, l.journey, l.step, l.subject, l.decision, l.reason, l.variant, l.message_id,
               coalesce((SELECT o.status FROM automation.outbox o WHERE o.id = l.message_id),
                        (SELECT a.status || coalesce(' (' || a.reason || ')', '') FROM automation.outbox_archive a
                          WHERE a.id = l.message_id)) AS message_status
          FROM automation.decision_log l
         WHERE l.customer_key::text = key
        UNION ALL
        SELECT e.due_at, e.journey, e.next_step, e.subject, 'waiting', 'step ' || e.next_step || ' is due at ' || e.due_at,
               NULL, NULL, NULL
          FROM automation.enrollment e
         WHERE e.customer_key::text = key AND e.status = 'active'
        UNION ALL
        SELECT NULL, j.name, NULL, NULL, 'not enrolled',
               CASE WHEN NOT j.enabled THEN 'the journey is paused'
                    ELSE format('the %s trigger has not found this customer', j.trigger) END,
               NULL, NULL, NULL
          FROM automation.journey j
         WHERE NOT EXISTS (SELECT FROM automation.enrollment e WHERE e.journey = j.name AND e.customer_key::text = key)) x
     ORDER BY x.at NULLS LAST, x.journey, x.decision <> 'enrolled', x.decision = 'completed', x.step, x.subject;
END
$$;
COMMENT ON FUNCTION automation.explain_customer(anyelement) IS 'why a customer got, or did not get, each message';

-- _counted_orders_sql(): a query of the counted orders, as customer_key,
-- placed_at and total, keyed as the shop keys them (so that a question per
-- customer reaches them through the shop's index on the customer); none
-- when no orders are bound.  For journey_stats, and for the archive's
-- pruning, which keeps the counts journey_stats reads.
CREATE FUNCTION automation._counted_orders_sql()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o automation.source;
BEGIN
    SELECT * INTO o FROM automation.source x WHERE x.kind = 'orders';
    IF NOT FOUND THEN
        RETURN format('SELECT NULL::%s AS customer_key, NULL::timestamptz AS placed_at, NULL::numeric AS total WHERE false',
                      coalesce(automation.customer_key_type()::text, 'text'));
    END IF;
    RETURN format('SELECT %s AS customer_key, %s AS placed_at, (%s)::numeric AS total FROM %s o WHERE %s',
                  automation._col(o, 'customer', 'o'), automation._ts(o, 'placed_at', 'o'),
                  automation._col(o, 'total', 'o'), automation._rel(o), automation._counted(o, 'o'));
END
$$;

-- _journey_stats(): per journey, step and variant (the row without a
-- variant also counts the holdout group).  A message converted
-- when its recipient placed a counted order within
-- automation.attribution_window after it was sent; lift compares the
-- conversion of the enrollees not held out -- all of them, also those who
-- exited before a message, as the holdout group's are -- with the holdout
-- group's.
-- The messages the archive pruned count through
-- automation.journey_stats_pruned.
CREATE FUNCTION automation._journey_stats()
RETURNS TABLE (journey text, step integer, variant text, enrolled bigint, held_out bigint, sent bigint,
               queued bigint, cancelled bigint, delivered bigint, opened bigint, clicked bigint, unsubscribed bigint,
               converted bigint, revenue numeric, conversion_rate numeric, holdout_conversion_rate numeric, lift numeric)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    orders_sql text;
    window_ interval;
BEGIN
    PERFORM automation._load();
    -- (a relation gone or changed under its binding: named, not the
    -- statement below failing on it)
    PERFORM automation._check_binding(b) FROM automation.source b ORDER BY automation._binding_order(b.kind);
    window_ := current_setting('automation.attribution_window')::interval;
    -- The counted orders, a subquery in each place below (a CTE read once
    -- per enrollment would be a scan of every order per enrollment).
    orders_sql := automation._counted_orders_sql();
    RETURN QUERY EXECUTE format($q$
        WITH msg AS (
            SELECT id, journey, step, variant, customer_key, 'queued' AS status, send_after AS sent_at
              FROM automation.outbox WHERE journey IS NOT NULL
            UNION ALL
            SELECT id, journey, step, variant, customer_key, status, finished_at
              FROM automation.outbox_archive WHERE journey IS NOT NULL),
        conv AS (
            SELECT m.id, count(ord.placed_at) > 0 AS converted, coalesce(sum(ord.total), 0) AS revenue
              FROM msg m LEFT JOIN (%1$s) ord ON ord.customer_key = m.customer_key
                                      AND ord.placed_at > m.sent_at AND ord.placed_at <= m.sent_at + $1
             WHERE m.status = 'sent'
             GROUP BY m.id),
        ev AS (
            SELECT message_id, bool_or(event = 'delivered') AS delivered, bool_or(event = 'open') AS opened,
                   bool_or(event = 'click') AS clicked, bool_or(event = 'unsubscribe') AS unsubscribed
              FROM automation.message_event GROUP BY 1),
        rows_ AS (
            SELECT s.journey, s.step, '' AS variant FROM automation.journey_step s
            UNION
            SELECT DISTINCT m.journey, m.step, m.variant FROM msg m WHERE m.variant IS NOT NULL
            UNION
            SELECT x.journey, x.step, x.variant FROM automation.journey_stats_pruned x WHERE x.variant <> ''),
        per_step AS (
            SELECT r.journey, r.step, r.variant,
                   count(m.id) FILTER (WHERE m.status = 'sent') AS sent,
                   count(m.id) FILTER (WHERE m.status = 'queued') AS queued,
                   count(m.id) FILTER (WHERE m.status = 'cancelled') AS cancelled,
                   count(m.id) FILTER (WHERE ev.delivered) AS delivered,
                   count(m.id) FILTER (WHERE ev.opened) AS opened,
                   count(m.id) FILTER (WHERE ev.clicked) AS clicked,
                   count(m.id) FILTER (WHERE ev.unsubscribed) AS unsubscribed,
                   count(m.id) FILTER (WHERE conv.converted) AS converted,
                   coalesce(sum(conv.revenue) FILTER (WHERE conv.converted), 0) AS revenue
              FROM rows_ r
              LEFT JOIN msg m ON m.journey = r.journey AND m.step = r.step AND coalesce(m.variant, '') = r.variant
              LEFT JOIN ev ON ev.message_id = m.id
              LEFT JOIN conv ON conv.id = m.id
             GROUP BY 1, 2, 3),
        held AS (
            SELECT l.journey, l.step, count(DISTINCT l.subject) AS held_out FROM automation.decision_note l
             WHERE l.decision = 'held_out' GROUP BY 1, 2),
        enr AS (
            SELECT e.journey, count(*) AS enrolled,
                   avg(e.converted) FILTER (WHERE NOT e.holdout) AS rate,
                   avg(e.converted) FILTER (WHERE e.holdout) AS holdout_rate
              FROM (SELECT e.journey, e.holdout,
                           CASE WHEN EXISTS (SELECT FROM (%1$s) ord WHERE ord.customer_key = e.customer_key
                                                AND ord.placed_at > e.anchor_at AND ord.placed_at <= e.anchor_at + $1)
                                THEN 1.0 ELSE 0.0 END AS converted
                      FROM automation.enrollment e) e
             GROUP BY 1)
        SELECT p.journey, p.step, nullif(p.variant, ''), coalesce(enr.enrolled, 0), coalesce(held.held_out, 0),
               p.sent + coalesce(x.sent, 0), p.queued, p.cancelled + coalesce(x.cancelled, 0),
               p.delivered + coalesce(x.delivered, 0), p.opened + coalesce(x.opened, 0), p.clicked + coalesce(x.clicked, 0),
               p.unsubscribed + coalesce(x.unsubscribed, 0), p.converted + coalesce(x.converted, 0),
               p.revenue + coalesce(x.revenue, 0),
               round(enr.rate, 4), round(enr.holdout_rate, 4), round(enr.rate - enr.holdout_rate, 4)
          FROM per_step p
          LEFT JOIN automation.journey_stats_pruned x ON x.journey = p.journey AND x.step = p.step AND x.variant = p.variant
          LEFT JOIN held ON held.journey = p.journey AND held.step = p.step AND p.variant = ''
          LEFT JOIN enr ON enr.journey = p.journey
         ORDER BY 1, 2, 3 NULLS FIRST$q$, orders_sql) USING window_;
END
$$;

CREATE VIEW automation.journey_stats AS SELECT * FROM automation._journey_stats();
COMMENT ON VIEW automation.journey_stats IS 'per journey, step and variant: enrolled, held out, sent, delivered, opened, clicked, converted, revenue, lift against the holdout';

-- _cart_abandonment_stats(): where and why carts are left, and how many
-- came back, by checkout stage, cart value band and new vs returning.
CREATE FUNCTION automation._cart_abandonment_stats()
RETURNS TABLE (dimension text, value text, abandoned bigint, recovered bigint, recovery_rate numeric)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM automation._load();
    PERFORM automation._check_binding(b) FROM automation.source b ORDER BY automation._binding_order(b.kind);
    -- A cart is recovered when its journey ended on the cart converting or
    -- an order; and, when the reminders went out and the journey ended
    -- without either, when the customer ordered after leaving it -- while
    -- the journey waited, or within automation.attribution_window of the
    -- last reminder.  (The order is looked up per enrollment, through the
    -- shop's index on the orders' customer.)
    RETURN QUERY EXECUTE format($q$
    WITH carts AS (
        SELECT coalesce(e.context ->> 'stage', 'unknown') AS stage,
               CASE WHEN (e.context ->> 'cart_total')::numeric < 25 THEN 'under 25'
                    WHEN (e.context ->> 'cart_total')::numeric < 50 THEN '25-50'
                    WHEN (e.context ->> 'cart_total')::numeric < 100 THEN '50-100'
                    WHEN (e.context ->> 'cart_total')::numeric < 200 THEN '100-200'
                    ELSE '200 and more' END AS band,
               CASE WHEN coalesce((SELECT p.first_order_at < e.anchor_at FROM automation.customer_profile p
                                    WHERE p.customer_key = e.customer_key), false)
                    THEN 'returning' ELSE 'new' END AS customer,
               e.exit_reason IN ('converted', 'ordered')
               OR (e.status <> 'exited'
                   AND (SELECT true FROM (%s) o
                         WHERE o.customer_key = e.customer_key AND o.placed_at > e.anchor_at
                           AND (e.status = 'active' OR o.placed_at <= e.updated_at + $1)
                         LIMIT 1)) AS recovered
          FROM automation.enrollment e JOIN automation.journey j ON j.name = e.journey
         WHERE j.trigger = 'cart_abandoned')
    SELECT d, v, count(*), count(*) FILTER (WHERE recovered),
           round(count(*) FILTER (WHERE recovered)::numeric / count(*), 4)
      FROM carts
     CROSS JOIN LATERAL (VALUES ('checkout_stage', stage), ('cart_value', band), ('customer', customer)) x(d, v)
     GROUP BY 1, 2
     ORDER BY 1, 2$q$, automation._counted_orders_sql())
    USING current_setting('automation.attribution_window')::interval;
END
$$;

CREATE VIEW automation.cart_abandonment_stats AS SELECT * FROM automation._cart_abandonment_stats();
COMMENT ON VIEW automation.cart_abandonment_stats IS 'abandoned and recovered carts and the recovery rate, by checkout stage, cart value band and new vs returning customer';

INSERT INTO automation.access_rule VALUES
    ('analyst', 'automation.journey', 'SELECT'),
    ('analyst', 'automation.journey_step', 'SELECT'),
    -- (not the context: a cart's lines, an order's, a birthday -- the
    -- shop's rows, which analysts do not read)
    ('analyst', 'automation.enrollment', 'SELECT (journey, subject, customer_key, anchor_at, enrolled_at, holdout, bucket, next_step, due_at, step_due_at, status, exit_reason, updated_at)'),
    ('analyst', 'automation.decision_log', 'SELECT'),
    ('analyst', 'automation.decision_note', 'SELECT'),
    ('analyst', 'automation.journey_stats', 'SELECT'),
    ('analyst', 'automation.cart_abandonment_stats', 'SELECT'),
    ('analyst', 'FUNCTION automation._journey_stats()', 'EXECUTE'),
    ('analyst', 'FUNCTION automation._cart_abandonment_stats()', 'EXECUTE'),
    ('analyst', 'FUNCTION automation.explain_customer(anyelement)', 'EXECUTE');
