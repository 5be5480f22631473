#!/usr/bin/env bash
# UEFI domains (issue 7): the NVRAM file named by <os><nvram> is captured
# with every snapshot and restored on revert.
#   - shut off: create s1 copies the NVRAM into vmsnap's state dir (0600,
#     same bytes, named in info); bytes of the NVRAM file are changed;
#     revert s1: the file is the snapshot's again (cmp); delete s1: the
#     copy is gone;
#   - a missing NVRAM file at create: a clear error naming it, nothing made;
#   - running (OVMF executing, no OS): create s2, change the firmware
#     volume header of the NVRAM file (OVMF never writes it), revert s2:
#     the domain runs again and the header is the snapshot's.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img virsh cmp
: "${VMSNAP:?}"
CODE=/usr/share/OVMF/OVMF_CODE_4M.fd VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -r "$CODE" ] && [ -r "$VARS" ] || skip_or_fail "no OVMF firmware ($CODE, $VARS): install package ovmf"
mk_tmpdir
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
libvirt_start
eng_state_here
T0=$(date +%s)

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
nv=$TEST_TMP/nv/uefi_VARS.fd
mkdir "$TEST_TMP/nv"
cp "$VARS" "$nv"
chmod 0600 "$nv"
mk_domain_xml uefi "$TEST_TMP/uefi.xml" "vda:qcow2:$img/vda.qcow2"
sed -i "s|<os>.*</os>|<os><type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>$CODE</loader><nvram>$nv</nvram></os><features><acpi/></features>|" \
    "$TEST_TMP/uefi.xml"
grep -q "<nvram>$nv</nvram>" "$TEST_TMP/uefi.xml" || fail "the test domain XML has no <nvram>"
libvirt_define_test_domain uefi "$TEST_TMP/uefi.xml"
cleanup_fn virsh -q undefine --nvram uefi
cleanup_fn virsh -q destroy uefi
uuid=$(virsh domuuid uefi | tr -d '[:space:]')
sdir=$VMSNAP_STATE_DIR/$uuid
nvfiles () { (cd "$sdir" 2>/dev/null && ls -A | grep '^nvram-' || true) | tr '\n' ' '; }
# poke FILE OFFSET BYTES...: overwrite bytes in place
poke () { local f=$1 o=$2; shift 2; printf "$(printf '\\x%s' "$@")" | dd of="$f" bs=1 seek="$o" conv=notrunc status=none; }

# ------------------------------------------------------------ shut off
cp "$nv" "$TEST_TMP/nv-s1"
vms_ok create --json uefi s1
copy=$(jq -r '.nvram // empty' <<<"$VMS_OUT")
[ -n "$copy" ] || { echo "$VMS_OUT" >&2; fail "create s1: the report names no NVRAM copy"; }
jq_check "$VMS_OUT" '.nvram_source == $n' "create s1: nvram_source is not $nv" --arg n "$nv"
[[ $copy == "$sdir"/* ]] || fail "the NVRAM copy $copy is not in the state dir"
[ "$(stat -c %a "$copy")" = 600 ] || fail "the NVRAM copy has mode $(stat -c %a "$copy")"
cmp "$copy" "$TEST_TMP/nv-s1" || fail "the NVRAM copy differs from the NVRAM file"
vms_ok info uefi s1
[[ $VMS_OUT == *"NVRAM:       $copy (of $nv)"* ]] || { echo "$VMS_OUT" >&2; fail "info s1 does not show the NVRAM copy"; }
poke "$nv" 4096 de ad be ef
poke "$nv" 0 00 11 22 33
! cmp -s "$nv" "$TEST_TMP/nv-s1" || fail "changing the NVRAM file did not change it"
vms_ok revert --json uefi s1
cmp "$nv" "$TEST_TMP/nv-s1" || fail "revert s1: the NVRAM file is not the snapshot's"
[ "$(virsh -q domstate uefi)" = "shut off" ] || fail "revert s1 started the domain"
echo "  shut off: create s1 copies the NVRAM (0600), revert s1 restores it ($(( $(date +%s) - T0 )) s)"

mv "$nv" "$nv.away"
vms_rc create uefi sx
[ "$VMS_RC" != 0 ] || fail "create with a missing NVRAM file succeeded"
[[ $VMS_ERR == *"$nv"* && $VMS_ERR == *missing* ]] || { echo "$VMS_ERR" >&2; fail "the error does not name the missing NVRAM file"; }
vms_ok list --json uefi
jq_check "$VMS_OUT" '[.snapshots[].name] == ["s1"] and .pending == null' "a refused create changed the catalog"
mv "$nv.away" "$nv"
echo "  missing NVRAM file: refused, names $nv"

vms_ok delete uefi s1
[ ! -e "$copy" ] || fail "delete s1 left the NVRAM copy $copy"
[ -z "$(nvfiles)" ] || fail "NVRAM copies left: $(nvfiles)"
echo "  delete s1: copy removed"

# ------------------------------------------------------------- running
out=$(virsh start uefi 2>&1) || fail "virsh start uefi: $out"
sleep 1
vms_ok create --json uefi s2
copy=$(jq -r '.nvram // empty' <<<"$VMS_OUT")
[ -f "$copy" ] || { echo "$VMS_OUT" >&2; fail "running create s2: no NVRAM copy"; }
[ "$(virsh -q domstate uefi)" = running ] || fail "create s2 left uefi '$(virsh -q domstate uefi)'"
head -c 64 "$copy" >"$TEST_TMP/hdr-s2"
poke "$nv" 0 00 11 22 33 44 55 66 77
[ "$(head -c 64 "$nv" | cmp -s - "$TEST_TMP/hdr-s2"; echo $?)" != 0 ] || fail "changing the header did not change it"
vms_ok revert --json uefi s2
[ "$(virsh -q domstate uefi)" = running ] || fail "revert s2 left uefi '$(virsh -q domstate uefi)'"
head -c 64 "$nv" | cmp - "$TEST_TMP/hdr-s2" || fail "revert s2 (running): the NVRAM header is not the snapshot's"
head -c 64 "$nv" | cmp -s - <(head -c 64 "$VARS") || fail "the snapshot's NVRAM header is not OVMF's"
vms_ok delete uefi s2
[ -z "$(nvfiles)" ] || fail "NVRAM copies left after delete s2: $(nvfiles)"
echo "  running: create s2, revert s2 restores the NVRAM, runs again"
echo "uefi-nvram: ok ($(( $(date +%s) - T0 )) s)"
