#!/usr/bin/env bash
# Revert time as the data on the disk grows: SMALL (64 MiB) vs BIG (4 GiB)
# written before the snapshot, for qcow2-external, qcow2-internal, RBD
# clone mode and RBD rollback (shut-off domain XML files; RBD on a
# throwaway Ceph cluster, tests/fixtures/ceph.sh).  The O(1) paths
# (qcow2-external: a new overlay; RBD clone) should stay flat.
#
# Per backend and size: a disk of BIG + 256 MiB virtual size (the same for
# both sizes, so only the data differs), N bytes written with `write -P`
# patterns (real data: zero writes could be optimised away) in 64 MiB
# commands, snapshot s1; then REPS times: write 64 MiB more (the same
# amount to undo every time), sync, `vmsnap revert DOM s1` (timed).  Shown: the
# first revert, the median and max of all.
#
# Space: the qcow2 cases need about BIG + 300 MiB on the temp directory's
# file system (checked with df), RBD about 2.5 x (BIG + 64 MiB x REPS) of
# RAM (memstore keeps objects in RAM, ~2x); when short, BIG is lowered and
# the table says so.  The OSD's memstore capacity is raised at run time
# (ceph tell osd.0 config set memstore_device_bytes).
# LVM (thin/thick) runs only in the TCG LVM guest (tests/fixtures/lvm-guest.sh)
# and is not part of this script.
#
#   bench/revert-time.sh BUILD_DIR
# Environment: BENCH_QUICK=1 (16 MiB vs 512 MiB, 3 reps), BENCH_REPS
#   (default 4), BENCH_SMALL_MIB, BENCH_BIG_MIB, BENCH_SKIP_RBD=1,
#   BENCH_BACKENDS (default "qcow2-external qcow2-internal rbd").
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "$@"

if [ "$BENCH_QUICK" = 1 ]; then
    REPS=${BENCH_REPS:-3} SMALL=${BENCH_SMALL_MIB:-16} BIG=${BENCH_BIG_MIB:-512} AFTER=16
else
    REPS=${BENCH_REPS:-4} SMALL=${BENCH_SMALL_MIB:-64} BIG=${BENCH_BIG_MIB:-4096} AFTER=64
fi
BACKENDS=${BENCH_BACKENDS:-qcow2-external qcow2-internal rbd}
export VMSNAP_STATE_DIR=$TEST_TMP/state
NOTES=()

# Free space for the qcow2 cases.
need=$(( BIG + AFTER * REPS + 512 ))
have=$(free_mib "$TEST_TMP")
BIG_Q=$BIG
if [ "$have" -lt "$need" ]; then
    BIG_Q=$(( (have - AFTER * REPS - 512) / 64 * 64 ))
    [ "$BIG_Q" -gt "$SMALL" ] || fail "only $have MiB free under $TEST_TMP: not enough for any BIG case"
    NOTES+=("qcow2: only $have MiB free under $TEST_TMP (need $need): BIG lowered to $BIG_Q MiB")
fi

RBD=1 BIG_R=$BIG
if [[ " $BACKENDS " != *" rbd "* ]] || [ "${BENCH_SKIP_RBD:-0}" = 1 ]; then
    RBD=0; NOTES+=("RBD skipped (BENCH_SKIP_RBD / BENCH_BACKENDS)")
elif ! jq -e '.[] | select(.name == "rbd") | .status == "loaded"' \
        <<<"$("$VMSNAP" backends --json)" >/dev/null 2>&1 ||
     ! command -v ceph-mon >/dev/null || ! qemu-img --help | grep -q 'Supported formats:.* rbd'; then
    RBD=0; NOTES+=("RBD skipped: no rbd backend, ceph-mon or QEMU rbd driver")
else
    mem=$(avail_mem_mib)
    needm=$(( (BIG + AFTER * REPS * 2) * 5 / 2 + 1024 ))
    if [ "$mem" -lt "$needm" ]; then
        BIG_R=$(( ((mem - 1024) * 2 / 5 - AFTER * REPS * 2) / 64 * 64 ))
        if [ "$BIG_R" -le "$SMALL" ]; then
            RBD=0; NOTES+=("RBD skipped: only $mem MiB of RAM available")
        else
            NOTES+=("RBD: only $mem MiB of RAM available (memstore keeps data in RAM, ~2x; need ~$needm): BIG lowered to $BIG_R MiB")
        fi
    fi
fi

# write_mib FMT TARGET OFF_MIB LEN_MIB PATTERN: 64 MiB qemu-io commands.
write_mib ()
{
    local fmt=$1 tgt=$2 off=$3 len=$4 pat=$5 args=() o out
    for (( o = off; o < off + len; o += 64 )); do
        args+=(-c "write -P $pat ${o}M $(( (off + len - o) < 64 ? (off + len - o) : 64 ))M")
    done
    out=$(qemu-io -f "$fmt" "${args[@]}" "$tgt" 2>&1) || fail "qemu-io $tgt: $out"
    [[ $out != *failed* ]] || fail "qemu-io $tgt: $out"
}

ROWS=()
declare -A MED=()
# run_case LABEL SIZE_MIB VSIZE_MIB KIND
run_case ()
{
    local label=$1 n=$2 vsize=$3 kind=$4 name dir dom i t=() tgt fmt img
    name=$(echo "$label-$n" | tr -c 'a-z0-9\n' '-')
    dir=$TEST_TMP/$name
    mkdir -p "$dir"
    log "$label, $n MiB written: setting up"
    case $kind in
        qcow2)
            must qemu-img create -q -f qcow2 "$dir/vda.qcow2" "${vsize}M"
            xml_domain "$name" "$dir/dom.xml" "vda:qcow2:$dir/vda.qcow2"
            write_mib qcow2 "$dir/vda.qcow2" 0 "$n" 0x11 ;;
        rbd)
            rbdc create --size "${vsize}M" "rbd/$name"
            rbd_domain_xml "$name" "$dir/dom.xml" "vda:rbd/$name:conf"
            write_mib raw "$(rbd_qemu "rbd/$name")" 0 "$n" 0x11 ;;
    esac
    dom=$dir/dom.xml
    if [ "$label" = qcow2-internal ]; then
        must "$VMSNAP" create --backend vda=qcow2-internal "$dom" s1 >/dev/null
    else
        must "$VMSNAP" create "$dom" s1 >/dev/null
    fi
    for (( i = 0; i < REPS; i++ )); do
        if [ "$kind" = rbd ]; then
            img=$(xmllint --xpath 'string(//disk/source/@name)' "$dom")
            write_mib raw "$(rbd_qemu "$img")" 0 "$AFTER" $(( 0x20 + i ))
        else
            tgt=$(domxml_active "$dom" vda)
            fmt=$(xmllint --xpath 'string(//disk/driver/@type)' "$dom")
            write_mib "$fmt" "$tgt" 0 "$AFTER" $(( 0x20 + i ))
        fi
        # Dirty page cache of the writes would be flushed by the revert's
        # fsyncs (ext4 data=ordered) and counted as its time.
        sync
        time_ms "$VMSNAP" revert "$dom" s1
        [ "$T_RC" = 0 ] || fail "revert $label: $(cat "$TEST_TMP/.last.err")"
        t+=("$T_MS")
    done
    # the revert really restored s1 (the first 64 MiB hold 0x11 again)
    if [ "$kind" = rbd ]; then
        img=$(xmllint --xpath 'string(//disk/source/@name)' "$dom")
        out=$(qemu-io -r -f raw -c "read -P 0x11 0 $(( n < 64 ? n : 64 ))M" "$(rbd_qemu "$img")" 2>&1)
    else
        out=$(qemu-io -r -U -f "$(xmllint --xpath 'string(//disk/driver/@type)' "$dom")" \
              -c "read -P 0x11 0 $(( n < 64 ? n : 64 ))M" "$(domxml_active "$dom" vda)" 2>&1)
    fi
    [[ $out == *"bytes at offset"* && $out != *failed* ]] || fail "$label: after revert the disk does not hold s1: $out"
    read -r -a s <<<"$(stats "${t[@]}")"
    ROWS+=("| $label | $n | ${t[0]} | ${s[0]} | ${s[3]} | $REPS |")
    MED[$label.$n]=${s[0]}
    # free the space/RAM before the next case
    if [ "$kind" = rbd ]; then
        VMSNAP_RBD_REVERT_MODE= must "$VMSNAP" delete "$dom" s1 >/dev/null 2>&1 || true
        for img in $(timeout 60 rbd ls rbd 2>/dev/null | grep -F "$name" || true); do
            timeout 120 rbd snap purge "rbd/$img" >/dev/null 2>&1 || true
            timeout 120 rbd rm "rbd/$img" >/dev/null 2>&1 || true
        done
    fi
    rm -rf "$dir"
}

bench_header "Revert time vs data written"
echo "- sizes: SMALL $SMALL MiB, BIG $BIG MiB written before the snapshot; $AFTER MiB written after it before every revert; $REPS reverts per case"

for be in $BACKENDS; do
    case $be in
        qcow2-external|qcow2-internal)
            vs=$(( BIG_Q + 256 ))
            run_case "$be" "$SMALL" "$vs" qcow2
            run_case "$be" "$BIG_Q" "$vs" qcow2 ;;
        rbd)
            [ "$RBD" = 1 ] || continue
            . "$srcdir/tests/fixtures/ceph.sh"
            ceph_start >&2
            # (ceph.conf sets it, so `ceph config set` would not win; the
            # OSD reads the value at every statfs)
            timeout 60 ceph tell osd.0 config set memstore_device_bytes $(( (BIG_R * 3 + 2048) << 20 )) >/dev/null 2>&1 ||
                NOTES+=("could not raise memstore_device_bytes")
            echo "- $(ceph --version | cut -d' ' -f1-3), memstore OSD; memstore_device_bytes now $(timeout 30 ceph tell osd.0 config get memstore_device_bytes 2>/dev/null | jq -r '.memstore_device_bytes // "?"' 2>/dev/null || echo '?')"
            vs=$(( BIG_R + 256 ))
            for mode in rollback clone; do
                export VMSNAP_RBD_REVERT_MODE=$mode
                run_case "rbd-$mode" "$SMALL" "$vs" rbd
                run_case "rbd-$mode" "$BIG_R" "$vs" rbd
            done
            unset VMSNAP_RBD_REVERT_MODE ;;
    esac
done

for n in "${NOTES[@]}"; do echo "- NOTE: $n"; done
echo
echo "Milliseconds per \`vmsnap revert\` (shut-off VM)."
echo
echo "| backend | MiB written | first | median | max | reverts |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Growth, median BIG / median SMALL (flat = about 1):"
echo
for be in qcow2-external qcow2-internal rbd-rollback rbd-clone; do
    case $be in rbd-*) b=$BIG_R ;; *) b=$BIG_Q ;; esac
    [ -n "${MED[$be.$SMALL]:-}" ] && [ -n "${MED[$be.$b]:-}" ] || continue
    echo "- $be: $(ratio "${MED[$be.$b]}" "${MED[$be.$SMALL]}") (${MED[$be.$SMALL]} ms at $SMALL MiB, ${MED[$be.$b]} ms at $b MiB)"
done
echo "- thin/thick LVM: not measured by this script (TCG LVM guest; see doc/performance.md)"
bench_footer
