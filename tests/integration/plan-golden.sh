#!/usr/bin/env bash
# vmsnap golden test runner for `vmsnap plan` (automake log compiler).
#
#   plan-golden.sh path/to/NN-case.xml
#
# Makefile.am:  TEST_EXTENSIONS = .xml
#               XML_LOG_COMPILER = $(srcdir)/tests/integration/plan-golden.sh
#
# NN-case.xml is a libvirt domain XML whose image paths are written @DIR@/name.
# Its first comment block tells this script what to build and which arguments
# to pass:
#
#   <!-- vmsnap-test
#   # a comment
#   image NAME FORMAT SIZE [OPTION]...   create an image with qemu-img
#   dir NAME                             create a directory
#   file NAME [SIZE]                     create a plain file (empty by default)
#   symlink NAME TARGET                  create a symlink NAME -> TARGET
#   remove NAME                          delete NAME again (e.g. a chain's middle)
#   args ARG...                          extra CLI arguments (may repeat)
#   -->
#
# image OPTIONs (FORMAT is any qemu-img format: qcow2 raw vmdk vdi vpc vhdx ...):
#   backing=NAME:FMT        create with -b NAME -F FMT (NAME as written ends up in
#                           the header, so a relative NAME stays relative)
#   backing-unsafe=NAME:FMT the same with -u: the backing file is not opened
#                           (for json: and protocol names, which must never be)
#   backing-nofmt=NAME      qcow2 only: record backing file NAME but no backing
#                           format (QEMU >= 6.1 refuses to create that, so the
#                           header is patched; see qcow2_set_backing_nofmt in tests/fixtures/functions.sh)
#   loop-with=NAME          qcow2 only: make this image and NAME (created as qcow2
#                           of the same size if not declared earlier) backing
#                           files of each other; loop-with=<itself> is allowed
#   internal-snapshot=NAME  qemu-img snapshot -c NAME (may repeat)
#   o=KEY=VALUE             pass -o KEY=VALUE to qemu-img create (may repeat),
#                           e.g. o=compat=0.10  o=subformat=monolithicFlat
#                           o=data_file=NAME
# NAMEs are relative to the test directory (@DIR@); "@DIR@" is expanded in
# NAMEs, TARGETs, backing names and args.
#
# Since XML forbids "--" inside comments, the block is replaced by empty lines
# in the copy that vmsnap reads (line numbers stay those of the source file),
# so "args --memory" works although the source file is then not strictly XML.
#
# The script runs "$VMSNAP" plan --json COPY ARGS..., replaces the temporary
# directory by @DIR@ in stdout, appends "exit: N" and compares the result with
# NN-case.expected next to the XML.  VMSNAP_REGEN_GOLDEN=1 writes the
# .expected file instead.  It also runs the human output (no --json) and checks
# that it exits with the same code.  Neither run may crash (exit >= 128) or
# print sanitizer reports.
#
# Environment: VMSNAP (default $abs_top_builddir/tools/vmsnap),
# VMSNAP_REGEN_GOLDEN, VMSNAP_TEST_TIMEOUT (seconds per run, default 120),
# VMSNAP_TEST_KEEP=1 keeps the temporary directory.
#
# Exit: 0 pass, 1 fail, 77 skip, 99 hard error (broken test case or setup).

# Makefile.am may run this with $(SHELL), which can be a POSIX sh.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi

LC_ALL=C
export LC_ALL
unset LANGUAGE

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${srcdir:=$script_dir/../..}"
: "${top_srcdir:=$srcdir}"

if [ -f "$script_dir/../fixtures/functions.sh" ]; then
    # shellcheck source=/dev/null
    . "$script_dir/../fixtures/functions.sh"
elif [ -f "$top_srcdir/tests/fixtures/functions.sh" ]; then
    # shellcheck source=/dev/null
    . "$top_srcdir/tests/fixtures/functions.sh"
fi

# Minimal stand-ins, used only while tests/fixtures/functions.sh does not
# provide these helpers.
if ! declare -F cleanup_fn >/dev/null; then
    _pg_cleanups=()
    _pg_run_cleanups() {
        local i
        for (( i = ${#_pg_cleanups[@]} - 1; i >= 0; i-- )); do
            eval "${_pg_cleanups[i]}"
        done
    }
    trap _pg_run_cleanups EXIT
    cleanup_fn() { _pg_cleanups+=("$(printf '%q ' "$@")"); }
fi
if ! declare -F skip_or_fail >/dev/null; then
    skip_or_fail() {
        if [ "${VMSNAP_TEST_STRICT:-0}" = 1 ]; then
            echo "FAIL (VMSNAP_TEST_STRICT=1): $*" >&2
            exit 1
        fi
        echo "SKIP: $*" >&2
        exit 77
    }
fi
if ! declare -F requires >/dev/null; then
    requires() {
        local p
        for p in "$@"; do
            command -v "$p" >/dev/null 2>&1 || skip_or_fail "$p is required"
        done
    }
fi
if ! declare -F mk_tmpdir >/dev/null; then
    mk_tmpdir() {
        TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmsnap-test.XXXXXX") ||
            { echo "mktemp failed" >&2; exit 99; }
        if [ "${VMSNAP_TEST_KEEP:-0}" = 1 ]; then
            echo "keeping $TEST_TMP"
        else
            cleanup_fn rm -rf "$TEST_TMP"
        fi
    }
fi

if ! declare -F fail >/dev/null; then
    fail() { echo "FAIL: $*" >&2; exit 1; }
fi
die() { echo "plan-golden: ERROR: $*" >&2; exit 99; }

[ $# -eq 1 ] || die "usage: plan-golden.sh path/to/NN-case.xml"
xml=$1
[ -f "$xml" ] || die "$xml: not found"
case_name=$(basename "$xml" .xml)
expected=${xml%.xml}.expected

requires qemu-img qemu-io

if [ -z "${VMSNAP:-}" ]; then
    VMSNAP=${abs_top_builddir:-$PWD}/tools/vmsnap
fi
[ -x "$VMSNAP" ] || die "$VMSNAP: not built or not executable (set VMSNAP)"

mk_tmpdir
[ -n "${TEST_TMP:-}" ] && [ -d "$TEST_TMP" ] || die "mk_tmpdir did not set TEST_TMP"
TEST_TMP=$(cd -P "$TEST_TMP" && pwd -P) || die "cannot resolve $TEST_TMP"
dir=$TEST_TMP/d        # @DIR@: images and the XML copy
cwd=$TEST_TMP/cwd      # vmsnap runs here, so no image is reachable relatively
mkdir -p "$dir" "$cwd" "$TEST_TMP/config" || die "mkdir failed"

# ---- image helpers ---------------------------------------------------------

# Run a command in $dir, logging it; die on failure.
run_in_dir() {
    echo "+ $*"
    ( cd "$dir" && "$@" ) || die "$case_name: setup command failed: $*"
}

check_name() {
    case $1 in
        ""|/*|..|../*|*/..|*/../*) die "$case_name: bad name '$1' (must be relative to @DIR@)" ;;
    esac
}

# Expand @DIR@ in a word.
expand() { local s=$1; printf '%s' "${s//@DIR@/"$dir"}"; }

do_image() {
    [ $# -ge 3 ] || die "$case_name: image NAME FORMAT SIZE [OPTION]..."
    local name fmt=$2 size=$3 opt bname bfmt
    name=$(expand "$1"); check_name "$name"
    shift 3
    local -a create_o=() snaps=()
    local backing="" backing_fmt="" nofmt="" loop="" unsafe=""
    for opt in "$@"; do
        case $opt in
            backing=*:*)
                bname=${opt#backing=}; bfmt=${bname##*:}; bname=${bname%:*}
                backing=$(expand "$bname"); backing_fmt=$bfmt ;;
            backing-unsafe=*:*)
                bname=${opt#backing-unsafe=}; bfmt=${bname##*:}; bname=${bname%:*}
                backing=$(expand "$bname"); backing_fmt=$bfmt; unsafe=-u ;;
            backing-nofmt=?*) nofmt=$(expand "${opt#backing-nofmt=}") ;;
            loop-with=?*)     loop=$(expand "${opt#loop-with=}"); check_name "$loop" ;;
            internal-snapshot=?*) snaps+=("${opt#internal-snapshot=}") ;;
            o=?*=*)           create_o+=(-o "$(expand "${opt#o=}")") ;;
            *) die "$case_name: image $name: unknown option '$opt'" ;;
        esac
    done
    if [ -n "$nofmt$loop" ] && [ "$fmt" != qcow2 ]; then
        die "$case_name: image $name: backing-nofmt/loop-with need qcow2"
    fi
    local nback=0
    [ -z "$backing" ] || nback=$(( nback + 1 ))
    [ -z "$nofmt" ] || nback=$(( nback + 1 ))
    [ -z "$loop" ] || nback=$(( nback + 1 ))
    [ "$nback" -le 1 ] ||
        die "$case_name: image $name: backing=, backing-nofmt= and loop-with= exclude each other"

    case $name in */*) mkdir -p "$dir/${name%/*}" ;; esac
    if [ -n "$backing" ]; then
        run_in_dir qemu-img create -q -f "$fmt" "${create_o[@]}" $unsafe \
            -b "$backing" -F "$backing_fmt" "$name" "$size"
    else
        run_in_dir qemu-img create -q -f "$fmt" "${create_o[@]}" "$name" "$size"
    fi
    if [ -n "$nofmt" ]; then
        echo "+ set_backing_nofmt $name $nofmt"
        qcow2_set_backing_nofmt "$dir/$name" "$nofmt" || die "$case_name: cannot patch $name"
        # Prove the result: a backing file name, and no backing format.
        local info
        info=$(cd "$dir" && qemu-img info -U -f qcow2 --output=json "$name") ||
            die "$case_name: qemu-img info $name failed after patching"
        grep -q '"backing-filename": ' <<<"$info" ||
            die "$case_name: $name: backing file not recorded"
        ! grep -q '"backing-filename-format"' <<<"$info" ||
            die "$case_name: $name: a backing format is still recorded"
    fi

    if [ -n "$loop" ]; then
        if [ ! -e "$dir/$loop" ]; then
            run_in_dir qemu-img create -q -f qcow2 "$loop" "$size"
        fi
        # -u: the new backing file is not opened, so the loop can be closed.
        run_in_dir qemu-img rebase -u -f qcow2 -b "$loop" -F qcow2 "$name"
        if [ "$loop" != "$name" ]; then
            run_in_dir qemu-img rebase -u -f qcow2 -b "$name" -F qcow2 "$loop"
        fi
    fi

    for opt in "${snaps[@]}"; do
        # QEMU 7.2: "qemu-img snapshot" has no -f option (it probes).
        run_in_dir qemu-img snapshot -q -c "$opt" "$name"
    done
}

# ---- read the comment block -------------------------------------------------

header=$(awk '
    state == 0 && /^[[:space:]]*<!--[[:space:]]*vmsnap-test([[:space:]]|$)/ {
        state = 1; sub(/^[[:space:]]*<!--[[:space:]]*vmsnap-test/, "")
    }
    state == 1 {
        end = index($0, "-->")
        if (end) { print substr($0, 1, end - 1); state = 2; exit }
        print
    }
    END { if (state != 2) exit 1 }' "$xml") ||
    die "$xml: no complete '<!-- vmsnap-test ... -->' block"

declare -a args=()
while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%$'\r'}
    read -r -a words <<<"$line"
    [ ${#words[@]} -gt 0 ] || continue
    case ${words[0]} in
        \#*) ;;
        image)   do_image "${words[@]:1}" ;;
        dir)     [ ${#words[@]} -eq 2 ] || die "$case_name: dir NAME"
                 n=$(expand "${words[1]}"); check_name "$n"; run_in_dir mkdir -p "$n" ;;
        file)    [ ${#words[@]} -ge 2 ] && [ ${#words[@]} -le 3 ] || die "$case_name: file NAME [SIZE]"
                 n=$(expand "${words[1]}"); check_name "$n"
                 run_in_dir truncate -s "${words[2]:-0}" "$n" ;;
        symlink) [ ${#words[@]} -eq 3 ] || die "$case_name: symlink NAME TARGET"
                 n=$(expand "${words[1]}"); check_name "$n"
                 run_in_dir ln -s "$(expand "${words[2]}")" "$n" ;;
        remove)  [ ${#words[@]} -eq 2 ] || die "$case_name: remove NAME"
                 n=$(expand "${words[1]}"); check_name "$n"; run_in_dir rm -rf -- "$n" ;;
        args)    for w in "${words[@]:1}"; do args+=("$(expand "$w")"); done ;;
        *) die "$case_name: unknown directive '${words[0]}'" ;;
    esac
done <<<"$header"

# The copy vmsnap reads: block blanked out, @DIR@ expanded.
copy=$dir/$case_name.xml
dir_sed=$(printf '%s' "$dir" | sed 's/[\\&|]/\\&/g')
awk '
    state == 0 && /^[[:space:]]*<!--[[:space:]]*vmsnap-test([[:space:]]|$)/ { state = 1 }
    state == 1 { if (index($0, "-->")) state = 2; print ""; next }
    { print }' "$xml" | sed "s|@DIR@|$dir_sed|g" >"$copy" || die "cannot write $copy"

# ---- run ---------------------------------------------------------------------

timeout_cmd=()
if command -v timeout >/dev/null 2>&1; then
    timeout_cmd=(timeout -k 10 "${VMSNAP_TEST_TIMEOUT:-120}")
fi

# run_vmsnap OUT ERR ARG...: sets $rc.
run_vmsnap() {
    local out=$1 err=$2
    shift 2
    echo "+ $VMSNAP $*"
    ( cd "$cwd" &&
      XDG_CONFIG_HOME=$TEST_TMP/config TZ=UTC \
      exec "${timeout_cmd[@]}" "$VMSNAP" "$@" ) >"$out" 2>"$err"
    rc=$?
    if [ -s "$err" ]; then
        echo "--- stderr:"
        cat "$err"
        echo "---"
    fi
}

sanitizer_re='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error'
status=0

run_vmsnap "$TEST_TMP/json.out" "$TEST_TMP/json.err" plan --json "$copy" "${args[@]}"
json_rc=$rc
run_vmsnap "$TEST_TMP/human.out" "$TEST_TMP/human.err" plan "$copy" "${args[@]}"
human_rc=$rc
echo "--- human output (exit $human_rc):"
cat "$TEST_TMP/human.out"
echo "---"

for run in json human; do
    if [ "$run" = json ]; then r=$json_rc; else r=$human_rc; fi
    if [ ${#timeout_cmd[@]} -gt 0 ] && [ "$r" -eq 124 ]; then
        echo "FAIL: $run run timed out after ${VMSNAP_TEST_TIMEOUT:-120}s" >&2; status=1
    elif [ "$r" -ge 128 ]; then
        echo "FAIL: $run run crashed (exit $r)" >&2; status=1
    fi
    if grep -Eq "$sanitizer_re" "$TEST_TMP/$run.err"; then
        echo "FAIL: $run run: sanitizer report on stderr" >&2; status=1
    fi
done
if [ "$json_rc" -ne "$human_rc" ]; then
    echo "FAIL: plan --json exited $json_rc but plan exited $human_rc" >&2
    status=1
fi

# Golden text: stdout with the temporary paths replaced, then the exit code.
out=$(cat "$TEST_TMP/json.out"; echo x)
out=${out%x}
# Longest first: $dir and $cwd live inside $TEST_TMP.  JSON writers may
# escape '/' as '\/', so replace that spelling too.
for pair in "$dir=@DIR@" "$cwd=@CWD@" "$TEST_TMP=@TMP@"; do
    p=${pair%=*} tag=${pair##*=}
    out=${out//"$p"/"$tag"}
    out=${out//"${p//\//\\/}"/"$tag"}
done
actual=$TEST_TMP/actual
{
    printf '%s' "$out"
    if [ -n "$out" ] && [ "${out: -1}" != $'\n' ]; then echo; fi
    echo "exit: $json_rc"
} >"$actual"

if [ "$status" -ne 0 ]; then
    echo "--- stdout (--json):"
    cat "$actual"
    fail "$case_name: the CLI misbehaved (golden file not touched)"
fi

rel=${xml#"$srcdir"/}
rel=${rel#./}

if [ "${VMSNAP_REGEN_GOLDEN:-0}" = 1 ]; then
    cp "$actual" "$expected" || die "cannot write $expected"
    echo "regenerated $expected"
    exit 0
fi

if [ ! -f "$expected" ]; then
    echo "--- actual:"
    cat "$actual"
    fail "$expected is missing; review the output above, then create it with:
    VMSNAP_REGEN_GOLDEN=1 make check TESTS=$rel"
fi

if ! diff -u "$expected" "$actual"; then
    fail "$case_name: output differs from $expected (if the change is intended:
    VMSNAP_REGEN_GOLDEN=1 make check TESTS=$rel)"
fi
echo "PASS: $case_name (exit $json_rc)"
exit 0
