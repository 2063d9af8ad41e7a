-- The tick keeps predictions fresh: after the profile pass and before the
-- segments (the churn_risk segment reads p_alive), it scores customers again
-- with the latest model when the last scoring is older than
-- automation.prediction_refresh.
INSERT INTO automation.tick_stage (position, stage, function)
VALUES (25, 'predictions', 'automation._tick_predictions');
