-- The outbox's upkeep as stages of the tick (sql/install/90_tick.sql, which
-- creates automation.tick_stage after the outbox's own piece, 40_outbox.sql):
-- after the journeys have written messages, wake the mailers for messages
-- that became due, then prune the archive.
INSERT INTO automation.tick_stage (position, stage, function) VALUES
    (800, 'outbox_notify', 'automation.notify_due'),
    (810, 'outbox_archive', 'automation.archive_outbox');
