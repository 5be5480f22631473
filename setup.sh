#!/usr/bin/env bash
# vmsnap developer/CI entry point, for a fresh Debian 12 machine as root.
#
#   ./setup.sh demo    install packages, build, run the demo (real libvirt VM)
#   ./setup.sh test    install packages, build, run the full test suite
#                      (VMSNAP_TEST_STRICT=1: a fixture that cannot start fails)
#
# Builds go to build/ (and build-asan/ for the sanitizer pass of `test`,
# build-fuzz/ for its fuzzing pass: clang, `make fuzz`, tests/fuzz; and
# build-deb/ for its Debian packages).
# Set VMSNAP_SKIP_INSTALL=1 to skip apt-get.
set -euo pipefail
cd "$(dirname "$0")"
top=$PWD
mode=${1:-}
case "$mode" in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

PACKAGES=(
  # build
  autoconf automake libtool pkg-config make gcc libc6-dev
  libglib2.0-dev libjson-glib-dev libxml2-dev libvirt-dev libltdl-dev
  liblvm2-dev libdevmapper-dev librbd-dev librados-dev
  # run: qemu-img at run time, a private libvirtd + QEMU for tests and demo
  qemu-utils qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu
  libvirt-clients util-linux
  # tests (strace: tests/integration/engine-syncs.sh counts a create's
  # fsync'd writes, catalog-only.sh the processes and files list opens,
  # filter-load.sh the backend modules plan and create load)
  jq valgrind strace
  # tests: the man pages (groff -man -ww)
  groff-base
  # tests: the LVM guest (tests/fixtures/lvm-guest.sh) runs the host's lvm2
  # (and thin_check, which LVM runs on thin pools) over 9p; its initramfs
  # is a static busybox
  lvm2 thin-provisioning-tools busybox-static
  # tests: the RBD tests' throwaway Ceph cluster (tests/fixtures/ceph.sh)
  # and QEMU's rbd driver (qemu-io on rbd:, VMs with rbd disks)
  ceph-mon ceph-osd ceph-common qemu-block-extra
  # tests: the Linux guest (tests/fixtures/linux-guest.sh) runs the host's
  # qemu-ga over 9p for its guest-agent channel
  qemu-guest-agent
  # tests: UEFI domains (tests/integration/uefi-nvram.sh): OVMF firmware
  # and its NVRAM template
  ovmf
  # tests: the Debian packages (tests/packaging/deb.sh builds them)
  build-essential debhelper dh-autoreconf dpkg-dev fakeroot
  # tests: the fuzzing build (tests/fuzz): clang, its libFuzzer/ASan
  # runtimes (a Recommends of clang), llvm-symbolizer for readable traces
  clang libclang-rt-14-dev llvm
)

if [ "${VMSNAP_SKIP_INSTALL:-0}" != 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run as root (it installs packages with apt-get)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
fi

# The LVM tests boot a stock Debian kernel (linux-image-amd64, not
# installed: downloaded and unpacked into /var/tmp/vmsnap-test-kernel, where
# the tests find it); fetch it once here so that no test times a download.
# A failure is not fatal here: the LVM tests then say why (strict: fail).
# The demo's Linux guest (demo/mixed.sh) boots the same kernel.
if [ "$mode" = test ] || [ "$mode" = demo ]; then
  bash tests/fixtures/lvm-guest.sh fetch ||
    echo "setup.sh: warning: no kernel for the LVM guest (the LVM tests will fail)" >&2
fi

./autogen.sh
build() {  # build DIR CONFIGURE-ARGS...
  local dir=$1; shift
  mkdir -p "$dir"
  (cd "$dir" && "$top/configure" --enable-werror "$@" && make -j"$(nproc)")
}

if [ "$mode" = demo ]; then
  build build
  exec ./demo/demo.sh build
fi

# test: the full suite on the normal build (strict), then again under
# ASan/UBSan, then the unit tests, the CLI tests and the offline and an
# online engine scenario under valgrind, then distcheck, then the Debian
# packages.
export VMSNAP_TEST_STRICT=1
status=0
build build
(cd build && make -j"$(nproc)" check) || status=1
build build-asan --enable-sanitizers
# The conformance sequences and the crash matrices ran in full above; under
# the sanitizers they run fewer, and neither the LVM guest's conformance,
# kill and error matrices nor the RBD crash matrix run there
# (check-sanitizers' SANITIZER_SKIP, doc/conformance.md).
(cd build-asan && VMSNAP_CONFORMANCE_SEEDS=2 VMSNAP_CONFORMANCE_KILLS=1 make -j"$(nproc)" check-sanitizers) || status=1
# Fuzzing (tests/fuzz): a clang build with libFuzzer runs each harness for
# 60 s over a copy of its corpus; its fuzz-suite.log is counted below.  Only
# the harnesses are built (make fuzz builds them): about 5 minutes in all.
mkdir -p build-fuzz
(cd build-fuzz && "$top/configure" --enable-werror --enable-fuzzing CC=clang &&
   make -j"$(nproc)" fuzz FUZZ_SECONDS=60) || status=1
# -j: the valgrind runs are CPU-bound and independent (about half the time).
(cd build && make -j"$(nproc)" check-valgrind) || status=1
# distcheck proves the tarball is complete and builds and tests on its own;
# the real-stack tests already ran twice above (and the engine scenarios a
# third time under valgrind), so it runs a light set without a VM.
(cd build && make -j"$(nproc)" distcheck \
   TESTS="tests/unit/test-loader tests/unit/test-parse tests/unit/test-contract tests/unit/test-config tests/integration/config.sh tests/integration/man-pages.sh tests/integration/completion.sh tests/integration/backends-cli.sh tests/integration/bad-input.sh tests/integration/plugins-hooks.sh") || status=1
# The Debian packages: build, install, load the backends, build an
# out-of-tree backend against libvmsnap-dev, purge (build-deb/).
bash tests/packaging/deb.sh build-deb || status=1

# Totals over every test-suite.log of this run.
pass=0 fail=0 skip=0
for log in build/test-suite.log build-asan/test-suite.log build/test-suite-valgrind.log \
           build-fuzz/tests/fuzz/fuzz-suite.log build-deb/test-suite-deb.log; do
  [ -f "$log" ] || continue
  p=$(sed -n 's/^# PASS: *//p' "$log"); f=$(sed -n 's/^# FAIL: *//p' "$log")
  e=$(sed -n 's/^# ERROR: *//p' "$log"); x=$(sed -n 's/^# XPASS: *//p' "$log")
  s=$(sed -n 's/^# SKIP: *//p' "$log")
  pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0} + ${e:-0} + ${x:-0})); skip=$((skip + ${s:-0}))
done
[ "$status" = 0 ] || [ "$fail" -gt 0 ] || fail=$((fail + 1))   # a build/distcheck failure counts
# A failed test's own log ends with what failed (a crash point prints its
# journal and recover's answer): its last lines go to the output, so a CI
# report carries the failure, not only its name.
for log in build/test-suite.log build-asan/test-suite.log build-fuzz/tests/fuzz/fuzz-suite.log \
           build-deb/test-suite-deb.log; do
  [ -f "$log" ] || continue
  for t in $(sed -n 's/^\(FAIL\|ERROR\): \(.*\)/\2/p' "$log"); do
    # (automake drops the .sh/.xml extension of a test's log name)
    tl=$(dirname "$log")/${t%.*}.log
    [ -f "$tl" ] || tl=$(dirname "$log")/$t.log
    [ -f "$tl" ] || continue
    echo "---- FAIL $t: the last 40 lines of $tl" >&2
    tail -n 40 "$tl" | cut -c1-400 >&2
  done
  grep -E '^(FAIL|ERROR)' "$log" >&2 || true
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
