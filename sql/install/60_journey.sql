-- Journeys: who is due which message, once.
--
-- A journey is a trigger, an ordered list of steps, the conditions on which
-- an enrollee leaves it, a re-entry policy, a purpose (marketing or
-- transactional) and an optional holdout share.  Each tick runs two stages:
--
--   enroll   every enabled journey's trigger finds new subjects (a cart, an
--            order, a customer) and enrolls them, once per journey and
--            subject (the primary key of automation.enrollment);
--   steps    every enrollment whose next step is due is re-checked against
--            the live shop rows (converted, ordered, consent, suppression,
--            segment, stock), then the guardrails (preferred hour, quiet
--            hours, frequency caps, saturation) either let it through now
--            or defer it to the moment they allow; a variant is chosen and
--            the message is written to the outbox with the dedupe key
--            journey:subject:step, so it is written once whatever happens.
--
-- Both stages are set-based: a handful of statements over all due rows, not
-- a loop per enrollment.  Every enrollment, send, hold-out, deferral, skip
-- and exit is in automation.decision_log with its reason: a view that reads
-- the enrollments (enrolled, completed) and the messages (sent) the stages
-- write anyway, and automation.decision_note for the rest.
--
-- Waits are sequential: a step's wait counts from the moment the previous
-- step was sent (or from the trigger's moment for the first step).

CREATE TABLE automation.journey (
    name text NOT NULL,
    trigger text NOT NULL,
    trigger_options jsonb NOT NULL DEFAULT '{}',
    purpose text NOT NULL DEFAULT 'marketing',
    reentry text NOT NULL DEFAULT 'once',
    exit_on text[] NOT NULL DEFAULT '{}',
    holdout_percent numeric NOT NULL DEFAULT 0,
    enabled boolean NOT NULL DEFAULT true,
    preset text,
    description text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT journey_pkey PRIMARY KEY (name),
    CONSTRAINT journey_name_check CHECK (automation._is_word(name, 63)),
    CONSTRAINT journey_trigger_check CHECK (trigger IN ('cart_abandoned', 'order_placed', 'first_order', 'order_status',
                                                        'signup', 'segment_entered', 'inactivity', 'product_purchased',
                                                        'replenishment', 'gift_order', 'birthday', 'quarter_start',
                                                        'points_milestone', 'tagged', 'campaign')),
    CONSTRAINT journey_trigger_options_check CHECK (jsonb_typeof(trigger_options) = 'object'),
    CONSTRAINT journey_purpose_check CHECK (purpose IN ('marketing', 'transactional')),
    CONSTRAINT journey_reentry_check CHECK (reentry IN ('once', 'each_time')),
    CONSTRAINT journey_exit_on_check CHECK (exit_on <@ ARRAY['converted', 'ordered', 'left_segment', 'out_of_stock', 'bought']),
    CONSTRAINT journey_holdout_check CHECK (holdout_percent >= 0 AND holdout_percent < 100)
);
COMMENT ON TABLE automation.journey IS 'journeys: a trigger, steps (automation.journey_step), exit conditions, re-entry policy, purpose, holdout';

CREATE TABLE automation.journey_step (
    journey text NOT NULL,
    step integer NOT NULL,
    wait interval NOT NULL,
    at_preferred_hour boolean NOT NULL DEFAULT false,
    valid_for interval,
    channel text NOT NULL DEFAULT 'email',
    template text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    includes text[] NOT NULL DEFAULT '{}',
    variants jsonb NOT NULL DEFAULT '[]',
    discount jsonb,
    CONSTRAINT journey_step_pkey PRIMARY KEY (journey, step),
    CONSTRAINT journey_step_journey_fkey FOREIGN KEY (journey) REFERENCES automation.journey (name) ON DELETE CASCADE,
    CONSTRAINT journey_step_step_check CHECK (step >= 1),
    CONSTRAINT journey_step_wait_check CHECK (wait >= interval '0'),
    CONSTRAINT journey_step_valid_for_check CHECK (valid_for > interval '0'),
    CONSTRAINT journey_step_channel_check CHECK (automation._is_word(channel, 32)),
    CONSTRAINT journey_step_template_check CHECK (template <> ''),
    CONSTRAINT journey_step_payload_check CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT journey_step_includes_check CHECK (includes <@ ARRAY['cart', 'order', 'popular_products', 'last_order',
                                                                    'recommended', 'also_like', 'category_products']),
    CONSTRAINT journey_step_variants_check CHECK (jsonb_typeof(variants) = 'array')
);
COMMENT ON TABLE automation.journey_step IS 'the steps of each journey: wait, message, variants';

SELECT pg_catalog.pg_extension_config_dump('automation.journey', '');
SELECT pg_catalog.pg_extension_config_dump('automation.journey_step', '');

CREATE TABLE automation.enrollment (
    journey text NOT NULL,
    subject text NOT NULL,
    customer_key text NOT NULL,
    anchor_at timestamptz NOT NULL,
    enrolled_at timestamptz NOT NULL,
    context jsonb NOT NULL DEFAULT '{}',
    holdout boolean NOT NULL,
    bucket smallint NOT NULL,
    next_step integer,
    due_at timestamptz,
    step_due_at timestamptz,
    status text NOT NULL DEFAULT 'active',
    exit_reason text,
    updated_at timestamptz NOT NULL,
    CONSTRAINT enrollment_pkey PRIMARY KEY (journey, subject),
    CONSTRAINT enrollment_status_check CHECK (status IN ('active', 'completed', 'exited')),
    CONSTRAINT enrollment_active_check CHECK ((status = 'active') = (next_step IS NOT NULL AND due_at IS NOT NULL)),
    CONSTRAINT enrollment_bucket_check CHECK (bucket BETWEEN 0 AND 99)
);
CREATE INDEX enrollment_due_idx ON automation.enrollment (due_at) WHERE status = 'active';
-- No index on customer_key: nothing the tick runs looks enrollments up by
-- customer, and one would cost every enrollment written a random descent
-- (100,000 enrollments inserted took 0.36-0.41 s without it, 0.57-0.59 s
-- with it).  explain_customer compares the key as text, which such an
-- index cannot serve; a decision_log read for one customer scans the
-- outbox's archive, which has no index on the customer, whatever the
-- enrollments have.
COMMENT ON TABLE automation.enrollment IS 'who is in which journey: one row per journey and subject (cart, order or customer), with the next step and when it is due';
COMMENT ON COLUMN automation.enrollment.anchor_at IS 'the trigger''s moment (cart left, order placed, signed up, ...) the first wait counts from';
COMMENT ON COLUMN automation.enrollment.step_due_at IS 'when the next step first came due: a deferral moves due_at, not this; the step''s valid_for counts from it';
COMMENT ON COLUMN automation.enrollment.bucket IS '0-99 from a hash of journey and subject: holdout and A/B splits, stable across ticks';

-- An enrollment belongs to its journey, and goes with it -- without a
-- foreign key.  A foreign key checks every row a tick enrolls, and again
-- every enrollment the same tick moves on (the row is its own
-- transaction's), one lookup and lock of the journey each: a fifth of a
-- tick that enrolls and sends many.  Instead the enroll stage locks each
-- journey it enrolls into once (FOR KEY SHARE, as the check would), so the
-- journey cannot go while it writes, and this trigger removes a deleted
-- journey's enrollments as ON DELETE CASCADE did (as the table's owner).
CREATE FUNCTION automation._journey_deleted()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM automation.enrollment e WHERE e.journey = OLD.name;
    RETURN NULL;
END
$$;
CREATE TRIGGER journey_deleted AFTER DELETE ON automation.journey
    FOR EACH ROW EXECUTE FUNCTION automation._journey_deleted();

-- The decisions the enrollments and the messages do not already say:
-- hold-outs, deferrals, skips, exits, and a send whose message was found
-- already written.  A message's enrollment, its send and the completion
-- are read from automation.enrollment and the outbox by the view
-- automation.decision_log below, so that a message costs no decision rows.
CREATE TABLE automation.decision_note (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    at timestamptz NOT NULL,
    journey text NOT NULL,
    step integer,
    subject text NOT NULL,
    customer_key text NOT NULL,
    decision text NOT NULL,
    reason text,
    variant text,
    message_id bigint,
    CONSTRAINT decision_note_pkey PRIMARY KEY (id),
    CONSTRAINT decision_note_decision_check CHECK (decision IN ('sent', 'held_out', 'deferred', 'skipped', 'exited'))
);
CREATE INDEX decision_note_customer_key_idx ON automation.decision_note (customer_key);
COMMENT ON TABLE automation.decision_note IS 'the decisions automation.decision_log cannot read from the enrollments and the messages: hold-outs, deferrals, skips, exits, sends that found their message already written';

-- What automation.journey_stats must not forget when the archive prunes a
-- journey's messages (automation.archive_outbox, after
-- automation.retention): their counts per journey, step and variant ('' for
-- none), added to those of the messages still held.  By then a message's
-- events are in and its attribution window is over, so they are final.
CREATE TABLE automation.journey_stats_pruned (
    journey text NOT NULL,
    step integer NOT NULL,
    variant text NOT NULL,
    sent bigint NOT NULL,
    cancelled bigint NOT NULL,
    delivered bigint NOT NULL,
    opened bigint NOT NULL,
    clicked bigint NOT NULL,
    unsubscribed bigint NOT NULL,
    converted bigint NOT NULL,
    revenue numeric NOT NULL,
    CONSTRAINT journey_stats_pruned_pkey PRIMARY KEY (journey, step, variant)
);
COMMENT ON TABLE automation.journey_stats_pruned IS 'the counts automation.journey_stats keeps of the messages the archive pruned, per journey, step and variant ('''' for none)';

SELECT pg_catalog.pg_extension_config_dump('automation.enrollment', '');
SELECT pg_catalog.pg_extension_config_dump('automation.decision_note', '');
SELECT pg_catalog.pg_extension_config_dump('automation.decision_note_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('automation.journey_stats_pruned', '');

-- Every decision, one row each: the notes, and what the enrollments and the
-- messages say.  An enrollment is "enrolled" at enrolled_at and, once its
-- last step ran, "completed" at updated_at (the enrollment is never changed
-- after that); a message a tick wrote (its dedupe key is
-- journey:subject:step) is "sent" at its created_at, the tick's moment,
-- wherever it now is.  So these go with what they are read from: the
-- enrollments of a dropped journey, the messages the archive pruned after
-- automation.retention.  Derived rows have no id.
CREATE VIEW automation.decision_log AS
SELECT n.id, n.at, n.journey, n.step, n.subject, n.customer_key, n.decision, n.reason, n.variant, n.message_id
  FROM automation.decision_note n
UNION ALL
SELECT NULL::bigint, e.enrolled_at, e.journey, NULL::integer, e.subject, e.customer_key, 'enrolled',
       CASE WHEN e.holdout THEN 'holdout group' END, NULL::text, NULL::bigint
  FROM automation.enrollment e
UNION ALL
SELECT NULL::bigint, m.created_at, m.journey, m.step,
       substr(m.dedupe_key, length(m.journey) + 2, length(m.dedupe_key) - length(m.journey) - length(m.step::text) - 2),
       m.customer_key, 'sent', NULL::text, m.variant, m.id
  FROM (SELECT o.id, o.created_at, o.journey, o.step, o.dedupe_key, o.customer_key, o.variant
          FROM automation.outbox o
         UNION ALL
        SELECT a.id, a.created_at, a.journey, a.step, a.dedupe_key, a.customer_key, a.variant
          FROM automation.outbox_archive a) m
 WHERE m.journey IS NOT NULL AND m.step IS NOT NULL
   AND starts_with(m.dedupe_key, m.journey || ':') AND right(m.dedupe_key, length(m.step::text) + 1) = ':' || m.step
   AND length(m.dedupe_key) > length(m.journey) + length(m.step::text) + 2
UNION ALL
SELECT NULL::bigint, e.updated_at, e.journey, NULL::integer, e.subject, e.customer_key, 'completed', NULL::text,
       NULL::text, NULL::bigint
  FROM automation.enrollment e
 WHERE e.status = 'completed';
COMMENT ON VIEW automation.decision_log IS 'every enrollment, send, hold-out, deferral, skip, exit and completion, with its reason (automation.decision_note, the enrollments and the messages)';

-- Where each journey's trigger stands.  Triggers on moments the shop
-- records as they happen (an order placed, a cart left, a sign-up, a
-- segment entered, a tag given, a last order ageing) keep a watermark: each
-- tick looks back only to the last tick's now less automation.trigger_grace
-- (for rows committed late), never further than the trigger's lookback.
-- Calendar triggers (birthday, quarter_start) look once per period and keep
-- the period last looked at.
CREATE TABLE automation.trigger_mark (
    journey text NOT NULL,
    mark text,
    at timestamptz,
    scanned_until timestamptz,
    CONSTRAINT trigger_mark_pkey PRIMARY KEY (journey),
    CONSTRAINT trigger_mark_journey_fkey FOREIGN KEY (journey) REFERENCES automation.journey (name) ON DELETE CASCADE
);
COMMENT ON TABLE automation.trigger_mark IS 'where each journey''s trigger stands: the period a calendar trigger last looked at, the moment up to which a watermarked trigger looked';
SELECT pg_catalog.pg_extension_config_dump('automation.trigger_mark', '');

-- The best sellers the messages that include popular products show,
-- computed by the steps stage at most once an hour (rank 0 alone: none).
CREATE TABLE automation.popular_product (
    rank integer NOT NULL,
    product jsonb,
    name text,
    sold numeric NOT NULL,
    computed_for timestamptz NOT NULL,
    CONSTRAINT popular_product_pkey PRIMARY KEY (rank)
);
COMMENT ON TABLE automation.popular_product IS 'the five best sellers of the 30 days before computed_for, for popular_products in messages (recomputed hourly)';

-- _watermarked(trigger): whether the trigger keeps a watermark.  Not the
-- triggers whose moments can appear in the past after the fact: a status
-- seen changed, a run-out moment computed by the daily pass, a birthday, a
-- quarter, a campaign's fixed window.
CREATE FUNCTION automation._watermarked(trigger text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT trigger IN ('cart_abandoned', 'order_placed', 'first_order', 'signup', 'segment_entered', 'inactivity',
                         'product_purchased', 'gift_order', 'points_milestone', 'tagged') $$;

-- What a variant's condition can refer to: one row per due message.
CREATE TYPE automation.step_context AS (
    order_count integer,
    total_spent numeric,
    first_order boolean,
    lifecycle_stage text,
    rfm_group text,
    vip_tier text,
    segments text[],
    cart_total numeric,
    checkout_stage text,
    order_total numeric,
    bucket integer,
    products text[],
    categories text[],
    tags text[]
);
COMMENT ON TYPE automation.step_context IS 'the columns a variant condition may use';

CREATE FUNCTION automation._valid_timezone(name text)
RETURNS boolean
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_valid_timezone';

-- _zone_or(zone, fallback): a customer's zone when the server knows it,
-- else the fallback (the default zone).  Plain SQL without settings, so
-- that the planner inlines it into the statements that read customers.
CREATE FUNCTION automation._zone_or(zone text, fallback text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN automation._valid_timezone(zone) THEN zone ELSE fallback END $$;

-- _local(ts, zone) and _zoned(local, zone): ts AT TIME ZONE zone, and back,
-- with zone always read as a zone's name -- AT TIME ZONE reads CET, EET,
-- WET and MET as abbreviations, fixed offsets without summer time, while
-- _valid_timezone, the profiles and the customers mean the zones.
CREATE FUNCTION automation._local(ts timestamptz, zone text)
RETURNS timestamp
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_local_time';

CREATE FUNCTION automation._zoned(local timestamp, zone text)
RETURNS timestamptz
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_zone_time';

-- _src(kind): the binding of one kind, or an error that says which bind
-- function to call.
CREATE FUNCTION automation._src(kind text, needed_by text)
RETURNS automation.source
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s automation.source;
BEGIN
    SELECT * INTO s FROM automation.source x WHERE x.kind = _src.kind;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% needs the shop''s % bound', needed_by, replace(kind, '_', ' ')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Bind them first with automation.bind_%s().', kind);
    END IF;
    RETURN s;
END
$$;

-- _trigger_ok(journey): whether what the journey's trigger reads is bound
-- (unbind asks before it lets a binding go).
CREATE FUNCTION automation._trigger_ok(j automation.journey)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM automation._trigger_sql(j);
    RETURN true;
EXCEPTION WHEN object_not_in_prerequisite_state THEN
    RETURN false;
END
$$;

-- _need_column(s, role, what): an error naming the bind argument when an
-- optional column the caller needs is not bound.
CREATE FUNCTION automation._need_column(s automation.source, role text, what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT s.columns ? role THEN
        RAISE EXCEPTION '% needs the %'' % column bound', what, replace(s.kind, '_', ' '), role
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Bind the %s again with %s_column => ''...''.', replace(s.kind, '_', ' '), role);
    END IF;
END
$$;

-- _lookback(journey): how old a trigger's moment may be (option lookback,
-- default 2 days).
CREATE FUNCTION automation._lookback(j automation.journey)
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((j.trigger_options ->> 'lookback')::interval, interval '2 days') $$;

-- _lookback_sql(journey): the lookback as trigger SQL uses it: $1 - it is
-- the earliest moment to look at -- $2 (see _journey_enroll) for the
-- triggers that keep a watermark, else the lookback before now.
CREATE FUNCTION automation._lookback_sql(j automation.journey)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN automation._watermarked(j.trigger) THEN '($1 - $2)'
                ELSE quote_literal(automation._lookback(j)) || '::interval' END
$$;

-- _moment_sql(expr): SQL for a moment written out the same in every
-- session (UTC, ISO 8601), whatever its TimeZone and DateStyle: subjects
-- and dedupe keys are built from it, and the worker, pg_cron and a session
-- by hand must build the same ones.
CREATE FUNCTION automation._moment_sql(expr text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT format('to_char((%s) AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.US"Z"'')', expr) $$;

CREATE FUNCTION automation._rel(s automation.source)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT format('%I.%I', s.relation_schema, s.relation_name) $$;

-- _col(s, role, alias): the quoted column, or NULL when that role is not bound.
CREATE FUNCTION automation._col(s automation.source, role text, alias text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN s.columns ? role THEN format('%I.%I', alias, s.columns ->> role) END $$;

-- _bought(lines, alias): the condition that an order line bought something:
-- a positive quantity, or none recorded.  A line of 0 units or fewer (a
-- return, a correction) buys nothing, for the profiles' categories, the
-- lifecycle and related products alike.
CREATE FUNCTION automation._bought(l automation.source, alias text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT format('(%1$s IS NULL OR %1$s > 0)', automation._col(l, 'quantity', alias)) $$;

-- _ts(s, role, alias): the column as timestamptz.  Timestamp and date
-- columns are read in automation.default_timezone, as the profiles read
-- them -- not in the session's TimeZone, which differs between the worker,
-- pg_cron and an administrator's psql: read in each, one sign-up would be
-- two moments, and two welcomes.
CREATE FUNCTION automation._ts(s automation.source, role text, alias text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN s.column_types ->> role LIKE 'timestamp without%'
                THEN format('(%s AT TIME ZONE %L)', automation._col(s, role, alias),
                            automation._setting('default_timezone', 'UTC'))
                WHEN s.column_types ->> role = 'date'
                THEN format('(%s::timestamp AT TIME ZONE %L)', automation._col(s, role, alias),
                            automation._setting('default_timezone', 'UTC'))
                ELSE format('(%s)::timestamptz', automation._col(s, role, alias)) END
$$;

-- _counted(s, alias): the condition that an order counts (its status is one
-- of counted_statuses), or true.
CREATE FUNCTION automation._counted(s automation.source, alias text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN s.options ? 'counted_statuses'
                THEN format('(%s)::text = ANY (%L::text[])', automation._col(s, 'status', alias),
                            ARRAY(SELECT jsonb_array_elements_text(s.options -> 'counted_statuses')))
                ELSE 'true' END
$$;

-- _leads_index(s, role): whether the column bound to that role is the first
-- column of a valid, whole-table btree index on the bound relation (a view
-- has none), so that many keys can be looked up in it one descent each.
CREATE FUNCTION automation._leads_index(s automation.source, role text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_index i
                     JOIN pg_class ic ON ic.oid = i.indexrelid
                     JOIN pg_am am ON am.oid = ic.relam
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = to_regclass(automation._rel(s))
                      AND i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree'
                      AND a.attname = s.columns ->> role)
$$;

-- _unique_index(s, role): whether the bound relation is a table with a
-- unique index on that role's column alone: no two of its rows share it.
CREATE FUNCTION automation._unique_index(s automation.source, role text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = to_regclass(automation._rel(s))
                      AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indnkeyatts = 1
                      AND a.attname = s.columns ->> role)
$$;

-- _customers_sql(): the bound customers as (customer_key, email, phone,
-- consent, first_name, timezone), consent true only when given.
CREATE FUNCTION automation._customers_sql()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s automation.source := automation._src('customers', 'a journey');
BEGIN
    RETURN format('SELECT %s AS customer_key, (%s)::text AS email, %s AS phone, %s AS consent, %s AS first_name, %s AS timezone FROM %s c',
                  automation._col(s, 'customer', 'c'),
                  automation._col(s, 'email', 'c'),
                  coalesce(automation._col(s, 'phone', 'c') || '::text', 'NULL::text'),
                  CASE WHEN s.column_types ->> 'consent' = 'boolean'
                       THEN format('coalesce(%s, false)', automation._col(s, 'consent', 'c'))
                       ELSE format('(%s IS NOT NULL)', automation._col(s, 'consent', 'c')) END,
                  coalesce(automation._col(s, 'first_name', 'c') || '::text', 'NULL::text'),
                  coalesce(automation._col(s, 'timezone', 'c') || '::text', 'NULL::text'),
                  automation._rel(s));
END
$$;

-- _object(key, value, ...): the jsonb object jsonb_build_object builds, the
-- values as to_jsonb makes them (one of an array or composite type as its
-- text), for a fraction of its cost per call: the context of every subject
-- a trigger finds (see src/journey.c).
CREATE FUNCTION automation._object(VARIADIC "any")
RETURNS jsonb
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_object';

-- _trigger_sql(journey): the query that finds the journey's new subjects as
-- (subject text, customer_key, anchor_at timestamptz, context jsonb), for
-- the tick's "now" as $1.  Raises a clear error when what the trigger needs
-- is not bound, so create_journey can call it to validate.
CREATE FUNCTION automation._trigger_sql(j automation.journey)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o automation.source;
    c automation.source;
    cl automation.source;
    g automation.source;
    lookback text := automation._lookback_sql(j);
    per_occurrence boolean := j.reentry = 'each_time';
    what text := format('trigger %s of journey %s', j.trigger, j.name);
BEGIN
    CASE j.trigger
    WHEN 'cart_abandoned' THEN
        c := automation._src('carts', what);
        RETURN format($q$
            SELECT 'cart:' || %1$s::text, %2$s, %3$s,
                   automation._object('cart_id', %1$s, 'cart_total', %4$s, 'stage', %5$s)
              FROM %6$s c
             WHERE %3$s <= $1 - %7$L::interval AND %3$s > $1 - %7$L::interval - %8$s
               AND %9$s %10$s$q$,
            automation._col(c, 'cart_id', 'c'), automation._col(c, 'customer', 'c'), automation._ts(c, 'updated_at', 'c'),
            automation._col(c, 'total', 'c'), coalesce(automation._col(c, 'stage', 'c') || '::text', 'NULL::text'),
            automation._rel(c), coalesce(j.trigger_options ->> 'idle', '1 hour'), lookback,
            coalesce(automation._col(c, 'order_id', 'c') || ' IS NULL', 'true'),
            CASE WHEN EXISTS (SELECT FROM automation.source x WHERE x.kind = 'cart_lines') THEN
                -- A probe of the lines' index per cart found, written so that
                -- it stays one: as a semi-join it would hash every line of
                -- every cart the shop ever had.
                (SELECT format('AND (SELECT true FROM %s l WHERE %s = %s LIMIT 1)', automation._rel(x),
                               automation._col(x, 'cart_id', 'l'), automation._col(c, 'cart_id', 'c'))
                   FROM automation.source x WHERE x.kind = 'cart_lines')
                 ELSE '' END);
    WHEN 'order_placed', 'first_order', 'order_status' THEN
        o := automation._src('orders', what);
        IF j.trigger <> 'first_order' THEN
            PERFORM automation._need_column(o, 'order_id', what);
        END IF;
        IF j.trigger = 'order_status' THEN
            PERFORM automation._need_column(o, 'status', what);
        END IF;
        -- (an order_status journey's moment is when the status last changed,
        -- where the shop records it, else the tick that sees the status; then
        -- its lookback bounds the orders' age, so that a new journey does
        -- not enroll every order that ever had the status)
        RETURN format($q$
            SELECT %1$s, %2$s, %3$s,
                   automation._object('order_id', %4$s, 'order_total', %5$s)
              FROM %6$s o
             WHERE %10$s <= $1 AND %10$s > $1 - %7$s AND %8$s %9$s$q$,
            CASE j.trigger
                WHEN 'order_placed' THEN format('''order:'' || %s::text', automation._col(o, 'order_id', 'o'))
                WHEN 'order_status' THEN format('''order:'' || %s::text || '':'' || %L', automation._col(o, 'order_id', 'o'),
                                                j.trigger_options ->> 'status')
                ELSE format('''customer:'' || %s::text', automation._col(o, 'customer', 'o')) END,
            automation._col(o, 'customer', 'o'),
            CASE WHEN j.trigger <> 'order_status' THEN automation._ts(o, 'placed_at', 'o')
                 WHEN o.columns ? 'status_changed_at' THEN automation._ts(o, 'status_changed_at', 'o')
                 ELSE '$1' END,
            coalesce(automation._col(o, 'order_id', 'o'), 'NULL'), automation._col(o, 'total', 'o'),
            automation._rel(o),
            CASE WHEN j.trigger = 'order_status' THEN quote_literal(coalesce(j.trigger_options ->> 'lookback', '7 days')) || '::interval'
                 ELSE lookback END,
            CASE WHEN j.trigger = 'order_status'
                 THEN format('(%s)::text = %L', automation._col(o, 'status', 'o'), j.trigger_options ->> 'status')
                 ELSE automation._counted(o, 'o') END,
            CASE WHEN j.trigger = 'first_order' THEN
                format('AND NOT EXISTS (SELECT FROM %s o2 WHERE %s = %s AND %s < %s AND %s)',
                       automation._rel(o), automation._col(o, 'customer', 'o2'), automation._col(o, 'customer', 'o'),
                       automation._ts(o, 'placed_at', 'o2'), automation._ts(o, 'placed_at', 'o'), automation._counted(o, 'o2'))
                 ELSE '' END,
            CASE WHEN j.trigger = 'order_status' AND o.columns ? 'status_changed_at'
                 THEN automation._ts(o, 'status_changed_at', 'o') ELSE automation._ts(o, 'placed_at', 'o') END);
    WHEN 'signup' THEN
        g := automation._src('signups', what);
        RETURN format($q$
            SELECT 'signup:' || %1$s::text %2$s, %1$s, %3$s, '{}'::jsonb
              FROM %4$s g
             WHERE %3$s <= $1 AND %3$s > $1 - %5$s$q$,
            automation._col(g, 'customer', 'g'),
            CASE WHEN per_occurrence THEN '|| '':'' || ' || automation._moment_sql(automation._ts(g, 'signed_up_at', 'g')) ELSE '' END,
            automation._ts(g, 'signed_up_at', 'g'), automation._rel(g), lookback);
    WHEN 'segment_entered' THEN
        RETURN format($q$
            SELECT 'customer:' || m.customer_key::text %1$s, m.customer_key, m.entered_at,
                   automation._object('segment', m.segment)
              FROM automation.segment_member m
             WHERE m.segment = %2$L AND m.exited_at IS NULL
               AND m.entered_at <= $1 AND m.entered_at > $1 - %3$s$q$,
            CASE WHEN per_occurrence THEN '|| '':'' || ' || automation._moment_sql('m.entered_at') ELSE '' END,
            j.trigger_options ->> 'segment', lookback);
    WHEN 'inactivity' THEN
        RETURN format($q$
            SELECT 'customer:' || p.customer_key::text %1$s, p.customer_key,
                   p.last_order_at + %2$L::interval, automation._object('last_order_at', p.last_order_at)
              FROM automation.customer_profile p
             WHERE p.last_order_at <= $1 - %2$L::interval
               AND p.last_order_at > $1 - %2$L::interval - %3$s$q$,
            CASE WHEN per_occurrence THEN '|| '':'' || ' || automation._moment_sql('p.last_order_at') ELSE '' END,
            make_interval(days => coalesce((j.trigger_options ->> 'days')::int, 15)), lookback);
    ELSE
        -- product_purchased, replenishment, gift_order, birthday, quarter_start,
        -- points_milestone, tagged, campaign: see 68_lifecycle.sql.
        RETURN automation._lifecycle_trigger_sql(j);
    END CASE;
END
$$;

-- _check_condition(sql): a variant condition must be one boolean
-- expression over automation.step_context, nothing more.
CREATE FUNCTION automation._check_condition(condition text, what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    typ text;
BEGIN
    IF condition IS NULL OR btrim(condition) = '' THEN
        RAISE EXCEPTION '% has an empty condition', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF condition ~ ';' THEN
        RAISE EXCEPTION '% must be a single expression', what
            USING ERRCODE = 'syntax_error',
                  DETAIL = format('The condition was: %s', condition);
    END IF;
    -- Evaluated once, on a context of nulls: what fails to parse, names an
    -- unknown column or fails on nulls shows now, as does its type.
    BEGIN
        EXECUTE format('SELECT pg_typeof((%s))::text FROM (SELECT (NULL::automation.step_context).*) ctx', condition) INTO typ;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION '% is not a valid condition: %', what, SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The condition was: %s', condition),
                  HINT = 'A condition is a boolean SQL expression over order_count, total_spent, first_order, lifecycle_stage, rfm_group, vip_tier, segments, cart_total, checkout_stage, order_total, bucket, products, categories and tags.';
    END;
    IF typ <> 'boolean' THEN
        RAISE EXCEPTION '% must be a boolean condition, not of type %', what, typ
            USING ERRCODE = 'datatype_mismatch',
                  DETAIL = format('The condition was: %s', condition),
                  HINT = 'Compare the value with something, e.g. order_count >= 3.';
    END IF;
END
$$;

-- create_journey: defines a journey (without steps; add them with
-- add_step).  Everything is checked now, not at tick time.
CREATE FUNCTION automation.create_journey(name text, trigger text, trigger_options jsonb DEFAULT '{}',
                                          purpose text DEFAULT 'marketing', exit_on text[] DEFAULT NULL,
                                          reentry text DEFAULT 'once', holdout_percent numeric DEFAULT 0,
                                          description text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j automation.journey;
    triggers text[] := ARRAY['cart_abandoned', 'order_placed', 'first_order', 'order_status', 'signup',
                             'segment_entered', 'inactivity', 'product_purchased', 'replenishment', 'gift_order',
                             'birthday', 'quarter_start', 'points_milestone', 'tagged', 'campaign'];
    k text;
BEGIN
    IF name IS NULL OR trigger IS NULL OR purpose IS NULL OR reentry IS NULL OR holdout_percent IS NULL THEN
        RAISE EXCEPTION 'name, trigger, purpose, reentry and holdout_percent must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT automation._is_word(name, 63) THEN
        RAISE EXCEPTION 'invalid journey name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A journey name is a lower-case word: letters, digits and underscores.';
    END IF;
    IF NOT trigger = ANY (triggers) THEN
        RAISE EXCEPTION 'unknown trigger "%"', trigger
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Triggers are: ' || array_to_string(triggers, ', ') || '.';
    END IF;
    IF purpose NOT IN ('marketing', 'transactional') THEN
        RAISE EXCEPTION 'unknown purpose "%"', purpose
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Purpose is marketing (needs consent, obeys caps) or transactional.';
    END IF;
    IF reentry NOT IN ('once', 'each_time') THEN
        RAISE EXCEPTION 'unknown re-entry policy "%"', reentry
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'once: a customer enters the journey once; each_time: again at every new occurrence of the trigger.';
    END IF;
    IF holdout_percent < 0 OR holdout_percent >= 100 THEN
        RAISE EXCEPTION 'holdout_percent must be at least 0 and under 100'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF trigger_options IS NULL OR jsonb_typeof(trigger_options) <> 'object' THEN
        RAISE EXCEPTION 'trigger_options must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN SELECT jsonb_object_keys(trigger_options) LOOP
        IF NOT k = ANY (CASE trigger
                          WHEN 'cart_abandoned' THEN ARRAY['idle', 'lookback']
                          WHEN 'order_status' THEN ARRAY['status', 'lookback']
                          WHEN 'segment_entered' THEN ARRAY['segment', 'lookback']
                          WHEN 'inactivity' THEN ARRAY['days', 'lookback']
                          WHEN 'product_purchased' THEN ARRAY['products', 'categories', 'exit_if_bought', 'recommend', 'lookback']
                          WHEN 'replenishment' THEN ARRAY['lead_days', 'lead_days_by', 'lookback']
                          WHEN 'gift_order' THEN ARRAY['gift_categories', 'lookback']
                          WHEN 'birthday' THEN ARRAY['days_before', 'lookback']
                          WHEN 'quarter_start' THEN ARRAY['tiers']
                          WHEN 'points_milestone' THEN ARRAY['milestones', 'lookback']
                          WHEN 'tagged' THEN ARRAY['tag', 'recommend', 'lookback']
                          WHEN 'campaign' THEN ARRAY['segment', 'send_at', 'local_time', 'lookback']
                          ELSE ARRAY['lookback'] END) THEN
            RAISE EXCEPTION 'unknown option "%" for trigger %', k, trigger
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    -- (a number would be read as seconds: "lookback": 5 is five seconds)
    IF jsonb_typeof(trigger_options -> 'idle') <> 'string' OR jsonb_typeof(trigger_options -> 'lookback') <> 'string' THEN
        RAISE EXCEPTION 'trigger options idle and lookback are intervals written as strings, such as "4 hours"'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        PERFORM (trigger_options ->> 'idle')::interval, (trigger_options ->> 'lookback')::interval,
                (trigger_options ->> 'days')::integer;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'invalid trigger option: %', SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'idle and lookback are intervals such as ''4 hours''; days is a whole number.';
    END;
    IF (trigger_options ->> 'idle')::interval <= interval '0' OR (trigger_options ->> 'lookback')::interval <= interval '0'
       OR (trigger_options ->> 'days')::integer < 1 THEN
        RAISE EXCEPTION 'trigger options must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- (as a step's wait: beyond that, the tick's arithmetic leaves the
    -- timestamp range, and would fail every tick)
    IF (trigger_options ->> 'idle')::interval > interval '100 years' OR (trigger_options ->> 'lookback')::interval > interval '100 years'
       OR (trigger_options ->> 'days')::integer > 36500 THEN
        RAISE EXCEPTION 'trigger options must be at most 100 years (days: 36500)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF trigger = 'order_status' AND jsonb_typeof(trigger_options -> 'status') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'trigger order_status needs the option "status", a string'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''{"status": "shipped"}''.';
    END IF;
    PERFORM automation._check_lifecycle_options(trigger, trigger_options);
    IF trigger IN ('segment_entered', 'campaign') THEN
        IF jsonb_typeof(trigger_options -> 'segment') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'trigger % needs the option "segment", a segment''s name', trigger
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example ''{"segment": "vip"}''.';
        END IF;
        IF NOT EXISTS (SELECT FROM automation.segment z WHERE z.name = trigger_options ->> 'segment') THEN
            RAISE EXCEPTION 'unknown segment "%"', trigger_options ->> 'segment'
                USING ERRCODE = 'undefined_object',
                      HINT = 'See automation.segment_sizes for the segments there are.';
        END IF;
    END IF;
    IF exit_on IS NULL THEN
        exit_on := CASE trigger WHEN 'cart_abandoned' THEN ARRAY['converted', 'ordered']
                                WHEN 'segment_entered' THEN ARRAY['left_segment']
                                WHEN 'signup' THEN ARRAY['ordered']
                                WHEN 'inactivity' THEN ARRAY['ordered']
                                WHEN 'replenishment' THEN ARRAY['bought']
                                WHEN 'product_purchased' THEN
                                    CASE WHEN trigger_options ? 'exit_if_bought' THEN ARRAY['bought'] ELSE '{}'::text[] END
                                ELSE '{}'::text[] END;
    END IF;
    IF NOT exit_on <@ ARRAY['converted', 'ordered', 'left_segment', 'out_of_stock', 'bought'] THEN
        RAISE EXCEPTION 'unknown exit condition in %', exit_on
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Exit conditions are: converted, ordered, left_segment, out_of_stock, bought.';
    END IF;
    IF 'bought' = ANY (exit_on) AND trigger NOT IN ('replenishment', 'product_purchased') THEN
        RAISE EXCEPTION 'exit condition bought applies to replenishment and product_purchased journeys only'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF 'bought' = ANY (exit_on) AND trigger = 'product_purchased' AND NOT trigger_options ? 'exit_if_bought' THEN
        RAISE EXCEPTION 'exit condition bought needs the trigger option "exit_if_bought"'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''{"exit_if_bought": {"categories": ["coffee capsules"]}}''.';
    END IF;
    IF 'left_segment' = ANY (exit_on) AND trigger NOT IN ('segment_entered', 'campaign') THEN
        RAISE EXCEPTION 'exit condition left_segment applies to segment_entered and campaign journeys only'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Other journeys enroll no segment''s members, so there is no segment to leave.';
    END IF;
    IF trigger <> 'cart_abandoned' AND exit_on && ARRAY['converted', 'out_of_stock'] THEN
        RAISE EXCEPTION 'exit conditions converted and out_of_stock apply to cart journeys only'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    j := ROW(name, trigger, trigger_options, purpose, reentry, exit_on, holdout_percent, true, NULL, description, now());
    PERFORM automation._trigger_sql(j);

    INSERT INTO automation.journey VALUES (j.*);
    RETURN name;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'journey "%" already exists', name
        USING ERRCODE = 'duplicate_object',
              HINT = 'Drop it first with automation.drop_journey(), or choose another name.';
END
$$;
COMMENT ON FUNCTION automation.create_journey(text, text, jsonb, text, text[], text, numeric, text) IS 'define a journey: trigger, purpose, exit conditions, re-entry, holdout; add steps with add_step';

-- add_step: appends a step to a journey.  variants is a JSON array of
-- {"name", "when": "<condition>" | "split": <percent>, "template", "payload"};
-- the first whose condition holds wins; split variants share buckets in
-- order; a message that matches none uses the step's own template.
CREATE FUNCTION automation.add_step(journey text, wait interval, template text, channel text DEFAULT 'email',
                                    payload jsonb DEFAULT '{}', variants jsonb DEFAULT '[]',
                                    at_preferred_hour boolean DEFAULT false, valid_for interval DEFAULT NULL,
                                    includes text[] DEFAULT '{}', discount jsonb DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
    v jsonb;
    i integer := 0;
    split_total numeric := 0;
    what text;
    names text[] := '{}';
    code_valid interval;
BEGIN
    IF journey IS NULL OR wait IS NULL OR template IS NULL OR channel IS NULL OR at_preferred_hour IS NULL THEN
        RAISE EXCEPTION 'journey, wait, template, channel and at_preferred_hour must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM FROM automation.journey j WHERE j.name = add_step.journey FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'journey "%" does not exist', journey
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it first with automation.create_journey().';
    END IF;
    PERFORM automation._check_phone(channel);
    IF wait < interval '0' THEN
        RAISE EXCEPTION 'wait must not be negative'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The wait was %s.', wait);
    END IF;
    -- (longer ones would overflow the timestamps the tick computes)
    IF wait > interval '100 years' THEN
        RAISE EXCEPTION 'wait must be at most 100 years'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The wait was %s.', wait);
    END IF;
    IF btrim(template) = '' THEN
        RAISE EXCEPTION 'template must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The template key tells the mailer which message to render, e.g. ''cart_reminder''.';
    END IF;
    PERFORM automation._check_message(channel, payload);
    IF valid_for IS NOT NULL AND (valid_for <= interval '0' OR valid_for > interval '100 years') THEN
        RAISE EXCEPTION 'valid_for must be positive and at most 100 years'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('valid_for was %s.', valid_for);
    END IF;
    IF includes IS NULL OR NOT includes <@ ARRAY['cart', 'order', 'popular_products', 'last_order', 'recommended',
                                                 'also_like', 'category_products'] THEN
        RAISE EXCEPTION 'unknown content in includes %', includes
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A step can include: cart, order, popular_products, last_order, recommended, also_like, category_products.';
    END IF;
    IF 'recommended' = ANY (includes) AND NOT EXISTS (SELECT FROM automation.journey j
                                                       WHERE j.name = add_step.journey AND j.trigger_options ? 'recommend') THEN
        RAISE EXCEPTION 'a step of journey % includes recommended, but the journey recommends nothing', journey
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the trigger the option "recommend", e.g. ''{"recommend": {"categories": ["coffee capsules"]}}''.';
    END IF;
    IF discount IS NOT NULL THEN
        IF jsonb_typeof(discount) <> 'object' OR jsonb_typeof(discount -> 'percent') IS DISTINCT FROM 'number'
           OR (discount ->> 'percent')::numeric <= 0 OR (discount ->> 'percent')::numeric > 100 THEN
            RAISE EXCEPTION 'discount must be an object with a percent between 0 and 100'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example ''{"percent": 10, "valid_for": "24 hours"}''.';
        END IF;
        -- (a misspelt "vaild_for" would leave the code at its default 24 hours)
        IF EXISTS (SELECT FROM jsonb_object_keys(discount) k WHERE k NOT IN ('percent', 'valid_for')) THEN
            RAISE EXCEPTION 'unknown key in discount %', discount
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A discount has "percent" and, optionally, "valid_for".';
        END IF;
        IF discount ? 'valid_for' AND jsonb_typeof(discount -> 'valid_for') <> 'string' THEN
            RAISE EXCEPTION 'discount valid_for must be an interval written as a string, such as "24 hours"'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        BEGIN
            code_valid := (discount ->> 'valid_for')::interval;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'discount valid_for is not an interval: %', discount ->> 'valid_for'
                USING ERRCODE = 'invalid_parameter_value';
        END;
        IF code_valid <= interval '0' OR code_valid > interval '100 years' THEN
            RAISE EXCEPTION 'discount valid_for must be positive and at most 100 years'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('valid_for was %s.', code_valid);
        END IF;
    END IF;
    IF variants IS NULL OR jsonb_typeof(variants) <> 'array' THEN
        RAISE EXCEPTION 'variants must be a JSON array'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''[{"name": "new", "when": "order_count = 0", "template": "cart_trust"}]''.';
    END IF;
    FOR v IN SELECT * FROM jsonb_array_elements(variants) LOOP
        i := i + 1;
        what := format('variant %s of journey %s', i, journey);
        IF jsonb_typeof(v) <> 'object' OR jsonb_typeof(v -> 'name') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION '% must be an object with a "name"', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- The name is what the messages, the decision log and journey_stats
        -- carry, and what the tick finds the variant's template by: a blank
        -- one would count under no variant, a second of one name would send
        -- the first's template.
        IF btrim(v ->> 'name') = '' THEN
            RAISE EXCEPTION '% has a blank name', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v ->> 'name' = ANY (names) THEN
            RAISE EXCEPTION '% has the name "%" of an earlier variant', what, v ->> 'name'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give each variant of a step its own name.';
        END IF;
        names := names || (v ->> 'name');
        IF (SELECT count(*) FROM jsonb_object_keys(v) k WHERE k NOT IN ('name', 'when', 'split', 'template', 'payload')) > 0 THEN
            RAISE EXCEPTION '% has unknown keys', what
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A variant has: name, when or split, and optionally template and payload.';
        END IF;
        IF (v ? 'when') = (v ? 'split') THEN
            RAISE EXCEPTION '% needs exactly one of "when" and "split"', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v ? 'when' THEN
            PERFORM automation._check_condition(v ->> 'when', what);
        ELSE
            IF jsonb_typeof(v -> 'split') <> 'number' OR (v ->> 'split')::numeric <= 0 THEN
                RAISE EXCEPTION '% has a split that is not a positive percentage', what
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            split_total := split_total + (v ->> 'split')::numeric;
        END IF;
        IF v ? 'template' AND (jsonb_typeof(v -> 'template') <> 'string' OR btrim(v ->> 'template') = '') THEN
            RAISE EXCEPTION '% has an empty template', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v ? 'payload' AND jsonb_typeof(v -> 'payload') <> 'object' THEN
            RAISE EXCEPTION '% has a payload that is not a JSON object', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    IF split_total > 100 THEN
        RAISE EXCEPTION 'the splits of journey % add up to % percent', journey, split_total
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT coalesce(max(s.step), 0) + 1 INTO n FROM automation.journey_step s WHERE s.journey = add_step.journey;
    INSERT INTO automation.journey_step (journey, step, wait, at_preferred_hour, valid_for, channel, template,
                                         payload, includes, variants, discount)
    VALUES (journey, n, wait, at_preferred_hour, valid_for, channel, template, payload, includes, variants, discount);
    RETURN n;
END
$$;
COMMENT ON FUNCTION automation.add_step(text, interval, text, text, jsonb, jsonb, boolean, interval, text[], jsonb) IS 'append a step to a journey: wait, template, channel, payload, variants; returns the step number';

CREATE FUNCTION automation.drop_journey(name text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    DELETE FROM automation.journey j WHERE j.name = drop_journey.name;
    IF NOT FOUND THEN
        RAISE NOTICE 'journey "%" does not exist', name;
        RETURN false;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION automation.drop_journey(text) IS 'remove a journey, its steps and its enrollments (the messages already written stay)';

CREATE FUNCTION automation.set_journey_enabled(name text, enabled boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR enabled IS NULL THEN
        RAISE EXCEPTION 'name and enabled must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE automation.journey j SET enabled = set_journey_enabled.enabled WHERE j.name = set_journey_enabled.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'journey "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
COMMENT ON FUNCTION automation.set_journey_enabled(text, boolean) IS 'pause or resume a journey';
