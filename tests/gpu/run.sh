#!/bin/sh
# The CUDA backend on a real GPU, in one call: build gptc and the parity
# program, then
#   parity    CUDA against the CPU from the same weights (forward, backward,
#             10 AdamW steps, evaluation, inference, determinism, graphs) for
#             every shipped config in fp32 (TF32) and bf16
#   golden    the PyTorch golden files on CUDA (tests/golden/model/)
#   train     end to end with --device cuda: verdict-gpt2-small memorises the
#             story (loss < 1.0), resume is bit-exact, eval and sample run
#   sanitize  compute-sanitizer memcheck, racecheck, initcheck and synccheck on
#             one training step of tiny-test and verdict-gpt2-small (graphs
#             on and off)
#   bench     gptc against PyTorch (torch.compile, scaled_dot_product_attention):
#             gpt2-124M ctx 1024 batch 16 in fp32/TF32 and bf16 (tokens/s, MFU),
#             shakespeare-char-mid ms/step
#   dist      data-parallel over real NCCL (mpirun, one rank per GPU): a 1-rank
#             job with grad_accum 2 equals the single process bit for bit; with
#             2+ GPUs, 2 ranks x grad_accum 1 equal 1 x 2 bit for bit, and bf16
#             gradients run (needs mpirun and libnccl.so.2; not in the default list)
#
# Usage: sh tests/gpu/run.sh [STAGE...]   (default: every stage, in that order)
# Environment: BUILD (where gptc and parity are; a prebuilt one from
# tests/gpu/prepare.sh skips the build stage), STAGE_LIMIT (seconds each
# stage may run, default 1800), PARITY (config names, default all five),
# SANITIZE=quick (memcheck and racecheck on tiny-test, memcheck on
# verdict-gpt2-small, graphs on), TORCH=0 (gptc's side of bench only).
# Results go to $RESULTS (default build/gpu-results): one log per stage and
# summary.md, whose tables docs/gpu.md records. Exit status 0 when every
# stage passed. Needs: a CUDA GPU of compute capability 8.0+, the driver,
# the CUDA toolkit (NVRTC; compute-sanitizer for `sanitize`), and for `bench`
# python3 with torch built for CUDA.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build/gpu}
RESULTS=${RESULTS:-$ROOT/build/gpu-results}
export GPTC_CACHE=${GPTC_CACHE:-$BUILD/cache}
STAGES=${*:-build parity golden train sanitize bench}
STAGE_LIMIT=${STAGE_LIMIT:-1800}
PARITY=${PARITY:-tiny-test verdict-gpt2-small shakespeare-char shakespeare-char-mid gpt2-124m-ctx256}
G=$BUILD/gptc
mkdir -p "$RESULTS"
SUMMARY=$RESULTS/summary.md
FAILED=""

note() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

# stage NAME: runs the stage NAME with its output in $RESULTS/NAME.log, notes the outcome
stage() {
  name=$1
  t0=$(date +%s)
  if timeout "$STAGE_LIMIT" sh "$0" --one "$name" >"$RESULTS/$name.log" 2>&1; then
    note "- $name: passed ($(($(date +%s) - t0)) s)"
  else
    note "- $name: FAILED ($(($(date +%s) - t0)) s), see $RESULTS/$name.log"
    FAILED="$FAILED $name"
  fi
}

build() {
  sh "$ROOT/build/setup.sh" &&
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
    cmake --build "$BUILD" -j "$(nproc)" &&
    grep -q "GPTC_HAVE_NVRTC" "$BUILD/CMakeFiles/gptccore.dir/flags.make" &&
    NVRTC=$(sed -n 's/^CUDA_nvrtc_LIBRARY:FILEPATH=//p' "$BUILD/CMakeCache.txt") &&
    cc -O2 -std=gnu11 -Wall -Wextra -I"$ROOT/runtime" $(pkg-config --cflags lua5.4) -o "$BUILD/parity" \
      "$ROOT/tests/gpu/parity.c" "$BUILD/libgptccore.a" $(pkg-config --libs lua5.4 libpcre2-8) \
      "$NVRTC" -Wl,-rpath,"$(dirname "$NVRTC")" -fopenmp -ldl -lm &&
    "$G" --help >/dev/null
}

parity() {
  rc=0
  for name in $PARITY; do
    case $name in
    tiny-test) v="--vocab 62" ;; # the-verdict's distinct characters
    shakespeare-char*) v="--vocab 65" ;;
    *) v="" ;;
    esac
    for prec in fp32 bf16; do
      "$BUILD/parity" --precision $prec $v --config "$ROOT/configs/$name.lua" || rc=1
    done
  done
  return $rc
}

golden() {
  "$BUILD/parity" --golden "$ROOT/tests/golden/model/golden-tied" --golden "$ROOT/tests/golden/model/golden-untied"
}

train() {
  out=$BUILD/train
  rm -rf "$out"
  "$G" train --config "$ROOT/configs/verdict-gpt2-small.lua" --out "$out/verdict" --device cuda || return 1
  last=$(tail -n 1 "$out/verdict/log.jsonl")
  echo "last step: $last"
  python3 -c "import json,sys; l=json.loads(sys.argv[1])['loss']; sys.exit(0 if l < 1.0 else 1)" "$last" || {
    echo "final train loss is not below 1.0"
    return 1
  }
  "$G" eval --ckpt "$out/verdict/last.safetensors" --text "$ROOT/data/the-verdict.txt" --device cuda || return 1
  "$G" sample --ckpt "$out/verdict/last.safetensors" --prompt "I had always" --tokens 60 --device cuda || return 1
  # resume: 40 steps straight against 20 + 20 resumed, both with dropout
  for run in straight halves; do
    "$G" train --config "$ROOT/configs/shakespeare-char.lua" --out "$out/$run" --device cuda --quiet \
      --steps $([ $run = straight ] && echo 40 || echo 20) || return 1
  done
  "$G" train --config "$ROOT/configs/shakespeare-char.lua" --out "$out/halves" --device cuda --quiet --steps 40 --resume ||
    return 1
  cmp "$out/straight/last.safetensors" "$out/halves/last.safetensors" || {
    echo "resumed weights differ from the straight run"
    return 1
  }
  echo "resume: bit-identical"
}

sanitize() {
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  [ -x "$CS" ] || {
    echo "compute-sanitizer not found"
    return 1
  }
  rc=0
  for cfg in tiny-test verdict-gpt2-small; do
    for tool in memcheck racecheck initcheck synccheck; do
      [ $cfg = verdict-gpt2-small ] && [ $tool != memcheck ] && [ $tool != racecheck ] && continue
      [ "${SANITIZE:-}" = quick ] && case $cfg-$tool in tiny-test-memcheck | tiny-test-racecheck | verdict*-memcheck) ;; *) continue ;; esac
      for graphs in 1 0; do
        [ "${SANITIZE:-}" = quick ] && [ $graphs = 0 ] && continue
        out=$BUILD/sanitize/$cfg-$tool-$graphs
        rm -rf "$out"
        echo "== $tool, $cfg, graphs $graphs"
        GPTC_CUDA_GRAPHS=$graphs "$CS" --tool $tool --error-exitcode 3 \
          "$G" train --config "$ROOT/configs/$cfg.lua" --out "$out" --steps 1 --device cuda --quiet || rc=1
      done
    done
  done
  return $rc
}

# median tokens/s of a gptc run's log.jsonl, skipping the first 5 steps
gptc_tps() {
  python3 - "$1" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(statistics.median(r["tokens_per_s"] for r in rows[5:]))
EOF
}

# the weights and log losses of two runs, compared (the headers name grad_accum: tensors only)
same_run() {
  python3 - "$1" "$2" <<'EOF'
import json, struct, sys
def tensors(d, f):
    b = open(f"{d}/{f}", "rb").read()
    return b[8 + struct.unpack("<Q", b[:8])[0]:]
def losses(d):
    return [(r["step"], r["loss"]) for r in map(json.loads, open(f"{d}/log.jsonl")) if "loss" in r]
a, b = sys.argv[1:]
ok = all(tensors(a, f) == tensors(b, f) for f in ("last.safetensors", "last.opt.safetensors")) and losses(a) == losses(b)
print(f"{a} vs {b}: {'bitwise equal' if ok else 'DIFFER'}")
sys.exit(0 if ok else 1)
EOF
}

dist() {
  out=$BUILD/dist
  rm -rf "$out"
  MPI="mpirun --allow-run-as-root --oversubscribe --bind-to none"
  T="train --config $ROOT/configs/shakespeare-char.lua --device cuda --quiet --steps 20"
  "$G" $T --set train.grad_accum=2 --out "$out/single2" || return 1
  $MPI -np 1 "$G" $T --set train.grad_accum=2 --out "$out/nccl1" || return 1
  same_run "$out/single2" "$out/nccl1" || return 1
  gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  [ "$gpus" -ge 2 ] || {
    echo "1 GPU: the 2-rank checks need two (NCCL refuses two ranks on one GPU)"
    return 0
  }
  $MPI -np 2 "$G" $T --set train.grad_accum=1 --out "$out/nccl2" || return 1
  same_run "$out/single2" "$out/nccl2" || return 1
  $MPI -np 2 "$G" $T --set train.grad_accum=1 --out "$out/nccl2-bf16" --dist-grad bf16 || return 1
  tail -n 2 "$out/nccl2/log.jsonl" "$out/nccl2-bf16/log.jsonl"
}

bench() {
  rc=0
  out=$BUILD/bench
  rm -rf "$out"
  mkdir -p "$out"
  for prec in fp32 bf16; do
    "$G" train --config "$ROOT/tests/gpu/bench-gpt2-$prec.lua" --out "$out/gpt2-$prec" --device cuda --quiet || rc=1
    echo "gptc gpt2-124m ctx1024 B16 $prec tokens/s: $(gptc_tps "$out/gpt2-$prec/log.jsonl")"
  done
  "$G" train --config "$ROOT/configs/shakespeare-char-mid.lua" --out "$out/mid" --device cuda --quiet --steps 30 || rc=1
  tps=$(gptc_tps "$out/mid/log.jsonl")
  echo "gptc shakespeare-char-mid fp32 ms/step: $(python3 -c "print(64 * 256 / $tps * 1000)")"
  [ "${TORCH:-1}" = 0 ] || python3 "$ROOT/tests/gpu/bench_torch.py" --gptc-log "$out" || rc=1
  return $rc
}

# a stage runs in a child (`run.sh --one NAME`), so that STAGE_LIMIT can stop it
if [ "${1:-}" = --one ]; then
  "$2"
  exit
fi

: >"$SUMMARY"
note "# gptc CUDA run, $(date -u '+%Y-%m-%d %H:%M UTC')"
note "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi: no GPU')"
note ""
for s in $STAGES; do
  case $s in
  build | parity | golden | train | sanitize | bench | dist) stage "$s" ;;
  *)
    echo "run.sh: unknown stage '$s' (build parity golden train sanitize bench dist)" >&2
    exit 2
    ;;
  esac
  [ "$s" = build ] && case " $FAILED " in *" build "*) break ;; esac
done
for s in parity golden bench; do
  [ -f "$RESULTS/$s.log" ] && case " $STAGES " in *" $s "*)
    note ""
    note "## $s"
    note '```'
    grep -E "^parity|^golden|FAIL|limit|tokens/s|ms/step|MFU|gptc |torch " "$RESULTS/$s.log" >>"$SUMMARY"
    note '```'
    ;;
  esac
done
if [ -n "$FAILED" ]; then
  echo "run.sh: failed stages:$FAILED (logs in $RESULTS)"
  exit 1
fi
echo "run.sh: every stage passed (summary in $SUMMARY)"
