#!/usr/bin/env bash
# vmsnap demo, part 3: LVM.  LVM snapshots need device-mapper, which this
# host's kernel may lack, so this part boots the LVM guest fixture
# (tests/fixtures/lvm-guest.sh: the stock Debian kernel under TCG, the
# host's root read-only over 9p, a 2 GiB scratch disk, no libvirt) and runs
# vmsnap there on a domain whose vda is a thin LV and vdb a classic LV:
# snapshot, write, snapshot, revert, delete, merge, with the bytes checked.
#
#   demo/lvm.sh [BUILD-DIR]     (demo/mixed.sh runs it last)
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if [ "${LVMG_IN_GUEST:-0}" != 1 ]; then
    build=$(cd "${1:-$top/build}" && pwd)
    VMSNAP=$build/tools/vmsnap abs_top_builddir=$build srcdir=$top
    [ -x "$VMSNAP" ] || { echo "no vmsnap in $build: build first (./setup.sh demo)" >&2; exit 1; }
    export VMSNAP abs_top_builddir srcdir
fi
. "$top/tests/fixtures/functions.sh"
. "$top/tests/fixtures/lvm-guest.sh"
lvmg_main "$0" "$@"
# ---------------------------------------------------------- in the guest
say() { printf '\n$ %s\n' "$*"; }
run() { say "${*/#$VMSNAP/vmsnap}"; "$@" || echo "(exit status $?)"; }
export VMSNAP_STATE_DIR=$TEST_TMP/state
# put DEV TEXT / get DEV: 512 bytes at offset 0, O_DIRECT.
put() { printf '%-512s' "$2" | dd of="$1" bs=512 count=1 oflag=direct conv=notrunc status=none; }
get() { dd if="$1" bs=512 count=1 iflag=direct status=none | tr -d ' \0'; }
expect() {  # expect WHAT GOT WANT
    if [ "$2" = "$3" ]; then lvmg_pass "$1: $2"; else fail "$1: '$2', expected '$3'"; fi
}

lvmg_lvm pvcreate -q -y /dev/vda
lvmg_lvm vgcreate -q vg /dev/vda
lvmg_lvm lvcreate -q -y --type thin-pool -L 256M -n pool vg
lvmg_lvm lvcreate -q -y -V 64M -T vg/pool -n data
lvmg_lvm lvcreate -q -y -L 64M -n logs vg
lvmg_block_domain lvm-vm "$TEST_TMP/dom.xml" vda:/dev/vg/data vdb:/dev/vg/logs
say "a domain (XML file) with vda on the thin LV vg/data and vdb on the classic LV vg/logs"
run "$VMSNAP" plan "$TEST_TMP/dom.xml"
put /dev/vg/data "data-1"; put /dev/vg/logs "logs-1"
run "$VMSNAP" create "$TEST_TMP/dom.xml" s1 --description "before the upgrade"
put /dev/vg/data "data-2"; put /dev/vg/logs "logs-2"
run "$VMSNAP" create "$TEST_TMP/dom.xml" s2
put /dev/vg/data "data-3"; put /dev/vg/logs "logs-3"
run "$VMSNAP" list "$TEST_TMP/dom.xml" --tree
run lvm lvs -o lv_name,lv_attr,origin,pool_lv,lv_size vg
run "$VMSNAP" revert "$TEST_TMP/dom.xml" s1
expect "after revert s1, vda" "$(get /dev/vg/data)" data-1
expect "after revert s1, vdb" "$(get /dev/vg/logs)" logs-1
run "$VMSNAP" revert "$TEST_TMP/dom.xml" s2
expect "after revert s2, vda" "$(get /dev/vg/data)" data-2
expect "after revert s2, vdb" "$(get /dev/vg/logs)" logs-2
run "$VMSNAP" delete "$TEST_TMP/dom.xml" s1
run "$VMSNAP" merge "$TEST_TMP/dom.xml"
run "$VMSNAP" list "$TEST_TMP/dom.xml" --tree
run "$VMSNAP" check "$TEST_TMP/dom.xml"
run lvm lvs -o lv_name,lv_attr,origin,pool_lv,lv_size,lv_tags vg
expect "after delete s1 and merge, vda" "$(get /dev/vg/data)" data-2
