#!/usr/bin/env python3
"""Golden files for tests/test_golden.c, computed with PyTorch.

Builds GPT-2 exactly as nanoGPT / Hugging Face define it (pre-LayerNorm
blocks, fused c_attn projection in Conv1D [in, out] layout, tanh GELU,
causal softmax attention scaled by 1/sqrt(head_dim), final LayerNorm, LM
head tied to wte or separate) for two tiny configs, in float64, with fixed
random weights and a fixed batch and dropout off. For each config it writes
under tests/golden/model/<name>/ (all little-endian):

  config.lua    the gptc config of the model
  tensors.txt   one line per tensor: name and shape, in gptc's (HF) order
  params.f32    every tensor, concatenated in that order (no padding)
  inputs.i32    (B, T) token ids
  targets.i32   (B, T) next-token ids; -1 marks ignored positions
  logits.f32    (B, T, V) logits
  loss.f32      the mean cross-entropy over targets >= 0
  grads.f32     d(loss)/d(tensor) for every tensor, same order as params
  steps.f32     the loss before the first and after each of 10 AdamW steps
                (lr, betas, eps, weight decay on 2-D weights and embeddings
                only, gradients clipped to global norm 1.0)

Run: python3 tests/ref/golden_torch.py  (needs torch and numpy).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

CONFIGS = [
    dict(name="golden-tied", V=37, C=24, H=4, L=2, ctx=16, B=3, T=12, qkv_bias=True, tie=True, seed=1),
    dict(name="golden-untied", V=29, C=32, H=1, L=2, ctx=20, B=2, T=20, qkv_bias=False, tie=False, seed=2),
]
OPT = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0, steps=10)


def tensor_specs(c):
    """(name, shape, init) in Hugging Face GPT-2 state-dict order."""
    V, C, L, ctx = c["V"], c["C"], c["L"], c["ctx"]
    proj_std = 0.02 / math.sqrt(2 * L)
    s = [("wte.weight", (V, C), 0.02), ("wpe.weight", (ctx, C), 0.02)]
    for l in range(L):
        p = f"h.{l}."
        s += [(p + "ln_1.weight", (C,), "one"), (p + "ln_1.bias", (C,), "zero"),
              (p + "attn.c_attn.weight", (C, 3 * C), 0.02)]
        if c["qkv_bias"]:
            s += [(p + "attn.c_attn.bias", (3 * C,), "zero")]
        s += [(p + "attn.c_proj.weight", (C, C), proj_std), (p + "attn.c_proj.bias", (C,), "zero"),
              (p + "ln_2.weight", (C,), "one"), (p + "ln_2.bias", (C,), "zero"),
              (p + "mlp.c_fc.weight", (C, 4 * C), 0.02), (p + "mlp.c_fc.bias", (4 * C,), "zero"),
              (p + "mlp.c_proj.weight", (4 * C, C), proj_std), (p + "mlp.c_proj.bias", (C,), "zero")]
    s += [("ln_f.weight", (C,), "one"), ("ln_f.bias", (C,), "zero")]
    if not c["tie"]:
        s += [("lm_head.weight", (V, C), 0.02)]
    return s


def init_params(c, gen):
    """The GPT-2 init, with LayerNorm weights and biases perturbed so every
    parameter influences the loss."""
    params = {}
    for name, shape, init in tensor_specs(c):
        if init == "one":
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif init == "zero":
            t = 0.02 * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            t = init * torch.randn(shape, generator=gen, dtype=torch.float64)
        # the model stores float32: start from exactly representable values
        params[name] = t.float().double().requires_grad_(True)
    return params


def forward(c, P, idx, targets):
    B, T = idx.shape
    C, H = c["C"], c["H"]
    hd = C // H
    x = P["wte.weight"][idx] + P["wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(c["L"]):
        p = f"h.{l}."
        h = F.layer_norm(x, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps=1e-5)
        qkv = h @ P[p + "attn.c_attn.weight"]
        if c["qkv_bias"]:
            qkv = qkv + P[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, H, hd).transpose(1, 2)
        k = k.view(B, T, H, hd).transpose(1, 2)
        v = v.view(B, T, H, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + (y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"])
        h = F.layer_norm(x, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps=1e-5)
        h = F.gelu(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + (h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"])
    x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], eps=1e-5)
    head = P["wte.weight"] if c["tie"] else P["lm_head.weight"]
    logits = x @ head.t()
    loss = F.cross_entropy(logits.view(-1, c["V"]), targets.view(-1), ignore_index=-1)
    return logits, loss


def config_lua(c):
    return (
        f"-- written by tests/ref/golden_torch.py: the model of these golden files\n"
        f"return {{\n  name = \"{c['name']}\",\n  tokenizer = \"char\",\n  vocab_size = {c['V']},\n"
        f"  emb_dim = {c['C']},\n  n_heads = {c['H']},\n  n_layers = {c['L']},\n"
        f"  context_length = {c['ctx']},\n  drop_rate = 0.0,\n"
        f"  qkv_bias = {'true' if c['qkv_bias'] else 'false'},\n"
        f"  tie_embeddings = {'true' if c['tie'] else 'false'},\n"
        f"  train = {{ batch_size = {c['B']}, max_length = {c['T']}, lr = {OPT['lr']}, beta1 = {OPT['beta1']},"
        f" beta2 = {OPT['beta2']}, eps = {OPT['eps']}, weight_decay = {OPT['weight_decay']},"
        f" grad_clip = {OPT['clip']} }},\n}}\n")


def write(path, array, dtype):
    np.asarray(array, dtype=dtype).astype(np.dtype(dtype).newbyteorder("<")).tofile(path)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "model")
    torch.set_num_threads(1)
    for c in CONFIGS:
        out = os.path.join(root, c["name"])
        os.makedirs(out, exist_ok=True)
        gen = torch.Generator().manual_seed(c["seed"])
        specs = tensor_specs(c)
        P = init_params(c, gen)
        B, T, V = c["B"], c["T"], c["V"]
        idx = torch.randint(0, V, (B, T), generator=gen)
        targets = torch.randint(0, V, (B, T), generator=gen)
        targets[0, 2] = -1
        targets[B - 1, T - 1] = -1

        with open(os.path.join(out, "config.lua"), "w") as f:
            f.write(config_lua(c))
        with open(os.path.join(out, "tensors.txt"), "w") as f:
            for name, shape, _ in specs:
                f.write(name + " " + " ".join(str(d) for d in shape) + "\n")
        write(os.path.join(out, "params.f32"), torch.cat([P[n].detach().flatten() for n, _, _ in specs]), "f4")
        write(os.path.join(out, "inputs.i32"), idx.flatten(), "i4")
        write(os.path.join(out, "targets.i32"), targets.flatten(), "i4")

        logits, loss = forward(c, P, idx, targets)
        loss.backward()
        write(os.path.join(out, "logits.f32"), logits.detach().flatten(), "f4")
        write(os.path.join(out, "loss.f32"), [loss.item()], "f4")
        write(os.path.join(out, "grads.f32"), torch.cat([P[n].grad.flatten() for n, _, _ in specs]), "f4")

        # AdamW with decay on 2-D tensors only (weights and embeddings), as
        # nanoGPT's configure_optimizers groups them
        for p in P.values():
            p.grad = None
        decay = [P[n] for n, shape, _ in specs if len(shape) == 2]
        no_decay = [P[n] for n, shape, _ in specs if len(shape) == 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPT["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"], foreach=False)
        losses = []
        for _ in range(OPT["steps"]):
            opt.zero_grad()
            _, loss = forward(c, P, idx, targets)
            losses.append(loss.item())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(P.values()), OPT["clip"])
            opt.step()
        with torch.no_grad():
            losses.append(forward(c, P, idx, targets)[1].item())
        write(os.path.join(out, "steps.f32"), losses, "f4")
        print(f"{c['name']}: loss {losses[0]:.6f} -> {losses[-1]:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
