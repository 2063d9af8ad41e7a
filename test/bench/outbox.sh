#!/usr/bin/env bash
# The outbox under load, run by test/bench/run (make bench):
#
#   1. enqueue throughput: single messages, and batches of 100 per transaction
#   2. claim(100) + ack throughput with 1, 2 and 4 mailers, against the bare
#      SKIP LOCKED pattern on a plain table (id, vt, payload) as the floor:
#      each starts from a backlog of 1,000,000 due messages (more than
#      either drains in a run), both run with the cluster's durability
#      settings, one statement per transaction, the claim's ids fed to the
#      ack as the mailer would, and they take turns, half a run each, twice,
#      so that load from elsewhere on the machine weighs on both alike
#   3. the same while another session holds a REPEATABLE READ transaction open
#   4. the hot outbox's size after BENCH_OUTBOX_THROUGH messages (1,000,000)
#      have passed through it: written 100 per transaction by a producer (a
#      set-based INSERT with its dedupe keys, as the tick writes a batch),
#      claimed and acknowledged by two mailers at the same time, with
#      autovacuum on at PostgreSQL's default autovacuum_naptime (1min; set
#      BENCH_OUTBOX_NAPTIME, e.g. 10s, to try another); the producer writes
#      BENCH_OUTBOX_RATE (5,000) messages/s, below what the mailers drain, as
#      a steady shop would (0: as fast as it can, the backlog grows).  The
#      size is sampled every second while the producer writes and the
#      largest is reported.  BENCH_OUTBOX_UPKEEP says what else keeps the
#      table small: "worker" (the default: the background worker vacuums it,
#      automation.outbox_vacuum_threshold; test/bench/run preloads the
#      library with automation.database_name = bench_outbox), "vacuum:N" (a
#      session runs VACUUM automation.outbox every N seconds, as a pg_cron
#      job would without the worker) or "none" (autovacuum alone).  Parts 1
#      to 3 run with the worker paused (automation.enabled = off), so that
#      both sides of the comparison are left alone by it;
#      BENCH_OUTBOX_CLAIM_WORKER=on lets it vacuum the outbox meanwhile.
#
# It does not need the generated shop: it binds a customers table of its own
# with BENCH_OUTBOX_CUSTOMERS (10,000) rows, so `BENCH_CUSTOMERS=10000
# test/bench/run outbox` is the quick way to run it.  Each timed run lasts
# BENCH_OUTBOX_SECONDS (10); BENCH_OUTBOX_PARTS picks parts ("1 2 3 4"),
# BENCH_OUTBOX_MAILERS the numbers of mailers of parts 2 and 3 ("1 2 4").
# Prints figures; asserts nothing.
set -u
: "${BENCH_DB:?run me through test/bench/run}"
SECONDS_PER_RUN=${BENCH_OUTBOX_SECONDS:-10}
CUSTOMERS=${BENCH_OUTBOX_CUSTOMERS:-10000}
THROUGH=${BENCH_OUTBOX_THROUGH:-1000000}
RATE=${BENCH_OUTBOX_RATE:-5000}
NAPTIME=${BENCH_OUTBOX_NAPTIME:-}
UPKEEP=${BENCH_OUTBOX_UPKEEP:-worker}
PARTS=" ${BENCH_OUTBOX_PARTS:-1 2 3 4} "
MAILERS=${BENCH_OUTBOX_MAILERS:-1 2 4}
part() { [[ $PARTS == *" $1 "* ]]; }
PGBENCH="$PGBIN/pgbench -n -M simple -h $PGHOST -p $PGPORT -U $PGUSER"
SQL="$PSQL -d $BENCH_DB -At"
SCRATCH=$(mktemp -d)
chmod 755 "$SCRATCH"
holder=
# stop_holder: ends the session holding the old snapshot.  Killing psql is
# not enough: its backend would sleep on, snapshot and all.
stop_holder() {
    $PSQL -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'outbox_bench_holder'" >/dev/null
    [ -n "$holder" ] && kill "$holder" 2>/dev/null
    holder=
}
cleanup() {
    stop_holder
    [ -n "${vacuumer:-}" ] && kill "$vacuumer" 2>/dev/null
    $PSQL -d postgres -c 'ALTER SYSTEM RESET autovacuum' -c 'ALTER SYSTEM RESET autovacuum_naptime' \
        -c 'ALTER SYSTEM RESET automation.enabled' -c 'SELECT pg_reload_conf()' >/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# The worker stays out of parts 1 to 3 (see above), unless
# BENCH_OUTBOX_CLAIM_WORKER=on: then it vacuums the outbox during them as it
# would in production (the bare table gets no vacuum either way).
CLAIM_WORKER=${BENCH_OUTBOX_CLAIM_WORKER:-off}
$PSQL -d postgres -c "ALTER SYSTEM SET automation.enabled = $CLAIM_WORKER" -c 'SELECT pg_reload_conf()' >/dev/null
$SQL >/dev/null <<EOF || exit 1
CREATE EXTENSION IF NOT EXISTS automation;
CREATE SCHEMA obench;
CREATE TABLE obench.customers (id bigint PRIMARY KEY, email text NOT NULL, consent boolean NOT NULL);
INSERT INTO obench.customers SELECT i, 'c' || i || '@example.com', true FROM generate_series(1, $CUSTOMERS) i;
VACUUM ANALYZE obench.customers;
SELECT automation.bind_customers('obench.customers', 'id', 'email', 'consent');
-- the floor: the bare SKIP LOCKED pattern (a message is visible again at vt)
CREATE TABLE obench.bare (id bigserial PRIMARY KEY, vt timestamptz NOT NULL DEFAULT now(), payload jsonb NOT NULL);
CREATE INDEX ON obench.bare (vt);
EOF

cat >"$SCRATCH/enqueue1.sql" <<EOF
\set c random(1, $CUSTOMERS)
SELECT automation.enqueue(:c, 'email', 'bench', '{"first_name": "Ada", "items": [1, 2, 3]}', gen_random_uuid()::text);
EOF
cat >"$SCRATCH/enqueue100.sql" <<EOF
SELECT count(automation.enqueue(1 + (random() * ($CUSTOMERS - 1))::int, 'email', 'bench',
                                '{"first_name": "Ada", "items": [1, 2, 3]}', gen_random_uuid()::text))
  FROM generate_series(1, 100);
EOF
# The producer writes a batch as the tick does: the dedupe keys first.
cat >"$SCRATCH/produce100.sql" <<EOF
WITH keys AS (
    INSERT INTO automation.outbox_key (dedupe_key, message_id, customer_key, marketing)
    SELECT gen_random_uuid()::text, i, 1 + (random() * ($CUSTOMERS - 1))::int + 0 * i, true
      FROM (SELECT nextval('automation.outbox_id_seq') AS i FROM generate_series(1, 100)) n
    RETURNING dedupe_key, message_id, customer_key
)
INSERT INTO automation.outbox (id, customer_key, channel, recipient, template, payload, purpose, dedupe_key, send_after)
SELECT k.message_id, k.customer_key, 'email', 'c' || k.customer_key || '@example.com', 'bench',
       '{"first_name": "Ada", "items": [1, 2, 3]}', 'marketing', k.dedupe_key, now()
  FROM keys k;
EOF
cat >"$SCRATCH/claim_ack.sql" <<'EOF'
SELECT quote_literal(coalesce(array_agg(id), '{}')) AS ids FROM automation.claim(100, '5 minutes', 'email') \gset
SELECT automation.ack(:ids::bigint[]);
EOF
# pgbench's \gset keeps one row: take the ids with an aggregate.
cat >"$SCRATCH/bare_claim_ack.sql" <<'EOF'
WITH c AS (SELECT id FROM obench.bare WHERE vt <= now() ORDER BY vt LIMIT 100 FOR UPDATE SKIP LOCKED),
     u AS (UPDATE obench.bare b SET vt = now() + interval '5 minutes' FROM c WHERE b.id = c.id
           RETURNING b.id, b.payload)
SELECT quote_literal(coalesce(array_agg(id), '{}')) AS ids FROM u \gset
DELETE FROM obench.bare WHERE id = ANY (:ids::bigint[]);
EOF
chmod 644 "$SCRATCH"/*.sql

# tps SCRIPT CLIENTS [SECONDS]: runs pgbench for SECONDS (SECONDS_PER_RUN),
# prints transactions per second.
tps() {
    $PGBENCH -f "$1" -c "$2" -j "$2" -T "${3:-$SECONDS_PER_RUN}" "$BENCH_DB" 2>&1 \
        | sed -nE 's/^tps = ([0-9.]+).*/\1/p' | head -1
}
# fill_outbox N / fill_bare N: a backlog of N due messages (written directly,
# as enqueue would have, so the claim runs are not limited by the backlog).
fill_outbox() {
    $SQL >/dev/null <<EOF
WITH keys AS (
    INSERT INTO automation.outbox_key (dedupe_key, message_id, customer_key, marketing)
    SELECT gen_random_uuid()::text, i, 1 + (i % $CUSTOMERS), true
      FROM (SELECT nextval('automation.outbox_id_seq') AS i FROM generate_series(1, $1)) n
    RETURNING dedupe_key, message_id, customer_key
)
INSERT INTO automation.outbox (id, customer_key, channel, recipient, template, payload, purpose, dedupe_key, send_after)
SELECT k.message_id, k.customer_key, 'email', 'c' || k.customer_key || '@example.com', 'bench',
       '{"first_name": "Ada", "items": [1, 2, 3]}', 'marketing', k.dedupe_key,
       now() - interval '1 hour' + k.message_id * interval '1 microsecond'
  FROM keys k;
VACUUM ANALYZE automation.outbox, automation.outbox_key;
EOF
}
fill_bare() {
    $SQL >/dev/null <<EOF
INSERT INTO obench.bare (vt, payload)
SELECT now() - interval '1 hour' + i * interval '1 microsecond', '{"first_name": "Ada", "items": [1, 2, 3]}'
  FROM generate_series(1, $1) i;
VACUUM ANALYZE obench.bare;
EOF
}
sent() { $SQL -c "SELECT count(*) FROM automation.outbox_archive WHERE status = 'sent'"; }
bare_left() { $SQL -c "SELECT count(*) FROM obench.bare"; }
reset_tables() {
    $SQL -c 'TRUNCATE automation.outbox, automation.outbox_key, automation.outbox_archive, automation.message_event, obench.bare' >/dev/null
}

echo "outbox benchmark: $CUSTOMERS customers, ${SECONDS_PER_RUN}s per run, $(nproc) cores, worker in parts 1-3: $CLAIM_WORKER"

if part 1; then
echo
echo "1. enqueue"
t=$(tps "$SCRATCH/enqueue1.sql" 1)
echo "   single, 1 client:              $(printf '%.0f' "$t") messages/s"
t=$(tps "$SCRATCH/enqueue100.sql" 1)
echo "   batches of 100, 1 client:      $(printf '%.0f' "$(echo "$t * 100" | bc)") messages/s"
t=$(tps "$SCRATCH/enqueue100.sql" 2)
echo "   batches of 100, 2 clients:     $(printf '%.0f' "$(echo "$t * 100" | bc)") messages/s"
fi

# claim_runs LABEL: claim+ack and bare runs with 1, 2 and 4 mailers.  Both
# backlogs are filled first, then the two take turns, half a run each, twice:
# load from elsewhere on the machine then weighs on both alike.
claim_runs() {
    local n r a b out bare half=$(( (SECONDS_PER_RUN + 1) / 2 ))
    for n in $MAILERS; do
        reset_tables
        fill_outbox 1000000
        fill_bare 1000000
        out=0
        bare=0
        for r in 1 2; do
            a=$(sent)
            tps "$SCRATCH/claim_ack.sql" $n $half >/dev/null
            b=$(sent)
            out=$(( out + b - a ))
            a=$(bare_left)
            tps "$SCRATCH/bare_claim_ack.sql" $n $half >/dev/null
            b=$(bare_left)
            bare=$(( bare + a - b ))
        done
        out=$(( out / (2 * half) ))
        bare=$(( bare / (2 * half) ))
        printf '   %d mailer(s)%s: outbox %6d messages/s   bare SKIP LOCKED %6d messages/s   ratio %s\n' \
            "$n" "$1" "$out" "$bare" "$(echo "scale=2; $out / $bare" | bc)"
        # with the old snapshot: how far each fell from part 2's figures
        if [ -n "$1" ] && [ -n "${free_out[$n]:-}" ] && [ "$out" -gt 0 ] && [ "$bare" -gt 0 ]; then
            printf '      fell %s times (outbox) and %s times (bare) from the runs without it\n' \
                "$(echo "scale=1; ${free_out[$n]} / $out" | bc)" "$(echo "scale=1; ${free_bare[$n]} / $bare" | bc)"
        elif [ -z "$1" ]; then
            free_out[$n]=$out
            free_bare[$n]=$bare
        fi
    done
}
declare -a free_out free_bare

if part 2; then
echo
echo "2. claim(batch 100) + ack"
claim_runs ""
fi

if part 3; then
echo
echo "3. claim(batch 100) + ack while a REPEATABLE READ transaction stays open (nothing that passes"
echo "   through can be vacuumed or pruned meanwhile; the worker, were it on, would not vacuum in vain)"
PGAPPNAME=outbox_bench_holder $PSQL -d "$BENCH_DB" -c 'BEGIN ISOLATION LEVEL REPEATABLE READ' -c 'SELECT count(*) FROM obench.customers' \
    -c 'SELECT pg_sleep(3600)' >/dev/null 2>&1 &
holder=$!
sleep 1
claim_runs " (old snapshot)"
stop_holder
fi

part 4 || exit 0
echo
case $UPKEEP in
    worker)
        upkeep="the worker vacuums it (automation.outbox_vacuum_threshold $($SQL -c 'SHOW automation.outbox_vacuum_threshold'))"
        case ",$($SQL -c 'SHOW automation.database_name' | tr -d ' ')," in
            *",$BENCH_DB,"*) ;;
            *) echo "   note: no worker for $BENCH_DB (automation.database_name is not set for it): autovacuum alone" ;;
        esac ;;
    vacuum:*) upkeep="VACUUM automation.outbox every ${UPKEEP#vacuum:}s from a session, no worker" ;;
    none) upkeep="no worker, autovacuum alone" ;;
    *) echo "unknown BENCH_OUTBOX_UPKEEP $UPKEEP" >&2; exit 1 ;;
esac
echo "4. hot table size after $THROUGH messages passed through (producer at ${RATE:-unlimited} messages/s + 2 mailers, autovacuum on, autovacuum_naptime ${NAPTIME:-1min (default)}; $upkeep)"
reset_tables
$SQL -c 'VACUUM FULL automation.outbox' >/dev/null
$PSQL -d postgres -c 'ALTER SYSTEM SET autovacuum = on' >/dev/null
if [ -n "$NAPTIME" ]; then
    $PSQL -d postgres -c "ALTER SYSTEM SET autovacuum_naptime = '$NAPTIME'" >/dev/null
else
    $PSQL -d postgres -c 'ALTER SYSTEM RESET autovacuum_naptime' >/dev/null
fi
[ "$UPKEEP" = worker ] && $PSQL -d postgres -c 'ALTER SYSTEM SET automation.enabled = on' >/dev/null
$PSQL -d postgres -c 'SELECT pg_reload_conf()' >/dev/null
vacuums() { $SQL -c "SELECT vacuum_count || ' by VACUUM (worker or session), ' || autovacuum_count || ' by autovacuum' FROM pg_stat_user_tables WHERE relid = 'automation.outbox'::regclass"; }
$SQL -c 'SELECT pg_stat_reset_single_table_counters($$automation.outbox$$::regclass)' >/dev/null
size() { $SQL -c "SELECT pg_size_pretty(pg_total_relation_size('${1:-automation.outbox}'))"; }
bytes() { $SQL -c "SELECT pg_total_relation_size('automation.outbox')"; }
start=$(date +%s)
$PGBENCH -f "$SCRATCH/claim_ack.sql" -c 2 -j 2 -T 3600 "$BENCH_DB" >/dev/null 2>&1 &
consumers=$!
vacuumer=
if [[ $UPKEEP == vacuum:* ]]; then
    ( while :; do sleep "${UPKEEP#vacuum:}"; $SQL -c 'VACUUM automation.outbox' >/dev/null 2>&1; done ) &
    vacuumer=$!
fi
throttle=
[ "$RATE" -gt 0 ] && throttle="-R $((RATE / 100))"
$PGBENCH -f "$SCRATCH/produce100.sql" -c 1 -t $((THROUGH / 100)) $throttle "$BENCH_DB" >/dev/null 2>&1 &
producer=$!
# the largest size seen, sampled every second while the producer writes,
# and the largest backlog (messages in the outbox, live rows): a size that
# comes from a backlog is not bloat
most=0
backlog=0
while kill -0 "$producer" 2>/dev/null; do
    b=$(bytes)
    [ "$b" -gt "$most" ] && most=$b
    b=$($SQL -c 'SELECT count(*) FROM automation.outbox')
    [ "$b" -gt "$backlog" ] && backlog=$b
    sleep 1
done
wait "$producer"
peak=$(size)
while [ "$($SQL -c 'SELECT count(*) FROM automation.outbox')" -gt 0 ]; do sleep 1; done
kill -TERM "$consumers" 2>/dev/null
wait "$consumers" 2>/dev/null
[ -n "$vacuumer" ] && kill "$vacuumer" 2>/dev/null
vacuumer=
elapsed=$(( $(date +%s) - start ))
echo "   $(sent) messages sent in ${elapsed}s ($(( $(sent) / (elapsed > 0 ? elapsed : 1) )) messages/s end to end)"
echo "   outbox (table + indexes): at most $((most / 1048576)) MB while the producer wrote (backlog at most $backlog messages); $peak when it finished; drained: $(size)"
echo "   vacuums of the outbox meanwhile: $(vacuums)"
$PSQL -d postgres -c 'ALTER SYSTEM RESET automation.enabled' -c 'SELECT pg_reload_conf()' >/dev/null
$SQL -c 'VACUUM automation.outbox' >/dev/null
echo "   after a plain VACUUM: $(size)"
echo "   archive (table + indexes): $(size automation.outbox_archive); dedupe keys: $(size automation.outbox_key)"
