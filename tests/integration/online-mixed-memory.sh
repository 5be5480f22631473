#!/usr/bin/env bash
# The memory state of a RUNNING domain whose disks are not all qcow2
# (issue 7): vda qcow2 (qcow2-external overlay), vdb raw.
#   - create --memory m1 after writing A and setting a CMOS RAM byte (HMP
#     port I/O) to 0x5a: the report names the memory file in vmsnap's state
#     dir (mode 0600, size > 0), list/info show it, libvirt keeps no
#     snapshot metadata, the domain runs;
#   - write B, CMOS 0xab; revert m1: running, disks hold A, CMOS 0x5a;
#   - revert m1 --paused: paused; after virsh resume the same;
#   - delete m1: the memory file is gone;
#   - crash after every journaled step of create --memory
#     (VMSNAP_TEST_CRASH_AFTER) + recover: the catalog has the snapshot
#     and its memory file (0600), or neither, and no other memory file
#     is left in the state dir; the domain runs.
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
T0=$(date +%s)

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f raw "$img/vdb.raw" 64M
mk_domain_xml mixmem "$TEST_TMP/mixmem.xml" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"
libvirt_define_test_domain mixmem "$TEST_TMP/mixmem.xml"
cleanup_fn virsh -q undefine mixmem
cleanup_fn virsh -q destroy mixmem
out=$(virsh start mixmem 2>&1) || fail "virsh start mixmem: $out"
uuid=$(virsh domuuid mixmem | tr -d '[:space:]')
sdir=$VMSNAP_STATE_DIR/$uuid

ENG_DOM=mixmem ENG_KIND=running ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
eng_init

cmos_set ()
{
    local out
    out=$(virsh qemu-monitor-command mixmem --hmp 'o /b 0x70 0x40' 2>&1) || fail "HMP o 0x70: $out"
    out=$(virsh qemu-monitor-command mixmem --hmp "o /b 0x71 $1" 2>&1) || fail "HMP o 0x71: $out"
}
cmos_expect ()   # VALUE WHEN
{
    local out
    out=$(virsh qemu-monitor-command mixmem --hmp 'o /b 0x70 0x40' 2>&1) || fail "HMP o 0x70: $out"
    out=$(virsh qemu-monitor-command mixmem --hmp 'i /b 0x71' 2>&1) || fail "HMP i 0x71: $out"
    [[ $out == *"= 0x"* ]] || fail "HMP i /b 0x71: unexpected reply '$out'"
    out=$(printf '%s\n' "${out##*= }" | tr -d '[:space:]')
    [ "$out" = "$1" ] || fail "$2: the CMOS byte is $out, expected $1"
}
# mode FILE: its permission bits, octal
mode () { stat -c %a "$1"; }
memfiles () { (cd "$sdir" 2>/dev/null && ls -A | grep '^memory-' || true) | sort | tr '\n' ' '; }

vms_ok plan --json --memory mixmem
jq_check "$VMS_OUT" '.memory.method == "external-file"' "plan --memory: not an external memory file"

eng_write A
cmos_set 0x5a
vms_ok create --json --memory mixmem m1
json=$VMS_OUT
SNAP_HIST[m1]="A" SNAP_PARENT[m1]="" ENG_CURRENT=m1 ENG_DIRTY=0
mem=$(jq -r '.memory // empty' <<<"$json")
[ -n "$mem" ] || { echo "$json" >&2; fail "create --memory: no memory file in the report"; }
[[ $mem == "$sdir"/* ]] || fail "the memory file $mem is not in the state dir $sdir"
[ -f "$mem" ] || fail "the memory file $mem does not exist"
[ "$(mode "$mem")" = 600 ] || fail "the memory file $mem has mode $(mode "$mem"), want 600"
size=$(stat -c %s "$mem")
jq_check "$json" '.memory_size == ($s | tonumber) and .memory_size > 100000' \
    "create report: memory_size is not the file's size ($size)" --arg s "$size"
[ "$(mode "$VMSNAP_STATE_DIR/$uuid/catalog.xml")" = 600 ] || fail "catalog.xml is not 0600"
[ -z "$(virsh -q snapshot-list --name mixmem)" ] || fail "libvirt keeps snapshot metadata"
[ "$(eng_domstate)" = running ] || fail "mixmem is '$(eng_domstate)' after create --memory"
eng_check_state "A"
cmos_expect 0x5a "after create --memory"
vms_ok info --json mixmem m1
jq_check "$VMS_OUT" '.memory == $m and .memory_size > 0' "info --json does not show the memory file" --arg m "$mem"
vms_ok info mixmem m1
[[ $VMS_OUT == *"Memory:      $mem"* ]] || { echo "$VMS_OUT" >&2; fail "info does not show the memory file"; }
vms_ok list --json mixmem
jq_check "$VMS_OUT" '.snapshots[0].memory == $m' "list --json does not show the memory file" --arg m "$mem"
echo "  create --memory m1: $mem, $size bytes, 0600 ($(( $(date +%s) - T0 )) s)"

eng_write B
cmos_set 0xab
eng_check_state "A B"
cmos_expect 0xab "after setting it again"
vms_ok revert --json mixmem m1
CUR_HIST="A" ENG_DIRTY=0
[ "$(eng_domstate)" = running ] || fail "mixmem is '$(eng_domstate)' after revert m1"
eng_check_state "A"
eng_expect_mismatch "A B"
cmos_expect 0x5a "after revert m1 (memory state restored)"
echo "  write B, CMOS 0xab, revert m1: running, data A, CMOS 0x5a ($(( $(date +%s) - T0 )) s)"

eng_write C
cmos_set 0x77
ENG_EXPECT_STATE=paused vms_ok revert --json mixmem m1 --paused
CUR_HIST="A" ENG_DIRTY=0
[ "$(eng_domstate)" = paused ] || fail "mixmem is '$(eng_domstate)' after revert --paused"
out=$(virsh resume mixmem 2>&1) || fail "virsh resume mixmem: $out"
eng_check_state "A"
eng_expect_mismatch "A C"
cmos_expect 0x5a "after revert m1 --paused and resume"
echo "  revert m1 --paused, resume: data A, CMOS 0x5a"

vms_ok delete --json mixmem m1
eng_forget m1
[ ! -e "$mem" ] || fail "delete m1 left the memory file $mem"
[ -z "$(memfiles)" ] || fail "memory files left after delete: $(memfiles)"
echo "  delete m1: memory file removed ($(( $(date +%s) - T0 )) s)"

# A fresh boot does not keep the CMOS byte, so the checks above saw the
# restored device state.
cmos_set 0x5a
out=$(virsh destroy mixmem 2>&1) || fail "virsh destroy: $out"
out=$(virsh start mixmem 2>&1) || fail "virsh start: $out"
out=$(virsh qemu-monitor-command mixmem --hmp 'o /b 0x70 0x40' 2>&1) || fail "HMP: $out"
out=$(virsh qemu-monitor-command mixmem --hmp 'i /b 0x71' 2>&1) || fail "HMP: $out"
[[ $out != *"= 0x5a"* ]] || fail "a fresh boot keeps CMOS byte 0x40: the memory check proves nothing"

# ------------------------------------------------------------ crashes
ERR=$TEST_TMP/crash.err
points=0
for (( n = 1; n <= 30; n++ )); do
    rc=0
    VMSNAP_TEST_CRASH_AFTER=$n "$VMSNAP" create --json --memory mixmem c1 >/dev/null 2>"$ERR" || rc=$?
    if [ "$rc" = 99 ]; then
        vms_rc recover --json mixmem
        [ "$VMS_RC" = 0 ] || { echo "$VMS_ERR" >&2; fail "N=$n: recover exited $VMS_RC"; }
        res=$(jq -r .result <<<"$VMS_OUT")
        points=$(( points + 1 ))
    elif [ "$rc" = 0 ]; then
        res=finished-without-crash
    else
        cat "$ERR" >&2; fail "N=$n: create exited $rc"
    fi
    [ "$(eng_domstate)" = running ] || fail "N=$n: mixmem is '$(eng_domstate)' after create/recover"
    vms_ok list --json mixmem
    names=$(jq -r '[.snapshots[].name] | join(",")' <<<"$VMS_OUT")
    case $names in
        c1)
            m=$(jq -r '.snapshots[0].memory' <<<"$VMS_OUT")
            [ -f "$m" ] || fail "N=$n: the catalog names memory file $m, which is missing"
            [ "$(mode "$m")" = 600 ] || fail "N=$n: $m has mode $(mode "$m")"
            [ "$(memfiles)" = "$(basename "$m") " ] || fail "N=$n: memory files in $sdir: $(memfiles), want only $m"
            vms_ok delete mixmem c1
            [ -z "$(memfiles)" ] || fail "N=$n: delete c1 left $(memfiles)"
            ;;
        "")
            [ -z "$(memfiles)" ] || fail "N=$n ($res): no snapshot, but orphan memory file(s) $(memfiles)" ;;
        *) fail "N=$n: catalog holds '$names'" ;;
    esac
    echo "    N=$n: $res"
    [ "$rc" != 0 ] || break
done
[ "$rc" = 0 ] || fail "create --memory still crashing at N=30"
[ "$points" -ge 4 ] || fail "only $points crash points: is VMSNAP_TEST_CRASH_AFTER working?"
echo "  create --memory: $points crash points, each recovered, no orphan memory file"
echo "online-mixed-memory: ok ($(( $(date +%s) - T0 )) s)"
