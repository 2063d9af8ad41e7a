# pg_dump keeps the outbox: queued messages, the archive, the events, the
# streaks carried over for saturation, the suppression list and the id
# sequence come back with a restore, and the restored queue works on
# (customer keys are retyped by the next enqueue).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('outbox_dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'automation'");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE shopdb');
$node->safe_psql('shopdb', q{
    CREATE EXTENSION automation;
    CREATE SCHEMA shop;
    CREATE TABLE shop.customers (id bigint PRIMARY KEY, email text, consent boolean);
    INSERT INTO shop.customers VALUES (1, 'ada@example.com', true), (2, 'bob@example.com', true);
    SELECT automation.bind_customers('shop.customers', 'id', 'email', 'consent');
    SELECT automation.enqueue(1, 'email', 'welcome', '{}', 'w-1');
    SELECT automation.enqueue(2, 'email', 'welcome', '{}', 'w-2');
    SELECT automation.ack(ARRAY(SELECT id FROM automation.claim(1, '1 minute', 'email')));
    SELECT automation.track(1, 'unsubscribe');
    SELECT automation.enqueue(2, 'email', 'later', '{}', 'l-2', send_after => now() + interval '1 day');
    INSERT INTO automation.pruned_unengaged (customer_key, channel, sends, first_at, last_at)
    VALUES (2, 'email', 3, '2026-01-01 12:00+00', '2026-01-03 12:00+00');
});

my $state = q{
    SELECT 'outbox', string_agg(format('%s %s %s %s', id, customer_key, dedupe_key, status), '; ' ORDER BY id) FROM automation.outbox
    UNION ALL
    SELECT 'archive', string_agg(format('%s %s %s %s', id, customer_key, dedupe_key, status), '; ' ORDER BY id) FROM automation.outbox_archive
    UNION ALL
    SELECT 'events', string_agg(format('%s %s', message_id, event), '; ' ORDER BY id) FROM automation.message_event
    UNION ALL
    SELECT 'suppression', string_agg(format('%s %s', address, reason), '; ') FROM automation.suppression
    UNION ALL
    SELECT 'carried', string_agg(format('%s %s %s', customer_key, channel, sends), '; ') FROM automation.pruned_unengaged};
my $before = $node->safe_psql('shopdb', $state);
like($before, qr/suppression\|ada\@example\.com unsubscribe/, 'an address is suppressed before the dump');
like($before, qr/carried\|2 email 3/, 'a saturation streak is carried over before the dump');

my $dump = $PostgreSQL::Test::Utils::tmp_check . '/outbox.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'shopdb', '-f', $dump ], 'pg_dump succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'restored', $dump ], 'pg_restore succeeds');

is($node->safe_psql('restored', $state), $before,
   'the queue, the archive, the events, the carried streaks and the suppression list are restored');
is($node->safe_psql('restored', q{
    SELECT automation.enqueue(1, 'email', 'welcome', '{}', 'w-1') || ' ' ||
           automation.enqueue(2, 'email', 'news', '{}', 'n-2')}),
   '1 4', 'dedupe keys still hold after the restore, and new ids do not collide');
is($node->safe_psql('restored', q{
    SELECT format_type(atttypid, NULL) FROM pg_attribute
     WHERE attrelid = 'automation.outbox'::regclass AND attname = 'customer_key'}),
   'bigint', "the restored outbox is keyed by the shop's type again");
$node->safe_psql('restored', q{
    SELECT automation.enqueue(1, 'email', 'receipt', '{}', 'r-1', purpose => 'transactional')});
is($node->safe_psql('restored', q{
    SELECT string_agg(template || ':' || customer_key, ',' ORDER BY id)
      FROM automation.claim(10, '1 minute', 'email', now => now() + interval '2 days')}),
   'welcome:2,later:2,news:2', "the restored queue is claimed, without the suppressed address's receipt");
is($node->safe_psql('restored', q{SELECT status || ' ' || reason FROM automation.outbox_archive WHERE dedupe_key = 'r-1'}),
   'cancelled suppressed', 'which the restored suppression list cancelled');

$node->stop;
done_testing();
