#!/usr/bin/env bash
# tests/check_pg_settings.sh — the PostgreSQL settings of docker-compose.yml's postgres
# service (its `-c name=value` options) are exactly those of deploy/postgres/kortix.conf, which
# deploy/local/up.sh includes and the test harness gives the benchmark's durable server (run by
# ctest as "pg_settings"). Prints what differs and exits 1 if anything does.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
conf="$root/deploy/postgres/kortix.conf"
compose="$root/docker-compose.yml"

want="$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' \
    -e 's/^[[:space:]]*\([a-z_]*\)[[:space:]]*=[[:space:]]*\([^[:space:]]*\)[[:space:]]*$/\1=\2/' \
    "$conf" | sort)"
# the quoted words after each "-c" in the postgres service's command
got="$(awk '/^  postgres:/ {in_pg = 1; next} /^  [a-z]/ {in_pg = 0}
    in_pg && /command:/ {in_cmd = 1} in_pg && in_cmd {print} in_cmd && /\]/ {in_cmd = 0}' \
    "$compose" | grep -o '"[^"]*"' | tr -d '"' | awk 'prev == "-c" {print} {prev = $0}' | sort)"

if [ -z "$want" ]; then
    printf 'pg_settings: no setting in %s\n' "$conf" >&2
    exit 1
fi
if [ "$want" != "$got" ]; then
    printf 'pg_settings: docker-compose.yml (postgres command) and deploy/postgres/kortix.conf differ\n'
    diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") |
        sed -e 's/^< /  only in kortix.conf:     /' -e 's/^> /  only in docker-compose: /' |
        grep '^  only' || true
    exit 1
fi
grep -q 'deploy/postgres/kortix.conf' "$root/deploy/local/up.sh" || {
    printf 'pg_settings: deploy/local/up.sh does not install deploy/postgres/kortix.conf\n'
    exit 1
}
printf 'pg_settings: %d settings agree\n' "$(printf '%s\n' "$want" | wc -l)"
