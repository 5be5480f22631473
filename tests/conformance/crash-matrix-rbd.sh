#!/usr/bin/env bash
# The crash matrix (tests/conformance/conformance.sh --crash) on rbd-rollback
# and rbd-clone: every operation killed after each journaled step and
# ${VMSNAP_CONFORMANCE_RBD_KILLS:-0} times with SIGKILL at random (make
# check-conformance: 10), recovered, verified against the model.  Random
# kills are not in make check: about 1 in 60 random kills of an
# rbd-rollback create ends with the catalog listing the new snapshot and
# the image without it (doc/conformance.md, "Limits"; not root-caused).
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
exec bash "$srcdir/tests/conformance/conformance.sh" --config rbd-rollback --config rbd-clone --crash \
    --kills "${VMSNAP_CONFORMANCE_RBD_KILLS:-0}"
