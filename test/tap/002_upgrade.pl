# The upgrade chain: install the oldest shipped version, walk ALTER
# EXTENSION automation UPDATE to the default version, and compare every
# object of the extension with a fresh install of that version.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'automation'");
$node->start;

my $versions = $node->safe_psql('postgres',
    q{SELECT string_agg(version, ' ' ORDER BY string_to_array(version, '.')::int[])
        FROM pg_available_extension_versions WHERE name = 'automation'});
my @versions = split / /, $versions;
my $default = $node->safe_psql('postgres',
    q{SELECT default_version FROM pg_available_extensions WHERE name = 'automation'});
ok(scalar(@versions) >= 1, "shipped versions: @versions");
is($versions[-1], $default, 'the default version is the newest shipped');

# Every object of the extension, described with its definition (an
# aggregate, which pg_get_functiondef refuses, by its functions and state).
my $describe = q{
    SELECT string_agg(d, E'\n' ORDER BY d) FROM (
        SELECT pg_describe_object(classid, objid, 0) || ' ' ||
               CASE classid
                   WHEN 'pg_proc'::regclass THEN coalesce(
                       (SELECT format('sfunc %s stype %s finalfunc %s initcond %s', a.aggtransfn, format_type(a.aggtranstype, NULL),
                                      a.aggfinalfn, a.agginitval)
                          FROM pg_aggregate a WHERE a.aggfnoid = objid),
                       pg_get_functiondef(objid))
                   WHEN 'pg_class'::regclass THEN coalesce(
                       (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
                          FROM pg_attribute WHERE attrelid = objid AND attnum > 0 AND NOT attisdropped), '')
                   ELSE '' END AS d
          FROM pg_depend
         WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
           AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'automation')) s};

$node->safe_psql('postgres', 'CREATE DATABASE walked');
$node->safe_psql('walked', "CREATE EXTENSION automation VERSION '$versions[0]'");
for my $v (@versions[1 .. $#versions]) {
    $node->safe_psql('walked', "ALTER EXTENSION automation UPDATE TO '$v'");
}
is($node->safe_psql('walked', q{SELECT extversion FROM pg_extension WHERE extname = 'automation'}),
   $default, "walked from $versions[0] to $default");

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION automation');
is($node->safe_psql('walked', $describe), $node->safe_psql('fresh', $describe),
   'the walked-up extension has exactly the objects of a fresh install');

my ($ret, $out, $err) = $node->psql('fresh', 'DROP EXTENSION automation');
is($ret, 0, 'the extension drops cleanly');

$node->stop;
done_testing();
