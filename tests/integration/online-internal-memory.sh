#!/usr/bin/env bash
# Internal snapshots with memory on a RUNNING domain whose disks are all
# qcow2 (vda, vdb), through libvirt:
#   - plan --memory: mode internal, every disk qcow2-internal (without
#     --memory: qcow2-external);
#   - create --memory m1 after writing A and setting a CMOS RAM byte (HMP
#     port I/O) to 0x5a: the report's disks use qcow2-internal, no file
#     appears, both images list the snapshot, one holds the memory state
#     (vm-state-size > 0), libvirt keeps no snapshot metadata (vmsnap's
#     catalog owns it), the domain keeps running;
#   - write B, set the CMOS byte to 0xab; revert m1: the domain runs, the
#     disks hold A (read inside the running guest) and the CMOS byte is
#     0x5a again: the device state was restored (a fresh boot does not keep
#     it: checked at the end);
#   - revert m1 --paused: paused, and after `virsh resume` the same;
#   - list shows m1; delete m1 while running: `qemu-img snapshot -U -l` no
#     longer lists it on either image, the data stays;
# and offline (a second, shut-off domain): qcow2-internal is used only with
# --memory or --backend TARGET=qcow2-internal; plain create is external.
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
eng_state_here

# backends JSON: "TARGET:BACKEND ..." of a create/info report, sorted.
backends ()
{
    jq -r '[.disks[] | "\(.target):\(.backend)"] | sort | join(" ")' <<<"$1"
}

# snap_tags IMAGE: the internal snapshot names of IMAGE (read-only, -U).
snap_tags ()
{
    local out
    out=$(qemu-img info -U --output=json -f qcow2 "$1" 2>&1) || fail "qemu-img info $1: $out"
    jq -r '[.snapshots // [] | .[].name] | sort | join(" ")' <<<"$out"
}

# vmstate_bytes IMAGE...: the sum of the snapshots' vm-state-size.
vmstate_bytes ()
{
    local f n=0 out
    for f in "$@"; do
        out=$(qemu-img info -U --output=json -f qcow2 "$f" 2>&1) || fail "qemu-img info $f: $out"
        n=$(( n + $(jq '[.snapshots // [] | .[]."vm-state-size"] | add // 0' <<<"$out") ))
    done
    echo "$n"
}

# ------------------------------------------------------------- offline
off=$TEST_TMP/off
mkdir "$off"
qemu-img create -q -f qcow2 "$off/vda.qcow2" 64M
qemu-img create -q -f qcow2 "$off/vdb.qcow2" 64M
mk_domain_xml onmemoff "$TEST_TMP/onmemoff.xml" "vda:qcow2:$off/vda.qcow2" "vdb:qcow2:$off/vdb.qcow2"
libvirt_define_test_domain onmemoff "$TEST_TMP/onmemoff.xml"
cleanup_fn virsh -q undefine onmemoff
vms_ok plan --json onmemoff
jq_check "$VMS_OUT" '.mode == "external" and all(.disks[]; .backend == "qcow2-external")' \
    "offline plan without --memory is not all qcow2-external"
vms_ok plan --json --memory onmemoff
jq_check "$VMS_OUT" '.mode == "internal" and all(.disks[]; .backend == "qcow2-internal")' \
    "offline plan --memory is not all qcow2-internal"

vms_ok create --json onmemoff o1 --backend vda=qcow2-internal
[ "$(backends "$VMS_OUT")" = "vda:qcow2-internal vdb:qcow2-external" ] ||
    { echo "$VMS_OUT" >&2; fail "offline create --backend vda=qcow2-internal: backends $(backends "$VMS_OUT")"; }
vms_ok create --json onmemoff o2
[ "$(backends "$VMS_OUT")" = "vda:qcow2-external vdb:qcow2-external" ] ||
    { echo "$VMS_OUT" >&2; fail "offline create without --memory or --backend: backends $(backends "$VMS_OUT")"; }
vms_ok create --json --memory onmemoff o3
[ "$(backends "$VMS_OUT")" = "vda:qcow2-internal vdb:qcow2-internal" ] ||
    { echo "$VMS_OUT" >&2; fail "offline create --memory: backends $(backends "$VMS_OUT")"; }
for s in o1 o2 o3; do
    vms_ok info --json onmemoff "$s"
    echo "  offline $s: $(backends "$VMS_OUT")"
done
[ "$(virsh -q domstate onmemoff)" = "shut off" ] || fail "onmemoff was started"
[ -z "$(virsh -q snapshot-list --name onmemoff)" ] || fail "libvirt has snapshot metadata for onmemoff"
echo "  offline: qcow2-internal only with --backend or --memory"

# ------------------------------------------------------------- running
img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f qcow2 "$img/vdb.qcow2" 64M
mk_domain_xml onmem "$TEST_TMP/onmem.xml" "vda:qcow2:$img/vda.qcow2" "vdb:qcow2:$img/vdb.qcow2"
libvirt_define_test_domain onmem "$TEST_TMP/onmem.xml"
cleanup_fn virsh -q undefine onmem
out=$(virsh start onmem 2>&1) || fail "virsh start onmem: $out"

ENG_DOM=onmem ENG_KIND=running ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
eng_init
ENG_T0=$(date +%s%N)

# CMOS RAM byte 0x40 (unused by the BIOS), through HMP port I/O.
cmos_set ()
{
    local out
    out=$(virsh qemu-monitor-command onmem --hmp 'o /b 0x70 0x40' 2>&1) || fail "HMP o 0x70: $out"
    out=$(virsh qemu-monitor-command onmem --hmp "o /b 0x71 $1" 2>&1) || fail "HMP o 0x71: $out"
}
cmos_get ()
{
    local out
    out=$(virsh qemu-monitor-command onmem --hmp 'o /b 0x70 0x40' 2>&1) || fail "HMP o 0x70: $out"
    out=$(virsh qemu-monitor-command onmem --hmp 'i /b 0x71' 2>&1) || fail "HMP i 0x71: $out"
    # "portb[0x0071] = 0xab"
    [[ $out == *"= 0x"* ]] || fail "HMP i /b 0x71: unexpected reply '$out'"
    printf '%s\n' "${out##*= }" | tr -d '[:space:]'
}
cmos_expect ()   # VALUE WHEN
{
    local v
    v=$(cmos_get)
    [ "$v" = "$1" ] || fail "$2: the CMOS byte is $v, expected $1"
}

vms_ok plan --json onmem
jq_check "$VMS_OUT" '.mode == "external" and all(.disks[]; .backend == "qcow2-external")' \
    "running plan without --memory is not all qcow2-external"
vms_ok plan --json --memory onmem
jq_check "$VMS_OUT" '.mode == "internal" and .memory.method == "internal" and all(.disks[]; .backend == "qcow2-internal")' \
    "running plan --memory is not internal"

eng_write A
cmos_set 0x5a
cmos_expect 0x5a "after setting it"
files_before=$(cd "$img" && ls -A)
vms_ok create --json --memory onmem m1
json=$VMS_OUT
[ "$(backends "$json")" = "vda:qcow2-internal vdb:qcow2-internal" ] ||
    { echo "$json" >&2; fail "create --memory: backends $(backends "$json")"; }
jq_check "$json" '.operation == "create" and .snapshot == "m1"' "create --memory report"
SNAP_HIST[m1]="A" SNAP_PARENT[m1]="" ENG_CURRENT=m1 ENG_DIRTY=0
[ "$(cd "$img" && ls -A)" = "$files_before" ] || fail "an internal snapshot created files: $(cd "$img" && ls -A)"
for d in vda vdb; do
    [ "$(eng_active "$d")" = "$img/$d.qcow2" ] || fail "create --memory changed the active image of $d"
    [ -n "$(snap_tags "$img/$d.qcow2")" ] || fail "$img/$d.qcow2 lists no internal snapshot after create --memory"
done
[ "$(vmstate_bytes "$img/vda.qcow2" "$img/vdb.qcow2")" -gt 0 ] || fail "no image holds a memory state (vm-state-size 0)"
[ -z "$(virsh -q snapshot-list --name onmem)" ] ||
    fail "libvirt keeps snapshot metadata for onmem ($(virsh -q snapshot-list --name onmem)); vmsnap's catalog should own it"
eng_check_state "A"
cmos_expect 0x5a "after create --memory"
eng_check_list
vms_ok info --json onmem m1
[ "$(backends "$VMS_OUT")" = "vda:qcow2-internal vdb:qcow2-internal" ] || fail "info m1: backends $(backends "$VMS_OUT")"
eng_step "write A, CMOS 0x5a, create --memory m1"

eng_write B
cmos_set 0xab
eng_check_state "A B"
cmos_expect 0xab "after setting it again"
vms_ok revert --json onmem m1
CUR_HIST="A" ENG_DIRTY=0
eng_check_state "A"
eng_expect_mismatch "A B"
cmos_expect 0x5a "after revert m1 (memory state restored)"
eng_check_list
eng_step "write B, CMOS 0xab, revert m1: running, data A, CMOS 0x5a"

# --paused; then resume.
eng_write C
cmos_set 0x77
ENG_EXPECT_STATE=paused vms_ok revert --json onmem m1 --paused
CUR_HIST="A" ENG_DIRTY=0
out=$(virsh resume onmem 2>&1) || fail "virsh resume onmem: $out"
[ "$(eng_domstate)" = running ] || fail "onmem does not run after virsh resume"
eng_check_state "A"
eng_expect_mismatch "A C"
cmos_expect 0x5a "after revert m1 --paused and resume"
eng_step "write C, CMOS 0x77, revert m1 --paused, resume: data A, CMOS 0x5a"

# list shows m1; delete it while running.
vms_ok list onmem
[[ $VMS_OUT == *m1* ]] || { echo "$VMS_OUT" >&2; fail "vmsnap list does not show m1"; }
eng_check_list
eng_write D
vms_ok delete --json onmem m1
jq_check "$VMS_OUT" '[.disks[] | select(.backend == "qcow2-internal")] | length == 2' "delete m1 report"
eng_forget m1
for d in vda vdb; do
    tags=$(snap_tags "$img/$d.qcow2")
    [ -z "$tags" ] || fail "after delete m1, $img/$d.qcow2 still lists internal snapshot(s): $tags"
done
out=$(qemu-img snapshot -U -l "$img/vda.qcow2" 2>&1) || fail "qemu-img snapshot -l: $out"
[ -z "$out" ] || fail "qemu-img snapshot -U -l still lists: $out"
vms_ok list --json onmem
jq_check "$VMS_OUT" '.snapshots == [] and .pending == null' "list after delete m1"
eng_check_state "A D"
eng_expect_mismatch "A"
[ "$(cd "$img" && ls -A)" = "$files_before" ] || fail "the image directory changed: $(cd "$img" && ls -A)"
eng_step "list shows m1, delete m1 while running: gone from both images"

# A fresh boot does not keep the CMOS byte (so the checks above saw the
# restored device state, not something QEMU keeps anyway).
cmos_set 0x5a
out=$(virsh destroy onmem 2>&1) || fail "virsh destroy onmem: $out"
out=$(virsh start onmem 2>&1) || fail "virsh start onmem: $out"
v=$(cmos_get)
[ "$v" != 0x5a ] || fail "a fresh boot keeps CMOS byte 0x40 ($v): the memory-state check proves nothing"
echo "  fresh boot: CMOS byte 0x40 is $v"

# Names already taken: QEMU's savevm would silently replace an entry of the
# same name, so vmsnap refuses before libvirt is asked (exit 3, nothing new).
out=$(virsh snapshot-create-as onmem taken 2>&1) || fail "virsh snapshot-create-as: $out"
expect_fail 3 "libvirt already has a snapshot named 'taken'" "$VMSNAP" create --memory onmem taken
out=$(virsh snapshot-delete onmem taken --metadata 2>&1) || fail "virsh snapshot-delete --metadata: $out"
expect_fail 3 "already holds an internal snapshot named 'taken'" "$VMSNAP" create --memory onmem taken
[ "$(snap_tags "$img/vda.qcow2")" = taken ] || fail "the refused create changed vda's table: $(snap_tags "$img/vda.qcow2")"
[ -z "$(virsh snapshot-list onmem --name)" ] || fail "libvirt metadata left: $(virsh snapshot-list onmem --name)"
vms_ok list --json onmem
jq_check "$VMS_OUT" '.snapshots == [] and .pending == null' "catalog after the refused creates"
echo "  a name libvirt or an image already holds: refused, nothing changed"
echo "online-internal-memory: ok"
