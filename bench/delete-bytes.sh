#!/usr/bin/env bash
# Bytes copied by `vmsnap delete` (qcow2-external, shut-off domain XML
# files) for 20 chain shapes, against the minimum possible and against
# always-commit (what libvirt's external snapshot delete does: block-commit
# the deleted snapshot's child into its image).
#
# For the deleted snapshot's image U and its only child image C (read from
# `vmsnap chain --json` BEFORE the delete), from `qemu-img map --output=json`:
#   commit cost = C's own allocated data (qemu-img commit copies every
#                 cluster C holds into U)
#   pull cost   = U's own allocated data NOT also held by C (a safe
#                 `qemu-img rebase` of C onto U's backing file copies only
#                 what C would otherwise read through U)
#   minimum     = min(commit, pull); with several children the minimum is 0
#                 (the image must stay: the data is shared)
#   always-commit = commit cost (libvirt refuses a snapshot with several
#                 children: "refused")
# vmsnap's cost = the exact cost of the direction it chose (from the same
# maps; the direction is the first word of its --json note).  Also shown:
# the bytes_copied vmsnap reports and the bytes the delete actually wrote
# (wchar of vmsnap and the qemu-img it ran, /proc/PID/io of the shell that
# reaped them: data plus qcow2 metadata, journal and catalog).
# Goal: vmsnap / minimum <= 1.05 for every shape.
#
#   bench/delete-bytes.sh BUILD_DIR
# Environment: BENCH_QUICK=1 (unit 256 KiB instead of 1 MiB),
#   BENCH_UNIT_KIB (the size unit of the shapes' writes).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "$@"

if [ "$BENCH_QUICK" = 1 ]; then UNIT_KIB=${BENCH_UNIT_KIB:-256}; else UNIT_KIB=${BENCH_UNIT_KIB:-1024}; fi
UNIT=$(( UNIT_KIB * 1024 ))
(( UNIT % 65536 == 0 )) || fail "BENCH_UNIT_KIB must be a multiple of 64 (qcow2 clusters)"
VSIZE=$(( 128 * UNIT ))            # every write below stays under 128 units
export VMSNAP_STATE_DIR=$TEST_TMP/state

# ------------------------------------------------------------ chain DSL
DOM="" DIR="" PAT=16 SHAPE_N=0

# newdom NAME [raw]: a fresh domain with one disk vda (qcow2, or raw base).
newdom ()
{
    DIR=$TEST_TMP/$1
    mkdir -p "$DIR"
    if [ "${2:-}" = raw ]; then
        must qemu-img create -q -f raw "$DIR/vda.raw" "$VSIZE"
        xml_domain "$1" "$DIR/dom.xml" "vda:raw:$DIR/vda.raw"
    else
        must qemu-img create -q -f qcow2 "$DIR/vda.qcow2" "$VSIZE"
        xml_domain "$1" "$DIR/dom.xml" "vda:qcow2:$DIR/vda.qcow2"
    fi
    DOM=$DIR/dom.xml
}

active_fmt () { xmllint --xpath "string(//disk[target/@dev='vda']/driver/@type)" "$DOM"; }

# w OFF LEN [OFF LEN ...]: write a new pattern (units) into the active image.
w ()
{
    local args=() out
    PAT=$(( PAT % 250 + 1 ))
    while [ $# -ge 2 ]; do
        args+=(-c "write -P $PAT $(( $1 * UNIT )) $(( $2 * UNIT ))")
        shift 2
    done
    out=$(qemu-io -f "$(active_fmt)" "${args[@]}" "$(domxml_active "$DOM" vda)" 2>&1) ||
        fail "qemu-io: $out"
    [[ $out != *failed* ]] || fail "qemu-io: $out"
}

# scatter FIRST COUNT STRIDE LEN_KIB: COUNT writes of LEN_KIB, STRIDE units apart.
scatter ()
{
    local i args=() out
    PAT=$(( PAT % 250 + 1 ))
    for (( i = 0; i < $2; i++ )); do
        args+=(-c "write -P $PAT $(( ($1 + i * $3) * UNIT )) $(( $4 * 1024 ))")
    done
    out=$(qemu-io -f "$(active_fmt)" "${args[@]}" "$(domxml_active "$DOM" vda)" 2>&1) ||
        fail "qemu-io: $out"
}

snap () { must "$VMSNAP" create "$DOM" "$1" >/dev/null; }
rv () { must "$VMSNAP" revert "$DOM" "$1" >/dev/null; }

# own_ranges FMT FILE: "start end" of the data FILE itself holds.
own_ranges ()
{
    qemu-img map -U --output=json -f "$1" "$2" |
        jq -r '.[] | select(.depth == 0 and .data) | "\(.start) \(.start + .length)"'
}

# ---------------------------------------------------------------- shapes
# Each builds a chain and sets DEL to the snapshot to delete.  Units: the
# 128-unit disk; "U" is the deleted snapshot's own layer, "C" its child's.
declare -a SHAPES=() DESCS=()
shape () { SHAPES+=("$1"); DESCS+=("$2"); }

shape mid_child_smaller   "middle; U 16, C 2"
s_mid_child_smaller ()   { newdom "$1"; w 0 8; snap s0; w 16 16; snap X; w 40 2; snap s2; DEL=X; }
shape mid_child_larger    "middle; U 2, C 16"
s_mid_child_larger ()    { newdom "$1"; w 0 8; snap s0; w 16 2; snap X; w 40 16; snap s2; DEL=X; }
shape mid_overlap_full    "middle; U 16, C rewrites the same 16"
s_mid_overlap_full ()    { newdom "$1"; w 0 8; snap s0; w 16 16; snap X; w 16 16; snap s2; DEL=X; }
shape mid_overlap_part    "middle; U 16, C 12 inside U"
s_mid_overlap_part ()    { newdom "$1"; w 0 8; snap s0; w 16 16; snap X; w 20 12; snap s2; DEL=X; }
shape mid_small_in_big    "middle; U 16, C 4 inside U"
s_mid_small_in_big ()    { newdom "$1"; w 0 8; snap s0; w 16 16; snap X; w 20 4; snap s2; DEL=X; }
shape mid_big_over_small  "middle; U 4, C 32 covering U"
s_mid_big_over_small ()  { newdom "$1"; w 0 8; snap s0; w 20 4; snap X; w 8 32; snap s2; DEL=X; }
shape root_child_smaller  "root (qcow2 base); U 16, C 2"
s_root_child_smaller ()  { newdom "$1"; w 0 16; snap X; w 40 2; snap s2; DEL=X; }
shape root_child_larger   "root (qcow2 base); U 2, C 16"
s_root_child_larger ()   { newdom "$1"; w 0 2; snap X; w 40 16; snap s2; DEL=X; }
shape root_raw_smaller    "root (raw base); U 16, C 2"
s_root_raw_smaller ()    { newdom "$1" raw; w 0 16; snap X; w 40 2; snap s2; DEL=X; }
shape root_raw_larger     "root (raw base); U 2, C 16"
s_root_raw_larger ()     { newdom "$1" raw; w 0 2; snap X; w 40 16; snap s2; DEL=X; }
shape active_smaller      "parent of the active layer; U 16, active 2"
s_active_smaller ()      { newdom "$1"; w 0 8; snap s0; w 16 16; snap X; w 40 2; DEL=X; }
shape active_larger       "parent of the active layer; U 2, active 16"
s_active_larger ()       { newdom "$1"; w 0 8; snap s0; w 16 2; snap X; w 40 16; DEL=X; }
shape active_overlap      "parent of the active layer; U 16, active 12 inside U"
s_active_overlap ()      { newdom "$1"; w 0 8; snap s0; w 16 16; snap X; w 20 12; DEL=X; }
shape children_2          "two children (a branch); U 8"
s_children_2 ()          { newdom "$1"; w 0 8; snap X; w 16 4; snap s2; rv X; w 24 4; DEL=X; }
shape children_3          "three children; U 8"
s_children_3 ()          { newdom "$1"; w 0 8; snap X; w 16 4; snap s2; rv X; w 24 4; snap s3; rv X; w 32 4; DEL=X; }
shape grandkids_smaller   "C has two children; U 16, C 2"
s_grandkids_smaller ()   { newdom "$1"; w 0 8; snap s0; w 16 16; snap X; w 40 2; snap s2; w 48 2; snap s3; rv s2; w 56 2; DEL=X; }
shape grandkids_larger    "C has two children; U 2, C 16"
s_grandkids_larger ()    { newdom "$1"; w 0 8; snap s0; w 16 2; snap X; w 40 16; snap s2; w 64 2; snap s3; rv s2; w 72 2; DEL=X; }
shape deep_middle         "10-deep chain, 2 per layer, delete the 5th"
s_deep_middle ()         { local i; newdom "$1"; for (( i = 0; i < 10; i++ )); do w $(( i * 4 )) 2; snap "d$i"; done; DEL=d4; }
shape scatter_smaller     "scattered; U 64 x 256K, C 16 x 64K elsewhere"
s_scatter_smaller ()     { newdom "$1"; w 0 4; snap s0; scatter 4 64 1 256; snap X; scatter 70 16 3 64; snap s2; DEL=X; }
shape scatter_larger      "scattered; U 16 x 64K, C 64 x 256K, half over U"
s_scatter_larger ()      { newdom "$1"; w 0 4; snap s0; scatter 4 16 4 64; snap X; scatter 4 64 1 256; snap s2; DEL=X; }

[ "${#SHAPES[@]}" = 20 ] || fail "expected 20 shapes, have ${#SHAPES[@]}"

# ------------------------------------------------------------------ run
bench_header "Bytes copied by delete (qcow2-external, shut-off VM)"
echo "- size unit: $UNIT_KIB KiB (shape sizes below are in units); disk $(( VSIZE / 1048576 )) MiB"
echo
echo "| # | shape | U own | C own | commit cost | pull cost | minimum | vmsnap chose | vmsnap cost | reported | written (wchar) | vmsnap / min | always-commit | always-commit / min |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"

worst=0 worst_shape="" n_ok=0 n_bad=0 tot_v=0 tot_min=0 tot_ac=0 n_rep=0
for i in "${!SHAPES[@]}"; do
    name=${SHAPES[i]}
    log "shape $(( i + 1 )): $name"
    PAT=$(( 16 + i * 10 ))
    "s_$name" "$name"
    must "$VMSNAP" chain --json "$DOM" >"$TEST_TMP/chain.json"
    must "$VMSNAP" info --json "$DOM" "$DEL" >"$TEST_TMP/info.json"
    loc=$(jq -r '.disks[0].locator' "$TEST_TMP/info.json")
    ufmt=${loc%%:*} upath=${loc#*:}
    mapfile -t kids < <(jq -r --arg u "$upath" '.disks[0].files[] | select(.backing == $u) | "\(.format):\(.path)"' "$TEST_TMP/chain.json")
    own_ranges "$ufmt" "$upath" >"$TEST_TMP/u.ranges"
    ub=$(awk '{ s += $2 - $1 } END { print s + 0 }' "$TEST_TMP/u.ranges")
    if [ "${#kids[@]}" = 1 ]; then
        cfmt=${kids[0]%%:*} cpath=${kids[0]#*:}
        own_ranges "$cfmt" "$cpath" >"$TEST_TMP/c.ranges"
        cb=$(awk '{ s += $2 - $1 } END { print s + 0 }' "$TEST_TMP/c.ranges")
        # U's ranges minus C's (both sorted, non-overlapping within a file)
        pb=$(awk 'NR == FNR { cs[++nc] = $1; ce[nc] = $2; next }
                  { s = $1; e = $2; for (k = 1; k <= nc; k++) {
                        if (ce[k] <= s || cs[k] >= e) continue
                        if (cs[k] > s) tot += cs[k] - s
                        s = ce[k]; if (s >= e) break }
                    if (s < e) tot += e - s }
                  END { print tot + 0 }' "$TEST_TMP/c.ranges" "$TEST_TMP/u.ranges")
        min=$(( cb < pb ? cb : pb ))
        ac=$cb ac_txt=$(mib "$cb")
    else
        cb=- pb=- min=0 ac=- ac_txt="refused (${#kids[@]} children)"
    fi
    # The delete, in a subshell whose /proc/PID/io then holds what vmsnap
    # and the qemu-img it ran wrote.
    # shellcheck disable=SC2016
    ( set +e; "$VMSNAP" delete --json "$DOM" "$DEL" >"$TEST_TMP/del.json" 2>"$TEST_TMP/del.err"
      echo "rc $?" >"$TEST_TMP/del.rc"; cat "/proc/$BASHPID/io" >"$TEST_TMP/del.io" )
    [ "$(cat "$TEST_TMP/del.rc")" = "rc 0" ] || fail "delete $DEL ($name): $(cat "$TEST_TMP/del.err")"
    wrote=$(awk '/^wchar:/ { print $2 }' "$TEST_TMP/del.io")
    note=$(jq -r '.disks[0].note' "$TEST_TMP/del.json")
    rep=$(jq -r '.disks[0].bytes_copied' "$TEST_TMP/del.json")
    kept=$(jq -r '.disks[0].kept' "$TEST_TMP/del.json")
    case $note in
        committed*) dir=commit; vb=$cb ;;
        pulled*) dir=pull; vb=$pb ;;
        *) if [ "$kept" = true ]; then dir=kept; vb=0; else dir="?"; vb=$rep; fi ;;
    esac
    if [ "$min" = 0 ]; then
        if [ "$vb" = 0 ]; then r=1.00; else r="inf"; fi
    else
        r=$(ratio "$vb" "$min")
    fi
    if [ "$ac" = - ]; then acr=-; elif [ "$min" = 0 ]; then
        if [ "$ac" = 0 ]; then acr=1.00; else acr=inf; fi
    else acr=$(ratio "$ac" "$min"); fi
    if [ "$r" != inf ] && awk -v r="$r" 'BEGIN { exit !(r <= 1.05) }'; then
        n_ok=$(( n_ok + 1 ))
    else
        n_bad=$(( n_bad + 1 ))
    fi
    if [ "$r" = inf ]; then
        [ "$worst" = inf ] && worst_shape+=", $name" || worst_shape=$name
        worst=inf
    elif [ "$worst" != inf ] && awk -v r="$r" -v w="$worst" 'BEGIN { exit !(r > w) }'; then
        worst=$r worst_shape=$name
    fi
    [ "$rep" != "$vb" ] || n_rep=$(( n_rep + 1 ))
    tot_v=$(( tot_v + vb )) tot_min=$(( tot_min + min ))
    [ "$ac" = - ] || tot_ac=$(( tot_ac + ac ))
    f () { if [ "$1" = - ]; then echo -; else mib "$1"; fi; }
    echo "| $(( i + 1 )) | ${DESCS[i]} | $(mib "$ub") | $(f "$cb") | $(f "$cb") | $(f "$pb") | $(mib "$min") | $dir | $(mib "$vb") | $(mib "$rep") | $(mib "$wrote") | $r | $ac_txt | $acr |"
done
echo
echo "Sizes in MiB.  Totals over the 20 shapes: vmsnap $(mib "$tot_v") MiB, minimum $(mib "$tot_min") MiB, always-commit $(mib "$tot_ac") MiB (the shapes libvirt refuses not counted)."
echo
echo "Goal vmsnap / minimum <= 1.05: met by $n_ok of 20 shapes; worst ratio $worst ($worst_shape)."
echo
echo "The bytes_copied vmsnap reports equals the cost of the direction it chose (from the maps above) in $n_rep of 20 shapes."
bench_footer
