#!/usr/bin/env bash
# One consistent instant across a mixed VM: a real Linux guest
# (tests/fixtures/linux-guest.sh) with a qcow2 disk (vda), a raw disk (vdb)
# and two RBD disks writes an increasing counter to every disk in turn,
# each write O_DIRECT + O_SYNC and done before the next starts:
#   vda=n, vdb=n, vdc=n, vdd=n, vda=n+1, ...
# so at any instant vda >= vdb >= vdc >= vdd >= vda - 1 (a consistent cut).
# vdc finds the cluster through <host> + <config file>, vdd through <host>
# and a libvirt secret (<auth username='admin'>, the key in a ceph-type
# secret); vmsnap runs without CEPH_CONF, so vdd's key can only come from
# the secret (as in rbd-running.sh).
#
#   1. While it runs, `vmsnap create --json` takes several snapshots (the
#      core pauses the VM: RBD is in the mix); each snapshot's four
#      counters, read from the snapshot's own data (the frozen qcow2 layer,
#      the raw base or its frozen overlay, the RBD snapshots), must form a
#      consistent cut, and the counters must grow from snapshot to snapshot.
#      Each snapshot's pause_ms and pause_steps_ms are logged (the steps
#      only for information: nothing here is timed).
#   2. The pause window measured from outside: libvirt lifecycle events
#      (virsh event --loop --timestamp: Suspended -> Resumed) must agree
#      with the report's pause_ms within 30 ms + 25 % (why: see below).
#   3. The checker can fail: the four live disks read one after the other
#      while the guest runs (no pause), vdd only once vda has moved on by
#      two, is an inconsistent cut, and the checker must say so.
#   4. Revert (VM shut off) to a middle snapshot: all four disks hold that
#      snapshot's counters, and the RBD disks keep their config / secret.
#
# One run (TCG guest, 2 loaded CPUs): see doc/consistency.md, "The proof".
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
# The disks in the guest's write order.
DISKS=(vda vdb vdc vdd)

qemu-img create -q -f qcow2 "$TEST_TMP/vda.qcow2" 64M
truncate -s 64M "$TEST_TMP/vdb.raw"
rbdc create --size 32M rbd/vdc
rbdc create --size 32M rbd/vdd
# vdd's key: a ceph-type libvirt secret holding client.admin's key.
SUUID=$(ceph_libvirt_secret)

# The guest: the counter as a 16-byte decimal field at offset 0 of each
# disk, written with dd (O_DIRECT, O_SYNC) one disk after the other.
cat >"$TEST_TMP/guest.sh" <<'EOF'
n=1
echo "COUNTER_LOOP_START"
while :; do
    for d in vda vdb vdc vdd; do
        printf '%-512s' "$n" | dd of=/dev/$d bs=512 count=1 oflag=direct,sync conv=notrunc status=none ||
            { echo "COUNTER_WRITE_FAILED $d $n"; exit 1; }
    done
    [ $((n % 20)) != 0 ] || echo "COUNTER $n"
    n=$((n + 1))
done
EOF
linuxg_domain_xml "$DOM" "$TEST_TMP/dom.xml" "$TEST_TMP/guest.sh" \
    "vda:qcow2:$TEST_TMP/vda.qcow2" "vdb:raw:$TEST_TMP/vdb.raw" "vdc:rbd:rbd/vdc:conf" \
    "vdd:rbd:rbd/vdd:secret=$SUUID"
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

# consistent V1 V2 ... Vk (the counters in the guest's write order):
# V1 >= V2 >= ... >= Vk >= V1 - 1
consistent ()
{
    local first=$1 prev=$1 v
    shift
    for v in "$@"; do
        [ "$prev" -ge "$v" ] || return 1
        prev=$v
    done
    [ "$prev" -ge $(( first - 1 )) ]
}

# The checker itself, on cuts whose verdict is known (so a broken checker
# fails here, before it judges anything).
consistent 5 5 5 5 && consistent 6 5 5 5 && consistent 6 6 5 5 && consistent 6 6 6 5 &&
    ! consistent 5 5 5 6 && ! consistent 5 6 5 5 && ! consistent 7 6 6 5 && ! consistent 6 5 6 5 ||
    fail "the checker misjudges a known cut"

# vmsnap without CEPH_CONF: vdc has its <config file>, vdd its secret.
vmsnap_noconf () { env -u CEPH_CONF "$VMSNAP" "$@"; }

# The disks' sources in a definition (the XML on stdin): file or RBD image.
disk_file () { xmllint --xpath "string(//disk[target/@dev='$1']/source/@file)" -; }
disk_fmt () { xmllint --xpath "string(//disk[target/@dev='$1']/driver/@type)" -; }
disk_rbd () { xmllint --xpath "string(//disk[target/@dev='$1']/source/@name)" -; }

# cut_str V: the counters of array V (indexed by target) as "vda=.. vdb=.. ...",
# and as "a/b/c/d" (cut_slash).
cut_str ()
{
    local -n _v=$1
    local t out=""
    for t in "${DISKS[@]}"; do out+="${out:+ }$t=${_v[$t]}"; done
    echo "$out"
}
cut_slash ()
{
    local -n _v=$1
    local t out=""
    for t in "${DISKS[@]}"; do out+="${out:+/}${_v[$t]}"; done
    echo "$out"
}
cut_values ()
{
    local -n _v=$1
    local t
    for t in "${DISKS[@]}"; do echo "${_v[$t]}"; done
}

# ---- the event listener: Suspended / Resumed with timestamps
virsh event --domain "$DOM" --event lifecycle --loop --timestamp \
    >"$TEST_TMP/events.log" 2>&1 &
EVPID=$!
stop_events () { kill "$EVPID" 2>/dev/null || true; wait "$EVPID" 2>/dev/null || true; }
cleanup_fn stop_events
sleep 0.5

declare -A SNAPV PAUSE
prev=0
for (( i = 1; i <= NSNAP; i++ )); do
    sleep 0.7
    out=$(vmsnap_noconf create --json "$DOM" "s$i" 2>"$TEST_TMP/err") ||
        { cat "$TEST_TMP/err" >&2; fail "vmsnap create s$i exited $?"; }
    printf '%s\n' "$out" >"$TEST_TMP/create-s$i.json"
    [ "$(jq -r .online <<<"$out")" = pause ] ||
        fail "create s$i: expected the pause mode for a mixed VM: $out"
    [ "$(jq -r .domain_state <<<"$out")" = running ] || fail "create s$i: the VM is not running afterwards: $out"
    PAUSE[$i]=$(jq -r '.pause_ms // empty' <<<"$out")
    [ -n "${PAUSE[$i]}" ] || fail "create s$i: no pause_ms in the report: $out"
    # Each disk's snapshot data: qcow2-external's locator is FORMAT:PATH of
    # the frozen layer, rbd's is rbd:POOL/IMAGE@SNAP.
    declare -A V=()
    for t in "${DISKS[@]}"; do
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
        V[$t]=$v
        SNAPV[$i.$t]=$v
    done
    # pause_steps_ms: where the window went (logged, never asserted).
    echo "s$i: $(cut_str V) pause_ms=${PAUSE[$i]} pause_steps_ms=$(jq -c '.pause_steps_ms // "none"' <<<"$out")"
    mapfile -t vals < <(cut_values V)
    consistent "${vals[@]}" ||
        fail "s$i is not a consistent cut: $(cut_str V) (want vda >= vdb >= vdc >= vdd >= vda-1)"
    [ "${V[vda]}" -gt "$prev" ] || fail "s$i: the counter did not grow (${V[vda]} after $prev): is the guest writing?"
    prev=${V[vda]}
    unset V
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
# Not a race won by chance: vda, vdb and vdc are read (vda first: a),
# then vda again until the guest has written it twice more (a2 >= a + 2);
# only then vdd.  The guest writes vdd=n before vda=n+1, so vdd >= a2 - 1
# > a, and the cut (a, vdb, vdc, vdd) breaks vda >= vdd whatever the
# timing (whatever vdb and vdc hold), as long as the guest writes (which
# the growing snapshots above showed).
live_xml=$(virsh -q dumpxml "$DOM")
vda_file=$(disk_file vda <<<"$live_xml")
vdb_file=$(disk_file vdb <<<"$live_xml")
vdc_img=$(disk_rbd vdc <<<"$live_xml")
vdd_img=$(disk_rbd vdd <<<"$live_xml")
declare -A L=()
L[vda]=$(counter qcow2 "$vda_file")
L[vdb]=$(counter qcow2 "$vdb_file")
L[vdc]=$(counter raw "$(rbd_qemu "$vdc_img")")
a=${L[vda]}
t0=$SECONDS
until a2=$(counter qcow2 "$vda_file"); [ "$a2" -ge $(( a + 2 )) ]; do
    [ $(( SECONDS - t0 )) -lt 60 ] || fail "the guest's vda counter stayed at $a2 for 60 s (from $a): is it writing?"
    sleep 0.05
done
L[vdd]=$(counter raw "$(rbd_qemu "$vdd_img")")
echo "unpaused one-by-one read: $(cut_str L) (vda reached $a2 before vdd was read)"
[ "${L[vdd]}" -gt "$a" ] ||
    fail "vdd=${L[vdd]} was read after vda reached $a2: the guest does not write vdd before vda's next value"
mapfile -t vals < <(cut_values L)
! consistent "${vals[@]}" || fail "the checker calls $(cut_str L) consistent: it proves nothing"
echo "unpaused one-by-one read is inconsistent, and the checker says so"

# ---- revert (shut off) to a middle snapshot
mid=$(( (NSNAP + 1) / 2 ))
virsh -q destroy "$DOM" >/dev/null
out=$(vmsnap_noconf revert --json "$DOM" "s$mid" 2>"$TEST_TMP/err") ||
    { cat "$TEST_TMP/err" >&2; fail "vmsnap revert s$mid exited $?"; }
# The sources after the revert (the RBD ones may be clones or the same
# images): each disk must hold the snapshot's counter.
xml=$(virsh -q dumpxml --inactive "$DOM")
declare -A R=() W=()
for t in "${DISKS[@]}"; do
    img=$(disk_rbd "$t" <<<"$xml")
    if [ -n "$img" ]; then
        R[$t]=$(counter raw "$(rbd_qemu "$img")")
    else
        R[$t]=$(counter "$(disk_fmt "$t" <<<"$xml")" "$(disk_file "$t" <<<"$xml")")
    fi
    W[$t]=${SNAPV[$mid.$t]}
done
echo "after revert to s$mid: $(cut_str R) (sources: vdc $(disk_rbd vdc <<<"$xml"), vdd $(disk_rbd vdd <<<"$xml"))"
[ "$(cut_str R)" = "$(cut_str W)" ] ||
    fail "revert s$mid: the disks hold $(cut_slash R), the snapshot held $(cut_slash W)"
[ "$(xmllint --xpath "string(//disk[target/@dev='vdc']/source/config/@file)" - <<<"$xml")" = "$CEPH_CONF" ] ||
    fail "revert s$mid: vdc lost its <config file>"
[ "$(xmllint --xpath "string(//disk[target/@dev='vdd']/auth/secret/@uuid)" - <<<"$xml")" = "$SUUID" ] ||
    fail "revert s$mid: vdd lost its <auth> secret"
echo "PASS: $NSNAP consistent snapshots of a running qcow2 + raw + 2 RBD VM (one through a libvirt secret); pause windows agree; revert"
