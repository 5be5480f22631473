#!/usr/bin/env bash
# The conformance sequences (tests/conformance/conformance.sh) on qcow2-internal qcow2-external qcow2-external-raw:
# ${VMSNAP_CONFORMANCE_SEEDS:-10} seeded sequences of 20 steps each in make check
# (setup.sh sets fewer for the sanitizer build); make check-conformance runs 50+.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
exec bash "$srcdir/tests/conformance/conformance.sh" --config qcow2-internal --config qcow2-external --config qcow2-external-raw --seeds "${VMSNAP_CONFORMANCE_SEEDS:-10}" --steps "${VMSNAP_CONFORMANCE_STEPS:-20}"
