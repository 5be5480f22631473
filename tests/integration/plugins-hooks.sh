#!/usr/bin/env bash
# The exec-hooks plugin (plugins/exec-hooks) on a domain XML file with a
# qcow2 disk: hooks run in name order for before/after of create, revert,
# delete and merge, with argv (PHASE OPERATION DOMAIN SNAPSHOT) and a JSON
# description on stdin; no vmsnap file descriptor leaks into them; a
# failing before hook aborts with nothing changed (catalog, files, bytes);
# a hook past vmsnap.hook-timeout is killed (its whole process group); an
# after hook's failure is a warning; hooks that are not executable or have
# backup names are skipped.  Also: `vmsnap backends` is unchanged, and
# --quiesce on a domain XML file is refused before anything changes.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
requires jq qemu-img qemu-io
: "${VMSNAP:?}"
mk_tmpdir

H=$TEST_TMP/hooks LOG=$TEST_TMP/hook.log
mkdir "$H" "$TEST_TMP/img"
qemu-img create -q -f qcow2 "$TEST_TMP/img/vda.qcow2" 16M
DOM=$TEST_TMP/dom.xml
cat >"$DOM" <<EOF
<domain type='qemu'>
  <name>hookdom</name>
  <uuid>0f8e7a36-6a44-4b8e-9d47-1c8f2d3e4a51</uuid>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$TEST_TMP/img/vda.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOF
export VMSNAP_STATE_DIR=$TEST_TMP/state VMSNAP_HOOKS_DIR=$H

# Two recording hooks (run in name order), a skipped backup and a
# non-executable file.
for n in 10-first 20-second; do
    cat >"$H/$n" <<EOF
#!/bin/sh
json=\$(cat)
leaks=\$(for f in /proc/\$\$/fd/*; do readlink "\$f"; done | grep -c "^$TEST_TMP/\\(state\\|img\\)" || true)
echo "$n \$* fds=\$leaks json=\$json" >>"$LOG"
EOF
    chmod 0755 "$H/$n"
done
cp "$H/10-first" "$H/10-first~"; echo 'echo BACKUP >>'"$LOG" >>"$H/10-first~"
printf '#!/bin/sh\necho NOTEXEC >>%s\n' "$LOG" >"$H/30-notexec"; chmod 0644 "$H/30-notexec"

qemu-io -f qcow2 -c "write -P 0x11 0 64k" "$TEST_TMP/img/vda.qcow2" >/dev/null
out=$("$VMSNAP" create --json "$DOM" s1) || fail "create with hooks failed: $out"
jq -e '.plugin_messages | map(select(test("^hook .*10-first \\(before create\\): ok$"))) | length == 1' <<<"$out" >/dev/null ||
    fail "create --json does not report the before hook: $out"
mapfile -t lines <"$LOG"
[ "${#lines[@]}" = 4 ] || { cat "$LOG" >&2; fail "expected 4 hook runs for create, got ${#lines[@]}"; }
[[ ${lines[0]} == "10-first before create hookdom s1 "* ]] || fail "first run: ${lines[0]}"
[[ ${lines[1]} == "20-second before create hookdom s1 "* ]] || fail "second run: ${lines[1]}"
[[ ${lines[2]} == "10-first after create hookdom s1 "* ]] || fail "third run: ${lines[2]}"
[[ ${lines[3]} == "20-second after create hookdom s1 "* ]] || fail "fourth run: ${lines[3]}"
! grep -q 'BACKUP\|NOTEXEC' "$LOG" || fail "a backup or non-executable hook ran"
# No file descriptor of vmsnap's (its lock, the journal, images) is open in
# a hook.
for l in "${lines[@]}"; do
    [[ $l == *" fds=0 "* ]] || fail "a hook inherited vmsnap's file descriptors: $l"
done
json=${lines[0]#*json=}
jq -e '.operation == "create" and .phase == "before" and .domain == "hookdom"
       and .uuid == "0f8e7a36-6a44-4b8e-9d47-1c8f2d3e4a51" and .snapshot == "s1"
       and .state == "file" and .disks == [{"target":"vda","backend":"qcow2-external"}]' <<<"$json" >/dev/null ||
    fail "before create JSON: $json"
json=${lines[2]#*json=}
jq -e '.phase == "after" and .succeeded == true and .error == null' <<<"$json" >/dev/null ||
    fail "after create JSON: $json"
echo "ok: create ran 2 hooks before and after, in order, with argv and JSON"

qemu-io -f qcow2 -c "write -P 0x22 0 64k" "$(ls "$TEST_TMP"/img/vda.vmsnap-*.qcow2)" >/dev/null
: >"$LOG"
"$VMSNAP" revert "$DOM" s1 >/dev/null || fail "revert with hooks failed"
grep -q '^10-first before revert hookdom s1 ' "$LOG" && grep -q '^20-second after revert hookdom s1 ' "$LOG" ||
    { cat "$LOG" >&2; fail "revert did not run the hooks"; }
: >"$LOG"
"$VMSNAP" merge "$DOM" >/dev/null || fail "merge with hooks failed"
grep -q '^10-first before merge hookdom  fds=0 ' "$LOG" || { cat "$LOG" >&2; fail "merge: the snapshot argument is not empty"; }

# A failing before hook: exit status and its stderr in the error, nothing
# changed (catalog, image files, bytes).
cat >"$H/15-refuse" <<'EOF'
#!/bin/sh
[ "$2" = delete ] || exit 0
echo "deletes are not allowed now" >&2
exit 3
EOF
chmod 0755 "$H/15-refuse"
before_list=$("$VMSNAP" list --json "$DOM")
before_files=$(ls -l --time-style=+%s.%N "$TEST_TMP/img" | md5sum)
rc=0; out=$("$VMSNAP" delete "$DOM" s1 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "delete went on although a before hook failed"
[[ $out == *"delete s1 not started, nothing changed"*"15-refuse (before delete) exited 3: deletes are not allowed now"* ]] ||
    fail "the refusal does not name the hook, its status and its message: $out"
[ "$("$VMSNAP" list --json "$DOM")" = "$before_list" ] || fail "the catalog changed after a refused delete"
[ "$(ls -l --time-style=+%s.%N "$TEST_TMP/img" | md5sum)" = "$before_files" ] || fail "image files changed after a refused delete"
! ls "$VMSNAP_STATE_DIR"/*/journal* >/dev/null 2>&1 || fail "a journal was left behind"
rm "$H/15-refuse"
echo "ok: a failing before hook aborts the delete, nothing changed"

# A hook that hangs is killed with its process group after hook-timeout.
cat >"$H/16-hang" <<EOF
#!/bin/sh
sleep 300 &
echo \$! >"$TEST_TMP/hang.child"
wait
EOF
chmod 0755 "$H/16-hang"
t0=$SECONDS; rc=0
out=$("$VMSNAP" create -o vmsnap.hook-timeout=2 "$DOM" s2 2>&1) || rc=$?
[ "$rc" != 0 ] && [[ $out == *"16-hang (before create) did not finish within 2 s (vmsnap.hook-timeout) and was killed"* ]] ||
    fail "a hanging before hook: exit $rc: $out"
[ $(( SECONDS - t0 )) -lt 30 ] || fail "the hanging hook held vmsnap for $(( SECONDS - t0 )) s"
child=$(cat "$TEST_TMP/hang.child")
sleep 0.2
st=$(ps -o stat= -p "$child" 2>/dev/null || true)
[ -z "$st" ] || [[ $st == Z* ]] || { kill "$child"; fail "the hook's child $child survived the timeout (state $st)"; }
grep -qx s2 <<<"$("$VMSNAP" list --names "$DOM")" && fail "s2 exists although its before hook was killed"
rm "$H/16-hang"
echo "ok: a hanging hook is killed with its children, the create is aborted"

# An after hook that fails: a warning, the operation stands.
cat >"$H/40-after-fails" <<'EOF'
#!/bin/sh
[ "$1" = after ] || exit 0
echo "cannot notify the monitoring" >&2
exit 1
EOF
chmod 0755 "$H/40-after-fails"
rc=0; out=$("$VMSNAP" create "$DOM" s3 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "a failing after hook failed the create (exit $rc): $out"
[[ $out == *"warning: plugin exec-hooks (after create): hook $H/40-after-fails (after create) exited 1: cannot notify the monitoring"* ]] ||
    fail "no warning for the failing after hook: $out"
grep -qx s3 <<<"$("$VMSNAP" list --names "$DOM")" || fail "s3 missing"
echo "ok: a failing after hook is a warning"

# --quiesce on a domain XML file: refused, nothing created.
rc=0; out=$("$VMSNAP" create --quiesce "$DOM" s4 2>&1) || rc=$?
[ "$rc" != 0 ] && [[ $out == *"quiescing needs a running libvirt domain"* ]] || fail "--quiesce on a file: exit $rc: $out"
grep -qx s4 <<<"$("$VMSNAP" list --names "$DOM")" && fail "s4 exists"
rc=0; out=$("$VMSNAP" create --quiesce=soon "$DOM" s4 2>&1) || rc=$?
[ "$rc" = 2 ] && [[ $out == *"--quiesce=soon"* ]] || fail "--quiesce=soon: exit $rc: $out"
echo "plugins-hooks: ok"
