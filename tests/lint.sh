#!/usr/bin/env bash
# tests/lint.sh — the linters every change must pass (CI's lint stage; run it before merging).
#
#   tests/lint.sh          check: clang-format, shellcheck, cppcheck, clang-tidy
#   tests/lint.sh --fix    first rewrite every C file with clang-format, then check
#   KX_LINT_TIDY=0         leave clang-tidy out (a quick local check; CI always runs it)
#   KX_BUILD_DIR=dir       the build whose compile_commands.json clang-tidy and cppcheck read
#                          (default build/; it is configured and built if needed)
#
# Which files: every C source/header and every shell script that git knows of or that is new
# and not ignored (generated code lives in the build directory, node_modules is ignored).
# Styles and check lists: .clang-format, .clang-tidy; why: docs/reliability.md.
# Exits 1 if any linter found something, after running all of them, and prints a summary.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR source=../deploy/local/lib.sh
. deploy/local/lib.sh

fix=0
case "${1:-}" in
    --fix) fix=1 ;;
    "") ;;
    *)
        printf 'usage: %s [--fix]\n' "$0" >&2
        exit 2
        ;;
esac

for tool in clang-format clang-tidy cppcheck shellcheck; do
    command -v "$tool" >/dev/null || kx_die "$tool is missing: run deploy/local/up.sh or tests/run.sh once (they install it)"
done

# Tracked plus new-but-not-ignored files, minus what other tools own.
tree_files() {
    git ls-files --cached --others --exclude-standard -- "$@" | grep -v -e node_modules/ -e '^build' | sort -u
}
mapfile -t c_files < <(tree_files '*.c' '*.h')
mapfile -t sh_files < <(
    tree_files '*.sh'
    # Scripts without the .sh suffix: anything whose first line is a bash/sh shebang.
    git ls-files --cached --others --exclude-standard | grep -v -e node_modules/ -e '\.' |
        while read -r f; do
            [ -f "$f" ] && head -n1 "$f" | grep -Eq '^#!.*\b(ba)?sh\b' && printf '%s\n' "$f"
        done
)

failed=()
summary=()
stage() { # stage NAME COMMAND...: runs one linter, records its time and verdict
    local name="$1" t0=$SECONDS rc=0
    shift
    kx_say "== lint: $name"
    "$@" || rc=$?
    if [ "$rc" -eq 0 ]; then
        summary+=("$name ok ($((SECONDS - t0)) s)")
    else
        summary+=("$name FAILED ($((SECONDS - t0)) s)")
        failed+=("$name")
    fi
}

run_clang_format() {
    if [ "$fix" -eq 1 ]; then
        clang-format -i "${c_files[@]}"
    fi
    clang-format --dry-run -Werror "${c_files[@]}"
}

run_shellcheck() {
    shellcheck -x "${sh_files[@]}"
}

# The build directory with compile_commands.json (the generated protobuf headers too).
build="${KX_BUILD_DIR:-$KX_ROOT/build}"
ensure_build() {
    if [ ! -f "$build/compile_commands.json" ]; then
        kx_build "$build" -DKX_SANITIZE=OFF
    else
        cmake --build "$build" -j"$(nproc)" >/dev/null || kx_die "build in $build failed"
    fi
}

run_cppcheck() {
    # The generated protobuf headers' version #error fires because cppcheck does not read the
    # system headers (missingIncludeSystem): not our code, not a finding.
    cppcheck --project="$build/compile_commands.json" -i"$build" -j"$(nproc)" -q \
        --enable=warning,portability,performance --inline-suppr --error-exitcode=1 \
        --suppress=missingIncludeSystem --suppress=unmatchedSuppression \
        --suppress="preprocessorErrorDirective:$build/*" \
        --template='{file}:{line}: {severity} {id}: {message}'
}

largest_first() { # the files, one a line, the largest first
    stat -c '%s %n' -- "$@" | sort -rn | cut -d' ' -f2-
}

run_clang_tidy() {
    # Only the .c files the build compiles have flags (the fuzz targets are listed by every
    # build); headers are checked through them. A .c file missing from the database fails the
    # linter: it would otherwise never be checked.
    local plain=() tests=() unlisted=0 f
    for f in "${c_files[@]}"; do
        case "$f" in *.c) ;; *) continue ;; esac
        if ! grep -qF "\"$KX_ROOT/$f\"" "$build/compile_commands.json"; then
            kx_warn "clang-tidy: $f is not in $build/compile_commands.json (no target builds it)"
            unlisted=1
        elif grep -q '^#include <cmocka.h>' "$f"; then
            tests+=("$f")
        else
            plain+=("$f")
        fi
    done
    # cmocka tests get tests/analyzer_cmocka.h forced in: it tells the analyzer that a failed
    # assertion ends the test (see there). One file per clang-tidy, largest first, so that the
    # workers (one per core) finish together; every finding is an error (.clang-tidy).
    local out rc=0 jobs
    jobs="$(nproc)"
    out="$(
        {
            largest_first "${plain[@]}" | xargs -d '\n' -P"$jobs" -n1 clang-tidy -p "$build" --quiet
        } 2>&1
    )" || rc=$?
    out+=$'\n'"$(
        {
            largest_first "${tests[@]}" | xargs -d '\n' -P"$jobs" -n1 clang-tidy -p "$build" --quiet \
                --extra-arg=-include"$KX_ROOT/tests/analyzer_cmocka.h"
        } 2>&1
    )" || rc=$?
    grep -v -e '^[0-9]* warnings\? generated' -e '^Suppressed [0-9]* warnings' \
        -e 'Use -header-filter=' -e 'NOLINT' -e '^$' <<<"$out" || true
    kx_say "clang-tidy: ${#plain[@]} files + ${#tests[@]} cmocka tests, $jobs at a time"
    [ "$unlisted" -eq 0 ] || rc=1
    return "$rc"
}

t0=$SECONDS
stage clang-format run_clang_format
stage shellcheck run_shellcheck
ensure_build
stage cppcheck run_cppcheck
if [ "${KX_LINT_TIDY:-1}" = 0 ]; then
    summary+=("clang-tidy SKIPPED (KX_LINT_TIDY=0)")
else
    stage clang-tidy run_clang_tidy
fi

kx_say "tests/lint.sh: ${summary[*]}"
if [ ${#failed[@]} -gt 0 ]; then
    kx_say "tests/lint.sh: FAILED: ${failed[*]} ($((SECONDS - t0)) s)"
    exit 1
fi
kx_say "tests/lint.sh: clean (${#c_files[@]} C files, ${#sh_files[@]} scripts, $((SECONDS - t0)) s)"
