#!/usr/bin/env bash
# The crash matrix (tests/conformance/conformance.sh --crash) on qcow2-internal qcow2-external qcow2-external-raw: every
# operation killed after each journaled step and ${VMSNAP_CONFORMANCE_KILLS:-3}
# times at random, recovered, verified against the model.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
exec bash "$srcdir/tests/conformance/conformance.sh" --config qcow2-internal --config qcow2-external --config qcow2-external-raw --crash --kills "${VMSNAP_CONFORMANCE_KILLS:-3}"
