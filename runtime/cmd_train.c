/* cmd_train: `gptc train`. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "train.h"

static const cli_opt cmd_train_opts[] = {
    {"--config", "FILE", "model config (Lua), e.g. configs/shakespeare-char.lua (required)"},
    CLI_OPT_SET,
    {"--text", "PATH", "training text: a file or a directory of *.txt (repeatable; default: the config's data)"},
    {"--out", "DIR", "checkpoints, token cache and log.jsonl go here (default: out/<config name>)"},
    {"--resume", NULL, "continue from DIR/last.safetensors with its optimizer state, bit-exactly"},
    {"--init", "CKPT", "start from a checkpoint's weights with a fresh optimizer (fine-tuning)"},
    {"--steps", "N", "stop after step N (the learning-rate schedule still spans train.steps)"},
    {"--threads", "N", "CPU threads (default: all cores)"},
    {"--device", "NAME", "cpu (default), cuda, or auto (cuda when a usable GPU is present)"},
    {"--no-tune", NULL, "do not measure GEMM schedules this host's file lacks (they keep the heuristic; see gptc tune)"},
    {"--zero", NULL, "under mpirun: each rank keeps the AdamW moments of its 1/N of the weights (ZeRO-1), bitwise the same run"},
    {"--dist-grad", "TYPE", "under mpirun: fp32 (default) or bf16 gradients between ranks (half the bytes; deterministic, "
                            "no longer bitwise one process's run)"},
    {"--quiet", NULL, "no progress output"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_train_spec = {
    "gptc train --config FILE [--set FIELD=VALUE]... [options]",
    "Trains the config's model on the CPU (or a GPU: --device cuda): generates and compiles its shape-\n"
    "specialized kernels (cached), tokenizes the text (cached), then runs AdamW with warmup + cosine decay,\n"
    "evaluating on a fixed seeded set of windows spread over the val split\n"
    "every train.eval_interval steps and saving last.safetensors (with AdamW moments) and best.safetensors.\n"
    "At the end, and on Ctrl-C (which finishes the current step, saves, and exits 0), it evaluates every\n"
    "window of the val split once: val_loss_full, printed, logged and stored in last.safetensors\n"
    "(docs/validation.md; `gptc eval --split val` recomputes it). --set overrides config fields; the checkpoint\n"
    "stores the config with them. With --resume, a --set that changes the model's shape is refused; training\n"
    "fields (steps, lr, schedule, eval) may change and each change is printed and logged in log.jsonl.\n"
    "Under an MPI launcher (mpirun -np N gptc train ...) it trains data-parallel, on the CPU (MPI) or with\n"
    "--device cuda one rank per GPU (NCCL): N ranks x grad_accum g give bit for bit one process's grad_accum\n"
    "N x g; rank 0 writes (docs/distributed.md). --zero there shards the AdamW moments over the ranks\n"
    "(ZeRO-1, CPU): optimizer state per rank / N, same numbers.",
    cmd_train_opts, 0};

int cmd_train(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_train_spec, argc, argv, &a, &code)) return code;
  train_opts o = {0};
  o.config_path = cli_get(&a, "--config");
  if (!o.config_path) return cli_usage_err(&a, "option '--config' is required");
  const char *sets[CLI_MAX];
  o.n_sets = cli_all(&a, "--set", sets, CLI_MAX);
  o.sets = sets;
  o.n_texts = cli_all(&a, "--text", o.texts, CFG_MAX_DATA);
  o.out_dir = cli_get(&a, "--out");
  o.resume = cli_has(&a, "--resume");
  o.init_ckpt = cli_get(&a, "--init");
  o.quiet = cli_has(&a, "--quiet");
  o.no_tune = cli_has(&a, "--no-tune");
  o.zero = cli_has(&a, "--zero");
  o.device = cli_get(&a, "--device");
  const char *dg = cli_get(&a, "--dist-grad");
  if (dg && strcmp(dg, "fp32") && strcmp(dg, "bf16"))
    return cli_usage_err(&a, "option '--dist-grad' must be fp32 or bf16 (got '%s')", dg);
  o.dist_bf16 = dg && !strcmp(dg, "bf16");
  if (o.device && strcmp(o.device, "cpu") && strcmp(o.device, "cuda") && strcmp(o.device, "auto"))
    return cli_usage_err(&a, "option '--device' must be cpu, cuda or auto (got '%s')", o.device);
  long v = 0;
  if (cli_int(&a, "--steps", 1, 1000000000, &v)) return 2;
  o.steps = v;
  v = 0;
  if (cli_int(&a, "--threads", 1, 4096, &v)) return 2;
  o.threads = (int)v;
  if (o.resume && o.init_ckpt) return cli_usage_err(&a, "options '--resume' and '--init' exclude each other");
  return train_run(&o) ? cli_fail() : 0;
}
