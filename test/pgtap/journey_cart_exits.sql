-- A cart reminder re-checks the cart against the shop's live rows before it
-- is written: a paid cart, a deleted cart, an emptied cart and a cart whose
-- every product sold out each end the journey with their own reason, and
-- one line still in stock is enough to send.
BEGIN;
SELECT plan(21);

SET LOCAL automation.default_timezone = 'UTC';
SET LOCAL automation.quiet_hours_start = 0;
SET LOCAL automation.quiet_hours_end = 0;
CREATE SCHEMA xshop;
CREATE TABLE xshop.customers (id bigint PRIMARY KEY, email text, consent boolean);
CREATE TABLE xshop.products (id bigint PRIMARY KEY, name text, category text, stock integer, price numeric(10,2));
CREATE TABLE xshop.carts (id bigint PRIMARY KEY, customer_id bigint, updated_at timestamptz, total numeric(12,2),
                          order_id bigint);
CREATE TABLE xshop.cart_lines (cart_id bigint, product_id bigint, quantity integer);

INSERT INTO xshop.products VALUES
    (1, 'Kettle', 'kitchen', 10, 30.00),
    (2, 'Toaster', 'kitchen', 5, 45.00),
    (3, 'Blender', 'kitchen', 2, 80.00);
INSERT INTO xshop.customers SELECT g, 'c' || g || '@example.com', true FROM generate_series(1, 6) g;
INSERT INTO xshop.carts SELECT 100 + g, g, '2026-05-04 09:00+00', 100, NULL FROM generate_series(1, 6) g;
INSERT INTO xshop.cart_lines VALUES
    (101, 1, 1),            -- stays as it is
    (102, 1, 1),            -- paid
    (103, 1, 1),            -- deleted
    (104, 1, 1),            -- emptied
    (105, 2, 1), (105, 3, 1), -- both products sell out
    (106, 2, 1), (106, 1, 2); -- the toaster sells out, the kettle does not
SELECT automation.bind_customers('xshop.customers', 'id', 'email', 'consent');
SELECT automation.bind_products('xshop.products', 'id', 'name', 'category', 'stock', price_column => 'price');
SELECT automation.bind_carts('xshop.carts', 'id', 'customer_id', 'updated_at', 'total', 'order_id');
SELECT automation.bind_cart_lines('xshop.cart_lines', 'cart_id', 'product_id', 'quantity');

SELECT automation.create_journey('cart_check', 'cart_abandoned', '{"idle": "1 hour"}',
                                 exit_on => ARRAY['converted', 'out_of_stock']);
SELECT automation.add_step('cart_check', '2 hours', 'cart_check', includes => ARRAY['cart']);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-04 10:30+00')$$, 'the idle carts are enrolled');
SELECT is((SELECT count(*) FROM automation.enrollment WHERE journey = 'cart_check' AND status = 'active'), 6::bigint,
          'all six wait for their reminder');

-- Before the reminders are due, the shop changes under them.
UPDATE xshop.carts SET order_id = 900 WHERE id = 102;
DELETE FROM xshop.carts WHERE id = 103;
DELETE FROM xshop.cart_lines WHERE cart_id = 104;
UPDATE xshop.products SET stock = 0 WHERE id IN (2, 3);

SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-04 11:05+00')$$, 'the reminders are due');
SELECT results_eq(
    $$SELECT subject, status, exit_reason FROM automation.enrollment WHERE journey = 'cart_check' ORDER BY subject$$,
    $$VALUES ('cart:101', 'completed', NULL::text), ('cart:102', 'exited', 'converted'),
             ('cart:103', 'exited', 'cart_gone'), ('cart:104', 'exited', 'cart_emptied'),
             ('cart:105', 'exited', 'out_of_stock'), ('cart:106', 'completed', NULL)$$,
    'paid, deleted, emptied and sold-out carts leave the journey, each with its reason');
SELECT results_eq(
    $$SELECT customer_key FROM automation.outbox WHERE journey = 'cart_check' ORDER BY customer_key$$,
    $$VALUES (1::bigint), (6::bigint)$$,
    'only the untouched cart and the one with a kettle still in stock get a reminder');
SELECT is((SELECT payload -> 'cart' -> 'lines' FROM automation.outbox WHERE journey = 'cart_check' AND customer_key = 6),
          '[{"name": "Kettle", "price": 30.00, "product": 1, "quantity": 2, "only_left": null},
            {"name": "Toaster", "price": 45.00, "product": 2, "quantity": 1, "only_left": null}]'::jsonb,
          'the reminder lists the cart as it is, sold-out line included');
SELECT results_eq(
    $$SELECT subject, decision, reason FROM automation.decision_log
       WHERE journey = 'cart_check' AND decision = 'exited' ORDER BY subject$$,
    $$VALUES ('cart:102', 'exited', 'converted'), ('cart:103', 'exited', 'cart_gone'),
             ('cart:104', 'exited', 'cart_emptied'), ('cart:105', 'exited', 'out_of_stock')$$,
    'the decision log says why');

-- Without out_of_stock among the exit conditions, a sold-out cart still gets
-- its reminder; a cart with no lines is not even enrolled.  (No frequency cap here: these
-- customers had a reminder a minute ago.)
SET LOCAL automation.min_interval = 0;
SELECT automation.create_journey('cart_plain', 'cart_abandoned', '{"idle": "1 hour"}', exit_on => ARRAY['converted']);
SELECT automation.add_step('cart_plain', '0', 'cart_plain', includes => ARRAY['cart']);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-04 11:10+00')$$, 'a second cart journey');
SELECT results_eq(
    $$SELECT subject, status, exit_reason FROM automation.enrollment WHERE journey = 'cart_plain' ORDER BY subject$$,
    $$VALUES ('cart:101', 'completed', NULL::text), ('cart:105', 'completed', NULL), ('cart:106', 'completed', NULL)$$,
    'the sold-out cart is reminded of when its journey does not exit on stock, the empty one is not enrolled');

-- The tick looks the customers due up in the index on their key (here the
-- primary key); customers bound through a view have none, and are joined as
-- the planner chooses: the same customers get the same messages.
SELECT ok(automation._leads_index((SELECT s FROM automation.source s WHERE s.kind = 'customers'), 'customer'),
          'the customers'' key leads an index');
SELECT ok(automation._unique_index((SELECT s FROM automation.source s WHERE s.kind = 'customers'), 'customer'),
          'a unique one');
CREATE VIEW xshop.customer_view AS SELECT id, email, consent FROM xshop.customers;
SELECT automation.bind_customers('xshop.customer_view', 'id', 'email', 'consent');
SELECT ok(NOT automation._leads_index((SELECT s FROM automation.source s WHERE s.kind = 'customers'), 'customer'),
          'a view''s columns lead no index');
SELECT automation.create_journey('cart_view', 'cart_abandoned', '{"idle": "1 hour"}', exit_on => ARRAY['converted']);
SELECT automation.add_step('cart_view', '0', 'cart_view', includes => ARRAY['cart']);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-04 11:15+00')$$, 'a cart journey with the customers as a view');
SELECT results_eq(
    $$SELECT customer_key, recipient FROM automation.outbox WHERE journey = 'cart_view' ORDER BY customer_key$$,
    $$VALUES (1::bigint, 'c1@example.com'), (5, 'c5@example.com'), (6, 'c6@example.com')$$,
    'customers bound through a view get their reminders as from the table');

-- A view that has a customer twice (here customer 1, under a second
-- address): the shop is warned, and each cart still gets one reminder, to
-- one of the two rows.  A table whose key is unique cannot have that, and
-- the tick does not count.  (Nor the weekly cap here: these customers had
-- three reminders this morning.)
SET LOCAL automation.max_per_week = 0;
SELECT ok(NOT automation._unique_index((SELECT s FROM automation.source s WHERE s.kind = 'customers'), 'customer'),
          'a view has no unique index');
CREATE VIEW xshop.customer_twice AS
SELECT id, email, consent FROM xshop.customers
UNION ALL
SELECT id, 'again.' || email, consent FROM xshop.customers WHERE id = 1;
SELECT automation.bind_customers('xshop.customer_twice', 'id', 'email', 'consent');
SELECT automation.create_journey('cart_twice', 'cart_abandoned', '{"idle": "1 hour"}', exit_on => ARRAY['converted']);
SELECT automation.add_step('cart_twice', '0', 'cart_twice', includes => ARRAY['cart']);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-04 11:20+00')$$, 'a cart journey with a customer twice in the view');
SELECT results_eq(
    $$SELECT customer_key, count(*) FROM automation.outbox WHERE journey = 'cart_twice' GROUP BY 1 ORDER BY 1$$,
    $$VALUES (1::bigint, 1::bigint), (5, 1), (6, 1)$$,
    'one reminder per cart');
SELECT ok((SELECT recipient FROM automation.outbox WHERE journey = 'cart_twice' AND customer_key = 1)
          IN ('c1@example.com', 'again.c1@example.com'),
          'the twice-listed customer''s to one of the two rows');

-- With an index that leads with the lines' cart, the lines of the carts due
-- are read through it (one descent per cart, in cart order) rather than
-- hashed against every line: the same carts get the same lines, in the same
-- order.
CREATE INDEX ON xshop.cart_lines (cart_id, product_id DESC);
SELECT ok(automation._leads_index((SELECT s FROM automation.source s WHERE s.kind = 'cart_lines'), 'cart_id'),
          'the lines'' cart leads an index');
SELECT automation.create_journey('cart_keyed', 'cart_abandoned', '{"idle": "1 hour"}', exit_on => ARRAY['converted']);
SELECT automation.add_step('cart_keyed', '0', 'cart_keyed', includes => ARRAY['cart']);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-04 11:25+00')$$, 'a cart journey, the lines read through their index');
SELECT results_eq(
    $$SELECT o.customer_key, o.payload -> 'cart' -> 'lines' FROM automation.outbox o WHERE o.journey = 'cart_keyed' ORDER BY 1$$,
    $$SELECT o.customer_key, o.payload -> 'cart' -> 'lines' FROM automation.outbox o
       WHERE o.journey = 'cart_plain' ORDER BY 1$$,
    'the lines as read without the index, in product order');

SELECT * FROM finish();
ROLLBACK;
