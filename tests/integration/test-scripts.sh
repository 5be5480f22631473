#!/usr/bin/env bash
# The test scripts themselves: no `PRODUCER | grep -q ...` (issue 16,
# rbd-half-clone.sh case 4).  Under pipefail, grep -q exits at its first
# match; a producer that writes again afterwards (bash's printf writes a
# line at a time into a pipe, any tool with more than a buffer of output)
# dies of SIGPIPE and the pipeline fails although the match was there: a
# check that fails by chance, and a negated one (`! ... | grep -q`,
# `... | grep -q && fail`) that passes by chance.  Read the output whole,
# then search it: grep -q PATTERN <<<"$(PRODUCER)".
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"

# pipe_greps FILE...: the non-comment lines that pipe into grep -q.
pipe_greps ()
{
    grep -nE '(^|[^|])\|[[:space:]]*grep[[:space:]]+(-[a-zA-Z]*q|--quiet)' "$@" |
        grep -vE '^([^:]+:)?[0-9]+:[[:space:]]*#' || true
}

mapfile -t scripts < <(find "$srcdir/tests" -name '*.sh' -type f ! -name test-scripts.sh | sort)
[ "${#scripts[@]}" -ge 40 ] || fail "found only ${#scripts[@]} test scripts under $srcdir/tests"
bad=$(pipe_greps "${scripts[@]}")
[ -z "$bad" ] || fail "a pipeline ends in grep -q (the producer can die of SIGPIPE under pipefail; use grep -q ... <<<\"\$(producer)\"):
$bad"

# The check can fail, and leaves comments and here-strings alone.
printf '%s\n' 'x=1' '  rbdc ls rbd | grep -qxF "$n" || fail' '# a | grep -q b' \
    'grep -q a <<<"$(b)"' 'foo | grep --quiet bar' 'a || grep -q b c' >"${TMPDIR:-/tmp}/test-scripts.$$"
n=$(pipe_greps "${TMPDIR:-/tmp}/test-scripts.$$" | wc -l)
rm -f "${TMPDIR:-/tmp}/test-scripts.$$"
[ "$n" = 2 ] || fail "self-test: $n of the 2 planted pipelines found"

echo "test-scripts: ${#scripts[@]} scripts, no pipeline ends in grep -q"
