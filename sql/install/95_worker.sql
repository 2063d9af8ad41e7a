-- What the background workers are doing.  The workers exist only when the
-- library is in shared_preload_libraries; without it the view is empty and
-- automation.tick() is called by hand or by pg_cron.

CREATE FUNCTION automation._worker_status()
RETURNS TABLE (database text, pid integer, state text, ticks bigint, last_tick_start timestamptz,
               last_tick_ms double precision, last_tick_rows text, last_error text, last_error_at timestamptz)
LANGUAGE c
AS 'MODULE_PATHNAME', 'automation_worker_status';

CREATE VIEW automation.worker_status AS
SELECT * FROM automation._worker_status();
COMMENT ON VIEW automation.worker_status IS 'one row per database in automation.database_name: the worker''s pid, state, last tick and last error';

INSERT INTO automation.access_rule VALUES
    ('analyst', 'automation.worker_status', 'SELECT'),
    ('analyst', 'FUNCTION automation._worker_status()', 'EXECUTE');
