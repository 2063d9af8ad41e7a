-- The outbox: backoff, dead messages, suppression fed by track, archive
-- pruning, keys of other types, and the mailer's privileges.
BEGIN;
SELECT plan(85);
ALTER SEQUENCE automation.outbox_id_seq RESTART;

CREATE SCHEMA oshop;
CREATE TABLE oshop.customers (id uuid PRIMARY KEY, email text, consented_at timestamptz, phone text);
INSERT INTO oshop.customers VALUES
    ('00000000-0000-0000-0000-000000000001', 'ada@example.com', '2025-06-01', '+3580001'),
    ('00000000-0000-0000-0000-000000000002', 'bob@example.com', NULL, '+3580002'),
    ('00000000-0000-0000-0000-000000000003', 'cy@example.com', '2025-06-01', NULL);

-- The shop's customers are read with the privileges of the role recorded as
-- having bound them; here a role that may read them and nothing else.
CREATE ROLE regress_outbox_binder;
GRANT USAGE ON SCHEMA oshop TO regress_outbox_binder;
GRANT SELECT ON oshop.customers TO regress_outbox_binder;
SELECT automation.bind_customers('oshop.customers', 'id', 'email', 'consented_at', phone_column => 'phone');
UPDATE automation.source SET bound_by = 'regress_outbox_binder' WHERE kind = 'customers';

SELECT col_type_is('automation', 'outbox', 'customer_key', 'uuid', 'outbox keys take the shop''s type');
SELECT col_type_is('automation', 'outbox_archive', 'customer_key', 'uuid', 'archive keys too');
SELECT col_type_is('automation', 'message_event', 'customer_key', 'uuid', 'event keys too');
SELECT col_type_is('automation', 'outbox_dead', 'customer_key', 'uuid', 'and the views over them');

-- Enqueue with the key in the shop's type or as text; consent is a timestamp here.
SELECT is(automation.enqueue('00000000-0000-0000-0000-000000000001'::uuid, 'email', 'welcome', '{}', 'w-ada',
                             now => '2026-03-01 09:00+00'), 1::bigint, 'enqueue with a uuid key');
SELECT is(automation.enqueue('00000000-0000-0000-0000-000000000002'::text, 'sms', 'welcome', '{}', 'w-bob',
                             now => '2026-03-01 09:00+00'), 2::bigint, 'enqueue with the key as text, on sms');
SELECT is((SELECT recipient FROM automation.outbox WHERE id = 2), '+3580002', 'sms goes to the phone number');
SELECT is((SELECT o.customer_key FROM automation.outbox o JOIN oshop.customers c ON c.id = o.customer_key WHERE o.id = 1),
          '00000000-0000-0000-0000-000000000001'::uuid, 'stored keys join the shop''s customers without casts');
SELECT is(automation.enqueue('00000000-0000-0000-0000-000000000001'::uuid, 'email', 'welcome', '{}', 'w-ada'),
          1::bigint, 'the same dedupe key returns the first id');

-- A consent timestamp counts as consent; NULL as none.
SELECT results_eq($$SELECT id FROM automation.claim(10, '1 minute', 'email', now => '2026-03-01 09:01+00')$$,
                  ARRAY[1::bigint], 'ada consented: handed out');
SELECT results_eq($$SELECT id FROM automation.claim(10, '1 minute', 'sms', now => '2026-03-01 09:01+00')$$,
                  ARRAY[]::bigint[], 'bob never consented: not handed out');
SELECT is((SELECT reason FROM automation.outbox_archive WHERE id = 2), 'no_consent', 'and cancelled for that reason');

-- Backoff: exponential with jitter, half fixed, capped at six hours.
SELECT ok(bool_and(d BETWEEN make_interval(secs => least(60 * 2 ^ (n - 1), 21600) / 2)
                         AND make_interval(secs => least(60 * 2 ^ (n - 1), 21600))),
          'backoff after n attempts lies between half and all of min(1 min * 2^(n-1), 6 h)')
  FROM (SELECT n, automation._backoff(n) AS d FROM generate_series(1, 12) n, generate_series(1, 20)) x;
SELECT ok((SELECT count(DISTINCT automation._backoff(3)) FROM generate_series(1, 20)) > 1,
          'backoff is jittered: the same attempt gives different delays');

-- Dead after automation.max_attempts handouts, with every error kept.
SET LOCAL automation.max_attempts = 2;
SELECT is(automation.fail(1, 'smtp 451', now => '2026-03-01 09:02+00'), 'queued', 'first failure: retried');
SELECT ok((SELECT send_after - '2026-03-01 09:02+00' BETWEEN '30 seconds' AND '60 seconds'
             FROM automation.outbox WHERE id = 1), 'after the backoff for one attempt');
SELECT results_eq($$SELECT id FROM automation.claim(10, '1 minute', 'email', now => '2026-03-01 10:00+00')$$,
                  ARRAY[1::bigint], 'claimed again once due');
SELECT is(automation.fail(1, 'smtp 550', now => '2026-03-01 10:01+00'), 'dead', 'second failure: dead');
SELECT results_eq($$SELECT id, attempts, last_error, errors -> 0 ->> 'error', errors -> 1 ->> 'error' FROM automation.outbox_dead$$,
                  $$VALUES (1::bigint, 2, 'smtp 550', 'smtp 451', 'smtp 550')$$, 'the dead message shows every error');
SELECT is((SELECT count(*) FROM automation.outbox WHERE id = 1), 0::bigint, 'and has left the hot table');
CREATE ROLE regress_outbox_analyst;
SELECT count(*) AS grants FROM automation.grant_access('regress_outbox_analyst', 'analyst');
SET ROLE regress_outbox_analyst;
SELECT results_eq($$SELECT id, attempts FROM automation.outbox_dead$$, $$VALUES (1::bigint, 2)$$,
                  'an analyst reads the dead messages');
SELECT throws_ok($$SELECT recipient FROM automation.outbox_dead$$, '42501', NULL,
                 'but not their addresses, as the shop''s customers are not theirs to read');
SELECT throws_ok($$SELECT last_error FROM automation.outbox_dead$$, '42501', NULL,
                 'nor their errors, in which a mail server quotes the address it refused');
SELECT throws_ok($$SELECT errors FROM automation.outbox_dead$$, '42501', NULL, 'in the last or any');
RESET ROLE;
RESET automation.max_attempts;

-- Suppression from track: hard bounce, complaint, unsubscribe; soft bounces and opens do not suppress.
SELECT automation.enqueue('00000000-0000-0000-0000-000000000003'::uuid, 'email', 'news', '{}', 'n-cy', now => '2026-03-02 09:00+00');
SELECT results_eq($$SELECT count(*) FROM automation.claim(10, '1 minute', 'email', now => '2026-03-02 09:00+00')$$,
                  ARRAY[1::bigint], 'cy''s newsletter is handed out');
SELECT automation.ack(ARRAY[3::bigint], now => '2026-03-02 09:01+00');
SELECT automation.track(3, 'open', '2026-03-02 10:00+00');
SELECT automation.track(3, 'bounce', '2026-03-02 10:01+00', '{"type": "soft"}');
SELECT is_empty($$SELECT FROM automation.suppression$$, 'opens and soft bounces do not suppress');
SELECT automation.track(3, 'unsubscribe', '2026-03-02 10:02+00', '{"list": "news"}');
SELECT results_eq($$SELECT address, reason, message_id FROM automation.suppression$$,
                  $$VALUES ('cy@example.com', 'unsubscribe', 3::bigint)$$, 'an unsubscribe suppresses the address');
SELECT automation.enqueue('00000000-0000-0000-0000-000000000003'::uuid, 'email', 'receipt', '{}', 'r-cy',
                          purpose => 'transactional', now => '2026-03-03 09:00+00');
SELECT is_empty($$SELECT FROM automation.claim(10, '1 minute', 'email', now => '2026-03-03 09:00+00')$$,
                'a suppressed address gets nothing, not even a transactional message');
SELECT is((SELECT reason FROM automation.outbox_archive WHERE dedupe_key = 'r-cy'), 'suppressed', 'cancelled as suppressed');
UPDATE oshop.customers SET email = 'CY@Example.com ' WHERE id = '00000000-0000-0000-0000-000000000003';
SELECT automation.enqueue('00000000-0000-0000-0000-000000000003'::uuid, 'email', 'receipt', '{}', 'r2-cy',
                          purpose => 'transactional', now => '2026-03-03 09:00+00');
SELECT is_empty($$SELECT FROM automation.claim(10, '1 minute', 'email', now => '2026-03-03 09:00+00')$$,
                'suppression ignores case and surrounding blanks');

-- Archive pruning after automation.retention, events with it.
SELECT is(automation.archive_outbox('2026-03-10'), 0::bigint, 'nothing is older than 30 days yet');
SELECT is(automation.archive_outbox('2026-04-02 09:00+00'), 3::bigint, 'after 30 days the first three are pruned');
SELECT is((SELECT count(*) FROM automation.message_event), 0::bigint, 'and their events');
SELECT is((SELECT count(*) FROM automation.suppression), 1::bigint, 'the suppression list is never pruned');

-- pg_dump keeps the queue, the archive, the events and the suppression list.
SELECT ok(ARRAY['automation.source', 'automation.outbox', 'automation.outbox_id_seq', 'automation.outbox_archive',
                'automation.message_event', 'automation.message_event_id_seq', 'automation.suppression']
          <@ ARRAY(SELECT c::regclass::text FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'automation'),
          'pg_dump dumps the outbox tables and their sequences');

-- The mailer: claim, ack, fail, track -- and nothing else.
CREATE ROLE regress_outbox_mailer;
SELECT ok(count(*) > 0, 'grant_access grants the mailer its privileges')
  FROM automation.grant_access('regress_outbox_mailer', 'mailer');
UPDATE oshop.customers SET consented_at = '2026-01-01' WHERE id = '00000000-0000-0000-0000-000000000002';
SELECT automation.enqueue('00000000-0000-0000-0000-000000000002'::uuid, 'email', 'welcome', '{}', 'm-1', now => '2026-05-01');
SELECT automation.enqueue('00000000-0000-0000-0000-000000000002'::uuid, 'email', 'tips', '{}', 'm-2', now => '2026-05-01');
SET ROLE regress_outbox_mailer;
CREATE TEMP TABLE claimed AS SELECT * FROM automation.claim(10, '5 minutes', 'email', now => '2026-05-01 00:01');
SELECT is((SELECT count(*) FROM claimed), 2::bigint, 'the mailer claims, without reading the shop''s customers itself');
SELECT is(automation.ack((SELECT array_agg(id) FROM claimed WHERE template = 'welcome'), now => '2026-05-01 00:02'),
          1::bigint, 'acks');
SELECT is(automation.fail((SELECT id FROM claimed WHERE template = 'tips'), 'timeout', now => '2026-05-01 00:02'),
          'queued', 'fails');
SELECT lives_ok($$SELECT automation.track((SELECT id FROM claimed WHERE template = 'welcome'), 'click')$$, 'tracks');
SELECT lives_ok($$SELECT * FROM automation.outbox_stats$$, 'reads the statistics');
SELECT throws_ok($$SELECT * FROM oshop.customers$$, '42501', NULL, 'cannot read the shop''s tables');
SELECT throws_ok($$SELECT * FROM automation.outbox$$, '42501', NULL, 'cannot read the outbox table directly');
SELECT throws_ok($$SELECT automation.bind_customers('oshop.customers', 'id', 'email', 'phone')$$, '42501', NULL,
                 'cannot change bindings');
SELECT throws_ok($$DELETE FROM automation.suppression$$, '42501', NULL, 'cannot lift suppressions');
SELECT is(automation.suppress(' Dan@Example.com ', 'unsubscribe'), true, 'suppresses an address by hand');
SELECT throws_ok($$SELECT automation.unsuppress('dan@example.com')$$, '42501', NULL,
                 'but cannot lift it through the function either');
SELECT throws_ok($$SET automation.max_attempts = 100$$, '42501', NULL, 'cannot change the outbox settings');
SELECT throws_ok($$SELECT automation.enqueue('00000000-0000-0000-0000-000000000002'::uuid, 'email', 'x', '{}', 'x')$$,
                 '42501', NULL, 'cannot enqueue');
RESET ROLE;
-- A mailer logged in as itself acts at the server's time.
SET SESSION AUTHORIZATION regress_outbox_mailer;
SELECT throws_ok($$SELECT * FROM automation.claim(10, '5 minutes', 'email', now => now() + interval '11 days')$$,
                 '42501', 'permission denied to pass now', 'it cannot claim at a moment of its own choosing');
SELECT throws_ok($$SELECT automation.ack(ARRAY[1], now => '2000-01-01')$$, '42501', 'permission denied to pass now',
                 'nor acknowledge in the past (the archive would free the dedupe key at once)');
SELECT lives_ok($$SELECT * FROM automation.claim(10, '5 minutes', 'push')$$, 'it claims at the server''s time');
RESET SESSION AUTHORIZATION;

-- An address the customer removed since the message was written is gone:
-- the message is not sent to the one written with it.
SELECT automation.enqueue('00000000-0000-0000-0000-000000000001'::uuid, 'sms', 'shipped', '{}', 'gone-sms',
                          purpose => 'transactional', now => '2026-05-02') AS gone \gset
UPDATE oshop.customers SET phone = NULL WHERE id = '00000000-0000-0000-0000-000000000001';
SELECT results_eq($$SELECT id FROM automation.claim(10, '5 minutes', 'sms', now => '2026-05-02 00:01')$$,
                  ARRAY[]::bigint[], 'a message to a phone number the customer removed is not handed out');
SELECT is((SELECT reason FROM automation.outbox_archive WHERE id = :gone), 'no_address', 'it is cancelled: no_address');

-- Suppressions by hand, and lifting them.
SELECT results_eq($$SELECT address, reason, message_id FROM automation.suppression WHERE address LIKE 'dan%'$$,
                  $$VALUES ('dan@example.com', 'unsubscribe', NULL::bigint)$$, 'an address suppressed by hand, lower-cased and trimmed');
SELECT is(automation.suppress('DAN@example.com'), false, 'suppressing it again changes nothing');
SELECT throws_ok($$SELECT automation.suppress('x@example.com', 'spam')$$, '22023', 'unknown reason "spam"', 'an unknown reason is refused');
SELECT throws_ok($$SELECT automation.suppress('  ')$$, '22023', NULL, 'a blank address is refused');
SELECT throws_ok($$SELECT automation.suppress('x@example.com', 'manual', now() + interval '1 day')$$, '22023', NULL,
                 'a since in the future is refused');
SELECT is(automation.suppress('ada@example.com', since => '2026-05-03'), true, 'Ada suppressed by hand');
SELECT automation.enqueue('00000000-0000-0000-0000-000000000001'::uuid, 'email', 'receipt', '{}', 'hand-1',
                          purpose => 'transactional', now => '2026-05-03') AS hand1 \gset
SELECT is_empty(format($$SELECT FROM automation.claim(10, '5 minutes', 'email', now => '2026-05-03 00:01') WHERE id = %s$$, :hand1),
                'her receipt is not handed out');
SELECT is((SELECT reason FROM automation.outbox_archive WHERE id = :hand1), 'suppressed', 'it is cancelled: suppressed');
SELECT is(automation.unsuppress(' ADA@example.com'), true, 'the administrator lifts the suppression');
SELECT is(automation.unsuppress('ada@example.com'), false, 'which is then gone');
SELECT automation.enqueue('00000000-0000-0000-0000-000000000001'::uuid, 'email', 'receipt', '{}', 'hand-2',
                          purpose => 'transactional', now => '2026-05-03 00:02') AS hand2 \gset
SELECT results_eq($$SELECT id FROM automation.claim(10, '5 minutes', 'email', now => '2026-05-03 00:03')$$,
                  ARRAY[:hand2::bigint], 'and her next receipt goes out');

-- White space around an address is no part of it: a list read from a file
-- with CRLF line ends, a shop's address with a no-break space pasted in.
SELECT automation.unsuppress('cy@example.com');
SELECT is(automation.suppress(E'\tCY@example.com\r\n'), true, 'an address with a tab, CR and LF around it is suppressed');
SELECT is((SELECT address FROM automation.suppression WHERE address LIKE 'cy%'), 'cy@example.com',
          'as the address itself');
SELECT automation.enqueue('00000000-0000-0000-0000-000000000003'::uuid, 'email', 'receipt', '{}', 'ws-cy',
                          purpose => 'transactional', now => '2026-05-03 00:04') AS wscy \gset
SELECT automation.enqueue('00000000-0000-0000-0000-000000000002'::uuid, 'email', 'receipt', '{}', 'ws-bob',
                          purpose => 'transactional', now => '2026-05-03 00:04') AS wsbob \gset
UPDATE oshop.customers SET email = ' Bob@Example.org' || chr(160) || chr(8203) WHERE id = '00000000-0000-0000-0000-000000000002';
SELECT is(automation.suppress('bob@example.org'), true, 'Bob suppressed');
SELECT is_empty($$SELECT FROM automation.claim(10, '5 minutes', 'email', now => '2026-05-03 00:05')$$,
                'neither is handed out: not Cy''s, nor Bob''s, whose address in the shop ends in a no-break and a zero-width space');
SELECT results_eq(format('SELECT reason FROM automation.outbox_archive WHERE id IN (%s, %s)', :wscy, :wsbob),
                  $$VALUES ('suppressed'), ('suppressed')$$, 'both are cancelled: suppressed');
SELECT is(automation.unsuppress(E'bob@example.org\u00a0'), true, 'and lifted in any form');
SELECT is((SELECT recipient FROM automation.outbox_archive WHERE id = :wsbob), 'Bob@Example.org',
          'the cancelled message keeps the address it was checked against, not the one it was written with');
SELECT automation.enqueue('00000000-0000-0000-0000-000000000002'::uuid, 'email', 'receipt', '{}', 'ws-bob-2',
                          purpose => 'transactional', now => '2026-05-03 00:06') AS wsbob2 \gset
SELECT is((SELECT recipient FROM automation.outbox WHERE id = :wsbob2), 'Bob@Example.org',
          'a message is written to the address without the white space around it, its case kept');
UPDATE oshop.customers SET email = E'\tBob@Example.net\r\n' WHERE id = '00000000-0000-0000-0000-000000000002';
SELECT results_eq(format($$SELECT id, recipient FROM automation.claim(10, '5 minutes', 'email', now => '2026-05-03 00:07')
                           WHERE id = %s$$, :wsbob2),
                  format($$VALUES (%s::bigint, 'Bob@Example.net')$$, :wsbob2),
                  'and handed out to the live address, trimmed alike: no tab, CR or LF for the mailer to choke on');

-- A customer on two rows of the bound customers, one without consent: the
-- strictest row decides.
CREATE VIEW oshop.customer_rows AS
SELECT * FROM oshop.customers
UNION ALL
SELECT id, email, NULL, phone FROM oshop.customers WHERE id = '00000000-0000-0000-0000-000000000001';
GRANT SELECT ON oshop.customer_rows TO regress_outbox_binder;
SELECT automation.bind_customers('oshop.customer_rows', 'id', 'email', 'consented_at', phone_column => 'phone');
UPDATE automation.source SET bound_by = 'regress_outbox_binder' WHERE kind = 'customers';
SELECT automation.enqueue('00000000-0000-0000-0000-000000000001'::uuid, 'email', 'news', '{}', 'two-rows',
                          now => '2026-05-03 00:06') AS tworows \gset
SELECT is_empty(format($$SELECT FROM automation.claim(10, '5 minutes', 'email', now => '2026-05-03 00:07') WHERE id = %s$$, :tworows),
                'a marketing message to a customer one of whose rows withdrew consent is not handed out');
SELECT is((SELECT reason FROM automation.outbox_archive WHERE id = :tworows), 'no_consent', 'it is cancelled: no_consent');
SELECT automation.bind_customers('oshop.customers', 'id', 'email', 'consented_at', phone_column => 'phone');
UPDATE automation.source SET bound_by = 'regress_outbox_binder' WHERE kind = 'customers';

-- A lease runs from the handout, not from the start of the mailer's
-- transaction: one that waited longer than the lease before claiming still
-- gets it whole.
SELECT automation.enqueue('00000000-0000-0000-0000-000000000003'::uuid, 'push', 'late', '{}', 'late-lease',
                          purpose => 'transactional', now => now() - interval '1 minute') AS late \gset
SELECT pg_sleep(1.2);
SELECT cmp_ok((SELECT lease_until FROM automation.claim(10, '1 second', 'push') WHERE id = :late), '>', clock_timestamp(),
              'a claim made 1.2 s into its transaction, with a lease of 1 second, hands out a lease that has not run out');

-- A message whose lease ran out after its last allowed handout is dead,
-- not handed out for ever to mailers that die on it.
SET LOCAL automation.max_attempts = 2;
SELECT automation.enqueue('00000000-0000-0000-0000-000000000003'::uuid, 'push', 'poison', '{}', 'poison',
                          purpose => 'transactional', now => '2026-05-03') AS poison \gset
SELECT count(*) FROM automation.claim(10, '1 minute', 'push', now => '2026-05-03 00:01');
SELECT count(*) FROM automation.claim(10, '1 minute', 'push', now => '2026-05-03 00:03');
SELECT results_eq($$SELECT id FROM automation.claim(10, '1 minute', 'push', now => '2026-05-03 00:05')$$,
                  ARRAY[]::bigint[], 'after two handouts whose leases ran out, a third is not made');
SELECT results_eq($$SELECT status, attempts, last_error FROM automation.outbox_archive WHERE id = $$ || :poison,
                  $$VALUES ('dead'::text, 2, 'the lease ran out'::text)$$, 'the message is dead: the lease ran out');
RESET automation.max_attempts;

-- The shop is read with the binding role's privileges, not the extension owner's.
REVOKE SELECT ON oshop.customers FROM regress_outbox_binder;
SELECT throws_ok($$SELECT * FROM automation.claim(10, '5 minutes', 'email', now => '2026-06-01')$$, '42501', NULL,
                 'a binding role that lost access to the customers makes the claim fail, not read as superuser');

-- An address that needs neither trimming nor lower-casing is taken as it
-- is; every other goes the long way.  Both ways give what btrim by the
-- white space and lower give.
CREATE TEMP TABLE addr (a text);
INSERT INTO addr VALUES ('ada@example.com'), ('Ada@example.com'), (' ada@example.com'), (E'ada@example.com\r\n'),
    (E'\tada@example.com'), ('ada@example.com' || chr(160)), (chr(65279) || 'ada@example.com'), ('ádá@example.com'),
    ('ada@exÄmple.com'), ('+358 40 123 4567'), (''), ('  '), ('a b@example.com'), ('ZED'), ('@'), (NULL);
SELECT is((SELECT count(*) FROM addr x,
                  (SELECT E' \t\n\r\v\f' || string_agg(chr(c), '') AS s
                     FROM unnest(ARRAY[133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202,
                                       8203, 8232, 8233, 8239, 8287, 12288, 65279]) c) w
            WHERE automation._recipient(x.a) IS DISTINCT FROM btrim(x.a, w.s)
               OR automation._address(x.a) IS DISTINCT FROM lower(btrim(x.a, w.s))),
          0::bigint, 'an address is trimmed and lower-cased as btrim and lower would, plain or not');
SELECT is((SELECT array_agg(x.a ORDER BY x.a COLLATE "C") FROM addr x WHERE automation._plain_address(x.a)),
          ARRAY['', '+358 40 123 4567', '@', 'a b@example.com', 'ada@example.com'],
          'plain: ASCII alone, no upper case, no white space at either end');

-- A channel is a lower-case word of at most 32 bytes: _is_word says so as
-- the regular expression it stands for, for words and near misses alike.
CREATE TEMP TABLE word (w text);
INSERT INTO word VALUES ('email'), ('sms'), ('push_v2'), ('a'), ('z9_'), (repeat('a', 32)), (repeat('a', 33)),
    ('Email'), ('EMAIL'), ('9lives'), ('_push'), ('e-mail'), ('e mail'), ('email '), (' email'), (E'email\n'),
    ('émail'), ('emaíl'), ('e' || chr(8203)), (''), ('a' || repeat('é', 15)), ('`'), ('{'), ('@'), ('['), (NULL);
SELECT is((SELECT count(*) FROM word x WHERE automation._is_word(x.w, 32) IS DISTINCT FROM (x.w ~ '^[a-z][a-z0-9_]{0,31}$')),
          0::bigint, 'a word of at most 32 bytes is what ^[a-z][a-z0-9_]{0,31}$ matches');
SELECT is((SELECT array_agg(x.w ORDER BY x.w COLLATE "C") FROM word x WHERE automation._is_word(x.w, 3)),
          ARRAY['a', 'sms', 'z9_'], 'the length is at most max_length');
SELECT throws_ok($$INSERT INTO automation.outbox (customer_key, channel, template, dedupe_key, send_after)
                   SELECT a.customer_key, 'E-Mail', 't', 'word-check', now() FROM automation.outbox_archive a LIMIT 1$$,
                 '23514', NULL, 'the outbox refuses a message on a channel that is not a word');

SELECT * FROM finish();
ROLLBACK;
