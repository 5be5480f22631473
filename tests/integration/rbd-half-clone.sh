#!/usr/bin/env bash
# A clone revert killed inside librbd's rbd_clone3 (which creates the
# child image first and links it to its parent after) leaves an image with
# no parent, no snapshot and no data under the name vmsnap recorded in its
# journal.  `vmsnap recover` removes that half-made clone and clones again
# (found by the conformance crash matrix's random SIGKILLs).  The state is
# made deterministic: the revert is stopped after its first journaled step
# (VMSNAP_TEST_CRASH_AFTER=1: the clone's name recorded, nothing cloned),
# then the half-made clone is created by hand.  An image under that name
# that holds data is never removed: recover refuses and names it.  And a
# half-made snapshot (case 3 below), and a half-removed image (cases 4, 5).
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/ceph.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq xmllint qemu-io
: "${VMSNAP:?}"
rbd_test_start
export VMSNAP_RBD_REVERT_MODE=clone
eng_state_here
qio () { qemu-io -f raw "$@" 2>&1; }
# state NAME: image rbd/NAME with 0xa1 at 0, snapshot s1, then 0xb2 at 0;
# a revert to s1 stopped after its first journaled step.  Sets DOM, CLONE
# (the clone name the journal recorded).
state ()
{
    DOM=$TEST_TMP/$1.xml
    rbdc create --size 16M "rbd/$1"
    rbd_domain_xml "$1" "$DOM" "vda:rbd/$1:conf"
    qio -c "write -P 0xa1 0 64k" "$(rbd_qemu "rbd/$1")" >/dev/null
    vms_ok create "$DOM" s1
    qio -c "write -P 0xb2 0 64k" "$(rbd_qemu "rbd/$1")" >/dev/null
    VMSNAP_TEST_CRASH_AFTER=1 vms_rc revert "$DOM" s1
    [[ $VMS_ERR == *"VMSNAP_TEST_CRASH_AFTER reached"* ]] || fail "the revert did not stop at its first step: $VMS_ERR"
    CLONE=$(sed -n 's/^s\.clone=//p' "$VMSNAP_STATE_DIR"/*/journal)
    [ -n "$CLONE" ] || fail "the journal records no clone name: $(cat "$VMSNAP_STATE_DIR"/*/journal)"
    ! rbd info "$CLONE" >/dev/null 2>&1 || fail "$CLONE exists already after the first step"
}

# 1. An empty image with no parent under the recorded name: removed, cloned again.
state hc1
rbdc create --size 16M "$CLONE"
vms_ok recover "$DOM"
vms_ok list --json "$DOM"
[ "$(jq -r .current <<<"$VMS_OUT")" = s1 ] || fail "recover did not finish the revert to s1: $VMS_OUT"
src=$(xmllint --xpath 'string(//disk/source/@name)' "$DOM")
[ "$src" = "$CLONE" ] || fail "the disk is on $src, not the clone $CLONE"
parent=$(rbd info --format json "$CLONE" | jq -r '.parent | "\(.pool)/\(.image)@\(.snapshot)"')
[ "$parent" = "rbd/hc1@s1" ] || fail "$CLONE's parent is $parent, not rbd/hc1@s1"
out=$(qio -r -c "read -P 0xa1 0 64k" "$(rbd_qemu "$CLONE")")
[[ $out != *"verification failed"* && $out == *"bytes at offset"* ]] || fail "the disk does not hold s1's data: $out"
vms_ok check "$DOM"
echo "  half-made clone $CLONE removed by recover; the revert finished: clone of rbd/hc1@s1 with s1's data, no drift"

# 2. The same name holding data (not a half-made clone): refused, kept.
export VMSNAP_STATE_DIR=$TEST_TMP/state2
state hc2
rbdc create --size 16M "$CLONE"
qio -c "write -P 0xc3 0 4k" "$(rbd_qemu "$CLONE")" >/dev/null
vms_rc recover "$DOM"
[ "$VMS_RC" != 0 ] || fail "recover went on over an image with data under the recorded name"
[[ $VMS_ERR == *"$CLONE exists but is not a clone of"* ]] || fail "the refusal does not name $CLONE: $VMS_ERR"
out=$(qio -r -c "read -P 0xc3 0 4k" "$(rbd_qemu "$CLONE")")
[[ $out != *"verification failed"* && $out == *"bytes at offset"* ]] || fail "$CLONE lost its data: $out"
echo "  an image with data under the recorded name: recover refuses (exit $VMS_RC), the image keeps its data"

# 3. A create killed inside rbd_snap_create, after librbd added the
#    snapshot to the header and before it made the snapshot's object map:
#    the snapshot is listed but cannot be opened.  The create is stopped
#    right after it recorded the name (its first journaled step), the
#    snapshot made and its object map removed by hand; recover removes
#    that snapshot and makes it again (before: it took it for done, and the
#    catalog listed a snapshot nobody could read).
export VMSNAP_STATE_DIR=$TEST_TMP/state3
rbdc create --size 16M rbd/hs
DOM=$TEST_TMP/hs.xml
rbd_domain_xml hs "$DOM" "vda:rbd/hs:conf"
qio -c "write -P 0xa1 0 64k" "$(rbd_qemu rbd/hs)" >/dev/null
vms_ok create "$DOM" s1
qio -c "write -P 0xb2 0 64k" "$(rbd_qemu rbd/hs)" >/dev/null
VMSNAP_TEST_CRASH_AFTER=1 vms_rc create "$DOM" s2
[[ $VMS_ERR == *"VMSNAP_TEST_CRASH_AFTER reached"* ]] || fail "the create did not stop at its first step: $VMS_ERR"
grep -q '^done=named;$' "$VMSNAP_STATE_DIR"/*/journal ||
    fail "the create did not stop right after naming its snapshot: $(cat "$VMSNAP_STATE_DIR"/*/journal)"
rbdc snap create rbd/hs@s2
id=$(rbdc info --format json rbd/hs | jq -r .id)
sid=$(rbdc snap ls --format json rbd/hs | jq -r '.[] | select(.name == "s2") | .id')
printf -v om 'rbd_object_map.%s.%016x' "$id" "$sid"
rados -c "$CEPH_CONF" -p rbd rm "$om" || fail "cannot remove $om"
out=$(qio -r -c "read -P 0xb2 0 64k" "$(rbd_qemu rbd/hs@s2)") || true
[[ $out == *"No such file or directory"* ]] || fail "the half-made snapshot opens: $out"
vms_ok recover "$DOM"
vms_ok list --json "$DOM"
jq -e '[.snapshots[].name] == ["s1", "s2"] and .pending == null' <<<"$VMS_OUT" >/dev/null ||
    fail "after recover: $VMS_OUT"
out=$(qio -r -c "read -P 0xb2 0 64k" "$(rbd_qemu rbd/hs@s2)") || true
[[ $out != *"verification failed"* && $out == *"bytes at offset"* ]] || fail "s2 does not hold the disk's data: $out"
rados -c "$CEPH_CONF" -p rbd stat "rbd_object_map.$id.$(printf '%016x' "$(rbdc snap ls --format json rbd/hs | jq -r '.[] | select(.name == "s2") | .id')")" >/dev/null ||
    fail "s2 has no object map after recover"
vms_ok check "$DOM"
echo "  half-made snapshot (no object map) removed by recover and made again; s2 holds the data, no drift"

# 4. An image on the garbage list whose removal was killed inside
#    rbd_remove, after librbd removed its header and before it removed its
#    id object and its name in the pool's directory: listed, unopenable,
#    and `rbd ls -l` fails for the whole pool (what the crash matrix's pool
#    purge met: "listing images failed: (2) No such file or directory").  A second clone revert puts the
#    first revert's head on the garbage list; it is stopped once the
#    definition names its new clone (its define step: a revert's define,
#    catalog and discard marks are not written, doc/architecture.md), the
#    head's header removed by hand; recover finishes the removal (before:
#    it took the image for gone and left the name listed).
# gstate NAME LEN [CREATE-ARGS...]: image rbd/NAME with s1 (0xa1), a clone
# revert to s1 (the disk then on a clone, head1), LEN bytes of 0xc3 written
# to it, then a second revert to s1 stopped after its define step: head1 is
# on the garbage list, not yet removed.  Sets DOM, head1.
gstate ()
{
    local name=$1 len=$2 n
    shift 2
    export VMSNAP_STATE_DIR=$TEST_TMP/state-$name
    rbdc create --size 16M "$@" "rbd/$name"
    DOM=$TEST_TMP/$name.xml
    rbd_domain_xml "$name" "$DOM" "vda:rbd/$name:conf"
    qio -c "write -P 0xa1 0 64k" "$(rbd_qemu "rbd/$name")" >/dev/null
    vms_ok create "$DOM" s1
    for (( n = 1; n <= 20; n++ )); do
        vms_ok revert "$DOM" s1
        head1=$(xmllint --xpath 'string(//disk/source/@name)' "$DOM")
        [[ $head1 == rbd/$name.* ]] || fail "the clone revert left the disk on $head1"
        qio -c "write -P 0xc3 0 $len" "$(rbd_qemu "$head1")" >/dev/null
        VMSNAP_TEST_CRASH_AFTER=$n vms_rc revert "$DOM" s1
        [[ $VMS_ERR == *"VMSNAP_TEST_CRASH_AFTER reached"* ]] || fail "the revert did not stop at step $n: $VMS_ERR"
        if [ "$(xmllint --xpath 'string(//disk/source/@name)' "$DOM")" != "$head1" ]; then
            rbdc info "$head1" >/dev/null 2>&1 ||
                fail "$head1 is gone at the revert's first step after its define: $(cat "$VMSNAP_STATE_DIR"/*/journal)"
            return 0
        fi
        # Not there yet: finish this revert and start again.
        vms_ok recover "$DOM"
    done
    fail "the second revert never reached its define step: $(cat "$VMSNAP_STATE_DIR"/*/journal)"
}
# listed IMAGE: rbd ls lists it.  The listing is read whole, then
# searched.  (The one CI failure of this case, 2026-12-06, "not listed any
# more" with the name listed, was `rbdc ls rbd | grep -qxF NAME` under
# pipefail: bash's printf in rbdc writes the listing a line at a time,
# grep -q exits at its match, and rbdc's next write dies of SIGPIPE, so the
# pipeline fails whenever grep runs between two writes, as a loaded
# machine schedules it.  The negated checks could pass the same way.)
listed ()
{
    local ls
    ls=$(rbdc ls rbd) || fail "rbd ls rbd failed"
    grep -qxF "${1#rbd/}" <<<"$ls"
}
gstate hr 64k
rbdc info "$head1" >/dev/null || fail "$head1 is gone at the define step: $(cat "$VMSNAP_STATE_DIR"/*/journal)"
id=$(rbdc info --format json "$head1" | jq -r .id)
rados -c "$CEPH_CONF" -p rbd rm "rbd_header.$id" || fail "cannot remove rbd_header.$id"
out=$(rbd ls -l --format json rbd 2>&1) || true
[[ $out == *"No such file or directory"* ]] || fail "rbd ls -l works with $head1 half removed: $out"
listed "$head1" || fail "$head1 is not listed any more: $(rbd_rados_state "${head1#rbd/}")"
vms_ok recover "$DOM"
! listed "$head1" || fail "$head1 is still listed after recover"
out=$(rbd ls -l --format json rbd 2>&1) && [[ $out != *"No such file"* ]] || fail "rbd ls -l fails after recover: $out"
vms_ok list --json "$DOM"
jq -e '.current == "s1" and .pending == null' <<<"$VMS_OUT" >/dev/null || fail "after recover: $VMS_OUT"
out=$(qio -r -c "read -P 0xa1 0 64k" "$(rbd_qemu "$(xmllint --xpath 'string(//disk/source/@name)' "$DOM")")")
[[ $out != *"verification failed"* && $out == *"bytes at offset"* ]] || fail "the disk does not hold s1's data: $out"
vms_ok check "$DOM"
echo "  half-removed garbage image $head1 (no header, still listed): recover finished its removal, rbd ls -l works, no drift"

# 5. The same, killed earlier inside rbd_remove: librbd first moves the
#    image to the trash as "removing" (`rbd ls` still lists it, `rbd trash
#    ls` does not, its name opens nothing).  Made for real: the garbage
#    head holds 2048 objects of 4 KiB (a clone keeps its parent's object
#    size), an `rbd rm` of it is SIGKILLed as soon as the trash has it.
#    recover removes it from the trash (before: it took it for gone).
gstate ht 8M --object-size 4K
hid=$(rbdc info --format json "$head1" | jq -r .id)
rbd -c "$CEPH_CONF" rm --no-progress "$head1" >/dev/null 2>&1 &
rmpid=$!
for (( n = 0; n < 400; n++ )); do
    [ -z "$(rados -c "$CEPH_CONF" -p rbd listomapkeys rbd_trash 2>/dev/null)" ] || break
    sleep 0.02
done
kill -KILL "$rmpid" 2>/dev/null || true
wait "$rmpid" 2>/dev/null || true
# The killed `rbd rm` still watches the header for 30 s, and librbd will not
# remove a watched image.  A killed vmsnap's client is in its journal and
# recover blocklists it (doc/rbd.md); this client is not vmsnap's, so the
# test blocklists it the same way.
for addr in $(rados -c "$CEPH_CONF" -p rbd listwatchers "rbd_header.$hid" 2>/dev/null |
              sed -n 's/^watcher=\([^ ]*\) .*/\1/p'); do
    timeout 30 ceph -c "$CEPH_CONF" osd blocklist add "$addr" >/dev/null 2>&1 ||
        fail "blocklisting the killed rbd rm's client $addr failed"
done
listed "$head1" || fail "the killed rbd rm of $head1 finished (or never started): not listed"
[ -n "$(rados -c "$CEPH_CONF" -p rbd listomapkeys rbd_trash)" ] || fail "$head1 is not in the trash after the killed rbd rm"
! rbd info "$head1" >/dev/null 2>&1 || fail "$head1 still opens after the killed rbd rm"
vms_ok recover --json "$DOM"
! listed "$head1" || fail "$head1 is still listed after recover: $VMS_OUT"
[ -z "$(rados -c "$CEPH_CONF" -p rbd listomapkeys rbd_trash)" ] || fail "the trash is not empty after recover: $(rados -c "$CEPH_CONF" -p rbd listomapkeys rbd_trash)"
vms_ok list --json "$DOM"
jq -e '.current == "s1" and .pending == null' <<<"$VMS_OUT" >/dev/null || fail "after recover: $VMS_OUT"
vms_ok check "$DOM"
echo "  garbage image $head1 left in the trash as \"removing\" by a killed rbd rm: recover removed it, no drift"
