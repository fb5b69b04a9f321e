#!/bin/sh
# A/B of the baby recipe's GEMM-with-GELU and attention kernels, one thread, thread CPU time
# (docs/bench-cpu.md, "Zen 1 kernels"): OLD and NEW are gen/ + templates/ trees (two git
# worktrees or checkouts); each gets `gptc gen` through GPTC_GEN_DIR, the source is compiled
# with gptc's own flags around tests/ref/kernel_cputime.c, and the two run interleaved ROUNDS times.
# usage: tests/ref/kernel_cputime.sh GPTC OLD NEW [ROUNDS]
set -e
gptc=$1 old=$2 new=$3 rounds=${4:-3}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
for v in old new; do
  eval tree=\$$v
  GPTC_TUNE=off GPTC_CACHE=$dir/cache GPTC_GEN_DIR=$tree "$gptc" gen --config "$here/../../configs/shakespeare-char-baby.lua" \
    --vocab-size 65 -o $dir/$v > /dev/null
  cc -O3 -march=native -fno-math-errno -fopenmp -DMODEL="\"$dir/$v/model.c\"" "$here/kernel_cputime.c" -o $dir/$v/run -lm
done
for i in $(seq 1 "$rounds"); do
  for v in old new; do
    echo "== $v, round $i"
    OMP_NUM_THREADS=1 $dir/$v/run
  done
done
rm -rf "$dir"
