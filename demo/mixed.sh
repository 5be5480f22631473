#!/usr/bin/env bash
# vmsnap demo, part 2: one consistent instant across a mixed VM.  A real
# Linux guest (tests/fixtures/linux-guest.sh: the stock Debian kernel,
# busybox, the host's root read-only over 9p) under a private libvirtd,
# with a qcow2 disk (vda), a raw disk (vdb) and an RBD disk (vdc) on a
# throwaway one-OSD Ceph cluster (tests/fixtures/ceph.sh), writes a counter
# to each disk in turn (O_DIRECT + O_SYNC): vda=n, vdb=n, vdc=n, vda=n+1...
# vmsnap snapshots the running VM: the counters in each snapshot form a
# consistent cut (vda >= vdb >= vdc >= vda-1), the pause window is shown as
# vmsnap reports it and as libvirt's lifecycle events saw it; then a revert,
# a merge and a delete.  LVM: demo/lvm.sh, at the end.  Nothing outside a temporary
# directory changes (the kernel is cached in /var/tmp/vmsnap-test-kernel).
#
#   demo/mixed.sh [BUILD-DIR]     (demo/demo.sh runs it last)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
VMSNAP=$build/tools/vmsnap
srcdir=$top
. "$top/tests/fixtures/functions.sh"
. "$top/tests/fixtures/libvirt.sh"
. "$top/tests/fixtures/ceph.sh"
. "$top/tests/fixtures/lvm-guest.sh"
. "$top/tests/fixtures/linux-guest.sh"
[ -x "$VMSNAP" ] || fail "no vmsnap in $build: build first (./setup.sh demo)"
export VMSNAP

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@" || echo "(exit status $?)"; }

mk_tmpdir
export VMSNAP_STATE_DIR=$TEST_TMP/state
ceph_start
libvirt_start
linuxg_prepare
DOM=mixed-vm

qemu-img create -q -f qcow2 "$TEST_TMP/vda.qcow2" 64M
qemu-img create -q -f raw "$TEST_TMP/vdb.raw" 64M
rbdc create --size 32M rbd/vdc
cat >"$TEST_TMP/guest.sh" <<'EOF'
n=1
echo "COUNTER_LOOP_START"
while :; do
    for d in vda vdb vdc; do
        printf '%-512s' "$n" | dd of=/dev/$d bs=512 count=1 oflag=direct,sync conv=notrunc status=none || exit 1
    done
    [ $((n % 20)) != 0 ] || echo "COUNTER $n"
    n=$((n + 1))
done
EOF
linuxg_domain_xml "$DOM" "$TEST_TMP/dom.xml" "$TEST_TMP/guest.sh" \
    "vda:qcow2:$TEST_TMP/vda.qcow2" "vdb:raw:$TEST_TMP/vdb.raw" "vdc:rbd:rbd/vdc:conf"
say "a Linux guest with vda (qcow2 file), vdb (raw file), vdc (RBD image rbd/vdc)"
linuxg_start "$DOM" "$TEST_TMP/dom.xml"
linuxg_wait_mark "$DOM" "COUNTER 20" 120
run virsh domblklist "$DOM"
run "$VMSNAP" plan "$DOM"

counter() {  # counter FORMAT FILENAME: the 16-byte counter at offset 0
    qemu-io -r -U -f "$1" -c "read -v 0 16" "$2" 2>/dev/null |
        grep '^00000000:' | cut -d' ' -f2-17 | xxd -r -p | tr -d ' \0'
}
cut_of() {  # the counters of the snapshot whose create --json is in $1
    local t loc v out=""
    for t in vda vdb vdc; do
        loc=$(jq -r --arg t "$t" '.disks[] | select(.target == $t) | .locator' "$1")
        case $loc in
            rbd:*) v=$(counter raw "$(rbd_qemu "${loc#rbd:}")") ;;
            *) v=$(counter "${loc%%:*}" "${loc#*:}") ;;
        esac
        out+="$t=$v "
    done
    echo "$out"
}

virsh event --domain "$DOM" --event lifecycle --loop --timestamp >"$TEST_TMP/events.log" 2>&1 &
evpid=$!
sleep 0.5
for s in s1 s2 s3; do
    say "$VMSNAP create --json $DOM $s      (the guest keeps writing)"
    "$VMSNAP" create --json "$DOM" "$s" >"$TEST_TMP/$s.json"
    jq -c '{online, pause_ms, domain_state, disks: [.disks[] | {target, backend, locator}]}' "$TEST_TMP/$s.json"
    echo "    counters in $s: $(cut_of "$TEST_TMP/$s.json")  (consistent: vda >= vdb >= vdc >= vda-1)"
    sleep 1
done
sleep 0.3
kill "$evpid" 2>/dev/null || true
wait "$evpid" 2>/dev/null || true
say "the pause windows as libvirt's lifecycle events saw them (virsh event --timestamp)"
grep -E 'Suspended|Resumed' "$TEST_TMP/events.log" | sed 's/^/    /'
awk 'function ms(t,  a) { split(t, a, ":"); return (a[1] * 3600 + a[2] * 60 + a[3]) * 1000 }
     / Suspended / { s = ms(substr($2, 1, 12)) }
     / Resumed / { n++; printf "    window %d: %d ms (events)\n", n, ms(substr($2, 1, 12)) - s }' "$TEST_TMP/events.log"
for s in s1 s2 s3; do echo "    $s: pause_ms $(jq .pause_ms "$TEST_TMP/$s.json") (vmsnap)"; done

run "$VMSNAP" list "$DOM" --tree
say "revert to s2 with the VM shut off (the guest would otherwise keep writing)"
run virsh destroy "$DOM"
run "$VMSNAP" revert "$DOM" s2
xml=$(virsh -q dumpxml --inactive "$DOM")
a=$(xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" - <<<"$xml")
b=$(xmllint --xpath "string(//disk[target/@dev='vdb']/source/@file)" - <<<"$xml")
bf=$(xmllint --xpath "string(//disk[target/@dev='vdb']/driver/@type)" - <<<"$xml")
c=$(xmllint --xpath "string(//disk[target/@dev='vdc']/source/@name)" - <<<"$xml")
echo "    the disks now: vda=$(counter qcow2 "$a") vdb=$(counter "$bf" "$b") vdc=$(counter raw "$(rbd_qemu "$c")")"
echo "    s2 held:       $(cut_of "$TEST_TMP/s2.json")"
run "$VMSNAP" delete "$DOM" s1
run "$VMSNAP" merge "$DOM" --max-depth 1
run "$VMSNAP" list "$DOM" --tree
run "$VMSNAP" chain "$DOM"
virsh undefine --snapshots-metadata "$DOM" >/dev/null 2>&1 || virsh undefine "$DOM" >/dev/null 2>&1 || true

echo
if grep -qw device-mapper /proc/misc 2>/dev/null; then dm="this kernel has it"; else dm="this kernel has none"; fi
echo "The mixed VM above (qcow2 + raw + RBD) ran on the host with libvirt + QEMU."
echo "LVM snapshots need device-mapper in the host kernel ($dm): vmsnap's"
echo "LVM part runs in the LVM guest fixture (the same stock kernel, TCG, no"
echo "libvirt; doc/consistency.md says what ran where): demo/lvm.sh."
"$top/demo/lvm.sh" "$build"
