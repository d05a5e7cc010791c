#!/usr/bin/env bash
# tests/check_env_defaults.sh — a KX_* variable read by several services means one thing: every
# service that reads it with a default in its code (`"KX_NAME", <number>` as kx_env_int, the
# config tables and the broker's INT take it) has the same default. up.sh and docker-compose
# give every service the same environment, so one name with two meanings changes the other
# service too (KX_SANDBOX_START_TIMEOUT_MS was read by the gateway with 30 s, documented as its
# wait for the broker, and by the broker as its limit on a jail's start, 10 s).
# Run by ctest as "env_defaults"; prints each variable with differing defaults and exits 1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
services=(gateway scheduler agent-runner tool-executor sandbox-broker mcp-proxy)

table="$(for s in "${services[@]}"; do
    grep -rhoE --include='*.c' --include='*.h' '"KX_[A-Z0-9_]+", *-?[0-9][0-9*<() ]*' \
        "$root/services/$s" | sed -E 's/"(KX_[A-Z0-9_]+)", *(.*[0-9)])[ ,]*$/\1|\2/' |
        tr -d ' ' | tr '|' ' ' | sort -u | sed "s/^/$s /"
done)"
if [ -z "$table" ]; then
    printf 'env_defaults: no "KX_NAME", <default> found under services/: the pattern is stale\n'
    exit 1
fi
bad="$(printf '%s\n' "$table" | awk '
    { seen[$2] = seen[$2] " " $1 "=" $3; if (!(($2, $3) in d)) { d[$2, $3] = 1; n[$2]++ } }
    END { for (v in n) if (n[v] > 1) print v ":" seen[v] }' | sort)"
if [ -n "$bad" ]; then
    printf 'env_defaults: one variable, different defaults in different services (rename one):\n%s\n' "$bad"
    exit 1
fi
printf 'env_defaults: %d variable reads, one default each\n' "$(printf '%s\n' "$table" | wc -l)"
