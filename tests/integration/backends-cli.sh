#!/usr/bin/env bash
# `vmsnap backends`: the shipped backends load from the build tree; broken
# modules are reported as failed/refused with their reasons (exit 1); a
# vmsnap packaged without the optional backends reports them as not
# installed (exit 0).
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
requires jq
mk_tmpdir
: "${VMSNAP:?}" "${abs_top_builddir:?}"

# 1. From the build tree: every built backend is loaded.
out=$("$VMSNAP" backends --json) || fail "vmsnap backends exited $?"
for b in qcow2-internal qcow2-external; do
    st=$(jq -r --arg b "$b" '.[] | select(.name == $b) | .status' <<<"$out")
    [ "$st" = loaded ] || fail "$b: status '$st'"
    path=$(jq -r --arg b "$b" '.[] | select(.name == $b) | .module' <<<"$out")
    case "$path" in "$abs_top_builddir"/backends/*) ;; *) fail "$b loaded from $path" ;; esac
done
for b in lvm rbd; do
    if [ -e "$abs_top_builddir/backends/$b/$b.la" ]; then want=loaded; else want=not-installed; fi
    st=$(jq -r --arg b "$b" '.[] | select(.name == $b) | .status' <<<"$out")
    [ "$st" = "$want" ] || fail "$b: status '$st', want $want"
done
jq -e '.[] | select(.name == "qcow2-internal") | .capabilities | index("vm-internal")' <<<"$out" >/dev/null \
    || fail "qcow2-internal lacks the vm-internal capability"
out=$("$VMSNAP" backends) || fail "text output: exit $?"
grep -q '^qcow2-external *loaded' <<<"$out" || fail "text output: $out"

# 2. Broken modules next to good ones: exit 1, each with its reason.
rc=0; out=$(VMSNAP_BACKEND_DIR="$VMSNAP_TEST_MODULES" "$VMSNAP" backends) || rc=$?
[ "$rc" = 1 ] || fail "backends with broken modules exited $rc, want 1"
grep -q '^good  *loaded' <<<"$out" || fail "good module not loaded: $out"
grep -q '^badabi  *refused .*ABI 99' <<<"$out" || fail "badabi: $out"
grep -q "^noslot  *refused .*mandatory slot 'revert'" <<<"$out" || fail "noslot: $out"
grep -q '^unresolved  *load-failed .*undefined symbol' <<<"$out" || fail "unresolved: $out"

# 3. Packaged without the optional backends: a copy of the program outside
#    the build tree, only the qcow2 modules in its backend dir.
install_dir=${VMSNAP_INSTALL_BACKEND_DIR:?}
if [ -d "$install_dir" ]; then
    echo "note: $install_dir exists on this machine (vmsnap installed); skipping part 3"
else
    mkdir -p "$TEST_TMP/bin" "$TEST_TMP/backends"
    cp "$abs_top_builddir/tools/.libs/vmsnap" "$TEST_TMP/bin/vmsnap"
    cp "$abs_top_builddir"/backends/qcow2-*/.libs/qcow2-*.so "$TEST_TMP/backends/"
    out=$(LD_LIBRARY_PATH="$abs_top_builddir/.libs" VMSNAP_BACKEND_DIR="$TEST_TMP/backends" \
          "$TEST_TMP/bin/vmsnap" backends --json) || fail "packaged: exit $?"
    for b in lvm rbd; do
        st=$(jq -r --arg b "$b" '.[] | select(.name == $b) | .status' <<<"$out")
        msg=$(jq -r --arg b "$b" '.[] | select(.name == $b) | .message' <<<"$out")
        [ "$st" = not-installed ] || fail "packaged: $b status '$st'"
        [ "$msg" = "not installed (package vmsnap-backend-$b)" ] || fail "packaged: $b message '$msg'"
    done
    jq -e '.[] | select(.name == "qcow2-external") | select(.status == "loaded")' <<<"$out" >/dev/null \
        || fail "packaged: qcow2-external not loaded from $TEST_TMP/backends"
fi

# 4. Usage errors.
expect_fail 2 "takes no arguments" "$VMSNAP" backends extra
expect_fail 2 "unknown command" "$VMSNAP" frobnicate
expect_fail 2 "Unknown option" "$VMSNAP" backends --bogus
out=$("$VMSNAP" --version) && grep -q '^vmsnap ' <<<"$out" || fail "--version: $out"
out=$("$VMSNAP" plan --help) && grep -q 'Exit status' <<<"$out" || fail "plan --help: $out"
echo "backends-cli: ok"
