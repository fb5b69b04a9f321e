#!/bin/sh
# Installs what gptc needs to build and test, from Debian packages only.
# Idempotent: asks dpkg first and runs apt-get only for what is missing.
set -eu
# clang, its compiler-rt (libFuzzer, ASan for clang) and its OpenMP: build/fuzz.sh;
# gcc's own libasan/libubsan serve build/test-asan.sh.
# libxml2-utils (xmllint) and librsvg2-bin (rsvg-convert): tests/test_plot.c parses the charts gptc draws
# as XML and renders them to PNG; gptc itself needs neither.
PKGS="gcc make cmake pkg-config liblua5.4-dev libpcre2-dev check libsubunit-dev libopenblas-dev
  clang libclang-rt-14-dev libomp-14-dev libxml2-utils librsvg2-bin"
PKGS="$PKGS gcc-aarch64-linux-gnu qemu-user-static"  # gptc export --target aarch64 (cross compiler, static arm64 glibc and libgomp) and tests/test_export_port.c running it under qemu
PKGS="$PKGS libevent-dev"  # exported executables link libevent's evhttp statically for --serve (docs/serve.md)
PKGS="$PKGS openmpi-bin libopenmpi-dev"  # mpirun and MPI for data-parallel training (dist_mpi.c, tests/test_mpi.c)
missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
if [ -n "$missing" ]; then
  echo "gptc setup: installing$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
