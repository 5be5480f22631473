#!/usr/bin/env bash
# Issue 17 item 5: an offline create of a one-disk qcow2 domain (an XML
# file) writes 4 files with fsync, in the order its crash safety needs
# (doc/architecture.md, "What must be on disk before each step"): the
# journal (the overlay's name, before the overlay exists), the journal again
# (the disk's result, before the definition names the overlay), the domain
# XML, the catalog; then the journal is removed and the state directory
# synced.  Counted with strace: every atomic write is one rename.  The
# overlay (written in process: no qemu-img) is made durable, its bytes
# (fdatasync) and its name (fsync of its directory), before the journal's
# second write, which lets the definition name it.  A change that adds a
# write, drops the overlay's syncs or moves them after the journal's second
# write, or moves the XML before it, fails here; the crash tests
# (engine-crash.sh, the crash matrices) show the fewer writes are still
# enough.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires strace qemu-img jq
: "${VMSNAP:?}"
mk_tmpdir

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
eng_mk_file_domain syncdom "$TEST_TMP/dom.xml" "vda:qcow2:$img/vda.qcow2"
export VMSNAP_STATE_DIR=$TEST_TMP/state
ENG_ERRFILE=$TEST_TMP/stderr
"$VMSNAP" create "$TEST_TMP/dom.xml" s1 >/dev/null ||
    fail "create s1 failed"

# The libtool wrapper runs the real program with -f: children included.
trace=$TEST_TMP/trace
# LeakSanitizer cannot run under ptrace: off for the traced run only.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
strace -f -qq -y -o "$trace" -e trace=fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,execve \
    "$VMSNAP" create "$TEST_TMP/dom.xml" s2 >/dev/null ||
    { cat "$trace" >&2; fail "create s2 under strace failed"; }

# The files renamed into place, in order (their last path component).
renamed=$(sed -n 's/.*rename[a-z0-9]*(.*, *"\([^"]*\)").*= 0$/\1/p' "$trace" | sed 's|.*/||' | tr '\n' ' ')
fsyncs=$(grep -cE '(fsync|fdatasync)\(' "$trace") || fsyncs=0
echo "create: files written with fsync and rename: $renamed($fsyncs fsyncs and fdatasyncs)"
[ "$renamed" = "journal journal dom.xml catalog.xml " ] ||
    { cat "$trace" >&2; fail "create wrote '$renamed', want the journal twice, the domain XML, the catalog"; }
# Two per write (the file, its directory), one for the journal's removal,
# two for the overlay (its bytes, its directory entry).
[ "$fsyncs" -le 11 ] ||
    { cat "$trace" >&2; fail "create made $fsyncs fsyncs and fdatasyncs, want at most 11"; }
# Once the program runs it starts nothing (the libtool wrapper's own
# processes come before it): the overlay is written in process.
last_exec=$(grep -E 'execve\(' "$trace" | tail -n 1 | sed 's/^[0-9]* *execve("\([^"]*\)".*/\1/')
case $last_exec in
    */vmsnap|*/lt-vmsnap) ;;
    *) cat "$trace" >&2; fail "create started '$last_exec' (the overlay is written in process: no process at all)" ;;
esac
# The overlay's bytes, then its directory, then the journal's second write.
n_data=$(grep -nE "fdatasync\([0-9]+<$img/[^>]*\.vmsnap-vda-[0-9a-f]{8}\.qcow2>\) += 0" "$trace" | head -n 1 | cut -d: -f1)
n_dir=$(grep -nE "fsync\([0-9]+<$img>\) += 0" "$trace" | head -n 1 | cut -d: -f1)
n_j2=$(grep -nE 'rename[a-z0-9]*\(.*"journal"\) += 0' "$trace" | sed -n 2p | cut -d: -f1)
[ -n "$n_data" ] && [ -n "$n_dir" ] && [ -n "$n_j2" ] &&
    [ "$n_data" -lt "$n_dir" ] && [ "$n_dir" -lt "$n_j2" ] ||
    { cat "$trace" >&2; fail "the overlay's fdatasync (line ${n_data:-none}) and its directory's fsync (${n_dir:-none}) must come before the journal's second write (${n_j2:-none})"; }
echo "create: no process started (last exec: $last_exec), overlay synced at trace line $n_data, its directory at $n_dir, the journal's second write at $n_j2"
# The journal is removed after the catalog is in place, then its directory
# synced.
tail_ops=$(grep -E 'rename|unlink|fsync\(' "$trace" | tail -n 3 | sed 's/^[0-9]* *//; s/(.*//' | tr '\n' ' ')
[ "$tail_ops" = "fsync unlink fsync " ] ||
    { cat "$trace" >&2; fail "the create's last steps were '$tail_ops', want the catalog's directory sync, the journal's removal and a sync"; }
[ ! -e "$VMSNAP_STATE_DIR"/*/journal ] || fail "the journal is still there"
vms_ok list --json "$TEST_TMP/dom.xml"
jq_check "$VMS_OUT" '[.snapshots[].name] == ["s1", "s2"] and .current == "s2"' \
    "list after the traced create"
echo "engine-syncs: ok"
