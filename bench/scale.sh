#!/usr/bin/env bash
# Scale (shut-off domain XML files, qcow2):
#   1. a DEPTH-deep chain (qcow2-external, default 200): create s1..sDEPTH
#      with 64 KiB written before each; then `list`, `revert` to the oldest
#      (s1), `delete` of the middle snapshot;
#   2. a catalog of CATALOG snapshots (qcow2-internal, default 1000, all in
#      one image: the chain stays one file): `list` time;
#   3. `plan` on a 64-disk domain (tests/data/domains/57-64-disks.xml) and
#      on a generated 256-disk domain.
# Each create is timed; the table shows how create time grows with the
# number of snapshots, and how long building the whole DEPTH-deep chain
# with `vmsnap create` took (issue 17's goal: 200 deep in <= 10 s).
# Building stops when BENCH_SCALE_BUDGET_S (default 120 s) per part is used
# up, or when vmsnap refuses the next create as not possible (exit 4: a
# chain deeper than it handles), and the table says at which size: a stop
# is a finding, not a skipped test.  The processes each command starts
# (VMSNAP_DEBUG_SPAWNS) are listed too, counted outside the timings.
#
#   bench/scale.sh BUILD_DIR
# Environment: BENCH_QUICK=1 (depth 30, catalog 60, budget 60 s),
#   BENCH_DEPTH, BENCH_CATALOG, BENCH_SCALE_BUDGET_S, BENCH_REPS (list/plan
#   repetitions, default 5), BENCH_PLAN_DISKS (default "64 256"; 64 uses
#   the fixture, any other count a generated domain).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "$@"

if [ "$BENCH_QUICK" = 1 ]; then
    DEPTH=${BENCH_DEPTH:-30} CATALOG=${BENCH_CATALOG:-60} BUDGET=${BENCH_SCALE_BUDGET_S:-60} REPS=${BENCH_REPS:-3}
else
    DEPTH=${BENCH_DEPTH:-200} CATALOG=${BENCH_CATALOG:-1000} BUDGET=${BENCH_SCALE_BUDGET_S:-120} REPS=${BENCH_REPS:-5}
fi
export VMSNAP_STATE_DIR=$TEST_TMP/state
ROWS=() NOTES=() SPAWN_NOTES=()
PLAN_DISKS=${BENCH_PLAN_DISKS:-64 256}

# repeat_ms N CMD...: median and max of N runs.
repeat_ms ()
{
    local n=$1 i t=() s
    shift
    for (( i = 0; i < n; i++ )); do
        time_ms "$@"
        [ "$T_RC" = 0 ] || fail "$*: $(cat "$TEST_TMP/.last.err")"
        t+=("$T_MS")
    done
    read -r -a s <<<"$(stats "${t[@]}")"
    echo "${s[0]} ${s[3]}"
}

# build DOM NAMEPREFIX TARGET EXTRA_ARGS...: create up to TARGET snapshots
# within the budget; sets BUILT, CT (array of create times) and BUILD_S
# (wall seconds of the whole build, the writes between creates included).
build ()
{
    local dom=$1 pre=$2 target=$3 i t0 img
    shift 3
    CT=() BUILT=0 BUILD_S=0
    t0=$(now_us)
    for (( i = 1; i <= target; i++ )); do
        img=$(domxml_active "$dom" vda)
        must qemu-io -f qcow2 -c "write -P $(( i % 200 + 20 )) $(( (i % 512) * 65536 )) 64k" "$img" >/dev/null
        sync
        time_ms "$VMSNAP" create "$@" "$dom" "$pre$i"
        if [ "$T_RC" = 4 ]; then
            NOTES+=("$pre: stopped at $(( i - 1 )) of $target snapshots: vmsnap refused create $pre$i (exit 4): $(bench_errmsg "$TEST_TMP/.last.err")")
            break
        fi
        [ "$T_RC" = 0 ] || fail "create $pre$i: $(cat "$TEST_TMP/.last.err")"
        CT+=("$T_MS")
        BUILT=$i
        if (( i % 25 == 0 )); then log "  $pre: $i snapshots, last create $T_MS ms"; fi
        if (( ($(now_us) - t0) / 1000000 >= BUDGET )) && (( i < target )); then
            NOTES+=("$pre: stopped at $i of $target snapshots: the ${BUDGET} s budget was used up (last create took $T_MS ms)")
            break
        fi
    done
    BUILD_S=$(awk -v d=$(( $(now_us) - t0 )) 'BEGIN { printf "%.1f", d / 1e6 }')
}

# spawn_note LABEL ARG...: the processes `vmsnap ARG...` starts, noted.
spawn_note ()
{
    local label=$1
    shift
    SPAWN_NOTES+=("$label: $(bench_spawns "$@")")
}

# growth LABEL: rows for create time at points of CT.
growth ()
{
    local label=$1 n=${#CT[@]} a b s
    a=$(( n < 10 ? n : 10 ))
    read -r -a s <<<"$(stats "${CT[@]:0:a}")"
    ROWS+=("| $label | create, snapshots 1-$a | ${s[0]} | ${s[3]} |")
    if (( n > 10 )); then
        b=$(( n - 10 ))
        read -r -a s <<<"$(stats "${CT[@]:b}")"
        ROWS+=("| $label | create, snapshots $(( b + 1 ))-$n | ${s[0]} | ${s[3]} |")
    fi
    ROWS+=("| $label | create, all $n (sum) | $(printf '%s\n' "${CT[@]}" | awk '{ s += $1 } END { printf "%.0f", s }') | - |")
}

bench_header "Scale"

# ------------------------------------------------------------ 1. deep chain
log "deep chain: up to $DEPTH snapshots"
D=$TEST_TMP/deep
mkdir -p "$D"
must qemu-img create -q -f qcow2 "$D/vda.qcow2" 64M
xml_domain deep "$D/dom.xml" "vda:qcow2:$D/vda.qcow2"
build "$D/dom.xml" s "$DEPTH"
growth "chain (qcow2-external)"
depth=$BUILT
ROWS+=("| chain (qcow2-external) | building a $DEPTH-deep chain with vmsnap create (goal: 200 deep in <= 10 s): $([ "$BUILT" = "$DEPTH" ] && echo "built" || echo "NOT built, stopped at $BUILT (see NOTE)"); wall time with the writes (the creates alone: $(printf '%s\n' "${CT[@]}" | awk '{ s += $1 } END { printf "%.1f", s / 1000 }') s) | $BUILD_S s | - |")
if (( depth >= 2 )); then
    spawn_note "chain of $depth, list" list "$D/dom.xml"
    spawn_note "chain of $depth, info" info "$D/dom.xml" s1
    spawn_note "chain of $depth, chain" chain "$D/dom.xml"
    spawn_note "chain of $depth, plan" plan "$D/dom.xml"
    spawn_note "chain of $depth, create (one more, deleted again)" create "$D/dom.xml" extra
    if [[ ${SPAWN_NOTES[-1]} != *": failed "* ]]; then
        "$VMSNAP" delete "$D/dom.xml" extra >/dev/null 2>&1 || fail "delete extra"
    fi
fi
read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" list "$D/dom.xml")"
ROWS+=("| chain of $depth | list | $m | $x |")
read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" chain "$D/dom.xml")"
ROWS+=("| chain of $depth | chain | $m | $x |")
time_ms "$VMSNAP" revert "$D/dom.xml" s1
[ "$T_RC" = 0 ] || fail "revert s1: $(cat "$TEST_TMP/.last.err")"
ROWS+=("| chain of $depth | revert to the oldest (s1) | $T_MS | - |")
mid=$(( (depth + 1) / 2 ))
spawn_note "chain of $depth, revert to s1 (again)" revert "$D/dom.xml" s1
time_ms "$VMSNAP" delete --json "$D/dom.xml" "s$mid"
[ "$T_RC" = 0 ] || fail "delete s$mid: $(cat "$TEST_TMP/.last.err")"
ROWS+=("| chain of $depth | delete the middle (s$mid; $(jq -r '.disks[0].note | split(" ")[0]' "$TEST_TMP/.last.out")) | $T_MS | - |")
if (( depth >= 3 )); then
    spawn_note "chain of $depth, delete the next middle one (s$(( mid + 1 )))" delete "$D/dom.xml" "s$(( mid + 1 ))"
fi
rm -rf "$D"

# ------------------------------------------------------------ 2. big catalog
log "catalog: up to $CATALOG snapshots (qcow2-internal)"
D=$TEST_TMP/cat
mkdir -p "$D"
must qemu-img create -q -f qcow2 "$D/vda.qcow2" 64M
xml_domain cat "$D/dom.xml" "vda:qcow2:$D/vda.qcow2"
build "$D/dom.xml" c "$CATALOG" --backend vda=qcow2-internal
growth "catalog (qcow2-internal)"
read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" list "$D/dom.xml")"
ROWS+=("| catalog of $BUILT | list | $m | $x |")
read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" list --json "$D/dom.xml")"
ROWS+=("| catalog of $BUILT | list --json | $m | $x |")
read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" info "$D/dom.xml" c1)"
ROWS+=("| catalog of $BUILT | info (one snapshot) | $m | $x |")
if (( BUILT >= 1 )); then
    spawn_note "catalog of $BUILT, list" list "$D/dom.xml"
    spawn_note "catalog of $BUILT, info" info "$D/dom.xml" c1
fi
rm -rf "$D"

# ------------------------------------------------------------ 3. many disks
# disk_name I: the I-th virtio target name (0: vda, 25: vdz, 26: vdaa, ...).
disk_name ()
{
    local i=$1 s=""
    while :; do
        s=$(printf "\\$(printf %03o $(( 97 + i % 26 )))")$s
        (( i < 26 )) && break
        i=$(( i / 26 - 1 ))
    done
    echo "vd$s"
}

for ndisks in $PLAN_DISKS; do
    log "plan on $ndisks disks"
    D=$TEST_TMP/d$ndisks
    mkdir -p "$D"
    if [ "$ndisks" = 64 ]; then
        src=$srcdir/tests/data/domains/57-64-disks.xml
        [ -f "$src" ] || fail "missing $src"
        sed "s|@DIR@|$D|g" "$src" >"$D/dom.xml"
    else
        specs=()
        for (( i = 0; i < ndisks; i++ )); do
            t=$(disk_name "$i")
            specs+=("$t:qcow2:$D/$t.qcow2")
        done
        xml_domain "d$ndisks" "$D/dom.xml" "${specs[@]}"
    fi
    n=0
    for f in $(xmllint --xpath '//disk/source/@file' "$D/dom.xml" | sed -E 's/ *file="([^"]*)"/\1\n/g'); do
        must qemu-img create -q -f qcow2 "$f" 16M
        n=$(( n + 1 ))
    done
    [ "$n" = "$ndisks" ] || fail "the $ndisks-disk domain has $n disks"
    read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" plan "$D/dom.xml")"
    ROWS+=("| $n disks | plan | $m | $x |")
    read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" plan --json "$D/dom.xml")"
    ROWS+=("| $n disks | plan --json | $m | $x |")
    spawn_note "$n disks, plan" plan "$D/dom.xml"
    time_ms "$VMSNAP" create "$D/dom.xml" first
    [ "$T_RC" = 0 ] || fail "create on $n disks: $(cat "$TEST_TMP/.last.err")"
    ROWS+=("| $n disks | create (qcow2-external, offline) | $T_MS | - |")
    rm -rf "$D"
done

for n in "${NOTES[@]}"; do echo "- NOTE: $n"; done
echo
echo "Milliseconds (offline, domain XML files; list/plan: median and max of $REPS runs)."
echo
echo "| case | operation | ms (median) | max |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Processes vmsnap starts (VMSNAP_DEBUG_SPAWNS; counted in separate runs, outside the timings):"
echo
for n in "${SPAWN_NOTES[@]}"; do echo "- $n"; done
bench_footer
