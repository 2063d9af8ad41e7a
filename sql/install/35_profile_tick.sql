-- The profile and segment part of every tick (the stage functions are in
-- 30_segment.sql): refresh the profiles of the customers whose orders
-- changed first, the segment memberships after everything else they read --
-- predictions (25), related products (26), purchase patterns and basket tags
-- (27) -- and before the journeys enroll (30).
INSERT INTO automation.tick_stage VALUES
    (10, 'profiles', 'automation._tick_profiles'),
    (28, 'segments', 'automation._tick_segments');
