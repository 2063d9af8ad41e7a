# kill -9 of the postmaster in the middle of a claim/ack stream: after the
# restart every message is either sent (and every acknowledgement a mailer saw
# succeed is kept) or claimable again once its lease has run out; none is
# lost and none is in the tables twice.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $messages = 3000;

my $node = PostgreSQL::Test::Cluster->new('outbox_crash');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'automation'");
$node->start;

$node->safe_psql('postgres', qq{
    CREATE EXTENSION automation;
    CREATE SCHEMA shop;
    CREATE TABLE shop.customers (id bigint PRIMARY KEY, email text, consent boolean);
    INSERT INTO shop.customers SELECT i, 'c' || i || '\@example.com', true FROM generate_series(1, 300) i;
    SELECT automation.bind_customers('shop.customers', 'id', 'email', 'consent');
    SELECT count(automation.enqueue(1 + i % 300, 'email', 'welcome', jsonb_build_object('n', i), 'm-' || i))
      FROM generate_series(1, $messages) i;
});

# A mailer: claims 20 at a time with a short lease, acknowledges them, and
# prints the ids of every acknowledgement that returned (autocommit: it
# has committed).
my $script = $PostgreSQL::Test::Utils::tmp_check . '/mailer.sql';
open(my $fh, '>', $script) or die "cannot write $script: $!";
for (1 .. 400)
{
    print $fh "SELECT coalesce(array_agg(id), '{}') AS ids FROM automation.claim(20, '2 seconds', 'email') \\gset\n";
    print $fh "SELECT 'acked ' || automation.ack(:'ids'::bigint[]) || ' ' || :'ids';\n";
}
close($fh);

my @mailers;
for my $i (1 .. 2)
{
    my ($out, $err) = ('', '');
    my $h = IPC::Run::start(
        [ 'psql', '-X', '-At', '-d', $node->connstr('postgres'), '-f', $script ],
        '>', \$out, '2>', \$err);
    push @mailers, { h => $h, out => \$out };
}

# Let the stream run until some messages went out, then pull the plug.
my $deadline = time() + 60;
while (time() < $deadline)
{
    $_->{h}->pump_nb for @mailers;
    my $sent = 0;
    $sent += () = ${ $_->{out} } =~ /^acked [1-9]/mg for @mailers;
    last if $sent >= 10;
    usleep(50_000);
}
$node->kill9;
for my $m (@mailers)
{
    eval { $m->{h}->finish; };
    $m->{h}->kill_kill if $m->{h}->pumpable;
}

# Every id a mailer saw acknowledged.
my %acked;
for my $m (@mailers)
{
    for my $line (split /\n/, ${ $m->{out} })
    {
        next unless $line =~ /^acked (\d+) \{([\d,]*)\}$/;
        $acked{$_} = 1 for grep { length } split /,/, $2;
    }
}
ok(scalar(keys %acked) > 0, 'the mailers had acknowledged messages before the crash');

# Orphaned backends notice the postmaster's death and exit; then it starts.
my $started = 0;
for (1 .. 300)
{
    if ($node->start(fail_ok => 1)) { $started = 1; last; }
    usleep(200_000);
    $node->stop('fast', fail_ok => 1);
}
ok($started, 'the server restarts after kill -9');

is($node->safe_psql('postgres', q{
    SELECT (SELECT count(*) FROM automation.outbox) + (SELECT count(*) FROM automation.outbox_archive)}),
   $messages, 'no message is lost');
is($node->safe_psql('postgres', q{
    SELECT count(*) FROM automation.outbox o JOIN automation.outbox_archive a USING (id)}),
   0, 'no message is both queued and archived');
is($node->safe_psql('postgres', q{
    SELECT count(DISTINCT dedupe_key) FROM (SELECT dedupe_key FROM automation.outbox
                                            UNION ALL SELECT dedupe_key FROM automation.outbox_archive) x}),
   $messages, 'no dedupe key is there twice');

my $acked_list = join(',', sort { $a <=> $b } keys %acked);
is($node->safe_psql('postgres', qq{
    SELECT count(*) FROM unnest('{$acked_list}'::bigint[]) i
     WHERE NOT EXISTS (SELECT FROM automation.outbox_archive a WHERE a.id = i AND a.status = 'sent')}),
   0, 'every acknowledgement a mailer saw succeed survived the crash');
is($node->safe_psql('postgres', q{SELECT count(*) FROM automation.outbox_archive WHERE status <> 'sent'}),
   0, 'nothing was cancelled or given up');

# What was leased at the crash is claimable once the lease has run out; then
# everything goes out exactly once.
my $leased = $node->safe_psql('postgres', q{SELECT count(*) FROM automation.outbox WHERE status = 'leased'});
note("$leased messages were leased at the crash");
sleep 3;
$node->safe_psql('postgres', q{
    DO $$
    DECLARE ids bigint[];
    BEGIN
        LOOP
            SELECT array_agg(id) INTO ids FROM automation.claim(500, '1 minute', 'email');
            EXIT WHEN ids IS NULL;
            PERFORM automation.ack(ids);
        END LOOP;
    END $$;
});
is($node->safe_psql('postgres', q{
    SELECT count(*) || ' ' || count(DISTINCT id) FROM automation.outbox_archive WHERE status = 'sent'}),
   "$messages $messages", 'after the leases ran out every message was sent, once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM automation.outbox'), 0, 'and the hot table is empty');

$node->stop;
done_testing();
