#!/usr/bin/env bash
# The window of LVM snapshots of LVs a running VM writes to, in the LVM
# guest (tests/fixtures/lvm-guest.sh: this host's kernel has no
# device-mapper; the guest is a stock Debian kernel under QEMU, TCG, and
# there is no libvirt in it).  A writer process stands in for the VM: it
# writes a counter c to origin LV 0, 1, ..., N-1 in turn (one 4 KiB dd with
# O_DIRECT|O_SYNC each), then c+1, ..., and logs when each write returned.
# For thin LVs (one pool) and thick LVs, N = 1, 2, 4, each method REPS
# times on a fresh VG:
#   seq        lvcreate -s of each LV, one after the other (what a per-disk
#              capture costs; there is no common instant across the LVs)
#   dm-suspend `dmsetup suspend` of every origin, then lvcreate -s of each,
#              then `dmsetup resume` of every origin (the "common instant"
#              recipe; lvcreate runs on an origin that is already suspended)
#   thin-msg   thin only: the snapshot LVs are created first (lvcreate -s,
#              outside the window), then in the window: `dmsetup suspend`
#              of every origin, for each `dmsetup message POOL 0 "delete
#              SID"` and `"create_snap SID OID"` (the same thin id, so LVM's
#              metadata stays true), `dmsetup resume` of every origin
#   vmsnap     `vmsnap create` on a domain XML file naming the LVs (offline
#              semantics: no pause), once plain (wall time), once under
#              `strace -f -tt -T -e trace=ioctl`: each DM_DEV_SUSPEND ioctl
#              with DM_SUSPEND_FLAG (suspend) to the one without (resume) of
#              the same device is that device's suspended time
# Measured: the window (dm-suspend, thin-msg: before the first suspend to
# after the last resume returned, in the script, processes included), the
# writer's longest stall during the operation (the window as the "VM" sees
# it, to the resolution of one dd), the span (first to last snapshot), and
# whether the snapshots' counters form one instant: reading LV 0..N-1, a
# consistent cut is c..c,c-1..c-1 (non-increasing, first - last <= 1).
# The pool's transaction id (kernel: dmsetup status; LVM: lvs) is checked
# after each thin operation.
#
#   bench/lvm-window.sh BUILD_DIR
# Environment: BENCH_QUICK=1 (2 repetitions), BENCH_REPS (default 3),
#   BENCH_LVS (default "1 2 4"), BENCH_KINDS (default "thin thick"),
#   BENCH_METHODS (default "seq dm-suspend thin-msg vmsnap").  SKIP (exit 77) when the guest cannot start.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail

if [ "${LVMG_IN_GUEST:-0}" != 1 ]; then
    # ------------------------------------------------------------ host
    . "$(dirname "$0")/lib.sh"
    bench_init "$@"
    . "$srcdir/tests/fixtures/lvm-guest.sh"
    _skip () { echo "SKIP: $*"; exit 77; }
    [ "$(uname -m)" = x86_64 ] || _skip "the LVM guest needs an x86_64 host"
    for c in qemu-system-x86_64 lvm dmsetup strace dd xz dpkg-deb timeout; do
        command -v "$c" >/dev/null 2>&1 || _skip "requires $c"
    done
    [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 ||
        _skip "the LVM guest needs a static /bin/busybox (package busybox-static)"
    lvmg_fetch || _skip "no kernel for the LVM guest: $LVMG_WHY"
    if [ "$BENCH_QUICK" = 1 ]; then REPS=${BENCH_REPS:-2}; else REPS=${BENCH_REPS:-3}; fi
    export LVMG_T_REPS=$REPS LVMG_T_LVS=${BENCH_LVS:-1 2 4}
    export LVMG_T_METHODS=${BENCH_METHODS:-seq dm-suspend thin-msg vmsnap} LVMG_T_KINDS=${BENCH_KINDS:-thin thick}
    export LVMG_T_LDPATH=${LD_LIBRARY_PATH:-}
    export VMSNAP_LVM_GUEST_TIMEOUT=${VMSNAP_LVM_GUEST_TIMEOUT:-2400}
    bench_header "LVM snapshot window with a writer running (LVM guest)"
    echo "- guest: $(basename "$LVMG_KDIR") under QEMU $(lvmg_accel), 1 vCPU, ${VMSNAP_LVM_GUEST_MEM:-1024} MiB; $(lvm version | sed -n 's/^ *LVM version: *//p' | cut -d' ' -f1) (the host's, over 9p); no udev, no libvirt"
    echo "- repetitions per cell: $REPS, each on a fresh VG; LVs of 16 MiB; thick snapshots -L 8M"
    lvmg_boot "$(realpath "$0")" >&2
    [ -n "$LVMG_RC" ] || { tail -n 40 "$TEST_TMP/console.log" >&2; _skip "the LVM guest gave no result (console above)"; }
    sed -n 's/^LVMB|//p' "$TEST_TMP/console.log"
    [ "$LVMG_RC" = 0 ] || fail "the guest part exited $LVMG_RC (console: above on stderr)"
    bench_footer
    exit 0
fi

# ------------------------------------------------------------------ guest
. "$srcdir/tests/fixtures/functions.sh"
# Every step is checked where it matters; a failed LVM command is reported
# in the table, not fatal.
set +e
[ -z "${LVMG_T_LDPATH:-}" ] || export LD_LIBRARY_PATH=$LVMG_T_LDPATH
mk_tmpdir
export VMSNAP_STATE_DIR=$TEST_TMP/state
REPS=$LVMG_T_REPS
METHODS=$LVMG_T_METHODS
VG=vg
TARGETS=(vda vdb vdc vdd vde vdf vdg vdh)
out () { printf 'LVMB|%s\n' "$*"; }
glog () { echo "[bench +$(( ${EPOCHREALTIME/./} / 1000 - T0 )) ms] $*" >&2; }
T0=$(( ${EPOCHREALTIME/./} / 1000 ))
now () { echo "${EPOCHREALTIME/./}"; }
ms () { awk -v d="$1" 'BEGIN { printf "%.1f", d / 1000 }'; }
median ()
{
    printf '%s\n' "$@" | grep -v '^-$' | sort -g | awk '{ v[NR] = $1 }
        END { if (!NR) { print "-"; exit }
              if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
q () { "$@" >>"$TEST_TMP/cmd.log" 2>&1 || { glog "failed: $*: $(tail -n 3 "$TEST_TMP/cmd.log" | tr '\n' ' ')"; return 1; }; }

# fresh_vg KIND N: wipe everything (dm devices, the PV label), then the VG,
# a thin pool (thin) and N origin LVs o0..oN-1 of 16 MiB, zeroed.
fresh_vg ()
{
    local kind=$1 n=$2 i
    dmsetup remove_all --force >/dev/null 2>&1 || true
    # No udev here: LVM made /dev/VG itself.
    rm -rf "/dev/${VG:?}"
    dmsetup mknodes >/dev/null 2>&1 || true
    dd if=/dev/zero of=/dev/vda bs=1M count=8 oflag=direct status=none
    q lvm pvcreate -q -y -ff /dev/vda
    q lvm vgcreate -q "$VG" /dev/vda
    [ "$kind" = thick ] || q lvm lvcreate -q -y --type thin-pool -L 256M -n pool "$VG"
    ORIG=()
    for (( i = 0; i < n; i++ )); do
        if [ "$kind" = thin ]; then
            q lvm lvcreate -q -y -V 16M -T "$VG/pool" -n "o$i"
        else
            q lvm lvcreate -q -y -L 16M -n "o$i" "$VG"
        fi
        ORIG+=("/dev/$VG/o$i")
    done
}

# writer_start / writer_stop: the stand-in VM.  Log lines: "C I T_US".
writer ()
{
    local c=0 i
    while [ ! -e "$TEST_TMP/stop" ]; do
        c=$(( c + 1 ))
        for i in "${!ORIG[@]}"; do
            printf '%020d\n' "$c" | dd of="${ORIG[i]}" bs=4096 count=1 conv=sync oflag=direct,sync status=none
            echo "$c $i ${EPOCHREALTIME/./}"
        done
    done
}
writer_start ()
{
    rm -f "$TEST_TMP/stop"
    writer >"$TEST_TMP/writer.log" 2>"$TEST_TMP/writer.err" &
    WPID=$!
    sleep 1.5
    # The writer's normal interval between two writes (median).
    BASE_GAP=$(awk '{ if (p) print $3 - p; p = $3 }' "$TEST_TMP/writer.log" | sort -g |
               awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }')
}
writer_stop ()
{
    touch "$TEST_TMP/stop"
    wait "$WPID" || true
}
# stall FROM_US TO_US: the longest interval between two writes returning
# that ends after FROM and at or before the first write returning after TO.
stall ()
{
    sleep 0.3
    awk -v a="$1" -v b="$2" '{ t = $3
            if (p && t > a) { if (t - p > m) m = t - p; if (t > b) { done = 1; exit } }
            p = t }
        END { printf "%.1f\n", m / 1000 }' "$TEST_TMP/writer.log"
}

# counters DEV...: the counter each holds, one line.
counters ()
{
    local d v r=()
    for d in "$@"; do
        v=$(dd if="$d" bs=4096 count=1 iflag=direct status=none | head -c 20 | tr -dc 0-9)
        r+=("$(( 10#${v:-0} ))")
    done
    echo "${r[*]}"
}
# consistent C0 C1 ...: yes when the counters are one instant of the writer.
consistent ()
{
    local i prev=$1 first=$1 last
    for i in "$@"; do
        [ "$i" -le "$prev" ] || { echo no; return; }
        prev=$i last=$i
    done
    [ $(( first - last )) -le 1 ] && echo yes || echo no
}

# snapread KIND SNAP...: the snapshots' counters (thin ones activated with
# -K first); "unreadable: ..." when they cannot be activated.
snapread ()
{
    local kind=$1 s devs=() err
    shift
    for s in "$@"; do devs+=("/dev/$VG/$s"); done
    if [ "$kind" = thin ]; then
        err=$(lvm lvchange -ay -K "${@/#/$VG/}" 2>&1) || { echo "unreadable: $(tr '\n' ' ' <<<"$err" | cut -c1-200)"; return; }
    fi
    counters "${devs[@]}"
}

# tid_check: "ok" when the pool's transaction id in the kernel is LVM's.
tid_check ()
{
    local k l
    k=$(dmsetup status "$VG-pool-tpool" 2>/dev/null | awk '{ print $4 }')
    l=$(lvm lvs --noheadings -o transaction_id "$VG/pool" 2>/dev/null | tr -d ' ')
    [ "$k" = "$l" ] && echo ok || echo "MISMATCH kernel=$k lvm=$l"
}

lvnames () { lvm lvs --noheadings -o lv_name "$VG" 2>/dev/null | tr -d ' ' | sort | tr '\n' ' '; }

ROWS=()
# row KIND N METHOD WINDOWS STALLS SPANS CONSISTENT NOTE
row ()
{
    # shellcheck disable=SC2086 # lists of numbers
    ROWS+=("| $1 | $2 | $3 | $(median $4) | $(median $5) | $(median $6) | $7 | $8 |")
    glog "row: ${ROWS[-1]}"
}

# ---------------------------------------------------------------- methods
method_seq ()   # KIND N
{
    local kind=$1 n=$2 r i a b sz=() snaps c cons=0 st=() sp=() note=""
    [ "$kind" = thick ] && sz=(-L 8M)
    fresh_vg "$kind" "$n"
    writer_start
    for (( r = 0; r < REPS; r++ )); do
        snaps=()
        a=$(now)
        for (( i = 0; i < n; i++ )); do
            q lvm lvcreate -q -y -s "${sz[@]}" -n "s$i" "$VG/o$i" || note="lvcreate failed"
            snaps+=("s$i")
        done
        b=$(now)
        st+=("$(stall "$a" "$b")") sp+=("$(ms $(( b - a )))")
        c=$(snapread "$kind" "${snaps[@]}")
        [ "$(consistent $c)" = yes ] && cons=$(( cons + 1 ))
        glog "seq $kind $n rep $r: counters $c"
        SAMPLE="$c"
        q lvm lvremove -q -y "${snaps[@]/#/$VG/}"
    done
    writer_stop
    row "$kind" "$n" "seq: lvcreate -s one LV after the other" "-" "${st[*]}" "${sp[*]}" "$cons/$REPS" \
        "no common instant; counters e.g. ($SAMPLE)${note:+; $note}"
}

method_dmsuspend ()   # KIND N
{
    local kind=$1 n=$2 r i a b sz=() snaps c cons=0 w=() st=() sp=() note="" rc err dm=() s1 s2 state res tid
    [ "$kind" = thick ] && sz=(-L 8M)
    for (( i = 0; i < n; i++ )); do dm+=("$VG-o$i"); done
    for (( r = 0; r < REPS; r++ )); do
        # Thin: an lvcreate on a suspended origin can leave the pool's
        # kernel state behind LVM's: each repetition gets a fresh VG.
        if [ "$r" = 0 ] || [ "$kind" = thin ]; then
            [ "$r" = 0 ] || writer_stop
            fresh_vg "$kind" "$n"
            writer_start
        fi
        snaps=() res=""
        a=$(now)
        q dmsetup suspend "${dm[@]}"
        s1=$(now)
        for (( i = 0; i < n; i++ )); do
            rc=0
            err=$(timeout 30 lvm lvcreate -q -y -s "${sz[@]}" -n "s$i" "$VG/o$i" 2>&1) || rc=$?
            state=$(dmsetup info -C --noheadings -o suspended "${dm[i]}" 2>/dev/null | tr -d ' ')
            res+="o$i:rc=$rc,after=$state;"
            [ "$rc" = 0 ] && snaps+=("s$i")
            [ -z "$err" ] || echo "$err" >>"$TEST_TMP/dms-$kind.err"
        done
        s2=$(now)
        q dmsetup resume "${dm[@]}"
        b=$(now)
        w+=("$(ms $(( b - a )))") st+=("$(stall "$a" "$b")") sp+=("$(ms $(( s2 - s1 )))")
        tid="-"
        [ "$kind" = thin ] && tid=$(tid_check)
        if [ "${#snaps[@]}" = "$n" ]; then
            c=$(snapread "$kind" "${snaps[@]}")
        else
            c="only ${#snaps[@]} of $n created"
        fi
        [[ $c =~ ^[0-9\ ]+$ ]] && [ "$(consistent $c)" = yes ] && cons=$(( cons + 1 ))
        glog "dm-suspend $kind $n rep $r: $res tid=$tid counters=$c window=${w[-1]} ms"
        note="$res pool tid after: $tid; counters e.g. ($c)"
        if [ "$kind" = thick ] && [ "${#snaps[@]}" -gt 0 ]; then q lvm lvremove -q -y "${snaps[@]/#/$VG/}"; fi
    done
    writer_stop
    if [ -s "$TEST_TMP/dms-$kind.err" ]; then
        note+="; lvm said: $(sort -u "$TEST_TMP/dms-$kind.err" | tr '\n' ' ' | sed 's/  */ /g' | cut -c1-300)"
    fi
    row "$kind" "$n" "dm-suspend: dmsetup suspend all, lvcreate -s each, dmsetup resume all" \
        "${w[*]}" "${st[*]}" "${sp[*]}" "$cons/$REPS" "$note"
}

method_thinmsg ()   # N (thin)
{
    local n=$1 r i a b snaps c cons=0 w=() st=() sp=() dm=() sid=() oid=() tid note=""
    fresh_vg thin "$n"
    for (( i = 0; i < n; i++ )); do dm+=("$VG-o$i"); done
    writer_start
    for (( r = 0; r < REPS; r++ )); do
        snaps=() sid=() oid=()
        for (( i = 0; i < n; i++ )); do
            q lvm lvcreate -q -y -s -n "s$i" "$VG/o$i"
            snaps+=("s$i")
            sid+=("$(lvm lvs --noheadings -o thin_id "$VG/s$i" | tr -d ' ')")
            oid+=("$(lvm lvs --noheadings -o thin_id "$VG/o$i" | tr -d ' ')")
        done
        a=$(now)
        q dmsetup suspend "${dm[@]}"
        for (( i = 0; i < n; i++ )); do
            q dmsetup message "$VG-pool-tpool" 0 "delete ${sid[i]}"
            q dmsetup message "$VG-pool-tpool" 0 "create_snap ${sid[i]} ${oid[i]}"
        done
        q dmsetup resume "${dm[@]}"
        b=$(now)
        w+=("$(ms $(( b - a )))") st+=("$(stall "$a" "$b")")
        tid=$(tid_check)
        c=$(snapread thin "${snaps[@]}")
        [[ $c =~ ^[0-9\ ]+$ ]] && [ "$(consistent $c)" = yes ] && cons=$(( cons + 1 ))
        glog "thin-msg $n rep $r: tid=$tid counters=$c window=${w[-1]} ms"
        # The same steps once more under strace (after the reads): the time
        # the kernel spends in them, i.e. the window of a program that
        # issues these ioctls itself instead of starting dmsetup.
        q lvm lvchange -an "${snaps[@]/#/$VG/}"
        rm -f "$TEST_TMP/tm.trace"
        _st () { strace -T -e trace=ioctl -o "$TEST_TMP/tm.1" "$@" >>"$TEST_TMP/cmd.log" 2>&1; cat "$TEST_TMP/tm.1" >>"$TEST_TMP/tm.trace"; }
        _st dmsetup suspend "${dm[@]}"
        for (( i = 0; i < n; i++ )); do
            _st dmsetup message "$VG-pool-tpool" 0 "delete ${sid[i]}"
            _st dmsetup message "$VG-pool-tpool" 0 "create_snap ${sid[i]} ${oid[i]}"
        done
        _st dmsetup resume "${dm[@]}"
        sp+=("$(awk '/DM_DEV_SUSPEND|DM_TARGET_MSG/ && match($0, /<[0-9.]+>$/) { t += substr($0, RSTART + 1, RLENGTH - 2) }
                    END { printf "%.1f", t * 1000 }' "$TEST_TMP/tm.trace")")
        glog "thin-msg $n rep $r: the same ioctls under strace: ${sp[-1]} ms in the kernel; tid $(tid_check)"
        note="pool tid after: $tid; counters e.g. ($c)"
        q lvm lvremove -q -y "${snaps[@]/#/$VG/}"
    done
    writer_stop
    row thin "$n" "thin-msg: lvcreate -s before; suspend all, delete + create_snap same id, resume all" \
        "${w[*]}" "${st[*]}" "${sp[*]}" "$cons/$REPS" "$note; $((2 * n + 2)) dmsetup processes in the window; span = the kernel's time in those ioctls (strace -T, summed)"
}

# suspended_windows STRACE_LOG: "NAME:MS ..." per device, suspend ioctl
# (DM_SUSPEND_FLAG) called -> resume ioctl returned.
suspended_windows ()
{
    awk '/DM_DEV_SUSPEND/ {
            split($2, h, ":"); t = (h[1] * 3600 + h[2] * 60 + h[3]) * 1e6
            d = 0; if (match($0, /<[0-9.]+>$/)) d = substr($0, RSTART + 1, RLENGTH - 2) * 1e6
            pre = $0; sub(/=>.*/, "", pre)
            if (!match($0, /name="[^"]*"/)) next
            nm = substr($0, RSTART + 6, RLENGTH - 7)
            if (pre ~ /DM_SUSPEND_FLAG/) { if (!(nm in s)) s[nm] = t }
            else if (nm in s) { printf "%s:%.1f ", nm, (t + d - s[nm]) / 1000; delete s[nm] }
        }' "$1"
}

method_vmsnap ()   # KIND N
{
    local kind=$1 n=$2 r i a b xml specs=() names wall=() st=() stw=() wins=() cons=0 c lvs snaps sw all="" s
    fresh_vg "$kind" "$n"
    for (( i = 0; i < n; i++ )); do specs+=("${TARGETS[i]}:/dev/$VG/o$i"); done
    xml=$TEST_TMP/dom-$kind-$n.xml
    printf '<domain type="kvm">\n  <name>lv%s%s</name>\n  <uuid>%s</uuid>\n  <memory unit="MiB">128</memory>\n  <os><type arch="x86_64" machine="pc">hvm</type></os>\n  <devices>\n' \
        "$kind" "$n" "$(cat /proc/sys/kernel/random/uuid)" >"$xml"
    for s in "${specs[@]}"; do
        printf '    <disk type="block" device="disk">\n      <driver name="qemu" type="raw"/>\n      <source dev="%s"/>\n      <target dev="%s" bus="virtio"/>\n    </disk>\n' \
            "${s#*:}" "${s%%:*}" >>"$xml"
    done
    printf '  </devices>\n</domain>\n' >>"$xml"
    writer_start
    for (( r = 0; r < REPS; r++ )); do
        a=$(now)
        if ! "$VMSNAP" create --json "$xml" "p$r" >"$TEST_TMP/vc.out" 2>"$TEST_TMP/vc.err"; then
            writer_stop
            row "$kind" "$n" "vmsnap create (liblvm2cmd lvcreate per disk, offline semantics)" "-" "-" "-" "-" \
                "failed: $(tr '\n' ' ' <"$TEST_TMP/vc.err" | cut -c1-200)"
            return 0
        fi
        b=$(now)
        wall+=("$(ms $(( b - a )))") st+=("$(stall "$a" "$b")")
        # The snapshot LVs, in disk order, by vmsnap's tags.
        snaps=()
        lvs=$(lvm lvs --noheadings -o lv_name,lv_tags "@vmsnap_snap_p$r" 2>/dev/null)
        for (( i = 0; i < n; i++ )); do
            snaps+=("$(awk -v t="vmsnap_disk_${TARGETS[i]}" 'index($2, t) { print $1 }' <<<"$lvs")")
        done
        c=$(snapread "$kind" "${snaps[@]}")
        [[ $c =~ ^[0-9\ ]+$ ]] && [ "$(consistent $c)" = yes ] && cons=$(( cons + 1 ))
        [ "$kind" = thin ] && q lvm lvchange -an "${snaps[@]/#/$VG/}"
        # The same under strace: which devices are suspended, for how long.
        a=$(now)
        strace -f -tt -T -e trace=ioctl -o "$TEST_TMP/vs.trace" "$VMSNAP" create --json "$xml" "t$r" >/dev/null 2>"$TEST_TMP/vc.err" ||
            glog "vmsnap create under strace failed: $(cat "$TEST_TMP/vc.err")"
        b=$(now)
        stw+=("$(stall "$a" "$b")")
        sw=$(suspended_windows "$TEST_TMP/vs.trace")
        all+="$sw"
        glog "vmsnap $kind $n rep $r: wall ${wall[-1]} ms, stall ${st[-1]}, counters $c; under strace: $sw"
        SAMPLE=$c
        q "$VMSNAP" delete "$xml" "p$r"
        q "$VMSNAP" delete "$xml" "t$r"
    done
    writer_stop
    # Per origin (the top device of each disk): median suspended time.
    wins=()
    for (( i = 0; i < n; i++ )); do
        wins+=("$(median $(tr ' ' '\n' <<<"$all" | sed -n "s/^$VG-o$i:\\(.*\\)$/\\1/p"))")
    done
    names=$(tr ' ' '\n' <<<"$all" | cut -d: -f1 | grep . | sort -u | tr '\n' ' ')
    row "$kind" "$n" "vmsnap create (liblvm2cmd lvcreate per disk, offline semantics)" \
        "-" "${st[*]}" "${wall[*]}" "$cons/$REPS" \
        "under strace: each origin suspended (ms, median, per LV) ${wins[*]}; devices suspended: ${names}; writer stall under strace $(median ${stw[*]}) ms; counters e.g. ($SAMPLE)"
}

glog "guest part: REPS=$REPS LVS=$LVMG_T_LVS"
for kind in $LVMG_T_KINDS; do
    for n in $LVMG_T_LVS; do
        glog "$kind, $n LV(s)"
        [[ " $METHODS " != *" seq "* ]] || method_seq "$kind" "$n"
        [[ " $METHODS " != *" dm-suspend "* ]] || method_dmsuspend "$kind" "$n"
        [[ " $METHODS " != *" thin-msg "* ]] || [ "$kind" != thin ] || method_thinmsg "$n"
        [[ " $METHODS " != *" vmsnap "* ]] || method_vmsnap "$kind" "$n"
    done
done
dmsetup remove_all --force >/dev/null 2>&1 || true

out ""
out "- writer: one 4 KiB dd (oflag=direct,sync) per write; its median interval between two writes at rest was ${BASE_GAP:-?} us in the last cell (the resolution of \"stall\")"
out ""
out "Milliseconds, medians of $REPS.  window = first suspend called -> last resume returned, timed by the script (dmsetup/lvm processes included); stall = the writer's longest wait between two writes during the operation (the window as the VM would see it); span = seq: first to last lvcreate, dm-suspend: the lvcreates inside the window, thin-msg: the sum of the suspend, message and resume ioctls (strace -T; a second pass of the same steps), vmsnap: wall time of \`vmsnap create\`; consistent = repetitions whose snapshots hold one instant of the writer."
out ""
out "| LVs | N | method | window | stall | span | consistent | notes |"
out "|---|---|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do out "$r"; done
exit 0
