-- The journey stages of the tick: enroll, then steps.  See 60_journey.sql.

-- _new_enrollments(make): whether this session has pg_temp.automation_enrolled,
-- where the enroll stage puts the new enrollments whose first step is due
-- at once -- with make, after making it if need be.  The steps stage takes
-- its due steps from there as from automation.enrollment, and writes them to
-- automation.enrollment only after, in the state that step leaves them in:
-- one row written per new enrollment instead of an insert and an update
-- (which, moving due_at, cannot be a HOT update).  The table lives as long
-- as the session, its rows only until the end of the transaction; it is
-- made the first time a session needs it (a session that only ever ticks
-- with nothing to enroll at once, such as one pg_cron job run, never makes
-- it), and again when the customer key's type changed
-- (automation._retype_keys).
CREATE FUNCTION automation._new_enrollments(make boolean)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass('pg_temp.automation_enrolled') IS NOT NULL THEN
        IF automation._column_type('pg_temp.automation_enrolled', 'customer_key')
           = automation._column_type('automation.enrollment', 'customer_key') THEN
            RETURN true;
        END IF;
        DROP TABLE pg_temp.automation_enrolled;
    END IF;
    IF make THEN
        CREATE TEMP TABLE automation_enrolled (LIKE automation.enrollment) ON COMMIT DELETE ROWS;
    END IF;
    RETURN make;
END
$$;

-- _journey_enroll(now): enrolls every new subject of every enabled journey
-- that has steps.  Returns the number enrolled.  Without JIT compilation,
-- as _journey_steps.
CREATE FUNCTION automation._journey_enroll(now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    j automation.journey;
    n bigint;
    total bigint := 0;
    period text;
    since timestamptz;
    watermark timestamptz;
    grace interval;
    ready boolean;
    pending bigint;
    at_once boolean;
    anyone boolean;
    found_sql text;
    enroll_sql text;
BEGIN
    PERFORM automation._load();
    ready := automation._new_enrollments(false);
    -- (the setting as shown carries its unit, "1h", "90min"; in seconds, a
    -- "1d" is 24 hours, not a calendar day)
    grace := make_interval(secs => extract(epoch FROM current_setting('automation.trigger_grace')::interval));
    -- A moment the shop keeps as a date is midnight of that day: a row
    -- written later in the day lies behind the last look by up to a day.
    IF EXISTS (SELECT FROM automation.source s, jsonb_each_text(s.column_types) t
                WHERE s.kind IN ('orders', 'carts', 'signups') AND t.value = 'date') THEN
        grace := grace + interval '1 day';
    END IF;
    -- Each journey is locked as a foreign key check would lock it (the
    -- enrollments have none, see automation._journey_deleted): it cannot be
    -- dropped while its enrollments are written.
    FOR j IN SELECT * FROM automation.journey x
              WHERE x.enabled AND EXISTS (SELECT FROM automation.journey_step s WHERE s.journey = x.name)
              ORDER BY x.name
              FOR KEY SHARE OF x
    LOOP
        -- Calendar triggers look once per period (day, quarter).
        period := automation._trigger_mark(j, now);
        IF period IS NOT NULL THEN
            IF EXISTS (SELECT FROM automation.trigger_mark m WHERE m.journey = j.name AND m.mark = period) THEN
                CONTINUE;
            END IF;
            INSERT INTO automation.trigger_mark AS m (journey, mark, at) VALUES (j.name, period, now)
            ON CONFLICT ON CONSTRAINT trigger_mark_pkey DO UPDATE SET mark = excluded.mark, at = excluded.at;
        END IF;
        -- The earliest trigger moment to look at.
        since := now - automation._lookback(j);
        IF automation._watermarked(j.trigger) THEN
            watermark := (SELECT m.scanned_until FROM automation.trigger_mark m WHERE m.journey = j.name);
            IF watermark <= now THEN
                since := greatest(since, watermark - grace);
            ELSIF watermark IS NULL AND j.trigger = 'points_milestone' THEN
                -- A milestone crossed before the journey existed is not
                -- told: its first look starts when it was created (at the
                -- tick's moment, when that lies before: a replayed past).
                since := CASE WHEN j.created_at <= now THEN greatest(since, j.created_at) ELSE now END;
            END IF;
            INSERT INTO automation.trigger_mark AS m (journey, scanned_until) VALUES (j.name, now)
            ON CONFLICT ON CONSTRAINT trigger_mark_pkey DO UPDATE SET scanned_until = excluded.scanned_until;
        END IF;
        -- The enrollment is the "enrolled" decision (automation.decision_log
        -- reads it there).  One whose first step is due now waits for the
        -- steps stage in pg_temp.automation_enrolled (see _new_enrollments).
        -- Whether such a subject is enrolled already is one probe of the
        -- enrollments' index each, a scalar subquery: as NOT EXISTS the
        -- planner may hash every enrollment the shop ever had instead.
        found_sql := automation._trigger_sql(j);
        enroll_sql := format($q$
            WITH found AS (%s),
            new AS (
                SELECT %L AS journey, f.subject, f.customer_key, f.anchor_at, f.context,
                       b.bucket < %s AS holdout, b.bucket, f.anchor_at + s.wait AS due_at
                  FROM (SELECT DISTINCT ON (subject) * FROM found f (subject, customer_key, anchor_at, context)
                         WHERE customer_key IS NOT NULL ORDER BY subject, anchor_at) f
                 CROSS JOIN LATERAL (SELECT (abs(hashtextextended(%L || ':' || f.subject, 0)) %% 100)::smallint AS bucket) b
                  JOIN automation.journey_step s ON s.journey = %L AND s.step = 1),
            later AS (
                INSERT INTO automation.enrollment AS e (journey, subject, customer_key, anchor_at, enrolled_at, context,
                                                        holdout, bucket, next_step, due_at, step_due_at, status, updated_at)
                SELECT n.journey, n.subject, n.customer_key, n.anchor_at, $1, n.context,
                       n.holdout, n.bucket, 1, n.due_at, n.due_at, 'active', $1
                  FROM new n WHERE n.due_at > $1
                ON CONFLICT ON CONSTRAINT enrollment_pkey DO NOTHING
                RETURNING 1),
            at_once AS (
                SELECT n.* FROM new n
                 WHERE n.due_at <= $1
                   AND (SELECT true FROM automation.enrollment e WHERE e.journey = n.journey AND e.subject = n.subject
                         LIMIT 1) IS NULL)$q$,
            found_sql, j.name, j.holdout_percent, j.name, j.name);
        IF NOT ready THEN
            -- No table for them in this session yet (see _new_enrollments).
            -- A look that stops at the first new subject due at once decides
            -- whether to make it, so that a tick enrolling many reads the
            -- trigger in full once (every pg_cron run is a first session).
            -- The trigger is materialized: planned as for the full read, not
            -- for a first row fast, since the look reads it all when there
            -- is none.  Without one: the enrollments for later, and the table
            -- after all should the trigger have found one since (a row
            -- committed in between).  When the trigger found nobody not
            -- enrolled already (most ticks), that is all: a row committed
            -- since lies within the next tick's look (the grace).
            EXECUTE format($q$
                WITH found AS MATERIALIZED (%s)
                SELECT EXISTS (SELECT FROM found f (subject, customer_key)
                                WHERE f.customer_key IS NOT NULL
                                  AND NOT EXISTS (SELECT FROM automation.enrollment e
                                                   WHERE e.journey = %L AND e.subject = f.subject)),
                       EXISTS (SELECT FROM found f (subject, customer_key, anchor_at, context)
                                 JOIN automation.journey_step s ON s.journey = %L AND s.step = 1
                                WHERE f.customer_key IS NOT NULL AND f.anchor_at + s.wait <= $1
                                  AND NOT EXISTS (SELECT FROM automation.enrollment e
                                                   WHERE e.journey = %L AND e.subject = f.subject))$q$,
                found_sql, j.name, j.name, j.name)
              INTO anyone, at_once USING now, since;
            IF NOT anyone THEN
                CONTINUE;
            ELSIF NOT at_once THEN
                EXECUTE enroll_sql || ' SELECT (SELECT count(*) FROM later), (SELECT count(*) FROM at_once)'
                  INTO n, pending USING now, since;
                total := total + n;
                IF pending = 0 THEN
                    CONTINUE;
                END IF;
            END IF;
            ready := automation._new_enrollments(true);
        END IF;
        EXECUTE enroll_sql || $q$,
            held AS (
                INSERT INTO pg_temp.automation_enrolled (journey, subject, customer_key, anchor_at, enrolled_at, context,
                                                         holdout, bucket, next_step, due_at, step_due_at, status, updated_at)
                SELECT a.journey, a.subject, a.customer_key, a.anchor_at, $1, a.context,
                       a.holdout, a.bucket, 1, a.due_at, a.due_at, 'active', $1
                  FROM at_once a
                RETURNING 1)
            SELECT (SELECT count(*) FROM later) + (SELECT count(*) FROM held)$q$
          INTO n USING now, since;
        total := total + n;
    END LOOP;
    RETURN total;
END
$$;

-- _quiet_end(ts, tz, start_hour, end_hour): ts itself when it is outside the
-- quiet hours in that zone, else the moment they end.
CREATE FUNCTION automation._quiet_end(ts timestamptz, tz text, start_hour integer, end_hour integer)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN start_hour = end_hour THEN ts
        WHEN start_hour > end_hour AND extract(hour FROM automation._local(ts, tz)) >= start_hour
            THEN automation._zoned(date_trunc('day', automation._local(ts, tz)) + interval '1 day' + make_interval(hours => end_hour), tz)
        WHEN start_hour > end_hour AND extract(hour FROM automation._local(ts, tz)) < end_hour
            THEN automation._zoned(date_trunc('day', automation._local(ts, tz)) + make_interval(hours => end_hour), tz)
        WHEN start_hour < end_hour AND extract(hour FROM automation._local(ts, tz)) >= start_hour
                                   AND extract(hour FROM automation._local(ts, tz)) < end_hour
            THEN automation._zoned(date_trunc('day', automation._local(ts, tz)) + make_interval(hours => end_hour), tz)
        ELSE ts END
$$;

-- _at_hour(ts, tz, hour): the first moment at or after ts when the local
-- clock in tz shows that full hour.  On the day the clocks skip it (02:00
-- when summer time begins), the hour after the moment it would have been
-- counts as it: a message due then is not put off a day.
CREATE FUNCTION automation._at_hour(ts timestamptz, tz text, hour integer)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN extract(hour FROM automation._local(ts, tz)) = hour THEN ts
                WHEN ts >= automation._zoned(date_trunc('day', automation._local(ts, tz)) + make_interval(hours => hour), tz)
                     AND ts < automation._zoned(date_trunc('day', automation._local(ts, tz)) + make_interval(hours => hour), tz) + interval '1 hour'
                THEN ts
                WHEN automation._zoned(date_trunc('day', automation._local(ts, tz)) + make_interval(hours => hour), tz) >= ts
                THEN automation._zoned(date_trunc('day', automation._local(ts, tz)) + make_interval(hours => hour), tz)
                ELSE automation._zoned(date_trunc('day', automation._local(ts, tz)) + interval '1 day' + make_interval(hours => hour), tz) END
$$;

-- _preferred_hour(hour, quiet, start_hour, end_hour): the local hour a step
-- at the customer's preferred hour aims for: that hour, or, when quiet hours
-- apply to the message and the hour falls in them, the hour they end.  Aimed
-- at a quiet hour, the step would be deferred to the end of the quiet hours,
-- then to the preferred hour of the next day, and never be sent.
CREATE FUNCTION automation._preferred_hour(hour integer, quiet boolean, start_hour integer, end_hour integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN quiet AND start_hour <> end_hour
                     AND CASE WHEN start_hour > end_hour THEN hour >= start_hour OR hour < end_hour
                              ELSE hour >= start_hour AND hour < end_hour END
                THEN end_hour ELSE hour END
$$;

-- _message_payload(...): a message's payload, put together in one pass: the
-- members of the step's payload, the chosen variant's and the enrollment
-- context's "payload", then first_name, journey, step, variant and
-- customer_key, then the extras, a later key replacing an earlier one (as
-- with ||), and with_cart the cart (see src/journey.c).
CREATE FUNCTION automation._message_payload(payload jsonb, variant_payload jsonb, context jsonb, first_name text,
                                            journey text, step integer, variant text, customer_key text, extra jsonb,
                                            with_cart boolean, cart_url text, cart_lines jsonb)
RETURNS jsonb
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_message_payload';

-- _cart_lines(product, quantity, name, price, only_left): the lines of a
-- cart as a JSON array of {"product", "quantity", "name", "price",
-- "only_left"}, in the order they come, each value as to_jsonb makes it
-- (one of an array or composite type as its text; see src/journey.c).
CREATE FUNCTION automation._cart_lines_add(internal, "any", "any", "any", "any", "any")
RETURNS internal
LANGUAGE C PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_cart_lines_add';

CREATE FUNCTION automation._cart_lines_final(internal)
RETURNS jsonb
LANGUAGE C PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_cart_lines_final';

CREATE AGGREGATE automation._cart_lines("any", "any", "any", "any", "any") (
    SFUNC = automation._cart_lines_add,
    STYPE = internal,
    FINALFUNC = automation._cart_lines_final
);

-- _journey_steps(now): runs every due step.  Returns the number of
-- messages written to the outbox.  Without JIT compilation: its statements
-- each pass over the due steps once or twice, and a big tick's are costed
-- above jit_above_cost, so that with PostgreSQL's default (jit = on) each
-- would be compiled first, for more time than the compiled code saves.
-- (The analytic stages, which read the whole shop, keep the server's
-- setting: there it pays.)  Its ANALYZEs of its own temporary tables
-- sample 3,000 rows (a statistics target of 10), not PostgreSQL's default
-- 30,000: the statements after them need the number of rows, of distinct
-- keys and of NULLs, which a sample of 3,000 estimates as well, and with
-- 100,000 steps due the three ANALYZEs took 0.4-0.5 s of the tick at the
-- default (the carts' lines, jsonb, the most), 0.08 s at 10.
CREATE FUNCTION automation._journey_steps(now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
SET default_statistics_target = 10
AS $$
DECLARE
    min_interval interval;
    max_per_week integer;
    quiet_start integer;
    quiet_end integer;
    saturation integer;
    low_stock integer;
    cart_url text;
    default_tz text;
    b_orders automation.source;
    b_carts automation.source;
    b_lines automation.source;
    b_products automation.source;
    b_order_lines automation.source;
    variant_journeys text[];
    variant_steps integer[];
    variant_arms text[];
    variant_sql text;
    problem text;
    sent bigint;
    popular_rows bigint;
    need_segment boolean;
    need_marketing boolean;
    need_hour boolean;
    need_discount boolean;
    need_order boolean;
    need_cart boolean;
    need_carts boolean;
    need_ordered boolean;
    need_bought boolean;
    need_variant boolean;
    need_products boolean;
    need_converted boolean;
    need_stock boolean;
    lookback interval;
    horizon timestamptz;
    channels text[];
    has_new boolean;
    has_old boolean;
    has_carried boolean;
    rows_due bigint;
    due_sql text;
    new_sql text;
    old_sql text;
    source text;
    made boolean;
    keyed boolean;
    cnt bigint;
    customers_sql text;
    twice text;
    b_customers automation.source;
    moved_sql text;
    keys_locked boolean := false;
    lines_keyed boolean;
    index_scans text;
    nested_loops text;
BEGIN
    -- Nothing due (the usual case between events): one look at the index,
    -- and none enrolled by this tick with a step due at once.
    IF to_regclass('pg_temp.automation_enrolled') IS NULL THEN
        has_new := false;
    ELSE
        EXECUTE 'SELECT EXISTS (SELECT FROM pg_temp.automation_enrolled)' INTO has_new;
    END IF;
    has_old := EXISTS (SELECT FROM automation.enrollment e WHERE e.status = 'active' AND e.due_at <= now);
    IF NOT has_new AND NOT has_old THEN
        RETURN 0;
    END IF;
    -- (the statements below read the table, empty or not)
    PERFORM automation._new_enrollments(true);
    PERFORM automation._load();
    min_interval := current_setting('automation.min_interval')::interval;
    max_per_week := current_setting('automation.max_per_week')::integer;
    quiet_start := current_setting('automation.quiet_hours_start')::integer;
    quiet_end := current_setting('automation.quiet_hours_end')::integer;
    saturation := current_setting('automation.saturation_limit')::integer;
    low_stock := current_setting('automation.low_stock_threshold')::integer;
    cart_url := current_setting('automation.cart_url');
    default_tz := current_setting('automation.default_timezone');

    -- The due steps of this tick, in a temporary table dropped at the end
    -- (and at commit, should a statement below fail).
    IF to_regclass('pg_temp.automation_due') IS NOT NULL THEN
        DROP TABLE pg_temp.automation_due;
    END IF;
    -- The due steps: those this tick enrolled, counted first (ANALYZE) so
    -- that their customers are joined the way that suits how many there
    -- are, and the enrollments due, each read by a statement of its own (as
    -- one UNION ALL the planner knows nothing of the steps' journeys, and
    -- may look every customer up through the whole array of keys).
    IF has_new THEN
        ANALYZE pg_temp.automation_enrolled (journey, next_step, customer_key);
    END IF;
    -- Each due step with its customer as the shop has them now (address,
    -- consent, name, time zone: the one the profile takes, read live), and
    -- the first exit or skip reasons that need nothing more: suppression,
    -- consent, a vanished customer.  The customers due are looked up in the
    -- index on the customers' key, one descent each in key order (the keys
    -- as an array), where the shop has such an index: quicker than one pass
    -- over all the customers hashed against the due steps while those due
    -- are fewer than about half of them, and as quick beyond.  Without one
    -- (a view, say) the planner chooses.  The index is read as a bitmap,
    -- each page of the customers then read once, in the table's order:
    -- fetched row by row in key order, 100,000 customers of 1,000,000 took
    -- 0.21 s against 0.13 s.  (The planner cannot tell how many keys the
    -- array holds, takes it for ten, and would fetch row by row.)  For the
    -- same reason no nested loop is allowed here: taking the customers for
    -- ten rows, the planner joined them to the due steps by a nested loop
    -- over the customers, kept in memory, whenever it also misjudged the
    -- due steps as few -- as it does for the enrollments due, joined to
    -- their journeys and steps (ad hoc: 219 expected, 94,866 due; each
    -- step due then went through every customer due, and the statement
    -- took six minutes instead of half a second).  Hashed, the customers cost as
    -- much for a few due as a loop would.  The suppression list is looked
    -- up per message, in its index (a scalar subquery, which is no join):
    -- hashed, every tick with anything due would read the whole list.
    -- The table carries what the passes below test first, fixed-width
    -- columns ahead: a pass over it takes a row apart only up to the last
    -- column it reads, and most read a few.  What the step says about its
    -- message (template, payload, variants) is joined where the message is
    -- written, not copied into every row: with 100,000 steps due, the
    -- table came out a third narrower, and each of its dozen passes that
    -- much quicker.
    due_sql := $q$
        SELECT CASE WHEN y.exit_reason IS NULL AND y.skip_reason IS NULL THEN $1 END AS send_at,
               y.holdout, y.step, y.is_new, y.due_at, y.customer_key, y.purpose, y.channel, y.exit_reason, y.skip_reason,
               NULL::text AS defer_reason, y.journey, y.trigger, y.exit_on, y.includes, y.at_preferred_hour, y.cart_id,
               y.subject, y.tz, NULL::text AS variant, y.recipient, y.first_name, y.dedupe_key, y.anchor_at, y.step_due_at,
               y.bucket, y.context, y.discount, y.recommend, '{}'::jsonb AS extra
          FROM (
        SELECT x.*,
               x.journey || ':' || x.subject || ':' || x.step AS dedupe_key, x.context ->> 'cart_id' AS cart_id,
               CASE WHEN x.consent IS NULL THEN 'no_customer'
                    WHEN x.suppressed THEN 'suppressed'
                    WHEN x.purpose = 'marketing' AND NOT x.consent THEN 'no_consent' END AS exit_reason,
               CASE WHEN x.valid_for IS NOT NULL AND $1 > coalesce(x.step_due_at, x.due_at) + x.valid_for THEN 'moment_passed'
                    WHEN NOT x.holdout AND x.channel IN ('email', 'sms') AND coalesce(x.recipient, '') = ''
                    THEN 'no_address' END AS skip_reason
          FROM (SELECT r.*,
                       (SELECT true FROM automation.suppression sp
                         WHERE sp.address = automation._address(r.recipient)) IS NOT NULL AS suppressed
          FROM (SELECT t.*,
                       automation._recipient(CASE t.channel WHEN 'email' THEN c.email WHEN 'sms' THEN c.phone END) AS recipient,
                       c.consent, c.first_name,
                       automation._zone_or(c.timezone, $2) AS tz
                  FROM (SELECT e.journey, e.subject, e.customer_key, e.anchor_at, e.context, e.holdout, e.bucket,
                               e.next_step AS step, e.due_at, e.step_due_at, e.is_new, j.purpose, j.trigger,
                               j.trigger_options -> 'recommend' AS recommend, j.exit_on,
                               s.channel, s.includes, s.discount, s.at_preferred_hour, s.valid_for
                          FROM (%1$s) e
                          JOIN automation.journey j ON j.name = e.journey
                          JOIN automation.journey_step s ON s.journey = e.journey AND s.step = e.next_step
                         WHERE j.enabled) t
                  LEFT JOIN (%2$s) c ON c.customer_key = t.customer_key
                -- (the address trimmed once: the recipient is trimmed as
                -- _address trims, so the suppression list's form of it is
                -- the recipient lower-cased, as _address lower-cases it)
                OFFSET 0) r) x
                -- (not merged into the query above: send_at would compute
                -- the reasons a second time)
                OFFSET 0) y$q$;
    new_sql := $q$
        SELECT n.journey, n.subject, n.customer_key, n.anchor_at, n.context, n.holdout, n.bucket,
               n.next_step, n.due_at, n.step_due_at, true AS is_new
          FROM pg_temp.automation_enrolled n$q$;
    old_sql := $q$
        SELECT e.journey, e.subject, e.customer_key, e.anchor_at, e.context, e.holdout, e.bucket,
               e.next_step, e.due_at, e.step_due_at, false AS is_new
          FROM automation.enrollment e WHERE e.status = 'active' AND e.due_at <= $1$q$;
    b_customers := automation._src('customers', 'a journey');
    keyed := automation._leads_index(b_customers, 'customer');
    customers_sql := automation._customers_sql();
    rows_due := 0;
    made := false;
    IF keyed THEN
        index_scans := current_setting('enable_indexscan');
        nested_loops := current_setting('enable_nestloop');
        PERFORM set_config('enable_indexscan', 'off', true);
        PERFORM set_config('enable_nestloop', 'off', true);
    END IF;
    FOREACH source IN ARRAY CASE WHEN has_new THEN ARRAY[new_sql] ELSE '{}' END
                            || CASE WHEN has_old THEN ARRAY[old_sql] ELSE '{}' END LOOP
        EXECUTE CASE WHEN made THEN 'INSERT INTO automation_due ' ELSE 'CREATE TEMP TABLE automation_due ON COMMIT DROP AS ' END
                || format(due_sql, source,
                          CASE WHEN keyed
                               THEN format('SELECT * FROM (%s) c WHERE c.customer_key = ANY (ARRAY(SELECT s.customer_key FROM (%s) s))',
                                           customers_sql, source)
                               ELSE customers_sql END)
          USING now, default_tz;
        GET DIAGNOSTICS cnt = ROW_COUNT;
        rows_due := rows_due + cnt;
        made := true;
    END LOOP;
    IF keyed THEN
        PERFORM set_config('enable_indexscan', index_scans, true);
        PERFORM set_config('enable_nestloop', nested_loops, true);
    END IF;
    IF rows_due = 0 THEN
        DROP TABLE automation_due;
        -- (new enrollments of a journey disabled since: kept, as they are)
        INSERT INTO automation.enrollment AS e
        SELECT n.* FROM pg_temp.automation_enrolled n
        ON CONFLICT ON CONSTRAINT enrollment_pkey DO NOTHING;
        TRUNCATE pg_temp.automation_enrolled;
        RETURN 0;
    END IF;
    -- A step on more than one row: the shop's customers have its key on
    -- more than one row.  Each step goes on with one of them (its message
    -- is written once, under its dedupe key), and the shop is told.  (A key
    -- the shop keeps unique cannot, and is not looked for.)
    IF NOT automation._unique_index(b_customers, 'customer') THEN
        twice := (SELECT d.customer_key::text FROM automation_due d GROUP BY d.journey, d.subject, d.customer_key
                   HAVING count(*) > 1 LIMIT 1);
    END IF;
    IF twice IS NOT NULL THEN
        RAISE WARNING 'the shop''s customers have more than one row with the key %', twice
            USING DETAIL = 'The journeys take one of them, at random, for each customer due.',
                  HINT = 'Bind customers with one row per key: a table with a unique key, or a view that has one.';
        DELETE FROM automation_due d
         USING (SELECT x.ctid AS row, row_number() OVER (PARTITION BY x.journey, x.subject) AS n FROM automation_due x) x
         WHERE d.ctid = x.row AND x.n > 1;
    END IF;
    IF to_regclass('pg_temp.automation_cart') IS NOT NULL THEN
        DROP TABLE pg_temp.automation_cart;
    END IF;
    CREATE TEMP TABLE automation_cart (cart_id text, state text, line_count bigint, in_stock bigint, lines jsonb) ON COMMIT DROP;
    ANALYZE automation_due (journey, step, customer_key, channel, purpose, holdout, send_at, tz, exit_reason, trigger, includes, cart_id);
    -- Which of the optional passes below this tick needs at all, from the
    -- steps due: one read of their journeys and steps rather than a look
    -- per pass (a look that finds nothing reads every step due).
    SELECT bool_or('left_segment' = ANY (j.exit_on)), bool_or(j.purpose = 'marketing'),
           bool_or(s.at_preferred_hour), bool_or(s.discount IS NOT NULL), bool_or('order' = ANY (s.includes)),
           bool_or('cart' = ANY (s.includes)), bool_or(j.trigger = 'cart_abandoned' OR 'cart' = ANY (s.includes)),
           bool_or('ordered' = ANY (j.exit_on)), bool_or('bought' = ANY (j.exit_on)), bool_or(jsonb_array_length(s.variants) > 0),
           bool_or(s.includes && ARRAY['recommended', 'category_products', 'popular_products', 'last_order', 'also_like']),
           bool_or(j.trigger = 'cart_abandoned' AND 'converted' = ANY (j.exit_on)),
           bool_or(j.trigger = 'cart_abandoned' AND 'out_of_stock' = ANY (j.exit_on))
      INTO need_segment, need_marketing, need_hour, need_discount, need_order, need_cart, need_carts,
           need_ordered, need_bought, need_variant, need_products, need_converted, need_stock
      FROM (SELECT DISTINCT d.journey, d.step FROM automation_due d) x
      JOIN automation.journey j ON j.name = x.journey
      JOIN automation.journey_step s ON s.journey = x.journey AND s.step = x.step;

    -- Exit conditions that depend on the journey, against the live shop rows.
    -- The carts first, in one read of the carts named and their lines (not
    -- one probe per message and condition): whether each cart named is
    -- still open, how many lines it has and how many of them are in stock,
    -- and -- when a step shows the cart -- its lines for the message.  The
    -- lines of all the carts named are read in one statement, joined to the
    -- products once, and grouped per cart; sorted by cart and product as
    -- they are read, so that automation._cart_lines (src/journey.c: each
    -- line built in place, each cart's array serialized once) takes each
    -- cart's lines in product order.  The planner counts the carts named
    -- (cart_id is ANALYZEd, and named is inlined: it cannot count a
    -- materialized CTE's rows), so that many are read in one pass over the
    -- lines, hashed, and a few through the lines' index.  (Summed per cart
    -- through a LATERAL subquery, each cart read the products again, and an
    -- ORDER BY inside the aggregate sorted each cart apart.)  Whether a cart
    -- is still open is left to the planner (it hashes the open carts, and
    -- every cart the first time one named is no longer open, or probes):
    -- the shop's carts may have no index on their key.
    IF need_carts AND EXISTS (SELECT FROM automation_due d
                WHERE d.exit_reason IS NULL AND d.cart_id IS NOT NULL
                  AND (d.trigger = 'cart_abandoned' OR 'cart' = ANY (d.includes))) THEN
        b_carts := automation._src('carts', 'a cart journey');
        SELECT * INTO b_lines FROM automation.source x WHERE x.kind = 'cart_lines';
        SELECT * INTO b_products FROM automation.source x WHERE x.kind = 'products';
        lines_keyed := b_lines.kind IS NOT NULL AND automation._leads_index(b_lines, 'cart_id');
        EXECUTE format($q$
            INSERT INTO automation_cart (cart_id, state, line_count, in_stock, lines)
            WITH named AS NOT MATERIALIZED (
                SELECT d.cart_id::%1$s AS cart_id
                  FROM automation_due d
                 WHERE d.exit_reason IS NULL AND d.cart_id IS NOT NULL
                   AND (d.trigger = 'cart_abandoned' OR 'cart' = ANY (d.includes)))
            SELECT k.cart_id::text,
                   CASE WHEN EXISTS (SELECT FROM %2$s c WHERE %3$s = k.cart_id AND %4$s) THEN NULL
                        WHEN EXISTS (SELECT FROM %2$s c WHERE %3$s = k.cart_id) THEN 'converted'
                        ELSE 'cart_gone' END,
                   %5$s, %6$s, %7$s
              FROM (SELECT DISTINCT n.cart_id FROM named n) k %8$s$q$,
            b_carts.keys ->> 'cart', automation._rel(b_carts), automation._col(b_carts, 'cart_id', 'c'),
            coalesce(automation._col(b_carts, 'order_id', 'c') || ' IS NULL', 'true'),
            CASE WHEN b_lines.kind IS NULL THEN 'NULL::bigint' ELSE 'coalesce(l.line_count, 0)' END,
            CASE WHEN b_lines.kind IS NULL OR NOT coalesce(b_products.columns ? 'stock', false) THEN 'NULL::bigint'
                 ELSE 'coalesce(l.in_stock, 0)' END,
            CASE WHEN b_lines.kind IS NULL THEN 'NULL::jsonb' ELSE 'l.lines' END,
            CASE WHEN b_lines.kind IS NULL THEN '' ELSE format($j$
              LEFT JOIN (
                SELECT l.cart_id, count(*) AS line_count, count(*) FILTER (WHERE l.in_stock) AS in_stock,
                       $j$ || CASE WHEN need_cart THEN 'automation._cart_lines(l.product, l.quantity, l.name, l.price, l.only_left)'
                                   ELSE 'NULL::jsonb' END || $j$ AS lines
                  FROM (SELECT %1$s AS cart_id, %2$s AS in_stock$j$
                               || CASE WHEN need_cart THEN $j$, %3$s AS product, %4$s AS quantity, %5$s AS name,
                                   %6$s AS price, CASE WHEN %7$s <= $1 AND %7$s > 0 THEN %7$s END AS only_left$j$
                               ELSE '' END || $j$
                          FROM %8$s l %9$s
                         WHERE %1$s $j$ || CASE WHEN lines_keyed THEN '= ANY (ARRAY(SELECT n.cart_id FROM named n))'
                                                ELSE 'IN (SELECT n.cart_id FROM named n)' END || $j$
                         $j$ || CASE WHEN need_cart THEN 'ORDER BY 1, %3$s' ELSE '' END || $j$) l
                 GROUP BY 1) l ON l.cart_id = k.cart_id$j$,
                automation._col(b_lines, 'cart_id', 'l'),
                -- (a line counts as in stock when its product is known and
                -- not at zero; an unknown stock counts as some)
                CASE WHEN coalesce(b_products.columns ? 'stock', false)
                     THEN format('%s IS NOT NULL AND coalesce(%s, 1) > 0', automation._col(b_products, 'product', 'p'),
                                 automation._col(b_products, 'stock', 'p'))
                     ELSE 'false' END,
                automation._col(b_lines, 'product', 'l'), automation._col(b_lines, 'quantity', 'l'),
                coalesce(automation._col(b_products, 'name', 'p'), 'NULL::text'),
                coalesce(automation._col(b_products, 'price', 'p'), 'NULL::numeric'),
                coalesce(automation._col(b_products, 'stock', 'p'), 'NULL::numeric'),
                automation._rel(b_lines),
                CASE WHEN b_products.kind IS NULL THEN ''
                     ELSE format('LEFT JOIN %s p ON %s = %s', automation._rel(b_products),
                                 automation._col(b_products, 'product', 'p'), automation._col(b_lines, 'product', 'l')) END) END)
        USING low_stock;
        -- (its lines are only carried to the messages: not sampled)
        ANALYZE automation_cart (cart_id, state, line_count, in_stock);
        -- A cart that became an order, or that is gone or empty, ends its
        -- reminders (exit on "converted"); so does one with nothing left in
        -- stock (exit on "out_of_stock").  Looked for first, in the carts
        -- alone and for the exits the journeys due have: most carts named
        -- are still open and full, and the update would join every due step
        -- to them for none.  (A cart with nothing in stock is common: one
        -- in a hundred in the benchmark's shop, whose blast journey does not
        -- exit on it; looked for anyway, they cost that pass, 50 ms per
        -- 100,000 steps due.)
        IF EXISTS (SELECT FROM automation_cart k
                    WHERE (need_converted AND (k.state IS NOT NULL OR k.line_count = 0)) OR (need_stock AND k.in_stock = 0)) THEN
        UPDATE automation_due d
           SET send_at = NULL,
               exit_reason = CASE WHEN 'converted' = ANY (d.exit_on) AND k.state IS NOT NULL THEN k.state
                                  WHEN 'converted' = ANY (d.exit_on) AND k.line_count = 0 THEN 'cart_emptied'
                                  WHEN 'out_of_stock' = ANY (d.exit_on) AND k.in_stock = 0 THEN 'out_of_stock' END
          FROM automation_cart k
         WHERE k.cart_id = d.cart_id AND d.trigger = 'cart_abandoned' AND d.exit_reason IS NULL
           AND (('converted' = ANY (d.exit_on) AND (k.state IS NOT NULL OR k.line_count = 0))
                OR ('out_of_stock' = ANY (d.exit_on) AND k.in_stock = 0));
        END IF;
    END IF;

    -- An order since the enrollment's moment ends it.  The orders are
    -- looked up per customer through the shop's index, in customer order
    -- (the rows to update found first, by ctid): in the due steps' own order
    -- the lookups wander the index.
    IF need_ordered AND EXISTS (SELECT FROM automation_due d WHERE 'ordered' = ANY (d.exit_on) AND d.exit_reason IS NULL) THEN
        b_orders := automation._src('orders', 'the exit condition "ordered"');
        EXECUTE format($q$
            UPDATE automation_due d SET send_at = NULL, exit_reason = 'ordered'
             WHERE d.ctid = ANY (ARRAY(
                   SELECT x.ctid
                     FROM (SELECT x.ctid, x.customer_key, x.anchor_at FROM automation_due x
                            WHERE x.exit_reason IS NULL AND 'ordered' = ANY (x.exit_on)
                            ORDER BY x.customer_key OFFSET 0) x
                    WHERE EXISTS (SELECT FROM %s o WHERE %s = x.customer_key AND %s > x.anchor_at AND %s <= $1 AND %s)))$q$,
            automation._rel(b_orders), automation._col(b_orders, 'customer', 'o'), automation._ts(b_orders, 'placed_at', 'o'),
            automation._ts(b_orders, 'placed_at', 'o'), automation._counted(b_orders, 'o')) USING now;
    END IF;

    -- Bought what the journey watches (the product to replenish, the
    -- product recommended) since the purchase that started it.
    IF need_bought AND EXISTS (SELECT FROM automation_due d WHERE 'bought' = ANY (d.exit_on) AND d.exit_reason IS NULL) THEN
        b_orders := automation._src('orders', 'the exit condition "bought"');
        b_order_lines := automation._src('order_lines', 'the exit condition "bought"');
        SELECT * INTO b_products FROM automation.source x WHERE x.kind = 'products';
        EXECUTE format($q$
            UPDATE automation_due d SET send_at = NULL, exit_reason = 'bought'
             WHERE d.exit_reason IS NULL AND 'bought' = ANY (d.exit_on)
               AND EXISTS (SELECT FROM %1$s o JOIN %2$s l ON %3$s = %4$s %5$s
                            WHERE %6$s = d.customer_key AND %7$s > (d.context ->> 'purchased_at')::timestamptz
                              AND %7$s <= $1 AND %8$s
                              AND (%9$s::text IN (SELECT jsonb_array_elements_text(d.context -> 'watch_products'))
                                   OR %10$s IN (SELECT jsonb_array_elements_text(d.context -> 'watch_categories'))))$q$,
            automation._rel(b_orders), automation._rel(b_order_lines), automation._col(b_order_lines, 'order_id', 'l'),
            automation._col(b_orders, 'order_id', 'o'),
            CASE WHEN b_products.columns ? 'category'
                 THEN format('LEFT JOIN %s p ON %s = %s', automation._rel(b_products), automation._col(b_products, 'product', 'p'),
                             automation._col(b_order_lines, 'product', 'l')) ELSE '' END,
            automation._col(b_orders, 'customer', 'o'), automation._ts(b_orders, 'placed_at', 'o'),
            automation._counted(b_orders, 'o'), automation._col(b_order_lines, 'product', 'l'),
            CASE WHEN b_products.columns ? 'category' THEN automation._col(b_products, 'category', 'p') || '::text'
                 ELSE 'NULL::text' END) USING now;
    END IF;

    -- Left the segment that started it: a probe of the current members'
    -- index per step, a scalar subquery (as NOT EXISTS the planner may hash
    -- every member of every segment instead).
    IF need_segment THEN
    UPDATE automation_due d SET send_at = NULL, exit_reason = 'left_segment'
     WHERE d.exit_reason IS NULL AND 'left_segment' = ANY (d.exit_on)
       AND (SELECT true FROM automation.segment_member m
             WHERE m.segment = d.context ->> 'segment' AND m.customer_key = d.customer_key
               AND m.exited_at IS NULL LIMIT 1) IS NULL;
    END IF;

    -- What was sent before, for the guardrails below: the marketing
    -- messages queued for the due customers or sent to them (a cancelled or
    -- dead one holds nothing back).  Read once per tick, for the due
    -- customers only, through their dedupe keys (see automation.outbox_key;
    -- the customers as an array: one descent of the index each, in its
    -- order, however many are due): the archive keeps a month of messages.
    -- The caps look back no further than their longer window (horizon), and
    -- a message sent after it finished after it, so the archive is read from
    -- there on (by its finished_at index when many are due, by id when
    -- few).  Saturation looks back further, but only at a customer with at
    -- least as many keys as its limit: one with fewer cannot have sent that
    -- many.  Those older messages are looked up by id, in id order (the ids
    -- as an array): a shop that sends five a month has them for every
    -- customer due (benchmark part (g)), a small part of the archive,
    -- which one pass over it all hashed against them read in full.
    lookback := automation._caps_lookback();
    IF need_marketing AND (saturation > 0 OR lookback > interval '0') THEN
        horizon := CASE WHEN lookback > interval '0' THEN now - lookback ELSE 'infinity' END;
        IF to_regclass('pg_temp.automation_sent') IS NOT NULL THEN
            DROP TABLE pg_temp.automation_sent;
        END IF;
        -- The streaks the archive's pruning carried over (see
        -- automation.pruned_unengaged) of the due customers, when there are
        -- any: they count towards saturation as the messages on record do.
        IF to_regclass('pg_temp.automation_carried') IS NOT NULL THEN
            DROP TABLE pg_temp.automation_carried;
        END IF;
        has_carried := saturation > 0 AND EXISTS (SELECT FROM automation.pruned_unengaged);
        IF has_carried THEN
            CREATE TEMP TABLE automation_carried ON COMMIT DROP AS
            SELECT u.customer_key, u.channel, u.sends, u.first_at
              FROM automation.pruned_unengaged u
             WHERE u.customer_key = ANY (ARRAY(SELECT x.customer_key FROM automation_due x
                                                WHERE x.send_at IS NOT NULL AND x.purpose = 'marketing' AND NOT x.holdout));
            ANALYZE automation_carried;
        END IF;
        EXECUTE format($q$
            CREATE TEMP TABLE automation_sent_key ON COMMIT DROP AS
            SELECT k.message_id, $1 > 0 AND count(*) OVER (PARTITION BY k.customer_key) + %s >= $1 AS whole
              FROM automation.outbox_key k %s
             WHERE k.marketing
               AND k.customer_key = ANY (ARRAY(SELECT x.customer_key FROM automation_due x
                                                WHERE x.send_at IS NOT NULL AND x.purpose = 'marketing' AND NOT x.holdout))$q$,
            CASE WHEN has_carried THEN 'coalesce(c.sends, 0)' ELSE '0' END,
            CASE WHEN has_carried
                 THEN 'LEFT JOIN (SELECT u.customer_key, sum(u.sends) AS sends FROM pg_temp.automation_carried u GROUP BY 1) c
                              ON c.customer_key = k.customer_key'
                 ELSE '' END) USING saturation;
        ANALYZE automation_sent_key;
        CREATE TEMP TABLE automation_sent ON COMMIT DROP AS
        SELECT o.customer_key, o.channel, o.send_after, NULL::timestamptz AS finished_at
          FROM automation.outbox o
         WHERE o.id IN (SELECT k.message_id FROM automation_sent_key k)
         UNION ALL
        SELECT a.customer_key, a.channel, a.send_after, a.finished_at
          FROM automation.outbox_archive a
         WHERE a.finished_at > horizon AND a.status = 'sent'
           AND a.id IN (SELECT k.message_id FROM automation_sent_key k)
         UNION ALL
        SELECT a.customer_key, a.channel, a.send_after, a.finished_at
          FROM automation.outbox_archive a
         WHERE a.finished_at <= horizon AND a.status = 'sent'
           AND a.id = ANY (ARRAY(SELECT k.message_id FROM automation_sent_key k WHERE k.whole));
        DROP TABLE automation_sent_key;
    END IF;

    -- Customers who stopped engaging: their sent marketing messages since
    -- their last open, click or order, and the streak carried over from the
    -- pruned archive unless they engaged since it began.  Only those with
    -- at least as many on record and carried as the limit can be
    -- saturated; the engagement and orders are read for them alone.
    IF saturation > 0 AND need_marketing THEN
        EXECUTE format($q$
        UPDATE automation_due d SET send_at = NULL, skip_reason = 'saturated'
          FROM (SELECT c.customer_key, c.channel,
                       count(h.finished_at) + CASE WHEN c.engaged_at >= c.carried_from THEN 0 ELSE c.carried END AS unengaged
                  FROM (SELECT c.customer_key, c.channel, c.carried, c.carried_from, greatest(e.at, p.last_order_at) AS engaged_at
                          FROM (SELECT x.customer_key, x.channel, sum(x.carried) AS carried, min(x.carried_from) AS carried_from
                                  FROM (SELECT s.customer_key, s.channel, 0 AS carried, NULL::timestamptz AS carried_from
                                          FROM automation_sent s
                                         WHERE s.finished_at IS NOT NULL
                                        %s) x
                                 GROUP BY 1, 2
                                HAVING count(*) - count(x.carried_from) + sum(x.carried) >= $1) c
                          LEFT JOIN LATERAL (SELECT max(ev.at) AS at FROM automation.message_event ev
                                              WHERE ev.event IN ('open', 'click') AND ev.customer_key = c.customer_key) e ON true
                          LEFT JOIN automation.customer_profile p ON p.customer_key = c.customer_key) c
                  %s JOIN automation_sent h ON h.customer_key = c.customer_key AND h.channel = c.channel
                                             AND h.finished_at > coalesce(c.engaged_at, '-infinity')
                 GROUP BY c.customer_key, c.channel, c.carried, c.carried_from, c.engaged_at) u
         WHERE d.send_at IS NOT NULL AND d.purpose = 'marketing' AND NOT d.holdout
           AND u.customer_key = d.customer_key AND u.channel = d.channel AND u.unengaged >= $1$q$,
            CASE WHEN has_carried
                 THEN 'UNION ALL SELECT u.customer_key, u.channel, u.sends, u.first_at FROM pg_temp.automation_carried u'
                 ELSE '' END,
            -- (one with nothing on record since may be saturated by a streak)
            CASE WHEN has_carried THEN 'LEFT' ELSE '' END) USING saturation;
    END IF;

    -- When each message may go: now (set as the due steps were read, and
    -- cleared above by every exit and skip), or the customer's preferred
    -- hour if the step asks for it, then (marketing only) the frequency caps
    -- and quiet hours.
    IF need_hour THEN
        UPDATE automation_due d
           SET send_at = h.at, defer_reason = 'preferred_hour'
          FROM (SELECT t.ctid AS row,
                       automation._at_hour(now, t.tz, automation._preferred_hour(p.preferred_hour, t.purpose = 'marketing' AND NOT t.holdout,
                                                                                 quiet_start, quiet_end)) AS at
                  FROM automation_due t
                  JOIN automation.customer_profile p ON p.customer_key = t.customer_key
                 WHERE t.send_at IS NOT NULL AND t.at_preferred_hour AND p.preferred_hour IS NOT NULL) h
         WHERE d.ctid = h.row AND h.at > now;
    END IF;
    IF need_marketing THEN
    -- The frequency caps, from the marketing messages queued and sent to
    -- the due customers lately (since the longer of the two caps' windows:
    -- an older message holds back nothing): the minimum interval after the
    -- last one, then at most max_per_week in 7 days.
    IF min_interval > interval '0' OR max_per_week > 0 THEN
        UPDATE automation_due d
           SET send_at = c.until, defer_reason = c.reason
          FROM (SELECT t.ctid AS row, w.until, w.reason
                  FROM automation_due t
                  JOIN (SELECT x.customer_key, x.channel, max(x.send_after) AS last_sent,
                               count(*) FILTER (WHERE x.send_after > now - interval '7 days') AS week_sent,
                               min(x.send_after) FILTER (WHERE x.send_after > now - interval '7 days') AS week_oldest
                          FROM automation_sent x
                         WHERE x.send_after > horizon
                         GROUP BY 1, 2) h ON h.customer_key = t.customer_key AND h.channel = t.channel
                 CROSS JOIN LATERAL (
                       SELECT CASE WHEN min_interval > interval '0' AND h.last_sent + min_interval > t.send_at
                                   THEN h.last_sent + min_interval ELSE t.send_at END AS at) m
                 CROSS JOIN LATERAL (
                       SELECT max_per_week > 0 AND h.week_sent >= max_per_week
                              AND h.week_oldest + interval '7 days' > m.at AS week_full) wk
                 CROSS JOIN LATERAL (
                       SELECT CASE WHEN wk.week_full THEN h.week_oldest + interval '7 days' ELSE m.at END AS until,
                              CASE WHEN wk.week_full THEN 'weekly_cap' ELSE 'frequency_cap' END AS reason) w
                 WHERE t.send_at IS NOT NULL AND t.purpose = 'marketing' AND NOT t.holdout
                   AND w.until > t.send_at) c
         WHERE d.ctid = c.row;
    END IF;
    -- Two marketing messages for one customer and channel in this tick: the
    -- first (earliest due, then by journey) goes, the others wait their turn,
    -- min_interval apart; one beyond the week's allowance (max_per_week less
    -- those sent in the 7 days before) waits a week from the first, and is
    -- looked at again then.  Looked for first, in one hashed pass: usually
    -- there are none, and the turns sort every marketing message due.
    IF (min_interval > interval '0' OR max_per_week > 0)
       AND EXISTS (SELECT FROM automation_due
                    WHERE send_at IS NOT NULL AND purpose = 'marketing' AND NOT holdout
                    GROUP BY customer_key, channel HAVING count(*) > 1) THEN
    UPDATE automation_due d
       SET send_at = CASE WHEN r.week_full THEN r.first_at + interval '7 days' ELSE r.first_at + min_interval * (r.n - 1) END,
           defer_reason = CASE WHEN r.week_full THEN 'weekly_cap' ELSE 'frequency_cap' END
      FROM (SELECT t.journey, t.subject, t.n, t.first_at,
                   max_per_week > 0 AND t.n - 1 + coalesce(h.week_sent, 0) >= max_per_week AS week_full
              FROM (SELECT journey, subject, customer_key, channel, row_number() OVER w AS n, first_value(send_at) OVER w AS first_at
                      FROM automation_due
                     WHERE send_at IS NOT NULL AND purpose = 'marketing' AND NOT holdout
                    WINDOW w AS (PARTITION BY customer_key, channel ORDER BY send_at, due_at, journey, subject)) t
              -- (automation_sent was read above: with either cap on, the caps look back)
              LEFT JOIN (SELECT x.customer_key, x.channel, count(*) AS week_sent FROM automation_sent x
                          WHERE x.send_after > now - interval '7 days' GROUP BY 1, 2) h
                     ON h.customer_key = t.customer_key AND h.channel = t.channel) r
     WHERE r.journey = d.journey AND r.subject = d.subject AND r.n > 1 AND (r.week_full OR min_interval > interval '0');
    END IF;
    -- Quiet hours, worked out once per send time and time zone (most
    -- messages of a tick share both).
    IF quiet_start <> quiet_end THEN
    UPDATE automation_due d
       SET send_at = q.quiet_end, defer_reason = coalesce(d.defer_reason, 'quiet_hours')
      FROM (SELECT x.send_at, x.tz, automation._quiet_end(x.send_at, x.tz, quiet_start, quiet_end) AS quiet_end
              FROM (SELECT DISTINCT send_at, tz FROM automation_due
                     WHERE send_at IS NOT NULL AND purpose = 'marketing' AND NOT holdout) x) q
     WHERE d.send_at IS NOT NULL AND d.purpose = 'marketing' AND NOT d.holdout
       AND q.send_at = d.send_at AND q.tz = d.tz AND q.quiet_end <> q.send_at;
    END IF;
    END IF;

    -- Variants: the first condition that holds, or the split bucket.
    IF need_variant THEN
    SELECT array_agg(s.journey ORDER BY s.journey, s.step), array_agg(s.step ORDER BY s.journey, s.step),
           array_agg(s.arms ORDER BY s.journey, s.step)
      INTO variant_journeys, variant_steps, variant_arms
      -- (the splits share the buckets the holdout leaves, 0-99 rescaled
      -- over them: taken from bucket 0 up, the holdout came out of the
      -- first split alone)
      FROM (SELECT s.journey, s.step,
                   string_agg(CASE WHEN v.value ? 'when'
                                   THEN format('WHEN (%s) THEN %L', v.value ->> 'when', v.value ->> 'name')
                                   ELSE format('WHEN %1$s >= %2$s AND %1$s < %3$s THEN %4$L',
                                               CASE WHEN j.holdout_percent = 0 THEN 'bucket'
                                                    ELSE format('(bucket - %1$s) * 100.0 / (100 - %1$s)', j.holdout_percent) END,
                                               v.split_from, v.split_from + (v.value ->> 'split')::numeric, v.value ->> 'name') END,
                              ' ' ORDER BY v.ord) AS arms
              FROM automation.journey_step s
              JOIN automation.journey j ON j.name = s.journey
             CROSS JOIN LATERAL (SELECT e.value, e.ord,
                                        coalesce(sum((e.value ->> 'split')::numeric) FILTER (WHERE e.value ? 'split')
                                                 OVER (ORDER BY e.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS split_from
                                   FROM jsonb_array_elements(s.variants) WITH ORDINALITY e(value, ord)) v
             WHERE (s.journey, s.step) IN (SELECT journey, step FROM automation_due WHERE send_at IS NOT NULL)
             GROUP BY 1, 2) s;
    IF variant_arms IS NOT NULL THEN
        -- The conditions see only the context columns (automation.step_context).
        variant_sql := $q$
            UPDATE automation_due d SET variant = (
                SELECT %s
                  FROM (SELECT (ROW(
                            coalesce(p.order_count, 0), coalesce(p.total_spent, 0), coalesce(p.order_count, 0) <= 1,
                            p.lifecycle_stage, p.rfm_group, p.vip_tier,
                            ARRAY(SELECT m.segment FROM automation.segment_member m
                                   WHERE m.customer_key = d.customer_key AND m.exited_at IS NULL),
                            (d.context ->> 'cart_total')::numeric, d.context ->> 'stage',
                            (d.context ->> 'order_total')::numeric, d.bucket,
                            ARRAY(SELECT jsonb_array_elements_text(coalesce(d.context -> 'products', '[]'))),
                            ARRAY(SELECT jsonb_array_elements_text(coalesce(d.context -> 'categories', '[]'))),
                            ARRAY(SELECT t.tag FROM automation.customer_tag t WHERE t.customer_key = d.customer_key ORDER BY 1)
                            )::automation.step_context).*
                          FROM (SELECT 1) one
                          LEFT JOIN automation.customer_profile p ON p.customer_key = d.customer_key) ctx)
             WHERE d.send_at IS NOT NULL AND %s$q$;
        BEGIN
            EXECUTE format(variant_sql,
                           'CASE ' || (SELECT string_agg(format('WHEN d.journey = %L AND d.step = %s THEN (CASE %s END)',
                                                                variant_journeys[i], variant_steps[i], variant_arms[i]), ' ')
                                         FROM generate_subscripts(variant_arms, 1) i) || ' END',
                           'true');
        EXCEPTION WHEN OTHERS THEN
            -- A condition that fails on this tick's messages (a division by
            -- an order count of 0, say; checked when defined, it ran on
            -- NULLs): step by step, so that one broken step holds back its
            -- own messages only -- for an hour, with a warning naming it --
            -- and not every tick.
            FOR i IN 1 .. cardinality(variant_arms) LOOP
                BEGIN
                    EXECUTE format(variant_sql, format('CASE %s END', variant_arms[i]),
                                   format('d.journey = %L AND d.step = %s', variant_journeys[i], variant_steps[i]));
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS problem = MESSAGE_TEXT;
                    RAISE WARNING 'the variants of step % of journey "%" failed: %', variant_steps[i], variant_journeys[i], problem
                        USING DETAIL = 'Its messages due now wait an hour (decision deferred, variant_failed).',
                              HINT = 'Fix the condition: drop the journey and define it again, or pause it with automation.set_journey_enabled().';
                    UPDATE automation_due d SET send_at = now + interval '1 hour', defer_reason = 'variant_failed'
                     WHERE d.journey = variant_journeys[i] AND d.step = variant_steps[i] AND d.send_at IS NOT NULL;
                END;
            END LOOP;
        END;
    END IF;
    END IF;

    -- What the template needs beyond the step's own payload goes to
    -- "extra"; the message's payload is put together as it is written.
    IF need_discount THEN
    UPDATE automation_due d
       SET extra = d.extra || jsonb_build_object('discount', jsonb_build_object(
               'code', upper(substr(md5(d.journey || ':' || d.subject || ':' || d.step), 1, 12)),
               'percent', (d.discount ->> 'percent')::numeric,
               'expires_at', d.send_at + coalesce((d.discount ->> 'valid_for')::interval, interval '24 hours')))
     WHERE d.send_at IS NOT NULL AND d.discount IS NOT NULL;
    END IF;
    -- Products to show: the journey's recommendation, the newest or best
    -- selling of the categories bought, or related products -- never one
    -- the customer already bought.
    IF need_products AND EXISTS (SELECT FROM automation_due WHERE send_at IS NOT NULL AND includes && ARRAY['recommended', 'category_products']) THEN
        b_orders := automation._src('orders', 'a step that includes products');
        b_order_lines := automation._src('order_lines', 'a step that includes products');
        b_products := automation._src('products', 'a step that includes products');
        IF to_regclass('pg_temp.automation_top') IS NOT NULL THEN
            DROP TABLE pg_temp.automation_top;
        END IF;
        -- The candidates of every category and product named: up to 20 per
        -- category, best sellers of the last 90 days first (newest first
        -- for category_products when the products' added_at is bound).
        EXECUTE format($q$
            CREATE TEMP TABLE automation_top ON COMMIT DROP AS
            WITH wanted AS (
                SELECT DISTINCT c AS category FROM automation_due d
                 CROSS JOIN LATERAL jsonb_array_elements_text(
                       CASE WHEN 'recommended' = ANY (d.includes) THEN coalesce(d.recommend -> 'categories', '[]') ELSE '[]' END
                       || CASE WHEN 'category_products' = ANY (d.includes) THEN coalesce(d.context -> 'categories', '[]') ELSE '[]' END) c
                 WHERE d.send_at IS NOT NULL),
            named AS (
                SELECT DISTINCT x AS product FROM automation_due d
                 CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(d.recommend -> 'products', '[]')) x
                 WHERE d.send_at IS NOT NULL AND 'recommended' = ANY (d.includes)),
            products AS (
                SELECT %1$s::text AS product, %2$s::text AS name, %3$s AS price, %4$s AS category, %5$s AS added_at, %6$s AS stock
                  FROM %7$s p
                 WHERE %4$s IN (SELECT category FROM wanted) OR %1$s::text IN (SELECT product FROM named)),
            sold AS (
                SELECT %8$s::text AS product, sum(%9$s) AS units
                  FROM %10$s o JOIN %11$s l ON %12$s = %13$s
                 WHERE %14$s > $1 - interval '90 days' AND %14$s <= $1 AND %15$s
                   AND %8$s::text IN (SELECT product FROM products)
                 GROUP BY 1)
            SELECT * FROM (
                SELECT pr.*, coalesce(s.units, 0) AS units,
                       row_number() OVER (PARTITION BY pr.category ORDER BY coalesce(s.units, 0) DESC, pr.product) AS by_sales,
                       row_number() OVER (PARTITION BY pr.category ORDER BY pr.added_at DESC NULLS LAST, coalesce(s.units, 0) DESC, pr.product) AS by_age
                  FROM products pr LEFT JOIN sold s ON s.product = pr.product
                 WHERE coalesce(pr.stock, 1) > 0) t
             WHERE t.by_sales <= 20 OR t.by_age <= 20 OR t.product IN (SELECT product FROM named)$q$,
            automation._col(b_products, 'product', 'p'), automation._col(b_products, 'name', 'p'),
            coalesce(automation._col(b_products, 'price', 'p'), 'NULL::numeric'),
            coalesce(automation._col(b_products, 'category', 'p') || '::text', 'NULL::text'),
            CASE WHEN b_products.columns ? 'added_at' THEN automation._ts(b_products, 'added_at', 'p') ELSE 'NULL::timestamptz' END,
            coalesce(automation._col(b_products, 'stock', 'p'), 'NULL::numeric'),
            automation._rel(b_products), automation._col(b_order_lines, 'product', 'l'),
            automation._col(b_order_lines, 'quantity', 'l'), automation._rel(b_orders), automation._rel(b_order_lines),
            automation._col(b_order_lines, 'order_id', 'l'), automation._col(b_orders, 'order_id', 'o'),
            automation._ts(b_orders, 'placed_at', 'o'), automation._counted(b_orders, 'o')) USING now;
        UPDATE automation_due d SET extra = d.extra || jsonb_build_object('recommended', coalesce((
            SELECT jsonb_agg(jsonb_build_object('product', r.product, 'name', r.name, 'price', r.price) ORDER BY r.rank, r.product)
              FROM (SELECT r0.* FROM (
                        SELECT DISTINCT ON (t.product) t.product, t.name, t.price,
                               CASE WHEN t.product IN (SELECT jsonb_array_elements_text(coalesce(d.recommend -> 'products', '[]')))
                                    THEN 0 ELSE t.by_sales END AS rank
                          FROM automation_top t
                         WHERE (t.product IN (SELECT jsonb_array_elements_text(coalesce(d.recommend -> 'products', '[]')))
                                OR t.category IN (SELECT jsonb_array_elements_text(coalesce(d.recommend -> 'categories', '[]'))))
                           AND NOT EXISTS (SELECT FROM automation.customer_product cp
                                            WHERE cp.customer_key = d.customer_key AND cp.product = t.product)
                         ORDER BY t.product, 4) r0
                     WHERE r0.rank <= 20
                     ORDER BY r0.rank, r0.product LIMIT 3) r), '[]'::jsonb))
         WHERE d.send_at IS NOT NULL AND 'recommended' = ANY (d.includes);
        UPDATE automation_due d SET extra = d.extra || jsonb_build_object('category_products', coalesce((
            SELECT jsonb_agg(jsonb_build_object('product', r.product, 'name', r.name, 'price', r.price, 'category', r.category)
                             ORDER BY r.by_age, r.product)
              FROM (SELECT t.* FROM automation_top t
                     WHERE t.category IN (SELECT jsonb_array_elements_text(coalesce(d.context -> 'categories', '[]')))
                       AND t.product NOT IN (SELECT jsonb_array_elements_text(coalesce(d.context -> 'products', '[]')))
                       AND NOT EXISTS (SELECT FROM automation.customer_product cp
                                        WHERE cp.customer_key = d.customer_key AND cp.product = t.product)
                     ORDER BY t.by_age, t.product LIMIT 3) r), '[]'::jsonb))
         WHERE d.send_at IS NOT NULL AND 'category_products' = ANY (d.includes);
        DROP TABLE automation_top;
    END IF;
    IF need_order THEN
    UPDATE automation_due d
       SET extra = d.extra || jsonb_build_object('order', jsonb_build_object(
               'order_id', d.context -> 'order_id', 'total', d.context -> 'order_total',
               'first_order', coalesce((SELECT p.order_count <= 1 FROM automation.customer_profile p
                                         WHERE p.customer_key = d.customer_key), true)))
     WHERE d.send_at IS NOT NULL AND 'order' = ANY (d.includes);
    END IF;
    IF need_products AND EXISTS (SELECT FROM automation_due WHERE send_at IS NOT NULL AND includes && ARRAY['popular_products', 'last_order']) THEN
        b_orders := automation._src('orders', 'a step that includes products');
        b_order_lines := automation._src('order_lines', 'a step that includes products');
        SELECT * INTO b_products FROM automation.source x WHERE x.kind = 'products';
        IF EXISTS (SELECT FROM automation_due WHERE send_at IS NOT NULL AND 'popular_products' = ANY (includes)) THEN
            -- The best sellers of the last 30 days, computed at most once an
            -- hour: they read a month of order lines.
            IF NOT EXISTS (SELECT FROM automation.popular_product x
                            WHERE x.computed_for <= now AND x.computed_for > now - interval '1 hour') THEN
                DELETE FROM automation.popular_product;
                EXECUTE format($q$
                    INSERT INTO automation.popular_product (rank, product, name, sold, computed_for)
                    SELECT row_number() OVER (ORDER BY t.sold DESC, t.product), to_jsonb(t.product), t.name, t.sold, $1
                      FROM (SELECT %1$s AS product, %2$s AS name, sum(%3$s) AS sold
                              FROM %4$s o JOIN %5$s l ON %6$s = %7$s %8$s
                             WHERE %9$s > $1 - interval '30 days' AND %9$s <= $1 AND %10$s
                             GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 5) t$q$,
                    automation._col(b_order_lines, 'product', 'l'), coalesce(automation._col(b_products, 'name', 'p'), 'NULL::text'),
                    automation._col(b_order_lines, 'quantity', 'l'), automation._rel(b_orders), automation._rel(b_order_lines),
                    automation._col(b_order_lines, 'order_id', 'l'), automation._col(b_orders, 'order_id', 'o'),
                    CASE WHEN b_products.kind IS NULL THEN ''
                         ELSE format('LEFT JOIN %s p ON %s = %s', automation._rel(b_products), automation._col(b_products, 'product', 'p'),
                                     automation._col(b_order_lines, 'product', 'l')) END,
                    automation._ts(b_orders, 'placed_at', 'o'), automation._counted(b_orders, 'o')) USING now;
                GET DIAGNOSTICS popular_rows = ROW_COUNT;
                IF popular_rows = 0 THEN
                    -- nothing sold: remember that too
                    INSERT INTO automation.popular_product (rank, product, name, sold, computed_for) VALUES (0, NULL, NULL, 0, now);
                END IF;
            END IF;
            UPDATE automation_due d SET extra = d.extra || jsonb_build_object('popular_products', coalesce((
                       SELECT jsonb_agg(jsonb_build_object('product', x.product, 'name', x.name) ORDER BY x.rank)
                         FROM automation.popular_product x WHERE x.rank > 0), '[]'::jsonb))
             WHERE d.send_at IS NOT NULL AND 'popular_products' = ANY (d.includes);
        END IF;
        IF EXISTS (SELECT FROM automation_due WHERE send_at IS NOT NULL AND 'last_order' = ANY (includes)) THEN
            EXECUTE format($q$
                UPDATE automation_due d SET extra = d.extra || jsonb_build_object('last_order', coalesce((
                    SELECT jsonb_agg(jsonb_build_object('product', %1$s, 'name', %2$s, 'quantity', %3$s) ORDER BY %1$s)
                      FROM %4$s l %5$s
                     WHERE %6$s = (SELECT %7$s FROM %8$s o WHERE %9$s = d.customer_key AND %10$s <= $1 AND %11$s
                                    ORDER BY %10$s DESC LIMIT 1)), '[]'::jsonb))
                 WHERE d.send_at IS NOT NULL AND 'last_order' = ANY (d.includes)$q$,
                automation._col(b_order_lines, 'product', 'l'), coalesce(automation._col(b_products, 'name', 'p'), 'NULL::text'),
                automation._col(b_order_lines, 'quantity', 'l'), automation._rel(b_order_lines),
                CASE WHEN b_products.kind IS NULL THEN ''
                     ELSE format('LEFT JOIN %s p ON %s = %s', automation._rel(b_products), automation._col(b_products, 'product', 'p'),
                                 automation._col(b_order_lines, 'product', 'l')) END,
                automation._col(b_order_lines, 'order_id', 'l'), automation._col(b_orders, 'order_id', 'o'), automation._rel(b_orders),
                automation._col(b_orders, 'customer', 'o'), automation._ts(b_orders, 'placed_at', 'o'), automation._counted(b_orders, 'o'))
            USING now;
        END IF;
    END IF;

    IF need_products AND EXISTS (SELECT FROM automation_due WHERE send_at IS NOT NULL AND 'also_like' = ANY (includes)) THEN
        -- Related to what started the journey (the order's or cart's
        -- products), else to the customer's latest purchases, else (a new
        -- subscriber) to the popular products of the message.  (Whether the
        -- customer bought anything is a probe of customer_product's key per
        -- message, a scalar subquery: as EXISTS the planner may hash every
        -- customer's products instead.)
        SELECT * INTO b_lines FROM automation.source x WHERE x.kind = 'cart_lines';
        EXECUTE format($q$
            UPDATE automation_due d SET extra = d.extra || jsonb_build_object('also_like', automation._related_for(
                CASE WHEN jsonb_array_length(coalesce(d.context -> 'products', '[]')) > 0
                     THEN ARRAY(SELECT jsonb_array_elements_text(d.context -> 'products'))
                     %1$s
                     WHEN (SELECT true FROM automation.customer_product cp WHERE cp.customer_key = d.customer_key LIMIT 1)
                     THEN ARRAY(SELECT cp.product FROM automation.customer_product cp WHERE cp.customer_key = d.customer_key
                                 ORDER BY cp.last_purchase_at DESC, cp.product LIMIT 5)
                     ELSE ARRAY(SELECT x ->> 'product' FROM jsonb_array_elements(coalesce(d.extra -> 'popular_products', '[]')) x) END,
                3,
                ARRAY(SELECT cp.product FROM automation.customer_product cp WHERE cp.customer_key = d.customer_key)))
             WHERE d.send_at IS NOT NULL AND 'also_like' = ANY (d.includes)$q$,
            CASE WHEN b_lines.kind IS NULL THEN ''
                 ELSE format('WHEN d.context ? ''cart_id'' THEN ARRAY(SELECT %s::text FROM %s l WHERE %s = (d.context ->> ''cart_id'')::%s)',
                             automation._col(b_lines, 'product', 'l'), automation._rel(b_lines), automation._col(b_lines, 'cart_id', 'l'),
                             b_lines.keys ->> 'cart') END);
    END IF;
    -- Write the messages that go now, once per journey, subject and step
    -- (the dedupe key, taken in automation.outbox_key as enqueue takes it),
    -- and note every decision that wrote no message, in one statement.  A
    -- message written is its "sent" decision, and the enrollment moved on
    -- below its "completed" one: automation.decision_log reads them there.
    -- A key already taken is rare: a message written before under the same
    -- key, by a journey dropped and made again under its name, say, or by
    -- enqueue called with a journey's key (journey names hold no ':', so the
    -- keys of one tick are all different, and ticks never overlap).  So the
    -- new keys are inserted plainly, not looked up first, and a key taken
    -- makes the insert fail.  Then the statement runs again with the keys
    -- locked against enqueue (it waits for an enqueue's transaction) and
    -- each key looked up first: a message whose key is taken is noted
    -- "already written" instead.  (Each looked up every time, the keys of
    -- the benchmark's 88,863 messages took 0.24 s to read where unlooked-at
    -- they took 0.14, ad hoc; an INSERT ... ON CONFLICT DO NOTHING, which
    -- takes each key speculatively and confirms it, cost 0.15-0.2 s per
    -- 100,000 messages more than the look.)  The look is one descent
    -- of the keys' index per message, in a LATERAL subquery that the
    -- planner cannot turn into a hash of every key: written as EXISTS, it
    -- hashed all 5,000,000 keys of a shop with a month of history (4 s)
    -- rather than look up 75,000.  Until the keys are locked the subquery
    -- is empty, the look not made.
    LOOP
        BEGIN
            WITH go AS MATERIALIZED (
                SELECT d.journey, d.step, d.subject, d.customer_key, d.dedupe_key, d.channel, d.recipient, s.template,
                       s.payload, d.context, d.cart_id, d.first_name, d.variant, d.extra, d.includes, d.purpose, d.send_at,
                       k.written IS NOT NULL AS written,
                       CASE WHEN k.written IS NULL THEN nextval('automation.outbox_id_seq') END AS message_id,
                       CASE WHEN d.variant IS NOT NULL
                            THEN (SELECT e.value FROM jsonb_array_elements(s.variants) e WHERE e.value ->> 'name' = d.variant LIMIT 1)
                       END AS chosen
                  FROM automation_due d
                  JOIN automation.journey_step s ON s.journey = d.journey AND s.step = d.step
                  LEFT JOIN LATERAL (SELECT true AS written FROM automation.outbox_key x
                                      WHERE keys_locked AND x.dedupe_key = d.dedupe_key LIMIT 1) k ON true
                 WHERE d.send_at <= now AND NOT d.holdout),
            keys AS (
                INSERT INTO automation.outbox_key (dedupe_key, message_id, customer_key, marketing)
                SELECT g.dedupe_key, g.message_id, g.customer_key, g.purpose = 'marketing' FROM go g WHERE NOT g.written),
            ins AS (
                INSERT INTO automation.outbox AS m (id, customer_key, channel, recipient, template, payload, journey, step,
                                                    variant, purpose, dedupe_key, send_after, created_at)
                SELECT g.message_id, g.customer_key, g.channel, g.recipient, coalesce(g.chosen ->> 'template', g.template),
                       automation._message_payload(g.payload, g.chosen -> 'payload', g.context, g.first_name, g.journey, g.step,
                                                   g.variant, g.customer_key::text, g.extra, 'cart' = ANY (g.includes), cart_url,
                                                   cl.lines),
                       g.journey, g.step, g.variant, g.purpose, g.dedupe_key, g.send_at, now
                  FROM go g
                  LEFT JOIN automation_cart cl ON cl.cart_id = g.cart_id AND 'cart' = ANY (g.includes)
                 WHERE NOT g.written),
            logged AS (
                INSERT INTO automation.decision_note (at, journey, step, subject, customer_key, decision, reason, variant)
                SELECT now, d.journey, d.step, d.subject, d.customer_key,
                       CASE WHEN d.exit_reason IS NOT NULL THEN 'exited'
                            WHEN d.skip_reason IS NOT NULL THEN 'skipped'
                            WHEN d.send_at > now THEN 'deferred'
                            ELSE 'held_out' END,
                       coalesce(d.exit_reason, d.skip_reason,
                                CASE WHEN d.send_at > now THEN d.defer_reason || ' until ' || d.send_at END,
                                'holdout group'),
                       d.variant
                  FROM automation_due d
                 WHERE d.send_at IS NULL OR d.send_at > now OR d.holdout
                UNION ALL
                SELECT now, g.journey, g.step, g.subject, g.customer_key, 'sent', 'already written', g.variant
                  FROM go g
                 WHERE g.written)
            -- (counted from go, one message per row not written: the
            -- messages' rows returned by the insert were a second copy of
            -- them, and their channels sorted for the few distinct)
            SELECT coalesce(sum(x.n), 0), array_agg(x.channel ORDER BY x.channel) INTO sent, channels
              FROM (SELECT g.channel, count(*) AS n FROM go g WHERE NOT g.written GROUP BY 1) x;
            EXIT;
        EXCEPTION WHEN unique_violation THEN
            IF keys_locked THEN
                RAISE;
            END IF;
            LOCK TABLE automation.outbox_key IN SHARE ROW EXCLUSIVE MODE;
            keys_locked := true;
        END;
    END LOOP;
    IF sent > 0 THEN
        PERFORM pg_notify('automation_outbox', ch) FROM unnest(channels) ch;
    END IF;

    -- Move every enrollment on: exited, deferred, or to its next step; the
    -- ones this tick enrolled are written here, in that state (an insert,
    -- the others an update: two statements over the same moves, so that
    -- neither has to keep the moves of the other).
    -- A deferred step keeps the moment it first came due (step_due_at):
    -- its valid_for counts from there, not from the deferral.
    moved_sql := $q$
        SELECT m.*, CASE WHEN m.deferred THEN m.first_due ELSE m.due_at END AS step_due_at
          FROM (SELECT d.journey, d.subject, d.is_new, d.customer_key, d.anchor_at, d.context, d.holdout, d.bucket,
                       CASE WHEN d.exit_reason IS NOT NULL THEN 'exited'
                            WHEN d.send_at > $1 THEN 'active'
                            WHEN nx.step IS NULL THEN 'completed'
                            ELSE 'active' END AS status,
                       d.exit_reason,
                       CASE WHEN d.exit_reason IS NOT NULL THEN NULL
                            WHEN d.send_at > $1 THEN d.step
                            ELSE nx.step END AS next_step,
                       CASE WHEN d.exit_reason IS NOT NULL THEN NULL
                            WHEN d.send_at > $1 THEN d.send_at
                            WHEN nx.step IS NULL THEN NULL
                            ELSE greatest(d.due_at, coalesce(d.send_at, $1)) + nx.wait END AS due_at,
                       d.exit_reason IS NULL AND d.send_at > $1 AS deferred,
                       coalesce(d.step_due_at, d.due_at) AS first_due
                  FROM pg_temp.automation_due d
                  LEFT JOIN automation.journey_step nx ON nx.journey = d.journey AND nx.step = d.step + 1) m$q$;
    IF has_old THEN
        EXECUTE format($q$
            UPDATE automation.enrollment e
               SET status = m.status, exit_reason = m.exit_reason, next_step = m.next_step, due_at = m.due_at,
                   step_due_at = m.step_due_at, updated_at = $1
              FROM (%s) m
             WHERE NOT m.is_new AND e.journey = m.journey AND e.subject = m.subject$q$, moved_sql) USING now;
    END IF;
    -- (enrolled by this tick's enroll stage, at this moment, and none of
    -- them enrolled before: see _journey_enroll; ticks never overlap)
    IF has_new THEN
        EXECUTE format($q$
            INSERT INTO automation.enrollment AS e (journey, subject, customer_key, anchor_at, enrolled_at, context,
                                                    holdout, bucket, next_step, due_at, step_due_at, status, exit_reason, updated_at)
            SELECT m.journey, m.subject, m.customer_key, m.anchor_at, $1, m.context,
                   m.holdout, m.bucket, m.next_step, m.due_at, m.step_due_at, m.status, m.exit_reason, $1
              FROM (%s) m
             WHERE m.is_new$q$, moved_sql) USING now;
    END IF;
    TRUNCATE pg_temp.automation_enrolled;

    DROP TABLE automation_due;
    DROP TABLE automation_cart;
    IF to_regclass('pg_temp.automation_sent') IS NOT NULL THEN
        DROP TABLE pg_temp.automation_sent;
    END IF;
    IF to_regclass('pg_temp.automation_carried') IS NOT NULL THEN
        DROP TABLE pg_temp.automation_carried;
    END IF;
    RETURN sent;
END
$$;

INSERT INTO automation.tick_stage VALUES
    (30, 'enroll', 'automation._journey_enroll'),
    (40, 'steps', 'automation._journey_steps');
