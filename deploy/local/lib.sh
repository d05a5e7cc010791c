# shellcheck shell=bash disable=SC2034
# deploy/local/lib.sh — shell functions shared by up.sh, down.sh and tests/run.sh.
#
# Sourced, never run. Every function is prefixed kx_. What lives here:
#   - messages (kx_say, kx_die) and the checkout's root (KX_ROOT);
#   - the Debian packages the project needs and how to install the missing ones;
#   - configuring and building the tree with CMake;
#   - PID files: is the process they name alive (and really ours), stop it and wait;
#   - what each service is given of the environment (kx_service_env: no secret it does not read);
#   - the per-service supervisor (kx_supervise) that restarts a crashed process;
#   - small waits (a TCP port, an HTTP 200) and the dev JWT minted with openssl.
# Nothing here kills by name: every process is found through a PID file that we wrote.
# (SC2034 is off: the variables are used by the scripts that source this file.)

KX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KX_LIB="$KX_ROOT/deploy/local/lib.sh"

# The Debian 12 packages needed to build, run and test everything (clang: the fuzz targets;
# clang-format, clang-tidy, cppcheck, shellcheck: tests/lint.sh; binutils: readelf for the
# hardening test; bubblewrap: the sandboxes; tzdata: the time zones of scheduled runs).
KX_PACKAGES=(build-essential cmake pkg-config libnats-dev nats-server libprotobuf-c-dev
    protobuf-c-compiler libcurl4-openssl-dev libpq-dev postgresql libmicrohttpd-dev
    libjansson-dev libcmocka-dev libssl-dev curl openssl ca-certificates nodejs npm
    clang clang-format clang-tidy cppcheck shellcheck binutils bubblewrap
    iproute2 tzdata)

# The account the dev JWT is for (any UUID works; this one is fixed so runs survive restarts).
KX_DEV_ACCOUNT="00000000-0000-4000-8000-00000000d0e0"

# The six services in start order, and the demo model.
KX_SERVICES=(gateway scheduler agent-runner tool-executor sandbox-broker mcp-proxy)

kx_say() { printf '%s\n' "$*"; }
kx_warn() { printf '%s\n' "$*" >&2; }
kx_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# ---- packages ------------------------------------------------------------------------------

# True when the Debian package is installed. nodejs and npm also count as present when the
# commands exist: a machine may have Node.js from another Debian source (nodesource ships npm
# inside its nodejs package, and Debian's npm package would conflict with it).
kx_pkg_present() {
    local pkg="$1"
    case "$pkg" in
        nodejs) command -v node >/dev/null 2>&1 && return 0 ;;
        npm) command -v npm >/dev/null 2>&1 && return 0 ;;
    esac
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'
}

# Installs whatever of KX_PACKAGES is missing: as root with apt-get; otherwise prints the exact
# command to run and exits 1.
kx_ensure_packages() {
    local missing=() pkg
    for pkg in "${KX_PACKAGES[@]}"; do
        kx_pkg_present "$pkg" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    local cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        kx_warn "missing Debian packages: ${missing[*]}"
        kx_warn "run as root:"
        kx_warn "  $cmd"
        exit 1
    fi
    kx_say "installing missing packages: ${missing[*]}"
    apt-get update || kx_die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
        kx_die "apt-get install ${missing[*]} failed"
}

# ---- building ------------------------------------------------------------------------------

# kx_build BUILD_DIR [cmake -D options...]: configures BUILD_DIR if it has never been
# configured (or was configured with other options), then builds it with every core: everything,
# or only the targets named in KX_BUILD_TARGETS (space-separated) when it is set.
kx_build() {
    local dir="$1"
    shift
    local stamp="$dir/.kx-configure-args"
    local args="-DCMAKE_BUILD_TYPE=RelWithDebInfo $*"
    if [ ! -f "$dir/CMakeCache.txt" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$args" ]; then
        # shellcheck disable=SC2086 # args is a list of -D options without spaces
        cmake -S "$KX_ROOT" -B "$dir" $args || kx_die "cmake configure of $dir failed"
        printf '%s' "$args" >"$stamp"
    fi
    local targets=()
    if [ -n "${KX_BUILD_TARGETS:-}" ]; then
        read -r -a targets <<<"$KX_BUILD_TARGETS"
        targets=(--target "${targets[@]}")
    fi
    cmake --build "$dir" -j"$(nproc)" "${targets[@]}" || kx_die "build in $dir failed"
}

# ---- processes and PID files ---------------------------------------------------------------

# True when pid is a running (not zombie) process whose command line contains $2 (if given).
kx_pid_running() {
    local pid="$1" want="${2:-}"
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    local stat
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    # The state is the field after the parenthesised command name.
    stat="${stat##*) }"
    [ "${stat%% *}" = Z ] && return 1
    if [ -n "$want" ]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want" || return 1
    fi
    return 0
}

# Prints the PID in a PID file (nothing if the file is missing or not a number).
kx_pidfile_read() {
    local pid
    pid="$(head -n1 "$1" 2>/dev/null)" || return 0
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    printf '%s' "$pid"
}

# kx_pidfile_alive FILE [CMDLINE_PART]: the PID file names a live process (that matches).
kx_pidfile_alive() {
    local pid
    pid="$(kx_pidfile_read "$1")"
    [ -n "$pid" ] && kx_pid_running "$pid" "${2:-}"
}

# kx_wait_gone SECONDS PID...: waits until none of the PIDs runs; returns 1 if some still do.
kx_wait_gone() {
    local secs="$1"
    shift
    local deadline=$((SECONDS + secs)) pid left
    while :; do
        left=0
        for pid in "$@"; do
            kx_pid_running "$pid" && left=1
        done
        [ "$left" -eq 0 ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# kx_stop_pids LABEL PID...: SIGTERM to each PID, wait up to 10 s, then SIGKILL what is left.
kx_stop_pids() {
    local label="$1"
    shift
    [ $# -eq 0 ] && return 0
    kill -TERM "$@" 2>/dev/null || true
    if ! kx_wait_gone 10 "$@"; then
        local pid
        for pid in "$@"; do
            if kx_pid_running "$pid"; then
                kx_warn "$label: pid $pid still running 10 s after SIGTERM: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
        kx_wait_gone 5 "$@" || kx_warn "$label: some of pids $* did not exit after SIGKILL"
    fi
}

# ---- waiting for servers -------------------------------------------------------------------

# True when something accepts TCP connections on 127.0.0.1:PORT.
kx_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints the HTTP status of GET URL (000 when nothing answered).
kx_http_status() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true
}

# kx_wait_http URL DEADLINE_SECONDS_VALUE: polls until URL answers 200 or $SECONDS passes the
# deadline (an absolute value of bash's SECONDS).
kx_wait_http_until() {
    local url="$1" deadline="$2"
    while [ "$(kx_http_status "$url")" != 200 ]; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

# kx_wait_port_until PORT DEADLINE [PID]: polls until the port accepts connections; fails
# early when PID (if given) is no longer running.
kx_wait_port_until() {
    local port="$1" deadline="$2" pid="${3:-}"
    until kx_port_open "$port"; do
        if [ -n "$pid" ] && ! kx_pid_running "$pid"; then
            return 1
        fi
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# ---- what each service is given ------------------------------------------------------------

# kx_service_env NAME: the `env` arguments that withhold the secrets NAME does not need (up.sh
# passes every other KX_* variable through). Only the gateway holds the JWT secret; the database
# URL goes to the services that read it: gateway, scheduler, agent-runner and tool-executor (its
# task list and expand_message). The sandbox-broker and the mcp-proxy also learn the Postgres
# port (KX_PG_PORT), which their jails (sandboxes, agents' stdio MCP servers) may never connect
# to with KX_SANDBOX_NETWORK=host: added to the operator's KX_SANDBOX_DENY_PORTS, if any.
# tests/check_service_env.sh holds this against what each service's code reads.
kx_service_env() {
    case "$1" in
        gateway) ;;
        scheduler | agent-runner | tool-executor) printf '%s\n' -u KX_JWT_SECRET ;;
        sandbox-broker | mcp-proxy)
            printf '%s\n' -u KX_JWT_SECRET -u KX_DATABASE_URL \
                "KX_SANDBOX_DENY_PORTS=${KX_SANDBOX_DENY_PORTS:+$KX_SANDBOX_DENY_PORTS,}$KX_PG_PORT"
            ;;
        *) printf '%s\n' -u KX_JWT_SECRET -u KX_DATABASE_URL ;;
    esac
}

# ---- the supervisor ------------------------------------------------------------------------

# One JSON line, in the services' own log format, so that restarts show up in the log they
# concern.
kx_supervisor_log() {
    local level="$1" name="$2" msg="$3"
    printf '{"ts": "%s", "level": "%s", "service": "supervisor", "msg": "%s: %s"}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%S.%6N+00:00)" "$level" "$name" "$msg"
}

# kx_supervise NAME RUN_DIR LOG_FILE COMMAND...
# Runs COMMAND (stdout+stderr appended to LOG_FILE), writes its PID to RUN_DIR/NAME.pid, and
# restarts it when it exits non-zero or is killed: after 1 s, doubling up to 30 s, back to 1 s
# once a process has lived 60 s. Stops when RUN_DIR/NAME.stop exists or on SIGTERM/SIGINT,
# which it forwards to the process (and waits for it). A process that exits 0 is not restarted.
# Run it in its own session: setsid bash -c '. lib.sh; kx_supervise ...' &
kx_supervise() {
    local name="$1" run="$2" log="$3"
    shift 3
    local pidfile="$run/$name.pid" stopfile="$run/$name.stop"
    local child=0 stopping=0 backoff=1 rc started
    # BASHPID, not $$: correct even when this runs in a subshell.
    printf '%s\n' "$BASHPID" >"$run/$name.supervisor.pid"
    trap 'stopping=1; if [ "$child" -gt 0 ]; then kill -TERM "$child" 2>/dev/null; fi' TERM INT
    while [ "$stopping" -eq 0 ] && [ ! -e "$stopfile" ]; do
        started=$SECONDS
        "$@" </dev/null >>"$log" 2>&1 &
        child=$!
        printf '%s\n' "$child" >"$pidfile"
        # A signal that came between the start and "child=$!" found no child to forward to.
        if [ "$stopping" -ne 0 ]; then
            kill -TERM "$child" 2>/dev/null
        fi
        # wait returns early when a trapped signal arrives: wait again until the child is gone.
        while kx_pid_running "$child"; do
            wait "$child" 2>/dev/null
        done
        wait "$child" 2>/dev/null
        rc=$?
        child=0
        if [ "$stopping" -ne 0 ] || [ -e "$stopfile" ]; then
            kx_supervisor_log info "$name" "exited with status $rc after a stop request" >>"$log"
            break
        fi
        if [ "$rc" -eq 0 ]; then
            kx_supervisor_log warn "$name" "exited with status 0 by itself; not restarting" >>"$log"
            break
        fi
        if [ $((SECONDS - started)) -ge 60 ]; then
            backoff=1
        fi
        kx_supervisor_log error "$name" "exited with status $rc; restarting in $backoff s" >>"$log"
        local waited=0
        while [ "$waited" -lt $((backoff * 10)) ] && [ "$stopping" -eq 0 ] && [ ! -e "$stopfile" ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        backoff=$((backoff * 2))
        [ "$backoff" -gt 30 ] && backoff=30
    done
    rm -f "$pidfile" "$run/$name.supervisor.pid"
}

# ---- JWT -----------------------------------------------------------------------------------

kx_b64url() {
    openssl base64 -A | tr '+/' '-_' | tr -d '='
}

# kx_jwt_hs256 SECRET SUB TTL_SECONDS: prints an HS256 JWT {"sub", "iat", "exp", "aud"} (the
# gateway requires exp and checks aud, "authenticated" unless KX_JWT_AUDIENCE says otherwise).
kx_jwt_hs256() {
    local secret="$1" sub="$2" ttl="$3" now header payload sig
    now="$(date +%s)"
    header="$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | kx_b64url)"
    payload="$(printf '{"sub":"%s","iat":%s,"exp":%s,"aud":"%s"}' "$sub" "$now" $((now + ttl)) "${KX_JWT_AUDIENCE:-authenticated}" | kx_b64url)"
    sig="$(printf '%s' "$header.$payload" | openssl dgst -sha256 -hmac "$secret" -binary | kx_b64url)"
    printf '%s.%s.%s' "$header" "$payload" "$sig"
}
