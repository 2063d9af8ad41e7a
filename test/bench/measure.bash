# Sourced by the benchmarks that sample a backend's memory (profile.sh,
# related.sh); not a benchmark itself (test/bench/run runs *.sh).  Needs
# $BENCH_DB and $PSQL, as test/bench/run sets them.

DB=$BENCH_DB
NOW="'2026-11-01 00:00+00'"
psql_db() { $PSQL -d "$DB" "$@"; }

# measure NAME SQL [SQL...]: runs the statements in one session of their own;
# sets SECONDS_TAKEN (the last statement's own time, as psql's \timing
# reports it), SECONDS_EACH (every statement's, in order) and PEAK_KB.
measure() {
    local name=$1 pid="" kb out
    local args=()
    shift
    for sql in "$@"; do args+=(-c "$sql"); done
    PEAK_KB=0
    out=$(mktemp)
    PGAPPNAME="bench_$name" $PSQL -d "$DB" -c '\timing on' "${args[@]}" >"$out" &
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
    SECONDS_EACH=()
    for ms in $(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$out"); do
        SECONDS_EACH+=("$(echo "$ms / 1000" | bc -l)")
    done
    SECONDS_TAKEN=${SECONDS_EACH[-1]}
    rm -f "$out"
}
