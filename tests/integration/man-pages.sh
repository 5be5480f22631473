#!/usr/bin/env bash
# The man pages: every page formats without a warning (groff -man -ww);
# vmsnap(1) documents exactly the commands of `vmsnap --help` and, for each,
# exactly the options of `vmsnap COMMAND --help-all`; every environment
# variable the code reads is documented; the example backend of
# vmsnap-backend(7) compiles warning-free, loads, and snapshots, reverts and
# deletes a raw disk.
#
# The configuration options of the configuration spec (vmsnap.conf(5), `vmsnap
# config`) are documented before their code is merged: while `vmsnap config`
# does not exist, exactly those (SPEC_ONLY below) may be documented and absent
# from --help.  Once it exists the check is strict both ways.
#
# Layout the check relies on (see the comment at the top of doc/vmsnap.1):
# a command is a subsection ".SS vmsnap COMMAND"; its options are the tags of
# its ".TP" entries; a command subsection that mentions "Domain options" or
# "Configuration options" also has the options of that subsection of
# COMMON OPTIONS.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires groff jq pkg-config
: "${VMSNAP:?}" "${abs_top_builddir:?}"
mk_tmpdir

pages=("$srcdir/doc/vmsnap.1" "$srcdir/doc/vmsnap.conf.5" "$srcdir/doc/vmsnap-backend.7")
SPEC_ONLY=(--config -o --option --lvm-snapshot-size --rbd-revert-mode)
failures=0
bad () { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# ---- 1. groff finds nothing to warn about ---------------------------------
for p in "${pages[@]}"; do
    out=$(groff -man -ww -z "$p" 2>&1) || bad "groff failed on $p: $out"
    [ -z "$out" ] || bad "groff warns on $(basename "$p"): $out"
    # and it renders to something with the page's sections
    txt=$(groff -man -Tutf8 "$p" 2>/dev/null | sed 's/.\x08//g')
    for s in NAME DESCRIPTION "SEE ALSO"; do
        grep -q "^$s" <<<"$txt" || bad "$(basename "$p"): no $s section in the rendered page"
    done
done
echo "groff: ${#pages[@]} pages checked"

# ---- 2. commands and options: vmsnap(1) against --help ----------------------
if "$VMSNAP" config --help >/dev/null 2>&1; then have_config=1; else have_config=0; fi

# "COMMAND<TAB>OPTION" for each documented option, "COMMAND<TAB>@GROUP" for
# a reference to a COMMON OPTIONS group, "@GROUP<TAB>OPTION" for its options,
# and "COMMAND<TAB>" for each command subsection.
man_opts=$(awk '
    function opts_of(s,   t) {
        gsub(/\\f[BIRP]/, "", s); gsub(/\\-/, "-", s)
        while (match(s, /--[a-z0-9][a-z0-9-]*/)) {
            print key "\t" substr(s, RSTART, RLENGTH); s = substr(s, RSTART + RLENGTH)
            # short options: "-x" alone, not inside a long one
        }
    }
    function shorts_of(s) {
        gsub(/\\f[BIRP]/, "", s); gsub(/\\-/, "-", s); gsub(/--[a-z0-9-]+/, "", s)
        while (match(s, /(^|[ ",])-[a-zA-Z]([ ",=]|$)/)) {
            t = substr(s, RSTART, RLENGTH); sub(/^[ ",]/, "", t); sub(/[ ",=]$/, "", t)
            print key "\t" t; s = substr(s, RSTART + RLENGTH - 1)
        }
    }
    /^\.SH / { key = ""; sh = $0; next }
    /^\.SS / {
        t = $0; sub(/^\.SS +"?/, "", t); sub(/"$/, "", t); gsub(/\\f[BIRP]/, "", t)
        key = ""
        if (t ~ /^vmsnap [a-z]/) { split(t, w, " "); key = w[2]; print key "\t" }
        else if (sh ~ /COMMON OPTIONS/) key = "@" t
        next
    }
    key == "" { next }
    tp { tp = 0; opts_of($0); shorts_of($0); next }
    /^\.TP/ { tp = 1; next }
    key !~ /^@/ && /Domain options/ { print key "\t@Domain options" }
    key !~ /^@/ && /Configuration options/ { print key "\t@Configuration options" }
' "$srcdir/doc/vmsnap.1")
[ -n "$man_opts" ] || fail "no command found in doc/vmsnap.1"

# Documented options of COMMAND, groups expanded, one per line, sorted.
man_options_of () {
    local cmd=$1 g
    {
        awk -F'\t' -v c="$cmd" '$1 == c && $2 != "" && $2 !~ /^@/ { print $2 }' <<<"$man_opts"
        awk -F'\t' -v c="$cmd" '$1 == c && $2 ~ /^@/ { print $2 }' <<<"$man_opts" |
            while IFS= read -r g; do
                awk -F'\t' -v g="$g" '$1 == g { print $2 }' <<<"$man_opts"
            done
    } | sort -u
}

# Options of COMMAND from --help-all (without the --help* ones).
help_options_of () {
    "$VMSNAP" "$1" --help-all | sed -n 's/^ \+\(-[[:alnum:]], \+\)\?\(--[[:alnum:]-]\+\).*/\1 \2/p' |
        tr ', ' '\n\n' | grep -v -e '^$' -e '^--help' -e '^-h$' | sort -u
}

help_cmds=$("$VMSNAP" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p' | sort -u)
man_cmds=$(awk -F'\t' '$1 !~ /^@/ { print $1 }' <<<"$man_opts" | grep -vx help | sort -u)
[ "$(wc -l <<<"$help_cmds")" -ge 10 ] || fail "vmsnap --help lists too few commands: $help_cmds"
while IFS= read -r c; do
    grep -qx "$c" <<<"$man_cmds" || bad "command '$c' (vmsnap --help) has no '.SS vmsnap $c' in vmsnap.1"
done <<<"$help_cmds"
while IFS= read -r c; do
    grep -qx "$c" <<<"$help_cmds" && continue
    [ "$c" = config ] && [ "$have_config" = 0 ] && continue
    bad "vmsnap.1 documents command '$c', which vmsnap --help does not list"
done <<<"$man_cmds"

checked=0
while IFS= read -r c; do
    [ "$c" = config ] && [ "$have_config" = 0 ] && continue
    hopts=$(help_options_of "$c") || { bad "vmsnap $c --help-all failed"; continue; }
    mopts=$(man_options_of "$c")
    while IFS= read -r o; do
        [ -n "$o" ] || continue
        grep -qx -- "$o" <<<"$mopts" || bad "vmsnap $c: option $o (--help-all) is not in vmsnap.1"
    done <<<"$hopts"
    while IFS= read -r o; do
        [ -n "$o" ] || continue
        grep -qx -- "$o" <<<"$hopts" && continue
        if [ "$have_config" = 0 ] && grep -qx -- "$o" <<<"$(printf '%s\n' "${SPEC_ONLY[@]}")"; then
            continue
        fi
        bad "vmsnap $c: vmsnap.1 documents $o, which --help-all does not list"
    done <<<"$mopts"
    checked=$((checked + 1))
done <<<"$man_cmds"
echo "options: $checked commands compared with --help-all (vmsnap config: $([ $have_config = 1 ] && echo present, strict || echo absent, spec options tolerated))"

# ---- 3. environment ---------------------------------------------------------
env_doc=$(for p in "${pages[@]}"; do
              awk '/^\.SH /{ on = ($0 ~ /ENVIRONMENT/) } on' "$p"
          done | sed 's/\\f[BIRP]//g')
# Read by the code: g_getenv literals, and the environment variable each
# setting declares (the core reads those for the backends; vmsnap config
# lists them).
code_env=$( { cat "$srcdir"/libvmsnap/*.c "$srcdir"/backends/*/*.c "$srcdir"/tools/*.c |
                grep -o 'g_getenv ("[A-Z_]*")' | sed 's/.*"\(.*\)".*/\1/'
              if [ "$have_config" = 1 ]; then
                  "$VMSNAP" config --json | jq -r '.settings[].env // empty'
              fi; } | sort -u)
[ -n "$code_env" ] || fail "found no g_getenv in the sources"
while IFS= read -r v; do
    grep -qw -- "$v" <<<"$env_doc" || bad "environment variable $v (read by the code) is not in an ENVIRONMENT section"
done <<<"$code_env"
for v in $(grep -o 'VMSNAP_[A-Z0-9_]*' <<<"$env_doc" | sort -u); do
    grep -qx "$v" <<<"$code_env" && continue
    [ "$v" = VMSNAP_CONFIG ] && [ "$have_config" = 0 ] && continue
    bad "ENVIRONMENT documents $v, which no code reads"
done
echo "environment: $(wc -l <<<"$code_env") variables"

# ---- 4. vmsnap.conf(5) keys against vmsnap config ---------------------------
conf_keys=$(awk '/^\.SS \[/ { s = $2; gsub(/[\[\]]/, "", s); next } /^\.SH/ { s = "" }
                 s != "" && tp { tp = 0; k = $0; sub(/^\.B +/, "", k); gsub(/\\-/, "-", k); print s "." k; next }
                 /^\.TP/ { tp = 1 }' "$srcdir/doc/vmsnap.conf.5")
[ "$(wc -l <<<"$conf_keys")" -ge 10 ] || bad "vmsnap.conf.5: too few keys found: $conf_keys"
if [ "$have_config" = 1 ]; then
    loaded=$("$VMSNAP" backends --json | jq -r '.[] | select(.status == "loaded") | .name') || true
    cfg=$("$VMSNAP" config) || bad "vmsnap config failed"
    while IFS= read -r k; do
        sec=${k%%.*} key=${k#*.}
        [ "$sec" = vmsnap ] || grep -qx "$sec" <<<"$loaded" || continue
        grep -qw -- "$key" <<<"$cfg" || bad "vmsnap.conf.5 documents $k, which vmsnap config does not show"
    done <<<"$conf_keys"
fi
echo "vmsnap.conf(5): $(wc -l <<<"$conf_keys") keys"

# ---- 5. the example backend of vmsnap-backend(7) ----------------------------
mod=$TEST_TMP/modules
mkdir -p "$mod"
awk '/example-backend begin/ { on = 1; next } /example-backend end/ { on = 0 }
     on && !/^\.(EX|EE)$/' "$srcdir/doc/vmsnap-backend.7" |
    sed -e 's/\\-/-/g' -e 's/\\e/\\/g' >"$mod/rawcopy.c"
grep -q 'VMSNAP_REGISTER_BACKEND (rawcopy)' "$mod/rawcopy.c" || fail "no example backend in vmsnap-backend.7"
# shellcheck disable=SC2046
out=$(${CC:-cc} -shared -fPIC -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter -Werror \
        -I"$srcdir/include" $(pkg-config --cflags glib-2.0) -o "$mod/rawcopy.so" "$mod/rawcopy.c" \
        -L"$abs_top_builddir/.libs" -lvmsnap $(pkg-config --libs glib-2.0) 2>&1) ||
    fail "the example backend does not compile: $out"
export VMSNAP_BACKEND_DIR=$mod
st=$("$VMSNAP" backends --json | jq -r '.[] | select(.name == "rawcopy") | .status + " " + .message') || true
[ "$st" = "loaded " ] || fail "example backend: status '$st'"

img=$TEST_TMP/img
mkdir "$img"
truncate -s 8M "$img/vda.raw"
eng_mk_file_domain rawdom "$TEST_TMP/rawdom.xml" "vda:raw:$img/vda.raw"
export VMSNAP_STATE_DIR=$TEST_TMP/state
dom=$TEST_TMP/rawdom.xml
active () { sed -n "s/.*<source file=[\"']\([^\"']*\)[\"'].*/\1/p" "$dom"; }
"$VMSNAP" plan "$dom" -b vda=rawcopy --json | jq -e '.disks[0].backend == "rawcopy"' >/dev/null ||
    fail "plan does not take the example backend"
printf 'AAAA' | dd of="$img/vda.raw" bs=1 seek=4096 conv=notrunc status=none
cp "$img/vda.raw" "$TEST_TMP/state-a"
"$VMSNAP" create "$dom" s1 -b vda=rawcopy >/dev/null || fail "create s1 with the example backend"
printf 'BBBB' | dd of="$img/vda.raw" bs=1 seek=4096 conv=notrunc status=none
"$VMSNAP" create "$dom" s2 -b vda=rawcopy >/dev/null || fail "create s2 with the example backend"
[ -f "$img/vda.raw.s1" ] && [ -f "$img/vda.raw.s2" ] || fail "example backend: no copies: $(ls "$img")"
"$VMSNAP" revert "$dom" s1 >/dev/null || fail "revert s1 with the example backend"
a=$(active)
[ "$a" != "$img/vda.raw" ] && [ -f "$a" ] || fail "revert: the active image is '$a'"
cmp -s "$a" "$TEST_TMP/state-a" || fail "revert s1: $a does not hold s1's contents"
[ ! -e "$img/vda.raw" ] || fail "revert: the old active image was not discarded"
"$VMSNAP" delete "$dom" s2 >/dev/null || fail "delete s2 with the example backend"
[ ! -e "$img/vda.raw.s2" ] || fail "delete s2: its copy is still there"
[ "$("$VMSNAP" list --names "$dom")" = s1 ] || fail "list --names after the delete: $("$VMSNAP" list --names "$dom")"
unset VMSNAP_BACKEND_DIR
echo "example backend: built, loaded, create/revert/delete ok"

[ "$failures" = 0 ] || fail "$failures problem(s) above"
echo "man-pages: ok"
