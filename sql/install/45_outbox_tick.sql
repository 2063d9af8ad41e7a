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

-- A message queued for later, retried later or leased tells the worker when
-- it will mature, so that the worker wakes the mailers then and not only at
-- its next tick.
CREATE FUNCTION automation._poke_worker(due timestamptz)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'automation_poke_worker';

CREATE FUNCTION automation._outbox_poke()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM automation._poke_worker(min(coalesce(n.lease_until, n.send_after)))
       FROM changed n
      WHERE coalesce(n.lease_until, n.send_after) > now()
     HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_poke_insert AFTER INSERT ON automation.outbox
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION automation._outbox_poke();
CREATE TRIGGER outbox_poke_update AFTER UPDATE ON automation.outbox
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION automation._outbox_poke();
