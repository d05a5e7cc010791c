#!/usr/bin/env bash
# tests/fuzz/smoke.sh — the fuzz stage of CI: builds every libFuzzer target and runs each one
# for a bounded time from its seed corpus; fails on any crash, leak, timeout or OOM.
#
#   tests/fuzz/smoke.sh                     every target, KX_FUZZ_SMOKE_SECONDS (15) each
#   tests/fuzz/smoke.sh xml_calls sse       only these targets
#
# Installs clang when it is missing (with the project's other packages, deploy/local/lib.sh).
# Builds into KX_FUZZ_BUILD_DIR (default build-fuzz/, CC=clang -DKX_FUZZ=ON). Runs
# KX_FUZZ_JOBS targets at a time (default: the number of cores, at most 2) from a fresh scratch
# corpus, so every run starts from what the repository holds: the seeds, and every input that
# once crashed a target (kept there as a regression). Findings and logs stay in
# <build dir>/fuzz-smoke/<target>/; replay one with build-fuzz/tests/fuzz/fuzz_<target> FILE.
# With 26 targets, 15 s each, two at a time: 13 rounds, about 3.3 minutes of fuzzing after the build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source-path=SCRIPTDIR source=../../deploy/local/lib.sh
. deploy/local/lib.sh

started=$SECONDS
KX_PACKAGES+=(clang)
kx_ensure_packages

build="${KX_FUZZ_BUILD_DIR:-$KX_ROOT/build-fuzz}"
seconds="${KX_FUZZ_SMOKE_SECONDS:-15}"
jobs="${KX_FUZZ_JOBS:-$(nproc)}"
[ "$jobs" -gt 2 ] && [ -z "${KX_FUZZ_JOBS:-}" ] && jobs=2
work="$build/fuzz-smoke"

if [ ! -f "$build/CMakeCache.txt" ]; then
    CC=clang cmake -S "$KX_ROOT" -B "$build" -DKX_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        >/dev/null || kx_die "cmake configure of $build (CC=clang -DKX_FUZZ=ON) failed"
fi
kx_say "fuzz smoke: building the targets in $build ..."
cmake --build "$build" -j"$(nproc)" --target fuzz_all >/dev/null ||
    kx_die "build of the fuzz targets failed (cmake --build $build --target fuzz_all)"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for d in tests/fuzz/*/corpus; do
        t="${d#tests/fuzz/}"
        targets+=("${t%/corpus}")
    done
fi

rm -rf "$work"
mkdir -p "$work"
kx_say "fuzz smoke: ${#targets[@]} targets, ${seconds} s each, $jobs at a time"
# Each target runs in the background; its summary line goes to $work/<target>.result and its
# exit status to $work/<target>.rc. A run that overstays (a hang libFuzzer cannot catch) is
# killed by timeout(1) and counts as a failure.
# The seed is fixed (KX_FUZZ_SEED, default 1) so that two CI runs of one tree explore the same
# inputs first: a red stage then means the tree changed, not the dice. Finding new bugs is the
# work of long runs with random seeds (tests/fuzz/run.sh, docs/reliability.md).
seed="${KX_FUZZ_SEED:-1}"
run_one() {
    local t="$1" rc=0
    KX_FUZZ_ARGS="-seed=$seed ${KX_FUZZ_ARGS:-}" KX_FUZZ_NO_BUILD=1 KX_FUZZ_BUILD_DIR="$build" KX_FUZZ_WORK="$work" \
        timeout -k 10 $((seconds + 120)) tests/fuzz/run.sh "$t" "$seconds" \
        >"$work/$t.result" 2>&1 || rc=$?
    echo "$rc" >"$work/$t.rc"
}
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_one "$t" &
    running=$((running + 1))
done
wait

failed=()
for t in "${targets[@]}"; do
    cat "$work/$t.result"
    rc="$(cat "$work/$t.rc" 2>/dev/null || echo 1)"
    [ "$rc" = 0 ] || failed+=("$t")
done
took=$((SECONDS - started))
if [ ${#failed[@]} -eq 0 ]; then
    kx_say "tests/fuzz/smoke.sh: all ${#targets[@]} fuzz targets clean (${seconds} s each, ${took} s)"
    exit 0
fi
kx_say "tests/fuzz/smoke.sh: FAILED: ${failed[*]} (findings and logs in $work; ${took} s)"
exit 1
