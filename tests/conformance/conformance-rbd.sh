#!/usr/bin/env bash
# The conformance sequences (tests/conformance/conformance.sh) on rbd-rollback rbd-clone:
# ${VMSNAP_CONFORMANCE_SEEDS:-10} seeded sequences of 20 steps each in make check
# (setup.sh sets fewer for the sanitizer build); make check-conformance runs 50+.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
exec bash "$srcdir/tests/conformance/conformance.sh" --config rbd-rollback --config rbd-clone --seeds "${VMSNAP_CONFORMANCE_SEEDS:-10}" --steps "${VMSNAP_CONFORMANCE_STEPS:-20}"
