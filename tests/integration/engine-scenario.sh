#!/usr/bin/env bash
# The snapshot engine end to end on a domain XML file with a qcow2 disk (vda)
# and a raw disk (vdb): write A, s1, write B, s2, write C, s3; revert s1,
# revert s3; revert s1, write D, s4 (a branch); delete s2 (middle, one
# child); delete s1 (two children: kept unnamed); merge --max-depth 1.  After
# every step the current contents are right, every remaining snapshot reverts
# to its own contents, and list --tree, info --json and chain --json agree
# (see tests/fixtures/engine.sh).
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
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f raw "$img/vdb.raw" 64M
eng_mk_file_domain engdom "$TEST_TMP/engdom.xml" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"

ENG_DOM=$TEST_TMP/engdom.xml ENG_KIND=file ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
VMSNAP_STATE_DIR=$TEST_TMP/state
eng_init
eng_scenario "$img/vda.qcow2" "$img/vdb.raw"
echo "engine-scenario: ok"
