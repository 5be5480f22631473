#!/usr/bin/env bash
# The pause window of a create of a RUNNING VM with a qcow2 disk (vda) and
# two RBD disks (vdb, vdc), and its failure paths (issue 18).  Each case
# ends with the VM running and nothing half-made: no journal left, every
# overlay file and every RBD snapshot and ownership mark belongs to a
# snapshot in the catalog.
#   1. a create: the disks prepared before the pause (the RBD images
#      opened, the overlay written), captured at once inside it; the
#      report's pause_steps_ms; a second create;
#   2. a prepare fails (vdc's image has a foreign snapshot of that name):
#      the VM is never paused (libvirt's lifecycle events), what vdb's
#      prepare made is aborted;
#   3. Ceph goes away between prepare and pause (vmsnap held by
#      VMSNAP_TEST_HOLD_BEFORE_PAUSE, its clients blocklisted and the
#      monitor frozen, so that no new connection can be made): the VM runs
#      again at once, the journal stays (the prepared marks could not be
#      removed), `vmsnap recover` removes them once Ceph answers again;
#   4. vmsnap killed after each journaled step of a create
#      (VMSNAP_TEST_CRASH_AFTER=1, 2, ...): the VM runs without any
#      command (inside the window the guard resumes it), `vmsnap recover`
#      finishes or rolls the create back as a whole.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/ceph.sh"
requires jq xmllint virsh qemu-img
requires_qemu_rbd
requires_rbd_backend
: "${VMSNAP:?}"
mk_tmpdir
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
ceph_start
libvirt_start
unset VMSNAP_RBD_ROLLBACK_MAX_OBJECTS VMSNAP_RBD_REVERT_MODE VMSNAP_RBD_DELETE_CHILDREN VMSNAP_RBD_KEEP_OLD_HEAD
export VMSNAP_STATE_DIR=$TEST_TMP/state VMSNAP_RBD_TIMEOUT=10
DOM=win
IMG=$TEST_TMP/img
mkdir -p "$IMG"
qemu-img create -q -f qcow2 "$IMG/vda.qcow2" 64M
rbdc create --size 32M rbd/win-vdb
rbdc create --size 32M rbd/win-vdc
RBD_IMAGES=(win-vdb win-vdc)

cat >"$TEST_TMP/dom.xml" <<EOF
<domain type='$VMSNAP_TEST_DOMTYPE'>
  <name>$DOM</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$IMG/vda.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <alias name='ua-vda'/>
    </disk>
$(rbd_disk_xml vdb rbd/win-vdb conf)
$(rbd_disk_xml vdc rbd/win-vdc conf)
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
libvirt_define_test_domain "$DOM" "$TEST_TMP/dom.xml"
cleanup_fn virsh -q undefine "$DOM"
out=$(virsh start "$DOM" 2>&1) || fail "virsh start $DOM: $out"
UUID=$(virsh -q domuuid "$DOM")
JOURNAL=$VMSNAP_STATE_DIR/$UUID/journal
# QEMU takes each RBD image's exclusive lock with its first write: the
# captures then go through the lock owner, as with a guest that writes.
for t in vda vdb vdc; do hmp_qemu_io "$DOM" "ua-$t" "write -P 0x11 0 64k" >/dev/null; done

VMS_ERRFILE=$TEST_TMP/vms.err
vms_rc () { VMS_RC=0; VMS_OUT=$("$VMSNAP" "$@" 2>"$VMS_ERRFILE") || VMS_RC=$?; VMS_ERR=$(cat "$VMS_ERRFILE"); }
vms_ok ()
{
    vms_rc "$@"
    [ "$VMS_RC" = 0 ] || { printf '%s\n' "$VMS_OUT" "$VMS_ERR" >&2; fail "vmsnap $* exited $VMS_RC"; }
}
domstate () { virsh -q domstate "$DOM" | head -n1; }

# wait_running LABEL: the domain runs within 30 s (the guard resumes it
# asynchronously after vmsnap died).
wait_running ()
{
    local i
    for (( i = 0; i < 300; i++ )); do
        [ "$(domstate)" = running ] && return 0
        sleep 0.1
    done
    fail "$1: the domain is '$(domstate)' 30 s later, not running"
}

# expect_clean LABEL: the VM runs, no operation is pending, and storage
# holds exactly what the catalog names: vda's overlays (one per snapshot
# plus the base), and on each RBD image the catalog's snapshots and their
# ownership marks, nothing else of vmsnap's.
expect_clean ()
{
    local names n files img snaps marks
    [ "$(domstate)" = running ] || fail "$1: the domain is '$(domstate)'"
    [ ! -e "$JOURNAL" ] || fail "$1: a journal is left: $(cat "$JOURNAL")"
    vms_ok list --json "$DOM"
    [ "$(jq -r '.pending // empty' <<<"$VMS_OUT")" = "" ] || fail "$1: list shows a pending operation"
    names=$(jq -r '[.snapshots[].name] | sort | join(" ")' <<<"$VMS_OUT")
    n=$(jq -r '.snapshots | length' <<<"$VMS_OUT")
    files=$(find "$IMG" -maxdepth 1 -type f | wc -l)
    [ "$files" = $(( n + 1 )) ] ||
        fail "$1: $files files in $IMG for $n snapshots ($names): $(ls "$IMG")"
    for img in "${RBD_IMAGES[@]}"; do
        snaps=$(rbdc snap ls --format json "rbd/$img" | jq -r '[.[].name] | sort | join(" ")')
        [ "$snaps" = "$names" ] || fail "$1: rbd/$img has snapshots '$snaps', the catalog '$names'"
        marks=$(rbdc image-meta list --format json "rbd/$img" |
                jq -r 'keys | map(select(startswith("vmsnap.snap."))) | map(sub("^vmsnap.snap."; "")) | sort | join(" ")')
        [ "$marks" = "$names" ] || fail "$1: rbd/$img has marks for '$marks', the catalog '$names'"
    done
}

# events_start / events_count KIND: libvirt's lifecycle events of the
# domain, read by `virsh event --loop`; events_count first makes a
# suspend + resume of its own and waits for its Resumed event, so every
# earlier event has been delivered.
events_start ()
{
    EV=$TEST_TMP/events.$RANDOM
    virsh event "$DOM" --event lifecycle --loop --timestamp >"$EV" 2>&1 &
    EV_PID=$!
    cleanup_fn kill "$EV_PID"
    for (( i = 0; i < 100; i++ )); do
        # virsh registered once it prints nothing yet still runs: make a
        # marker event until it shows up in the log.
        out=$(virsh suspend "$DOM" 2>&1) || fail "virsh suspend: $out"
        out=$(virsh resume "$DOM" 2>&1) || fail "virsh resume: $out"
        grep -q "Resumed" "$EV" && break
        sleep 0.1
    done
    grep -q "Resumed" "$EV" || fail "virsh event shows no event"
    EV_BASE=$(grep -c "Suspended" "$EV" || true)
}
events_suspended ()   # prints how many Suspended events came since events_start
{
    local want i
    out=$(virsh suspend "$DOM" 2>&1) || fail "virsh suspend: $out"
    out=$(virsh resume "$DOM" 2>&1) || fail "virsh resume: $out"
    want=$(( $(grep -c "Resumed" "$EV") + 1 ))
    for (( i = 0; i < 300; i++ )); do
        [ "$(grep -c "Resumed" "$EV")" -ge "$want" ] && break
        sleep 0.1
    done
    kill "$EV_PID" 2>/dev/null || true
    wait "$EV_PID" 2>/dev/null || true
    echo $(( $(grep -c "Suspended" "$EV" || true) - EV_BASE - 1 ))
}

# ------------------------------------------------------------ 1. creates
vms_ok create --json "$DOM" s1
jq -e '.online == "pause" and .domain_state == "running" and .pause_ms > 0
       and (.pause_steps_ms | has("suspend") and has("captures") and has("switch") and has("resume"))
       and ([.disks[] | select(.backend == "rbd")] | length) == 2
       and ([.disks[] | select(.backend == "qcow2-external")] | length) == 1' <<<"$VMS_OUT" >/dev/null ||
    { echo "$VMS_OUT" >&2; fail "create s1 while running: report"; }
echo "  create s1: paused $(jq -r .pause_ms <<<"$VMS_OUT") ms: $(jq -c .pause_steps_ms <<<"$VMS_OUT")"
expect_clean "create s1"
vms_ok create --json "$DOM" s2
expect_clean "create s2"

# --------------------------------------------------- 2. a prepare fails
rbdc snap create rbd/win-vdc@s3
events_start
vms_rc create --json "$DOM" s3
[ "$VMS_RC" != 0 ] || fail "create s3 succeeded although rbd/win-vdc has a foreign snapshot s3"
[[ $VMS_ERR == *"disk vdc"*"already has a snapshot named 's3'"* ]] ||
    { echo "$VMS_ERR" >&2; fail "create s3: the error does not name the disk and the foreign snapshot"; }
[[ $VMS_ERR == *"rolled back, nothing changed"* ]] ||
    { echo "$VMS_ERR" >&2; fail "create s3: the error does not say it was rolled back"; }
n=$(events_suspended)
[ "$n" = 0 ] || fail "create s3 (a prepare failed): the VM was paused $n time(s)"
rbdc snap rm rbd/win-vdc@s3
expect_clean "a failed prepare"
echo "  a prepare fails: never paused, rolled back"

# ------------------------------------- 3. Ceph away between prepare and pause
HOLD=$TEST_TMP/hold
VMSNAP_TEST_HOLD_BEFORE_PAUSE=$HOLD "$VMSNAP" create --json "$DOM" s3 >"$TEST_TMP/s3.out" 2>"$TEST_TMP/s3.err" &
pid=$!
cleanup_fn kill "$pid"
for (( i = 0; i < 600; i++ )); do
    [ ! -e "$HOLD" ] || break
    kill -0 "$pid" 2>/dev/null || { cat "$TEST_TMP/s3.err" >&2; fail "create s3 ended before the pause"; }
    sleep 0.1
done
[ -e "$HOLD" ] || fail "create s3 never reached the pause (no $HOLD)"
[ "$(domstate)" = running ] || fail "held before the pause, the domain is '$(domstate)'"
# vmsnap's cluster clients, recorded in its journal before it opened the images.
mapfile -t addrs < <(grep -o 's\.clients=.*' "$JOURNAL" | sed 's/^s\.clients=//; s/\\n/\n/g' |
                     awk '{ print $2 }' | sort -u)
[ "${#addrs[@]}" -ge 1 ] || fail "no client address in the journal: $(cat "$JOURNAL")"
for a in "${addrs[@]}"; do
    out=$(timeout 60 ceph osd blocklist add "$a" 2>&1) || fail "ceph osd blocklist add $a: $out"
done
# Its connections are cut, and no new one can be made: the monitor hangs.
ceph_mon_freeze
cleanup_fn ceph_mon_thaw
rm -f "$HOLD"
rc=0
wait "$pid" || rc=$?
[ "$rc" != 0 ] || fail "create s3 succeeded with its Ceph clients blocklisted"
err=$(cat "$TEST_TMP/s3.err")
[ "$(domstate)" = running ] || fail "create s3 failed and left the domain '$(domstate)'"
[[ $err == *"vmsnap recover"* ]] || { echo "$err" >&2; fail "create s3: the error does not say to run vmsnap recover"; }
[ -e "$JOURNAL" ] || fail "create s3: the journal is gone although its marks could not be removed"
ceph_mon_thaw
for a in "${addrs[@]}"; do
    out=$(timeout 60 ceph osd blocklist rm "$a" 2>&1) || fail "ceph osd blocklist rm $a: $out"
done
vms_ok recover --json "$DOM"
expect_clean "Ceph away between prepare and pause, then recover"
echo "  Ceph away before the pause: the VM ran on, recover removed what was prepared"

# -------------------------------------------- 4. killed at every step
points=0 inside=0
for (( n = 1; n <= 60; n++ )); do
    rc=0
    VMSNAP_TEST_CRASH_AFTER=$n "$VMSNAP" create --json "$DOM" c1 >/dev/null 2>"$TEST_TMP/c1.err" || rc=$?
    if [ "$rc" = 0 ]; then
        break
    fi
    [ "$rc" = 99 ] || { cat "$TEST_TMP/c1.err" >&2; fail "N=$n: create exited $rc"; }
    points=$(( points + 1 ))
    grep -q '^paused_by_us=yes' "$JOURNAL" 2>/dev/null && inside=$(( inside + 1 ))
    # The VM runs without any command: inside the window the guard resumed it.
    wait_running "N=$n: killed"
    vms_ok recover --json "$DOM"
    res=$(jq -r .result <<<"$VMS_OUT")
    vms_ok list --json "$DOM"
    if jq -e '.snapshots[] | select(.name == "c1")' <<<"$VMS_OUT" >/dev/null; then
        [ "$(jq -r '.snapshots[] | select(.name == "c1") | .disks | length' <<<"$VMS_OUT")" = 3 ] ||
            fail "N=$n: c1 is in the catalog without all three disks"
        expect_clean "N=$n ($res)"
        vms_ok delete --json "$DOM" c1
    fi
    expect_clean "N=$n ($res)"
done
[ "$rc" = 0 ] || fail "create c1 still crashed at N=60"
[ "$points" -ge 10 ] && [ "$inside" -ge 1 ] ||
    fail "only $points crash points ($inside inside the window): is VMSNAP_TEST_CRASH_AFTER working?"
expect_clean "create c1"
echo "  killed after each of $points steps ($inside after the pause began): the VM ran on, recover left no trace"
echo "PASS: the pause window of a qcow2 + 2 RBD running VM and its failure paths"
