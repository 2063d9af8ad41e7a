-- Amounts and times a careless shop may hold: real totals, which add up as
-- the decimals they print as; an order at -infinity, which is no moment;
-- NaN, infinite, negative and NULL totals, which the profiles skip and the
-- predictions leave out alike.
BEGIN;
SELECT plan(8);

SET LOCAL automation.default_timezone = 'UTC';
CREATE SCHEMA oshop;
CREATE TABLE oshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total real);
INSERT INTO oshop.orders
SELECT g, 1 + g % 20, '2026-01-01 10:00+00'::timestamptz + g * interval '3 days', 10 + g % 7 FROM generate_series(1, 100) g;
INSERT INTO oshop.orders VALUES
    (1001, 31, '2026-02-01 10:00+00', 0.1), (1002, 31, '2026-03-01 10:00+00', 0.2),
    (1003, 32, '-infinity', 5), (1004, 32, '2026-03-01 10:00+00', 5),
    (1005, 3, '2026-03-02 10:00+00', 'NaN'), (1006, 3, '2026-03-03 10:00+00', 'Infinity'),
    (1007, 3, '2026-03-04 10:00+00', -1000), (1008, 3, '2026-03-05 10:00+00', NULL);
SELECT automation.bind_orders('oshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');

SELECT lives_ok($$SELECT automation.refresh_profiles(true, '2026-11-01 00:00+00')$$, 'profiles refresh');
SELECT is((SELECT total_spent FROM automation.customer_profile WHERE customer_key = 31), 0.3::numeric,
          'real totals of 0.1 and 0.2 add up to 0.3');
SELECT results_eq($$SELECT order_count, first_order_at FROM automation.customer_profile WHERE customer_key = 32$$,
                  $$VALUES (1, '2026-03-01 10:00+00'::timestamptz)$$, 'an order at -infinity is skipped');
SELECT is((SELECT skipped_null_time || '/' || skipped_bad_total FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1),
          '1/4', 'and counted with the orders whose time is NULL; the NaN, infinite, negative and NULL totals too');
SELECT lives_ok($$SELECT * FROM automation.customer_profile$$, 'every profile reads back');
SELECT lives_ok($$SELECT automation.fit_models(now => '2026-11-01 00:00+00')$$, 'the models fit');
SELECT results_eq($$SELECT x, mean_value >= 0 AND mean_value < 'Infinity' FROM automation.customer_prediction WHERE customer_key = '3'$$,
                  $$SELECT (SELECT order_count - 1 FROM automation.customer_profile WHERE customer_key = 3), true$$,
                  'the predictions count the orders the profile counts, and no NaN or infinity reaches them');

-- A bound view whose rows depend on a volatile function gives other rows
-- when the pass reads the orders again (for the customers whose orders came
-- out of time order): a clear error, and nothing written past the times
-- the pass made room for.
CREATE SEQUENCE oshop.reads;
CREATE TABLE oshop.shifting (id bigint, customer_id bigint, placed_at timestamptz, total numeric);
INSERT INTO oshop.shifting VALUES (1, 1, '2026-01-01', 5), (2, 1, '2026-01-02', 5), (3, 1, '2026-03-01', 5), (4, 1, '2026-02-01', 5);
CREATE VIEW oshop.shifting_orders AS SELECT * FROM oshop.shifting WHERE nextval('oshop.reads') > 2;
SELECT automation.bind_orders('oshop.shifting_orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT throws_ok($$SELECT automation.refresh_profiles(true, '2026-11-01 00:00+00')$$, '55000',
                 'the bound orders gave other rows when the profile pass read them again',
                 'orders that read back as more rows the second time are refused');

SELECT * FROM finish();
ROLLBACK;
