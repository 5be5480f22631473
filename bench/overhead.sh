#!/usr/bin/env bash
# vmsnap's overhead over the raw tool for a one-disk snapshot, pair by pair
# (A then B, B then A on the next pair, so drift hits both alike):
#   offline (a domain XML file, no daemon), 1 GiB qcow2 with 100 MiB written:
#     vmsnap create (default: qcow2-external)      vs  qemu-img snapshot -c
#     vmsnap create --backend vda=qcow2-internal   vs  qemu-img snapshot -c
#     vmsnap create (qcow2-external)               vs  qemu-img create -b (the overlay alone)
#   running (private libvirtd, TCG guest without an OS, 64 MiB qcow2):
#     vmsnap create (one libvirt transaction)      vs  virsh snapshot-create-as --disk-only
# Each side works on its own twin image/domain.  Also shown: how many
# processes vmsnap started per create (strace -f -e execve, one extra run
# outside the timings) -- where the time goes.
#
#   bench/overhead.sh BUILD_DIR
# Environment: BENCH_QUICK=1 (5 pairs, 64 MiB image), BENCH_REPS (default 10;
#   each side's chain grows by one per pair, so keep it small).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "$@"
requires virsh

if [ "$BENCH_QUICK" = 1 ]; then REPS=${BENCH_REPS:-5} SIZE=64M WRITE=8M
else REPS=${BENCH_REPS:-10} SIZE=1G WRITE=100M; fi
export VMSNAP_STATE_DIR=$TEST_TMP/state
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}

mkimg ()   # PATH
{
    must qemu-img create -q -f qcow2 "$1" "$SIZE"
    must qemu-io -f qcow2 -c "write -P 0x5a 0 $WRITE" "$1" >/dev/null
}

ROWS=() RATIOS=()
# pair LABEL_A LABEL_B CMD_A_FN CMD_B_FN: REPS interleaved pairs; each FN
# gets the repetition number.
pair ()
{
    local la=$1 lb=$2 fa=$3 fb=$4 i a=() b=() pr=() sa sb sp
    for (( i = 0; i < REPS; i++ )); do
        if (( i % 2 )); then
            time_ms "$fb" "$i"; [ "$T_RC" = 0 ] || fail "$lb: $(cat "$TEST_TMP/.last.err")"; b+=("$T_MS")
            time_ms "$fa" "$i"; [ "$T_RC" = 0 ] || fail "$la: $(cat "$TEST_TMP/.last.err")"; a+=("$T_MS")
        else
            time_ms "$fa" "$i"; [ "$T_RC" = 0 ] || fail "$la: $(cat "$TEST_TMP/.last.err")"; a+=("$T_MS")
            time_ms "$fb" "$i"; [ "$T_RC" = 0 ] || fail "$lb: $(cat "$TEST_TMP/.last.err")"; b+=("$T_MS")
        fi
        pr+=("$(ratio "${a[i]}" "${b[i]}")")
    done
    read -r -a sa <<<"$(stats "${a[@]}")"
    read -r -a sb <<<"$(stats "${b[@]}")"
    read -r -a sp <<<"$(printf '%s\n' "${pr[@]}" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f %.2f\n", m, v[1], v[NR] }')"
    ROWS+=("| $la | $lb | ${sa[0]} | ${sa[1]} | ${sb[0]} | ${sb[1]} | $(ratio "${sa[0]}" "${sb[0]}") | ${sp[0]} (${sp[1]}-${sp[2]}) | $REPS |")
}

# execs CMD...: number of processes CMD starts (itself excluded), and which.
execs ()
{
    strace -f -qq -e trace=execve -e signal=none -o "$TEST_TMP/strace.out" "$@" >/dev/null 2>&1 ||
        fail "strace $*: $(tail -n 5 "$TEST_TMP/strace.out")"
    grep -v -e 'resumed>' -e ' = -1 ' "$TEST_TMP/strace.out" | grep 'execve(' |
        sed -E 's/.*execve\("([^"]*)", \["[^"]*"(, "([^"]*)")?.*/\1 \3/' | tail -n +2 |
        awk '{ split($1, p, "/"); n = p[length(p)]; c[n " " $2]++; t++ }
             END { s = ""; for (k in c) s = s (s ? ", " : "") k " x" c[k]; printf "%d (%s)\n", t, s }'
}

bench_header "vmsnap's overhead over the raw tool (one disk)"
echo "- $(virsh --version | sed 's/^/libvirt /'); offline image $SIZE with $WRITE written; $REPS pairs per line"

# ---------------------------------------------------------------- offline
D=$TEST_TMP/off
mkdir -p "$D"
mkimg "$D/ext.qcow2"; mkimg "$D/int.qcow2"; mkimg "$D/raw1.qcow2"; mkimg "$D/raw2.qcow2"; mkimg "$D/ovl.qcow2"
xml_domain ext "$D/ext.xml" "vda:qcow2:$D/ext.qcow2"
xml_domain int "$D/int.xml" "vda:qcow2:$D/int.qcow2"
OVL_ACTIVE=$D/ovl.qcow2

f_vms_ext () { "$VMSNAP" create "$D/ext.xml" "e$1"; }
f_vms_int () { "$VMSNAP" create --backend vda=qcow2-internal "$D/int.xml" "i$1"; }
f_qi_snap1 () { qemu-img snapshot -c "s$1" "$D/raw1.qcow2"; }
f_qi_snap2 () { qemu-img snapshot -c "s$1" "$D/raw2.qcow2"; }
f_vms_ext2 () { "$VMSNAP" create "$D/ext.xml" "x$1"; }
f_qi_overlay ()
{
    local new=$D/ovl.$1.qcow2
    qemu-img create -q -f qcow2 -F qcow2 -b "$OVL_ACTIVE" "$new" && OVL_ACTIVE=$new
}

log "offline: vmsnap (qcow2-external) vs qemu-img snapshot -c"
pair "vmsnap create (qcow2-external, offline)" "qemu-img snapshot -c" f_vms_ext f_qi_snap1
log "offline: vmsnap (qcow2-internal) vs qemu-img snapshot -c"
pair "vmsnap create --backend vda=qcow2-internal (offline)" "qemu-img snapshot -c" f_vms_int f_qi_snap2
log "offline: vmsnap (qcow2-external) vs qemu-img create -b"
pair "vmsnap create (qcow2-external, offline)" "qemu-img create -b (overlay only)" f_vms_ext2 f_qi_overlay
EXEC_EXT=$(execs "$VMSNAP" create "$D/ext.xml" exec1)
EXEC_INT=$(execs "$VMSNAP" create --backend vda=qcow2-internal "$D/int.xml" exec1)

# ---------------------------------------------------------------- running
log "running: vmsnap vs virsh snapshot-create-as --disk-only"
libvirt_start >&2
for d in ona onb; do
    mkdir -p "$TEST_TMP/$d"
    must qemu-img create -q -f qcow2 "$TEST_TMP/$d/vda.qcow2" 64M
    mk_domain_xml "$d" "$TEST_TMP/$d.xml" "vda:qcow2:$TEST_TMP/$d/vda.qcow2"
    libvirt_define_test_domain "$d" "$TEST_TMP/$d.xml"
    must virsh start "$d" >/dev/null
done
f_vms_run () { "$VMSNAP" create ona "r$1"; }
f_virsh_run () { virsh snapshot-create-as onb "r$1" --disk-only; }
pair "vmsnap create (running, one transaction)" "virsh snapshot-create-as --disk-only" f_vms_run f_virsh_run
EXEC_RUN=$(execs "$VMSNAP" create ona exec1)
for d in ona onb; do
    virsh destroy "$d" >/dev/null 2>&1 || true
    virsh undefine --snapshots-metadata "$d" >/dev/null 2>&1 || true
done

echo
echo "Milliseconds of wall time per command (the process from start to exit)."
echo
echo "| A | B | A median | A p95 | B median | B p95 | A/B (medians) | A/B per pair: median (min-max) | pairs |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Processes one vmsnap create starts (strace -f -e execve, outside the timings):"
echo
echo "- offline, qcow2-external: $EXEC_EXT"
echo "- offline, qcow2-internal: $EXEC_INT"
echo "- running, qcow2-external: $EXEC_RUN"
bench_footer
