#!/usr/bin/env bash
# The quiesce-qga plugin with a real guest agent: a running Linux guest
# (tests/fixtures/linux-guest.sh) with the qemu-guest-agent channel and the
# host's qemu-ga inside.
#  - create --quiesce: the agent freezes (plugin message, frozen_ms in the
#    JSON report) and the guest is thawed afterwards (guest-fsfreeze-status);
#  - a crash after each journaled step of a quiesced create: whatever state
#    the guest was left in (frozen at some points: checked), `vmsnap
#    recover` thaws it and resumes it, and the snapshot exists entirely or
#    not at all;
#  - a running domain without the agent channel: --quiesce fails clearly
#    before anything changed; --quiesce=best-effort takes the snapshot in a
#    plain pause with a warning.
# The guest mounts an ext4 file system on its second disk: what the agent
# freezes (it skips 9p, tmpfs and other file systems without a device).
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/lvm-guest.sh"
. "$srcdir/tests/fixtures/linux-guest.sh"
requires jq xmllint virsh qemu-img
: "${VMSNAP:?}"
mk_tmpdir
libvirt_start
linuxg_prepare
export VMSNAP_STATE_DIR=$TEST_TMP/state
DOM=qgadom

qemu-img create -q -f qcow2 "$TEST_TMP/vda.qcow2" 32M
qemu-img create -q -f qcow2 "$TEST_TMP/vdb.qcow2" 32M
cat >"$TEST_TMP/guest.sh" <<'EOF'
/sbin/mkfs.ext4 -q -F /dev/vdb || { echo "GUEST_MKFS_FAILED"; exit 1; }
mkdir -p /mnt/q && mount -t ext4 /dev/vdb /mnt/q || { echo "GUEST_MOUNT_FAILED"; exit 1; }
echo GUEST_READY
while :; do date >>/mnt/q/clock; sleep 1; done
EOF
linuxg_domain_xml "$DOM" "$TEST_TMP/dom.xml" "$TEST_TMP/guest.sh" --agent \
    "vda:qcow2:$TEST_TMP/vda.qcow2" "vdb:qcow2:$TEST_TMP/vdb.qcow2"
linuxg_start "$DOM" "$TEST_TMP/dom.xml"
cleanup_fn virsh -q undefine "$DOM"
linuxg_wait_mark "$DOM" GUEST_READY 120

fsstatus ()
{
    local out
    out=$(timeout 30 virsh -q qemu-agent-command "$DOM" '{"execute":"guest-fsfreeze-status"}' 2>&1) ||
        fail "guest-fsfreeze-status: $out"
    jq -r '.return' <<<"$out"
}
domstate () { virsh -q domstate "$DOM" | head -1; }

[ "$(fsstatus)" = thawed ] || fail "the guest starts frozen"
out=$("$VMSNAP" create --json --quiesce=20 "$DOM" q1) || fail "create --quiesce failed: $out"
jq -e '(.plugin_messages | map(select(test("^quiesced: the guest agent froze 1 file system$"))) | length) == 1
       and .frozen_ms > 0 and .pause_ms == null or .frozen_ms > 0' <<<"$out" >/dev/null ||
    fail "create --quiesce did not report a freeze: $out"
[ "$(fsstatus)" = thawed ] || fail "the guest is left frozen after create --quiesce"
[ "$(domstate)" = running ] || fail "the domain is $(domstate) after create --quiesce"
echo "ok: quiesced create (frozen $(jq .frozen_ms <<<"$out") ms), guest thawed and running"

# Crash after every journaled step of a quiesced create.
frozen_seen=0 points=0
for (( k = 1; k <= 30; k++ )); do
    rc=0
    VMSNAP_TEST_CRASH_AFTER=$k "$VMSNAP" create --quiesce "$DOM" "c$k" >"$TEST_TMP/out" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
        grep -qx "c$k" <<<"$("$VMSNAP" list --names "$DOM")" || fail "c$k missing after a complete create"
        break
    fi
    grep -q "VMSNAP_TEST_CRASH_AFTER reached" "$TEST_TMP/out" || { cat "$TEST_TMP/out" >&2; fail "crash point $k: exit $rc"; }
    st=$(fsstatus); echo "  crash point $k: guest $st, domain $(domstate)"
    [ "$st" != frozen ] || frozen_seen=$(( frozen_seen + 1 ))
    out=$("$VMSNAP" recover "$DOM" 2>&1) || fail "recover after crash point $k: $out"
    [ "$(fsstatus)" = thawed ] || fail "crash point $k: the guest is still frozen after recover"
    [ "$(domstate)" = running ] || fail "crash point $k: the domain is $(domstate) after recover"
    "$VMSNAP" check "$DOM" >/dev/null || fail "crash point $k: drift after recover: $("$VMSNAP" check "$DOM" 2>&1)"
    points=$(( points + 1 ))
done
[ "$k" -le 30 ] || fail "the quiesced create never completed"
[ "$frozen_seen" -gt 0 ] || fail "no crash point left the guest frozen: the recovery thaw was never exercised"
echo "ok: $points crash points of a quiesced create recovered (guest frozen at $frozen_seen of them, thawed by recover)"

# A running domain without the agent channel.
virsh -q destroy "$DOM" >/dev/null 2>&1 || true
qemu-img create -q -f qcow2 "$TEST_TMP/na.qcow2" 16M
mk_domain_xml noagent "$TEST_TMP/na.xml" "vda:qcow2:$TEST_TMP/na.qcow2"
libvirt_define_test_domain noagent "$TEST_TMP/na.xml"
cleanup_fn virsh -q undefine noagent
virsh -q start noagent >/dev/null || fail "cannot start noagent"
cleanup_fn virsh -q destroy noagent
before=$(ls "$TEST_TMP")
rc=0; out=$("$VMSNAP" create --quiesce=5 noagent n1 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "create --quiesce without an agent succeeded"
[[ $out == *"cannot quiesce the guest's file systems"*"qemu-guest-agent"*"--quiesce=best-effort"* ]] ||
    fail "no clear error without an agent: $out"
[ "$(ls "$TEST_TMP")" = "$before" ] || fail "files changed after a refused quiesced create"
grep -qx n1 <<<"$("$VMSNAP" list --names noagent)" && fail "n1 exists"
[ "$(virsh -q domstate noagent | head -1)" = running ] || fail "noagent is not running after the refusal"
out=$("$VMSNAP" create --json --quiesce=best-effort noagent n2) || fail "best-effort create failed: $out"
jq -e '(.plugin_messages | map(select(test("^warning: .*--quiesce=best-effort"))) | length) == 1' <<<"$out" >/dev/null ||
    fail "best-effort: no warning: $out"
grep -qx n2 <<<"$("$VMSNAP" list --names noagent)" || fail "n2 missing"
echo "quiesce-qga: ok"
