#!/usr/bin/env bash
# A block job that fails while the domain runs.  The domain's image (vda,
# qcow2) lives on a small tmpfs, mounted before the private libvirtd starts
# so that the daemon's mount namespace (and QEMU) sees it.  A (1 MiB) s1,
# B (6 MiB) s2, C (4 MiB) in the active layer; the file system is then
# filled up, and deleting s2 needs a block job that writes several MiB
# (an active commit into s2's image, or a pull into the active layer):
#   - vmsnap delete fails (exit 1) with an error naming the disk;
#   - the domain keeps running, with its data (read inside the guest);
#   - the catalog still lists s2, or lists the delete as pending; s1's
#     image still holds s1's data; a snapshot still listed as such holds
#     its own data (a half-done commit must not be passed off as s2);
#   - with space again, `vmsnap recover` finishes (or rolls back) the
#     delete; then the current data, every snapshot (reverting to it while
#     running), list/chain, and no stray file on the tmpfs.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io virsh xmllint df
require_root
: "${VMSNAP:?}"
mk_tmpdir
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}

fs=$TEST_TMP/fs
mkdir "$fs"
mount -t tmpfs -o size=40m,mode=0700 vmsnap-test-fs "$fs" 2>"$TEST_TMP/mount.err" ||
    skip_or_fail "cannot mount a tmpfs on $fs: $(cat "$TEST_TMP/mount.err")"
# Registered before libvirt_start: runs after libvirt_stop.
cleanup_fn umount "$fs"
libvirt_start

qemu-img create -q -f qcow2 "$fs/vda.qcow2" 64M
mk_domain_xml onfail "$TEST_TMP/onfail.xml" "vda:qcow2:$fs/vda.qcow2"
libvirt_define_test_domain onfail "$TEST_TMP/onfail.xml"
cleanup_fn virsh -q undefine onfail
out=$(virsh start onfail 2>&1) || fail "virsh start onfail: $out"

ENG_DOM=onfail ENG_KIND=running ENG_DISKS=(vda) ENG_IMG_DIR=$fs
VMSNAP_STATE_DIR=$TEST_TMP/state
eng_init
ENG_T0=$(date +%s%N)

eng_write A 1M
eng_create s1
eng_write B 6M
eng_create s2
eng_write C 4M
eng_check_state "A B C"
eng_check_views
eng_check_locators
eng_step "A s1, B s2, C (running, images on a 40 MiB tmpfs)"

avail=$(df -B1 --output=avail "$fs" | tail -n 1)
fallocate -l $(( avail - (512 << 10) )) "$fs/filler" 2>/dev/null ||
    dd if=/dev/zero of="$fs/filler" bs=64k count=$(( (avail - (512 << 10)) / 65536 )) status=none
echo "  tmpfs: $(df -h --output=used,avail "$fs" | tail -n 1 | tr -s ' ')"

rc=0
out=$("$VMSNAP" delete --json onfail s2 2>&1) || rc=$?
printf '%s\n' "$out" | sed 's/^/    | /'
[ "$rc" = 1 ] || { printf '%s\n' "$out" >&2; fail "delete s2 with a full target: exit $rc, want 1"; }
[[ $out == *"disk vda"* ]] || fail "the error does not name the disk (vda)"
[[ $out == *"block commit"* || $out == *"block pull"* ]] || fail "the error does not say which block job failed"
[[ $out == *"vmsnap recover"* ]] || fail "the error does not say to run vmsnap recover"
eng_step "delete s2 on a full file system: exit 1"

# The domain runs on, with its data.
[ "$(eng_domstate)" = running ] || fail "after the failed block job onfail is '$(eng_domstate)'"
eng_check_live_def
eng_check_state "A B C"
eng_expect_mismatch "A B"
# What the catalog says.
vms_ok list --json onfail
json=$VMS_OUT
echo "  list: $(jq -c '{snapshots: [.snapshots[].name], current, pending}' <<<"$json" | cut -c1-300)"
s1loc=$(jq -r '.snapshots[] | select(.name == "s1") | .disks[0].locator' <<<"$json")
[ -n "$s1loc" ] && [ "$s1loc" != null ] || fail "s1 is no longer listed"
eng_check_image "${s1loc#*:}" "${s1loc%%:*}" 0 "A"
if jq -e '.pending != null' <<<"$json" >/dev/null; then
    jq_check "$json" '.pending.operation == "delete" and .pending.snapshot == "s2"' \
        "list shows a pending operation that is not the delete of s2"
    vms_ok list onfail
    [[ $VMS_OUT == *"PENDING: delete s2"* ]] || { echo "$VMS_OUT" >&2; fail "list (text) does not show the pending delete"; }
else
    # Not pending: s2 must be an ordinary snapshot again, whole.
    s2loc=$(jq -r '.snapshots[] | select(.name == "s2") | .disks[0].locator' <<<"$json")
    [ -n "$s2loc" ] && [ "$s2loc" != null ] || fail "the failed delete is not pending, yet s2 is gone"
    eng_check_image "${s2loc#*:}" "${s2loc%%:*}" 0 "A B"
fi
eng_step "still running with A B C; catalog consistent"

# Space again: recover.
rm -f "$fs/filler"
vms_ok recover --json onfail
echo "  recover: $(jq -c . <<<"$VMS_OUT" | cut -c1-300)"
vms_ok list --json onfail
if jq -e '[.snapshots[].name] | index("s2") == null' <<<"$VMS_OUT" >/dev/null; then
    eng_forget s2
    echo "  recover finished the delete"
else
    echo "  recover rolled the delete back"
fi
eng_check_state "A B C"
eng_check_views
eng_check_locators
vms_ok revert onfail s1
CUR_HIST="A" ENG_CURRENT=s1 ENG_DIRTY=0
eng_verify_all
[ "$(eng_domstate)" = running ] || fail "onfail is not running at the end"
eng_step "recover, then every snapshot"

# And the delete that failed works now (if it is still to be done).
if [ -n "${SNAP_HIST[s2]+x}" ]; then
    vms_ok delete --json onfail s2
    eng_forget s2
    eng_verify_all
fi
echo "online-blockjob-fail: ok"
