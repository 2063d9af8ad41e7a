-- A backlog of the archive pruned in batches (automation.prune_batch), the
-- oldest first, whatever order the messages were archived in; or all at
-- once.
BEGIN;
SELECT plan(4);

SET LOCAL automation.retention = '30d';
SET LOCAL automation.min_interval = 0;
SET LOCAL automation.max_per_week = 0;
SET LOCAL automation.prune_batch = 100;
CREATE SCHEMA pshop;
CREATE TABLE pshop.customers (id bigint PRIMARY KEY, email text, consent boolean);
INSERT INTO pshop.customers SELECT g, 'c' || g || '@example.com', true FROM generate_series(1, 10) g;
SELECT automation.bind_customers('pshop.customers', 'id', 'email', 'consent');

-- 1,000 messages sent a minute apart from 1 January, written to the archive
-- out of the order they finished in; the 101st finished at the same moment
-- as the 100th.  An open for every tenth, half a minute after it finished.
INSERT INTO automation.outbox_archive (id, customer_key, channel, recipient, template, payload, purpose, dedupe_key,
                                       send_after, status, attempts, errors, created_at, finished_at, reason)
SELECT g, g % 10 + 1, 'email', 'c@example.com', 'news', '{}', 'marketing', 'news:' || g,
       t, 'sent', 1, '[]', t, t, NULL
  FROM (SELECT g * 7919 % 1000 + 1 AS g FROM generate_series(0, 999) g) x,
       LATERAL (SELECT timestamptz '2026-01-01 00:00+00' + (CASE WHEN g = 101 THEN 100 ELSE g END) * interval '1 minute' AS t) y;
INSERT INTO automation.outbox_key (dedupe_key, message_id, customer_key, marketing)
SELECT dedupe_key, id, customer_key, true FROM automation.outbox_archive;
INSERT INTO automation.message_event (message_id, customer_key, event, at)
SELECT id, customer_key, 'open', finished_at + interval '30 seconds' FROM automation.outbox_archive WHERE id % 10 = 0;

-- prune(): eleven calls a month later, each with what it pruned, the
-- oldest message left and the events left.
CREATE TEMP TABLE prune (call integer, pruned bigint, oldest_left bigint, events_left bigint);
CREATE FUNCTION pg_temp.prune() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    pruned bigint;
BEGIN
    FOR i IN 1..11 LOOP
        pruned := automation.archive_outbox('2026-03-01 00:00+00');
        INSERT INTO prune
        SELECT i, pruned, (SELECT min(id) FROM automation.outbox_archive), (SELECT count(*) FROM automation.message_event);
    END LOOP;
END
$$;

SAVEPOINT before;
SELECT pg_temp.prune();
SELECT results_eq(
    $$SELECT call, pruned, oldest_left, events_left FROM prune ORDER BY call$$,
    $$VALUES (1, 101::bigint, 102::bigint, 91::bigint), (2, 100::bigint, 202::bigint, 80::bigint),
             (3, 100::bigint, 302::bigint, 70::bigint), (4, 100::bigint, 402::bigint, 60::bigint),
             (5, 100::bigint, 502::bigint, 50::bigint), (6, 100::bigint, 602::bigint, 40::bigint),
             (7, 100::bigint, 702::bigint, 30::bigint), (8, 100::bigint, 802::bigint, 20::bigint),
             (9, 100::bigint, 902::bigint, 10::bigint), (10, 99::bigint, NULL::bigint, 0::bigint),
             (11, 0::bigint, NULL::bigint, 0::bigint)$$,
    'a hundred a call, the oldest first, ties with the last together, each call''s events with it');
ROLLBACK TO SAVEPOINT before;

SET LOCAL automation.prune_batch = 0;
SELECT is(automation.archive_outbox('2026-03-01 00:00+00'), 1000::bigint, 'with automation.prune_batch = 0, all at once');
SELECT is((SELECT count(*) FROM automation.message_event), 0::bigint, 'and every event with them');
SELECT is(automation.archive_outbox('2026-03-01 00:00+00'), 0::bigint, 'and nothing the call after');

SELECT * FROM finish();
ROLLBACK;
