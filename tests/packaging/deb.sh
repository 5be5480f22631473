#!/usr/bin/env bash
# The Debian packages, end to end (run as root by `./setup.sh test` after the
# other suites; not part of `make check`: it installs packages).
#
#   tests/packaging/deb.sh [WORKDIR]      (default: build-deb)
#
# Builds the packages from the tree's files (git's tracked and untracked,
# not ignored, files: what the rest of the suite built) with
# `dpkg-buildpackage -us -uc -b` (DEB_BUILD_OPTIONS=nocheck: the suite runs
# elsewhere), checks what each package holds, then installs vmsnap and
# libvmsnap0 only (apt-get install ./FILE.deb: dependencies come from the
# archive) and checks `vmsnap backends` reports lvm and rbd as not installed
# and the qcow2 backends loaded; installs vmsnap-backend-lvm and -rbd and
# checks they load; installs libvmsnap-dev and builds an out-of-tree backend
# with `pkg-config --cflags --libs vmsnap-backend`, which must load from
# VMSNAP_BACKEND_DIR; checks apt refuses a backend package of another
# version; then purges every package it installed, dependencies pulled from
# the archive included, and checks the package list is as it found it.
#
# Prints one `PASS: name` / `FAIL: name` line per check and writes
# WORKDIR/test-suite-deb.log with automake's `# PASS:` / `# FAIL:` totals,
# which setup.sh adds to its own.  Exits 1 on any failure, 77 when it
# cannot run (not root, no dpkg-buildpackage) unless VMSNAP_TEST_STRICT=1,
# which makes that a failure.
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
work=$(realpath -m "${1:-$top/build-deb}")
log=$work/test-suite-deb.log
rm -f "$log"
npass=0 nfail=0
results=()

pass () { echo "PASS: $1"; results+=("PASS: $1"); npass=$((npass + 1)); }
fail () { echo "FAIL: $1${2:+ ($2)}"; results+=("FAIL: $1${2:+ ($2)}"); nfail=$((nfail + 1)); }
check () {  # check NAME CMD...: PASS when CMD succeeds
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

write_log () {
  mkdir -p "$work"
  {
    echo "============================================"
    echo "   vmsnap: tests/packaging/deb.sh"
    echo "============================================"
    echo
    echo "# TOTAL: $((npass + nfail))"
    echo "# PASS:  $npass"
    echo "# SKIP:  0"
    echo "# XFAIL: 0"
    echo "# FAIL:  $nfail"
    echo "# XPASS: 0"
    echo "# ERROR: 0"
    echo
    printf '%s\n' "${results[@]}"
  } > "$log"
  echo "# PASS: $npass"
  echo "# FAIL: $nfail"
}

cannot_run () {
  echo "deb.sh: $1" >&2
  if [ "${VMSNAP_TEST_STRICT:-0}" = 1 ]; then
    fail "preconditions" "$1"
    write_log
    exit 1
  fi
  echo "SKIP: tests/packaging/deb.sh ($1)"
  exit 77
}

# The tree this script belongs to (its files are what gets packaged).
if ! grep -q '^AC_INIT(\[vmsnap\]' "$top/configure.ac" 2>/dev/null ||
   [ ! -f "$top/debian/control" ]; then
  echo "FAIL: preconditions ($top is not a vmsnap source tree with debian/)"
  exit 1
fi
[ "$(id -u)" = 0 ] || cannot_run "needs root (it installs and purges packages)"
for tool in dpkg-buildpackage dh apt-get jq pkg-config cc; do
  command -v "$tool" >/dev/null ||
    cannot_run "$tool not found (./setup.sh installs the build dependencies)"
done

export DEBIAN_FRONTEND=noninteractive
pkgs=(vmsnap libvmsnap0 libvmsnap-dev vmsnap-backend-lvm vmsnap-backend-rbd)
installed_pkgs () {
  dpkg-query -W -f='${db:Status-Abbrev} ${binary:Package}\n' 2>/dev/null |
    awk '$1 != "un" { print $2 }' | sort
}
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) || true
  if [ -n "$st" ] && [[ $st != un* ]]; then
    fail "preconditions" "$p is already installed: this test installs and purges it, purge it first"
    write_log
    exit 1
  fi
done
before=$(installed_pkgs)
touched=0
libdir=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)
bdir=$libdir/vmsnap/backends
# What the packages put on the machine and the machine lacks now: none of
# it may be left after the purge.
watch=()
for p in "$bdir" /etc/vmsnap /usr/include/vmsnap "$libdir/libvmsnap.so.0" /usr/bin/vmsnap; do
  [ -e "$p" ] || watch+=("$p")
done

# Leave the machine as found whatever happens: purge what the run installed.
cleanup () {
  [ "$touched" = 1 ] || return 0
  touched=0
  local new
  new=$(comm -13 <(echo "$before") <(installed_pkgs))
  if [ -n "$new" ]; then
    # shellcheck disable=SC2086
    apt-get purge -y -q $new > "$work/purge.log" 2>&1 ||
      echo "deb.sh: purging failed, see $work/purge.log" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_install () {  # apt_install LOGNAME FILE...
  local name=$1; shift
  touched=1
  apt-get install -y -q --no-install-recommends "$@" > "$work/$name.log" 2>&1
}

# --------------------------------------------------------------- build
rm -rf "$work/src" "$work/debs" "$work/skew" "$work/pkgtest"
mkdir -p "$work/src/vmsnap" "$work/debs"
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$top" && git ls-files -z --cached --others --exclude-standard |
     while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
     tar -c --null -T - -f -) | tar -x -C "$work/src/vmsnap"
else
  # Not a git checkout: the tree without its build directories.
  (cd "$top" && tar -c --exclude=./build --exclude=./build-asan \
     --exclude=./build-deb --exclude='./vmsnap-*.tar.gz' -f - .) |
    tar -x -C "$work/src/vmsnap"
fi
t0=$(date +%s)
(cd "$work/src/vmsnap" &&
   DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -us -uc -b) \
  > "$work/dpkg-buildpackage.log" 2>&1
rc=$?
t1=$(date +%s)
echo "# dpkg-buildpackage: $((t1 - t0)) s, log in $work/dpkg-buildpackage.log"
mv "$work"/src/*.deb "$work"/src/*.buildinfo "$work"/src/*.changes "$work/debs/" 2>/dev/null
ver=$(cd "$work/src/vmsnap" && dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
deb () { echo "$work/debs/${1}_${ver}_${arch}.deb"; }
all_built=1
for p in "${pkgs[@]}"; do [ -f "$(deb "$p")" ] || all_built=0; done
if [ "$rc" != 0 ] || [ "$all_built" != 1 ]; then
  tail -n 30 "$work/dpkg-buildpackage.log" >&2
  fail "build" "dpkg-buildpackage exited $rc; see $work/dpkg-buildpackage.log"
  write_log
  exit 1
fi
pass "build: dpkg-buildpackage -b made ${pkgs[*]}"

# ------------------------------------------------------------ contents
contents () { dpkg-deb -c "$(deb "$1")" | awk '{ print $6 }' | sed 's|^\./|/|'; }
has () {  # has PACKAGE REGEX...: every REGEX matches a file of PACKAGE
  local p=$1 list r; shift
  list=$(contents "$p")
  for r in "$@"; do
    grep -Eq "^$r\$" <<< "$list" || { echo "  $p lacks $r" >&2; return 1; }
  done
}
check "contents: vmsnap has the CLI, the qcow2 backends and vmsnap(1)" \
  has vmsnap /usr/bin/vmsnap "$bdir/qcow2-external.so" "$bdir/qcow2-internal.so" \
  /usr/share/man/man1/vmsnap.1.gz
check "contents: libvmsnap0 has the library" has libvmsnap0 "$libdir/libvmsnap.so.0(\.[0-9.]+)?"
check "contents: libvmsnap0 has the window guard" has libvmsnap0 "$libdir/vmsnap/vmsnap-window-guard"
check "contents: libvmsnap-dev has the headers, the .so link and both .pc files" \
  has libvmsnap-dev /usr/include/vmsnap/vmsnap.h /usr/include/vmsnap/backend.h \
  "$libdir/libvmsnap.so" "$libdir/pkgconfig/vmsnap.pc" "$libdir/pkgconfig/vmsnap-backend.pc"
check "contents: vmsnap-backend-lvm has lvm.so" has vmsnap-backend-lvm "$bdir/lvm.so"
check "contents: vmsnap-backend-rbd has rbd.so" has vmsnap-backend-rbd "$bdir/rbd.so"
no_la () {
  local p
  for p in "${pkgs[@]}"; do
    if contents "$p" | grep -E '\.la$'; then return 1; fi
  done
}
check "contents: no .la file in any package" no_la
# What other parts of the tree install must be packaged (the .install
# patterns take them when they exist): every man page under doc/, the
# configuration file (a conffile), the bash completion.
every_man_page () {
  local f s all
  all=$(for p in "${pkgs[@]}"; do contents "$p"; done)
  for f in "$work"/src/vmsnap/doc/*.[1-8]; do
    [ -e "$f" ] || continue
    s=${f##*.}
    grep -qx "/usr/share/man/man$s/$(basename "$f").gz" <<< "$all" ||
      { echo "  no package has $(basename "$f")" >&2; return 1; }
  done
}
check "contents: every man page of doc/ is packaged" every_man_page
if [ -e "$work/src/vmsnap/etc/vmsnap.conf" ]; then
  check "contents: vmsnap has /etc/vmsnap/vmsnap.conf as a conffile" \
    grep -qx /etc/vmsnap/vmsnap.conf <<< "$(dpkg-deb -I "$(deb vmsnap)" conffiles 2>&1)"
fi
if grep -qi completion <<< "$(cd "$work/src/vmsnap" && find . -path ./debian -prune -o -print)"; then
  check "contents: vmsnap has the bash completion" \
    has vmsnap /usr/share/bash-completion/completions/vmsnap
fi
for p in vmsnap-backend-lvm vmsnap-backend-rbd; do
  check "control: $p depends on vmsnap (= $ver)" \
    grep -Fq "vmsnap (= $ver)" <<< "$(dpkg-deb -f "$(deb "$p")" Depends)"
done

# ------------------------------------------------------ install, backends
t2=$(date +%s)
backends_json () { env -u VMSNAP_BACKEND_DIR /usr/bin/vmsnap backends --json; }
field_of () {  # field_of JSON NAME FIELD: FIELD of backend NAME
  jq -r --arg n "$2" --arg f "$3" '.[] | select(.name == $n) | .[$f]' <<< "$1"
}
loaded_from () {  # loaded_from JSON NAME DIR: NAME loaded from a module in DIR
  local st mod
  st=$(field_of "$1" "$2" status); mod=$(field_of "$1" "$2" module)
  if [ "$st" = loaded ] && [ "$(dirname "$mod")" = "$3" ]; then return 0; fi
  echo "  $2: status $st, module $mod" >&2
  return 1
}
not_installed () {  # not_installed JSON NAME: reported missing, naming its package
  local st msg
  st=$(field_of "$1" "$2" status); msg=$(field_of "$1" "$2" message)
  if [ "$st" = not-installed ] && [[ "$msg" == *"vmsnap-backend-$2"* ]]; then return 0; fi
  echo "  $2: status $st, message $msg" >&2
  return 1
}

if apt_install install-vmsnap "$(deb libvmsnap0)" "$(deb vmsnap)"; then
  pass "install: vmsnap and libvmsnap0 (apt-get install ./*.deb)"
  # the window guard libvmsnap runs: installed where libvmsnap looks, and
  # its libraries resolve (bad arguments: usage, exit 2)
  guard_runs () {
    local rc=0
    "$libdir/vmsnap/vmsnap-window-guard" 2>"$work/window-guard.err" || rc=$?
    [ "$rc" = 2 ] && grep -q '^usage: vmsnap-window-guard ' "$work/window-guard.err" && return 0
    echo "  vmsnap-window-guard: exit $rc, $(cat "$work/window-guard.err")" >&2
    return 1
  }
  check "window guard: $libdir/vmsnap/vmsnap-window-guard runs (usage, exit 2)" guard_runs
  out=$(backends_json); rc=$?
  echo "$out" > "$work/backends-without-optional.json"
  check "backends: exits 0 with lvm and rbd missing" test "$rc" = 0
  for b in lvm rbd; do
    check "backends: $b is not-installed (not load-failed) and names its package" \
      not_installed "$out" "$b"
  done
  for b in qcow2-external qcow2-internal; do
    check "backends: $b loaded from $bdir" loaded_from "$out" "$b" "$bdir"
  done
else
  fail "install: vmsnap and libvmsnap0" "see $work/install-vmsnap.log"
fi

if apt_install install-backends "$(deb vmsnap-backend-lvm)" "$(deb vmsnap-backend-rbd)"; then
  pass "install: vmsnap-backend-lvm and vmsnap-backend-rbd"
  out=$(backends_json); rc=$?
  echo "$out" > "$work/backends-with-optional.json"
  check "backends: exits 0 with every backend installed" test "$rc" = 0
  for b in lvm rbd qcow2-external qcow2-internal; do
    check "backends: $b loaded from $bdir" loaded_from "$out" "$b" "$bdir"
  done
else
  fail "install: vmsnap-backend-lvm and vmsnap-backend-rbd" "see $work/install-backends.log"
fi

# A backend package of another version (rebuilt here from the real one)
# must be refused: it depends on vmsnap of its own version.
skew_refused () {
  local d=$work/skew/pkg v2="$ver+skew1" f
  mkdir -p "$work/skew"
  dpkg-deb -R "$(deb vmsnap-backend-lvm)" "$d" || return 1
  sed -i -e "s/^Version: .*/Version: $v2/" \
         -e "s/vmsnap (= $ver)/vmsnap (= $v2)/" "$d/DEBIAN/control"
  grep -Fq "vmsnap (= $v2)" "$d/DEBIAN/control" || return 1
  f=$work/skew/vmsnap-backend-lvm_${v2}_$arch.deb
  dpkg-deb --root-owner-group -b "$d" "$f" > /dev/null || return 1
  # -s: simulate; it must not be installable next to vmsnap $ver.
  if apt-get install -s -q "$f" > "$work/skew.log" 2>&1; then
    echo "  apt-get would install $f" >&2
    return 1
  fi
  grep -Fq "vmsnap (= $v2)" "$work/skew.log"
}
check "install: apt refuses vmsnap-backend-lvm of another version" skew_refused

# ------------------------------------------------- out-of-tree backend
if apt_install install-dev "$(deb libvmsnap-dev)"; then
  pass "install: libvmsnap-dev"
  mkdir -p "$work/pkgtest/mods"
  check "pkg-config: vmsnap-backend's backenddir is where the packages put the backends" \
    test "$(pkg-config --variable=backenddir vmsnap-backend)" = "$bdir"
  # shellcheck disable=SC2046
  if cc -Wall -Wextra -Werror -shared -fPIC -o "$work/pkgtest/mods/pkgtest.so" \
       "$top/tests/packaging/pkgtest-backend.c" \
       $(pkg-config --cflags --libs vmsnap-backend) > "$work/pkgtest/cc.log" 2>&1; then
    pass "out-of-tree backend builds with pkg-config --cflags --libs vmsnap-backend"
    out=$(VMSNAP_BACKEND_DIR=$work/pkgtest/mods /usr/bin/vmsnap backends --json); rc=$?
    echo "$out" > "$work/backends-pkgtest.json"
    check "backends: exits 0 with the out-of-tree backend" test "$rc" = 0
    check "backends: the out-of-tree backend loads from VMSNAP_BACKEND_DIR" \
      loaded_from "$out" pkgtest "$work/pkgtest/mods"
    text=$(VMSNAP_BACKEND_DIR=$work/pkgtest/mods /usr/bin/vmsnap backends)
    check "backends: text output lists pkgtest with its version" \
      grep -Eq '^pkgtest +loaded +0\.0\.1-pkgtest' <<< "$text"
  else
    cat "$work/pkgtest/cc.log" >&2
    fail "out-of-tree backend builds with pkg-config --cflags --libs vmsnap-backend" \
      "see $work/pkgtest/cc.log"
  fi
else
  fail "install: libvmsnap-dev" "see $work/install-dev.log"
fi

# ---------------------------------------------------------------- purge
cleanup
after=$(installed_pkgs)
if [ "$after" = "$before" ]; then
  pass "purge: the package list is as the test found it"
else
  fail "purge: the package list is as the test found it" \
    "$(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | tr '\n' ' ')"
fi
leftover () {
  local p
  for p in "${watch[@]}"; do
    [ ! -e "$p" ] || { echo "  $p is left after the purge" >&2; return 1; }
  done
}
check "purge: no vmsnap file is left" leftover
t3=$(date +%s)
echo "# install/check/purge: $((t3 - t2)) s"

write_log
[ "$nfail" = 0 ]
