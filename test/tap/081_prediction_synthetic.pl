# Synthetic recovery: customers are simulated from known BG/NBD and
# Gamma-Gamma parameters (a fixed seed, so the shop is the same on every
# run), stored as a shop's timestamped orders, and automation.fit_models()
# must find the parameters again within a stated tolerance.
#
# The process, as in the papers: a customer's first order comes at a time
# uniform over the first 26 weeks; repeat orders follow a Poisson process of
# rate lambda ~ Gamma(r, alpha); after each repeat order the customer drops
# out with probability p ~ Beta(a, b).  Each order's value is Gamma(p_gg, nu)
# with the customer's nu ~ Gamma(q, gamma).  The calibration period ends at
# week 78.
use strict;
use warnings;
use POSIX qw(floor);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my %truth = (r => 0.8, alpha => 4.0, a => 0.8, b => 2.5, p => 4.0, q => 5.0, gamma => 40.0);
my $customers = 5000;
# Relative tolerance: with 5,000 customers the estimates land within a few
# per cent of the truth (this seed: 8% at worst, alpha); 15% leaves room for
# the day granularity of the orders without letting a wrong model pass.
my $tolerance = 0.15;

srand(20240630);

sub normal
{
	my $u1 = 1.0 - rand();
	my $u2 = rand();
	return sqrt(-2.0 * log($u1)) * cos(6.283185307179586 * $u2);
}

# Gamma(shape, scale 1) by Marsaglia and Tsang.
sub gamma_variate
{
	my ($shape) = @_;
	if ($shape < 1.0)
	{
		my $u = 1.0 - rand();
		return gamma_variate($shape + 1.0) * $u**(1.0 / $shape);
	}
	my $d = $shape - 1.0 / 3.0;
	my $c = 1.0 / sqrt(9.0 * $d);
	while (1)
	{
		my ($x, $v);
		do { $x = normal(); $v = 1.0 + $c * $x; } while ($v <= 0);
		$v = $v**3;
		my $u = 1.0 - rand();
		return $d * $v if log($u) < 0.5 * $x * $x + $d - $d * $v + $d * log($v);
	}
}

sub beta_variate
{
	my ($a, $b) = @_;
	my $x = gamma_variate($a);
	my $y = gamma_variate($b);
	return $x / ($x + $y);
}

my $start = 1704067200;    # 2024-01-01 00:00 UTC
my $end = 78.0;            # weeks after it
my $copy = '';
my $id = 0;
sub order
{
	my ($customer, $t, $nu) = @_;
	$copy .= sprintf("%d\t%d\t%.0f\t%.2f\n",
		++$id, $customer, $start + $t * 7 * 86400, gamma_variate($truth{p}) / $nu);
}
for my $customer (1 .. $customers)
{
	my $lambda = gamma_variate($truth{r}) / $truth{alpha};
	my $dropout = beta_variate($truth{a}, $truth{b});
	my $nu = gamma_variate($truth{q}) / $truth{gamma};
	my $t = 26.0 * rand();
	order($customer, $t, $nu);
	while (1)
	{
		$t += -log(1.0 - rand()) / $lambda;
		last if $t > $end;
		order($customer, $t, $nu);
		last if rand() < $dropout;
	}
}

my $node = PostgreSQL::Test::Cluster->new('synthetic');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
    CREATE EXTENSION automation;
    CREATE SCHEMA shop;
    CREATE TABLE shop.orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL,
                              placed_at timestamptz NOT NULL, total numeric(12,2) NOT NULL);
});
$node->psql('postgres', "CREATE TABLE staging (id bigint, customer_id bigint, epoch float8, total numeric);\n"
	  . "COPY staging FROM STDIN;\n$copy\\.\n"
	  . "INSERT INTO shop.orders SELECT id, customer_id, to_timestamp(epoch), total FROM staging;",
	on_error_die => 1);

my $fit = $node->safe_psql('postgres', q{
    SET automation.default_timezone = 'UTC';
    SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total');
    SELECT concat_ws('|', r, alpha, a, b, p, q, gamma, customers, method)
      FROM automation.fit_models(calibration_end => '2024-01-01 00:00+00'::timestamptz + interval '78 weeks',
                                 now => '2024-01-01 00:00+00'::timestamptz + interval '78 weeks');
});
my %got;
my @f = split /\|/, $fit;
@got{qw(r alpha a b p q gamma)} = @f[0 .. 6];
is($f[7], $customers, "all $customers customers are counted");
is($f[8], 'BG/NBD: maximum likelihood; Gamma-Gamma: maximum likelihood', 'by maximum likelihood');
for my $name (qw(r alpha a b p q gamma))
{
	my $error = abs($got{$name} - $truth{$name}) / $truth{$name};
	ok($error <= $tolerance,
		sprintf('%s = %.4f recovers %s within %d%% (off by %.1f%%)',
			$name, $got{$name}, $truth{$name}, $tolerance * 100, $error * 100));
}

# The model's own check: the purchases it expects over the calibration
# period, summed over customers, match the repeat purchases observed.
my ($expected, $observed) = split /\|/, $node->safe_psql('postgres', q{
    SELECT sum(automation.expected_purchases(t, 0, 0, 0)), sum(x)
      FROM automation.customer_prediction});
ok(abs($expected - $observed) / $observed < 0.05,
	sprintf('unconditional expected repeat purchases %.0f match the %d observed within 5%%', $expected, $observed));

$node->stop;
done_testing();
