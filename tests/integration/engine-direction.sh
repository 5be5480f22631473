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
echo "engine-direction: ok"
