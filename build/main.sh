#!/bin/sh
# The main job on bundled defaults: set up, build, train the default config
# (configs/shakespeare-char.lua) on the bundled tinyshakespeare for a few
# minutes on the CPU, then sample ~300 characters from the checkpoint.
# Re-running continues the same run (--resume) instead of overwriting it.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
sh "$ROOT/build/build.sh"
cd "$ROOT"
G=build/out/gptc
OUT=out/shakespeare-char
RESUME=""
[ -f "$OUT/last.safetensors" ] && RESUME="--resume"
$G train --config configs/shakespeare-char.lua --out "$OUT" $RESUME
$G sample --ckpt "$OUT/last.safetensors" --prompt "ROMEO:" --tokens 300 --seed 1
