#!/bin/sh
# Prepares a GPU run on a machine that has the driver and the CUDA toolkit
# but none of gptc's build dependencies and no network: builds gptc and the
# parity program here, copies the shared libraries they need that such a
# machine may lack (Lua, PCRE2), and compiles every CUDA module run.sh loads
# into the kernel cache for ARCH, so the run does not wait for NVRTC.
#
# Usage: sh tests/gpu/prepare.sh DIR [ARCH]   (ARCH default sm_90)
# Then, on the GPU machine, from the source tree:
#   LD_LIBRARY_PATH=DIR/lib BUILD=DIR sh tests/gpu/run.sh parity golden train sanitize bench
# (DIR/lib holds only libraries; the GPU machine's own libgomp and NVRTC are
# used; its NVRTC must be the version this one was built with for the cached
# modules to be found, else they are compiled there.)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${1:?usage: prepare.sh DIR [ARCH]}
ARCH=${2:-sm_90}
mkdir -p "$DIR/lib"
DIR=$(cd "$DIR" && pwd)
B=${PREP_BUILD:-$DIR/build} # the build tree (need not travel)
cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$B" -j "$(nproc)" --target gptc gptccore
grep -q "GPTC_HAVE_NVRTC" "$B/CMakeFiles/gptccore.dir/flags.make"
NVRTC=$(sed -n 's/^CUDA_nvrtc_LIBRARY:FILEPATH=//p' "$B/CMakeCache.txt")
cc -O2 -std=gnu11 -Wall -Wextra -I"$ROOT/runtime" $(pkg-config --cflags lua5.4) -o "$DIR/parity" \
  "$ROOT/tests/gpu/parity.c" "$B/libgptccore.a" $(pkg-config --libs lua5.4 libpcre2-8) \
  "$NVRTC" -Wl,-rpath,"$(dirname "$NVRTC")" -fopenmp -ldl -lm
cp "$B/gptc" "$DIR/gptc"
for lib in liblua5.4.so.0 libpcre2-8.so.0; do
  cp -L "$(ldconfig -p | sed -n "s/^\t$lib (libc6,x86-64) => //p" | head -n 1)" "$DIR/lib/$lib"
done
export GPTC_CACHE=$DIR/cache
G=$DIR/gptc
pre() { # CONFIG VOCAB PRECISION
  v=""
  [ "$2" != 0 ] && v="--vocab-size $2"
  "$G" gen --config "$1" $v --precision "$3" --device cuda --compile "$ARCH" -o "$DIR/gen" | tail -n 1
}
for prec in fp32 bf16; do
  pre "$ROOT/configs/tiny-test.lua" 62 $prec
  pre "$ROOT/configs/verdict-gpt2-small.lua" 0 $prec
  pre "$ROOT/configs/shakespeare-char.lua" 65 $prec
  pre "$ROOT/configs/shakespeare-char-mid.lua" 65 $prec
  pre "$ROOT/configs/gpt2-124m-ctx256.lua" 0 $prec
  pre "$ROOT/tests/gpu/bench-gpt2-$prec.lua" 0 $prec
done
for g in golden-tied golden-untied; do
  pre "$ROOT/tests/golden/model/$g/config.lua" 0 fp32
done
rm -rf "$DIR/gen"
echo "prepare.sh: $DIR ready ($(du -sh "$DIR" | cut -f1))"
