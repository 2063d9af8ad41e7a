-- Journey guardrails and measurement: preferred hour, weekly cap,
-- saturation, suppression of transactional messages, holdout and A/B
-- buckets, explain_customer, journey_stats and cart_abandonment_stats.
BEGIN;
SELECT plan(38);

SET LOCAL automation.default_timezone = 'UTC';
CREATE SCHEMA gshop;
CREATE TABLE gshop.customers (id bigint PRIMARY KEY, email text, consent boolean, tz text);
CREATE TABLE gshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric(12,2));
CREATE TABLE gshop.signups (customer_id bigint, signed_up_at timestamptz);
INSERT INTO gshop.customers SELECT g, 'c' || g || '@example.com', true, 'Europe/Helsinki' FROM generate_series(1, 200) g;
-- Customer 1 always orders around 18:00 Helsinki time (16:00 UTC in winter).
INSERT INTO gshop.orders VALUES
    (1, 1, '2026-01-05 16:10+00', 10), (2, 1, '2026-01-12 16:40+00', 10), (3, 1, '2026-01-19 15:50+00', 10);
SELECT automation.bind_customers('gshop.customers', 'id', 'email', 'consent', timezone_column => 'tz');
SELECT automation.bind_orders('gshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT automation.bind_signups('gshop.signups', 'customer_id', 'signed_up_at');

-- Preferred hour: a step that waits for the customer's own hour.
SELECT automation.create_journey('hello', 'first_order', '{"lookback": "60 days"}');
SELECT automation.add_step('hello', '0', 'hello', at_preferred_hour => true);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-01-20 09:00+00')$$, 'tick in the morning');
SELECT is((SELECT preferred_hour FROM automation.customer_profile WHERE customer_key = 1), 18::smallint,
          'customer 1 prefers 18:00 in Helsinki');
SELECT is((SELECT reason FROM automation.decision_log WHERE journey = 'hello' AND decision = 'deferred'),
          'preferred_hour until 2026-01-20 16:00:00+00', 'the message waits for 18:00 Helsinki time');
SELECT results_eq($$SELECT status, next_step, due_at, enrolled_at FROM automation.enrollment WHERE journey = 'hello'$$,
                  $$VALUES ('active', 1, '2026-01-20 16:00+00'::timestamptz, '2026-01-20 09:00+00'::timestamptz)$$,
                  'enrolled by the same tick, the enrollment waits at its first step for that hour');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-01-20 16:00+00')$$, 'tick at 16:00 UTC');
SELECT is((SELECT send_after FROM automation.outbox WHERE journey = 'hello'), '2026-01-20 16:00+00'::timestamptz,
          'and goes at 18:00 local');
SELECT results_eq($$SELECT status, next_step, due_at FROM automation.enrollment WHERE journey = 'hello'$$,
                  $$VALUES ('completed', NULL::integer, NULL::timestamptz)$$, 'and the journey is done');

-- Holdout and splits over 200 sign-ups.
INSERT INTO gshop.signups SELECT g, '2026-02-01 10:00+00' FROM generate_series(1, 200) g;
SELECT automation.create_journey('news', 'signup', holdout_percent => 20);
SELECT automation.add_step('news', '0', 'news', variants => '[{"name": "a", "split": 50}, {"name": "b", "split": 50}]');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-02-01 10:05+00')$$, 'tick after the sign-ups');
SELECT is((SELECT count(*) FROM automation.enrollment WHERE journey = 'news'), 200::bigint, 'all 200 are enrolled');
SELECT ok((SELECT count(*) FROM automation.enrollment WHERE journey = 'news' AND holdout) BETWEEN 25 AND 55,
          'about a fifth are held out');
SELECT is((SELECT count(*) FROM automation.enrollment WHERE journey = 'news' AND holdout),
          (SELECT count(*) FROM automation.enrollment WHERE journey = 'news' AND bucket < 20),
          'exactly those in buckets 0-19');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'news')
          + (SELECT count(*) FROM automation.decision_log WHERE journey = 'news' AND decision = 'held_out'),
          200::bigint, 'everyone else gets a message, the holdout group none');
SELECT is((SELECT count(*) FROM automation.outbox o JOIN automation.enrollment e
            ON e.journey = o.journey AND e.customer_key = o.customer_key
           WHERE o.journey = 'news' AND o.variant = CASE WHEN e.bucket < 60 THEN 'a' ELSE 'b' END),
          (SELECT count(*) FROM automation.outbox WHERE journey = 'news'),
          'the splits share the buckets the holdout leaves: a for 20-59, b for 60-99');

-- Weekly cap: with at most two a week, the third waits a week.
SET LOCAL automation.max_per_week = 2;
SELECT automation.set_journey_enabled('news', false);
INSERT INTO gshop.customers VALUES (201, 'c201@example.com', true, 'Europe/Helsinki');
SELECT automation.create_journey('drip', 'signup', '{"lookback": "1 day"}', reentry => 'each_time');
SELECT automation.add_step('drip', '0', 'drip_1');
SELECT automation.add_step('drip', '17 hours', 'drip_2');
SELECT automation.add_step('drip', '17 hours', 'drip_3');
INSERT INTO gshop.signups VALUES (201, '2026-02-10 10:00+00');
SELECT lives_ok($$SELECT count(*) FROM generate_series('2026-02-10 10:05+00'::timestamptz, '2026-02-12 10:05+00', '1 hour') t,
                                      LATERAL automation.tick(t)$$,
                'tick every hour for two days');
SELECT results_eq($$SELECT template, send_after FROM automation.outbox WHERE customer_key = 201 ORDER BY send_after$$,
                  $$VALUES ('drip_1', '2026-02-10 10:05+00'::timestamptz), ('drip_2', '2026-02-11 06:05+00'::timestamptz)$$,
                  'the second drip waited for 08:00 in Helsinki; the third did not go');
SELECT is((SELECT reason FROM automation.decision_log WHERE customer_key = 201 AND journey = 'drip' AND step = 3
            AND decision = 'deferred' ORDER BY id LIMIT 1),
          'weekly_cap until 2026-02-17 10:05:00+00', 'it waits until the first leaves the 7-day window');
-- Several due in one tick, with no minimum interval between them: as many
-- go as the week allows, the rest wait a week.
SET LOCAL automation.min_interval = 0;
INSERT INTO gshop.customers VALUES (202, 'c202@example.com', true, 'Europe/Helsinki');
SELECT automation.create_journey('trio_' || x, 'signup', '{"lookback": "1 day"}') FROM unnest(ARRAY['a', 'b', 'c']) x;
SELECT automation.add_step('trio_' || x, '0', 'trio_' || x) FROM unnest(ARRAY['a', 'b', 'c']) x;
INSERT INTO gshop.signups VALUES (202, '2026-02-12 12:00+00');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-02-12 12:05+00')$$,
                'a sign-up that four journeys (drip and three more) take up in one tick');
SELECT results_eq($$SELECT template, send_after FROM automation.outbox WHERE customer_key = 202 ORDER BY template$$,
                  $$VALUES ('drip_1', '2026-02-12 12:05+00'::timestamptz), ('trio_a', '2026-02-12 12:05+00')$$,
                  'two go at once: automation.min_interval is 0 and max_per_week 2');
SELECT results_eq($$SELECT journey, reason FROM automation.decision_log WHERE customer_key = 202 AND decision = 'deferred'
                     ORDER BY journey$$,
                  $$VALUES ('trio_b', 'weekly_cap until 2026-02-19 12:05:00+00'), ('trio_c', 'weekly_cap until 2026-02-19 12:05:00+00')$$,
                  'the other two wait a week');
RESET automation.min_interval;
RESET automation.max_per_week;

-- Saturation: five sent messages without an open stop marketing.
INSERT INTO automation.outbox_archive (id, customer_key, channel, recipient, template, payload, purpose, dedupe_key,
                                       send_after, status, attempts, errors, created_at, finished_at)
SELECT 100000 + g, 77, 'email', 'c77@example.com', 'old', '{}', 'marketing', 'old:' || g,
       '2026-01-01'::timestamptz + g * interval '1 day', 'sent', 1, '[]', '2026-01-01', '2026-01-01'::timestamptz + g * interval '1 day'
  FROM generate_series(1, 5) g;
INSERT INTO automation.outbox_key (dedupe_key, message_id, customer_key, marketing)
SELECT 'old:' || g, 100000 + g, 77, true FROM generate_series(1, 5) g;
DELETE FROM automation.outbox WHERE customer_key = 77;
SELECT automation.set_journey_enabled('news', true);
UPDATE automation.enrollment SET status = 'active', next_step = 1, due_at = '2026-02-15 10:00+00'
 WHERE journey = 'news' AND customer_key = 77;
SELECT lives_ok($$SELECT * FROM automation.tick('2026-02-15 10:05+00')$$, 'tick');
SELECT is((SELECT decision || ':' || reason FROM automation.decision_log WHERE customer_key = 77 AND journey = 'news'
            AND decision IN ('sent', 'skipped', 'held_out') ORDER BY id DESC LIMIT 1),
          CASE WHEN (SELECT holdout FROM automation.enrollment WHERE journey = 'news' AND customer_key = 77)
               THEN 'held_out:holdout group' ELSE 'skipped:saturated' END,
          'after five unopened messages the next marketing step is skipped');

-- Suppression stops even transactional messages.
INSERT INTO automation.suppression VALUES ('c1@example.com', 'complaint', '2026-01-01', NULL);
SELECT automation.create_journey('receipt', 'order_placed', purpose => 'transactional');
SELECT automation.add_step('receipt', '0', 'receipt');
INSERT INTO gshop.orders VALUES (10, 1, '2026-02-20 10:00+00', 10), (11, 2, '2026-02-20 10:00+00', 10);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-02-20 10:05+00')$$, 'tick after two orders');
SELECT is((SELECT string_agg(customer_key::text, ',') FROM automation.outbox WHERE journey = 'receipt'), '2',
          'the receipt goes to customer 2 only');

-- explain_customer, journey_stats, cart_abandonment_stats.
SELECT is((SELECT decision || ':' || reason FROM automation.explain_customer(1::bigint)
            WHERE journey = 'receipt' AND decision = 'exited'),
          'exited:suppressed', 'explain_customer says why customer 1 got no receipt');
SELECT is((SELECT reason FROM automation.explain_customer(1::bigint) WHERE journey = 'drip'),
          'the signup trigger has not found this customer', 'and which journeys never found them');
SELECT throws_ok($$SELECT * FROM automation.explain_customer(1.0)$$, '42804', NULL,
                 'explain_customer refuses a key of another type than the shop''s');
SELECT throws_ok($$SELECT * FROM automation.explain_customer(999999::bigint)$$, '22023', 'no customer has the key 999999',
                 'and a key that names no one');
SELECT is((SELECT enrolled || '/' || held_out FROM automation.journey_stats WHERE journey = 'news' AND variant IS NULL),
          '200/' || (SELECT count(*) FROM automation.enrollment WHERE journey = 'news' AND holdout),
          'journey_stats counts the enrolled and the held out');
SELECT is((SELECT sum(queued) FROM automation.journey_stats WHERE journey = 'news'),
          (SELECT count(*) FROM automation.outbox WHERE journey = 'news')::numeric,
          'journey_stats counts the queued messages per variant');

-- A preferred hour in the quiet hours: customer 3 orders around 23:30 in
-- Helsinki; a marketing step at the preferred hour goes when the quiet
-- hours end, at 08:00 there, and is not put off to 23:00 again.
INSERT INTO gshop.orders VALUES (20, 3, '2026-02-21 21:30+00', 10), (21, 3, '2026-02-22 21:20+00', 10),
                                (22, 3, '2026-02-23 21:40+00', 10);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-02-24 09:00+00')$$, 'tick after customer 3''s late orders');
SELECT is((SELECT reason FROM automation.decision_log WHERE journey = 'hello' AND customer_key = 3 AND decision = 'deferred'),
          'preferred_hour until 2026-02-25 06:00:00+00', 'the welcome aims at 08:00 Helsinki time, when the quiet hours end');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-02-25 06:00+00')$$, 'tick at 08:00 in Helsinki');
SELECT is((SELECT send_after FROM automation.outbox WHERE journey = 'hello' AND customer_key = 3),
          '2026-02-25 06:00+00'::timestamptz, 'and goes then');

-- valid_for counts from when the step first came due, deferrals or not.
SELECT automation.set_journey_enabled(j, false) FROM unnest(ARRAY['drip', 'trio_a', 'trio_b', 'trio_c', 'news']) j;
SELECT automation.create_journey('flash', 'signup');
SELECT automation.add_step('flash', '0', 'flash_sale', valid_for => '2 hours');
INSERT INTO gshop.customers VALUES (204, 'c204@example.com', true, 'Europe/Helsinki'),
                                   (205, 'c205@example.com', true, 'Europe/Helsinki');
INSERT INTO gshop.signups VALUES (205, '2026-02-26 05:00+00'), (204, '2026-02-26 20:30+00');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-02-26 05:00+00');
                  SELECT * FROM automation.tick('2026-02-26 06:00+00');
                  SELECT * FROM automation.tick('2026-02-26 20:30+00');
                  SELECT * FROM automation.tick('2026-02-27 06:00+00')$$,
                'ticks at 7:00 and 8:00 Helsinki time, and at 22:30 and 8:00 the next day');
SELECT results_eq($$SELECT customer_key, send_after FROM automation.outbox WHERE journey = 'flash'$$,
                  $$VALUES (205::bigint, '2026-02-26 06:00+00'::timestamptz)$$,
                  'the flash sale due at 7:00 goes at 8:00, within its two hours');
SELECT is((SELECT decision || ':' || reason FROM automation.decision_log WHERE journey = 'flash' AND customer_key = 204
            ORDER BY at DESC, id DESC NULLS LAST LIMIT 1),
          'skipped:moment_passed', 'the one due at 22:30, deferred by the quiet hours to 8:00, is given up then');

-- A week is 168 hours whatever the ticking session's TimeZone, also across
-- the change to summer time (Berlin, 29 March): the tick computes in UTC.
SET LOCAL TimeZone = 'Europe/Berlin';
SET LOCAL automation.max_per_week = 1;
SET LOCAL automation.min_interval = 0;
SELECT automation.create_journey('dst_' || x, 'signup') FROM unnest(ARRAY['a', 'b']) x;
SELECT automation.add_step('dst_' || x, '0', 'dst_' || x) FROM unnest(ARRAY['a', 'b']) x;
INSERT INTO gshop.customers VALUES (206, 'c206@example.com', true, 'Europe/Helsinki');
INSERT INTO gshop.signups VALUES (206, '2026-03-26 12:00+00');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-26 12:05+00')$$,
                'a sign-up three signup journeys take up, the week before summer time, ticked from Berlin');
SELECT results_eq($$SELECT count(*), min(reason) FROM automation.decision_log WHERE customer_key = 206 AND decision = 'deferred'$$,
                  $$VALUES (2::bigint, 'weekly_cap until 2026-04-02 12:05:00+00')$$,
                  'one goes; the other two wait 168 hours, not the 167 of a week on Berlin''s clock');
RESET TimeZone;

SELECT * FROM finish();
ROLLBACK;
