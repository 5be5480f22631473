#!/usr/bin/env bash
# The engine's scenario on LVM, in the LVM guest (tests/fixtures/lvm-guest.sh):
# one domain (an XML file) with vda on a thin LV and vdb on a thick LV, so
# every operation runs a thin and a classic snapshot side by side.  Write A,
# s1, write B, s2, write C, s3; revert s1, revert s3; revert s1, write D, s4
# (a branch); delete s2; delete s1; merge.  After every step: the disks'
# contents, every snapshot's contents read from its LV, `vmsnap list`, the
# VG's LVs and their tags (tests/fixtures/lvm/engine-lvm.sh); at the end,
# every snapshot by reverting to it.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/lvm-guest.sh"
lvmg_main "$0" "$@"
# ---------------------------------------------------------- in the guest
. "$srcdir/tests/fixtures/engine.sh"
. "$srcdir/tests/fixtures/lvm/engine-lvm.sh"
lvt_init

eng_write A
eng_expect_mismatch ""
lvt_check "write A"

eng_create s1 "first snapshot"
lvt_note vda '^thin snapshot vg/thin\.s1 of vg/thin \(pool vg/pool: data [0-9.]+%, metadata [0-9.]+%\)$'
lvt_note vdb '^COW snapshot vg/thick\.s1 of vg/thick with 16\.0 MiB of COW space'
lvt_check "create s1"
[ "${LOCS[s1.vda]}" = lvm:vg/thin.s1 ] && [ "${LOCS[s1.vdb]}" = lvm:vg/thick.s1 ] ||
    fail "s1's locators are ${LOCS[s1.vda]} and ${LOCS[s1.vdb]}"
lvmg_pass "s1: locators lvm:vg/thin.s1 and lvm:vg/thick.s1, 20% COW space (16 MiB)"

eng_write B
eng_expect_mismatch "A"
eng_create s2
eng_write C
eng_expect_mismatch "A B"
eng_create s3
lvt_check "write B, create s2, write C, create s3"

eng_revert s1
lvt_note vda '^vg/thin is now a new thin snapshot of vg/thin\.s1 \(snapshot .s1.\)'
lvt_note vdb '^merged snapshot vg/thick\.s1 \(.s1.\) into vg/thick and created it again'
eng_expect_mismatch "A B C"
lvt_check "revert s1"

eng_revert s3
eng_expect_mismatch "A"
lvt_check "revert s3"

eng_revert s1
eng_write D
eng_expect_mismatch "A"
eng_create s4
lvt_check "revert s1, write D, create s4 (a branch)"

vms_ok delete --json "$ENG_DOM" s2
lvt_note vda '^thin snapshot vg/thin\.s2 removed with lvremove'
lvt_note vdb '^COW snapshot vg/thick\.s2 \([0-9.]+% of 16\.0 MiB COW space used\) removed with lvremove'
jq_check "$VMS_OUT" 'all(.disks[]; .kept == false)' "delete s2: a disk was kept"
eng_forget s2
expect_fail 3 "no snapshot named 's2'" "$VMSNAP" revert "$ENG_DOM" s2
lvt_check "delete s2"

vms_ok delete --json "$ENG_DOM" s1
eng_forget s1
lvt_check "delete s1 (parent of s3 and s4: nothing is kept on LVM)"

vms_ok merge --json "$ENG_DOM"
lvt_note vda '^nothing to consolidate: LVM snapshots do not form chains.*pool vg/pool: data'
lvt_note vdb '^nothing to consolidate: LVM snapshots do not form chains.*vg/thick\.s[34]: [0-9.]+% of 16\.0 MiB COW space used'
lvt_check "merge (nothing to consolidate)"

lvt_verify_reverts
lvt_check "after reverting to every snapshot"
echo "lvm-scenario: ok"
