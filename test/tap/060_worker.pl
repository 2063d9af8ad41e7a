# The background workers: one per listed database, ticking by themselves,
# coming back after pg_terminate_backend and kill -9, following a new
# naptime on reload, surviving an error in a tick.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'automation'
automation.database_name = 'shopdb, otherdb, missingdb'
automation.naptime = '1s'
restart_after_crash = on
});
$node->start;

# A stage that leaves a trace of every tick, and fails on demand.
my $probe = q{
    CREATE EXTENSION automation;
    CREATE TABLE public.tick_probe (db text, at timestamptz DEFAULT clock_timestamp());
    CREATE TABLE public.tick_fail (reason text);
    CREATE FUNCTION automation.probe_stage(now timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT FROM public.tick_fail) THEN
            RAISE EXCEPTION 'probe failure: %', (SELECT reason FROM public.tick_fail LIMIT 1);
        END IF;
        INSERT INTO public.tick_probe (db) VALUES (current_database());
        RETURN 1;
    END $$;
    INSERT INTO automation.tick_stage VALUES (1000, 'probe', 'automation.probe_stage');
};
$node->safe_psql('postgres', 'CREATE DATABASE shopdb');
$node->safe_psql('postgres', 'CREATE DATABASE otherdb');
$node->safe_psql('shopdb', $probe);

my $status = q{SELECT state FROM automation.worker_status WHERE database = };
ok($node->poll_query_until('shopdb', 'SELECT count(*) >= 2 FROM public.tick_probe'),
   'the worker ticks by itself');
is($node->safe_psql('shopdb', 'SELECT string_agg(DISTINCT db, \',\') FROM public.tick_probe'),
   'shopdb', 'it ticks only its own database');
is($node->safe_psql('shopdb', q{SELECT application_name FROM pg_stat_activity WHERE backend_type = 'automation worker' AND datname = 'shopdb'}),
   'automation worker', 'it is recognisable in pg_stat_activity');

# A database without the extension is logged once, and picked up once it has it.
ok($node->poll_query_until('shopdb', $status . q{'otherdb'}, 'no extension'),
   'a database without the extension is left alone');
sleep 3;
my $log = slurp_file($node->logfile);
my @said = ($log =~ /extension "automation" is not installed in database "otherdb"/g);
is(scalar(@said), 1, 'and said so once');
@said = ($log =~ /database "missingdb" listed in automation.database_name does not exist/g);
is(scalar(@said), 1, 'a database that does not exist is said once too');
$node->safe_psql('otherdb', $probe);
ok($node->poll_query_until('otherdb', 'SELECT count(*) >= 1 FROM public.tick_probe'),
   'each listed database gets its worker');
is($node->safe_psql('otherdb', 'SELECT string_agg(DISTINCT db, \',\') FROM public.tick_probe'),
   'otherdb', 'which ticks only its own shop');

# pg_terminate_backend: the worker comes back.
my $pid = $node->safe_psql('shopdb', q{SELECT pid FROM automation.worker_status WHERE database = 'shopdb'});
ok($pid > 0, "the worker for shopdb runs as pid $pid");
$node->safe_psql('shopdb', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('shopdb',
    "SELECT pid IS NOT NULL AND pid <> $pid FROM automation.worker_status WHERE database = 'shopdb'"),
   'after pg_terminate_backend a new worker takes over');
my $ticks = $node->safe_psql('shopdb', 'SELECT count(*) FROM public.tick_probe');
ok($node->poll_query_until('shopdb', "SELECT count(*) > $ticks FROM public.tick_probe"),
   'and ticks');

# The launcher terminated: it comes back too, and does not start a second worker.
my $launcher = $node->safe_psql('shopdb', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'automation launcher'});
$node->safe_psql('shopdb', "SELECT pg_terminate_backend($launcher)");
ok($node->poll_query_until('shopdb',
    "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'automation launcher' AND pid <> $launcher"),
   'a terminated launcher is restarted');
sleep 2;
is($node->safe_psql('shopdb', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'automation worker' AND datname = 'shopdb'}),
   '1', 'and there is still one worker per database');

# kill -9 of the worker: the server restarts after the crash, and so does the worker.
$pid = $node->safe_psql('shopdb', q{SELECT pid FROM automation.worker_status WHERE database = 'shopdb'});
kill 'KILL', $pid;
ok($node->poll_query_until('shopdb',
    "SELECT pid IS NOT NULL AND pid <> $pid AND state IN ('idle', 'ticking') FROM automation.worker_status WHERE database = 'shopdb'"),
   'after kill -9 the worker comes back');
$ticks = $node->safe_psql('shopdb', 'SELECT count(*) FROM public.tick_probe');
ok($node->poll_query_until('shopdb', "SELECT count(*) > $ticks FROM public.tick_probe"),
   'and ticks again');

# An error inside a tick is recorded and the worker goes on.
$pid = $node->safe_psql('shopdb', q{SELECT pid FROM automation.worker_status WHERE database = 'shopdb'});
$node->safe_psql('shopdb', q{INSERT INTO public.tick_fail VALUES ('the bound table is gone')});
ok($node->poll_query_until('shopdb',
    q{SELECT last_error LIKE 'probe failure: the bound table is gone%' FROM automation.worker_status WHERE database = 'shopdb'}),
   'a failing tick shows in worker_status');
$node->safe_psql('shopdb', 'DELETE FROM public.tick_fail');
$ticks = $node->safe_psql('shopdb', 'SELECT count(*) FROM public.tick_probe');
ok($node->poll_query_until('shopdb', "SELECT count(*) > $ticks FROM public.tick_probe"),
   'the worker keeps ticking after it');
is($node->safe_psql('shopdb', q{SELECT pid FROM automation.worker_status WHERE database = 'shopdb'}),
   $pid, 'in the same process');

# A new naptime takes effect on reload, without a restart.
$node->safe_psql('shopdb', q{ALTER SYSTEM SET automation.naptime = '1h'});
$node->reload;
sleep 2;
$ticks = $node->safe_psql('shopdb', 'SELECT count(*) FROM public.tick_probe');
sleep 4;
is($node->safe_psql('shopdb', 'SELECT count(*) FROM public.tick_probe'), $ticks,
   'with naptime 1h no tick happens for seconds');
$node->safe_psql('shopdb', q{ALTER SYSTEM SET automation.naptime = '1s'});
$node->reload;
ok($node->poll_query_until('shopdb', "SELECT count(*) > $ticks + 1 FROM public.tick_probe"),
   'back to 1s it ticks again at once');

# automation.enabled = off: the worker stays but does not tick.
$node->safe_psql('shopdb', q{ALTER SYSTEM SET automation.enabled = off});
$node->reload;
ok($node->poll_query_until('shopdb', $status . q{'shopdb'}, 'disabled'), 'disabled by a reload');
$ticks = $node->safe_psql('shopdb', 'SELECT count(*) FROM public.tick_probe');
sleep 3;
is($node->safe_psql('shopdb', 'SELECT count(*) FROM public.tick_probe'), $ticks, 'and no tick happens');
$node->safe_psql('shopdb', q{ALTER SYSTEM RESET automation.enabled});
$node->reload;
ok($node->poll_query_until('shopdb', "SELECT count(*) > $ticks FROM public.tick_probe"), 'enabled again, it ticks');

$log = slurp_file($node->logfile);
unlike($log, qr/PANIC|TRAP/, 'no panic or assertion failure in the log');

$node->stop;
done_testing();
