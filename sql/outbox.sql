-- The outbox: what a mailer and an application see, including every error.
-- The clock is passed explicitly (now => ...) so the output is stable.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;
SET TimeZone = 'UTC';

CREATE SCHEMA oshop;
CREATE TABLE oshop.customers (id bigint PRIMARY KEY, email text, consent boolean, phone text);
INSERT INTO oshop.customers VALUES
    (1, 'Ada@Example.com', true, '+358401234567'),
    (2, 'bob@example.com', false, NULL),
    (3, NULL, true, NULL),
    (4, 'cy@example.com', true, NULL),
    (5, 'dee@example.com', true, NULL);

-- nothing bound: no recipient can be looked up
SELECT automation.enqueue(1, 'email', 'welcome', '{}', 'w-1');
\echo sqlstate :LAST_ERROR_SQLSTATE

SELECT automation.bind_customers('oshop.customers', 'id', 'email', 'consent');
-- a journey whose messages are enqueued under its name below
SELECT automation.create_journey('winback', 'segment_entered', '{"segment": "lapsing"}');
SELECT automation.add_step('winback', '0', 'winback');
SELECT format_type(atttypid, NULL) AS outbox_key_type
  FROM pg_attribute WHERE attrelid = 'automation.outbox'::regclass AND attname = 'customer_key';

-- enqueue: the id, and the same id for a dedupe key seen before
SELECT automation.enqueue(1, 'email', 'welcome', '{"first_name": "Ada"}', 'w-1', now => '2026-01-01 10:00+00');
SELECT automation.enqueue(1, 'email', 'welcome', '{"first_name": "Ada"}', 'w-1', now => '2026-01-01 10:00+00');
SELECT automation.enqueue('2'::text, 'email', 'welcome', '{}', 'w-2', now => '2026-01-01 10:00+00');
-- a key as text that is no key of the shop's type
SELECT automation.enqueue('two'::text, 'email', 'welcome', '{}', 'w-two', now => '2026-01-01 10:00+00');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(2, 'email', 'receipt', '{"order": 7}', 'r-2', purpose => 'transactional',
                          now => '2026-01-01 10:00+00');
SELECT automation.enqueue(4, 'email', 'winback', '{}', 'b-4', send_after => '2026-01-01 12:00+00',
                          journey => 'winback', step => 1, variant => 'a', now => '2026-01-01 10:00+00');
SELECT automation.enqueue(4, 'push', 'app_nudge', '{}', 'p-4', now => '2026-01-01 10:00+00');
SELECT id, customer_key, channel, recipient, template, payload, journey, step, variant, purpose, dedupe_key,
       send_after, status, attempts
  FROM automation.outbox ORDER BY id;

-- enqueue: bad input
SELECT automation.enqueue(NULL::bigint, 'email', 'welcome', '{}', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'email', 'welcome', '{}', NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'email', 'welcome', '{}', 'x', purpose => 'spam');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'E-Mail', 'welcome', '{}', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'email', 'welcome', '[1, 2]', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'email', '', '{}', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'email', 'welcome', '{}', '');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'email', '   ', '{}', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'email', 'welcome', '{}', repeat('k', 1001));
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'email', 'welcome', '{}', 'never', send_after => 'infinity');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a journey, step or variant must name a journey's step
SELECT automation.enqueue(1, 'email', 'welcome', '{}', 'x', journey => 'nope');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'email', 'welcome', '{}', 'x', step => 1);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(99, 'email', 'welcome', '{}', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(3, 'email', 'welcome', '{}', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enqueue(1, 'sms', 'welcome', '{}', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT count(*) AS messages FROM automation.outbox;

-- claim: bad input
SELECT * FROM automation.claim(0, '5 minutes', 'email');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.claim(-1, '5 minutes', 'email');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.claim(100000, '5 minutes', 'email');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.claim(10, NULL, 'email');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.claim(10, '0 seconds', 'email');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.claim(10, '-5 minutes', 'email');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.claim(10, '1 year', 'email');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.claim(10, '5 minutes', NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
-- (the owner may replay a moment, but not one at infinity: the lease
-- would never run out)
SELECT * FROM automation.claim(10, '5 minutes', 'email', now => 'infinity');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.ack(ARRAY[1::bigint], now => 'infinity');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- an address longer than any address
SELECT automation.suppress(repeat('x', 1001) || '@example.com');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a channel nobody writes to is simply empty
SELECT count(*) FROM automation.claim(10, '5 minutes', 'fax');

-- claim: bob withdrew consent, so his marketing message is cancelled; his
-- receipt is transactional and goes out; cy's message is not due yet
SELECT id, customer_key, channel, recipient, template, payload, attempts, status, lease_until
  FROM automation.claim(10, '5 minutes', 'email', now => '2026-01-01 10:01+00') ORDER BY id;
SELECT id, status, reason, finished_at FROM automation.outbox_archive ORDER BY id;
-- the leases are held: nothing more to claim until they run out
SELECT count(*) FROM automation.claim(10, '5 minutes', 'email', now => '2026-01-01 10:02+00');

-- ack, ack again (a no-op), and bad acks
SELECT automation.ack(ARRAY[1], now => '2026-01-01 10:03+00');
SELECT automation.ack(ARRAY[1], now => '2026-01-01 10:04+00');
SELECT automation.ack(ARRAY[1, 1]);
SELECT automation.ack(ARRAY[12345]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.ack(ARRAY[5]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.ack(NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.ack(ARRAY[1, NULL]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.ack('{}');
-- an ack with one unknown id changes nothing
SELECT automation.ack(ARRAY[3, 12345]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.ack('{{1,2},{3,4}}'::bigint[]);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT count(*) FROM automation.claim(10, '5 minutes', 'EMAIL');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT id, status FROM automation.outbox WHERE id = 3;

-- a lease that runs out makes the message claimable again; attempts counts handouts
SELECT id, attempts, lease_until FROM automation.claim(10, '5 minutes', 'email', now => '2026-01-01 10:07+00');
-- the first holder's late ack still counts: the message was sent
SELECT automation.ack(ARRAY[3], now => '2026-01-01 10:08+00');
SELECT id, status, attempts, finished_at FROM automation.outbox_archive WHERE id = 3;
-- and the second holder's ack is a no-op
SELECT automation.ack(ARRAY[3], now => '2026-01-01 10:09+00');

-- fail: retry after a given delay, then the backoff, then dead after automation.max_attempts
SET automation.max_attempts = 3;
SELECT id FROM automation.claim(10, '5 minutes', 'email', now => '2026-01-01 12:00+00');
SELECT automation.fail(4, 'smtp 451 try later', retry_in => '10 minutes', now => '2026-01-01 12:01+00');
SELECT status, send_after, lease_until, last_error FROM automation.outbox WHERE id = 4;
SELECT id, attempts FROM automation.claim(10, '5 minutes', 'email', now => '2026-01-01 12:11+00');
-- a mailer that reports the first handout, now that the message was handed out again
SELECT automation.fail(4, 'no such attempt', now => '2026-01-01 12:12+00', attempt => 99);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.fail(4, 'late report', now => '2026-01-01 12:12+00', attempt => 1);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.fail(4, 'smtp 451 still later', now => '2026-01-01 12:12+00', attempt => 2);
-- second failure: the backoff waits between one and two minutes
SELECT status, send_after - '2026-01-01 12:12+00' BETWEEN '1 minute' AND '2 minutes' AS backoff_ok
  FROM automation.outbox WHERE id = 4;
SELECT id, attempts FROM automation.claim(10, '5 minutes', 'email', now => '2026-01-01 13:00+00');
SELECT automation.fail(4, 'smtp 550 mailbox full', now => '2026-01-01 13:01+00');
SELECT id, recipient, attempts, last_error, jsonb_array_length(errors) AS errors, died_at FROM automation.outbox_dead;
RESET automation.max_attempts;

-- fail: bad input
SELECT automation.fail(4, 'again');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.fail(1, 'after the ack');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.fail(5, 'never claimed');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.fail(12345, 'unknown');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.fail(NULL, 'no id');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.fail(5, 'negative', retry_in => '-1 minute');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.fail(5, 'forever', retry_in => '100000 years');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.fail(5, NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE

-- track: events, suppression by hard bounce / complaint / unsubscribe
SELECT automation.track(1, 'delivered', '2026-01-01 10:05+00') > 0 AS tracked;
SELECT automation.track(1, 'open', '2026-01-01 11:00+00') > 0 AS tracked;
SELECT automation.track(1, 'click', '2026-01-01 11:01+00', '{"url": "https://shop.example/p/1"}') > 0 AS tracked;
SELECT automation.track(1, 'feedback', '2026-01-01 11:02+00', '{"rating": 5, "text": "lovely"}') > 0 AS tracked;
-- an open dated long before the message was written
SELECT automation.track(1, 'open', '1900-01-01 11:00+00');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.track(1, 'bounce', '2026-01-01 11:03+00', '{"type": "soft"}') > 0 AS tracked;
SELECT count(*) AS suppressed FROM automation.suppression;
SELECT automation.track(1, 'bounce', '2026-01-01 11:04+00', '{"type": "hard", "smtp": "550"}') > 0 AS tracked;
SELECT automation.track(3, 'complaint', '2026-01-01 11:05+00') > 0 AS tracked;
SELECT address, reason, since, message_id FROM automation.suppression ORDER BY address;
SELECT message_id, customer_key, event, at, data FROM automation.message_event ORDER BY id;

-- track: bad input
SELECT automation.track(12345, 'open');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.track(12345, 'unsubscribe');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.track(1, 'open', '2999-01-01 00:00+00');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.track(1, 'opened');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.track(1, 'bounce');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.track(1, 'click', data => '"x"');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.track(NULL, 'open');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.track(1, 'open', 'infinity');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a message never handed out has no events: a hard bounce of it would
-- suppress the address for nothing
SELECT automation.track(5, 'bounce', data => '{"type": "hard"}');
\echo sqlstate :LAST_ERROR_SQLSTATE

-- a suppressed address is cancelled at claim, even for a transactional message
SELECT automation.enqueue(1, 'email', 'receipt', '{}', 'r-1', purpose => 'transactional', now => '2026-01-02 10:00+00');
SELECT count(*) FROM automation.claim(10, '5 minutes', 'email', now => '2026-01-02 10:00+00');
SELECT id, status, reason FROM automation.outbox_archive WHERE dedupe_key = 'r-1';
-- a customer deleted from the shop gets no marketing
SELECT automation.enqueue(5, 'email', 'welcome', '{}', 'w-5', now => '2026-01-02 10:00+00');
DELETE FROM oshop.customers WHERE id = 5;
SELECT count(*) FROM automation.claim(10, '5 minutes', 'email', now => '2026-01-02 10:00+00');
SELECT id, status, reason FROM automation.outbox_archive WHERE dedupe_key = 'w-5';

-- the dedupe key of an archived message still returns its id
SELECT automation.enqueue(1, 'email', 'welcome', '{}', 'w-1') AS first_welcome;

-- notify_due: a NOTIFY for each channel whose messages became due since the
-- last call (here: push, due since the start; then email at 09:00, and push
-- again, which still waits a minute on), and once a minute for a channel
-- whose messages due still wait; the tick runs it
SELECT position, stage, function FROM automation.tick_stage WHERE function IN ('automation.notify_due', 'automation.archive_outbox') ORDER BY position;
SELECT automation.enqueue(4, 'email', 'later', '{}', 'l-4', send_after => '2026-01-03 09:00+00',
                          now => '2026-01-02 10:00+00');
SELECT automation.notify_due('2026-01-03 08:00+00');
SELECT automation.notify_due('2026-01-03 09:30+00');
SELECT automation.notify_due('2026-01-03 09:30:30+00');
SELECT automation.notify_due(NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE

-- statistics
SELECT channel, due, scheduled, leased, lease_expired, sent, dead, cancelled, cancelled_by_reason
  FROM automation.outbox_stats;

-- the archive is pruned after automation.retention
SHOW automation.retention;
SELECT count(*) AS archived FROM automation.outbox_archive;
SELECT automation.archive_outbox('2026-01-20');
SET automation.retention = '1d';
SELECT automation.archive_outbox('2026-01-02 12:00+00');
-- (the sent marketing message stays for the frequency caps' 7 days, and
-- the events of those days with it)
SELECT id, status, purpose FROM automation.outbox_archive ORDER BY id;
SELECT count(*) AS events_left FROM automation.message_event;
SET automation.retention = '10s';
\echo sqlstate :LAST_ERROR_SQLSTATE
RESET automation.retention;
-- at most this many messages a call, the oldest first
SHOW automation.prune_batch;
SET automation.prune_batch = -1;
\echo sqlstate :LAST_ERROR_SQLSTATE

-- the settings
SET automation.max_attempts = 0;
\echo sqlstate :LAST_ERROR_SQLSTATE
SHOW automation.max_attempts;

-- clean up
TRUNCATE automation.outbox, automation.outbox_key, automation.outbox_archive, automation.message_event, automation.suppression;
SELECT automation.drop_journey('winback');
SELECT automation.unbind('customers');
DROP SCHEMA oshop CASCADE;
