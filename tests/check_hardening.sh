#!/usr/bin/env bash
# tests/check_hardening.sh BINARY... — fails unless every ELF binary named was built with the
# release hardening of the top-level CMakeLists.txt (run by ctest as "hardening"):
#   PIE           ELF type DYN with the PIE flag in DT_FLAGS_1 (-fPIE -pie);
#   RELRO         a GNU_RELRO segment (-Wl,-z,relro);
#   BIND_NOW      BIND_NOW in DT_FLAGS or NOW in DT_FLAGS_1 (-Wl,-z,now): the GOT is read-only
#                 once loaded;
#   stack canary  imports __stack_chk_fail (-fstack-protector-strong);
#   FORTIFY       imports at least one glibc __*_chk function (-D_FORTIFY_SOURCE with -O).
# Prints one line per binary and property that is missing, and exits 1 if any is.
set -euo pipefail

if [ $# -eq 0 ]; then
    printf 'usage: %s BINARY...\n' "$0" >&2
    exit 2
fi
command -v readelf >/dev/null || {
    printf 'check_hardening: readelf not found (binutils)\n' >&2
    exit 2
}

bad=0
this=0
missing() {
    printf 'check_hardening: %s: %s\n' "$1" "$2" >&2
    bad=1
    this=1
}

for bin in "$@"; do
    this=0
    if [ ! -f "$bin" ]; then
        missing "$bin" "no such file"
        continue
    fi
    header="$(readelf -h -W "$bin")" || {
        missing "$bin" "not an ELF file"
        continue
    }
    dynamic="$(readelf -d -W "$bin")"
    segments="$(readelf -l -W "$bin")"
    symbols="$(readelf --dyn-syms -W "$bin")"

    grep -Eq 'Type:[[:space:]]+DYN' <<<"$header" || missing "$bin" "not PIE (ELF type is not DYN)"
    grep -Eq 'FLAGS_1.*PIE' <<<"$dynamic" || missing "$bin" "not PIE (no PIE in DT_FLAGS_1)"
    grep -q 'GNU_RELRO' <<<"$segments" || missing "$bin" "no RELRO (no GNU_RELRO segment)"
    grep -Eq '\(FLAGS\).*BIND_NOW|FLAGS_1.*NOW' <<<"$dynamic" ||
        missing "$bin" "no BIND_NOW (lazy binding: -Wl,-z,now missing)"
    grep -q '__stack_chk_fail' <<<"$symbols" ||
        missing "$bin" "no stack protector (__stack_chk_fail not imported)"
    grep -Eq '__[a-z0-9_]+_chk(@|[[:space:]]|$)' <<<"$(grep -v __stack_chk_fail <<<"$symbols")" ||
        missing "$bin" "no FORTIFY (no __*_chk function imported)"
    [ "$this" -eq 0 ] && printf 'check_hardening: %s: PIE, RELRO, BIND_NOW, canary, FORTIFY\n' "$bin"
done
exit "$bad"
