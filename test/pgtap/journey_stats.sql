-- journey_stats per step and variant -- sent, cancelled, delivered,
-- opened, clicked, unsubscribed, converted and revenue -- and the same
-- after the archive pruned the messages (automation.journey_stats_pruned).
BEGIN;
SELECT plan(13);

SET LOCAL automation.attribution_window = '5d';
SET LOCAL automation.retention = '30d';
CREATE SCHEMA tshop;
CREATE TABLE tshop.customers (id bigint PRIMARY KEY, email text, consent boolean);
CREATE TABLE tshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric(12,2));
CREATE TABLE tshop.signups (customer_id bigint, signed_up_at timestamptz);
INSERT INTO tshop.customers SELECT g, 'c' || g || '@example.com', true FROM generate_series(1, 4) g;
SELECT automation.bind_customers('tshop.customers', 'id', 'email', 'consent');
SELECT automation.bind_orders('tshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT automation.bind_signups('tshop.signups', 'customer_id', 'signed_up_at');
SELECT automation.create_journey('promo', 'signup');
SELECT automation.add_step('promo', '0', 'promo');

-- The promotion's messages, finished on 1 May:
--   101 to 1: sent, delivered, opened, clicked, and 1 ordered for 50 two days later;
--   102 to 2 (variant b): sent, delivered, then an unsubscribe;
--   103 to 3: cancelled;
--   104 to 4: sent, and 4 ordered nine days later (after the 5-day window);
--   105 to 1: enqueued by hand under the journey's name without a step (not a step's).
INSERT INTO automation.outbox_archive (id, customer_key, channel, recipient, template, payload, journey, step, variant,
                                       purpose, dedupe_key, send_after, status, attempts, errors, created_at,
                                       finished_at, reason)
VALUES (101, 1, 'email', 'c1@example.com', 'promo', '{}', 'promo', 1, NULL, 'marketing', 'promo:1:1',
        '2026-05-01 12:00+00', 'sent', 1, '[]', '2026-05-01 12:00+00', '2026-05-01 12:01+00', NULL),
       (102, 2, 'email', 'c2@example.com', 'promo', '{}', 'promo', 1, 'b', 'marketing', 'promo:2:1',
        '2026-05-01 12:00+00', 'sent', 1, '[]', '2026-05-01 12:00+00', '2026-05-01 12:01+00', NULL),
       (103, 3, 'email', 'c3@example.com', 'promo', '{}', 'promo', 1, NULL, 'marketing', 'promo:3:1',
        '2026-05-01 12:00+00', 'cancelled', 0, '[]', '2026-05-01 12:00+00', '2026-05-01 12:01+00', 'no_address'),
       (104, 4, 'email', 'c4@example.com', 'promo', '{}', 'promo', 1, NULL, 'marketing', 'promo:4:1',
        '2026-05-01 12:00+00', 'sent', 1, '[]', '2026-05-01 12:00+00', '2026-05-01 12:01+00', NULL),
       (105, 1, 'email', 'c1@example.com', 'promo', '{}', 'promo', NULL, NULL, 'marketing', 'hand:1',
        '2026-05-01 12:00+00', 'sent', 1, '[]', '2026-05-01 12:00+00', '2026-05-01 12:01+00', NULL);
INSERT INTO automation.outbox_key (dedupe_key, message_id, customer_key, marketing)
SELECT dedupe_key, id, customer_key, true FROM automation.outbox_archive;
INSERT INTO automation.message_event (message_id, customer_key, event, at)
VALUES (101, 1, 'delivered', '2026-05-01 12:02+00'), (101, 1, 'open', '2026-05-01 15:00+00'),
       (101, 1, 'click', '2026-05-01 15:01+00'), (102, 2, 'delivered', '2026-05-01 12:02+00'),
       (102, 2, 'unsubscribe', '2026-05-02 09:00+00');
INSERT INTO tshop.orders VALUES (1, 1, '2026-05-03 10:00+00', 50), (2, 4, '2026-05-10 10:00+00', 70);

CREATE TEMP TABLE stats_before AS
SELECT journey, step, variant, sent, cancelled, delivered, opened, clicked, unsubscribed, converted, revenue
  FROM automation.journey_stats WHERE journey = 'promo';
SELECT results_eq(
    $$SELECT * FROM stats_before ORDER BY variant NULLS FIRST$$,
    $$VALUES ('promo', 1, NULL::text, 2::bigint, 1::bigint, 1::bigint, 1::bigint, 1::bigint, 0::bigint, 1::bigint, 50::numeric),
             ('promo', 1, 'b', 1, 0, 1, 0, 0, 1, 0, 0)$$,
    'journey_stats counts the archived messages per step and variant');

-- A month and a half later the archive prunes them, and their events.
SELECT is(automation.archive_outbox('2026-06-15 12:00+00'), 5::bigint, 'the archive prunes the messages');
SELECT is((SELECT count(*) FROM automation.message_event), 0::bigint, 'and their events');
SELECT results_eq(
    $$SELECT journey, step, variant, sent, cancelled, delivered, opened, clicked, unsubscribed, converted, revenue
        FROM automation.journey_stats WHERE journey = 'promo' ORDER BY variant NULLS FIRST$$,
    $$SELECT * FROM stats_before ORDER BY variant NULLS FIRST$$,
    'journey_stats counts them as before');

-- Another message, sent on 20 May and pruned a month later, adds to them.
INSERT INTO automation.outbox_archive (id, customer_key, channel, recipient, template, payload, journey, step, variant,
                                       purpose, dedupe_key, send_after, status, attempts, errors, created_at,
                                       finished_at, reason)
VALUES (106, 3, 'email', 'c3@example.com', 'promo', '{}', 'promo', 1, NULL, 'marketing', 'promo:3:2',
        '2026-05-20 12:00+00', 'sent', 1, '[]', '2026-05-20 12:00+00', '2026-05-20 12:01+00', NULL);
INSERT INTO automation.message_event (message_id, customer_key, event, at) VALUES (106, 3, 'open', '2026-05-21 08:00+00');
INSERT INTO tshop.orders VALUES (3, 3, '2026-05-22 10:00+00', 20);
SELECT is(automation.archive_outbox('2026-07-01 12:00+00'), 1::bigint, 'the next pruning');
SELECT results_eq(
    $$SELECT variant, sent, cancelled, delivered, opened, clicked, unsubscribed, converted, revenue
        FROM automation.journey_stats WHERE journey = 'promo' ORDER BY variant NULLS FIRST$$,
    $$VALUES (NULL::text, 3::bigint, 1::bigint, 1::bigint, 2::bigint, 1::bigint, 0::bigint, 2::bigint, 70::numeric),
             ('b', 1, 0, 1, 0, 0, 1, 0, 0)$$,
    'adds its counts to those kept');

-- A message enqueued under a journey is counted for it: the journey and
-- its step must exist.
SELECT throws_ok($$SELECT automation.enqueue(1::bigint, 'email', 'promo', '{}', 'hand:2', journey => 'promo', step => 9)$$,
                 '22023', 'journey "promo" has no step 9', 'enqueue refuses a step the journey does not have');
SELECT throws_ok($$SELECT automation.enqueue(1::bigint, 'email', 'promo', '{}', 'hand:2', journey => 'promox')$$,
                 '22023', 'journey "promox" does not exist', 'and a journey that does not exist');
SELECT lives_ok($$SELECT automation.enqueue(1::bigint, 'email', 'promo', '{}', 'hand:2', journey => 'promo', step => 1)$$,
                'a step of the journey is taken');
-- A variant belongs to a step; where the step names its variants, to them.
SELECT throws_ok($$SELECT automation.enqueue(1::bigint, 'email', 'promo', '{}', 'hand:3', journey => 'promo', variant => 'b')$$,
                 '22023', 'a variant needs a step', 'enqueue refuses a variant without its step');
SELECT throws_ok($$SELECT automation.enqueue(1::bigint, 'email', 'promo', '{}', 'hand:3', journey => 'promo', step => 1, variant => ' ')$$,
                 '22023', 'variant must not be blank', 'and a blank variant');
SELECT automation.add_step('promo', '1 day', 'promo_again',
                           variants => '[{"name": "short", "split": 50}, {"name": "long", "split": 50}]');
SELECT throws_ok($$SELECT automation.enqueue(1::bigint, 'email', 'promo', '{}', 'hand:3', journey => 'promo', step => 2, variant => 'shrot')$$,
                 '22023', 'step 2 of journey "promo" has no variant "shrot"', 'and a variant the step does not have');
SELECT lives_ok($$SELECT automation.enqueue(1::bigint, 'email', 'promo', '{}', 'hand:3', journey => 'promo', step => 2, variant => 'short')$$,
                'one it has is taken');
SELECT * FROM finish();
ROLLBACK;
