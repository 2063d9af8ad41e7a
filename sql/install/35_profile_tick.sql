-- The profile and segment part of every tick (the stage functions are in
-- 30_segment.sql): refresh the profiles of the customers whose orders
-- changed, then the segment memberships.
INSERT INTO automation.tick_stage VALUES
    (10, 'profiles', 'automation._tick_profiles'),
    (20, 'segments', 'automation._tick_segments');
