#!/usr/bin/env python3
"""Parity of `gptc train` with a PyTorch reference on the same recipe (issue 15, section 3).

Not run by CI. For each seed it:
  1. runs `gptc train --config CONFIG --out FRESH_DIR` (the seed written into a
     temp copy of the resolved config) and times it end to end as a process;
  2. trains the same model with the same recipe in PyTorch, written here
     nanoGPT-style (pre-LN GPT-2 blocks, GELU tanh, tied head, causal
     attention, AdamW with decay on 2-D tensors only, normal(0, 0.02) init with
     residual projections 0.02/sqrt(2L), zero biases, LayerNorm weights 1;
     warmup + cosine lr; clip 1.0; nanoGPT's get_batch random batches;
     estimate_loss every eval_interval steps on eval_steps random batches of
     train and val), in a child process timed the same way;
  3. evaluates both final models with ONE evaluator (PyTorch, fp32): every
     non-overlapping context_length window of the validation split, the loss
     averaged over all targets; and cross-checks it on gptc's checkpoint
     against `gptc eval --ckpt last.safetensors --text <val split file>`.

The recipe is gptc's own: a 1-step warm-up run (which also fills gptc's
compile and tune caches, so the timed runs measure a warm cache; the token
cache is per run directory, so each timed run tokenizes again) writes
the resolved config into its checkpoint metadata; both trainers read it from
there. The train/val split is rebuilt here the way runtime/data.c builds it
(the first floor((1 - val_ratio) * n_chars) characters train, the rest val;
the char vocabulary is the sorted set of code points) and asserted equal,
token for token, to the token caches gptc wrote into its run directory and to
the sizes it printed.

Usage (from the repository root):
  /work/venv-torch/bin/python tests/ref/parity_baby.py --gptc build/out/gptc \\
      --config configs/shakespeare-char-baby.lua [--seeds 1,2,3] [--steps N] \\
      [--threads N] [--text data/tinyshakespeare.txt] [--workdir DIR] \\
      [--schedule nanogpt|gptc]

--steps N stops both trainers after step N while the lr schedule still spans
the config's train.steps (gptc's --steps semantics; nanoGPT's lr_decay_iters).
--schedule: the warmup formula of the PyTorch run: nanogpt (default,
lr * (it + 1) / (warmup + 1)) or gptc (lr * (it + 1) / warmup).

Prints a markdown table: one row per seed, then the mean and spread
(max - min) of each column. Needs torch and numpy; safetensors files are read
and written here directly (8-byte header length, JSON header, raw data).
Tokenizers other than char are refused: the split check below knows char only.
"""
import argparse
import hashlib
import json
import math
import os
import re
import resource
import struct
import subprocess
import sys
import tempfile
import time

T_START = time.time()  # the worker's own process start, as near as Python gets


def die(msg):
    sys.exit("parity_baby: " + msg)


# ---- safetensors (F32 only: gptc writes nothing else) --------------------------

def st_read(path):
    """(tensors {name: numpy float32 array}, metadata dict)."""
    import numpy as np
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    head = json.loads(blob[8:8 + n])
    meta = head.pop("__metadata__", {})
    out = {}
    for name, t in head.items():
        if t["dtype"] != "F32":
            die(f"{path}: tensor {name} has dtype {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(blob, dtype="<f4", count=(b - a) // 4, offset=8 + n + a).reshape(t["shape"])
    return out, meta


def st_write(path, tensors, meta):
    import numpy as np
    head, off, parts = {}, 0, []
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a, dtype="<f4").tobytes()
        head[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        parts.append(raw)
        off += len(raw)
    head["__metadata__"] = meta
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(parts))


# ---- the recipe: gptc's resolved config, as it serialized it ---------------------

def parse_config(src):
    """gen/config.lua's serialize(): one `key = value,` per line, train = {...}."""
    cfg, train, cur = {}, {}, None
    for line in src.splitlines():
        line = line.strip()
        if line == "train = {":
            cur = train
            continue
        m = re.fullmatch(r'(\w+) = (.*),', line)
        if not m:
            continue
        k, v = m.group(1), m.group(2)
        if v in ("true", "false"):
            val = v == "true"
        elif v.startswith('"'):
            val = json.loads(v)
        elif re.fullmatch(r"-?\d+", v):
            val = int(v)
        else:
            val = float(v)
        (cur if cur is not None else cfg)[k] = val
    cfg["train"] = train
    for k in ("vocab_size", "emb_dim", "n_heads", "n_layers", "context_length", "tokenizer"):
        if k not in cfg:
            die(f"checkpoint config has no field '{k}'")
    return cfg


def with_seed(src, seed):
    out, n = re.subn(r"(?m)^(\s*seed = )\d+,$", lambda m: f"{m.group(1)}{seed},", src)
    if n != 1:
        die("checkpoint config: expected exactly one 'seed = N,' line")
    return out


# ---- the split, as runtime/data.c makes it ---------------------------------------

def char_split(text, val_ratio):
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    n_train = int((1.0 - val_ratio) * len(text))
    return vocab, [index[c] for c in text[:n_train]], [index[c] for c in text[n_train:]], text[n_train:]


def read_tokens(path):
    """Ids of one gptc token cache file (runtime/data.c's header, 168 bytes)."""
    import numpy as np
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != b"GPTCTOK\0":
        die(f"{path}: not a gptc token cache")
    width, _vocab, count = struct.unpack("<IIQ", blob[16:32])
    return np.frombuffer(blob, dtype="<u2" if width == 2 else "<i4", count=count, offset=168).astype("int64")


# ---- the model: GPT-2 with Hugging Face names and Conv1D layouts -----------------

def build_model(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    C, H, L, V, ctx = cfg["emb_dim"], cfg["n_heads"], cfg["n_layers"], cfg["vocab_size"], cfg["context_length"]
    p_drop = cfg.get("drop_rate", 0.0)

    class Conv1D(nn.Module):  # weight (in, out) as GPT-2 and gptc store it
        def __init__(self, nin, nout, bias=True):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(nin, nout))
            self.bias = nn.Parameter(torch.zeros(nout)) if bias else None

        def forward(self, x):
            y = x @ self.weight
            return y + self.bias if self.bias is not None else y

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = Conv1D(C, 3 * C, bias=cfg.get("qkv_bias", False))
            self.c_proj = Conv1D(C, C)

        def forward(self, x):  # x (B, T, C)
            B, T, _ = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=p_drop if self.training else 0.0)
            return F.dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)), p_drop, self.training)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc, self.c_proj = Conv1D(C, 4 * C), Conv1D(4 * C, C)

        def forward(self, x):
            return F.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")), p_drop, self.training)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = nn.LayerNorm(C, eps=1e-5), Attn()
            self.ln_2, self.mlp = nn.LayerNorm(C, eps=1e-5), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(ctx, C)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C, eps=1e-5)
            if not cfg.get("tie_embeddings", True):
                self.lm_head = nn.Linear(C, V, bias=False)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):  # residual projections, GPT-2's scaling
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L))
                elif name.endswith("weight") and p.dim() == 2:
                    nn.init.normal_(p, 0.0, 0.02)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)
                # LayerNorm weights keep their 1

        def forward(self, idx, targets=None, reduction="mean"):  # idx (B, T)
            T = idx.shape[1]
            x = F.dropout(self.wte(idx) + self.wpe(torch.arange(T)), p_drop, self.training)
            for b in self.h:
                x = b(x)
            x = self.ln_f(x)
            w = self.lm_head.weight if hasattr(self, "lm_head") else self.wte.weight
            logits = x @ w.t()  # (B, T, V)
            if targets is None:
                return logits
            return F.cross_entropy(logits.view(-1, V), targets.reshape(-1), reduction=reduction)

    return GPT()


# ---- the one evaluator -------------------------------------------------------

def full_split_loss(model, ids, T, batch=64):
    """Mean loss over every target of the windows ids[i:i+T] -> ids[i+1:i+T+1],
    i = 0, T, 2T, ... while i < len - T (gptc eval's windows), fp32, summed in
    double."""
    import torch
    model.eval()
    data = torch.tensor(ids, dtype=torch.long)
    n_windows = (len(ids) - 1) // T
    total, count = 0.0, 0
    with torch.no_grad():
        for w0 in range(0, n_windows, batch):
            ws = range(w0, min(w0 + batch, n_windows))
            x = torch.stack([data[w * T:w * T + T] for w in ws])
            y = torch.stack([data[w * T + 1:w * T + T + 1] for w in ws])
            total += float(model(x, y, reduction="sum").double())
            count += y.numel()
    return total / count, n_windows


def load_into(model, tensors):
    import torch
    sd = model.state_dict()
    if set(sd) != set(tensors):
        die(f"checkpoint tensors differ from the model's: only in checkpoint {sorted(set(tensors) - set(sd))}, "
            f"only in model {sorted(set(sd) - set(tensors))}")
    for k, v in tensors.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            die(f"tensor {k}: checkpoint shape {tuple(v.shape)}, model {tuple(sd[k].shape)}")
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})


# ---- the PyTorch trainer (a child process, so its wall time is a process's) ------

def lr_at(tr, it, schedule):
    lr, min_lr, warm, steps = tr["lr"], tr["min_lr"], tr["warmup_steps"], tr["steps"]
    if warm > 0 and it < warm:
        return lr * (it + 1) / (warm + 1 if schedule == "nanogpt" else warm)
    if steps - warm <= 0:
        return lr
    ratio = min(1.0, (it - warm) / (steps - warm))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def torch_worker(a):
    import numpy as np
    import torch
    t_import = time.time()
    torch.set_num_threads(a.threads)
    with open(a.job) as f:
        job = json.load(f)
    cfg, tr = job["cfg"], job["cfg"]["train"]
    train_ids = torch.from_numpy(np.load(job["train_npy"]))
    val_ids = torch.from_numpy(np.load(job["val_npy"]))
    torch.manual_seed(job["seed"])
    model = build_model(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tr["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=tr["lr"], betas=(tr["beta1"], tr["beta2"]), eps=tr["eps"])
    B, T = tr["batch_size"], tr["max_length"]
    gen = torch.Generator().manual_seed(job["seed"])

    def get_batch(data):  # nanoGPT's: B uniform window starts
        ix = torch.randint(len(data) - T, (B,), generator=gen)
        return torch.stack([data[i:i + T] for i in ix]), torch.stack([data[i + 1:i + 1 + T] for i in ix])

    def estimate_loss():
        model.eval()
        out = {}
        with torch.no_grad():
            for name, data in (("train", train_ids), ("val", val_ids)):
                out[name] = float(np.mean([float(model(*get_batch(data))) for _ in range(tr["eval_steps"])]))
        model.train()
        return out

    log, t_eval = [], 0.0
    t_loop = time.time()
    model.train()
    for it in range(job["steps"]):
        lr = lr_at(tr, it, job["schedule"])
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = get_batch(train_ids)
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tr["grad_clip"]) if tr["grad_clip"] > 0 else None
        opt.step()
        row = {"step": it + 1, "loss": loss.item(), "lr": lr}
        if norm is not None:
            row["grad_norm"] = float(norm)
        if (it + 1) % tr["eval_interval"] == 0 or it + 1 == job["steps"]:
            t0 = time.time()
            est = estimate_loss()
            t_eval += time.time() - t0
            row["val_loss"], row["train_est"] = est["val"], est["train"]
            print(f"step {it + 1}: loss {row['loss']:.4f}, estimate train {est['train']:.4f} val {est['val']:.4f}, "
                  f"{time.time() - t_loop:.1f} s", flush=True)
        log.append(row)
    t_end = time.time()
    st_write(job["ckpt"], {k: v.detach().numpy() for k, v in model.state_dict().items()}, {"format": "pt"})
    with open(job["result"], "w") as f:
        json.dump({"log": log, "import_s": t_import - T_START, "loop_s": t_end - t_loop, "eval_s": t_eval,
                   "torch": torch.__version__}, f)


# ---- the driver ------------------------------------------------------------------

def run_timed(cmd, log_path, env=None):
    """(wall s, CPU s (user + sys of the process and its children), output)."""
    ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    with open(log_path, "w") as log:
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    dt, ru1 = time.time() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
    if r.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-2000:]
        die(f"{' '.join(cmd)} exited {r.returncode}:\n{tail}")
    with open(log_path) as f:
        return dt, cpu, f.read()


def gptc_eval(gptc, ckpt, text, threads):
    r = subprocess.run([gptc, "eval", "--ckpt", ckpt, "--text", text, "--threads", str(threads)],
                       capture_output=True, text=True)
    m = re.search(r"^loss (\S+)$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        die(f"gptc eval failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gptc", default="build/out/gptc")
    ap.add_argument("--config", default="configs/shakespeare-char-baby.lua")
    ap.add_argument("--text", default=None, help="training text (default: data/tinyshakespeare.txt of this tree)")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--steps", type=int, default=0, help="stop after this step (default: the config's train.steps)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--schedule", choices=("nanogpt", "gptc"), default="nanogpt")
    ap.add_argument("--workdir", default=None, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        a.job = a.worker
        return torch_worker(a)

    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    here = os.path.dirname(os.path.abspath(__file__))
    text_path = os.path.abspath(a.text or os.path.join(here, "..", "..", "data", "tinyshakespeare.txt"))
    gptc = os.path.abspath(a.gptc)
    seeds = [int(s) for s in a.seeds.split(",") if s]
    work = a.workdir or tempfile.mkdtemp(prefix="parity-")
    os.makedirs(work, exist_ok=True)

    # warm-up: fills gptc's caches (compile, tune, tokens) and gives the resolved config
    warm = os.path.join(work, "warmup")
    if os.path.exists(os.path.join(warm, "last.safetensors")):
        die(f"{warm} holds a run: use a fresh --workdir")
    warm_s, _, warm_out = run_timed([gptc, "train", "--config", os.path.abspath(a.config), "--text", text_path,
                                  "--out", warm, "--steps", "1", "--threads", str(a.threads)],
                                 os.path.join(work, "warmup.log"))
    _, meta = st_read(os.path.join(warm, "last.safetensors"))
    cfg = parse_config(meta["config"])
    tr = cfg["train"]
    if cfg["tokenizer"] != "char":
        die(f"tokenizer {cfg['tokenizer']}: this script rebuilds the char split only")
    if tr.get("grad_accum", 1) != 1:
        die("grad_accum != 1 is not modelled by the PyTorch trainer")
    steps = a.steps or tr["steps"]

    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    if hashlib.sha256(text.encode()).hexdigest() != meta["text_hash"]:
        die(f"{text_path} is not the text gptc trained on (text_hash differs)")
    vocab, train_ids, val_ids, val_text = char_split(text, tr["val_ratio"])
    if len(vocab) != cfg["vocab_size"]:
        die(f"char vocabulary: {len(vocab)} here, {cfg['vocab_size']} in gptc's config")
    m = re.search(r"(\d+) train / (\d+) val tokens", warm_out)
    if not m or (int(m.group(1)), int(m.group(2))) != (len(train_ids), len(val_ids)):
        die(f"split sizes: {len(train_ids)} / {len(val_ids)} here, gptc printed {m and m.group(0)}")
    for name, ids in (("train", train_ids), ("val", val_ids)):
        if not np.array_equal(read_tokens(os.path.join(warm, name + ".tokens")), np.array(ids)):
            die(f"{name} split: ids differ from gptc's token cache")
    val_file = os.path.join(work, "val.txt")
    with open(val_file, "w", encoding="utf-8", newline="") as f:
        f.write(val_text)
    np.save(os.path.join(work, "train.npy"), np.array(train_ids, dtype=np.int64))
    np.save(os.path.join(work, "val.npy"), np.array(val_ids, dtype=np.int64))
    print(f"# split: {len(train_ids)} train / {len(val_ids)} val tokens (equal to gptc's token caches); "
          f"vocab {len(vocab)}; gptc warm-up run (compile/tune/tokenize + 1 step) {warm_s:.1f} s", flush=True)

    T = cfg["context_length"]
    rows = []
    for seed in seeds:
        sdir = os.path.join(work, f"seed{seed}")
        os.makedirs(sdir, exist_ok=True)
        cpath = os.path.join(sdir, "config.lua")
        with open(cpath, "w") as f:
            f.write(with_seed(meta["config"], seed))
        g_s, g_cpu, _ = run_timed([gptc, "train", "--config", cpath, "--text", text_path, "--out",
                                os.path.join(sdir, "gptc"), "--steps", str(steps), "--threads", str(a.threads)],
                               os.path.join(sdir, "gptc.log"))
        job = {"cfg": cfg, "seed": seed, "steps": steps, "schedule": a.schedule,
               "train_npy": os.path.join(work, "train.npy"), "val_npy": os.path.join(work, "val.npy"),
               "ckpt": os.path.join(sdir, "torch.safetensors"), "result": os.path.join(sdir, "torch.json")}
        with open(os.path.join(sdir, "job.json"), "w") as f:
            json.dump(job, f)
        p_s, p_cpu, _ = run_timed([sys.executable, os.path.abspath(__file__), "--worker", os.path.join(sdir, "job.json"),
                            "--threads", str(a.threads)], os.path.join(sdir, "torch.log"))
        with open(job["result"]) as f:
            res = json.load(f)

        g_ckpt = os.path.join(sdir, "gptc", "last.safetensors")
        g_tensors, g_meta = st_read(g_ckpt)
        if int(g_meta["step"]) != steps:
            die(f"{g_ckpt}: step {g_meta['step']}, expected {steps}")
        model = build_model(cfg)
        load_into(model, g_tensors)
        g_full, n_win = full_split_loss(model, val_ids, T)
        g_eval = gptc_eval(gptc, g_ckpt, val_file, a.threads)
        if abs(g_eval - g_full) > 1e-5:
            die(f"seed {seed}: this evaluator gives {g_full:.6f} on gptc's checkpoint, gptc eval {g_eval:.6f}")
        p_tensors, _ = st_read(job["ckpt"])
        load_into(model, p_tensors)
        p_full, _ = full_split_loss(model, val_ids, T)
        with open(os.path.join(sdir, "gptc", "log.jsonl")) as f:
            g_log = [json.loads(line) for line in f if line.strip()]
        g_val = [r["val_loss"] for r in g_log if "val_loss" in r][-1]
        p_val = [r["val_loss"] for r in res["log"] if "val_loss" in r][-1]
        # gptc's own per-step time (train_step only: no eval, save or log) from log.jsonl's tokens_per_s
        g_loop = sum(tr["batch_size"] * tr["max_length"] / r["tokens_per_s"] for r in g_log if r.get("tokens_per_s"))
        rows.append({"seed": seed, "g_full": g_full, "g_eval": g_eval, "p_full": p_full, "g_s": g_s, "p_s": p_s,
                     "g_cpu": g_cpu, "p_cpu": p_cpu,
                     "g_val": g_val, "p_val": p_val, "g_step_s": g_loop, "p_loop_s": res["loop_s"],
                     "p_import_s": res["import_s"], "p_eval_s": res["eval_s"],
                     "g_loss": [r["loss"] for r in g_log], "p_loss": [r["loss"] for r in res["log"]]})
        print(f"# seed {seed}: {n_win} val windows; gptc eval {g_eval:.6f} vs this evaluator {g_full:.6f} "
              f"(|diff| {abs(g_eval - g_full):.1e}); gptc steps {g_loop:.1f} s of {g_s:.1f} s; torch loop "
              f"{res['loop_s']:.1f} s (import {res['import_s']:.1f} s, estimate_loss {res['eval_s']:.1f} s) of "
              f"{p_s:.1f} s", flush=True)

    print()
    print(f"{steps} steps, {a.threads} threads, torch {torch.__version__}, PyTorch warmup formula: {a.schedule}; "
          f"gptc timed on a warm cache (kernels compiled and tuned by the warm-up run; "
          f"wall and CPU times are whole processes)")
    print()
    print("| seed | gptc full val | torch full val | gptc - torch | gptc periodic val | torch estimate val "
          "| gptc wall s | torch wall s | gptc / torch | gptc CPU s | torch CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    cols = lambda r: [r["g_full"], r["p_full"], r["g_full"] - r["p_full"], r["g_val"], r["p_val"], r["g_s"],
                      r["p_s"], r["g_s"] / r["p_s"], r["g_cpu"], r["p_cpu"]]
    fmt = ["%.4f", "%.4f", "%+.4f", "%.4f", "%.4f", "%.1f", "%.1f", "%.2f", "%.1f", "%.1f"]
    for r in rows:
        print("| %d | " % r["seed"] + " | ".join(f % v for f, v in zip(fmt, cols(r))) + " |")
    if len(rows) > 1:
        vals = list(zip(*[cols(r) for r in rows]))
        print("| mean | " + " | ".join(f % (sum(v) / len(v)) for f, v in zip(fmt, vals)) + " |")
        print("| spread (max - min) | " + " | ".join(f.replace("+", "") % (max(v) - min(v))
                                                    for f, v in zip(fmt, vals)) + " |")
    # train loss at equal steps, averaged over windows of 50 steps (one row per 50 steps)
    print()
    print("train loss, mean over each 50-step window (per seed: gptc / torch):")
    for r in rows:
        g, p = r["g_loss"], r["p_loss"]
        pts = [f"{e}: {np.mean(g[e - 50:e]):.3f}/{np.mean(p[e - 50:e]):.3f}" for e in range(50, len(g) + 1, 50)]
        print(f"seed {r['seed']}: " + ", ".join(pts))


if __name__ == "__main__":
    main()
