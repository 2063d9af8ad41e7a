-- Related products on a hand-built shop: co-purchases are found, scores are
-- normalised so that a best-seller does not outrank a product genuinely
-- bought together, only counted orders up to now count, every product keeps
-- at most 20, a customer's basket at most their 100 most recent products,
-- _related_for leaves out what it is told to, and the tick computes again
-- only once the result is a day old.  Then the demo shop, against the same
-- scores computed in plain SQL.
BEGIN;
SELECT plan(25);

SET LOCAL automation.default_timezone = 'UTC';
CREATE SCHEMA tshop;
CREATE TABLE tshop.products (id integer PRIMARY KEY, name text);
CREATE TABLE tshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric(12,2), status text);
CREATE TABLE tshop.order_lines (order_id bigint, product_id integer, quantity integer, unit_price numeric(10,2));

-- 1 coffee, the best-seller; 2 a grinder; 3 filters, bought with the
-- grinder; 4 a kettle, bought with the grinder only in cancelled orders;
-- 10-35 a sampler shop (10 bought with 25 others); 200-300 one collector's
-- hundred and one products.
INSERT INTO tshop.products
SELECT i, CASE i WHEN 1 THEN 'Coffee' WHEN 2 THEN 'Grinder' WHEN 3 THEN 'Filters' WHEN 4 THEN 'Kettle'
                 ELSE 'Product ' || i END
  FROM (SELECT unnest(ARRAY[1, 2, 3, 4]) UNION ALL SELECT generate_series(10, 35)
        UNION ALL SELECT generate_series(200, 300)) p(i);

-- Customers 1-20 all buy coffee; 1-4 a grinder with it, 1-3 also filters.
INSERT INTO tshop.orders
SELECT c, c, '2025-01-01 10:00+00'::timestamptz + c * interval '1 hour', 10, 'paid' FROM generate_series(1, 20) c;
INSERT INTO tshop.order_lines SELECT c, 1, 1, 10 FROM generate_series(1, 20) c;
INSERT INTO tshop.order_lines SELECT c, 2, 1, 50 FROM generate_series(1, 4) c;
INSERT INTO tshop.order_lines SELECT c, 3, 1, 5 FROM generate_series(1, 3) c;
-- Customers 5-9 order a grinder and a kettle, cancelled; 10 and 11 do it in
-- orders placed after the refresh's now.
INSERT INTO tshop.orders
SELECT 100 + c, c, '2025-02-01 10:00+00', 60, CASE WHEN c < 10 THEN 'cancelled' ELSE 'paid' END
  FROM generate_series(5, 11) c;
UPDATE tshop.orders SET placed_at = '2025-06-01 10:00+00' WHERE id IN (110, 111);
INSERT INTO tshop.order_lines SELECT 100 + c, p, 1, 30 FROM generate_series(5, 11) c, (VALUES (2), (4)) p(p);
-- Customers 21 and 22 buy product 10 with 11-35, in one order each.
INSERT INTO tshop.orders VALUES (221, 21, '2025-03-01 10:00+00', 100, 'paid'), (222, 22, '2025-03-01 10:00+00', 100, 'paid');
INSERT INTO tshop.order_lines SELECT o, p, 1, 4 FROM (VALUES (221), (222)) o(o), generate_series(10, 35) p;
-- Customer 30 buys 200, 201, ..., 300, one a day; 31 and 32 buy 200 and 300.
INSERT INTO tshop.orders
SELECT 1000 + i, 30, '2025-01-01 10:00+00'::timestamptz + i * interval '1 day', 1, 'paid' FROM generate_series(0, 100) i;
INSERT INTO tshop.order_lines SELECT 1000 + i, 200 + i, 1, 1 FROM generate_series(0, 100) i;
INSERT INTO tshop.orders VALUES (331, 31, '2025-03-01 10:00+00', 2, 'paid'), (332, 32, '2025-03-01 10:00+00', 2, 'paid');
INSERT INTO tshop.order_lines SELECT o, p, 1, 1 FROM (VALUES (331), (332)) o(o), (VALUES (200), (300)) p(p);

SELECT automation.bind_orders('tshop.orders', 'customer_id', 'placed_at', 'total',
                              order_id_column => 'id', status_column => 'status',
                              counted_statuses => ARRAY['paid']) IS NULL AS bound \gset
SELECT automation.bind_order_lines('tshop.order_lines', 'order_id', 'product_id', 'quantity') IS NULL AS bound \gset
SELECT automation.bind_products('tshop.products', 'id', 'name') IS NULL AS bound \gset

SELECT cmp_ok(automation.refresh_related_products('2025-05-01 00:00+00'), '>', 0::bigint,
              'a refresh writes related products');

-- co-purchase and normalisation
SELECT is((SELECT array_agg(related ORDER BY score DESC, related) FROM automation.related_products(2)),
          ARRAY['3', '1'], 'the grinder''s related products: filters first, then coffee');
SELECT is((SELECT array_agg(customers ORDER BY score DESC, related) FROM automation.related_products(2)),
          ARRAY[3, 4]::bigint[], 'although more grinder buyers also bought coffee (4) than filters (3)');
SELECT is((SELECT score FROM automation.related_products(2) WHERE related = '3'),
          3 / sqrt(4 * 3) * (3 / 8.0::float8),
          'the score is the cosine of the buyer sets, shrunk by c / (c + 5)');
SELECT is((SELECT name FROM automation.related_products(2) WHERE related = '3'), 'Filters',
          'names come from the bound products');
SELECT is((SELECT related FROM automation.related_products(3, 1)), '2',
          'the filters'' best related product is the grinder, not the coffee everyone buys');
SELECT is((SELECT array_agg(related ORDER BY score DESC, related) FROM automation.related_products(' 2'::text)),
          ARRAY['3', '1'], 'a key given as text with blanks is the product it reads as');

-- only counted orders placed up to now
SELECT is((SELECT count(*) FROM automation.related_product WHERE '4' IN (product, related)), 0::bigint,
          'a kettle bought with grinders only in cancelled or future orders is related to nothing');
SELECT is((SELECT lines_read FROM automation.related_refresh), 20 + 4 + 3 + 2 * 26 + 101 + 4::bigint,
          'only the lines of counted orders placed up to now are read');

-- top-k
SELECT is((SELECT count(*) FROM automation.related_product WHERE product = '10'), 20::bigint,
          'a product bought with 25 others keeps the best 20');
SELECT is((SELECT count(*) FROM automation.related_products(10, 100)), 20::bigint,
          'and related_products returns no more than that');
SELECT is((SELECT count(*) FROM automation.related_products(10)), 5::bigint, 'five by default');
SELECT is((SELECT count(*) FROM automation.related_products(10, 1)), 1::bigint, 'one when asked for one');

-- the basket cap
SELECT is((SELECT capped_customers FROM automation.related_refresh), 1::bigint,
          'the collector is the one customer whose basket is capped');
SELECT is((SELECT customers FROM automation.related_product WHERE product = '300' AND related = '200'), 2::bigint,
          'their oldest product no longer counts: 200 and 300 were bought together by customers 31 and 32 only');
SELECT is((SELECT customers FROM automation.related_product WHERE product = '300' AND related = '201'), NULL::bigint,
          'and 201 is related to 300 by no one else');

-- _related_for: best score per related product over the inputs, without the
-- inputs and the exclude list
SELECT is(automation._related_for(ARRAY['2', '3'], 5),
          jsonb_build_array(jsonb_build_object('product', '1', 'name', 'Coffee',
                                               'score', (SELECT max(score) FROM automation.related_product
                                                          WHERE product IN ('2', '3') AND related = '1'))),
          '_related_for leaves the given products out');
SELECT is(automation._related_for(ARRAY['2'], 5, exclude => ARRAY['3']) -> 0 ->> 'product', '1',
          '_related_for leaves the exclude list out');
SELECT is(jsonb_array_length(automation._related_for(ARRAY['10', '11'], 3)), 3, '_related_for returns at most n');

-- the tick
SELECT is(automation._tick_related('2025-05-01 23:00+00'), 0::bigint,
          'the tick leaves a result younger than automation.related_refresh_interval alone');
SELECT cmp_ok(automation._tick_related('2025-05-02 00:00+00'), '>', 0::bigint, 'and computes it again after a day');
SELECT is((SELECT array_agg(as_of ORDER BY refresh_id) FROM automation.related_refresh),
          ARRAY['2025-05-01 00:00+00', '2025-05-02 00:00+00']::timestamptz[], 'two refreshes in all');
SELECT automation.unbind('order_lines') IS NOT NULL AS unbound \gset
SELECT is(automation._tick_related('2025-06-02 00:00+00'), 0::bigint, 'without order lines bound the tick does nothing');

-- The demo shop: the stored result equals the same scores computed in SQL.
SELECT automation.unbind('products') IS NOT NULL AS unbound \gset
CREATE TEMP TABLE generated AS
SELECT * FROM shop.generate(customers => 300, seed => 3, until => '2026-11-01 00:00+00');
SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total',
                              order_id_column => 'id', status_column => 'status',
                              counted_statuses => ARRAY['paid', 'shipped', 'delivered']) IS NULL AS bound \gset
SELECT automation.bind_order_lines('shop.order_lines', 'order_id', 'product_id', 'quantity', 'unit_price') IS NULL AS bound \gset
SELECT cmp_ok(automation.refresh_related_products('2026-11-01 00:00+00'), '>', 0::bigint, 'the demo shop has related products');
CREATE TEMP TABLE expected AS
WITH b AS (SELECT DISTINCT o.customer_id AS c, l.product_id::text AS p
             FROM shop.orders o JOIN shop.order_lines l ON l.order_id = o.id
            WHERE o.status IN ('paid', 'shipped', 'delivered') AND o.placed_at <= '2026-11-01 00:00+00'
              AND (l.quantity IS NULL OR l.quantity > 0)),
     n AS (SELECT p, count(*) AS n FROM b GROUP BY p),
     c AS (SELECT x.p AS px, y.p AS py, count(*) AS c FROM b x JOIN b y ON x.c = y.c AND x.p <> y.p
            GROUP BY 1, 2 HAVING count(*) >= 2),
     s AS (SELECT px, py, c, c / sqrt(nx.n * ny.n) * c / (c + 5.0) AS score
             FROM c JOIN n nx ON nx.p = px JOIN n ny ON ny.p = py),
     r AS (SELECT *, row_number() OVER (PARTITION BY px ORDER BY score DESC, c DESC, py COLLATE "C") AS rank FROM s)
SELECT px, py, c, score FROM r WHERE rank <= 20;
SELECT is((SELECT count(*) FROM expected e FULL JOIN automation.related_product r ON r.product = e.px AND r.related = e.py
            WHERE r.product IS NULL OR e.px IS NULL OR r.customers <> e.c OR abs(r.score - e.score) > 1e-12),
          0::bigint, 'every stored pair, its customers and its score agree with plain SQL');

SELECT * FROM finish();
ROLLBACK;
