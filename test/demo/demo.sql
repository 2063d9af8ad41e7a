-- The demo: what a DBA types after CREATE EXTENSION, on the generated shop.
-- Run by test/demo/run with psql variables customers and seed.
\set ON_ERROR_STOP 1
\pset footer off

SELECT * FROM shop.generate(customers => :customers, seed => :seed, until => date_trunc('hour', now()));

CREATE EXTENSION automation;

-- Bind the shop's tables: name each relation and the columns that matter.
SELECT automation.bind_customers('shop.customers', 'id', 'email', 'marketing_consent',
                                 first_name_column => 'first_name', timezone_column => 'time_zone',
                                 phone_column => 'phone');
SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total',
                              order_id_column => 'id', status_column => 'status',
                              counted_statuses => ARRAY['paid', 'shipped', 'delivered']);
SELECT automation.bind_order_lines('shop.order_lines', 'order_id', 'product_id', 'quantity', 'unit_price');
SELECT automation.bind_products('shop.products', 'id', 'name', 'category', 'stock', 'consumption_days', 'price');
SELECT automation.bind_carts('shop.carts', 'id', 'customer_id', 'updated_at', 'total',
                             order_id_column => 'order_id', stage_column => 'checkout_stage');
SELECT automation.bind_cart_lines('shop.cart_lines', 'cart_id', 'product_id', 'quantity');
SELECT automation.bind_signups('shop.newsletter_signups', 'customer_id', 'signed_up_at');

\echo
\echo What the extension sees of the shop:
SELECT kind, relation, customer_key_type, columns, coalesce(problem, 'ok') AS status
  FROM automation.bindings;

\echo
\echo Predictions: BG/NBD and Gamma-Gamma models fitted on the orders (README, Predictions)
SELECT customers, repeat_customers, round(r::numeric, 4) AS r, round(alpha::numeric, 4) AS alpha,
       round(a::numeric, 4) AS a, round(b::numeric, 4) AS b, round(p::numeric, 4) AS p,
       round(q::numeric, 4) AS q, round(gamma::numeric, 2) AS gamma, method
  FROM automation.fit_models();
\echo The ten customers worth most over the next 12 months:
SELECT customer_key, x AS repeat_purchases, round(p_alive::numeric, 3) AS p_alive,
       round(expected_purchases_90d::numeric, 2) AS purchases_90d,
       expected_next_order::date AS next_order,
       round(expected_spend_per_order::numeric, 2) AS spend_per_order, round(clv_12m::numeric, 2) AS clv_12m
  FROM automation.customer_prediction
 ORDER BY clv_12m DESC NULLS LAST, customer_key
 LIMIT 10;
