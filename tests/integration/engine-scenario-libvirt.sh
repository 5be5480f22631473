#!/usr/bin/env bash
# The engine scenario of engine-scenario.sh on a SHUT-OFF domain of the
# hermetic libvirt daemon (tests/fixtures/libvirt.sh): the definition is
# changed through libvirt, and the active images are read back with
# `virsh domblklist`.  The domain is never started during the scenario; at
# the end it is started (TCG) for a create and a delete while it runs, then
# shut off and checked again.
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

# A running domain: create and delete work on it now (the online paths are
# tested in depth by tests/integration/online-*.sh); it keeps running, its
# live and inactive definitions agree, and once it is shut off again
# everything checks out offline.
out=$(virsh start englv 2>&1) || fail "virsh start englv: $out"
[ "$(virsh -q domstate englv)" = running ] || fail "englv did not start"
eng_create s5
[ "$(virsh -q domstate englv)" = running ] || fail "create on the running englv stopped it"
ENG_KIND=running eng_check_live_def
vms_ok delete --json englv s5
eng_forget s5
[ "$(virsh -q domstate englv)" = running ] || fail "delete on the running englv stopped it"
ENG_KIND=running eng_check_live_def
out=$(virsh destroy --graceful englv 2>&1) || fail "virsh destroy englv: $out"
eng_verify_all
echo "engine-scenario-libvirt: ok"
