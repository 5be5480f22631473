#!/usr/bin/env bash
# Issue 17 item 5: an offline create of a one-disk qcow2 domain (an XML
# file) writes 4 files with fsync, in the order its crash safety needs
# (doc/architecture.md, "What must be on disk before each step"): the
# journal (the overlay's name, before the overlay exists), the journal again
# (the disk's result, before the definition names the overlay), the domain
# XML, the catalog; then the journal is removed and the state directory
# synced.  Counted with strace: every atomic write is one rename.  A change
# that adds a write, or moves the XML before the journal's second write,
# fails here; the crash tests (engine-crash.sh, the crash matrices) show the
# fewer writes are still enough.
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
strace -f -qq -o "$trace" -e trace=fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat \
    "$VMSNAP" create "$TEST_TMP/dom.xml" s2 >/dev/null ||
    { cat "$trace" >&2; fail "create s2 under strace failed"; }

# The files renamed into place, in order (their last path component).
renamed=$(sed -n 's/.*rename[a-z0-9]*(.*, *"\([^"]*\)").*= 0$/\1/p' "$trace" | sed 's|.*/||' | tr '\n' ' ')
fsyncs=$(grep -c 'fsync(' "$trace") || fsyncs=0
echo "create: files written with fsync and rename: $renamed($fsyncs fsyncs by vmsnap and qemu-img)"
[ "$renamed" = "journal journal dom.xml catalog.xml " ] ||
    { cat "$trace" >&2; fail "create wrote '$renamed', want the journal twice, the domain XML, the catalog"; }
# Two per write (the file, its directory), one for the journal's removal.
[ "$fsyncs" -le 9 ] ||
    { cat "$trace" >&2; fail "create made $fsyncs fsyncs, want at most 9"; }
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
