#!/usr/bin/env bash
# What a guest or an image header can write is data, never configuration;
# plan and the operations agree (issue 16 items 7, 11 and 13).  Every case is
# a class, run over each of its forms:
#   1. every json:/protocol backing name (on the active image and one layer
#      down) and every non-image backing format: plan and create refuse with
#      the reason, nothing changes, and no connection is ever made (a
#      listener counts them; a control proves it would see one)
#   2. qcow2 data files: a local one is shown by plan (text and --json) and
#      refused by create with the same reason; json:/protocol ones, VMDK
#      extents and QED backing names are refused before any open
#   3. a header rewritten under an existing catalog (a snapshot's layer now
#      backed by a protocol name): no command connects, the write commands
#      refuse, and all is well again once the header is put back
#   4. every image header a guest can write into its raw disk (each format's
#      first sector, a VPC footer, a VMDK descriptor naming a network
#      extent): plan and create work, with a warning at most, never advice to
#      change the declared type; a delete that commits it into the base
#      changes nothing of that
#   5. plan and create agree for every network disk protocol and for
#      relative sources (file and block)
#   6. a disk removed from the domain: check reports it, revert refuses
#      naming it, delete drops the record and leaves its storage untouched,
#      and the disk put back reverts again
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
. "$srcdir/tests/fixtures/engine.sh"
requires jq qemu-img qemu-io xmllint perl md5sum
: "${VMSNAP:?}"
mk_tmpdir
T=$(cd -P "$TEST_TMP" && pwd -P)
export VMSNAP_STATE_DIR=$T/state
ENG_ERRFILE=$T/.vmsnap-stderr

# ------------------------------------------------------------ the listener
# Counts every connection to 127.0.0.1:PORT and to the unix socket $SOCK.
SOCK=$T/listen.sock
CONNLOG=$T/connections
: >"$CONNLOG"
perl -e '
    use strict; use warnings;
    use IO::Socket::INET; use IO::Socket::UNIX; use IO::Select; use Socket;
    my ($log, $sock, $portfile) = @ARGV;
    my $t = IO::Socket::INET->new(Listen => 64, LocalAddr => "127.0.0.1",
                                  LocalPort => 0, Proto => "tcp", ReuseAddr => 1)
        or die "listen tcp: $!";
    my $u = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $sock, Listen => 64)
        or die "listen unix: $!";
    open my $pf, ">", "$portfile.tmp" or die; print $pf $t->sockport, "\n"; close $pf;
    rename "$portfile.tmp", $portfile or die;
    my $sel = IO::Select->new($t, $u);
    while (1) {
        for my $s ($sel->can_read) {
            my $c = $s->accept or next;
            open my $l, ">>", $log or die; print $l "connection\n"; close $l;
            close $c;
        }
    }' "$CONNLOG" "$SOCK" "$T/port" &
listener=$!
cleanup_fn kill "$listener"
for (( i = 0; i < 500; i++ )); do [ -s "$T/port" ] && break; sleep 0.02; done
[ -s "$T/port" ] || fail "the connection counter did not start"
PORT=$(cat "$T/port")
connections () { wc -l <"$CONNLOG"; }
no_connection ()   # WHAT
{
    [ "$(connections)" = 0 ] || fail "$1 made $(connections) network connection(s)"
}

# Control: a QEMU that follows such a name does reach the counter.
qemu-img info -U -f raw "nbd://127.0.0.1:$PORT/x" >/dev/null 2>&1 || true
qemu-img info -U -f raw "nbd+unix:///x?socket=$SOCK" >/dev/null 2>&1 || true
[ "$(connections)" -ge 2 ] || fail "control: qemu-img following nbd names did not reach the counter ($(connections))"
: >"$CONNLOG"
echo "  control: the counter sees QEMU's connections (tcp port $PORT, $SOCK)"

n=0
mkdom ()   # NAME FILE SPEC...: a domain XML file with a fresh uuid
{
    eng_mk_file_domain "$@"
}
# plan_refuses XML SUBSTRING...: plan exits 4 and names every SUBSTRING, and
# create exits 4 with the same problem lines, changing nothing.
plan_refuses ()
{
    local xml=$1 uuid before pat line
    shift
    uuid=$(xmllint --xpath 'string(/domain/uuid)' "$xml")
    before=$(md5sum "$xml"; ls -lA --time-style=full-iso "$(dirname "$xml")")
    vms_rc plan "$xml"
    [ "$VMS_RC" = 4 ] || { printf '%s\n' "$VMS_OUT" "$VMS_ERR" >&2; fail "plan $xml: exit $VMS_RC, want 4"; }
    for pat in "$@"; do
        [[ $VMS_ERR == *"$pat"* ]] || { printf '%s\n' "$VMS_ERR" >&2; fail "plan $xml does not say '$pat'"; }
    done
    plan_err=$VMS_ERR
    vms_rc create "$xml" s1
    [ "$VMS_RC" = 4 ] || { printf '%s\n' "$VMS_OUT" "$VMS_ERR" >&2; fail "create $xml: exit $VMS_RC, want 4 as plan"; }
    # Every problem plan gives, create gives word for word.
    while IFS= read -r line; do
        [[ $line == "  "* ]] || continue
        [[ $VMS_ERR == *"$line"* ]] || { printf 'plan:\n%s\ncreate:\n%s\n' "$plan_err" "$VMS_ERR" >&2; fail "create $xml does not give plan's reason"; }
    done <<<"$plan_err"
    [ ! -e "$VMSNAP_STATE_DIR/$uuid/catalog.xml" ] || fail "the refused create of $xml wrote a catalog"
    now=$(md5sum "$xml"; ls -lA --time-style=full-iso "$(dirname "$xml")")
    [ "$now" = "$before" ] || { diff <(echo "$before") <(echo "$now") >&2 || true; false; } ||
        fail "the refused create of $xml changed something"
}

# ------------------------------------ 1. json: and protocol backing names
hostile_names=(
    "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"inet\",\"host\":\"127.0.0.1\",\"port\":\"$PORT\"},\"export\":\"x\"}"
    "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$SOCK\"},\"export\":\"x\"}"
    "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"/etc/passwd\"}}"
    "json:{\"file.driver\":\"http\",\"file.url\":\"http://127.0.0.1:$PORT/x\"}"
    "nbd://127.0.0.1:$PORT/x"
    "nbd:127.0.0.1:$PORT:exportname=x"
    "nbd+unix:///x?socket=$SOCK"
    "nbd:unix:$SOCK"
    "http://127.0.0.1:$PORT/x"
    "https://127.0.0.1:$PORT/x"
    "ftp://127.0.0.1:$PORT/x"
    "ftps://127.0.0.1:$PORT/x"
    "ssh://127.0.0.1:$PORT/x"
    "gluster://127.0.0.1:$PORT/vol/x"
    "iscsi://127.0.0.1:$PORT/iqn.2000-01.org.example:x/0"
    "nfs://127.0.0.1/x"
    "file:/etc/passwd"
)
mkdir "$T/b"
for name in "${hostile_names[@]}"; do
    n=$(( n + 1 ))
    # On the active image ...
    qemu-img create -q -f qcow2 -u -b "$name" -F raw "$T/b/top$n.qcow2" 16M
    out=$(qemu-img info -U --output=json -f qcow2 "$T/b/top$n.qcow2")
    jq_check "$out" '.["backing-filename"] == $n' "backing name $name not recorded" --arg n "$name"
    mkdom hdr-top$n "$T/b/top$n.xml" "vda:qcow2:$T/b/top$n.qcow2"
    if [[ $name == json:* ]]; then what="json: pseudo-protocol"; else what="protocol prefix '${name%%:*}:'"; fi
    plan_refuses "$T/b/top$n.xml" "names its backing file as" "$what" "$T/b/top$n.qcow2"
    # ... and one layer down.
    qemu-img create -q -f qcow2 -u -b "$name" -F raw "$T/b/mid$n.qcow2" 16M
    qemu-img create -q -f qcow2 -u -b "$T/b/mid$n.qcow2" -F qcow2 "$T/b/act$n.qcow2" 16M
    mkdom hdr-deep$n "$T/b/deep$n.xml" "vda:qcow2:$T/b/act$n.qcow2"
    vms_rc plan --json "$T/b/deep$n.xml"
    [ "$VMS_RC" = 4 ] || fail "plan of $name one layer down: exit $VMS_RC, want 4"
    jq_check "$VMS_OUT" '.possible == false and (.problems[0] | contains($l) and contains("names its backing file as") and contains($w))' \
        "plan --json of $name one layer down" --arg l "layer 1 of $T/b/act$n.qcow2" --arg w "$what"
done
no_connection "plan and create on ${#hostile_names[@]} json:/protocol backing names"
echo "  ${#hostile_names[@]} json:/protocol backing names, on the active image and one layer down: plan and create refuse alike, nothing changed, no connection"

# A backing format that is a protocol driver, not an image format.
for bfmt in nbd http file json host_device; do
    n=$(( n + 1 ))
    qemu-img create -q -f qcow2 -u -b "$T/b/none" -F "$bfmt" "$T/b/fmt$n.qcow2" 16M 2>/dev/null || {
        echo "  (qemu-img does not record backing format $bfmt; skipped)"; continue; }
    mkdom hdr-fmt$n "$T/b/fmt$n.xml" "vda:qcow2:$T/b/fmt$n.qcow2"
    plan_refuses "$T/b/fmt$n.xml" "'$bfmt', which is not an image format"
done
no_connection "backing formats"
echo "  backing formats that are protocol drivers: refused"

# --------------------------------------------------------- 2. data files
mkdir "$T/d"
qemu-img create -q -f qcow2 -o data_file="$T/d/vda.data" "$T/d/vda.qcow2" 16M
qemu-img create -q -f qcow2 -o data_file=rel.data "$T/d/rel.qcow2" 16M   # relative to the image
mkdom hdr-data "$T/d/data.xml" "vda:qcow2:$T/d/vda.qcow2" "vdb:qcow2:$T/d/rel.qcow2"
vms_rc plan "$T/d/data.xml"
[ "$VMS_RC" = 4 ] || fail "plan of disks with data files: exit $VMS_RC, want 4"
[[ $VMS_OUT == *"data file: $T/d/vda.data (of $T/d/vda.qcow2)"* && $VMS_OUT == *"data file: $T/d/rel.data (of $T/d/rel.qcow2)"* ]] ||
    { echo "$VMS_OUT" >&2; fail "plan (text) does not show the data files"; }
vms_rc plan --json "$T/d/data.xml"
jq_check "$VMS_OUT" '[.disks[].chain[0].data_file] == [$a, $b]' "plan --json does not show the data files resolved" \
    --arg a "$T/d/vda.data" --arg b "$T/d/rel.data"
jq_check "$VMS_OUT" '[.disks[].candidates[] | select(.backend == "qcow2-external") | .reason] | all(contains("refuses such images"))' \
    "qcow2-external does not refuse the data files in plan"
plan_refuses "$T/d/data.xml" "keeps its guest data in the external data file $T/d/vda.data" \
    "external data file $T/d/rel.data"
echo "  local data files: shown by plan (text, --json, resolved), refused by plan and create alike"

# (A data file name goes through the same check as a backing name: one of
# each kind of name.)
for name in "${hostile_names[0]}" "${hostile_names[2]}" "${hostile_names[4]}" \
            "${hostile_names[7]}" "${hostile_names[8]}" "${hostile_names[16]}"; do
    n=$(( n + 1 ))
    qemu-img create -q -f qcow2 -o data_file="$T/d/x$n.data" "$T/d/x$n.qcow2" 16M
    qemu-img amend -f qcow2 -o data_file="${name//,/,,}" "$T/d/x$n.qcow2"
    out=$(qemu-img info -U --output=json -f qcow2 "$T/d/x$n.qcow2" 2>&1) || true
    [[ $out == *"data-file"* ]] || [[ $out == *"Could not open"* ]] || fail "data file $name not recorded: $out"
    mkdom hdr-df$n "$T/d/x$n.xml" "vda:qcow2:$T/d/x$n.qcow2"
    plan_refuses "$T/d/x$n.xml" "names its external data file as"
done
# VMDK extents and QED backing files.
for name in "nbd://127.0.0.1:$PORT/x" "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$SOCK\"},\"export\":\"x\"}" "/etc/passwd:x" "http://127.0.0.1:$PORT/x"; do
    n=$(( n + 1 ))
    qemu-img create -q -f vmdk -o subformat=monolithicFlat "$T/d/v$n.vmdk" 16M
    # The descriptor names the extent "v$n-flat.vmdk": rename it.
    X=$name perl -0pi -e 's/"v\d+-flat\.vmdk"/"$ENV{X}"/' "$T/d/v$n.vmdk"
    grep -qF "\"$name\"" "$T/d/v$n.vmdk" || fail "the VMDK descriptor does not name $name"
    mkdom hdr-vmdk$n "$T/d/v$n.xml" "vda:vmdk:$T/d/v$n.vmdk"
    if [ "$name" = "/etc/passwd:x" ]; then
        # A ':' after a '/' is a local name: allowed by the header check
        # (qemu-img then fails to open a missing extent), never a connection.
        vms_rc plan "$T/d/v$n.xml"
        [[ $VMS_ERR != *"VMDK extent"* ]] || fail "a local extent name was refused as non-local"
        continue
    fi
    plan_refuses "$T/d/v$n.xml" "names its VMDK extent file as"
    qemu-img create -q -f qed -u -b "$name" -F raw "$T/d/q$n.qed" 16M
    mkdom hdr-qed$n "$T/d/q$n.xml" "vda:qed:$T/d/q$n.qed"
    plan_refuses "$T/d/q$n.xml" "names its backing file as"
done
no_connection "data files, VMDK extents and QED backing names"
echo "  json:/protocol data files, VMDK extents and QED backing names: refused before any open, no connection"

# --------------------------- 3. a header rewritten under an existing catalog
mkdir "$T/c"
qemu-img create -q -f qcow2 "$T/c/vda.qcow2" 16M
img_write "$T/c/vda.qcow2" qcow2 0xa1 0 64k
mkdom hdr-cat "$T/c/cat.xml" "vda:qcow2:$T/c/vda.qcow2"
vms_ok create "$T/c/cat.xml" s1
active=$(xmllint --xpath 'string(//disk/source/@file)' "$T/c/cat.xml")
img_write "$active" qcow2 0xb1 64k 64k
vms_ok create "$T/c/cat.xml" s2
mid=$(xmllint --xpath 'string(//disk/source/@file)' "$T/c/cat.xml")
# The layer of s2 ($active) now claims a network backing file.
qemu-img rebase -q -u -f qcow2 -b "nbd://127.0.0.1:$PORT/x" -F raw "$active"
state=$(cd "$T/c" && md5sum -- *; cat "$VMSNAP_STATE_DIR"/*/catalog.xml "$T/c/cat.xml")
for op in "plan" "create s3" "revert s1" "revert s2" "delete s1" "delete s2" "merge" "check" "chain" "list"; do
    rc=0
    # shellcheck disable=SC2086
    out=$("$VMSNAP" ${op% *} "$T/c/cat.xml" $( [ "${op#* }" != "$op" ] && echo "${op#* }") 2>&1) || rc=$?
    case $op in
        list) ;;   # reads the catalog only
        chain)     # a view: shows what it cannot read
           [[ $out == *"cannot read it: "*"$active"*"not a local file"* ]] || { echo "$out" >&2; fail "chain does not show why $active cannot be read"; } ;;
        *) [ "$rc" != 0 ] || { echo "$out" >&2; fail "$op with a protocol backing name in a layer: exit 0"; }
           [[ $out == *"$active"* || $out == *"nbd://"* ]] || { echo "$out" >&2; fail "$op does not name the layer or its backing name"; } ;;
    esac
    [ "$rc" -lt 99 ] || { echo "$out" >&2; fail "$op crashed (exit $rc)"; }
    echo "    $op: exit $rc"
done
no_connection "every command on a catalog whose layer names a protocol backing"
[ "$(cd "$T/c" && md5sum -- *; cat "$VMSNAP_STATE_DIR"/*/catalog.xml "$T/c/cat.xml")" = "$state" ] ||
    fail "a command changed the images, the catalog or the domain"
qemu-img rebase -q -u -f qcow2 -b "$T/c/vda.qcow2" -F qcow2 "$active"
vms_ok revert "$T/c/cat.xml" s1
vms_ok delete "$T/c/cat.xml" s2
active=$(xmllint --xpath 'string(//disk/source/@file)' "$T/c/cat.xml")
img_read "$active" qcow2 0xa1 0 64k
img_read "$active" qcow2 0 64k 64k
echo "  a layer's backing rewritten to nbd:// under a catalog: every command refuses or only reads, no connection, nothing changed; fine again once put back"

# ---------------------- 4. a raw disk's bytes are the guest's (item 7)
mkdir "$T/g"
guest_hdr ()   # FORMAT FILE: the bytes a guest writes (the format's first 4 KiB)
{
    case $1 in
        qcow2-nbd) qemu-img create -q -f qcow2 -u -b "nbd://127.0.0.1:$PORT/x" -F raw "$T/g/h.img" 16M ;;
        vmdk-text) printf '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 32768 FLAT "nbd://127.0.0.1:%s/x" 0\nparentFileNameHint="http://127.0.0.1:%s/p"\n' "$PORT" "$PORT" >"$T/g/h.img" ;;
        *) qemu-img create -q -f "$1" "$T/g/h.img" 16M ;;
    esac
    head -c 4096 "$T/g/h.img" >"$2"
    rm -f "$T/g/h.img"
}
for hf in qcow2 qcow2-nbd qcow qed vmdk vmdk-text vdi vpc vhdx vpc-footer; do
    n=$(( n + 1 ))
    qemu-img create -q -f raw "$T/g/r$n.raw" 16M
    if [ "$hf" = vpc-footer ]; then
        # A fixed VHD has its only header at the end: the disk's last sector.
        qemu-img create -q -f vpc -o subformat=fixed "$T/g/h.img" 16M
        tail -c 512 "$T/g/h.img" >"$T/g/hdr"
        rm -f "$T/g/h.img"
        off=$(( $(stat -c %s "$T/g/r$n.raw") - 512 ))
    else
        guest_hdr "$hf" "$T/g/hdr"
        off=0
    fi
    # The guest writes it through its disk: the active image, raw.
    qemu-io -f raw -c "write -s $T/g/hdr $off $(stat -c %s "$T/g/hdr")" "$T/g/r$n.raw" >/dev/null
    want=$(md5sum <"$T/g/hdr")
    mkdom hdr-guest$n "$T/g/r$n.xml" "vda:raw:$T/g/r$n.raw"
    vms_rc plan "$T/g/r$n.xml"
    [ "$VMS_RC" = 0 ] || { printf '%s\n' "$VMS_OUT" "$VMS_ERR" >&2; fail "plan of a raw disk holding a $hf header: exit $VMS_RC, want 0"; }
    [[ $VMS_OUT == *"warning:"*"trusts the declared format"* ]] ||
        { echo "$VMS_OUT" >&2; fail "plan of a raw disk holding a $hf header gives no warning"; }
    [[ "$VMS_OUT$VMS_ERR" != *"fix <driver type>"* && "$VMS_OUT$VMS_ERR" != *"type='qcow2'"* ]] ||
        fail "plan advises changing the declared type of a raw disk ($hf)"
    vms_rc plan --json "$T/g/r$n.xml"
    jq_check "$VMS_OUT" '.possible and .disks[0].format == "raw" and .disks[0].storage_class == "image-file" and (.disks[0].warnings | length) == 1' \
        "plan --json of a raw disk holding a $hf header"
    vms_ok create "$T/g/r$n.xml" s1
    # A delete commits it into the base (or pulls the base up): the same
    # bytes, still raw to vmsnap.
    act=$(xmllint --xpath 'string(//disk/source/@file)' "$T/g/r$n.xml")
    qemu-io -f qcow2 -c "write -P 0x5a 1M 64k" "$act" >/dev/null
    vms_ok delete "$T/g/r$n.xml" s1
    act=$(xmllint --xpath 'string(//disk/source/@file)' "$T/g/r$n.xml")
    fmt=$(xmllint --xpath 'string(//disk/driver/@type)' "$T/g/r$n.xml")
    rm -f "$T/g/out.raw"
    qemu-img convert -U -f "$fmt" -O raw "$act" "$T/g/out.raw"
    len=$(stat -c %s "$T/g/hdr")
    [ "$(head -c $(( off + len )) "$T/g/out.raw" | tail -c "$len" | md5sum)" = "$want" ] ||
        fail "the guest's $hf header bytes changed"
    rm -f "$T/g/out.raw"
    vms_ok plan "$T/g/r$n.xml"
    # Without a declared format: refused, and no advice taken from the bytes.
    sed 's|<driver [^>]*/>||' "$T/g/r$n.xml" >"$T/g/nodrv$n.xml"
    [ -z "$(xmllint --xpath 'string(//disk/driver/@type)' "$T/g/nodrv$n.xml")" ] || fail "the driver type was not removed"
    sed -i "s|<uuid>[^<]*</uuid>|<uuid>$(cat /proc/sys/kernel/random/uuid)</uuid>|" "$T/g/nodrv$n.xml"
    vms_rc plan "$T/g/nodrv$n.xml"
    [ "$VMS_RC" = 4 ] && [[ $VMS_ERR == *"no <driver type>"* ]] || { echo "$VMS_ERR" >&2; fail "plan without a driver type: exit $VMS_RC"; }
    case $hf in
        vpc-footer) sug=vpc ;; vmdk-text) sug=vmdk ;; qcow2-nbd) sug=qcow2 ;; *) sug=$hf ;;
    esac
    [[ $VMS_ERR != *"type='$sug'"* ]] || { echo "$VMS_ERR" >&2; fail "plan without a driver type suggests the type a guest's $hf header shows"; }
done
no_connection "raw disks holding image headers"
echo "  10 image headers a guest wrote into its raw disk: plan and create work with a warning, no advice to change the type; create/delete keep the bytes; no connection"

# --------------------------- 5. plan and create agree (item 13)
mkdir "$T/n"
qemu-img create -q -f qcow2 "$T/n/vda.qcow2" 16M
for proto in nbd iscsi gluster http https ftp ftps ssh nfs tftp sheepdog vxhs; do
    n=$(( n + 1 ))
    mkdom hdr-net$n "$T/n/net$n.xml" "vda:qcow2:$T/n/vda.qcow2"
    perl -0pi -e 's|</devices>|    <disk type="network" device="disk">\n      <driver name="qemu" type="raw"/>\n      <source protocol="'"$proto"'" name="vol/x"><host name="127.0.0.1" port="'"$PORT"'"/></source>\n      <target dev="vdb" bus="virtio"/>\n    </disk>\n  </devices>|' "$T/n/net$n.xml"
    plan_refuses "$T/n/net$n.xml" "vdb: no backend can snapshot vdb" \
        "works on file and block disks only in this version of vmsnap (this is a network disk)"
done
no_connection "plan and create of network disks"
echo "  12 network disk protocols: plan and create refuse alike, with the same reason"

for kind in file block; do
    n=$(( n + 1 ))
    if [ "$kind" = file ]; then
        mkdom hdr-rel$n "$T/n/rel$n.xml" "vda:qcow2:vda.qcow2"
    else
        mkdom hdr-rel$n "$T/n/rel$n.xml" "vda:raw:dev/null"
        sed -i "s|<disk type='file'|<disk type='block'|; s|<source file=|<source dev=|" "$T/n/rel$n.xml"
    fi
    # From the images' directory, where the name would even resolve.
    ( cd "$T/n" && plan_refuses "$T/n/rel$n.xml" "is not an absolute path" )
done
echo "  relative sources (file, block): plan and create refuse alike"

# ----------------------------- 6. a disk removed from the domain (item 13)
mkdir "$T/r"
qemu-img create -q -f qcow2 "$T/r/vda.qcow2" 16M
qemu-img create -q -f qcow2 "$T/r/vdb.qcow2" 16M
mkdom hdr-rm "$T/r/rm.xml" "vda:qcow2:$T/r/vda.qcow2" "vdb:qcow2:$T/r/vdb.qcow2"
uuid=$(xmllint --xpath 'string(/domain/uuid)' "$T/r/rm.xml")
img_write "$T/r/vda.qcow2" qcow2 0x11 0 64k
img_write "$T/r/vdb.qcow2" qcow2 0x11 0 64k
vms_ok create "$T/r/rm.xml" s1
for d in vda vdb; do
    f=$(xmllint --xpath "string(//disk[target/@dev='$d']/source/@file)" "$T/r/rm.xml")
    img_write "$f" qcow2 0x22 64k 64k
done
vms_ok create "$T/r/rm.xml" s2
vdb_active=$(xmllint --xpath "string(//disk[target/@dev='vdb']/source/@file)" "$T/r/rm.xml")
cp "$T/r/rm.xml" "$T/r/with-vdb.xml"
vda_active=$(xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" "$T/r/rm.xml")
mk_domain_xml hdr-rm "$T/r/rm.xml" "vda:qcow2:$vda_active"
sed -i "s|<name>hdr-rm</name>|&<uuid>$uuid</uuid>|" "$T/r/rm.xml"
vdb_files=$(cd "$T/r" && md5sum vdb*)

vms_rc check --json "$T/r/rm.xml"
[ "$VMS_RC" != 0 ] || fail "check says the catalog and storage agree with a disk gone from the domain"
jq_check "$VMS_OUT" '[.remaining[] | select(.kind == "disk-not-in-domain" and .disk == "vdb") | .snapshot] | sort == ["s1", "s2"]' \
    "check --json does not report vdb of s1 and s2 as disk-not-in-domain"
vms_rc check "$T/r/rm.xml"
[[ $VMS_OUT != *agree* && $VMS_OUT == *"disk-not-in-domain"* ]] || { echo "$VMS_OUT" >&2; fail "check (text) does not report the removed disk"; }
state=$(cd "$T/r" && md5sum -- *.qcow2; cat "$VMSNAP_STATE_DIR/$uuid/catalog.xml" "$T/r/rm.xml")
for s in s1 s2; do
    expect_fail 4 "snapshot $s holds disk vdb" "$VMSNAP" revert "$T/r/rm.xml" "$s"
done
[ "$(cd "$T/r" && md5sum -- *.qcow2; cat "$VMSNAP_STATE_DIR/$uuid/catalog.xml" "$T/r/rm.xml")" = "$state" ] ||
    fail "a refused revert changed something"
vms_ok delete "$T/r/rm.xml" s1
[[ $VMS_ERR == *"disk vdb is no longer in domain hdr-rm"*"left untouched and is kept as an unnamed point"* ]] ||
    { echo "$VMS_ERR" >&2; fail "delete s1 does not say vdb's storage was left untouched"; }
[ "$(cd "$T/r" && md5sum vdb*)" = "$vdb_files" ] || fail "delete s1 touched vdb's storage"
act=$(xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" "$T/r/rm.xml")
img_read "$act" qcow2 0x11 0 64k
img_read "$act" qcow2 0x22 64k 64k
vms_ok list --json "$T/r/rm.xml"
jq_check "$VMS_OUT" '[.snapshots[].name] == ["s2"] and .kept_unnamed_points == 1' "after delete s1: s2 and one kept point"
vms_rc check --json "$T/r/rm.xml"
jq_check "$VMS_OUT" '[.remaining[] | select(.kind == "disk-not-in-domain") | .snapshot] == [null, "s2"]' \
    "after delete s1, check does not report s1's kept vdb point and s2's vdb"
# The disk back in the domain: revert s2 works again, on both disks, and
# merge consolidates the point delete kept.
act=$(xmllint --xpath "string(//disk[target/@dev='vda']/source/@file)" "$T/r/rm.xml")
mk_domain_xml hdr-rm "$T/r/rm.xml" "vda:qcow2:$act" "vdb:qcow2:$vdb_active"
sed -i "s|<name>hdr-rm</name>|&<uuid>$uuid</uuid>|" "$T/r/rm.xml"
vms_ok check "$T/r/rm.xml"
vms_ok revert "$T/r/rm.xml" s2
vms_ok merge "$T/r/rm.xml"
vms_ok list --json "$T/r/rm.xml"
jq_check "$VMS_OUT" '[.snapshots[].name] == ["s2"] and .kept_unnamed_points == 0' "merge did not consolidate the kept point"
for d in vda vdb; do
    f=$(xmllint --xpath "string(//disk[target/@dev='$d']/source/@file)" "$T/r/rm.xml")
    img_read "$f" qcow2 0x11 0 64k
    img_read "$f" qcow2 0x22 64k 64k
done
vms_ok check "$T/r/rm.xml"
echo "  a disk removed from the domain: check reports it, revert refuses naming it, delete leaves its storage untouched as a kept point; back in the domain, revert works and merge consolidates"

no_connection "the whole test"
echo "untrusted-headers: ok"
