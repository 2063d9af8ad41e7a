#!/usr/bin/env bash
# Journeys on the generated shop (run by test/bench/run, which sets
# $BENCH_DB, $PSQL and the connection): the five presets installed,
#
#   (a) the first tick, which refreshes every profile and enrolls what the
#       shop's recent history triggers;
#   (b) ticks with nothing due, right after it, one second apart in one
#       session as the worker runs them (target: 50 ms or less), then a tick
#       after ten new orders (their profiles, and the segments for those
#       customers);
#   (c) a tick that enrolls every open cart into a one-step journey and
#       writes its message, guardrails included (target: 20,000 messages/s
#       or more), with the CPU time the tick used beside its wall time
#       (after a tick at the same moment that takes the profile and segment
#       work, so that the CPU time is the journey stages').  It runs three
#       times in one session: first in a transaction rolled back, the
#       session's first touch of what the tick reads and writes; then, also
#       rolled back, with quiet hours on as installed (the customers asleep
#       are deferred, not written); then again as the first, as the worker's
#       long-lived session runs ticks;
#   (d) the analyst's reports on the shop (c) left: journey_stats,
#       cart_abandonment_stats, explain_customer, timed.
#
# Quiet hours are switched off for (c) but in its second run: the generated
# shop's customers live in several time zones, and the point is the rate,
# not the clock.  The
# frequency caps stay on (customers who got a marketing message in the last
# 16 hours are deferred): their checks are part of the rate.
set -eu
run() { $PSQL -d "$BENCH_DB" -At "$@"; }

run -q <<'SQL'
-- the indexes the README recommends on the bound time columns
CREATE INDEX ON shop.orders (placed_at);
CREATE INDEX ON shop.carts (updated_at);
CREATE INDEX ON shop.newsletter_signups (signed_up_at);
CREATE EXTENSION automation;
SELECT automation.bind_customers('shop.customers', 'id', 'email', 'marketing_consent', first_name_column => 'first_name',
                                 timezone_column => 'time_zone', phone_column => 'phone');
SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              status_column => 'status', counted_statuses => ARRAY['paid', 'shipped', 'delivered']);
SELECT automation.bind_order_lines('shop.order_lines', 'order_id', 'product_id', 'quantity', 'unit_price');
SELECT automation.bind_products('shop.products', 'id', 'name', 'category', 'stock', 'consumption_days', 'price');
SELECT automation.bind_carts('shop.carts', 'id', 'customer_id', 'updated_at', 'total', 'order_id', 'checkout_stage');
SELECT automation.bind_cart_lines('shop.cart_lines', 'cart_id', 'product_id', 'quantity');
SELECT automation.bind_signups('shop.newsletter_signups', 'customer_id', 'signed_up_at');
SELECT automation.enable_change_capture();
SELECT automation.install_preset(p) FROM unnest(ARRAY['abandoned_cart', 'welcome', 'thank_you', 'feedback', 'win_back']) p;
SQL

echo "customers: $(run -c 'SELECT count(*) FROM shop.customers')," \
     "orders: $(run -c 'SELECT count(*) FROM shop.orders')," \
     "open carts: $(run -c 'SELECT count(*) FROM shop.carts WHERE order_id IS NULL')"

echo "(a) first tick:"
run <<'SQL'
\timing on
SELECT string_agg(stage || '=' || rows || ' (' || round(ms) || ' ms)', ', ') FROM automation.tick('2026-11-01 12:00+00');
SQL
echo "(b) ticks with nothing due, one second apart, each in its own transaction in one session, as the worker runs them:"
for i in 1 2 3 4 5 6; do
    echo "SELECT '12:00:0$i: ' || string_agg(stage || '=' || rows || ' (' || round(ms, 1) || ' ms)', ', ' ORDER BY stage)
                 || ' -- ' || round(sum(ms), 1) || ' ms' FROM automation.tick('2026-11-01 12:00:0$i+00');"
done | run

echo "    ten orders placed, then a tick a second later:"
run <<'SQL'
INSERT INTO shop.orders (id, customer_id, placed_at, total, status)
SELECT (SELECT max(id) FROM shop.orders) + g, g * 7919 % 1000000 + 1, '2026-11-01 12:00:06.5+00', 50, 'paid'
  FROM generate_series(1, 10) g;
SELECT '12:00:07: ' || string_agg(stage || '=' || rows || ' (' || round(ms, 1) || ' ms)', ', ' ORDER BY stage)
       || ' -- ' || round(sum(ms), 1) || ' ms' FROM automation.tick('2026-11-01 12:00:07+00');
SQL

echo "(c) one tick that writes a message for every open cart:"
CLK_TCK=$(getconf CLK_TCK)
# blast LABEL: the tick, timed, and what it did.
blast() {
    cat <<SQL
SELECT split_part(pg_read_file('/proc/self/stat'), ' ', 14)::bigint + split_part(pg_read_file('/proc/self/stat'), ' ', 15)::bigint AS cpu0,
       clock_timestamp() AS wall0 \\gset
CREATE TEMP TABLE blast AS SELECT *, clock_timestamp() AS done FROM automation.tick('2026-11-01 12:00:10+00');
SELECT '$1: the tick used ' || round(((split_part(pg_read_file('/proc/self/stat'), ' ', 14)::bigint
                                       + split_part(pg_read_file('/proc/self/stat'), ' ', 15)::bigint - :cpu0) / $CLK_TCK.0)::numeric, 1)
       || ' s of CPU in ' || round(extract(epoch FROM clock_timestamp() - :'wall0'::timestamptz)::numeric, 1) || ' s'
       || ' (wall time beyond CPU time went to waiting: for the disk, or for a core another process had)';
SELECT '$1: ' || string_agg(stage || '=' || rows || ' (' || round(ms) || ' ms)', ', ') FROM blast;
SELECT '$1: enrolled ' || count(*) FROM automation.enrollment WHERE journey = 'blast';
SELECT '$1: messages written ' || count(*) FROM automation.outbox WHERE journey = 'blast';
SELECT '$1: enroll + steps ' || round(sum(ms)) || ' ms, ' ||
       round((SELECT rows FROM blast WHERE stage = 'steps') / (sum(ms) / 1000)) || ' messages/s'
  FROM blast WHERE stage IN ('enroll', 'steps');
DROP TABLE blast;
SQL
}
run <<SQL
SELECT automation.set_journey_enabled(name, false) FROM automation.journey;
-- A tick at the same moment first, so that the profile changes and the
-- segment pass they start (seconds) fall there and the figures below are
-- the journey stages'.
SELECT count(*) FROM automation.tick('2026-11-01 12:00:10+00');
SELECT automation.create_journey('blast', 'cart_abandoned', '{"idle": "1 hour", "lookback": "3650 days"}');
SELECT automation.add_step('blast', '0', 'blast', includes => ARRAY['cart']);
SET automation.quiet_hours_start = 0;
SET automation.quiet_hours_end = 0;
BEGIN;
$(blast "first in this session")
ROLLBACK;
VACUUM automation.enrollment, automation.outbox, automation.outbox_key, automation.decision_note, automation.trigger_mark;
RESET automation.quiet_hours_start;
RESET automation.quiet_hours_end;
BEGIN;
$(blast "with quiet hours on, as installed")
ROLLBACK;
VACUUM automation.enrollment, automation.outbox, automation.outbox_key, automation.decision_note, automation.trigger_mark;
SET automation.quiet_hours_start = 0;
SET automation.quiet_hours_end = 0;
$(blast "again in the same session")
SQL

echo "(d) the reports, after (c):"
run <<'SQL'
\timing on
SELECT 'journey_stats: ' || count(*) || ' rows' FROM automation.journey_stats;
SELECT 'cart_abandonment_stats: ' || count(*) || ' rows' FROM automation.cart_abandonment_stats;
SELECT 'explain_customer: ' || count(*) || ' rows' FROM automation.explain_customer((SELECT customer_key FROM automation.outbox WHERE journey = 'blast' LIMIT 1));
SQL
