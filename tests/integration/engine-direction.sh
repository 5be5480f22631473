#!/usr/bin/env bash
# Delete picks the cheaper direction.  Chains where the child holds 10x the
# data of the deleted snapshot's own layer, and the reverse, on two disks of
# one domain at once (so one delete must choose per disk):
#   root case:   base, s1, child, s2; delete s1 (the root)
#   middle case: base, s0, layer, s1, child, s2; delete s1
# The --json report must say "commit" (child into the snapshot's image) when
# the child is the smaller side and "pull" (the layer into the child) when
# the layer is, with bytes_copied within 10% of the smaller side's allocated
# data (from qemu-img map before the delete); the files must agree (after a
# commit s2 lives in the deleted snapshot's file, after a pull s2 keeps its
# file and the deleted one is gone); and every remaining point reads right,
# through its locator and by reverting to it.
# Then the shapes where the layers overlap or hold zero clusters, where the
# cheaper direction is only found with exact costs (pull = U's part that the
# child does not shadow; U's zero clusters count only where U's backing
# file reads data; commit = the child's own data, its zero clusters free):
#   overlap case (4 disks; delete s1, the child is s2):
#     vda: the child rewrites the same 16 MiB      -> pull, 0 bytes
#     vdb: the child writes 12 MiB inside U's 16   -> pull, 4 MiB
#     vdc: U zeroes 8 MiB of s0's data, + 2 MiB; child 6 MiB -> commit, 6 MiB
#     vdd: U zeroes 8 MiB nothing held, + 2 MiB; child 6 MiB -> pull, 2 MiB
#   active case (2 disks; delete s1, the child is the active image):
#     vda: the active layer writes 12 MiB inside U's 16 -> pull, 4 MiB
#     vdb: the active layer zeroes U's 8 MiB, + 1 MiB     -> pull, 0 bytes
# There bytes_copied must be exactly that, the receiving file's own data
# must have grown by exactly bytes_copied (the copied ranges are new to
# it), and what the delete wrote (wchar of vmsnap and the qemu-img it ran)
# must be bytes_copied plus at most 1 MiB per disk (metadata, journal,
# catalog).
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint
: "${VMSNAP:?}"
mk_tmpdir
eng_state_here
MiB=$(( 1 << 20 ))

# Writes: step S of disk K writes pattern 0x<S+1><K+1> over LEN MiB at the
# step's own region (16 MiB apart), so every layer holds different bytes and
# the regions of other steps must read as zeros.
declare -A LEN=()        # LEN[K.S] = MiB written by step S on disk K
region () { echo $(( $1 * 16 * MiB )); }
pattern () { printf '0x%x%x' $(( $1 + 1 )) $(( $2 + 1 )); }   # STEP K

dom='' disks=()
active () { xmllint --xpath "string(//disk[target/@dev='$1']/source/@file)" "$dom"; }
active_fmt () { xmllint --xpath "string(//disk[target/@dev='$1']/driver/@type)" "$dom"; }

# write_step S: step S on every disk.
write_step ()
{
    local k
    for k in "${!disks[@]}"; do
        img_write "$(active "${disks[k]}")" "$(active_fmt "${disks[k]}")" \
            "$(pattern "$1" "$k")" "$(region "$1")" "${LEN[$k.$1]}M"
    done
}

# check_image FILE FMT K UPTO NSTEPS: steps 0..UPTO are there, the later
# ones are zeros.
check_image ()
{
    local f=$1 fmt=$2 k=$3 upto=$4 n=$5 s
    for (( s = 0; s < n; s++ )); do
        if [ "$s" -le "$upto" ]; then
            img_read "$f" "$fmt" "$(pattern "$s" "$k")" "$(region "$s")" "${LEN[$k.$s]}M"
        else
            img_read "$f" "$fmt" 0 "$(region "$s")" "${LEN[$k.$s]}M"
        fi
    done
}

# check_all NSTEPS SNAP:UPTO...: current = last step; each snapshot through
# its locator and by reverting; ends on the last snapshot (= current).
check_all ()
{
    local n=$1 spec s upto k
    shift
    for k in "${!disks[@]}"; do
        check_image "$(active "${disks[k]}")" "$(active_fmt "${disks[k]}")" "$k" $(( n - 1 )) "$n"
    done
    for spec in "$@"; do
        s=${spec%%:*} upto=${spec#*:}
        for k in "${!disks[@]}"; do
            ENG_DOM=$dom eng_locator "$s" "${disks[k]}"
            check_image "$LOC_PATH" "$LOC_FMT" "$k" "$upto" "$n"
        done
        vms_ok revert "$dom" "$s"
        for k in "${!disks[@]}"; do
            check_image "$(active "${disks[k]}")" "$(active_fmt "${disks[k]}")" "$k" "$upto" "$n"
        done
    done
    # A check that cannot fail is no check: the current disks are not the
    # state before the last step.
    if ( check_image "$(active "${disks[0]}")" "$(active_fmt "${disks[0]}")" 0 $(( n - 2 )) "$n" ) >/dev/null 2>&1; then
        fail "the content check passes for the wrong state"
    fi
}

# no_strays DIR: every file in DIR is in `vmsnap chain`.
no_strays ()
{
    local f
    vms_ok chain --json "$dom"
    for f in "$1"/*; do
        jq -e --arg p "$f" '[.disks[].files[].path] | index($p)' <<<"$VMS_OUT" >/dev/null ||
            { ls -la "$1" >&2; fail "stray file $f"; }
    done
}

# check_direction REPORT K WANT(commit|pull) LAYER_FILE LAYER_FMT CHILD_FILE CHILD_FMT
#   LAYER_BYTES CHILD_BYTES: the report and the files agree with WANT.
check_direction ()
{
    local rep=$1 k=$2 want=$3 lf=$4 cf=$6 lb=$8 cb=$9 t small copied note said pc pp
    t=${disks[k]}
    small=$(( lb < cb ? lb : cb ))
    note=$(jq -r --arg t "$t" '.disks[] | select(.target == $t) | .note' <<<"$rep")
    copied=$(jq -r --arg t "$t" '.disks[] | select(.target == $t) | .bytes_copied' <<<"$rep")
    echo "  $t: layer $lb bytes, child $cb bytes -> $note [$copied bytes copied]"
    # The direction is the word that comes first (the note may go on to
    # say what the other direction would have cost).
    pc=${note%%commit*} pp=${note%%pull*}
    if [ "$pc" = "$note" ] && [ "$pp" = "$note" ]; then said=none
    elif [ ${#pc} -lt ${#pp} ]; then said=commit
    else said=pull; fi
    [ "$said" = "$want" ] || { echo "$rep" >&2; fail "$t: direction '$said', expected '$want': $note"; }
    [ $(( copied * 10 )) -ge $(( small * 9 )) ] && [ $(( copied * 10 )) -le $(( small * 11 )) ] ||
        { echo "$rep" >&2; fail "$t: $copied bytes copied, the smaller side is $small bytes (want within 10%)"; }
    jq_check "$rep" '.disks[] | select(.target == $t) | .kept == false' "$t: kept" --arg t "$t"
    ENG_DOM=$dom eng_locator s2 "$t"
    if [ "$want" = commit ]; then
        [ "$LOC_PATH" = "$lf" ] || fail "$t: after a commit s2 should live in $lf, not $LOC_PATH"
        [ ! -e "$cf" ] || fail "$t: after a commit $cf should be gone"
    else
        [ "$LOC_PATH" = "$cf" ] || fail "$t: after a pull s2 should keep its file $cf, not $LOC_PATH"
        [ ! -e "$lf" ] || fail "$t: after a pull $lf should be gone"
    fi
    # The receiving file now holds both sides' data.
    local got
    got=$(eng_own_bytes "$LOC_PATH" "$LOC_FMT")
    [ $(( got * 10 )) -ge $(( (lb + cb) * 9 )) ] ||
        fail "$t: $LOC_PATH holds $got bytes of its own, expected about $(( lb + cb ))"
}

# ------------------------------------------------------------ root case
# vda: base 10 MiB, child 1 MiB -> commit.  vdb: base 1 MiB, child 10 MiB -> pull.
img=$TEST_TMP/root
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f qcow2 "$img/vdb.qcow2" 64M
dom=$TEST_TMP/root.xml disks=(vda vdb)
eng_mk_file_domain dirroot "$dom" "vda:qcow2:$img/vda.qcow2" "vdb:qcow2:$img/vdb.qcow2"
LEN=([0.0]=10 [0.1]=1 [1.0]=1 [1.1]=10)
write_step 0
vms_ok create "$dom" s1
write_step 1
vms_ok create "$dom" s2
check_all 2 s1:0 s2:1
declare -A LF=() LFMT=() CF=() CFMT=() LB=() CB=()
for k in 0 1; do
    t=${disks[k]}
    ENG_DOM=$dom eng_locator s1 "$t"; LF[$k]=$LOC_PATH LFMT[$k]=$LOC_FMT
    ENG_DOM=$dom eng_locator s2 "$t"; CF[$k]=$LOC_PATH CFMT[$k]=$LOC_FMT
    LB[$k]=$(eng_own_bytes "${LF[$k]}" "${LFMT[$k]}")
    CB[$k]=$(eng_own_bytes "${CF[$k]}" "${CFMT[$k]}")
done
[ "${LB[0]}" = $(( 10 * MiB )) ] && [ "${CB[0]}" = $(( 1 * MiB )) ] ||
    fail "root case vda: the files hold ${LB[0]} and ${CB[0]} bytes, not 10 MiB and 1 MiB"
vms_ok delete --json "$dom" s1
rep=$VMS_OUT
check_direction "$rep" 0 commit "${LF[0]}" "${LFMT[0]}" "${CF[0]}" "${CFMT[0]}" "${LB[0]}" "${CB[0]}"
check_direction "$rep" 1 pull "${LF[1]}" "${LFMT[1]}" "${CF[1]}" "${CFMT[1]}" "${LB[1]}" "${CB[1]}"
for k in 0 1; do
    ENG_DOM=$dom eng_locator s2 "${disks[k]}"
    out=$(qemu-img info -U --output=json -f "$LOC_FMT" "$LOC_PATH")
    jq_check "$out" 'has("backing-filename") | not' "${disks[k]}: s2 (${LOC_PATH}) should have no backing file after its root was deleted"
done
check_all 2 s2:1
no_strays "$img"
vms_ok list --json "$dom"
jq_check "$VMS_OUT" '[.snapshots[].name] == ["s2"] and .kept_unnamed_points == 0' "root case: only s2 left"

# ---------------------------------------------------------- middle case
# vda (qcow2 base): layer 10 MiB, child 1 MiB -> commit.
# vdb (raw base):   layer 1 MiB, child 10 MiB -> pull.
img=$TEST_TMP/middle
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f raw "$img/vdb.raw" 64M
dom=$TEST_TMP/middle.xml disks=(vda vdb)
eng_mk_file_domain dirmid "$dom" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"
LEN=([0.0]=2 [0.1]=10 [0.2]=1 [1.0]=2 [1.1]=1 [1.2]=10)
write_step 0
vms_ok create "$dom" s0
write_step 1
vms_ok create "$dom" s1
write_step 2
vms_ok create "$dom" s2
check_all 3 s0:0 s1:1 s2:2
LF=() LFMT=() CF=() CFMT=() LB=() CB=()
for k in 0 1; do
    t=${disks[k]}
    ENG_DOM=$dom eng_locator s1 "$t"; LF[$k]=$LOC_PATH LFMT[$k]=$LOC_FMT
    ENG_DOM=$dom eng_locator s2 "$t"; CF[$k]=$LOC_PATH CFMT[$k]=$LOC_FMT
    LB[$k]=$(eng_own_bytes "${LF[$k]}" "${LFMT[$k]}")
    CB[$k]=$(eng_own_bytes "${CF[$k]}" "${CFMT[$k]}")
done
[ "${LB[1]}" = $(( 1 * MiB )) ] && [ "${CB[1]}" = $(( 10 * MiB )) ] ||
    fail "middle case vdb: the files hold ${LB[1]} and ${CB[1]} bytes, not 1 MiB and 10 MiB"
vms_ok delete --json "$dom" s1
rep=$VMS_OUT
check_direction "$rep" 0 commit "${LF[0]}" "${LFMT[0]}" "${CF[0]}" "${CFMT[0]}" "${LB[0]}" "${CB[0]}"
check_direction "$rep" 1 pull "${LF[1]}" "${LFMT[1]}" "${CF[1]}" "${CFMT[1]}" "${LB[1]}" "${CB[1]}"
# s2's image now sits right on s0's.
for k in 0 1; do
    ENG_DOM=$dom eng_locator s0 "${disks[k]}"; s0=$LOC_PATH
    ENG_DOM=$dom eng_locator s2 "${disks[k]}"
    out=$(qemu-img info -U --output=json -f "$LOC_FMT" "$LOC_PATH")
    jq_check "$out" '.["backing-filename"] == $b' "${disks[k]}: s2's image should be backed by s0's $s0" --arg b "$s0"
done
check_all 3 s0:0 s2:2
no_strays "$img"
vms_ok list --json "$dom"
jq_check "$VMS_OUT" '[.snapshots[].name] | sort == ["s0", "s2"]' "middle case: s0 and s2 left"

# ------------------------------------------------- exact costs: helpers

# check_ranges FILE FMT SPEC: SPEC is "PATTERN@OFF+LEN ..." in MiB, and must
# cover the whole 64 MiB disk (pattern 0: zeros).
check_ranges ()
{
    local f=$1 fmt=$2 r pat off len next=0
    for r in $3; do
        pat=${r%%@*} off=${r#*@} off=${off%%+*} len=${r#*+}
        [ "$off" = "$next" ] || fail "check_ranges: spec '$3' has a gap at $next MiB"
        img_read "$f" "$fmt" "$pat" "$(( off * MiB ))" "${len}M"
        next=$(( off + len ))
    done
    [ "$next" = 64 ] || fail "check_ranges: spec '$3' ends at $next MiB, not 64"
}

# delete_measured DOM SNAP: `vmsnap delete --json`, its report in DEL_REP
# and in DEL_WCHAR what it and the qemu-img it ran wrote (/proc/PID/io of
# the subshell that reaped them: data, qcow2 metadata, journal, catalog,
# the report).
delete_measured ()
{
    # shellcheck disable=SC2016
    ( set +e; "$VMSNAP" delete --json "$1" "$2" >"$TEST_TMP/del.json" 2>"$TEST_TMP/del.err"
      echo "$?" >"$TEST_TMP/del.rc"; cat "/proc/$BASHPID/io" >"$TEST_TMP/del.io" )
    [ "$(cat "$TEST_TMP/del.rc")" = 0 ] ||
        { cat "$TEST_TMP/del.json" "$TEST_TMP/del.err" >&2; fail "vmsnap delete $2 exited $(cat "$TEST_TMP/del.rc")"; }
    DEL_REP=$(cat "$TEST_TMP/del.json")
    DEL_WCHAR=$(awk '/^wchar:/ { print $2 }' "$TEST_TMP/del.io")
    [[ $DEL_WCHAR =~ ^[0-9]+$ ]] || fail "no wchar in /proc/PID/io: $(cat "$TEST_TMP/del.io")"
}

# note_direction NOTE: commit, pull or none (the word that comes first).
note_direction ()
{
    local pc=${1%%commit*} pp=${1%%pull*}
    if [ "$pc" = "$1" ] && [ "$pp" = "$1" ]; then echo none
    elif [ ${#pc} -lt ${#pp} ]; then echo commit
    else echo pull; fi
}

# check_exact K WANT BYTES U_FILE C_FILE C_IS(s2|active): disk K of DEL_REP
# went WANT and copied exactly BYTES; the files agree with WANT; the file
# that received the copy holds exactly BYTES more data of its own than
# before (U_OWN[K], C_OWN[K], read before the delete).
check_exact ()
{
    local k=$1 want=$2 bytes=$3 uf=$4 cf=$5 cis=$6 t note copied said recv before got now
    t=${disks[k]}
    note=$(jq -r --arg t "$t" '.disks[] | select(.target == $t) | .note' <<<"$DEL_REP")
    copied=$(jq -r --arg t "$t" '.disks[] | select(.target == $t) | .bytes_copied' <<<"$DEL_REP")
    echo "  $t: U ${U_OWN[$k]} bytes, C ${C_OWN[$k]} bytes of data -> $note [$copied bytes copied]"
    said=$(note_direction "$note")
    [ "$said" = "$want" ] || { echo "$DEL_REP" >&2; fail "$t: direction '$said', expected '$want': $note"; }
    [ "$copied" = "$bytes" ] || { echo "$DEL_REP" >&2; fail "$t: $copied bytes copied reported, expected exactly $bytes"; }
    jq_check "$DEL_REP" '.disks[] | select(.target == $t) | .kept == false' "$t: kept" --arg t "$t"
    if [ "$cis" = active ]; then now=$(active "$t"); else ENG_DOM=$dom eng_locator "$cis" "$t"; now=$LOC_PATH; fi
    if [ "$want" = commit ]; then
        [ "$now" = "$uf" ] || fail "$t: after a commit $cis should live in $uf, not $now"
        [ ! -e "$cf" ] || fail "$t: after a commit $cf should be gone"
        recv=$uf before=${U_OWN[$k]}
    else
        [ "$now" = "$cf" ] || fail "$t: after a pull $cis should keep its file $cf, not $now"
        [ ! -e "$uf" ] || fail "$t: after a pull $uf should be gone"
        recv=$cf before=${C_OWN[$k]}
    fi
    got=$(eng_own_bytes "$recv" qcow2)
    [ "$(( got - before ))" = "$bytes" ] ||
        fail "$t: $recv holds $got bytes of data, $before before the delete: it received $(( got - before )), bytes_copied says $bytes"
}

# check_wchar NDISKS: what the delete wrote is the bytes copied of all
# disks plus at most 1 MiB per disk (about 250 KiB seen).
check_wchar ()
{
    local sum
    sum=$(jq '[.disks[].bytes_copied] | add' <<<"$DEL_REP")
    echo "  the delete wrote $DEL_WCHAR bytes (wchar), $sum bytes copied reported"
    [ "$DEL_WCHAR" -ge "$sum" ] ||
        fail "the delete wrote $DEL_WCHAR bytes, less than the $sum bytes it reports copied"
    [ "$DEL_WCHAR" -le $(( sum + $1 * MiB )) ] ||
        fail "the delete wrote $DEL_WCHAR bytes, more than the $sum bytes it reports copied plus metadata"
}

# own_before: U_OWN/C_OWN, UF/CF of every disk for snapshot s1 and its
# child (C_IS: s2 or active).
declare -A U_OWN=() C_OWN=() UF=() CF=()
own_before ()
{
    local k t
    U_OWN=() C_OWN=() UF=() CF=()
    for k in "${!disks[@]}"; do
        t=${disks[k]}
        ENG_DOM=$dom eng_locator s1 "$t"; UF[$k]=$LOC_PATH
        if [ "$1" = active ]; then CF[$k]=$(active "$t"); else ENG_DOM=$dom eng_locator "$1" "$t"; CF[$k]=$LOC_PATH; fi
        U_OWN[$k]=$(eng_own_bytes "${UF[$k]}" qcow2)
        C_OWN[$k]=$(eng_own_bytes "${CF[$k]}" qcow2)
    done
}

zero_write ()
{
    local out
    out=$(qemu-io -f "$2" -c "write -z $3 $4" "$1" 2>&1) || fail "zero_write $*: $out"
    [[ $out != *failed* ]] || fail "zero_write $*: $out"
}

# --------------------------------------------------------- overlap case
img=$TEST_TMP/overlap
mkdir "$img"
for t in vda vdb vdc vdd; do qemu-img create -q -f qcow2 "$img/$t.qcow2" 64M; done
dom=$TEST_TMP/overlap.xml disks=(vda vdb vdc vdd)
eng_mk_file_domain dirovl "$dom" "vda:qcow2:$img/vda.qcow2" "vdb:qcow2:$img/vdb.qcow2" \
    "vdc:qcow2:$img/vdc.qcow2" "vdd:qcow2:$img/vdd.qcow2"
for k in 0 1 2 3; do img_write "$(active "${disks[k]}")" qcow2 "$(pattern 0 "$k")" 0 8M; done
vms_ok create "$dom" s0
img_write "$(active vda)" qcow2 "$(pattern 1 0)" 16M 16M
img_write "$(active vdb)" qcow2 "$(pattern 1 1)" 16M 16M
zero_write "$(active vdc)" qcow2 0 8M
img_write "$(active vdc)" qcow2 "$(pattern 1 2)" 16M 2M
zero_write "$(active vdd)" qcow2 40M 8M
img_write "$(active vdd)" qcow2 "$(pattern 1 3)" 16M 2M
vms_ok create "$dom" s1
img_write "$(active vda)" qcow2 "$(pattern 2 0)" 16M 16M
img_write "$(active vdb)" qcow2 "$(pattern 2 1)" 20M 12M
img_write "$(active vdc)" qcow2 "$(pattern 2 2)" 48M 6M
img_write "$(active vdd)" qcow2 "$(pattern 2 3)" 48M 6M
vms_ok create "$dom" s2
own_before s2
# The shapes are what they claim: U's zero clusters are clusters of U.
out=$(qemu-img map -U --output=json -f qcow2 "${UF[2]}")
jq_check "$out" '[.[] | select(.depth == 0 and .zero and (.data | not)) | .length] | add == 8388608' "vdc: s1 should hold 8 MiB of zero clusters"
[ "${U_OWN[0]}" = $(( 16 * MiB )) ] && [ "${C_OWN[0]}" = $(( 16 * MiB )) ] &&
    [ "${C_OWN[1]}" = $(( 12 * MiB )) ] && [ "${U_OWN[2]}" = $(( 2 * MiB )) ] ||
    fail "overlap case: the files hold ${U_OWN[*]} / ${C_OWN[*]} bytes of data"
# What every point reads (MiB ranges), before and after.
S0=([0]="$(pattern 0 0)@0+8 0@8+56" [1]="$(pattern 0 1)@0+8 0@8+56"
    [2]="$(pattern 0 2)@0+8 0@8+56" [3]="$(pattern 0 3)@0+8 0@8+56")
S2=([0]="$(pattern 0 0)@0+8 0@8+8 $(pattern 2 0)@16+16 0@32+32"
    [1]="$(pattern 0 1)@0+8 0@8+8 $(pattern 1 1)@16+4 $(pattern 2 1)@20+12 0@32+32"
    [2]="0@0+16 $(pattern 1 2)@16+2 0@18+30 $(pattern 2 2)@48+6 0@54+10"
    [3]="$(pattern 0 3)@0+8 0@8+8 $(pattern 1 3)@16+2 0@18+30 $(pattern 2 3)@48+6 0@54+10")
for k in 0 1 2 3; do check_ranges "${CF[$k]}" qcow2 "${S2[$k]}"; done
# A check that cannot fail is no check: s2 of vdb keeps s1's bytes at 16 MiB.
if ( check_ranges "${CF[1]}" qcow2 "$(pattern 0 1)@0+8 0@8+24 0@32+32" ) >/dev/null 2>&1; then
    fail "the content check passes for the wrong contents"
fi
delete_measured "$dom" s1
check_exact 0 pull 0 "${UF[0]}" "${CF[0]}" s2
check_exact 1 pull $(( 4 * MiB )) "${UF[1]}" "${CF[1]}" s2
check_exact 2 commit $(( 6 * MiB )) "${UF[2]}" "${CF[2]}" s2
check_exact 3 pull $(( 2 * MiB )) "${UF[3]}" "${CF[3]}" s2
check_wchar 4
for k in 0 1 2 3; do
    check_ranges "$(active "${disks[k]}")" qcow2 "${S2[$k]}"
    ENG_DOM=$dom eng_locator s2 "${disks[k]}"; check_ranges "$LOC_PATH" "$LOC_FMT" "${S2[$k]}"
    ENG_DOM=$dom eng_locator s0 "${disks[k]}"; check_ranges "$LOC_PATH" "$LOC_FMT" "${S0[$k]}"
done
vms_ok revert "$dom" s0
for k in 0 1 2 3; do check_ranges "$(active "${disks[k]}")" qcow2 "${S0[$k]}"; done
vms_ok revert "$dom" s2
for k in 0 1 2 3; do check_ranges "$(active "${disks[k]}")" qcow2 "${S2[$k]}"; done
no_strays "$img"
vms_ok list --json "$dom"
jq_check "$VMS_OUT" '[.snapshots[].name] | sort == ["s0", "s2"]' "overlap case: s0 and s2 left"

# ---------------------------------------------------------- active case
img=$TEST_TMP/activ
mkdir "$img"
for t in vda vdb; do qemu-img create -q -f qcow2 "$img/$t.qcow2" 64M; done
dom=$TEST_TMP/activ.xml disks=(vda vdb)
eng_mk_file_domain diract "$dom" "vda:qcow2:$img/vda.qcow2" "vdb:qcow2:$img/vdb.qcow2"
for k in 0 1; do img_write "$(active "${disks[k]}")" qcow2 "$(pattern 0 "$k")" 0 8M; done
vms_ok create "$dom" s0
img_write "$(active vda)" qcow2 "$(pattern 1 0)" 16M 16M
img_write "$(active vdb)" qcow2 "$(pattern 1 1)" 16M 8M
vms_ok create "$dom" s1
img_write "$(active vda)" qcow2 "$(pattern 2 0)" 20M 12M
zero_write "$(active vdb)" qcow2 16M 8M
img_write "$(active vdb)" qcow2 "$(pattern 2 1)" 40M 1M
own_before active
S0=([0]="$(pattern 0 0)@0+8 0@8+56" [1]="$(pattern 0 1)@0+8 0@8+56")
CUR=([0]="$(pattern 0 0)@0+8 0@8+8 $(pattern 1 0)@16+4 $(pattern 2 0)@20+12 0@32+32"
     [1]="$(pattern 0 1)@0+8 0@8+32 $(pattern 2 1)@40+1 0@41+23")
for k in 0 1; do check_ranges "${CF[$k]}" qcow2 "${CUR[$k]}"; done
delete_measured "$dom" s1
check_exact 0 pull $(( 4 * MiB )) "${UF[0]}" "${CF[0]}" active
check_exact 1 pull 0 "${UF[1]}" "${CF[1]}" active
check_wchar 2
for k in 0 1; do
    check_ranges "$(active "${disks[k]}")" qcow2 "${CUR[$k]}"
    ENG_DOM=$dom eng_locator s0 "${disks[k]}"; check_ranges "$LOC_PATH" "$LOC_FMT" "${S0[$k]}"
done
no_strays "$img"
vms_ok list --json "$dom"
jq_check "$VMS_OUT" '[.snapshots[].name] == ["s0"]' "active case: only s0 left"
vms_ok revert "$dom" s0
for k in 0 1; do check_ranges "$(active "${disks[k]}")" qcow2 "${S0[$k]}"; done
echo "engine-direction: ok"
