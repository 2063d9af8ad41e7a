#!/usr/bin/env bash
# The profile pass against plain SQL, on the generated shop (run by
# test/bench/run, which sets BENCH_DB, PSQL and the connection).
#
#   (a) SELECT count(*) over the orders: the price of reading them once.
#       It runs first, so it reads them from the operating system's cache
#       or the disk; the steps after it find the orders in shared buffers
#       (not the order lines, which are larger).  Between runs on a machine
#       with other work it varies by a factor of three, and c/a with it.
#   (b) the best plain-SQL INSERT ... SELECT producing the same columns
#       (GROUP BY, window functions for the gaps, ntile for RFM)
#   (c) automation.refresh_profiles(full => true)
#   (d) automation.refresh_profiles() after 1,000 new orders, with change
#       capture enabled, a minute after the refresh before it and in the
#       same session (as the worker's ticks run);
#       once as the demo shop is indexed, once more after an index on
#       orders (placed_at) is added (journeys' triggers use it; the
#       profiles' window check reads customer_profile, not the orders).
#       The refresh that brought the clock on by half an hour before the
#       orders is printed beside it.
#
# For each step the peak private memory (RssAnon) of the backend is sampled
# from /proc; the baseline is an idle backend's.  Prints c/a, b/c, d/c and
# bytes per customer.  The refreshes in (d) fall on the day of the full
# refresh, so they score only the changed profiles and those whose RFM
# scores moved; the first refresh of a day scores every profile.
set -u
source "$(dirname "$0")/measure.bash"

psql_db -q <<'EOF' >/dev/null
CREATE EXTENSION IF NOT EXISTS automation;
SELECT automation.bind_customers('shop.customers', 'id', 'email', 'marketing_consent',
                                 first_name_column => 'first_name', timezone_column => 'time_zone');
SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total',
                              order_id_column => 'id', status_column => 'status',
                              counted_statuses => ARRAY['paid', 'shipped', 'delivered']);
SELECT automation.bind_order_lines('shop.order_lines', 'order_id', 'product_id', 'quantity', 'unit_price');
SELECT automation.bind_products('shop.products', 'id', 'name', 'category', 'stock', 'consumption_days');
CREATE UNLOGGED TABLE public.plain_profile (LIKE automation.customer_profile);
CHECKPOINT;
EOF

orders=$(psql_db -tAc "SELECT count(*) FROM shop.orders")
customers=$(psql_db -tAc "SELECT count(DISTINCT customer_id) FROM shop.orders")

measure baseline "SELECT pg_sleep(1)"
BASE_KB=$PEAK_KB

measure a "SELECT count(*) FROM shop.orders"
A=$SECONDS_TAKEN; A_KB=$PEAK_KB

# PROFILE_SKIP_PLAIN=1 skips (b), the slowest step, when only the extension's figures are wanted
if [ "${PROFILE_SKIP_PLAIN:-0}" = 1 ]; then B=0; B_KB=0; else
measure b "
INSERT INTO public.plain_profile
WITH o AS (
    SELECT o.customer_id AS k, o.placed_at AS t, o.total AS v, coalesce(c.time_zone, 'UTC') AS tz,
           extract(epoch FROM o.placed_at - lag(o.placed_at) OVER (PARTITION BY o.customer_id ORDER BY o.placed_at)) / 86400 AS gap
      FROM shop.orders o LEFT JOIN shop.customers c ON c.id = o.customer_id
     WHERE o.status IN ('paid', 'shipped', 'delivered') AND o.customer_id IS NOT NULL
       AND o.placed_at <= $NOW AND o.total >= 0
), a AS (
    SELECT k, min(t) AS f, max(t) AS l, count(*)::int AS n, sum(v) AS total,
           coalesce(sum(v) FILTER (WHERE t > $NOW::timestamptz - interval '2160 hours'), 0) AS s90,
           coalesce(sum(v) FILTER (WHERE t > $NOW::timestamptz - interval '8760 hours'), 0) AS s365,
           coalesce(sum(v) FILTER (WHERE t >= date_trunc('quarter', $NOW::timestamptz, 'UTC') - interval '3 months'
                                     AND t < date_trunc('quarter', $NOW::timestamptz, 'UTC')), 0) AS spq,
           avg(gap) AS mg, stddev_pop(gap) AS sg,
           mode() WITHIN GROUP (ORDER BY extract(hour FROM t AT TIME ZONE tz)) AS ph, min(tz) AS tz
      FROM o GROUP BY k
), cats AS (
    SELECT o.customer_id AS k, array_agg(DISTINCT p.category ORDER BY p.category) AS cats
      FROM shop.orders o JOIN shop.order_lines l ON l.order_id = o.id JOIN shop.products p ON p.id = l.product_id
     WHERE o.status IN ('paid', 'shipped', 'delivered') AND p.category IS NOT NULL
     GROUP BY 1
), s AS (
    SELECT a.*, ntile(5) OVER (ORDER BY l) AS r, ntile(5) OVER (ORDER BY n) AS fq, ntile(5) OVER (ORDER BY total) AS m
      FROM a
)
SELECT s.k, s.f, s.l, s.n, s.total, s.s90, s.s365, s.spq, s.mg, s.sg, s.ph, s.tz, s.r, s.fq, s.m,
       automation._rfm_group(s.r, s.fq),
       CASE WHEN $NOW::timestamptz - s.l >= interval '365 days' THEN 'lost'
            WHEN extract(epoch FROM $NOW::timestamptz - s.l) / 86400 > greatest(2 * coalesce(s.mg, 0), 30) THEN 'lapsing'
            WHEN s.n >= 3 THEN 'loyal' WHEN s.n = 2 THEN 'returning' ELSE 'new' END,
       CASE WHEN s.spq >= 750 THEN 'gold' WHEN s.spq >= 500 THEN 'vip' END,
       floor(s.total)::bigint, coalesce(cats.cats, '{}'), $NOW
  FROM s LEFT JOIN cats USING (k)"
B=$SECONDS_TAKEN; B_KB=$PEAK_KB
fi

# (c0) without order lines bound: the pass over the orders alone
psql_db -q -c "SELECT automation.unbind('order_lines')" >/dev/null
measure c0 "SELECT automation.refresh_profiles(full => true, now => $NOW)"
C0=$SECONDS_TAKEN; C0_KB=$PEAK_KB
psql_db -q -c "SELECT automation.bind_order_lines('shop.order_lines', 'order_id', 'product_id', 'quantity', 'unit_price')" >/dev/null

measure c "SELECT automation.refresh_profiles(full => true, now => $NOW)"
C=$SECONDS_TAKEN; C_KB=$PEAK_KB
profiles=$(psql_db -tAc "SELECT count(*) FROM automation.customer_profile")

# 1,000 new orders from 1,000 customers.  Incremental refreshes run every
# tick, in the worker's one long-lived session, and the clock moves little
# between two of them.  So in one session: the profiles are brought to half
# an hour after the full refresh (customers whose orders left a spend window
# or whose stage moved in that half hour: "clock"), the orders are placed,
# and the refresh a minute later is (d).  (A session's first touch of a
# shared buffer costs a page fault: with 4 GB of shared buffers and no huge
# pages, a fresh session's first refresh pays some 0.5 s for that alone.)
psql_db -q -c "SELECT automation.enable_change_capture()" >/dev/null
new_orders="SELECT count(shop.place_order(c, $NOW::timestamptz + interval '30 minutes', ARRAY[(c % 50) + 1]::bigint[], ARRAY[1]))
  FROM (SELECT (i * 997) % $customers + 1 AS c FROM generate_series(1, 1000) i) x"
measure d "SELECT automation.refresh_profiles(now => $NOW::timestamptz + interval '30 minutes')" \
    "$new_orders" "SELECT automation.refresh_profiles(now => $NOW::timestamptz + interval '31 minutes')"
CLOCK=${SECONDS_EACH[0]}; D=$SECONDS_TAKEN; D_KB=$PEAK_KB
read -r CLOCK_N D_N <<<"$(psql_db -tAc "SELECT string_agg(customers::text, ' ' ORDER BY refresh_id) FROM (SELECT * FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 2) r")"

psql_db -q -c "CREATE INDEX bench_orders_placed_at_idx ON shop.orders (placed_at)" -c "ANALYZE shop.orders" >/dev/null
measure d2 "SELECT automation.refresh_profiles(now => $NOW::timestamptz + interval '90 minutes')" \
    "${new_orders/30 minutes/90 minutes}" "SELECT automation.refresh_profiles(now => $NOW::timestamptz + interval '91 minutes')"
D2=$SECONDS_TAKEN; D2_KB=$PEAK_KB

mode=$(psql_db -tAc "SELECT string_agg(CASE WHEN full_refresh THEN 'full' ELSE 'incremental' END || ':' || customers, ' ' ORDER BY refresh_id) FROM automation.profile_refresh")

printf 'orders %s, customers with orders %s, profiles %s; refreshes: %s\n' "$orders" "$customers" "$profiles" "$mode"
printf '(a) count(*) over orders           %8.2f s  peak %7d kB\n' "$A" "$A_KB"
printf '(b) plain SQL INSERT ... SELECT    %8.2f s  peak %7d kB\n' "$B" "$B_KB"
printf '(c) refresh_profiles(full)         %8.2f s  peak %7d kB\n' "$C" "$C_KB"
printf '    same without order lines       %8.2f s  peak %7d kB\n' "$C0" "$C0_KB"
printf '    (clock: 30 minutes on, no orders    %8.2f s, %s profiles)\n' "$CLOCK" "$CLOCK_N"
printf '(d) incremental, 1,000 new orders  %8.2f s  peak %7d kB  (%s profiles)\n' "$D" "$D_KB" "$D_N"
printf '    same with orders(placed_at)    %8.2f s  peak %7d kB\n' "$D2" "$D2_KB"
printf 'baseline backend                              peak %7d kB\n' "$BASE_KB"
printf 'c/a = %.2f (target <= 3), without lines %.2f   b/c = %.2f (target >= 5)   d/c = %.2f%% (target <= 1%%), indexed %.2f%%\n' \
    "$(echo "$C / $A" | bc -l)" "$(echo "$C0 / $A" | bc -l)" "$(echo "$B / $C" | bc -l)" "$(echo "100 * $D / $C" | bc -l)" "$(echo "100 * $D2 / $C" | bc -l)"
printf 'memory of (c) above baseline: %.0f bytes per customer (target <= 200)\n' \
    "$(echo "($C_KB - $BASE_KB) * 1024 / $profiles" | bc -l)"
