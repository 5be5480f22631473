#!/usr/bin/env bash
# Issue 16 items 1-3: ownership from the catalog and the backing graph, and
# the central guard (doc/security.md), on domain XML files (no daemon).
#  1. Two disks whose images share a stem (p.qcow2, p.raw): overlays carry
#     the disk in their name; check is clean after creates, --repair adds
#     nothing; an overlay named like vda's but backed by vdb's image is not
#     vda's; deletes leave both disks' active images and bytes right.
#  2. A catalog record of one disk that names another disk's storage (a
#     damaged or planted catalog), for every backend's locator form
#     (qcow2-external, qcow2-internal, lvm, rbd): delete, revert and merge
#     refuse before anything is journaled, and storage is unchanged.
#  3. Two disks on one image: plan and create refuse, nothing is made,
#     also when the second disk is <readonly/>.
#  4. A 250-byte image name: the overlay name is cut to fit NAME_MAX.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint
: "${VMSNAP:?}"
mk_tmpdir
eng_state_here
ENG_KIND=file

img=$TEST_TMP/img
mkdir "$img"
# state: every image's name, size and checksum, and the catalog.
state ()
{
    (cd "$img" && for f in *; do printf '%s %s\n' "$f" "$(md5sum <"$f")"; done)
    cat "$VMSNAP_STATE_DIR"/*/catalog.xml 2>/dev/null || true
}
check_json () { vms_rc check --json "$@"; CK=$VMS_OUT; }

# ---- 1. p.qcow2 (vda) and p.raw (vdb) in one directory.
qemu-img create -q -f qcow2 "$img/p.qcow2" 16M
qemu-img create -q -f raw "$img/p.raw" 16M
img_write "$img/p.qcow2" qcow2 0x11 0 1M
img_write "$img/p.raw" raw 0x21 0 1M
dom=$TEST_TMP/p.xml
eng_mk_file_domain pdom "$dom" "vda:qcow2:$img/p.qcow2" "vdb:raw:$img/p.raw"
ENG_DOM=$dom
vms_ok create "$dom" s1
a=$(eng_active vda) b=$(eng_active vdb)
[[ "$(basename "$a")" == p.vmsnap-vda-*.qcow2 ]] || fail "vda's overlay name has no disk part: $a"
[[ "$(basename "$b")" == p.vmsnap-vdb-*.qcow2 ]] || fail "vdb's overlay name has no disk part: $b"
img_write "$a" qcow2 0x12 0 1M
img_write "$b" qcow2 0x22 0 1M
vms_ok create "$dom" s2
check_json "$dom"
[ "$VMS_RC" = 0 ] && jq -e '.differences == []' >/dev/null <<<"$CK" ||
    fail "check after two creates on disks sharing a stem: rc $VMS_RC: $CK"
before=$(state)
check_json --repair "$dom"
[ "$VMS_RC" = 0 ] && jq -e '.changes == []' >/dev/null <<<"$CK" || fail "--repair changed something: $CK"
[ "$(state)" = "$before" ] || fail "check --repair changed the catalog or storage"
# An overlay named as vda's, but on vdb's image: its name does not make it
# vda's (nor vdb's, whose name it does not carry).
qemu-img create -q -f qcow2 -F qcow2 -b "$(eng_active vdb)" "$img/p.vmsnap-vda-0badf00d.qcow2"
check_json "$dom"
[ "$VMS_RC" = 0 ] && jq -e '.differences == []' >/dev/null <<<"$CK" ||
    fail "an overlay named like vda's on vdb's image was taken for vda's: $CK"
rm -- "$img/p.vmsnap-vda-0badf00d.qcow2"
# An interrupted create's overlay of vda (its name, on vda's image) is still found.
qemu-img create -q -f qcow2 -F qcow2 -b "$(eng_active vda)" "$img/p.vmsnap-vda-0badcafe.qcow2"
check_json "$dom"
jq -e '[.differences[] | select(.kind == "not-in-catalog" and .disk == "vda" and (.storage | endswith("p.vmsnap-vda-0badcafe.qcow2")))] | length == 1' \
    >/dev/null <<<"$CK" || fail "vda's unreferenced overlay not found: $CK"
rm -- "$img/p.vmsnap-vda-0badcafe.qcow2"
vms_ok delete "$dom" s1
vms_ok delete "$dom" s2
img_read "$(eng_active vda)" qcow2 0x12 0 1M
img_read "$(eng_active vdb)" "$(eng_active_fmt vdb)" 0x22 0 1M
for f in "$(eng_active vda)" "$(eng_active vdb)"; do [ -f "$f" ] || fail "active image $f is gone"; done

# ---- 2. A record of vda that names vdb's storage, in every locator form.
vms_ok create "$dom" s3
cat_file=$(echo "$VMSNAP_STATE_DIR"/*/catalog.xml)
vdb_act=$(eng_active vdb)
# plant BACKEND LOCATOR: a snapshot "evil" whose only record is vda's.
plant ()
{
    sed -i "s|</vmsnap-catalog>|  <snapshot id=\"99\" name=\"evil\" created=\"1\"><disk target=\"vda\" backend=\"$1\" locator=\"$2\"/></snapshot>\n</vmsnap-catalog>|" "$cat_file"
}
cp -- "$cat_file" "$TEST_TMP/catalog.good"
for rec in "qcow2-external qcow2:$vdb_act" "qcow2-internal qcow2:$vdb_act#s1"; do
    cp -- "$TEST_TMP/catalog.good" "$cat_file"
    # shellcheck disable=SC2086
    plant $rec
    before=$(state)
    for op in "delete $dom evil" "revert $dom evil" "merge $dom"; do
        # shellcheck disable=SC2086
        vms_rc $op
        [ "$VMS_RC" != 0 ] && grep -q "vdb" <<<"$VMS_ERR" && grep -qi "nothing was changed\|refus" <<<"$VMS_ERR" ||
            fail "vmsnap $op with a record naming vdb's image ($rec): rc $VMS_RC: $VMS_ERR"
        [ "$(state)" = "$before" ] || fail "vmsnap $op ($rec) changed storage or the catalog"
        [ ! -e "$VMSNAP_STATE_DIR"/*/journal ] || fail "vmsnap $op ($rec) left a journal"
    done
done
cp -- "$TEST_TMP/catalog.good" "$cat_file"
img_read "$vdb_act" qcow2 0x22 0 1M

# The same for LVM and RBD disks (the core refuses before any backend is
# called, so no LVM or Ceph is needed to prove it): vdb is an LV, vdc an
# RBD image; records of vda name them.
dom2=$TEST_TMP/q.xml
qemu-img create -q -f qcow2 "$img/q.qcow2" 16M
cat >"$dom2" <<EOF
<domain type='qemu'>
  <name>qdom</name><uuid>$(cat /proc/sys/kernel/random/uuid)</uuid>
  <memory unit='MiB'>128</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$img/q.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='block' device='disk'><driver name='qemu' type='raw'/>
      <source dev='/dev/vmsnapguardvg/data'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='rbd' name='rbd/guarded'><host name='127.0.0.1' port='6789'/></source>
      <target dev='vdc' bus='virtio'/></disk>
  </devices>
</domain>
EOF
mkdir -p "$VMSNAP_STATE_DIR"
uuid2=$(sed -n 's|.*<uuid>\(.*\)</uuid>.*|\1|p' "$dom2")
mkdir -m 0700 "$VMSNAP_STATE_DIR/$uuid2"
for rec in "lvm lvm:vmsnapguardvg/data" "rbd rbd:rbd/guarded@s1" "rbd rbd:rbd/guarded"; do
    cat >"$VMSNAP_STATE_DIR/$uuid2/catalog.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<vmsnap-catalog version="1" domain-uuid="$uuid2" domain-name="qdom" next-id="100">
  <snapshot id="99" name="evil" created="1"><disk target="vda" backend="${rec%% *}" locator="${rec#* }"/></snapshot>
</vmsnap-catalog>
EOF
    chmod 0600 "$VMSNAP_STATE_DIR/$uuid2/catalog.xml"
    vms_rc delete "$dom2" evil
    [ "$VMS_RC" != 0 ] && grep -Eq "(vdb|vdc)" <<<"$VMS_ERR" ||
        fail "delete of a vda record naming another disk's storage ($rec): rc $VMS_RC: $VMS_ERR"
    [ ! -e "$VMSNAP_STATE_DIR/$uuid2/journal" ] || fail "($rec) left a journal"
done

# ---- 3. Two disks on one image.
qemu-img create -q -f qcow2 "$img/shared.qcow2" 16M
dom3=$TEST_TMP/s.xml
eng_mk_file_domain sdom "$dom3" "vda:qcow2:$img/shared.qcow2" "vdb:qcow2:$img/shared.qcow2"
before=$(ls -l "$img")
vms_rc plan "$dom3"
[ "$VMS_RC" != 0 ] && grep -q "also the active image of disk vdb" <<<"$VMS_OUT$VMS_ERR" ||
    fail "plan of two disks on one image: rc $VMS_RC: $VMS_OUT $VMS_ERR"
vms_rc create "$dom3" x
[ "$VMS_RC" != 0 ] && grep -q "give each disk its own image" <<<"$VMS_ERR" ||
    fail "create on two disks sharing one image: rc $VMS_RC: $VMS_ERR"
[ "$(ls -l "$img")" = "$before" ] || fail "a refused create changed the image directory"
# A read-only second disk on it does not make it vda's alone: a snapshot
# of vda would freeze what vdb reads, and a delete would write under it.
sed -i "s|<target dev='vdb' bus='virtio'/>|&<readonly/>|" "$dom3"
grep -q '<readonly/>' "$dom3" || fail "could not make vdb read-only"
vms_rc create "$dom3" x
[ "$VMS_RC" != 0 ] && grep -q "vda: its image .* disk vdb" <<<"$VMS_ERR" ||
    fail "create with a read-only second disk on vda's image: rc $VMS_RC: $VMS_ERR"
[ "$(ls -l "$img")" = "$before" ] || fail "a refused create changed the image directory"

# ---- 4. A 250-byte image name.
long=$(printf 'L%.0s' $(seq 1 244)).qcow2
qemu-img create -q -f qcow2 "$img/$long" 16M
dom4=$TEST_TMP/l.xml
eng_mk_file_domain ldom "$dom4" "vda:qcow2:$img/$long"
vms_ok create "$dom4" s1
ENG_DOM=$dom4
act=$(eng_active vda)
[ "$(basename "$act" | wc -c)" -le 256 ] || fail "overlay name too long: $act"
[[ "$(basename "$act")" == *.vmsnap-vda-*.qcow2 ]] || fail "overlay of the long name: $act"
vms_ok create "$dom4" s2
vms_ok delete "$dom4" s1
echo "guard: ok"
