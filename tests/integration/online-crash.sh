#!/usr/bin/env bash
# Crash safety of the journaled operations on a RUNNING domain (the online
# counterpart of engine-crash.sh).  For an online create and two online
# deletes, for N = 1, 2, ... until the command finishes without crashing:
# start from a fresh copy of the same state (the domain restarted on it),
# run the command with VMSNAP_TEST_CRASH_AFTER=N (vmsnap _exit(99)s right
# after its N-th journaled step), check `vmsnap list` shows the pending
# operation, run `vmsnap recover`, then check everything: the domain is
# running with live and inactive definitions that agree, the operation was
# finished or rolled back as a whole, the current data (read inside the
# running guest), list/chain, every snapshot through its locator and by
# reverting to it while running, no stray file in the image directory.
#
# The state (vda qcow2, vdb raw), built while running: write A (1 MiB), s1,
# write B (4 MiB), s2, write C (1 MiB, not snapshotted).
#   create s3     one libvirt transaction
#   delete s2     s2's image is the backing file of the active layer (an
#                 active block commit and pivot, or a block pull)
#   delete s1     an inner layer (a block commit below the active layer)
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io virsh xmllint
: "${VMSNAP:?}"
mk_tmpdir
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
libvirt_start

# Each loop has its own domain (crashN) and directory ($W), kept at a fixed
# path: the catalog, the journal and the definition name the images by
# absolute path, so the template is copied back to the same place.
setup ()   # DIR DOMAIN
{
    local out d
    W=$1 TPL=$1.template
    mkdir -p "$W/img"
    qemu-img create -q -f qcow2 "$W/img/vda.qcow2" 64M
    qemu-img create -q -f raw "$W/img/vdb.raw" 64M
    mk_domain_xml "$2" "$1.xml" "vda:qcow2:$W/img/vda.qcow2" "vdb:raw:$W/img/vdb.raw"
    libvirt_define_test_domain "$2" "$1.xml"
    out=$(virsh start "$2" 2>&1) || fail "virsh start $2: $out"
    ENG_DOM=$2 ENG_KIND=running ENG_DISKS=(vda vdb) ENG_IMG_DIR=$W/img
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
    # The template: QEMU flushes and quits, then the files and the
    # definition are kept.
    for d in vda vdb; do hmp_qemu_io "$2" "ua-$d" flush >/dev/null; done
    out=$(virsh destroy --graceful "$2" 2>&1) || fail "virsh destroy $2: $out"
    virsh -q dumpxml --inactive "$2" >"$1.def.xml" || fail "virsh dumpxml $2"
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
    local out
    virsh -q destroy "$ENG_DOM" >/dev/null 2>&1 || true
    rm -rf "$W"
    cp -a "$TPL" "$W"
    out=$(virsh define "$W.def.xml" 2>&1) || fail "virsh define $W.def.xml: $out"
    out=$(virsh start "$ENG_DOM" 2>&1) || fail "virsh start $ENG_DOM: $out"
    template_model
}

# Everything the model says, then every snapshot by reverting to it while
# running (the current state is thrown away afterwards).
verify ()
{
    local s
    [ "$(eng_domstate)" = running ] || fail "$ENG_DOM is '$(eng_domstate)' after recover"
    eng_check_live_def
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

catalog_view ()
{
    vms_ok list --json "$ENG_DOM"
    LIST_JSON=$VMS_OUT
    CAT_VIEW=$(jq -r '([.snapshots[].name] | sort | join(",")) + " current=" + (.current // "-")' <<<"$VMS_OUT")
}

# crash_loop LABEL COMMAND ARG: see the top of the file.
crash_loop ()
{
    local label=$1 cmd=$2 arg=$3 n rc view points=0 t0 st dirs=""
    t0=$(date +%s%N)
    for (( n = 1; n <= 40; n++ )); do
        restore
        rc=0
        VMSNAP_TEST_CRASH_AFTER=$n "$VMSNAP" "$cmd" --json "$ENG_DOM" "$arg" \
            >"$OUT" 2>"$ERR" || rc=$?
        if [ "$rc" = 99 ]; then
            grep -q "VMSNAP_TEST_CRASH_AFTER reached" "$ERR" ||
                { cat "$ERR" >&2; fail "$label N=$n: exit 99 without the crash hook's message"; }
            st=$(eng_domstate)
            vms_rc list --json "$ENG_DOM"
            [ "$VMS_RC" = 0 ] || { echo "$VMS_ERR" >&2; fail "$label N=$n: list after the crash exited $VMS_RC"; }
            jq_check "$VMS_OUT" '.pending.operation == $op' \
                "$label N=$n: list does not show the pending $cmd" --arg op "$cmd"
            if [ "$n" = 1 ]; then
                vms_ok list "$ENG_DOM"
                [[ $VMS_OUT == *"PENDING: $cmd $arg"* ]] ||
                    { echo "$VMS_OUT" >&2; fail "$label N=$n: list (text) does not show the pending operation"; }
            fi
            vms_ok recover --json "$ENG_DOM"
            jq_check "$VMS_OUT" '.recovered == $op and (.result == "finished" or .result == "rolled back")' \
                "$label N=$n: recover did not finish or roll back the $cmd" --arg op "$cmd"
            echo "    N=$n: crashed (domain $st), recover: $(jq -r .result <<<"$VMS_OUT")"
            vms_ok recover --json "$ENG_DOM"
            jq_check "$VMS_OUT" '.recovered == null' "$label N=$n: a second recover found something to do"
        elif [ "$rc" = 0 ]; then
            [ "$cmd" = create ] ||
                dirs=$(jq -r '[.disks[] | "\(.target) \(.note | split(";")[0])"] | join("; ")' "$OUT" | cut -c1-300)
            [ "$(eng_domstate)" = running ] || fail "$label: the $cmd left $ENG_DOM '$(eng_domstate)'"
        else
            cat "$OUT" "$ERR" >&2
            fail "$label N=$n: exit $rc (want 99 or 0)"
        fi
        catalog_view
        view=$CAT_VIEW
        case $cmd:$view in
            create:"s1,s2,s3 current=s3")
                SNAP_HIST[s3]="A B C" SNAP_PARENT[s3]=s2 ENG_CURRENT=s3 ENG_DIRTY=0 ;;
            create:"s1,s2 current=s2")
                [ "$rc" = 99 ] || fail "$label: finished, but the catalog is unchanged" ;;
            delete:"s1 current=s1")
                [ "$arg" = s2 ] || fail "$label N=$n: catalog $view"
                eng_forget s2 ;;
            delete:"s2 current=s2")
                [ "$arg" = s1 ] || fail "$label N=$n: catalog $view"
                eng_forget s1 ;;
            delete:"s1,s2 current=s2")
                [ "$rc" = 99 ] || fail "$label: finished, but the catalog is unchanged" ;;
            *)
                fail "$label N=$n: after recover the catalog is '$view', neither before nor after the $cmd" ;;
        esac
        verify
        points=$(( points + 1 ))
        [ "$rc" != 0 ] || break
    done
    [ "$rc" = 0 ] || fail "$label: still crashing at N=40"
    [ "$points" -ge 3 ] || fail "$label: only $(( points - 1 )) crash point(s): is VMSNAP_TEST_CRASH_AFTER working?"
    [ -z "$dirs" ] || echo "    without a crash: $dirs"
    echo "  $label: $(( points - 1 )) crash points, each recovered and verified ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
    echo "$(( points - 1 ))" >"$W.points"
}

loops=("create s3|create|s3" "delete s2 (parent of the active layer)|delete|s2"
       "delete s1 (inner layer)|delete|s1")
crash_job ()   # I
{
    local label cmd arg
    IFS='|' read -r label cmd arg <<<"${loops[$1]}"
    setup "$TEST_TMP/loop$1" "crash$1"; crash_loop "$label" "$cmd" "$arg"
}
run_crash_loops online-crash crash_job
