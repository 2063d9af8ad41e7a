-- The profile and segment part of every tick: refresh the profiles of the
-- customers whose orders changed, then the segment memberships.  Until the
-- shop is bound there is nothing to refresh, and the stages say 0.

CREATE FUNCTION automation._tick_profiles(now timestamptz)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN EXISTS (SELECT FROM automation.source s WHERE s.kind = 'orders')
                THEN automation.refresh_profiles(false, now) ELSE 0 END
$$;

CREATE FUNCTION automation._tick_segments(now timestamptz)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN automation.customer_key_type() IS NOT NULL
                THEN automation.refresh_segments(now) ELSE 0 END
$$;

INSERT INTO automation.tick_stage VALUES
    (10, 'profiles', 'automation._tick_profiles'),
    (20, 'segments', 'automation._tick_segments');
