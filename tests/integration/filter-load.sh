#!/usr/bin/env bash
# Issue 17 item 4 ("a command loads only the backends its disks need"),
# watched with strace -f: lvm and rbd declare a disk filter (an ELF section
# the planner reads from the module file, VMSNAP_BACKEND_DISK_FILTER), so
#  - plan and create of a domain whose disks are all files do not load
#    lvm.so or rbd.so (nor liblvm2cmd, librbd, librados), and the plan still
#    lists them as "cannot" with their reasons, as their probes say;
#  - a block disk still gets lvm loaded and probed, an rbd disk rbd;
#  - --backend vda=lvm on a file disk is refused as before, with the reason;
#  - a copy of the modules stripped as Debian's dh_strip strips them (the
#    install layout, NAME.so directly in the backend dir) filters the same.
# A module's own loading is the dynamic loader's open of its .la or .so;
# the filter read opens the .so with O_NONBLOCK and maps nothing.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img strace xmllint
: "${VMSNAP:?}" "${abs_top_builddir:?}"
# strace must see vmsnap's own execve, not the libtool wrapper's tools.
[ -z "${VMSNAP_VALGRIND:-}" ] || skip_or_fail "not under the valgrind wrapper"
vmsnap_unwrap
mk_tmpdir
eng_state_here
# The configuration names no backend's settings (which would load it).
printf '[vmsnap]\n' >"$TEST_TMP/empty.conf"
export VMSNAP_CONFIG=$TEST_TMP/empty.conf

built=()
for b in lvm rbd; do
    [ -f "$abs_top_builddir/backends/$b/.libs/$b.so" ] && built+=("$b")
done
[ "${#built[@]}" -gt 0 ] || skip_or_fail "neither the lvm nor the rbd backend is built"
has_built () { [[ " ${built[*]} " == *" $1 "* ]]; }
libs_of () { case $1 in lvm) echo 'liblvm2cmd' ;; rbd) echo 'librbd|librados' ;; esac; }

# traced NAME ARGS...: run vmsnap ARGS under strace -f into $TEST_TMP/NAME.st
# (exit status in TRACED_RC, stdout in TRACED_OUT, stderr in NAME.err).
traced ()
{
    local name=$1
    shift
    TRACED_RC=0
    # LeakSanitizer cannot run under ptrace: off for the traced run only.
    TRACED_OUT=$(ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
                 strace -f -qq -s 4096 -e trace=openat,open \
                     -o "$TEST_TMP/$name.st" "$VMSNAP" "$@" 2>"$TEST_TMP/$name.err") || TRACED_RC=$?
}
traced_ok ()
{
    traced "$@"
    [ "$TRACED_RC" = 0 ] || { cat "$TEST_TMP/$1.err" >&2; fail "vmsnap ${*:2}: exit $TRACED_RC"; }
}
# loads RUN B: the opens of backend B's module by the dynamic loader and of
# its libraries in RUN (empty: not loaded).
loads ()
{
    grep -E "open(at)?\(.*(/$2(/\.libs)?/$2\.(la|so)\"|/($(libs_of "$2"))[^/\"]*\.so[^/\"]*\")" \
        "$TEST_TMP/$1.st" | grep -v ENOENT | grep -v O_NONBLOCK || true
}
# filter_reads RUN B: the filter reads of backend B's module file in RUN.
filter_reads ()
{
    grep -E "open(at)?\(.*/$2\.so\", [^)]*O_NONBLOCK" "$TEST_TMP/$1.st" | grep -v ENOENT || true
}
not_loaded ()   # RUN WHAT B...
{
    local run=$1 what=$2 b l
    shift 2
    for b in "$@"; do
        has_built "$b" || continue
        l=$(loads "$run" "$b")
        [ -z "$l" ] || fail "$what loaded $b, which cannot take its disks: $l"
        [ -n "$(filter_reads "$run" "$b")" ] ||
            fail "self-check: $what did not read $b's filter (is strace seeing the opens?)"
    done
}
# reason JSON TARGET B: backend B's candidate reason for disk TARGET.
reason ()
{
    jq -r --arg t "$2" --arg b "$3" \
        '.disks[] | select(.target == $t) | .candidates[] | select(.backend == $b) | "\(.fitness) \(.score) \(.reason)"' <<<"$1"
}
declare -A want=(
    [lvm]="cannot 0 not a block device, so not an LVM logical volume"
    [rbd]="cannot 0 not an rbd network disk"
)

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 16M
qemu-img create -q -f raw "$img/vdb.raw" 16M
dom=$TEST_TMP/files.xml
eng_mk_file_domain filterload "$dom" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"

# mk_dom FILE NAME DISK-XML: a domain with one qcow2 file disk (vda) and DISK-XML.
mk_dom ()
{
    cat >"$1" <<EOF
<domain type='kvm'>
  <name>$2</name>
  <uuid>$(cat /proc/sys/kernel/random/uuid)</uuid>
  <memory unit='KiB'>1048576</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$img/vda.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    $3
  </devices>
</domain>
EOF
}

# ------------------------------------------------ 1. file disks only
echo "file disks only:"
traced_ok plan plan --json "$dom"
not_loaded plan "plan of file disks" lvm rbd
for b in "${built[@]}"; do
    for t in vda vdb; do
        got=$(reason "$TRACED_OUT" "$t" "$b")
        [ "$got" = "${want[$b]}" ] || fail "plan: $t's $b candidate is '$got', want '${want[$b]}'"
    done
done
echo "  plan: ${built[*]} not loaded, listed as cannot with their reasons"

traced_ok create create "$dom" s1
not_loaded create "create on file disks" lvm rbd
vms_ok list --names "$dom"
grep -qx s1 <<<"$VMS_OUT" || fail "create s1 made no snapshot s1: $VMS_OUT"
echo "  create: ${built[*]} not loaded, s1 made"

# ------------------------------------------------ 2. the override
if has_built lvm; then
    traced ov plan --json --backend vda=lvm "$dom"
    [ "$TRACED_RC" != 0 ] || fail "--backend vda=lvm on a file disk was accepted"
    msg="--backend vda=lvm refused: not a block device, so not an LVM logical volume"
    grep -qF -- "$msg" <<<"$TRACED_OUT$(cat "$TEST_TMP/ov.err")" ||
        fail "--backend vda=lvm: no '$msg' in: $TRACED_OUT $(cat "$TEST_TMP/ov.err")"
    [ -n "$(loads ov lvm)" ] || fail "self-check: --backend vda=lvm did not load lvm"
    echo "  --backend vda=lvm: refused with the declared reason"
fi

# ------------------------------------------------ 3. disks they can take
# A block disk is probed only when it is a block device: a loop device
# over a file (root only).
loopdev=
if has_built lvm && [ "$(id -u)" = 0 ] && command -v losetup >/dev/null; then
    qemu-img create -q -f raw "$img/loop.raw" 16M
    loopdev=$(losetup --find --show "$img/loop.raw" 2>/dev/null) || loopdev=
    [ -z "$loopdev" ] || cleanup_fn losetup -d "$loopdev"
fi
if [ -n "$loopdev" ]; then
    mk_dom "$TEST_TMP/block.xml" filterload-block \
        "<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='$loopdev'/><target dev='vdb' bus='virtio'/></disk>"
    traced_ok block plan --json "$TEST_TMP/block.xml"
    [ -n "$(loads block lvm)" ] || fail "plan of a block disk did not load lvm"
    # Its own probe answered for the block disk (the filter lets it through).
    got=$(reason "$TRACED_OUT" vdb lvm)
    [ -n "$got" ] && [ "$got" != "${want[lvm]}" ] ||
        fail "lvm on block device $loopdev: '$got' (want its probe's own verdict)"
    not_loaded block "plan of a file and a block disk" rbd
    echo "  block disk ($loopdev): lvm loaded and probed ($got), rbd (if built) not loaded"
elif has_built lvm; then
    echo "  note: no loop device (not root, or no losetup): the block disk case is left out"
fi
if has_built rbd; then
    mk_dom "$TEST_TMP/rbd.xml" filterload-rbd \
        "<disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='rbd/filterload'><host name='127.0.0.1' port='1'/></source><target dev='vdb' bus='virtio'/></disk>"
    traced_ok rbd plan --json "$TEST_TMP/rbd.xml"
    [ -n "$(loads rbd rbd)" ] || fail "plan of an rbd disk did not load rbd"
    got=$(jq -r '.disks[] | select(.target == "vdb") | .backend' <<<"$TRACED_OUT")
    [ "$got" = rbd ] || fail "rbd disk: backend '$got', want rbd"
    not_loaded rbd "plan of a file and an rbd disk" lvm
    echo "  rbd disk: rbd loaded and chosen, lvm (if built) not loaded"
fi

# ------------------------------- 4. stripped modules, the install layout
requires strip
mkdir -p "$TEST_TMP/bin" "$TEST_TMP/backends"
cp "$abs_top_builddir/tools/.libs/vmsnap" "$TEST_TMP/bin/vmsnap"
for so in "$abs_top_builddir"/backends/*/.libs/*.so; do
    cp "$so" "$TEST_TMP/backends/"
    # What Debian's dh_strip runs on a shared object.
    strip --remove-section=.comment --remove-section=.note --strip-unneeded \
        "$TEST_TMP/backends/${so##*/}"
done
VMSNAP=$TEST_TMP/bin/vmsnap
export VMSNAP_BACKEND_DIR=$TEST_TMP/backends
traced_ok installed plan --json "$dom"
not_loaded installed "plan of file disks (stripped modules)" lvm rbd
for b in "${built[@]}"; do
    got=$(reason "$TRACED_OUT" vda "$b")
    [ "$got" = "${want[$b]}" ] || fail "stripped: vda's $b candidate is '$got', want '${want[$b]}'"
done
grep -q "$TEST_TMP/backends/qcow2-external.so" "$TEST_TMP/installed.st" ||
    fail "self-check: the copy did not load its modules from $TEST_TMP/backends"
echo "  stripped modules (dh_strip), NAME.so in the backend dir: the same"
echo "PASS"
