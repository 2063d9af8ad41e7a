# The background worker keeps the hot outbox small by itself: with
# autovacuum off, once enough messages have left automation.outbox it runs
# VACUUM on it; while an old snapshot holds the horizon back it does not
# vacuum again in vain, and once that snapshot is gone it does.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('outbox_vacuum');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'automation'
automation.database_name = 'postgres'
automation.naptime = '1h'
automation.outbox_vacuum_threshold = 1000
autovacuum = off
});
$node->start;

$node->safe_psql('postgres', q{
    CREATE EXTENSION automation;
    CREATE SCHEMA shop;
    CREATE TABLE shop.customers (id bigint PRIMARY KEY, email text, consent boolean);
    INSERT INTO shop.customers SELECT i, 'c' || i || '@example.com', true FROM generate_series(1, 300) i;
    SELECT automation.bind_customers('shop.customers', 'id', 'email', 'consent');
});

my $round = 0;
# pass(N): N messages pass through the outbox: enqueued, claimed, acknowledged.
sub pass_through
{
    my ($n) = @_;
    $round++;
    $node->safe_psql('postgres', qq{
        SELECT count(automation.enqueue(1 + i % 300, 'email', 'welcome', '{}', 'r$round-' || i))
          FROM generate_series(1, $n) i;
    });
    $node->safe_psql('postgres', qq{
        DO \$\$
        DECLARE ids bigint[];
        BEGIN
            LOOP
                SELECT array_agg(c.id) INTO ids FROM automation.claim(100, '5 minutes', 'email') c;
                EXIT WHEN ids IS NULL;
                PERFORM automation.ack(ids);
            END LOOP;
        END \$\$;
    });
}
my $stats = q{SELECT %s FROM pg_stat_user_tables WHERE relid = 'automation.outbox'::regclass};
sub outbox_stat { $node->safe_psql('postgres', sprintf($stats, $_[0])) }

ok($node->poll_query_until('postgres', q{SELECT pid IS NOT NULL FROM automation.worker_status}),
   'the worker runs');
sleep 2;
is(outbox_stat('vacuum_count'), '0', 'it does not vacuum an outbox nothing has left');

pass_through(3000);
is($node->safe_psql('postgres', 'SELECT count(*) FROM automation.outbox_archive'), '3000',
   '3000 messages went through the outbox');
ok($node->poll_query_until('postgres', sprintf($stats, 'vacuum_count >= 1 AND n_dead_tup = 0')),
   'the worker vacuums the outbox once they have left it, without autovacuum');
is(outbox_stat('autovacuum_count'), '0', 'autovacuum had no part in it');
ok(outbox_stat('last_vacuum IS NOT NULL') eq 't', 'pg_stat_user_tables shows when');
sleep 3;
my $vacuums = outbox_stat('vacuum_count');
pass_through(500);
sleep 3;
is(outbox_stat('vacuum_count'), $vacuums, 'fewer rows than automation.outbox_vacuum_threshold make no vacuum');

# A REPEATABLE READ transaction that stays open: one vacuum may still clean
# what left before it began; after that the worker waits for it to end.
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$holder->query_safe('SELECT count(*) FROM shop.customers');
pass_through(3000);
sleep 4;
$vacuums = outbox_stat('vacuum_count');
pass_through(3000);
sleep 4;
is(outbox_stat('vacuum_count'), $vacuums, 'while an old snapshot holds the horizon, the worker does not vacuum in vain');
ok(outbox_stat('n_dead_tup') > 0, 'and the outbox keeps dead rows meanwhile');
$holder->query_safe('COMMIT');
$holder->quit;
ok($node->poll_query_until('postgres', sprintf($stats, "vacuum_count > $vacuums AND n_dead_tup = 0")),
   'once the snapshot is gone the worker vacuums them');

# A threshold of 0 leaves the outbox to autovacuum.
$node->safe_psql('postgres', 'ALTER SYSTEM SET automation.outbox_vacuum_threshold = 0');
$node->reload;
sleep 2;
$vacuums = outbox_stat('vacuum_count');
pass_through(3000);
sleep 4;
is(outbox_stat('vacuum_count'), $vacuums, 'automation.outbox_vacuum_threshold = 0 turns it off');
ok(outbox_stat('n_dead_tup') >= 3000, 'and the dead rows stay');

my $log = slurp_file($node->logfile);
unlike($log, qr/automation vacuum of automation.outbox .* failed/, 'no vacuum failed');

$node->stop;
done_testing();
