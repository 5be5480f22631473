#!/usr/bin/env bash
# vmsnap demo: a private, hermetic libvirt daemon runs a VM with a qcow2 and
# a raw disk; vmsnap lists its backends and shows the snapshot plan for the
# VM shut off and running.  Nothing outside a temporary directory changes.
# Then demo/mixed.sh: one consistent snapshot of a running Linux guest on
# qcow2 + raw + RBD disks, with its pause window.
#
#   demo/demo.sh [BUILD-DIR]     (default: build; ./setup.sh demo runs it)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
VMSNAP=$build/tools/vmsnap
srcdir=$top
. "$top/tests/fixtures/functions.sh"
. "$top/tests/fixtures/libvirt.sh"
[ -x "$VMSNAP" ] || fail "no vmsnap in $build: build first (./setup.sh demo)"
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@" || echo "(exit status $?)"; }

mk_tmpdir
libvirt_start
echo "private libvirtd: $LIBVIRT_DEFAULT_URI"

qemu-img create -q -f qcow2 "$TEST_TMP/demo-vda.qcow2" 256M
qemu-img create -q -f raw "$TEST_TMP/demo-vdb.raw" 64M
img_write "$TEST_TMP/demo-vda.qcow2" qcow2 0xa1 0 1M
img_write "$TEST_TMP/demo-vdb.raw" raw 0xb1 0 1M
mk_domain_xml demo-vm "$TEST_TMP/demo-vm.xml" \
    "vda:qcow2:$TEST_TMP/demo-vda.qcow2" "vdb:raw:$TEST_TMP/demo-vdb.raw"
libvirt_define_test_domain demo-vm "$TEST_TMP/demo-vm.xml"

active() {  # the active image of disk $1, from the libvirt definition
    virsh domblklist demo-vm --details | awk -v t="$1" '$3 == t { print $4 }'
}
fmt_of() {  # the demo's images: *.raw are raw, everything else qcow2
    case "$1" in *.raw) echo raw ;; *) echo qcow2 ;; esac
}
show_data() {  # what the guest would read at offset 0 of each disk
    local t f p
    for t in vda vdb; do
        f=$(active "$t")
        for p in 0xa1 0xa2 0xa3 0xb1 0xb2 0xb3; do
            if ( img_read "$f" "$(fmt_of "$f")" "$p" 0 1M ) >/dev/null 2>&1; then
                echo "    $t reads pattern $p (active image $(basename "$f"))"; break
            fi
        done
    done
}
write_both() {  # write_both VDA-PATTERN VDB-PATTERN (shut-off domain: qemu-io on the active images)
    local a b
    a=$(active vda) b=$(active vdb)
    img_write "$a" "$(fmt_of "$a")" "$1" 0 1M
    img_write "$b" "$(fmt_of "$b")" "$2" 0 1M
    echo "    wrote $1 to vda, $2 to vdb"
}
export VMSNAP_STATE_DIR=$TEST_TMP/state

run "$VMSNAP" backends
run "$VMSNAP" plan demo-vm
run virsh start demo-vm
run "$VMSNAP" plan demo-vm --memory
run "$VMSNAP" plan demo-vm --backend vda=qcow2-internal
run virsh destroy demo-vm

say "snapshots of the shut-off VM: A, s1, B, s2, C, s3"
show_data
run "$VMSNAP" create demo-vm s1 --description "pattern A"
write_both 0xa2 0xb2
run "$VMSNAP" create demo-vm s2 --description "pattern B"
write_both 0xa3 0xb3
run "$VMSNAP" create demo-vm s3 --description "pattern C"
run "$VMSNAP" list demo-vm --tree
run "$VMSNAP" revert demo-vm s1
show_data
say "a branch: write B again on top of s1 and snapshot it"
write_both 0xa2 0xb2
run "$VMSNAP" create demo-vm s4 --description "branch from s1"
run "$VMSNAP" list demo-vm --tree
run "$VMSNAP" chain demo-vm
run "$VMSNAP" delete demo-vm s2
run "$VMSNAP" delete demo-vm s1
run "$VMSNAP" merge demo-vm --max-depth 1
run "$VMSNAP" list demo-vm --tree
run "$VMSNAP" chain demo-vm
run "$VMSNAP" revert demo-vm s3
show_data
run virsh domblklist demo-vm

say "the same while the VM runs: data written and read inside the running guest"
live_write() {  # live_write VDA-PATTERN VDB-PATTERN
    hmp_qemu_io demo-vm ua-vda "write -P $1 0 1M" >/dev/null
    hmp_qemu_io demo-vm ua-vdb "write -P $2 0 1M" >/dev/null
    echo "    the running guest wrote $1 to vda, $2 to vdb"
}
live_data() {  # what the running guest reads at offset 0 of each disk
    local t p
    for t in vda vdb; do
        for p in 0xa1 0xa2 0xa3 0xa4 0xa5 0xb1 0xb2 0xb3 0xb4 0xb5; do
            if ( hmp_qemu_io demo-vm "ua-$t" "read -P $p 0 1M" ) >/dev/null 2>&1; then
                echo "    the running guest reads pattern $p on $t"; break
            fi
        done
    done
}
run virsh start demo-vm
live_write 0xa4 0xb4
run "$VMSNAP" create demo-vm r1 --description "running, pattern 4"
live_write 0xa5 0xb5
run "$VMSNAP" create demo-vm r2 --description "running, pattern 5"
run "$VMSNAP" list demo-vm --tree
run "$VMSNAP" revert demo-vm r1
run virsh domstate demo-vm
live_data
run "$VMSNAP" delete demo-vm s3
run "$VMSNAP" delete demo-vm r1
run "$VMSNAP" merge demo-vm --max-depth 1
run "$VMSNAP" list demo-vm --tree
run "$VMSNAP" chain demo-vm
live_data
say "libvirt itself on the same running VM: an external snapshot, then revert to it"
run virsh snapshot-create-as demo-vm v1 --disk-only --atomic \
    --diskspec "vda,file=$TEST_TMP/virsh-vda.qcow2" --diskspec "vdb,file=$TEST_TMP/virsh-vdb.qcow2"
run virsh snapshot-revert demo-vm v1
run virsh destroy demo-vm
virsh undefine --snapshots-metadata demo-vm >/dev/null
echo
echo "demo done: every snapshot above was created, reverted, deleted and merged"
echo "on real images, shut off and while the VM ran; libvirt 9 itself refuses"
echo "to revert to an external snapshot (above) and to delete one with --children."
libvirt_stop

# Part 2: one consistent instant across qcow2 + raw + RBD (demo/mixed.sh).
exec "$top/demo/mixed.sh" "$build"
