#!/usr/bin/env bash
# One consistent instant across a mixed VM: a real Linux guest
# (tests/fixtures/linux-guest.sh) with a qcow2 disk (vda), a raw disk (vdb)
# and an RBD disk (vdc) writes an increasing counter to every disk in turn,
# each write O_DIRECT + O_SYNC and done before the next starts:
#   vda=n, vdb=n, vdc=n, vda=n+1, ...
# so at any instant vda >= vdb >= vdc >= vda - 1 (a consistent cut).
#
#   1. While it runs, `vmsnap create --json` takes several snapshots (the
#      core pauses the VM: RBD is in the mix); each snapshot's three
#      counters, read from the snapshot's own data (the frozen qcow2 layer,
#      the raw base or its frozen overlay, the RBD snapshot), must form a
#      consistent cut, and the counters must grow from snapshot to snapshot.
#   2. The pause window measured from outside: libvirt lifecycle events
#      (virsh event --loop --timestamp: Suspended -> Resumed) must agree
#      with the report's pause_ms within 30 ms + 25 % (why: see below).
#   3. The checker can fail: the three live disks read one after the other
#      while the guest runs (no pause), vdc only once vda has moved on by
#      two, is an inconsistent cut, and the checker must say so.
#   4. Revert (VM shut off) to a middle snapshot: the disks hold that
#      snapshot's counters.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/ceph.sh"
. "$srcdir/tests/fixtures/lvm-guest.sh"
. "$srcdir/tests/fixtures/linux-guest.sh"
requires jq xmllint virsh qemu-img qemu-io xxd
requires_qemu_rbd
requires_rbd_backend
: "${VMSNAP:?}"
mk_tmpdir
ceph_start
libvirt_start
linuxg_prepare
unset VMSNAP_RBD_ROLLBACK_MAX_OBJECTS VMSNAP_RBD_REVERT_MODE VMSNAP_RBD_DELETE_CHILDREN VMSNAP_RBD_KEEP_OLD_HEAD VMSNAP_RBD_TIMEOUT
export VMSNAP_STATE_DIR=$TEST_TMP/state
DOM=mixed
NSNAP=${VMSNAP_TEST_MIXED_SNAPSHOTS:-4}

qemu-img create -q -f qcow2 "$TEST_TMP/vda.qcow2" 64M
truncate -s 64M "$TEST_TMP/vdb.raw"
rbdc create --size 32M rbd/vdc

# The guest: the counter as a 16-byte decimal field at offset 0 of each
# disk, written with dd (O_DIRECT, O_SYNC) one disk after the other.
cat >"$TEST_TMP/guest.sh" <<'EOF'
n=1
echo "COUNTER_LOOP_START"
while :; do
    for d in vda vdb vdc; do
        printf '%-512s' "$n" | dd of=/dev/$d bs=512 count=1 oflag=direct,sync conv=notrunc status=none ||
            { echo "COUNTER_WRITE_FAILED $d $n"; exit 1; }
    done
    [ $((n % 20)) != 0 ] || echo "COUNTER $n"
    n=$((n + 1))
done
EOF
linuxg_domain_xml "$DOM" "$TEST_TMP/dom.xml" "$TEST_TMP/guest.sh" \
    "vda:qcow2:$TEST_TMP/vda.qcow2" "vdb:raw:$TEST_TMP/vdb.raw" "vdc:rbd:rbd/vdc:conf"
linuxg_start "$DOM" "$TEST_TMP/dom.xml"
cleanup_fn virsh -q undefine "$DOM"
linuxg_wait_mark "$DOM" "COUNTER 20" 120

# counter FORMAT FILENAME: the counter at offset 0 (qemu-io, read-only,
# sharing the image with the running QEMU; the format always given).
counter ()
{
    local out v
    out=$(qemu-io -r -U -f "$1" -c "read -v 0 16" "$2" 2>&1) ||
        fail "qemu-io read of $2 ($1): $out"
    v=$(grep '^00000000:' <<<"$out" | cut -d' ' -f2-17 | xxd -r -p | tr -d ' \0')
    [[ $v =~ ^[0-9]+$ ]] || fail "no counter at offset 0 of $2 ($1): '$v' from: $out"
    echo "$v"
}

# consistent A B C: A >= B >= C >= A - 1
consistent ()
{
    [ "$1" -ge "$2" ] && [ "$2" -ge "$3" ] && [ "$3" -ge $(( $1 - 1 )) ]
}

# ---- the event listener: Suspended / Resumed with timestamps
virsh event --domain "$DOM" --event lifecycle --loop --timestamp \
    >"$TEST_TMP/events.log" 2>&1 &
EVPID=$!
stop_events () { kill "$EVPID" 2>/dev/null || true; wait "$EVPID" 2>/dev/null || true; }
cleanup_fn stop_events
sleep 0.5

declare -A SA SB SC PAUSE
prev=0
for (( i = 1; i <= NSNAP; i++ )); do
    sleep 0.7
    out=$("$VMSNAP" create --json "$DOM" "s$i" 2>"$TEST_TMP/err") ||
        { cat "$TEST_TMP/err" >&2; fail "vmsnap create s$i exited $?"; }
    printf '%s\n' "$out" >"$TEST_TMP/create-s$i.json"
    [ "$(jq -r .online <<<"$out")" = pause ] ||
        fail "create s$i: expected the pause mode for a mixed VM: $out"
    [ "$(jq -r .domain_state <<<"$out")" = running ] || fail "create s$i: the VM is not running afterwards: $out"
    PAUSE[$i]=$(jq -r '.pause_ms // empty' <<<"$out")
    [ -n "${PAUSE[$i]}" ] || fail "create s$i: no pause_ms in the report: $out"
    # Each disk's snapshot data: qcow2-external's locator is FORMAT:PATH of
    # the frozen layer, rbd's is rbd:POOL/IMAGE@SNAP.
    for t in vda vdb vdc; do
        be=$(jq -r --arg t "$t" '.disks[] | select(.target == $t) | .backend' <<<"$out")
        loc=$(jq -r --arg t "$t" '.disks[] | select(.target == $t) | .locator' <<<"$out")
        case $be in
            rbd) v=$(counter raw "$(rbd_qemu "${loc#rbd:}")") ;;
            qcow2-external)
                # FORMAT:PATH of the frozen layer
                [[ $loc == qcow2:/* || $loc == raw:/* ]] || fail "create s$i: unexpected locator '$loc' of $t"
                v=$(counter "${loc%%:*}" "${loc#*:}") ;;
            *) fail "create s$i: disk $t on unexpected backend '$be': $out" ;;
        esac
        case $t in vda) SA[$i]=$v ;; vdb) SB[$i]=$v ;; vdc) SC[$i]=$v ;; esac
    done
    echo "s$i: vda=${SA[$i]} vdb=${SB[$i]} vdc=${SC[$i]} pause_ms=${PAUSE[$i]}"
    consistent "${SA[$i]}" "${SB[$i]}" "${SC[$i]}" ||
        fail "s$i is not a consistent cut: vda=${SA[$i]} vdb=${SB[$i]} vdc=${SC[$i]} (want vda >= vdb >= vdc >= vda-1)"
    [ "${SA[$i]}" -gt "$prev" ] || fail "s$i: the counter did not grow (${SA[$i]} after $prev): is the guest writing?"
    prev=${SA[$i]}
done
sleep 0.5
stop_events

# ---- the pause windows seen from outside
# virsh prints "YYYY-MM-DD HH:MM:SS.mmm+0000: event 'lifecycle' for domain
# 'mixed': Suspended Paused" when libvirtd's event reaches it.  Both events
# take the same path (QEMU's STOP/RESUME -> libvirtd -> RPC -> virsh), so
# their constant latency cancels in the difference; what does not cancel
# is the millisecond resolution, the jitter of two deliveries on a loaded
# 2-CPU machine, and that vmsnap's pause_ms runs from virDomainSuspend
# returning to virDomainResume returning (each call waits for QEMU's
# answer, whose event libvirtd emits in the same moment).  Hence the
# tolerance: 30 ms + 25 % of the window.
mapfile -t WIN < <(awk '
    function ms(t,  a) { split(t, a, ":"); return (a[1] * 3600 + a[2] * 60 + a[3]) * 1000 }
    / Suspended / { s = ms(substr($2, 1, 12)) }
    / Resumed / { if (s != "") { printf "%d\n", ms(substr($2, 1, 12)) - s; s = "" } }
' "$TEST_TMP/events.log")
[ "${#WIN[@]}" = "$NSNAP" ] || {
    cat "$TEST_TMP/events.log" >&2
    fail "expected $NSNAP Suspended/Resumed pairs from libvirt's events, got ${#WIN[@]} (log above)"; }
for (( i = 1; i <= NSNAP; i++ )); do
    w=${WIN[i-1]} p=${PAUSE[$i]}
    echo "s$i: pause window from events ${w} ms, vmsnap pause_ms ${p}"
    awk -v w="$w" -v p="$p" 'BEGIN { d = w - p; if (d < 0) d = -d; exit !(d <= 30 + 0.25 * p) }' ||
        fail "s$i: the events say the VM was paused ${w} ms, vmsnap says ${p} ms (tolerance 30 ms + 25 %)"
done

# ---- the checker can fail: the live disks read one after the other
# Not a race won by chance: vda is read, then read again until the guest
# has written it twice more (a); only then vdc.  The guest writes vdc=n
# before vda=n+1, so vdc >= a - 1 > the first read of vda, and the cut
# (first vda, vdb, vdc) breaks vda >= vdc whatever the timing, as long
# as the guest writes (which the growing snapshots above showed).
vda_file=$(virsh -q dumpxml "$DOM" | xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" -)
vdb_file=$(virsh -q dumpxml "$DOM" | xmllint --xpath "string(//disk[target/@dev='vdb']/source/@file)" -)
a=$(counter qcow2 "$vda_file")
b=$(counter qcow2 "$vdb_file")
t0=$SECONDS
until a2=$(counter qcow2 "$vda_file"); [ "$a2" -ge $(( a + 2 )) ]; do
    [ $(( SECONDS - t0 )) -lt 60 ] || fail "the guest's vda counter stayed at $a2 for 60 s (from $a): is it writing?"
    sleep 0.05
done
c=$(counter raw "$(rbd_qemu rbd/vdc)")
echo "unpaused one-by-one read: vda=$a vdb=$b vdc=$c (vda reached $a2 before vdc was read)"
[ "$c" -gt "$a" ] || fail "vdc=$c was read after vda reached $a2: the guest does not write vdc before vda's next value"
! consistent "$a" "$b" "$c" || fail "the checker calls vda=$a vdb=$b vdc=$c consistent: it proves nothing"
echo "unpaused one-by-one read is inconsistent, and the checker says so"

# ---- revert (shut off) to a middle snapshot
mid=$(( (NSNAP + 1) / 2 ))
virsh -q destroy "$DOM" >/dev/null
out=$("$VMSNAP" revert --json "$DOM" "s$mid" 2>"$TEST_TMP/err") ||
    { cat "$TEST_TMP/err" >&2; fail "vmsnap revert s$mid exited $?"; }
xml=$(virsh -q dumpxml --inactive "$DOM")
fa=$(xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" - <<<"$xml")
fb=$(xmllint --xpath "string(//disk[target/@dev='vdb']/source/@file)" - <<<"$xml")
fbf=$(xmllint --xpath "string(//disk[target/@dev='vdb']/driver/@type)" - <<<"$xml")
ic=$(xmllint --xpath "string(//disk[target/@dev='vdc']/source/@name)" - <<<"$xml")
a=$(counter "$(xmllint --xpath "string(//disk[target/@dev='vda']/driver/@type)" - <<<"$xml")" "$fa")
b=$(counter "$fbf" "$fb")
c=$(counter raw "$(rbd_qemu "$ic")")
echo "after revert to s$mid: vda=$a vdb=$b vdc=$c"
[ "$a" = "${SA[$mid]}" ] && [ "$b" = "${SB[$mid]}" ] && [ "$c" = "${SC[$mid]}" ] ||
    fail "revert s$mid: the disks hold $a/$b/$c, the snapshot held ${SA[$mid]}/${SB[$mid]}/${SC[$mid]}"
echo "PASS: $NSNAP consistent snapshots of a running qcow2 + raw + RBD VM; pause windows agree; revert"
