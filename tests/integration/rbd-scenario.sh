#!/usr/bin/env bash
# The engine's scenario on RBD disks of a domain XML file (offline), on a
# throwaway Ceph cluster: vda = rbd/vda (4 MiB objects: a rollback touches
# a handful, so reverts default to rollback), found through <host> +
# <config file>; vdb = rbd/ns1/vdb (a namespace, 4 KiB objects: a rollback
# touches hundreds, more than VMSNAP_RBD_ROLLBACK_MAX_OBJECTS=100 set here,
# so reverts default to a clone), found through $CEPH_CONF.
#
# write A, s1, write B, s2, write C, s3; revert s1 (vda rolls back, vdb
# clones); revert s3 forcing clones; revert s1 forcing rollback (both must
# clone: s1 lives in another image now); write D, s4 (a branch, on the
# clones); delete s2; delete s1 (its clone children are flattened first);
# merge --max-depth 1 (the active clones are flattened); delete s3 (the
# original images hold no snapshot any more and are removed).
#
# After every step: the current contents (read through QEMU's rbd driver),
# every snapshot read directly (IMAGE@SNAP), list/chain --json, the
# ownership marks, and no image or snapshot in the pool that neither the
# definition nor the catalog references; then every snapshot by reverting
# to it.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/ceph.sh"
requires jq xmllint
requires_qemu_rbd
requires_rbd_backend
: "${VMSNAP:?}"
mk_tmpdir
ceph_start
unset VMSNAP_RBD_REVERT_MODE VMSNAP_RBD_DELETE_CHILDREN VMSNAP_RBD_KEEP_OLD_HEAD
export VMSNAP_RBD_ROLLBACK_MAX_OBJECTS=100

rbdc namespace create rbd/ns1
rbdc create --size 32M rbd/vda
rbdc create --size 32M --object-size 4K rbd/ns1/vdb
DOM=$TEST_TMP/rbddom.xml
rbd_domain_xml rbddom "$DOM" vda:rbd/vda:conf vdb:rbd/ns1/vdb:env
UUID=$(xmllint --xpath 'string(/domain/uuid)' "$DOM")
export VMSNAP_STATE_DIR=$TEST_TMP/state
DISKS=(vda vdb)
ERRF=$TEST_TMP/.stderr

declare -A SNAP_HIST=() SNAP_PARENT=() LOC=()
CUR_HIST="" CURRENT="" T0=$(date +%s%N)

step () { echo "  [$(( ($(date +%s%N) - T0) / 1000000 )) ms] $*"; }

vms_ok ()
{
    VMS_RC=0
    VMS_OUT=$("$VMSNAP" "$@" 2>"$ERRF") || VMS_RC=$?
    if [ "$VMS_RC" != 0 ]; then
        printf '%s\n' "$VMS_OUT" >&2; cat "$ERRF" >&2
        fail "vmsnap $* exited $VMS_RC (output above)"
    fi
    # Storage the core could not discard comes back as warnings.
    if [[ $VMS_OUT == "{"* ]]; then
        jq -e '(.warnings // []) == []' <<<"$VMS_OUT" >/dev/null ||
            { printf '%s\n' "$VMS_OUT" >&2; fail "vmsnap $*: warnings"; }
    fi
}

jq_check ()   # JSON EXPR WHAT [jq args]
{
    local json=$1 expr=$2 what=$3
    shift 3
    jq -e "$@" "$expr" <<<"$json" >/dev/null || { printf '%s\n' "$json" >&2; fail "$what (jq: $expr)"; }
}

active () { xmllint --xpath "string(//disk[target/@dev='$1']/source/@name)" "$DOM"; }

# The definition keeps what it had besides <source name>.
check_definition ()
{
    [ "$(xmllint --xpath "string(//disk[target/@dev='vda']/source/config/@file)" "$DOM")" = "$CEPH_CONF" ] ||
        { cat "$DOM" >&2; fail "vda lost its <config file>"; }
    [ "$(xmllint --xpath "string(//disk[target/@dev='vda']/source/host/@port)" "$DOM")" = "$CEPH_MON_PORT" ] ||
        { cat "$DOM" >&2; fail "vda lost its <host>"; }
    [ "$(xmllint --xpath "count(//disk[@type='network'][source/@protocol='rbd'][driver/@type='raw'])" "$DOM")" = 2 ] ||
        { cat "$DOM" >&2; fail "the disks are no longer raw rbd network disks"; }
}

write () # LETTER
{
    local k
    for k in "${!DISKS[@]}"; do rbd_write_letter "$(active "${DISKS[k]}")" "$k" "$1"; done
    RBD_WRITTEN+=$1
    CUR_HIST="${CUR_HIST:+$CUR_HIST }$1"
}

check_state () # HIST
{
    local k
    for k in "${!DISKS[@]}"; do rbd_check_hist "$(active "${DISKS[k]}")" "$k" "$1"; done
}

expect_mismatch () # HIST
{
    rbd_expect_mismatch "$(active vda)" 0 "$1"
}

create () # NAME
{
    vms_ok create --json "$DOM" "$1"
    jq_check "$VMS_OUT" '[.disks[] | select(.backend == "rbd" and .new_source == null
                          and (.note | test("^RBD snapshot ")))] | length == 2' "create $1: report"
    SNAP_HIST[$1]=$CUR_HIST SNAP_PARENT[$1]=$CURRENT CURRENT=$1
}

revert () # NAME [VMSNAP_RBD_REVERT_MODE]
{
    if [ -n "${2:-}" ]; then
        VMSNAP_RBD_REVERT_MODE=$2 vms_ok revert --json "$DOM" "$1"
    else
        vms_ok revert --json "$DOM" "$1"
    fi
    CUR_HIST=${SNAP_HIST[$1]} CURRENT=$1
}

forget () # NAME: the model's side of a delete
{
    local s p=${SNAP_PARENT[$1]}
    for s in "${!SNAP_PARENT[@]}"; do
        [ "${SNAP_PARENT[$s]}" != "$1" ] || SNAP_PARENT[$s]=$p
    done
    unset "SNAP_HIST[$1]" "SNAP_PARENT[$1]"
    [ "$CURRENT" != "$1" ] || CURRENT=$p
}

# list --json agrees with the model; LOC[s.T] = the locator without "rbd:".
check_list ()
{
    local json s d loc names want
    vms_ok list --json "$DOM"
    json=$VMS_OUT
    jq_check "$json" '.pending == null and .kept_unnamed_points == 0' "list: pending or kept points"
    names=$(jq -r '[.snapshots[].name] | sort | join(" ")' <<<"$json")
    want=$(printf '%s\n' "${!SNAP_HIST[@]}" | sort | tr '\n' ' ' | sed 's/ $//')
    [ "$names" = "$want" ] || { echo "$json" >&2; fail "list: snapshots '$names', expected '$want'"; }
    jq_check "$json" '(.current // "") == $c' "list: current is not '$CURRENT'" --arg c "$CURRENT"
    LOC=()
    for s in "${!SNAP_HIST[@]}"; do
        jq_check "$json" '.snapshots[] | select(.name == $s) | (.parent // "") == $p' \
            "list: parent of $s is not '${SNAP_PARENT[$s]}'" --arg s "$s" --arg p "${SNAP_PARENT[$s]}"
        for d in "${DISKS[@]}"; do
            loc=$(jq -r --arg s "$s" --arg t "$d" '.snapshots[] | select(.name == $s) | .disks[]
                                                  | select(.target == $t and .backend == "rbd") | .locator' <<<"$json")
            [[ $loc == rbd:*@"$s" ]] || { echo "$json" >&2; fail "list: $s/$d locator '$loc'"; }
            LOC[$s.$d]=${loc#rbd:}
        done
    done
}

# chain --json: the active image is the definition's, every snapshot's
# locator is listed as held by it.
check_chain ()
{
    local json s d
    vms_ok chain --json "$DOM"
    json=$VMS_OUT
    for d in "${DISKS[@]}"; do
        jq_check "$json" '.disks[] | select(.target == $t) | .active == $a' \
            "chain: $d's active image is not $(active "$d")" --arg t "$d" --arg a "$(active "$d")"
        for s in "${!SNAP_HIST[@]}"; do
            jq_check "$json" '.disks[] | select(.target == $t) | .files[]
                              | select(.locator == $l) | .holds == [$s]' \
                "chain: $d does not list $s at rbd:${LOC[$s.$d]}" \
                --arg t "$d" --arg l "rbd:${LOC[$s.$d]}" --arg s "$s"
        done
    done
}

# Every image and snapshot in the pool is referenced: images are an active
# source or hold a catalog snapshot; an image's snapshots are exactly the
# catalog's; each carries vmsnap's ownership mark.
check_no_stray ()
{
    local img ns s d n want have
    local -A ref=() snaps=()
    for d in "${DISKS[@]}"; do ref[$(active "$d")]=1; done
    for s in "${!SNAP_HIST[@]}"; do
        for d in "${DISKS[@]}"; do
            ref[${LOC[$s.$d]%@*}]=1
            snaps[${LOC[$s.$d]%@*}]+="$s "
        done
    done
    for ns in "" ns1; do
        for n in $(rbdc ls rbd ${ns:+--namespace $ns}); do
            img=rbd/${ns:+$ns/}$n
            [ -n "${ref[$img]:-}" ] || { rbdc ls -l rbd ${ns:+--namespace $ns} >&2; fail "stray image $img"; }
            have=$(rbdc snap ls --format json "$img" | jq -r '[.[].name] | sort | join(" ")')
            want=$(printf '%s\n' ${snaps[$img]:-} | sort | tr '\n' ' ' | sed 's/ $//')
            [ "$have" = "$want" ] || fail "image $img has snapshots '$have', the catalog '$want'"
            for s in $have; do
                [ "$(rbdc image-meta get "$img" "vmsnap.snap.$s")" = "$UUID" ] ||
                    fail "$img@$s lacks vmsnap's ownership mark"
            done
        done
    done
}

check_snapshots ()
{
    local s k
    for s in "${!SNAP_HIST[@]}"; do
        for k in "${!DISKS[@]}"; do
            rbd_check_hist "${LOC[$s.${DISKS[k]}]}" "$k" "${SNAP_HIST[$s]}"
        done
    done
}

# Everything; then every snapshot by reverting to it (current last).
verify_all ()
{
    local s order=()
    check_definition
    check_state "$CUR_HIST"
    check_list
    check_chain
    check_no_stray
    check_snapshots
    [ "${#SNAP_HIST[@]}" -gt 0 ] || return 0
    [ "$CUR_HIST" = "${SNAP_HIST[$CURRENT]}" ] || fail "verify_all: the disks are not a snapshot (test bug)"
    for s in $(printf '%s\n' "${!SNAP_HIST[@]}" | sort); do
        [ "$s" = "$CURRENT" ] || order+=("$s")
    done
    order+=("$CURRENT")
    for s in "${order[@]}"; do
        revert "$s"
        check_state "${SNAP_HIST[$s]}"
    done
    check_list
    check_chain
    check_no_stray
}

note_of () { jq -r --arg t "$2" '.disks[] | select(.target == $t) | .note' <<<"$1"; }
newsrc_of () { jq -r --arg t "$2" '.disks[] | select(.target == $t) | .new_source // ""' <<<"$1"; }

# ------------------------------------------------------------- scenario

write A
check_state "A"
expect_mismatch ""
verify_all
step "write A"

create s1
check_list
[ "${LOC[s1.vda]}" = rbd/vda@s1 ] && [ "${LOC[s1.vdb]}" = rbd/ns1/vdb@s1 ] ||
    fail "s1 locators: ${LOC[s1.vda]} ${LOC[s1.vdb]}"
[ "$(active vda)" = rbd/vda ] && [ "$(active vdb)" = rbd/ns1/vdb ] || fail "create changed the sources"
verify_all
step "create s1"

write B
create s2
write C
check_state "A B C"
expect_mismatch "A B"
create s3
verify_all
step "write B, s2, write C, s3"

revert s1
json=$VMS_OUT
[[ $(note_of "$json" vda) == "rolled rbd/vda back to snapshot s1"* ]] || { echo "$json" >&2; fail "revert s1: vda did not roll back"; }
[[ $(note_of "$json" vdb) == "cloned rbd/ns1/vdb@s1 as rbd/ns1/vdb.vmsnap-"* ]] || { echo "$json" >&2; fail "revert s1: vdb did not clone"; }
[ "$(active vda)" = rbd/vda ] || fail "revert s1: vda changed image on a rollback"
[ "$(active vdb)" = "$(newsrc_of "$json" vdb)" ] || fail "revert s1: vdb's definition is not the clone"
[[ $(rbdc info --format json "$(active vdb)" | jq -r '.parent | "\(.pool)/\(.pool_namespace)/\(.image)@\(.snapshot)"') == rbd/ns1/vdb@s1 ]] ||
    fail "revert s1: vdb's image is not a clone of rbd/ns1/vdb@s1"
[ "$(rbdc image-meta get rbd/ns1/vdb vmsnap.abandoned)" = "$UUID" ] || fail "rbd/ns1/vdb is not marked abandoned"
[ "$(rbdc image-meta get "$(active vdb)" vmsnap.clone)" = "$UUID" ] || fail "the clone lacks vmsnap's mark"
check_state "A"
expect_mismatch "A B C"
verify_all
step "revert s1 (vda rollback, vdb clone)"

old_vdb=$(active vdb)
revert s3 clone
json=$VMS_OUT
for d in vda vdb; do
    [[ $(note_of "$json" $d) == cloned* ]] || { echo "$json" >&2; fail "revert s3 (clone): $d did not clone"; }
done
[[ $(active vda) == rbd/vda.vmsnap-* ]] || fail "revert s3 (clone): vda is on $(active vda)"
if timeout 30 rbd info "$old_vdb" >/dev/null 2>&1; then
    fail "revert s3: vdb's previous clone $old_vdb (no snapshots) was not removed"
fi
check_state "A B C"
step "revert s3 (VMSNAP_RBD_REVERT_MODE=clone)"

revert s1 rollback
json=$VMS_OUT
for d in vda vdb; do
    [[ $(note_of "$json" $d) == *"only a clone can bring it back"* ]] ||
        { echo "$json" >&2; fail "revert s1 (rollback asked): $d should clone, saying why"; }
done
check_state "A"
write D
check_state "A D"
expect_mismatch "A"
create s4
verify_all
for d in vda vdb; do
    [[ ${LOC[s4.$d]} == *.vmsnap-*@s4 ]] || fail "s4 of $d is not on a clone: ${LOC[s4.$d]}"
done
step "revert s1 (rollback impossible: clones), write D, s4 (branch)"

vms_ok delete --json "$DOM" s2
jq_check "$VMS_OUT" 'all(.disks[]; .kept == false and (.note | startswith("removed RBD snapshot")))' "delete s2: report"
forget s2
expect_fail 3 "no snapshot named 's2'" "$VMSNAP" revert "$DOM" s2
verify_all
step "delete s2"

# s1's images have clones that depend on it: s4's images (made by the
# revert to s1), which hold a snapshot of their own; on vdb also the clone
# made by the revert to s1 in verify_all after s1 (vdb's reverts clone),
# which holds s3.
s4_vda=${LOC[s4.vda]%@*}
[ "$(rbdc info --format json "$s4_vda" | jq -r '.parent.snapshot')" = s1 ] || fail "s4's image is not a clone of s1"
vms_ok delete --json "$DOM" s1
json=$VMS_OUT
jq_check "$json" 'all(.disks[]; .kept == false and (.note | test("flattened its clone")) and .bytes_copied > 0)' \
    "delete s1: the clones were not flattened (or no bytes reported)"
echo "    delete s1: $(jq -r '[.disks[] | "\(.target): \(.note) [\(.bytes_copied) bytes]"] | join("; ")' <<<"$json")"
[ "$(rbdc info --format json "$s4_vda" | jq -r '.parent // "none"')" = none ] || fail "$s4_vda still has a parent"
# rbd/ns1/vdb held only s1 (s2 and s3 of vdb live in the clone): gone.
[[ $(note_of "$json" vdb) == *"image rbd/ns1/vdb (abandoned by an earlier clone revert) holds no snapshot any more and is removed"* ]] ||
    { echo "$json" >&2; fail "delete s1: rbd/ns1/vdb should go"; }
if timeout 30 rbd info rbd/ns1/vdb >/dev/null 2>&1; then fail "rbd/ns1/vdb still exists"; fi
[[ $(note_of "$json" vda) != *"is removed"* ]] || fail "delete s1: rbd/vda still holds s3 and must stay"
forget s1
verify_all
step "delete s1 (clone children flattened)"

vms_ok merge --json "$DOM"
jq_check "$VMS_OUT" 'all(.disks[]; .note | test("nothing to consolidate"))' "merge (depth 0) consolidated something"
vms_ok merge --json --max-depth 1 "$DOM"
json=$VMS_OUT
jq_check "$json" 'all(.disks[]; .note | test("flattened clone"))' "merge --max-depth 1 flattened nothing"
echo "    merge: $(jq -r '[.disks[] | "\(.target): \(.note)"] | join("; ")' <<<"$json")"
for d in vda vdb; do
    [ "$(rbdc info --format json "$(active "$d")" | jq -r '.parent // "none"')" = none ] ||
        fail "after merge --max-depth 1, $d's image $(active "$d") is still a clone"
done
verify_all
step "merge --max-depth 1"

vms_ok delete --json "$DOM" s3
json=$VMS_OUT
[[ $(note_of "$json" vda) == *"image rbd/vda (abandoned by an earlier clone revert) holds no snapshot any more and is removed"* ]] ||
    { echo "$json" >&2; fail "delete s3: rbd/vda should go"; }
forget s3
if timeout 30 rbd info rbd/vda >/dev/null 2>&1; then fail "rbd/vda still exists"; fi
verify_all
step "delete s3 (rbd/vda holds no snapshot any more: removed)"
echo "rbd-scenario: ok"
