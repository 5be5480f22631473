#!/usr/bin/env bash
# Issue 16 item 6: an image QEMU cannot write in place is never a commit
# target, and a commit that fails never wedges the domain.
#
# Part 1, every format and subformat qemu-img creates that qcow2-external
# accepts as a base (raw; qcow2; vmdk monolithicSparse, monolithicFlat,
# streamOptimized, twoGbMaxExtentSparse, twoGbMaxExtentFlat; vdi dynamic and
# static; vpc dynamic and fixed; vhdx dynamic and fixed).  The base holds
# 2 MiB, s1's overlay 512 KiB over the base's first clusters (so a commit
# into a write-once base must overwrite an allocated cluster), s2's overlay
# 512 KiB elsewhere.  Deleting s1 would commit (the cheaper side) into the
# base: the writable ones must commit, vmdk streamOptimized must pull, and
# the base file is never written (a second hard link keeps its bytes to
# compare, even if the pull discards it).  s2 and the current disk read
# right through their locators and after a revert.
#
# Part 1b, the same choice in merge: an unnamed point (the base, kept by a
# delete while two images needed it) whose only child is the active overlay.
#
# Part 2, a commit that fails (a qemu-img wrapper fails the first commit):
#   - "No space left on device": the error says make room, a journal stays,
#     and recover (with room again) finishes;
#   - any other error: the delete goes on as a pull, in the same command;
#   - a journal whose recorded commit targets an image that became
#     write-once since (converted to streamOptimized): recover pulls.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint sha256sum
: "${VMSNAP:?}"
mk_tmpdir
KiB=1024

active () { xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" "$1"; }
active_fmt () { xmllint --xpath "string(//disk[target/@dev='vda']/driver/@type)" "$1"; }

# The contents: base A over [0, 2M), s1's overlay B over [0, 512K), s2's
# overlay C over [3M, 3.5M).
check_s1 () { img_read "$1" "$2" 0xa1 0 2M; img_read "$1" "$2" 0 2M 2M; }
check_s2 ()
{
    img_read "$1" "$2" 0xb1 0 512K
    img_read "$1" "$2" 0xa1 512K 1536K
    img_read "$1" "$2" 0 2M 1M
    img_read "$1" "$2" 0 3584K 512K
}
check_cur () { check_s2 "$1" "$2"; img_read "$1" "$2" 0xc1 3M 512K; }

# setup DIR FMT OPTS: a domain file DIR/dom.xml on base DIR/base.FMT with
# s1 and s2; prints nothing, sets BASE.
setup ()
{
    local dir=$1 fmt=$2 opts=$3
    mkdir -p "$dir"
    BASE=$dir/base.$fmt
    # shellcheck disable=SC2086
    qemu-img create -q -f "$fmt" $opts "$BASE" 4M || fail "qemu-img create $fmt $opts"
    img_write "$BASE" "$fmt" 0xa1 0 2M
    eng_mk_file_domain "wo-$(basename "$dir")" "$dir/dom.xml" "vda:$fmt:$BASE"
    export VMSNAP_STATE_DIR=$dir/state
    vms_ok create "$dir/dom.xml" s1
    img_write "$(active "$dir/dom.xml")" qcow2 0xb1 0 512K
    vms_ok create "$dir/dom.xml" s2
    img_write "$(active "$dir/dom.xml")" qcow2 0xc1 3M 512K
}

# verify DIR: s2 and the current contents, through the files and a revert.
verify ()
{
    local dom=$1/dom.xml cur
    cur=$(active "$dom")
    check_cur "$cur" "$(active_fmt "$dom")"
    ENG_KIND=file ENG_DOM=$dom eng_locator s2 vda
    check_s2 "$LOC_PATH" "$LOC_FMT"
    img_read "$LOC_PATH" "$LOC_FMT" 0 3M 512K
    vms_ok revert "$dom" s2
    check_s2 "$(active "$dom")" "$(active_fmt "$dom")"
    img_read "$(active "$dom")" "$(active_fmt "$dom")" 0 3M 512K
    vms_ok check "$dom"
}

eng_state_here
n=0
for spec in raw: qcow2: vmdk:monolithicSparse vmdk:monolithicFlat \
            vmdk:streamOptimized vmdk:twoGbMaxExtentSparse \
            vmdk:twoGbMaxExtentFlat vdi:dynamic vdi:static vpc:dynamic \
            vpc:fixed vhdx:dynamic vhdx:fixed; do
    fmt=${spec%%:*} sub=${spec#*:} opts=""
    case $fmt in
        vmdk|vpc|vhdx) opts="-o subformat=$sub" ;;
        vdi) [ "$sub" = static ] && opts="-o static=on" ;;
    esac
    dir=$TEST_TMP/p1-$fmt-${sub:-plain}
    setup "$dir" "$fmt" "$opts"
    ln "$BASE" "$dir/base.link"
    before=$(sha256sum <"$BASE")
    vms_ok delete --json "$dir/dom.xml" s1
    note=$(jq -r '.disks[0].note' <<<"$VMS_OUT")
    if [ "$sub" = streamOptimized ]; then
        [[ $note == "pulled "*"pull forced: $BASE cannot take a commit: it is a vmdk streamOptimized image"* ]] ||
            fail "$spec: delete s1 did not pull from the write-once base: $note"
        [ "$(sha256sum <"$dir/base.link")" = "$before" ] ||
            fail "$spec: the write-once base was written"
    else
        [[ $note == "committed "* ]] ||
            fail "$spec: delete s1 should commit (the cheaper side) into a writable base: $note"
        check_s2 "$BASE" "$fmt"     # the base now holds s2's point
    fi
    verify "$dir"
    n=$(( n + 1 ))
done
echo "part 1: $n formats and subformats: writable ones committed, streamOptimized pulled, data right"

# ---- part 1b: merge consolidating an unnamed point into its only child
# The base becomes an unnamed point (delete s1 while s2's chain and the
# reverted disk both need it); deleting s2 leaves the active overlay (256
# KiB over the base's first clusters) its only child, and the merge that
# follows would commit it into the base: streamOptimized must pull.
for sub in monolithicSparse streamOptimized; do
    dir=$TEST_TMP/p1b-$sub
    setup "$dir" vmdk "-o subformat=$sub"
    ln "$BASE" "$dir/base.link"
    before=$(sha256sum <"$BASE")
    vms_ok revert "$dir/dom.xml" s1
    img_write "$(active "$dir/dom.xml")" qcow2 0xd1 0 256K
    vms_ok delete --json "$dir/dom.xml" s1
    jq_check "$VMS_OUT" '.disks[0].kept == true' "$sub: delete s1 keeps the shared base"
    # s2's image goes; the base is then down to one dependent, and the
    # delete consolidates it at once (its report's then_merged).
    vms_ok delete --json "$dir/dom.xml" s2
    note=$(jq -r '.then_merged.disks[0].note' <<<"$VMS_OUT")
    if [ "$sub" = streamOptimized ]; then
        [[ $note == *"pulled $BASE into "*"pull forced: $BASE cannot take a commit"* ]] ||
            fail "merge ($sub): did not pull from the write-once base: $note"
        [ "$(sha256sum <"$dir/base.link")" = "$before" ] ||
            fail "merge ($sub): the write-once base was written"
    else
        [[ $note == *"committed "*" into $BASE"* ]] ||
            fail "merge ($sub): should commit into the writable base: $note"
    fi
    cur=$(active "$dir/dom.xml")
    img_read "$cur" "$(active_fmt "$dir/dom.xml")" 0xd1 0 256K
    img_read "$cur" "$(active_fmt "$dir/dom.xml")" 0xa1 256K 1792K
    img_read "$cur" "$(active_fmt "$dir/dom.xml")" 0 2M 2M
    vms_ok list --json "$dir/dom.xml"
    jq_check "$VMS_OUT" '(.snapshots | length) == 0 and .kept_unnamed_points == 0 and .pending == null' \
        "merge ($sub): nothing left, nothing pending"
    vms_ok check "$dir/dom.xml"
done
echo "part 1b: merge commits into a writable base and pulls from a streamOptimized one"

# ---- part 2: failing commits --------------------------------------------

# A qemu-img that fails the first `commit` it sees (once per FLAG file) with
# MESSAGE, after writing part of what the commit copies (256 KiB of the
# 512 KiB the overlay holds) with other bytes, like a half-done commit.
real_qemu_img=$(command -v qemu-img)
wrap=$TEST_TMP/qemu-img-wrap
cat >"$wrap" <<EOF
#!/usr/bin/env bash
if [ "\${1:-}" = commit ] && [ -f "\$WRAP_FLAG" ]; then
    rm -f "\$WRAP_FLAG"
    qemu-io -f "\$WRAP_FMT" -c 'write -P 0xee 0 256K' "\$WRAP_TARGET" >/dev/null
    echo "qemu-img: error while writing at byte 0: \$WRAP_MSG" >&2
    exit 1
fi
exec "$real_qemu_img" "\$@"
EOF
chmod +x "$wrap"

# (a) no space: the advice is to make room; recover finishes (a commit).
dir=$TEST_TMP/p2-enospc
setup "$dir" vmdk "-o subformat=monolithicSparse"
touch "$dir/flag"
WRAP_FLAG=$dir/flag WRAP_FMT=vmdk WRAP_TARGET=$BASE WRAP_MSG="No space left on device" \
    VMSNAP_QEMU_IMG=$wrap vms_rc delete "$dir/dom.xml" s1
[ "$VMS_RC" != 0 ] || fail "p2 enospc: delete should fail"
[[ $VMS_ERR == *"make room for about"*"then run \`vmsnap recover\`"* ]] ||
    fail "p2 enospc: the advice should be to make room: $VMS_ERR"
vms_ok recover "$dir/dom.xml"
verify "$dir"

# (b) another error: no "make room" advice; the delete pulls instead.
dir=$TEST_TMP/p2-other
setup "$dir" vmdk "-o subformat=monolithicSparse"
touch "$dir/flag"
WRAP_FLAG=$dir/flag WRAP_FMT=vmdk WRAP_TARGET=$BASE WRAP_MSG="Input/output error" \
    VMSNAP_QEMU_IMG=$wrap vms_ok delete --json "$dir/dom.xml" s1
note=$(jq -r '.disks[0].note' <<<"$VMS_OUT")
[[ $note == "pulled "*"pull after the commit into $BASE failed"*"Input/output error"* ]] ||
    fail "p2 other: a failed commit should end as a pull: $note"
[[ $VMS_ERR != *"make room"* ]] || fail "p2 other: advice about room: $VMS_ERR"
verify "$dir"

# (c) a journal that records a commit into an image that is write-once
# now (what an older vmsnap left): recover pulls instead of retrying.
dir=$TEST_TMP/p2-journal
setup "$dir" vmdk "-o subformat=monolithicSparse"
touch "$dir/flag"
WRAP_FLAG=$dir/flag WRAP_FMT=vmdk WRAP_TARGET=$BASE WRAP_MSG="No space left on device" \
    VMSNAP_QEMU_IMG=$wrap vms_rc delete "$dir/dom.xml" s1
[ "$VMS_RC" != 0 ] || fail "p2 journal: delete should fail"
# the spoiled first 256 KiB of the base is the point being removed: make the
# base a streamOptimized image holding what it holds now.
qemu-img convert -f vmdk -O vmdk -o subformat=streamOptimized "$BASE" "$dir/so.vmdk"
mv "$dir/so.vmdk" "$BASE"
vms_ok recover --json "$dir/dom.xml"
[[ $VMS_OUT == *"pull forced: $BASE cannot take a commit"* ]] ||
    fail "p2 journal: recover should pull from the write-once base: $VMS_OUT"
verify "$dir"
echo "part 2: failed commits: room advice on ENOSPC, pull otherwise, old journals recover"
