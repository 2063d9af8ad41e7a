-- Customer profiles.
--
-- automation.refresh_profiles() reads the bound orders (and order lines) in
-- one pass in C (src/profile.c) and writes one row per customer who has at
-- least one counted order to automation.customer_profile.  A full refresh
-- rebuilds every row; an incremental refresh re-profiles only the customers
-- whose orders changed (recorded by the change-capture triggers that
-- automation.enable_change_capture() installs) and those whose time windows
-- moved, then re-derives the population-wide columns (RFM scores, lifecycle
-- stage, VIP tier, loyalty points) set-based with the same rules as the pass.

CREATE TABLE automation.customer_profile (
    customer_key text NOT NULL,
    first_order_at timestamptz NOT NULL,
    last_order_at timestamptz NOT NULL,
    order_count integer NOT NULL,
    total_spent numeric NOT NULL,
    spent_90d numeric NOT NULL,
    spent_365d numeric NOT NULL,
    spent_prev_quarter numeric NOT NULL,
    mean_gap_days double precision,
    gap_stddev_days double precision,
    preferred_hour smallint NOT NULL,
    timezone text NOT NULL,
    r_score smallint,
    f_score smallint,
    m_score smallint,
    rfm_group text,
    lifecycle_stage text NOT NULL,
    vip_tier text,
    loyalty_points bigint NOT NULL,
    categories text[],
    refreshed_at timestamptz NOT NULL,
    next_change_at timestamptz,
    CONSTRAINT customer_profile_pkey PRIMARY KEY (customer_key),
    CONSTRAINT customer_profile_order_count_check CHECK (order_count > 0),
    CONSTRAINT customer_profile_order_span_check CHECK (first_order_at <= last_order_at),
    CONSTRAINT customer_profile_spent_check CHECK (total_spent >= 0 AND spent_90d >= 0 AND spent_365d >= 0 AND spent_prev_quarter >= 0),
    CONSTRAINT customer_profile_preferred_hour_check CHECK (preferred_hour BETWEEN 0 AND 23),
    CONSTRAINT customer_profile_score_check CHECK (r_score BETWEEN 1 AND 5 AND f_score BETWEEN 1 AND 5 AND m_score BETWEEN 1 AND 5),
    CONSTRAINT customer_profile_lifecycle_stage_check CHECK (lifecycle_stage IN ('new', 'returning', 'loyal', 'lapsing', 'lost')),
    CONSTRAINT customer_profile_vip_tier_check CHECK (vip_tier IN ('vip', 'gold'))
) WITH (fillfactor = 90);
-- The fillfactor leaves room on each page for scoring a profile again in
-- place: the scores are in no index, so the update is HOT and writes no
-- index entry (the daily rescore of every profile, the few rescored after
-- an incremental refresh).
-- _profile_indexes(): the secondary indexes of customer_profile.  A full
-- refresh drops them and builds them again after writing every profile:
-- a built index costs a sort, one kept up row by row costs a random write
-- per profile and index (seconds each at a million profiles).
CREATE FUNCTION automation._profile_indexes()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- win-back journeys (the inactivity trigger) look for last orders by
    -- time; an incremental refresh moves the RFM thresholds along all three
    -- measures, and finds the profiles whose time has come (without that
    -- index every tick would read every profile to learn that none has)
    CREATE INDEX customer_profile_last_order_at_idx ON automation.customer_profile (last_order_at);
    CREATE INDEX customer_profile_order_count_idx ON automation.customer_profile (order_count);
    CREATE INDEX customer_profile_total_spent_idx ON automation.customer_profile (total_spent);
    CREATE INDEX customer_profile_next_change_at_idx ON automation.customer_profile (next_change_at);
END
$$;
REVOKE ALL ON FUNCTION automation._profile_indexes() FROM PUBLIC;
SELECT automation._profile_indexes();
COMMENT ON TABLE automation.customer_profile IS 'one row per customer with a counted order, written by automation.refresh_profiles()';
COMMENT ON COLUMN automation.customer_profile.spent_90d IS 'spend in the 90 x 24 hours up to the refresh''s now';
COMMENT ON COLUMN automation.customer_profile.spent_prev_quarter IS 'spend in the previous calendar quarter, quarters taken in automation.default_timezone';
COMMENT ON COLUMN automation.customer_profile.preferred_hour IS 'the hour of day (customer''s own time zone) the customer most often orders at; ties go to the earliest hour';
COMMENT ON COLUMN automation.customer_profile.next_change_at IS 'when the profile next changes with no new order: one of the customer''s orders leaves the 90-day or 365-day window, an order placed ahead of the refresh''s now comes due, or the lifecycle stage moves to lapsing or lost; an incremental refresh re-profiles the customer then';
COMMENT ON COLUMN automation.customer_profile.timezone IS 'the time zone preferred_hour is in: the bound customers'' time zone column, else automation.default_timezone';

-- Customers whose orders changed since the last refresh, recorded by the
-- change-capture triggers, and customers whose only orders were placed
-- ahead of the last refresh's now, recorded by the pass.  Drained by
-- refresh_profiles().
CREATE TABLE automation.dirty_customer (
    customer_key text NOT NULL,
    CONSTRAINT dirty_customer_pkey PRIMARY KEY (customer_key)
);
COMMENT ON TABLE automation.dirty_customer IS 'customers whose orders changed since the last profile refresh (change capture)';

-- One row per refresh: what it did and what it skipped.
CREATE TABLE automation.profile_refresh (
    refresh_id bigint GENERATED ALWAYS AS IDENTITY,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    as_of timestamptz NOT NULL,
    full_refresh boolean NOT NULL,
    reason text,
    customers bigint NOT NULL,
    orders_read bigint NOT NULL,
    skipped_null_customer bigint NOT NULL,
    skipped_null_time bigint NOT NULL,
    skipped_bad_total bigint NOT NULL,
    rescored boolean NOT NULL DEFAULT true,
    duration interval NOT NULL,
    timezone text,
    CONSTRAINT profile_refresh_pkey PRIMARY KEY (refresh_id)
);
COMMENT ON TABLE automation.profile_refresh IS 'log of profile refreshes: mode, customers written, orders read and bad orders skipped';
COMMENT ON COLUMN automation.profile_refresh.timezone IS 'automation.default_timezone as the refresh read it: the zone of the quarters, the days and the preferred hours of customers without their own';
COMMENT ON COLUMN automation.profile_refresh.rescored IS 'whether the population-wide columns were derived again (an incremental refresh that changed no profile skips it within the day of the last one)';

-- The RFM thresholds the profiles were last scored with, and where each
-- falls among the profiles: how many have a value below it, how many up to
-- it.  With these an incremental refresh finds the new thresholds from the
-- changed profiles alone (automation._rescore_changed).  One row, written
-- whenever every profile is scored (scored_at: that refresh's now); the
-- thresholds are NULL when there were no profiles.
CREATE TABLE automation.profile_threshold (
    singleton boolean NOT NULL DEFAULT true,
    scored_at timestamptz NOT NULL,
    profiles bigint NOT NULL,
    r timestamptz[],
    r_below bigint[],
    r_upto bigint[],
    f integer[],
    f_below bigint[],
    f_upto bigint[],
    m numeric[],
    m_below bigint[],
    m_upto bigint[],
    CONSTRAINT profile_threshold_pkey PRIMARY KEY (singleton),
    CONSTRAINT profile_threshold_singleton_check CHECK (singleton),
    CONSTRAINT profile_threshold_size_check CHECK (cardinality(r) = 4 AND cardinality(f) = 4 AND cardinality(m) = 4)
);
COMMENT ON TABLE automation.profile_threshold IS 'the RFM quintile thresholds of the profiles, with the count of profiles below and up to each, and when every profile was last scored';

CREATE FUNCTION automation._profile_pass(orders_query text, zones_query text, categories_query text,
                                         category_names_query text, keys anyarray, now timestamptz, full_refresh boolean,
                                         windows timestamptz[], bound_by name, lines_query text DEFAULT NULL,
                                         products_query text DEFAULT NULL)
RETURNS SETOF automation.customer_profile
LANGUAGE c
AS 'MODULE_PATHNAME', 'automation_profile_pass';

CREATE FUNCTION automation._profile_pass_counts(OUT orders_read bigint, OUT skipped_null_customer bigint,
                                                OUT skipped_null_time bigint, OUT skipped_bad_total bigint)
RETURNS record
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'automation_profile_pass_counts';

CREATE FUNCTION automation._profile_pass_thresholds(OUT profiles bigint,
                                                    OUT r timestamptz[], OUT r_below bigint[], OUT r_upto bigint[],
                                                    OUT f integer[], OUT f_below bigint[], OUT f_upto bigint[],
                                                    OUT m numeric[], OUT m_below bigint[], OUT m_upto bigint[])
RETURNS record
LANGUAGE c
AS 'MODULE_PATHNAME', 'automation_profile_pass_thresholds';

-- _setting(name, default): an automation.* setting as text, or the default
-- when it is not set.  Written to be inlined (no SET clause, everything
-- qualified): the built-in segments' predicates read a setting per profile.
-- The entry points that read settings -- tick(), refresh_profiles(),
-- refresh_segments() -- load the library first (see _load), so that a
-- value set before it was loaded has been checked.
CREATE FUNCTION automation._setting(name text, fallback text)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN pg_catalog.length(pg_catalog.current_setting(pg_catalog.concat('automation.', name), true))
                     OPERATOR(pg_catalog.>) 0
                THEN pg_catalog.current_setting(pg_catalog.concat('automation.', name), true)
                ELSE fallback END
$$;

-- _rfm_group(r, f): the RFM group of a pair of recency and frequency scores.
-- The same grid is in src/profile.c; every (r, f) falls in exactly one group.
CREATE FUNCTION automation._rfm_group(r integer, f integer)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN r IS NULL OR f IS NULL THEN NULL
        WHEN r >= 4 AND f >= 4 THEN 'champions'
        WHEN r = 3 AND f >= 4 THEN 'loyal_customers'
        WHEN r <= 2 AND f = 5 THEN 'cant_lose'
        WHEN r <= 2 AND f >= 3 THEN 'at_risk'
        WHEN r >= 3 AND f >= 2 THEN 'potential_loyalist'
        WHEN r >= 4 THEN 'recent_customers'
        WHEN r = 3 THEN 'promising'
        WHEN r = 2 THEN 'about_to_sleep'
        ELSE 'hibernating'
    END
$$;

-- _score_rows(now, r, f, m, scope, keys, old_r, old_f, old_m): derives the
-- columns that depend on the whole population, on the clock or on settings
-- -- RFM scores and group, lifecycle stage, VIP tier, loyalty points -- with
-- the RFM thresholds r, f and m, writing only the rows that change.  The
-- rules are those of the C pass (src/profile.c):
--   thresholds  percentile_disc(0.2, 0.4, 0.6, 0.8) of last_order_at (R),
--               order_count (F) and total_spent (M) over all profiles;
--   score       1 + the number of thresholds the value is strictly above,
--               so equal values always get equal scores;
--   lifecycle   lost when whole days since the last order >= lost_days,
--               lapsing when they exceed greatest(lapsing_factor x mean gap,
--               lapsing_min_days), else new / returning / loyal by count;
--   VIP tier    gold when spent_prev_quarter >= vip_gold_threshold, vip when
--               >= vip_threshold.
-- With scope 'all' every profile is considered; with 'some', the customers
-- in keys and those whose value lies between an old threshold (old_r,
-- old_f, old_m) and its new one: the only ones whose scores can have moved.
CREATE FUNCTION automation._score_rows(now timestamptz, r timestamptz[], f integer[], m numeric[],
                                       scope text, keys anyarray,
                                       old_r timestamptz[], old_f integer[], old_m numeric[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    rs text;
    fs text;
    ms text;
    grp text;
    stage text;
    tier text;
    points text;
    which text := 'true';
    lost_days int := automation._setting('lost_days', '365')::int;
    lapsing_factor float8 := automation._setting('lapsing_factor', '2')::float8;
    lapsing_min float8 := automation._setting('lapsing_min_days', '30')::float8;
    loyal_orders int := automation._setting('loyal_orders', '3')::int;
    vip numeric := automation._setting('vip_threshold', '500')::float8::numeric;
    gold numeric := automation._setting('vip_gold_threshold', '750')::float8::numeric;
    ppu numeric := automation._setting('points_per_unit', '1')::float8::numeric;
BEGIN
    IF scope = 'some' THEN
        -- a value between an old threshold and the new one changed sides
        which := 'p.customer_key = ANY ($12)';
        FOR k IN 1..4 LOOP
            IF old_r[k] <> r[k] THEN
                which := which || format(' OR (p.last_order_at > least($13[%1$s], $1[%1$s]) AND p.last_order_at <= greatest($13[%1$s], $1[%1$s]))', k);
            END IF;
            IF old_f[k] <> f[k] THEN
                which := which || format(' OR (p.order_count > least($14[%1$s], $2[%1$s]) AND p.order_count <= greatest($14[%1$s], $2[%1$s]))', k);
            END IF;
            IF old_m[k] <> m[k] THEN
                which := which || format(' OR (p.total_spent > least($15[%1$s], $3[%1$s]) AND p.total_spent <= greatest($15[%1$s], $3[%1$s]))', k);
            END IF;
        END LOOP;
    END IF;

    -- One scan of the profiles (or of the few in scope), no join: the
    -- expressions are spelled out in SET and again in WHERE, so only rows
    -- whose values change are written.
    rs := '(1 + (p.last_order_at > $1[1])::int + (p.last_order_at > $1[2])::int'
          ' + (p.last_order_at > $1[3])::int + (p.last_order_at > $1[4])::int)';
    fs := '(1 + (p.order_count > $2[1])::int + (p.order_count > $2[2])::int'
          ' + (p.order_count > $2[3])::int + (p.order_count > $2[4])::int)';
    ms := '(1 + (p.total_spent > $3[1])::int + (p.total_spent > $3[2])::int'
          ' + (p.total_spent > $3[3])::int + (p.total_spent > $3[4])::int)';
    grp := format('CASE WHEN %1$s >= 4 AND %2$s >= 4 THEN ''champions'''
                  ' WHEN %1$s = 3 AND %2$s >= 4 THEN ''loyal_customers'''
                  ' WHEN %1$s <= 2 AND %2$s = 5 THEN ''cant_lose'''
                  ' WHEN %1$s <= 2 AND %2$s >= 3 THEN ''at_risk'''
                  ' WHEN %1$s >= 3 AND %2$s >= 2 THEN ''potential_loyalist'''
                  ' WHEN %1$s >= 4 THEN ''recent_customers'''
                  ' WHEN %1$s = 3 THEN ''promising'''
                  ' WHEN %1$s = 2 THEN ''about_to_sleep'''
                  ' ELSE ''hibernating'' END', rs, fs);
    -- whole days since the last order: floor((now - last) / 24 h) >= n
    -- exactly when last <= now - n x 24 h, which needs no arithmetic per row
    stage := 'CASE WHEN p.last_order_at <= $4 - $5 * interval ''24 hours'' THEN ''lost'''
             ' WHEN p.last_order_at <= $4 - (floor(greatest($6 * coalesce(p.mean_gap_days, 0), $7)) + 1) * interval ''24 hours'''
             '      THEN ''lapsing'''
             ' WHEN p.order_count >= $8 THEN ''loyal'' WHEN p.order_count >= 2 THEN ''returning'' ELSE ''new'' END';
    tier := 'CASE WHEN p.spent_prev_quarter >= $9 THEN ''gold'' WHEN p.spent_prev_quarter >= $10 THEN ''vip'' END';
    -- (held within a bigint's range, as the pass holds them)
    points := 'least(greatest(floor(p.total_spent * $11), -9223372036854775808), 9223372036854775807)::bigint';
    -- The profiles rescored here are new to the segments (see
    -- automation.segment_dirty); rescoring every one starts a full
    -- evaluation of them anyway.
    EXECUTE format('WITH u AS (UPDATE automation.customer_profile p '
                   'SET r_score = %1$s, f_score = %2$s, m_score = %3$s, rfm_group = %4$s, '
                   '    lifecycle_stage = %5$s, vip_tier = %6$s, loyalty_points = %7$s '
                   'WHERE (%8$s) AND (p.r_score, p.f_score, p.m_score, p.rfm_group, p.lifecycle_stage, p.vip_tier, p.loyalty_points) '
                   '      IS DISTINCT FROM (%1$s::smallint, %2$s::smallint, %3$s::smallint, %4$s, %5$s, %6$s, %7$s) '
                   'RETURNING %9$s) '
                   '%10$s'
                   'SELECT count(*) FROM u',
                   rs, fs, ms, grp, stage, tier, points, which,
                   CASE WHEN scope = 'some' THEN 'p.customer_key' ELSE '1' END,
                   CASE WHEN scope = 'some'
                        THEN ', d AS (INSERT INTO automation.segment_dirty (customer_key) SELECT u.customer_key FROM u '
                             '       ON CONFLICT ON CONSTRAINT segment_dirty_pkey DO NOTHING) '
                        ELSE '' END)
      INTO n
      USING r, f, m, now, lost_days, lapsing_factor, lapsing_min, loyal_orders, gold, vip, ppu,
            keys, old_r, old_f, old_m;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION automation._score_rows(timestamptz, timestamptz[], integer[], numeric[], text, anyarray,
                                              timestamptz[], integer[], numeric[]) FROM PUBLIC;

-- _store_thresholds(r, f, m, now): records the RFM thresholds with the
-- count of profiles below and up to each, counted in one scan of the
-- profiles, as those every profile was scored with at now.
CREATE FUNCTION automation._store_thresholds(r timestamptz[], f integer[], m numeric[], now timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    counts text;
BEGIN
    DELETE FROM automation.profile_threshold;
    IF r IS NULL THEN
        INSERT INTO automation.profile_threshold (scored_at, profiles) VALUES (now, 0);
        RETURN;
    END IF;
    SELECT string_agg(format('ARRAY[%1$s]::bigint[], ARRAY[%2$s]::bigint[]',
                             (SELECT string_agg(format('count(*) FILTER (WHERE p.%s < $%s[%s])', c.col, c.i, k), ', ')
                                FROM generate_series(1, 4) k),
                             (SELECT string_agg(format('count(*) FILTER (WHERE p.%s <= $%s[%s])', c.col, c.i, k), ', ')
                                FROM generate_series(1, 4) k)), ', ' ORDER BY c.i)
      INTO counts
      FROM (VALUES (1, 'last_order_at'), (2, 'order_count'), (3, 'total_spent')) c(i, col);
    EXECUTE format('INSERT INTO automation.profile_threshold '
                   '(scored_at, profiles, r, f, m, r_below, r_upto, f_below, f_upto, m_below, m_upto) '
                   'SELECT $4, count(*), $1, $2, $3, %s FROM automation.customer_profile p', counts)
      USING r, f, m, now;
END
$$;
REVOKE ALL ON FUNCTION automation._store_thresholds(timestamptz[], integer[], numeric[], timestamptz) FROM PUBLIC;

-- _rescore(now): computes the RFM thresholds over every profile, stores
-- them, and derives the population-wide columns of every profile again
-- (automation._score_rows).  Returns the rows written.
CREATE FUNCTION automation._rescore(now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    SELECT percentile_disc(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY p.last_order_at) AS r,
           percentile_disc(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY p.order_count) AS f,
           percentile_disc(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY p.total_spent) AS m
      INTO t
      FROM automation.customer_profile p;
    PERFORM automation._store_thresholds(t.r, t.f, t.m, now);
    RETURN automation._score_rows(now, t.r, t.f, t.m, 'all', NULL::text[], NULL, NULL, NULL);
END
$$;
REVOKE ALL ON FUNCTION automation._rescore(timestamptz) FROM PUBLIC;

-- _rank_counts(v, t): how many of the values v are below t, and how many
-- up to it.
CREATE FUNCTION automation._rank_counts(v anyarray, t anyelement, OUT below bigint, OUT upto bigint)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE x < t), count(*) FILTER (WHERE x <= t) FROM unnest(v) x
$$;

-- _move_threshold(col, t, below, upto, before, after, idx): the value at
-- index idx (from 0) of the profiles sorted by col, given a value t of col
-- that had below profiles under it and upto profiles up to it before the
-- profiles whose values of col were before were written again as after --
-- t itself when idx falls among those equal to it, else found by stepping
-- from t along col's index -- and the counts below and up to the value
-- found.  NULL when there is no such value (the counts were wrong).
CREATE FUNCTION automation._move_threshold(col text, t anyelement, below bigint, upto bigint,
                                           before anyarray, after anyarray, idx bigint,
                                           OUT value anyelement, OUT new_below bigint, OUT new_upto bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a bigint;
    b bigint;
    was record := automation._rank_counts(before, t);
    now_is record := automation._rank_counts(after, t);
BEGIN
    below := below - was.below + now_is.below;
    upto := upto - was.upto + now_is.upto;
    IF idx >= below AND idx < upto THEN
        value := t;
        new_below := below;
        new_upto := upto;
    ELSIF idx >= upto THEN
        EXECUTE format('SELECT p.%1$I FROM automation.customer_profile p WHERE p.%1$I > $1 ORDER BY p.%1$I OFFSET $2 LIMIT 1', col)
          INTO value USING t, idx - upto;
        IF value IS NOT NULL THEN
            EXECUTE format('SELECT count(*) FILTER (WHERE p.%1$I < $2), count(*) FILTER (WHERE p.%1$I = $2) '
                           'FROM automation.customer_profile p WHERE p.%1$I > $1 AND p.%1$I <= $2', col)
              INTO a, b USING t, value;
            new_below := upto + a;
            new_upto := new_below + b;
        END IF;
    ELSE
        EXECUTE format('SELECT p.%1$I FROM automation.customer_profile p WHERE p.%1$I < $1 ORDER BY p.%1$I DESC OFFSET $2 LIMIT 1', col)
          INTO value USING t, below - 1 - idx;
        IF value IS NOT NULL THEN
            EXECUTE format('SELECT count(*) FILTER (WHERE p.%1$I > $2), count(*) FILTER (WHERE p.%1$I = $2) '
                           'FROM automation.customer_profile p WHERE p.%1$I >= $2 AND p.%1$I < $1', col)
              INTO a, b USING t, value;
            new_upto := below - a;
            new_below := new_upto - b;
        END IF;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION automation._move_threshold(text, anyelement, bigint, bigint, anyarray, anyarray, bigint) FROM PUBLIC;

-- _rescore_changed(now, keys, before): after the profiles of the customers
-- in keys were written again (before: their count and their arrays of
-- last_order_at, order_count and total_spent as they were), moves the
-- stored thresholds by the difference and scores the customers whose scores
-- can have moved.  Returns false, doing nothing, when the stored thresholds
-- cannot be used; the caller then rescores everyone.
CREATE FUNCTION automation._rescore_changed(now timestamptz, keys anyarray, before_n bigint,
                                            before_r timestamptz[], before_f integer[], before_m numeric[])
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    th automation.profile_threshold;
    after record;
    mv record;
    n bigint;
    idx bigint;
    nr timestamptz[];
    nf integer[];
    nm numeric[];
    rb bigint[];
    ru bigint[];
    fb bigint[];
    fu bigint[];
    mb bigint[];
    mu bigint[];
BEGIN
    SELECT * INTO th FROM automation.profile_threshold;
    IF NOT FOUND OR th.r IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('SELECT count(*) AS n, array_agg(p.last_order_at) AS r, array_agg(p.order_count) AS f, '
                   'array_agg(p.total_spent) AS m FROM automation.customer_profile p WHERE p.customer_key = ANY ($1::%s[])',
                   automation.customer_key_type())
      INTO after USING keys;
    n := th.profiles - before_n + after.n;
    IF n <= 0 THEN
        RETURN false;
    END IF;
    -- Most often within a day the profiles were written again because the
    -- clock moved a window (the 90 days' spend, the lifecycle stage), not
    -- their last order, count or spend: the thresholds stay where they are,
    -- and only those customers are scored.
    IF after.n = before_n
       AND (SELECT array_agg(x ORDER BY x) FROM unnest(before_r) x) = (SELECT array_agg(x ORDER BY x) FROM unnest(after.r) x)
       AND (SELECT array_agg(x ORDER BY x) FROM unnest(before_f) x) = (SELECT array_agg(x ORDER BY x) FROM unnest(after.f) x)
       AND (SELECT array_agg(x ORDER BY x) FROM unnest(before_m) x) = (SELECT array_agg(x ORDER BY x) FROM unnest(after.m) x) THEN
        PERFORM automation._score_rows(now, th.r, th.f, th.m, 'some', keys, th.r, th.f, th.m);
        RETURN true;
    END IF;
    nr := th.r; nf := th.f; nm := th.m;
    rb := th.r_below; ru := th.r_upto; fb := th.f_below; fu := th.f_upto; mb := th.m_below; mu := th.m_upto;
    FOR k IN 1..4 LOOP
        -- the index percentile_disc takes among n sorted values
        idx := greatest(ceil((ARRAY[0.2, 0.4, 0.6, 0.8]::float8[])[k] * n)::bigint, 1) - 1;

        mv := automation._move_threshold('last_order_at', th.r[k], th.r_below[k], th.r_upto[k], before_r, after.r, idx);
        IF mv.value IS NULL THEN
            RETURN false;
        END IF;
        nr[k] := mv.value; rb[k] := mv.new_below; ru[k] := mv.new_upto;
        mv := automation._move_threshold('order_count', th.f[k], th.f_below[k], th.f_upto[k], before_f, after.f, idx);
        IF mv.value IS NULL THEN
            RETURN false;
        END IF;
        nf[k] := mv.value; fb[k] := mv.new_below; fu[k] := mv.new_upto;
        mv := automation._move_threshold('total_spent', th.m[k], th.m_below[k], th.m_upto[k], before_m, after.m, idx);
        IF mv.value IS NULL THEN
            RETURN false;
        END IF;
        nm[k] := mv.value; mb[k] := mv.new_below; mu[k] := mv.new_upto;
    END LOOP;
    UPDATE automation.profile_threshold
       SET profiles = n, r = nr, f = nf, m = nm,
           r_below = rb, r_upto = ru, f_below = fb, f_upto = fu, m_below = mb, m_upto = mu;
    PERFORM automation._score_rows(now, nr, nf, nm, 'some', keys, th.r, th.f, th.m);
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION automation._rescore_changed(timestamptz, anyarray, bigint, timestamptz[], integer[], numeric[]) FROM PUBLIC;

-- _profile_queries(): the queries the pass reads, built from the bindings
-- with quoted identifiers.  Each takes $1, an array of customer keys to
-- restrict to, or NULL for everyone.
--   orders      customer, placed_at (timestamptz), total (as bound), and the
--               order's own key when categories are bound
--   zones       customer, time zone name (customers bound with a time zone)
--   categories  customer, category number (order lines and products with a
--               category); category_names_query lists the names in number order
--   some_categories the same for a few customers: their orders by the
--               customer index, each order's lines by the lines' index on
--               the order, and the products hashed once (a plain join would
--               hash every line of the shop, or, told not to, hash the
--               products again for every order)
--   lines       order key, category number: every line, not joined to the
--               orders (a full pass maps orders to customers itself); when
--               the products have integer keys, order key and product, and
--   products    product, category number: the pass maps the lines'
--               products to categories itself (cheaper than the executor's
--               hash join for each of the shop's lines)
-- Timestamps without time zone and dates are taken in automation.default_timezone.
CREATE FUNCTION automation._profile_queries(OUT orders_query text, OUT zones_query text,
                                            OUT categories_query text, OUT category_names_query text,
                                            OUT some_categories_query text, OUT products_query text,
                                            OUT all_orders_query text, OUT lines_query text,
                                            OUT orders_relation regclass,
                                            OUT bound_by name)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o automation.source;
    c automation.source;
    l automation.source;
    p automation.source;
    placed text;
    status_filter text := '';
    product_categories text;
    bought text;
    tz text := automation._setting('default_timezone', 'UTC');
BEGIN
    SELECT * INTO o FROM automation.source s WHERE s.kind = 'orders';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no orders are bound'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Profiles are computed from the shop''s orders.',
                  HINT = 'Bind them first with automation.bind_orders(relation, customer_column, placed_at_column, total_column).';
    END IF;
    PERFORM automation._check_binding(o);
    orders_relation := format('%I.%I', o.relation_schema, o.relation_name)::regclass;
    bound_by := o.bound_by;

    placed := format('o.%I', o.columns ->> 'placed_at');
    IF o.column_types ->> 'placed_at' LIKE 'timestamp without%' THEN
        placed := format('(%s AT TIME ZONE %L)', placed, tz);
    ELSIF o.column_types ->> 'placed_at' = 'date' THEN
        placed := format('(%s::timestamp AT TIME ZONE %L)', placed, tz);
    END IF;
    IF o.options ? 'counted_statuses' THEN
        status_filter := format(' AND o.%I::text = ANY (%L::text[])', o.columns ->> 'status',
                                (SELECT array_agg(x) FROM jsonb_array_elements_text(o.options -> 'counted_statuses') x));
    END IF;

    all_orders_query := format('SELECT o.%1$I, %2$s, o.%3$I FROM %4$s o WHERE true%5$s',
                               o.columns ->> 'customer', placed, o.columns ->> 'total', orders_relation, status_filter);
    orders_query := all_orders_query || format(' AND ($1 IS NULL OR o.%I = ANY ($1))', o.columns ->> 'customer');

    SELECT * INTO c FROM automation.source s WHERE s.kind = 'customers' AND s.columns ? 'timezone';
    IF FOUND THEN
        zones_query := format('SELECT c.%1$I, c.%2$I::text FROM %3$I.%4$I c WHERE c.%2$I IS NOT NULL AND ($1 IS NULL OR c.%1$I = ANY ($1))',
                              c.columns ->> 'customer', c.columns ->> 'timezone', c.relation_schema, c.relation_name);
    END IF;

    SELECT * INTO l FROM automation.source s WHERE s.kind = 'order_lines';
    SELECT * INTO p FROM automation.source s WHERE s.kind = 'products' AND s.columns ? 'category';
    IF l.kind IS NOT NULL AND p.kind IS NOT NULL AND o.columns ? 'order_id' THEN
        PERFORM automation._check_binding(l);
        PERFORM automation._check_binding(p);
        bought := automation._bought(l, 'l');
        -- categories are numbered in name order; the lines query returns numbers, not names
        category_names_query := format('SELECT DISTINCT p.%1$I::text FROM %2$I.%3$I p WHERE p.%1$I IS NOT NULL ORDER BY 1',
                                       p.columns ->> 'category', p.relation_schema, p.relation_name);
        orders_query := format('SELECT o.%1$I, %2$s, o.%3$I, o.%4$I FROM %5$s o WHERE true%6$s AND ($1 IS NULL OR o.%1$I = ANY ($1))',
                               o.columns ->> 'customer', placed, o.columns ->> 'total', o.columns ->> 'order_id',
                               orders_relation, status_filter);
        -- each product's category number, as every categories path reads it
        product_categories := format(
            'SELECT p.%1$I AS product, (dense_rank() OVER (ORDER BY p.%2$I::text))::int - 1 AS category_no '
            'FROM %3$I.%4$I p WHERE p.%2$I IS NOT NULL',
            p.columns ->> 'product', p.columns ->> 'category', p.relation_schema, p.relation_name);
        IF l.column_types ->> 'product' IN ('bigint', 'integer', 'smallint')
           AND p.column_types ->> 'product' IN ('bigint', 'integer', 'smallint') THEN
            products_query := product_categories;
            lines_query := format('SELECT l.%1$I, l.%2$I FROM %3$I.%4$I l WHERE %5$s',
                                  l.columns ->> 'order_id', l.columns ->> 'product', l.relation_schema, l.relation_name,
                                  bought);
        ELSE
            lines_query := format('SELECT l.%1$I, p.category_no FROM %2$I.%3$I l JOIN (%4$s) p ON p.product = l.%5$I WHERE %6$s',
                                  l.columns ->> 'order_id', l.relation_schema, l.relation_name, product_categories,
                                  l.columns ->> 'product', bought);
        END IF;
        categories_query := format(
            'SELECT o.%1$I, p.category_no FROM %2$s o JOIN %3$I.%4$I l ON l.%5$I = o.%6$I '
            'JOIN (%7$s) p ON p.product = l.%8$I '
            'WHERE ($1 IS NULL OR o.%1$I = ANY ($1))%9$s AND %10$s',
            o.columns ->> 'customer', orders_relation, l.relation_schema, l.relation_name,
            l.columns ->> 'order_id', o.columns ->> 'order_id', product_categories, l.columns ->> 'product',
            status_filter, bought);
        some_categories_query := format(
            'SELECT x.customer, p.category_no FROM '
            '(SELECT o.%1$I AS customer, l.product FROM %2$s o '
            '   CROSS JOIN LATERAL (SELECT l.%7$I AS product FROM %3$I.%4$I l WHERE l.%5$I = o.%6$I AND %10$s OFFSET 0) l '
            '  WHERE ($1 IS NULL OR o.%1$I = ANY ($1))%8$s OFFSET 0) x '
            'JOIN (%9$s) p ON p.product = x.product',
            o.columns ->> 'customer', orders_relation, l.relation_schema, l.relation_name,
            l.columns ->> 'order_id', o.columns ->> 'order_id', l.columns ->> 'product', status_filter,
            product_categories, bought);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION automation._profile_queries() FROM PUBLIC;

-- change_capture_enabled(): whether the bound orders relation carries the
-- change-capture triggers.
CREATE FUNCTION automation.change_capture_enabled()
RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_trigger t JOIN automation.source s
                      ON s.kind = 'orders' AND t.tgrelid = format('%I.%I', s.relation_schema, s.relation_name)::regclass
                   WHERE t.tgname = 'automation_capture_insert')
$$;
COMMENT ON FUNCTION automation.change_capture_enabled() IS 'whether incremental profile refresh is possible: the bound orders carry the change-capture triggers';

-- _full_refresh_reason(now): why a refresh of the profiles as of now cannot
-- be incremental, or NULL when it can.
CREATE FUNCTION automation._full_refresh_reason(now timestamptz)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    last automation.profile_refresh;
    tz text := automation._setting('default_timezone', 'UTC');
BEGIN
    SELECT * INTO last FROM automation.profile_refresh r ORDER BY r.refresh_id DESC LIMIT 1;
    IF last.refresh_id IS NULL THEN
        RETURN 'no refresh has been done yet';
    ELSIF NOT automation.change_capture_enabled() THEN
        IF (SELECT c.relkind FROM automation.source s
              JOIN pg_class c ON c.oid = to_regclass(format('%I.%I', s.relation_schema, s.relation_name))
             WHERE s.kind = 'orders') IN ('v', 'm') THEN
            RETURN 'the orders are bound to a view, which cannot carry change capture: bind a table for incremental refreshes';
        END IF;
        RETURN 'change capture is not enabled: call automation.enable_change_capture() for incremental refreshes';
    ELSIF last.as_of > now THEN
        RETURN 'now is before the last refresh';
    ELSIF date_trunc('quarter', last.as_of, tz) <> date_trunc('quarter', now, tz) THEN
        RETURN 'a new quarter began since the last refresh';
    ELSIF (SELECT s.bound_at FROM automation.source s WHERE s.kind = 'orders') > last.started_at THEN
        RETURN 'the orders were bound again since the last refresh';
    ELSIF last.timezone IS DISTINCT FROM tz THEN
        RETURN format('automation.default_timezone is %s, the last refresh read it as %s', tz, last.timezone);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION automation._full_refresh_reason(timestamptz) FROM PUBLIC;

-- refresh_profiles(full, now): brings automation.customer_profile up to date
-- as of now and returns the number of profiles written.  Incremental when
-- change capture is enabled and a full refresh has been done; otherwise (and
-- when full is true) a full rebuild.  _refresh_profiles is its work, for the
-- tick, which has given the keys their type already, and has asked
-- _full_refresh_reason itself (checked: it found none).
CREATE FUNCTION automation._refresh_profiles("full" boolean, now timestamptz, checked boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q record;
    started timestamptz := clock_timestamp();
    key_type text;
    keys_sql text;
    windows timestamptz[];
    tz text;
    reason text;
    is_full boolean := coalesce("full", false);
    written bigint;
    counts record;
    before record;
    rescored boolean := true;
    last_rescore timestamptz;
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(now, 'now');
    PERFORM automation._load();
    SELECT * INTO q FROM automation._profile_queries();
    key_type := automation.customer_key_type()::text;

    -- One refresh at a time; a second waits for the first to commit.
    LOCK TABLE automation.customer_profile IN SHARE ROW EXCLUSIVE MODE;

    tz := automation._setting('default_timezone', 'UTC');
    windows := ARRAY[now - make_interval(hours => 90 * 24), now - make_interval(hours => 365 * 24),
                     date_trunc('quarter', now, tz) - interval '3 months', date_trunc('quarter', now, tz)];
    -- the quarter arithmetic is exact in the zone: redo it there
    windows[3] := ((date_trunc('quarter', now, tz) AT TIME ZONE tz) - interval '3 months') AT TIME ZONE tz;

    IF is_full THEN
        reason := 'asked for';
    ELSIF NOT checked THEN
        reason := automation._full_refresh_reason(now);
        IF reason IS NOT NULL THEN
            RAISE NOTICE 'full profile refresh: %', reason;
            is_full := true;
        END IF;
    END IF;

    IF is_full THEN
        DELETE FROM automation.dirty_customer;
        TRUNCATE automation.customer_profile;
        DROP INDEX automation.customer_profile_last_order_at_idx, automation.customer_profile_order_count_idx,
                   automation.customer_profile_total_spent_idx, automation.customer_profile_next_change_at_idx;
        EXECUTE format('INSERT INTO automation.customer_profile SELECT (p).* FROM (SELECT automation._profile_pass($1, $2, $3, $7, NULL::%s[], $4, true, $5, $6, $8, $9) AS p OFFSET 0) s',
                       key_type)
          USING q.orders_query, q.zones_query, q.categories_query, now, windows, q.bound_by, q.category_names_query,
                q.lines_query, q.products_query;
        GET DIAGNOSTICS written = ROW_COUNT;
        PERFORM automation._profile_indexes();
        ANALYZE automation.customer_profile;
        -- the thresholds the pass scored with, for the incremental refreshes to move
        DELETE FROM automation.profile_threshold;
        INSERT INTO automation.profile_threshold (scored_at, profiles, r, r_below, r_upto, f, f_below, f_upto, m, m_below, m_upto)
        SELECT now, coalesce(t.profiles, 0), t.r, t.r_below, t.r_upto, t.f, t.f_below, t.f_upto, t.m, t.m_below, t.m_upto
          FROM automation._profile_pass_thresholds() t;
    ELSE
        -- Customers whose orders changed (and those whose only orders were
        -- still to come), plus those whose profile changed with the clock
        -- since it was written -- an order moved into or out of a spend
        -- window, the lifecycle stage moved on: the pass recorded when.
        keys_sql := 'WITH d AS (DELETE FROM automation.dirty_customer RETURNING customer_key) '
                    'SELECT array_agg(k) FROM (SELECT customer_key AS k FROM d UNION '
                    'SELECT p.customer_key FROM automation.customer_profile p WHERE p.next_change_at <= $1) x';
        EXECUTE keys_sql INTO counts USING now;
        -- the R, F and M values of the profiles about to be written again
        EXECUTE format('WITH d AS (DELETE FROM automation.customer_profile WHERE customer_key = ANY ($1::%s[]) '
                       '           RETURNING last_order_at, order_count, total_spent) '
                       'SELECT count(*) AS n, array_agg(d.last_order_at) AS r, array_agg(d.order_count) AS f, '
                       '       array_agg(d.total_spent) AS m FROM d', key_type)
          INTO before USING counts.array_agg;
        written := 0;
        IF counts.array_agg IS NOT NULL THEN
            -- A few customers' order lines are reached through the lines'
            -- index on the order rather than by hashing every line of the
            -- shop; many customers' lines by the join a full pass uses.
            EXECUTE format('INSERT INTO automation.customer_profile SELECT (p).* FROM (SELECT automation._profile_pass($1, $2, $3, $8, $7::%s[], $4, false, $5, $6) AS p OFFSET 0) s',
                           key_type)
              USING q.orders_query, q.zones_query,
                    CASE WHEN cardinality(counts.array_agg) <= 10000 THEN q.some_categories_query ELSE q.categories_query END,
                    now, windows, q.bound_by, counts.array_agg, q.category_names_query;
            GET DIAGNOSTICS written = ROW_COUNT;
            -- written or removed: new to the segments
            EXECUTE 'INSERT INTO automation.segment_dirty (customer_key) SELECT k FROM unnest($1) k '
                    'ON CONFLICT ON CONSTRAINT segment_dirty_pkey DO NOTHING'
              USING counts.array_agg;
        END IF;
        -- The population-wide columns move with the profiles and, for the
        -- lifecycle stage, with the days.  Every profile is scored again on
        -- the first refresh of a day (in the default time zone); within the
        -- day, the changed profiles move the stored RFM thresholds and only
        -- the customers whose scores can have moved are scored.
        last_rescore := (SELECT t.scored_at FROM automation.profile_threshold t);
        IF last_rescore IS NULL OR last_rescore > now
           OR date_trunc('day', last_rescore, tz) <> date_trunc('day', now, tz) THEN
            PERFORM automation._rescore(now);
        ELSIF counts.array_agg IS NOT NULL THEN
            IF NOT automation._rescore_changed(now, counts.array_agg, before.n, before.r, before.f, before.m) THEN
                PERFORM automation._rescore(now);
            END IF;
        ELSE
            rescored := false;
        END IF;
    END IF;

    SELECT * INTO counts FROM automation._profile_pass_counts();
    INSERT INTO automation.profile_refresh (as_of, full_refresh, reason, customers, orders_read,
                                            skipped_null_customer, skipped_null_time, skipped_bad_total, rescored, duration,
                                            timezone)
    VALUES (now, is_full, reason, written, counts.orders_read, counts.skipped_null_customer,
            counts.skipped_null_time, counts.skipped_bad_total, rescored, clock_timestamp() - started, tz);
    RETURN written;
END
$$;

CREATE FUNCTION automation.refresh_profiles("full" boolean DEFAULT false, now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT automation._retype_keys();
    SELECT automation._refresh_profiles("full", now);
$$;
COMMENT ON FUNCTION automation.refresh_profiles(boolean, timestamptz) IS 'bring customer profiles up to date as of now; incremental when change capture is enabled; returns profiles written';

-- Change capture: statement-level triggers on the shop's orders (and order
-- lines) record the customers whose orders were inserted, updated or
-- deleted.  They are the one thing the extension adds to the shop's tables,
-- and only when the DBA asks for it.
CREATE FUNCTION automation._capture_orders()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col name := TG_ARGV[0];
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        EXECUTE format('INSERT INTO automation.dirty_customer (customer_key) SELECT DISTINCT n.%1$I FROM new_rows n WHERE n.%1$I IS NOT NULL ON CONFLICT DO NOTHING', col);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        EXECUTE format('INSERT INTO automation.dirty_customer (customer_key) SELECT DISTINCT o.%1$I FROM old_rows o WHERE o.%1$I IS NOT NULL ON CONFLICT DO NOTHING', col);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION automation._capture_orders() FROM PUBLIC;

CREATE FUNCTION automation._capture_order_lines()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    line_order name := TG_ARGV[0];
    orders regclass := TG_ARGV[1]::regclass;
    order_id name := TG_ARGV[2];
    customer name := TG_ARGV[3];
    t text;
BEGIN
    FOREACH t IN ARRAY CASE TG_OP WHEN 'INSERT' THEN ARRAY['new_rows'] WHEN 'DELETE' THEN ARRAY['old_rows']
                               ELSE ARRAY['new_rows', 'old_rows'] END
    LOOP
        EXECUTE format('INSERT INTO automation.dirty_customer (customer_key) SELECT DISTINCT o.%1$I FROM %2$s o '
                       'WHERE o.%3$I IN (SELECT l.%4$I FROM %5$I l) AND o.%1$I IS NOT NULL ON CONFLICT DO NOTHING',
                       customer, orders, order_id, line_order, t);
    END LOOP;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION automation._capture_order_lines() FROM PUBLIC;

-- enable_change_capture(): installs the change-capture triggers on the bound
-- orders (and order lines) so that refresh_profiles() can be incremental.
-- Views cannot carry them: refreshes of views stay full.
CREATE FUNCTION automation.enable_change_capture()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o automation.source;
    l automation.source;
    rel regclass;
    op text;
BEGIN
    SELECT * INTO o FROM automation.source s WHERE s.kind = 'orders';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no orders are bound'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Bind them first with automation.bind_orders().';
    END IF;
    PERFORM automation.disable_change_capture();
    rel := format('%I.%I', o.relation_schema, o.relation_name)::regclass;
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = rel) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', rel
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Change-capture triggers can only be put on tables; the orders are bound to a view, materialized view or foreign table.',
                  HINT = 'Refreshes of these orders are always full; bind the underlying table for incremental refreshes.';
    END IF;
    FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s FOR EACH STATEMENT EXECUTE FUNCTION automation._capture_orders(%L)',
                       'automation_capture_' || op, upper(op), rel,
                       CASE op WHEN 'insert' THEN 'NEW TABLE AS new_rows' WHEN 'delete' THEN 'OLD TABLE AS old_rows'
                               ELSE 'OLD TABLE AS old_rows NEW TABLE AS new_rows' END,
                       o.columns ->> 'customer');
    END LOOP;

    SELECT * INTO l FROM automation.source s WHERE s.kind = 'order_lines';
    IF FOUND AND o.columns ? 'order_id' THEN
        rel := format('%I.%I', l.relation_schema, l.relation_name)::regclass;
        IF (SELECT c.relkind FROM pg_class c WHERE c.oid = rel) IN ('r', 'p') THEN
            FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
                EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s FOR EACH STATEMENT '
                               'EXECUTE FUNCTION automation._capture_order_lines(%L, %L, %L, %L)',
                               'automation_capture_' || op, upper(op), rel,
                               CASE op WHEN 'insert' THEN 'NEW TABLE AS new_rows' WHEN 'delete' THEN 'OLD TABLE AS old_rows'
                                       ELSE 'OLD TABLE AS old_rows NEW TABLE AS new_rows' END,
                               l.columns ->> 'order_id', format('%I.%I', o.relation_schema, o.relation_name),
                               o.columns ->> 'order_id', o.columns ->> 'customer');
            END LOOP;
        ELSE
            RAISE NOTICE 'order lines are bound to %, which is not a table: changes to lines alone are not captured', rel;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION automation.enable_change_capture() IS 'install change-capture triggers on the bound orders (and order lines) for incremental profile refreshes';

-- disable_change_capture(): removes the change-capture triggers wherever
-- they are; refreshes are full from then on.
CREATE FUNCTION automation.disable_change_capture()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tg.tgname, tg.tgrelid::regclass AS rel
               FROM pg_trigger tg
              WHERE tg.tgfoid IN ('automation._capture_orders()'::regprocedure, 'automation._capture_order_lines()'::regprocedure)
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
    END LOOP;
    -- the customers recorded stay: among them are those whose only orders
    -- are still to come, which the next refresh must look at (a full
    -- refresh records them afresh)
END
$$;
COMMENT ON FUNCTION automation.disable_change_capture() IS 'remove the change-capture triggers; profile refreshes are full from then on';

INSERT INTO automation.access_rule VALUES
    ('analyst', 'automation.customer_profile', 'SELECT'),
    ('analyst', 'automation.profile_refresh', 'SELECT'),
    ('analyst', 'FUNCTION automation.change_capture_enabled()', 'EXECUTE');
