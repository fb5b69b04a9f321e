#!/bin/sh
# A/B of the baby recipe's GEMM-with-GELU and attention kernels, one thread, thread CPU time
# (docs/bench-cpu.md, "Zen 1 kernels"): OLD and NEW are gen/ + templates/ trees (two git
# worktrees or checkouts); each gets `gptc gen` through GPTC_GEN_DIR, the source is compiled
# with gptc's own flags around tests/ref/kernel_cputime.c, and the two run interleaved ROUNDS times.
# With RECIPE mid, only the mid recipe's attention (forward and backward) instead.
# usage: tests/ref/kernel_cputime.sh GPTC OLD NEW [ROUNDS] [baby|mid]
set -e
gptc=$1 old=$2 new=$3 rounds=${4:-3} recipe=${5:-baby}
config=shakespeare-char-baby.lua define=
if [ "$recipe" = mid ]; then config=shakespeare-char-mid.lua define=-DMID; fi
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
for v in old new; do
  eval tree=\$$v
  GPTC_TUNE=off GPTC_CACHE=$dir/cache GPTC_GEN_DIR=$tree "$gptc" gen --config "$here/../../configs/$config" \
    --vocab-size 65 -o $dir/$v > /dev/null
  cc -O3 -march=native -fno-math-errno -fopenmp $define -DMODEL="\"$dir/$v/model.c\"" "$here/kernel_cputime.c" -o $dir/$v/run -lm
done
for i in $(seq 1 "$rounds"); do
  for v in old new; do
    echo "== $v, round $i"
    OMP_NUM_THREADS=1 $dir/$v/run
  done
done
rm -rf "$dir"
