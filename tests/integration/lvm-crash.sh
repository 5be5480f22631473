#!/usr/bin/env bash
# Crash safety of LVM create and revert, in the LVM guest: a domain with vda
# on a thin LV and vdb on a thick LV, so each run covers both kinds.  For
# N = 1, 2, ... until the command finishes: run it with
# VMSNAP_TEST_CRASH_AFTER=N (vmsnap _exit(99)s right after its N-th
# journaled step: the core's and the backend's, e.g. a thin revert's
# rename, a thick revert's merge), check that `vmsnap list` shows it
# pending (first crash), run `vmsnap recover`, which must finish it, then
# check everything (tests/fixtures/lvm/engine-lvm.sh): the disks' and the
# snapshots' contents, list, the VG's LVs (no leftover LV) and their tags,
# the device paths.
#   revert  between s1 (A) and s2 (A B): run N reverts to s1 when the
#           disks hold s2 and to s2 when they hold s1, so no run needs
#           putting back (the thin snapshots, which a revert only reads,
#           are read after the loop, the thick ones after every run)
#   create  c1, c2, ... on top, with C written first (each run a new
#           snapshot of the same contents; the contents of the new one and
#           of the disks are read, the list and the LVs of all)
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/lvm-guest.sh"
lvmg_main "$0" "$@"
# ---------------------------------------------------------- in the guest
. "$srcdir/tests/fixtures/engine.sh"
. "$srcdir/tests/fixtures/lvm/engine-lvm.sh"
lvt_init
eng_write A 1M
eng_create s1
eng_write B 1M
eng_create s2
lvt_check "setup: s1 (A), s2 (A B)"

# crash_run N CMD ARG: run vmsnap CMD ARG crashing after step N; recover
# if it crashed.  CRASHED=1 when it did.
crash_run ()
{
    local n=$1 cmd=$2 arg=$3 rc=0
    VMSNAP_TEST_CRASH_AFTER=$n "$VMSNAP" "$cmd" --json "$ENG_DOM" "$arg" \
        >"$TEST_TMP/out" 2>"$TEST_TMP/err" || rc=$?
    CRASHED=0
    if [ "$rc" = 99 ]; then
        CRASHED=1
        grep -q "VMSNAP_TEST_CRASH_AFTER reached" "$TEST_TMP/err" ||
            { cat "$TEST_TMP/err" >&2; fail "$cmd $arg N=$n: exit 99 without the crash hook's message"; }
        if [ "$n" = 1 ]; then
            vms_ok list --json "$ENG_DOM"
            jq_check "$VMS_OUT" '.pending.operation == $op' \
                "$cmd $arg N=$n: list does not show the pending $cmd" --arg op "$cmd"
        fi
        vms_ok recover --json "$ENG_DOM"
        jq_check "$VMS_OUT" '.recovered == $op and .result == "finished"' \
            "$cmd $arg N=$n: recover did not finish the $cmd" --arg op "$cmd"
    elif [ "$rc" != 0 ]; then
        cat "$TEST_TMP/out" "$TEST_TMP/err" >&2
        fail "$cmd $arg N=$n: exit $rc (want 99 or 0)"
    fi
}

# A revert never writes a snapshot, but a thick one merges and creates its
# snapshot again: each run reads the thick snapshots; the thin ones (which
# a revert only reads) are read once the loop is done.
LVT_THIN_READS=0
t0=$(lvmg_now_ms)
for (( n = 1; n <= 40; n++ )); do
    [ "$ENG_CURRENT" = s2 ] && to=s1 || to=s2
    crash_run "$n" revert "$to"
    CUR_HIST=${SNAP_HIST[$to]} ENG_CURRENT=$to ENG_DIRTY=0
    lvt_check "revert $to, crash after journaled step $n, recover"
    [ "$CRASHED" = 1 ] || break
done
[ "$CRASHED" = 0 ] || fail "revert: still crashing at N=40"
[ "$n" -ge 5 ] || fail "revert: only $(( n - 1 )) crash point(s): is VMSNAP_TEST_CRASH_AFTER working?"
lvmg_pass "revert: $(( n - 1 )) crash points, each recovered and verified ($(( $(lvmg_now_ms) - t0 )) ms)"
LVT_THIN_READS=1
lvt_check "after the revert crash loop"

eng_write C 1M
t0=$(lvmg_now_ms)
for (( n = 1; n <= 40; n++ )); do
    crash_run "$n" create "c$n"
    SNAP_HIST[c$n]=$CUR_HIST SNAP_PARENT[c$n]=$ENG_CURRENT ENG_CURRENT=c$n ENG_DIRTY=0
    lvt_check "create c$n, crash after journaled step $n, recover" "c$n"
    [ "$CRASHED" = 1 ] || break
done
[ "$CRASHED" = 0 ] || fail "create: still crashing at N=40"
[ "$n" -ge 5 ] || fail "create: only $(( n - 1 )) crash point(s): is VMSNAP_TEST_CRASH_AFTER working?"
lvmg_pass "create: $(( n - 1 )) crash points, each recovered and verified ($(( $(lvmg_now_ms) - t0 )) ms)"
lvt_check "after both crash loops"
echo "lvm-crash: ok"
