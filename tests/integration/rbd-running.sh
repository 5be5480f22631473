#!/usr/bin/env bash
# A running libvirt VM on RBD network disks, through QEMU's rbd driver: vda
# finds the cluster through <host> + <config file>, vdb through <host> and a
# libvirt secret (<auth username='admin'>, the key in a ceph-type secret);
# vmsnap runs without CEPH_CONF, so vdb's key can only come from the secret.
#
# The guest writes through the running QEMU (HMP qemu-io on the virtio
# backends), and its disks are checked there:
#   create s1, s2 while running (the core pauses the VM around the RBD
#   snapshots; the report says so), snapshots read from outside;
#   revert s1 (rollback: QEMU stopped, rolled back, started again);
#   revert s2 as clones (the definition switches to the clones, keeping
#   hosts, config and auth); create s3 on the clones while running;
#   delete s2 while running (its clones are the running disks: flattened
#   through the QEMU that holds their lock); revert s3 as clones and merge
#   --max-depth 1 while running (the running clones are flattened);
#   delete s1 while running (rbd/vda and rbd/vdb hold nothing any more and
#   are removed).
# After each step the VM runs, its live and inactive definitions name the
# same images, and the guest sees the right data.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/ceph.sh"
requires jq xmllint virsh
requires_qemu_rbd
requires_rbd_backend
: "${VMSNAP:?}"
mk_tmpdir
# TCG: the guest has no OS; on this machine's paravirtualised KVM it would
# spin in its BIOS.
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
ceph_start
libvirt_start
unset VMSNAP_RBD_ROLLBACK_MAX_OBJECTS VMSNAP_RBD_REVERT_MODE VMSNAP_RBD_DELETE_CHILDREN VMSNAP_RBD_KEEP_OLD_HEAD VMSNAP_RBD_TIMEOUT
export VMSNAP_STATE_DIR=$TEST_TMP/state
DOM=rbdvm
DISKS=(vda vdb)

rbdc create --size 32M rbd/vda
rbdc create --size 32M rbd/vdb
SUUID=$(ceph_libvirt_secret)
rbd_domain_xml "$DOM" "$TEST_TMP/dom.xml" vda:rbd/vda:conf "vdb:rbd/vdb:secret=$SUUID"
libvirt_define_test_domain "$DOM" "$TEST_TMP/dom.xml"
cleanup_fn virsh -q undefine "$DOM"
out=$(virsh start "$DOM" 2>&1) || fail "virsh start $DOM: $out"

# vmsnap without CEPH_CONF: vda has its <config file>, vdb its secret.
vms ()
{
    VMS_RC=0
    VMS_OUT=$(env -u CEPH_CONF "$VMSNAP" "$@" 2>"$TEST_TMP/err") || VMS_RC=$?
    if [ "$VMS_RC" != 0 ]; then
        printf '%s\n' "$VMS_OUT" >&2; cat "$TEST_TMP/err" >&2
        fail "vmsnap $* exited $VMS_RC (output above)"
    fi
    jq -e '(.warnings // []) == []' <<<"$VMS_OUT" >/dev/null ||
        { printf '%s\n' "$VMS_OUT" >&2; fail "vmsnap $*: warnings"; }
}

domstate () { virsh -q domstate "$DOM" | head -n1; }
active () { virsh -q dumpxml --inactive "$DOM" | xmllint --xpath "string(//disk[target/@dev='$1']/source/@name)" -; }
live () { virsh -q dumpxml "$DOM" | xmllint --xpath "string(//disk[target/@dev='$1']/source/@name)" -; }

# The VM runs, on the images of its inactive definition, which kept each
# disk's hosts, config and auth.
check_vm ()
{
    local d def
    [ "$(domstate)" = running ] || fail "$1: the domain is $(domstate)"
    for d in "${DISKS[@]}"; do
        [ "$(live "$d")" = "$(active "$d")" ] || fail "$1: $d runs on $(live "$d"), defined on $(active "$d")"
    done
    def=$(virsh -q dumpxml --inactive "$DOM")
    [ "$(xmllint --xpath "string(//disk[target/@dev='vda']/source/config/@file)" - <<<"$def")" = "$CEPH_CONF" ] ||
        fail "$1: vda lost its <config file>"
    [ "$(xmllint --xpath "string(//disk[target/@dev='vdb']/auth/secret/@uuid)" - <<<"$def")" = "$SUUID" ] ||
        fail "$1: vdb lost its <auth> secret"
    [ "$(xmllint --xpath "count(//disk/source/host[@port='$CEPH_MON_PORT'])" - <<<"$def")" = 2 ] ||
        fail "$1: a disk lost its <host>"
}

# The guest writes LETTER on every disk (rbd_write_letter's layout).
guest_write ()
{
    local k
    for k in "${!DISKS[@]}"; do
        rbd_pos "$1" "$k"
        hmp_qemu_io "$DOM" "ua-${DISKS[k]}" "write -P $POS_PAT $POS_OFF 512k" >/dev/null
        hmp_qemu_io "$DOM" "ua-${DISKS[k]}" "write -P $POS_PAT $(rbd_shared_off "$k") 512k" >/dev/null
    done
    RBD_WRITTEN+=$1
    CUR_HIST="${CUR_HIST:+$CUR_HIST }$1"
}

# The guest sees state HIST (rbd_hist_ranges) on every disk.
guest_check ()
{
    local k r
    for k in "${!DISKS[@]}"; do
        rbd_hist_ranges "$k" "$1"
        for r in "${RBD_RANGES[@]}"; do
            set -- $r "$1"
            hmp_qemu_io "$DOM" "ua-${DISKS[k]}" "read -P $1 $2 $3" >/dev/null ||
                fail "the guest's ${DISKS[k]} does not hold state '$4'"
            set -- "$4"
        done
    done
}

# The guest does NOT see state HIST on vda (the checks can fail).
guest_mismatch ()
{
    if ( guest_check "$1" ) >/dev/null 2>&1; then fail "the guest unexpectedly holds '$1'"; fi
}

snap_check ()   # NAME HIST: the snapshot read from outside, via its locator
{
    local k loc
    vms list --json "$DOM"
    for k in "${!DISKS[@]}"; do
        loc=$(jq -r --arg s "$1" --arg t "${DISKS[k]}" '.snapshots[] | select(.name == $s) | .disks[]
                                                     | select(.target == $t) | .locator' <<<"$VMS_OUT")
        rbd_check_hist "${loc#rbd:}" "$k" "$2"
    done
}

T0=$(date +%s%N)
step () { echo "  [$(( ($(date +%s%N) - T0) / 1000000 )) ms] $*"; }
CUR_HIST="" RBD_WRITTEN=""
check_vm start

guest_write A
vms create --json "$DOM" s1
json=$VMS_OUT
jq -e '.online == "pause" and .domain_state == "running" and .pause_ms > 0
       and all(.disks[]; .backend == "rbd" and (.note | startswith("RBD snapshot")))' <<<"$json" >/dev/null ||
    { echo "$json" >&2; fail "create s1 while running: report"; }
echo "    create s1 while running: paused $(jq -r .pause_ms <<<"$json") ms"
check_vm "create s1"
snap_check s1 "A"
step "write A, create s1 (running)"

guest_write B
vms create --json "$DOM" s2
check_vm "create s2"
snap_check s2 "A B"
guest_write C
guest_check "A B C"
step "write B, create s2, write C (running)"

vms revert --json "$DOM" s1
json=$VMS_OUT
jq -e '.online == "restart" and .domain_state == "running"
       and all(.disks[]; .note | startswith("rolled"))' <<<"$json" >/dev/null ||
    { echo "$json" >&2; fail "revert s1: report"; }
[ "$(active vda)" = rbd/vda ] && [ "$(active vdb)" = rbd/vdb ] || fail "revert s1 (rollback) changed the images"
check_vm "revert s1"
CUR_HIST="A"
guest_check "A"
guest_mismatch "A B C"
step "revert s1 (rollback; the VM runs again)"

VMSNAP_RBD_REVERT_MODE=clone vms revert --json "$DOM" s2
json=$VMS_OUT
jq -e '.domain_state == "running" and all(.disks[]; (.note | startswith("cloned")) and (.new_source | test("\\.vmsnap-")))' \
    <<<"$json" >/dev/null || { echo "$json" >&2; fail "revert s2 (clone): report"; }
for d in "${DISKS[@]}"; do
    [[ $(active "$d") == "rbd/$d.vmsnap-"* ]] || fail "revert s2: $d is defined on $(active "$d")"
done
check_vm "revert s2"
CUR_HIST="A B"
guest_check "A B"
step "revert s2 (clones; the definition switched)"

guest_write D
vms create --json "$DOM" s3
check_vm "create s3"
snap_check s3 "A B D"
step "write D, create s3 on the clones (running)"

vms delete --json "$DOM" s2
json=$VMS_OUT
jq -e 'all(.disks[]; .note | test("flattened its clone"))' <<<"$json" >/dev/null ||
    { echo "$json" >&2; fail "delete s2 while running: the running clones were not flattened"; }
for d in "${DISKS[@]}"; do
    [ "$(rbdc info --format json "$(active "$d")" | jq -r '.parent // "none"')" = none ] ||
        fail "delete s2: $d's image is still a clone"
done
check_vm "delete s2"
guest_check "A B D"
snap_check s1 "A"
snap_check s3 "A B D"
step "delete s2 while running (the running clones flattened through QEMU)"

VMSNAP_RBD_REVERT_MODE=clone vms revert --json "$DOM" s3
check_vm "revert s3"
CUR_HIST="A B D"
guest_check "A B D"
vms merge --json --max-depth 1 "$DOM"
json=$VMS_OUT
jq -e 'all(.disks[]; .note | test("flattened clone"))' <<<"$json" >/dev/null ||
    { echo "$json" >&2; fail "merge --max-depth 1 while running: report"; }
for d in "${DISKS[@]}"; do
    [ "$(rbdc info --format json "$(active "$d")" | jq -r '.parent // "none"')" = none ] ||
        fail "merge: $d's image is still a clone"
done
check_vm "merge"
guest_write E
guest_check "A B D E"
step "revert s3 (clones), merge --max-depth 1 while running, write E"

vms delete --json "$DOM" s1
json=$VMS_OUT
jq -e 'all(.disks[]; .note | test("is removed"))' <<<"$json" >/dev/null ||
    { echo "$json" >&2; fail "delete s1: the emptied original images should go"; }
for img in rbd/vda rbd/vdb; do
    if timeout 30 rbd info "$img" >/dev/null 2>&1; then fail "$img still exists"; fi
done
check_vm "delete s1"
guest_check "A B D E"
snap_check s3 "A B D"
step "delete s1 while running (the original images removed)"

out=$(virsh destroy "$DOM" 2>&1) || fail "virsh destroy: $out"
for k in "${!DISKS[@]}"; do rbd_check_hist "$(active "${DISKS[k]}")" "$k" "A B D E"; done
echo "rbd-running: ok"
