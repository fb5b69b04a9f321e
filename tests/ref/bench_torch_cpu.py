#!/usr/bin/env python3
"""PyTorch's fp32 CPU training step on the three shapes of tests/bench_train.c.

A reference for gptc's bench_train, never run by CI. The model is nanoGPT's
GPT: token + position embedding, pre-LayerNorm blocks with causal
self-attention through one fused qkv Linear (with bias; --no-qkv-bias drops
it, as gptc's default config does), a GELU (tanh approximation) MLP of 4x
width, a final LayerNorm and an LM head tied to the token embedding; dropout
on the embeddings, the attention weights and both residual branches. One
timed step is what bench_train times: zero the grads, forward, mean
cross-entropy, backward, clip the gradient norm to 1.0, AdamW (lr 1e-4,
betas 0.9/0.95, eps 1e-8, weight decay 0.1 on 2-D tensors only, as nanoGPT's
configure_optimizers groups them).

Shapes (bench_train's config strings, drop_rate included):
  char  V 65,    4 layers,  4 heads, C 128, T 64,  B 12, drop 0.1, 40 timed steps
  mid   V 65,    6 layers,  6 heads, C 384, T 256, B 16, drop 0.2,  5 timed steps
  gpt2  V 50257, 12 layers, 12 heads, C 768, T 64,  B 4,  drop 0.1,  5 timed steps
        (context_length 1024, so wpe has 1024 rows)
Every shape runs 2 warm-up steps first (for torch.compile they compile).

Variants:
  eager    fp32, eager mode
  compile  fp32, torch.compile(model) (nanoGPT's way: the model and its loss
           compiled, the optimizer and the clip eager); needs a C++ compiler
  bf16     eager, forward and loss under torch.autocast('cpu', torch.bfloat16);
           parameters, grads and AdamW stay fp32

Each (shape, variant) runs in its own child process, so one that fails or
crashes (torch.compile without a C++ compiler, out of memory) is reported as
failed with a one-line reason and the others still run.

Usage:
  python3 tests/ref/bench_torch_cpu.py [--shapes char,mid,gpt2] [--variants eager,compile,bf16]
      [--threads N] [--steps N] [--json FILE]

Prints one line per (shape, variant): median ms per step (bench_train's
median: the upper one for an even count), min, max, and tokens/s, GFLOP/s
with FLOPs per token = 6 N + 12 L T C (N = this model's parameter count).
Needs torch (and numpy, for torch's own imports).
"""
import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

SHAPES = {
    "char": dict(label="shakespeare-char (V 65, 4/4/128, T 64, B 12)", V=65, C=128, H=4, L=4, ctx=64, T=64, B=12,
                 drop=0.1, steps=40),
    "mid": dict(label="mid (V 65, 6/6/384, T 256, B 16)", V=65, C=384, H=6, L=6, ctx=256, T=256, B=16,
                drop=0.2, steps=5),
    "gpt2": dict(label="gpt2-124M (V 50257, 12/12/768, T 64, B 4)", V=50257, C=768, H=12, L=12, ctx=1024, T=64,
                 B=4, drop=0.1, steps=5),
}
VARIANTS = ("eager", "compile", "bf16")
WARMUP = 2
OPT = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip=1.0)


def one_line(text, limit=240):
    """The most telling line of an error message, cut to one line."""
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    lines = [l for l in lines if not l.endswith("raised:") and not l.startswith(("Traceback", "File \"",
                                                                                  "Set TORCH", "You can suppress"))]
    s = lines[0] if lines else "(no message)"
    return s if len(s) <= limit else s[:limit - 3] + "..."


# ---------------------------------------------------------------- the model (child process only)

def build_model(s, qkv_bias, attn_impl):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(s["C"], 3 * s["C"], bias=qkv_bias)
            self.c_proj = nn.Linear(s["C"], s["C"])
            self.attn_dropout = nn.Dropout(s["drop"])
            self.resid_dropout = nn.Dropout(s["drop"])
            self.n_head, self.n_embd, self.dropout = s["H"], s["C"], s["drop"]
            if attn_impl == "manual":
                self.register_buffer("bias", torch.tril(torch.ones(s["ctx"], s["ctx"], dtype=torch.bool))
                                     .view(1, 1, s["ctx"], s["ctx"]), persistent=False)

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            hd = C // self.n_head
            q = q.view(B, T, self.n_head, hd).transpose(1, 2)
            k = k.view(B, T, self.n_head, hd).transpose(1, 2)
            v = v.view(B, T, self.n_head, hd).transpose(1, 2)
            if attn_impl == "sdpa":  # nanoGPT's "flash" path
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                                   dropout_p=self.dropout if self.training else 0.0, is_causal=True)
            else:  # weights materialized in (B, H, T, T), as gptc keeps them
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
                att = att.masked_fill(~self.bias[:, :, :T, :T], float("-inf"))
                att = self.attn_dropout(F.softmax(att, dim=-1))
                y = att @ v
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.resid_dropout(self.c_proj(y))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(s["C"], 4 * s["C"])
            self.gelu = nn.GELU(approximate="tanh")
            self.c_proj = nn.Linear(4 * s["C"], s["C"])
            self.dropout = nn.Dropout(s["drop"])

        def forward(self, x):
            return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(s["C"])
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(s["C"])
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(s["V"], s["C"]), wpe=nn.Embedding(s["ctx"], s["C"]), drop=nn.Dropout(s["drop"]),
                h=nn.ModuleList([Block() for _ in range(s["L"])]), ln_f=nn.LayerNorm(s["C"])))
            self.lm_head = nn.Linear(s["C"], s["V"], bias=False)
            self.transformer.wte.weight = self.lm_head.weight  # tied
            self.apply(self._init_weights)
            for n, p in self.named_parameters():
                if n.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * s["L"]))

        @staticmethod
        def _init_weights(m):
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets):
            T = idx.size(1)
            pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
            x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
            return logits, loss

    return GPT()


def worker(args):
    """One (shape, variant) in this process; the result as JSON into args.result."""
    res = dict(shape=args.shape, variant=args.variant, threads=args.threads, ok=False)
    try:
        import torch
        res["torch"] = torch.__version__
        torch.set_num_threads(args.threads)
        torch.manual_seed(1337)
        s = SHAPES[args.shape]
        steps = args.steps if args.steps else s["steps"]
        model = build_model(s, args.qkv_bias, args.attn)
        model.train()
        n_params = sum(p.numel() for p in model.parameters())  # the tied matrix once
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        opt_kw = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True},
                  "for-loop": {"foreach": False}}[args.adamw]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPT["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=OPT["lr"], betas=OPT["betas"], eps=OPT["eps"], **opt_kw)
        fwd = torch.compile(model) if args.variant == "compile" else model
        BT = s["B"] * s["T"]
        # bench_train's inputs and targets
        x = torch.tensor([(i * 7919) % s["V"] for i in range(BT)], dtype=torch.long).view(s["B"], s["T"])
        y = torch.tensor([(i * 104729 + 1) % s["V"] for i in range(BT)], dtype=torch.long).view(s["B"], s["T"])
        params = list(model.parameters())

        def step():
            opt.zero_grad(set_to_none=True)
            if args.variant == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    _, loss = fwd(x, y)
            else:
                _, loss = fwd(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, OPT["clip"])
            opt.step()
            return loss

        ms = []
        for _ in range(WARMUP + steps):
            t = time.perf_counter()
            loss = step()
            ms.append((time.perf_counter() - t) * 1e3)
        timed = sorted(ms[WARMUP:])
        med = timed[len(timed) // 2]  # bench_train's median
        flops_tok = 6.0 * n_params + 12.0 * s["L"] * s["T"] * s["C"]
        res.update(ok=True, label=s["label"], steps=steps, warmup=WARMUP, median_ms=med, min_ms=timed[0],
                   max_ms=timed[-1], mean_ms=sum(timed) / len(timed), warmup_ms=ms[:WARMUP], step_ms=ms[WARMUP:],
                   tokens_per_s=BT / (med / 1e3), flops_per_token=flops_tok,
                   gflops=flops_tok * BT / (med / 1e3) / 1e9, n_params=n_params, loss=float(loss.item()),
                   peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                   qkv_bias=args.qkv_bias, attn=args.attn, adamw=args.adamw,
                   cpu_capability=torch.backends.cpu.get_cpu_capability(),
                   shape_cfg=dict((k, s[k]) for k in ("V", "C", "H", "L", "ctx", "T", "B", "drop")))
    except BaseException as e:  # noqa: BLE001 -- a failed variant is a result, not a crash
        res["error"] = f"{type(e).__name__}: {one_line(e)}"
    with open(args.result, "w") as f:
        json.dump(res, f)
    return 0


# ---------------------------------------------------------------- the driver

def machine():
    m = dict(platform=platform.platform(), python=platform.python_version(), logical_cpus=os.cpu_count())
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                m["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                fl = set(line.split(":", 1)[1].split())
                m["flags"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in fl]
                break
    except OSError:
        pass
    return m


def run_one(args, shape, variant):
    fd, path = tempfile.mkstemp(prefix="bench_torch_", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--shape", shape, "--variant", variant,
           "--threads", str(args.threads), "--result", path, "--attn", args.attn, "--adamw", args.adamw]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    if not args.qkv_bias:
        cmd += ["--no-qkv-bias"]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=args.timeout if args.timeout > 0 else None)
        try:
            with open(path) as f:
                res = json.load(f)
        except (OSError, ValueError):
            tail = [l for l in (p.stderr or "").splitlines() if l.strip()]
            why = f"exit status {p.returncode}" if p.returncode >= 0 else f"killed by signal {-p.returncode}"
            res = dict(shape=shape, variant=variant, threads=args.threads, ok=False,
                       error=f"{why}: {one_line(tail[-1]) if tail else 'no output'}")
        if args.verbose and p.stderr:
            sys.stderr.write(p.stderr)
    except subprocess.TimeoutExpired:
        res = dict(shape=shape, variant=variant, threads=args.threads, ok=False,
                   error=f"timed out after {args.timeout} s")
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="Shapes: " + ", ".join(f"{k} = {v['label']}" for k, v in SHAPES.items()))
    ap.add_argument("--shapes", default="char,mid,gpt2", help="comma-separated: char, mid, gpt2")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: eager, compile, bf16")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2, as bench_train)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: char 40, mid 5, gpt2 5)")
    ap.add_argument("--json", metavar="FILE", help="write every number as JSON")
    ap.add_argument("--no-qkv-bias", dest="qkv_bias", action="store_false",
                    help="no bias on the fused qkv Linear (gptc's default config has none)")
    ap.add_argument("--attn", choices=("sdpa", "manual"), default="sdpa",
                    help="sdpa: F.scaled_dot_product_attention, nanoGPT's path (default); manual: softmax(QK^T) "
                         "materialized, nanoGPT's fallback")
    ap.add_argument("--adamw", choices=("default", "foreach", "fused", "for-loop"), default="default",
                    help="torch.optim.AdamW implementation (default: torch's choice, foreach on CPU)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per (shape, variant); 0 = none")
    ap.add_argument("-v", "--verbose", action="store_true", help="pass the child processes' stderr through")
    # internal: one (shape, variant) in this process
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    shapes = [x.strip() for x in args.shapes.split(",") if x.strip()]
    variants = [x.strip() for x in args.variants.split(",") if x.strip()]
    bad = [x for x in shapes if x not in SHAPES] + [x for x in variants if x not in VARIANTS]
    if bad or args.threads < 1 or args.steps < 0:
        ap.error(f"unknown shape/variant {bad}" if bad else "--threads must be >= 1 and --steps >= 0")

    out = dict(machine=machine(), threads=args.threads, warmup=WARMUP, qkv_bias=args.qkv_bias, attn=args.attn,
               adamw=args.adamw, date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), results=[])
    print(f"torch CPU training step, fp32 (bf16: autocast), {args.threads} threads, "
          f"{WARMUP} warm-up steps; {out['machine'].get('cpu', '?')}", flush=True)
    for shape in shapes:
        for variant in variants:
            r = run_one(args, shape, variant)
            out["results"].append(r)
            if r.get("torch"):
                out["torch"] = r["torch"]
            if r.get("cpu_capability"):
                out["machine"]["torch_cpu_capability"] = r["cpu_capability"]
            if r["ok"]:
                print(f"{shape:5} {variant:8} median {r['median_ms']:10.2f} ms  min {r['min_ms']:10.2f}  "
                      f"max {r['max_ms']:10.2f}  ({r['steps']} steps, {r['tokens_per_s']:.0f} tokens/s, "
                      f"{r['gflops']:.1f} GFLOP/s, loss {r['loss']:.3f}, warm-up {r['warmup_ms'][0] / 1e3:.1f} s)",
                      flush=True)
            else:
                print(f"{shape:5} {variant:8} FAILED: {r['error']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
