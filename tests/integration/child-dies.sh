#!/usr/bin/env bash
# A vmsnap killed with SIGKILL takes the tools it runs with it: a qemu-img
# left running (a commit still copying data) would go on writing the image
# while `vmsnap recover` repairs it.  A qemu-img wrapper (VMSNAP_QEMU_IMG)
# that hangs in `qemu-img create` records its pid; vmsnap create is killed
# while it hangs; the wrapper must be gone within 2 s, and recover then
# leaves the catalog and the image directory as they were.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img xmllint
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
vms_ok create "$dom" s1
before=$(ls "$img")

cat >"$TEST_TMP/hang-qemu-img" <<SH
#!/bin/sh
# qemu-img that hangs in create (its pid is the sleep's: exec)
if [ "\$1" = create ]; then echo \$\$ >"$TEST_TMP/tool.pid"; exec sleep 60; fi
exec qemu-img "\$@"
SH
chmod +x "$TEST_TMP/hang-qemu-img"
VMSNAP_QEMU_IMG=$TEST_TMP/hang-qemu-img "$VMSNAP" create "$dom" s2 >"$TEST_TMP/out" 2>"$TEST_TMP/err" &
pid=$!
for (( i = 0; i < 300; i++ )); do
    [ ! -s "$TEST_TMP/tool.pid" ] || break
    kill -0 "$pid" 2>/dev/null || { cat "$TEST_TMP/err" >&2; fail "vmsnap create ended before it ran qemu-img create"; }
    sleep 0.1
done
[ -s "$TEST_TMP/tool.pid" ] || fail "vmsnap create never ran qemu-img create"
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
# recover rolls the create back or completes it: all or nothing.
vms_ok recover "$dom"
vms_ok list --json "$dom"
names=$(jq -r '[.snapshots[].name] | join(" ")' <<<"$VMS_OUT")
case $names in
    s1)
        jq_check "$VMS_OUT" '.current == "s1"' "rolled back, but s1 is not current"
        [ "$(ls "$img")" = "$before" ] ||
            fail "rolled back, but the image directory holds $(ls "$img" | tr '\n' ' '), before: $before"
        how="rolled back: catalog and image directory as before" ;;
    "s1 s2")
        jq_check "$VMS_OUT" '.current == "s2"' "completed, but s2 is not current"
        [ "$(ls "$img" | wc -l)" = $(( $(wc -l <<<"$before") + 1 )) ] ||
            fail "completed, but the image directory holds $(ls "$img" | tr '\n' ' ') (before: $before)"
        how="completed: s2 with one new layer" ;;
    *) fail "after recover the catalog lists [$names]" ;;
esac
vms_ok check "$dom"
echo "  recover: $how; vmsnap check: no drift"
