#!/usr/bin/env bash
# The crash matrix (tests/conformance/conformance.sh --crash) on lvm-thin and
# lvm-thick in the LVM guest (TCG): every journaled step of create, revert,
# delete and merge, and ${VMSNAP_CONFORMANCE_LVM_KILLS:-1} random SIGKILL(s)
# per operation.  make check-conformance runs it (~17 minutes), not CI.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
VMSNAP_CONFORMANCE_LVM_MODE=crash exec bash "$srcdir/tests/conformance/conformance-lvm.sh" "$@"
