# pg_dump and restore into a new database keep the bindings: the
# configuration tables are registered with pg_extension_config_dump.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'automation'");
$node->start;

$node->safe_psql('postgres', q{
    CREATE DATABASE shopdb;
});
$node->safe_psql('shopdb', q{
    CREATE EXTENSION automation;
    CREATE SCHEMA shop;
    CREATE TABLE shop.customers (id uuid PRIMARY KEY, email text, consent boolean, tz text);
    CREATE TABLE shop.orders (id bigint PRIMARY KEY, customer_id uuid, placed_at timestamptz,
                              total numeric(12,2), status text);
    SELECT automation.bind_customers('shop.customers', 'id', 'email', 'consent', timezone_column => 'tz');
    SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total',
                                  order_id_column => 'id', status_column => 'status',
                                  counted_statuses => ARRAY['paid', 'delivered']);
});

my $bindings = q{SELECT kind, relation, columns, customer_key_type, options, bound_by, problem
                   FROM automation.bindings};
my $before = $node->safe_psql('shopdb', $bindings);
like($before, qr/customers\|shop\.customers/, 'customers are bound before the dump');

my $dump = $PostgreSQL::Test::Utils::tmp_check . '/shopdb.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'shopdb', '-f', $dump ], 'pg_dump succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'restored', $dump ], 'pg_restore succeeds');

is($node->safe_psql('restored', $bindings), $before, 'the restored database has the same bindings');
is($node->safe_psql('restored', 'SELECT automation.customer_key_type()'), 'uuid',
   'and the same customer key type');
is($node->safe_psql('restored', q{SELECT extversion FROM pg_extension WHERE extname = 'automation'}),
   $node->safe_psql('shopdb', q{SELECT extversion FROM pg_extension WHERE extname = 'automation'}),
   'at the same extension version');

$node->stop;
done_testing();
