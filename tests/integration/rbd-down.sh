#!/usr/bin/env bash
# An unreachable Ceph cluster is a clear error within the timeout, never a
# hang, and changes nothing: a dead monitor port (VMSNAP_RBD_TIMEOUT=3, then
# the default 10 s), a frozen OSD (SIGSTOP: requests go unanswered; after
# SIGCONT the pool shows nothing half-created: no snapshot, no ownership
# mark, contents intact), a full OSD (the message names it: a full cluster
# pauses writes rather than failing them), a killed OSD.  Each time the catalog (vmsnap list
# --json) is exactly what it was and no operation is left pending.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/ceph.sh"
requires jq xmllint
: "${VMSNAP:?}"
rbd_test_start

rbdc create --size 32M rbd/vda
DOM=$TEST_TMP/dom.xml
rbd_domain_xml downdom "$DOM" vda:rbd/vda:conf
RBD_WRITTEN=A
rbd_write_letter rbd/vda 0 A
"$VMSNAP" create "$DOM" s1 >/dev/null
list0=$("$VMSNAP" list --json "$DOM")
jq -e '[.snapshots[].name] == ["s1"] and .pending == null' <<<"$list0" >/dev/null || fail "setup: $list0"

# The same domain (same UUID, same catalog) with its monitor on a port
# where nothing listens.
dead=$(_vmsnap_ceph_free_port) || fail "no free port"
DEAD=$TEST_TMP/dead.xml
sed "s/port='$CEPH_MON_PORT'/port='$dead'/" "$DOM" >"$DEAD"
grep -q "port='$dead'" "$DEAD" || fail "could not point the domain at port $dead"

# expect_down SECONDS-MIN SECONDS-MAX WANT CMD...: CMD fails with exit 1 in
# the time window, its message has WANT and the usual parts, and the
# catalog is unchanged.  The upper bounds leave room for
# a loaded machine and a sanitizer build: the point is "no hang".
expect_down ()
{
    local lo=$1 hi=$2 want=$3 t0 ms out rc=0 l
    shift 3
    t0=$(date +%s%N)
    out=$("$@" 2>&1) || rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "    $* -> exit $rc after $ms ms"
    [ "$rc" = 1 ] || { echo "$out" >&2; fail "$*: exit $rc, expected 1"; }
    [ "$ms" -ge $(( lo * 1000 )) ] && [ "$ms" -le $(( hi * 1000 )) ] ||
        { echo "$out" >&2; fail "$*: failed after $ms ms, expected $lo-$hi s"; }
    for w in "$want" "disk vda" "nothing changed" "ceph -s" "VMSNAP_RBD_TIMEOUT"; do
        [[ $out == *"$w"* ]] || { echo "$out" >&2; fail "$*: the message lacks '$w'"; }
    done
    l=$("$VMSNAP" list --json "$DOM")
    [ "$l" = "$LIST" ] || { diff <(echo "$LIST") <(echo "$l") >&2; fail "$*: the catalog changed"; }
}

LIST=$list0
echo "dead monitor (127.0.0.1:$dead), VMSNAP_RBD_TIMEOUT=3:"
export VMSNAP_RBD_TIMEOUT=3
expect_down 2 15 "cannot connect to the Ceph cluster of rbd image rbd/vda as client.admin (monitors 127.0.0.1:$dead): timed out after 3 s" \
    "$VMSNAP" create "$DEAD" s2
expect_down 2 15 "timed out after 3 s" "$VMSNAP" revert "$DEAD" s1
expect_down 2 15 "timed out after 3 s" "$VMSNAP" delete "$DEAD" s1
echo "dead monitor, default timeout:"
unset VMSNAP_RBD_TIMEOUT
expect_down 9 40 "timed out after 10 s" "$VMSNAP" create "$DEAD" s2
expect_fail 2 "VMSNAP_RBD_TIMEOUT='soon' is not a number of seconds" \
    env VMSNAP_RBD_TIMEOUT=soon "$VMSNAP" create "$DOM" s2

echo "frozen OSD, VMSNAP_RBD_TIMEOUT=3:"
export VMSNAP_RBD_TIMEOUT=3
ceph_osd_freeze
expect_down 2 20 "rbd image rbd/vda: timed out after 3 s" "$VMSNAP" create "$DOM" s2
expect_down 2 20 "timed out after 3 s" "$VMSNAP" revert "$DOM" s1
expect_down 2 20 "timed out after 3 s" "$VMSNAP" delete "$DOM" s1
ceph_osd_thaw
[ "$(rbdc snap ls --format json rbd/vda | jq -r '[.[].name] | join(" ")')" = s1 ] ||
    fail "after the frozen OSD: snapshots of rbd/vda are not just s1"
[ "$(rbdc image-meta list --format json rbd/vda | jq -r 'keys | join(" ")')" = vmsnap.snap.s1 ] ||
    fail "after the frozen OSD: stray ownership marks: $(rbdc image-meta list rbd/vda)"
rbd_check_hist rbd/vda 0 "A"
rbd_check_hist rbd/vda@s1 0 "A"
# The cluster is fine again, and so is vmsnap.
"$VMSNAP" create "$DOM" s2 >/dev/null
LIST=$("$VMSNAP" list --json "$DOM")
jq -e '[.snapshots[].name] == ["s1", "s2"] and .pending == null' <<<"$LIST" >/dev/null || fail "after thaw: $LIST"

echo "full cluster (the OSD's full ratio set below its use), VMSNAP_RBD_TIMEOUT=3:"
ceph_ratios () { local r; for r in "$@"; do timeout 30 ceph -c "$CEPH_CONF" osd "set-${r%%:*}-ratio" "${r#*:}" >/dev/null 2>&1 || fail "ceph osd set-${r%%:*}-ratio ${r#*:} failed"; done; }
ceph_ratios nearfull:0.0005 backfillfull:0.0008 full:0.001
for (( i = 0; i < 60; i++ )); do
    h=$(timeout 20 ceph -c "$CEPH_CONF" health 2>&1) || true
    # The pool's full flag (what pauses clients' writes) comes after the
    # OSD's.
    [[ $h == *"full osd"* && $h == *"pool(s) full"* ]] && break
    sleep 1
done
[[ $h == *"full osd"* && $h == *"pool(s) full"* ]] || fail "the OSD and its pool are not full after 60 s: $h"
t0=$SECONDS rc=0
out=$("$VMSNAP" create "$DOM" s3 2>&1) || rc=$?
echo "    vmsnap create s3 on a full cluster -> exit $rc after $(( SECONDS - t0 )) s"
[ "$rc" = 1 ] || { echo "$out" >&2; fail "create on a full cluster: exit $rc, expected 1"; }
for w in "disk vda" "nothing changed" "timed out after 3 s" "the Ceph cluster reports HEALTH_ERR" \
         "1 full osd(s)" "a full cluster pauses every write"; do
    [[ $out == *"$w"* ]] || { echo "$out" >&2; fail "create on a full cluster: the message lacks '$w'"; }
done
[ "$("$VMSNAP" list --json "$DOM")" = "$LIST" ] || fail "create on a full cluster changed the catalog"
ceph_ratios nearfull:0.85 backfillfull:0.90 full:0.95
for (( i = 0; i < 60; i++ )); do
    h=$(timeout 20 ceph -c "$CEPH_CONF" health 2>&1) || true
    [[ $h == *full* ]] || break
    sleep 1
done
[[ $h != *full* ]] || fail "the OSD is still full 60 s after its ratios were restored: $h"

echo "killed OSD, VMSNAP_RBD_TIMEOUT=3:"
ceph_osd_kill
expect_down 2 20 "timed out after 3 s" "$VMSNAP" create "$DOM" s3
expect_down 2 20 "timed out after 3 s" "$VMSNAP" merge "$DOM"
echo "rbd-down: ok"
