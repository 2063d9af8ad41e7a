-- The tick: one run of every stage of the engine, in order, in one
-- transaction, under a lock (automation.tick_lock) so that two ticks never
-- overlap.
--
-- Stages are rows of automation.tick_stage, added by the install piece of
-- each module: a function taking the tick's "now" and returning the rows it
-- touched.  A tick either completes every stage or, when one fails, rolls
-- back whole: nothing is left half-done.

-- The lock every tick holds, and a bind that retypes the keys waits for.
-- A table lock, not an advisory one: any role that can connect may take any
-- advisory lock, and could hold every tick off.  LOCK TABLE takes privileges
-- on the table, which only the extension's owner has; and the mode, SHARE
-- UPDATE EXCLUSIVE, conflicts with itself but not with the locks a
-- statement takes on a table it names before its privileges are checked
-- (an INSERT planned for as long as a function of its own makes it last).
-- _try_lock(rel, mode): takes the lock on rel in mode (e.g. 'SHARE ROW
-- EXCLUSIVE') for the rest of the transaction if it is free at once, and
-- says whether it did; it never waits.  The tick's stages use it where a
-- transaction another role left open would otherwise hold the tick -- and,
-- through the tick lock, every tick after it.
CREATE FUNCTION automation._try_lock(rel regclass, mode text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('LOCK TABLE %s IN %s MODE NOWAIT', rel, mode);
    RETURN true;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END
$$;
REVOKE ALL ON FUNCTION automation._try_lock(regclass, text) FROM PUBLIC;

CREATE TABLE automation.tick_lock ();
COMMENT ON TABLE automation.tick_lock IS 'no rows: every tick locks it, so that two ticks never overlap';

CREATE TABLE automation.tick_stage (
    position integer NOT NULL,
    stage text NOT NULL,
    function text NOT NULL,
    CONSTRAINT tick_stage_pkey PRIMARY KEY (position),
    CONSTRAINT tick_stage_stage_key UNIQUE (stage),
    CONSTRAINT tick_stage_function_check CHECK (function ~ '^automation\.[a-z_]+$')
);
COMMENT ON TABLE automation.tick_stage IS 'the stages automation.tick() runs, in position order; each is function(now timestamptz) returning bigint';

-- tick(now): runs every stage and returns one row per stage with the rows
-- it touched and the milliseconds it took.  When another tick holds the
-- lock, or one that started later has already run, it returns at once with
-- a single row, stage "skipped".
--
-- It computes in UTC whatever the session's TimeZone: the worker's, a
-- pg_cron job's and an administrator's session may each have their own,
-- and a tick at a given now must do the same in all of them.  A day added
-- to a moment (a step's wait, the weekly cap's week) is then 24 hours, and
-- a moment written into a reason reads +00.  Where the clock on the wall
-- matters -- quiet hours, the preferred hour, a birthday, a quarter -- the
-- zone is named: the customer's, or automation.default_timezone.
CREATE FUNCTION automation.tick(now timestamptz DEFAULT now())
RETURNS TABLE (stage text, rows bigint, ms numeric)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    s record;
    started timestamptz;
    last timestamptz;
    skipped text;
    failed text;
    failed_state text;
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Call automation.tick() for the current time, or pass the time to simulate.';
    END IF;
    PERFORM automation._check_finite(now, 'now');
    -- (a setting a session SET before the library was loaded is checked
    -- when it loads: an unknown time zone is warned of, the default used)
    PERFORM automation._load();
    IF NOT automation._try_lock('automation.tick_lock', 'SHARE UPDATE EXCLUSIVE') THEN
        skipped := 'another tick is running in this database';
    ELSE
        -- A tick at its transaction's start that another tick overtook: the
        -- other one started later, took the lock first and has committed.
        -- Everything up to this tick's moment has been done.
        last := automation._clock();
        IF now = pg_catalog.now() AND now < last AND last <= clock_timestamp() THEN
            skipped := format('a tick that started after this one ran first, at %s', last);
        END IF;
    END IF;
    IF skipped IS NOT NULL THEN
        RAISE NOTICE '%; this one did nothing', skipped;
        stage := 'skipped';
        rows := 0;
        ms := 0;
        RETURN NEXT;
        RETURN;
    END IF;
    PERFORM automation._check_clock(now, 'tick', last);
    IF automation._keys_mistyped() THEN
        PERFORM automation._retype_keys();
    END IF;
    BEGIN
        FOR s IN SELECT t.stage, t.function FROM automation.tick_stage t ORDER BY t.position LOOP
            started := clock_timestamp();
            EXECUTE format('SELECT %s($1)', s.function) INTO rows USING now;
            stage := s.stage;
            ms := round(extract(epoch FROM clock_timestamp() - started) * 1000, 3);
            RETURN NEXT;
        END LOOP;
    EXCEPTION WHEN syntax_error_or_access_rule_violation THEN
        -- A statement built from a binding whose table or columns changed
        -- since (dropped, renamed, retyped): name the binding, with the
        -- statement's error as detail.  Looked for only after a failure:
        -- checked before every statement built from a binding, the bindings
        -- cost an idle tick a third more.
        GET STACKED DIAGNOSTICS failed = MESSAGE_TEXT, failed_state = RETURNED_SQLSTATE;
        PERFORM automation._check_binding(b, format('The tick''s stage %s failed: %s (SQLSTATE %s).', s.stage, failed, failed_state))
           FROM automation.source b
          ORDER BY automation._binding_order(b.kind);
        RAISE;
    END;
END
$$;
COMMENT ON FUNCTION automation.tick(timestamptz) IS 'run every stage of the engine once (profiles, segments, journeys, outbox upkeep); one row per stage';


