#!/usr/bin/env bash
# deploy/local/up.sh — run the whole stack on this machine.
#
# Installs the Debian packages that are missing (as root), builds into build/, then starts
# nats-server (JetStream), a private PostgreSQL cluster, the demo model and the six services,
# each service under a small supervisor that restarts it when it crashes. Waits for
# GET /api/health, prints the URL, a dev JWT and the curl lines that start and stream a run,
# and returns with everything still running. Running it again while the stack runs is
# harmless: a part whose PID file names a live process is left alone. down.sh stops it all.
#
# Settings (environment; see docs/operations.md):
#   KX_DATA_DIR (<checkout>/.local)   data, logs (log/), PID files (run/)
#   KX_HTTP_PORT (8000)  KX_NATS_PORT (4222)  KX_PG_PORT (5433)  KX_MODEL_PORT (8089)
#   KX_HEALTH_PORT_BASE (9100)        health ports: gateway +0, scheduler +1, ... mcp-proxy +5
#   KX_JWT_SECRET                     else generated once into $KX_DATA_DIR/jwt-secret
#   KX_BUILD_DIR (<checkout>/build)   KX_NO_BUILD=1 skips the build step
# Every other KX_* variable of this environment reaches the services unchanged.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${KX_DATA_DIR:=$KX_ROOT/.local}"
: "${KX_HTTP_PORT:=8000}"
: "${KX_NATS_PORT:=4222}"
: "${KX_PG_PORT:=5433}"
: "${KX_MODEL_PORT:=8089}"
: "${KX_HEALTH_PORT_BASE:=9100}"
: "${KX_BUILD_DIR:=$KX_ROOT/build}"
WAIT_SECONDS=60

mkdir -p "$KX_DATA_DIR"
KX_DATA_DIR="$(cd "$KX_DATA_DIR" && pwd)"
RUN="$KX_DATA_DIR/run"
LOG="$KX_DATA_DIR/log"
mkdir -p "$RUN" "$LOG" "$KX_DATA_DIR/nats" "$KX_DATA_DIR/sandboxes"
export KX_DATA_DIR KX_HTTP_PORT KX_NATS_PORT KX_PG_PORT KX_MODEL_PORT

# "name ........ state (details)", one line per part.
part() {
    local name="$1" state="$2" detail="$3"
    local dots="..................."
    printf '%s %s %s (%s)\n' "$name" "${dots:0:$((18 - ${#name}))}" "$state" "$detail"
}

# Prints the last lines of every log and exits 1.
fail_with_logs() {
    kx_warn "error: $1"
    local f
    for f in "$LOG"/*.log; do
        [ -f "$f" ] || continue
        kx_warn "---- last lines of $f"
        tail -n 20 "$f" >&2 || true
    done
    kx_warn "(what did start is still running: ./deploy/local/down.sh stops it)"
    exit 1
}

# ---- 1. packages and build -----------------------------------------------------------------

kx_ensure_packages
if [ "${KX_NO_BUILD:-0}" != 1 ]; then
    kx_say "building into $KX_BUILD_DIR ..."
    kx_build "$KX_BUILD_DIR" -DKX_SANITIZE=OFF
fi

service_bin() { printf '%s/services/%s/%s' "$KX_BUILD_DIR" "$1" "$1"; }
MODEL_BIN="$KX_BUILD_DIR/tests/fakes/demo-model/kx-demo-model"
[ -x "$MODEL_BIN" ] || kx_die "$MODEL_BIN is missing: the build did not produce it"
for s in "${KX_SERVICES[@]}"; do
    [ -x "$(service_bin "$s")" ] || kx_die "$(service_bin "$s") is missing: the build did not produce it"
done

# ---- 2. the JWT secret ---------------------------------------------------------------------

if [ -z "${KX_JWT_SECRET:-}" ]; then
    if [ ! -s "$KX_DATA_DIR/jwt-secret" ]; then
        (umask 077 && openssl rand -hex 32 >"$KX_DATA_DIR/jwt-secret")
    fi
    chmod 600 "$KX_DATA_DIR/jwt-secret"
    KX_JWT_SECRET="$(cat "$KX_DATA_DIR/jwt-secret")"
fi
export KX_JWT_SECRET

# ---- 3. nats-server ------------------------------------------------------------------------

start_nats() {
    local pidfile="$RUN/nats.pid" pid
    if kx_pidfile_alive "$pidfile" nats-server; then
        part nats "already up" "pid $(kx_pidfile_read "$pidfile"), port $KX_NATS_PORT"
        return
    fi
    if kx_port_open "$KX_NATS_PORT"; then
        kx_die "port $KX_NATS_PORT is taken by another program: set KX_NATS_PORT"
    fi
    # the environment of deploy/nats/nats.env (GOMAXPROCS), for nats-server alone
    local -a nats_env=()
    mapfile -t nats_env < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' \
        "$KX_ROOT/deploy/nats/nats.env")
    env "${nats_env[@]}" setsid nats-server -js -a 127.0.0.1 -p "$KX_NATS_PORT" \
        -sd "$KX_DATA_DIR/nats" </dev/null >>"$LOG/nats.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$pidfile"
    kx_wait_port_until "$KX_NATS_PORT" $((SECONDS + 15)) "$pid" ||
        fail_with_logs "nats-server did not start listening on port $KX_NATS_PORT"
    part nats up "pid $pid, port $KX_NATS_PORT"
}

# ---- 4. PostgreSQL -------------------------------------------------------------------------

PGBIN="$(pg_config --bindir)"
AS_ROOT=0
[ "$(id -u)" -eq 0 ] && AS_ROOT=1

# Runs a PostgreSQL program as the postgres user when we are root (initdb and the server refuse
# root), from / so that an unreadable working directory does not matter.
as_pg() {
    if [ "$AS_ROOT" -eq 1 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Where the cluster lives. Normally $KX_DATA_DIR/pg; when we are root and the postgres user
# cannot reach KX_DATA_DIR (e.g. under /root, mode 0700), a postgres-owned directory under
# /var/tmp named after KX_DATA_DIR. The choice is written to $KX_DATA_DIR/pg-location once and
# read back afterwards (down.sh reads it too).
pg_root() {
    local loc="$KX_DATA_DIR/pg-location" root
    if [ -s "$loc" ]; then
        cat "$loc"
        return
    fi
    root="$KX_DATA_DIR/pg"
    if [ "$AS_ROOT" -eq 1 ] && ! runuser -u postgres -- test -x "$KX_DATA_DIR" 2>/dev/null; then
        root="/var/tmp/kx-pg-$(printf '%s' "$KX_DATA_DIR" | sha256sum | cut -c1-12)"
    fi
    printf '%s\n' "$root" >"$loc"
    printf '%s\n' "$root"
}

# The server settings Kortix is deployed with (deploy/postgres/kortix.conf) copied beside the
# cluster's postgresql.conf, which includes the copy: refreshed on every start, so a changed
# file applies at the next start. A server built without lz4 gets wal_compression = off
# (PostgreSQL's default; pglz was not measured).
install_pg_settings() {
    local data="$1" conf="$1/kortix.conf"
    if pg_config --configure 2>/dev/null | grep -q -- '--with-lz4'; then
        cp "$KX_ROOT/deploy/postgres/kortix.conf" "$conf"
    else
        sed 's/^wal_compression = lz4$/wal_compression = off/' \
            "$KX_ROOT/deploy/postgres/kortix.conf" >"$conf"
    fi
    if ! grep -qx "include_if_exists 'kortix.conf'" "$data/postgresql.conf"; then
        printf "\n# Kortix's settings (deploy/local/up.sh)\ninclude_if_exists 'kortix.conf'\n" \
            >>"$data/postgresql.conf"
    fi
    if [ "$AS_ROOT" -eq 1 ]; then
        chown postgres:postgres "$conf"
    fi
}

start_postgres() {
    local root data pidfile="$RUN/postgres.pid" pid sock
    root="$(pg_root)"
    data="$root/data"
    if kx_pidfile_alive "$pidfile" postgres; then
        part postgres "already up" "pid $(kx_pidfile_read "$pidfile"), port $KX_PG_PORT, data $data"
        return
    fi
    # A postmaster of this cluster may run without our PID file (e.g. the file was removed).
    pid="$(kx_pidfile_read "$data/postmaster.pid")"
    if [ -n "$pid" ] && kx_pid_running "$pid" postgres; then
        printf '%s\n' "$pid" >"$pidfile"
        part postgres "already up" "pid $pid, port $KX_PG_PORT, data $data"
        return
    fi
    if kx_port_open "$KX_PG_PORT"; then
        kx_die "port $KX_PG_PORT is taken by another program: set KX_PG_PORT"
    fi
    mkdir -p "$root"
    chmod 700 "$root"
    if [ "$AS_ROOT" -eq 1 ]; then
        chown postgres:postgres "$root"
    fi
    if [ "$root" != "$KX_DATA_DIR/pg" ] && [ ! -e "$KX_DATA_DIR/pg" ]; then
        ln -s "$root" "$KX_DATA_DIR/pg"   # so that $KX_DATA_DIR/pg leads to the cluster
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        as_pg "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale \
            >>"$LOG/postgres.log" 2>&1 || fail_with_logs "initdb of $data failed"
    fi
    install_pg_settings "$data"
    # The Unix socket lives beside the data; a path too long for sun_path means TCP only.
    sock="$root"
    [ $((${#sock} + 20)) -gt 107 ] && sock=""
    as_pg "$PGBIN/pg_ctl" -D "$data" -w -t 60 \
        -o "-p $KX_PG_PORT -k '$sock' -c listen_addresses=127.0.0.1" start \
        </dev/null >>"$LOG/postgres.log" 2>&1 || fail_with_logs "pg_ctl start of $data failed"
    pid="$(kx_pidfile_read "$data/postmaster.pid")"
    [ -n "$pid" ] || fail_with_logs "PostgreSQL started but $data/postmaster.pid has no PID"
    printf '%s\n' "$pid" >"$pidfile"
    part postgres up "pid $pid, port $KX_PG_PORT, data $data"
}

create_database() {
    local psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$KX_PG_PORT" -U postgres
        -d postgres)
    local have
    have="$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'kortix'")" ||
        fail_with_logs "cannot query PostgreSQL on port $KX_PG_PORT"
    if [ "$have" != 1 ]; then
        "${psql[@]}" -c "CREATE DATABASE kortix" >/dev/null ||
            fail_with_logs "CREATE DATABASE kortix failed"
        kx_say "database kortix created"
    fi
}

# ---- 5. the demo model and the services, each under a supervisor ---------------------------

export KX_NATS_URL="nats://127.0.0.1:$KX_NATS_PORT"
export KX_DATABASE_URL="postgresql://postgres@127.0.0.1:$KX_PG_PORT/kortix"
export KX_SANDBOX_ROOT="${KX_SANDBOX_ROOT:-$KX_DATA_DIR/sandboxes}"
export KX_MODEL_URL="${KX_MODEL_URL:-http://127.0.0.1:$KX_MODEL_PORT/v1}"
export KX_BIND_ADDR="${KX_BIND_ADDR:-127.0.0.1}"
export KX_MIGRATIONS_DIR="${KX_MIGRATIONS_DIR:-$KX_ROOT/deploy/migrations}"

health_port() {
    local i
    for i in "${!KX_SERVICES[@]}"; do
        if [ "${KX_SERVICES[$i]}" = "$1" ]; then
            printf '%s' $((KX_HEALTH_PORT_BASE + i))
            return
        fi
    done
}

# start_supervised NAME COMMAND...: starts the supervisor of NAME unless it runs already.
# Returns 1 when it was already running.
start_supervised() {
    local name="$1"
    shift
    if kx_pidfile_alive "$RUN/$name.supervisor.pid" kx_supervise; then
        return 1
    fi
    rm -f "$RUN/$name.stop"
    # The supervisor's own session: it outlives this script and the terminal.
    # shellcheck disable=SC2016 # $1 and $@ belong to the inner bash
    setsid bash -c '. "$1"; shift; kx_supervise "$@"' kx-supervise "$KX_LIB" \
        "$name" "$RUN" "$LOG/$name.log" "$@" </dev/null >/dev/null 2>&1 &
    printf '%s\n' "$!" >"$RUN/$name.supervisor.pid"
    return 0
}

declare -A FRESH=()
start_all_supervised() {
    local s hp
    if start_supervised demo-model env KX_MODEL_PORT="$KX_MODEL_PORT" "$MODEL_BIN"; then
        FRESH[demo-model]=1
    fi
    for s in "${KX_SERVICES[@]}"; do
        hp="$(health_port "$s")"
        # shellcheck disable=SC2046 # kx_service_env prints separate words on purpose
        if start_supervised "$s" env $(kx_service_env "$s") KX_HEALTH_PORT="$hp" "$(service_bin "$s")"; then
            FRESH[$s]=1
        fi
    done
}

# The PID of the supervised process, once its supervisor has started it.
child_pid() {
    kx_pidfile_read "$RUN/$1.pid"
}

report_part() {
    local name="$1" detail="$2" state=up
    [ -z "${FRESH[$name]:-}" ] && state="already up"
    part "$name" "$state" "pid $(child_pid "$name"), $detail"
}

wait_all_supervised() {
    local deadline=$((SECONDS + WAIT_SECONDS)) s hp detail
    kx_wait_port_until "$KX_MODEL_PORT" "$deadline" ||
        fail_with_logs "the demo model is not listening on port $KX_MODEL_PORT"
    report_part demo-model "port $KX_MODEL_PORT"
    for s in "${KX_SERVICES[@]}"; do
        hp="$(health_port "$s")"
        kx_wait_http_until "http://127.0.0.1:$hp/healthz" "$deadline" ||
            fail_with_logs "$s: GET http://127.0.0.1:$hp/healthz did not answer 200 in ${WAIT_SECONDS} s"
        detail="health port $hp"
        [ "$s" = gateway ] && detail="port $KX_HTTP_PORT, health port $hp"
        report_part "$s" "$detail"
    done
    kx_wait_http_until "http://127.0.0.1:$KX_HTTP_PORT/api/health" "$deadline" ||
        fail_with_logs "GET http://127.0.0.1:$KX_HTTP_PORT/api/health did not answer 200 in ${WAIT_SECONDS} s"
}

# ---- run it --------------------------------------------------------------------------------

kx_say "starting the stack in $KX_DATA_DIR"
start_nats
start_postgres
create_database
start_all_supervised
wait_all_supervised

TOKEN="$(kx_jwt_hs256 "$KX_JWT_SECRET" "$KX_DEV_ACCOUNT" $((30 * 24 * 3600)))"
(umask 077 && printf '%s\n' "$TOKEN" >"$KX_DATA_DIR/dev-token")
URL="http://127.0.0.1:$KX_HTTP_PORT"
TOKEN_FILE="$KX_DATA_DIR/dev-token"
case "$TOKEN_FILE" in "$PWD"/*) TOKEN_FILE="${TOKEN_FILE#"$PWD"/}" ;; esac

cat <<EOF

Kortix is up: $URL   (GET $URL/api/health answers 200)
Logs: $LOG/<service>.log    PID files: $RUN/    stop: ./deploy/local/down.sh

Dev JWT (account $KX_DEV_ACCOUNT, valid 30 days; also in $TOKEN_FILE):
$TOKEN

Start a run (answers {"thread_id": ..., "agent_run_id": ...}):
curl -s -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -F 'prompt=call execute_command {"command": "echo hello", "blocking": true}' $URL/api/agent/initiate

Stream its events (replayed from the start, closes after the last one):
curl -N -H "Authorization: Bearer \$(cat $TOKEN_FILE)" $URL/api/agent-run/<agent_run_id>/stream

Read the thread's messages:
curl -s -H "Authorization: Bearer \$(cat $TOKEN_FILE)" '$URL/api/threads/<thread_id>/messages?order=asc'
EOF
