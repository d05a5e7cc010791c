#!/usr/bin/env bash
# deploy/local/down.sh — stop everything deploy/local/up.sh started, and keep the data.
#
# Works from the PID files in $KX_DATA_DIR/run only (never by process name), in this order:
# the supervisors (each forwards SIGTERM to its service and waits for it), any service still
# running without its supervisor, the demo model, PostgreSQL (pg_ctl stop -m fast), nats-server.
# Each is given 10 s after SIGTERM, then SIGKILL. PID files are removed; data and logs stay.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${KX_DATA_DIR:=$KX_ROOT/.local}"
[ -d "$KX_DATA_DIR" ] || kx_die "$KX_DATA_DIR does not exist: nothing to stop"
KX_DATA_DIR="$(cd "$KX_DATA_DIR" && pwd)"
RUN="$KX_DATA_DIR/run"
LOG="$KX_DATA_DIR/log"
mkdir -p "$RUN"

SUPERVISED=(gateway scheduler agent-runner tool-executor sandbox-broker mcp-proxy demo-model)

# stop_group LABEL CMDLINE_PART PIDFILE...: SIGTERM to every live process named by the PID
# files (and matching CMDLINE_PART), waits for all, then removes the PID files.
stop_group() {
    local label="$1" want="$2"
    shift 2
    local pids=() f pid
    for f in "$@"; do
        pid="$(kx_pidfile_read "$f")"
        if [ -n "$pid" ] && kx_pid_running "$pid" "$want"; then
            pids+=("$pid")
            local what
            what="$(basename "$f" .pid)"
            kx_say "stopping $label ${what%.supervisor} (pid $pid)"
        fi
    done
    if [ ${#pids[@]} -gt 0 ]; then
        kx_stop_pids "$label" "${pids[@]}"
    fi
    rm -f "$@"
}

# 1. Supervisors: the stop file keeps them from restarting anything, SIGTERM ends them after
#    their service has exited.
sup_files=()
for s in "${SUPERVISED[@]}"; do
    : >"$RUN/$s.stop"
    sup_files+=("$RUN/$s.supervisor.pid")
done
stop_group supervisor kx_supervise "${sup_files[@]}"

# 2. Services (and 3. the demo model) that outlived their supervisor, e.g. one killed by hand.
svc_files=()
for s in "${SUPERVISED[@]}"; do
    [ "$s" = demo-model ] || svc_files+=("$RUN/$s.pid")
done
stop_group service "" "${svc_files[@]}"
stop_group "demo model" "" "$RUN/demo-model.pid"
for s in "${SUPERVISED[@]}"; do
    rm -f "$RUN/$s.stop"
done

# 4. PostgreSQL, through pg_ctl so that it shuts down cleanly.
pg_root="$KX_DATA_DIR/pg"
[ -s "$KX_DATA_DIR/pg-location" ] && pg_root="$(cat "$KX_DATA_DIR/pg-location")"
pg_data="$pg_root/data"
pg_pid="$(kx_pidfile_read "$RUN/postgres.pid")"
# The cluster's own PID file names the postmaster that runs now: after an operator's
# pg_ctl restart ours names one that is gone (down.sh used to leave the new one running).
if ! { [ -n "$pg_pid" ] && kx_pid_running "$pg_pid" postgres; }; then
    pg_pid="$(kx_pidfile_read "$pg_data/postmaster.pid")"
fi
if [ -n "$pg_pid" ] && kx_pid_running "$pg_pid" postgres; then
    kx_say "stopping postgres (pid $pg_pid)"
    PGBIN="$(pg_config --bindir)"
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pg_data" -m fast -w -t 10 stop) \
            >>"$LOG/postgres.log" 2>&1 || true
    else
        (cd / && "$PGBIN/pg_ctl" -D "$pg_data" -m fast -w -t 10 stop) >>"$LOG/postgres.log" 2>&1 || true
    fi
    # pg_ctl has waited 10 s. SIGINT is the postmaster's own "fast shutdown"; then SIGKILL.
    if kx_pid_running "$pg_pid" postgres; then
        kx_warn "pg_ctl stop did not stop postgres: SIGINT to pid $pg_pid"
        kill -INT "$pg_pid" 2>/dev/null || true
        if ! kx_wait_gone 10 "$pg_pid"; then
            kx_warn "postgres pid $pg_pid still running: SIGKILL"
            kill -KILL "$pg_pid" 2>/dev/null || true
            kx_wait_gone 5 "$pg_pid" || kx_warn "postgres pid $pg_pid did not exit after SIGKILL"
        fi
    fi
fi
rm -f "$RUN/postgres.pid"

# 5. nats-server.
stop_group server nats-server "$RUN/nats.pid"

kx_say "stopped; data kept in $KX_DATA_DIR"
