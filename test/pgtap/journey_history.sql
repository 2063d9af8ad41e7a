-- The guardrails that read what was sent before: saturation (reset by an
-- open, a click or an order) and the two frequency caps together, on
-- customers with a history in the archive and the queue.
BEGIN;
SELECT plan(12);

SET LOCAL automation.default_timezone = 'UTC';
SET LOCAL automation.quiet_hours_start = 0;
SET LOCAL automation.quiet_hours_end = 0;
SET LOCAL automation.min_interval = '16h';
SET LOCAL automation.max_per_week = 2;
SET LOCAL automation.saturation_limit = 5;
CREATE SCHEMA hshop;
CREATE TABLE hshop.customers (id bigint PRIMARY KEY, email text, consent boolean);
CREATE TABLE hshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric(12,2));
CREATE TABLE hshop.signups (customer_id bigint, signed_up_at timestamptz);
INSERT INTO hshop.customers SELECT g, 'c' || g || '@example.com', true FROM generate_series(1, 9) g;
SELECT automation.bind_customers('hshop.customers', 'id', 'email', 'consent');
SELECT automation.bind_orders('hshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT automation.bind_signups('hshop.signups', 'customer_id', 'signed_up_at');

-- What was sent before 1 June 12:00 (all marketing e-mail):
--   1, 2, 3: five messages, one a day, 20-24 May (outside both caps' windows);
--            2 opened the third, 3 ordered after the fourth;
--   4: one on 26 May and one at 04:00 on 1 June (the 7-day cap is full);
--   5: one at 04:00 on 1 June (16 hours not yet passed);
--   6: one at 22:00 on 31 May, still queued (not sent yet: it counts too);
--   7: one cancelled at 04:00 (never sent: it does not count);
--   8: three on 20-22 May and two on 30-31 May (five, before the caps'
--      window and in it: saturated);
--   9: four on 20-23 May and a fifth that died on 24 May (four sent: not
--      saturated).
INSERT INTO automation.outbox_archive (id, customer_key, channel, recipient, template, payload, purpose, dedupe_key,
                                       send_after, status, attempts, errors, created_at, finished_at, reason)
SELECT 1000 + c * 10 + g, c, 'email', 'c' || c || '@example.com', 'old', '{}', 'marketing', 'old:' || c || ':' || g,
       t, 'sent', 1, '[]', t, t + interval '1 minute', NULL
  FROM generate_series(1, 3) c, generate_series(1, 5) g,
       LATERAL (SELECT timestamptz '2026-05-19 12:00+00' + g * interval '1 day' AS t) x
UNION ALL
VALUES (1041, 4, 'email', 'c4@example.com', 'old', '{}'::jsonb, 'marketing', 'old:4:1', timestamptz '2026-05-26 12:00+00',
        'sent', 1, '[]'::jsonb, timestamptz '2026-05-26 12:00+00', timestamptz '2026-05-26 12:01+00', NULL::text),
       (1042, 4, 'email', 'c4@example.com', 'old', '{}', 'marketing', 'old:4:2', '2026-06-01 04:00+00',
        'sent', 1, '[]', '2026-06-01 04:00+00', '2026-06-01 04:01+00', NULL),
       (1051, 5, 'email', 'c5@example.com', 'old', '{}', 'marketing', 'old:5:1', '2026-06-01 04:00+00',
        'sent', 1, '[]', '2026-06-01 04:00+00', '2026-06-01 04:01+00', NULL),
       (1071, 7, 'email', 'c7@example.com', 'old', '{}', 'marketing', 'old:7:1', '2026-06-01 04:00+00',
        'cancelled', 1, '[]', '2026-06-01 04:00+00', '2026-06-01 04:01+00', 'no_consent')
UNION ALL
SELECT 1000 + c * 10 + g, c, 'email', 'c' || c || '@example.com', 'old', '{}', 'marketing', 'old:' || c || ':' || g,
       t, CASE WHEN c = 9 AND g = 5 THEN 'dead' ELSE 'sent' END, 1, '[]', t, t + interval '1 minute', NULL
  FROM generate_series(8, 9) c, generate_series(1, 5) g,
       LATERAL (SELECT timestamptz '2026-05-19 12:00+00' + g * interval '1 day'
                       + CASE WHEN c = 8 AND g > 3 THEN interval '7 days' ELSE interval '0' END AS t) x;
INSERT INTO automation.outbox (customer_key, channel, recipient, template, payload, purpose, dedupe_key, send_after)
VALUES (6, 'email', 'c6@example.com', 'old', '{}', 'marketing', 'old:6:1', '2026-05-31 22:00+00');
-- (each with its dedupe key, as enqueue and the tick take them)
INSERT INTO automation.outbox_key (dedupe_key, message_id, customer_key, marketing)
SELECT dedupe_key, id, customer_key, true FROM automation.outbox_archive
UNION ALL
SELECT dedupe_key, id, customer_key, true FROM automation.outbox;
INSERT INTO automation.message_event (message_id, customer_key, event, at) VALUES (1023, 2, 'open', '2026-05-22 15:00+00');
INSERT INTO hshop.orders VALUES (1, 3, '2026-05-23 18:00+00', 30);

SELECT automation.create_journey('promo', 'signup');
SELECT automation.add_step('promo', '0', 'promo');
INSERT INTO hshop.signups SELECT g, '2026-06-01 11:50+00' FROM generate_series(1, 9) g;
SELECT lives_ok($$SELECT * FROM automation.tick('2026-06-01 12:00+00')$$, 'the tick at noon');

SELECT results_eq(
    $$SELECT customer_key, decision, reason FROM automation.decision_log
       WHERE journey = 'promo' AND decision IN ('sent', 'skipped', 'deferred') ORDER BY customer_key$$,
    $$VALUES (1::bigint, 'skipped', 'saturated'),
             (2::bigint, 'sent', NULL::text),
             (3::bigint, 'sent', NULL),
             (4::bigint, 'deferred', 'weekly_cap until 2026-06-02 12:00:00+00'),
             (5::bigint, 'deferred', 'frequency_cap until 2026-06-01 20:00:00+00'),
             (6::bigint, 'deferred', 'frequency_cap until 2026-06-01 14:00:00+00'),
             (7::bigint, 'sent', NULL),
             (8::bigint, 'skipped', 'saturated'),
             (9::bigint, 'sent', NULL)$$,
    'each customer''s history decides: saturated, reset by an open or an order, capped by the week or the interval');
SELECT is((SELECT reason FROM automation.decision_log WHERE journey = 'promo' AND customer_key = 6 AND decision = 'deferred'),
          'frequency_cap until 2026-06-01 14:00:00+00', 'a queued message counts from its send time');
SELECT results_eq($$SELECT customer_key FROM automation.outbox WHERE journey = 'promo' ORDER BY 1$$,
                  $$VALUES (2::bigint), (3::bigint), (7::bigint), (9::bigint)$$,
                  'a cancelled or dead message holds nothing back');

-- The deferred ones go when their cap allows, and not before.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-06-01 20:00+00')$$, 'the tick at 20:00');
SELECT results_eq($$SELECT customer_key FROM automation.outbox WHERE journey = 'promo' ORDER BY 1$$,
                  $$VALUES (2::bigint), (3::bigint), (5::bigint), (6::bigint), (7::bigint), (9::bigint)$$,
                  'customer 5''s 16 hours have passed, and 6''s');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-06-02 12:00+00')$$, 'the tick the next noon');
SELECT results_eq($$SELECT customer_key FROM automation.outbox WHERE journey = 'promo' ORDER BY 1$$,
                  $$VALUES (2::bigint), (3::bigint), (4::bigint), (5::bigint), (6::bigint), (7::bigint), (9::bigint)$$,
                  'customer 4''s oldest message has left the week');

-- A retention shorter than the caps' window prunes what they do not read,
-- and keeps the sent marketing messages of the last 7 days, and their
-- events with them (customer 8 opened the last of theirs on 1 June).
INSERT INTO automation.message_event (message_id, customer_key, event, at) VALUES (1085, 8, 'open', '2026-06-01 09:00+00');
SET LOCAL automation.retention = '1h';
SELECT is(automation.archive_outbox('2026-06-02 13:00+00'), 25::bigint, 'an hour''s retention prunes');
SELECT results_eq($$SELECT dedupe_key FROM automation.outbox_archive ORDER BY 1$$,
                  $$VALUES ('old:4:2'), ('old:5:1'), ('old:8:4'), ('old:8:5')$$,
                  'all but the sent marketing messages since 26 May 13:00 (not the cancelled one)');
SELECT is((SELECT count(*) FROM automation.message_event WHERE message_id = 1085), 1::bigint,
          'an open of a message the caps keep stays with it');
SELECT automation.archive_outbox('2026-06-09 13:00+00');
SELECT is_empty($$SELECT FROM automation.pruned_unengaged WHERE customer_key = 8$$,
                'so when the message goes a week later, the open still counts: no streak of unengaged messages');

SELECT * FROM finish();
ROLLBACK;
