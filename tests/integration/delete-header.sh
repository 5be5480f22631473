#!/usr/bin/env bash
# A delete's metadata-only rebases (`rebase -u`) of qcow2 images are header
# writes in process (vmsnap_qcow2_set_backing, issue 17), with `qemu-img
# rebase -u` as the fallback when the writer refuses.  Offline, a domain
# XML file with one qcow2 disk: data before s1, between s1 and s2 (the
# deleted point's own layer U), between s2 and s3 (its child C) and after
# s3; then `delete s2`, three ways:
#   commit    U holds 4 MiB, C 1 MiB: C is committed into U, and C's
#             dependent (the active image) is pointed at U in process;
#   fallback  the same with the active image marked dirty (incompatible
#             bit 0): the writer refuses it, `qemu-img rebase -u` runs (and
#             QEMU repairs the image when it opens it);
#   pull      U holds 1 MiB under C's 4 MiB: C is pointed back at U in
#             process, then the copying `qemu-img rebase` runs.
# Each time: the direction is the expected one; s1, s3 and the current
# state read exactly as before (`qemu-img compare` with raw copies taken
# before); `qemu-img check` is clean on every file left; and the processes
# vmsnap started (VMSNAP_DEBUG_SPAWNS) are the maps and the one data copy,
# plus one `qemu-img rebase` in the fallback case.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint od dd
: "${VMSNAP:?}"
vmsnap_unwrap
mk_tmpdir
eng_state_here

SPAWNS=$TEST_TMP/spawns

# active: the disk's current source file.
active ()
{
    xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" "$ENG_DOM"
}

# write OFFSET_MIB LEN_MIB PATTERN: guest data into the active image.
write ()
{
    qemu-io -f qcow2 -c "write -P $3 $(( $1 << 20 )) $(( $2 << 20 ))" "$(active)" >/dev/null ||
        fail "qemu-io write into $(active)"
}

# set_dirty FILE: set the qcow2 v3 dirty bit (incompatible bit 0, byte 79).
set_dirty ()
{
    local b
    [ "$(od -An -t u4 --endian=big -j 4 -N 4 "$1" | tr -d ' ')" = 3 ] || fail "$1 is not qcow2 v3"
    b=$(od -An -t u1 -j 79 -N 1 "$1" | tr -d ' ')
    printf "\\x$(printf %02x $(( b | 1 )))" | dd of="$1" bs=1 seek=79 conv=notrunc status=none
}

# one_case NAME U_MIB C_MIB WANT(commit|pull) DIRTY(0|1)
one_case ()
{
    local name=$1 umib=$2 cmib=$3 want=$4 dirty=$5 dir=$TEST_TMP/$1 p note n_rebase n_commit n_other f
    mkdir "$dir"
    qemu-img create -q -f qcow2 "$dir/vda.qcow2" 64M
    ENG_DOM=$dir/dom.xml
    eng_mk_file_domain "dh$name" "$ENG_DOM" "vda:qcow2:$dir/vda.qcow2"
    export VMSNAP_STATE_DIR=$dir/state
    write 0 1 1
    vms_ok create "$ENG_DOM" s1
    write 8 "$umib" 2
    vms_ok create "$ENG_DOM" s2
    write 8 "$cmib" 3
    vms_ok create "$ENG_DOM" s3
    write 20 1 4
    # What each remaining point reads, before.
    for p in s1 s3; do
        eng_locator "$p" vda
        qemu-img convert -f "$LOC_FMT" -O raw "$LOC_PATH" "$dir/ref-$p.raw"
    done
    qemu-img convert -f qcow2 -O raw "$(active)" "$dir/ref-now.raw"
    [ "$dirty" = 0 ] || set_dirty "$(active)"

    rm -f -- "$SPAWNS"
    VMSNAP_DEBUG_SPAWNS=$SPAWNS vms_ok delete --json "$ENG_DOM" s2
    note=$(jq -r '[.. | objects | select(has("note")) | .note] | join(" | ")' <<<"$VMS_OUT")
    case $note in
        *"$want chosen"*) ;;
        *) fail "$name: expected '$want chosen', got: $note" ;;
    esac

    # Contents unchanged.
    for p in s1 s3; do
        eng_locator "$p" vda
        qemu-img compare -q -f "$LOC_FMT" -F raw "$LOC_PATH" "$dir/ref-$p.raw" ||
            fail "$name: $p ($LOC_PATH) no longer reads as before the delete"
    done
    qemu-img compare -q -f qcow2 -F raw "$(active)" "$dir/ref-now.raw" ||
        fail "$name: the active image no longer reads as before the delete"
    # Every image left is consistent (and the dirty one was repaired).
    for f in "$dir"/*.qcow2; do
        qemu-img check -q -f qcow2 "$f" || fail "$name: qemu-img check $f"
    done
    [ "$(od -An -t u1 -j 79 -N 1 "$(active)" | tr -d ' ')" = 0 ] ||
        fail "$name: the active image is still marked dirty or corrupt"

    # The processes: maps and the one copy (and the fallback's rebase -u).
    [ -e "$SPAWNS" ] || fail "$name: no process counted (is VMSNAP_DEBUG_SPAWNS honoured?)"
    n_rebase=$(grep -c '^qemu-img rebase$' "$SPAWNS" || true)
    n_commit=$(grep -c '^qemu-img commit$' "$SPAWNS" || true)
    n_other=$(grep -cvE '^qemu-img (rebase|commit|map)$' "$SPAWNS" || true)
    case $want,$dirty in
        commit,0) [ "$n_commit,$n_rebase" = 1,0 ] ;;
        commit,1) [ "$n_commit,$n_rebase" = 1,1 ] ;;
        pull,0)   [ "$n_commit,$n_rebase" = 0,1 ] ;;
    esac || fail "$name: processes started: $(sort "$SPAWNS" | uniq -c | tr '\n' ';')"
    [ "$n_other" = 0 ] || fail "$name: unexpected processes: $(cat "$SPAWNS")"
    [ "$(grep -c '^qemu-img map$' "$SPAWNS" || true)" -le 2 ] ||
        fail "$name: more than 2 maps: $(cat "$SPAWNS")"
    echo "delete-header: $name: $want, $(wc -l <"$SPAWNS") processes ($(sort "$SPAWNS" | uniq -c | awk '{printf "%s%s %s x%d", (NR > 1 ? ", " : ""), $2, $3, $1}'))" >&2
}

one_case commit 4 1 commit 0
one_case fallback 4 1 commit 1
one_case pull 1 4 pull 0
echo "delete-header: ok"
