#!/usr/bin/env bash
# The cross-backend conformance program (issue 7).
#
#   conformance.sh [--config C]... [--seeds N] [--first-seed S] [--steps M]
#                  [--crash] [--kills K] [--ops 'OP...']
#
# Configurations (C): qcow2-internal, qcow2-external (on a qcow2 base),
# qcow2-external-raw (qcow2-external overlays on a raw base), rbd-rollback,
# rbd-clone (a throwaway Ceph cluster, tests/fixtures/ceph.sh), lvm-thin,
# lvm-thick (a block disk on a thin / a classic LV of the VG "vg"; these run
# only in the LVM guest: tests/conformance/conformance-lvm.sh).  Default:
# the five that run on the host.
#
# Sequences.  Sequence S of a configuration starts from a fresh 1 MiB disk
# (16 regions of 64 KiB, all zero) and runs M steps drawn by bash's RANDOM
# seeded with S: a guest write (1-3 regions get a new pattern byte), create,
# revert to ANY surviving snapshot, delete ANY snapshot (also one with
# children), merge.  The model keeps the expected pattern of every region of
# the disk and of every snapshot.  After EVERY step: the active disk holds
# the model's head, every surviving snapshot (read directly through its
# locator from `vmsnap list --json`: an external layer with its chain, an
# internal snapshot through qemu-img convert -l, an RBD image@snap, a
# snapshot LV, thin ones activated for the read) holds
# its pattern, the catalog lists exactly the model's snapshots and current
# one, and (after the last step) `vmsnap check` finds no drift.  A failure
# prints the configuration, the seed and the step, and the line that
# replays it.
#
# --crash: the crash matrix.  For every operation (create, revert, delete of
# a snapshot with a child, merge) the process is killed after each journaled
# step (VMSNAP_TEST_CRASH_AFTER=1,2,... until the operation completes) and K
# times (--kills, default 3) with SIGKILL at a random moment of the
# operation (uniform over the duration of its uninterrupted run); then
# `vmsnap recover`, and everything is checked: the operation happened
# entirely or not at all (the model before or after it), every snapshot is
# intact, no drift (`vmsnap check`), no orphan file, and `qemu-img check`
# passes on every qcow2 image (no leaked cluster, no corruption).  Prints the points
# tried and passed per configuration.
#
# Environment: VMSNAP (the CLI), srcdir; VMSNAP_CONFORMANCE_SEEDS and
# VMSNAP_CONFORMANCE_STEPS are the defaults of --seeds and --steps.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/ceph.sh"
. "$srcdir/tests/fixtures/lvm-guest.sh"
: "${VMSNAP:?VMSNAP: the vmsnap CLI to test}"

CONFIGS=()
SEEDS=${VMSNAP_CONFORMANCE_SEEDS:-50}
STEPS=${VMSNAP_CONFORMANCE_STEPS:-20}
FIRST=1
CRASH=0
KILLS=3
CRASH_OPS="create revert delete merge"
while [ $# -gt 0 ]; do
    case $1 in
        --config) CONFIGS+=("$2"); shift 2 ;;
        --seeds) SEEDS=$2; shift 2 ;;
        --first-seed|--seed) FIRST=$2; [ "$1" = --first-seed ] || SEEDS=1; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --crash) CRASH=1; shift ;;
        --kills) KILLS=$2; shift 2 ;;
        --ops) CRASH_OPS=$2; shift 2 ;;
        *) echo "usage: $0 [--config C]... [--seeds N] [--seed S | --first-seed S] [--steps M] [--crash] [--kills K] [--ops 'OP...']" >&2
           exit 2 ;;
    esac
done
[ "${#CONFIGS[@]}" -gt 0 ] ||
    CONFIGS=(qcow2-internal qcow2-external qcow2-external-raw rbd-rollback rbd-clone)

requires jq qemu-img qemu-io xmllint
vmsnap_unwrap
mk_tmpdir
# 16 regions of 64 KiB (a 1 MiB disk); the crash matrix uses 1 MiB regions
# (a 16 MiB disk) so that its random kills can land inside a data copy.
NREG=16 REG=65536
[ "$CRASH" = 0 ] || REG=1048576
DISKSZ=$(( NREG * REG / 1048576 ))M
UUID=7d3c1a52-0b7e-4c59-9f3e-2a1d5e6c7b80

# ------------------------------------------------------------ the model
declare -a HEAD=()
declare -A SNAP=() LOC=()
CURRENT="" PAT=0 CFG="" SEED=0 STEP=0 WHAT="" DRIFT=1

where ()
{
    if [ "$CRASH" = 1 ]; then
        echo "config $CFG crash point ($WHAT); replay: $0 --config $CFG --crash --ops ${WHAT%%,*} --kills $KILLS"
    else
        echo "config $CFG seed $SEED step $STEP ($WHAT); replay: $0 --config $CFG --seed $SEED --steps $STEPS"
    fi
}
cfail () { fail "$* -- $(where)"; }

model_reset ()
{
    local i
    HEAD=(); for (( i = 0; i < NREG; i++ )); do HEAD+=(0); done
    SNAP=() LOC=() CURRENT="" PAT=0
}

# model_save / model_restore: the crash matrix's "before" model.
model_save ()
{
    SAVED_HEAD="${HEAD[*]}" SAVED_CURRENT=$CURRENT
    SAVED_SNAP=$(declare -p SNAP)
}
model_restore ()
{
    read -r -a HEAD <<<"$SAVED_HEAD"
    CURRENT=$SAVED_CURRENT
    eval "${SAVED_SNAP/declare -A/declare -gA}"
}

# --------------------------------------------------------- the storage
# Per configuration: DOM (domain XML), DFMT (format of the disk's data),
# BACKEND (-b vda=... for create, or empty), ENVS (vmsnap environment).
cfg_setup ()
{
    local dir=$TEST_TMP/run
    rm -rf "$dir"; mkdir -p "$dir/img"
    export VMSNAP_STATE_DIR=$dir/state
    DOM=$dir/dom.xml IMGDIR=$dir/img BACKEND=()
    # QIO_N: qemu-io's cache option; LVs are read and written with O_DIRECT
    # (-n), so no page cache outlives a device-mapper table change.
    QIO_N=(); is_lvm && QIO_N=(-n)
    unset VMSNAP_RBD_REVERT_MODE VMSNAP_LVM_SNAPSHOT_SIZE VMSNAP_RBD_TIMEOUT
    case $CFG in
        qcow2-internal|qcow2-external)
            qemu-img create -q -f qcow2 "$IMGDIR/vda.qcow2" "$DISKSZ"
            file_dom qcow2 "$IMGDIR/vda.qcow2"
            [ "$CFG" = qcow2-external ] || BACKEND=(-b vda=qcow2-internal) ;;
        qcow2-external-raw)
            qemu-img create -q -f raw "$IMGDIR/vda.raw" "$DISKSZ"
            file_dom raw "$IMGDIR/vda.raw" ;;
        rbd-rollback|rbd-clone)
            RBDN=$(( ${RBDN:-0} + 1 )); RBDIMG=${CFG#rbd-}-$RBDN
            # The test cluster's OSD keeps its data in 1 GiB of RAM
            # (memstore): a full OSD pauses every write, and the next
            # vmsnap or qemu-io open stalls until its time limit (what the
            # crash matrix's "stalls" were).  Every 8th disk starts on an
            # empty pool.
            (( RBDN % 8 )) || rbd_purge_pool rbd
            rbdc create --size "$DISKSZ" "rbd/$RBDIMG"
            rbd_domain_xml confdom "$DOM" "vda:rbd/$RBDIMG:conf"
            sed -i "s|<uuid>.*</uuid>|<uuid>$UUID</uuid>|" "$DOM"
            export VMSNAP_RBD_REVERT_MODE=${CFG#rbd-} ;;
        lvm-thin|lvm-thick)
            lvm_setup ;;
        *) fail "unknown configuration '$CFG' (qcow2-internal, qcow2-external, qcow2-external-raw, rbd-rollback, rbd-clone, lvm-thin, lvm-thick)" ;;
    esac
}

file_dom ()   # FORMAT PATH
{
    cat >"$DOM" <<EOF
<domain type='qemu'>
  <name>confdom</name>
  <uuid>$UUID</uuid>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='$1'/>
      <source file='$2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOF
}

is_rbd () { [[ $CFG == rbd-* ]]; }
is_lvm () { [[ $CFG == lvm-* ]]; }

# lvm_setup: the VG "vg" on the guest's /dev/vda with a thin pool (once);
# the LVs of the previous sequence removed; a new LV cN (1 MiB in the pool,
# or a classic LV zeroed: its extents may hold an earlier LV's data)
# and a domain with it as a raw block disk.
LVMN=0
lvm_setup ()
{
    [ "${LVMG_IN_GUEST:-0}" = 1 ] ||
        fail "the $CFG configuration runs in the LVM guest: tests/conformance/conformance-lvm.sh"
    if ! lvm vgs vg >/dev/null 2>&1; then
        lvm_must pvcreate -q -y /dev/vda
        lvm_must vgcreate -q vg /dev/vda
        lvm_must lvcreate -q -y --type thin-pool -L 256M -n pool vg
    fi
    if [ -n "$(lvm lvs --noheadings -o lv_name -S 'lv_name=~^c[0-9]' vg 2>/dev/null)" ]; then
        lvm_must lvremove -q -y -S 'lv_name=~^c[0-9]' vg
    fi
    LVMN=$(( LVMN + 1 )); LVNAME=c$LVMN
    if [ "$CFG" = lvm-thin ]; then
        lvm_must lvcreate -q -y -V "$DISKSZ" -T vg/pool -n "$LVNAME"
    else
        lvm_must lvcreate -q -y -L "$DISKSZ" -n "$LVNAME" vg
        # COW space for the whole LV and the exception store's metadata: the
        # model expects every snapshot to stay valid (the default 20%
        # overflows after a few 1 MiB writes of the crash matrix, and LVM
        # rightly drops the snapshot; lvm-errors.sh tests that).
        export VMSNAP_LVM_SNAPSHOT_SIZE=$(( NREG * REG * 2 / 1048576 ))M
        qemu-io -n -f raw -c "write -z 0 $DISKSZ" "/dev/vg/$LVNAME" >/dev/null
    fi
    lvmg_block_domain confdom "$DOM" "vda:/dev/vg/$LVNAME"
    sed -i "s|<uuid>.*</uuid>|<uuid>$UUID</uuid>|" "$DOM"
}

lvm_must ()
{
    local out
    out=$(lvm "$@" 2>&1) || fail "lvm $* failed: $out"
}

# active: sets AFMT and APATH (qemu-io's filename) of the disk's data now.
active ()
{
    if is_rbd; then
        AFMT=raw APATH=$(rbd_qemu "$(xmllint --xpath 'string(//disk/source/@name)' "$DOM")")
    elif is_lvm; then
        AFMT=raw APATH=/dev/vg/$LVNAME
    else
        AFMT=$(xmllint --xpath 'string(//disk/driver/@type)' "$DOM")
        APATH=$(xmllint --xpath 'string(//disk/source/@file)' "$DOM")
    fi
    [ -n "$AFMT" ] && [ -n "$APATH" ] || cfail "no active disk in $DOM"
}


# check_regions WHAT FMT FILENAME PATTERNS...: one qemu-io for all regions.
check_regions ()
{
    local what=$1 fmt=$2 file=$3 i out n args=()
    shift 3
    local -a want=("$@")
    for (( i = 0; i < NREG; i++ )); do
        args+=(-c "read -P ${want[i]} $(( i * REG )) $REG")
    done
    local rc=0 t0=$SECONDS
    out=$(timeout 120 qemu-io -r -U "${QIO_N[@]}" -f "$fmt" "${args[@]}" "$file" 2>&1) || rc=$?
    if [ "$rc" != 0 ]; then
        CHECK_ERR="$what: qemu-io $file exited $rc after $(( SECONDS - t0 )) s (124: timed out): $out$(storage_state "$file")"
        return 1
    fi
    n=$(grep -c 'bytes at offset' <<<"$out") || true
    if [[ $out == *"verification failed"* ]] || [ "$n" != "$NREG" ]; then
        CHECK_ERR="$what ($file): expected regions [${want[*]}], found $(found_regions "$fmt" "$file")"
        return 1
    fi
}

# read_all: every entry of READS ("WHAT<TAB>FMT<TAB>FILENAME<TAB>PATTERNS")
# read by ONE qemu-io (open, 16 reads, close, ...): a step's checks cost one
# process, not one per snapshot.  On a mismatch each entry is read again on
# its own to say which one differs and what it holds.
read_all ()
{
    local e what fmt file pats i out n=0 args=()
    for e in "${READS[@]}"; do
        IFS=$'\t' read -r what fmt file pats <<<"$e"
        local -a want=($pats)
        args+=(-c "open -r -U ${QIO_N[*]} -o driver=$fmt $file")
        for (( i = 0; i < NREG; i++ )); do
            args+=(-c "read -P ${want[i]} $(( i * REG )) $REG")
        done
        args+=(-c close)
        n=$(( n + NREG ))
    done
    out=$(timeout 120 qemu-io "${args[@]}" 2>&1) || true
    if [[ $out != *"verification failed"* && $out != *rror* ]] &&
       [ "$(grep -c 'bytes at offset' <<<"$out")" = "$n" ]; then
        return 0
    fi
    for e in "${READS[@]}"; do
        IFS=$'\t' read -r what fmt file pats <<<"$e"
        check_regions "$what" "$fmt" "$file" $pats || return 1
    done
    CHECK_ERR="the batched read failed, each read on its own passed: $out"
    return 1
}

# storage_state FILENAME: for a failed read of an RBD image, what the
# cluster says (health, the image's watchers and locks), for the message.
storage_state ()
{
    is_rbd || return 0
    local img=${1#rbd:}; img=${img%%:*}; img=${img%@*}
    printf '\n  ceph health: %s\n  rbd status %s: %s\n  rbd lock ls: %s' \
        "$(timeout 20 ceph -c "$CEPH_CONF" health 2>&1 | tr '\n' ' ')" "$img" \
        "$(timeout 20 rbd status "$img" 2>&1 | tr '\n' ' ')" \
        "$(timeout 20 rbd lock ls "$img" 2>&1 | tr '\n' ' ')"
}

# found_regions FMT FILE: the first byte of every region (for messages).
found_regions ()
{
    local i out=""
    for (( i = 0; i < NREG; i++ )); do
        out+="$(qemu-io -r -U -f "$1" -c "read -v $(( i * REG )) 1" "$2" 2>/dev/null |
                 sed -n '1s/^[0-9a-f]*: *\([0-9a-f][0-9a-f]\).*/0x\1/p') "
    done
    echo "[${out% }]"
}

# refresh: LOC[name] from list --json; the catalog lists exactly the
# model's snapshots and current one.
refresh ()
{
    local out names="" want cur="" n l k
    out=$("$VMSNAP" list --json "$DOM" 2>"$TEST_TMP/err") ||
        { CHECK_ERR="vmsnap list failed: $(cat "$TEST_TMP/err")"; return 1; }
    LIST_BEFORE=$out
    LOC=()
    # One jq: "current NAME", then "snap NAME LOCATOR" per snapshot.
    while IFS=$'\t' read -r k n l; do
        case $k in
            current) cur=$n ;;
            snap) names+="$n"$'\n'; LOC[$n]=$l ;;
        esac
    done < <(jq -r '["current", (.current // "")], (.snapshots[] | ["snap", .name, ((.disks[] | select(.target == "vda") | .locator) // "")]) | @tsv' <<<"$out")
    names=$(printf '%s' "$names" | sed '/^$/d' | sort | tr '\n' ' ')
    want=$(printf '%s\n' "${!SNAP[@]}" | sed '/^$/d' | sort | tr '\n' ' ')
    [ "$names" = "$want" ] ||
        { CHECK_ERR="catalog lists [$names], the model has [$want]"; return 1; }
    [ "$cur" = "$CURRENT" ] ||
        { CHECK_ERR="catalog's current snapshot is '$cur', the model's '$CURRENT'"; return 1; }
}

# add_snapshot NAME: queue the snapshot's read (READS) through its locator;
# a thin snapshot LV is queued for activation (THIN).
add_snapshot ()
{
    local n=$1 loc=${LOC[$1]:-} fmt path tag raw
    [ -n "$loc" ] || { CHECK_ERR="snapshot $n has no locator for vda"; return 1; }
    case $loc in
        rbd:*)
            READS+=("snapshot $n"$'\t'raw$'\t'"$(rbd_qemu "${loc#rbd:}")"$'\t'"${SNAP[$n]}") ;;
        lvm:*)
            [ "$CFG" != lvm-thin ] || THIN+=("${loc#lvm:}")
            READS+=("snapshot $n"$'\t'raw$'\t'"/dev/${loc#lvm:}"$'\t'"${SNAP[$n]}") ;;
        *#*)
            fmt=${loc%%:*} path=${loc#*:} tag=${path##*#} path=${path%#*}
            raw=$TEST_TMP/snap-$n.raw
            rm -f "$raw"
            qemu-img convert -U -f "$fmt" -l "snapshot.name=$tag" -O raw "$path" "$raw" 2>"$TEST_TMP/err" ||
                { CHECK_ERR="snapshot $n: qemu-img convert -l $tag $path: $(cat "$TEST_TMP/err")"; return 1; }
            READS+=("snapshot $n (internal $tag)"$'\t'raw$'\t'"$raw"$'\t'"${SNAP[$n]}") ;;
        *:/*)
            READS+=("snapshot $n"$'\t'"${loc%%:*}"$'\t'"${loc#*:}"$'\t'"${SNAP[$n]}") ;;
        *) CHECK_ERR="snapshot $n: locator '$loc' not understood"; return 1 ;;
    esac
}

# check_all: head, catalog, every snapshot, no drift.  Returns 1 with
# CHECK_ERR set.
check_all ()
{
    local n out rc=0
    active
    READS=("the disk"$'\t'"$AFMT"$'\t'"$APATH"$'\t'"${HEAD[*]}") THIN=()
    refresh || return 1
    for n in "${!SNAP[@]}"; do
        add_snapshot "$n" || return 1
    done
    [ "${#THIN[@]}" = 0 ] || lvm_must lvchange -q -ay -K "${THIN[@]}"
    read_all || rc=1
    [ "${#THIN[@]}" = 0 ] || lvm_must lvchange -q -an "${THIN[@]}"
    rm -f "$TEST_TMP"/snap-*.raw
    [ "$rc" = 0 ] || return 1
    # `vmsnap check` (catalog against storage) costs as much as the
    # operation: it runs after the last step of a sequence, after every
    # crash point and in the self-test (DRIFT=1), not after every step.
    [ "$DRIFT" = 1 ] || return 0
    out=$("$VMSNAP" check --json "$DOM" 2>&1) ||
        { CHECK_ERR="vmsnap check finds drift: $out"; return 1; }
}

# no_orphans: every file in the image directory is on the active chain or on
# the chain of a snapshot's locator (file configurations); every LV of the
# disk's is the disk or a snapshot's (LVM); every image of the disk's
# (its name, or its name and a suffix: vmsnap's clone heads) opens and is
# the disk's, a snapshot's or a parent of one of those (RBD).
no_orphans ()
{
    is_rbd && { rbd_no_orphans; return; }
    local f refs="" loc p
    if is_lvm; then
        refs=$LVNAME
        for loc in "${LOC[@]}"; do refs+=$'\n'${loc#lvm:vg/}; done
        for f in $(lvm lvs --noheadings -o lv_name -S 'lv_name=~^c[0-9]' vg 2>/dev/null); do
            grep -qxF "$f" <<<"$refs" || { CHECK_ERR="orphan LV vg/$f (neither the disk nor a snapshot)"; return 1; }
        done
        return 0
    fi
    active
    refs+=$(qemu-img info -U -f "$AFMT" --backing-chain --output=json "$APATH" | jq -r '.[].filename')
    for loc in "${LOC[@]}"; do
        p=${loc#*:}; p=${p%#*}
        refs+=$'\n'$(qemu-img info -U -f "${loc%%:*}" --backing-chain --output=json "$p" | jq -r '.[].filename')
    done
    for f in "$IMGDIR"/*; do
        grep -qxF "$f" <<<"$refs" || { CHECK_ERR="orphan file $f (on no chain)"; return 1; }
    done
}

# images_clean: `qemu-img check -f FMT` passes on every qcow2 image of
# the domain (the active chain, every snapshot's chain): no leaked
# cluster, no corruption (issue 16, item 8: a killed commit leaked
# clusters in its target, and recover must repair them).  File
# configurations only (RBD images and LVs are raw).
images_clean ()
{
    if is_rbd || is_lvm; then return 0; fi
    local chains fmt f loc p out rc
    active
    chains=$(qemu-img info -U -f "$AFMT" --backing-chain --output=json "$APATH" | jq -r '.[] | "\(.format) \(.filename)"')
    for loc in "${LOC[@]}"; do
        p=${loc#*:}; p=${p%#*}
        chains+=$'\n'$(qemu-img info -U -f "${loc%%:*}" --backing-chain --output=json "$p" | jq -r '.[] | "\(.format) \(.filename)"')
    done
    while read -r fmt f; do
        [ "$fmt" = qcow2 ] || continue
        rc=0; out=$(qemu-img check -f qcow2 "$f" 2>&1) || rc=$?
        [ "$rc" = 0 ] || { CHECK_ERR="qemu-img check -f qcow2 $f exited $rc (2: corrupt, 3: leaked clusters): $out"; return 1; }
    done < <(sort -u <<<"$chains")
}

rbd_no_orphans ()
{
    local img info p loc seen="" todo=()
    todo+=("$(xmllint --xpath 'string(//disk/source/@name)' "$DOM")")
    for loc in "${LOC[@]}"; do p=${loc#rbd:}; todo+=("${p%@*}"); done
    while [ ${#todo[@]} -gt 0 ]; do
        img=${todo[0]} todo=("${todo[@]:1}")
        ! grep -qxF "$img" <<<"$seen" || continue
        seen+=$img$'\n'
        info=$(timeout 30 rbd info --format json "$img" 2>&1) ||
            { CHECK_ERR="image $img (the disk's or a snapshot's) does not open: $info"; return 1; }
        p=$(jq -r '.parent | select(.) | "\(.pool)/\(.image)"' <<<"$info")
        [ -z "$p" ] || todo+=("$p")
    done
    p=$(timeout 30 rbd ls rbd 2>&1) || { CHECK_ERR="rbd ls rbd: $p"; return 1; }
    for img in $(grep -E "^${RBDIMG//./\\.}(\.|\$)" <<<"$p"); do
        grep -qxF "rbd/$img" <<<"$seen" && continue
        info=$(timeout 30 rbd info "rbd/$img" 2>&1 | tr '\n' ' ') || true
        info+="; rados: $(rbd_rados_state "$img")"
        CHECK_ERR="orphan image rbd/$img (not the disk's, a snapshot's or a parent of one; rbd info: $info)"
        return 1
    done
}

# ----------------------------------------------------------- operations
vms ()
{
    VMS_RC=0
    VMS_OUT=$("$VMSNAP" "$@" 2>"$TEST_TMP/err") || VMS_RC=$?
    VMS_ERR=$(cat "$TEST_TMP/err")
}
vms_ok ()
{
    vms "$@"
    [ "$VMS_RC" = 0 ] || cfail "vmsnap $* exited $VMS_RC: $VMS_OUT $VMS_ERR"
}

op_write ()
{
    local k i args=()
    active
    for (( k = 0; k < 1 + RANDOM % 3; k++ )); do
        i=$(( RANDOM % NREG ))
        PAT=$(( PAT % 250 + 1 ))
        HEAD[i]=$PAT
        args+=(-c "write -P $PAT $(( i * REG )) $REG")
    done
    out=$(timeout 120 qemu-io "${QIO_N[@]}" -f "$AFMT" "${args[@]}" "$APATH" 2>&1) ||
        cfail "guest write failed: $out"
    [[ $out != *failed* ]] || cfail "guest write failed: $out"
    WHAT="write"
}

NAMEN=0
op_create () { NAMEN=$(( NAMEN + 1 )); create_named "s$NAMEN"; }
create_named ()
{
    WHAT="create $1"
    vms_ok create "$DOM" "$1" "${BACKEND[@]}"
    model_create "$1"
}
model_create () { SNAP[$1]="${HEAD[*]}"; CURRENT=$1; }

pick_snapshot () { local -a n=("${!SNAP[@]}"); PICK=${n[RANDOM % ${#n[@]}]}; }

op_revert () { pick_snapshot; WHAT="revert $PICK"; vms_ok revert "$DOM" "$PICK"; model_revert "$PICK"; }
model_revert () { read -r -a HEAD <<<"${SNAP[$1]}"; CURRENT=$1; }

op_delete () { pick_snapshot; WHAT="delete $PICK"; vms_ok delete "$DOM" "$PICK"; model_delete "$PICK"; }
model_delete ()
{
    # The catalog's current snapshot after deleting the current one is its
    # parent (a named one: the catalog's parent as listed before).
    if [ "$CURRENT" = "$1" ]; then
        CURRENT=$(jq -r --arg n "$1" '.snapshots[] | select(.name == $n) | .parent // ""' <<<"$LIST_BEFORE")
    fi
    unset "SNAP[$1]"
}

op_merge () { WHAT="merge"; vms_ok merge "$DOM"; }

# ------------------------------------------------------------ sequences
run_sequence ()
{
    local r
    SEED=$1 STEP=0 WHAT="setup" NAMEN=0
    RANDOM=$SEED
    model_reset
    cfg_setup
    LIST_BEFORE='{}'
    for (( STEP = 1; STEP <= STEPS; STEP++ )); do
        r=$(( RANDOM % 100 ))
        if [ "${#SNAP[@]}" = 0 ] && [ "$r" -ge 60 ]; then r=40; fi
        if   [ "$r" -lt 35 ]; then op_write
        elif [ "$r" -lt 60 ]; then op_create
        elif [ "$r" -lt 75 ]; then op_revert
        elif [ "$r" -lt 90 ]; then op_delete
        else op_merge
        fi
        DRIFT=0; [ "$STEP" != "$STEPS" ] || DRIFT=1
        check_all || cfail "$CHECK_ERR"
        DRIFT=1
    done
}

conformance ()
{
    local s t0=$SECONDS
    for (( s = FIRST; s < FIRST + SEEDS; s++ )); do
        run_sequence "$s"
    done
    # The checks can fail: a model that differs from the disk in one region
    # (and, when there is one, in one snapshot) must be caught.
    local h3=${HEAD[3]}
    HEAD[3]=$(( h3 % 250 + 1 ))
    ! check_all || cfail "self-test: the disk passed a check against a wrong model"
    HEAD[3]=$h3
    if [ "${#SNAP[@]}" -gt 0 ]; then
        pick_snapshot
        local keep=${SNAP[$PICK]}
        SNAP[$PICK]="7 ${keep#* }"
        [ "${keep%% *}" != 7 ] || SNAP[$PICK]="8 ${keep#* }"
        ! check_all || cfail "self-test: snapshot $PICK passed a check against a wrong model"
        SNAP[$PICK]=$keep
    fi
    check_all || cfail "self-test: the restored model fails: $CHECK_ERR"
    echo "conformance: $CFG: $SEEDS sequences x $STEPS steps passed ($(( SECONDS - t0 )) s)"
}

# --------------------------------------------------------- crash matrix
# The state every crash point starts from: s1 <- s2 <- s3 (a child),
# written between, then revert s1 and a write (s1 has two children).
# File configurations build it once per configuration and copy it back
# for every further point (the run directory keeps its absolute path, so
# the domain XML, the catalog and the image headers stay valid, as in
# engine-crash.sh): 9 vmsnap and qemu-io runs a point saved.  RBD images
# and LVs live outside it and are built every time.
crash_base ()
{
    model_reset
    cfg_setup
    if ! is_rbd && ! is_lvm && [ "${BASE_OF:-}" = "$CFG" ]; then
        rm -rf "$TEST_TMP/run"
        cp -a "$TEST_TMP/run.base" "$TEST_TMP/run"
        eval "$BASE_MODEL"
        return
    fi
    RANDOM=42
    op_write; create_named s1; op_write; create_named s2; op_write
    create_named s3; op_write
    WHAT="revert s1"; vms_ok revert "$DOM" s1; model_revert s1; op_write
    if ! is_rbd && ! is_lvm; then
        rm -rf "$TEST_TMP/run.base"
        cp -a "$TEST_TMP/run" "$TEST_TMP/run.base"
        # The model, as global declarations (eval runs in a function).
        BASE_MODEL=$(declare -p HEAD SNAP CURRENT PAT | sed -E 's/^declare -(-|[aAi]+) /declare -g\1 /; s/^declare -g- /declare -g /')
        BASE_OF=$CFG
    fi
}

# crash_start OP: the operation under test, started in the background as
# vmsnap itself (CRASH_PID is vmsnap, not a subshell around it: the SIGKILL
# must hit vmsnap).
crash_start ()
{
    local -a args
    case $1 in
        create) args=(create "$DOM" sx "${BACKEND[@]}") ;;
        revert) args=(revert "$DOM" s3) ;;
        delete) args=(delete "$DOM" s2) ;;
        merge) args=(merge "$DOM") ;;
    esac
    CRASH_T0=${EPOCHREALTIME/./}
    "$VMSNAP" "${args[@]}" >"$TEST_TMP/crash.out" 2>"$TEST_TMP/crash.err" &
    CRASH_PID=$!
}
crash_ms () { MS=$(( (${EPOCHREALTIME/./} - CRASH_T0) / 1000 )); }
# nap: ~5 ms without a fork (a read that times out on a FIFO nobody writes);
# 20 ms in the TCG guest, where the polling shell shares the one vCPU.
nap () { read -r -t "$NAP_S" -u "$NEVER" _ || true; }
journal_exists () { compgen -G "$VMSNAP_STATE_DIR/*/journal" >/dev/null; }

# crash_wait: wait for CRASH_PID, watching its journal (every ~2 ms): sets
# VMS_RC, VMS_ERR, and J_FIRST/J_LAST (ms since the start when the journal
# was first/last seen; empty if never).
crash_wait ()
{
    J_FIRST="" J_LAST=""
    while kill -0 "$CRASH_PID" 2>/dev/null; do
        if journal_exists; then
            crash_ms; J_LAST=$MS; J_FIRST=${J_FIRST:-$J_LAST}
        fi
        nap
    done
    VMS_RC=0; wait "$CRASH_PID" || VMS_RC=$?
    VMS_ERR=$(cat "$TEST_TMP/crash.err")
}

crash_model_after ()
{
    case $1 in
        create) model_create sx ;;
        revert) model_revert s3 ;;
        delete) model_delete s2 ;;
        merge) ;;
    esac
}

# After recover: the model before or after the operation holds.
crash_verify ()
{
    local before_err
    check_all && no_orphans && images_clean && return 0
    before_err=$CHECK_ERR
    crash_model_after "$1"
    check_all && no_orphans && images_clean && return 0
    cfail "after recover neither the state before the operation ($before_err) nor after it ($CHECK_ERR) holds$(printf '\n  the journal recover started from:\n%s\n  recover said: %s' "${KILLED_JOURNAL:-}" "${RECOVERED:-}")"
}

crash_point ()   # OP KIND ARG
{
    local op=$1 kind=$2 arg=$3 ms t0 jdone
    crash_base
    LIST_BEFORE=$("$VMSNAP" list --json "$DOM")
    model_save
    WHAT="$op, $kind $arg"
    if [ "$kind" = after ]; then
        VMSNAP_TEST_CRASH_AFTER=$arg crash_start "$op"
        crash_wait
        if [ "$VMS_RC" = 0 ]; then
            # The uninterrupted run: the random kills fall within the time
            # its journal existed (the operation's storage work; before it
            # vmsnap only reads and plans).
            J_START=${J_FIRST:-0} J_LEN=$(( ${J_LAST:-0} - ${J_FIRST:-0} ))
            CRASH_DONE=1
        elif [[ $VMS_ERR != *"VMSNAP_TEST_CRASH_AFTER reached"* ]]; then
            cfail "vmsnap $op exited $VMS_RC without reaching the crash point: $VMS_ERR"
        fi
    else
        # crash_base reseeded RANDOM: each point draws from its own seed.
        RANDOM=$(( FIRST * 7919 + POINTS * 104729 ))
        ms=$(( RANDOM * 32768 + RANDOM )); ms=$(( ms % (J_LEN + 1) ))
        crash_start "$op"
        # Until the journal appears (or vmsnap ends), then MS more.
        while kill -0 "$CRASH_PID" 2>/dev/null && ! journal_exists; do nap; done
        crash_ms; t0=$MS
        while kill -0 "$CRASH_PID" 2>/dev/null && crash_ms && [ $(( MS - t0 )) -lt "$ms" ]; do nap; done
        kill -KILL "$CRASH_PID" 2>/dev/null || true
        wait "$CRASH_PID" 2>/dev/null || true
        # Where it fell: the steps the journal had marked done (no journal:
        # the operation had ended).
        jdone=$(sed -n 's/^done=//p' "$VMSNAP_STATE_DIR"/*/journal 2>/dev/null | tr '\n' '|') || true
        journal_exists && JKILLS=$(( JKILLS + 1 ))
        KILLED_AT+=" $(( t0 + ms ))ms[${jdone%|}]"
    fi
    # What recover started from and what it said, for a failure's message.
    KILLED_JOURNAL=$(cat "$VMSNAP_STATE_DIR"/*/journal 2>/dev/null) || KILLED_JOURNAL="(none)"
    vms_ok recover --json "$DOM"
    RECOVERED=$VMS_OUT
    model_restore
    crash_verify "$op"
    POINTS=$(( POINTS + 1 ))
}

crash_matrix ()
{
    local op k t0=$SECONDS
    POINTS=0 SEED=0 STEP=0 KILLED_AT="" JKILLS=0 NKILLS=0
    [ -n "${NEVER:-}" ] || { mkfifo "$TEST_TMP/never"; exec {NEVER}<>"$TEST_TMP/never"; }
    NAP_S=0.005; ! is_lvm || NAP_S=0.02
    for op in $CRASH_OPS; do
        CRASH_DONE=0
        for (( k = 1; CRASH_DONE == 0; k++ )); do
            [ "$k" -le 60 ] || cfail "$op never completed within 60 crash points"
            crash_point "$op" after "$k"
        done
        KILLED_AT+=" $op (journal from ${J_START} ms for ${J_LEN} ms):"
        for (( k = 0; k < KILLS; k++ )); do
            crash_point "$op" kill "$k"
            NKILLS=$(( NKILLS + 1 ))
        done
    done
    echo "crash matrix: $CFG: random kills at (ms after the start [journal steps done]):$KILLED_AT"
    echo "crash matrix: $CFG: $JKILLS of $NKILLS random kills hit the operation while its journal existed"
    echo "crash matrix: $CFG: $POINTS points tried, $POINTS passed ($(( SECONDS - t0 )) s)"
}

# ---------------------------------------------------------------- main
for CFG in "${CONFIGS[@]}"; do
    if is_rbd && [ -z "${CEPH_CONF:-}" ]; then
        requires_qemu_rbd
        requires_rbd_backend
        ceph_start
    fi
    if [ "$CRASH" = 1 ]; then
        crash_matrix
    else
        conformance
    fi
done
