#!/usr/bin/env bash
# The crash matrix (tests/conformance/conformance.sh --crash) on rbd-rollback
# and rbd-clone: every operation killed after each journaled step and
# ${VMSNAP_CONFORMANCE_RBD_KILLS:-${VMSNAP_CONFORMANCE_KILLS:-3}} times with
# SIGKILL at random (make check-conformance: 10), recovered, verified
# against the model.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
exec bash "$srcdir/tests/conformance/conformance.sh" --config rbd-rollback --config rbd-clone --crash \
    --kills "${VMSNAP_CONFORMANCE_RBD_KILLS:-${VMSNAP_CONFORMANCE_KILLS:-3}}"
