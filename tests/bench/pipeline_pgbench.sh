#!/usr/bin/env bash
# tests/bench/pipeline_pgbench.sh — what libpq's pipeline mode would save on the agent-runner's
# group transactions: pgbench runs one transaction of N fenced message inserts (the shape of
# store.c's single-row runner_insert_message, as it was before the multi-row runner_insert_messages:
# INSERT … SELECT … FROM a run row FOR SHARE, RETURNING),
# first one statement per round trip (as kx_db does today), then the same statements in
# pipeline mode (\startpipeline … \endpipeline: sent back to back, answers read at the end),
# alternating, and prints the CPU per transaction of the Postgres server (all its processes)
# and of the client, and the pipelined/plain ratio measured in the same run.
#
#   tests/bench/pipeline_pgbench.sh DATADIR PORT [statements per transaction (20)] [seconds (5)]
#
# DATADIR/PORT: a local, running PostgreSQL (its postmaster.pid is read for the CPU of the
# server; the socket directory is taken from it too), e.g. one started with pg_ctl and
# fsync=off. The script creates and drops the tables bench_pl_runs and bench_pl_msgs there.
set -euo pipefail

datadir=${1:?usage: $0 DATADIR PORT [statements] [seconds]}
port=${2:?usage: $0 DATADIR PORT [statements] [seconds]}
n=${3:-20}
secs=${4:-5}
bins=(/usr/lib/postgresql/*/bin)
bin=${bins[-1]}
pm=$(head -1 "$datadir/postmaster.pid")
sockdir=$(sed -n 5p "$datadir/postmaster.pid")
tck=$(getconf CLK_TCK)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
psql_() { "$bin/psql" -h "$sockdir" -p "$port" -U postgres -qAt -v ON_ERROR_STOP=1 "$@" postgres; }

psql_ <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_pl_msgs, bench_pl_runs;
CREATE TABLE bench_pl_runs (n int PRIMARY KEY, id uuid NOT NULL, lease_epoch bigint NOT NULL,
    status text NOT NULL, thread_id uuid NOT NULL, account_id uuid NOT NULL);
CREATE TABLE bench_pl_msgs (message_id uuid PRIMARY KEY, thread_id uuid, account_id uuid,
    type text, is_llm_message boolean, content jsonb, metadata jsonb, agent_run_id uuid,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
INSERT INTO bench_pl_runs SELECT g, gen_random_uuid(), 1, 'running', gen_random_uuid(),
    gen_random_uuid() FROM generate_series(1, 2000) g;
SQL

ins="WITH ins AS (INSERT INTO bench_pl_msgs (message_id, thread_id, account_id, type, \
is_llm_message, content, metadata, agent_run_id) SELECT gen_random_uuid(), r.thread_id, \
r.account_id, 'assistant', true, '{\"role\":\"assistant\",\"content\":\"a message\"}'::jsonb, \
'{}'::jsonb, r.id FROM bench_pl_runs r WHERE r.n = :r AND r.lease_epoch = 1 \
AND r.status IS NOT DISTINCT FROM 'running' FOR SHARE OF r ON CONFLICT (message_id) DO NOTHING \
RETURNING message_id, created_at) SELECT message_id, to_json(created_at)#>>'{}' FROM ins;"
{
    echo '\set r random(1, 2000)'
    echo 'BEGIN;'
    for _ in $(seq "$n"); do echo "$ins"; done
    echo 'COMMIT;'
} >"$work/plain.sql"
{
    echo '\set r random(1, 2000)'
    printf '%s\n' '\startpipeline'
    echo 'BEGIN;'
    for _ in $(seq "$n"); do echo "$ins"; done
    echo 'COMMIT;'
    printf '%s\n' '\endpipeline'
} >"$work/pipeline.sql"

server_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat"; }

# one pass: prints "tx server_us_per_tx client_us_per_tx"
pass() {
    local before after out tx client
    before=$(server_ticks)
    out=$({ /usr/bin/time -f "CLIENT %U %S" "$bin/pgbench" -h "$sockdir" -p "$port" -U postgres \
        -n -M prepared -c 1 -T "$secs" -f "$work/$1.sql" postgres; } 2>&1)
    sleep 0.5 # the backend has exited and been reaped: its CPU is in the postmaster's cutime
    after=$(server_ticks)
    tx=$(awk '/number of transactions actually processed/ {split($NF, a, "/"); print a[1]}' \
        <<<"$out")
    client=$(awk '/^CLIENT/ {print ($2 + $3) * 1e6}' <<<"$out")
    awk -v tx="$tx" -v s=$((after - before)) -v tck="$tck" -v c="$client" \
        'BEGIN {printf "%d %.1f %.1f\n", tx, s * 1e6 / tck / tx, c / tx}'
}

echo "transactions of BEGIN + $n fenced inserts + COMMIT, ${secs} s per pass, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in 1 2 3; do
    read -r tp sp cp <<<"$(pass plain)"
    read -r tq sq cq <<<"$(pass pipeline)"
    awk -v r="$round" -v tp="$tp" -v sp="$sp" -v cp="$cp" -v tq="$tq" -v sq="$sq" -v cq="$cq" \
        -v n="$n" 'BEGIN {
        printf "round %d: one at a time: %d tx, server %.0f us/tx (%.1f us/statement), client %.0f us/tx\n", r, tp, sp, sp / (n + 2), cp
        printf "         pipelined:     %d tx, server %.0f us/tx (%.1f us/statement), client %.0f us/tx\n", tq, sq, sq / (n + 2), cq
        printf "         pipelined / one at a time: server %.2f x, client %.2f x\n", sq / sp, cq / cp }'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
psql_ -c 'DROP TABLE bench_pl_msgs, bench_pl_runs'
