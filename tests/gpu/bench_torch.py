#!/usr/bin/env python3
"""The PyTorch side of gptc's GPU benchmark (tests/gpu/run.sh, stage bench).

The same model as gptc's (GPT-2: pre-LayerNorm blocks with biases, fused QKV
projection, causal attention through F.scaled_dot_product_attention, tanh
GELU, tied embeddings, no dropout), written the nanoGPT way, compiled with
torch.compile and trained with fused AdamW on random tokens. Prints tokens/s,
ms/step and MFU (FLOPs per token = 6 N + 12 L C T, N without the position
embeddings, as nanoGPT's estimate_mfu) for:

  gpt2-124M, context 1024, batch 16: fp32 with TF32 matmuls, and bf16 autocast
  shakespeare-char-mid (6 layers, 6 heads, 384 wide, context 256, batch 64, vocab 65): fp32/TF32

With --gptc-log DIR (the bench directory run.sh trains into) it reads gptc's
log.jsonl files there and prints gptc's numbers beside PyTorch's.

Peak FLOP/s for the MFU: H100 SXM/H200 989 TFLOP/s bf16 and 495 TF32 (dense),
H100 PCIe 756 and 378, A100 312 and 156; override with --peak-bf16 and
--peak-tf32 (TFLOP/s).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C, bias=False)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, C, H, L, ctx):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(ctx, C)
        self.h = nn.ModuleList(Block(C, H) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def peak_flops(args, bf16):
    if bf16 and args.peak_bf16:
        return args.peak_bf16 * 1e12
    if not bf16 and args.peak_tf32:
        return args.peak_tf32 * 1e12
    name = torch.cuda.get_device_name()
    table = [("H200", 989, 495), ("H100 PCIe", 756, 378), ("H100", 989, 495), ("A100", 312, 156)]
    for key, b, t in table:
        if key in name:
            return (b if bf16 else t) * 1e12
    return float("nan")


def bench(name, V, C, H, L, ctx, B, T, bf16, steps, args):
    torch.manual_seed(0)
    model = GPT(V, C, H, L, ctx).cuda()
    n_params = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), fused=True)
    step_fn = torch.compile(model)
    x = torch.randint(0, V, (B, T), device="cuda")
    y = torch.randint(0, V, (B, T), device="cuda")
    times = []
    for i in range(steps + 5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = step_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 5:
            times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    tps = B * T / dt
    flops_per_token = 6 * n_params + 12 * L * C * T
    mfu = tps * flops_per_token / peak_flops(args, bf16)
    print(f"torch {name} {'bf16' if bf16 else 'fp32/tf32'}: {tps:.0f} tokens/s, {dt * 1000:.1f} ms/step, "
          f"MFU {100 * mfu:.1f}% (N = {n_params / 1e6:.1f}M)")
    return flops_per_token


def gptc_row(args, log, name, B, T, flops_per_token, bf16):
    path = os.path.join(args.gptc_log, log, "log.jsonl")
    if not os.path.exists(path):
        print(f"gptc {name}: no log at {path}")
        return
    rows = [json.loads(l) for l in open(path)]
    tps = statistics.median(r["tokens_per_s"] for r in rows[5:])
    mfu = tps * flops_per_token / peak_flops(args, bf16)
    print(f"gptc  {name} {'bf16' if bf16 else 'fp32/tf32'}: {tps:.0f} tokens/s, {B * T / tps * 1000:.1f} ms/step, "
          f"MFU {100 * mfu:.1f}%")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="timed steps (after 5 warmup steps)")
    ap.add_argument("--gptc-log", help="run.sh's bench directory, to print gptc's numbers alongside")
    ap.add_argument("--peak-bf16", type=float, help="peak bf16 TFLOP/s of this GPU")
    ap.add_argument("--peak-tf32", type=float, help="peak TF32 TFLOP/s of this GPU")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_torch: torch has no CUDA device here")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"bench_torch: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for bf16 in (False, True):
        fpt = bench("gpt2-124m ctx1024 B16", 50257, 768, 12, 12, 1024, 16, 1024, bf16, args.steps, args)
        if args.gptc_log:
            gptc_row(args, f"gpt2-{'bf16' if bf16 else 'fp32'}", "gpt2-124m ctx1024 B16", 16, 1024, fpt, bf16)
    fpt = bench("shakespeare-char-mid", 65, 384, 6, 6, 256, 64, 256, False, args.steps, args)
    if args.gptc_log:
        gptc_row(args, "mid", "shakespeare-char-mid", 64, 256, fpt, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
