#!/usr/bin/env bash
# vmsnap check on a shut-off domain (a domain XML file): vda on
# qcow2-external, vdb on qcow2-internal.  A domain vmsnap never touched is
# clean and nothing is created; three snapshots are clean; then drift is
# made behind vmsnap's back (qemu-img snapshot -d / -c on vdb, a layer file
# of vda deleted, a backing file changed with qemu-img rebase -u) and each
# difference is reported with its kind, disk, snapshot and file, without
# changing anything; --repair corrects the catalog (storage untouched,
# checked by listing the image directory and the snapshot tables) and a
# second check is clean; the catalog deleted, --repair rebuilds it from
# storage, and reverts to the rebuilt snapshots give the right bytes.  Then
# the same rebuild on a running libvirt domain.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint
: "${VMSNAP:?}"
mk_tmpdir

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 16M
qemu-img create -q -f qcow2 "$img/vdb.qcow2" 16M
eng_mk_file_domain ckdom "$TEST_TMP/ckdom.xml" "vda:qcow2:$img/vda.qcow2" "vdb:qcow2:$img/vdb.qcow2"
ENG_DOM=$TEST_TMP/ckdom.xml ENG_KIND=file ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
VMSNAP_STATE_DIR=$TEST_TMP/state
eng_init
dom=$ENG_DOM

# check_rc WANT ARGS...: vmsnap check --json; CK holds the report.
check_rc ()
{
    local want=$1
    shift
    vms_rc check --json "$@" "$dom"
    CK=$VMS_OUT
    [ "$VMS_RC" = "$want" ] ||
        { printf '%s\n' "$VMS_OUT" "$VMS_ERR" >&2; fail "vmsnap check $* exited $VMS_RC, want $want"; }
}
ndiff () { jq '.differences | length' <<<"$CK"; }
# has KIND DISK SNAPSHOT-or-null STORAGE-SUBSTRING
has ()
{
    jq_check "$CK" '[.differences[] | select(.kind == $k and .disk == $d
           and ((.snapshot // "null") == $s) and (.storage | contains($f))
           and (.fix | length > 20))] | length == 1' \
        "check reports $1 on disk $2 snapshot $3 ($4)" --arg k "$1" --arg d "$2" --arg s "$3" --arg f "$4"
}
tags () { qemu-img info -U --output=json -f qcow2 -- "$1" | jq -r '[(.snapshots // [])[].name] | sort | join(" ")'; }
storage_state () { ls -l --time-style=+%s.%N "$img"; for f in "$img"/*.qcow2; do echo "$f: $(tags "$f")"; done; }
names () { "$VMSNAP" list --names "$dom" | sort | tr '\n' ' '; }

# 1. Never touched: clean, and no state directory, no catalog appear.
check_rc 0
[ "$(ndiff)" = 0 ] || fail "untouched domain: differences reported: $CK"
[ ! -e "$VMSNAP_STATE_DIR" ] || fail "check created $VMSNAP_STATE_DIR"
jq_check "$CK" '.catalog_existed == false and .repair == false' "report of an untouched domain"

# 2. Three snapshots (vda external, vdb internal), each with its own bytes.
BE=(--backend vdb=qcow2-internal)
img_write "$img/vda.qcow2" qcow2 0x11 0 1M; img_write "$img/vdb.qcow2" qcow2 0x21 0 1M
vms_ok create "$dom" s1 "${BE[@]}"
img_write "$(eng_active vda)" qcow2 0x12 0 1M; img_write "$(eng_active vdb)" qcow2 0x22 0 1M
vms_ok create "$dom" s2 "${BE[@]}"
img_write "$(eng_active vda)" qcow2 0x13 0 1M; img_write "$(eng_active vdb)" qcow2 0x23 0 1M
vms_ok create "$dom" s3 "${BE[@]}"
check_rc 0
[ "$(ndiff)" = 0 ] || fail "after three creates: differences reported: $CK"
vms_ok revert "$dom" s1
img_read "$(eng_active vda)" qcow2 0x11 0 1M

# 3. Drift behind vmsnap's back.
vdb_img=$(eng_active vdb)
qemu-img snapshot -d s2 "$vdb_img"          # QEMU 7.2 snapshot has no -f
qemu-img snapshot -c rogue "$vdb_img"
s3_vda=$("$VMSNAP" info --json "$dom" s3 | jq -r '.disks[] | select(.target == "vda") | .locator')
s3_vda=${s3_vda#*:}
[ -f "$s3_vda" ] || fail "s3's vda layer $s3_vda is not a file"
rm -- "$s3_vda"
before=$(storage_state)
cat_before=$(cat "$VMSNAP_STATE_DIR"/*/catalog.xml)
check_rc 6
has missing-on-storage vdb s2 "#s2"
has not-in-catalog vdb rogue "#rogue"
has missing-on-storage vda s3 "$(basename "$s3_vda")"
[ "$(ndiff)" = 3 ] || fail "want 3 differences, got: $CK"
vms_rc check "$dom"
[ "$VMS_RC" = 6 ] && grep -q "missing-on-storage" <<<"$VMS_OUT" && grep -q "fix:" <<<"$VMS_OUT" ||
    fail "text report: rc $VMS_RC: $VMS_OUT"
[ "$(storage_state)" = "$before" ] || fail "check changed storage"
[ "$(cat "$VMSNAP_STATE_DIR"/*/catalog.xml)" = "$cat_before" ] || fail "check changed the catalog"

# 4. A backing file changed with rebase -u: chain-mismatch, not repairable.
act=$(eng_active vda)
cp -- "$img/vda.qcow2" "$TEST_TMP/vda-copy.qcow2"
qemu-img rebase -u -f qcow2 -F qcow2 -b "$TEST_TMP/vda-copy.qcow2" "$act"
check_rc 6
has chain-mismatch vda s1 "$img/vda.qcow2"
jq_check "$CK" '[.differences[] | select(.kind == "chain-mismatch")][0].repairable == false' "chain-mismatch is not repairable"
before=$(storage_state)
check_rc 6 --repair
[ "$(storage_state)" = "$before" ] || fail "--repair changed storage"
# The copy now below vda's overlay is not added while the chain is wrong.
# (s2 lost vdb's data, s3 vda's: each is now partial, and says so.)
jq_check "$CK" '[.remaining[] | .kind] | sort == ["chain-mismatch", "not-in-catalog", "partial-snapshot", "partial-snapshot"]' "after --repair the chain mismatch and the partial snapshots remain"
jq_check "$CK" '[.remaining[] | select(.kind == "not-in-catalog") | .repairable] == [false]' "the copy on the wrong chain is held back"
qemu-img rebase -u -f qcow2 -F qcow2 -b "$img/vda.qcow2" "$act"   # the fix by hand
rm -- "$TEST_TMP/vda-copy.qcow2"

# 5. --repair made exactly these changes; storage unchanged; clean now.
jq_check "$CK" '.changes | length == 3' "three changes reported"
jq_check "$CK" '[.changes[] | select(test("dropped the record of disk vdb.*s2"))] | length == 1' "s2's vdb record dropped"
jq_check "$CK" '[.changes[] | select(test("dropped the record of disk vda.*s3"))] | length == 1' "s3's vda record dropped"
jq_check "$CK" '[.changes[] | select(test("added disk vdb.*rogue"))] | length == 1' "rogue added"
# Issue 16 item 4: a snapshot repair left without one of its disks is
# partial; check keeps saying so (never "agree"), list marks it, and a
# revert to it is refused and changes nothing; deleting it is the way out.
check_rc 6
jq_check "$CK" '[.differences[] | select(.kind == "partial-snapshot") | "\(.snapshot):\(.disk):\(.repairable)"] | sort == ["s2:vdb:false", "s3:vda:false"]' "s2 and s3 are reported partial"
[ "$(names)" = "rogue s1 s2 s3 " ] || fail "snapshots after repair: $(names)"
grep -q '^s3 .*partial' <<<"$("$VMSNAP" list "$dom")" || fail "list does not mark s3 partial: $("$VMSNAP" list "$dom")"
"$VMSNAP" info --json "$dom" s2 | jq -e '.lost_disks == ["vdb"]' >/dev/null || fail "info s2: no lost_disks"
before=$(storage_state)
vms_rc revert "$dom" s3
[ "$VMS_RC" != 0 ] && grep -q "s3 is partial.*vda" <<<"$VMS_ERR" && grep -q "vmsnap delete" <<<"$VMS_ERR" ||
    fail "revert to partial s3: rc $VMS_RC: $VMS_ERR"
[ "$(storage_state)" = "$before" ] || fail "a refused revert changed storage"
vms_ok delete "$dom" s3
vms_ok delete "$dom" s2
check_rc 0
[ "$(ndiff)" = 0 ] || fail "check after deleting the partial snapshots: $CK"
[ "$(names)" = "rogue s1 " ] || fail "snapshots after the deletes: $(names)"
perm=$(stat -c %a "$VMSNAP_STATE_DIR"/*/catalog.xml)
[ "$perm" = 600 ] || fail "catalog mode $perm"

# 6. The catalog lost: check reports what storage holds and creates nothing;
# --repair rebuilds it; list and revert work again, with the right bytes.
rm -- "$VMSNAP_STATE_DIR"/*/catalog.xml
check_rc 6
[ ! -e "$VMSNAP_STATE_DIR"/*/catalog.xml ] || fail "check wrote a catalog"
jq_check "$CK" '.catalog_existed == false and ([.differences[] | .kind] | unique == ["not-in-catalog"])' "lost catalog: only not-in-catalog"
check_rc 0 --repair
check_rc 0
[ "$(ndiff)" = 0 ] || fail "check after rebuild: $CK"
got=$(names)
for n in recovered-1 s1 rogue; do
    [[ " $got" == *" $n "* ]] || fail "rebuilt catalog lacks $n: $got"
done
vms_ok revert "$dom" recovered-1          # vda's original image, frozen at s1
img_read "$(eng_active vda)" qcow2 0x11 0 1M
img_write "$(eng_active vdb)" qcow2 0x24 0 1M
vms_ok revert "$dom" rogue                # vdb's table entry rogue (taken at s1)
img_read "$(eng_active vdb)" qcow2 0x21 0 1M
img_write "$(eng_active vdb)" qcow2 0x24 0 1M
vms_ok revert "$dom" s1
img_read "$(eng_active vdb)" qcow2 0x21 0 1M
check_rc 0

# 7. Bad input: an unknown domain is a clear error (exit 3), nothing made.
vms_rc check "$TEST_TMP/nosuch.xml"
[ "$VMS_RC" = 3 ] && grep -q "nosuch.xml" <<<"$VMS_ERR" || fail "unknown domain: rc $VMS_RC: $VMS_ERR"
vms_rc check
[ "$VMS_RC" = 2 ] || fail "check without DOMAIN exited $VMS_RC"

# 8. A running libvirt domain (qcow2-external on vda): two snapshots taken
# while it runs, the catalog lost; check reports both layers and creates
# nothing, --repair rebuilds them while the domain runs, and a revert to
# the rebuilt first one gives the bytes it had.
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
requires virsh
libvirt_start
qemu-img create -q -f qcow2 "$img/run.qcow2" 16M
img_write "$img/run.qcow2" qcow2 0x31 0 1M
mk_domain_xml ckrun "$TEST_TMP/ckrun.xml" "vda:qcow2:$img/run.qcow2"
libvirt_define_test_domain ckrun "$TEST_TMP/ckrun.xml"
cleanup_fn virsh -q undefine ckrun
cleanup_fn virsh -q destroy ckrun
out=$(virsh start ckrun 2>&1) || fail "virsh start ckrun: $out"
dom=ckrun
vms_ok create "$dom" r1
hmp_qemu_io ckrun ua-vda "write -P 0x32 0 1M" >/dev/null
vms_ok create "$dom" r2
check_rc 0
[ "$(ndiff)" = 0 ] || fail "running domain after two creates: $CK"
rm -- "$VMSNAP_STATE_DIR/$(virsh domuuid ckrun | head -1)/catalog.xml"
check_rc 6
[ "$(ndiff)" = 2 ] || fail "running domain, lost catalog: want 2 differences: $CK"
[ ! -e "$VMSNAP_STATE_DIR/$(virsh domuuid ckrun | head -1)/catalog.xml" ] || fail "check wrote a catalog"
check_rc 0 --repair
check_rc 0
[ "$(names)" = "recovered-1 recovered-2 " ] || fail "rebuilt snapshots of ckrun: $(names)"
"$VMSNAP" info --json "$dom" recovered-2 | jq -e '.parent == "recovered-1"' >/dev/null ||
    fail "recovered-2's parent is not recovered-1"
vms_ok revert "$dom" recovered-1 --stopped
act=$(virsh -q domblklist --inactive ckrun | awk '$1 == "vda" { print $2 }')
img_read "$act" qcow2 0x31 0 1M
vms_ok revert "$dom" recovered-2 --stopped
act=$(virsh -q domblklist --inactive ckrun | awk '$1 == "vda" { print $2 }')
img_read "$act" qcow2 0x32 0 1M
check_rc 0
echo "check-files: ok"
