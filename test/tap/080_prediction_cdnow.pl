# The CDNOW sample (2,357 customers of the first quarter of 1997) fitted with
# the 39-week calibration period of the BG/NBD paper must reproduce the
# published estimates to the precision they are printed with:
#   BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"):
#     r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, log-likelihood -9582.4
#   Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"; the same values in
#   the documentation of the lifetimes library): p = 6.25, q = 3.74, gamma = 15.44
# and the paper's worked example: a customer with x = 2, t_x = 30.43,
# T = 38.86 is expected to make 1.226 purchases in the next 39 weeks.
# The data are read from the shared data directory, never copied into the
# project.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $file = ($ENV{SHARED_DATA} // '../shared/data') . '/cdnow/CDNOW_sample.txt';
plan skip_all => "CDNOW sample not found at $file" unless -r $file;

my $node = PostgreSQL::Test::Cluster->new('cdnow');
$node->init;
$node->start;

# A table shaped like a shop's orders; the file has one line per customer and
# day's transaction: master id, sample id, date, number of CDs, dollar value.
my $copy = '';
my $lines = 0;
open(my $fh, '<', $file) or die "cannot read $file: $!";
while (my $line = <$fh>)
{
	my (undef, $customer, $date, undef, $value) = split ' ', $line;
	next unless defined $value;
	$lines++;
	$copy .= join("\t", $lines, $customer + 0, $date, $value) . "\n";
}
close $fh;
is($lines, 6919, 'the CDNOW sample has 6,919 transactions');

$node->safe_psql('postgres', q{
    CREATE EXTENSION automation;
    CREATE SCHEMA shop;
    CREATE TABLE shop.orders (id integer PRIMARY KEY, customer_id integer NOT NULL,
                              ordered_on date NOT NULL, total numeric(10,2) NOT NULL);
});
my ($stdout, $stderr);
$node->psql('postgres', "COPY shop.orders FROM STDIN;\n$copy\\.\n",
	stdout => \$stdout, stderr => \$stderr, on_error_die => 1);

$node->safe_psql('postgres', q{
    SELECT automation.bind_orders('shop.orders', 'customer_id', 'ordered_on', 'total', order_id_column => 'id');
});
my $fit = $node->safe_psql('postgres', q{
    SET automation.prediction_time_unit = 'weeks';
    SELECT customers, repeat_customers,
           round(r::numeric, 3), round(alpha::numeric, 3), round(a::numeric, 3), round(b::numeric, 3),
           round(log_likelihood_bgnbd::numeric, 1),
           round(p::numeric, 2), round(q::numeric, 2), round(gamma::numeric, 2),
           iterations_bgnbd > 0 AND iterations_gg > 0, time_unit, method
      FROM automation.fit_models(calibration_end => '1997-09-30 00:00+00', now => '1997-09-30 00:00+00');
});
my @f = split /\|/, $fit;
is($f[0], 2357, 'every customer of the sample is counted');
is($f[1], 946, '946 of them bought again within the 39 weeks');
is($f[2], '0.243', 'BG/NBD r as published');
is($f[3], '4.414', 'BG/NBD alpha as published');
is($f[4], '0.793', 'BG/NBD a as published');
is($f[5], '2.426', 'BG/NBD b as published');
is($f[6], '-9582.4', 'BG/NBD log-likelihood as published');
is($f[7], '6.25', 'Gamma-Gamma p as published');
is($f[8], '3.74', 'Gamma-Gamma q as published');
is($f[9], '15.44', 'Gamma-Gamma gamma as published');
is($f[10], 't', 'the optimiser reports its iterations');
is($f[11], 'weeks', 'in weeks');
is($f[12], 'BG/NBD: maximum likelihood; Gamma-Gamma: maximum likelihood',
	'by maximum likelihood alone');

# The paper's worked example, with the stored model as the default parameters.
is($node->safe_psql('postgres',
		'SELECT round(automation.expected_purchases(39, x => 2, t_x => 30.43, t => 38.86)::numeric, 3)'),
	'1.226', 'expected purchases in the next 39 weeks of the paper\'s example customer');

# The sample's first customer bought on 1997-01-01, 01-18 and 08-02 in the
# calibration period: x = 2, t_x = 30.43 weeks, T = 38.86 weeks -- the very
# example of the paper.
is($node->safe_psql('postgres', q{
    SELECT x, round(t_x::numeric, 2), round(t::numeric, 2), round(p_alive::numeric, 4),
           round(expected_spend_per_order::numeric, 2)
      FROM automation.customer_prediction WHERE customer_key = 1}),
	'2|30.43|38.86|0.7266|' . sprintf('%.2f', 6.2496 * (15.4435 + 2 * (29.73 + 14.96) / 2) / (6.2496 * 2 + 3.7442 - 1)),
	"the first customer's statistics, P(alive) and expected spend");

# Nothing that is not a number reaches the table.
is($node->safe_psql('postgres', q{
    SELECT count(*) FROM automation.customer_prediction
     WHERE p_alive = 'NaN' OR expected_purchases_90d = 'NaN' OR clv_12m = 'NaN'
        OR expected_spend_per_order = 'NaN' OR clv_12m IS NULL OR expected_purchases_90d IS NULL}),
	'0', 'every customer has finite predictions');

$node->stop;
done_testing();
