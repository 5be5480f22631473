#!/usr/bin/env bash
# Bash completion (completion/vmsnap.bash), driven as bash drives it: COMP_WORDS
# split at blanks and at '=' and ':', COMP_CWORD, COMP_LINE, COMP_POINT.
# Commands, each command's options (against --help-all), domain XML files,
# libvirt domains and disks (libvirt's test driver, no daemon; --connect on
# the line honoured), snapshot names of a real domain (vmsnap list --names,
# which is checked too), backend names after --backend TARGET=, disk targets,
# the keys of vmsnap.conf(5); and no hang when virsh or the domain's lock
# would block.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires qemu-img virsh flock timeout
: "${VMSNAP:?}"
mk_tmpdir
unset LIBVIRT_DEFAULT_URI VMSNAP_STATE_DIR

. "$srcdir/completion/vmsnap.bash"
complete -p vmsnap >/dev/null || fail "the script does not register a completion for vmsnap"

# comp LINE: complete LINE with the cursor at its end, as bash would; sets
# REPLY_LIST (COMPREPLY sorted, one per line).  Readline replaces only what
# follows the last blank, '=' or ':' of the line, so that is what COMPREPLY
# holds ("--backend vda=" offers "qcow2-external", "qemu:///s" "///system").
comp ()
{
    local line=$1 t
    local -a words=()
    for t in $line; do
        while [ -n "$t" ]; do
            [[ $t =~ ^[=:]+ || $t =~ ^[^=:]+ ]]
            words+=("${BASH_REMATCH[0]}")
            t=${t:${#BASH_REMATCH[0]}}
        done
    done
    [[ $line == *' ' ]] && words+=("")
    COMP_WORDS=("${words[@]}")
    COMP_CWORD=$(( ${#words[@]} - 1 ))
    COMP_LINE=$line COMP_POINT=${#line}
    COMPREPLY=()
    set +e
    _vmsnap
    set -e
    REPLY_LIST=$(printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort)
}

# expect LINE WANT...: the completions of LINE are exactly WANT.
expect ()
{
    local line=$1 want
    shift
    comp "$line"
    want=$(printf '%s\n' "$@" | sed '/^$/d' | sort)
    [ "$REPLY_LIST" = "$want" ] ||
        fail "completing '$line': got [$(echo $REPLY_LIST)], want [$(echo $want)]"
}

# expect_has LINE WANT...: the completions of LINE include every WANT.
expect_has ()
{
    local line=$1 w
    shift
    comp "$line"
    for w in "$@"; do
        grep -qxF -- "$w" <<<"$REPLY_LIST" ||
            fail "completing '$line': '$w' missing from [$(echo $REPLY_LIST)]"
    done
}

V=$VMSNAP
checks=0
ok () { checks=$((checks + 1)); }

# ---- commands and options ---------------------------------------------------
cmds=$("$V" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p')
[ "$(wc -l <<<"$cmds")" -ge 10 ] || fail "vmsnap --help lists too few commands"
# shellcheck disable=SC2086
expect "$V " $cmds help --help --version; ok
expect "$V cr" create; ok
expect "$V re" revert recover; ok
expect "$V help de" delete; ok
for c in $cmds; do
    want=$("$V" "$c" --help-all | sed -n 's/^ \+\(-[[:alnum:]], \+\)\?\(--[[:alnum:]-]\+\).*/\2/p' |
           grep -v '^--help-')
    # shellcheck disable=SC2086
    expect "$V $c --" $want
    ok
done
expect "$V merge x.xml --max" --max-depth; ok
expect "$V list x.xml --n" --names --no-wait; ok
expect_has "$V create x.xml s1 -" -b -c -d --backend; ok

# ---- list --names and snapshot names of a real domain -------------------------
img=$TEST_TMP/img
mkdir -p "$img" "$TEST_TMP/doms"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 16M
qemu-img create -q -f raw "$img/vdb.raw" 16M
dom=$TEST_TMP/doms/comp.xml
eng_mk_file_domain compdom "$dom" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"
touch "$TEST_TMP/doms/notes.txt"
state=$TEST_TMP/state
out=$("$V" list --names --state-dir "$state" "$dom") || fail "list --names on a domain without snapshots: exit $?"
[ -z "$out" ] || fail "list --names without snapshots printed '$out'"
for s in s1 s2 b.3; do
    "$V" create --state-dir "$state" "$dom" "$s" >/dev/null || fail "create $s"
done
out=$("$V" list --names --state-dir "$state" "$dom") || fail "list --names: exit $?"
[ "$out" = $'s1\ns2\nb.3' ] || fail "list --names printed '$out'"
expect_fail 2 "exclude each other" "$V" list --names --tree --state-dir "$state" "$dom"
expect_fail 2 "exclude each other" "$V" list --names --json --state-dir "$state" "$dom"
ok

expect "$V revert --state-dir $state $dom " s1 s2 b.3; ok
expect "$V delete --state-dir=$state $dom s" s1 s2; ok
export VMSNAP_STATE_DIR=$state
expect "$V info $dom b" b.3; ok
expect "$V create $dom " ; ok                          # a new name: nothing to offer
expect "$V revert $dom s1 " ; ok                       # no third argument
unset VMSNAP_STATE_DIR
expect "$V revert --state-dir $TEST_TMP/empty-state $dom " ; ok   # another catalog: none

# ---- domain XML files, directories -------------------------------------------
cd "$TEST_TMP"
PATH_SAVED=$PATH
mkdir "$TEST_TMP/nolibvirt"    # a virsh that finds no daemon: files only
printf '#!/bin/sh\necho "error: failed to connect to the hypervisor" >&2\nexit 1\n' >"$TEST_TMP/nolibvirt/virsh"
chmod +x "$TEST_TMP/nolibvirt/virsh"
PATH=$TEST_TMP/nolibvirt:$PATH_SAVED
expect "$V plan doms/" doms/comp.xml; ok
expect "$V chain d" doms; ok
expect "$V check d" doms; ok
PATH=$PATH_SAVED

# ---- backends, disk targets, configuration keys -------------------------------
loaded=$("$V" backends | awk '$2 == "loaded" { print $1 }')
grep -qx qcow2-external <<<"$loaded" || fail "qcow2-external is not loaded: $loaded"
# shellcheck disable=SC2086
expect "$V create $dom x --backend vda=" $loaded; ok
expect "$V create $dom x --backend vda=qcow2-e" qcow2-external; ok
expect "$V create $dom x --backend=vdb=qcow2-i" qcow2-internal; ok
expect "$V create $dom x --backend " vda= vdb=; ok
expect "$V plan $dom -b v" vda= vdb=; ok
expect "$V merge $dom --disk " vda vdb; ok
expect "$V chain --disk=v" ; ok                        # DOMAIN not typed yet

keys=$(awk '/^\.SS \[/ { s = $2; gsub(/[\[\]]/, "", s); next } /^\.SH/ { s = "" }
            s != "" && tp { tp = 0; k = $0; sub(/^\.B +/, "", k); gsub(/\\-/, "-", k); print s "." k "="; next }
            /^\.TP/ { tp = 1 }' "$srcdir/doc/vmsnap.conf.5" | sort)
[ "$(wc -l <<<"$keys")" -ge 10 ] || fail "too few keys in vmsnap.conf.5: $keys"
_vmsnap_cur="" _vmsnap_strip="" COMPREPLY=()
_vmsnap_value -o "" ""
got=$(printf '%s\n' "${COMPREPLY[@]}" | sort)
[ "$got" = "$keys" ] || fail "-o offers [$(echo $got)], vmsnap.conf.5 has [$(echo $keys)]"
_vmsnap_cur="--option=rbd.revert-mode=" _vmsnap_strip="--option=rbd.revert-mode=" COMPREPLY=()
_vmsnap_value --option "--option=" "rbd.revert-mode="
[ "$(printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ')" = "auto clone rollback " ] ||
    fail "--option=rbd.revert-mode= offers [${COMPREPLY[*]}]"
ok
if "$V" config --help >/dev/null 2>&1; then
    expect "$V config -o lvm.s" lvm.snapshot-size=; ok
    expect "$V create $dom x --rbd-revert-mode c" clone; ok
fi

# ---- libvirt: the test driver (no daemon) -----------------------------------
out=$(virsh -q -c test:///default list --all --name 2>&1) || skip_or_fail "virsh cannot use libvirt's test driver: $out"
expect_has "$V plan --connect test:///default " test doms; ok
expect_has "$V list -c test:///default t" test; ok
expect "$V create -c test:///default test x -b " vda=; ok
expect "$V merge --connect=test:///default test --disk " vda; ok
expect "$V plan --connect=qemu:///sy" ///system; ok
expect "$V plan --connect qemu:///s" ///system ///session; ok

# ---- nothing hangs ----------------------------------------------------------
mkdir "$TEST_TMP/slowbin"
cat >"$TEST_TMP/slowbin/virsh" <<'EOF'
#!/bin/sh
echo "slow virsh $*" >>"$TEST_TMP/slowbin/calls"
sleep 30
EOF
chmod +x "$TEST_TMP/slowbin/virsh"
PATH=$TEST_TMP/slowbin:$PATH_SAVED
t0=$SECONDS
expect "$V plan doms/" doms/comp.xml
expect "$V plan --connect test:///x doms/c" doms/comp.xml
[ $((SECONDS - t0)) -le 8 ] || fail "completion waited $((SECONDS - t0)) s for a virsh that hangs"
grep -q -- '-c test:///x list' "$TEST_TMP/slowbin/calls" || fail "--connect not passed to virsh: $(cat "$TEST_TMP/slowbin/calls")"
PATH=$PATH_SAVED
ok
# A domain whose lock another process holds: no names, and no wait.
uuid=$(sed -n 's/.*<uuid>\(.*\)<\/uuid>.*/\1/p' "$dom")
[ -f "$state/$uuid/lock" ] || fail "no lock file $state/$uuid/lock"
( exec 9>>"$state/$uuid/lock"; flock 9; exec sleep 30 ) &    # the lock dies with it
holder=$!
stop_holder () { kill "$holder" 2>/dev/null || true; }
cleanup_fn stop_holder
held=0
for _ in $(seq 50); do
    flock -n "$state/$uuid/lock" true || { held=1; break; }
    sleep 0.1
done
[ "$held" = 1 ] || fail "could not hold the lock of $dom"
t0=$SECONDS
_vmsnap_time_limit=60    # so that only --no-wait can make it quick
expect "$V revert --state-dir $state $dom "
_vmsnap_time_limit=2
[ $((SECONDS - t0)) -le 8 ] || fail "completion waited $((SECONDS - t0)) s for a locked domain"
stop_holder
wait "$holder" 2>/dev/null || true
expect "$V revert --state-dir $state $dom " s1 s2 b.3
ok

echo "completion: $checks checks ok"
