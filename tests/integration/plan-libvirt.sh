#!/usr/bin/env bash
# `vmsnap plan` against a REAL libvirt daemon (the project's hermetic
# fixture): a defined domain with a qcow2 and a raw disk, shut off and
# running, by name and by UUID, with and without --memory and overrides.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
requires jq qemu-img qemu-io virsh
: "${VMSNAP:?}"
mk_tmpdir
# TCG: on this machine's paravirtualised KVM a guest spins ~2.5 s in its
# BIOS; the plan does not care which accelerator runs the guest.
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
libvirt_start

qemu-img create -q -f qcow2 "$TEST_TMP/vda.qcow2" 64M
qemu-img create -q -f raw "$TEST_TMP/vdb.raw" 16M
mk_domain_xml plandom "$TEST_TMP/plandom.xml" \
    "vda:qcow2:$TEST_TMP/vda.qcow2" "vdb:raw:$TEST_TMP/vdb.raw"
libvirt_define_test_domain plandom "$TEST_TMP/plandom.xml"
uuid=$(virsh domuuid plandom | sed '/^$/d')

check() {  # check JSON JQ-EXPR DESCRIPTION
    jq -e "$2" <<<"$1" >/dev/null || { echo "$1" >&2; fail "$3"; }
}

# Shut off, by name, URI from LIBVIRT_DEFAULT_URI.
out=$("$VMSNAP" plan --json plandom) || fail "plan (shut off) exited $?"
check "$out" '.domain.kind == "libvirt" and .domain.state == "shut off"' "domain kind/state"
check "$out" ".domain.uuid == \"$uuid\" and .domain.name == \"plandom\"" "domain identity"
check "$out" '.mode == "external" and .possible and (.needs_pause | not)' "mode shut off"
check "$out" '[.disks[] | .backend] == ["qcow2-external", "qcow2-external"]' "backends"
check "$out" '.disks[0].storage_class == "qcow2-file" and .disks[1].storage_class == "image-file"' "classes"
check "$out" ".disks[1].chain[0].path == \"$TEST_TMP/vdb.raw\" and .disks[1].chain[0].virtual_size == 16777216" "raw chain"

# By UUID, with --connect instead of the environment.
uri=$LIBVIRT_DEFAULT_URI
out=$(env -u LIBVIRT_DEFAULT_URI "$VMSNAP" plan --connect "$uri" --json "$uuid") || fail "plan by uuid exited $?"
check "$out" '.domain.name == "plandom"' "lookup by UUID"

# Running: the images are locked by QEMU; inspection still works (-U).
virsh start plandom >/dev/null
out=$("$VMSNAP" plan --json plandom) || fail "plan (running) exited $?"
check "$out" '.domain.state == "running" and .mode == "external" and (.needs_pause | not)' "running external"
check "$out" '.notes | any(test("one libvirt transaction"))' "one-transaction note"

# --memory: vdb is raw, so the internal rule cannot apply; memory goes to a file.
out=$("$VMSNAP" plan --json --memory plandom) || fail "plan --memory exited $?"
check "$out" '.memory.method == "external-file" and .needs_pause and (.internal_rule | test("vdb"))' "memory external pauses"

# Overrides: internal for the qcow2 disk makes a mixed plan that pauses.
out=$("$VMSNAP" plan --json --backend vda=qcow2-internal plandom) || fail "override exited $?"
check "$out" '.mode == "mixed" and .needs_pause and .disks[0].chosen_by == "override"' "override mixed"
rc=0; out=$("$VMSNAP" plan --json --backend vdb=qcow2-internal plandom) || rc=$?
[ "$rc" = 4 ] || fail "refused override exited $rc, want 4"
check "$out" '(.possible | not) and (.problems[0] | test("vdb=qcow2-internal refused"))' "refused override"
virsh destroy plandom >/dev/null

# Errors.
expect_fail 3 "domain 'nosuchdom' not found" "$VMSNAP" plan nosuchdom
expect_fail 2 "has no disk 'vdz'" "$VMSNAP" plan --backend vdz=qcow2-external plandom
expect_fail 1 "cannot connect to libvirt" \
    "$VMSNAP" plan --connect "qemu+unix:///system?socket=$TEST_TMP/no-such-sock" plandom
virsh undefine plandom >/dev/null
echo "plan-libvirt: ok"
