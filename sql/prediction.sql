-- Predictions: the closed-form formulas, the fit on small and awkward shops,
-- and the errors an analyst can meet.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;
SET automation.default_timezone = 'UTC';
SET TimeZone = 'UTC';
SET extra_float_digits = 0;

-- The settings and their defaults.
SHOW automation.prediction_time_unit;
SHOW automation.discount_rate;
SHOW automation.churn_risk_threshold;
SHOW automation.prediction_min_customers;
SET automation.prediction_time_unit = 'fortnights';
\echo sqlstate :LAST_ERROR_SQLSTATE
SET automation.churn_risk_threshold = 1.5;
\echo sqlstate :LAST_ERROR_SQLSTATE

-- Before any fit, the formulas need every parameter.
SELECT automation.p_alive(x => 2, t_x => 30.43, t => 38.86);
\echo sqlstate :LAST_ERROR_SQLSTATE

-- Closed forms with the published CDNOW parameters (weeks: r = 0.243,
-- alpha = 4.414, a = 0.793, b = 2.426).  The reference values were computed
-- independently with 40-digit arithmetic from the papers' formulas, e.g.
-- P(alive | x=2, t_x=30.43, T=38.86)
--   = 1 / (1 + 0.793/(2.426+2-1) * ((4.414+38.86)/(4.414+30.43))^(0.243+2))
--   = 0.72657857008067
-- and the paper's example: 1.226 purchases expected in the next 39 weeks.
SELECT x, t_x, t, round(automation.p_alive(x, t_x, t, 0.243, 4.414, 0.793, 2.426)::numeric, 12) AS p_alive
  FROM (VALUES (2, 30.43, 38.86),   -- 0.726578570081
               (0, 0, 38.86),       -- 1: no repeat purchase, no chance to drop out yet
               (10, 20, 38.86),     -- 0.039345958811
               (1, 1, 52),          -- 0.142451092478
               (500, 1, 52)) AS c(x, t_x, t);
SELECT h, x, t_x, t, round(automation.expected_purchases(h, x, t_x, t, r, alpha, a, b)::numeric, 9) AS expected
  FROM (VALUES (39, 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426),   -- 1.226028175
               (39, 0, 0, 38.86, 0.243, 4.414, 0.793, 2.426),       -- 0.195098052
               (52, 7, 35, 38.86, 0.243, 4.414, 0.793, 2.426),      -- 5.520567508
               (1000, 1, 2, 40, 0.243, 4.414, 0.793, 2.426),        -- 1.858134208 (z near 1)
               (5000, 0, 0, 1, 0.243, 4.414, 0.793, 2.426),         -- 11.172811305
               (90, 50, 300, 310, 2.5, 20, 1.5, 8),                 -- 10.710929704 (a > 1, large x)
               (13, 3, 20, 52, 0.5, 10, 3.0, 0.5),                  -- 0.037058134
               (0, 3, 20, 52, 0.5, 10, 3.0, 0.5)) AS c(h, x, t_x, t, r, alpha, a, b);
-- a = 1 exactly is a removable singularity: the value is continuous there
SELECT round(automation.expected_purchases(26, 1, 1, 1, 0.1, 1, 1, 2)::numeric, 6) AS at_one,
       round(automation.expected_purchases(26, 1, 1, 1, 0.1, 1, 1.0000001, 2)::numeric, 6) AS near_one;  -- 3.153404
-- Gamma-Gamma: p (gamma + x m) / (p x + q - 1); without repeat purchases the
-- population mean p gamma / (q - 1) = 6.25 * 15.44 / 2.74 = 35.2190
SELECT x, m, round(automation.expected_spend(x, m, 6.25, 3.74, 15.44)::numeric, 4) AS expected_spend
  FROM (VALUES (0, NULL), (2, 22.345), (10, 100), (3, 0)) AS c(x, m);

-- The Gauss hypergeometric function against closed forms and 40-digit values:
-- 2F1(1,1;2;z) = -ln(1-z)/z
SELECT z, round(automation._hyp2f1(1, 1, 2, z)::numeric, 12) AS f,
       round((-ln(1 - z) / z)::numeric, 12) AS closed_form
  FROM unnest(ARRAY[0.5, 0.9, 0.999, -3, -1000]) AS z;
SELECT round(automation._hyp2f1(0.5, 1.5, 3.2, 0.99)::numeric, 12) AS f1,    -- 1.555240178760
       round(automation._hyp2f1(2.5, 3.5, 1.2, 0.9)::numeric, 6) AS f2,      -- 215635.676894 (c - a - b < 0)
       round(automation._hyp2f1(1.5, 2.0, 4.0, -50)::numeric, 12) AS f3,     -- 0.014824776649
       automation._hyp2f1(1, 1, 2, 1) AS at_one;                             -- diverges: NULL

-- Bad arguments are errors, not NaN.
SELECT automation.p_alive(2, 40, 38.86, 0.243, 4.414, 0.793, 2.426);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.p_alive(2, 30, 38.86, -1, 4.414, 0.793, 2.426);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.expected_purchases('Infinity', 2, 30, 38.86, 0.243, 4.414, 0.793, 2.426);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.expected_spend(2, 10, 6.25, 0.5, 15.44);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.expected_spend(2, -10, 6.25, 3.74, 15.44);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.expected_spend(2, 'NaN', 6.25, 3.74, 15.44);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.expected_spend(2, NULL, 6.25, 3.74, 15.44);
\echo sqlstate :LAST_ERROR_SQLSTATE
-- no history, no prediction (as p_alive and expected_purchases)
SELECT automation.expected_spend(NULL, 10, 6.25, 3.74, 15.44) IS NULL AS no_prediction;

-- Fitting needs bound orders.
SELECT * FROM automation.fit_models();
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.fit_models(calibration_end => '-infinity');
\echo sqlstate :LAST_ERROR_SQLSTATE

-- A small shop.
CREATE SCHEMA pshop;
CREATE TABLE pshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz,
                           total numeric(12,2), status text);
SELECT automation.bind_orders('pshop.orders', 'customer_id', 'placed_at', 'total',
                              status_column => 'status', counted_statuses => ARRAY['paid']);

-- No orders yet: the priors, as they are.
SELECT customers, repeat_customers, r, round(alpha::numeric, 3) AS alpha, a, b, log_likelihood_bgnbd,
       iterations_bgnbd, p, q, gamma, method
  FROM automation.fit_models(calibration_end => '2024-07-01', now => '2024-07-01');
SELECT count(*) FROM automation.customer_prediction;
-- ... and now the formulas default to the stored model.
SELECT round(automation.p_alive(x => 2, t_x => 30.43, t => 38.86)::numeric, 6) AS p_alive,
       round(automation.p_alive(2, 30.43, 38.86, r => 0.5)::numeric, 6) AS with_r;

-- Customers with one order each (no repeat purchase).
INSERT INTO pshop.orders VALUES
    (1, 1, '2024-01-10 09:00', 25.00, 'paid'),
    (2, 2, '2024-02-10 15:00', 40.00, 'paid'),
    (3, 3, '2024-03-10 12:00', 10.00, 'paid'),
    (4, 4, '2024-06-30 23:00', 80.00, 'cancelled');   -- not counted
SELECT customers, repeat_customers, iterations_bgnbd > 0 AS fitted, p, q, round(gamma::numeric, 4) AS gamma, method
  FROM automation.fit_models(calibration_end => '2024-07-01', now => '2024-07-01');
SELECT customer_key, x, t_x, round(t::numeric, 4) AS t, mean_value, p_alive,
       expected_purchases_90d > 0 AS buys, expected_spend_per_order, clv_12m > 0 AS worth
  FROM automation.customer_prediction ORDER BY customer_key;
SELECT pg_typeof(customer_key) FROM automation.customer_prediction LIMIT 1;

-- Several orders on one day are one purchase; zero-value orders count as purchases worth nothing.
INSERT INTO pshop.orders VALUES
    (5, 1, '2024-01-10 18:00', 5.00, 'paid'),     -- same day as order 1
    (6, 1, '2024-04-01 10:00', 0.00, 'paid'),
    (7, 1, '2024-05-01 10:00', 0.00, 'paid'),
    (8, 2, '2024-02-10 16:00', 0.00, 'paid'),     -- same day again
    (9, 3, '2024-05-20 08:00', 30.00, 'paid'),
    (10, 3, '2024-06-20 08:00', 50.00, 'paid');
SELECT customers, repeat_customers, method
  FROM automation.fit_models(calibration_end => '2024-07-01', now => '2024-07-01');
SELECT customer_key, x, round(t_x::numeric, 4) AS t_x, round(t::numeric, 4) AS t, mean_value,
       round(p_alive::numeric, 4) AS p_alive, expected_next_order IS NOT NULL AS next_expected,
       expected_spend_per_order >= 0 AS spend_ok, clv_12m >= 0 AS clv_ok
  FROM automation.customer_prediction ORDER BY customer_key;

-- Every order of every customer on one single day.
CREATE TABLE pshop.one_day (customer_id bigint, placed_at date, total integer);
INSERT INTO pshop.one_day SELECT g % 150, '2024-03-01', g FROM generate_series(1, 600) g;
SELECT automation.bind_orders('pshop.one_day', 'customer_id', 'placed_at', 'total');
SELECT customers, repeat_customers, method
  FROM automation.fit_models(calibration_end => '2024-07-01', now => '2024-07-01');
SELECT count(*) AS customers, count(DISTINCT round(p_alive::numeric, 9)) AS p_alive_values,
       min(x) AS x, bool_and(expected_next_order IS NULL OR expected_next_order > '2024-07-01') AS next_ok
  FROM automation.customer_prediction;

-- Only zero-value orders: no spend model, and the spend columns say nothing.
CREATE TABLE pshop.free (customer_id text, placed_at timestamp, total real);
INSERT INTO pshop.free SELECT 'c' || g % 40, '2024-01-01'::timestamp + g * interval '13 hours', 0 FROM generate_series(1, 400) g;
SELECT automation.bind_orders('pshop.free', 'customer_id', 'placed_at', 'total');
SELECT customers, repeat_customers, p, q, gamma, method
  FROM automation.fit_models(calibration_end => '2024-07-01', now => '2024-07-01');
SELECT count(*), count(expected_spend_per_order) AS with_spend, count(clv_12m) AS with_clv,
       pg_typeof(min(customer_key))
  FROM automation.customer_prediction;
SELECT automation.expected_spend(2, 10);
\echo sqlstate :LAST_ERROR_SQLSTATE

-- A calibration period that ends before the first order: the priors, and
-- customers are still scored as of now.  (The stored predictions hold keys
-- of the text-keyed shop: they are cleared before binding a bigint-keyed one.)
TRUNCATE automation.customer_prediction;
SELECT automation.bind_orders('pshop.orders', 'customer_id', 'placed_at', 'total',
                              status_column => 'status', counted_statuses => ARRAY['paid']);
SELECT customers, r, round(alpha::numeric, 3) AS alpha, a, b, p, method
  FROM automation.fit_models(calibration_end => '2023-01-01', now => '2024-07-01');
SELECT count(*), count(p_alive) FROM automation.customer_prediction;
SELECT * FROM automation.fit_models(calibration_end => '2024-08-01', now => '2024-07-01');
\echo sqlstate :LAST_ERROR_SQLSTATE

-- Nothing that is not a number ever reached a table.
SELECT count(*) FROM automation.model_parameters
 WHERE 'NaN' IN (r, alpha, a, b, log_likelihood_bgnbd, p, q, gamma, log_likelihood_gg);
SELECT count(*) FROM automation.customer_prediction
 WHERE 'NaN' IN (t_x, t, mean_value, p_alive, expected_purchases_90d, expected_spend_per_order, clv_12m);

-- Days as the time unit: alpha is in days, and the model remembers its unit.
SET automation.prediction_time_unit = 'days';
SELECT time_unit, round(alpha::numeric, 3) AS alpha
  FROM automation.fit_models(calibration_end => '2023-01-01', now => '2024-07-01');
SELECT customer_key, x, t_x, t FROM automation.customer_prediction ORDER BY customer_key;
RESET automation.prediction_time_unit;

-- The shop is read with the privileges of the role that bound it (here as
-- if a clerk had bound it): it can read the orders, then it cannot.
CREATE ROLE regress_prediction_clerk;
GRANT USAGE ON SCHEMA pshop TO regress_prediction_clerk;
GRANT SELECT ON pshop.orders TO regress_prediction_clerk;
UPDATE automation.source SET bound_by = 'regress_prediction_clerk' WHERE kind = 'orders';
-- customer 5 bought on five days in a row in January, then never again
INSERT INTO pshop.orders SELECT 10 + g, 5, '2024-01-01 12:00'::timestamptz + g * interval '1 day', 20, 'paid'
  FROM generate_series(1, 5) g;
SELECT customers FROM automation.fit_models(calibration_end => '2024-07-01', now => '2024-07-01');
REVOKE SELECT ON pshop.orders FROM regress_prediction_clerk;
SELECT * FROM automation.fit_models(calibration_end => '2024-07-01', now => '2024-07-01');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT current_user;

-- The churn_risk rule: customers whose p_alive is below the threshold.
SELECT customer_key, x, round(t_x::numeric, 4) AS t_x, round(p_alive::numeric, 4) AS p_alive FROM automation.customer_prediction
 WHERE p_alive < current_setting('automation.churn_risk_threshold')::float8 ORDER BY 1;

-- An analyst reads predictions and uses the formulas; fitting stays with the administrator.
CREATE ROLE regress_prediction_analyst;
SELECT count(*) > 0 FROM automation.grant_access('regress_prediction_analyst', 'analyst');
SET ROLE regress_prediction_analyst;
SELECT count(*) FROM automation.customer_prediction;
SELECT round(automation.p_alive(1, 1, 20)::numeric, 4) BETWEEN 0 AND 1 AS p_alive_ok;
SELECT * FROM automation.fit_models();
\echo sqlstate :LAST_ERROR_SQLSTATE
RESET ROLE;

-- clean up
SELECT automation.unbind('orders');
DELETE FROM automation.model_parameters;
REVOKE ALL ON SCHEMA automation FROM regress_prediction_analyst;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA automation FROM regress_prediction_analyst;
REVOKE ALL ON ALL TABLES IN SCHEMA automation FROM regress_prediction_analyst;
REVOKE ALL ON SCHEMA pshop FROM regress_prediction_clerk;
DROP ROLE regress_prediction_clerk, regress_prediction_analyst;
DROP SCHEMA pshop CASCADE;
