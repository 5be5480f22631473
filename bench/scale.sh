#!/usr/bin/env bash
# Scale (shut-off domain XML files, qcow2):
#   1. a DEPTH-deep chain (qcow2-external, default 200): create s1..sDEPTH
#      with 64 KiB written before each; then `list`, `revert` to the oldest
#      (s1), `delete` of the middle snapshot;
#   2. a catalog of CATALOG snapshots (qcow2-internal, default 1000, all in
#      one image: the chain stays one file): `list` time;
#   3. `plan` on a 64-disk domain (tests/data/domains/57-64-disks.xml).
# Each create is timed; the table shows how create time grows with the
# number of snapshots.  Building stops when BENCH_SCALE_BUDGET_S (default
# 120 s) per part is used up, and the table says at which size: a stop is a
# finding (create time grows with the chain), not a skipped test.
#
#   bench/scale.sh BUILD_DIR
# Environment: BENCH_QUICK=1 (depth 30, catalog 60, budget 60 s),
#   BENCH_DEPTH, BENCH_CATALOG, BENCH_SCALE_BUDGET_S, BENCH_REPS (list/plan
#   repetitions, default 5).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "$@"

if [ "$BENCH_QUICK" = 1 ]; then
    DEPTH=${BENCH_DEPTH:-30} CATALOG=${BENCH_CATALOG:-60} BUDGET=${BENCH_SCALE_BUDGET_S:-60} REPS=${BENCH_REPS:-3}
else
    DEPTH=${BENCH_DEPTH:-200} CATALOG=${BENCH_CATALOG:-1000} BUDGET=${BENCH_SCALE_BUDGET_S:-120} REPS=${BENCH_REPS:-5}
fi
export VMSNAP_STATE_DIR=$TEST_TMP/state
ROWS=() NOTES=()

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
# within the budget; sets BUILT and CT (array of create times).
build ()
{
    local dom=$1 pre=$2 target=$3 i t0 img
    shift 3
    CT=() BUILT=0
    t0=$(now_us)
    for (( i = 1; i <= target; i++ )); do
        img=$(domxml_active "$dom" vda)
        must qemu-io -f qcow2 -c "write -P $(( i % 200 + 20 )) $(( (i % 512) * 65536 )) 64k" "$img" >/dev/null
        sync
        time_ms "$VMSNAP" create "$@" "$dom" "$pre$i"
        [ "$T_RC" = 0 ] || fail "create $pre$i: $(cat "$TEST_TMP/.last.err")"
        CT+=("$T_MS")
        BUILT=$i
        if (( i % 25 == 0 )); then log "  $pre: $i snapshots, last create $T_MS ms"; fi
        if (( ($(now_us) - t0) / 1000000 >= BUDGET )) && (( i < target )); then
            NOTES+=("$pre: stopped at $i of $target snapshots: the ${BUDGET} s budget was used up (last create took $T_MS ms)")
            break
        fi
    done
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
read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" list "$D/dom.xml")"
ROWS+=("| chain of $depth | list | $m | $x |")
read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" chain "$D/dom.xml")"
ROWS+=("| chain of $depth | chain | $m | $x |")
time_ms "$VMSNAP" revert "$D/dom.xml" s1
[ "$T_RC" = 0 ] || fail "revert s1: $(cat "$TEST_TMP/.last.err")"
ROWS+=("| chain of $depth | revert to the oldest (s1) | $T_MS | - |")
mid=$(( (depth + 1) / 2 ))
time_ms "$VMSNAP" delete --json "$D/dom.xml" "s$mid"
[ "$T_RC" = 0 ] || fail "delete s$mid: $(cat "$TEST_TMP/.last.err")"
ROWS+=("| chain of $depth | delete the middle (s$mid; $(jq -r '.disks[0].note | split(" ")[0]' "$TEST_TMP/.last.out")) | $T_MS | - |")
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
rm -rf "$D"

# ------------------------------------------------------------ 3. 64 disks
log "plan on 64 disks"
D=$TEST_TMP/d64
mkdir -p "$D"
src=$srcdir/tests/data/domains/57-64-disks.xml
[ -f "$src" ] || fail "missing $src"
sed "s|@DIR@|$D|g" "$src" >"$D/dom.xml"
n=0
for f in $(xmllint --xpath '//disk/source/@file' "$D/dom.xml" | sed -E 's/ *file="([^"]*)"/\1\n/g'); do
    must qemu-img create -q -f qcow2 "$f" 16M
    n=$(( n + 1 ))
done
read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" plan "$D/dom.xml")"
ROWS+=("| $n disks | plan | $m | $x |")
read -r m x <<<"$(repeat_ms "$REPS" "$VMSNAP" plan --json "$D/dom.xml")"
ROWS+=("| $n disks | plan --json | $m | $x |")
time_ms "$VMSNAP" create "$D/dom.xml" first
[ "$T_RC" = 0 ] || fail "create on 64 disks: $(cat "$TEST_TMP/.last.err")"
ROWS+=("| $n disks | create (qcow2-external, offline) | $T_MS | - |")
rm -rf "$D"

for n in "${NOTES[@]}"; do echo "- NOTE: $n"; done
echo
echo "Milliseconds (offline, domain XML files; list/plan: median and max of $REPS runs)."
echo
echo "| case | operation | ms (median) | max |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
bench_footer
