# The worker running real journeys: a cart that goes idle gets its reminder
# without anyone calling tick(); a mailer listening on automation_outbox is
# woken when a queued message matures between ticks; and kill -9 of the
# postmaster in the middle of a tick leaves no partial state and no
# duplicate.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('journeys');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'automation'
automation.database_name = 'shopdb'
automation.naptime = '1s'
restart_after_crash = on
# no quiet hours: the test must not depend on the time of day it runs at
automation.quiet_hours_start = 0
automation.quiet_hours_end = 0
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shopdb');
$node->safe_psql('shopdb', q{
    CREATE EXTENSION automation;
    CREATE SCHEMA shop;
    CREATE TABLE shop.customers (id bigint PRIMARY KEY, email text, consent boolean);
    CREATE TABLE shop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric);
    CREATE TABLE shop.carts (id bigint PRIMARY KEY, customer_id bigint, updated_at timestamptz, total numeric, order_id bigint);
    INSERT INTO shop.customers SELECT g, 'c' || g || '@example.com', true FROM generate_series(1, 50) g;
    SELECT automation.bind_customers('shop.customers', 'id', 'email', 'consent');
    SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
    SELECT automation.bind_carts('shop.carts', 'id', 'customer_id', 'updated_at', 'total', order_id_column => 'order_id');
    SELECT automation.create_journey('nudge', 'cart_abandoned', '{"idle": "2 seconds"}');
    SELECT automation.add_step('nudge', '3 seconds', 'cart_nudge');
});

# A cart left now is reminded about 5 seconds later, with nobody calling tick().
$node->safe_psql('shopdb', q{INSERT INTO shop.carts VALUES (1, 1, clock_timestamp(), 20, NULL)});
ok($node->poll_query_until('shopdb', q{SELECT count(*) = 1 FROM automation.outbox WHERE journey = 'nudge'}),
   'the worker enrolls an idle cart and enqueues its reminder by itself');

# A mailer waiting on LISTEN is woken when a message queued for later matures,
# although the next tick is an hour away.
$node->safe_psql('shopdb', q{ALTER SYSTEM SET automation.naptime = '1h'});
$node->reload;
sleep 2;
my $mailer = $node->background_psql('shopdb');
$mailer->query_safe('LISTEN automation_outbox');
$node->safe_psql('shopdb', q{
    SELECT automation.enqueue(2::bigint, 'email', 'later', '{}', 'later:2', clock_timestamp() + interval '4 seconds')});
my $woken = 0;
for (1 .. 30) {
    my $out = $mailer->query('SELECT 1');
    if ($mailer->{stdout} =~ /Asynchronous notification "automation_outbox" with payload "email"/ ||
        ($out // '') =~ /Asynchronous notification/) {
        $woken = 1;
        last;
    }
    sleep 1;
}
ok($woken, 'the mailer is notified when the message matures between ticks');
$mailer->quit;

# kill -9 of the postmaster in the middle of a tick: a stage that sleeps
# after the journeys have written their rows.
$node->safe_psql('shopdb', q{ALTER SYSTEM SET automation.naptime = '1s'});
$node->safe_psql('shopdb', q{
    CREATE FUNCTION automation.slow_stage(now timestamptz) RETURNS bigint LANGUAGE sql
        AS $$ SELECT pg_sleep(30); SELECT 0::bigint $$;
    INSERT INTO automation.tick_stage VALUES (95, 'slow', 'automation.slow_stage');
    INSERT INTO shop.carts SELECT g, g, clock_timestamp() - interval '1 hour', 20, NULL FROM generate_series(10, 40) g;
});
$node->reload;
ok($node->poll_query_until('shopdb',
    q{SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'automation worker' AND wait_event = 'PgSleep'}),
   'a tick is in its slow stage');
is($node->safe_psql('shopdb', q{SELECT count(*) FROM automation.enrollment WHERE subject <> 'cart:1'}), '0',
   'its enrollments are not visible before it commits');
my $worker = $node->safe_psql('shopdb', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'automation worker'});
$node->kill9;
kill 'KILL', $worker;
# wait for the old processes to go before starting afresh
for (1 .. 60) {
    last unless kill 0, $worker;
    sleep 1;
}
$node->start;

is($node->safe_psql('shopdb', q{SELECT count(*) FROM automation.enrollment WHERE subject <> 'cart:1'}), '0',
   'after the crash nothing of the interrupted tick is left');
$node->safe_psql('shopdb', q{DELETE FROM automation.tick_stage WHERE stage = 'slow'});
ok($node->poll_query_until('shopdb',
    q{SELECT count(*) = 31 FROM automation.enrollment WHERE subject <> 'cart:1' AND status <> 'active'}),
   'the next tick enrolls and reminds every cart');
is($node->safe_psql('shopdb', q{
    SELECT count(*) FROM automation.enrollment e
     WHERE e.subject <> 'cart:1'
       AND NOT EXISTS (SELECT FROM automation.outbox o WHERE o.dedupe_key = e.journey || ':' || e.subject || ':1')}),
   '0', 'no enrollment without its outbox row');
is($node->safe_psql('shopdb', q{SELECT count(*) - count(DISTINCT dedupe_key) FROM automation.outbox}), '0',
   'and no message twice');

# A bound table dropped under the worker: the tick fails, worker_status
# says why, and the worker carries on once the shop is bound again.
my $pid = $node->safe_psql('shopdb', q{SELECT pid FROM automation.worker_status});
$node->safe_psql('shopdb', q{ALTER TABLE shop.carts RENAME TO carts_gone});
ok($node->poll_query_until('shopdb',
    q{SELECT last_error LIKE '%carts%' FROM automation.worker_status}),
   'a tick over a dropped bound table fails, and worker_status shows it');
is($node->safe_psql('shopdb', q{SELECT pid FROM automation.worker_status}), $pid, 'the worker keeps running');
$node->safe_psql('shopdb', q{ALTER TABLE shop.carts_gone RENAME TO carts});
my $ticks = $node->safe_psql('shopdb', q{SELECT ticks FROM automation.worker_status});
ok($node->poll_query_until('shopdb',
    qq{SELECT ticks > $ticks + 1 AND last_tick_start > last_error_at FROM automation.worker_status}),
   'and ticks again once the table is back');

$node->stop;
done_testing();
