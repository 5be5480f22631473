#!/usr/bin/env bash
# vmsnap check on LVM, in the LVM guest (tests/fixtures/lvm-guest.sh): vda
# on a thin LV, vdb on a thick LV (tests/fixtures/lvm/engine-lvm.sh).
# s1, s2: clean.  Behind vmsnap's back: s2's thin LV removed (lvremove:
# missing-on-storage), a thin snapshot created with vmsnap's tags
# (lvcreate --addtag: not-in-catalog), an untagged one (ignored).  Nothing
# changes without --repair; --repair drops s2's vda record (s2 is partial:
# reported until deleted, revert refused), adds the tagged LV, leaves the
# VG's LVs and tags as they were; after s2 is deleted check is clean;
# revert to s1 gives s1's bytes.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/lvm-guest.sh"
lvmg_main "$0" "$@"
# ---------------------------------------------------------- in the guest
. "$srcdir/tests/fixtures/engine.sh"
. "$srcdir/tests/fixtures/lvm/engine-lvm.sh"
lvt_init
requires jq

check_rc ()
{
    local want=$1
    shift
    vms_rc check --json "$@" "$ENG_DOM"
    CK=$VMS_OUT
    [ "$VMS_RC" = "$want" ] ||
        { printf '%s\n' "$CK" "$VMS_ERR" >&2; fail "vmsnap check $* exited $VMS_RC, want $want"; }
}
expect () { jq -e "$@" <<<"$CK" >/dev/null || { printf '%s\n' "$CK" >&2; fail "check report: jq $*"; }; }
vg_state () { lvm lvs --noheadings -o lv_name,lv_tags,lv_size "$LVT_VG" | sort; }

check_rc 0
expect '.differences == []'
[ ! -e "$VMSNAP_STATE_DIR" ] || fail "check on an untouched domain created $VMSNAP_STATE_DIR"
lvmg_pass "untouched domain: clean, nothing created"

eng_write A
eng_create s1
eng_write B
eng_create s2
check_rc 0
expect '.differences == []'
lvmg_pass "s1, s2: clean"

lvmg_lvm lvremove -q -y "$LVT_VG/thin.s2"
lvmg_lvm lvcreate -q -y -s -n rogue "$LVT_VG/thin" --addtag "vmsnap_dom_$LVT_UUID" \
    --addtag vmsnap_disk_vda --addtag vmsnap_snap_rogue
lvmg_lvm lvcreate -q -y -s -n users-own "$LVT_VG/thin"
before=$(vg_state)
check_rc 6
expect '[.differences[] | select(.kind == "missing-on-storage" and .disk == "vda" and .snapshot == "s2" and (.storage | contains("thin.s2")))] | length == 1'
expect '[.differences[] | select(.kind == "not-in-catalog" and .disk == "vda" and .snapshot == "rogue" and (.storage | contains("rogue")))] | length == 1'
expect '.differences | length == 2'
[ "$(vg_state)" = "$before" ] || fail "check changed the VG"
lvmg_pass "lvremove and lvcreate with tags reported, nothing changed"

# s2 keeps vdb's point but lost vda's: repair marks it partial (issue 16
# item 4), check keeps reporting it, a revert to it is refused; deleting
# it leaves the domain clean.
check_rc 6 --repair
expect '.changes | length == 2'
expect '[.remaining[] | "\(.kind):\(.snapshot):\(.disk)"] == ["partial-snapshot:s2:vda"]'
[ "$(vg_state)" = "$before" ] || fail "--repair changed the VG"
check_rc 6
names=$("$VMSNAP" list --names "$ENG_DOM" | sort | tr '\n' ' ')
[ "$names" = "rogue s1 s2 " ] || fail "snapshots after repair: $names"
vms_rc revert "$ENG_DOM" s2
[ "$VMS_RC" != 0 ] && grep -q "s2 is partial" <<<"$VMS_ERR" || fail "revert to the partial s2: rc $VMS_RC: $VMS_ERR"
vms_ok delete "$ENG_DOM" s2
eng_forget s2
check_rc 0
expect '.differences == []'
lvmg_pass "--repair: 2 changes, VG untouched, s2 partial until deleted, then clean"

eng_revert s1
eng_check_state "A"
eng_expect_mismatch "A B"
lvmg_pass "revert to s1 after the repair: s1's bytes"
