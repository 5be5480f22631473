#!/usr/bin/env bash
# vmsnap's overhead over the raw tool, pair by pair (A then B, B then A on
# the next pair, so drift hits both alike), each side on its own twin:
#   offline (a domain XML file, no daemon), one qcow2 disk:
#     vmsnap create (qcow2-external)  vs  qemu-img create -f qcow2 -b TOP -F qcow2
#       on twin chains of DEPTHS files (default 1, 50 and 200), built with
#       qemu-img create -u (the chain is not vmsnap's: only its depth counts);
#     vmsnap create --backend vda=qcow2-internal  vs  qemu-img snapshot -c
#       on twin images whose snapshot tables hold TABLES entries (default 1,
#       500 and 1000), built once with qemu-img snapshot -c and copied;
#   running (private libvirtd, TCG guest without an OS, 64 MiB qcow2):
#     vmsnap create  vs  virsh snapshot-create-as --disk-only --atomic --no-metadata
# Each side's chain (or table) grows by one per pair.  Then, outside the
# timings, the processes vmsnap starts per command (create, list, info,
# list --tree, chain, plan, revert, delete) on each offline case, counted by
# the library itself (VMSNAP_DEBUG_SPAWNS, doc/performance.md): what the
# issue-17 goal "processes per command do not depend on depth" is about.
# A command vmsnap refuses (a chain deeper than it handles) is reported
# with its exit status and message: a finding, not a bench failure.
#
#   bench/overhead.sh BUILD_DIR
# Environment: BENCH_QUICK=1 (3 pairs, 64 MiB image, tables of 1, 100 and
#   200 entries), BENCH_REPS (pairs per line, default 10, at least 3),
#   BENCH_DEPTHS (default "1 50 200"), BENCH_TABLES (default "1 500 1000";
#   building the 1000-entry table takes minutes), BENCH_SKIP_ONLINE=1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "$@"

if [ "$BENCH_QUICK" = 1 ]; then
    REPS=${BENCH_REPS:-3} SIZE=64M WRITE=8M TABLES=${BENCH_TABLES:-1 100 200}
else
    REPS=${BENCH_REPS:-10} SIZE=1G WRITE=100M TABLES=${BENCH_TABLES:-1 500 1000}
fi
DEPTHS=${BENCH_DEPTHS:-1 50 200}
(( REPS >= 3 )) || fail "BENCH_REPS must be at least 3 (revert and delete need snapshots)"
[ "${BENCH_SKIP_ONLINE:-0}" = 1 ] || requires virsh
export VMSNAP_STATE_DIR=$TEST_TMP/state
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}

ROWS=() SPAWN_ROWS=()
# pair LABEL_A LABEL_B CMD_A_FN CMD_B_FN: REPS interleaved pairs; each FN
# gets the repetition number.  A side that fails ends the line with a row
# saying so (vmsnap refusing a depth is a result).
pair ()
{
    local la=$1 lb=$2 fa=$3 fb=$4 i a=() b=() pr=() sa sb sp f l
    for (( i = 0; i < REPS; i++ )); do
        for f in $( (( i % 2 )) && echo "$fb $fa" || echo "$fa $fb"); do
            time_ms "$f" "$i"
            if [ "$T_RC" != 0 ]; then
                [ "$f" = "$fa" ] && l=$la || l=$lb
                ROWS+=("| $la | $lb | $l FAILED (exit $T_RC): $(bench_errmsg "$TEST_TMP/.last.err") | | | | | | $i |")
                log "  $l failed (exit $T_RC) at pair $i"
                return 1
            fi
            if [ "$f" = "$fa" ]; then a+=("$T_MS"); else b+=("$T_MS"); fi
        done
        pr+=("$(ratio "${a[i]}" "${b[i]}")")
    done
    read -r -a sa <<<"$(stats "${a[@]}")"
    read -r -a sb <<<"$(stats "${b[@]}")"
    read -r -a sp <<<"$(printf '%s\n' "${pr[@]}" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f %.2f\n", m, v[1], v[NR] }')"
    ROWS+=("| $la | $lb | ${sa[0]} | ${sa[1]} | ${sb[0]} | ${sb[1]} | $(ratio "${sa[0]}" "${sb[0]}") | ${sp[0]} (${sp[1]}-${sp[2]}) | $REPS |")
}

# spawn_row LABEL DOMXML PREFIX BACKEND_ARGS...: one row of processes per
# command on a domain whose catalog holds PREFIX0..PREFIX(REPS-1).
spawn_row ()
{
    local label=$1 dom=$2 p=$3 row
    shift 3
    row="| $label | $(bench_spawns create "$dom" "${p}cnt" "$@")"
    row+=" | $(bench_spawns list "$dom") | $(bench_spawns info "$dom" "${p}0") | $(bench_spawns list --tree "$dom")"
    row+=" | $(bench_spawns chain "$dom") | $(bench_spawns plan "$dom" "$@")"
    row+=" | $(bench_spawns revert "$dom" "${p}$(( REPS - 1 ))") | $(bench_spawns delete "$dom" "${p}$(( REPS / 2 ))") |"
    SPAWN_ROWS+=("$row")
}

bench_header "vmsnap's overhead over the raw tool (one disk)"
echo "- offline image $SIZE with $WRITE written; $REPS pairs per line; chain depths $DEPTHS; snapshot tables $TABLES"

# ------------------------------------------- offline, qcow2-external
for L in $DEPTHS; do
    log "offline: vmsnap create (qcow2-external) vs qemu-img create -b, chain of $L"
    D=$TEST_TMP/ext$L
    mkdir -p "$D"
    for side in v q; do
        must qemu-img create -q -f qcow2 "$D/$side.0.qcow2" "$SIZE"
        must qemu-io -f qcow2 -c "write -P 0x5a 0 $WRITE" "$D/$side.0.qcow2" >/dev/null
        for (( i = 1; i < L; i++ )); do
            must qemu-img create -q -f qcow2 -u -b "$D/$side.$(( i - 1 )).qcow2" -F qcow2 "$D/$side.$i.qcow2" "$SIZE"
        done
    done
    xml_domain "ext$L" "$D/dom.xml" "vda:qcow2:$D/v.$(( L - 1 )).qcow2"
    Q_TOP=$D/q.$(( L - 1 )).qcow2 Q_DIR=$D
    f_vms_ext () { "$VMSNAP" create "$Q_DIR/dom.xml" "e$1"; }
    f_qi_overlay ()
    {
        local new=$Q_DIR/q.top$1.qcow2
        qemu-img create -q -f qcow2 -b "$Q_TOP" -F qcow2 "$new" && Q_TOP=$new
    }
    pair "vmsnap create (qcow2-external), chain of $L" "qemu-img create -f qcow2 -b TOP -F qcow2, chain of $L" \
        f_vms_ext f_qi_overlay || true
    spawn_row "qcow2-external, chain of $L (+$REPS)" "$D/dom.xml" e
    rm -rf -- "$D"
done

# ------------------------------------------- offline, qcow2-internal
log "offline: building snapshot tables of $TABLES entries (qemu-img snapshot -c)"
D=$TEST_TMP/int
mkdir -p "$D"
must qemu-img create -q -f qcow2 "$D/table.qcow2" "$SIZE"
must qemu-io -f qcow2 -c "write -P 0x5a 0 $WRITE" "$D/table.qcow2" >/dev/null
n=0
for N in $TABLES; do
    while (( n < N )); do
        n=$(( n + 1 ))
        must qemu-img snapshot -c "t$n" "$D/table.qcow2"
    done
    cp --sparse=always -- "$D/table.qcow2" "$D/t$N.qcow2"
done
for N in $TABLES; do
    log "offline: vmsnap create (qcow2-internal) vs qemu-img snapshot -c, table of $N"
    cp --sparse=always -- "$D/t$N.qcow2" "$D/v$N.qcow2"
    mv -- "$D/t$N.qcow2" "$D/q$N.qcow2"
    xml_domain "int$N" "$D/dom$N.xml" "vda:qcow2:$D/v$N.qcow2"
    I_N=$N
    f_vms_int () { "$VMSNAP" create --backend vda=qcow2-internal "$D/dom$I_N.xml" "i$1"; }
    f_qi_snap () { qemu-img snapshot -c "s$1" "$D/q$I_N.qcow2"; }
    pair "vmsnap create --backend vda=qcow2-internal, table of $N" "qemu-img snapshot -c, table of $N" \
        f_vms_int f_qi_snap || true
    spawn_row "qcow2-internal, table of $N (+$REPS)" "$D/dom$N.xml" i --backend vda=qcow2-internal
    rm -f -- "$D/v$N.qcow2" "$D/q$N.qcow2"
done
rm -rf -- "$D"

# ---------------------------------------------------------------- running
if [ "${BENCH_SKIP_ONLINE:-0}" != 1 ]; then
    log "running: vmsnap vs virsh snapshot-create-as --disk-only --atomic --no-metadata"
    libvirt_start >&2
    for d in ona onb; do
        mkdir -p "$TEST_TMP/$d"
        must qemu-img create -q -f qcow2 "$TEST_TMP/$d/vda.qcow2" 64M
        mk_domain_xml "$d" "$TEST_TMP/$d.xml" "vda:qcow2:$TEST_TMP/$d/vda.qcow2"
        libvirt_define_test_domain "$d" "$TEST_TMP/$d.xml"
        must virsh start "$d" >/dev/null
    done
    f_vms_run () { "$VMSNAP" create ona "r$1"; }
    f_virsh_run () { virsh snapshot-create-as onb "r$1" --disk-only --atomic --no-metadata; }
    pair "vmsnap create (running, one transaction)" "virsh snapshot-create-as --disk-only --atomic --no-metadata" \
        f_vms_run f_virsh_run || true
    RUN_SPAWNS=$(bench_spawns create ona rcnt)
    for d in ona onb; do
        virsh destroy "$d" >/dev/null 2>&1 || true
        virsh undefine --snapshots-metadata "$d" >/dev/null 2>&1 || true
    done
fi

echo
echo "Milliseconds of wall time per command (the process from start to exit)."
echo
echo "| A | B | A median | A p95 | B median | B p95 | A/B (medians) | A/B per pair: median (min-max) | pairs |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Processes vmsnap starts per command (VMSNAP_DEBUG_SPAWNS, outside the timings), on each"
echo "offline domain after its pairs (its catalog holds the $REPS snapshots of the pairs;"
echo "create: one more; info: the first; revert: to the last; delete: the middle one)."
echo
echo "| case | create | list | info | list --tree | chain | plan | revert | delete |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${SPAWN_ROWS[@]}"
if [ -n "${RUN_SPAWNS:-}" ]; then
    echo
    echo "- running, qcow2-external, create: $RUN_SPAWNS"
fi
bench_footer
