#!/usr/bin/env bash
# Revert while the domain runs (qcow2 disk vda, raw disk vdb), to snapshots
# that are not the latest (the tree branches):
#   s1 "A"; s2 "A B"; revert s1, write C, s3 "A C" (a branch)
#   - revert s2 (no flag): QEMU restarts, the domain is running on the
#     reverted disks, the data read inside the running guest is s2's;
#   - revert s1 --paused: the domain is paused; after `virsh resume` it runs
#     with s1's data;
#   - a paused domain reverted without a flag stays paused;
#   - revert s3 --stopped: the domain is shut off, its images (read offline)
#     hold s3's data;
#   - from shut off, revert s2 --running: it runs, with s2's data.
# After each: the live and inactive definitions agree, list/info/chain agree,
# every snapshot's locator holds its data, nothing stray in the image
# directory, and the previous state's data is gone (the check can fail).
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io virsh xmllint
: "${VMSNAP:?}"
mk_tmpdir
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
libvirt_start

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f raw "$img/vdb.raw" 64M
mk_domain_xml onrev "$TEST_TMP/onrev.xml" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"
libvirt_define_test_domain onrev "$TEST_TMP/onrev.xml"
cleanup_fn virsh -q undefine onrev
out=$(virsh start onrev 2>&1) || fail "virsh start onrev: $out"

ENG_DOM=onrev ENG_KIND=running ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
VMSNAP_STATE_DIR=$TEST_TMP/state
eng_init
ENG_T0=$(date +%s%N)

# check_after_revert NAME STATE PREV: the domain is in STATE, holds NAME's
# data (read through QEMU unless shut off), not PREV's, and the views agree.
check_after_revert ()
{
    local name=$1 state=$2 prev=$3
    [ "$(eng_domstate)" = "$state" ] || fail "after revert $name: onrev is '$(eng_domstate)', expected '$state'"
    eng_check_live_def
    eng_check_state "${SNAP_HIST[$name]}"
    eng_expect_mismatch "$prev"
    eng_check_views
    eng_check_locators
}

# revert_to NAME STATE [FLAG]: vmsnap revert, the model follows.
revert_to ()
{
    local name=$1 state=$2 prev=$CUR_HIST
    shift 2
    ENG_EXPECT_STATE=$state vms_ok revert --json "$ENG_DOM" "$name" "$@"
    jq_check "$VMS_OUT" '.operation == "revert" and .snapshot == $n' "revert report" --arg n "$name"
    CUR_HIST=${SNAP_HIST[$name]} ENG_CURRENT=$name ENG_DIRTY=0
    check_after_revert "$name" "$state" "$prev"
}

eng_write A
eng_create s1
eng_write B
eng_create s2
eng_check_state "A B"
eng_revert s1
eng_check_state "A"
eng_expect_mismatch "A B"
eng_write C
eng_create s3
eng_check_state "A C"
eng_check_views
eng_step "s1 A, s2 A B, revert s1, s3 A C (running)"

# 1. No flag: running, s2's data (the other branch).
revert_to s2 running
eng_step "revert s2: running"

# 2. --paused, then resume.
revert_to s1 paused --paused
out=$(virsh resume onrev 2>&1) || fail "virsh resume onrev: $out"
[ "$(eng_domstate)" = running ] || fail "onrev does not run after virsh resume"
check_after_revert s1 running "A B"
eng_step "revert s1 --paused: paused, resumed"

# 3. A paused domain, no flag: it stays paused.
out=$(virsh suspend onrev 2>&1) || fail "virsh suspend onrev: $out"
[ "$(eng_domstate)" = paused ] || fail "onrev is not paused"
revert_to s3 paused
out=$(virsh resume onrev 2>&1) || fail "virsh resume onrev: $out"
check_after_revert s3 running "A"
eng_step "revert s3 while paused: paused"

# 4. --stopped: shut off; the image files hold s1's data.
revert_to s1 "shut off" --stopped
eng_step "revert s1 --stopped: shut off"

# 5. From shut off, --running: it runs with s2's data.
revert_to s2 running --running
eng_step "revert s2 --running from shut off: running"

# 6. Every snapshot once more, each by a plain revert while running.
eng_verify_all
[ "$(eng_domstate)" = running ] || fail "onrev is not running at the end"
eng_step "every snapshot reverted to while running"
echo "online-revert: ok"
