#!/usr/bin/env bash
# tests/bench/run.sh — builds the benchmarks (Release, into build-bench/) when needed and runs
# every one of them three times, printing each run's figures, then the median of the three for
# every figure. What they measure and how to read it: docs/performance.md.
#
#   tests/bench/run.sh                    everything, three passes (about a minute on 2 cores)
#   KX_BENCH_RUNS=1 tests/bench/run.sh    one pass
#   KX_BUILD_DIR=dir tests/bench/run.sh   another build directory (configured Release)
#   tests/bench/run.sh --no-durable ...   extra arguments go to bench_run (see bench_run --help)
#   KX_BENCH_LEASE=0 tests/bench/run.sh   without bench_lease (10 000 runs in one runner, ~3.5
#                                         min, run in the first pass only)
#
# Every benchmark talks to 127.0.0.1 only and starts (and stops) its own servers. The raw output
# of each run and the medians are kept in <build>/bench-results/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
build="${KX_BUILD_DIR:-$root/build-bench}"
passes="${KX_BENCH_RUNS:-3}"

say() { printf '\n== %s\n' "$*"; }

# ---- build (Release) ---------------------------------------------------------------------
if ! grep -qx 'CMAKE_BUILD_TYPE:STRING=Release' "$build/CMakeCache.txt" 2>/dev/null; then
    say "configuring $build (Release)"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKX_SANITIZE=OFF >/dev/null
fi
benches=()
for src in "$root"/tests/bench/bench_*.c; do
    benches+=("$(basename "$src" .c)")
done
say "building the services, the demo model and ${benches[*]} in $build"
cmake --build "$build" -j2 --target gateway scheduler agent-runner tool-executor sandbox-broker \
    kx-sandbox-init mcp-proxy kx-demo-model "${benches[@]}" >/dev/null

# ---- the machine -------------------------------------------------------------------------
say "machine"
echo "cores: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "os: Debian $(cat /etc/debian_version), kernel $(uname -r)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if awk '{exit !($1 > 0.5)}' /proc/loadavg; then
    echo "warning: the machine is not idle; other processes skew every figure. Busiest now:"
    ps -eo pid,pcpu,etime,comm --sort=-pcpu | sed -n '2,6p'
fi

out="$build/bench-results"
mkdir -p "$out"
rm -f "$out"/*.txt
results="$out/results.txt"   # "key value unit" from every pass

# bench_bus prints "<label> p50 N us p90 N us p99 N us" lines; turn them into results.
bus_results() {
    awk '/^baseline: raw cnats/ {k = "bus.raw_cnats"} /^kx_bus_request_pb/ {k = "bus.kx_bus"}
         k != "" && / p50 / {
             for (i = 1; i <= NF; i++)
                 if ($i == "p50" || $i == "p90" || $i == "p99") print k "." $i, $(i + 1), "us"
             k = ""
         }
         /^ratio kx\/baseline/ {print "bus.ratio.p50", $4, "x"; print "bus.ratio.p99", $6, "x"}' "$1"
}

started=$SECONDS
for pass in $(seq 1 "$passes"); do
    for b in "${benches[@]}"; do
        say "pass $pass/$passes: $b"
        log="$out/$b-$pass.txt"
        case "$b" in
            bench_run)
                "$build/tests/bench/bench_run" --results "$results" "$@" 2>&1 | tee "$log" ;;
            bench_sandbox)
                "$build/tests/bench/bench_sandbox" --results "$results" 2>&1 | tee "$log" ;;
            bench_mcp)
                "$build/tests/bench/bench_mcp" --results "$results" 2>&1 | tee "$log" ;;
            bench_lease)
                # 10 000 real runs held in one runner: ~3.5 min, so one pass only (its figures'
                # "medians" are that pass), under nice; KX_BENCH_LEASE=0 skips it
                if [ "$pass" -ne 1 ] || [ "${KX_BENCH_LEASE:-1}" = 0 ]; then
                    continue
                fi
                nice -n 10 "$build/tests/bench/bench_lease" --results "$results" 2>&1 |
                    tee "$log" ;;
            bench_gateway)
                "$build/tests/bench/bench_gateway" --results "$results" 2>&1 | tee "$log" ;;
            bench_bus)
                "$build/tests/bench/bench_bus" 2>&1 | tee "$log"
                bus_results "$log" >>"$results" ;;
            *)
                "$build/tests/bench/$b" 2>&1 | tee "$log" ;;
        esac
    done
done

# ---- medians ----------------------------------------------------------------------------------
say "medians over $passes pass(es) (every figure; values of each pass in brackets)"
awk '{ v[$1] = v[$1] " " $2; u[$1] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
     END {
         for (i = 1; i <= n; i++) {
             k = order[i]; m = split(substr(v[k], 2), a, " ")
             for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++)
                 if (a[y] + 0 < a[x] + 0) { t = a[x]; a[x] = a[y]; a[y] = t }
             med = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
             printf "%-58s %12.1f %-7s [%s]\n", k, med, u[k], substr(v[k], 2)
         }
     }' "$results" | tee "$out/medians.txt"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); took $((SECONDS - started)) s"
echo "raw output and medians: $out/"
