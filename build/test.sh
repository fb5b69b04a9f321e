#!/bin/sh
# Set up, build and run the whole test suite through ctest.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
sh "$ROOT/build/build.sh"
cd "$ROOT/build/out"
ctest --output-on-failure -j "$(nproc)" "$@"
