#!/usr/bin/env bash
# tests/bench/passes_check.sh BENCH_RUN BUILD_DIR — the self-check of bench_run --passes (ctest
# it_bench_passes): a bad --baseline-bin is refused before anything starts; two tiny passes per
# side against a baseline (this same build) print the pass lines, the summary, the goal's verdict
# and the per-pair ratios, and write their --results lines; two passes without a baseline print
# the goal and no ratios; a batch whose runs fail ends the benchmark with exit 1 and the failed
# check named. Small batches (30 runs): 156 s at load 14.
set -euo pipefail

bench=$1
build=$2
out=$(mktemp -d /tmp/kx-passes-check.XXXXXX)
trap 'rm -rf "$out"' EXIT
only_tool=(--single 0 --tool 0 --concurrent 0 --readers 0 --held 0 --durable-single 0
    --durable-concurrent 0 --durable-tool-concurrent 30)
fail() {
    echo "passes_check: $*" >&2
    for f in "$out"/*.txt; do
        echo "---- $f (tail)" >&2
        tail -n 40 "$f" >&2
    done
    exit 1
}

# 1. bad input: named, exit 2, no stack started
rc=0
"$bench" "${only_tool[@]}" --passes 2 --baseline-bin "$out/nowhere" >"$out/bad.txt" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--baseline-bin of a missing dir: exit $rc, want 2"
grep -q "baseline-bin $out/nowhere: cannot read $out/nowhere/CMakeCache.txt" "$out/bad.txt" ||
    fail "--baseline-bin of a missing dir: the error does not name it"
rc=0
"$bench" "${only_tool[@]}" --passes 2 --no-durable >"$out/bad2.txt" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--passes with --no-durable: exit $rc, want 2"

# 2. two passes per side, the baseline being this build
rc=0
"$bench" "${only_tool[@]}" --passes 2 --baseline-bin "$build" --results "$out/results.txt" \
    >"$out/ab.txt" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "two passes per side: exit $rc, want 0"
[ "$(grep -c '^==> baseline ' "$out/ab.txt")" = 2 ] || fail "want 2 baseline pass lines"
[ "$(grep -c '^==> candidate ' "$out/ab.txt")" = 2 ] || fail "want 2 candidate pass lines"
grep -q '^(f) warm-up pass of the baseline' "$out/ab.txt" || fail "no warm-up pass of the baseline"
grep -q '^(f) warm-up pass of the candidate' "$out/ab.txt" || fail "no warm-up pass of the candidate"
# the order: baseline, candidate, candidate, baseline
order=$(grep '^==> ' "$out/ab.txt" | awk '{print substr($2, 1, 1)}' | tr -d '\n')
[ "$order" = bccb ] || fail "pass order $order, want bccb"
grep -q '^  candidate: goal 500 runs/s: median [0-9]*, p25 [0-9]*, p75 [0-9]*' "$out/ab.txt" ||
    fail "no goal verdict for the candidate"
[ "$(grep -c '^    others median [0-9]*% of a core' "$out/ab.txt")" = 2 ] ||
    fail "want an others median line per side"
grep -q '^    runs/s candidate/baseline: median ratio [0-9.]* (p25' "$out/ab.txt" ||
    fail "no runs/s ratio"
grep -q '^    stack CPU ms/run candidate/baseline: median ratio' "$out/ab.txt" ||
    fail "no CPU ratio"
grep -q "migrations of $(cd "$build" && sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' CMakeCache.txt)/deploy/migrations" \
    "$out/ab.txt" || fail "the baseline's migrations are not its source tree's"
for k in durable.tool_batch.runs_per_s baseline.durable.tool_batch.runs_per_s \
    durable.tool_batch.passes.runs_per_s.median baseline.durable.tool_batch.passes.stack_ms.p75 \
    durable.tool_batch.passes.cpu.postgres.median ab.passes.runs_per_s_ratio.median \
    durable.tool_batch.passes.others_pct.median; do
    grep -q "^$k " "$out/results.txt" || fail "no $k in --results"
done
[ "$(grep -c '^durable.tool_batch.runs_per_s ' "$out/results.txt")" = 2 ] ||
    fail "want one durable.tool_batch.runs_per_s line per candidate pass"

# 3. two passes without a baseline: the candidate's lines and the goal, no ratios
rc=0
"$bench" "${only_tool[@]}" --passes 2 >"$out/alone.txt" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "two passes alone: exit $rc, want 0"
[ "$(grep -c '^==> candidate ' "$out/alone.txt")" = 2 ] || fail "alone: want 2 candidate lines"
grep -q '^==> baseline \|candidate/baseline' "$out/alone.txt" && fail "alone: baseline figures"
grep -q '^  candidate: goal 500 runs/s: median' "$out/alone.txt" || fail "alone: no goal verdict"

# 4. runs that fail: exit 1, the check named
rc=0
"$bench" "${only_tool[@]}" --passes 1 --tool-prompt $'fail 400 1000000\ncall view_tasks {}' \
    >"$out/failing.txt" 2>&1 || rc=$?
# the harness keeps a failed stack's temp dir for its logs: this failure is the expected one
sed -n 's|^stack: keeping \(/tmp/kx-stack-[A-Za-z0-9]*\) for its logs$|\1|p' "$out/failing.txt" |
    while read -r kept; do rm -rf "$kept"; done
[ "$rc" = 1 ] || fail "a batch of failing runs: exit $rc, want 1"
# (the first batch is the uncounted warm-up pass: it has the same checks)
grep -q 'bench_run: durable.tool_batch.warmup: 0 of 30 runs completed' "$out/failing.txt" ||
    fail "a batch of failing runs: the failed check is not named"
grep -q 'bench_run: the warm-up pass of the candidate failed' "$out/failing.txt" ||
    fail "a batch of failing runs: the failed pass is not named"
grep -q '^==> ' "$out/failing.txt" && fail "a batch of failing runs: a pass line was printed"
echo "passes_check: ok"
