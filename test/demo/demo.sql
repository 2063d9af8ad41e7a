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

\echo
\echo The outbox: an order confirmation for one customer, as a mailer would drain it.
SELECT automation.enqueue(c.id, 'email', 'order_confirmation', jsonb_build_object('first_name', c.first_name, 'order', 1001),
                          dedupe_key => 'demo:order:1001', purpose => 'transactional') AS message_id
  FROM shop.customers c WHERE c.email IS NOT NULL ORDER BY c.id LIMIT 1 \gset
SELECT id, customer_key, recipient, template, payload, attempts, lease_until
  FROM automation.claim(batch => 10, lease => '5 minutes', channel => 'email');
SELECT automation.ack(ARRAY[:message_id]::bigint[]) AS acknowledged;
SELECT * FROM automation.outbox_stats;
