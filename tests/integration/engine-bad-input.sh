#!/usr/bin/env bash
# The snapshot engine on bad input: it must refuse cleanly, say what is
# wrong, and change nothing (or, for a delete interrupted by a full file
# system, lose nothing and finish after `vmsnap recover`).
#   - unknown snapshot (exit 3), duplicate name (exit 2)
#   - names with '/', '..', a newline, 300 characters, ... (exit 2)
#   - an image kept open read-write by a QEMU process (qemu-io)
#   - a qcow2 whose backing file is /etc/passwd with no backing format
#   - a missing file in the middle of a chain (named in the error)
#   - a full file system (tmpfs) during the commit of a delete
#   - a full state directory (tmpfs) when the catalog is written
#   - trust boundaries (issue 16, items 10 and 12): a state directory not
#     ours or not private, symlinks another user planted in it, a domain
#     XML file's owner and mode, planted, garbage and cut-short journals,
#     damaged catalogs (duplicate names, parent cycle, another UUID, a
#     current or a locator that is not the domain's), info's name
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
qemu-img create -q -f raw "$img/vdb.raw" 64M
eng_mk_file_domain engbad "$TEST_TMP/engbad.xml" "vda:qcow2:$img/vda.qcow2" "vdb:raw:$img/vdb.raw"
ENG_DOM=$TEST_TMP/engbad.xml ENG_KIND=file ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
VMSNAP_STATE_DIR=$TEST_TMP/state
eng_init
uuid=$(xmllint --xpath 'string(/domain/uuid)' "$ENG_DOM")
catalog=$VMSNAP_STATE_DIR/$uuid/catalog.xml

eng_write A
eng_create s1 "first"
eng_write B
eng_create s2
eng_verify_all

# state_of: everything a refused command must leave alone.
state_of ()
{
    (cd "$img" && ls -la --time-style=full-iso)
    cat "$catalog" "$ENG_DOM"
    ls -A "$VMSNAP_STATE_DIR/$uuid"
}
# names_of: the same, without times (for commands that may create and
# remove temporary files).
names_of ()
{
    (cd "$img" && stat -c '%n %s' -- *)
    cat "$catalog" "$ENG_DOM"
    ls -A "$VMSNAP_STATE_DIR/$uuid"
}
unchanged ()   # WHAT BEFORE [names]
{
    local now
    if [ "${3:-}" = names ]; then now=$(names_of); else now=$(state_of); fi
    [ "$now" = "$2" ] || { diff <(printf '%s\n' "$2") <(printf '%s\n' "$now") >&2 || true; fail "$1 changed something (diff above)"; }
}

# ------------------------------------------------------------ unknown names
before=$(state_of)
expect_fail 3 "no snapshot named 'nosuch'" "$VMSNAP" revert "$ENG_DOM" nosuch
expect_fail 3 "no snapshot named 'nosuch'" "$VMSNAP" delete "$ENG_DOM" nosuch
expect_fail 3 "no snapshot named 'nosuch'" "$VMSNAP" info "$ENG_DOM" nosuch
expect_fail 3 "no snapshot named 'nosuch'" "$VMSNAP" revert --json "$ENG_DOM" nosuch
unchanged "an unknown snapshot" "$before"
expect_fail 2 "already has a snapshot named 's1'" "$VMSNAP" create "$ENG_DOM" s1
expect_fail 2 "already has a snapshot named 's2'" "$VMSNAP" create --description x "$ENG_DOM" s2
unchanged "a duplicate name" "$before"
echo "  unknown snapshot: exit 3; duplicate name: exit 2; nothing changed"

# ------------------------------------------------------------ invalid names
long=$(printf 'a%.0s' {1..300})
for name in "a/b" "../evil" ".." "x/../y" $'a\nb' "$long" "" ".hidden" "-x" "a b" 'a$b' "é"; do
    shown=$(printf '%q' "$name")
    rc=0
    out=$("$VMSNAP" create "$ENG_DOM" "$name" 2>&1) || rc=$?
    [ "$rc" = 2 ] || { printf '%s\n' "$out" >&2; fail "create $shown: exit $rc, want 2"; }
    [[ $out == *"invalid snapshot name"* || $out == *"Unknown option"* ]] ||
        { printf '%s\n' "$out" >&2; fail "create $shown: no clear message"; }
    unchanged "create $shown" "$before"
done
for cmd in revert delete; do
    expect_fail 2 "invalid snapshot name" "$VMSNAP" "$cmd" "$ENG_DOM" "../s1"
    expect_fail 2 "invalid snapshot name" "$VMSNAP" "$cmd" "$ENG_DOM" "$long"
done
unchanged "an invalid name" "$before"
[ ! -e "$img/b" ] && [ ! -e "$TEST_TMP/evil" ] && [ ! -e "$TEST_TMP/y" ] || fail "a file named after a snapshot appeared"
echo "  invalid names (/ .. newline 300 chars ...): exit 2; nothing changed"

# ------------------------------------------ backing file /etc/passwd, no format
# QEMU refuses to create such an image, so the header is patched
# (qcow2_set_backing_nofmt, tests/fixtures/functions.sh).
evil=$TEST_TMP/evil
mkdir "$evil"
qemu-img create -q -f qcow2 "$evil/vda.qcow2" 64M
qcow2_set_backing_nofmt "$evil/vda.qcow2" /etc/passwd
out=$(qemu-img info -U --output=json -f qcow2 "$evil/vda.qcow2")
jq_check "$out" '.["backing-filename"] == "/etc/passwd" and (has("backing-filename-format") | not)' \
    "the patched image does not name /etc/passwd without a format"
eng_mk_file_domain engevil "$TEST_TMP/evil.xml" "vda:qcow2:$evil/vda.qcow2"
passwd_before=$(stat -c '%s %Y %i' /etc/passwd; md5sum </etc/passwd)
evil_before=$(cd "$evil" && ls -la --time-style=full-iso; md5sum vda.qcow2)
rc=0
out=$("$VMSNAP" create "$TEST_TMP/evil.xml" s1 2>&1) || rc=$?
[ "$rc" != 0 ] && [ "$rc" -lt 99 ] || { printf '%s\n' "$out" >&2; fail "create on a backing file without format: exit $rc"; }
[[ $out == *"/etc/passwd"* && $out == *"without a backing format"* ]] ||
    { printf '%s\n' "$out" >&2; fail "the refusal does not say /etc/passwd has no backing format"; }
echo "  backing /etc/passwd without format: exit $rc: $(head -n 1 <<<"$out" | cut -c1-160)..."
evil_uuid=$(xmllint --xpath 'string(/domain/uuid)' "$TEST_TMP/evil.xml")
[ ! -e "$VMSNAP_STATE_DIR/$evil_uuid/catalog.xml" ] || fail "the refused create wrote a catalog"
[ "$(cd "$evil" && ls -la --time-style=full-iso; md5sum vda.qcow2)" = "$evil_before" ] || fail "the refused create changed $evil"
# Nor may any other command open /etc/passwd as an image.
for cmd in merge chain list; do
    "$VMSNAP" "$cmd" "$TEST_TMP/evil.xml" >/dev/null 2>&1 || true
done
[ "$(stat -c '%s %Y %i' /etc/passwd; md5sum </etc/passwd)" = "$passwd_before" ] || fail "/etc/passwd changed"
[ "$(cd "$evil" && ls -la --time-style=full-iso; md5sum vda.qcow2)" = "$evil_before" ] || fail "a command changed $evil"

# ------------------------------------------- a missing file in the middle
# The chain of vda is vda.qcow2 (s1) <- S2 (s2) <- active.  Take S2 away.
eng_check_list
mid=${LOCS[s2.vda]#*:}
[ "$mid" != "$img/vda.qcow2" ] && [ -f "$mid" ] || fail "unexpected locator of s2: $mid"
before=$(names_of)
mv "$mid" "$TEST_TMP/mid.away"
for op in "create s3" "revert s2" "delete s2" "delete s1" "revert s1"; do
    rc=0
    out=$("$VMSNAP" "${op% *}" "$ENG_DOM" "${op#* }" 2>&1) || rc=$?
    [ "$rc" != 0 ] && [ "$rc" -lt 99 ] ||
        { printf '%s\n' "$out" >&2; fail "$op with $mid missing: exit $rc, want a failure"; }
    [[ $out == *"$mid"* ]] || { printf '%s\n' "$out" >&2; fail "$op with $mid missing: the error does not name it"; }
    echo "  $op with a missing middle file: exit $rc: $(cut -c1-300 <<<"$out")"
done
rc=0
out=$("$VMSNAP" chain --json "$ENG_DOM" 2>&1) || rc=$?
[[ $out == *"$mid"* ]] || { printf '%s\n' "$out" >&2; fail "chain with $mid missing does not name it"; }
mv "$TEST_TMP/mid.away" "$mid"
# A delete refused before it touched any storage must not stay pending: the
# next command (whatever it is) would finish it behind the user's back.
vms_ok list --json "$ENG_DOM"
jq_check "$VMS_OUT" '.pending == null' \
    "a delete refused because $mid was missing (before any storage was touched) is left pending; the next command would carry it out"
unchanged "commands with a missing middle file" "$before" names
eng_verify_all
echo "  missing middle file: refused, named, nothing changed"

# ================================ trust boundaries (issue 16, items 10, 12)
# The state directory must be ours and private; nothing in it is followed
# through a symbolic link or trusted when another user owns it; a catalog
# or journal that vmsnap would not write is refused, with the file and the
# line, and nothing is done.  Another user's part is played by nobody
# (setpriv); root is the victim.
sd=$VMSNAP_STATE_DIR dd=$VMSNAP_STATE_DIR/$uuid journal=$VMSNAP_STATE_DIR/$uuid/journal
victim=$TEST_TMP/victim scr=$TEST_TMP/scratch
mkdir "$scr"
printf 'root only\n' >"$victim"
chmod 0600 "$victim"
victim_was=$(stat -c '%s %Y %i %a %U' "$victim"; md5sum <"$victim")
victim_intact ()   # WHAT
{
    [ -f "$victim" ] && [ ! -L "$victim" ] &&
        [ "$(stat -c '%s %Y %i %a %U' "$victim"; md5sum <"$victim")" = "$victim_was" ] ||
        fail "$1: the victim file $victim changed or is gone"
}
# no_raw OUTPUT WHAT: nothing a terminal would act on (ESC, other controls).
no_raw ()
{
    if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' <<<"$1"; then
        printf '%s\n' "$1" | od -c | head -n 20 >&2
        fail "$2: control characters echoed raw"
    fi
}
# mk_journal FILE: stdin plus the end line vmsnap writes (its checksum), so
# that what is refused is the content, not a missing end line.
mk_journal ()
{
    local body
    body=$(cat)$'\n'
    { printf '%s' "$body"; printf '#vmsnap-journal-end sha256=%s\n' "$(printf '%s' "$body" | sha256sum | cut -d' ' -f1)"; } >"$1"
    chmod 0600 "$1"
}
nobody_does () { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }
requires setpriv sha256sum
before=$(state_of)

# --- a state directory that is not ours and private is refused, named,
# with the fix; so is one inside a directory others can write
for mode in 0777 0770 0703 1777; do
    chmod "$mode" "$sd"
    expect_fail 4 "state directory $sd is writable by other users" "$VMSNAP" list "$ENG_DOM"
    expect_fail 4 "chmod 0700 $sd" "$VMSNAP" create "$ENG_DOM" s9
    chmod 0700 "$sd"
done
chmod 0770 "$dd"
expect_fail 4 "state directory $dd is writable by other users" "$VMSNAP" list "$ENG_DOM"
chmod 0700 "$dd"
chown nobody "$dd"
expect_fail 4 "state directory $dd is owned by another user" "$VMSNAP" create "$ENG_DOM" s9
expect_fail 4 "chown root: $dd" "$VMSNAP" list "$ENG_DOM"
chown root "$dd"
tmode=$(stat -c %a "$TEST_TMP")
chmod 0777 "$TEST_TMP"
expect_fail 4 "is inside directory $TEST_TMP, which is writable by other users" "$VMSNAP" create "$ENG_DOM" s9
expect_fail 4 "chmod go-w $TEST_TMP" "$VMSNAP" list "$ENG_DOM"
chmod "$tmode" "$TEST_TMP"
unchanged "a state directory that is not private" "$before"
echo "  state directory not ours/private (or inside a writable one): refused, named with the fix"

# --- symbolic links another user planted while the directory was open to
# all: root's vmsnap refuses the directory; after the fix it names (and
# never follows) each planted link
chmod 0711 "$TEST_TMP" "$sd"
chmod 0777 "$dd"
cp -p "$catalog" "$scr/catalog.saved"
nobody_does rm -f "$dd/lock"
nobody_does ln -s "$victim" "$dd/lock"
expect_fail 4 "state directory $dd is writable by other users" "$VMSNAP" create "$ENG_DOM" s9
victim_intact "a lock symlink in an open state directory"
chown root: "$dd" && chmod 0700 "$dd"
expect_fail 1 "lock $dd/lock: it is a symbolic link" "$VMSNAP" create "$ENG_DOM" s9
victim_intact "a lock symlink"
rm "$dd/lock"
chmod 0777 "$dd"
mv "$catalog" "$scr/catalog.moved"
nobody_does ln -s "$victim" "$catalog"
nobody_does ln -s "$victim" "$journal"
chown root: "$dd" && chmod 0700 "$dd"
expect_fail 1 "$catalog is a symbolic link" "$VMSNAP" list "$ENG_DOM"
victim_intact "a catalog symlink"
rm "$catalog" && mv "$scr/catalog.moved" "$catalog"
expect_fail 1 "$journal is a symbolic link" "$VMSNAP" create "$ENG_DOM" s9
vms_ok list --json "$ENG_DOM"
jq_check "$VMS_OUT" '.pending.damaged == true and (.pending.error | contains($j))' \
    "list does not show the planted journal link" --arg j "$journal"
victim_intact "a journal symlink"
rm "$journal"
# a regular file another user left there: not trusted either
chmod 0777 "$dd"
nobody_does sh -c "printf '[op]\nkind=create\n' >'$journal'"
chown root: "$dd" && chmod 0700 "$dd"
expect_fail 1 "$journal belongs to uid 65534" "$VMSNAP" create "$ENG_DOM" s9
rm "$journal"
chmod "$tmode" "$TEST_TMP"
chmod 0700 "$sd"
cmp -s "$catalog" "$scr/catalog.saved" || fail "the catalog changed"
unchanged "symlinks planted in the state directory" "$before"
echo "  planted lock/catalog/journal links and another user's journal: refused, named, not followed"

# --- vmsnap run by an unprivileged user (nobody): its own state directory
# in a sticky shared directory is fine; one another user made for it, or
# one in a shared directory without the sticky bit, is refused
chmod 0711 "$TEST_TMP"
mkdir -m 1777 "$scr/sticky"
mkdir -m 0777 "$scr/open"
cp "$ENG_DOM" "$scr/dom.xml"
chmod 0644 "$scr/dom.xml"
out=$(nobody_does env VMSNAP_STATE_DIR="$scr/sticky/nstate" "$VMSNAP" list --json "$scr/dom.xml" 2>&1) ||
    { printf '%s\n' "$out" >&2; fail "nobody's vmsnap with its own state directory in a sticky directory failed"; }
[ "$(stat -c %U "$scr/sticky/nstate/$uuid")" = nobody ] || fail "nobody's state directory is not nobody's"
mkdir -m 0755 "$scr/sticky/rootmade"
rc=0
out=$(nobody_does env VMSNAP_STATE_DIR="$scr/sticky/rootmade" "$VMSNAP" list "$scr/dom.xml" 2>&1) || rc=$?
[ "$rc" = 4 ] && [[ $out == *"state directory $scr/sticky/rootmade is owned by another user"* && $out == *"chown 65534: $scr/sticky/rootmade"* ]] ||
    { printf '%s\n' "$out" >&2; fail "nobody's vmsnap with a state directory root made: exit $rc, want 4 naming it and the fix"; }
rc=0
out=$(nobody_does env VMSNAP_STATE_DIR="$scr/open/nstate" "$VMSNAP" list "$scr/dom.xml" 2>&1) || rc=$?
[ "$rc" = 4 ] && [[ $out == *"is inside directory $scr/open, which is writable by other users"* ]] ||
    { printf '%s\n' "$out" >&2; fail "nobody's vmsnap with a state directory in a non-sticky shared directory: exit $rc, want 4"; }
[ ! -e "$scr/sticky/rootmade/$uuid" ] && [ ! -e "$scr/open/nstate" ] ||
    fail "a refused state directory was used or made"
chmod "$tmode" "$TEST_TMP"
echo "  unprivileged vmsnap: own state directory in a sticky directory fine; another user's, or in an open directory, refused"

# --- a rewritten domain XML file keeps its owner and mode
chown nobody:nogroup "$ENG_DOM"
chmod 0640 "$ENG_DOM"
eng_create s3
[ "$(stat -c '%U:%G %a' "$ENG_DOM")" = "nobody:nogroup 640" ] ||
    fail "create rewrote $ENG_DOM as $(stat -c '%U:%G %a' "$ENG_DOM"), not nobody:nogroup 640"
vms_ok delete "$ENG_DOM" s3
eng_forget s3
[ "$(stat -c '%U:%G %a' "$ENG_DOM")" = "nobody:nogroup 640" ] ||
    fail "delete rewrote $ENG_DOM as $(stat -c '%U:%G %a' "$ENG_DOM"), not nobody:nogroup 640"
chown root:root "$ENG_DOM"
chmod 0600 "$ENG_DOM"
echo "  the domain XML file keeps its owner and mode across rewrites"
before=$(state_of)

# --- a planted journal naming a file outside the domain: a plain create
# must neither remove nor write it, and must say which journal
for variant in garbage undo overlay; do
    case $variant in
    garbage) rec="[core]
done=disk-vda;

[disk.vda]
r.locator=qcow2:$img/vda.qcow2
r.garbage=raw:$victim;" ;;
    undo) rec="[core]
done=disk-vda;

[disk.vda]
r.locator=qcow2:$img/vda.qcow2
r.undo=qcow2:$victim;
r.new_source=$img/nosuch.qcow2" ;;
    overlay) rec="[disk.vda]
s.overlay=$victim" ;;
    esac
    mk_journal "$journal" <<EOF
[op]
kind=create
name=planted
id=77
disks=vda;
backend.vda=qcow2-external
created=1700000000
parent=
description=
domain_xml=

$rec
EOF
    rc=0
    out=$("$VMSNAP" create "$ENG_DOM" s9 2>&1) || rc=$?
    [ "$rc" = 1 ] && [[ $out == *"journal $journal, line "* && $out == *"$victim"* && $out == *"nothing was replayed"* ]] ||
        { printf '%s\n' "$out" >&2; fail "a planted journal ($variant) naming $victim: exit $rc, want 1 and an error naming the journal, its line and the file"; }
    victim_intact "a planted journal ($variant)"
    [ -f "$journal" ] || fail "the planted journal ($variant) was removed"
    vms_ok list "$ENG_DOM"
    [[ $VMS_OUT == *"PENDING: "*"journal $journal, line"* ]] ||
        { echo "$VMS_OUT" >&2; fail "list does not show the refused journal ($variant)"; }
    rm "$journal"
    echo "  planted journal ($variant) naming $victim: exit 1: $(cut -c1-160 <<<"$out")..."
done
unchanged "planted journals" "$before"

# --- damaged journals: garbage (shown, never echoed), cut short
printf 'garbage\x01\x1b[31m\xff\xfe\n[op]\n' >"$journal"
chmod 0600 "$journal"
rc=0
out=$("$VMSNAP" create "$ENG_DOM" s9 2>&1) || rc=$?
[ "$rc" = 1 ] && [[ $out == *"journal $journal, line "* ]] ||
    { printf '%s\n' "$out" >&2; fail "a garbage journal: exit $rc, want 1 naming the journal and a line"; }
no_raw "$out" "create with a garbage journal"
vms_ok list "$ENG_DOM"
[[ $VMS_OUT == *"PENDING: "*"$journal"* ]] || { echo "$VMS_OUT" >&2; fail "list does not show the garbage journal"; }
no_raw "$VMS_OUT" "list with a garbage journal"
mk_journal "$journal" <<EOF
[op]
kind=create
$(printf 'bad\x1b[2Jline')
EOF
expect_fail 1 "journal $journal, line 3: 'bad\\x1b[2Jline' is not a group" "$VMSNAP" create "$ENG_DOM" s9
rm "$journal"
unchanged "garbage journals" "$before"
# A real journal (create s3 killed after its first journaled step), cut
# short at half its size and by its last lines: refused, nothing done;
# whole again, recover finishes it.
rc=0
VMSNAP_TEST_CRASH_AFTER=1 "$VMSNAP" create "$ENG_DOM" s3 >/dev/null 2>&1 || rc=$?
[ "$rc" = 99 ] && [ -f "$journal" ] || fail "create s3 with VMSNAP_TEST_CRASH_AFTER=1: exit $rc, no journal left"
cp -p "$journal" "$scr/journal.whole"
size=$(stat -c %s "$journal")
head -c $(( size / 2 )) "$scr/journal.whole" >"$journal"
before=$(state_of)
expect_fail 1 "journal $journal, line " "$VMSNAP" recover "$ENG_DOM"
expect_fail 1 "cut short" "$VMSNAP" create "$ENG_DOM" s9
head -n -2 "$scr/journal.whole" >"$journal"
expect_fail 1 "does not end with vmsnap's end line" "$VMSNAP" recover "$ENG_DOM"
unchanged "a journal cut short" "$before"
cp -p "$scr/journal.whole" "$journal"
vms_ok recover --json "$ENG_DOM"
jq_check "$VMS_OUT" '.recovered == "create" and .result == "finished"' "recover of the whole journal did not finish"
SNAP_HIST[s3]=$CUR_HIST SNAP_PARENT[s3]=$ENG_CURRENT ENG_CURRENT=s3
eng_verify_all
vms_ok delete "$ENG_DOM" s3
eng_forget s3
echo "  journals: garbage and cut short refused with file and line, shown in list; whole, recovered"
before=$(state_of)

# --- damaged catalogs: refused with their line, nothing done
cp -p "$catalog" "$scr/catalog.saved"
id1=$(xmllint --xpath 'string(//snapshot[@name="s1"]/@id)' "$catalog")
id2=$(xmllint --xpath 'string(//snapshot[@name="s2"]/@id)' "$catalog")
loc1=$(xmllint --xpath 'string(//snapshot[@name="s1"]/disk[@target="vda"]/@locator)' "$catalog")
while IFS='|' read -r what sedexpr want; do
    sed "$sedexpr" "$scr/catalog.saved" >"$catalog"
    cmp -s "$catalog" "$scr/catalog.saved" && fail "catalog case '$what': sed changed nothing"
    for cmd in "list --tree" "create s9" "info s1"; do
        rc=0
        out=$(timeout 60 "$VMSNAP" ${cmd%% *} "$ENG_DOM" ${cmd#* } 2>&1) || rc=$?
        [ "$cmd" != "list --tree" ] || out=$(timeout 60 "$VMSNAP" list --tree "$ENG_DOM" 2>&1) || rc=$?
        [ "$rc" = 1 ] && [[ $out == *"catalog $catalog, line "*"$want"* ]] ||
            { printf '%s\n' "$out" >&2; fail "catalog with $what: $cmd: exit $rc, want 1 and 'catalog $catalog, line N: ...$want'"; }
    done
    echo "  catalog with $what: refused: $(grep -o 'line [0-9]*: [^;]*' <<<"$out" | head -n 1)"
    cp -p "$scr/catalog.saved" "$catalog"
done <<EOF
two snapshots named s1|s/name="s2"/name="s1"/|two snapshots are named 's1'
a parent cycle|s/<snapshot id="$id1" name="s1"/& parent="$id2"/|go round in a circle
another domain's UUID|s/domain-uuid="[^"]*"/domain-uuid="00000000-1111-2222-3333-444444444444"/|belongs to domain UUID 00000000-1111-2222-3333-444444444444
current pointing at nothing|s/ current="[^"]*"/ current="999"/|the current snapshot is id 999
a locator /etc/passwd|s#locator="$loc1"#locator="raw:/etc/passwd"#|locator raw:/etc/passwd is not in a directory of the disk's images
EOF
unchanged "damaged catalogs" "$before"

# --- info: the name is checked, control characters never echoed
for name in $'x\x1b[2J' $'a\nb' "../s1"; do
    rc=0
    out=$("$VMSNAP" info "$ENG_DOM" "$name" 2>&1) || rc=$?
    [ "$rc" = 2 ] && [[ $out == *"invalid snapshot name"* ]] ||
        { printf '%s\n' "$out" >&2; fail "info $(printf %q "$name"): exit $rc, want 2 'invalid snapshot name'"; }
    no_raw "$out" "info $(printf %q "$name")"
done
echo "  info with a bad name: exit 2, shown escaped"
eng_verify_all

# ------------------------------------------------ a full file system
# The domain's images on a small tmpfs: A (1 MiB) s1, B (6 MiB) s2, C
# (4 MiB) in the active image; deleting s2 commits C into s2's image (or
# pulls B into the active image): with the file system filled up, either
# runs out of space.
full_fs ()
{
    fs=$TEST_TMP/fs
    mkdir "$fs"
    if ! mount -t tmpfs -o size=40m,mode=0700 vmsnap-test-fs "$fs"; then
        [ "${VMSNAP_TEST_STRICT:-0}" != 1 ] || fail "cannot mount a tmpfs on $fs"
        echo "  full file system: SKIPPED (cannot mount a tmpfs)"
        return 0
    fi
    cleanup_fn umount "$fs"
    qemu-img create -q -f qcow2 "$fs/vda.qcow2" 64M
    eng_mk_file_domain engfull "$TEST_TMP/full.xml" "vda:qcow2:$fs/vda.qcow2"
    ENG_DOM=$TEST_TMP/full.xml ENG_DISKS=(vda) ENG_IMG_DIR=$fs
    ENG_WRITTEN="" ENG_LEN=()
    eng_reset_model
    eng_write A 1M
    eng_create s1
    eng_write B 6M
    eng_create s2
    eng_write C 4M
    eng_check_state "A B C"

    avail=$(df -B1 --output=avail "$fs" | tail -n 1)
    fallocate -l $(( avail - (512 << 10) )) "$fs/filler" 2>/dev/null ||
        dd if=/dev/zero of="$fs/filler" bs=64k count=$(( (avail - (512 << 10)) / 65536 )) status=none
    echo "  tmpfs: $(df -h --output=used,avail "$fs" | tail -n 1 | tr -s ' ')"
    rc=0
    out=$("$VMSNAP" delete --json "$ENG_DOM" s2 2>&1) || rc=$?
    [ "$rc" = 1 ] || { printf '%s\n' "$out" >&2; fail "delete on a full file system: exit $rc, want 1"; }
    [[ $out == *"No space left on device"* ]] ||
        { printf '%s\n' "$out" >&2; fail "delete on a full file system: the error does not say 'No space left on device'"; }
    [[ $out == *"vmsnap recover"* ]] || { printf '%s\n' "$out" >&2; fail "the error does not say to run vmsnap recover"; }
    echo "  delete s2 on a full file system: exit 1: $(grep -o 'No space left on device' <<<"$out" | head -n 1)"
    # Nothing lost: the current contents and s1 (through its locator; a revert
    # would first try to finish the delete).
    eng_check_state "A B C"
    vms_ok list --json "$ENG_DOM"
    jq_check "$VMS_OUT" '.pending.operation == "delete" and .pending.snapshot == "s2" and (.pending.error | test("space"))' \
        "list does not show the pending delete"
    loc=$(jq -r '.snapshots[] | select(.name == "s1") | .disks[0].locator' <<<"$VMS_OUT")
    eng_check_image "${loc#*:}" "${loc%%:*}" 0 "A"
    vms_ok list "$ENG_DOM"
    [[ $VMS_OUT == *"PENDING: delete s2"* ]] || { echo "$VMS_OUT" >&2; fail "list (text) does not show the pending delete"; }
    # Every state-changing command first tries to finish it, and fails again.
    rc=0
    out=$("$VMSNAP" create "$ENG_DOM" s3 2>&1) || rc=$?
    [ "$rc" = 1 ] && [[ $out == *"No space left on device"* ]] ||
        { printf '%s\n' "$out" >&2; fail "create while the delete is pending on a full fs: exit $rc"; }
    eng_check_state "A B C"
    # Space again: recover finishes the delete.
    rm -f "$fs/filler"
    vms_ok recover --json "$ENG_DOM"
    jq_check "$VMS_OUT" '.recovered == "delete" and .result == "finished"' "recover did not finish the delete"
    eng_forget s2
    eng_check_state "A B C"
    # The current state is not a snapshot: check it, then every snapshot.
    eng_check_views
    eng_check_locators
    vms_ok revert "$ENG_DOM" s1
    CUR_HIST="A" ENG_DIRTY=0
    eng_verify_all
    echo "  full file system: exit 1, nothing lost, pending shown, recover finished the delete"
}
if [ "$(id -u)" = 0 ]; then
    full_fs
elif [ "${VMSNAP_TEST_STRICT:-0}" = 1 ]; then
    fail "the full file system case needs root (tmpfs mount)"
else
    echo "  full file system: SKIPPED (needs root to mount a tmpfs)"
fi

# ------------------------------- a full state directory at the catalog step
# The state directory on a small tmpfs: the catalog (five snapshots with
# long descriptions) needs more room than is left, the journal does not.
# The create fails at its catalog step: the error must say to run vmsnap
# recover, as for any other interrupted step, and recover finishes it.
catalog_enospc ()
{
    local st=$TEST_TMP/stfs i free out rc=0 desc
    mkdir "$st" "$TEST_TMP/img3"
    if ! mount -t tmpfs -o size=1m,mode=0700 vmsnap-test-state "$st"; then
        [ "${VMSNAP_TEST_STRICT:-0}" != 1 ] || fail "cannot mount a tmpfs on $st"
        echo "  full state directory: SKIPPED (cannot mount a tmpfs)"
        return 0
    fi
    cleanup_fn umount "$st"
    qemu-img create -q -f qcow2 "$TEST_TMP/img3/vda.qcow2" 16M
    eng_mk_file_domain engstfull "$TEST_TMP/stfull.xml" "vda:qcow2:$TEST_TMP/img3/vda.qcow2"
    desc=$(printf 'd%.0s' {1..3000})
    for i in 1 2 3 4 5; do
        VMSNAP_STATE_DIR=$st "$VMSNAP" create --description "$desc" "$TEST_TMP/stfull.xml" "s$i" >/dev/null ||
            fail "create s$i on the state tmpfs"
    done
    free=$(df -B1 --output=avail "$st" | tail -n 1)
    fallocate -l $(( free - 8192 )) "$st/filler" 2>/dev/null ||
        dd if=/dev/zero of="$st/filler" bs=4096 count=$(( (free - 8192) / 4096 )) status=none
    out=$(VMSNAP_STATE_DIR=$st "$VMSNAP" create "$TEST_TMP/stfull.xml" s6 2>&1) || rc=$?
    [ "$rc" = 1 ] && [[ $out == *"No space left on device"* && $out == *catalog.xml* ]] ||
        { printf '%s\n' "$out" >&2; fail "create s6 with a full state directory: exit $rc, want 1 and ENOSPC on the catalog"; }
    [[ $out == *"vmsnap recover"* ]] ||
        { printf '%s\n' "$out" >&2; fail "ENOSPC while writing the catalog: the error does not say to run vmsnap recover"; }
    echo "  full state directory at the catalog step: exit 1: $(grep -o 'did not finish[^:]*' <<<"$out" | head -n 1)"
    rm -f "$st/filler"
    out=$(VMSNAP_STATE_DIR=$st "$VMSNAP" recover --json "$TEST_TMP/stfull.xml") || fail "recover after the full state directory: $out"
    jq_check "$out" '.recovered == "create" and .result == "finished"' "recover did not finish the create"
    out=$(VMSNAP_STATE_DIR=$st "$VMSNAP" list --json "$TEST_TMP/stfull.xml") || fail "list: $out"
    jq_check "$out" '[.snapshots[].name] == ["s1","s2","s3","s4","s5","s6"] and .current == "s6" and .pending == null' \
        "after recover, the catalog does not hold s1..s6 with s6 current"
}
if [ "$(id -u)" = 0 ]; then
    catalog_enospc
elif [ "${VMSNAP_TEST_STRICT:-0}" = 1 ]; then
    fail "the full state directory case needs root (tmpfs mount)"
fi

# --------------------------------------------- an image in use by a QEMU
# (Last, so that a failure here does not hide the results above.)  Back to
# the first domain: its disks hold "A B", the current snapshot is s2.
# qemu-io holds the active vda image open read-write (with QEMU's image
# locks), reading commands from a FIFO we keep open.
ENG_DOM=$TEST_TMP/engbad.xml ENG_DISKS=(vda vdb) ENG_IMG_DIR=$img
ENG_WRITTEN=AB ENG_LEN=([A]=1M [B]=1M)
eng_reset_model
SNAP_HIST=([s1]="A" [s2]="A B") SNAP_PARENT=([s1]="" [s2]=s1) SNAP_DESC=([s1]=first)
CUR_HIST="A B" ENG_CURRENT=s2
eng_check_state "A B"
before=$(names_of)
active=$(eng_active vda)
mkfifo "$TEST_TMP/qio.fifo"
qemu-io -f qcow2 "$active" <"$TEST_TMP/qio.fifo" >"$TEST_TMP/qio.log" 2>&1 &
qio=$!
exec 9>"$TEST_TMP/qio.fifo"
stop_qio () { exec 9>&-; kill "$qio" 2>/dev/null || true; wait "$qio" 2>/dev/null || true; }
cleanup_fn stop_qio
# Wait for qemu-io to have the image open (its prompt, or its error).  Do
# not poll with qemu-img info meanwhile: its own shared lock can make
# qemu-io's open fail ("Failed to get write lock").
for (( i = 0; i < 1500; i++ )); do
    grep -q -e 'qemu-io>' -e "can't open" "$TEST_TMP/qio.log" 2>/dev/null && break
    sleep 0.02
done
out=$(qemu-img info -f qcow2 "$active" 2>&1) && fail "qemu-io did not lock $active"
[[ $out == *lock* ]] || fail "qemu-img info on the image qemu-io holds: $out"
for op in "create s3" "revert s1"; do
    rc=0
    out=$("$VMSNAP" "${op% *}" "$ENG_DOM" "${op#* }" 2>&1) || rc=$?
    [ "$rc" != 0 ] && [ "$rc" -lt 99 ] ||
        { printf '%s\n' "$out" >&2; fail "$op while QEMU holds $active: exit $rc, want a failure"; }
    [[ $out == *lock* || $out == *"in use"* ]] ||
        { printf '%s\n' "$out" >&2; fail "$op while QEMU holds $active: the message does not say the image is locked/in use"; }
    echo "  $op with the image in use: exit $rc: $(tail -n 1 <<<"$out" | cut -c1-200)"
    unchanged "$op with the image in use" "$before" names
done
# A delete whose child is the image in use: must not touch it either.  It
# may stop before anything was done or leave the delete pending.
rc=0
out=$("$VMSNAP" delete "$ENG_DOM" s2 2>&1) || rc=$?
[ "$rc" != 0 ] && [ "$rc" -lt 99 ] && [[ $out == *lock* || $out == *"in use"* ]] ||
    { printf '%s\n' "$out" >&2; fail "delete s2 while QEMU holds its child $active: exit $rc, want a failure that says the image is locked/in use"; }
echo "  delete s2 with its child in use: exit $rc"
eng_check_state "A B"
stop_qio
vms_ok recover --json "$ENG_DOM"
vms_ok list --json "$ENG_DOM"
if jq -e '[.snapshots[].name] | index("s2") == null' <<<"$VMS_OUT" >/dev/null; then
    eng_forget s2
fi
eng_check_state "A B"
eng_check_views
eng_check_locators
echo "  image in use by QEMU: refused, nothing changed"
echo "engine-bad-input: ok"


