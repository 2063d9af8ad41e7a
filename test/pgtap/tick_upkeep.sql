-- A tick with nothing new does not derive the profiles' population-wide
-- columns or evaluate the segments again; a changed order makes it evaluate
-- them for the customers whose profiles changed, a new day or an hour passed
-- for everybody.  Journey triggers look back to the previous tick
-- less automation.trigger_grace, not their whole lookback.
BEGIN;
SELECT plan(36);

SET LOCAL timezone = 'UTC';
SET LOCAL automation.default_timezone = 'UTC';
CREATE SCHEMA tshop;
CREATE TABLE tshop.orders (id bigint PRIMARY KEY, customer_id text, placed_at timestamptz, total numeric);
INSERT INTO tshop.orders VALUES (1, 'ada', '2026-05-01 10:00+00', 600), (2, 'bob', '2026-05-02 10:00+00', 20);
SELECT automation.bind_orders('tshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT automation.enable_change_capture();

SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-10 12:00+00'); SELECT * FROM automation.tick('2026-05-10 12:01+00')$$,
                'a tick, and another a minute later with nothing new');
SELECT results_eq($$SELECT customers, rescored FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1$$,
                  $$VALUES (0::bigint, false)$$, 'the second writes no profile and does not rescore');
SELECT is((SELECT max(refreshed_at) FROM automation.segment), '2026-05-10 12:00+00'::timestamptz,
          'nor evaluates the segments');
SELECT is(to_regclass('pg_temp.automation_enrolled'), NULL,
          'ticks with nothing to enroll make no temporary table (a pg_cron run''s session stays light)');

INSERT INTO tshop.orders VALUES (3, 'bob', '2026-05-10 12:05+00', 30);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-10 12:10+00')$$, 'a tick after Bob ordered');
SELECT results_eq($$SELECT customers, rescored FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1$$,
                  $$VALUES (1::bigint, true)$$, 'Bob''s profile is written and the population rescored');
SELECT is((SELECT max(refreshed_at) FROM automation.segment), '2026-05-10 12:10+00'::timestamptz,
          'and the segments evaluated: Bob moved from new to returning');
SELECT ok(EXISTS (SELECT FROM automation.segment_member WHERE segment = 'returning' AND customer_key = 'bob' AND exited_at IS NULL),
          'Bob is returning');
SELECT is((SELECT full_at FROM automation.segment_evaluation), '2026-05-10 12:00+00'::timestamptz,
          'evaluated for the changed profiles only');
SELECT is((SELECT exited_at FROM automation.segment_member WHERE segment = 'new' AND customer_key = 'bob'),
          '2026-05-10 12:10+00'::timestamptz, 'Bob left "new" then');
SELECT is(automation.refresh_segments('2026-05-10 12:10+00'), 0::bigint,
          'and everybody evaluated at the same moment changes nothing more');
-- Time only moves forward: entries and exits are recorded when found.
SELECT throws_ok($$SELECT * FROM automation.tick('2026-05-10 12:09+00')$$, '22023',
                 'cannot tick at 2026-05-10 12:09:00+00: the segments were refreshed later, at 2026-05-10 12:10:00+00',
                 'a tick before the segments'' last refresh is refused');
SELECT throws_ok($$SELECT * FROM automation.simulate('2026-05-10 12:09+00')$$, '22023', NULL,
                 'and so is a simulation of that moment');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-10 13:11+00')$$, 'a tick over an hour after the last full evaluation');
SELECT is((SELECT full_at FROM automation.segment_evaluation), '2026-05-10 13:11+00'::timestamptz,
          'evaluates the segments for everybody');
-- Purchase patterns learned since (by hand, between two ticks) reach the
-- segments at the next tick, for everybody.
INSERT INTO automation.lifecycle_refresh (as_of, products, customer_products, duration)
VALUES ('2026-05-10 13:11:30+00', 0, 0, '0');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-10 13:12+00')$$, 'the next tick');
SELECT is((SELECT full_at FROM automation.segment_evaluation), '2026-05-10 13:12+00'::timestamptz,
          'evaluates them for everybody again');

SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-11 00:30+00')$$, 'a tick the next day');
SELECT results_eq($$SELECT rescored, (SELECT max(refreshed_at) FROM automation.segment)
                      FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1$$,
                  $$VALUES (true, '2026-05-11 00:30+00'::timestamptz)$$,
                  'a new day rescores (lifecycle stages move with the days) and the segments follow');

-- Orders committed late: one placed 30 minutes before the previous tick is
-- still found, one placed 3 hours before is not -- unless the grace is longer.
CREATE TABLE tshop.customers (id text PRIMARY KEY, email text, consent boolean);
INSERT INTO tshop.customers SELECT c, c || '@example.com', true FROM unnest(ARRAY['ada', 'bob', 'cem', 'dan']) c;
SELECT automation.bind_customers('tshop.customers', 'id', 'email', 'consent');
SELECT automation.create_journey('thanks', 'order_placed');
SELECT automation.add_step('thanks', '0', 'thanks');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-11 09:00+00')$$, 'a tick with the journey in place');
INSERT INTO tshop.orders VALUES (4, 'cem', '2026-05-11 08:30+00', 40), (5, 'dan', '2026-05-11 06:00+00', 40);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-11 09:05+00')$$, 'the next tick');
SELECT is((SELECT string_agg(customer_key, ',' ORDER BY customer_key) FROM automation.enrollment WHERE journey = 'thanks'),
          'bob,cem', 'the order placed within automation.trigger_grace (1 hour) before the last tick is found; the older one not');
SET LOCAL automation.trigger_grace = '4h';
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-11 09:10+00')$$, 'a tick with a grace of 4 hours');
SELECT is((SELECT string_agg(customer_key, ',' ORDER BY customer_key) FROM automation.enrollment WHERE journey = 'thanks'),
          'bob,cem,dan', 'finds it too');

-- A user segment that fails for one customer, in a tick that evaluates
-- only the changed profiles: it keeps its members as they were, and the
-- other segments are evaluated.
SELECT automation.define_segment('fragile', '1.0 / (3 - p.order_count) > 0');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-11 09:20+00')$$, 'a tick evaluates the new segment for everybody');
SELECT is((SELECT count(*) FROM automation.segment_member WHERE segment = 'fragile' AND exited_at IS NULL), 4::bigint,
          'all four are in it');
INSERT INTO tshop.orders VALUES (6, 'bob', '2026-05-11 09:25+00', 50);
SET LOCAL client_min_messages = error;
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-11 09:30+00')$$,
                'a tick after Bob''s third order, for which the segment divides by zero');
RESET client_min_messages;
SELECT results_eq($$SELECT name, refreshed_at FROM automation.segment WHERE name IN ('fragile', 'loyal') ORDER BY name$$,
                  $$VALUES ('fragile', '2026-05-11 09:20+00'::timestamptz), ('loyal', '2026-05-11 09:30+00')$$,
                  'it alone is left as it was');
SELECT ok(EXISTS (SELECT FROM automation.segment_member WHERE segment = 'loyal' AND customer_key = 'bob'
                     AND entered_at = '2026-05-11 09:30+00' AND exited_at IS NULL), 'Bob entered "loyal"');
SELECT is((SELECT count(*) FROM automation.segment_member WHERE segment = 'fragile' AND exited_at IS NULL), 4::bigint,
          'and the failing segment keeps its four members');
SELECT is((SELECT full_at FROM automation.segment_evaluation), '2026-05-11 09:20+00'::timestamptz,
          'evaluated for the changed profile only');
SELECT automation.drop_segment('fragile');

-- Two schedulers (the worker and pg_cron): a tick whose transaction began
-- before another tick's, and that reaches the lock after the other one
-- committed, finds its moment covered and does nothing.  Here the later
-- tick runs at the clock's time, after this transaction began.
SELECT lives_ok($$SELECT * FROM automation.tick(clock_timestamp())$$, 'a tick at a moment after this transaction began');
SELECT results_eq($$SELECT stage, rows FROM automation.tick()$$, $$VALUES ('skipped', 0::bigint)$$,
                  'tick() at the transaction''s start then returns at once: a later tick ran first');
SELECT throws_ok($$SELECT * FROM automation.tick(now() - interval '1 second')$$, '22023', NULL,
                 'an earlier moment passed by hand is still refused');
SELECT count(*) AS stages FROM automation.tick(clock_timestamp() + interval '1 day');
SELECT throws_ok($$SELECT * FROM automation.tick()$$, '22023', NULL,
                 'and tick() after a tick a day ahead is refused: no tick can have started after the clock''s time');
-- Only the extension's owner may take the ticks' lock: an analyst cannot
-- hold every tick off.
CREATE ROLE regress_tick_analyst;
SELECT count(*) AS grants FROM automation.grant_access('regress_tick_analyst', 'analyst');
SET LOCAL ROLE regress_tick_analyst;
SELECT throws_ok($$LOCK TABLE automation.tick_lock IN SHARE UPDATE EXCLUSIVE MODE$$, '42501', NULL,
                 'an analyst cannot take the lock every tick takes');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
