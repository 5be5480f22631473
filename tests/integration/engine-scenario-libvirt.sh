#!/usr/bin/env bash
# The engine scenario of engine-scenario.sh on a SHUT-OFF domain of the
# hermetic libvirt daemon (tests/fixtures/libvirt.sh): the definition is
# changed through libvirt, and the active images are read back with
# `virsh domblklist`.  The domain is never started during the scenario; at
# the end it is started (TCG) to check that every state-changing command
# refuses a running domain with exit 4 and changes nothing.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io virsh xmllint
: "${VMSNAP:?}"
mk_tmpdir
# TCG: the guest has no OS; on this machine's paravirtualised KVM it would
# spin in its BIOS.
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
libvirt_start

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f raw "$img/vdb.raw" 64M
mk_domain_xml englv "$TEST_TMP/englv.xml" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"
libvirt_define_test_domain englv "$TEST_TMP/englv.xml"
cleanup_fn virsh -q undefine englv
[ "$(virsh -q domstate englv)" = "shut off" ] || fail "englv is not shut off"

ENG_DOM=englv ENG_KIND=libvirt ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
VMSNAP_STATE_DIR=$TEST_TMP/state
eng_init
eng_scenario "$img/vda.qcow2" "$img/vdb.raw"
[ "$(virsh -q domstate englv)" = "shut off" ] || fail "the scenario changed the domain's state"
# The catalog is keyed by the UUID libvirt gave the domain.
uuid=$(virsh -q domuuid englv)
[ -f "$VMSNAP_STATE_DIR/$uuid/catalog.xml" ] || fail "no catalog under $VMSNAP_STATE_DIR/$uuid"

# A running domain: every state-changing command is refused (exit 4, says
# "running"), nothing changes.
before_files=$(cd "$img" && ls -A)
before_cat=$(cat "$VMSNAP_STATE_DIR/$uuid/catalog.xml")
before_def=$(virsh -q dumpxml --inactive englv)
out=$(virsh start englv 2>&1) || fail "virsh start englv: $out"
[ "$(virsh -q domstate englv)" = running ] || fail "englv did not start"
expect_fail 4 running "$VMSNAP" create englv s5
expect_fail 4 running "$VMSNAP" revert englv s3
expect_fail 4 running "$VMSNAP" delete englv s3
expect_fail 4 running "$VMSNAP" merge englv
expect_fail 4 running "$VMSNAP" create --no-wait --json englv s5
out=$(virsh destroy englv 2>&1) || fail "virsh destroy englv: $out"
[ "$(cd "$img" && ls -A)" = "$before_files" ] || fail "a refused command changed the image directory"
[ "$(cat "$VMSNAP_STATE_DIR/$uuid/catalog.xml")" = "$before_cat" ] || fail "a refused command changed the catalog"
[ "$(virsh -q dumpxml --inactive englv)" = "$before_def" ] || fail "a refused command changed the definition"
# ... and it works again once the domain is shut off.
eng_verify_all
echo "engine-scenario-libvirt: ok"
