#!/usr/bin/env bash
# The qcow2-internal backend on a shut-off domain (a domain XML file with two
# qcow2 disks, vda and vdb, both forced to qcow2-internal with --backend):
# write A, s1, write B, s2, write C; revert s1, revert s2; delete s1 (gone
# from both snapshot tables, s2 still reverts right); a snapshot named "2"
# while the table holds an entry whose ID is 2 (qemu-img -a looks IDs up
# first: the wrong entry must not be applied).  Hostile cases, each leaving
# images, tables and catalog unchanged: a snapshot name an image already
# holds (the other disk's entry is rolled back); an image held open by a
# qemu-io; an image holding two entries with the name of ours.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint mkfifo
: "${VMSNAP:?}"
mk_tmpdir

img=$TEST_TMP/img
mkdir "$img"
qemu-img create -q -f qcow2 "$img/vda.qcow2" 64M
qemu-img create -q -f qcow2 "$img/vdb.qcow2" 64M
eng_mk_file_domain qintdom "$TEST_TMP/qintdom.xml" "vda:qcow2:$img/vda.qcow2" "vdb:qcow2:$img/vdb.qcow2"
ENG_DOM=$TEST_TMP/qintdom.xml ENG_KIND=file ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
VMSNAP_STATE_DIR=$TEST_TMP/state
eng_init
BE=(--backend vda=qcow2-internal -b vdb=qcow2-internal)

# tags IMAGE: the names in its snapshot table, sorted, one line.
tags ()
{
    local out
    out=$(qemu-img info --output=json -U -f qcow2 -- "$1") || fail "qemu-img info $1: $out"
    jq -r '[(.snapshots // [])[].name] | sort | join(" ")' <<<"$out"
}

# table IMAGE: ID and name of every entry (to see that nothing changed).
table ()
{
    qemu-img info --output=json -U -f qcow2 -- "$1" |
        jq -r '[(.snapshots // [])[] | "\(.id):\(.name)"] | join(" ")'
}

# expect_tags "vda tags" "vdb tags"
expect_tags ()
{
    local a b
    a=$(tags "$img/vda.qcow2") b=$(tags "$img/vdb.qcow2")
    [ "$a" = "$1" ] && [ "$b" = "$2" ] ||
        fail "snapshot tables: vda has '$a' (want '$1'), vdb has '$b' (want '$2')"
}

# What a failed command must leave as it was: the definition, both tables
# (IDs included), the catalog's view, the image directory.  (The guest data
# is checked with eng_check_state: a rolled-back entry changes the image
# file, not what the guest reads.)
state_of ()
{
    cat -- "$ENG_DOM"
    table "$img/vda.qcow2"
    table "$img/vdb.qcow2"
    "$VMSNAP" list --json "$ENG_DOM" | jq -c 'del(.snapshots[].created)'
    ls -A "$img"
}

unchanged ()   # WHAT BEFORE
{
    local now
    now=$(state_of)
    [ "$now" = "$2" ] || { diff <(printf '%s\n' "$2") <(printf '%s\n' "$now") >&2 || true; fail "$1 changed something (diff above)"; }
}

# qi_create NAME: create with both disks on qcow2-internal; the images stay
# the active sources, the locators are qcow2:IMAGE#NAME.
qi_create ()
{
    local d json
    vms_ok create --json "$ENG_DOM" "$1" "${BE[@]}"
    json=$VMS_OUT
    for d in vda vdb; do
        jq_check "$json" '[.disks[] | select(.target == $t and .backend == "qcow2-internal"
                          and .locator == $l and .new_source == null)] | length == 1' \
            "create $1: $d should be on qcow2-internal with locator qcow2:$img/$d.qcow2#$1 and no new source" \
            --arg t "$d" --arg l "qcow2:$img/$d.qcow2#$1"
        [ "$(eng_active "$d")" = "$img/$d.qcow2" ] || fail "after create $1, $d no longer uses $img/$d.qcow2"
    done
    SNAP_HIST[$1]=$CUR_HIST
    SNAP_PARENT[$1]=$ENG_CURRENT
    ENG_CURRENT=$1
    ENG_DIRTY=0
}

qi_revert ()   # NAME
{
    local json
    vms_ok revert --json "$ENG_DOM" "$1"
    json=$VMS_OUT
    jq_check "$json" '[.disks[] | select(.backend == "qcow2-internal" and .new_source == null
                      and (.note | test("reverted to internal snapshot")))] | length == 2' \
        "revert $1: both disks should say they were reverted in place"
    CUR_HIST=${SNAP_HIST[$1]}
    ENG_CURRENT=$1
    ENG_DIRTY=0
}

# qi_check_list: list --json agrees with the model, every locator is
# qcow2:IMAGE#NAME, and info --json names the backend.
qi_check_list ()
{
    local s d json
    eng_check_list
    for s in "${!SNAP_HIST[@]}"; do
        for d in vda vdb; do
            [ "${LOCS[$s.$d]}" = "qcow2:$img/$d.qcow2#$s" ] ||
                fail "list: $s $d locator '${LOCS[$s.$d]}', want qcow2:$img/$d.qcow2#$s"
        done
        vms_ok info --json "$ENG_DOM" "$s"
        json=$VMS_OUT
        jq_check "$json" '[.disks[].backend] == ["qcow2-internal", "qcow2-internal"]' \
            "info $s: both disks should be on qcow2-internal"
    done
}

# ------------------------------------------------------------- scenario
# The option this test needs; say so plainly if the CLI lacks it.
out=$("$VMSNAP" create --help 2>&1) || true
[[ $out == *--backend* ]] || fail "vmsnap create has no --backend TARGET=BACKEND option"

eng_write A
eng_check_state "A"
eng_expect_mismatch ""
qi_create s1
expect_tags "s1" "s1"
eng_check_state "A"

eng_write B
qi_create s2
expect_tags "s1 s2" "s1 s2"
eng_write C
eng_check_state "A B C"
eng_expect_mismatch "A B"
echo "  write A, create s1, write B, create s2, write C"

qi_revert s1
eng_check_state "A"           # B and C (written after s1) read as zeros
eng_expect_mismatch "A B C"
eng_expect_mismatch "A B"
expect_tags "s1 s2" "s1 s2"   # reverting keeps every snapshot
qi_check_list
echo "  revert s1: B and C are gone"

qi_revert s2
eng_check_state "A B"
eng_expect_mismatch "A"
eng_expect_mismatch "A B C"
qi_revert s1                  # a snapshot can be reverted to again
eng_check_state "A"
qi_revert s2
eng_check_state "A B"
echo "  revert s2, s1, s2"

vms_ok delete --json "$ENG_DOM" s1
jq_check "$VMS_OUT" '[.disks[] | select(.backend == "qcow2-internal" and .kept == false
                      and (.note | test("removed from")))] | length == 2' \
    "delete s1: both disks should say the entry was removed"
eng_forget s1
expect_tags "s2" "s2"
for d in vda vdb; do
    out=$(qemu-img snapshot -l "$img/$d.qcow2") || fail "qemu-img snapshot -l $d: $out"
    if grep -qw s1 <<<"$out"; then echo "$out" >&2; fail "qemu-img snapshot -l still shows s1 in $d"; fi
    grep -qw s2 <<<"$out" || { echo "$out" >&2; fail "qemu-img snapshot -l lost s2 in $d"; }
done
expect_fail 3 "no snapshot named 's1'" "$VMSNAP" revert "$ENG_DOM" s1
eng_check_state "A B"         # deleting s1 changed nothing current
eng_write D
eng_check_state "A B D"
qi_revert s2
eng_check_state "A B"
eng_expect_mismatch "A B D"
eng_expect_mismatch "A"
qi_check_list
echo "  delete s1: gone from both tables, s2 still reverts"

# A snapshot named "2" while the entry with ID 2 is s2 (s1 had ID 1): an
# ID-first lookup of "2" would apply s2 instead.
id=$(qemu-img info --output=json -U -f qcow2 -- "$img/vda.qcow2" | jq -r '.snapshots[] | select(.name == "s2") | .id')
[ "$id" = 2 ] || fail "s2 should have ID 2 in vda, has '$id' (test premise)"
eng_write E
qi_create 2
expect_tags "2 s2" "2 s2"
eng_write F
qi_revert s2
eng_check_state "A B"
qi_revert 2
eng_check_state "A B E"
eng_expect_mismatch "A B"
qi_revert s2
eng_check_state "A B"
qi_check_list
echo "  snapshot named '2' next to the entry with ID 2: each reverts to its own"

# ------------------------------------------------------------ hostile
# A name an image already holds (made outside vmsnap): refused, and the
# entry already taken on the other disk is rolled back.
qemu-img snapshot -c s3 "$img/vdb.qcow2"
before=$(state_of)
expect_fail 3 "already holds an internal snapshot named 's3'" "$VMSNAP" create "$ENG_DOM" s3 "${BE[@]}"
out=$("$VMSNAP" create "$ENG_DOM" s3 "${BE[@]}" 2>&1) || true
[[ $out == *"disk vdb"* && $out == *"$img/vdb.qcow2"* ]] ||
    { echo "$out" >&2; fail "the refusal should name disk vdb and its image"; }
unchanged "create s3 with a foreign s3 in vdb" "$before"
eng_check_state "A B"
expect_tags "2 s2" "2 s2 s3"
expect_fail 3 "no snapshot named 's3'" "$VMSNAP" info "$ENG_DOM" s3
qemu-img snapshot -d s3 "$img/vdb.qcow2"
echo "  create s3 over a foreign s3 in vdb: exit 3, vda's entry rolled back, nothing changed"

# Two entries named like ours: vmsnap cannot tell which is its own.  (In
# vda, the disk handled first: a revert applied on an earlier disk is not
# undone when a later disk fails, the entry's state is the disk's state.)
cp --sparse=always "$img/vda.qcow2" "$TEST_TMP/vda.saved"
qemu-img snapshot -c s2 "$img/vda.qcow2"
# A guest write after s2 (outside the model's ranges), which a revert to s2
# would undo.
img_write "$img/vda.qcow2" qcow2 0x77 $(( 50 << 20 )) 1M
before=$(state_of)
expect_fail 1 "holds 2 internal snapshots named 's2'" "$VMSNAP" revert "$ENG_DOM" s2
unchanged "revert s2 with two entries named s2 in vda" "$before"
eng_check_state "A B"
img_read "$img/vda.qcow2" qcow2 0x77 $(( 50 << 20 )) 1M
expect_fail 1 "holds 2 internal snapshots named 's2'" "$VMSNAP" delete "$ENG_DOM" s2
unchanged "delete s2 with two entries named s2 in vda" "$before"
cp --sparse=always "$TEST_TMP/vda.saved" "$img/vda.qcow2"
rm -f "$TEST_TMP/vda.saved"
qi_revert s2
eng_check_state "A B"
img_read "$img/vda.qcow2" qcow2 0 $(( 50 << 20 )) 1M
echo "  revert with two entries of our name: exit 1, nothing changed"

# An image held open read-write (with QEMU's image locks) by a qemu-io that
# reads commands from a FIFO we keep open.
eng_check_state "A B"
mkfifo "$TEST_TMP/qio.fifo"
qemu-io -f qcow2 "$img/vda.qcow2" <"$TEST_TMP/qio.fifo" >"$TEST_TMP/qio.log" 2>&1 &
qio=$!
exec 9>"$TEST_TMP/qio.fifo"
stop_qio () { exec 9>&-; kill "$qio" 2>/dev/null || true; wait "$qio" 2>/dev/null || true; }
cleanup_fn stop_qio
# Wait for its prompt; do not poll with qemu-img meanwhile (its shared lock
# can make qemu-io's open fail).
for (( i = 0; i < 1500; i++ )); do
    grep -q -e 'qemu-io>' -e "can't open" "$TEST_TMP/qio.log" 2>/dev/null && break
    sleep 0.02
done
out=$(qemu-img info -f qcow2 "$img/vda.qcow2" 2>&1) && fail "qemu-io did not lock $img/vda.qcow2"
[[ $out == *lock* ]] || fail "qemu-img info on the image qemu-io holds: $out"
before=$(state_of)
for op in "create s4" "revert 2" "delete s2"; do
    rc=0
    if [ "${op% *}" = create ]; then
        out=$("$VMSNAP" create "$ENG_DOM" s4 "${BE[@]}" 2>&1) || rc=$?
    else
        out=$("$VMSNAP" "${op% *}" "$ENG_DOM" "${op#* }" 2>&1) || rc=$?
    fi
    [ "$rc" = 1 ] || { printf '%s\n' "$out" >&2; fail "$op while qemu-io holds vda: exit $rc, want 1"; }
    [[ $out == *"disk vda: image $img/vda.qcow2 is in use by another process"* ]] ||
        { printf '%s\n' "$out" >&2; fail "$op while qemu-io holds vda: the message does not say the image is in use"; }
    [[ $out == *"qemu-io (pid $qio)"* ]] ||
        { printf '%s\n' "$out" >&2; fail "$op while qemu-io holds vda: the message does not name qemu-io (pid $qio)"; }
    # A delete that failed on one disk may be left pending (delete only
    # rolls forward): finish it below, once the image is free.
    if [ "${op% *}" != delete ]; then
        unchanged "$op while qemu-io holds vda" "$before"
    fi
    echo "  $op while qemu-io holds vda: exit $rc"
done
stop_qio
vms_ok recover --json "$ENG_DOM"
vms_ok list --json "$ENG_DOM"
if jq -e '.snapshots | any(.name == "s2")' <<<"$VMS_OUT" >/dev/null; then
    # The delete stopped before changing anything: s2 is whole.
    expect_tags "2 s2" "2 s2"
else
    eng_forget s2
    expect_tags "2" "2"
fi
eng_check_state "A B"
qi_check_list
qi_revert 2
eng_check_state "A B E"
echo "  qemu-io released; recover; everything as expected"

# Nothing but the two images in the image directory.
[ "$(ls -A "$img")" = "$(printf 'vda.qcow2\nvdb.qcow2')" ] ||
    { ls -la "$img" >&2; fail "stray files in $img"; }
for d in vda vdb; do
    qemu-img check -q -f qcow2 "$img/$d.qcow2" || fail "qemu-img check $d reports errors"
done

# ---------------------------------------------------------------- crashes
# create, revert and delete with VMSNAP_TEST_CRASH_AFTER=N (vmsnap exits
# after its N-th journaled step) for N = 1, 2, ... until one finishes, each
# from a fresh copy of the same state (c1 = A, c2 = A B, then C written);
# `vmsnap recover`, then: the operation happened on both disks or on
# neither, the tables agree with the catalog, the contents are right, and
# `qemu-img check` is clean (a leaked cluster made where a kill inside
# qemu-img snapshot would leave one is repaired).
W=$TEST_TMP/crash
mkdir -p "$W/img"
qemu-img create -q -f qcow2 "$W/img/vda.qcow2" 64M
qemu-img create -q -f qcow2 "$W/img/vdb.qcow2" 64M
eng_mk_file_domain qintcrash "$W/dom.xml" "vda:qcow2:$W/img/vda.qcow2" "vdb:qcow2:$W/img/vdb.qcow2"
ENG_DOM=$W/dom.xml ENG_IMG_DIR=$W/img img=$W/img VMSNAP_STATE_DIR=$W/state
eng_init
ENG_WRITTEN="" ENG_LEN=()
eng_reset_model
eng_write A
qi_create c1
eng_write B
qi_create c2
eng_write C
cp -a "$W" "$W.template"

crash_loop ()   # CMD ARG
{
    local cmd=$1 arg=$2 n rc t cur d leaked=0
    for (( n = 1; n <= 40; n++ )); do
        rm -rf "$W" && cp -a "$W.template" "$W"
        rc=0
        if [ "$cmd" = create ]; then
            VMSNAP_TEST_CRASH_AFTER=$n "$VMSNAP" create "$ENG_DOM" "$arg" "${BE[@]}" >/dev/null 2>"$TEST_TMP/crash.err" || rc=$?
        else
            VMSNAP_TEST_CRASH_AFTER=$n "$VMSNAP" "$cmd" "$ENG_DOM" "$arg" >/dev/null 2>"$TEST_TMP/crash.err" || rc=$?
        fi
        [ "$rc" = 0 ] || [ "$rc" = 99 ] || { cat "$TEST_TMP/crash.err" >&2; fail "$cmd $arg N=$n: exit $rc (want 99 or 0)"; }
        [ "$rc" = 0 ] || grep -q "VMSNAP_TEST_CRASH_AFTER reached" "$TEST_TMP/crash.err" ||
            { cat "$TEST_TMP/crash.err" >&2; fail "$cmd $arg N=$n: exit 99 without the crash hook's message"; }
        # Killed inside `qemu-img snapshot`, an operation leaves leaked
        # clusters in the image (issue 16, item 8): where a disk's journal
        # says its tag is recorded ("tagged") and its qemu-img step is not
        # done, a leaked cluster is made in its image for recover to
        # repair (the qemu-img check below must pass).
        if [ "$rc" = 99 ]; then
            for d in vda vdb; do
                if awk -v g="[disk.$d]" '/^\[/ { in_g = ($0 == g) }
                        in_g && /^done=/ { t = /[=;]tagged;/; s = /[=;](created|applied|deleted);/ }
                        END { exit !(t && !s) }' "$W"/state/*/journal; then
                    qcow2_leak "$img/$d.qcow2"
                    leaked=$(( leaked + 1 ))
                fi
            done
        fi
        [ "$rc" = 0 ] || vms_ok recover --json "$ENG_DOM"
        vms_ok list --json "$ENG_DOM"
        jq_check "$VMS_OUT" '.pending == null' "$cmd $arg N=$n: still pending after recover"
        # Both tables hold exactly the catalog's snapshots.
        t=$(jq -r '[.snapshots[].name] | sort | join(" ")' <<<"$VMS_OUT")
        expect_tags "$t" "$t"
        cur=$(jq -r '.current' <<<"$VMS_OUT")
        case "$cmd $arg/$t/$cur" in
            "create c3/c1 c2 c3/c3"|"create c3/c1 c2/c2"|"delete c1/c2/c2"|"delete c1/c1 c2/c2")
                eng_check_state "A B C" ;;
            "revert c1/c1 c2/c1") eng_check_state "A" ;;
            "revert c1/c1 c2/c2") eng_check_state "A B C" ;;
            *) fail "$cmd $arg N=$n: after recover the catalog holds '$t', current '$cur'" ;;
        esac
        vms_ok revert "$ENG_DOM" c2
        eng_check_state "A B"
        if [[ " $t " == *" c1 "* ]]; then
            vms_ok revert "$ENG_DOM" c1
            eng_check_state "A"
        fi
        for d in vda vdb; do
            qemu-img check -q -f qcow2 "$img/$d.qcow2" || fail "$cmd $arg N=$n: qemu-img check $d reports errors"
        done
        [ "$rc" = 99 ] || break
    done
    [ "$rc" = 0 ] || fail "$cmd $arg still crashes after N=40"
    [ "$leaked" -ge 1 ] || fail "$cmd $arg: no crash point with a tag recorded and its qemu-img step not done"
    echo "  $cmd $arg: crashed at N=1..$(( n - 1 )), recovered each time ($leaked with a leaked cluster made first)"
}
crash_loop create c3
crash_loop revert c1
crash_loop delete c1
echo "qcow2-internal-offline: ok"
