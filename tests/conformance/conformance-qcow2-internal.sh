#!/usr/bin/env bash
# The conformance sequences (tests/conformance/conformance.sh) on qcow2-internal:
# ${VMSNAP_CONFORMANCE_SEEDS:-50} seeded sequences of
# ${VMSNAP_CONFORMANCE_STEPS:-20} steps in make check (setup.sh sets fewer for
# the sanitizer build); make check-conformance runs more.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
exec bash "$srcdir/tests/conformance/conformance.sh" --config qcow2-internal \
    --seeds "${VMSNAP_CONFORMANCE_SEEDS:-50}" --steps "${VMSNAP_CONFORMANCE_STEPS:-20}"
