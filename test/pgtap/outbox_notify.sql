-- notify_due: which channels it wakes the mailers of (the number it
-- returns), as messages come due and leases run out, and when it need not.
BEGIN;
SELECT plan(13);
ALTER SEQUENCE automation.outbox_id_seq RESTART;

CREATE SCHEMA nshop;
CREATE TABLE nshop.customers (id bigint PRIMARY KEY, email text, consent boolean);
INSERT INTO nshop.customers VALUES (1, 'ada@example.com', true), (2, 'bob@example.com', true);
SELECT automation.bind_customers('nshop.customers', 'id', 'email', 'consent');
UPDATE automation.outbox_notify SET notified_until = '2026-01-01 00:00+00';

-- An e-mail for 10:00, written at 09:00.
SELECT automation.enqueue(1, 'email', 'a', '{}', 'n-a', send_after => '2026-01-01 10:00+00', purpose => 'transactional',
                          now => '2026-01-01 09:00+00');
SELECT is(automation.notify_due('2026-01-01 09:30+00'), 0::bigint, 'nothing due yet: no one woken');
SELECT is(automation.notify_due('2026-01-01 10:30+00'), 1::bigint, 'the e-mail came due: its channel is woken');
SELECT is(automation.notify_due('2026-01-01 10:30:30+00'), 0::bigint, 'once in the minute: it still waits, but the mailers were told');
SELECT is(automation.notify_due('2026-01-01 10:45+00'), 1::bigint,
          'in a later minute it still waits: the channel is woken again (a mailer may have gone to sleep)');
SELECT is(automation.notify_due('2026-01-01 10:45+00'), 0::bigint, 'a second call at the same moment does nothing');

-- Claimed at 10:50 for ten minutes, and never acknowledged.
SELECT is((SELECT count(*) FROM automation.claim(10, '10 minutes', 'email', now => '2026-01-01 10:50+00')), 1::bigint,
          'a mailer claims it');
SELECT is(automation.notify_due('2026-01-01 10:55+00'), 0::bigint, 'nothing while the lease runs');
SELECT is(automation.notify_due('2026-01-01 11:05+00'), 1::bigint, 'the lease ran out: the channel is woken again');

-- Claimed again at 11:06 until 11:16; another e-mail comes due at 11:07
-- and no mailer takes it.
SELECT is((SELECT count(*) FROM automation.claim(10, '10 minutes', 'email', now => '2026-01-01 11:06+00')), 1::bigint,
          'claimed again');
SELECT automation.enqueue(2, 'email', 'b', '{}', 'n-b', send_after => '2026-01-01 11:07+00', purpose => 'transactional',
                          now => '2026-01-01 11:06+00');
SELECT is(automation.notify_due('2026-01-01 11:08+00'), 1::bigint, 'the second e-mail came due');
SELECT is(automation.notify_due('2026-01-01 11:08:40+00'), 0::bigint,
          'the e-mail due since 11:07 still waits, within the minute: the mailers are busy');
SELECT is(automation.notify_due('2026-01-01 11:20+00'), 1::bigint,
          'the lease ran out and the e-mail still waits, minutes on: woken again');

-- A mailer takes both e-mails at 11:21 and sends them; a push message
-- for 11:25 wakes its channel alone.
SELECT automation.ack(ARRAY(SELECT id FROM automation.claim(10, '10 minutes', 'email', now => '2026-01-01 11:21+00')),
                      now => '2026-01-01 11:22+00');
SELECT automation.enqueue(1, 'push', 'c', '{}', 'n-c', send_after => '2026-01-01 11:25+00', purpose => 'transactional',
                          now => '2026-01-01 11:20+00');
SELECT is(automation.notify_due('2026-01-01 11:30+00'), 1::bigint, 'a push message came due: push alone is woken');

SELECT * FROM finish();
ROLLBACK;
