#!/usr/bin/env bash
# `make fuzz` (a build configured with --enable-fuzzing): run each libFuzzer
# harness for $FUZZ_SECONDS over a copy of its corpus, in the build tree:
#   tests/fuzz/work/NAME/      the corpus copy (plus what libFuzzer adds)
#   tests/fuzz/work/NAME.log   libFuzzer's output
#   tests/fuzz/artifacts/      crash-*, leak-*, timeout-*, oom-* inputs
#   tests/fuzz/fuzz-suite.log  one PASS:/FAIL: line per harness, then the
#                              "# PASS: N" / "# FAIL: N" totals, as in an
#                              automake test-suite.log (setup.sh counts them)
# A crash, a leak, UB, a broken invariant, an input slower than 10 s or
# more than 2 GiB of memory fails the harness.  Nothing is written to the
# source tree: a found input is reproduced with `tests/fuzz/fuzz-NAME FILE`
# and belongs in tests/fuzz/corpus/NAME/ once the bug is fixed.
#
#   run.sh SRCDIR tests/fuzz/fuzz-NAME...
set -uo pipefail
srcdir=$1; shift
secs=${FUZZ_SECONDS:-60}
out=tests/fuzz
log=$out/fuzz-suite.log
mkdir -p "$out/work" "$out/artifacts"
pass=0 fail=0
lines=()
# Leaks count (libFuzzer checks them when the input ends); UB aborts.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for prog in "$@"; do
    name=${prog##*/fuzz-}
    work=$out/work/$name
    rm -rf "$work"
    mkdir -p "$work"
    cp "$srcdir/tests/fuzz/corpus/$name/"* "$work/"
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix="$out/artifacts/$name-")
    [ -f "$srcdir/tests/fuzz/$name.dict" ] && args+=(-dict="$srcdir/tests/fuzz/$name.dict")
    echo "  FUZZ     $name (${secs} s)"
    # The harness's own directory goes under this one, removed even when a
    # crash skipped the harness's clean-up (tmpfs if there is one: it fsyncs).
    base=/dev/shm; [ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
    tmp=$(mktemp -d "$base/vmsnap-fuzz.XXXXXX")
    rc=0
    TMPDIR=$tmp "$prog" "${args[@]}" "$work" >"$work.log" 2>&1 || rc=$?
    rm -rf "$tmp"
    # "#123 DONE cov: 456 ft: 789 corp: 12/3456b ..." and the final stats
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work.log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work.log" | tail -n 1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work.log" | tail -n 1)
    what="runs ${runs:-?}, exec/s ${eps:-?}, cov ${cov:-?}, ft ${ft:-?}, corpus $(ls "$work" | wc -l)"
    if [ "$rc" = 0 ] && [ -n "$done_line" ]; then
        pass=$((pass + 1)); lines+=("PASS: fuzz-$name ($what)")
    else
        fail=$((fail + 1)); lines+=("FAIL: fuzz-$name (exit $rc; $what; see $work.log)")
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*invariant failed|.*runtime error)' "$work.log" | head -n 5 >&2
        ls "$out/artifacts/$name-"* 2>/dev/null >&2
    fi
    echo "${lines[-1]}"
done
{
    echo "vmsnap fuzzing: ${secs} s per harness"
    echo "# TOTAL: $((pass + fail))"
    echo "# PASS: $pass"
    echo "# FAIL: $fail"
    echo
    printf '%s\n' "${lines[@]}"
} >"$log"
[ "$fail" = 0 ]
