#!/usr/bin/env bash
# The conformance sequences (tests/conformance/conformance.sh) on rbd-rollback:
# ${VMSNAP_CONFORMANCE_RBD_SEEDS:-${VMSNAP_CONFORMANCE_SEEDS:-20}} seeded
# sequences of ${VMSNAP_CONFORMANCE_STEPS:-20} steps in make check (setup.sh
# sets fewer for the sanitizer build); make check-conformance runs more.
# 20, not the 50 of the file configurations: an RBD step costs several times
# a file step (a cluster round trip in every command and every check): at
# 50 the two RBD configurations were make check's two longest tests
# (18 and 20 minutes in a run on a loaded machine).
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
exec bash "$srcdir/tests/conformance/conformance.sh" --config rbd-rollback \
    --seeds "${VMSNAP_CONFORMANCE_RBD_SEEDS:-${VMSNAP_CONFORMANCE_SEEDS:-20}}" --steps "${VMSNAP_CONFORMANCE_STEPS:-20}"
