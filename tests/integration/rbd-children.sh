#!/usr/bin/env bash
# A snapshot with clone children.  s1 of rbd/vda gets two clones: c1, the
# disk's image after a clone revert to s1 (it holds s3), and u1, a clone a
# user made without deep-flatten, with a snapshot of its own.
#  - VMSNAP_RBD_DELETE_CHILDREN=refuse: delete s1 is refused naming both
#    clones; nothing changes.
#  - A snapshot protected by someone else is never unprotected: refused.
#  - The default: delete s1 flattens both (progress on a terminal); c1 is
#    free of s1, u1 still needs it (its own snapshot reads s1), so s1 is
#    kept as an unnamed point; merge leaves it while u1 needs it, and
#    removes it (and its marks) once u1's snapshot is gone.
#  - Deleting s2 then empties rbd/vda, which the clone revert abandoned:
#    the image is removed.
# Contents of the disk, every snapshot and u1 are checked after each step.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/ceph.sh"
requires jq xmllint script
: "${VMSNAP:?}"
rbd_test_start
export VMSNAP_RBD_REVERT_MODE=clone

rbdc create --size 32M rbd/vda
DOM=$TEST_TMP/dom.xml
rbd_domain_xml kids "$DOM" vda:rbd/vda:conf
UUID=$(xmllint --xpath 'string(/domain/uuid)' "$DOM")
active () { xmllint --xpath "string(//disk[target/@dev='vda']/source/@name)" "$DOM"; }
vms () { "$VMSNAP" "$@" 2>"$TEST_TMP/err" || { cat "$TEST_TMP/err" >&2; fail "vmsnap $* failed"; }; }
parent_of () { rbdc info --format json "$1" | jq -r '.parent | if . then "\(.pool)/\(.image)@\(.snapshot)" else "none" end'; }
snaps_of () { rbdc snap ls --format json "$1" | jq -r '[.[].name] | join(" ")'; }
protected () { rbdc snap ls --format json "$1" | jq -r --arg s "$2" '.[] | select(.name == $s) | .protected'; }

RBD_WRITTEN=A; rbd_write_letter rbd/vda 0 A
vms create "$DOM" s1 >/dev/null
RBD_WRITTEN+=B; rbd_write_letter rbd/vda 0 B
vms create "$DOM" s2 >/dev/null
vms revert "$DOM" s1 >/dev/null
c1=$(active)
[ "$(parent_of "$c1")" = rbd/vda@s1 ] || fail "the disk is not on a clone of s1"
[ "$(protected rbd/vda s1)" = true ] && [ "$(rbdc image-meta get rbd/vda vmsnap.protected.s1)" = "$UUID" ] ||
    fail "s1 is not protected by vmsnap"
RBD_WRITTEN+=C; rbd_write_letter "$c1" 0 C
vms create "$DOM" s3 >/dev/null
# A user's clone of s1: no deep-flatten, a snapshot of its own, data of its own.
rbdc clone --image-feature layering rbd/vda@s1 rbd/u1
rbd_img_write rbd/u1 0x55 20M 512k
rbdc snap create rbd/u1@keep

check_all ()   # everything that must hold whatever happens to s1
{
    rbd_check_hist "$(active)" 0 "A C"
    rbd_check_hist "$c1@s3" 0 "A C"
    rbd_check_hist rbd/vda@s2 0 "A B"
    rbd_img_read rbd/u1 "0xa1 0 512k" "0x55 20M 512k" "0x00 2M 512k"
    rbd_img_read rbd/u1@keep "0xa1 0 512k" "0x55 20M 512k"
}
check_all
rbd_expect_mismatch "$c1@s3" 0 "A B"
list0=$("$VMSNAP" list --json "$DOM")

echo "refuse:"
out=$(VMSNAP_RBD_DELETE_CHILDREN=refuse "$VMSNAP" delete "$DOM" s1 2>&1) && fail "delete s1 (refuse) succeeded: $out"
echo "    $out"
for w in "disk vda" "rbd/vda@s1" "$c1" "rbd/u1" "nothing changed" VMSNAP_RBD_DELETE_CHILDREN; do
    [[ $out == *"$w"* ]] || fail "the refusal does not say '$w': $out"
done
[ "$("$VMSNAP" list --json "$DOM")" = "$list0" ] || fail "refuse: the catalog changed"
[ "$(snaps_of rbd/vda)" = "s1 s2" ] && [ "$(protected rbd/vda s1)" = true ] || fail "refuse: s1 changed"
[ "$(parent_of "$c1")" = rbd/vda@s1 ] && [ "$(parent_of rbd/u1)" = rbd/vda@s1 ] || fail "refuse: a clone was flattened"
expect_fail 2 "VMSNAP_RBD_DELETE_CHILDREN='maybe': use flatten or refuse" \
    env VMSNAP_RBD_DELETE_CHILDREN=maybe "$VMSNAP" delete "$DOM" s1
check_all

echo "protected by someone else:"
rbdc snap protect rbd/vda@s2
expect_fail 1 "snapshot rbd/vda@s2 is protected, and not by vmsnap" "$VMSNAP" delete "$DOM" s2
[ "$("$VMSNAP" list --json "$DOM")" = "$list0" ] || fail "protected: the catalog changed"
rbdc snap unprotect rbd/vda@s2

echo "flatten (default), on a terminal:"
# stdout to a file, stderr is the terminal (script's typescript).
script -qec "'$VMSNAP' delete --json '$DOM' s1 >'$TEST_TMP/del.json'" "$TEST_TMP/del.tty" >/dev/null ||
    { cat "$TEST_TMP/del.json" "$TEST_TMP/del.tty" >&2; fail "delete s1 failed"; }
json=$(cat "$TEST_TMP/del.json")
# The line shows the objects started (librbd reports N-1 of N last) and
# is erased when the work ends (the core's vmsnap_op_progress).
grep -qE 'vda: +[0-9]+%' "$TEST_TMP/del.tty" || { cat -v "$TEST_TMP/del.tty" >&2; fail "no flatten progress on the terminal"; }
grep -q $'\r\033\[K' "$TEST_TMP/del.tty" || { cat -v "$TEST_TMP/del.tty" >&2; fail "the flatten progress line was not erased"; }
jq -e '.disks[0].kept == true and (.disks[0].note | test("rbd/u1 still depend on it"))
       and .disks[0].bytes_copied > 0' <<<"$json" >/dev/null || { echo "$json" >&2; fail "delete s1: report"; }
echo "    $(jq -r '.disks[0].note' <<<"$json")"
[ "$(parent_of "$c1")" = none ] || fail "$c1 was not flattened"
[ "$(parent_of rbd/u1)" = none ] || fail "rbd/u1's head was not flattened"
[ "$(snaps_of rbd/vda)" = "s1 s2" ] || fail "s1 should stay while rbd/u1@keep needs it"
l=$("$VMSNAP" list --json "$DOM")
jq -e '[.snapshots[].name] == ["s2", "s3"] and .kept_unnamed_points == 1 and .pending == null' <<<"$l" >/dev/null ||
    { echo "$l" >&2; fail "after delete s1: list"; }
check_all

vms merge --json "$DOM" >"$TEST_TMP/m.json"
jq -e '.disks[0].note | test("unnamed point rbd/vda@s1 kept: clone\\(s\\) rbd/u1 depend on it")' "$TEST_TMP/m.json" >/dev/null ||
    { cat "$TEST_TMP/m.json" >&2; fail "merge should keep s1 while rbd/u1 needs it"; }
[ "$(snaps_of rbd/vda)" = "s1 s2" ] || fail "merge removed s1 too early"

echo "the user's snapshot goes; merge:"
rbdc snap rm rbd/u1@keep
[ -z "$(rbdc children rbd/vda@s1)" ] || fail "rbd/vda@s1 still has children"
vms merge --json "$DOM" >"$TEST_TMP/m.json"
jq -e '.disks[0].note | test("removed unnamed point rbd/vda@s1")' "$TEST_TMP/m.json" >/dev/null ||
    { cat "$TEST_TMP/m.json" >&2; fail "merge did not remove the unnamed point"; }
[ "$(snaps_of rbd/vda)" = "s2" ] || fail "s1 still in rbd/vda"
[ "$(rbdc image-meta list --format json rbd/vda | jq -r 'keys | sort | join(" ")')" = "vmsnap.abandoned vmsnap.snap.s2" ] ||
    fail "marks of s1 left: $(rbdc image-meta list rbd/vda)"
l=$("$VMSNAP" list --json "$DOM")
jq -e '.kept_unnamed_points == 0' <<<"$l" >/dev/null || fail "after merge: $l"
rbd_check_hist "$(active)" 0 "A C"
rbd_check_hist rbd/vda@s2 0 "A B"
rbd_img_read rbd/u1 "0xa1 0 512k" "0x55 20M 512k"

echo "delete s2: rbd/vda is empty and abandoned:"
vms delete --json "$DOM" s2 >"$TEST_TMP/d.json"
jq -e '.disks[0].note | test("image rbd/vda \\(abandoned by an earlier clone revert\\) holds no snapshot any more and is removed")' \
    "$TEST_TMP/d.json" >/dev/null || { cat "$TEST_TMP/d.json" >&2; fail "delete s2: report"; }
if timeout 30 rbd info rbd/vda >/dev/null 2>&1; then fail "rbd/vda still exists"; fi
[ "$(rbdc ls rbd | sort | tr '\n' ' ')" = "$(printf '%s\n' "${c1#rbd/}" u1 | sort | tr '\n' ' ')" ] ||
    fail "images left: $(rbdc ls rbd)"
rbd_check_hist "$(active)" 0 "A C"
rbd_check_hist "$c1@s3" 0 "A C"
echo "a clone another disk of the domain runs on is never flattened (issue 16 item 2):"
rbdc create --size 8M rbd/gv
DOM2=$TEST_TMP/dom2.xml
rbd_domain_xml guard2 "$DOM2" vda:rbd/gv:conf
UUID2=$(xmllint --xpath 'string(/domain/uuid)' "$DOM2")
vms create "$DOM2" g1 >/dev/null
rbdc snap protect rbd/gv@g1
rbdc image-meta set rbd/gv vmsnap.protected.g1 "$UUID2"
rbdc clone --image-feature layering rbd/gv@g1 rbd/gw
rbd_domain_xml guard2 "$DOM2.new" vda:rbd/gv:conf vdb:rbd/gw:conf
sed -i "s|<uuid>.*</uuid>|<uuid>$UUID2</uuid>|" "$DOM2.new"
mv -- "$DOM2.new" "$DOM2"
if "$VMSNAP" delete "$DOM2" g1 2>"$TEST_TMP/err"; then fail "delete g1 flattened vdb's image"; fi
grep -q "refusing to write rbd:rbd/gw: disk vdb uses it" "$TEST_TMP/err" ||
    { cat "$TEST_TMP/err" >&2; fail "delete g1: not the guard's refusal"; }
[ "$(parent_of rbd/gw)" = rbd/gv@g1 ] || fail "rbd/gw was flattened"
[ "$(snaps_of rbd/gv)" = g1 ] || fail "g1 is gone: $(snaps_of rbd/gv)"
[ ! -e "$VMSNAP_STATE_DIR/$UUID2/journal" ] || fail "the refused delete left a journal"
echo "rbd-children: ok"
