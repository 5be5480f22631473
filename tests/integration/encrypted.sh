#!/usr/bin/env bash
# Issue 16 item 5: encrypted disks, against a private libvirtd and QEMU.
#
# A domain on a LUKS-encrypted qcow2 image (<encryption format='luks'> with
# a libvirt secret).  Every overlay vmsnap makes (create offline and on the
# running domain, revert) must be LUKS-encrypted with the same secret:
# qemu-img info says so, and reading it without the secret fails.  The
# definition must let the domain start (libvirt 9.0 cannot open an encrypted
# backing file it found itself, so the chain is written out with the
# <encryption> of each layer).  Delete pulls (the snapshot's own layer is
# the smaller) and commits (the child is), both through the secret, and the
# data reads back right through the secret after each step and a revert.
# No secret file is left in the state directory and no image holds the
# guest's bytes in the clear.
#
# Refusals: a domain XML file (no daemon to read the secret from) changes
# nothing and says why; a raw disk with <encryption format='luks'> (a LUKS
# volume) is refused by qcow2-external for what it is, not as a header
# mismatch; `plan` shows the encryption (text and --json).
#
# Item 6 on a running domain (it needs the same daemon, so it lives here): a
# vmdk streamOptimized base whose only child is an inner layer of the
# running chain can be neither committed into (write-once) nor pulled from
# (libvirt pulls only into the active image): delete refuses before any
# write, nothing pending, the base unchanged; shut off, the delete pulls.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint virsh
: "${VMSNAP:?}"
mk_tmpdir
libvirt_start
eng_state_here
# Fast key slots for the test's overlays (each open of an image unlocks it).
export VMSNAP_QCOW2_EXTERNAL_LUKS_ITER_TIME=10

uuid=$(cat /proc/sys/kernel/random/uuid)
KEY=$TEST_TMP/key
SECRET=vmsnap-test-passphrase-$$
( umask 077; printf '%s' "$SECRET" >"$KEY" )
cat >"$TEST_TMP/secret.xml" <<EOF
<secret ephemeral='no' private='no'><uuid>$uuid</uuid>
  <usage type='volume'><volume>$TEST_TMP/base.qcow2</volume></usage></secret>
EOF
virsh -q secret-define "$TEST_TMP/secret.xml" >/dev/null
virsh -q secret-set-value "$uuid" --file "$KEY" --plain >/dev/null

# enc_opts FILE: image options giving each encrypted layer of FILE's chain
# the secret s0.
enc_opts ()
{
    local i n opts="driver=qcow2,file.filename=$1" pre=""
    n=$(qemu-img info --backing-chain --output=json -U -f qcow2 "$1" |
            jq -r '[.[] | .encrypted // false] | map(tostring) | join(" ")') ||
        fail "qemu-img info --backing-chain $1"
    for i in $n; do
        [ "$i" = true ] && opts+=",${pre}encrypt.key-secret=s0"
        pre+="backing."
    done
    printf '%s\n' "$opts"
}
enc_io ()
{
    local f=$1 out
    shift
    out=$(qemu-io --object "secret,id=s0,file=$KEY" --image-opts "$@" "$(enc_opts "$f")" 2>&1) ||
        fail "qemu-io $* on $f: $out"
    [[ $out != *"verification failed"* && $out != *rror* ]] || fail "qemu-io $* on $f: $out"
}
enc_write () { enc_io "$1" -c "write -P $2 $3 $4"; }
enc_read () { enc_io "$1" -r -U -c "read -P $2 $3 $4"; }

# must_be_encrypted FILE: LUKS in the header, unreadable without the secret.
must_be_encrypted ()
{
    local out
    [ "$(qemu-img info --output=json -U -f qcow2 "$1" | jq -r '.encrypted // false')" = true ] ||
        fail "$1 is not encrypted"
    [ "$(qemu-img info --output=json -U -f qcow2 "$1" | jq -r '."format-specific".data.encrypt.format')" = luks ] ||
        fail "$1 is not LUKS-encrypted"
    if out=$(qemu-io -r -U -f qcow2 -c 'read 0 64k' "$1" 2>&1); then
        fail "$1 reads without the secret: $out"
    fi
    [[ $out == *"key-secret"* ]] || fail "$1: unexpected error without the secret: $out"
}

active () { virsh -q domblklist --inactive enc | awk '$1 == "vda" { print $2 }'; }
start_stop ()
{
    virsh -q start enc >/dev/null || fail "the domain does not start after: $1"
    virsh -q destroy enc >/dev/null
}

# Contents: A (0xa1) over [0, 512K) in the base, B (0xb1) over [1M, 3M)
# after s1, C (0xc1) over [4M, 4.25M) after s2.
check_s1 () { enc_read "$1" 0xa1 0 512K; enc_read "$1" 0 1M 4M; }
check_s2 () { enc_read "$1" 0xa1 0 512K; enc_read "$1" 0xb1 1M 2M; enc_read "$1" 0 4M 256K; }
check_cur () { enc_read "$1" 0xa1 0 512K; enc_read "$1" 0 512K 512K; enc_read "$1" 0xb1 1M 2M; enc_read "$1" 0xc1 4M 256K; }

base=$TEST_TMP/base.qcow2
luks_retry qemu-img create -q -f qcow2 --object "secret,id=s0,file=$KEY" \
    -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "$base" 16M
enc_write "$base" 0xa1 0 512K
mk_domain_xml enc "$TEST_TMP/enc.xml" "vda:qcow2:$base"
sed -i "s|<source file='$base'/>|<source file='$base'><encryption format='luks'><secret type='passphrase' uuid='$uuid'/></encryption></source>|" "$TEST_TMP/enc.xml"
grep -q '<encryption' "$TEST_TMP/enc.xml" || fail "no <encryption> in the test domain"
libvirt_define_test_domain enc "$TEST_TMP/enc.xml"

# ---- plan shows the encryption
vms_ok plan enc
[[ $VMS_OUT == *"encryption: luks, secret $uuid"* ]] || fail "plan does not show the encryption: $VMS_OUT"
[[ $VMS_OUT == *"encrypted (LUKS): every new overlay is encrypted"* ]] || fail "plan has no encryption limit: $VMS_OUT"
vms_ok plan --json enc
jq_check "$VMS_OUT" '.disks[0].encryption.format == "luks" and .disks[0].encryption.secret_uuid == $u' \
    "plan --json shows the encryption" --arg u "$uuid"

# ---- create offline, online
vms_ok create enc s1
o1=$(active)
[ "$o1" != "$base" ] || fail "create s1 made no overlay"
must_be_encrypted "$o1"
[ "$(virsh -q dumpxml --inactive enc | xmllint --xpath "count(//disk/source/encryption/secret[@uuid='$uuid'])" -)" = 1 ] ||
    fail "the new source has no <encryption>"
enc_write "$o1" 0xb1 1M 2M
check_s2 "$o1"
check_s1 "$base"

virsh -q start enc >/dev/null || fail "the domain does not start after create s1"
vms_ok create enc s2
o2=$(virsh -q domblklist enc | awk '$1 == "vda" { print $2 }')
[ "$o2" != "$o1" ] || fail "create s2 (running) made no overlay"
must_be_encrypted "$o2"
[ "$(virsh -q dumpxml enc | xmllint --xpath "count(//disk/source[@file='$o2']/encryption)" -)" = 1 ] ||
    fail "the running domain's new source has no <encryption>"
hmp_qemu_io enc ua-vda "write -P 0xc1 4M 256K" >/dev/null
hmp_qemu_io enc ua-vda "read -P 0xb1 1M 2M" >/dev/null
virsh -q destroy enc >/dev/null
[ "$(active)" = "$o2" ] || fail "the definition does not name the running overlay $o2"
check_cur "$o2"
check_s2 "$o1"

# ---- delete s1: the base (512K) is pulled into s2's image (2M)
vms_ok delete --json enc s1
note=$(jq -r '.disks[0].note' <<<"$VMS_OUT")
[[ $note == "pulled "* ]] || fail "delete s1 should pull: $note"
[ ! -e "$base" ] || fail "the pulled base $base is still there"
must_be_encrypted "$o1"
check_s2 "$o1"
check_cur "$o2"
start_stop "delete s1"

# ---- delete s2: the active overlay (256K) is committed into s2's image
vms_ok delete --json enc s2
note=$(jq -r '.disks[0].note' <<<"$VMS_OUT")
[[ $note == "committed "* ]] || fail "delete s2 should commit: $note"
[ "$(active)" = "$o1" ] || fail "after the commit the active image should be $o1"
check_cur "$o1"
start_stop "delete s2"

# ---- create s3, write, revert to s3
vms_ok create enc s3
o3=$(active)
must_be_encrypted "$o3"
enc_write "$o3" 0xd1 8M 64k
vms_ok revert enc s3
o4=$(active)
[ "$o4" != "$o3" ] || fail "revert s3 made no overlay"
must_be_encrypted "$o4"
check_cur "$o4"
enc_read "$o4" 0 8M 64k
start_stop "revert s3"
vms_ok check enc

# ---- a secret file a killed call left behind goes with the next call
sd=$VMSNAP_STATE_DIR/$(virsh -q domuuid enc)
[ -d "$sd" ] || fail "no state directory $sd"
( umask 077; printf '%s' "$SECRET" >"$sd/qcow2-external.secret" )
vms_ok check enc
[ ! -e "$sd/qcow2-external.secret" ] || fail "a stale secret file survived the next call"

# ---- nothing in the clear, no secret left behind
for f in "$TEST_TMP"/*.qcow2; do
    ! grep -q -a -F "$(printf '\xb1\xb1\xb1\xb1\xb1\xb1\xb1\xb1')" "$f" ||
        fail "$f holds guest bytes in the clear"
done
! grep -r -l -a -F "$SECRET" "$VMSNAP_STATE_DIR" >/dev/null 2>&1 ||
    fail "the secret was left in the state directory: $(grep -r -l -a -F "$SECRET" "$VMSNAP_STATE_DIR")"
echo "libvirt domain: encrypted overlays (offline, online, revert), pull and commit through the secret"

# ---- a domain XML file: no daemon to read the secret from
virsh -q dumpxml --inactive enc >"$TEST_TMP/file.xml"
sed -i "s|<uuid>[^<]*</uuid>|<uuid>$(cat /proc/sys/kernel/random/uuid)</uuid>|" "$TEST_TMP/file.xml"
before=$(ls "$TEST_TMP"/*.qcow2)
VMSNAP_STATE_DIR=$TEST_TMP/file-state vms_rc create "$TEST_TMP/file.xml" f1
[ "$VMS_RC" != 0 ] || fail "create on an encrypted domain XML file should fail"
[[ $VMS_ERR == *"is encrypted"*"domain XML file"*"Nothing was changed"* ]] ||
    fail "create on a domain XML file: unclear refusal: $VMS_ERR"
[ "$(ls "$TEST_TMP"/*.qcow2)" = "$before" ] || fail "the refused create left images: $(ls "$TEST_TMP"/*.qcow2)"
[ "$(xmllint --xpath 'string(//disk/source/@file)' "$TEST_TMP/file.xml")" = "$o4" ] ||
    fail "the refused create changed the domain file"

# ---- a raw LUKS volume is refused for what it is
vol=$TEST_TMP/vol.luks
luks_retry qemu-img create -q -f luks --object "secret,id=s0,file=$KEY" -o key-secret=s0,iter-time=10 "$vol" 8M
eng_mk_file_domain lk "$TEST_TMP/lk.xml" "vda:raw:$vol"
sed -i "s|<source file='$vol'/>|<source file='$vol'><encryption format='luks'><secret type='passphrase' uuid='$uuid'/></encryption></source>|" "$TEST_TMP/lk.xml"
VMSNAP_STATE_DIR=$TEST_TMP/lk-state vms_rc plan --json "$TEST_TMP/lk.xml"
jq_check "$VMS_OUT" '.disks[0].encryption.format == "luks"' "plan --json shows the LUKS volume's encryption"
jq_check "$VMS_OUT" '.disks[0].candidates[] | select(.backend == "qcow2-external") | .fitness == "cannot" and (.reason | test("encrypted volume"))' \
    "qcow2-external refuses a raw LUKS volume as an encrypted volume"
[[ $VMS_OUT != *"header says"* ]] || fail "the LUKS volume is refused as a header mismatch: $VMS_OUT"
echo "refusals: domain XML file, raw LUKS volume"

# ---- item 6, running domain: a write-once base under an inner layer
wob=$TEST_TMP/wo.vmdk
qemu-img create -q -f vmdk -o subformat=streamOptimized "$wob" 8M
img_write "$wob" vmdk 0xa1 0 2M
ln "$wob" "$TEST_TMP/wo.link"
mk_domain_xml wo "$TEST_TMP/wo.xml" "vda:vmdk:$wob"
libvirt_define_test_domain wo "$TEST_TMP/wo.xml"
virsh -q start wo >/dev/null || fail "cannot start domain wo"
vms_ok create wo w1
hmp_qemu_io wo ua-vda "write -P 0xb1 0 512K" >/dev/null
vms_ok create wo w2
hmp_qemu_io wo ua-vda "write -P 0xc1 4M 256K" >/dev/null
before=$(sha256sum <"$wob")
vms_rc delete wo w1
[ "$VMS_RC" != 0 ] || fail "delete w1 (running) should be refused"
[[ $VMS_ERR == *"cannot take a commit"*"streamOptimized"*"nothing was changed"*"shut the domain off"* ]] ||
    fail "delete w1 (running): unclear refusal: $VMS_ERR"
[ "$(sha256sum <"$TEST_TMP/wo.link")" = "$before" ] || fail "the refused delete wrote the write-once base"
vms_ok list --json wo
jq_check "$VMS_OUT" '.pending == null and ([.snapshots[].name] == ["w1", "w2"])' \
    "the refused delete left nothing pending and both snapshots"
hmp_qemu_io wo ua-vda "read -P 0xb1 0 512K" >/dev/null
hmp_qemu_io wo ua-vda "read -P 0xc1 4M 256K" >/dev/null
virsh -q destroy wo >/dev/null
vms_ok delete --json wo w1
[[ $(jq -r '.disks[0].note' <<<"$VMS_OUT") == "pulled "*"pull forced"* ]] ||
    fail "delete w1 (shut off) should pull: $VMS_OUT"
[ "$(sha256sum <"$TEST_TMP/wo.link")" = "$before" ] || fail "the delete wrote the write-once base"
cur=$(virsh -q domblklist --inactive wo | awk '$1 == "vda" { print $2 }')
img_read "$cur" qcow2 0xb1 0 512K
img_read "$cur" qcow2 0xa1 512K 1536K
img_read "$cur" qcow2 0xc1 4M 256K
virsh -q start wo >/dev/null || fail "domain wo does not start after the delete"
virsh -q destroy wo >/dev/null
echo "running domain: a write-once base under an inner layer is refused before any write, pulled when shut off"
