-- The outbox's part of every tick: wake the mailers for messages that
-- became due since the last tick, and prune the archive.

CREATE FUNCTION automation._tick_notify(now timestamptz)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*) FROM automation.notify_due(now) $$;

INSERT INTO automation.tick_stage VALUES
    (80, 'notify', 'automation._tick_notify'),
    (90, 'archive', 'automation.archive_outbox');
