#!/bin/sh
# gptc's fp32 CPU training step against PyTorch's, back to back on this machine.
#
# For each thread count and shape: build/out/bench_train THREADS SHAPE (gptc, tests/bench_train.c), then
# tests/ref/bench_torch_cpu.py on the same shape and thread count (torch eager fp32, torch.compile fp32,
# eager with bf16 autocast). Writes a markdown table to stdout (and to -o FILE): the machine, then one row
# per (shape, threads) with the median ms per step of each, gptc's fraction of its FMA peak as
# bench_train reports it, and the ratios torch/gptc (> 1: gptc is faster). Progress goes to stderr.
# A reference, never run by CI.
#
# Usage: tests/ref/bench_cpu_vs_torch.sh [options]
#   -t "1 2"         thread counts (default "1 2")
#   -s char,mid,gpt2 shapes (default all three)
#   -V LIST          torch variants (default eager,compile,bf16)
#   -n STEPS         torch's timed steps (default: bench_train's, char 40, mid 5, gpt2 5; bench_train's own
#                    counts are fixed in tests/bench_train.c)
#   -o FILE          also write the table to FILE
#   -r DIR           keep the raw outputs (bench_train's text, the torch JSON) in DIR
#   -B DIR           the CMake build tree (default build/out); bench_train is built there if missing
# Environment: TORCH_PY, the python with torch (default python3), e.g. TORCH_PY=/work/venv-torch/bin/python;
# TORCH_ARGS, extra options for bench_torch_cpu.py (e.g. "--no-qkv-bias --attn manual"). Everything else
# (OMP_WAIT_POLICY, GPTC_CACHE, CC) reaches both programs unchanged.
#
# Example (torch.compile compiles each shape once per thread count: about 1.5 minutes for char on a
# 2-core machine, longer for mid and gpt2; a smoke test: -s char -n 2):
#   TORCH_PY=/work/venv-torch/bin/python sh tests/ref/bench_cpu_vs_torch.sh -o bench-vs-torch.md
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
threads="1 2"
shapes="char,mid,gpt2"
variants="eager,compile,bf16"
steps=0
outfile=""
rawdir=""
build="$root/build/out"
TORCH_PY=${TORCH_PY:-python3}
TORCH_ARGS=${TORCH_ARGS:-}

usage() { sed -n '2,26s/^# \{0,1\}//p' "$0" >&2; exit 2; }
while getopts "t:s:V:n:o:r:B:h" opt; do
  case $opt in
    t) threads=$OPTARG ;;
    s) shapes=$OPTARG ;;
    V) variants=$OPTARG ;;
    n) steps=$OPTARG ;;
    o) outfile=$OPTARG ;;
    r) rawdir=$OPTARG ;;
    B) build=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage

say() { echo "bench_cpu_vs_torch: $*" >&2; }

if ! "$TORCH_PY" -c 'import torch' 2>/dev/null; then
  say "$TORCH_PY cannot import torch; set TORCH_PY to a python that can (e.g. a venv's bin/python)"
  exit 1
fi

bench="$build/bench_train"
if [ ! -x "$bench" ]; then
  say "building $bench"
  [ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" >&2
  cmake --build "$build" --target bench_train >&2
fi

if [ -n "$rawdir" ]; then
  mkdir -p "$rawdir"
  raw=$(cd "$rawdir" && pwd)
else
  raw=$(mktemp -d "${TMPDIR:-/tmp}/bench_cpu_vs_torch.XXXXXX")
  trap 'rm -rf "$raw"' EXIT
fi

date -u +%Y-%m-%dT%H:%M:%SZ > "$raw/date"
lscpu > "$raw/lscpu" 2>/dev/null || :
{ ${CC:-cc} --version 2>/dev/null | head -n 1; } > "$raw/cc" || :
git -C "$root" rev-parse --short HEAD > "$raw/rev" 2>/dev/null || :

for t in $threads; do
  for s in $(echo "$shapes" | tr ',' ' '); do
    case $s in
      char) pat="shakespeare-char" ;;
      mid) pat="mid (" ;;
      gpt2) pat="gpt2-124M" ;;
      *) say "unknown shape $s (char, mid, gpt2)"; exit 2 ;;
    esac
    say "$s, $t threads: gptc bench_train"
    rc=0
    "$bench" "$t" "$pat" > "$raw/gptc_${t}_$s.txt" 2> "$raw/gptc_${t}_$s.err" || rc=$?
    echo "$rc" > "$raw/gptc_${t}_$s.rc"
    say "$s, $t threads: torch ($variants)"
    rc=0
    # shellcheck disable=SC2086  # TORCH_ARGS is a list of options
    "$TORCH_PY" "$here/bench_torch_cpu.py" --shapes "$s" --variants "$variants" --threads "$t" --steps "$steps" \
      --json "$raw/torch_${t}_$s.json" $TORCH_ARGS > "$raw/torch_${t}_$s.txt" 2> "$raw/torch_${t}_$s.err" || rc=$?
    cat "$raw/torch_${t}_$s.txt" >&2
    echo "$rc" > "$raw/torch_${t}_$s.rc"
  done
done

"$TORCH_PY" - "$raw" "$threads" "$shapes" "$variants" "$steps" > "$raw/table.md" <<'EOF'
import json, os, re, sys

raw, threads, shapes, variants, steps = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(","), \
    sys.argv[4].split(","), int(sys.argv[5])
LABEL = {"char": "shakespeare-char (V 65, 4/4/128, T 64, B 12)", "mid": "mid (V 65, 6/6/384, T 256, B 16)",
         "gpt2": "gpt2-124M (V 50257, 12/12/768, T 64, B 4)"}
STEPS = {"char": 40, "mid": 5, "gpt2": 5}


def read(name, default=""):
    try:
        with open(os.path.join(raw, name)) as f:
            return f.read()
    except OSError:
        return default


def last_line(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else "no output"


import torch  # noqa: E402  (the version and what torch sees of the CPU)
lscpu = dict((k.strip(), v.strip()) for k, _, v in (l.partition(":") for l in read("lscpu").splitlines()))
flags = set(lscpu.get("Flags", "").split())
speed = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
absent = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f not in flags]
try:
    cores = int(lscpu.get("Core(s) per socket", "0")) * int(lscpu.get("Socket(s)", "0"))
except ValueError:
    cores = 0
logical = lscpu.get("CPU(s)", str(os.cpu_count()))

gptc, peaks, notes = {}, {}, []
for t in threads:
    for s in shapes:
        out, rc = read(f"gptc_{t}_{s}.txt"), read(f"gptc_{t}_{s}.rc", "1").strip()
        m = re.search(r"^fp32, \d+ threads; FMA peak .*$", out, re.M)
        if m and t not in peaks:
            peaks[t] = m.group(0)
        m = re.search(re.escape(LABEL[s]) + r"\s+([\d.]+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%", out)
        if m and rc == "0":
            gptc[(t, s)] = dict(ms=float(m.group(1)), peak_pct=float(m.group(5)))
        else:
            why = last_line(read(f"gptc_{t}_{s}.err") or out)
            gptc[(t, s)] = dict(error=f"exit {rc}: {why}")
            notes.append(f"gptc {s}, {t} threads: failed ({why})")

torch_res, torch_ver = {}, torch.__version__
for t in threads:
    for s in shapes:
        try:
            d = json.loads(read(f"torch_{t}_{s}.json"))
        except ValueError:
            why = last_line(read(f"torch_{t}_{s}.err"))
            for v in variants:
                torch_res[(t, s, v)] = dict(ok=False, error=why)
            notes.append(f"torch {s}, {t} threads: the script failed ({why})")
            continue
        for r in d["results"]:
            torch_res[(t, s, r["variant"])] = r
            if not r["ok"]:
                notes.append(f"torch {r['variant']} {s}, {t} threads: failed ({r['error']})")

first = next(iter(r for r in torch_res.values() if r.get("ok")), {})
adamw = {"default": "torch's default (foreach)", "for-loop": "for-loop"}.get(first.get("adamw"), first.get("adamw", "?"))
p = print
p("## gptc vs PyTorch: fp32 CPU training step")
p()
p(f"- CPU: {lscpu.get('Model name', '?')}; {cores or '?'} cores, {logical} logical CPUs; "
  f"flags: {' '.join(speed) or 'none of avx2/avx512f'}" + (f" (no {', '.join(absent)})" if absent else ""))
for t in threads:
    if t in peaks:
        p(f"- FMA peak, as bench_train printed it: `{peaks[t]}`")
p(f"- date: {read('date').strip()}; gptc {read('rev').strip() or '?'}; {read('cc').strip() or 'cc ?'}")
p(f"- torch {torch_ver} (CPU capability {torch.backends.cpu.get_cpu_capability()}"
  f"{', ' + str(first.get('n_params')) + ' parameters in char' if first.get('shape') == 'char' else ''}); "
  f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
p()
p("| shape | threads | gptc ms | gptc % of peak | torch eager ms | torch.compile ms | torch bf16 ms "
  "| eager / gptc | compile / gptc | bf16 / gptc |")
p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for s in shapes:
    for t in threads:
        g = gptc[(t, s)]
        row = [LABEL[s], t]
        row += [f"{g['ms']:.1f}", f"{g['peak_pct']:.1f}%"] if "ms" in g else ["failed", ""]
        ms, ratios = [], []
        for v in ("eager", "compile", "bf16"):
            r = torch_res.get((t, s, v))
            if r is None:  # variant not asked for
                ms.append("-")
                ratios.append("-")
            elif not r.get("ok"):
                ms.append("failed")
                ratios.append("")
            else:
                ms.append(f"{r['median_ms']:.1f}")
                ratios.append(f"{r['median_ms'] / g['ms']:.2f}" if "ms" in g else "")
        p("| " + " | ".join(str(x) for x in row + ms + ratios) + " |")
p()
ts = ", ".join(f"{s} {steps or STEPS[s]}" for s in shapes)
p(f"Median ms per step (zero grads, forward, loss, backward, gradient clip/norm, AdamW) after 2 warm-up steps; "
  f"gptc: bench_train's {', '.join(f'{s} {STEPS[s]}' for s in shapes)} timed steps, torch: {ts} "
  f"(torch.compile's warm-up compiles). Ratios are torch / gptc: above 1, gptc is faster. "
  f"% of peak: 6N + 12LTC FLOPs per token against the FMA peak that bench_train measured in the same run. "
  f"The torch model is nanoGPT's with{'out' if first.get('qkv_bias') is False else ''} a qkv bias "
  f"(gptc's bench configs have none), attention {first.get('attn', '?')}, AdamW {adamw}.")
if notes:
    p()
    for n in notes:
        p(f"- {n}")
EOF

if [ -n "$outfile" ]; then cp "$raw/table.md" "$outfile"; fi
cat "$raw/table.md"
