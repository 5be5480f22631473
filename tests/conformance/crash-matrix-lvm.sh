#!/usr/bin/env bash
# The crash matrix (tests/conformance/conformance.sh --crash) on lvm-thin and
# lvm-thick, in the LVM guest (tests/fixtures/lvm-guest.sh; TCG): every
# journaled step of create, revert, delete and merge, and
# ${VMSNAP_CONFORMANCE_LVM_KILLS:-1} random SIGKILL(s) per operation.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/lvm-guest.sh"
# The guest's time limit (lvmg_boot; default 900 s) for this longer run.
: "${VMSNAP_LVM_GUEST_TIMEOUT:=2400}"; export VMSNAP_LVM_GUEST_TIMEOUT
lvmg_main "$0" "$@"
# ---------------------------------------------------------- in the guest
for cfg in lvm-thin lvm-thick; do
    out=$(bash "$srcdir/tests/conformance/conformance.sh" --config "$cfg" --crash \
            --kills "${VMSNAP_CONFORMANCE_LVM_KILLS:-1}" 2>&1) ||
        { printf '%s\n' "$out"; fail "crash matrix on $cfg failed (above)"; }
    printf '%s\n' "$out"
    lvmg_pass "$(tail -n 1 <<<"$out")"
done
