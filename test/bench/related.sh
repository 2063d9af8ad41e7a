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
# The demo shop sells 54 products.  For a large catalogue, (d) and (e)
# repeat (b) and (c) with the order lines bound to a view that splits every
# product into 2,000 by the order it was bought in: about 100,000 products
# and tens of millions of pairs, most of them bought together once.
#
# (d), the plain SQL over the wide catalogue, runs only with
# RELATED_WIDE_PLAIN=1: it takes minutes at 20,000 customers and hours at
# 1,000,000.
#
# For each step the peak private memory (RssAnon) of the backend is sampled
# from /proc.  Prints c/a, b/c, e/a and d/e.  RELATED_SKIP_PLAIN=1 skips
# (b), RELATED_SKIP_WIDE=1 skips (d) and (e).
set -u
source "$(dirname "$0")/measure.bash"

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

# plain_sql LINES [capped]: the plain-SQL INSERT over the order lines query
# LINES; with "capped", each customer's basket holds their 100 most recent
# products as the extension's does (the 54-product shop never reaches 100).
plain_sql() {
    local baskets="SELECT DISTINCT o.customer_id AS c, l.product_id::text AS p FROM $1"
    if [ "${2:-}" = capped ]; then
        baskets="SELECT c, p FROM (SELECT c, p, row_number() OVER (PARTITION BY c ORDER BY m DESC, p COLLATE \"C\") AS k
                                     FROM (SELECT o.customer_id AS c, l.product_id::text AS p,
                                                  max(floor(extract(epoch FROM o.placed_at) / 60)) AS m
                                             FROM $1 GROUP BY 1, 2) x) y WHERE k <= 100"
    fi
    echo "
INSERT INTO public.plain_related
WITH b AS ($baskets),
     n AS (SELECT p, count(*) AS n FROM b GROUP BY p),
     c AS (SELECT x.p AS px, y.p AS py, count(*) AS c FROM b x JOIN b y ON x.c = y.c AND x.p <> y.p
            GROUP BY 1, 2 HAVING count(*) >= 2),
     s AS (SELECT px, py, c, c / sqrt(nx.n * ny.n) * c / (c + 5.0) AS score
             FROM c JOIN n nx ON nx.p = px JOIN n ny ON ny.p = py),
     r AS (SELECT *, row_number() OVER (PARTITION BY px ORDER BY score DESC, c DESC, py COLLATE \"C\") AS rank FROM s)
SELECT px, py, score, c, $NOW FROM r WHERE rank <= 20"
}

# last_refresh: what the last refresh read and wrote
last_refresh() {
    psql_db -tA -F ' ' -c "SELECT 'lines read', lines_read, 'customers', customers, 'capped', capped_customers,
                                  'products', products, 'pairs', pairs, 'rows', rows_written
                             FROM automation.related_refresh ORDER BY refresh_id DESC LIMIT 1"
}

# compare_plain: the rows on which the plain-SQL result and the extension's differ
compare_plain() {
    psql_db -tA -c "SELECT count(*) FROM public.plain_related p FULL JOIN automation.related_product r USING (product, related)
                     WHERE p.product IS NULL OR r.product IS NULL OR p.customers <> r.customers
                        OR abs(p.score - r.score) > 1e-9"
}

measure baseline "SELECT pg_sleep(1)"
BASE_KB=$PEAK_KB

measure a "SELECT count(*) FROM $lines"
A=$SECONDS_TAKEN; A_KB=$PEAK_KB

B=0; B_KB=0; B_DIFF=skipped
if [ "${RELATED_SKIP_PLAIN:-0}" != 1 ]; then
    measure b "$(plain_sql "$lines")"
    B=$SECONDS_TAKEN; B_KB=$PEAK_KB
fi

measure c "SELECT automation.refresh_related_products($NOW)"
C=$SECONDS_TAKEN; C_KB=$PEAK_KB
C_READ=$(last_refresh)
[ "${RELATED_SKIP_PLAIN:-0}" != 1 ] && B_DIFF=$(compare_plain)

D=0; D_KB=0; D_DIFF=skipped; E=0; E_KB=0; E_READ=skipped
if [ "${RELATED_SKIP_WIDE:-0}" != 1 ]; then
    psql_db -q >/dev/null <<'EOF'
CREATE VIEW public.wide_lines AS
SELECT order_id, product_id * 2000 + order_id % 2000 AS product_id, quantity, unit_price FROM shop.order_lines;
SELECT automation.unbind('products');
SELECT automation.bind_order_lines('public.wide_lines', 'order_id', 'product_id', 'quantity', 'unit_price');
TRUNCATE public.plain_related;
EOF
    if [ "${RELATED_WIDE_PLAIN:-0}" = 1 ]; then
        measure d "$(plain_sql "${lines/shop.order_lines/public.wide_lines}" capped)"
        D=$SECONDS_TAKEN; D_KB=$PEAK_KB
    fi
    measure e "SELECT automation.refresh_related_products($NOW)"
    E=$SECONDS_TAKEN; E_KB=$PEAK_KB
    E_READ=$(last_refresh)
    [ "${RELATED_WIDE_PLAIN:-0}" = 1 ] && D_DIFF=$(compare_plain)
fi

echo "54 products:    $C_READ; rows differing from plain SQL: $B_DIFF"
echo "wide catalogue: $E_READ; rows differing from plain SQL: $D_DIFF"
printf '(a) count(*) over counted order lines  %8.2f s  peak %7d kB\n' "$A" "$A_KB"
printf '(b) plain SQL self-join, GROUP BY      %8.2f s  peak %7d kB\n' "$B" "$B_KB"
printf '(c) refresh_related_products()         %8.2f s  peak %7d kB\n' "$C" "$C_KB"
printf '(d) (b) over the wide catalogue        %8.2f s  peak %7d kB\n' "$D" "$D_KB"
printf '(e) (c) over the wide catalogue        %8.2f s  peak %7d kB\n' "$E" "$E_KB"
printf 'baseline backend                                  peak %7d kB\n' "$BASE_KB"
printf 'c/a = %.2f   b/c = %.2f   wide: e/a = %.2f   d/e = %.2f\n' "$(echo "$C / $A" | bc -l)" "$(echo "$B / $C" | bc -l)" \
    "$(echo "$E / $A" | bc -l)" "$(echo "if ($E > 0) $D / $E else 0" | bc -l)"
