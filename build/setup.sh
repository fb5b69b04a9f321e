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
# The arm64 PCRE2 (Debian multiarch; it installs beside the amd64 one) lets `gptc export --target aarch64`
# build gpt2-tokenizer models (docs/export.md); tests/test_export_port.c runs one under qemu. A machine whose
# apt sources carry no arm64 packages still builds and tests everything else: such an export is refused
# with a one-line reason, and the test checks that instead. (libevent-dev is not co-installable across
# architectures: its arm64 package replaces the amd64 one that --serve links, so an aarch64 export is
# made without --serve unless the cross sysroot has libevent_core.a.)
A64="libpcre2-dev:arm64"
if ! dpkg-query -W -f='${Status}' "$A64" 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64 && $SUDO apt-get update -qq || true
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "$A64" ||
    echo "gptc setup: could not install $A64 (no arm64 packages in the apt sources?); aarch64 exports of gpt2 models are refused"
fi
