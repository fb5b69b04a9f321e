#!/bin/sh
# One call on a lent GPU machine with a bundle from tests/gpu/prepare.sh in
# .devcarry: probes the machine, then runs the given run.sh stages, each
# with its own time limit, and packs every log into $OUT/results.tgz.
#   sh tests/gpu/device-call.sh "parity:150 golden:30 train:60 bench:60 sanitize:60"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export BUILD=$ROOT/.devcarry LD_LIBRARY_PATH=$ROOT/.devcarry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export RESULTS=/tmp/gptc-results GPTC_CACHE=$ROOT/.devcarry/cache
mkdir -p "$RESULTS"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  cc --version | head -n 1
  nproc
  ldd "$BUILD/gptc" | grep -E "not found|lua|pcre|gomp|nvrtc"
  "$BUILD/gptc" --version
} >"$RESULTS/machine.txt" 2>&1
cat "$RESULTS/machine.txt"
for s in $1; do
  name=${s%%:*}
  RESULTS=$RESULTS/$name STAGE_LIMIT=${s#*:} sh "$ROOT/tests/gpu/run.sh" "$name"
  cat "$RESULTS/$name/summary.md"
  grep -q FAILED "$RESULTS/$name/summary.md" && tail -n 40 "$RESULTS/$name/$name.log"
done
tar czf "$OUT/results.tgz" -C /tmp gptc-results
