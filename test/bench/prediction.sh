#!/usr/bin/env bash
# Predictions on the generated shop: automation.fit_models() (one read of the
# orders, the BG/NBD and Gamma-Gamma fits over compressed statistics, and the
# scoring of every customer), against a bare count(*) of the orders as the
# floor of any pass over them.  Each runs in its own session, after a warm-up
# scan so that all read from shared buffers; peak memory is the backend's
# VmHWM, which also counts the shared buffers it touched (the scan's figure
# is mostly that).  Run by test/bench/run with $BENCH_DB and $PSQL set.
set -u

$PSQL -d "$BENCH_DB" -c 'CREATE EXTENSION IF NOT EXISTS automation' \
    -c "SELECT automation.bind_orders('shop.orders', 'customer_id', 'placed_at', 'total',
                                      order_id_column => 'id', status_column => 'status',
                                      counted_statuses => ARRAY['paid', 'shipped', 'delivered'])" \
    >/dev/null || exit 1
$PSQL -d "$BENCH_DB" -c 'SELECT count(*) FROM shop.orders' >/dev/null    # warm-up

declare -A SECONDS_OF
# measure LABEL SQL: runs SQL in a fresh session; prints its output, the
# seconds it took and the backend's peak memory.
measure() {
    local label=$1 sql=$2 out start end hwm
    start=$(date +%s.%N)
    out=$($PSQL -d "$BENCH_DB" -At -F ' ' <<EOF
SELECT pg_backend_pid() AS pid \gset
\setenv BENCH_PID :pid
$sql;
\! grep VmHWM /proc/\$BENCH_PID/status
EOF
) || { echo "$label failed"; return 1; }
    end=$(date +%s.%N)
    hwm=$(printf '%s\n' "$out" | sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p')
    printf '%s\n' "$out" | grep -v '^VmHWM' | sed 's/^/    /'
    SECONDS_OF[$label]=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')
    printf '%-16s %8s s   peak memory %6d MB\n' "$label" "${SECONDS_OF[$label]}" "$(( ${hwm:-0} / 1024 ))"
}

measure scan 'SELECT count(*) AS orders FROM shop.orders'
measure statistics 'SELECT count(*) AS customers FROM automation._order_statistics(now(), 604800)'
measure fit_and_score "SELECT customers, repeat_customers, iterations_bgnbd, iterations_gg,
                              round(r::numeric, 4) AS r, round(alpha::numeric, 4) AS alpha,
                              round(a::numeric, 4) AS a, round(b::numeric, 4) AS b,
                              round(p::numeric, 4) AS p, round(q::numeric, 4) AS q,
                              round(gamma::numeric, 4) AS gamma, method
                         FROM automation.fit_models()"
measure score_only 'SELECT automation.score_customers() AS scored'

for label in statistics fit_and_score score_only; do
    awk -v l="$label" -v t="${SECONDS_OF[$label]}" -v s="${SECONDS_OF[scan]}" \
        'BEGIN { printf "%-16s %8.1f x the scan of the orders\n", l, t / s }'
done
echo "(the profile pass is not on this branch: set fit_and_score against it once both are merged)"
