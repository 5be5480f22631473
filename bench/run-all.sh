#!/usr/bin/env bash
# Run every benchmark one after the other (never in parallel: they time
# things) and collect their tables.
#
#   bench/run-all.sh BUILD_DIR [OUT_DIR]
#
# OUT_DIR (default bench-results-DATE under the current directory) gets one
# NAME.md (the table) and NAME.log (progress) per bench, and all.md with
# every table.  The environment (BENCH_QUICK=1, BENCH_REPS, ...) is passed
# on; BENCH_ONLY="delete-bytes overhead" runs a subset.  A bench that fails
# is reported and the others still run; the exit status is 1 if any failed
# (a bench that skips, exit 77, as lvm-window does without its guest, is not).
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [OUT_DIR]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
build=$1
out=${2:-bench-results-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out" || exit 1
benches=${BENCH_ONLY:-delete-bytes overhead pause-window revert-time scale lvm-window}
rc=0
: >"$out/all.md"
for b in $benches; do
    echo "== $b (log: $out/$b.log)" >&2
    t0=$(date +%s)
    brc=0
    "$here/$b.sh" "$build" >"$out/$b.md" 2>"$out/$b.log" || brc=$?
    if [ "$brc" = 0 ]; then
        echo "   done in $(( $(date +%s) - t0 )) s" >&2
    elif [ "$brc" = 77 ]; then
        # lvm-window: the LVM guest cannot start here.
        echo "   skipped: $(grep -m 1 '^SKIP' "$out/$b.md" || tail -n 1 "$out/$b.log")" >&2
    else
        echo "   FAILED (exit $brc) after $(( $(date +%s) - t0 )) s; last lines:" >&2
        tail -n 5 "$out/$b.log" >&2
        rc=1
    fi
    { cat "$out/$b.md"; echo; } >>"$out/all.md"
done
echo "tables: $out/all.md" >&2
exit "$rc"
