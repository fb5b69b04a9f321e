#!/usr/bin/env python3
"""Reference Hugging Face GPT-2 directories for the checkpoint tests.

Needs: pip install torch transformers safetensors numpy

    python3 tests/ref/hf_ref.py
        writes tests/golden/hf/<name>/ for each model below: config.json and
        model.safetensors exactly as transformers' save_pretrained writes them,
        expected.json (the fixed input ids and, per tensor under its gptc name,
        the shape and the SHA-256 of its values as little-endian float32) and,
        for "tiny", logits.f32: transformers' logits for the fixed input as
        raw little-endian float32, shape [len(input_ids), vocab_size].

    python3 tests/ref/hf_ref.py --check DIR --against NAME
        loads DIR (e.g. the output of `gptc export-hf`) with
        GPT2LMHeadModel.from_pretrained and compares its config, every weight
        and the logits for the fixed input with tests/golden/hf/NAME. Exits 1
        on any difference or on missing/unexpected keys.

The models use the GPT-2 vocabulary size (50257, as the gpt2 tokenizer
requires) with tiny widths to keep the goldens small:
    tiny        n_embd 8, 2 heads, 2 layers, 16 positions, tied, F32,
                GPT2LMHeadModel names ("transformer." prefix)
    small-bf16  n_embd 4, 2 heads, 1 layer, 8 positions, tied, BF16,
                GPT2Model names (no prefix, no lm_head)
    small-f16   n_embd 4, 2 heads, 1 layer, 8 positions, untied (lm_head.weight),
                F16, GPT2LMHeadModel names
Every parameter is random (LayerNorm weights around 1), so a swapped or
transposed tensor changes the hashes and the logits. The last position row
of wpe in the half-precision models holds edge values (signed zero,
subnormals, the largest finite value) to pin the exact widening to F32.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests", "golden", "hf")
INPUT_IDS = [15496, 11, 995, 50256]  # "Hello, world" + <|endoftext|>

MODELS = {
    "tiny": dict(n_embd=8, n_head=2, n_layer=2, n_positions=16, tie=True, dtype=torch.float32, base_only=False, seed=1),
    "small-bf16": dict(n_embd=4, n_head=2, n_layer=1, n_positions=8, tie=True, dtype=torch.bfloat16, base_only=True,
                       seed=2),
    "small-f16": dict(n_embd=4, n_head=2, n_layer=1, n_positions=8, tie=False, dtype=torch.float16, base_only=False,
                      seed=3),
}

F16_EDGES = [0.0, -0.0, 2.0 ** -24, -(2.0 ** -24), 3 * 2.0 ** -20, 2.0 ** -14, 65504.0, -1.0 / 3]
BF16_EDGES = [0.0, -0.0, 2.0 ** -133, 1e-39, 3.0e38, -1.0 / 3, 2.0 ** -126, 1.5]


def make_model(spec):
    torch.manual_seed(spec["seed"])
    cfg = GPT2Config(vocab_size=50257, n_embd=spec["n_embd"], n_head=spec["n_head"], n_layer=spec["n_layer"],
                     n_positions=spec["n_positions"], tie_word_embeddings=spec["tie"])
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
        if spec["dtype"] != torch.float32:
            edges = F16_EDGES if spec["dtype"] == torch.float16 else BF16_EDGES
            wpe = model.transformer.wpe.weight
            row = wpe.shape[0] - 1  # a position the fixed input never reaches
            for i, x in enumerate(edges[: wpe.shape[1] * 2]):
                wpe[row - i // wpe.shape[1], i % wpe.shape[1]] = x
    return model.to(spec["dtype"])


def gptc_name(name):
    return name[len("transformer."):] if name.startswith("transformer.") else name


def tensor_hashes(model, tied):
    out = {}
    for name, t in model.state_dict().items():
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue
        if name == "lm_head.weight" and tied:
            continue
        a = t.detach().to(torch.float32).contiguous().numpy().astype("<f4")
        out[gptc_name(name)] = {"shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    return dict(sorted(out.items()))


def logits_of(model):
    with torch.no_grad():
        return model.to(torch.float32)(torch.tensor([INPUT_IDS])).logits[0].numpy().astype("<f4")


def generate():
    for name, spec in MODELS.items():
        d = os.path.join(GOLDEN, name)
        shutil.rmtree(d, ignore_errors=True)
        model = make_model(spec)
        target = model.transformer if spec["base_only"] else model
        target.save_pretrained(d, safe_serialization=True)
        gen_cfg = os.path.join(d, "generation_config.json")
        if os.path.exists(gen_cfg):
            os.remove(gen_cfg)
        expected = {"input_ids": INPUT_IDS, "tensors": tensor_hashes(model, spec["tie"])}
        if name == "tiny":
            lg = logits_of(model)
            lg.tofile(os.path.join(d, "logits.f32"))
            expected["logits"] = {"file": "logits.f32", "shape": list(lg.shape)}
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
            f.write("\n")
        print(f"{d}: {sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))} bytes")


def load(d):
    try:
        return GPT2LMHeadModel.from_pretrained(d, dtype=torch.float32, output_loading_info=True)
    except TypeError:
        return GPT2LMHeadModel.from_pretrained(d, torch_dtype=torch.float32, output_loading_info=True)


def check(d, against):
    ref_dir = os.path.join(GOLDEN, against)
    got, info = load(d)
    ref, _ = load(ref_dir)
    got.eval()
    ref.eval()
    bad = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        if info.get(key):
            bad.append(f"{d}: {key}: {sorted(info[key])}")
    for field in ("vocab_size", "n_embd", "n_head", "n_layer", "n_positions", "layer_norm_epsilon",
                  "activation_function", "tie_word_embeddings"):
        a, b = getattr(got.config, field), getattr(ref.config, field)
        if a != b:
            bad.append(f"config.{field}: {a!r} != {b!r}")
    gs, rs = got.state_dict(), ref.state_dict()
    for name in sorted(set(gs) | set(rs)):
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue
        if name not in gs or name not in rs:
            bad.append(f"{name}: only in {'the export' if name in gs else 'the reference'}")
        elif not torch.equal(gs[name], rs[name]):
            diff = (gs[name] - rs[name]).abs().max().item()
            bad.append(f"{name}: values differ (max abs diff {diff:g})")
    lg, lr = logits_of(got), logits_of(ref)
    diff = float(np.abs(lg - lr).max())
    if diff != 0.0:
        bad.append(f"logits differ: max abs diff {diff:g}")
    for line in bad:
        print(f"mismatch: {line}", file=sys.stderr)
    if bad:
        return 1
    print(f"{d} matches {against}: {len(rs)} tensors, logits {lg.shape} identical")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", metavar="DIR")
    ap.add_argument("--against", metavar="NAME", choices=sorted(MODELS))
    a = ap.parse_args()
    if a.check:
        if not a.against:
            ap.error("--check needs --against NAME")
        return check(a.check, a.against)
    generate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
