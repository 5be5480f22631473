#!/usr/bin/env bash
# vmsnap side by side with virsh on the same RUNNING domain (vda qcow2, vdb
# raw).  libvirt 9.0 side:
#   - write A, `virsh snapshot-create-as --disk-only` vs1, write B, vs2,
#     write C: works, the domain runs on libvirt's overlays;
#   - `virsh snapshot-revert` to vs1 is refused ("revert to external
#     snapshot not supported yet") and changes nothing;
#   - `virsh snapshot-delete vs1 --children` (vs1 has a child) is refused
#     ("deletion of external children disk snapshots not supported") and
#     changes nothing.
#   (A plain `virsh snapshot-delete` of vs1 with its one child is accepted
#   by libvirt 9.0: it is not among the refusals.)
# vmsnap side, with its own snapshots on top of libvirt's overlays:
#   v1, v2, v3 (linear); revert to v1 (external, not the latest) while
#   running; write, v4 (a branch); delete v2 (a snapshot with a child: its
#   data merged); delete v1 (two children: kept unnamed); after each step
#   every snapshot is checked (reverting to it while running).
# Both sides are asserted; libvirt's own snapshots stay listed and their
# files in use, and the domain keeps running throughout.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io virsh xmllint
: "${VMSNAP:?}"
mk_tmpdir
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
libvirt_start

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f raw "$img/vdb.raw" 64M
mk_domain_xml onvirsh "$TEST_TMP/onvirsh.xml" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"
libvirt_define_test_domain onvirsh "$TEST_TMP/onvirsh.xml"
# libvirt refuses to undefine a domain with snapshot metadata
cleanup_fn virsh -q undefine --snapshots-metadata onvirsh
out=$(virsh start onvirsh 2>&1) || fail "virsh start onvirsh: $out"

ENG_DOM=onvirsh ENG_KIND=running ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
VMSNAP_STATE_DIR=$TEST_TMP/state
eng_init
ENG_T0=$(date +%s%N)

virsh_snap ()   # NAME
{
    local out
    out=$(virsh snapshot-create-as onvirsh "$1" --disk-only --atomic \
              --diskspec "vda,file=$img/vda.$1.qcow2" --diskspec "vdb,file=$img/vdb.$1.qcow2" 2>&1) ||
        fail "virsh snapshot-create-as $1: $out"
    [ "$(eng_domstate)" = running ] || fail "virsh snapshot-create-as $1 stopped the domain"
    eng_check_live_def
}
virsh_snaps ()
{
    virsh -q snapshot-list --name onvirsh | sed '/^$/d' | sort | tr '\n' ' '
}

# everything virsh's refusals must leave alone
state_of ()
{
    (cd "$img" && stat -c '%n %s' -- *)
    virsh -q dumpxml onvirsh
    virsh_snaps
    virsh -q snapshot-current --name onvirsh 2>&1
}

# ------------------------------------------------------------ libvirt side
eng_write A
virsh_snap vs1
eng_write B
virsh_snap vs2
eng_write C
eng_check_state "A B C"
[ "$(virsh_snaps)" = "vs1 vs2 " ] || fail "virsh snapshot-list: '$(virsh_snaps)'"
[ "$(eng_active vda)" = "$img/vda.vs2.qcow2" ] || fail "vda does not run on libvirt's vs2 overlay"
eng_step "virsh: A, vs1, B, vs2, C"

before=$(state_of)
expect_fail 1 "revert to external snapshot not supported yet" virsh snapshot-revert onvirsh vs1
[ "$(eng_domstate)" = running ] || fail "the refused virsh revert stopped the domain"
[ "$(state_of)" = "$before" ] || fail "the refused virsh revert changed something"
eng_check_state "A B C"
expect_fail 1 "children disk snapshots not supported" virsh snapshot-delete onvirsh vs1 --children
[ "$(eng_domstate)" = running ] || fail "the refused virsh delete stopped the domain"
[ "$(state_of)" = "$before" ] || fail "the refused virsh delete changed something"
eng_check_state "A B C"
eng_step "virsh refuses: revert to vs1 (external), delete vs1 with its child"

# ------------------------------------------------------------- vmsnap side
eng_create v1
eng_locator v1 vda
[ "$LOC_PATH" = "$img/vda.vs2.qcow2" ] || fail "v1's vda locator is $LOC_PATH, expected libvirt's vs2 overlay (the active image)"
eng_write D
eng_create v2
eng_write E
eng_create v3
eng_verify_all
eng_step "vmsnap: v1, D, v2, E, v3 (each snapshot reverted to while running)"

eng_revert v1
eng_check_state "A B C"
eng_expect_mismatch "A B C D E"
eng_check_views
eng_write F
eng_create v4
eng_verify_all
eng_step "vmsnap: revert to v1 (external, not the latest) while running; F, v4 (branch)"

vms_ok delete --json onvirsh v2
eng_check_delete_report "$VMS_OUT" one-child
echo "    delete v2: $(jq -r '[.disks[] | "\(.target): \(.note)"] | join("; ")' <<<"$VMS_OUT" | cut -c1-300)"
eng_forget v2
eng_verify_all
eng_step "vmsnap: delete v2 (it has a child, v3)"

vms_ok delete --json onvirsh v1
eng_check_delete_report "$VMS_OUT" kept
eng_forget v1
EXP_HIDDEN=1
eng_verify_all
eng_step "vmsnap: delete v1 (two children: kept unnamed)"

# libvirt's snapshots are still there, their overlays still under the
# domain's disks.
[ "$(virsh_snaps)" = "vs1 vs2 " ] || fail "libvirt's snapshots changed: '$(virsh_snaps)'"
for f in vda.vs1.qcow2 vda.vs2.qcow2 vdb.vs1.qcow2 vdb.vs2.qcow2; do
    [ -f "$img/$f" ] || fail "libvirt's snapshot file $f is gone"
done
[ "$(eng_domstate)" = running ] || fail "onvirsh is not running at the end"
echo "online-virsh: ok"
