-- Saturation outlives the archive: the sent marketing messages the archive
-- prunes after automation.retention still count, until the customer opens,
-- clicks or orders (automation.pruned_unengaged).
BEGIN;
SELECT plan(11);

SET LOCAL automation.default_timezone = 'UTC';
SET LOCAL automation.quiet_hours_start = 0;
SET LOCAL automation.quiet_hours_end = 0;
SET LOCAL automation.min_interval = 0;
SET LOCAL automation.max_per_week = 0;
SET LOCAL automation.saturation_limit = 5;
SET LOCAL automation.retention = '30d';
CREATE SCHEMA sshop;
CREATE TABLE sshop.customers (id bigint PRIMARY KEY, email text, consent boolean);
CREATE TABLE sshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric(12,2));
CREATE TABLE sshop.signups (customer_id bigint, signed_up_at timestamptz);
INSERT INTO sshop.customers SELECT g, 'c' || g || '@example.com', true FROM generate_series(1, 8) g;
SELECT automation.bind_customers('sshop.customers', 'id', 'email', 'consent');
SELECT automation.bind_orders('sshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT automation.bind_signups('sshop.signups', 'customer_id', 'signed_up_at');

-- E-mail sent before, one message a day from 1 May (finished a minute after):
--   1: five marketing messages;
--   2: five, then an open on 20 May;
--   3: five, then an order on 20 May;
--   4: three, and two more on 10-11 June;
--   5: three, and one more on 10 June;
--   6: five, then an open on 6 May (pruned with them);
--   7: five, the last of them dead (four sent);
--   8: five transactional ones.
INSERT INTO automation.outbox_archive (id, customer_key, channel, recipient, template, payload, purpose, dedupe_key,
                                       send_after, status, attempts, errors, created_at, finished_at, reason)
SELECT 1000 + c * 10 + g, c, 'email', 'c' || c || '@example.com', 'old', '{}',
       CASE WHEN c = 8 THEN 'transactional' ELSE 'marketing' END, 'old:' || c || ':' || g,
       t, CASE WHEN c = 7 AND g = 5 THEN 'dead' ELSE 'sent' END, 1, '[]', t, t + interval '1 minute', NULL
  FROM generate_series(1, 8) c, generate_series(1, 5) g,
       LATERAL (SELECT CASE WHEN c IN (4, 5) AND g > 3 THEN timestamptz '2026-06-06 12:00+00'
                            ELSE timestamptz '2026-04-30 12:00+00' END + g * interval '1 day' AS t) x
 WHERE NOT (c = 5 AND g = 5);
INSERT INTO automation.outbox_key (dedupe_key, message_id, customer_key, marketing)
SELECT dedupe_key, id, customer_key, purpose = 'marketing' FROM automation.outbox_archive;
INSERT INTO automation.message_event (message_id, customer_key, event, at)
VALUES (1025, 2, 'open', '2026-05-20 15:00+00'), (1065, 6, 'open', '2026-05-06 09:00+00');
INSERT INTO sshop.orders VALUES (1, 3, '2026-05-20 18:00+00', 30);

SELECT automation.create_journey('promo', 'signup');
SELECT automation.add_step('promo', '0', 'promo');

-- Pruned in batches of automation.prune_batch, a batch a tick, oldest
-- first: a batch takes the messages that finished at the same moment as
-- its last one too, and an event stays while a message before it is left
-- to prune (customer 6's open of 6 May, until the last of May is gone).
-- The streaks come out as from one prune (compared below).
SAVEPOINT batched;
SET LOCAL automation.prune_batch = 7;
CREATE TEMP TABLE batch (call integer, pruned bigint, c6_open_kept boolean);
DO $$
BEGIN
    FOR i IN 1..5 LOOP
        INSERT INTO batch SELECT i, t.rows FROM automation.tick('2026-06-12 12:00+00') t WHERE t.stage = 'archive';
        UPDATE batch SET c6_open_kept = EXISTS (SELECT FROM automation.message_event WHERE customer_key = 6) WHERE call = i;
    END LOOP;
END
$$;
SELECT results_eq($$SELECT pruned, c6_open_kept FROM batch ORDER BY call$$,
                  $$VALUES (8::bigint, true), (8::bigint, true), (8::bigint, true), (12::bigint, true), (0::bigint, false)$$,
                  'the oldest first: a day''s eight together, then the last two days'' twelve; the open kept until they are gone');
SELECT array_agg(u ORDER BY u.customer_key)::text AS batched_streaks FROM automation.pruned_unengaged u \gset
ROLLBACK TO SAVEPOINT batched;

-- The tick of 12 June prunes what finished before 13 May.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-06-12 12:00+00')$$, 'the tick that prunes May');
SELECT results_eq(
    $$SELECT customer_key, channel, sends, first_at, last_at FROM automation.pruned_unengaged ORDER BY 1$$,
    $$VALUES (1::bigint, 'email', 5, timestamptz '2026-05-01 12:01+00', timestamptz '2026-05-05 12:01+00'),
             (4::bigint, 'email', 3, '2026-05-01 12:01+00', '2026-05-03 12:01+00'),
             (5::bigint, 'email', 3, '2026-05-01 12:01+00', '2026-05-03 12:01+00'),
             (7::bigint, 'email', 4, '2026-05-01 12:01+00', '2026-05-04 12:01+00')$$,
    'the pruned marketing messages sent with no open, click or order after them are carried over');
SELECT is((SELECT count(*) FROM automation.outbox_archive WHERE finished_at < '2026-05-13'), 0::bigint,
          'the archive itself is pruned');
SELECT is((SELECT array_agg(u ORDER BY u.customer_key)::text FROM automation.pruned_unengaged u), :'batched_streaks',
          'the streaks of the prune in batches above are those of this one');

INSERT INTO sshop.signups SELECT g, '2026-06-12 12:30+00' FROM generate_series(1, 8) g;
SELECT lives_ok($$SELECT * FROM automation.tick('2026-06-12 12:40+00')$$, 'the tick with the promotion due');
SELECT results_eq(
    $$SELECT customer_key, decision, reason FROM automation.decision_log
       WHERE journey = 'promo' AND decision IN ('sent', 'skipped', 'deferred') ORDER BY customer_key$$,
    $$VALUES (1::bigint, 'skipped', 'saturated'),
             (2::bigint, 'sent', NULL::text),
             (3::bigint, 'sent', NULL),
             (4::bigint, 'skipped', 'saturated'),
             (5::bigint, 'sent', NULL),
             (6::bigint, 'sent', NULL),
             (7::bigint, 'sent', NULL),
             (8::bigint, 'sent', NULL)$$,
    'five unengaged, pruned or not, saturate; an open or an order since, a dead or transactional message do not');

-- Customer 1 opens on 15 June.  By 25 July that open is pruned too: it
-- ends customer 1's streak as it goes.  Customer 4's two June messages
-- join the streak.  Customer 5 orders on 15 June and is sent two more on
-- 20 and 21 June: a new streak.
INSERT INTO automation.message_event (message_id, customer_key, event, at) VALUES (1015, 1, 'open', '2026-06-15 09:00+00');
INSERT INTO sshop.orders VALUES (2, 5, '2026-06-15 10:00+00', 40);
INSERT INTO automation.outbox_archive (id, customer_key, channel, recipient, template, payload, purpose, dedupe_key,
                                       send_after, status, attempts, errors, created_at, finished_at, reason)
SELECT 1056 + g, 5, 'email', 'c5@example.com', 'old', '{}', 'marketing', 'old:5:' || 6 + g,
       t, 'sent', 1, '[]', t, t + interval '1 minute', NULL
  FROM generate_series(0, 1) g, LATERAL (SELECT timestamptz '2026-06-20 12:00+00' + g * interval '1 day' AS t) x;
SELECT lives_ok($$SELECT * FROM automation.tick('2026-07-25 12:00+00')$$, 'the tick that prunes June');
SELECT results_eq(
    $$SELECT customer_key, sends, first_at, last_at FROM automation.pruned_unengaged WHERE customer_key IN (1, 4, 5) ORDER BY 1$$,
    $$VALUES (4::bigint, 5, timestamptz '2026-05-01 12:01+00', timestamptz '2026-06-11 12:01+00'),
             (5::bigint, 2, '2026-06-20 12:01+00', '2026-06-21 12:01+00')$$,
    'a pruned open ends the streak before it; a streak grows with the next pruned messages, or starts again after an order');

SELECT automation.create_journey('promo2', 'signup');
SELECT automation.add_step('promo2', '0', 'promo2');
INSERT INTO sshop.signups VALUES (1, '2026-07-25 12:30+00'), (4, '2026-07-25 12:30+00'), (5, '2026-07-25 12:30+00');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-07-25 12:40+00')$$, 'the tick with the second promotion due');
SELECT results_eq(
    $$SELECT customer_key, decision, reason FROM automation.decision_log
       WHERE journey = 'promo2' AND customer_key IN (1, 4, 5) AND decision IN ('sent', 'skipped') ORDER BY customer_key$$,
    $$VALUES (1::bigint, 'sent', NULL::text), (4::bigint, 'skipped', 'saturated'), (5::bigint, 'sent', NULL)$$,
    'with nothing on record any more: 1 engaged, 4 did not, 5 is two into a new streak');

SELECT * FROM finish();
ROLLBACK;
