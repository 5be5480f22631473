#!/usr/bin/env bash
# vmsnap check on an RBD disk (domain XML file, offline, a throwaway Ceph
# cluster): clean after s1, s2, s3; then behind vmsnap's back `rbd snap rm`
# of s2 (missing-on-storage), `rbd snap create` of a snapshot with vmsnap's
# mark copied from s1's (not-in-catalog), and an unmarked one (ignored: not
# vmsnap's), and s3's mark removed (mark-missing, not repairable).  Nothing
# changes without --repair; --repair drops s2, adds the marked one, leaves
# the pool's snapshots and metadata as they were; a second check reports
# only the removed mark.  The catalog deleted: --repair rebuilds s1 from the
# marks, and a revert to it gives s1's bytes.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/ceph.sh"
requires jq xmllint
requires_qemu_rbd
requires_rbd_backend
: "${VMSNAP:?}"
mk_tmpdir
ceph_start
unset VMSNAP_RBD_REVERT_MODE VMSNAP_RBD_DELETE_CHILDREN VMSNAP_RBD_KEEP_OLD_HEAD

rbdc create --size 8M rbd/vda
DOM=$TEST_TMP/ckrbd.xml
rbd_domain_xml ckrbd "$DOM" vda:rbd/vda:conf
export VMSNAP_STATE_DIR=$TEST_TMP/state
ERRF=$TEST_TMP/.stderr

vms_rc () { VMS_RC=0; VMS_OUT=$("$VMSNAP" "$@" 2>"$ERRF") || VMS_RC=$?; }
vms_ok () { vms_rc "$@"; [ "$VMS_RC" = 0 ] || { printf '%s\n' "$VMS_OUT" >&2; cat "$ERRF" >&2; fail "vmsnap $* exited $VMS_RC"; }; }
check_rc ()
{
    local want=$1
    shift
    vms_rc check --json "$@" "$DOM"
    CK=$VMS_OUT
    [ "$VMS_RC" = "$want" ] || { printf '%s\n' "$CK" >&2; cat "$ERRF" >&2; fail "vmsnap check $* exited $VMS_RC, want $want"; }
}
expect () { jq -e "$@" <<<"$CK" >/dev/null || { printf '%s\n' "$CK" >&2; fail "check report: jq $*"; }; }
pool_state () { rbdc snap ls rbd/vda --format json | jq -c '[.[].name] | sort'; rbdc image-meta list rbd/vda --format json | jq -cS .; }

check_rc 0
expect '.differences == []'
[ ! -e "$VMSNAP_STATE_DIR" ] || fail "check on an untouched domain created $VMSNAP_STATE_DIR"

rbd_img_write rbd/vda 0x11 0 1M
vms_ok create "$DOM" s1
rbd_img_write rbd/vda 0x12 0 1M
vms_ok create "$DOM" s2
rbd_img_write rbd/vda 0x13 0 1M
vms_ok create "$DOM" s3
check_rc 0
expect '.differences == []'

mark=$(rbdc image-meta get rbd/vda vmsnap.snap.s1)
[ -n "$mark" ] || fail "s1 has no vmsnap.snap.s1 mark"
rbdc snap rm rbd/vda@s2
rbdc snap create rbd/vda@rogue
rbdc image-meta set rbd/vda vmsnap.snap.rogue "$mark"
rbdc snap create rbd/vda@users-own
rbdc image-meta remove rbd/vda vmsnap.snap.s3
before=$(pool_state)
check_rc 6
expect '[.differences[] | select(.kind == "missing-on-storage" and .disk == "vda" and .snapshot == "s2" and (.storage | contains("vda@s2")))] | length == 1'
expect '[.differences[] | select(.kind == "not-in-catalog" and .snapshot == "rogue" and .repairable)] | length == 1'
expect '[.differences[] | select(.kind == "mark-missing" and .snapshot == "s3" and (.repairable | not))] | length == 1'
expect '.differences | length == 3'     # users-own has no mark: not vmsnap's
[ "$(pool_state)" = "$before" ] || fail "check changed the pool"

check_rc 6 --repair
expect '.changes | length == 3'         # s2's record dropped, s2 removed, rogue added
expect '[.remaining[] | .kind] == ["mark-missing"]'
[ "$(pool_state)" = "$before" ] || fail "--repair changed the pool"
check_rc 6
expect '[.differences[] | .kind] == ["mark-missing"]'
names=$("$VMSNAP" list --names "$DOM" | sort | tr '\n' ' ')
[ "$names" = "rogue s1 s3 " ] || fail "snapshots after repair: $names"

# The catalog lost: rebuilt from the marks (s1, rogue; s3 lost its mark).
rm -- "$VMSNAP_STATE_DIR"/*/catalog.xml
check_rc 6
expect '[.differences[] | .kind] | unique == ["not-in-catalog"]'
[ ! -e "$VMSNAP_STATE_DIR"/*/catalog.xml ] || fail "check wrote a catalog"
check_rc 0 --repair
names=$("$VMSNAP" list --names "$DOM" | sort | tr '\n' ' ')
[ "$names" = "rogue s1 " ] || fail "snapshots after the rebuild: $names"
vms_ok revert "$DOM" s1
img=$(xmllint --xpath 'string(//disk/source/@name)' "$DOM")
rbd_img_read "$img" "0x11 0 1M"
echo "check-rbd: ok"
