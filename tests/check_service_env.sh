#!/usr/bin/env bash
# tests/check_service_env.sh — deploy/local/up.sh gives each service the secrets its code reads
# and withholds the others (kx_service_env in deploy/local/lib.sh). For KX_DATABASE_URL and
# KX_JWT_SECRET: a service whose sources under services/<name>/ read the variable must get it;
# one that does not must have it removed. (up.sh withheld the database URL from the
# tool-executor, whose task-list tools and expand_message then failed with "no database".)
# Run by ctest as "service_env"; prints what is wrong and exits 1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../deploy/local/lib.sh
. "$root/deploy/local/lib.sh"
KX_PG_PORT=5433 # what kx_service_env adds to the denied ports
export KX_PG_PORT

bad=0
for s in "${KX_SERVICES[@]}"; do
    args="$(kx_service_env "$s")"
    for var in KX_DATABASE_URL KX_JWT_SECRET; do
        reads=no
        grep -rqs --include='*.c' --include='*.h' "\"$var\"" "$root/services/$s" && reads=yes
        withheld=no
        printf '%s\n' "$args" | grep -qx -- "$var" && withheld=yes
        if [ "$reads" = yes ] && [ "$withheld" = yes ]; then
            printf 'service_env: %s reads %s but up.sh withholds it\n' "$s" "$var"
            bad=1
        elif [ "$reads" = no ] && [ "$withheld" = no ]; then
            printf 'service_env: %s does not read %s but up.sh gives it\n' "$s" "$var"
            bad=1
        fi
    done
done
# the operator's denied ports are kept, Postgres' is added
deny="$(KX_SANDBOX_DENY_PORTS=6379 kx_service_env sandbox-broker | grep '^KX_SANDBOX_DENY_PORTS=' || true)"
if [ "$deny" != "KX_SANDBOX_DENY_PORTS=6379,5433" ]; then
    printf 'service_env: KX_SANDBOX_DENY_PORTS=6379 became "%s", want 6379,5433\n' "$deny"
    bad=1
fi
[ "$bad" = 0 ] && printf 'service_env: %d services, the database URL and the JWT secret where they are read\n' \
    "${#KX_SERVICES[@]}"
exit "$bad"
