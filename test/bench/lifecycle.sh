#!/usr/bin/env bash
# Lifecycle automations on the generated shop (run by test/bench/run, which
# sets $BENCH_DB, $PSQL and the connection): every lifecycle preset, a
# basket rule with its journey and a campaign installed, then in one run
#
#   (a) the profile pass (a full refresh_profiles), the yardstick;
#   (b) a bare scan of the join the lifecycle pass reads (orders x lines);
#   (c) one tick that learns the replenishment intervals (refresh_lifecycle)
#       and evaluates every lifecycle trigger, time per stage
#       (target: lifecycle + enroll + steps <= 2 x the profile pass);
#   (d) the next tick, with nothing to learn (the pass runs once a day).
set -eu
run() { $PSQL -d "$BENCH_DB" -At "$@"; }
AT="2026-11-01 12:00+00"

run -q <<'SQL'
-- the index the README recommends on a bound time column
CREATE INDEX ON shop.orders (placed_at);
CREATE EXTENSION automation;
SELECT automation.bind_customers('shop.customers', 'id', 'email', 'marketing_consent', first_name_column => 'first_name',
                                 timezone_column => 'time_zone', phone_column => 'phone', birth_date_column => 'birth_date');
SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              status_column => 'status', counted_statuses => ARRAY['paid', 'shipped', 'delivered'],
                              ship_to_column => 'shipping_city', bill_to_column => 'billing_city');
SELECT automation.bind_order_lines('shop.order_lines', 'order_id', 'product_id', 'quantity', 'unit_price');
SELECT automation.bind_products('shop.products', 'id', 'name', 'category', 'stock', 'consumption_days', 'price');
SELECT automation.install_preset('replenishment',
    '{"offers": [{"category": "vitamins", "lead_days": 20, "payload": {"free_sample": true}}]}');
SELECT automation.install_preset('cross_sell');
SELECT automation.install_preset('drip');
SELECT automation.install_preset('anniversary', '{"gift_categories": ["toys"]}');
SELECT automation.install_preset('vip_quarterly');
SELECT automation.install_preset('loyalty_points');
SELECT automation.define_basket_rule('new_dog', ARRAY['dog accessories', 'puppy food'], 2);
SELECT automation.create_journey('new_dog', 'tagged', '{"tag": "new_dog"}');
SELECT automation.add_step('new_dog', '1 day', 'new_dog_starter_kit');
SELECT automation.schedule_campaign('new_arrivals', 'loyal', 'new_arrivals', '{}', '2026-11-01 13:00+00');
SQL

echo "customers: $(run -c 'SELECT count(*) FROM shop.customers')," \
     "orders: $(run -c 'SELECT count(*) FROM shop.orders')," \
     "order lines: $(run -c 'SELECT count(*) FROM shop.order_lines')"

ms() { # ms <sql>: run it, print the milliseconds it took
    local t0 t1
    t0=$(date +%s%N)
    run -c "$1" >/dev/null
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}

profile=$(ms "SELECT automation.refresh_profiles(true, '$AT')")
echo "(a) profile pass (full refresh_profiles): $profile ms"
scan=$(ms "SELECT count(*) FROM shop.orders o JOIN shop.order_lines l ON l.order_id = o.id WHERE o.status IN ('paid', 'shipped', 'delivered')")
echo "(b) bare scan of orders x order lines: $scan ms"

echo "(c) one tick that learns and evaluates every lifecycle trigger:"
run -c "TRUNCATE automation.lifecycle_refresh" >/dev/null
run -c "CREATE TABLE bench_tick AS SELECT * FROM automation.tick('$AT')" >/dev/null
run -c "SELECT '    ' || stage || ': ' || rows || ' rows, ' || round(ms) || ' ms' FROM bench_tick"
evaluate=$(run -c "SELECT round(sum(ms)) FROM bench_tick WHERE stage IN ('lifecycle', 'enroll')")
lifecycle=$(run -c "SELECT round(sum(ms)) FROM bench_tick WHERE stage IN ('lifecycle', 'enroll', 'steps')")
echo "    learn + evaluate the triggers (lifecycle + enroll): $evaluate ms = $(awk "BEGIN { printf \"%.2f\", $evaluate / $profile }") x the profile pass"
echo "    and write the messages due (+ steps): $lifecycle ms = $(awk "BEGIN { printf \"%.2f\", $lifecycle / $profile }") x the profile pass," \
     "$(awk "BEGIN { printf \"%.1f\", $lifecycle / $scan }") x the bare scan (target <= 2 x the profile pass)"
run -c "SELECT '    learned: ' || count(*) FILTER (WHERE source = 'learned') || ' of ' || count(*) || ' products; customer-product rows: ' ||
               (SELECT customer_products FROM automation.lifecycle_refresh ORDER BY refresh_id DESC LIMIT 1) ||
               ', refresh_lifecycle ' || (SELECT round(extract(epoch FROM duration) * 1000) FROM automation.lifecycle_refresh ORDER BY refresh_id DESC LIMIT 1) || ' ms'
          FROM automation.replenishment_intervals"
run -c "SELECT '    enrolled by journey: ' || string_agg(journey || '=' || n, ', ' ORDER BY journey)
          FROM (SELECT journey, count(*) AS n FROM automation.enrollment GROUP BY 1) x"

echo "(d) the next tick, nothing to learn:"
run -c "SELECT '    ' || string_agg(stage || '=' || rows || ' (' || round(ms) || ' ms)', ', ') FROM automation.tick('2026-11-01 12:01+00')"
