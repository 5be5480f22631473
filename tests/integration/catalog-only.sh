#!/usr/bin/env bash
# Issue 17 ("read once"), items 1, 3 and 4, watched with strace -f:
#  - list, list --tree, list --json, list --names and info answer from the
#    catalog alone: no process but vmsnap itself (execve), no image opened
#    (openat of a file in the image directories), no libvirt connection
#    (the domain is an XML file), no backend module loaded, at chain depth
#    1 and 4 alike; a revert loads only the backend its snapshot names;
#  - chain and list --verify do read storage (so the checks above can fail);
#  - chain and create read each layer's header in process (no qemu-img
#    info at all); a create on a domain XML file connects to no libvirt;
#  - list keeps trust.c's answer: a catalog path outside the definition's
#    directories but inside the chain's (a backing file elsewhere) is
#    accepted (storage is inspected for it), one outside both is refused.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img strace xmllint
: "${VMSNAP:?}"
# strace must see vmsnap's own execve, not the libtool wrapper's tools.
[ -z "${VMSNAP_VALGRIND:-}" ] || skip_or_fail "not under the valgrind wrapper"
vmsnap_unwrap
mk_tmpdir
eng_state_here

img=$TEST_TMP/img base=$TEST_TMP/base
mkdir "$img" "$base"
qemu-img create -q -f qcow2 "$base/base.qcow2" 16M
qemu-img create -q -f qcow2 -b "$base/base.qcow2" -F qcow2 "$img/vda.qcow2"
qemu-img create -q -f raw "$img/vdb.raw" 16M
dom=$TEST_TMP/dom.xml
eng_mk_file_domain readonce "$dom" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"

# traced NAME ARGS...: run vmsnap ARGS under strace -f into $TEST_TMP/NAME.st
# (exit status in TRACED_RC, stdout in TRACED_OUT).
traced ()
{
    local name=$1
    shift
    TRACED_RC=0
    # LeakSanitizer cannot run under ptrace: off for the traced run only
    # (the sanitizer pass checks leaks in every other run).
    TRACED_OUT=$(ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
                 strace -f -qq -s 4096 -e trace=execve,openat,open,connect \
                     -o "$TEST_TMP/$name.st" "$VMSNAP" "$@" 2>"$TEST_TMP/$name.err") || TRACED_RC=$?
}
# execs NAME: the programs NAME's run executed (one a line).
execs () { sed -n 's/^[0-9]* *execve("\([^"]*\)".*= 0$/\1/p' "$TEST_TMP/$1.st"; }
# image_opens NAME: the files under the image directories NAME's run opened.
image_opens ()
{
    grep -E "open(at)?\(.*\"($img|$base)/" "$TEST_TMP/$1.st" | grep -v ENOENT || true
}
libvirt_connects () { grep -E 'connect\(.*libvirt' "$TEST_TMP/$1.st" || true; }
# libvirt_loads NAME: libvirt's library, if NAME's run loaded it (libvmsnap
# dlopens it for libvirt domains only: libvmsnap/virt.h).
# The sanitizer build links it (Makefile.am: ASan's interceptors): nothing
# to check there but that a libvirt domain works.
libvirt_loads ()
{
    [ -z "${VMSNAP_TEST_LIBVIRT_LINKED:-}" ] || return 0
    grep -E 'open(at)?\(.*/libvirt\.so[^/"]*"' "$TEST_TMP/$1.st" | grep -v ENOENT || true
}

# catalog_only NAME ARGS...: ARGS (a list or info) starts no process, opens
# no image and connects to no libvirt.
catalog_only ()
{
    local name=$1 ex opens conn
    shift
    traced "$name" "$@"
    [ "$TRACED_RC" = 0 ] || { cat "$TEST_TMP/$name.err" >&2; fail "vmsnap $*: exit $TRACED_RC"; }
    ex=$(execs "$name")
    [ "$ex" = "$VMSNAP" ] ||
        fail "vmsnap $* started processes besides itself: $(tr '\n' ' ' <<<"$ex")"
    opens=$(image_opens "$name")
    [ -z "$opens" ] || fail "vmsnap $* opened images: $opens"
    conn=$(libvirt_connects "$name")
    [ -z "$conn" ] || fail "vmsnap $* (a domain XML file) connected to libvirt: $conn"
    conn=$(libvirt_loads "$name")
    [ -z "$conn" ] || fail "vmsnap $* (a domain XML file) loaded libvirt: $conn"
    loads=$(backend_loads "$name")
    [ -z "$loads" ] || fail "vmsnap $* loaded backends it does not use: $loads"
}

views ()   # LABEL
{
    catalog_only "list-$1" list "$dom"
    grep -q "^s1 " <<<"$TRACED_OUT" || fail "list ($1) does not show s1: $TRACED_OUT"
    catalog_only "tree-$1" list --tree "$dom"
    catalog_only "json-$1" list --json "$dom"
    jq_check "$TRACED_OUT" '.snapshots | map(.name) | index("s1") != null' "list --json ($1) lacks s1"
    catalog_only "names-$1" list --names "$dom"
    catalog_only "info-$1" info "$dom" s1
    catalog_only "infojson-$1" info --json "$dom" s1
    jq_check "$TRACED_OUT" '.name == "s1" and (.disks | length) == 2' "info --json ($1)"
    echo "  depth $1: list, list --tree/--json/--names, info, info --json: vmsnap alone, no image opened, no libvirt"
}

# backend_loads NAME: the backend modules NAME's run opened.
backend_loads ()
{
    grep -E 'open(at)?\(.*/(qcow2-external|qcow2-internal|lvm|rbd)(/\.libs/[^/"]*)?\.(so|la)"' \
        "$TEST_TMP/$1.st" | grep -v ENOENT || true
}
# The configuration names no backend's settings (which would load it).
printf '[vmsnap]\n' >"$TEST_TMP/empty.conf"
export VMSNAP_CONFIG=$TEST_TMP/empty.conf

# ------------------------------------------------ 1. catalog-only views
echo "views from the catalog:"
vms_ok create "$dom" s1
views 1
for s in s2 s3 s4; do vms_ok create "$dom" "$s"; done
views 4

# The checks can fail: chain and --verify read storage, by design.
traced chain chain "$dom"
[ "$TRACED_RC" = 0 ] || { cat "$TEST_TMP/chain.err" >&2; fail "chain: exit $TRACED_RC"; }
[ -n "$(image_opens chain)" ] || fail "self-check: chain opened no image (is strace seeing the files?)"
traced verify list --verify "$dom"
[ "$TRACED_RC" = 0 ] || { cat "$TEST_TMP/verify.err" "$TEST_TMP/verify.st" >&2; fail "list --verify: exit $TRACED_RC"; }
grep -q "^Verified: the catalog and storage agree" <<<"$TRACED_OUT" ||
    fail "list --verify does not say the catalog and storage agree: $TRACED_OUT"
[ -n "$(image_opens verify)" ] || fail "list --verify opened no image"
[ -n "$(backend_loads verify)" ] || fail "self-check: list --verify loaded no backend (it asks their list slots)"
# ... and the libvirt check can fail: a libvirt domain's command loads it.
traced virt list "vmsnap-no-such-domain-$$" --connect "test:///default"
[ -n "${VMSNAP_TEST_LIBVIRT_LINKED:-}" ] || [ -n "$(libvirt_loads virt)" ] ||
    { cat "$TEST_TMP/virt.err" >&2; fail "self-check: a libvirt domain's list did not load libvirt"; }
echo "  chain and list --verify do open images and load backends, a libvirt domain loads libvirt (the checks above can fail)"

# chain reads each file's header once, in process (vmsnap_image_read): no
# qemu-img at all, however many files it shows (before issue 17: three
# qemu-img info runs per file).
nfiles=$(jq '[.disks[].files[] | select(.path != null)] | length' <<<"$("$VMSNAP" chain --json "$dom")")
[ "$nfiles" -ge 5 ] || fail "self-check: chain shows $nfiles files (want the chain and the catalog's points)"
ninfo=$(grep -c '/qemu-img$' <<<"$(execs chain)" || true)
[ "$ninfo" = 0 ] || fail "chain ran qemu-img $ninfo times for $nfiles files (want none: headers are read in process)"
echo "  chain: no qemu-img for $nfiles files"

# ------------------------------------------ 2. a create inspects in process
# A create at chain depth 6 and 8 starts no process at all: every layer's
# header is read by vmsnap itself, once, after the lock, and each disk's
# overlay is written by vmsnap itself (before issue 17: qemu-img info per
# layer, then qemu-img create per disk; read-once.sh counts every process
# at depth 3 and 30).  A create on a domain XML file connects to no libvirt.
novl_of () { grep -cE 'open(at)?\(.*\.vmsnap-[^"/]*\.qcow2", [^)]*O_CREAT' "$TEST_TMP/$1.st" || true; }
traced create6 create "$dom" s5
[ "$TRACED_RC" = 0 ] || { cat "$TEST_TMP/create6.err" >&2; fail "create s5: exit $TRACED_RC"; }
vms_ok create "$dom" s6
traced create8 create "$dom" s7
[ "$TRACED_RC" = 0 ] || { cat "$TEST_TMP/create8.err" >&2; fail "create s7: exit $TRACED_RC"; }
[ -z "$(libvirt_connects create6)" ] || fail "create on a domain XML file connected to libvirt: $(libvirt_connects create6)"
[ -z "$(libvirt_loads create6)" ] || fail "create on a domain XML file loaded libvirt: $(libvirt_loads create6)"
o6=$(novl_of create6) o8=$(novl_of create8)
[ "$o6" = 2 ] && [ "$o8" = 2 ] ||
    fail "self-check: the trace shows $o6 and $o8 overlays created (want 2: one per disk; is strace seeing the files?)"
e6=$(execs create6) e8=$(execs create8)
[ "$e6" = "$VMSNAP" ] && [ "$e8" = "$VMSNAP" ] ||
    fail "create started processes besides itself: at depth 6: $(tr '\n' ' ' <<<"$e6"); at depth 8: $(tr '\n' ' ' <<<"$e8")"
echo "  create: no process at depth 6 or 8 (headers read and overlays written in process)"

# A revert loads the backend its snapshot names, not every one (lvm and
# rbd are not loaded when installed: their libraries are large).
traced revert revert "$dom" s2
[ "$TRACED_RC" = 0 ] || { cat "$TEST_TMP/revert.err" >&2; fail "revert s2: exit $TRACED_RC"; }
loaded=$(backend_loads revert)
grep -q "qcow2-external" <<<"$loaded" || fail "self-check: revert did not load qcow2-external: $loaded"
! grep -qE "/(lvm|rbd|qcow2-internal)/" <<<"$loaded" || fail "revert s2 (qcow2-external) loaded other backends: $loaded"
echo "  revert loads only qcow2-external"

# ------------------------------- 3. trust.c's answer, without inspecting
catalog=$VMSNAP_STATE_DIR/$(sed -n 's|.*<uuid>\(.*\)</uuid>.*|\1|p' "$dom")/catalog.xml
cp -p "$catalog" "$TEST_TMP/catalog.saved"
loc1=$(xmllint --xpath 'string(//snapshot[@name="s1"]/disk[@target="vda"]/@locator)' "$catalog")
# The base image's directory is only in vda's chain (the definition and
# the saved definitions name the overlays in $img).
sed -i "s#locator=\"$loc1\"#locator=\"qcow2:$base/base.qcow2\"#" "$catalog"
cmp -s "$catalog" "$TEST_TMP/catalog.saved" && fail "sed changed nothing in the catalog"
traced fallback list "$dom"
[ "$TRACED_RC" = 0 ] || { cat "$TEST_TMP/fallback.err" >&2; fail "list refused a locator in the chain's directory $base"; }
[ -n "$(image_opens fallback)" ] || fail "list accepted a locator in $base without inspecting the chain"
sed -i "s#locator=\"qcow2:$base/base.qcow2\"#locator=\"qcow2:$TEST_TMP/elsewhere.qcow2\"#" "$catalog"
traced outside list "$dom"
[ "$TRACED_RC" = 1 ] && grep -q "is not in a directory of the disk's images" "$TEST_TMP/outside.err" ||
    { cat "$TEST_TMP/outside.err" >&2; fail "list accepted a locator outside every directory of the disk (exit $TRACED_RC)"; }
cp -p "$TEST_TMP/catalog.saved" "$catalog"
catalog_only "restored" list "$dom"
echo "  a locator in the chain's directory: accepted after inspecting; elsewhere: refused; restored: catalog only again"

echo "catalog-only: ok"
