# A streaming standby with the extension preloaded does no writes and logs
# no errors; once promoted, its worker ticks.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $conf = q{
shared_preload_libraries = 'automation'
automation.database_name = 'shopdb'
automation.naptime = '1s'
};
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $conf);
$primary->start;
$primary->safe_psql('postgres', 'CREATE DATABASE shopdb');
$primary->safe_psql('shopdb', q{
    CREATE EXTENSION automation;
    CREATE TABLE public.tick_probe (node text, at timestamptz DEFAULT clock_timestamp());
    CREATE FUNCTION automation.probe_stage(now timestamptz) RETURNS bigint LANGUAGE sql AS $$
        INSERT INTO public.tick_probe (node) VALUES (current_setting('cluster_name')) RETURNING 1::bigint $$;
    INSERT INTO automation.tick_stage VALUES (1000, 'probe', 'automation.probe_stage');
});
$primary->append_conf('postgresql.conf', "cluster_name = 'primary'");
$primary->reload;
ok($primary->poll_query_until('shopdb', 'SELECT count(*) > 0 FROM public.tick_probe'), 'the primary ticks');

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', "cluster_name = 'standby'");
$standby->start;
$primary->wait_for_catchup($standby);

ok($standby->poll_query_until('shopdb', q{SELECT state = 'standby' FROM automation.worker_status}),
   'on the standby the worker waits');
sleep 3;
my $log = slurp_file($standby->logfile);
my @said = ($log =~ /waits: the server is a standby/g);
is(scalar(@said), 1, 'and says so once');
unlike($log, qr/ERROR|FATAL/, 'the standby logs no errors');
$primary->wait_for_catchup($standby);
is($standby->safe_psql('shopdb', q{SELECT count(*) FROM public.tick_probe WHERE node = 'standby'}), '0',
   'nothing was written by the standby');

$primary->stop;
$standby->promote;
ok($standby->poll_query_until('shopdb', q{SELECT count(*) > 0 FROM public.tick_probe WHERE node = 'standby'}),
   'after promotion the worker ticks');
is($standby->safe_psql('shopdb', 'SELECT state IN (\'idle\', \'ticking\') FROM automation.worker_status'), 't',
   'and worker_status says so');

$standby->stop;
done_testing();
