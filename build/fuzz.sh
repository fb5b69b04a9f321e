#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz (clang, -DGPTC_FUZZ=ON, in
# build/fuzz) and runs each for SECONDS (default 60) from its seed corpus
# tests/fuzz/corpus/<target>. Fails if any target finds a crash, a leak, a
# hang (-timeout) or a memory blowup (-rss_limit_mb); the input that did it
# is left in build/fuzz/findings/<target>/ and its log in build/fuzz/logs/.
# What the fuzzers add to the corpus stays in build/fuzz/corpus/, so later
# runs start from there. Usage: sh build/fuzz.sh [SECONDS] [TARGET...]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-60}
[ $# -gt 0 ] && shift
sh "$ROOT/build/setup.sh"
B="$ROOT/build/fuzz"
CC=clang cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGPTC_FUZZ=ON >/dev/null
cmake --build "$B" -j "$(nproc)" --target fuzz
TARGETS=${*:-$(cd "$ROOT/tests/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')}
# scratch files on tmpfs when there is one: the atomic writes fsync
SHM=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && SHM=/dev/shm
SCRATCH=$(mktemp -d "$SHM/gptc-fuzz.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
failed=""
printf '%-12s %10s %6s  %s\n' target execs secs result
for t in $TARGETS; do
  mkdir -p "$B/corpus/$t" "$B/findings/$t" "$B/logs"
  dict=""
  [ -f "$ROOT/tests/fuzz/$t.dict" ] && dict="-dict=$ROOT/tests/fuzz/$t.dict"
  log="$B/logs/$t.log"
  extra="" # the shipped configs seed the config target in place (no copies to drift)
  [ "$t" = config ] && extra="$ROOT/configs"
  start=$(date +%s)
  rc=0
  TMPDIR="$SCRATCH" "$B/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$B/findings/$t/" -print_final_stats=1 $dict \
    "$B/corpus/$t" "$ROOT/tests/fuzz/corpus/$t" $extra >"$log" 2>&1 || rc=$?
  secs=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    printf '%-12s %10s %6s  %s\n' "$t" "${execs:-?}" "$secs" ok
  else
    printf '%-12s %10s %6s  %s\n' "$t" "${execs:-?}" "$secs" "FAILED (exit $rc): see $log"
    grep -E '^==[0-9]+==ERROR|^SUMMARY|fuzz finding|ALARM|out-of-memory|^artifact_prefix|Test unit written' "$log" | head -8
    failed="$failed $t"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: findings in:$failed" >&2
  exit 1
fi
