#!/usr/bin/env bash
# Related products against plain SQL, on the generated shop (run by
# test/bench/run, which sets BENCH_DB, PSQL and the connection).
#
#   (a) SELECT count(*) over the counted orders joined to their lines: the
#       price of reading what the pass reads
#   (b) the same result in plain SQL: distinct (customer, product) pairs,
#       self-joined per customer, count(*) GROUP BY the two products, the
#       same normalised score, the best 20 per product
#   (c) automation.refresh_related_products()
#
# For each step the peak private memory (RssAnon) of the backend is sampled
# from /proc.  Prints c/a and b/c.  RELATED_SKIP_PLAIN=1 skips (b).
set -u
DB=$BENCH_DB
NOW="'2026-11-01 00:00+00'"
psql_db() { $PSQL -d "$DB" "$@"; }

# measure NAME SQL: runs SQL in its own session; sets SECONDS_TAKEN (the
# statement's own time, as psql's \timing reports it) and PEAK_KB.
measure() {
    local name=$1 sql=$2 pid="" kb out
    PEAK_KB=0
    out=$(mktemp)
    PGAPPNAME="bench_$name" $PSQL -d "$DB" -c '\timing on' -c "$sql" >"$out" &
    local client=$!
    while kill -0 "$client" 2>/dev/null; do
        if [ -z "$pid" ]; then
            pid=$(psql_db -tAc "SELECT pid FROM pg_stat_activity WHERE application_name = 'bench_$name'")
        fi
        if [ -n "$pid" ]; then
            kb=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null)
            [ -n "$kb" ] && [ "$kb" -gt "$PEAK_KB" ] && PEAK_KB=$kb
        fi
        sleep 0.05
    done
    wait "$client" || { echo "step $name failed"; exit 1; }
    SECONDS_TAKEN=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$out" | tail -1)
    SECONDS_TAKEN=$(echo "$SECONDS_TAKEN / 1000" | bc -l)
    rm -f "$out"
}

psql_db -q <<'EOF' >/dev/null
CREATE EXTENSION IF NOT EXISTS automation;
SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total',
                              order_id_column => 'id', status_column => 'status',
                              counted_statuses => ARRAY['paid', 'shipped', 'delivered']);
SELECT automation.bind_order_lines('shop.order_lines', 'order_id', 'product_id', 'quantity', 'unit_price');
SELECT automation.bind_products('shop.products', 'id', 'name', 'category', 'stock', 'consumption_days');
CREATE UNLOGGED TABLE public.plain_related (LIKE automation.related_product);
CHECKPOINT;
EOF

lines="shop.orders o JOIN shop.order_lines l ON l.order_id = o.id
 WHERE o.status IN ('paid', 'shipped', 'delivered') AND o.placed_at <= $NOW
   AND o.customer_id IS NOT NULL AND l.product_id IS NOT NULL AND (l.quantity IS NULL OR l.quantity > 0)"

measure baseline "SELECT pg_sleep(1)"
BASE_KB=$PEAK_KB

measure a "SELECT count(*) FROM $lines"
A=$SECONDS_TAKEN; A_KB=$PEAK_KB

if [ "${RELATED_SKIP_PLAIN:-0}" = 1 ]; then B=0; B_KB=0; else
measure b "
INSERT INTO public.plain_related
WITH b AS (SELECT DISTINCT o.customer_id AS c, l.product_id::text AS p FROM $lines),
     n AS (SELECT p, count(*) AS n FROM b GROUP BY p),
     c AS (SELECT x.p AS px, y.p AS py, count(*) AS c FROM b x JOIN b y ON x.c = y.c AND x.p <> y.p
            GROUP BY 1, 2 HAVING count(*) >= 2),
     s AS (SELECT px, py, c, c / sqrt(nx.n * ny.n) * c / (c + 5.0) AS score
             FROM c JOIN n nx ON nx.p = px JOIN n ny ON ny.p = py),
     r AS (SELECT *, row_number() OVER (PARTITION BY px ORDER BY score DESC, c DESC, py COLLATE \"C\") AS rank FROM s)
SELECT px, py, score, c, $NOW FROM r WHERE rank <= 20"
B=$SECONDS_TAKEN; B_KB=$PEAK_KB
fi

measure c "SELECT automation.refresh_related_products($NOW)"
C=$SECONDS_TAKEN; C_KB=$PEAK_KB

psql_db -tA -F ' ' -c "SELECT 'lines read', lines_read, 'customers', customers, 'capped', capped_customers,
                              'products', products, 'pairs', pairs, 'rows', rows_written
                         FROM automation.related_refresh ORDER BY refresh_id DESC LIMIT 1"
if [ "${RELATED_SKIP_PLAIN:-0}" != 1 ]; then
    psql_db -tA -c "SELECT 'rows differing from plain SQL: ' || count(*)
                      FROM public.plain_related p FULL JOIN automation.related_product r USING (product, related)
                     WHERE p.product IS NULL OR r.product IS NULL OR p.customers <> r.customers
                        OR abs(p.score - r.score) > 1e-9"
fi
printf '(a) count(*) over counted order lines  %8.2f s  peak %7d kB\n' "$A" "$A_KB"
printf '(b) plain SQL self-join, GROUP BY      %8.2f s  peak %7d kB\n' "$B" "$B_KB"
printf '(c) refresh_related_products()         %8.2f s  peak %7d kB\n' "$C" "$C_KB"
printf 'baseline backend                                  peak %7d kB\n' "$BASE_KB"
printf 'c/a = %.2f   b/c = %.2f\n' "$(echo "$C / $A" | bc -l)" "$(echo "$B / $C" | bc -l)"
