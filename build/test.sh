#!/bin/sh
# Set up, build and run the whole test suite through ctest; then, as CI
# does, the same suite under ASan/UBSan (build/test-asan.sh) and every fuzz
# target for a bounded time (build/fuzz.sh). See docs/fuzz.md for the times
# on the 2-core CI host. GPTC_TEST_ASAN=0 skips the sanitizer suite,
# GPTC_FUZZ_SECONDS=0 the fuzzers (default: 30 s per target);
# arguments go to the release suite's ctest.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
sh "$ROOT/build/build.sh"
(cd "$ROOT/build/out" && ctest --output-on-failure -j "$(nproc)" "$@")
[ "${GPTC_TEST_ASAN:-1}" = 0 ] || sh "$ROOT/build/test-asan.sh"
FUZZ_SECONDS=${GPTC_FUZZ_SECONDS:-30}
[ "$FUZZ_SECONDS" = 0 ] || sh "$ROOT/build/fuzz.sh" "$FUZZ_SECONDS"
