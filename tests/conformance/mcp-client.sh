#!/usr/bin/env bash
# tests/conformance/mcp-client.sh — the MCP conformance suite (@modelcontextprotocol/conformance,
# client mode, installed by tests/package.json) against our MCP client, kx-mcp-client.
#
#   tests/conformance/mcp-client.sh CLIENT_BINARY [SCENARIO...]
#
# Default scenarios: initialize, tools_call, sse-retry. The suite starts its own scenario
# server on a free port (localhost), runs CLIENT_BINARY with the server's URL appended, and
# grades what the client did. The suite's servers listen on every interface, so each scenario
# runs in a private network namespace (unshare -rn) that has only its own loopback: nothing
# outside can reach them. Version 0.1.13 is pinned: it is the newest that runs on Node 20
# (Debian 12); newer ones need Node 22. Exits non-zero when any scenario fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
client="$1"
shift
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(initialize tools_call sse-retry)
suite="$here/../node_modules/@modelcontextprotocol/conformance/dist/index.js"
[ -f "$suite" ] || { echo "missing $suite: run npm install in tests/" >&2; exit 1; }
out="$(mktemp -d /tmp/kx-mcp-conformance-XXXXXX)"
trap 'rm -rf "$out"' EXIT
unshare -rn true 2>/dev/null ||
    { echo "unshare -rn (a user + network namespace) is not permitted here" >&2; exit 1; }
rc=0
for s in "${scenarios[@]}"; do
    log="$out/$s.log"
    if unshare -rn sh -c 'ip link set lo up && exec "$@"' sh \
        node "$suite" client --command "$client" --scenario "$s" --timeout 30000 -o "$out" \
        >"$log" 2>&1 && grep -q "OVERALL: PASSED" "$log"; then
        echo "conformance client $s: $(grep -m1 '^Passed:' "$log")"
    else
        echo "conformance client $s: FAILED" >&2
        cat "$log" >&2
        rc=1
    fi
done
exit "$rc"
