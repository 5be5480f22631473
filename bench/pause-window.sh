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
#   2 qcow2 + K rbd issue 18's goal: 2 qcow2 + K RBD disks, K in
#                   BENCH_MIX_RBD; each RBD disk is written once through
#                   QEMU first (HMP qemu-io), so QEMU owns its exclusive
#                   lock as in a guest that writes; next to virsh's
#                   all-qcow2 transaction on 2 + K disks (interleaved);
#                   with BENCH_BASELINE also another build's vmsnap on a
#                   domain of the same shape, interleaved ("(baseline)")
#   experiment      NOT vmsnap: on an all-RBD domain of BENCH_QMP_RBD
#                   disks (QEMU owning the locks), (a) QEMU takes the RBD
#                   snapshots itself: one QMP "transaction" of
#                   blockdev-snapshot-internal-sync on every disk's format
#                   node (virsh qemu-monitor-command; libvirt then marks the
#                   domain tainted "custom-monitor"); the snapshots are
#                   checked with `rbd snap ls` and removed; (b) with the VM
#                   suspended, librbd's rbd_snap_create2 through QEMU's lock
#                   owner, timed by bench/rbd-snap-time.c (built here with
#                   cc): one disk at a time, and all disks at once (one
#                   thread per image); (c) one RBD snapshot back to back
#                   on an idle image vs the monitor's paxos propose interval
# The window is read the same way for vmsnap and virsh, from libvirtd's
# QEMU monitor log (turned on with virt-admin; millisecond timestamps):
# "stop" sent -> "cont" answered when the vCPUs were paused, else the
# "transaction" command sent -> answered.  vmsnap's own pause_ms (pause
# mode) and the wall time of the whole command are shown too.
#
#   bench/pause-window.sh BUILD_DIR
# Environment: BENCH_QUICK=1 (3 repetitions), BENCH_REPS (default 5),
#   BENCH_DISKS (default "1 4 8"; "" runs only the rows below),
#   BENCH_MIX_RBD (default "1 2 4"; "" skips), BENCH_BASELINE=BUILD_DIR
#   (another build, e.g. of main, for the "(baseline)" rows),
#   BENCH_QMP_RBD (disks of the experiment, default 4; 0 skips),
#   BENCH_PAXOS (monitor paxos propose intervals for the experiment's
#   cost of one RBD snapshot, default "0.05 0.2"; the fixture uses 0.05),
#   BENCH_SKIP_RBD=1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "$@"
requires virsh virt-admin

if [ "$BENCH_QUICK" = 1 ]; then REPS=${BENCH_REPS:-3}; else REPS=${BENCH_REPS:-5}; fi
DISKS=${BENCH_DISKS-1 4 8}
MIX_RBD=${BENCH_MIX_RBD-1 2 4}
QMP_RBD=${BENCH_QMP_RBD:-4}
BASE_VMSNAP="" BASE_LIBS=""
if [ -n "${BENCH_BASELINE:-}" ]; then
    BASE_BUILD=$(cd "$BENCH_BASELINE" 2>/dev/null && pwd) || fail "BENCH_BASELINE: no directory '$BENCH_BASELINE'"
    if [ -x "$BASE_BUILD/tools/.libs/vmsnap" ] && [ -d "$BASE_BUILD/.libs" ]; then
        BASE_VMSNAP=$BASE_BUILD/tools/.libs/vmsnap BASE_LIBS=$BASE_BUILD/.libs
    elif [ -x "$BASE_BUILD/tools/vmsnap" ]; then
        BASE_VMSNAP=$BASE_BUILD/tools/vmsnap
    else
        fail "BENCH_BASELINE: $BASE_BUILD/tools/vmsnap not found: build it first"
    fi
fi
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
# (qcow2, rbd, mixed: the first half qcow2, q2: the first 2 qcow2).
mkdom ()
{
    local name=$1 kind=$2 n=$3 i t k p s specs=() xml=$TEST_TMP/$1.xml
    mkdir -p "$TEST_TMP/img/$name"
    for (( i = 0; i < n; i++ )); do
        t=${TARGETS[i]}
        if [ "$kind" = rbd ] || { [ "$kind" = mixed ] && [ "$i" -ge $(( n / 2 )) ]; } ||
                { [ "$kind" = q2 ] && [ "$i" -ge 2 ]; }; then
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
                rbd_disk_xml "$t" "$p" conf
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

# rbd_own NAME N FIRST: QEMU writes 64 KiB to each RBD disk of the domain
# (targets FIRST..N-1), so that it owns the image's exclusive lock (librbd
# takes it on the first write), as in a running guest that writes; checked
# with `rbd lock ls`.  Uses the monitor passthrough (the domain is tainted).
rbd_own ()
{
    local name=$1 n=$2 i t locks
    for (( i = $3; i < n; i++ )); do
        t=${TARGETS[i]}
        hmp_qemu_io "$name" "ua-$t" "write -P 0x5a 0 64k" >/dev/null
        locks=$(rbdc lock ls "rbd/$name-$t")
        [[ $locks == *"exclusive lock"* ]] ||
            fail "rbd/$name-$t: QEMU does not own the exclusive lock after a write: $locks"
    done
}

# base_vmsnap ARGS...: the baseline build's vmsnap (its own libraries,
# backends from its build tree, its own state directory).
base_vmsnap ()
{
    env LD_LIBRARY_PATH="$BASE_LIBS" VMSNAP_STATE_DIR="$TEST_TMP/state-base" "$BASE_VMSNAP" "$@"
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
[ -z "$BASE_VMSNAP" ] || echo "- baseline (rows \"(baseline)\"): $(cd "$BASE_BUILD/.." 2>/dev/null && git describe --always --dirty 2>/dev/null || echo unknown) ($BASE_VMSNAP)"

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

# ---- issue 18's goal: 2 qcow2 + K rbd, next to virsh's all-qcow2
# transaction on as many disks (and another build's vmsnap)
MIX_SUM=() MIX_K=() MIX_MED=() MIX_BMED=()
if [ "$RBD" = 1 ] && [ -n "$MIX_RBD" ]; then
    for k in $MIX_RBD; do
        n=$(( 2 + k ))
        log "2 qcow2 + $k rbd: vmsnap${BASE_VMSNAP:+ vs baseline} vs virsh (all qcow2, $n disks)"
        mkdom "mx$k" q2 "$n"; rbd_own "mx$k" "$n" 2
        if [ -n "$BASE_VMSNAP" ]; then mkdom "mb$k" q2 "$n"; rbd_own "mb$k" "$n" 2; fi
        mkdom "mv$k" qcow2 "$n"
        ws=() wls=() ps=() bws=() bwls=() bps=() vws=() vwls=()
        for (( i = 0; i < REPS; i++ )); do
            op_measure "$VMSNAP" create --json "mx$k" "p$i"
            ws+=("$W_MS") wls+=("$WALL_MS") ps+=("$PAUSE_MS"); kind=$W_KIND
            if [ -n "$BASE_VMSNAP" ]; then
                op_measure base_vmsnap create --json "mb$k" "p$i"
                bws+=("$W_MS") bwls+=("$WALL_MS") bps+=("$PAUSE_MS"); bkind=$W_KIND
            fi
            op_measure virsh snapshot-create-as "mv$k" "p$i" --disk-only --atomic
            vws+=("$W_MS") vwls+=("$WALL_MS")
            [ "$W_KIND" = transaction ] || fail "mv$k: expected one transaction, log says $W_KIND"
        done
        row "vmsnap 2 qcow2 + $k rbd" "$n" "${ws[*]}" "${wls[*]}" "${ps[*]}" "$kind"
        MIX_K+=("$k") MIX_MED+=("$(stats "${ws[@]}" | cut -d' ' -f1)")
        if [ -n "$BASE_VMSNAP" ]; then
            row "vmsnap 2 qcow2 + $k rbd (baseline)" "$n" "${bws[*]}" "${bwls[*]}" "${bps[*]}" "$bkind"
            MIX_BMED+=("$(stats "${bws[@]}" | cut -d' ' -f1)")
        fi
        row "virsh --disk-only --atomic (all $n qcow2)" "$n" "${vws[*]}" "${vwls[*]}" "" "transaction"
        rmdom "mx$k"; rmdom "mv$k"; [ -z "$BASE_VMSNAP" ] || rmdom "mb$k"
    done
fi

# mix_summary LABEL MEDIANS...: one line per K: the median window and the
# growth per added RBD disk from the previous K; then the least-squares
# slope over all K.
mix_summary ()
{
    local label=$1 j y
    shift
    local med=("$@")
    for (( j = 0; j < ${#MIX_K[@]}; j++ )); do
        if [ "$j" = 0 ]; then
            y="- (first K)"
        else
            y=$(awk -v a="${med[j-1]}" -v b="${med[j]}" -v ka="${MIX_K[j-1]}" -v kb="${MIX_K[j]}" \
                    'BEGIN { printf "%.1f ms (K=%d -> %d)", (b - a) / (kb - ka), ka, kb }')
        fi
        MIX_SUM+=("- 2 qcow2 + ${MIX_K[j]} rbd$label: window median ${med[j]} ms; per added rbd disk: $y")
    done
    if [ "${#MIX_K[@]}" -ge 2 ]; then
        MIX_SUM+=("- 2 qcow2 + K rbd$label: least-squares slope over K = ${MIX_K[*]}: $(
            paste -d' ' <(printf '%s\n' "${MIX_K[@]}") <(printf '%s\n' "${med[@]}") |
            awk '{ n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2 }
                 END { printf "%.1f", (n * sxy - sx * sy) / (n * sxx - sx * sx) }') ms per rbd disk")
    fi
}
if [ "${#MIX_K[@]}" -gt 0 ]; then
    mix_summary "" "${MIX_MED[@]}"
    [ -z "$BASE_VMSNAP" ] || mix_summary " (baseline)" "${MIX_BMED[@]}"
fi

# ---- experiment (not vmsnap): QEMU takes the RBD snapshots itself, and
# librbd's snapshot through QEMU's lock owner
EXP_ROWS=() EXP_NOTES=()
# exp_row LABEL DISKS VALUES...
exp_row ()
{
    local label=$1 d=$2 st
    shift 2
    read -r -a st <<<"$(stats "$@")"
    EXP_ROWS+=("| $label | $d | ${st[0]} | ${st[1]} | ${st[2]} | ${st[3]} | ${st[4]} |")
}
# kv KEY LINE: the value of KEY=VALUE in LINE.
kv () { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
if [ "$RBD" = 1 ] && [ "$QMP_RBD" -gt 0 ]; then
    k=$QMP_RBD dom=qx$QMP_RBD
    log "experiment: $k rbd, QEMU's own snapshots in one QMP transaction; librbd through the lock owner"
    mkdom "$dom" rbd "$k"; rbd_own "$dom" "$k" 0
    nodes_json=$(virsh qemu-monitor-command "$dom" '{"execute":"query-named-block-nodes"}') ||
        fail "query-named-block-nodes: $nodes_json"
    nodes=() imgs=()
    for (( i = 0; i < k; i++ )); do
        t=${TARGETS[i]}
        idx=$(virsh dumpxml "$dom" | xmllint --xpath "string(//disk[target/@dev='$t']/source/@index)" -)
        [ -n "$idx" ] || fail "$dom $t: no source index in the live XML"
        node=libvirt-$idx-format
        # the format node (raw) over the rbd storage node of this image
        jq -e --arg n "$node" --arg img "$dom-$t" '.return[] | select(.["node-name"] == $n and .drv == "raw" and (.file | contains("\"image\": \"" + $img + "\"")))' \
            <<<"$nodes_json" >/dev/null || fail "$dom $t: $node is not the raw node over rbd/$dom-$t: $nodes_json"
        nodes+=("$node") imgs+=("rbd/$dom-$t")
    done
    qws=() qwls=() vws=() vwls=() vps=()
    for (( i = 0; i < REPS; i++ )); do
        acts=""
        for node in "${nodes[@]}"; do
            acts+="${acts:+,}{\"type\":\"blockdev-snapshot-internal-sync\",\"data\":{\"device\":\"$node\",\"name\":\"qmp$i\"}}"
        done
        op_measure virsh qemu-monitor-command "$dom" "{\"execute\":\"transaction\",\"arguments\":{\"actions\":[$acts]}}"
        jq -e 'has("return") and (has("error") | not)' "$TEST_TMP/.last.out" >/dev/null ||
            fail "QMP transaction: $(cat "$TEST_TMP/.last.out")"
        [ "$W_KIND" = transaction ] || fail "$dom: expected one transaction, log says $W_KIND"
        qws+=("$W_MS") qwls+=("$WALL_MS")
        # the experiment checks its result: every image has the snapshot
        for img in "${imgs[@]}"; do
            rbdc snap ls --format json "$img" | jq -e --arg s "qmp$i" 'any(.[]; .name == $s)' >/dev/null ||
                fail "QMP transaction answered, but $img has no snapshot qmp$i"
            rbdc snap rm "$img@qmp$i" >/dev/null 2>&1
        done
        # vmsnap on the same domain, interleaved
        op_measure "$VMSNAP" create --json "$dom" "p$i"
        vws+=("$W_MS") vwls+=("$WALL_MS") vps+=("$PAUSE_MS")
    done
    exp_row "QEMU takes the RBD snapshots itself: one QMP transaction of blockdev-snapshot-internal-sync (window, monitor log)" "$k" "${qws[@]}"
    exp_row "same, wall of \`virsh qemu-monitor-command\`" "$k" "${qwls[@]}"
    exp_row "for comparison: vmsnap create on the same domain (window, monitor log)" "$k" "${vws[@]}"
    # the rbd storage node under the first format node, for the record
    st=${nodes[0]%-format}-storage
    reply=$(virsh qemu-monitor-command "$dom" "{\"execute\":\"transaction\",\"arguments\":{\"actions\":[{\"type\":\"blockdev-snapshot-internal-sync\",\"data\":{\"device\":\"$st\",\"name\":\"qmpst\"}}]}}" 2>&1) || true
    if rbdc snap ls --format json "${imgs[0]}" | jq -e 'any(.[]; .name == "qmpst")' >/dev/null; then
        rbdc snap rm "${imgs[0]}@qmpst" >/dev/null 2>&1
        st_note="the storage node $st works too"
    else
        st_note="the storage node $st is refused: $(jq -r '.error.desc // .' <<<"$reply" 2>/dev/null || echo "$reply")"
    fi
    EXP_NOTES+=("- QMP snapshots verified with \`rbd snap ls\` on all $k images after each transaction, then removed (\`rbd snap rm\`); nodes: ${nodes[*]}, the raw format nodes (QEMU passes the snapshot down to the rbd child); $st_note")

    # librbd's rbd_snap_create2 through QEMU's lock owner, VM suspended
    tool=$TEST_TMP/rbd-snap-time
    if ! command -v cc >/dev/null; then
        EXP_NOTES+=("- librbd timing skipped: no cc")
    elif ! out=$(cc -O2 -Wall -Wextra -o "$tool" "$BENCH_DIR/rbd-snap-time.c" -lrbd -lrados -lpthread 2>&1); then
        EXP_NOTES+=("- librbd timing skipped: bench/rbd-snap-time.c does not build: $(tr '\n' ' ' <<<"$out" | cut -c1-160)")
    else
        must virsh suspend "$dom" >/dev/null
        opn=() one=() seq=() conc=() concmax=() owners=""
        for (( i = 0; i < REPS; i++ )); do
            sum=0
            for img in "${imgs[@]}"; do
                out=$("$tool" "$CEPH_CONF" "$img" "lb$i" 2>&1) || fail "rbd-snap-time $img: $out"
                opn+=("$(kv open_ms "$out")") one+=("$(kv snap_create_ms "$out")")
                owners+=$(kv lock_owner "$out")
                sum=$(awk -v a="$sum" -v b="$(kv snap_create_ms "$out")" 'BEGIN { print a + b }')
            done
            seq+=("$sum")
            out=$("$tool" "$CEPH_CONF" "${imgs[0]}" "lc$i" "${imgs[@]:1}" 2>&1) || fail "rbd-snap-time (all at once): $out"
            conc+=("$(kv snap_create_ms "$out")") concmax+=("$(kv snap_max_one_ms "$out")")
            owners+=$(kv lock_owner "$out")
        done
        must virsh resume "$dom" >/dev/null
        for img in "${imgs[@]}"; do
            for (( i = 0; i < REPS; i++ )); do
                rbdc snap ls --format json "$img" | jq -e --arg a "lb$i" --arg b "lc$i" \
                    'any(.[]; .name == $a) and any(.[]; .name == $b)' >/dev/null ||
                    fail "$img: snapshots lb$i/lc$i missing"
                rbdc snap rm "$img@lb$i" >/dev/null 2>&1; rbdc snap rm "$img@lc$i" >/dev/null 2>&1
            done
        done
        exp_row "librbd (VM suspended): rbd_open of one image" 1 "${opn[@]}"
        exp_row "librbd (VM suspended): rbd_snap_create2 through QEMU's lock owner, one image" 1 "${one[@]}"
        exp_row "librbd (VM suspended): rbd_snap_create2 on the $k images one after another (sum)" "$k" "${seq[@]}"
        exp_row "librbd (VM suspended): rbd_snap_create2 on the $k images at once (one thread each)" "$k" "${conc[@]}"
        EXP_NOTES+=("- lock owner before each librbd snapshot (1 = some client, QEMU, owned the exclusive lock): $owners")

        # What one RBD snapshot costs on this cluster: back to back, on an
        # image no one holds, with the monitor's paxos propose interval at
        # the fixture's value and at the values of BENCH_PAXOS.
        rbdc create --size 32M rbd/paxos-probe
        for iv in ${BENCH_PAXOS-0.05 0.2}; do
            out=$(timeout 30 ceph tell 'mon.*' injectargs "--paxos_propose_interval=$iv" 2>&1) ||
                fail "injectargs paxos_propose_interval=$iv: $out"
            got=$(timeout 30 ceph tell 'mon.*' config get paxos_propose_interval 2>&1 | jq -r '.. | .paxos_propose_interval? // empty' 2>/dev/null | head -n1)
            vals=()
            for (( i = 0; i < REPS; i++ )); do
                out=$("$tool" "$CEPH_CONF" rbd/paxos-probe "px$iv-$i" 2>&1) || fail "rbd-snap-time paxos-probe: $out"
                vals+=("$(kv snap_create_ms "$out")")
            done
            exp_row "librbd, no lock owner, back to back: rbd_snap_create2 with mon paxos_propose_interval = $iv (mon reports ${got:-?})" 1 "${vals[@]}"
        done
        must timeout 30 ceph tell 'mon.*' injectargs "--paxos_propose_interval=0.05" >/dev/null
    fi
    EXP_NOTES+=("- libvirt's messages for the domain after the passthrough: $(virsh dominfo "$dom" | sed -n 's/^ *\(Messages: *\)\{0,1\}\(tainted: .*\)/\2/p' | paste -sd';' -)")
    EXP_NOTES+=("- \`virsh dumpxml\` (live) mentions a taint: $(virsh dumpxml "$dom" | grep -ci taint || true) line(s)")
    EXP_NOTES+=("- domain log: $(grep -h 'is tainted' "$VMSNAP_LIBVIRT_QEMU_LOG_DIR/$dom.log" | sed 's/^[^ ]* [^ ]* //' | paste -sd';' -)")
    rmdom "$dom"
fi

echo
echo "Milliseconds.  window = what the guest sees, from libvirtd's monitor log (1 ms resolution): vCPUs stopped (stop -> cont) or block I/O drained for the QMP transaction; vmsnap pause_ms = its own measure of the pause (suspend -> resume returned); wall = the whole command."
echo
echo "| configuration | disks | window kind | window median | window p95 | window max | vmsnap pause_ms median | pause_ms p95 | wall median | wall p95 | n |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
[ "${#MIX_SUM[@]}" = 0 ] || { printf '%s\n' "${MIX_SUM[@]}"; echo; }
for n in $DISKS; do
    a=MED_vmsnap_qcow2_external_$n b=MED_virsh___disk_only___atomic_$n
    if [ -n "${!a:-}" ] && [ -n "${!b:-}" ]; then
        echo "- $n disk(s): window vmsnap / virsh (medians) = ${!a} / ${!b} ms"
    fi
done
if [ "${#EXP_ROWS[@]}" -gt 0 ]; then
    echo
    echo "EXPERIMENT, not vmsnap (milliseconds; $QMP_RBD RBD disks written once by QEMU, so it owns their exclusive locks):"
    echo
    echo "| experiment | disks | median | p95 | min | max | n |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${EXP_ROWS[@]}"
    echo
    printf '%s\n' "${EXP_NOTES[@]}"
fi
bench_footer
