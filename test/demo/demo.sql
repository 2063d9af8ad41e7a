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
SELECT automation.bind_products('shop.products', 'id', 'name', 'category', 'stock', 'consumption_days');
SELECT automation.bind_carts('shop.carts', 'id', 'customer_id', 'updated_at', 'total',
                             order_id_column => 'order_id', stage_column => 'checkout_stage');
SELECT automation.bind_cart_lines('shop.cart_lines', 'cart_id', 'product_id', 'quantity');
SELECT automation.bind_signups('shop.newsletter_signups', 'customer_id', 'signed_up_at');

\echo
\echo What the extension sees of the shop:
SELECT kind, relation, customer_key_type, columns, coalesce(problem, 'ok') AS status
  FROM automation.bindings;

-- Profiles and segments: one pass over the orders, then every segment.
SELECT automation.enable_change_capture();
SELECT automation.refresh_profiles(full => true) AS profiles_written;
SELECT automation.refresh_segments() AS segment_changes;

\echo
\echo Segment sizes:
SELECT name, members, description FROM automation.segment_sizes WHERE members > 0;

\echo
\echo A few profiles:
SELECT customer_key, order_count, total_spent, spent_prev_quarter, preferred_hour, timezone,
       concat(r_score, f_score, m_score) AS rfm, rfm_group, lifecycle_stage, vip_tier, categories
  FROM automation.customer_profile
 ORDER BY total_spent DESC
 LIMIT 5;

-- A new order arrives; the next refresh touches only that customer (and re-derives scores).
SELECT shop.place_order((SELECT min(id) FROM shop.customers), now(), ARRAY[1]::bigint[], ARRAY[2]) AS new_order;
SELECT automation.refresh_profiles() AS profiles_written_incrementally;
