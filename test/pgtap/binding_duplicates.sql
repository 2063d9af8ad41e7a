-- Customers bound with a key that is not unique in the shop's relation (a
-- view over two sources, a table without a key): ticks go on, each
-- customer is a segment member once and gets each message once.
BEGIN;
SELECT plan(4);

SET LOCAL automation.default_timezone = 'UTC';
SET LOCAL automation.quiet_hours_start = 0;
SET LOCAL automation.quiet_hours_end = 0;
SET LOCAL client_min_messages = error;
CREATE SCHEMA dshop;
CREATE TABLE dshop.customers (id bigint, email text, consent boolean);
INSERT INTO dshop.customers VALUES (1, 'ada@example.com', true), (1, 'ada.old@example.com', true), (2, 'bob@example.com', true);
CREATE TABLE dshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric);
INSERT INTO dshop.orders VALUES (1, 1, '2026-05-01 10:00+00', 10), (2, 2, '2026-03-01 10:00+00', 5);
CREATE TABLE dshop.signups (customer_id bigint, signed_up_at timestamptz);
INSERT INTO dshop.signups VALUES (1, '2026-05-01 11:00+00'), (2, '2026-05-01 11:00+00');
SELECT automation.bind_customers('dshop.customers', 'id', 'email', 'consent');
SELECT automation.bind_orders('dshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT automation.bind_signups('dshop.signups', 'customer_id', 'signed_up_at');
SELECT automation.create_journey('hi', 'signup');
SELECT automation.add_step('hi', '0', 'hi');

SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-01 12:00+00')$$,
                'a tick over customers with a key on two rows');
SELECT is_empty($$SELECT segment, customer_key FROM automation.segment_member WHERE exited_at IS NULL
                   GROUP BY 1, 2 HAVING count(*) > 1$$, 'each customer is a member of a segment once');
SELECT results_eq($$SELECT customer_key, count(*) FROM automation.outbox WHERE journey = 'hi' GROUP BY 1 ORDER BY 1$$,
                  $$VALUES (1::bigint, 1::bigint), (2::bigint, 1::bigint)$$, 'and gets the message once');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-02 12:00+00')$$, 'and the next tick works too');

SELECT * FROM finish();
ROLLBACK;
