#!/usr/bin/env bash
# Crash safety of the RBD backend.  For an RBD create, a clone-mode revert
# and a delete whose snapshot has a clone child (flattened first), for N =
# 1, 2, ... until the command finishes without crashing: build the state
# afresh (new images, a new domain), run the command with
# VMSNAP_TEST_CRASH_AFTER=N (vmsnap _exit(99)s right after its N-th
# journaled step, holding whatever RBD watches and locks it had), check
# that `vmsnap list` shows the pending operation, run `vmsnap recover`
# (which must not wait for the dead process's locks: it blocklists it),
# then check everything: the operation was finished or rolled back as a
# whole, the current contents, every snapshot (read directly and by
# reverting to it), and the pool: no image, snapshot or ownership mark that
# the definition and the catalog do not account for.
#
# The state (two disks, vda and vdb, each an rbd image of 32 MiB): write A,
# s1, write B, s2, write C.  For the delete: then a clone revert to s1
# (the disks move to clones of s1), write D, s3 on the clones; delete s1
# flattens the clones.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/ceph.sh"
requires jq xmllint
: "${VMSNAP:?}"
rbd_test_start
DISKS=(vda vdb)

vms_ok ()
{
    VMS_RC=0
    VMS_OUT=$("$VMSNAP" "$@" 2>"$W.stderr") || VMS_RC=$?
    if [ "$VMS_RC" != 0 ]; then
        printf '%s\n' "$VMS_OUT" >&2; cat "$W.stderr" >&2
        fail "vmsnap $* exited $VMS_RC (output above)"
    fi
}

active () { xmllint --xpath "string(//disk[target/@dev='$1']/source/@name)" "$W/dom.xml"; }

write ()   # LETTER
{
    local k
    for k in "${!DISKS[@]}"; do rbd_write_letter "$(active "${DISKS[k]}")" "$k" "$1"; done
    RBD_WRITTEN+=$1
    CUR_HIST="${CUR_HIST:+$CUR_HIST }$1"
}

# setup DIR PREFIX KIND: a fresh state in new images PREFIX-vda/-vdb.
setup ()
{
    W=$1 P=$2
    rm -rf "$W"
    mkdir -p "$W"
    export VMSNAP_STATE_DIR=$W/state
    rbdc create --size 32M "rbd/$P-vda"
    rbdc create --size 32M "rbd/$P-vdb"
    rbd_domain_xml "$P" "$W/dom.xml" "vda:rbd/$P-vda:conf" "vdb:rbd/$P-vdb:env"
    UUID=$(xmllint --xpath 'string(/domain/uuid)' "$W/dom.xml")
    declare -gA SNAP_HIST=() SNAP_PARENT=()
    RBD_WRITTEN="" CUR_HIST="" CURRENT=""
    write A
    vms_ok create "$W/dom.xml" s1
    SNAP_HIST[s1]="A" SNAP_PARENT[s1]="" CURRENT=s1
    write B
    vms_ok create "$W/dom.xml" s2
    SNAP_HIST[s2]="A B" SNAP_PARENT[s2]=s1 CURRENT=s2
    write C
    if [ "$3" = delete ]; then
        VMSNAP_RBD_REVERT_MODE=clone vms_ok revert "$W/dom.xml" s1
        CUR_HIST="A" CURRENT=s1
        write D
        vms_ok create "$W/dom.xml" s3
        SNAP_HIST[s3]="A D" SNAP_PARENT[s3]=s1 CURRENT=s3
    fi
}

catalog_view ()
{
    vms_ok list --json "$W/dom.xml"
    LIST_JSON=$VMS_OUT
    CAT_VIEW=$(jq -r '([.snapshots[].name] | sort | join(",")) + " current=" + (.current // "-")' <<<"$VMS_OUT")
}

# Everything the model says (LIST_JSON: the catalog), then every snapshot
# by reverting to it.
verify ()
{
    local s d k loc img n want have keys prot sl meta
    local -A ref=() snaps=()
    jq -e '.pending == null and .kept_unnamed_points == 0' <<<"$LIST_JSON" >/dev/null ||
        { echo "$LIST_JSON" >&2; fail "$LABEL N=$N: pending operation or kept points after recover"; }
    [ "$(jq -r '[.snapshots[].name] | sort | join(" ")' <<<"$LIST_JSON")" = \
      "$(printf '%s\n' "${!SNAP_HIST[@]}" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
        fail "$LABEL N=$N: catalog snapshots differ from the model"
    for k in "${!DISKS[@]}"; do
        d=${DISKS[k]}
        rbd_check_hist "$(active "$d")" "$k" "$CUR_HIST"
        ref[$(active "$d")]=1
        for s in "${!SNAP_HIST[@]}"; do
            loc=$(jq -r --arg s "$s" --arg t "$d" '.snapshots[] | select(.name == $s) | .disks[]
                                                  | select(.target == $t) | .locator' <<<"$LIST_JSON")
            [[ $loc == rbd:rbd/"$P"-*@"$s" ]] || fail "$LABEL N=$N: $s/$d locator '$loc'"
            rbd_check_hist "${loc#rbd:}" "$k" "${SNAP_HIST[$s]}"
            img=${loc#rbd:}; img=${img%@*}
            ref[$img]=1
            snaps[$img]+="$s "
        done
    done
    # The pool: every image of this state is referenced, its snapshots are
    # the catalog's, its marks are those of existing snapshots.
    for n in $(rbdc ls rbd | grep "^$P-" || true); do
        img=rbd/$n
        [ -n "${ref[$img]:-}" ] || { rbdc ls -l rbd >&2; fail "$LABEL N=$N: stray image $img"; }
        sl=$(rbdc snap ls --format json "$img")
        have=$(jq -r '[.[].name] | sort | join(" ")' <<<"$sl")
        want=$(printf '%s\n' ${snaps[$img]:-} | sort | tr '\n' ' ' | sed 's/ $//')
        [ "$have" = "$want" ] || fail "$LABEL N=$N: $img has snapshots '$have', the catalog '$want'"
        prot=$(jq -r '[.[] | select(.protected == "true") | "vmsnap.protected." + .name] | join(" ")' <<<"$sl")
        meta=$(rbdc image-meta list --format json "$img")
        keys=$(jq -r 'keys | join(" ")' <<<"$meta")
        for n in $keys; do
            case $n in
                vmsnap.snap.*) [[ " $have " == *" ${n#vmsnap.snap.} "* ]] || fail "$LABEL N=$N: $img: stray mark $n" ;;
                vmsnap.protected.*) [[ " $prot " == *" $n "* ]] || fail "$LABEL N=$N: $img: stray mark $n" ;;
                vmsnap.clone) ;;
                vmsnap.abandoned) [ -z "${ref[$img]:-}" ] || [ "$img" != "$(active vda)" ] && [ "$img" != "$(active vdb)" ] ||
                                      fail "$LABEL N=$N: the active image $img is marked abandoned" ;;
                *) fail "$LABEL N=$N: $img: unexpected metadata $n" ;;
            esac
        done
        for s in $have; do
            jq -e --arg k "vmsnap.snap.$s" --arg u "$UUID" '.[$k] == $u' <<<"$meta" >/dev/null ||
                fail "$LABEL N=$N: $img@$s has no ownership mark"
        done
    done
    for s in $(printf '%s\n' "${!SNAP_HIST[@]}" | sort); do
        vms_ok revert "$W/dom.xml" "$s"
        for k in "${!DISKS[@]}"; do rbd_check_hist "$(active "${DISKS[k]}")" "$k" "${SNAP_HIST[$s]}"; done
    done
}

# crash_loop INDEX LABEL KIND COMMAND ARG [ENV=VALUE]
crash_loop ()
{
    local i=$1 kind=$3 cmd=$4 arg=$5 envs=() rc t0 tr points=0 view
    LABEL=$2
    [ -z "${6:-}" ] || envs=("$6")
    t0=$(date +%s%N)
    for (( N = 1; N <= 60; N++ )); do
        setup "$TEST_TMP/loop$i" "l${i}n$N" "$kind"
        rc=0
        env "${envs[@]}" VMSNAP_TEST_CRASH_AFTER=$N "$VMSNAP" "$cmd" --json "$W/dom.xml" "$arg" \
            >"$W.out" 2>"$W.err" || rc=$?
        if [ "$rc" = 99 ]; then
            grep -q "VMSNAP_TEST_CRASH_AFTER reached" "$W.err" ||
                { cat "$W.err" >&2; fail "$LABEL N=$N: exit 99 without the crash hook's message"; }
            vms_ok list --json "$W/dom.xml"
            jq -e --arg op "$cmd" '.pending.operation == $op' <<<"$VMS_OUT" >/dev/null ||
                { echo "$VMS_OUT" >&2; fail "$LABEL N=$N: list does not show the pending $cmd"; }
            tr=$(date +%s%N)
            vms_ok recover --json "$W/dom.xml"
            tr=$(( ($(date +%s%N) - tr) / 1000000 ))
            jq -e --arg op "$cmd" '.recovered == $op and .result == "finished"' <<<"$VMS_OUT" >/dev/null ||
                { echo "$VMS_OUT" >&2; fail "$LABEL N=$N: recover did not finish the $cmd"; }
            # A dead client's lock would make it wait ~30 s.
            [ "$tr" -lt 15000 ] || fail "$LABEL N=$N: recover took $tr ms (waiting for a dead client's lock?)"
            vms_ok recover --json "$W/dom.xml"
            jq -e '.recovered == null' <<<"$VMS_OUT" >/dev/null || fail "$LABEL N=$N: a second recover found something to do"
        elif [ "$rc" != 0 ]; then
            cat "$W.out" "$W.err" >&2
            fail "$LABEL N=$N: exit $rc (want 99 or 0)"
        fi
        catalog_view
        view=$CAT_VIEW
        case $kind:$view in
            create:"s1,s2,s3 current=s3")
                SNAP_HIST[s3]="A B C" SNAP_PARENT[s3]=s2 CURRENT=s3 ;;
            create:"s1,s2 current=s2"|revert:"s1,s2 current=s2")
                [ "$rc" = 99 ] || fail "$LABEL: finished, but the catalog is unchanged" ;;
            revert:"s1,s2 current=s1")
                CUR_HIST="A" CURRENT=s1
                [ "$rc" != 0 ] || jq -e 'all(.disks[]; .note | startswith("cloned"))' "$W.out" >/dev/null ||
                    { cat "$W.out" >&2; fail "$LABEL: the revert did not clone"; } ;;
            delete:"s2,s3 current=s3")
                unset "SNAP_HIST[s1]" "SNAP_PARENT[s1]"
                [ "$rc" != 0 ] || jq -e 'all(.disks[]; .note | test("flattened its clone"))' "$W.out" >/dev/null ||
                    { cat "$W.out" >&2; fail "$LABEL: the delete did not flatten"; } ;;
            *)
                fail "$LABEL N=$N: after recover the catalog is '$view', neither before nor after the $cmd" ;;
        esac
        verify
        points=$(( points + 1 ))
        [ "$rc" != 0 ] || break
    done
    [ "$rc" = 0 ] || fail "$LABEL: still crashing at N=60"
    [ "$points" -ge 3 ] || fail "$LABEL: only $(( points - 1 )) crash point(s): is VMSNAP_TEST_CRASH_AFTER working?"
    echo "  $LABEL: $(( points - 1 )) crash points, each recovered and verified ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
    echo "$(( points - 1 ))" >"$TEST_TMP/loop$i.points"
}

# A rollback revert killed inside librbd's rollback (issue 16, item 9).
# librbd (pacific, SnapshotRollbackRequest) first overwrites the head's
# object map with the snapshot's (one write), then rolls the objects back,
# skipping every object that the head map it loaded AND the snapshot's map
# both call absent.  A kill between the two leaves a head map that calls
# absent the objects written since the snapshot, which still hold their
# data; a rollback run again by recover skipped exactly those, and the
# disk kept them (what the crash matrix's random kill found under the
# sanitizers: the bytes at 12 and 15 MiB of neither state).  The state is
# made exactly, not by racing a kill: the revert stopped by
# VMSNAP_TEST_CRASH_AFTER right after vda's step "decided" (the rollback
# chosen, not started: all the journal knows of a kill inside it), then
# the disk's head map overwritten with s1's map, as librbd's first half
# does.  Letter C (4 MiB, object 1) exists in the head only.
rollback_map_job ()   # I
{
    local i=$1 rc j img id sid t0
    LABEL="rollback revert killed inside librbd's rollback"
    t0=$(date +%s%N)
    for (( N = 1; N <= 20; N++ )); do
        setup "$TEST_TMP/loop$i" "l${i}n$N" revert
        rc=0
        VMSNAP_RBD_REVERT_MODE=rollback VMSNAP_TEST_CRASH_AFTER=$N "$VMSNAP" revert "$W/dom.xml" s1 \
            >"$W.out" 2>"$W.err" || rc=$?
        [ "$rc" = 99 ] || { cat "$W.out" "$W.err" >&2; fail "$LABEL N=$N: exit $rc before the rollback started"; }
        j=$(cat "$W"/state/*/journal)
        # vda's rollback chosen ("decided"), not done.
        if awk '/^\[/ { g = $0 } g == "[disk.vda]" && /^done=(.*;)?decided;/ { m = 1 }
                g == "[disk.vda]" && /^done=(.*;)?rollback;/ { d = 1 } END { exit !(m && !d) }' <<<"$j"; then
            break
        fi
    done
    [ "$N" -le 20 ] || fail "$LABEL: the journal never recorded vda's rollback mode: $j"
    img=rbd/$P-vda
    id=$(rbdc info --format json "$img" | jq -r '.block_name_prefix | sub("^rbd_data\\."; "")')
    sid=$(rbdc snap ls --format json "$img" | jq -r '.[] | select(.name == "s1") | .id')
    [ -n "$id" ] && [ -n "$sid" ] || fail "$LABEL: no image id or snapshot id for $img@s1"
    timeout 30 rados -c "$CEPH_CONF" -p rbd get "$(printf 'rbd_object_map.%s.%016x' "$id" "$sid")" "$W.map" ||
        fail "$LABEL: $img has no object map for s1 (object-map feature off?)"
    timeout 30 rados -c "$CEPH_CONF" -p rbd put "rbd_object_map.$id" "$W.map" ||
        fail "$LABEL: cannot write $img's head object map"
    vms_ok recover --json "$W/dom.xml"
    jq -e '.recovered == "revert" and .result == "finished"' <<<"$VMS_OUT" >/dev/null ||
        { echo "$VMS_OUT" >&2; fail "$LABEL: recover did not finish the revert"; }
    CUR_HIST="A" CURRENT=s1
    catalog_view
    [ "$CAT_VIEW" = "s1,s2 current=s1" ] || fail "$LABEL: after recover the catalog is '$CAT_VIEW'"
    verify
    echo "  $LABEL: stopped at N=$N, head map made stale, recovered and verified ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
    echo 1 >"$TEST_TMP/loop$i.points"
}

loops=("create s3|create|create|s3|" "clone revert s1|revert|revert|s1|VMSNAP_RBD_REVERT_MODE=clone"
       "delete s1 (flattens its clones)|delete|delete|s1|" "rollback revert, object map stale|rollback-map")
crash_job ()   # I
{
    local label kind cmd arg envv
    IFS='|' read -r label kind cmd arg envv <<<"${loops[$1]}"
    [ "$kind" != rollback-map ] || { rollback_map_job "$1"; return; }
    crash_loop "$1" "$label" "$kind" "$cmd" "$arg" "$envv"
}
run_crash_loops rbd-crash crash_job
