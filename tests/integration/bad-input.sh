#!/usr/bin/env bash
# vmsnap plan must fail cleanly on hostile domain XML: the documented exit
# code (3 bad input, 4 plan not possible), a message that says what is wrong,
# no crash (exit >= 128), no hang, and no sanitizer report.
#
# Prints one line per case (ok / FAIL / skip); exits 1 if any case failed,
# 77 if vmsnap cannot run here, 0 otherwise.
#
# Environment: VMSNAP (default $abs_top_builddir/tools/vmsnap),
# VMSNAP_TEST_TIMEOUT (seconds per case, default 120), VMSNAP_TEST_STRICT,
# VMSNAP_TEST_KEEP.

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

# Minimal stand-ins, used only if tests/fixtures/functions.sh lacks them.
if ! declare -F cleanup_fn >/dev/null; then
    _bi_cleanups=()
    _bi_run_cleanups() {
        local i
        for (( i = ${#_bi_cleanups[@]} - 1; i >= 0; i-- )); do
            eval "${_bi_cleanups[i]}"
        done
    }
    trap _bi_run_cleanups EXIT
    cleanup_fn() { _bi_cleanups+=("$(printf '%q ' "$@")"); }
fi
if ! declare -F skip_or_fail >/dev/null; then
    skip_or_fail() {
        if [ "${VMSNAP_TEST_STRICT:-0}" = 1 ]; then
            echo "FAIL (VMSNAP_TEST_STRICT=1): $*" >&2
            exit 1
        fi
        echo "SKIP: $*"
        exit 77
    }
fi
if ! declare -F mk_tmpdir >/dev/null; then
    mk_tmpdir() {
        TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmsnap-bad-input.XXXXXX") ||
            { echo "mktemp failed" >&2; exit 99; }
        if [ "${VMSNAP_TEST_KEEP:-0}" = 1 ]; then
            echo "keeping $TEST_TMP"
        else
            cleanup_fn rm -rf "$TEST_TMP"
        fi
    }
fi

if [ -z "${VMSNAP:-}" ]; then
    VMSNAP=${abs_top_builddir:-$PWD}/tools/vmsnap
fi
if [ ! -x "$VMSNAP" ]; then
    echo "bad-input: ERROR: $VMSNAP: not built or not executable (set VMSNAP)" >&2
    exit 99
fi

mk_tmpdir
T=$(cd -P "$TEST_TMP" && pwd -P) || exit 99
mkdir -p "$T/cwd" "$T/config" || exit 99

timeout_cmd=()
if command -v timeout >/dev/null 2>&1; then
    timeout_cmd=(timeout -k 10 "${VMSNAP_TEST_TIMEOUT:-120}")
fi

# ---- generators ----------------------------------------------------------------

dom_head() {
    cat <<EOF
<domain type='kvm'>
  <name>vmsnap-bad-$1</name>
  <uuid>0b7e6c1d-4a8f-4f2b-8d0e-3c5a9e7f1b$2</uuid>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
EOF
}
dom_tail() {
    cat <<'EOF'
  </devices>
</domain>
EOF
}
# file_disk TARGET PATH [FORMAT]
file_disk() {
    cat <<EOF
    <disk type='file' device='disk'>
      <driver name='qemu' type='${3:-qcow2}'/>
      <source file='$2'/>
      <target dev='$1' bus='virtio'/>
    </disk>
EOF
}
# Disk target names as libvirt spells them: vda..vdz, vdaa.., vdba..
target_name() {
    local i=$(( $1 + 1 )) name="" letters=abcdefghijklmnopqrstuvwxyz
    while [ "$i" -gt 0 ]; do
        i=$(( i - 1 ))
        name=${letters:i % 26:1}$name
        i=$(( i / 26 ))
    done
    printf '%s%s' "${2:-vd}" "$name"
}
# repeat N STRING: STRING N times, without a shell loop per copy.  The
# replacement is quoted so that bash 5.2 (patsub_replacement) keeps '&'.
repeat() {
    local s
    s=$(printf "%${1}s" "")
    printf '%s' "${s// /"$2"}"
}
# bytes N CHAR: N copies of one byte, fast enough for megabytes
bytes() { head -c "$1" /dev/zero | tr '\0' "$2"; }

n_disks() { # N NAME: a domain with N empty cdrom drives (nothing to open)
    local i
    dom_head "$2" 03
    for (( i = 0; i < $1; i++ )); do
        printf "    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='%s' bus='scsi'/><readonly/></disk>\n" \
            "$(target_name "$i" sd)"
    done
    echo "    <controller type='scsi' index='0' model='virtio-scsi'/>"
    dom_tail
}

nested_backing() { # DEPTH
    local i
    dom_head "backing-$1" 07
    echo "    <disk type='file' device='disk'>"
    echo "      <driver name='qemu' type='qcow2'/>"
    echo "      <source file='$T/top.qcow2'/>"
    for (( i = 1; i <= $1; i++ )); do
        echo "<backingStore type='file'><format type='qcow2'/><source file='$T/layer$i.qcow2'/>"
    done
    echo "<backingStore/>"
    repeat "$1" "</backingStore>"; echo
    echo "      <target dev='vda' bus='virtio'/>"
    echo "    </disk>"
    dom_tail
}

# ---- the cases -------------------------------------------------------------------

status=0
sanitizer_re='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|ThreadSanitizer|runtime error'

report_fail() {
    local name=$1 why=$2
    status=1
    echo "FAIL $name: $why"
    if [ -s "$T/$name.err" ]; then
        echo "     stderr (first lines):"
        head -n 8 "$T/$name.err" | cut -c 1-300 | sed 's/^/       /'
    fi
}

# check NAME WANT_RC DOMAIN [SUBSTRING...]: run "vmsnap plan DOMAIN"; it must
# exit WANT_RC ("any": any clean exit, "!N": any clean exit but N) and print
# every SUBSTRING on stderr
# (case-insensitive).  A SUBSTRING starting with '!' must NOT appear on
# stdout or stderr.
check() {
    local name=$1 want=$2 domain=$3 rc pat
    shift 3
    ( cd "$T/cwd" &&
      XDG_CONFIG_HOME=$T/config TZ=UTC \
      exec "${timeout_cmd[@]}" "$VMSNAP" plan "$domain" ) \
        >"$T/$name.out" 2>"$T/$name.err"
    rc=$?
    if [ ${#timeout_cmd[@]} -gt 0 ] && [ "$rc" -eq 124 ]; then
        report_fail "$name" "timed out after ${VMSNAP_TEST_TIMEOUT:-120}s"; return
    fi
    if [ "$rc" -ge 128 ]; then
        report_fail "$name" "crashed (exit $rc)"; return
    fi
    if grep -Eq "$sanitizer_re" "$T/$name.err"; then
        report_fail "$name" "sanitizer report on stderr (exit $rc)"; return
    fi
    case $want in
        any) ;;
        !*) if [ "$rc" -eq "${want#!}" ]; then
                report_fail "$name" "expected any exit but ${want#!}, got $rc"; return
            fi ;;
        *)  if [ "$rc" -ne "$want" ]; then
                report_fail "$name" "expected exit $want, got $rc"; return
            fi ;;
    esac
    for pat in "$@"; do
        case $pat in
            !*) if grep -qiF -e "${pat#!}" "$T/$name.out" "$T/$name.err"; then
                    report_fail "$name" "output contains '${pat#!}'"; return
                fi ;;
            *)  if ! grep -qiF -e "$pat" "$T/$name.err"; then
                    report_fail "$name" "stderr lacks '$pat' (exit $rc)"; return
                fi ;;
        esac
    done
    echo "ok   $name (exit $rc)"
}

skip_case() {
    if [ "${VMSNAP_TEST_STRICT:-0}" = 1 ]; then
        status=1
        echo "FAIL $1: $2 (VMSNAP_TEST_STRICT=1)"
    else
        echo "skip $1: $2"
    fi
}

# A valid one-disk domain, the base of several cases.
{ dom_head valid 01; file_disk vda "$T/vda.qcow2"; dom_tail; } >"$T/valid.xml"

# Truncated in the middle of an element.
f=$T/truncated.xml
head -c $(( $(wc -c <"$T/valid.xml") * 2 / 3 )) "$T/valid.xml" >"$f"
check truncated 3 "$f" truncated.xml line

# Well-formed, but not a domain.
f=$T/not-domain.xml
cat >"$f" <<'EOF'
<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
</network>
EOF
check not-domain 3 "$f" "expected <domain>"

# Too many disks: 10,000, and the boundary 1025.
n_disks 10000 many >"$T/disks-10000.xml"
check disks-10000 3 "$T/disks-10000.xml" 1024
n_disks 1025 boundary >"$T/disks-1025.xml"
check disks-1025 3 "$T/disks-1025.xml" 1024
# 1024 is still allowed: whatever the plan says, it is not "bad input".
n_disks 1024 limit >"$T/disks-1024.xml"
check disks-1024 '!3' "$T/disks-1024.xml"

# 5,000-deep element nesting.
f=$T/deep-nesting.xml
{
    dom_head deep 04
    repeat 5000 "<x>"; echo
    repeat 5000 "</x>"; echo
    dom_tail
} >"$f"
check deep-nesting 3 "$f"

# A 12 MB attribute value.
f=$T/huge-attribute.xml
{
    dom_head huge-attr 05
    printf "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='/"
    bytes 12000000 a
    printf "'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n"
    dom_tail
} >"$f"
check huge-attribute 3 "$f"

# NUL bytes in the middle.
f=$T/nul-bytes.xml
{
    dom_head nul 06
    printf '    \0\0\0\n'
    file_disk vda "$T/vda.qcow2"
    dom_tail
} >"$f"
check nul-bytes 3 "$f"

# NUL inside an attribute value: a reader using C strings would see a shorter,
# valid path.
f=$T/nul-in-path.xml
{
    dom_head nul-path 16
    printf "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='%s\0/etc/passwd'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n" "$T/vda.qcow2"
    dom_tail
} >"$f"
check nul-in-path 3 "$f"

# Invalid UTF-8.
f=$T/bad-utf8.xml
{
    dom_head bad-utf8 17
    printf "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='%s/\xff\xfe\xc0\xaf.qcow2'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n" "$T"
    dom_tail
} >"$f"
check bad-utf8 3 "$f"

# <backingStore> nesting: 2000 deep is refused (libxml2's depth limit of 256
# elements comes before vmsnap's sanity bound of 1024 layers); a 200-deep
# chain is one vmsnap handles (issue 17 item 8): its files are missing
# here, which is not a parse error.
nested_backing 2000 >"$T/backing-2000.xml"
check backing-2000 3 "$T/backing-2000.xml" depth
nested_backing 200 >"$T/backing-200.xml"
check backing-200 4 "$T/backing-200.xml" top.qcow2

# A 20 MB file: well-formed, padded with many small comments (one huge text
# node would already trip libxml2's own 10 MB limit, not vmsnap's).
f=$T/big-file.xml
{
    dom_head big 08
    yes '    <!-- padding padding padding padding padding padding padding padding padding -->' |
        head -n 250000
    file_disk vda "$T/vda.qcow2"
    dom_tail
} >"$f"
check big-file 3 "$f" "16 MiB"

# A qcow2 backing loop on disk: a.qcow2 -> b.qcow2 -> a.qcow2.
if command -v qemu-img >/dev/null 2>&1; then
    mkdir -p "$T/loop"
    if ( cd "$T/loop" &&
         qemu-img create -q -f qcow2 a.qcow2 16M &&
         qemu-img create -q -f qcow2 b.qcow2 16M &&
         qemu-img rebase -u -f qcow2 -b b.qcow2 -F qcow2 a.qcow2 &&
         qemu-img rebase -u -f qcow2 -b a.qcow2 -F qcow2 b.qcow2 ); then
        f=$T/backing-loop.xml
        { dom_head loop 09; file_disk vda "$T/loop/a.qcow2"; dom_tail; } >"$f"
        check backing-loop 4 "$f" loop
        # A qcow2 that is its own backing file.
        ( cd "$T/loop" && qemu-img create -q -f qcow2 self.qcow2 16M &&
          qemu-img rebase -u -f qcow2 -b self.qcow2 -F qcow2 self.qcow2 ) ||
            report_fail self-loop "cannot create the image"
        f=$T/self-loop.xml
        { dom_head self-loop 15; file_disk vda "$T/loop/self.qcow2"; dom_tail; } >"$f"
        check self-loop 4 "$f" loop
    else
        report_fail backing-loop "cannot create the looping images with qemu-img"
    fi
else
    skip_case backing-loop "qemu-img not found"
fi

# An empty file.
f=$T/empty.xml
: >"$f"
check empty 3 "$f"

# A path that does not exist (it contains '/', so it is not a domain name).
check nonexistent 3 "$T/no/such/domain.xml" "No such file"

# A directory given as DOMAIN.
mkdir -p "$T/a-directory.xml"
check directory 3 "$T/a-directory.xml"

# Entity expansion ("billion laughs", 10^10 * "lol"): libxml2 detects the
# amplification while parsing, so this is bad input, and never expanded.
f=$T/billion-laughs.xml
{
    echo '<?xml version="1.0"?>'
    echo '<!DOCTYPE domain ['
    echo '  <!ENTITY l0 "lol">'
    for (( i = 1; i <= 10; i++ )); do
        printf '  <!ENTITY l%d "%s">\n' "$i" "$(repeat 10 "&l$(( i - 1 ));")"
    done
    echo ']>'
    dom_head laughs 10 | sed 's|<name>vmsnap-bad-laughs</name>|<name>\&l10;</name>|'
    file_disk vda "$T/vda.qcow2"
    dom_tail
} >"$f"
check billion-laughs 3 "$f" '!lollollol'

# External entity: the file's content must never be read into the domain.
secret=$T/secret.txt
echo "VMSNAP-TEST-SECRET-7f3a" >"$secret"
f=$T/external-entity.xml
{
    echo '<?xml version="1.0"?>'
    echo "<!DOCTYPE domain [ <!ENTITY secret SYSTEM \"file://$secret\"> ]>"
    dom_head xxe 11 | sed 's|<name>vmsnap-bad-xxe</name>|<name>\&secret;</name>\n  <description>\&secret;</description>|'
    file_disk vda "$T/vda.qcow2"
    dom_tail
} >"$f"
check external-entity any "$f" "!VMSNAP-TEST-SECRET-7f3a"

if [ "$status" -ne 0 ]; then
    echo "bad-input: some cases failed (VMSNAP_TEST_KEEP=1 keeps the inputs)"
fi
exit "$status"
