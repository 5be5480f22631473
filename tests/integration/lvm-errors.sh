#!/usr/bin/env bash
# LVM refusals and damage, in the LVM guest: every refused or failed
# operation says why with the numbers and what to do, and leaves the disks,
# the snapshots, the catalog and the VG's LVs exactly as they were
# (tests/fixtures/lvm/engine-lvm.sh checks them).  A domain with vda on a
# thin LV and vdb on a thick LV:
#  - thin pool fuller than VMSNAP_LVM_THIN_MAX_PERCENT: create refused
#  - VG without space for the COW snapshot: vda's thin snapshot was taken
#    first, the core rolls it back
#  - the thick LV held open: revert refused after vda's thin revert was
#    done, which the core undoes (the LV gets its name back)
#  - a merge deferred by LVM (made by hand): reported, operations refused
#  - a COW snapshot that overflowed: reported invalid (plan, merge note),
#    revert refused, delete works
#  - other snapshots extended before a merge would overflow them (refused
#    without room)
#  - a thick revert interrupted with LVM's merge deferred: recovered
#  - bad policy values; a block device that is not an LV
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
eng_create s1
eng_write B
lvt_check "setup: s1 (A), the disks hold A B"

# refused CODE PATTERN ARGS...: vmsnap ARGS fails with exit CODE and a
# message containing PATTERN, and nothing is pending.
refused ()
{
    local code=$1 pat=$2
    shift 2
    vms_rc "$@"
    if [ "$VMS_RC" != "$code" ] || [[ $VMS_ERR != *"$pat"* ]]; then
        printf '%s\n' "$VMS_OUT" "$VMS_ERR" >&2
        fail "vmsnap $*: expected exit $code and '$pat' (got exit $VMS_RC, output above)"
    fi
    echo "    refused as expected: $VMS_ERR"
}

# --- the thin pool above the limit
pool=$(lvmg_field vg/pool data_percent)
VMSNAP_LVM_THIN_MAX_PERCENT=1 refused 1 "above the limit of 1% (VMSNAP_LVM_THIN_MAX_PERCENT)" \
    create "$ENG_DOM" s2
[[ $VMS_ERR == *"thin pool vg/pool is ${pool}% full (data; metadata "* ]] ||
    fail "the message does not give the pool's usage ($pool%): $VMS_ERR"
[[ $VMS_ERR == *"lvextend -L+SIZE vg/pool"* && $VMS_ERR == *"nothing was changed"* ]] ||
    fail "the message does not say what to do: $VMS_ERR"
lvt_check "create refused: pool at $pool% above a limit of 1%"
# Bad values are configuration errors (vmsnap.conf(5)): exit 2, before
# anything is touched.
VMSNAP_LVM_THIN_MAX_PERCENT=abc refused 2 "VMSNAP_LVM_THIN_MAX_PERCENT='abc' is not a percentage" \
    create "$ENG_DOM" s2
VMSNAP_LVM_SNAPSHOT_SIZE=lots refused 2 "VMSNAP_LVM_SNAPSHOT_SIZE='lots' is neither" \
    create "$ENG_DOM" s2
VMSNAP_LVM_SNAPSHOT_SIZE=0% refused 2 "VMSNAP_LVM_SNAPSHOT_SIZE='0%'" create "$ENG_DOM" s2
refused 2 "option lvm.snapshot-size='lots' is neither" create --lvm-snapshot-size lots "$ENG_DOM" s2
lvt_check "bad policy values refused"

# --- the VG without space: the thin disk (first) succeeds, the thick one
# fails, the core rolls the thin snapshot back.
lvmg_lvm lvcreate -q -y -l 100%FREE -n filler vg
refused 1 "volume group vg has 0 bytes free, but a snapshot of vg/thick (64.0 MiB) needs 16.0 MiB (20% of the LV, whole extents)" \
    create "$ENG_DOM" s2
[[ $VMS_ERR == *"rolled back"* && $VMS_ERR == *"vgextend vg"* && $VMS_ERR == *"VMSNAP_LVM_SNAPSHOT_SIZE"* ]] ||
    fail "the message does not say it was rolled back and what to do: $VMS_ERR"
lvmg_lvm lvremove -q -y vg/filler
lvt_check "create refused: VG without space (the thin snapshot of vda rolled back)"

# --- the thick LV open: vda's thin revert (rename, new LV) is undone.
exec 3</dev/vg/thick
refused 1 "LV vg/thick is open" revert "$ENG_DOM" s1
exec 3<&-
[[ $VMS_ERR == *"rolled back"* ]] || fail "the revert was not rolled back: $VMS_ERR"
lvt_check "revert refused: the thick LV is open (the thin revert undone)"
exec 3</dev/vg/thin
refused 1 "LV vg/thin is open" revert "$ENG_DOM" s1
exec 3<&-
lvt_check "revert refused: the thin LV is open"

# --- a merge LVM deferred (done by hand with the LV open): reported.
eng_create s2
exec 3</dev/vg/thick
out=$(lvm lvconvert -y --merge vg/thick.s2 2>&1) || fail "lvconvert --merge: $out"
exec 3<&-
[[ $out == *"Delaying merge"* ]] || fail "LVM did not defer the merge: $out"
refused 1 "LV vg/thick has a merge of vg/thick.s2 pending" create "$ENG_DOM" s3
[[ $VMS_ERR == *"lvchange -an vg/thick && lvchange -ay vg/thick"* ]] ||
    fail "the message does not say how to run the merge: $VMS_ERR"
refused 1 "LV vg/thick has a merge of vg/thick.s2 pending" revert "$ENG_DOM" s1
vms_ok plan --json "$ENG_DOM"
jq_check "$VMS_OUT" '.disks[] | select(.target == "vdb") | .limitations | any(test("merge of vg/thick.s2 into this LV is pending"))' \
    "plan does not report the pending merge"
lvmg_pass "a deferred merge is reported by create, revert and plan"
lvmg_lvm lvchange -an vg/thick
lvmg_lvm lvchange -ay vg/thick
for (( i = 0; i < 100; i++ )); do lvmg_lv_exists vg/thick.s2 || break; sleep 0.2; done
! lvmg_lv_exists vg/thick.s2 || fail "the deferred merge did not run"
# The merge gave vdb s2's contents, which are its current ones.
vms_ok delete --json "$ENG_DOM" s2
lvt_note vdb '^vg/thick\.s2 was already gone$'
eng_forget s2
ENG_DIRTY=1
lvt_check "after the deferred merge ran: s2 deleted (its thick LV was already gone)"

# --- overflow: a 4 MiB COW snapshot, then 8 MiB written.
VMSNAP_LVM_SNAPSHOT_SIZE=4M vms_ok create --json "$ENG_DOM" s3
lvt_note vdb 'with 4\.0 MiB of COW space'
SNAP_HIST[s3]=$CUR_HIST SNAP_PARENT[s3]=$ENG_CURRENT ENG_CURRENT=s3 ENG_DIRTY=0
lvt_check "s3 with a 4 MiB COW snapshot"
eng_write D 8M
[ "$(lvmg_field vg/thick.s3 lv_attr | cut -c5)" = I ] || fail "vg/thick.s3 is not invalid: $(lvm lvs vg 2>&1)"
vms_ok plan --json "$ENG_DOM"
jq_check "$VMS_OUT" '.disks[] | select(.target == "vdb") | .details.snapshots | test("thick.s3 \\(s3\\): INVALID: overflowed its 4.0 MiB of COW space")' \
    "plan does not show s3 invalid"
vms_ok merge --json "$ENG_DOM"
lvt_note vdb 'vg/thick\.s3: INVALID: overflowed its 4\.0 MiB of COW space'
refused 1 "snapshot vg/thick.s3 (snapshot 's3') is INVALID: it overflowed its 4.0 MiB of COW space" \
    revert "$ENG_DOM" s3
[[ $VMS_ERR == *"delete it (vmsnap delete)"* && $VMS_ERR == *"rolled back"* ]] || fail "revert of an invalid snapshot: $VMS_ERR"
eng_check_state "$CUR_HIST"
lvmg_pass "an invalid snapshot is reported (plan, merge) and refused for revert; the disks are unchanged"
vms_ok delete --json "$ENG_DOM" s3
lvt_note vdb 'COW snapshot vg/thick\.s3 \(INVALID: overflowed its 4\.0 MiB of COW space\) removed with lvremove'
eng_forget s3
lvt_check "the invalid snapshot deleted"

# --- a thick revert merges blocks into the LV that its other snapshots must
# keep: s4, an 8 MiB COW snapshot, could not hold what merging s1 rewrites
# (B and D, ~10 MiB): it is extended first, or the revert is refused when
# the VG has no room for that.
VMSNAP_LVM_SNAPSHOT_SIZE=8M eng_create s4
lvmg_lvm lvcreate -q -y -l 100%FREE -n filler vg
refused 1 "merging vg/thick.s1 into vg/thick copies the blocks it rewrites into the LV's other snapshots, which need" \
    revert "$ENG_DOM" s1
[[ $VMS_ERR == *"(vg/thick.s4), but VG vg has 0 bytes free"* && $VMS_ERR == *"rolled back"* ]] || fail "revert without room: $VMS_ERR"
lvmg_lvm lvremove -q -y vg/filler
lvt_check "revert refused: no room to extend the other snapshots"
# The same revert, interrupted right after the extension (its 6th journaled
# step: vda's plan, rename and new LV, the core's disk-vda, vdb's plan and
# "extended"),
# then the merge started by hand with the LV held open, so LVM defers it:
# what a crash inside the merge, or another process opening the LV at the
# wrong moment, leaves.  Recovery finds the snapshot merging, reactivates
# the LV (nothing holds it now), polls the merge to its end and creates the
# snapshot again.
rc=0
VMSNAP_TEST_CRASH_AFTER=6 "$VMSNAP" revert "$ENG_DOM" s1 >"$TEST_TMP/crash.out" 2>&1 || rc=$?
[ "$rc" = 99 ] || { cat "$TEST_TMP/crash.out" >&2; fail "revert with VMSNAP_TEST_CRASH_AFTER=6 exited $rc"; }
journal=$VMSNAP_STATE_DIR/$LVT_UUID/journal
grep -q '^done=planned;extended;$' <<<"$(grep -A20 '^\[disk.vdb\]' "$journal")" ||
    { cat "$journal" >&2; fail "the interrupted revert did not stop right after vdb's extension"; }
exec 3</dev/vg/thick
out=$(lvm lvconvert -y --merge vg/thick.s1 2>&1) || fail "lvconvert --merge: $out"
exec 3<&-
[[ $out == *"Delaying merge"* ]] || fail "LVM did not defer the merge: $out"
vms_ok list --json "$ENG_DOM"
jq_check "$VMS_OUT" '.pending.operation == "revert"' "list does not show the interrupted revert"
vms_ok recover --json "$ENG_DOM"
jq_check "$VMS_OUT" '.recovered == "revert" and .result == "finished"' "recover did not finish the revert"
CUR_HIST=${SNAP_HIST[s1]} ENG_CURRENT=s1 ENG_DIRTY=0
size=$(lvmg_field vg/thick.s4 lv_size)
[ "$size" -gt $(( 8 << 20 )) ] || fail "vg/thick.s4 was not extended (still $size bytes)"
lvt_check "revert s1 (s4 extended first) interrupted, its merge deferred by LVM, recovered"

# --- a block device that is not an LV is left to other backends.
lvmg_block_domain pv "$TEST_TMP/pv.xml" "vda:/dev/vda"
vms_ok plan --json "$TEST_TMP/pv.xml"
jq_check "$VMS_OUT" '.disks[0].candidates[] | select(.backend == "lvm") | .fitness == "cannot" and (.reason | test("/dev/vda is not a device-mapper device, so not an LVM logical volume"))' \
    "plan: the lvm backend's reason for a plain block device"
lvmg_pass "a plain block device is left to other backends, with the reason"
echo "lvm-errors: ok"
