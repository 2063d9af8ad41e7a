-- Lifecycle automations: what they need bound, and every definition error
-- caught when defined.
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE SCHEMA lshop;
CREATE TABLE lshop.customers (id bigint PRIMARY KEY, email text, consent boolean, born date);
CREATE TABLE lshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric,
                           bill_city text, ship_city text);
CREATE TABLE lshop.order_lines (order_id bigint, product_id bigint, quantity integer);
CREATE TABLE lshop.products (id bigint PRIMARY KEY, name text, category text, days numeric);
INSERT INTO lshop.products VALUES (1, 'Dog food 10 kg', 'dog food', 28), (2, 'Dog collar', 'dog accessories', NULL),
                                  (3, 'Coffee machine', 'coffee machines', NULL), (4, 'Capsules', 'coffee capsules', 5);

-- nothing bound yet
SELECT automation.refresh_lifecycle();
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('replenishment');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_basket_rule('new_dog', ARRAY['dog accessories'], 1);
\echo sqlstate :LAST_ERROR_SQLSTATE

-- shipping and billing go together
SELECT automation.bind_orders('lshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              ship_to_column => 'ship_city');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_customers('lshop.customers', 'id', 'email', 'consent');
SELECT automation.bind_orders('lshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT automation.bind_order_lines('lshop.order_lines', 'order_id', 'product_id', 'quantity');
SELECT automation.bind_products('lshop.products', 'id', 'name', 'category', consumption_days_column => 'days');

-- what needs more columns bound
SELECT automation.create_journey('gifts', 'gift_order');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('birthdays', 'birthday');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_customers('lshop.customers', 'id', 'email', 'consent', birth_date_column => 'born');
SELECT automation.bind_orders('lshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              ship_to_column => 'ship_city', bill_to_column => 'bill_city');
SELECT automation.create_journey('gifts', 'gift_order');
SELECT automation.create_journey('birthdays', 'birthday', '{"days_before": 3}');
SELECT name, trigger, trigger_options, reentry, exit_on FROM automation.journey ORDER BY name;

-- the learned intervals, before any repeat purchase
SELECT automation.refresh_lifecycle('2026-01-01 00:00+00');
SELECT product, name, category, configured_days, learned_days, observations, days_per_unit, source
  FROM automation.replenishment_intervals ORDER BY product;

-- unknown products and categories, named when a rule is defined
SELECT automation.create_journey('upsell', 'product_purchased', '{"products": ["99"]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('upsell', 'product_purchased', '{"categories": ["cat food"]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('upsell', 'product_purchased', '{}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('upsell', 'product_purchased', '{"products": ["3"], "recommend": {"categories": ["pods"]}}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('cross_sell');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('cross_sell', '{"rules": [{"bought": {"categories": ["coffee machines"]}, "after": "-3 days", "template": "x"}]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('cross_sell', '{"rules": [{"bought": {"categories": ["coffee machines"]}, "template": "x", "colour": "red"}]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('cross_sell', '{"rules": [{"name": "pods", "bought": {"products": [3]}, "template": "pods", "recommend": {"categories": ["coffee capsules"]}}]}');
-- a step may include recommended products only when the journey recommends some
SELECT automation.create_journey('upsell', 'product_purchased', '{"products": ["3"]}');
SELECT automation.add_step('upsell', '1 day', 'upsell', includes => ARRAY['recommended']);
\echo sqlstate :LAST_ERROR_SQLSTATE
-- exit "bought" belongs to journeys that watch a purchase
SELECT automation.create_journey('b1', 'signup', exit_on => ARRAY['bought']);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('b1', 'product_purchased', '{"products": ["3"]}', exit_on => ARRAY['bought']);
\echo sqlstate :LAST_ERROR_SQLSTATE

-- negative lead times, tiers and milestones out of order
SELECT automation.install_preset('replenishment', '{"lead_days": -2}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('replenishment', '{"lead_days_by": {"dog food": -1}}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('replenishment', '{"lead_days": 3000000}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('replenishment', '{"offers": [{"category": "no such category"}]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('replenishment', '{"offers": [{"category": null}]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('replenishment', '{"valid_for": null}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('replenishment', '{"lead_days_by": {"dog food": 1e-400}}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('replenishment', '{"lead_days_by": {"cat food": 3}}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('replenishment', '{"offers": [{"category": "dog food", "product": "1"}]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('vip_quarterly', '{"tiers": [{"spend": 750, "amount": 30}, {"spend": 500, "amount": 15}]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('vip_quarterly', '{"tiers": [{"spend": 500, "amount": 30}, {"spend": 750, "amount": 15}]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('vip_quarterly', '{"tiers": [{"spend": 500}]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('vip_quarterly', '{"tiers": []}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('vip_quarterly', '{"tiers": [{"spend": 500, "amount": 15, "ammount": 20}]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('loyalty_points', '{"milestones": [1000, 500]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('loyalty_points', '{"milestones": [-5]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('anniversary', '{"after": "-1 month"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('drip', '{"steps": []}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('drip', '{"categories": ["cat food"]}');
\echo sqlstate :LAST_ERROR_SQLSTATE

-- basket rules
SELECT automation.define_basket_rule('new_dog', ARRAY[]::text[], 1);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_basket_rule('new_dog', ARRAY['dog accessories', 'dog food'], 3);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_basket_rule('new_dog', ARRAY['dog food', 'dog food'], 2);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_basket_rule('new_dog', ARRAY['dog accessories', 'cat food'], 1);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_basket_rule('New Dog', ARRAY['dog accessories'], 1);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_basket_rule('new_dog', ARRAY['dog food', 'dog accessories'], 2, 'a new dog');
SELECT tag, categories, min_matches, description FROM automation.basket_rule;
-- a customer's tags, the bigint key given as a number or as text
BEGIN;
INSERT INTO lshop.customers VALUES (1, 'ann@example.com', true, NULL);
INSERT INTO lshop.orders VALUES (1, 1, '2026-01-02 10:00+00', 40, NULL, NULL);
INSERT INTO lshop.order_lines VALUES (1, 1, 1), (1, 2, 1);
SELECT count(*) > 0 AS ticked FROM automation.tick('2026-01-02 12:00+00');
SELECT automation.customer_tags(1) AS as_number, automation.customer_tags('1') AS as_literal,
       automation.customer_tags('1'::text) AS as_text, automation.customer_tags('2') AS nobody;
ROLLBACK;
SELECT automation.create_journey('dogs', 'tagged', '{"tag": "new_cat"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('dogs', 'tagged', '{}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('dogs', 'tagged', '{"tag": "new_dog"}');
SELECT automation.create_journey('dogs2', 'tagged', '{"tag": "new_dog", "recommend": {"categories": ["cat food"]}}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.drop_basket_rule('new_cat');
-- a rule a journey is triggered by stays while the journey does
SELECT automation.drop_basket_rule('new_dog');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.drop_basket_rule(NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_basket_rule('new_dog2', '{{dog food, dog accessories}, {cat food, dog food}}'::text[], 1);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('birthdays2', 'birthday', '{"days_before": 2.5}');
\echo sqlstate :LAST_ERROR_SQLSTATE

-- campaigns
SELECT automation.schedule_campaign('spring', 'no_such_segment', 'spring_sale', '{}', '2026-03-20 09:00+00');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.schedule_campaign('spring', 'vip', 'spring_sale', '{}', NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.schedule_campaign('spring', 'vip', 'spring_sale', '{}', 'infinity');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.schedule_campaign('spring', 'vip', 'spring_sale', '{}', '2026-03-20 09:00+00', channel => NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.simulate('infinity');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.schedule_campaign('spring', 'vip', 'spring_sale', '{}', '4713-01-01 00:00+00 BC');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.schedule_campaign('spring', 'vip', 'spring_sale', '{"code": "SPRING"}', '2026-03-20 09:00+00');
SELECT name, trigger, trigger_options, purpose, preset FROM automation.journey WHERE name = 'spring';
SELECT journey, step, wait, template, payload, at_preferred_hour FROM automation.journey_step WHERE journey = 'spring';

SELECT automation.drop_journey(name) FROM automation.journey ORDER BY name;
SELECT automation.drop_basket_rule('new_dog');
SELECT automation.unbind(k) FROM unnest(ARRAY['customers', 'orders', 'order_lines', 'products']) k;
DROP SCHEMA lshop CASCADE;
