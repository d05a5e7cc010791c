#!/usr/bin/env bash
# tests/check_nats_env.sh — nats-server gets the environment of deploy/nats/nats.env wherever
# Kortix starts it: docker-compose.yml's nats service reads the file (env_file) and
# deploy/local/up.sh exports its lines for nats-server (the test harness reads it too:
# unit_harness_nats_env). Run by ctest as "nats_env"; prints what is missing and exits 1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_file="$root/deploy/nats/nats.env"

vars="$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$env_file")"
if [ -z "$vars" ]; then
    printf 'nats_env: no variable in %s\n' "$env_file" >&2
    exit 1
fi
bad="$(printf '%s\n' "$vars" | grep -v '^[A-Z_][A-Z0-9_]*=[^[:space:]]*$' || true)"
if [ -n "$bad" ]; then
    printf 'nats_env: not a NAME=value line in %s: %s\n' "$env_file" "$bad" >&2
    exit 1
fi
# the env_file of the nats service in docker-compose.yml
got="$(awk '/^  nats:/ {in_nats = 1; next} /^  [a-z]/ {in_nats = 0}
    in_nats && /env_file:/ {sub(/#.*/, ""); print $2}' "$root/docker-compose.yml")"
if [ "$got" != "deploy/nats/nats.env" ]; then
    printf 'nats_env: docker-compose.yml: the nats service does not read deploy/nats/nats.env (env_file: "%s")\n' "$got"
    exit 1
fi
grep -q 'deploy/nats/nats.env' "$root/deploy/local/up.sh" || {
    printf 'nats_env: deploy/local/up.sh does not give nats-server deploy/nats/nats.env\n'
    exit 1
}
printf 'nats_env: %d variable(s), read by docker-compose.yml and up.sh\n' \
    "$(printf '%s\n' "$vars" | wc -l)"
