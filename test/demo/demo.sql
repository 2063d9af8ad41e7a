-- The demo: what a DBA types after CREATE EXTENSION, on the generated shop.
-- Run by test/demo/run with psql variables customers and seed.
\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = warning;

SELECT * FROM shop.generate(customers => :customers, seed => :seed, until => date_trunc('hour', now()));

CREATE EXTENSION automation;

-- Bind the shop's tables: name each relation and the columns that matter.
SELECT automation.bind_customers('shop.customers', 'id', 'email', 'marketing_consent',
                                 first_name_column => 'first_name', timezone_column => 'time_zone',
                                 phone_column => 'phone', birth_date_column => 'birth_date');
SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total',
                              order_id_column => 'id', status_column => 'status',
                              counted_statuses => ARRAY['paid', 'shipped', 'delivered'],
                              ship_to_column => 'shipping_city', bill_to_column => 'billing_city');
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

-- Later refreshes touch only the customers whose orders changed.
SELECT automation.enable_change_capture();

-- The five classic flows, each one call.
SELECT automation.install_preset('abandoned_cart');
SELECT automation.install_preset('welcome');
SELECT automation.install_preset('thank_you');
SELECT automation.install_preset('feedback');
SELECT automation.install_preset('win_back', '{"after_days": 15}');

-- The lifecycle flows: what they bought, and when it runs out.
SELECT automation.install_preset('replenishment',
    '{"offers": [{"category": "vitamins", "lead_days": 20, "template": "replenishment_sample", "payload": {"free_sample": true}}]}');
SELECT automation.install_preset('cross_sell');
SELECT automation.install_preset('drip');
SELECT automation.install_preset('anniversary', '{"gift_categories": ["toys"]}');
SELECT automation.install_preset('vip_quarterly');
SELECT automation.install_preset('loyalty_points');
SELECT automation.define_basket_rule('new_dog', ARRAY['dog accessories', 'puppy food'], 2,
                                     'a new dog: accessories and puppy food bought');
SELECT automation.create_journey('new_dog', 'tagged',
                                 '{"tag": "new_dog", "lookback": "30 days", "recommend": {"categories": ["dog food"]}}',
                                 description => 'recommends what a new dog needs next');
SELECT automation.add_step('new_dog', interval '1 day', 'new_dog_starter_kit', includes => ARRAY['recommended', 'also_like']);
-- Early access for VIPs, a day before everyone else, at 9:00 in each customer's own time zone.
SELECT automation.schedule_campaign('new_arrivals_vip', 'vip', 'new_arrivals_early_access', '{"collection": "spring"}',
                                    date_trunc('day', now()) + interval '1 day 9 hours');
SELECT automation.schedule_campaign('new_arrivals', 'loyal', 'new_arrivals', '{"collection": "spring"}',
                                    date_trunc('day', now()) + interval '2 days 9 hours');

\echo
\echo One tick: profiles, predictions, segments, journeys, outbox (the worker does this every minute).
SELECT stage, rows, round(ms) AS ms FROM automation.tick();

\echo
\echo Segment sizes:
SELECT name, members, description FROM automation.segment_sizes WHERE members > 0;

\echo
\echo The five best customers by spend:
SELECT customer_key, order_count, total_spent, spent_prev_quarter, preferred_hour, timezone,
       concat(r_score, f_score, m_score) AS rfm, rfm_group, lifecycle_stage, vip_tier
  FROM automation.customer_profile
 ORDER BY total_spent DESC, customer_key
 LIMIT 5;

\echo
\echo Predictions: BG/NBD and Gamma-Gamma fitted on the orders, and the customers worth most next year:
SELECT customers, repeat_customers, round(r::numeric, 4) AS r, round(alpha::numeric, 4) AS alpha,
       round(a::numeric, 4) AS a, round(b::numeric, 4) AS b, round(p::numeric, 4) AS p,
       round(q::numeric, 4) AS q, round(gamma::numeric, 2) AS gamma, method
  FROM automation.fit_models();
SELECT customer_key, x AS repeat_purchases, round(p_alive::numeric, 3) AS p_alive,
       round(expected_purchases_90d::numeric, 2) AS purchases_90d, expected_next_order::date AS next_order,
       round(clv_12m::numeric, 2) AS clv_12m
  FROM automation.customer_prediction
 ORDER BY clv_12m DESC NULLS LAST, customer_key
 LIMIT 5;

\echo
\echo Who is in which journey:
SELECT journey, status, count(*) AS enrollments FROM automation.enrollment GROUP BY 1, 2 ORDER BY 1, 2;

\echo
\echo The first outbox messages, as a mailer will claim them:
SELECT id, customer_key, recipient, template, variant, purpose, send_after::timestamp(0) AS send_after
  FROM automation.outbox ORDER BY id LIMIT 8;
\echo The payload of a cart reminder:
SELECT jsonb_pretty(payload) AS payload FROM automation.outbox WHERE journey = 'abandoned_cart' ORDER BY id LIMIT 1;

\echo
\echo What the next three days would bring (simulate writes nothing):
SELECT journey, template, count(*) AS messages
  FROM automation.simulate(now() + interval '3 days') GROUP BY 1, 2 ORDER BY 1, 2;

\echo
\echo Replenishment intervals, configured and learned from repeat purchases:
SELECT product, name, configured_days, round(learned_days::numeric, 1) AS learned_days, observations,
       round(spread::numeric, 2) AS spread, round(days_per_unit::numeric, 1) AS days_per_unit, source
  FROM automation.replenishment_intervals ORDER BY category, product::int LIMIT 12;

\echo
\echo One message of each lifecycle flow and campaign, from ticks run ahead in time (then rolled back):
BEGIN;
-- A customer with 300-499 loyalty points buys an espresso machine in an hour.
SELECT shop.place_order(p.customer_key, now() + interval '1 hour', ARRAY[19::bigint], ARRAY[1]) AS order_placed
  FROM automation.customer_profile p JOIN shop.customers c ON c.id = p.customer_key AND c.marketing_consent
 WHERE p.loyalty_points BETWEEN 300 AND 499
 ORDER BY p.customer_key LIMIT 1;
SELECT count(*) AS ticks_ahead
  FROM (SELECT DISTINCT t.at
          FROM unnest(ARRAY[now(), now() + interval '2 days', now() + interval '10 days', now() + interval '14 days',
                            now() + interval '16 days',
                            now() + interval '40 days', date_trunc('quarter', now()) + interval '3 months',
                            now() + interval '11 months', now() + interval '2 years']) AS day(at),
               generate_series(day.at + interval '6 hours', day.at + interval '30 hours', interval '6 hours') AS t(at)
         ORDER BY t.at) t,
       LATERAL (SELECT count(*) FROM automation.tick(t.at)) k;
SELECT DISTINCT ON (journey) journey, template, jsonb_pretty(payload - 'journey' - 'step' - 'customer_key' - 'variant') AS payload
  FROM automation.outbox
 WHERE journey IN (SELECT name FROM automation.journey
                    WHERE trigger IN ('replenishment', 'product_purchased', 'gift_order', 'birthday', 'quarter_start',
                                      'points_milestone', 'tagged', 'campaign'))
 ORDER BY journey, id;
ROLLBACK;

\echo
\echo A mailer claims a batch, sends it, and acknowledges it:
SELECT array_agg(id) AS claimed FROM automation.claim(batch => 5, lease => '5 minutes', channel => 'email') \gset
SELECT automation.ack(:'claimed'::bigint[]) AS acknowledged;
SELECT * FROM automation.outbox_stats;

\echo
\echo Why one customer got what they got:
SELECT at::timestamp(0) AS at, journey, step, decision, reason, variant
  FROM automation.explain_customer((SELECT customer_key FROM automation.outbox ORDER BY id LIMIT 1))
 WHERE decision <> 'not enrolled';

\echo
\echo Per journey, step and variant:
SELECT journey, step, variant, enrolled, held_out, sent, queued FROM automation.journey_stats;
