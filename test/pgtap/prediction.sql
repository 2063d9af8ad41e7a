-- Predictions on the demo shop: the models fit, every customer with a
-- counted order is scored with finite values in the shop's own key type,
-- a calibration period holds data back, and the tick keeps scores fresh.
BEGIN;
SELECT plan(16);

SET LOCAL automation.default_timezone = 'UTC';
CREATE TEMP TABLE generated AS
SELECT * FROM shop.generate(customers => 400, seed => 7, until => '2026-11-01 00:00+00');
SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total',
                              order_id_column => 'id', status_column => 'status',
                              counted_statuses => ARRAY['paid', 'shipped', 'delivered']) IS NULL AS bound \gset

CREATE TEMP TABLE fitted AS
SELECT * FROM automation.fit_models(now => '2026-11-01 00:00+00');

SELECT is((SELECT customers FROM fitted),
          (SELECT count(DISTINCT customer_id) FROM shop.orders
            WHERE status IN ('paid', 'shipped', 'delivered') AND placed_at <= '2026-11-01 00:00+00'),
          'the fit counts every customer with a counted order');
SELECT is((SELECT count(*) FROM automation.customer_prediction), (SELECT customers FROM fitted),
          'and every one of them is scored');
SELECT ok((SELECT method FROM fitted) ~ '^BG/NBD: .*; Gamma-Gamma: maximum likelihood$',
          'the method says how each model was obtained');
SELECT ok((SELECT r > 0 AND alpha > 0 AND a > 0 AND b > 0 AND p > 0 AND q > 1 AND gamma > 0
             AND iterations_bgnbd > 0 AND iterations_gg > 0 FROM fitted),
          'the parameters are positive and the optimiser iterated');
SELECT is((SELECT count(*) FROM automation.customer_prediction
            WHERE NOT (p_alive BETWEEN 0 AND 1) OR expected_purchases_90d IS NULL
               OR expected_spend_per_order IS NULL OR clv_12m IS NULL
               OR 'NaN' IN (p_alive, expected_purchases_90d, expected_spend_per_order, clv_12m)),
          0::bigint, 'every prediction is a finite number');
SELECT col_type_is('automation', 'customer_prediction', 'customer_key', 'bigint',
                   'customer keys are in the shop''s own type');
SELECT is((SELECT count(*) FROM automation.customer_prediction p JOIN shop.customers c ON c.id = p.customer_key),
          (SELECT count(*) FROM automation.customer_prediction),
          'predictions join to the shop''s customers without casts');
SELECT is((SELECT count(*) FROM automation.customer_prediction
            WHERE p_alive < current_setting('automation.churn_risk_threshold')::float8 AND x = 0),
          0::bigint, 'only returning customers can be at risk of churn');
SELECT ok((SELECT bool_and(expected_next_order > scored_at) FROM automation.customer_prediction),
          'the next expected order lies ahead');

-- Holding the last half year back: fewer customers in the fit, all scored.
CREATE TEMP TABLE held_back AS
SELECT * FROM automation.fit_models(calibration_end => '2026-05-01 00:00+00', now => '2026-11-01 00:00+00');
SELECT ok((SELECT h.customers < f.customers FROM held_back h, fitted f),
          'a calibration period fits on the orders up to its end');
SELECT is((SELECT count(*) FROM automation.customer_prediction), (SELECT customers FROM fitted),
          'and customers are still scored on every order up to now');

-- The tick scores again once the scores are older than automation.prediction_refresh.
SELECT is((SELECT position FROM automation.tick_stage WHERE stage = 'predictions'), 25,
          'predictions are a stage of the tick');
SELECT is(automation._tick_predictions('2026-11-01 12:00+00'), 0::bigint,
          'fresh scores are left alone');
SELECT is(automation._tick_predictions('2026-11-03 00:00+00'), (SELECT customers FROM fitted),
          'day-old scores are redone');

-- The churn_risk segment follows p_alive.
SELECT lives_ok($$SELECT automation.refresh_profiles(true, '2026-11-01 00:00+00'); SELECT automation.refresh_segments('2026-11-01 00:00+00')$$,
                'profiles and segments refreshed after scoring');
SELECT set_eq($$SELECT customer_key FROM automation.segment_members('churn_risk')$$,
              $$SELECT customer_key FROM automation.customer_prediction
                 WHERE p_alive < current_setting('automation.churn_risk_threshold')::float8$$,
              'churn_risk holds exactly the customers with p_alive under the threshold');

SELECT * FROM finish();
ROLLBACK;
