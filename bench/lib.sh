# Shared helpers for the benchmarks (bash).  A bench script does
#
#   BENCH_NAME=delete-bytes
#   . "$(dirname "$0")/lib.sh"
#   bench_init "$@"            # BUILD_DIR as $1
#
# and then uses the project's test fixtures (tests/fixtures/*.sh), which
# this file sources: functions.sh (traps, cleanups, mk_tmpdir), and on
# demand libvirt.sh, engine.sh, ceph.sh.  Every bench sets up its own stack
# in a private temporary directory (under $BENCH_TMPDIR, default /tmp) and
# tears it down at exit.
#
# Environment (all benches):
#   BENCH_QUICK=1      small sizes and few repetitions (a smoke run: the
#                      numbers mean little)
#   BENCH_REPS=N       repetitions where a bench repeats a measurement
#   BENCH_TMPDIR=DIR   where the temporary directory goes (default /tmp;
#                      not under /etc, /var/lib, /var/log, /var/cache, /run:
#                      the private libvirtd hides those)
#   BENCH_KEEP=1       keep the temporary directory
#
# Output: a header (machine, versions, mode), markdown tables, and the
# command that reproduces the run.  Progress goes to stderr.

if [ -z "${BASH_VERSION:-}" ]; then
    echo "bench/lib.sh needs bash" >&2
    exit 1
fi

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
srcdir=$(cd "$BENCH_DIR/.." && pwd)
export srcdir
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"

BENCH_QUICK=${BENCH_QUICK:-0}
BENCH_ARGS=()

bench_usage ()
{
    echo "usage: $0 BUILD_DIR   (a configured and built vmsnap tree; run as root)" >&2
    exit 2
}

# bench_init BUILD_DIR: find vmsnap, make the temporary directory.
bench_init ()
{
    [ $# -ge 1 ] || bench_usage
    case $1 in -h|--help) bench_usage ;; esac
    BENCH_ARGS=("$@")
    BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: no build directory '$1'" >&2; exit 2; }
    # The real binary, not libtool's wrapper script (which costs a bash
    # start per call and would be counted as vmsnap's time).
    if [ -x "$BUILD/tools/.libs/vmsnap" ] && [ -d "$BUILD/.libs" ]; then
        VMSNAP=$BUILD/tools/.libs/vmsnap
        export LD_LIBRARY_PATH=$BUILD/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        "$BUILD/tools/vmsnap" backends >/dev/null 2>&1 || true
    elif [ -x "$BUILD/tools/vmsnap" ]; then
        VMSNAP=$BUILD/tools/vmsnap
    else
        echo "$0: $BUILD/tools/vmsnap not found: build first (make)" >&2
        exit 2
    fi
    export VMSNAP
    "$VMSNAP" backends >/dev/null 2>&1 || { echo "$0: $VMSNAP does not run" >&2; exit 2; }
    [ "$(id -u)" = 0 ] || { echo "$0: run as root (private libvirtd, Ceph daemons)" >&2; exit 2; }
    requires jq qemu-img qemu-io xmllint
    export TMPDIR=${BENCH_TMPDIR:-/tmp}
    if [ "${BENCH_KEEP:-0}" = 1 ]; then export VMSNAP_TEST_KEEP=1; fi
    mk_tmpdir
    BENCH_T0=$EPOCHREALTIME
}

# ---------------------------------------------------------------- timing

# now_us: monotonic enough wall clock in microseconds.
now_us () { echo "${EPOCHREALTIME/./}"; }

# time_ms CMD...: run CMD (stdout/stderr to $TEST_TMP/.last.out/.err); sets
# T_MS (milliseconds, 3 decimals) and T_RC.
time_ms ()
{
    local a b
    T_RC=0
    a=${EPOCHREALTIME/./}
    "$@" >"$TEST_TMP/.last.out" 2>"$TEST_TMP/.last.err" || T_RC=$?
    b=${EPOCHREALTIME/./}
    T_MS=$(awk -v d=$(( b - a )) 'BEGIN { printf "%.3f", d / 1000 }')
}

# must CMD...: run CMD, fail the bench with its output if it fails.
must ()
{
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    [ "$rc" = 0 ] || fail "$* exited $rc: $out"
    [ -z "$out" ] || printf '%s\n' "$out"
}

# stats N1 N2 ...: prints "median p95 min max n" (nearest-rank p95).
stats ()
{
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "- - - - 0"; exit }
            if (NR % 2) med = v[(NR + 1) / 2]; else med = (v[NR / 2] + v[NR / 2 + 1]) / 2
            r = int(0.95 * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR
            printf "%.1f %.1f %.1f %.1f %d\n", med, v[r], v[1], v[NR], NR
        }'
}

# ratio A B: A/B with 2 decimals ("-" if B is 0).
ratio ()
{
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'
}

# mib BYTES: MiB with 2 decimals.
mib () { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }

log () { echo "[$(awk -v a="${BENCH_T0/./}" -v b="${EPOCHREALTIME/./}" 'BEGIN { printf "%6.1f", (b - a) / 1e6 }') s] $*" >&2; }

# bench_errmsg FILE: vmsnap's error message in FILE, on one line, shortened.
bench_errmsg ()
{
    tr '\n' ' ' <"$1" | sed -e 's/vmsnap: error: //g' -e 's/  */ /g' -e 's/^ //' -e 's/ $//' | cut -c1-160
}

# bench_spawns ARG...: the processes `vmsnap ARG...` starts, as the library
# counts them (VMSNAP_DEBUG_SPAWNS, doc/performance.md): "N (qemu-img info
# x4, ...)", or "failed (exit N: message)".  Not timed: run it outside the
# timings.
bench_spawns ()
{
    local rc=0 f=$TEST_TMP/.spawns
    rm -f -- "$f"
    VMSNAP_DEBUG_SPAWNS=$f "$VMSNAP" "$@" >/dev/null 2>"$f.err" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "failed (exit $rc: $(bench_errmsg "$f.err"))"
        return 0
    fi
    [ -e "$f" ] || { echo 0; return 0; }
    sort -- "$f" | uniq -c | awk '{ n = $1; t += n; $1 = ""; s = s (s ? ", " : "") substr($0, 2) " x" n }
                                  END { printf "%d (%s)\n", t, s }'
}

# ---------------------------------------------------------------- output

# bench_header TITLE: what ran where.
bench_header ()
{
    local cpu mem
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    echo "## $1"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); mode: $([ "$BENCH_QUICK" = 1 ] && echo "QUICK (smoke sizes, numbers indicative only)" || echo full)"
    echo "- machine: $(nproc) CPUs ($cpu), $mem RAM, kernel $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- vmsnap: $(cd "$srcdir" && git describe --always --dirty 2>/dev/null || echo unknown) ($VMSNAP)"
    echo "- $(qemu-img --version | head -n1)"
}

# bench_footer: the command that reproduces this run.
bench_footer ()
{
    local envs=() v
    for v in $(compgen -e | grep -E '^(BENCH_|VMSNAP_TEST_DOMTYPE)' || true); do
        [ "$v" = BENCH_DIR ] && continue
        envs+=("$v=$(printf '%q' "${!v}")")
    done
    echo
    echo "Reproduce (as root, after a build):"
    echo
    echo '```sh'
    echo "${envs[*]:+${envs[*]} }bench/$(basename "$0") ${BENCH_ARGS[*]}"
    echo '```'
    echo
    echo "(bench wall time: $(awk -v a="${BENCH_T0/./}" -v b="${EPOCHREALTIME/./}" 'BEGIN { printf "%.0f", (b - a) / 1e6 }') s)"
}

# free_mib DIR: free space of DIR's file system in MiB.
free_mib () { df -Pm -- "$1" | awk 'NR == 2 { print $4 }'; }

# avail_mem_mib: MemAvailable in MiB.
avail_mem_mib () { awk '/^MemAvailable/ { print int($2 / 1024) }' /proc/meminfo; }

# xml_domain NAME OUTFILE TARGET:FORMAT:PATH...: a domain XML file with a
# UUID (vmsnap keys its catalog on it).
xml_domain ()
{
    local name=$1 out=$2
    shift 2
    mk_domain_xml "$name" "$out" "$@"
    sed -i "s|<name>$name</name>|&<uuid>$(cat /proc/sys/kernel/random/uuid)</uuid>|" "$out"
}

# domxml_active XMLFILE TARGET: the disk's source file.
domxml_active ()
{
    xmllint --xpath "string(//disk[target/@dev='$2']/source/@file)" "$1"
}
