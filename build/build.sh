#!/bin/sh
# Configures and builds gptc into build/out (the out-of-tree CMake build dir).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
sh "$ROOT/build/setup.sh"
cmake -S "$ROOT" -B "$ROOT/build/out" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build/out" -j "$(nproc)"
