#!/usr/bin/env bash
# tests/fuzz/run.sh TARGET SECONDS — runs one libFuzzer target for SECONDS seconds.
#
# Builds fuzz_TARGET in the fuzz build directory if needed (KX_FUZZ_BUILD_DIR, default
# build-fuzz/, configured with CC=clang -DKX_FUZZ=ON), then fuzzes from the seed corpus
# tests/fuzz/TARGET/corpus/ (read, never written). New inputs go to a scratch corpus,
# crashes/leaks/timeouts are saved as files:
#     $KX_FUZZ_WORK/TARGET/corpus/        inputs that found new coverage (kept between runs)
#     $KX_FUZZ_WORK/TARGET/crash-*, leak-*, timeout-*, oom-*   findings
#     $KX_FUZZ_WORK/TARGET/log            libFuzzer's output
# KX_FUZZ_WORK defaults to <build dir>/fuzz-work. Extra libFuzzer flags: KX_FUZZ_ARGS.
# KX_FUZZ_NO_BUILD=1 runs the binary as built (smoke.sh builds every target first).
# Prints one line "fuzz TARGET: execs N, cov C, ft F, corpus K, findings M" and exits 0 when
# nothing was found, 1 on a finding (crash, leak, timeout, OOM), 2 on a usage or build error.
# A finding is replayed with: build-fuzz/tests/fuzz/fuzz_TARGET FILE
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ $# -ne 2 ] || [ ! -d "$here/${1:-/}/corpus" ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
    echo "usage: tests/fuzz/run.sh TARGET SECONDS  (TARGET: one of $(cd "$here" && for d in */corpus; do printf '%s ' "${d%/corpus}"; done))" >&2
    exit 2
fi
target="$1"
seconds="$2"
build="${KX_FUZZ_BUILD_DIR:-$root/build-fuzz}"
work="${KX_FUZZ_WORK:-$build/fuzz-work}/$target"
bin="$build/tests/fuzz/fuzz_$target"

if [ "${KX_FUZZ_NO_BUILD:-0}" = 1 ]; then
    [ -x "$bin" ] || {
        echo "fuzz $target: $bin is not built" >&2
        exit 2
    }
elif [ ! -f "$build/CMakeCache.txt" ]; then
    CC="${CC:-clang}" cmake -S "$root" -B "$build" -DKX_FUZZ=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || {
        echo "fuzz $target: cmake configure of $build failed" >&2
        exit 2
    }
fi
if [ "${KX_FUZZ_NO_BUILD:-0}" != 1 ]; then
    cmake --build "$build" -j2 --target "fuzz_$target" >/dev/null || {
        echo "fuzz $target: build of fuzz_$target failed (run: cmake --build $build --target fuzz_$target)" >&2
        exit 2
    }
fi

mkdir -p "$work/corpus"
# ASan: leaks are findings; UBSan: every report aborts (the build also has no recovery).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
rc=0
# shellcheck disable=SC2086 # KX_FUZZ_ARGS is a list of -flag=value words
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" ${KX_FUZZ_ARGS:-} "$work/corpus" "$here/$target/corpus" \
    >"$work/log" 2>&1 || rc=$?

execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n1)"
last="$(grep -E '^#[0-9]+.*cov: ' "$work/log" | tail -n1 || true)"
cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
corpus="$(find "$work/corpus" -type f | wc -l)"
findings="$(grep -cE '^==[0-9]+==(ERROR|WARNING): |^SUMMARY: |runtime error: |property failed: |ALARM: working on the last Unit|out-of-memory' "$work/log" || true)"
echo "fuzz $target: execs ${execs:-?}, cov ${cov:-?}, ft ${ft:-?}, corpus $corpus (+$(find "$here/$target/corpus" -type f | wc -l) seeds), findings $findings, exit $rc (log: $work/log)"
if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
    grep -E 'ERROR|SUMMARY|runtime error|property failed|Test unit written' "$work/log" | head -n 20 >&2 || true
    exit 1
fi
exit 0
