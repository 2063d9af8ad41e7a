-- Segments.
--
-- A segment is a named set of customers: a SQL boolean expression over
-- automation.customer_profile (alias p) and the bound customers (alias
-- customer).  The built-in ones come with the extension; users add their
-- own with automation.define_segment().  automation.refresh_segments()
-- evaluates every segment against the profiles as they stand and records
-- who entered and who left in automation.segment_member, keeping history:
-- journeys trigger on entries.

CREATE TABLE automation.segment (
    name text NOT NULL,
    predicate text,
    description text,
    builtin boolean NOT NULL DEFAULT false,
    defined_by name NOT NULL DEFAULT current_user,
    defined_at timestamptz NOT NULL DEFAULT now(),
    refreshed_at timestamptz,
    CONSTRAINT segment_pkey PRIMARY KEY (name),
    CONSTRAINT segment_name_check CHECK (automation._is_word(name, 63)),
    CONSTRAINT segment_predicate_check CHECK (predicate IS NOT NULL OR (builtin AND name = 'newsletter_only'))
);
COMMENT ON TABLE automation.segment IS 'segments: built-in ones and those defined with automation.define_segment()';
COMMENT ON COLUMN automation.segment.defined_by IS 'the role whose privileges the predicate runs with';
-- Only the user-defined rows are configuration: the built-ins come with the extension.
SELECT pg_catalog.pg_extension_config_dump('automation.segment', 'WHERE NOT builtin');

CREATE TABLE automation.segment_member (
    segment text NOT NULL,
    customer_key text NOT NULL,
    entered_at timestamptz NOT NULL,
    exited_at timestamptz,
    CONSTRAINT segment_member_segment_fkey FOREIGN KEY (segment) REFERENCES automation.segment (name) ON DELETE CASCADE,
    CONSTRAINT segment_member_period_check CHECK (exited_at IS NULL OR exited_at >= entered_at)
);
CREATE UNIQUE INDEX segment_member_current_key ON automation.segment_member (segment, customer_key) WHERE exited_at IS NULL;
CREATE INDEX segment_member_customer_key ON automation.segment_member (customer_key);
COMMENT ON TABLE automation.segment_member IS 'who was in which segment when: current members have exited_at NULL';
-- Membership history is state journeys depend on: pg_dump keeps it.
SELECT pg_catalog.pg_extension_config_dump('automation.segment_member', '');

-- The customers whose profiles were written, removed or rescored since the
-- segments were last evaluated (automation.refresh_profiles records them):
-- a tick evaluates the segments for these alone when nothing else they read
-- changed.  And when the segments were last evaluated for everybody.
CREATE TABLE automation.segment_dirty (
    customer_key text NOT NULL,
    CONSTRAINT segment_dirty_pkey PRIMARY KEY (customer_key)
);
COMMENT ON TABLE automation.segment_dirty IS 'customers whose profiles changed since the segments were last evaluated';
CREATE TABLE automation.segment_evaluation (
    full_at timestamptz NOT NULL
);
COMMENT ON TABLE automation.segment_evaluation IS 'when the segments were last evaluated for every customer';

-- The row type automation.segment_members() returns: a customer key of the
-- shop's own type (automation._retype_keys() retypes it with the tables).
CREATE TYPE automation.segment_key AS (customer_key text);

INSERT INTO automation.segment (name, predicate, description, builtin) VALUES
    ('new', 'p.order_count = 1', 'exactly one order', true),
    ('returning', 'p.order_count >= 2 AND p.order_count < automation._setting(''loyal_orders'', ''3'')::int',
     'two orders (up to automation.loyal_orders)', true),
    ('loyal', 'p.order_count >= automation._setting(''loyal_orders'', ''3'')::int', 'automation.loyal_orders (3) or more orders', true),
    ('vip', 'p.vip_tier IS NOT NULL', 'previous quarter spend at least automation.vip_threshold (500)', true),
    ('vip_gold', 'p.vip_tier = ''gold''', 'previous quarter spend at least automation.vip_gold_threshold (750)', true),
    ('lapsing', 'p.lifecycle_stage = ''lapsing''',
     'no order for longer than automation.lapsing_factor (2) x their own mean gap, and at least automation.lapsing_min_days (30)', true),
    ('lost', 'p.lifecycle_stage = ''lost''', 'no order for automation.lost_days (365)', true),
    ('champions', 'p.rfm_group = ''champions''', 'RFM: R 4-5, F 4-5', true),
    ('loyal_customers', 'p.rfm_group = ''loyal_customers''', 'RFM: R 3, F 4-5', true),
    ('potential_loyalist', 'p.rfm_group = ''potential_loyalist''', 'RFM: R 3-5, F 2-3', true),
    ('recent_customers', 'p.rfm_group = ''recent_customers''', 'RFM: R 4-5, F 1', true),
    ('promising', 'p.rfm_group = ''promising''', 'RFM: R 3, F 1', true),
    ('at_risk', 'p.rfm_group = ''at_risk''', 'RFM: R 1-2, F 3-4', true),
    ('cant_lose', 'p.rfm_group = ''cant_lose''', 'RFM: R 1-2, F 5', true),
    ('about_to_sleep', 'p.rfm_group = ''about_to_sleep''', 'RFM: R 2, F 1-2', true),
    ('hibernating', 'p.rfm_group = ''hibernating''', 'RFM: R 1, F 1-2', true),
    ('newsletter_only', NULL, 'signed up for the newsletter, never ordered', true);

CREATE FUNCTION automation._check_predicate(query text, relations regclass[], role name)
RETURNS void
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'automation_check_predicate';
REVOKE ALL ON FUNCTION automation._check_predicate(text, regclass[], name) FROM PUBLIC;

CREATE FUNCTION automation._select_as(role name, query text, key anyelement)
RETURNS SETOF anyelement
LANGUAGE c
AS 'MODULE_PATHNAME', 'automation_select_as';
REVOKE ALL ON FUNCTION automation._select_as(name, text, anyelement) FROM PUBLIC;

-- _segment_query(predicate, definer): the query that evaluates a predicate;
-- its first column is the customer key, its second the predicate's value.
-- The bound customers are joined (alias customer) when the definer may read
-- them.  Also returns the relations the query reads.  It only builds text;
-- it runs as the extension's owner to read the customers binding.
CREATE FUNCTION automation._segment_query(predicate text, definer name, OUT query text, OUT relations regclass[])
RETURNS record
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c automation.source;
    rel regclass;
BEGIN
    query := format(E'SELECT p.customer_key, (%s\n) FROM automation.customer_profile p', predicate);
    relations := ARRAY['automation.customer_profile'::regclass];
    SELECT * INTO c FROM automation.source s WHERE s.kind = 'customers';
    IF FOUND THEN
        rel := to_regclass(format('%I.%I', c.relation_schema, c.relation_name));
        IF rel IS NOT NULL AND has_schema_privilege(definer, c.relation_schema, 'USAGE')
           AND has_table_privilege(definer, rel, 'SELECT') THEN
            query := query || format(' LEFT JOIN %s customer ON customer.%I = p.customer_key', rel, c.columns ->> 'customer');
            relations := relations || rel;
        END IF;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION automation._segment_query(text, name) FROM PUBLIC;

-- define_segment(name, predicate, description): adds a user segment.  The
-- predicate is checked at once, with the caller's privileges, and later
-- evaluated with them (automation._store_segment() checks and writes it).
CREATE FUNCTION automation.define_segment(name text, predicate text, description text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR predicate IS NULL THEN
        RAISE EXCEPTION 'name and predicate must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._store_segment(name, predicate, description, current_user);
END
$$;
COMMENT ON FUNCTION automation.define_segment(text, text, text) IS 'define a segment by a boolean SQL expression over customer_profile (p) and the bound customers (customer)';

-- _store_segment: checks a user segment's name and predicate and writes it.  The
-- role it will be evaluated as must be one the session could act as
-- anyway, and the predicate is checked -- and run on one row -- as that
-- role, whoever calls: an analyst may call this directly.
CREATE FUNCTION automation._store_segment(name text, predicate text, description text, definer name)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q record;
BEGIN
    IF name IS NULL OR predicate IS NULL OR definer IS NULL THEN
        RAISE EXCEPTION 'name, predicate and definer must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT automation._is_word(name, 63) THEN
        RAISE EXCEPTION 'invalid segment name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'A segment name is lowercase letters, digits and underscores, starting with a letter, at most 63 characters.';
    END IF;
    IF EXISTS (SELECT FROM automation.segment s WHERE s.name = _store_segment.name) THEN
        RAISE EXCEPTION 'segment "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = CASE WHEN (SELECT s.builtin FROM automation.segment s WHERE s.name = _store_segment.name)
                              THEN 'Built-in segments cannot be redefined; choose another name.'
                              ELSE format('Drop it first with automation.drop_segment(%L).', name) END;
    END IF;
    IF NOT pg_has_role(session_user, definer, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to define a segment evaluated as role "%"', definer
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO q FROM automation._segment_query(predicate, definer);
    BEGIN
        PERFORM automation._check_predicate(q.query, q.relations, definer);
    EXCEPTION WHEN undefined_table THEN
        -- (no "customer" to read: say why, rather than that a FROM clause
        -- the user never wrote lacks it)
        IF cardinality(q.relations) > 1 OR SQLERRM NOT LIKE '%FROM-clause entry for table "customer"%' THEN
            RAISE;
        END IF;
        RAISE EXCEPTION 'the predicate reads the bound customers (customer.), which %',
                        CASE WHEN NOT EXISTS (SELECT FROM automation.source s WHERE s.kind = 'customers')
                             THEN 'are not bound'
                             ELSE format('role %I cannot read', definer) END
            USING ERRCODE = 'undefined_table',
                  HINT = CASE WHEN NOT EXISTS (SELECT FROM automation.source s WHERE s.kind = 'customers')
                              THEN 'Bind them first with automation.bind_customers(), or use the profile''s columns (p.) alone.'
                              ELSE 'Grant the role SELECT on them (and USAGE on their schema), or use the profile''s columns (p.) alone.' END;
    END;
    INSERT INTO automation.segment (name, predicate, description, builtin, defined_by, defined_at)
    VALUES (name, predicate, description, false, definer, now());
END
$$;
REVOKE ALL ON FUNCTION automation._store_segment(text, text, text, name) FROM PUBLIC;

-- drop_segment(name): removes a user segment and its membership history.
-- The role that defined it (or a member of it) may drop it.
CREATE FUNCTION automation.drop_segment(name text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    existing automation.segment;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO existing FROM automation.segment s WHERE s.name = drop_segment.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'segment "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    IF existing.builtin THEN
        RAISE EXCEPTION 'segment "%" is built in', name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Built-in segments come with the extension and cannot be dropped.';
    END IF;
    IF NOT pg_has_role(session_user, existing.defined_by, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to drop segment "%"', name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('It was defined by role %I.', existing.defined_by);
    END IF;
    -- (a journey that enrolls its members would never enroll anyone again,
    -- and would take a segment defined later under the name for this one)
    IF EXISTS (SELECT FROM automation.journey j WHERE j.trigger_options ->> 'segment' = drop_segment.name) THEN
        RAISE EXCEPTION 'cannot drop segment "%": journeys enroll its members', name
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = 'Journeys on it: ' || (SELECT string_agg(j.name, ', ' ORDER BY j.name) FROM automation.journey j
                                                   WHERE j.trigger_options ->> 'segment' = drop_segment.name) || '.',
                  HINT = 'Drop them first with automation.drop_journey().';
    END IF;
    DELETE FROM automation.segment s WHERE s.name = drop_segment.name;
END
$$;
COMMENT ON FUNCTION automation.drop_segment(text) IS 'remove a user-defined segment and its membership history';

-- _clock(): the engine's clock, the segments' last refresh (as a rule the
-- last tick's moment); NULL before the first.
CREATE FUNCTION automation._clock()
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT max(s.refreshed_at) FROM automation.segment s $$;
REVOKE ALL ON FUNCTION automation._clock() FROM PUBLIC;

-- _check_clock(now, action[, last]): refuses a moment before the segments' last
-- refresh.  Entries and exits are recorded at the moment of the refresh
-- that finds them, so the membership history -- and the journeys that
-- follow it -- only moves forward: evaluated at an earlier moment, members
-- would leave before they entered.  The tick asks first, before its
-- stages read anything, and passes the clock it has read as last.
CREATE FUNCTION automation._check_clock(now timestamptz, action text, last timestamptz DEFAULT automation._clock())
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF now < last THEN
        RAISE EXCEPTION 'cannot % at %: the segments were refreshed later, at %', action, now, last
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Segment entries and exits, and the journeys that follow them, are recorded forward in time.',
                  HINT = 'Pass a moment at or after the last refresh.';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION automation._check_clock(timestamptz, text, timestamptz) FROM PUBLIC;

-- refresh_segments(now): evaluates every segment against the profiles and
-- records entries (entered_at = now) and exits (exited_at = now).  Returns
-- the number of entries and exits recorded.
CREATE FUNCTION automation.refresh_segments(now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT automation._retype_keys();
    SELECT automation._refresh_segments(now, false);
$$;
COMMENT ON FUNCTION automation.refresh_segments(timestamptz) IS 'evaluate every segment against the profiles; record entries and exits; returns how many';

-- _refresh_segments(now, incremental): refresh_segments; with incremental,
-- only for the customers in automation.segment_dirty -- exact when nothing
-- but their profiles changed since the last evaluation (automation._tick_segments
-- decides).  Either way the dirty customers are taken.
CREATE FUNCTION automation._refresh_segments(now timestamptz, incremental boolean)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys text[];
    only_keys text;
    key_type text;
    s automation.segment;
    q record;
    query text;
    su automation.source;
    entered bigint;
    exited bigint;
    changes bigint := 0;
    problem text;
    refreshed text[] := '{}';
    names text[] := '{}';
    roles name[] := '{}';
    queries text[] := '{}';
    builtins boolean[] := '{}';
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(now, 'now');
    PERFORM automation._load();
    key_type := automation.customer_key_type()::text;
    IF key_type IS NULL THEN
        RAISE EXCEPTION 'no customers or orders are bound'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Bind the shop''s orders with automation.bind_orders() and call automation.refresh_profiles() first.';
    END IF;
    LOCK TABLE automation.segment_member IN SHARE ROW EXCLUSIVE MODE;
    PERFORM automation._check_clock(now, 'refresh the segments');
    WITH d AS (DELETE FROM automation.segment_dirty RETURNING customer_key)
    SELECT array_agg(d.customer_key::text) INTO keys FROM d;
    IF incremental THEN
        IF keys IS NULL THEN
            RETURN 0;
        END IF;
        only_keys := format('%L::%s[]', keys, key_type);
    ELSE
        DELETE FROM automation.segment_evaluation;
        INSERT INTO automation.segment_evaluation (full_at) VALUES (now);
    END IF;

    -- Each segment's query, and the role it is read as.
    FOR s IN SELECT * FROM automation.segment ORDER BY name LOOP
        IF s.predicate IS NOT NULL THEN
            q := automation._segment_query(s.predicate, s.defined_by);
            query := format('SELECT k FROM (%s) m(k, member) WHERE member', q.query);
        ELSE
            -- newsletter_only: signed up, never ordered; read as the role that bound the sign-ups
            SELECT * INTO su FROM automation.source x WHERE x.kind = 'signups';
            IF NOT FOUND THEN
                query := format('SELECT NULL::%s WHERE false', key_type);
            ELSE
                query := format('SELECT DISTINCT g.%1$I FROM %2$I.%3$I g WHERE g.%1$I IS NOT NULL '
                                'AND NOT EXISTS (SELECT FROM automation.customer_profile p WHERE p.customer_key = g.%1$I)',
                                su.columns ->> 'customer', su.relation_schema, su.relation_name);
                s.defined_by := su.bound_by;
            END IF;
        END IF;
        IF incremental THEN
            query := format('SELECT k FROM (%s) x(k) WHERE k = ANY (%s)', query, only_keys);
        END IF;
        names := names || s.name;
        roles := roles || s.defined_by;
        queries := queries || query;
        builtins := builtins || s.builtin;
    END LOOP;

    -- For the few customers noted (the usual tick), every segment in one
    -- statement: a statement for each cost a new session (every pg_cron
    -- run) more in parsing and planning than the segments' own queries.
    -- The current members are looked up one (segment, customer) pair at a
    -- time, each one probe of the unique index on the pair, written as
    -- scalar subqueries so that they stay probes: as a join or an anti join
    -- planned on stale statistics (the first ticks after the members were
    -- written), the statement read every member there is.
    -- Should any segment fail, that statement is undone, and the segments
    -- are evaluated one at a time below, where a broken user segment keeps
    -- its members and the others go on.  (A segment stopped by
    -- automation.segment_timeout is then run, and stopped, a second time.)
    IF incremental THEN
        BEGIN
            EXECUTE format(
                'WITH cur AS (SELECT DISTINCT x.segment, k FROM unnest($1::text[], $2::name[], $3::text[]) x(segment, role, query) '
                '               CROSS JOIN LATERAL automation._select_as(x.role, x.query, NULL::%1$s) k WHERE k IS NOT NULL), '
                'ex AS (UPDATE automation.segment_member m SET exited_at = $4 '
                '        WHERE m.ctid = ANY (ARRAY(SELECT (SELECT c.ctid FROM automation.segment_member c '
                '                                           WHERE c.segment = s.name AND c.customer_key = k.key '
                '                                             AND c.exited_at IS NULL) '
                '                                    FROM unnest($1::text[]) s(name), unnest(%2$s) k(key))) '
                '          AND (m.segment, m.customer_key) NOT IN (SELECT cur.segment, cur.k FROM cur) RETURNING 1), '
                'en AS (INSERT INTO automation.segment_member (segment, customer_key, entered_at) '
                '       SELECT cur.segment, cur.k, $4 FROM cur '
                '        WHERE (SELECT true FROM automation.segment_member m '
                '                WHERE m.segment = cur.segment AND m.customer_key = cur.k AND m.exited_at IS NULL) IS NULL '
                '       RETURNING 1) '
                'SELECT (SELECT count(*) FROM en) + (SELECT count(*) FROM ex)',
                key_type, only_keys)
              INTO changes
              USING names, roles, queries, now;
            UPDATE automation.segment x SET refreshed_at = now WHERE x.name = ANY (names);
            RETURN changes;
        EXCEPTION WHEN OTHERS THEN
            changes := 0;
        END;
    END IF;

    FOR i IN 1..coalesce(cardinality(names), 0) LOOP
        -- The entries are distinct: customers bound with a key that is not
        -- unique in the shop's table give a member once per row.
        -- NOT IN over a hashed subplan, not NOT EXISTS: membership changes
        -- in bulk between statistics, and an anti join planned on a
        -- one-row estimate turns into a nested loop over every member.
        -- Incremental: the same for the dirty customers alone.
        BEGIN
        EXECUTE format(
            'WITH cur AS (SELECT k FROM automation._select_as($1, $2, NULL::%1$s) k WHERE k IS NOT NULL), '
            'ex AS (UPDATE automation.segment_member m SET exited_at = $3 '
            '        WHERE m.segment = $4 AND m.exited_at IS NULL %2$s '
            '          AND m.customer_key NOT IN (SELECT k FROM cur) RETURNING 1), '
            'en AS (INSERT INTO automation.segment_member (segment, customer_key, entered_at) '
            '       SELECT DISTINCT $4, cur.k, $3 FROM cur WHERE cur.k NOT IN '
            '         (SELECT m.customer_key FROM automation.segment_member m '
            '           WHERE m.segment = $4 AND m.exited_at IS NULL %2$s) '
            '       RETURNING 1) '
            'SELECT (SELECT count(*) FROM en), (SELECT count(*) FROM ex)',
            key_type, CASE WHEN incremental THEN format('AND m.customer_key = ANY (%s)', only_keys) ELSE '' END)
          INTO entered, exited
          USING roles[i], queries[i], now, names[i];
        EXCEPTION WHEN OTHERS THEN
            -- one broken user segment (a column gone, a privilege revoked)
            -- keeps its members as they were and does not stop the others
            IF builtins[i] THEN
                RAISE;
            END IF;
            GET STACKED DIAGNOSTICS problem = MESSAGE_TEXT;
            RAISE WARNING 'segment "%" was not refreshed: %', names[i], problem
                USING HINT = format('Fix or drop it with automation.drop_segment(%L).', names[i]);
            CONTINUE;
        END;
        refreshed := refreshed || names[i];
        changes := changes + entered + exited;
    END LOOP;
    UPDATE automation.segment x SET refreshed_at = now WHERE x.name = ANY (refreshed);
    RETURN changes;
END
$$;
REVOKE ALL ON FUNCTION automation._refresh_segments(timestamptz, boolean) FROM PUBLIC;

-- segment_members(name): the current members of a segment, as customer keys
-- of the shop's own type.
CREATE FUNCTION automation.segment_members(name text)
RETURNS SETOF automation.segment_key
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM automation.segment s WHERE s.name = segment_members.name) THEN
        RAISE EXCEPTION 'segment "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See automation.segment_sizes for the segments there are.';
    END IF;
    RETURN QUERY SELECT m.customer_key FROM automation.segment_member m
                  WHERE m.segment = segment_members.name AND m.exited_at IS NULL
                  ORDER BY m.customer_key;
END
$$;
COMMENT ON FUNCTION automation.segment_members(text) IS 'the current members of a segment, as customer keys of the shop''s type';

CREATE VIEW automation.segment_sizes AS
SELECT s.name,
       s.builtin,
       count(m.*) FILTER (WHERE m.exited_at IS NULL) AS members,
       count(m.*) FILTER (WHERE m.entered_at = s.refreshed_at) AS entered,
       count(m.*) FILTER (WHERE m.exited_at = s.refreshed_at) AS exited,
       s.refreshed_at,
       s.description
  FROM automation.segment s
  LEFT JOIN automation.segment_member m
    ON m.segment = s.name AND (m.exited_at IS NULL OR m.exited_at = s.refreshed_at)
 GROUP BY s.name, s.builtin, s.refreshed_at, s.description
 ORDER BY s.builtin DESC, s.name;
COMMENT ON VIEW automation.segment_sizes IS 'each segment''s current size, and who entered and exited at its last refresh';

INSERT INTO automation.access_rule VALUES
    ('analyst', 'automation.segment', 'SELECT'),
    ('analyst', 'automation.segment_member', 'SELECT'),
    ('analyst', 'automation.segment_sizes', 'SELECT'),
    ('analyst', 'FUNCTION automation.segment_members(text)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation.define_segment(text, text, text)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation.drop_segment(text)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation._segment_query(text, name)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation._store_segment(text, text, text, name)', 'EXECUTE');

-- Tick stages (automation.tick_stage rows, function(now) returning bigint):
-- profiles incrementally first, segments after the stages that feed them
-- (35_profile_tick.sql); both do nothing until orders are bound.
CREATE FUNCTION automation._tick_profiles(now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reason text;
BEGIN
    IF NOT EXISTS (SELECT FROM automation.source s WHERE s.kind = 'orders') THEN
        RETURN 0;
    END IF;
    -- A full refresh empties the profiles and rebuilds their indexes, which
    -- waits for every reader: one left open (an analyst's) would hold the
    -- tick, and every tick after it -- and every query of the profiles
    -- would queue behind the tick's wait.  The refresh waits for the next
    -- tick instead; the profiles stay as they are meanwhile.
    reason := automation._full_refresh_reason(now);
    IF reason IS NOT NULL AND NOT automation._try_lock('automation.customer_profile', 'ACCESS EXCLUSIVE') THEN
        RAISE WARNING 'the profiles were not refreshed: a full refresh is due (%), and another transaction is using automation.customer_profile', reason
            USING DETAIL = 'See pg_locks; the next tick tries again.';
        RETURN 0;
    END IF;
    RETURN automation._refresh_profiles(false, now, reason IS NULL);
END
$$;
REVOKE ALL ON FUNCTION automation._tick_profiles(timestamptz) FROM PUBLIC;

-- The tick evaluates the segments again when what they read may have
-- changed since the last evaluation, and at least once an hour (the bound
-- customers' own columns, such as consent, are not watched).  When only some
-- profiles were written or rescored -- the usual tick of a busy shop -- it
-- evaluates them for those customers alone; when profiles were refreshed or
-- scored in full, predictions scored, purchase patterns learned, a customer
-- tagged, or a segment is new, for everybody.
CREATE FUNCTION automation._tick_segments(now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    last timestamptz;
    last_full timestamptz;
    everybody boolean;
BEGIN
    IF NOT EXISTS (SELECT FROM automation.source s WHERE s.kind = 'orders') THEN
        RETURN 0;
    END IF;
    last := automation._clock();
    last_full := (SELECT max(e.full_at) FROM automation.segment_evaluation e);
    -- (never before the last refresh: automation.tick() checked)
    IF last IS NULL OR last_full IS NULL OR now >= last_full + interval '1 hour'
       OR EXISTS (SELECT FROM automation.segment s WHERE s.refreshed_at IS NULL)
       OR EXISTS (SELECT FROM automation.profile_refresh r WHERE r.as_of > last AND r.full_refresh)
       OR (SELECT t.scored_at FROM automation.profile_threshold t) > last
       OR EXISTS (SELECT FROM automation.lifecycle_refresh r WHERE r.as_of > last)
       OR EXISTS (SELECT FROM automation.basket_rule r WHERE r.tagged_at > last)
       OR automation._scored_at() > last
       -- so many changed that one pass over everybody is cheaper
       OR (SELECT count(*) FROM (SELECT FROM automation.segment_dirty LIMIT 50001) x) > 50000 THEN
        everybody := true;
    ELSE
        -- Nothing changed (most ticks): no retyping, no lock on the members.
        IF NOT EXISTS (SELECT FROM automation.segment_dirty) THEN
            RETURN 0;
        END IF;
        everybody := false;
    END IF;
    -- A transaction that changes the members and stays open -- an
    -- analyst's drop_segment, say -- would hold the tick, and every tick
    -- after it (they find the tick lock taken): the segments wait for the
    -- next tick instead, and keep their members meanwhile.
    IF NOT automation._try_lock('automation.segment_member', 'SHARE ROW EXCLUSIVE') THEN
        RAISE WARNING 'the segments were not evaluated: another transaction is changing their members'
            USING DETAIL = 'It holds a lock on automation.segment_member (see pg_locks); the next tick tries again.';
        RETURN 0;
    END IF;
    RETURN automation._refresh_segments(now, NOT everybody);
END
$$;
REVOKE ALL ON FUNCTION automation._tick_segments(timestamptz) FROM PUBLIC;
