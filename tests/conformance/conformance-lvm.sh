#!/usr/bin/env bash
# The conformance program (tests/conformance/conformance.sh) on lvm-thin and
# lvm-thick, in the LVM guest (tests/fixtures/lvm-guest.sh: the host has no
# device-mapper; the guest runs under TCG, ~0.3 s per LVM command), both
# configurations in one guest boot:
#   sequences (default): ${VMSNAP_CONFORMANCE_LVM_SEEDS:-1} seeded sequences
#     of ${VMSNAP_CONFORMANCE_STEPS:-20} steps per configuration (make check;
#     make check-conformance runs 50);
#   VMSNAP_CONFORMANCE_LVM_MODE=crash (crash-matrix-lvm.sh): the crash
#     matrix, ${VMSNAP_CONFORMANCE_LVM_KILLS:-1} random SIGKILL(s) per
#     operation.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/lvm-guest.sh"
# The guest's time limit (lvmg_boot; default 900 s) for these longer runs.
if [ "${VMSNAP_CONFORMANCE_LVM_MODE:-}" = crash ]; then
    : "${VMSNAP_LVM_GUEST_TIMEOUT:=2400}"
else
    : "${VMSNAP_LVM_GUEST_TIMEOUT:=1800}"
fi
export VMSNAP_LVM_GUEST_TIMEOUT
lvmg_main "$0" "$@"
# ---------------------------------------------------------- in the guest
for cfg in lvm-thin lvm-thick; do
    if [ "${VMSNAP_CONFORMANCE_LVM_MODE:-}" = crash ]; then
        args=(--crash --kills "${VMSNAP_CONFORMANCE_LVM_KILLS:-1}")
    else
        args=(--seeds "${VMSNAP_CONFORMANCE_LVM_SEEDS:-1}" --steps "${VMSNAP_CONFORMANCE_STEPS:-20}")
    fi
    # Streamed to the console as it runs (a guest killed by its time limit
    # still shows the last step it reached), kept for the summary line.
    log=$TEST_TMP/conformance-$cfg.log
    bash "$srcdir/tests/conformance/conformance.sh" --config "$cfg" "${args[@]}" 2>&1 | tee "$log" ||
        fail "conformance.sh --config $cfg ${args[*]} failed (above)"
    lvmg_pass "$(tail -n 1 "$log")"
done
