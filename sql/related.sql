-- Related products: what a DBA and an analyst see, including every error.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SELECT count(automation.unbind(k)) >= 0 AS nothing_bound
  FROM unnest(ARRAY['orders', 'order_lines', 'customers', 'carts', 'cart_lines', 'products', 'signups']) AS k;
SET client_min_messages = notice;
SET automation.default_timezone = 'UTC';
SET extra_float_digits = 0;
SET TimeZone = 'UTC';

-- the settings and their defaults
SHOW automation.related_refresh_interval;
SHOW automation.related_min_customers;
SET automation.related_min_customers = 0;
\echo sqlstate :LAST_ERROR_SQLSTATE
SET automation.related_refresh_interval = '1h';
\echo sqlstate :LAST_ERROR_SQLSTATE

-- nothing bound yet: errors that name the bind function, and a tick stage
-- that does nothing
SELECT automation.refresh_related_products();
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.related_products(1);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation._tick_related('2025-01-01 00:00+00');

CREATE SCHEMA rshop;
CREATE TABLE rshop.orders (id integer PRIMARY KEY, customer text, placed_at timestamp, total numeric(8,2), status text);
CREATE TABLE rshop.lines (order_id integer, sku text, qty integer, price numeric(8,2));
CREATE TABLE rshop.products (sku text PRIMARY KEY, title text);
INSERT INTO rshop.products VALUES ('tea', 'Green tea'), ('cup', 'Tea cup'), ('pot', 'Tea pot'),
    ('bag', 'Paper bag'), ('mug', 'Coffee mug'), ('bean', 'Coffee beans'), ('kettle', 'Kettle'), ('tray', 'Tray');
-- ann, bob and cy buy tea things, dee and eve coffee things; everyone takes
-- a paper bag; only cy bought a kettle, nobody a tray; eve's last order was
-- cancelled, and fay's is still to come
INSERT INTO rshop.orders VALUES
    (1, 'ann', '2024-12-01 10:00', 30, 'paid'), (2, 'bob', '2024-12-02 10:00', 40, 'paid'),
    (3, 'cy', '2024-12-03 10:00', 20, 'paid'), (4, 'dee', '2024-12-04 10:00', 25, 'paid'),
    (5, 'eve', '2024-12-05 10:00', 25, 'paid'), (6, 'eve', '2024-12-06 10:00', 90, 'cancelled'),
    (7, 'ann', '2024-12-07 10:00', 15, 'paid'), (8, 'fay', '2025-06-01 10:00', 50, 'paid');
INSERT INTO rshop.lines VALUES
    (1, 'tea', 1, 10), (1, 'cup', 2, 10), (1, 'bag', 1, 0),
    (2, 'tea', 1, 10), (2, 'pot', 1, 30), (2, 'cup', 1, 10), (2, 'bag', 1, 0),
    (3, 'tea', 2, 10), (3, 'bag', 1, 0), (3, 'mug', -1, 5), (3, 'kettle', 1, 25),
    (4, 'mug', 1, 10), (4, 'bean', 1, 15), (4, 'bag', 1, 0),
    (5, 'mug', 1, 10), (5, 'bean', 1, 15), (5, 'bag', 1, 0),
    (6, 'tea', 1, 10), (6, 'pot', 1, 30), (6, 'cup', 5, 10),
    (7, 'pot', 1, 15),
    (8, 'tea', 1, 10), (8, 'mug', 1, 10), (8, 'bean', 1, 10);

-- orders bound without an order id cannot be joined to their lines
SELECT automation.bind_orders('rshop.orders', 'customer', 'placed_at', 'total');
SELECT automation.bind_order_lines('rshop.lines', 'order_id', 'sku', 'qty', 'price');
SELECT automation.refresh_related_products('2025-01-01 00:00+00');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation._tick_related('2025-01-01 00:00+00');

SELECT automation.bind_orders('rshop.orders', 'customer', 'placed_at', 'total', order_id_column => 'id',
                              status_column => 'status', counted_statuses => ARRAY['paid']);

-- never computed: the error says how to compute them
SELECT * FROM automation.related_products('tea'::text);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation._related_for(ARRAY['tea'], 3);

-- the first refresh, and what it read: cancelled orders, lines with a
-- negative quantity and orders after now do not count
SELECT automation.refresh_related_products('2025-01-01 00:00+00');
SELECT as_of, lines_read, customers, capped_customers, products, pairs, rows_written FROM automation.related_refresh;
SELECT product, related, round(score::numeric, 6) AS score, customers, computed_at
  FROM automation.related_product ORDER BY product, score DESC, related;

-- an analyst's view: best first, names NULL while products are not bound
SELECT * FROM automation.related_products('tea'::text);
SELECT automation.bind_products('rshop.products', 'sku', 'title');
SELECT related, name, round(score::numeric, 6) AS score, customers FROM automation.related_products('tea'::text);
SELECT related, name, customers FROM automation.related_products('bag'::text, n => 1);
SELECT * FROM automation.related_products('pot'::varchar, 10);
-- known products without related ones: the kettle was bought with other
-- things by one customer only, the tray never
SELECT * FROM automation.related_products('kettle'::text);
SELECT * FROM automation.related_products('tray'::text);

-- errors
SELECT * FROM automation.related_products('tea'::text, 0);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.related_products('tea'::text, NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.related_products(NULL::text);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.related_products('teapot'::text);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.refresh_related_products(NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE

-- for message payloads: related to any of the products, without them and
-- without what the customer already has
SELECT automation._related_for(ARRAY['tea'], 2);
SELECT automation._related_for(ARRAY['tea', 'cup'], 5, exclude => ARRAY['pot']);
SELECT automation._related_for(ARRAY['tea', NULL], 5, NULL);
SELECT automation._related_for(ARRAY['nothing'], 5);
SELECT automation._related_for(ARRAY['tea'], 0);

-- a lower minimum support relates products bought together by one customer
SET automation.related_min_customers = 1;
SELECT automation.refresh_related_products('2025-01-01 00:00+00');
SELECT related, customers FROM automation.related_products('kettle'::text);
RESET automation.related_min_customers;

-- the tick: a stage after predictions; it computes again only when the
-- last refresh is a day old
SELECT position, stage, function FROM automation.tick_stage WHERE stage = 'related_products';
SELECT automation._tick_related('2025-01-01 12:00+00');
SELECT automation._tick_related('2025-01-02 00:00+00');
SELECT count(*) AS refreshes, max(as_of) AS last FROM automation.related_refresh;

-- an analyst may read related products, but not compute them
CREATE ROLE regress_related_analyst;
SELECT count(*) > 0 AS granted FROM automation.grant_access('regress_related_analyst', 'analyst');
SET ROLE regress_related_analyst;
SELECT related, name FROM automation.related_products('cup'::text, 2);
SELECT count(*) > 0 AS readable FROM automation.related_product;
SELECT automation.refresh_related_products();
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation._related_for(ARRAY['tea'], 2);
\echo sqlstate :LAST_ERROR_SQLSTATE
RESET ROLE;

-- clean up
DROP OWNED BY regress_related_analyst;
DROP ROLE regress_related_analyst;
TRUNCATE automation.related_product, automation.related_refresh;
SELECT automation.unbind(k) FROM unnest(ARRAY['orders', 'order_lines', 'products']) AS k;
DROP SCHEMA rshop CASCADE;
RESET automation.default_timezone;
RESET TimeZone;
