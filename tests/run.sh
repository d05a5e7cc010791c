#!/usr/bin/env bash
# tests/run.sh — install what is missing, build, and run every test (what CI runs).
#
#   ./tests/run.sh                 build into build/ and run ctest there
#   KX_SANITIZE=1 ./tests/run.sh   the same with AddressSanitizer + UBSan, in build-asan/
#   KX_TSAN=1 ./tests/run.sh       the same with ThreadSanitizer, in build-tsan/ (CI runs only the
#                                  threaded unit tests there: .ci/run's tsan stage)
#   KX_BUILD_DIR=dir               another build directory
#   KX_BUILD_TARGETS="a b"         build only these targets (then select their tests with -R)
#   extra arguments go to ctest, e.g. ./tests/run.sh -R it_skeleton
#
# Unit tests run two at a time; integration tests are RUN_SERIAL (each starts its own stack).
# The npm packages in tests/package.json (the MCP server the mcp-proxy tests talk to) are
# installed into tests/node_modules. Exits with ctest's status and prints a summary line.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR source=../deploy/local/lib.sh
. deploy/local/lib.sh

started=$SECONDS
kx_ensure_packages

kx_say "npm install in tests/ ..."
(cd tests && npm install --no-audit --no-fund --loglevel=error) || kx_die "npm install in tests/ failed"

if [ "${KX_SANITIZE:-0}" = 1 ] && [ "${KX_TSAN:-0}" = 1 ]; then
    kx_die "KX_SANITIZE=1 and KX_TSAN=1 cannot be combined (ASan and TSan exclude each other)"
elif [ "${KX_SANITIZE:-0}" = 1 ]; then
    build="${KX_BUILD_DIR:-$KX_ROOT/build-asan}"
    kx_build "$build" -DKX_SANITIZE=ON
elif [ "${KX_TSAN:-0}" = 1 ]; then
    build="${KX_BUILD_DIR:-$KX_ROOT/build-tsan}"
    kx_build "$build" -DKX_TSAN=ON
else
    build="${KX_BUILD_DIR:-$KX_ROOT/build}"
    kx_build "$build" -DKX_SANITIZE=OFF
fi

rc=0
ctest --test-dir "$build" --output-on-failure -j2 "$@" || rc=$?

took=$((SECONDS - started))
if [ "$rc" -eq 0 ]; then
    kx_say "tests/run.sh: all tests passed ($build, ${took} s)"
else
    kx_say "tests/run.sh: FAILED, ctest exited with status $rc ($build, ${took} s)"
fi
exit "$rc"
