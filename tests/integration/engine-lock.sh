#!/usr/bin/env bash
# One lock per domain (STATE_DIR/UUID/lock, flock): a second vmsnap on the
# same domain waits and says so, or with --no-wait fails at once with exit
# 5 ("busy"); vmsnap on another domain is not held up.
#   1. the lock held by a background `flock LOCK sleep 3`
#   2. two real vmsnap processes: the first held inside its lock by a
#      "before create" hook (exec-hooks, VMSNAP_HOOKS_DIR) until the test
#      lets it go, the second waits and then sees the first one's snapshot
#      (they serialise).  (The hold used to be a qemu-img wrapper sleeping
#      in `qemu-img create`; a create now writes its overlay in process.)
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint flock
: "${VMSNAP:?}"
mk_tmpdir
eng_state_here

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f qcow2 "$img/other.qcow2" 64M
dom=$TEST_TMP/englock.xml other=$TEST_TMP/other.xml
eng_mk_file_domain englock "$dom" "vda:qcow2:$img/vda.qcow2"
eng_mk_file_domain engother "$other" "vda:qcow2:$img/other.qcow2"
img_write "$img/vda.qcow2" qcow2 0xa1 0 1M
uuid=$(xmllint --xpath 'string(/domain/uuid)' "$dom")
lock=$VMSNAP_STATE_DIR/$uuid/lock
vms_ok list "$dom"             # makes the domain's state directory
[ -f "$lock" ] || fail "no lock file $lock after vmsnap list"

ms () { echo $(( $(date +%s%N) / 1000000 )); }
# wait_locked: until someone holds $lock (at most 5 s).
wait_locked ()
{
    local i
    for (( i = 0; i < 250; i++ )); do
        flock -n "$lock" true || return 0
        sleep 0.02
    done
    fail "nobody took $lock within 5 s"
}
pids=()
kill_pids () { local p; for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; return 0; }
cleanup_fn kill_pids

# ------------------------------------------------ 1. lock held by flock(1)
# The holder keeps the lock until the test lets it go (file "go"), and
# leaves a mark just before it lets go: no timing, so a loaded machine
# cannot make this flaky.  (At most 120 s, so a broken test cannot hang.)
flock "$lock" sh -c 'i=0; while [ ! -e "$1" ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; touch "$2"' \
    sh "$TEST_TMP/go" "$TEST_TMP/released" &
holder=$!
pids+=("$holder")
wait_locked
t0=$(ms)
before=$(cd "$img" && ls -la --time-style=full-iso)
expect_fail 5 busy "$VMSNAP" create --no-wait "$dom" s1
expect_fail 5 busy "$VMSNAP" create --no-wait --json "$dom" s1
expect_fail 5 busy "$VMSNAP" delete --no-wait "$dom" s1
[ ! -e "$TEST_TMP/released" ] || fail "the lock holder let go before the --no-wait runs ended"
nowait_ms=$(( $(ms) - t0 ))
[ "$(cd "$img" && ls -la --time-style=full-iso)" = "$before" ] || fail "a busy vmsnap changed the images"
[ ! -e "$VMSNAP_STATE_DIR/$uuid/catalog.xml" ] || fail "a busy vmsnap wrote a catalog"
# Another domain is not held up.
vms_ok create --no-wait "$other" o1
# Without --no-wait: waits (and says so) while the lock is held, then works.
"$VMSNAP" create "$dom" s1 >"$TEST_TMP/w.out" 2>"$TEST_TMP/w.err" &
waiter=$!
pids+=("$waiter")
for (( i = 0; i < 1200; i++ )); do
    grep -q waiting "$TEST_TMP/w.err" 2>/dev/null && break
    kill -0 "$waiter" 2>/dev/null || break
    sleep 0.05
done
grep -q waiting "$TEST_TMP/w.err" || { cat "$TEST_TMP/w.out" "$TEST_TMP/w.err" >&2; fail "a waiting vmsnap does not say it is waiting"; }
kill -0 "$waiter" 2>/dev/null || fail "vmsnap create did not wait for the lock holder"
[ ! -e "$VMSNAP_STATE_DIR/$uuid/catalog.xml" ] || fail "a waiting vmsnap wrote a catalog before it had the lock"
touch "$TEST_TMP/go"
t1=$(ms)
rc=0
wait "$waiter" || rc=$?
waited=$(( $(ms) - t1 ))
[ "$rc" = 0 ] || { cat "$TEST_TMP/w.out" "$TEST_TMP/w.err" >&2; fail "the waiting vmsnap exited $rc"; }
[ -e "$TEST_TMP/released" ] || fail "vmsnap create ended before the lock holder let go"
wait "$holder" || fail "the lock holder failed"
vms_ok list --json "$dom"
jq_check "$VMS_OUT" '[.snapshots[].name] == ["s1"] and .current == "s1"' "s1 after waiting"
echo "  flock holder: three --no-wait runs busy in $nowait_ms ms while held; the waiting vmsnap finished $waited ms after the release"

# ------------------------------------ 2. two vmsnap processes serialise
mkdir "$TEST_TMP/hooks"
cat >"$TEST_TMP/hooks/10-hold" <<SH
#!/bin/sh
# Holds a create inside its lock until the test lets it go (file go2; at
# most 120 s, so a broken test cannot hang).
cat >/dev/null
[ "\$1" = before ] || exit 0
i=0
while [ ! -e "$TEST_TMP/go2" ] && [ \$i -lt 2400 ]; do sleep 0.05; i=\$((i+1)); done
SH
chmod 0755 "$TEST_TMP/hooks/10-hold"
VMSNAP_HOOKS_DIR=$TEST_TMP/hooks "$VMSNAP" create "$dom" s2 >"$TEST_TMP/a.out" 2>"$TEST_TMP/a.err" &
first=$!
pids+=("$first")
wait_locked
t0=$(ms)
vms_rc create --no-wait "$dom" s3
[ "$VMS_RC" = 5 ] && [[ $VMS_ERR == *busy* ]] ||
    { printf '%s\n' "$VMS_OUT" "$VMS_ERR" >&2; fail "--no-wait during another vmsnap: exit $VMS_RC, want 5 and 'busy'"; }
# The message names the other vmsnap (its pid), unless vmsnap runs under a
# wrapper (valgrind) with another pid.
if [ -z "${VMSNAP_VALGRIND:-}" ]; then
    [[ $VMS_ERR == *"pid $first"* ]] || fail "the busy message does not name the holder, pid $first: $VMS_ERR"
fi
"$VMSNAP" create "$dom" s3 >"$TEST_TMP/b.out" 2>"$TEST_TMP/b.err" &
second=$!
pids+=("$second")
for (( i = 0; i < 1200; i++ )); do
    grep -q waiting "$TEST_TMP/b.err" 2>/dev/null && break
    kill -0 "$second" 2>/dev/null || break
    sleep 0.05
done
kill -0 "$first" 2>/dev/null || { cat "$TEST_TMP/a.out" "$TEST_TMP/a.err" >&2; fail "the first vmsnap ended before the test let its hook go"; }
touch "$TEST_TMP/go2"
rc=0; wait "$first" || rc=$?
[ "$rc" = 0 ] || { cat "$TEST_TMP/a.out" "$TEST_TMP/a.err" >&2; fail "the first vmsnap exited $rc"; }
rc=0; wait "$second" || rc=$?
[ "$rc" = 0 ] || { cat "$TEST_TMP/b.out" "$TEST_TMP/b.err" >&2; fail "the second vmsnap exited $rc"; }
grep -q waiting "$TEST_TMP/b.err" || { cat "$TEST_TMP/b.err" >&2; fail "the second vmsnap did not wait"; }
echo "  two vmsnap: the second waited, both done after $(( $(ms) - t0 )) ms"
# Serialised: s3 was taken after s2 was complete, on top of it.
vms_ok list --json "$dom"
jq_check "$VMS_OUT" '.current == "s3" and ([.snapshots[] | select(.name == "s3") | .parent] == ["s2"])
                     and ([.snapshots[] | select(.name == "s2") | .parent] == ["s1"])' \
    "the second snapshot is not on top of the first"
ENG_DOM=$dom eng_locator s2 vda; s2img=$LOC_PATH
ENG_DOM=$dom eng_locator s3 vda
out=$(qemu-img info -U --output=json -f "$LOC_FMT" "$LOC_PATH")
jq_check "$out" '.["backing-filename"] == $b' "s3's image is not backed by s2's" --arg b "$s2img"
for s in s1 s2 s3; do
    vms_ok revert "$dom" "$s"
    a=$(xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" "$dom")
    img_read "$a" qcow2 0xa1 0 1M
    img_read "$a" qcow2 0 1M 1M
done
# Nothing left behind (e.g. an overlay of the first create that the second
# one, working from a stale definition, no longer references).
vms_ok chain --json "$dom"; c1=$VMS_OUT
vms_ok chain --json "$other"; c2=$VMS_OUT
for f in "$img"/*; do
    jq -e -s --arg p "$f" '[.[].disks[].files[].path] | index($p)' <<<"$c1$c2" >/dev/null ||
        { ls -la "$img" >&2; printf '%s\n' "$c1" >&2; fail "stray file $f"; }
done
echo "engine-lock: ok"
