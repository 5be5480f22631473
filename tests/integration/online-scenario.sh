#!/usr/bin/env bash
# The engine scenario (tests/fixtures/engine.sh: s1..s4 with a branch,
# reverts, deletes of snapshots with one and with two children, merge
# --max-depth 1) on a RUNNING libvirt domain with a qcow2 disk (vda) and a
# raw disk (vdb).  The guest's data is written and checked inside the
# running QEMU (HMP qemu-io, ENG_KIND=running); after every create, revert,
# delete and merge the domain is still running and its live and inactive
# definitions agree (and libvirt's live backing chain is the one in the image
# headers); after every step every snapshot is read through its locator and
# reverted to, and nothing is left in the image directory that no chain
# references.  (merge --max-depth 1 cannot copy the shared point into s4's
# image while QEMU reads it: the point stays, the report says why.)  Then,
# still running:
#   - delete the parent of the active layer where pulling is cheaper: a
#     block pull into the active layer (the report says pull);
#   - merge --max-depth 1 where the shared point's dependents are the active
#     layer (block pull) and an unused snapshot image (copy);
#   - delete the parent of the active layer where committing is cheaper:
#     an active block commit with pivot (the report says commit);
#   - a plain merge (nothing to consolidate: changes nothing).
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io virsh xmllint
: "${VMSNAP:?}"
mk_tmpdir
# TCG: the guest has no OS; on this machine's paravirtualised KVM it would
# spin in its BIOS.
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
libvirt_start

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f raw "$img/vdb.raw" 64M
mk_domain_xml onl "$TEST_TMP/onl.xml" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"
libvirt_define_test_domain onl "$TEST_TMP/onl.xml"
cleanup_fn virsh -q undefine onl
out=$(virsh start onl 2>&1) || fail "virsh start onl: $out"

ENG_DOM=onl ENG_KIND=running ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
VMSNAP_STATE_DIR=$TEST_TMP/state
eng_init
[ "$(eng_domstate)" = running ] || fail "onl is not running"
eng_check_live_def
# ... which can fail: an inactive definition that names another image.
virsh -q dumpxml --inactive onl >"$TEST_TMP/onl.def.xml"
sed "s|$img/vdb.raw|$TEST_TMP/other.raw|" "$TEST_TMP/onl.def.xml" >"$TEST_TMP/other.xml"
libvirt_define_test_domain onl "$TEST_TMP/other.xml"
[ "$(eng_active vdb)" = "$TEST_TMP/other.raw" ] || fail "the changed inactive definition did not take"
if ( eng_check_live_def ) >/dev/null 2>&1; then
    fail "eng_check_live_def passes with live and inactive definitions that differ"
fi
libvirt_define_test_domain onl "$TEST_TMP/onl.def.xml"
eng_check_live_def

eng_scenario "$img/vda.qcow2" "$img/vdb.raw"
[ "$(eng_domstate)" = running ] || fail "the scenario stopped the domain"
# The current snapshot is s4 ("A D"), s3 ("A B C") is the other branch,
# both roots now; the base images are the unnamed point s3's and s4's images
# share (a merge while running could not copy it into s4's image, which the
# running QEMU reads).
[ "$ENG_CURRENT" = s4 ] && [ "${SNAP_HIST[s4]}" = "A D" ] && [ "${SNAP_HIST[s3]}" = "A B C" ] &&
    [ "$EXP_HIDDEN" = 1 ] || fail "the scenario did not end where this test expects (test bug)"

DIRS_SEEN=""
# delete_active_parent SNAP WANT (commit, pull, or cheaper: the one the
# report's own prices make cheaper): SNAP's image is the backing file of the
# active layer of every disk; delete it while the domain runs and check the
# direction each disk took.
delete_active_parent ()
{
    local snap=$1 want=$2 d live json note dir want_d c p
    eng_check_list
    for d in "${ENG_DISKS[@]}"; do
        live=$(virsh -q dumpxml onl | xmllint --xpath \
               "string(/domain/devices/disk[target/@dev='$d']/backingStore/source/@file)" -) || live=""
        [ "$live" = "${LOCS[$snap.$d]#*:}" ] ||
            fail "$d: the running QEMU's active layer is backed by '$live', not by $snap's image ${LOCS[$snap.$d]#*:}"
    done
    vms_ok delete --json onl "$snap"
    json=$VMS_OUT
    eng_check_delete_report "$json" one-child
    for d in "${ENG_DISKS[@]}"; do
        note=$(jq -r --arg t "$d" '.disks[] | select(.target == $t) | .note' <<<"$json")
        echo "    delete $snap, $d: $note"
        dir=$(eng_direction "$note")
        if [ "$want" = cheaper ]; then
            # The direction its own exact prices make the cheaper one (ties
            # commit): "commit would copy X (C bytes), pull Y (P bytes)".
            c=$(sed -n 's/.*commit would copy [^(]*(\([0-9]*\) bytes).*/\1/p' <<<"$note")
            p=$(sed -n 's/.*pull [^(]*(\([0-9]*\) bytes).*/\1/p' <<<"$note")
            [ -n "$c" ] && [ -n "$p" ] || { echo "$json" >&2; fail "delete $snap, $d: the note gives no prices: $note"; }
            if [ "$c" -le "$p" ]; then want_d=commit; else want_d=pull; fi
        else
            want_d=$want
        fi
        [ "$dir" = "$want_d" ] ||
            { echo "$json" >&2; fail "delete $snap (parent of the active layer): $d did not $want_d: $note"; }
        DIRS_SEEN+=" $dir"
    done
    eng_forget "$snap"
    expect_fail 3 "no snapshot named '$snap'" "$VMSNAP" info onl "$snap"
}

# 1. The active layer holds E (512 KiB + the shared 1 MiB); s4's own layer
#    holds D and the shared region (2 MiB), of which the active layer
#    shadows the shared region: pulling the rest of s4's image (D, 1 MiB)
#    into the active layer copies less than committing 1.5 MiB (issue 17
#    item 9: a pull is priced at the data the child does not shadow); vdb's
#    shapes differ: each disk must take the direction its prices make
#    cheaper.
eng_write E 512K
eng_check_state "A D E"
eng_expect_mismatch "A D"
delete_active_parent s4 cheaper
eng_check_state "A D E"
eng_expect_mismatch "A D"
eng_check_views
eng_check_locators
eng_step "write E, delete s4 (parent of the active layer): each disk the cheaper way"

# 2. The shared unnamed point now has two dependents: s3's image and the
#    active layer (the former s4 image).  merge --max-depth 1 while running
#    copies it into both: a block pull into the active layer, a copy into
#    s3's image (which QEMU does not use).
vms_ok merge --json --max-depth 1 onl
json=$VMS_OUT
echo "    merge: $(jq -r '[.disks[] | "\(.target): \(.note) [\(.bytes_copied) bytes]"] | join("; ")' <<<"$json")"
jq_check "$json" '[.disks[].target] | sort == ["vda", "vdb"]' "merge report: one entry per disk"
jq_check "$json" 'all(.disks[]; .bytes_copied > 0)' "merge --max-depth 1 while running copied nothing"
EXP_HIDDEN=0
eng_check_state "A D E"
eng_expect_mismatch "A D"
eng_check_views
eng_check_locators
vms_ok chain --json onl
json=$VMS_OUT
for d in "${ENG_DISKS[@]}"; do
    eng_locator s3 "$d"
    for p in "$LOC_PATH" "$(eng_active "$d")"; do
        jq_check "$json" '.disks[] | select(.target == $t) | .files[] | select(.path == $p) | .backing == null' \
            "after merge --max-depth 1 while running, $d's $p still has a backing file" \
            --arg t "$d" --arg p "$p"
    done
done
eng_step "merge --max-depth 1: the shared point pulled into the active layer and copied into s3's image"

# 3. s5's image now holds A, D, E and the shared region (3.5 MiB); the
#    active layer gets F (512 KiB + 1 MiB, the shared region): committing
#    the active layer into s5's image (1.5 MiB: an active commit, then
#    pivot) copies less than pulling the 2.5 MiB of s5's image it does not
#    shadow.
eng_create s5
eng_write F 512K
eng_check_state "A D E F"
eng_expect_mismatch "A D E"
delete_active_parent s5 cheaper
# Both online paths ran: an active commit with pivot and a block pull.
[[ $DIRS_SEEN == *commit* && $DIRS_SEEN == *pull* ]] ||
    fail "deleting the active layer's parent took only '$DIRS_SEEN' (want both an active commit and a block pull)"
eng_check_state "A D E F"
eng_expect_mismatch "A D E"
eng_check_views
eng_check_locators
eng_step "create s5, write F, delete s5 (parent of the active layer): each disk the cheaper way"

# 4. A snapshot of that, then every snapshot again (reverts while running).
eng_create s6
eng_verify_all
eng_step "create s6, revert to every snapshot"

# 5. A merge while running with nothing to consolidate changes nothing.
before=$(cd "$img" && ls -A)
vms_ok merge --json onl
jq_check "$VMS_OUT" '[.disks[].target] | sort == ["vda", "vdb"]' "merge report: one entry per disk"
[ "$(cd "$img" && ls -A)" = "$before" ] || fail "a merge with nothing to consolidate changed the image directory"
eng_verify_all
eng_step "merge (nothing to do)"

[ "$(eng_domstate)" = running ] || fail "onl is not running at the end"
echo "online-scenario: ok"
