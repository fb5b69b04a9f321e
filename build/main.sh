#!/bin/sh
# The main job on bundled defaults: set up, build, train the default config
# (configs/shakespeare-char.lua) on the bundled tinyshakespeare, then sample.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
sh "$ROOT/build/build.sh"
cd "$ROOT"
G=build/out/gptc
$G data --config configs/shakespeare-char.lua
