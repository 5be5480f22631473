#!/usr/bin/env bash
# vmsnap demo: a private, hermetic libvirt daemon runs a VM with a qcow2 and
# a raw disk; vmsnap lists its backends and shows the snapshot plan for the
# VM shut off and running.  Nothing outside a temporary directory changes.
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

run "$VMSNAP" backends
run "$VMSNAP" plan demo-vm
run virsh start demo-vm
run "$VMSNAP" plan demo-vm
run "$VMSNAP" plan demo-vm --memory
run "$VMSNAP" plan demo-vm --backend vda=qcow2-internal
run "$VMSNAP" plan demo-vm --json
say "vmsnap plan on the domain XML file (no daemon needed)"
"$VMSNAP" plan "$TEST_TMP/demo-vm.xml" || true
run virsh destroy demo-vm
virsh undefine demo-vm >/dev/null
echo
echo "demo done: snapshot create/revert/merge/delete arrive with the engine issue;"
echo "today's backends report them as not implemented yet."
