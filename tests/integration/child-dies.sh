#!/usr/bin/env bash
# A vmsnap killed with SIGKILL takes the tools it runs with it: a qemu-img
# left running (a commit still copying data) would go on writing the image
# while `vmsnap recover` repairs it.  A qemu-img wrapper (VMSNAP_QEMU_IMG)
# that hangs in the tool that moves data (`qemu-img commit`, or `rebase`
# for a pull) records its pid; vmsnap delete of the middle snapshot is
# killed while it hangs; the wrapper must be gone within 2 s, and recover
# then rolls the delete back or completes it, with every layer's data read
# back.  (A create used to be the victim: it ran `qemu-img create`; an
# unencrypted overlay is now written in process, so a create starts no
# tool to kill.)
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint
: "${VMSNAP:?}"
# Under valgrind the pid killed would be valgrind's wrapper script.
[ -z "${VMSNAP_VALGRIND:-}" ] || skip_or_fail "not under the valgrind wrapper"
vmsnap_unwrap
mk_tmpdir
eng_state_here
img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 16M
dom=$TEST_TMP/dom.xml
eng_mk_file_domain childdies "$dom" "vda:qcow2:$img/vda.qcow2"
# wr N: the guest writes pattern N at N MiB into the active image.
wr ()
{
    local f t
    f=$(xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" "$dom")
    t=$(xmllint --xpath "string(//disk[target/@dev='vda']/driver/@type)" "$dom")
    qemu-io -f "$t" -c "write -P $1 ${1}M 64k" "$f" >/dev/null || fail "qemu-io write into $f"
}
wr 1; vms_ok create "$dom" s1
wr 2; vms_ok create "$dom" s2
wr 3; vms_ok create "$dom" s3
wr 4
before=$(ls "$img")

cat >"$TEST_TMP/hang-qemu-img" <<SH
#!/bin/sh
# qemu-img that hangs in the first commit or rebase (its pid is the
# sleep's: exec); the rebase -u of a delete comes after its data moved.
case "\$1" in
    commit|rebase) echo \$\$ >"$TEST_TMP/tool.pid"; exec sleep 60 ;;
esac
exec qemu-img "\$@"
SH
chmod +x "$TEST_TMP/hang-qemu-img"
VMSNAP_QEMU_IMG=$TEST_TMP/hang-qemu-img "$VMSNAP" delete "$dom" s2 >"$TEST_TMP/out" 2>"$TEST_TMP/err" &
pid=$!
for (( i = 0; i < 300; i++ )); do
    [ ! -s "$TEST_TMP/tool.pid" ] || break
    kill -0 "$pid" 2>/dev/null || { cat "$TEST_TMP/err" >&2; fail "vmsnap delete ended before it ran qemu-img commit or rebase"; }
    sleep 0.1
done
[ -s "$TEST_TMP/tool.pid" ] || fail "vmsnap delete never ran qemu-img commit or rebase"
tool=$(cat "$TEST_TMP/tool.pid")
kill -0 "$tool" || fail "the hanging qemu-img ($tool) is not running"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
for (( i = 0; i < 20; i++ )); do
    kill -0 "$tool" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$tool" 2>/dev/null; then
    kill -KILL "$tool" 2>/dev/null || true
    fail "qemu-img (pid $tool) still ran 2 s after vmsnap was killed"
fi
echo "  qemu-img (pid $tool) ended with the killed vmsnap (pid $pid)"
# recover rolls the delete back or completes it: all or nothing.
vms_ok recover "$dom"
vms_ok list --json "$dom"
names=$(jq -r '[.snapshots[].name] | join(" ")' <<<"$VMS_OUT")
case $names in
    "s1 s2 s3")
        [ "$(ls "$img")" = "$before" ] ||
            fail "rolled back, but the image directory holds $(ls "$img" | tr '\n' ' '), before: $before"
        how="rolled back: catalog and image directory as before" ;;
    "s1 s3")
        [ "$(ls "$img" | wc -l)" = $(( $(wc -l <<<"$before") - 1 )) ] ||
            fail "completed, but the image directory holds $(ls "$img" | tr '\n' ' ') (before: $before)"
        how="completed: s2's layer merged, one file fewer" ;;
    *) fail "after recover the catalog lists [$names]" ;;
esac
jq_check "$VMS_OUT" '.current == "s3"' "after recover, s3 is not current"
# Every layer's data reads back through the active chain.
f=$(xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" "$dom")
for n in 1 2 3 4; do
    out=$(qemu-io -r -f qcow2 -c "read -P $n ${n}M 64k" "$f" 2>&1) ||
        fail "reading pattern $n at ${n} MiB of $f: $out"
    ! grep -q "Pattern verification failed" <<<"$out" ||
        fail "pattern $n at ${n} MiB of $f does not read back: $out"
done
vms_ok check "$dom"
echo "  recover: $how; vmsnap check: no drift"
