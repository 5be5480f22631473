#!/usr/bin/env bash
# Pause window of a consistent snapshot of a RUNNING VM with 1, 4 and 8
# disks, per backend available on this host, next to
# `virsh snapshot-create-as --disk-only --atomic` on the all-qcow2 case.
#
# Stack: a private libvirtd (tests/fixtures/libvirt.sh) with OS-less TCG
# guests (128 MiB), qcow2 disks of 64 MiB; if Ceph and the rbd backend are
# available, a throwaway cluster (tests/fixtures/ceph.sh) and RBD disks of
# 32 MiB.  Configurations:
#   qcow2-external  all qcow2: one libvirt snapshot call = one QMP
#                   "transaction" (no vCPU pause; guest I/O is drained)
#   virsh           the same domain shape, `virsh snapshot-create-as
#                   --disk-only --atomic` (interleaved with the above)
#   qcow2-internal  all qcow2, `vmsnap create --memory` (libvirt pauses the
#                   vCPUs around HMP savevm)
#   rbd             all RBD: the core pauses the VM while every RBD snapshot
#                   is taken
#   mixed           half qcow2, half RBD (4 and 8 disks): paused, RBD
#                   snapshots, then the overlay transaction, resume
# The window is read the same way for vmsnap and virsh, from libvirtd's
# QEMU monitor log (turned on with virt-admin; millisecond timestamps):
# "stop" sent -> "cont" answered when the vCPUs were paused, else the
# "transaction" command sent -> answered.  vmsnap's own pause_ms (pause
# mode) and the wall time of the whole command are shown too.
#
#   bench/pause-window.sh BUILD_DIR
# Environment: BENCH_QUICK=1 (3 repetitions), BENCH_REPS (default 6),
#   BENCH_DISKS (default "1 4 8"), BENCH_SKIP_RBD=1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "$@"
requires virsh virt-admin

if [ "$BENCH_QUICK" = 1 ]; then REPS=${BENCH_REPS:-3}; else REPS=${BENCH_REPS:-6}; fi
DISKS=${BENCH_DISKS:-1 4 8}
export VMSNAP_STATE_DIR=$TEST_TMP/state
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
TARGETS=(vda vdb vdc vdd vde vdf vdg vdh vdi vdj)

RBD=1 RBD_WHY=""
if [ "${BENCH_SKIP_RBD:-0}" = 1 ]; then
    RBD=0 RBD_WHY="BENCH_SKIP_RBD=1"
elif ! jq -e '.[] | select(.name == "rbd") | .status == "loaded"' \
        <<<"$("$VMSNAP" backends --json)" >/dev/null 2>&1; then
    RBD=0 RBD_WHY="the rbd backend is not built or does not load"
elif ! command -v ceph-mon >/dev/null || ! qemu-img --help | grep -q 'Supported formats:.* rbd'; then
    RBD=0 RBD_WHY="no ceph-mon or no QEMU rbd driver"
fi
if [ "$RBD" = 1 ]; then
    . "$srcdir/tests/fixtures/ceph.sh"
    ceph_start >&2
fi
libvirt_start >&2
MONLOG=$VMSNAP_LIBVIRT_DIR/log/monitor.log
ADM="libvirtd:///system?socket=$VMSNAP_LIBVIRT_DIR/sock/libvirt-admin-sock"
must virt-admin -c "$ADM" daemon-log-filters "1:qemu.qemu_monitor" >/dev/null
must virt-admin -c "$ADM" daemon-log-outputs "1:file:$MONLOG 3:file:$VMSNAP_LIBVIRT_LOG" >/dev/null

# window_from_log FROM_BYTE: "WINDOW_MS KIND" of the operation logged since.
window_from_log ()
{
    tail -c "+$(( $1 + 1 ))" "$MONLOG" | awk '
        function ms(t,  a) { split(substr(t, 1, 12), a, ":"); return (a[1] * 3600 + a[2] * 60 + a[3]) * 1000 }
        /QEMU_MONITOR_SEND_MSG/ {
            if (match($0, /"execute":"[a-z-]+"/)) {
                ex = substr($0, RSTART + 11, RLENGTH - 12)
                match($0, /"id":"libvirt-[0-9]+"/); id = substr($0, RSTART + 6, RLENGTH - 7)
                name[id] = ex; sent[id] = ms($2)
                if (ex == "stop" && !stop_t) stop_t = ms($2)
                if (ex == "transaction") tx[id] = 1
                if (ex == "human-monitor-command" && $0 ~ /savevm/) sv[id] = 1
            }
        }
        /QEMU_MONITOR_RECV_REPLY/ {
            if (match($0, /"id": ?"libvirt-[0-9]+"/)) {
                s = substr($0, RSTART, RLENGTH); sub(/"id": ?"/, "", s); sub(/"$/, "", s)
                if (name[s] == "cont" && stop_t) cont_t = ms($2)
                if (tx[s]) txw += ms($2) - sent[s]
                if (sv[s]) svw += ms($2) - sent[s]
            }
        }
        END {
            if (stop_t && cont_t) printf "%d paused\n", cont_t - stop_t
            else if (svw) printf "%d savevm\n", svw
            else if (txw != "") printf "%d transaction\n", txw
            else print "- none"
        }'
}

# op_measure CMD...: runs CMD; sets W_MS (window), W_KIND, WALL_MS, PAUSE_MS.
op_measure ()
{
    local off
    off=$(stat -c %s "$MONLOG" 2>/dev/null || echo 0)
    time_ms "$@"
    [ "$T_RC" = 0 ] || fail "$* exited $T_RC: $(cat "$TEST_TMP/.last.err" "$TEST_TMP/.last.out")"
    WALL_MS=$T_MS
    sleep 0.05   # the daemon's log lands
    read -r W_MS W_KIND < <(window_from_log "$off")
    PAUSE_MS=$(jq -r '.pause_ms // "-"' "$TEST_TMP/.last.out" 2>/dev/null || echo -)
}

# mkdom NAME KIND N: define and start a domain with N disks of KIND
# (qcow2, rbd, mixed: the first half qcow2).
mkdom ()
{
    local name=$1 kind=$2 n=$3 i t specs=() xml=$TEST_TMP/$1.xml
    mkdir -p "$TEST_TMP/img/$name"
    for (( i = 0; i < n; i++ )); do
        t=${TARGETS[i]}
        if [ "$kind" = rbd ] || { [ "$kind" = mixed ] && [ "$i" -ge $(( n / 2 )) ]; }; then
            rbdc create --size 32M "rbd/$name-$t"
            specs+=("rbd:$t:rbd/$name-$t")
        else
            must qemu-img create -q -f qcow2 "$TEST_TMP/img/$name/$t.qcow2" 64M
            specs+=("file:$t:$TEST_TMP/img/$name/$t.qcow2")
        fi
    done
    {
        cat <<EOF
<domain type='$VMSNAP_TEST_DOMTYPE'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
EOF
        for s in "${specs[@]}"; do
            IFS=: read -r k t p <<<"$s"
            if [ "$k" = rbd ]; then
                cat <<EOF
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='rbd' name='$p'>
        <host name='$CEPH_MON_HOST' port='$CEPH_MON_PORT'/>
        <config file='$CEPH_CONF'/>
      </source>
      <target dev='$t' bus='virtio'/>
      <alias name='ua-$t'/>
    </disk>
EOF
            else
                cat <<EOF
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$p'/>
      <target dev='$t' bus='virtio'/>
      <alias name='ua-$t'/>
    </disk>
EOF
            fi
        done
        cat <<'EOF'
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
    } >"$xml"
    libvirt_define_test_domain "$name" "$xml"
    must virsh start "$name" >/dev/null
}

rmdom ()
{
    timeout 30 virsh destroy "$1" >/dev/null 2>&1 || true
    timeout 30 virsh undefine --snapshots-metadata "$1" >/dev/null 2>&1 ||
        timeout 30 virsh undefine "$1" >/dev/null 2>&1 || true
}

ROWS=()
# row LABEL N WINDOWS WALLS PAUSES KIND
row ()
{
    local w wl p
    read -r -a w <<<"$(stats $3)"
    read -r -a wl <<<"$(stats $4)"
    if [ -n "$5" ]; then read -r -a p <<<"$(stats $5)"; else p=(- -); fi
    ROWS+=("| $1 | $2 | $6 | ${w[0]} | ${w[1]} | ${w[3]} | ${p[0]} | ${p[1]} | ${wl[0]} | ${wl[1]} | ${w[4]} |")
    eval "MED_${1//[^a-z0-9]/_}_$2=${w[0]}"
}

bench_header "Pause window of a consistent snapshot of a running VM"
echo "- $(virsh --version | sed 's/^/libvirt /'), guests: TCG ($VMSNAP_TEST_DOMTYPE), 128 MiB, no OS"
[ "$RBD" = 1 ] && echo "- $(ceph --version | cut -d' ' -f1-3), one mon + one memstore OSD on 127.0.0.1" ||
    echo "- RBD configurations skipped: $RBD_WHY"
echo "- repetitions per cell: $REPS (each a new snapshot on the same domain)"

for n in $DISKS; do
    # ---- qcow2-external (vmsnap) and virsh --disk-only --atomic, interleaved
    log "$n disk(s): qcow2-external vs virsh"
    mkdom "ext$n" qcow2 "$n"
    mkdom "vir$n" qcow2 "$n"
    ws=() wls=() vws=() vwls=()
    for (( i = 0; i < REPS; i++ )); do
        op_measure "$VMSNAP" create --json "ext$n" "p$i"
        ws+=("$W_MS") wls+=("$WALL_MS")
        [ "$W_KIND" = transaction ] || fail "ext$n: expected one transaction, log says $W_KIND"
        op_measure virsh snapshot-create-as "vir$n" "p$i" --disk-only --atomic
        vws+=("$W_MS") vwls+=("$WALL_MS")
    done
    row "vmsnap qcow2-external" "$n" "${ws[*]}" "${wls[*]}" "" "transaction"
    row "virsh --disk-only --atomic" "$n" "${vws[*]}" "${vwls[*]}" "" "transaction"
    rmdom "ext$n"; rmdom "vir$n"

    # ---- qcow2-internal with memory
    log "$n disk(s): qcow2-internal --memory"
    mkdom "int$n" qcow2 "$n"
    ws=() wls=()
    for (( i = 0; i < REPS; i++ )); do
        op_measure "$VMSNAP" create --json --memory "int$n" "p$i"
        ws+=("$W_MS") wls+=("$WALL_MS")
    done
    row "vmsnap qcow2-internal --memory" "$n" "${ws[*]}" "${wls[*]}" "" "$W_KIND"
    rmdom "int$n"

    if [ "$RBD" = 1 ]; then
        for kind in rbd mixed; do
            [ "$kind" = mixed ] && [ "$n" -lt 2 ] && continue
            log "$n disk(s): $kind"
            mkdom "$kind$n" "$kind" "$n"
            ws=() wls=() ps=()
            for (( i = 0; i < REPS; i++ )); do
                op_measure "$VMSNAP" create --json "$kind$n" "p$i"
                ws+=("$W_MS") wls+=("$WALL_MS") ps+=("$PAUSE_MS")
            done
            row "vmsnap $kind$([ "$kind" = mixed ] && echo " (qcow2 + rbd)")" "$n" "${ws[*]}" "${wls[*]}" "${ps[*]}" "$W_KIND"
            rmdom "$kind$n"
        done
    fi
done

echo
echo "Milliseconds.  window = what the guest sees, from libvirtd's monitor log (1 ms resolution): vCPUs stopped (stop -> cont) or block I/O drained for the QMP transaction; vmsnap pause_ms = its own measure of the pause (suspend -> resume returned); wall = the whole command."
echo
echo "| configuration | disks | window kind | window median | window p95 | window max | vmsnap pause_ms median | pause_ms p95 | wall median | wall p95 | n |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
for n in $DISKS; do
    a=MED_vmsnap_qcow2_external_$n b=MED_virsh___disk_only___atomic_$n
    if [ -n "${!a:-}" ] && [ -n "${!b:-}" ]; then
        echo "- $n disk(s): window vmsnap / virsh (medians) = ${!a} / ${!b} ms"
    fi
done
bench_footer
