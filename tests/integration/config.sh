#!/usr/bin/env bash
# The configuration (vmsnap.conf, environment, command line):
#  1. precedence default < file < environment < command line, as
#     `vmsnap config --json` reports it (value, source, origin);
#  2. errors, exit 2, naming the file or option, the section, the key and
#     the allowed values: unknown section or key, bad values of every type,
#     bad -o syntax, a missing named file, a malformed file;
#  3. a create given a bad setting changes nothing on disk;
#  4. the shipped etc/vmsnap.conf: every key, commented out, at its default;
#  5. vmsnap.max-chain-depth refuses a create that would deepen a chain,
#     naming the disk, and changes nothing;
#  6. a section of a backend that is not installed is ignored with a note
#     (a copy of vmsnap packaged without the optional backends).
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img
: "${VMSNAP:?}" "${abs_top_builddir:?}"
mk_tmpdir

unset VMSNAP_CONFIG VMSNAP_STATE_DIR VMSNAP_LVM_SNAPSHOT_SIZE VMSNAP_LVM_THIN_MAX_PERCENT \
      VMSNAP_RBD_TIMEOUT VMSNAP_RBD_REVERT_MODE VMSNAP_RBD_ROLLBACK_MAX_OBJECTS \
      VMSNAP_RBD_DELETE_CHILDREN VMSNAP_RBD_KEEP_OLD_HEAD
have_lvm=0 have_rbd=0
[ -e "$abs_top_builddir/backends/lvm/lvm.la" ] && have_lvm=1
[ -e "$abs_top_builddir/backends/rbd/rbd.la" ] && have_rbd=1
T=$TEST_TMP
: > "$T/empty.conf"

# setting JSON KEY FIELD: one field of one setting of `vmsnap config --json`.
setting () { jq -r --arg k "$2" ".settings[] | select(.key == \$k) | .$3 // \"null\"" <<<"$1"; }
# expect_setting JSON KEY VALUE SOURCE [ORIGIN]
expect_setting ()
{
    local v s o
    v=$(setting "$1" "$2" value) s=$(setting "$1" "$2" source) o=$(setting "$1" "$2" origin)
    [ "$v" = "$3" ] && [ "$s" = "$4" ] && [ "$o" = "${5:-null}" ] ||
        fail "$2: value '$v' from $s ($o), want '$3' from $4 (${5:-null})"
}
config_json () { "$VMSNAP" config --json "$@" || fail "vmsnap config --json $* exited $?"; }

# ---------------------------------------------------------- 1. precedence
echo "precedence:"
j=$(config_json --config "$T/empty.conf")
jq -e '.file_read == true and (.notes | length == 0)' <<<"$j" >/dev/null || fail "empty file: $j"
expect_setting "$j" vmsnap.max-chain-depth 0 default
expect_setting "$j" vmsnap.quiesce-timeout 10 default
[ "$(setting "$j" vmsnap.state-dir source)" = default ] || fail "state-dir not the default"
jq -e '.settings | all(.source == "default" and .value == .default)' <<<"$j" >/dev/null ||
    fail "with an empty file, some setting is not its default: $j"
if [ $have_lvm = 1 ]; then
    expect_setting "$j" lvm.snapshot-size 20% default
    expect_setting "$j" lvm.thin-max-percent 90 default
fi
if [ $have_rbd = 1 ]; then
    expect_setting "$j" rbd.revert-mode auto default
    expect_setting "$j" rbd.timeout 10 default
    expect_setting "$j" rbd.keep-old-head false default
    jq -e '.settings[] | select(.key == "rbd.revert-mode") | .values == ["auto","rollback","clone"]' \
        <<<"$j" >/dev/null || fail "rbd.revert-mode does not list its values"
fi

conf=$T/vmsnap.conf
cat > "$conf" <<EOF
# a comment
[vmsnap]
state-dir = $T/from-file
max-chain-depth = 5
quiesce-timeout=30

[lvm]
snapshot-size = 10%

[rbd]
keep-old-head = yes
EOF
j=$(config_json --config "$conf")
expect_setting "$j" vmsnap.state-dir "$T/from-file" file "$conf"
expect_setting "$j" vmsnap.max-chain-depth 5 file "$conf"
expect_setting "$j" vmsnap.quiesce-timeout 30 file "$conf"
[ $have_lvm = 0 ] || expect_setting "$j" lvm.snapshot-size 10% file "$conf"
[ $have_rbd = 0 ] || expect_setting "$j" rbd.keep-old-head yes file "$conf"
# The same file through VMSNAP_CONFIG; --config wins over it.
j=$(VMSNAP_CONFIG=$conf config_json)
expect_setting "$j" vmsnap.max-chain-depth 5 file "$conf"
j=$(VMSNAP_CONFIG=$conf config_json --config "$T/empty.conf")
expect_setting "$j" vmsnap.max-chain-depth 0 default

# The environment over the file; empty is unset.
j=$(VMSNAP_STATE_DIR=$T/from-env VMSNAP_LVM_SNAPSHOT_SIZE=1G VMSNAP_RBD_KEEP_OLD_HEAD= \
    config_json --config "$conf")
expect_setting "$j" vmsnap.state-dir "$T/from-env" env VMSNAP_STATE_DIR
expect_setting "$j" vmsnap.max-chain-depth 5 file "$conf"
[ $have_lvm = 0 ] || expect_setting "$j" lvm.snapshot-size 1G env VMSNAP_LVM_SNAPSHOT_SIZE
[ $have_rbd = 0 ] || expect_setting "$j" rbd.keep-old-head yes file "$conf"

# The command line over both; the last of several wins.
j=$(VMSNAP_STATE_DIR=$T/from-env VMSNAP_LVM_SNAPSHOT_SIZE=1G VMSNAP_RBD_REVERT_MODE=rollback \
    config_json --config "$conf" --state-dir "$T/from-cli" \
    -o vmsnap.max-chain-depth=7 --option vmsnap.max-chain-depth=8 \
    $( [ $have_lvm = 0 ] || echo "-o lvm.snapshot-size=2G" ) \
    $( [ $have_rbd = 0 ] || echo "--rbd-revert-mode clone" ))
expect_setting "$j" vmsnap.state-dir "$T/from-cli" command-line
expect_setting "$j" vmsnap.max-chain-depth 8 command-line
expect_setting "$j" vmsnap.quiesce-timeout 30 file "$conf"
[ $have_lvm = 0 ] || expect_setting "$j" lvm.snapshot-size 2G command-line
[ $have_rbd = 0 ] || expect_setting "$j" rbd.revert-mode clone command-line
if [ $have_lvm = 1 ]; then
    j=$(config_json --config "$conf" --lvm-snapshot-size 512M)
    expect_setting "$j" lvm.snapshot-size 512M command-line
fi

# The text form says the same.
out=$(VMSNAP_STATE_DIR=$T/from-env "$VMSNAP" config --config "$conf" -o vmsnap.quiesce-timeout=60) ||
    fail "vmsnap config (text) exited $?"
grep -Eq "^Configuration file: $conf \(read\)" <<<"$out" || fail "text: no file line: $out"
grep -Eq "^vmsnap\.state-dir +$T/from-env +env VMSNAP_STATE_DIR$" <<<"$out" || fail "text: state-dir: $out"
grep -Eq "^vmsnap\.max-chain-depth +5 +file $conf$" <<<"$out" || fail "text: max-chain-depth: $out"
grep -Eq "^vmsnap\.quiesce-timeout +60 +command line$" <<<"$out" || fail "text: quiesce-timeout: $out"
echo "    ok"

# --------------------------------------------------------------- 2. errors
echo "errors:"
bad=$T/bad.conf
# bad_file CONTENT PATTERN...: vmsnap config --config (CONTENT) exits 2
# and the message has every PATTERN.
bad_file ()
{
    local content=$1 out rc=0
    shift
    printf '%s\n' "$content" > "$bad"
    out=$("$VMSNAP" config --config "$bad" 2>&1) || rc=$?
    [ "$rc" = 2 ] || { echo "$out" >&2; fail "config with '$content': exit $rc, want 2"; }
    for p in "$@"; do
        [[ $out == *"$p"* ]] || fail "config with '$content': '$p' missing from: $out"
    done
    echo "    $out"
}
bad_file $'[vmsnap]\nmax-chain-dept = 3' "$bad: unknown key 'max-chain-dept' in section [vmsnap]" \
    "known keys: state-dir, max-chain-depth, quiesce, quiesce-timeout, hooks-dir, hook-timeout"
bad_file $'[lmv]\nsnapshot-size = 10%' "$bad: unknown section [lmv]" "known sections: vmsnap, "
bad_file $'[vmsnap]\nmax-chain-depth = deep' \
    "$bad: [vmsnap] max-chain-depth='deep' is not a number of images from 0 to 1000"
bad_file $'[vmsnap]\nquiesce-timeout = 3601' \
    "$bad: [vmsnap] quiesce-timeout='3601' is not a number of seconds from 1 to 3600"
bad_file $'[vmsnap]\nstate-dir =' "$bad: [vmsnap] state-dir='' is empty"
bad_file $'[vmsnap]\nthis is not a key file' "configuration file $bad"
if [ $have_lvm = 1 ]; then
    bad_file $'[lvm]\nsnapshot-size = 150%' \
        "$bad: [lvm] snapshot-size='150%' is neither a percentage (e.g. 20%, at most 100%) nor a size (e.g. 512M, 2G)"
    bad_file $'[lvm]\nthin-max-percent = 101' "[lvm] thin-max-percent='101' is not a percentage from 0 to 100"
    bad_file $'[lvm]\nsnapshot-sise = 1G' "unknown key 'snapshot-sise' in section [lvm]" \
        "known keys: snapshot-size, thin-max-percent"
fi
if [ $have_rbd = 1 ]; then
    bad_file $'[rbd]\nrevert-mode = sideways' "$bad: [rbd] revert-mode='sideways': use auto, rollback or clone"
    bad_file $'[rbd]\nkeep-old-head = perhaps' "$bad: [rbd] keep-old-head='perhaps': use true or false"
    bad_file $'[rbd]\ndelete-children = keep' "[rbd] delete-children='keep': use flatten or refuse"
fi
bad_file $'[qcow2-external]\nsize = 1' "unknown key 'size' in section [qcow2-external]" \
    "(known keys: luks-iter-time)"
bad_file $'[qcow2-internal]\nsize = 1' "unknown key 'size' in section [qcow2-internal]" \
    "backend qcow2-internal has no settings"
bad_file $'[qcow2-external]\nluks-iter-time = 5' "[qcow2-external] luks-iter-time='5' is not a number of milliseconds from 10 to 600000"

expect_fail 2 "configuration file $T/nope.conf does not exist (named by --config)" \
    "$VMSNAP" config --config "$T/nope.conf"
expect_fail 2 "configuration file $T/nope.conf does not exist (named by VMSNAP_CONFIG)" \
    env VMSNAP_CONFIG="$T/nope.conf" "$VMSNAP" config
expect_fail 2 "option 'max-chain-depth=3': expected SECTION.KEY=VALUE" \
    "$VMSNAP" config -o max-chain-depth=3
expect_fail 2 "option 'vmsnap.max-chain-depth': expected SECTION.KEY=VALUE" \
    "$VMSNAP" config -o vmsnap.max-chain-depth
expect_fail 2 "option vmsnap.depth: unknown key 'depth' in section [vmsnap] (known keys: " \
    "$VMSNAP" config -o vmsnap.depth=3
expect_fail 2 "option nosuch.key: unknown section [nosuch]" "$VMSNAP" config -o nosuch.key=1
expect_fail 2 "option vmsnap.max-chain-depth='-1' is not a number of images from 0 to 1000" \
    "$VMSNAP" config -o vmsnap.max-chain-depth=-1
expect_fail 2 "Unknown option" "$VMSNAP" config --bogus
expect_fail 2 "config takes no arguments" "$VMSNAP" config extra
if [ $have_lvm = 1 ]; then
    expect_fail 2 "option lvm.snapshot-size='lots' is neither a percentage" \
        "$VMSNAP" config --lvm-snapshot-size lots
    expect_fail 2 "VMSNAP_LVM_SNAPSHOT_SIZE='0%' is neither a percentage" \
        env VMSNAP_LVM_SNAPSHOT_SIZE=0% "$VMSNAP" config
    expect_fail 2 "VMSNAP_LVM_THIN_MAX_PERCENT='abc' is not a percentage" \
        env VMSNAP_LVM_THIN_MAX_PERCENT=abc "$VMSNAP" config
fi
if [ $have_rbd = 1 ]; then
    expect_fail 2 "option rbd.revert-mode='sideways': use auto, rollback or clone" \
        "$VMSNAP" config --rbd-revert-mode sideways
    expect_fail 2 "VMSNAP_RBD_TIMEOUT='soon' is not a number of seconds from 1 to 3600" \
        env VMSNAP_RBD_TIMEOUT=soon "$VMSNAP" config
    expect_fail 2 "VMSNAP_RBD_DELETE_CHILDREN='maybe': use flatten or refuse" \
        env VMSNAP_RBD_DELETE_CHILDREN=maybe "$VMSNAP" config
fi
echo "    ok"

# ------------------------------------------- 3. a bad setting changes nothing
echo "a create with a bad setting:"
img=$T/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 16M
qemu-img create -q -f raw "$img/vdb.raw" 16M
dom=$T/dom.xml
eng_mk_file_domain cfgdom "$dom" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"
state=$T/state
# snapshot_of_disk: what a create could change: the definition, the images
# (names, sizes, times), the state (every file but the lock, which each run
# takes and writes its pid into).
snapshot_of_disk ()
{
    { md5sum "$dom"; find "$img" -printf "%p %s %T@ %C@\n" | sort
      [ ! -d "$state" ] || find "$state" ! -name lock -type f -exec md5sum {} + | sort; } | md5sum
}
before=$(snapshot_of_disk)
for args in "-o vmsnap.max-chain-depth=many" "-o vmsnap.nokey=1" "--config $bad" \
            "--config $T/nope.conf" "-o bogus"; do
    rc=0; out=$("$VMSNAP" create --state-dir "$state" $args "$dom" s1 2>&1) || rc=$?
    [ "$rc" = 2 ] || { echo "$out" >&2; fail "create $args: exit $rc, want 2"; }
    [ "$(snapshot_of_disk)" = "$before" ] || fail "create $args changed something on disk"
    [ ! -e "$state" ] || fail "create $args made the state directory"
    echo "    create $args: $out"
done
if [ $have_lvm = 1 ]; then
    expect_fail 2 "option lvm.snapshot-size='lots'" \
        "$VMSNAP" create --state-dir "$state" --lvm-snapshot-size lots "$dom" s1
    [ "$(snapshot_of_disk)" = "$before" ] && [ ! -e "$state" ] || fail "a bad --lvm-snapshot-size changed something"
fi
# The state directory comes from the configuration.
"$VMSNAP" list --json -o "vmsnap.state-dir=$T/cfgstate" "$dom" >/dev/null || fail "list with -o state-dir"
uuid=$(sed -n 's|.*<uuid>\(.*\)</uuid>.*|\1|p' "$dom")
[ -d "$T/cfgstate/$uuid" ] || fail "-o vmsnap.state-dir=$T/cfgstate was not used"
printf '[vmsnap]\nstate-dir = %s\n' "$T/filestate" > "$T/state.conf"
"$VMSNAP" list --json --config "$T/state.conf" "$dom" >/dev/null || fail "list with state-dir from a file"
[ -d "$T/filestate/$uuid" ] || fail "state-dir from the file was not used"
echo "    ok"

# --------------------------------------------- 4. the shipped etc/vmsnap.conf
echo "etc/vmsnap.conf:"
shipped=$srcdir/etc/vmsnap.conf
j=$(config_json --config "$shipped")
jq -e '.file_read and (.settings | all(.source == "default"))' <<<"$j" >/dev/null ||
    fail "the shipped file sets something: $j"
# Every key the built tree knows is in it, commented out, at its default.
sed 's/^#\([a-z][a-z0-9-]* = \)/\1/' "$shipped" > "$T/uncommented.conf"
j=$(config_json --config "$T/uncommented.conf")
jq -e '.notes | length == 0' <<<"$j" >/dev/null || fail "uncommented shipped file: notes: $j"
jq -e '.settings | all(.source == "file")' <<<"$j" >/dev/null ||
    fail "a key is missing from etc/vmsnap.conf: $(jq -c '[.settings[] | select(.source != "file") | .key]' <<<"$j")"
jq -e '[.settings[] | select(.key != "vmsnap.state-dir" and .key != "vmsnap.hooks-dir" and .value != .default)] | length == 0' <<<"$j" >/dev/null ||
    fail "etc/vmsnap.conf shows a wrong default: $(jq -c '[.settings[] | select(.value != .default) | .key]' <<<"$j")"
echo "    ok"

# ------------------------------------------------------ 5. max-chain-depth
echo "max-chain-depth:"
rm -rf "$state"
export VMSNAP_STATE_DIR=$state
"$VMSNAP" create -o vmsnap.max-chain-depth=2 "$dom" s1 >/dev/null || fail "create s1 (chains 1 -> 2) refused"
list1=$("$VMSNAP" list --json "$dom")
before=$(snapshot_of_disk)
rc=0; out=$("$VMSNAP" create -o vmsnap.max-chain-depth=2 "$dom" s2 2>&1) || rc=$?
[ "$rc" = 4 ] || { echo "$out" >&2; fail "create s2 over max-chain-depth 2: exit $rc, want 4"; }
for w in "disk vda" "2 images deep" "would make it 3" "limit of 2 (vmsnap.max-chain-depth on the command line)" \
         "vmsnap merge $dom --disk vda --max-depth 1" "nothing was changed"; do
    [[ $out == *"$w"* ]] || fail "max-chain-depth refusal lacks '$w': $out"
done
echo "    $out"
[ "$(snapshot_of_disk)" = "$before" ] || fail "the refused create changed something"
[ "$("$VMSNAP" list --json "$dom")" = "$list1" ] || fail "the refused create changed the catalog"
# From a file: the message cites it.
printf '[vmsnap]\nmax-chain-depth = 2\n' > "$T/depth.conf"
expect_fail 4 "limit of 2 (vmsnap.max-chain-depth in $T/depth.conf)" \
    "$VMSNAP" create --config "$T/depth.conf" "$dom" s2
[ "$(snapshot_of_disk)" = "$before" ] || fail "the refused create (file) changed something"
# 0 is no limit; 3 allows one more.
"$VMSNAP" create -o vmsnap.max-chain-depth=3 "$dom" s2 >/dev/null || fail "create s2 under a limit of 3"
"$VMSNAP" create -o vmsnap.max-chain-depth=0 "$dom" s3 >/dev/null || fail "create s3 without a limit"
unset VMSNAP_STATE_DIR
echo "    ok"

# --------------------------------- 6. sections of backends not installed
echo "optional backends not installed:"
install_dir=${VMSNAP_INSTALL_BACKEND_DIR:?}
if [ -d "$install_dir" ]; then
    echo "    note: $install_dir exists on this machine (vmsnap installed); skipped"
elif [ -n "${VMSNAP_VALGRIND:-}" ]; then
    echo "    note: skipped under valgrind (runs a copy of the program)"
else
    mkdir -p "$T/bin" "$T/backends"
    cp "$abs_top_builddir/tools/.libs/vmsnap" "$T/bin/vmsnap"
    cp "$abs_top_builddir"/backends/qcow2-*/.libs/qcow2-*.so "$T/backends/"
    pk () { LD_LIBRARY_PATH="$abs_top_builddir/.libs" VMSNAP_BACKEND_DIR="$T/backends" "$T/bin/vmsnap" "$@"; }
    printf '[vmsnap]\nmax-chain-depth = 4\n[lvm]\nsnapshot-size = not-even-checked\n[rbd]\n' > "$T/opt.conf"
    j=$(pk config --json --config "$T/opt.conf" -o rbd.revert-mode=clone) || fail "packaged: config exited $?"
    expect_setting "$j" vmsnap.max-chain-depth 4 file "$T/opt.conf"
    jq -e '[.settings[] | select(.section == "lvm" or .section == "rbd")] | length == 0' <<<"$j" >/dev/null ||
        fail "packaged: settings of backends that are not installed: $j"
    jq -e --arg f "$T/opt.conf" '.notes == ["section [lvm] of \($f) ignored: backend lvm: not installed (package vmsnap-backend-lvm)",
                                          "option rbd.revert-mode ignored: backend rbd: not installed (package vmsnap-backend-rbd)"]' \
        <<<"$j" >/dev/null || fail "packaged: notes: $(jq -c .notes <<<"$j")"
    out=$(pk config --config "$T/opt.conf") || fail "packaged: config (text) exited $?"
    grep -q "^note: section \[lvm\] of $T/opt.conf ignored: backend lvm: not installed" <<<"$out" ||
        fail "packaged: text has no note: $out"
    # The shipped file (empty [lvm] and [rbd] sections): no note.
    j=$(pk config --json --config "$shipped") || fail "packaged: shipped file: exit $?"
    jq -e '.notes == []' <<<"$j" >/dev/null || fail "packaged: shipped file: notes $(jq -c .notes <<<"$j")"
    # Unknown sections are still errors.
    printf '[lmv]\nsnapshot-size = 1G\n' > "$T/typo.conf"
    expect_fail 2 "unknown section [lmv]" pk config --config "$T/typo.conf"
    echo "    ok"
fi
echo "config: ok"
