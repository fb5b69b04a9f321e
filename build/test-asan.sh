#!/bin/sh
# Builds the whole suite with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DGPTC_SANITIZE=ON, gcc, in build/asan) and runs it through ctest. Every
# finding is fatal: a leak, an invalid access or undefined behaviour fails
# the test that hit it. The model code gptc compiles at run time is not
# instrumented. The tests share the release build's compile cache
# (build/out/test-cache): its keys hash the generated source, the compiler
# and its flags, never the gptc binary, so the kernels and NVRTC output
# compiled there are reused. Extra arguments go to ctest (e.g. -R test_json).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
sh "$ROOT/build/setup.sh"
cmake -S "$ROOT" -B "$ROOT/build/asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGPTC_SANITIZE=ON \
  -DGPTC_TEST_CACHE="$ROOT/build/out/test-cache" >/dev/null
cmake --build "$ROOT/build/asan" -j "$(nproc)"
cd "$ROOT/build/asan"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# Check's per-test timeouts (600 s) times 3: instrumented code runs slower
# and test_gen's jit_cache compiles five models (it timed out once on a
# loaded 2-core host).
export CK_TIMEOUT_MULTIPLIER="${CK_TIMEOUT_MULTIPLIER:-3}"
# test_cuda's compile-every-config cases are minutes of NVRTC (not
# instrumented) on the very sources the release suite just compiled; the
# gptc code around them runs in the other test_cuda cases here.
export CK_EXCLUDE_TAGS="${CK_EXCLUDE_TAGS:-nvrtc_compile_all}"
ctest --output-on-failure -j "$(nproc)" "$@"
