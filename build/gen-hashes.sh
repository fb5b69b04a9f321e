#!/bin/sh
# Prints the SHA-256 of everything the generator emits for every shipped
# config in configs/: `gptc gen`'s model.c (cpu) and model.cu (cuda) and
# shapes.txt, at both precisions, and each per-kernel compilation unit's
# cache key (`gptc gen --explain`, a hash of the unit's source). Run it
# before and after a change that must not change the generated sources
# (a refactoring): the two outputs must be identical.
#   sh build/gen-hashes.sh [path/to/gptc] > before.txt
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GPTC=${1:-$ROOT/build/out/gptc}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# a private token cache, so the run neither reads nor writes the user's
export GPTC_CACHE="$TMP/cache"
for cfg in "$ROOT"/configs/*.lua; do
  name=$(basename "$cfg" .lua)
  for prec in fp32 bf16; do
    for dev in cpu cuda; do
      out="$TMP/$name-$prec-$dev"
      "$GPTC" gen --config "$cfg" --device "$dev" --precision "$prec" -o "$out" >/dev/null
      for f in "$out"/*; do
        h=$(sha256sum "$f" | cut -d' ' -f1)
        echo "$h  $name $prec $dev $(basename "$f")"
      done
    done
    # the units: their keys hash their sources (cpu: with the compiler's
    # identity and flags; cuda: with the architecture sm_90)
    "$GPTC" gen --config "$cfg" --precision "$prec" --explain |
      awk -v n="$name $prec cpu" 'NR > 1 && NF == 3 { print $2 "  " n " unit " $1 }'
    "$GPTC" gen --config "$cfg" --precision "$prec" --device cuda --compile sm_90 --explain |
      awk -v n="$name $prec cuda" 'NR > 1 && NF == 3 { print $2 "  " n " unit " $1 }'
  done
done
