#!/usr/bin/env bash
# Processes per command must not depend on the chain (issue 17, "read
# once").  On domain XML files (no daemon), three cases, each built twice
# with `vmsnap create`, to depth 3 and to depth 30:
#   ext     one qcow2 disk, qcow2-external (a chain of 3 / 30 overlays);
#   mixed   a raw disk and a qcow2 disk, qcow2-external on both;
#   int     one qcow2 disk, qcow2-internal (a snapshot table of 3 / 30).
# Data is written (qemu-io, not counted) before every create, so a delete
# has something to copy.  At each depth the processes vmsnap starts are
# counted for: the last create, list, info, list --tree, chain, plan, revert
# (to the newest snapshot) and delete (of the middle one).  The test fails
# when a command starts a different number of processes at depth 3 and at
# depth 30, when list or info start any, when an external create or
# revert (an unencrypted overlay, written in process) starts any, or
# when a delete starts more than the data-copy tool plus 2 reads
# (`qemu-img map`) per disk; it prints every count and, for a failing
# command, which processes.
#
# The count: VMSNAP_DEBUG_SPAWNS=FILE makes the library append one line per
# process it starts ("qemu-img info"), before starting it (libvmsnap/error.c).
# The file is read after vmsnap has exited: no timing is involved.  The
# sources are checked first for a way to start a process that bypasses it.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint
: "${VMSNAP:?}"
# The program itself, not libtool's wrapper script (the wrapper's own
# processes are not the library's, so they are not counted either way:
# this only saves time).
vmsnap_unwrap
mk_tmpdir

# The count is only as good as its coverage: every way the library, the
# backends or the CLI start a process must be in libvmsnap/error.c, whose
# spawn functions call vmsnap_note_spawn() (a new one there must too).
spawners=$(cd "$srcdir" && grep -rnE '\b(g_spawn_[a-z_]+|g_subprocess_[a-z_]+|posix_spawnp?|v?fork|execv[pe]*|execl[pe]*|popen) *\(' \
    libvmsnap backends tools --include='*.c' --include='*.h' || true)
spawners=$(grep -v '^libvmsnap/error\.c:' <<<"$spawners" || true)
[ -z "$spawners" ] ||
    fail "processes started outside libvmsnap/error.c (not counted by VMSNAP_DEBUG_SPAWNS): $spawners"
[ "$(grep -c 'vmsnap_note_spawn (argv)' "$srcdir/libvmsnap/error.c")" -ge 2 ] ||
    fail "libvmsnap/error.c: a spawn function does not call vmsnap_note_spawn"

SPAWNS=$TEST_TMP/spawns
export VMSNAP_DEBUG_SPAWNS=$SPAWNS
DEPTHS=(3 30)
CMDS=(create list info "list --tree" chain plan revert delete)
declare -A COUNT=() WHAT=() LINES=()
FAILURES=()
bad () { FAILURES+=("$*"); }

# counted KEY ARG...: run vmsnap ARG... (it must succeed); COUNT[KEY] is the
# number of processes it started, WHAT[KEY] which ("qemu-img info x4, ...").
counted ()
{
    local key=$1 rc=0 mode
    shift
    rm -f -- "$SPAWNS"
    "$VMSNAP" "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err" || rc=$?
    [ "$rc" = 0 ] || fail "vmsnap $* exited $rc: $(cat "$TEST_TMP/err")"
    ! grep -q VMSNAP_DEBUG_SPAWNS "$TEST_TMP/err" || fail "vmsnap $*: $(cat "$TEST_TMP/err")"
    if [ -e "$SPAWNS" ]; then
        mode=$(stat -c %a -- "$SPAWNS")
        [ "$mode" = 600 ] || fail "vmsnap $*: $SPAWNS has mode $mode (want 600)"
        ! grep -vqE '^[^ /]+( .*)?$' "$SPAWNS" || fail "vmsnap $*: malformed lines in $SPAWNS: $(cat "$SPAWNS")"
        COUNT[$key]=$(wc -l <"$SPAWNS")
        LINES[$key]=$(cat -- "$SPAWNS")
        WHAT[$key]=$(sort -- "$SPAWNS" | uniq -c |
            awk '{ n = $1; $1 = ""; printf "%s%s x%d", (NR > 1 ? ", " : ""), substr($0, 2), n }')
    else
        COUNT[$key]=0 WHAT[$key]="none" LINES[$key]=""
    fi
}

# active DOMXML TARGET: the disk's source file and format ("PATH FORMAT").
active ()
{
    local f t
    f=$(xmllint --xpath "string(//disk[target/@dev='$2']/source/@file)" "$1")
    t=$(xmllint --xpath "string(//disk[target/@dev='$2']/driver/@type)" "$1")
    [ -n "$f" ] && [ -n "$t" ] || fail "no source/format for $2 in $1"
    echo "$f $t"
}

# build CASE DEPTH: the domain of CASE with DEPTH snapshots, then every
# command counted into COUNT[CASE,DEPTH,COMMAND].
build ()
{
    local c=$1 depth=$2 dir=$TEST_TMP/$1-$2 dom disks=() be=() i t f fmt mid k
    mkdir "$dir"
    dom=$dir/dom.xml
    case $c in
        ext)
            qemu-img create -q -f qcow2 "$dir/vda.qcow2" 64M
            eng_mk_file_domain "ro$c$depth" "$dom" "vda:qcow2:$dir/vda.qcow2"
            disks=(vda) ;;
        mixed)
            qemu-img create -q -f raw "$dir/vda.raw" 64M
            qemu-img create -q -f qcow2 "$dir/vdb.qcow2" 64M
            eng_mk_file_domain "ro$c$depth" "$dom" "vda:raw:$dir/vda.raw" "vdb:qcow2:$dir/vdb.qcow2"
            disks=(vda vdb) ;;
        int)
            qemu-img create -q -f qcow2 "$dir/vda.qcow2" 64M
            eng_mk_file_domain "ro$c$depth" "$dom" "vda:qcow2:$dir/vda.qcow2"
            disks=(vda) be=(--backend vda=qcow2-internal) ;;
    esac
    export VMSNAP_STATE_DIR=$dir/state
    k="$c,$depth"
    for (( i = 1; i <= depth; i++ )); do
        for t in "${disks[@]}"; do
            read -r f fmt <<<"$(active "$dom" "$t")"
            qemu-io -f "$fmt" -c "write -P $(( i % 250 + 1 )) $(( (i % 64) * 65536 )) 64k" "$f" >/dev/null ||
                fail "$k: qemu-io write into $f"
        done
        counted "$k,create" create "$dom" "s$i" "${be[@]}"
    done
    counted "$k,list" list "$dom"
    [ "$(grep -c '^s[0-9]' "$TEST_TMP/out" || true)" = "$depth" ] ||
        fail "$k: list does not show $depth snapshots: $(cat "$TEST_TMP/out")"
    mid=$(( (depth + 1) / 2 ))
    counted "$k,info" info "$dom" "s$mid"
    counted "$k,list --tree" list --tree "$dom"
    counted "$k,chain" chain "$dom"
    counted "$k,plan" plan "$dom" "${be[@]}"
    counted "$k,revert" revert "$dom" "s$depth"
    counted "$k,delete" delete "$dom" "s$mid"
    # The catalog still holds the others.
    "$VMSNAP" list --json "$dom" >"$TEST_TMP/out" 2>"$TEST_TMP/err" || fail "$k: list --json: $(cat "$TEST_TMP/err")"
    [ "$(jq '.snapshots | length' "$TEST_TMP/out")" = $(( depth - 1 )) ] ||
        fail "$k: after the delete, list --json: $(cat "$TEST_TMP/out")"
    rm -rf -- "$dir"
    echo "read-once: $c at depth $depth built and counted" >&2
}

for c in ext mixed int; do
    for d in "${DEPTHS[@]}"; do
        build "$c" "$d"
    done
done

# The counter counts: a delete of a middle external snapshot with data in
# both layers runs a data-copy tool.
[ "${COUNT[ext,3,delete]}" -ge 1 ] ||
    fail "the spawn counter saw no process for an external delete (is VMSNAP_DEBUG_SPAWNS honoured?)"

lo=${DEPTHS[0]} hi=${DEPTHS[1]}
echo "Processes started per command (VMSNAP_DEBUG_SPAWNS), depth $lo vs depth $hi:"
printf '%-6s %-12s %8s %8s  %s\n' case command "d=$lo" "d=$hi" verdict
for c in ext mixed int; do
    for cmd in "${CMDS[@]}"; do
        a=${COUNT[$c,$lo,$cmd]} b=${COUNT[$c,$hi,$cmd]} v=ok
        if [ "$a" != "$b" ]; then
            v="GROWS WITH DEPTH"
            bad "$c: '$cmd' starts $a processes at depth $lo and $b at depth $hi
      depth $lo: ${WHAT[$c,$lo,$cmd]}
      depth $hi: ${WHAT[$c,$hi,$cmd]}"
        fi
        case $c,$cmd in
            *,delete)
                # Issue 17: the data-copy tool plus at most 2 reads per
                # disk.  The metadata-only `rebase -u` is a header write in
                # process (vmsnap_qcow2_set_backing): an external delete
                # runs `qemu-img map` (1-2) and one `commit` or `rebase`.
                nd=$(case $c in mixed) echo 2 ;; *) echo 1 ;; esac)
                over=
                for d in "$lo" "$hi"; do
                    l=${LINES[$c,$d,$cmd]}
                    copies=$(grep -cE '^qemu-img (commit|rebase|snapshot)$' <<<"$l" || true)
                    others=$(grep -cvE '^(qemu-img (commit|rebase|snapshot)|qemu-img map)$' <<<"$l" || true)
                    [ -z "$l" ] && others=0
                    if [ "${COUNT[$c,$d,$cmd]}" -gt $(( 3 * nd )) ] || [ "$copies" -gt "$nd" ] || [ "$others" != 0 ]; then
                        over=1
                        bad "$c: 'delete' at depth $d starts ${COUNT[$c,$d,$cmd]} processes for $nd disk(s) (want at most one data copy and 2 maps each): ${WHAT[$c,$d,$cmd]}"
                    fi
                done
                if [ -n "$over" ]; then
                    if [ "$v" = ok ]; then v="OVER (copy + 2 reads per disk)"
                    else v="$v; OVER (copy + 2 reads per disk)"; fi
                fi ;;
            *,list|*,info)
                if [ "$a" != 0 ] || [ "$b" != 0 ]; then
                    v="$v; NOT 0 (list/info answer from the catalog)"
                    bad "$c: '$cmd' starts processes (want 0: the catalog has the answer): depth $lo: ${WHAT[$c,$lo,$cmd]}; depth $hi: ${WHAT[$c,$hi,$cmd]}"
                fi ;;
            ext,create|mixed,create|ext,revert|mixed,revert)
                if [ "$a" != 0 ] || [ "$b" != 0 ]; then
                    v="$v; NOT 0 (the overlay is written in process)"
                    bad "$c: '$cmd' starts processes (want 0: vmsnap writes an unencrypted overlay itself): depth $lo: ${WHAT[$c,$lo,$cmd]}; depth $hi: ${WHAT[$c,$hi,$cmd]}"
                fi ;;
        esac
        [ "$cmd" != delete ] || v="$v (depth $hi: ${WHAT[$c,$hi,$cmd]})"
        printf '%-6s %-12s %8s %8s  %s\n' "$c" "$cmd" "$a" "$b" "$v"
    done
done
for m in "${FAILURES[@]}"; do echo "FAIL: $m"; done
[ "${#FAILURES[@]}" = 0 ] ||
    fail "${#FAILURES[@]} process counts depend on the chain depth, are not 0, or exceed a delete's copy + 2 reads (above)"
echo "read-once: ok"
