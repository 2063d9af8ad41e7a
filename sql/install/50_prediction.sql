-- Predictions: BG/NBD and Gamma-Gamma customer models.
--
-- automation.fit_models() reads every customer's purchase history from the
-- bound orders (one pass, as the binding role), fits the BG/NBD model of
-- purchase frequency and dropout and the Gamma-Gamma model of spend per
-- order (Fader, Hardie & Lee 2005) by maximum likelihood in C, stores the
-- parameters in automation.model_parameters and scores every customer into
-- automation.customer_prediction.  automation.score_customers() scores again
-- with the stored model (for the tick).  The formulas are also plain
-- functions -- p_alive(), expected_purchases(), expected_spend() -- that
-- take a model's parameters or default to the latest stored one.
--
-- Notation of the papers: x = repeat purchases (purchase days after the
-- first; orders on one day are one purchase), t_x = time from the first to
-- the last purchase, t (T in the papers) = time from the first purchase to
-- the moment of scoring, in the model's time unit.

-- Population priors: the published CDNOW estimates (BG/NBD in weeks: r =
-- 0.243, alpha = 4.414, a = 0.793, b = 2.426; Gamma-Gamma: p = 6.25,
-- q = 3.74, with gamma rescaled so that the prior mean spend per order,
-- p gamma / (q - 1), is the shop's own mean order value).  They start every
-- fit, and small shops are shrunk toward them.

CREATE FUNCTION automation._prediction_settings(OUT time_unit text, OUT unit_seconds float8,
                                                OUT discount_rate float8, OUT churn_risk_threshold float8,
                                                OUT min_customers int, OUT refresh_minutes int)
RETURNS record
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'automation_prediction_settings';

CREATE TABLE automation.model_parameters (
    model_id bigint GENERATED ALWAYS AS IDENTITY,
    fitted_at timestamptz NOT NULL,
    calibration_end timestamptz NOT NULL,
    time_unit text NOT NULL,
    customers bigint NOT NULL,
    repeat_customers bigint NOT NULL,
    r double precision NOT NULL,
    alpha double precision NOT NULL,
    a double precision NOT NULL,
    b double precision NOT NULL,
    log_likelihood_bgnbd double precision,
    iterations_bgnbd integer NOT NULL,
    p double precision,
    q double precision,
    gamma double precision,
    log_likelihood_gg double precision,
    iterations_gg integer NOT NULL,
    method text NOT NULL,
    CONSTRAINT model_parameters_pkey PRIMARY KEY (model_id),
    CONSTRAINT model_parameters_time_unit_check CHECK (time_unit IN ('days', 'weeks', 'months')),
    CONSTRAINT model_parameters_bgnbd_check CHECK (r > 0 AND alpha > 0 AND a > 0 AND b > 0
        AND r < 'Infinity' AND alpha < 'Infinity' AND a < 'Infinity' AND b < 'Infinity'),
    CONSTRAINT model_parameters_gg_check CHECK ((p IS NULL AND q IS NULL AND gamma IS NULL)
        OR (p > 0 AND q > 1 AND gamma > 0 AND p < 'Infinity' AND q < 'Infinity' AND gamma < 'Infinity')),
    CONSTRAINT model_parameters_log_likelihood_check CHECK (log_likelihood_bgnbd < 'Infinity'
        AND log_likelihood_bgnbd > '-Infinity' AND log_likelihood_gg < 'Infinity' AND log_likelihood_gg > '-Infinity'),
    CONSTRAINT model_parameters_customers_check CHECK (customers >= 0 AND repeat_customers BETWEEN 0 AND customers)
);
COMMENT ON TABLE automation.model_parameters IS 'fitted BG/NBD and Gamma-Gamma models, one row per automation.fit_models() call; the latest row is the model in use';
COMMENT ON COLUMN automation.model_parameters.calibration_end IS 'orders placed up to this moment were used for the fit';
COMMENT ON COLUMN automation.model_parameters.time_unit IS 'unit of t_x, t and alpha (automation.prediction_time_unit when fitted)';
COMMENT ON COLUMN automation.model_parameters.customers IS 'customers with an order up to calibration_end';
COMMENT ON COLUMN automation.model_parameters.repeat_customers IS 'of them, customers who bought again on a later day';
COMMENT ON COLUMN automation.model_parameters.r IS 'BG/NBD: shape of the gamma distribution of purchase rates';
COMMENT ON COLUMN automation.model_parameters.alpha IS 'BG/NBD: scale of the gamma distribution of purchase rates, in time_unit';
COMMENT ON COLUMN automation.model_parameters.a IS 'BG/NBD: beta distribution of the dropout probability after each purchase';
COMMENT ON COLUMN automation.model_parameters.b IS 'BG/NBD: beta distribution of the dropout probability after each purchase';
COMMENT ON COLUMN automation.model_parameters.log_likelihood_bgnbd IS 'log-likelihood of the BG/NBD fit (NULL when the priors were used as they are)';
COMMENT ON COLUMN automation.model_parameters.p IS 'Gamma-Gamma: shape of the spend per order (NULL: no order has a positive value)';
COMMENT ON COLUMN automation.model_parameters.q IS 'Gamma-Gamma: shape of the distribution of customers'' spend scale';
COMMENT ON COLUMN automation.model_parameters.gamma IS 'Gamma-Gamma: scale of the distribution of customers'' spend scale, in money';
COMMENT ON COLUMN automation.model_parameters.log_likelihood_gg IS 'log-likelihood of the Gamma-Gamma fit over repeat customers with a positive mean repeat order value';
COMMENT ON COLUMN automation.model_parameters.method IS 'how each model was obtained: maximum likelihood, shrunk toward the population priors, or the priors alone';
SELECT pg_catalog.pg_extension_config_dump('automation.model_parameters', '');
SELECT pg_catalog.pg_extension_config_dump('automation.model_parameters_model_id_seq', '');

CREATE TABLE automation.customer_prediction (
    customer_key text NOT NULL,
    x integer NOT NULL,
    t_x double precision NOT NULL,
    t double precision NOT NULL,
    mean_value double precision,
    p_alive double precision NOT NULL,
    expected_purchases_90d double precision,
    expected_next_order timestamptz,
    expected_spend_per_order double precision,
    clv_12m double precision,
    model_id bigint NOT NULL,
    scored_at timestamptz NOT NULL,
    CONSTRAINT customer_prediction_pkey PRIMARY KEY (customer_key),
    CONSTRAINT customer_prediction_history_check CHECK (x >= 0 AND t_x >= 0 AND t >= t_x AND t < 'Infinity'),
    CONSTRAINT customer_prediction_p_alive_check CHECK (p_alive BETWEEN 0 AND 1),
    CONSTRAINT customer_prediction_values_check CHECK (expected_purchases_90d >= 0 AND expected_purchases_90d < 'Infinity'
        AND expected_spend_per_order >= 0 AND expected_spend_per_order < 'Infinity'
        AND clv_12m >= 0 AND clv_12m < 'Infinity')
);
COMMENT ON TABLE automation.customer_prediction IS 'per customer with orders: the predictions of the latest model as of scored_at (rebuilt by fit_models() and score_customers(); not dumped)';
COMMENT ON COLUMN automation.customer_prediction.x IS 'repeat purchases: days with an order after the first such day';
COMMENT ON COLUMN automation.customer_prediction.t_x IS 'time from the first to the last purchase day, in the model''s time unit';
COMMENT ON COLUMN automation.customer_prediction.t IS 'time from the start of the first purchase day to scored_at, in the model''s time unit';
COMMENT ON COLUMN automation.customer_prediction.mean_value IS 'mean value of the repeat purchases (NULL without any)';
COMMENT ON COLUMN automation.customer_prediction.p_alive IS 'probability that the customer has not dropped out (BG/NBD)';
COMMENT ON COLUMN automation.customer_prediction.expected_purchases_90d IS 'purchases (purchase days) expected in the 90 days after scored_at';
COMMENT ON COLUMN automation.customer_prediction.expected_next_order IS 'when one more purchase is expected (the expected count reaches 1); NULL when less than one is expected in the next 24 months';
COMMENT ON COLUMN automation.customer_prediction.expected_spend_per_order IS 'expected value of a future purchase (Gamma-Gamma)';
COMMENT ON COLUMN automation.customer_prediction.clv_12m IS 'expected spend over the next 12 months, discounted monthly at automation.discount_rate per year';

CREATE FUNCTION automation._order_statistics(as_of timestamptz, unit_seconds float8)
RETURNS TABLE (customer_key text, x integer, t_x float8, t float8, mean_value float8, total_value float8)
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'automation_order_statistics';
COMMENT ON FUNCTION automation._order_statistics(timestamptz, float8) IS 'each customer''s purchase history up to as_of, read from the bound orders as the binding role';

CREATE FUNCTION automation._hyp2f1(a float8, b float8, c float8, z float8)
RETURNS float8
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_hyp2f1';
COMMENT ON FUNCTION automation._hyp2f1(float8, float8, float8, float8) IS 'Gauss hypergeometric function 2F1(a, b; c; z) for z < 1 (NULL where it does not converge)';

CREATE FUNCTION automation._p_alive(x float8, t_x float8, t float8, r float8, alpha float8, a float8, b float8)
RETURNS float8
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_bgnbd_p_alive';

CREATE FUNCTION automation._expected_purchases(horizon float8, x float8, t_x float8, t float8,
                                               r float8, alpha float8, a float8, b float8)
RETURNS float8
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_bgnbd_expected_purchases';

CREATE FUNCTION automation._expected_spend(x float8, mean_value float8, p float8, q float8, gamma float8)
RETURNS float8
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_gg_expected_spend';

CREATE TYPE automation._fit_result_bgnbd AS (r float8, alpha float8, a float8, b float8,
                                             log_likelihood float8, iterations int, at_bound boolean);
CREATE TYPE automation._fit_result_gamma_gamma AS (p float8, q float8, gamma float8,
                                                   log_likelihood float8, iterations int, at_bound boolean);

CREATE FUNCTION automation._fit_bgnbd(x float8[], t_x float8[], t float8[], n float8[],
                                      start float8[], prior_weight float8)
RETURNS automation._fit_result_bgnbd
LANGUAGE c IMMUTABLE
AS 'MODULE_PATHNAME', 'automation_fit_bgnbd';

CREATE FUNCTION automation._fit_gamma_gamma(x float8[], mean_value float8[], n float8[],
                                            start float8[], prior_weight float8)
RETURNS automation._fit_result_gamma_gamma
LANGUAGE c IMMUTABLE
AS 'MODULE_PATHNAME', 'automation_fit_gamma_gamma';

CREATE FUNCTION automation._score(x float8, t_x float8, t float8, mean_value float8, model float8[],
                                  horizon float8, month float8, monthly_discount float8,
                                  OUT p_alive float8, OUT expected_purchases float8, OUT next_order float8,
                                  OUT expected_spend float8, OUT clv float8)
RETURNS record
LANGUAGE c IMMUTABLE
AS 'MODULE_PATHNAME', 'automation_score';

-- _unit_seconds(unit): seconds in one time unit of a model.
CREATE FUNCTION automation._unit_seconds(unit text)
RETURNS float8
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE unit WHEN 'days' THEN 86400.0 WHEN 'weeks' THEN 604800.0
                     WHEN 'months' THEN 86400.0 * 365.25 / 12 END::float8
$$;

-- _latest_model(): the model in use, or an error saying how to get one.
CREATE FUNCTION automation._latest_model()
RETURNS automation.model_parameters
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m automation.model_parameters;
BEGIN
    SELECT * INTO m FROM automation.model_parameters ORDER BY model_id DESC LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no model has been fitted'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'automation.model_parameters is empty.',
                  HINT = 'Run SELECT * FROM automation.fit_models(); or pass every model parameter.';
    END IF;
    RETURN m;
END
$$;

-- The formulas alone.  Every model parameter left NULL (the default) is
-- taken from the latest fitted model, whose time unit x, t_x and t are then in.

CREATE FUNCTION automation.p_alive(x float8, t_x float8, t float8,
                                   r float8 DEFAULT NULL, alpha float8 DEFAULT NULL,
                                   a float8 DEFAULT NULL, b float8 DEFAULT NULL)
RETURNS float8
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m automation.model_parameters;
BEGIN
    IF r IS NULL OR alpha IS NULL OR a IS NULL OR b IS NULL THEN
        m := automation._latest_model();
    END IF;
    RETURN automation._p_alive(x, t_x, t, coalesce(r, m.r), coalesce(alpha, m.alpha),
                               coalesce(a, m.a), coalesce(b, m.b));
END
$$;
COMMENT ON FUNCTION automation.p_alive(float8, float8, float8, float8, float8, float8, float8) IS 'BG/NBD probability that a customer with x repeat purchases, the last at t_x, first purchase t ago, is alive; NULL parameters come from the latest model';

CREATE FUNCTION automation.expected_purchases(horizon float8, x float8, t_x float8, t float8,
                                              r float8 DEFAULT NULL, alpha float8 DEFAULT NULL,
                                              a float8 DEFAULT NULL, b float8 DEFAULT NULL)
RETURNS float8
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m automation.model_parameters;
BEGIN
    IF r IS NULL OR alpha IS NULL OR a IS NULL OR b IS NULL THEN
        m := automation._latest_model();
    END IF;
    RETURN automation._expected_purchases(horizon, x, t_x, t, coalesce(r, m.r), coalesce(alpha, m.alpha),
                                          coalesce(a, m.a), coalesce(b, m.b));
END
$$;
COMMENT ON FUNCTION automation.expected_purchases(float8, float8, float8, float8, float8, float8, float8, float8) IS 'BG/NBD expected purchases in the next horizon time units of a customer with history (x, t_x, t); NULL parameters come from the latest model';

CREATE FUNCTION automation.expected_spend(x float8, mean_value float8,
                                          p float8 DEFAULT NULL, q float8 DEFAULT NULL, gamma float8 DEFAULT NULL)
RETURNS float8
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m automation.model_parameters;
BEGIN
    IF p IS NULL OR q IS NULL OR gamma IS NULL THEN
        m := automation._latest_model();
        IF m.p IS NULL AND (p IS NULL OR q IS NULL OR gamma IS NULL) THEN
            RAISE EXCEPTION 'the latest model has no spend model'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'No order had a positive value when it was fitted.',
                      HINT = 'Pass p, q and gamma.';
        END IF;
    END IF;
    RETURN automation._expected_spend(x, mean_value, coalesce(p, m.p), coalesce(q, m.q), coalesce(gamma, m.gamma));
END
$$;
COMMENT ON FUNCTION automation.expected_spend(float8, float8, float8, float8, float8) IS 'Gamma-Gamma expected value of a future purchase of a customer with x repeat purchases of mean mean_value; NULL parameters come from the latest model';

-- _store_scores(model, now, stats): rebuilds automation.customer_prediction
-- from per-customer statistics as of now (a relation shaped like the result
-- of _order_statistics, or NULL to read the orders).
CREATE FUNCTION automation._store_scores(model automation.model_parameters, now timestamptz, stats regclass)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    unit float8 := automation._unit_seconds(model.time_unit);
    key_type text := coalesce(automation.customer_key_type()::text, 'text');
    monthly_discount float8 := power(1 + (automation._prediction_settings()).discount_rate, 1.0 / 12) - 1;
    rows bigint;
BEGIN
    -- Emptied at once when no one reads it; while someone does (an
    -- analyst's transaction left open, say), the rows are deleted instead,
    -- which waits for no reader: a TRUNCATE would wait for them, with the
    -- tick and every tick after it.
    IF automation._try_lock('automation.customer_prediction', 'ACCESS EXCLUSIVE') THEN
        TRUNCATE automation.customer_prediction;
    ELSE
        DELETE FROM automation.customer_prediction;
    END IF;
    EXECUTE format($q$
        INSERT INTO automation.customer_prediction
               (customer_key, x, t_x, t, mean_value, p_alive, expected_purchases_90d, expected_next_order,
                expected_spend_per_order, clv_12m, model_id, scored_at)
        SELECT s.customer_key::%s, s.x, s.t_x, s.t, s.mean_value, sc.p_alive, sc.expected_purchases,
               $1 + make_interval(secs => sc.next_order * $2), sc.expected_spend, sc.clv, $3, $1
          FROM %s s
         CROSS JOIN LATERAL automation._score(s.x, s.t_x, s.t, s.mean_value, $4,
                                              90 * 86400 / $2, 365.25 / 12 * 86400 / $2, $5) sc
        $q$, key_type,
        coalesce(stats::text, 'automation._order_statistics($1, $2)'))
    USING now, unit, model.model_id,
          ARRAY[model.r, model.alpha, model.a, model.b, model.p, model.q, model.gamma],
          monthly_discount;
    GET DIAGNOSTICS rows = ROW_COUNT;
    RETURN rows;
END
$$;

-- score_customers(now): scores every customer with the latest model, from
-- the orders placed up to now.  The tick calls it after the profile pass.
CREATE FUNCTION automation.score_customers(now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(now, 'now');
    PERFORM automation._retype_keys();
    RETURN automation._store_scores(automation._latest_model(), now, NULL);
END
$$;
COMMENT ON FUNCTION automation.score_customers(timestamptz) IS 'rebuild automation.customer_prediction with the latest model as of now; returns the customers scored';

-- _scored_at(): when the stored predictions were made (NULL: never).
-- _store_scores rebuilds the table whole with one scored_at, so any row
-- tells, without reading them all.
CREATE FUNCTION automation._scored_at()
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT c.scored_at FROM automation.customer_prediction c LIMIT 1 $$;

-- _tick_predictions(now): the tick's stage: scores every customer again with
-- the latest model when the last scoring is older than
-- automation.prediction_refresh (0: never).  Returns the customers scored.
CREATE FUNCTION automation._tick_predictions(now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    refresh int := (automation._prediction_settings()).refresh_minutes;
BEGIN
    IF refresh = 0 OR NOT EXISTS (SELECT FROM automation.model_parameters) THEN
        RETURN 0;
    END IF;
    IF automation._scored_at() > now - make_interval(mins => refresh) THEN
        RETURN 0;
    END IF;
    RETURN automation._store_scores(automation._latest_model(), now, NULL);
END
$$;

-- fit_models(calibration_end, now): fits both models on the orders placed
-- up to calibration_end (by default now), stores them, and scores every
-- customer as of now.
CREATE FUNCTION automation.fit_models(calibration_end timestamptz DEFAULT NULL, now timestamptz DEFAULT now())
RETURNS automation.model_parameters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    settings record;
    bg automation._fit_result_bgnbd;
    gg automation._fit_result_gamma_gamma;
    stats record;
    gg_stats record;
    model automation.model_parameters;
    bg_method text;
    gg_method text;
    bg_start float8[];
    gg_start float8[];
    mean_order float8;
    prior_p float8 := 6.25;
    prior_q float8 := 3.74;
    spent int;
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(now, 'now');
    calibration_end := coalesce(calibration_end, now);
    PERFORM automation._check_finite(calibration_end, 'calibration_end');
    IF calibration_end > now THEN
        RAISE EXCEPTION 'calibration_end must not be after now'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('calibration_end is %s, now is %s.', calibration_end, now);
    END IF;
    PERFORM automation._retype_keys();
    settings := automation._prediction_settings();

    IF to_regclass('pg_temp.automation_prediction_stats') IS NOT NULL THEN
        DROP TABLE pg_temp.automation_prediction_stats;
    END IF;
    CREATE TEMP TABLE automation_prediction_stats ON COMMIT DROP AS
        SELECT * FROM automation._order_statistics(calibration_end, settings.unit_seconds);

    -- Compressed statistics: one row per distinct (x, t_x, t) or (x, mean value).
    SELECT coalesce(array_agg(g.x), '{}') AS x, coalesce(array_agg(g.t_x), '{}') AS t_x,
           coalesce(array_agg(g.t), '{}') AS t, coalesce(array_agg(g.n), '{}') AS n,
           coalesce(sum(g.n), 0)::bigint AS customers,
           coalesce(sum(g.n) FILTER (WHERE g.x > 0), 0)::bigint AS repeaters
      INTO stats
      FROM (SELECT s.x::float8 AS x, s.t_x, s.t, count(*)::float8 AS n
              FROM pg_temp.automation_prediction_stats s GROUP BY 1, 2, 3) g;
    SELECT coalesce(array_agg(g.x), '{}') AS x, coalesce(array_agg(g.m), '{}') AS m,
           coalesce(array_agg(g.n), '{}') AS n, coalesce(sum(g.n), 0)::bigint AS customers
      INTO gg_stats
      FROM (SELECT s.x::float8 AS x, s.mean_value AS m, count(*)::float8 AS n
              FROM pg_temp.automation_prediction_stats s
             WHERE s.x > 0 AND s.mean_value > 0 GROUP BY 1, 2) g;
    SELECT sum(s.total_value) / nullif(sum(s.x + 1), 0) INTO mean_order
      FROM pg_temp.automation_prediction_stats s;

    -- BG/NBD: maximum likelihood with enough customers, else (or when the
    -- likelihood alone leaves a parameter unbounded) shrunk toward the priors.
    bg_start := ARRAY[0.243, 4.414 * 604800 / settings.unit_seconds, 0.793, 2.426];
    IF stats.customers = 0 THEN
        bg := (bg_start[1], bg_start[2], bg_start[3], bg_start[4], NULL::float8, 0, false)::automation._fit_result_bgnbd;
        bg_method := 'population priors (no customer had ordered by calibration_end)';
    ELSE
        IF stats.customers >= settings.min_customers AND stats.repeaters > 0 THEN
            bg := automation._fit_bgnbd(stats.x, stats.t_x, stats.t, stats.n, bg_start, 0);
            bg_method := 'maximum likelihood';
            IF bg.at_bound THEN
                bg_method := format('shrunk toward population priors (%s customers, %s repeat customers: the data alone leave a parameter unbounded)',
                                    stats.customers, stats.repeaters);
            END IF;
        ELSE
            bg_method := format('shrunk toward population priors (%s customers, %s repeat customers; maximum likelihood needs at least automation.prediction_min_customers = %s customers and a repeat customer)',
                                stats.customers, stats.repeaters, settings.min_customers);
        END IF;
        IF bg_method <> 'maximum likelihood' THEN
            spent := coalesce(bg.iterations, 0);
            bg := automation._fit_bgnbd(stats.x, stats.t_x, stats.t, stats.n, bg_start, 1);
            bg.iterations := bg.iterations + spent;
        END IF;
    END IF;

    -- Gamma-Gamma, over repeat customers whose repeat purchases have a positive mean value.
    IF NOT coalesce(mean_order > 0, false) THEN
        gg_method := CASE WHEN coalesce(stats.customers, 0) = 0 THEN 'none (no order by calibration_end)'
                          ELSE 'none (no order has a positive value)' END;
    ELSE
        gg_start := ARRAY[prior_p, prior_q, mean_order * (prior_q - 1) / prior_p];
        IF gg_stats.customers = 0 THEN
            gg_method := 'population priors scaled to the mean order value (no repeat purchase with a positive value)';
            gg := (gg_start[1], gg_start[2], gg_start[3], NULL::float8, 0, false)::automation._fit_result_gamma_gamma;
        ELSE
            IF gg_stats.customers >= settings.min_customers THEN
                gg := automation._fit_gamma_gamma(gg_stats.x, gg_stats.m, gg_stats.n, gg_start, 0);
                gg_method := 'maximum likelihood';
                IF gg.at_bound THEN
                    gg_method := format('shrunk toward population priors (%s repeat customers: the data alone leave a parameter unbounded)',
                                        gg_stats.customers);
                END IF;
            ELSE
                gg_method := format('shrunk toward population priors (%s repeat customers with a positive mean value; maximum likelihood needs at least automation.prediction_min_customers = %s)',
                                    gg_stats.customers, settings.min_customers);
            END IF;
            IF gg_method <> 'maximum likelihood' THEN
                spent := coalesce(gg.iterations, 0);
                gg := automation._fit_gamma_gamma(gg_stats.x, gg_stats.m, gg_stats.n, gg_start, 1);
                gg.iterations := gg.iterations + spent;
            END IF;
        END IF;
    END IF;

    INSERT INTO automation.model_parameters AS mp
           (fitted_at, calibration_end, time_unit, customers, repeat_customers,
            r, alpha, a, b, log_likelihood_bgnbd, iterations_bgnbd,
            p, q, gamma, log_likelihood_gg, iterations_gg, method)
    VALUES (now, calibration_end, settings.time_unit, stats.customers, stats.repeaters,
            bg.r, bg.alpha, bg.a, bg.b, bg.log_likelihood, bg.iterations,
            gg.p, gg.q, gg.gamma, gg.log_likelihood, coalesce(gg.iterations, 0),
            format('BG/NBD: %s; Gamma-Gamma: %s', bg_method, gg_method))
    RETURNING * INTO model;

    PERFORM automation._store_scores(model, now,
        CASE WHEN calibration_end = now THEN 'pg_temp.automation_prediction_stats'::regclass END);
    DROP TABLE pg_temp.automation_prediction_stats;
    RETURN model;
END
$$;
COMMENT ON FUNCTION automation.fit_models(timestamptz, timestamptz) IS 'fit BG/NBD and Gamma-Gamma on the orders up to calibration_end, store the model, score every customer as of now';

INSERT INTO automation.access_rule VALUES
    ('analyst', 'TABLE automation.model_parameters', 'SELECT'),
    ('analyst', 'TABLE automation.customer_prediction', 'SELECT'),
    ('analyst', 'FUNCTION automation.p_alive(float8, float8, float8, float8, float8, float8, float8)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation.expected_purchases(float8, float8, float8, float8, float8, float8, float8, float8)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation.expected_spend(float8, float8, float8, float8, float8)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation._latest_model()', 'EXECUTE'),
    ('analyst', 'FUNCTION automation._p_alive(float8, float8, float8, float8, float8, float8, float8)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation._expected_purchases(float8, float8, float8, float8, float8, float8, float8, float8)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation._expected_spend(float8, float8, float8, float8, float8)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation._prediction_settings()', 'EXECUTE');
