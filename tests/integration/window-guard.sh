#!/usr/bin/env bash
# The window guard (tools/vmsnap-window-guard, doc/architecture.md "The
# window guard") on a running domain of a private libvirtd (a TCG guest
# without an OS), paused with `virsh suspend` as vmsnap's pause window
# pauses it:
#   a. the writer of its stdin (the stand-in for vmsnap) is SIGKILLed after
#      "ready" without writing "done": the guard resumes the VM, says so in
#      one line and exits 0;
#   b. "done\n" then EOF: it exits 0 at once, silent, the VM stays paused;
#   c. SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGPIPE while it waits do not
#      end it: it still resumes the VM when its stdin ends;
#   d. EOF on a VM that is not paused: exit 0, "was not paused";
#   e. through libvmsnap (vmsnap_window_guard_start, test-windowguard
#      hold): the holder SIGKILLed inside the window, and the holder's
#      process group sent SIGINT (a Ctrl-C): the VM is running afterwards;
#   f. bad arguments: exit 2 and the usage; an unknown domain: exit 1
#      without "ready".
# Every wait is on the guard's output or exit (fifos read to EOF, wait),
# never a sleep; `timeout` only bounds a hang.
set -euo pipefail
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$srcdir/tests/fixtures/functions.sh"
. "$srcdir/tests/fixtures/libvirt.sh"
requires qemu-img virsh timeout mkfifo cmp
GUARD=${VMSNAP_WINDOW_GUARD:?"set by make check: the built tools/vmsnap-window-guard"}
HOLDER=${abs_top_builddir:?}/tests/unit/test-windowguard
[ -x "$GUARD" ] || fail "$GUARD is not built"
[ -x "$HOLDER" ] || fail "$HOLDER is not built"
mk_tmpdir
T=$TEST_TMP
export VMSNAP_TEST_DOMTYPE=${VMSNAP_TEST_DOMTYPE:-qemu}
libvirt_start
URI=$LIBVIRT_DEFAULT_URI

qemu-img create -q -f qcow2 "$T/vda.qcow2" 16M
mk_domain_xml wguard "$T/wguard.xml" "vda:qcow2:$T/vda.qcow2"
libvirt_define_test_domain wguard "$T/wguard.xml"
out=$(virsh start wguard 2>&1) || fail "virsh start wguard: $out"
UUID=$(virsh domuuid wguard | sed '/^$/d')

# Processes to kill if the test fails half way: only those not yet waited
# for (a pid that ended may be someone else's by then).
declare -A LIVE=()
live ()   { LIVE[$1]=1; }
ended ()  { unset "LIVE[$1]"; }
kill_live ()
{
    local p
    for p in "${!LIVE[@]}"; do kill -KILL "$p" 2>/dev/null; done
}
cleanup_fn kill_live

domstate ()
{
    local st
    st=$(virsh -q domstate wguard 2>&1) || fail "virsh domstate wguard: $st"
    echo "${st%%$'\n'*}"
}
expect_state ()   # STATE WHY
{
    local st
    st=$(domstate)
    [ "$st" = "$1" ] || fail "$2: the domain is $st, expected $1"
}
pause_vm ()
{
    local out
    out=$(virsh suspend wguard 2>&1) || fail "virsh suspend wguard: $out"
    expect_state paused "virsh suspend"
}
resumed_line ()   # PID: the guard's line for a vmsnap that died in the window
{
    echo "vmsnap-window-guard: vmsnap (pid $1) ended inside the pause window of domain wguard: resumed the VM; run 'vmsnap recover wguard'"
}
# wait_ready CASE: read the guard's stdout (the fifo CASE.out) to EOF; it
# must be exactly "ready\n" (then the guard has closed its stdout).
wait_ready ()
{
    local rc=0
    timeout 60 cat "$T/$1.out" >"$T/$1.ready" || rc=$?
    [ "$rc" = 0 ] || { cat "$T/$1.err" >&2; fail "$1: reading the guard's stdout: exit $rc"; }
    printf 'ready\n' | cmp -s - "$T/$1.ready" ||
        { cat "$T/$1.err" >&2; fail "$1: the guard's stdout is '$(cat -A "$T/$1.ready")', not 'ready\\n'"; }
}
# wait_guard CASE PID WANT_RC: the guard's exit status must be WANT_RC.
wait_guard ()
{
    local rc=0
    wait "$2" || rc=$?
    ended "$2"
    [ "$rc" = "$3" ] || { cat "$T/$1.err" >&2; fail "$1: the guard exited $rc, expected $3"; }
}

# ------------------------------------------- a. the writer dies, no "done"
pause_vm
mkfifo "$T/a.in" "$T/a.out"
sleep 600 >"$T/a.in" &
writer=$!
"$GUARD" "$URI" "$UUID" "$writer" <"$T/a.in" >"$T/a.out" 2>"$T/a.err" &
g=$!
live "$writer"; live "$g"
wait_ready a
expect_state paused "a: the guard is ready, its stdin still open"
kill -KILL "$writer"
{ wait "$writer"; } 2>/dev/null || true
ended "$writer"
wait_guard a "$g" 0
[ "$(cat "$T/a.err")" = "$(resumed_line "$writer")" ] ||
    fail "a: the guard said '$(cat "$T/a.err")', expected '$(resumed_line "$writer")'"
expect_state running "a: the writer died without 'done'"
echo "a: writer (pid $writer) killed without done: $(cat "$T/a.err")"

# ---------------------------------------------------------- b. "done\n"
pause_vm
mkfifo "$T/b.in" "$T/b.out"
"$GUARD" "$URI" "$UUID" "$$" <"$T/b.in" >"$T/b.out" 2>"$T/b.err" &
g=$!
live "$g"
exec {w}>"$T/b.in"
wait_ready b
printf 'done\n' >&"$w"
exec {w}>&-
wait_guard b "$g" 0
[ ! -s "$T/b.err" ] || fail "b: the guard said something after done: $(cat "$T/b.err")"
expect_state paused "b: done, then EOF"
echo "b: done: exit 0, silent, the VM still paused"
virsh -q resume wguard >/dev/null
expect_state running "virsh resume"

# ------------------------------------------------ c. signals are ignored
pause_vm
mkfifo "$T/c.in" "$T/c.out"
"$GUARD" "$URI" "$UUID" "$$" <"$T/c.in" >"$T/c.out" 2>"$T/c.err" &
g=$!
live "$g"
exec {w}>"$T/c.in"
wait_ready c
# kill(2) returns once the signal is generated: an ignored one is gone,
# a fatal one has doomed the process before the EOF below can reach it.
for s in INT TERM HUP QUIT PIPE; do
    kill -s "$s" "$g" || fail "c: kill -$s $g: the guard is gone"
done
exec {w}>&-
wait_guard c "$g" 0
[ "$(cat "$T/c.err")" = "$(resumed_line "$$")" ] ||
    fail "c: the guard said '$(cat "$T/c.err")', expected '$(resumed_line "$$")'"
expect_state running "c: EOF after SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE"
echo "c: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE ignored; resumed at EOF"

# ------------------------------------------------ d. EOF, VM not paused
expect_state running "d: before"
mkfifo "$T/d.in" "$T/d.out"
"$GUARD" "$URI" "$UUID" "$$" <"$T/d.in" >"$T/d.out" 2>"$T/d.err" &
g=$!
live "$g"
exec {w}>"$T/d.in"
wait_ready d
exec {w}>&-
wait_guard d "$g" 0
[[ $(cat "$T/d.err") == *"ended inside the pause window of domain wguard: the VM was not paused"* ]] ||
    fail "d: the guard said '$(cat "$T/d.err")'"
expect_state running "d: after"
echo "d: not paused: $(cat "$T/d.err")"

# ------------------------------------- e. through libvmsnap: the holder dies
# The holder (a vmsnap inside its window) starts the guard with
# vmsnap_window_guard_start and says "started GUARD_PID"; the guard's
# stderr is the holder's, the fifo E.err: reading it to EOF waits until
# both have ended.
hold ()   # CASE: start the holder in a process group of its own
{
    mkfifo "$T/$1.out" "$T/$1.err"
    set -m
    # stderr first: the fifo we open below pairs with it
    "$HOLDER" hold "$URI" "$UUID" 2>"$T/$1.err" >"$T/$1.out" </dev/null &
    holder=$!
    set +m
    live "$holder"
    exec {e}<"$T/$1.err"
    started=$(timeout 60 cat "$T/$1.out") || true
    [[ $started == "started "[0-9]* ]] ||
        { timeout 5 cat <&"$e" >&2; fail "$1: the holder said '$started'"; }
    guard_pid=${started#started }
    live "$guard_pid"
}
# holder_ended CASE: the holder and its guard have closed CASE.err.
holder_ended ()
{
    local rc=0
    timeout 60 cat <&"$e" >"$T/$1.msg" || rc=$?
    exec {e}<&-
    [ "$rc" = 0 ] || fail "$1: the guard's stderr did not end: exit $rc"
    { wait "$holder"; } 2>/dev/null || true   # no "Killed" notice
    ended "$holder"
    # its stderr closed: the guard is exiting (it is not our child to wait for)
    ended "$guard_pid"
}

pause_vm
hold e1
kill -KILL "$holder"
holder_ended e1
[ "$(cat "$T/e1.msg")" = "$(resumed_line "$holder")" ] ||
    fail "e1: the guard said '$(cat "$T/e1.msg")', expected '$(resumed_line "$holder")'"
expect_state running "e1: the holder was SIGKILLed inside the window"
echo "e1: holder (pid $holder) SIGKILLed, guard pid $guard_pid: $(cat "$T/e1.msg")"

pause_vm
hold e2
# a Ctrl-C: SIGINT to the holder's whole process group
kill -INT -- "-$holder"
holder_ended e2
[ "$(cat "$T/e2.msg")" = "$(resumed_line "$holder")" ] ||
    fail "e2: the guard said '$(cat "$T/e2.msg")', expected '$(resumed_line "$holder")'"
expect_state running "e2: SIGINT to the holder's process group"
echo "e2: SIGINT to process group $holder: $(cat "$T/e2.msg")"

# ------------------------------------------------------- f. bad arguments
expect_fail 2 "usage: vmsnap-window-guard URI DOMAIN_UUID PARENT_PID" "$GUARD"
expect_fail 2 "usage:" "$GUARD" "$URI" "$UUID"
expect_fail 2 "usage:" "$GUARD" "$URI" "$UUID" 1 extra
expect_fail 2 "empty URI" "$GUARD" "" "$UUID" 1
expect_fail 2 "not a UUID" "$GUARD" "$URI" wguard 1
expect_fail 2 "not a UUID" "$GUARD" "$URI" "${UUID}0" 1
expect_fail 2 "not a process id" "$GUARD" "$URI" "$UUID" 0
expect_fail 2 "not a process id" "$GUARD" "$URI" "$UUID" 12x
out=$("$GUARD" "$URI" 00000000-0000-0000-0000-000000000001 1 </dev/null 2>"$T/f.err") && rc=0 || rc=$?
if ! { [ "$rc" = 1 ] && [ -z "$out" ] &&
        grep -q "no domain 00000000-0000-0000-0000-000000000001" "$T/f.err"; }; then
    fail "f: unknown domain: exit $rc, stdout '$out', stderr '$(cat "$T/f.err")'"
fi
expect_state running "f: the end"
echo "f: bad arguments exit 2; an unknown domain exits 1 without ready"
echo "window-guard: ok"
