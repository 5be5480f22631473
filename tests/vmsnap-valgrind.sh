#!/bin/sh
# vmsnap under valgrind, for `make check-valgrind`: $VMSNAP_VALGRIND is the
# valgrind command line ending with the path of the vmsnap program.
# shellcheck disable=SC2086
exec $VMSNAP_VALGRIND "$@"
