# Without preloading the extension, pg_cron ticks it: the README's
# cron.schedule line, run for real.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'shopdb'
cron.use_background_workers = on
max_worker_processes = 16
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shopdb');
$node->safe_psql('shopdb', q{
    CREATE EXTENSION automation;
    CREATE EXTENSION pg_cron;
    CREATE TABLE public.tick_probe (at timestamptz DEFAULT clock_timestamp());
    CREATE FUNCTION automation.probe_stage(now timestamptz) RETURNS bigint LANGUAGE sql AS $$
        INSERT INTO public.tick_probe DEFAULT VALUES RETURNING 1::bigint $$;
    INSERT INTO automation.tick_stage VALUES (1000, 'probe', 'automation.probe_stage');
});

is($node->safe_psql('shopdb', 'SELECT count(*) FROM automation.worker_status'), '0',
   'without preload there is no worker');
$node->safe_psql('shopdb', q{SELECT cron.schedule('automation-tick', '* * * * *', 'SELECT * FROM automation.tick()')});
# pg_cron runs jobs at the top of each minute: allow two.
my $ok = 0;
for (1 .. 130) {
    $ok = $node->safe_psql('shopdb', 'SELECT count(*) > 0 FROM public.tick_probe') eq 't';
    last if $ok;
    sleep 1;
}
ok($ok, 'pg_cron ran automation.tick()');
is($node->safe_psql('shopdb', q{SELECT status FROM cron.job_run_details ORDER BY runid DESC LIMIT 1}),
   'succeeded', 'and the job succeeded');

$node->stop;
done_testing();
