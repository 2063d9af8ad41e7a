-- Replenishment in simulated time: configured and learned intervals, the
-- reminders they give, the exit when the customer re-bought, and the
-- subscription candidates.
BEGIN;
SELECT plan(25);

SET LOCAL timezone = 'UTC';
SET LOCAL automation.default_timezone = 'UTC';
SET LOCAL automation.quiet_hours_start = 0;
SET LOCAL automation.quiet_hours_end = 0;
SET LOCAL automation.min_interval = 0;
SET LOCAL automation.max_per_week = 0;
CREATE SCHEMA tshop;
CREATE TABLE tshop.customers (id text PRIMARY KEY, email text, consent boolean);
CREATE TABLE tshop.products (id text PRIMARY KEY, name text, category text, consumption_days numeric);
CREATE TABLE tshop.orders (id bigint PRIMARY KEY, customer_id text, placed_at timestamptz, total numeric);
CREATE TABLE tshop.order_lines (order_id bigint, product_id text, quantity integer);
INSERT INTO tshop.products VALUES
    ('dogfood10', 'Dog food 10 kg', 'dog food', 28),
    ('vit100', 'Vitamins, one tablet', 'vitamins', 1),
    ('beans', 'Coffee beans 1 kg', 'coffee', NULL),
    ('mug', 'Mug', 'kitchen', NULL);
INSERT INTO tshop.customers SELECT c, c || '@example.com', true
  FROM unnest(ARRAY['ada', 'bob', 'cem', 'c1', 'c2', 'c3', 'c4', 'c5']) c;
-- Ada: one 10 kg bag of dog food (28 days).  Bob: 100 vitamin tablets, one a day.
-- Cem: dog food, and again before it ran out.
INSERT INTO tshop.orders VALUES
    (1, 'ada', '2026-03-01 10:00+00', 55),
    (2, 'bob', '2026-03-01 10:00+00', 13),
    (3, 'cem', '2026-03-01 10:00+00', 55);
INSERT INTO tshop.order_lines VALUES (1, 'dogfood10', 1), (2, 'vit100', 100), (3, 'dogfood10', 1);
-- Coffee beans have no consumption_days: five customers bought 2 kg, and
-- again 20 days later (10 days a kilo); c1 three times, like clockwork.
INSERT INTO tshop.orders SELECT 100 + i * 10 + k, 'c' || i, timestamptz '2025-06-01 10:00+00' + (k * 20 + i) * interval '1 day', 30
  FROM generate_series(1, 5) i, generate_series(0, 1) k;
INSERT INTO tshop.order_lines SELECT 100 + i * 10 + k, 'beans', 2 FROM generate_series(1, 5) i, generate_series(0, 1) k;
INSERT INTO tshop.orders VALUES (200, 'c1', '2025-07-11 10:00+00', 30);
INSERT INTO tshop.order_lines VALUES (200, 'beans', 2);
-- Mugs, bought twice by the same customers at odd intervals: not a consumable.
INSERT INTO tshop.orders SELECT 300 + i * 10 + k, 'c' || i, timestamptz '2025-01-01 10:00+00' + (k * i * i * 13 + i) * interval '1 day', 8
  FROM generate_series(1, 5) i, generate_series(0, 1) k;
INSERT INTO tshop.order_lines SELECT 300 + i * 10 + k, 'mug', 1 FROM generate_series(1, 5) i, generate_series(0, 1) k;

SELECT automation.bind_customers('tshop.customers', 'id', 'email', 'consent');
SELECT automation.bind_orders('tshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT automation.bind_order_lines('tshop.order_lines', 'order_id', 'product_id', 'quantity');
SELECT automation.bind_products('tshop.products', 'id', 'name', 'category', consumption_days_column => 'consumption_days');

SELECT is(automation.install_preset('replenishment',
              '{"offers": [{"category": "vitamins", "lead_days": 20, "template": "replenishment_offer", "payload": {"free_sample": true}}]}'),
          'replenishment', 'install the replenishment preset with a vitamin offer');

-- Learning.
SELECT ok(automation.refresh_lifecycle('2026-03-02 00:00+00') > 0, 'refresh_lifecycle learns from the orders');
SELECT results_eq($$SELECT product, configured_days, learned_days, observations, days_per_unit, source
                      FROM automation.replenishment_intervals WHERE product IN ('dogfood10', 'beans') ORDER BY 1$$,
                  $$VALUES ('beans'::text, NULL::float8, 10::float8, 6::bigint, 10::float8, 'learned'::text),
                           ('dogfood10', 28, NULL, 0, 28, 'configured')$$,
                  'coffee beans: 10 days a kilo, learned from six repeat purchases; dog food as configured');
SELECT is((SELECT source FROM automation.replenishment_intervals WHERE product = 'mug'), 'irregular',
          'mugs bought at odd intervals are not learned as a consumable');
SET LOCAL automation.replenishment_min_observations = 7;
SELECT automation.refresh_lifecycle('2026-03-02 00:00+00');
SELECT results_eq($$SELECT source, days_per_unit FROM automation.replenishment_intervals WHERE product = 'beans'$$,
                  $$VALUES ('too_few_observations'::text, NULL::float8)$$,
                  'with automation.replenishment_min_observations = 7 the six observations are not enough');
RESET automation.replenishment_min_observations;
SELECT automation.refresh_lifecycle('2026-03-02 00:00+00');
SELECT is((SELECT runs_out_at FROM automation.customer_product WHERE customer_key = 'ada' AND product = 'dogfood10'),
          '2026-03-29 10:00+00'::timestamptz, 'Ada''s bag runs out 28 days after she bought it');
-- Days or a quantity entered wrong give no run-out moment, rather than
-- stopping the refresh (and with it every tick).
INSERT INTO tshop.products VALUES ('oops', 'Mistyped', 'dog food', 'NaN');
INSERT INTO tshop.orders VALUES (5, 'bob', '2026-03-01 11:00+00', 1);
INSERT INTO tshop.order_lines VALUES (5, 'oops', 1), (5, 'dogfood10', 10000000);
SELECT lives_ok($$SELECT automation.refresh_lifecycle('2026-03-02 00:00+00')$$,
                'consumption_days of NaN, and ten million bags of dog food, are read');
SELECT results_eq($$SELECT product, runs_out_at FROM automation.customer_product
                     WHERE customer_key = 'bob' AND product IN ('dogfood10', 'oops') ORDER BY 1$$,
                  $$VALUES ('dogfood10'::text, NULL::timestamptz), ('oops', NULL)$$,
                  'and give no run-out moment');
DELETE FROM tshop.order_lines WHERE order_id = 5;
DELETE FROM tshop.orders WHERE id = 5;
DELETE FROM tshop.products WHERE id = 'oops';
SELECT automation.refresh_lifecycle('2026-03-02 00:00+00');

-- Cem buys again before his reminder; the tick that finds the reminder
-- due (no refresh in between) sees it and lets him be.
INSERT INTO tshop.orders VALUES (4, 'cem', '2026-03-20 10:00+00', 55);
INSERT INTO tshop.order_lines VALUES (4, 'dogfood10', 1);
SET LOCAL automation.lifecycle_refresh = 0;

SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-22 09:00+00')$$, 'tick three weeks minus an hour after');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'replenishment'), 0::bigint, 'nothing yet');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-22 10:30+00')$$, 'tick three weeks after');
SELECT results_eq($$SELECT customer_key, template, payload -> 'replenish' ->> 'product', (payload -> 'replenish' ->> 'quantity')::numeric
                      FROM automation.outbox WHERE journey = 'replenishment'$$,
                  $$VALUES ('ada'::text, 'replenishment_reminder', 'dogfood10', 1::numeric)$$,
                  '10 kg of dog food lasting 28 days: Ada is reminded after three weeks (seven days'' lead)');
SELECT is((SELECT exit_reason FROM automation.enrollment WHERE journey = 'replenishment' AND customer_key = 'cem'),
          'bought', 'Cem bought dog food again: his reminder exits');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-22 11:30+00')$$, 'tick again');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'replenishment'), 1::bigint, 'Ada is reminded once');

-- Bob's 100 tablets last 100 days; the vitamin offer comes 20 days ahead.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-20 09:00+00')$$, 'tick on day 80, an hour early');
SELECT is((SELECT count(*) FROM automation.outbox WHERE customer_key = 'bob'), 0::bigint, 'nothing for Bob yet');
SET LOCAL automation.lifecycle_refresh = '1d';
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-20 10:30+00')$$, 'tick on day 80');
SELECT results_eq($$SELECT template, variant, (payload ->> 'free_sample')::boolean, payload -> 'replenish' ->> 'runs_out_at'
                      FROM automation.outbox WHERE customer_key = 'bob'$$,
                  $$VALUES ('replenishment_offer'::text, 'offer_1'::text, true, '2026-06-09T10:00:00+00:00'::text)$$,
                  '100 tablets taken daily: an offer with a free sample at day 80');
SELECT ok((SELECT max(as_of) FROM automation.lifecycle_refresh) = '2026-05-20 10:30+00',
          'the tick refreshed the lifecycle tables, older than automation.lifecycle_refresh');

-- Subscription candidates: c1 bought beans three times, 20 days apart.
SELECT results_eq($$SELECT customer_key, product FROM automation.customer_product WHERE regular$$,
                  $$VALUES ('c1'::text, 'beans'::text)$$,
                  'c1 buys beans regularly');
SELECT results_eq($$SELECT customer_key FROM automation.segment_member WHERE segment = 'subscription_candidate'$$,
                  $$VALUES ('c1'::text)$$,
                  'and is in the subscription_candidate segment');

-- A line with no quantity recorded bought one unit: it runs out as one
-- would, not at the moment it was bought.
INSERT INTO tshop.orders VALUES (7, 'c2', '2026-03-01 12:00+00', 55);
INSERT INTO tshop.order_lines VALUES (7, 'dogfood10', NULL);
SELECT automation.refresh_lifecycle('2026-03-02 00:00+00');
SELECT is((SELECT runs_out_at FROM automation.customer_product WHERE customer_key = 'c2' AND product = 'dogfood10'),
          '2026-03-29 12:00+00'::timestamptz, 'a bag bought with no quantity recorded runs out 28 days later');
-- Products bound through a view that repeats a key and holds a NULL one.
CREATE VIEW tshop.products_v AS
SELECT id, name, category, consumption_days FROM tshop.products
UNION ALL SELECT NULL, 'Ghost', 'dog food', 5
UNION ALL SELECT 'dogfood10', 'Dog food 10 kg (again)', 'dog food', 28;
SELECT automation.bind_products('tshop.products_v', 'id', 'name', 'category', consumption_days_column => 'consumption_days');
SELECT lives_ok($$SELECT automation.refresh_lifecycle('2026-03-02 00:00+00')$$,
                'refresh_lifecycle over products that repeat a key or hold a NULL one');
SELECT is((SELECT count(*) FROM automation.product_interval WHERE product = 'dogfood10'), 1::bigint,
          'one interval per product');

SELECT * FROM finish();
ROLLBACK;
