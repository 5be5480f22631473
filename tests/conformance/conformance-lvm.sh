#!/usr/bin/env bash
# The conformance sequences (tests/conformance/conformance.sh) on lvm-thin and
# lvm-thick, in the LVM guest (tests/fixtures/lvm-guest.sh: the host has no
# device-mapper; the guest runs under TCG, ~0.3 s per LVM command).
# ${VMSNAP_CONFORMANCE_LVM_SEEDS:-1} seeded sequences of 20 steps per
# configuration in make check; make check-conformance runs more.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/lvm-guest.sh"
# The guest's time limit (lvmg_boot; default 900 s) for this longer run.
: "${VMSNAP_LVM_GUEST_TIMEOUT:=1800}"; export VMSNAP_LVM_GUEST_TIMEOUT
lvmg_main "$0" "$@"
# ---------------------------------------------------------- in the guest
for cfg in lvm-thin lvm-thick; do
    out=$(bash "$srcdir/tests/conformance/conformance.sh" --config "$cfg" \
            --seeds "${VMSNAP_CONFORMANCE_LVM_SEEDS:-1}" --steps "${VMSNAP_CONFORMANCE_STEPS:-20}" 2>&1) ||
        { printf '%s\n' "$out"; fail "conformance on $cfg failed (above)"; }
    printf '%s\n' "$out"
    lvmg_pass "$(tail -n 1 <<<"$out")"
done
