-- The outbox's part of every tick: wake the mailers for messages that
-- became due since the last tick, and prune the archive.  Between ticks the
-- background worker wakes them when the next message matures.

INSERT INTO automation.tick_stage VALUES
    (80, 'notify', 'automation.notify_due'),
    (90, 'archive', 'automation.archive_outbox');

-- _wake_mailers(now): what the background worker runs between ticks:
-- NOTIFY for messages that became due, then how many milliseconds until
-- the next queued message or expiring lease becomes due (NULL if none).
CREATE FUNCTION automation._wake_mailers(now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT automation.notify_due(now);
    SELECT ceil(extract(epoch FROM min(coalesce(o.lease_until, o.send_after)) - now) * 1000)::bigint
      FROM automation.outbox o
     WHERE coalesce(o.lease_until, o.send_after) > now
$$;

-- _poke_worker(due): tells the worker that a message will mature at due (a
-- message queued or retried for later, or a lease that may run out), so
-- that it wakes the mailers then and not only at its next tick.  enqueue,
-- claim and fail call it once per call, with the earliest time they set;
-- a trigger on the outbox would cost every claim a transition table and a
-- PL/pgSQL call for the same one value.  The tick's own messages are due at
-- once, and the worker looks at the outbox after every tick.
CREATE FUNCTION automation._poke_worker(due timestamptz)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'automation_poke_worker';
