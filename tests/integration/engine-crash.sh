#!/usr/bin/env bash
# Crash safety of the journaled operations.  For a create, a revert and two
# deletes of a snapshot with one child (one that commits, one that pulls),
# for N = 1, 2, ... until the command finishes without crashing: start from
# a fresh copy of the same state, run the command with
# VMSNAP_TEST_CRASH_AFTER=N (vmsnap _exit(99)s right after its N-th
# journaled step), check `vmsnap list` shows the pending operation, run
# `vmsnap recover`, then check everything: the operation was finished or
# rolled back as a whole, the current contents, every snapshot (through its
# locator and by reverting to it), list/chain, no stray file in the image
# directory, and `qemu-img check` clean on every qcow2 image.  Where a
# delete stopped with its plan recorded and no data moved (what a kill
# inside qemu-img commit/rebase leaves), a leaked cluster is first made in
# the image it writes: recover must repair it (issue 16, item 8).
#
# The state (two disks, vda qcow2 and vdb raw): write A (1 MiB), s1, write
# B (4 MiB), s2, write C (1 MiB, not snapshotted).  Deleting s2 commits (its
# child, the active image, holds less than s2's own layer); deleting s1 pulls
# (s1's layer holds less than its child, s2's image).
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint
: "${VMSNAP:?}"
mk_tmpdir

# The state lives at a fixed path ($W): the catalog and journal (under the
# state dir) and the domain XML name the images by absolute path, so the
# template is copied back to the same place every time.  Each of the four
# crash loops runs in its own directory, in parallel.
setup ()   # DIR
{
    W=$1 TPL=$1.template
    mkdir -p "$W/img"
    qemu-img create -q -f qcow2 "$W/img/vda.qcow2" 64M
    qemu-img create -q -f raw "$W/img/vdb.raw" 64M
    eng_mk_file_domain engcrash "$W/dom.xml" "vda:qcow2:$W/img/vda.qcow2" "vdb:raw:$W/img/vdb.raw"
    ENG_DOM=$W/dom.xml ENG_KIND=file ENG_DISKS=(vda vdb) ENG_IMG_DIR=$W/img
    VMSNAP_STATE_DIR=$W/state
    eng_init
    ENG_ERRFILE=$1.stderr   # outside $W
    OUT=$1.out ERR=$1.err
    ENG_WRITTEN="" ENG_LEN=()
    eng_reset_model
    eng_write A 1M
    eng_create s1
    eng_write B 4M
    eng_create s2
    eng_write C 1M
    eng_check_state "A B C"
    cp -a "$W" "$TPL"
}

template_model ()
{
    eng_reset_model
    SNAP_HIST=([s1]="A" [s2]="A B") SNAP_PARENT=([s1]="" [s2]=s1)
    CUR_HIST="A B C" ENG_CURRENT=s2 ENG_DIRTY=1
}

restore ()
{
    rm -rf "$W"
    cp -a "$TPL" "$W"
    template_model
}

# planned_not_moved: every disk's delete has recorded its plan (step
# "planned") and moved no data yet (neither "commit" nor "pull" done): the
# journal of a run killed inside the qemu-img that moves the data.
planned_not_moved ()
{
    awk '/^\[/ { g = $0 } g ~ /^\[disk\./ && /^done=/ {
             n++; if ($0 ~ /[=;]planned;/ && $0 !~ /[=;](commit|pull);/) p++ }
         END { exit !(n > 0 && n == p) }' "$W"/state/*/journal
}

# images_clean: `qemu-img check -f qcow2` passes on every qcow2 image of
# the image directory (no leaked cluster, no corruption).
images_clean ()
{
    local f out rc
    for f in "$W"/img/*; do
        [ "$(head -c 4 "$f" | od -An -t x1 | tr -d ' ')" = 514649fb ] || continue
        rc=0; out=$(qemu-img check -f qcow2 "$f" 2>&1) || rc=$?
        [ "$rc" = 0 ] || fail "$LABEL N=$N: qemu-img check -f qcow2 $f exited $rc after recover (3: leaked clusters, 2: corrupt): $out"
    done
}

# Everything the model says, then every snapshot by reverting to it (the
# current state is thrown away afterwards, so the order does not matter).
verify ()
{
    local s
    images_clean
    eng_check_state "$CUR_HIST"
    eng_check_list "$LIST_JSON"
    eng_check_chain
    eng_check_locators
    for s in "${!SNAP_HIST[@]}"; do
        vms_ok revert "$ENG_DOM" "$s"
        eng_check_state "${SNAP_HIST[$s]}"
    done
    eng_check_chain
}

# The snapshots and current snapshot, as `vmsnap list` says (LIST_JSON: all
# of it).
catalog_view ()
{
    vms_ok list --json "$ENG_DOM"
    LIST_JSON=$VMS_OUT
    CAT_VIEW=$(jq -r '([.snapshots[].name] | sort | join(",")) + " current=" + (.current // "-")' <<<"$VMS_OUT")
}

# which_direction NOTE: the first of "commit" / "pull" in a note.
which_direction ()
{
    local pc=${1%%commit*} pp=${1%%pull*}
    if [ "$pc" = "$1" ] && [ "$pp" = "$1" ]; then echo none
    elif [ ${#pc} -lt ${#pp} ]; then echo commit
    else echo pull; fi
}

# crash_loop LABEL WANT_DIRECTION COMMAND ARG: see the top of the file.
crash_loop ()
{
    local label=$1 want=$2 cmd=$3 arg=$4 n rc view d note points=0 t0 loc leaked=0 pending
    t0=$(date +%s%N)
    LABEL=$label
    for (( n = 1; n <= 60; n++ )); do
        N=$n
        restore
        rc=0
        VMSNAP_TEST_CRASH_AFTER=$n "$VMSNAP" "$cmd" --json "$ENG_DOM" "$arg" \
            >"$OUT" 2>"$ERR" || rc=$?
        if [ "$rc" = 99 ]; then
            grep -q "VMSNAP_TEST_CRASH_AFTER reached" "$ERR" ||
                { cat "$ERR" >&2; fail "$label N=$n: exit 99 without the crash hook's message"; }
            vms_ok list --json "$ENG_DOM"
            jq_check "$VMS_OUT" '.pending.operation == $op' \
                "$label N=$n: list does not show the pending $cmd" --arg op "$cmd"
            pending=$VMS_OUT
            if [ "$n" = 1 ]; then
                vms_ok list "$ENG_DOM"
                [[ $VMS_OUT == *"PENDING: $cmd $arg"* ]] ||
                    { echo "$VMS_OUT" >&2; fail "$label N=$n: list (text) does not show the pending operation"; }
            fi
            # Killed inside the qemu-img that commits or pulls, a delete
            # leaves leaked clusters in the image it wrote (issue 16, item
            # 8): the state is made exactly, a leaked cluster in each
            # disk's target (s2's image: delete s2 commits into it,
            # delete s1 pulls into it), for recover to repair.
            if [ "$cmd" = delete ] && planned_not_moved; then
                for d in "${ENG_DISKS[@]}"; do
                    loc=$(jq -r --arg t "$d" '.snapshots[] | select(.name == "s2") | .disks[]
                                              | select(.target == $t) | .locator' <<<"$pending")
                    qcow2_leak "${loc#*:}"
                done
                leaked=$(( leaked + 1 ))
            fi
            vms_ok recover --json "$ENG_DOM"
            jq_check "$VMS_OUT" '.recovered == $op and .result == "finished"' \
                "$label N=$n: recover did not finish the $cmd" --arg op "$cmd"
            if [ "$n" = 1 ]; then
                vms_ok recover --json "$ENG_DOM"
                jq_check "$VMS_OUT" '.recovered == null' "$label N=$n: a second recover found something to do"
            fi
        elif [ "$rc" = 0 ]; then
            if [ "$want" != - ]; then
                for d in "${ENG_DISKS[@]}"; do
                    note=$(jq -r --arg t "$d" '.disks[] | select(.target == $t) | .note' "$OUT")
                    [ "$(which_direction "$note")" = "$want" ] ||
                        { cat "$OUT" >&2; fail "$label: disk $d did not $want: $note"; }
                done
            fi
        else
            cat "$OUT" "$ERR" >&2
            fail "$label N=$n: exit $rc (want 99 or 0)"
        fi
        # What the catalog says must be exactly the state before or after.
        catalog_view
        view=$CAT_VIEW
        case $cmd:$view in
            create:"s1,s2,s3 current=s3")
                SNAP_HIST[s3]="A B C" SNAP_PARENT[s3]=s2 ENG_CURRENT=s3 ENG_DIRTY=0 ;;
            create:"s1,s2 current=s2"|revert:"s1,s2 current=s2")
                [ "$rc" = 99 ] || fail "$label: finished, but the catalog is unchanged" ;;
            revert:"s1,s2 current=s1")
                CUR_HIST="A" ENG_CURRENT=s1 ENG_DIRTY=0 ;;
            delete:"s1 current=s1")
                [ "$arg" = s2 ] || fail "$label N=$n: catalog $view"
                eng_forget s2 ;;
            delete:"s2 current=s2")
                [ "$arg" = s1 ] || fail "$label N=$n: catalog $view"
                eng_forget s1 ;;
            *)
                fail "$label N=$n: after recover the catalog is '$view', neither before nor after the $cmd" ;;
        esac
        verify
        points=$(( points + 1 ))
        [ "$rc" != 0 ] || break
    done
    [ "$rc" = 0 ] || fail "$label: still crashing at N=60"
    [ "$points" -ge 3 ] || fail "$label: only $(( points - 1 )) crash point(s): is VMSNAP_TEST_CRASH_AFTER working?"
    [ "$cmd" != delete ] || [ "$leaked" -ge 1 ] || fail "$label: no crash point between the recorded plan and the data step (step 'planned')"
    echo "  $label: $(( points - 1 )) crash points, each recovered and verified, $leaked with leaked clusters made in the target ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
    echo "$(( points - 1 ))" >"$W.points"
}

# LABEL DIRECTION COMMAND ARG, one background job each.
loops=("create s3|-|create|s3" "revert s1|-|revert|s1"
       "delete s2 (commit)|commit|delete|s2" "delete s1 (pull)|pull|delete|s1")
crash_job ()   # I
{
    local label want cmd arg
    IFS='|' read -r label want cmd arg <<<"${loops[$1]}"
    setup "$TEST_TMP/loop$1"; crash_loop "$label" "$want" "$cmd" "$arg"
}
run_crash_loops engine-crash crash_job
