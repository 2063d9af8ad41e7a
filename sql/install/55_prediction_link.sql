-- How predictions join the rest of the engine.
--
-- The tick keeps them fresh: after the profile pass and before the segments
-- (the churn_risk segment reads p_alive), it scores customers again with
-- the latest model when the last scoring is older than
-- automation.prediction_refresh.
INSERT INTO automation.tick_stage (position, stage, function)
VALUES (25, 'predictions', 'automation._tick_predictions');

-- churn_risk: customers the fitted BG/NBD model thinks probably gone.
-- Customers without a repeat purchase have p_alive 1 in that model, so only
-- returning customers can be at risk.  Journeys trigger on it like on any
-- segment; install_preset('win_back', '{"segment": "churn_risk"}') does.
INSERT INTO automation.segment (name, predicate, description, builtin) VALUES
    ('churn_risk',
     'EXISTS (SELECT FROM automation.customer_prediction cp WHERE cp.customer_key = p.customer_key '
     'AND cp.p_alive < automation._setting(''churn_risk_threshold'', ''0.3'')::float8)',
     'predicted P(alive) below automation.churn_risk_threshold (0.3)', true);
