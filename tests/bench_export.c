/* bench_export: speed of exported executables (`gptc export`) on random
 * weights: shakespeare-char (V 65, 4/4/128, ctx 64) and gpt2-124M (12/12/768,
 * ctx 1024). Each model is written to a temp checkpoint, exported, and run.
 *
 * Usage: bench_export [threads] [targets] (default 2 and "native,portable": a comma-separated
 * list of `gptc export --target` names). Prints per model and target: export time,
 * executable size, start-up time (--info, and a 1-token run including the
 * tokenizer), and generation tokens/s = 128 / (time of a 129-token run -
 * time of a 1-token run), best of 3, and the same in CPU seconds of the runs (tokens/cpu-s). Target: gpt2-124M >= 20 tokens/s. --info now builds the
 * tokenizer too (its load_ms line), so its time includes the GPT-2 tables' parsing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "export.h"
#include "quant.h"
#include "gen.h"
#include "sample.h"
#include "tok.h"
#include "util.h"

typedef struct {
  const char *label, *src; /* config source */
  const char *text;        /* char models: the text the vocabulary comes from */
  double target_tps;       /* 0: none */
} bench_model;

static const bench_model bench_models[] = {
    {"shakespeare-char (V 65, 4/4/128, ctx 64)",
     "return { name = 'bench-char', tokenizer = 'char', emb_dim = 128, n_heads = 4, n_layers = 4,"
     " context_length = 64, drop_rate = 0.1, train = { batch_size = 12, max_length = 64 } }",
     GPTC_SOURCE_DIR "/data/tinyshakespeare.txt", 0},
    {"gpt2-124M (V 50257, 12/12/768, ctx 1024)",
     "return { name = 'bench-gpt2', tokenizer = 'gpt2', emb_dim = 768, n_heads = 12, n_layers = 12,"
     " context_length = 1024, drop_rate = 0.1, train = { batch_size = 4, max_length = 64 } }",
     NULL, 20},
};

static void bench_die(const char *what) {
  fprintf(stderr, "bench_export: %s: %s\n", what, util_errmsg());
  exit(1);
}

/* N(0, 1) by Box-Muller from the sampling generator. */
static double bench_normal(sample_rng *r) {
  double u = sample_uniform(r), v = sample_uniform(r);
  return sqrt(-2 * log(1 - u)) * cos(6.283185307179586 * v);
}

/* A checkpoint of `b` with GPT-2-style random weights; <|endoftext|>'s
 * embedding row is zeroed so no run stops early. */
static void bench_ckpt(const bench_model *b, const char *path) {
  cfg_t cfg;
  if (cfg_load_string(b->src, b->label, &cfg)) bench_die("config");
  ckpt_meta meta = {0};
  tok_t *tok = NULL;
  if (b->text) {
    char *text;
    size_t n;
    if (util_read_file(b->text, &text, &n) || !(tok = tok_char_new(text, n))) bench_die(b->text);
    free(text);
    if (tok_vocab_save(tok, &meta.vocab, &meta.vocab_len) || cfg_set_vocab(&cfg, tok_vocab_size(tok)))
      bench_die("vocabulary");
  }
  gptc_tensor *ts;
  int nt;
  size_t np;
  if (gen_tensors(&cfg, &ts, &nt, &np)) bench_die("tensors");
  float *params = util_calloc(np, sizeof(float), "parameters");
  if (!params) bench_die("parameters");
  sample_rng r;
  sample_seed(&r, 42);
  for (int i = 0; i < nt; i++)
    for (size_t k = 0; k < ts[i].numel; k++)
      params[ts[i].offset + k] =
          ts[i].init_std > 0 ? (float)(ts[i].init_std * bench_normal(&r)) : ts[i].init_value;
  if (!b->text)
    for (int i = 0; i < nt; i++)
      if (!strcmp(ts[i].name, "wte.weight")) {
        size_t C = (size_t)ts[i].shape[1];
        memset(params + ts[i].offset + (size_t)(ts[i].shape[0] - 1) * C, 0, C * sizeof(float));
      }
  meta.config_src = cfg_serialize(&cfg);
  meta.tokenizer = cfg.tokenizer;
  meta.best_val = INFINITY;
  if (!meta.config_src || ckpt_save(path, ts, nt, np, params, NULL, NULL, &meta)) bench_die(path);
  free(meta.config_src);
  free(meta.vocab);
  free(params);
  gen_tensors_free(ts, nt);
  if (tok) tok_free(tok);
}

/* The children's user + system CPU seconds so far. */
static double bench_child_cpu(void) {
  struct rusage u;
  getrusage(RUSAGE_CHILDREN, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* Best-of-3 wall time of a shell command, in seconds; *cpu gets the best
 * of its CPU times (on a loaded host, with 1 thread, the steadier number). */
static double bench_time(const char *cmd, double *cpu) {
  double best = INFINITY, best_cpu = INFINITY;
  for (int i = 0; i < 3; i++) {
    double t0 = util_now(), c0 = bench_child_cpu();
    if (system(cmd) != 0) {
      fprintf(stderr, "bench_export: failed: %s\n", cmd);
      exit(1);
    }
    double t = util_now() - t0, c = bench_child_cpu() - c0;
    if (t < best) best = t;
    if (c < best_cpu) best_cpu = c;
  }
  if (cpu) *cpu = best_cpu;
  return best;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  if (threads < 1) threads = 2;
  char targets[256];
  snprintf(targets, sizeof targets, "%s", argc > 2 ? argv[2] : "native,portable");
  char dir[] = "/tmp/gptc-bench-export.XXXXXX";
  if (!mkdtemp(dir)) {
    perror("bench_export: mkdtemp");
    return 1;
  }
  printf("exported executables, %d threads, fp32, random weights, best of 3 runs\n", threads);
  printf("%-42s %-9s %9s %9s %9s %10s %10s %12s %8s\n", "model", "--target", "export s", "size MiB", "info ms",
         "1-token ms", "tokens/s", "tokens/cpu-s", "target");
  int missed = 0;
  for (size_t m = 0; m < sizeof bench_models / sizeof bench_models[0]; m++) {
    const bench_model *b = &bench_models[m];
    char ckpt[128], exe[128], cmd[512];
    snprintf(ckpt, sizeof ckpt, "%s/m%zu.safetensors", dir, m);
    snprintf(exe, sizeof exe, "%s/m%zu", dir, m);
    bench_ckpt(b, ckpt);
    char tl[256];
    snprintf(tl, sizeof tl, "%s", targets);
    for (char *save = NULL, *target = strtok_r(tl, ",", &save); target; target = strtok_r(NULL, ",", &save)) {
      double t0 = util_now();
      if (export_program(ckpt, exe, target, QUANT_F32)) bench_die("export");
      double t_export = util_now() - t0;
      struct stat st;
      stat(exe, &st);
      snprintf(cmd, sizeof cmd, "%s --info >/dev/null", exe);
      double t_info = bench_time(cmd, NULL), c1, c129;
      snprintf(cmd, sizeof cmd, "%s --threads %d --tokens 1 'The' >/dev/null", exe, threads);
      double t1 = bench_time(cmd, &c1);
      snprintf(cmd, sizeof cmd, "%s --threads %d --tokens 129 'The' >/dev/null", exe, threads);
      double t129 = bench_time(cmd, &c129);
      double tps = 128 / (t129 - t1), tpc = 128 / (c129 - c1);
      char goal[16] = "-";
      if (b->target_tps > 0) snprintf(goal, sizeof goal, ">= %.0f", b->target_tps);
      printf("%-42s %-9s %9.1f %9.1f %9.1f %10.1f %10.1f %12.1f %8s%s\n", b->label, target, t_export,
             st.st_size / 1048576.0, t_info * 1e3, t1 * 1e3, tps, tpc, goal,
             b->target_tps > 0 && tps < b->target_tps ? "  MISSED" : "");
      missed += b->target_tps > 0 && tps < b->target_tps;
      fflush(stdout);
      unlink(exe);
    }
    unlink(ckpt);
  }
  rmdir(dir);
  return missed ? 1 : 0;
}
