/* cmd_gen: `gptc gen`, writes the generated source of a config and a
 * readable summary of its shapes, so they can be read, diffed and
 * benchmarked outside gptc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "cli.h"
#include "cmds.h"
#include "cpu.h"
#include "cuda.h"
#include "data.h"
#include "gen.h"
#include "util.h"

static const cli_opt cmd_gen_opts[] = {
    {"--config", "FILE", "model config (.lua); required"},
    CLI_OPT_SET,
    {"--out", "DIR", "output directory (created); required; -o DIR is the same"},
    CLI_ALIAS("-o", "--out"),
    {"--device", "NAME", "target device: cpu (default) or cuda (writes DIR/model.cu)"},
    {"--vocab-size", "N", "vocabulary size for char/word configs (default: derived from the config's text)"},
    {"--precision", "P", "fp32 or bf16 (default: the config's)"},
    {"--compile", "ARCH", "with --device cuda: also compile the kernels for GPU architecture ARCH (sm_80, sm_90, ...) "
                          "into the kernel cache, so a run on such a GPU loads them without compiling"},
    {"--profile", NULL, "cpu: the source `gptc bench --profile` runs: a timing mark after every kernel call of the "
                        "training passes (docs/bench.md, \"The step profile\"); the kernels are unchanged"},
    {"--explain", NULL, "list the config's compilation units (cpu: each kernel instance and the model's glue; "
                        "cuda: each kernel's NVRTC program, for GPU 0's architecture or --compile's), each with "
                        "its cache key and whether it is cached or new; compiles nothing and writes no files "
                        "(-o not needed)"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_gen_spec = {
    "gptc gen --config FILE [--set FIELD=VALUE]... -o DIR [--device cpu|cuda] [--vocab-size N] [--precision fp32|bf16] [--compile sm_NN] [--profile]\n"
    "       gptc gen --config FILE [--set FIELD=VALUE]... --explain [--device cpu|cuda] [--compile sm_NN] [--vocab-size N] [--precision fp32|bf16]",
    "Derives every shape of the config's model and writes DIR/model.c, the shape-specialized\n"
    "source that gptc compiles for training (forward, backward, AdamW, evaluation, KV-cache\n"
    "inference), and DIR/shapes.txt, every parameter tensor and activation buffer with its shape\n"
    "and offset. char and word configs need the vocabulary size: it is read from the config's\n"
    "text (tokenized through the token cache) unless --vocab-size is given. --compile fills\n"
    "the kernel cache ($GPTC_CACHE/cuda) on a machine without a GPU, e.g. for a machine whose\n"
    "first run should not wait for NVRTC; the cache directory can be copied there.\n"
    "--explain lists what a run of the config would compile: each kernel instance is its own\n"
    "unit, cached in $GPTC_CACHE/obj (cpu) or $GPTC_CACHE/cuda (cuda, one NVRTC program each)\n"
    "by the hash of its source, so a config that changes only n_layers compiles just the\n"
    "model's glue (cpu) or the optimizer's program (cuda), and one that changes only training\n"
    "fields nothing.",
    cmd_gen_opts,
    0,
};

/* --explain: the units and whether each is cached; compiles nothing. */
static int cmd_gen_explain(const cfg_t *cfg) {
  cpu_unit_info *u;
  int n, linked;
  if (cpu_explain(cfg, &u, &n, &linked)) return cli_fail();
  int w = 4, fresh = 0;
  for (int i = 0; i < n; i++) w = (int)strlen(u[i].name) > w ? (int)strlen(u[i].name) : w;
  printf("%-*s  %-64s  %s\n", w, "unit", "key ($GPTC_CACHE/obj/KEY.o)", "state");
  for (int i = 0; i < n; i++) {
    printf("%-*s  %s  %s\n", w, u[i].name, u[i].key, u[i].cached ? "cached" : "new");
    fresh += !u[i].cached;
  }
  printf("%d new, %d cached; the linked model is %s\n", fresh, n - fresh, linked ? "cached" : "new");
  free(u);
  return 0;
}

/* --explain --device cuda: the NVRTC programs for compute capability cc
 * (0: GPU 0's). */
static int cmd_gen_explain_cuda(const cfg_t *cfg, int cc) {
  cuda_unit_info *u;
  int n;
  if (cuda_explain(cfg, cc, &u, &n)) return cli_fail();
  int w = 4, fresh = 0;
  for (int i = 0; i < n; i++) w = (int)strlen(u[i].name) > w ? (int)strlen(u[i].name) : w;
  printf("%-*s  %-64s  %s\n", w, "unit", "key ($GPTC_CACHE/cuda/KEY)", "state");
  for (int i = 0; i < n; i++) {
    printf("%-*s  %s  %s\n", w, u[i].name, u[i].key, u[i].cached ? "cached" : "new");
    fresh += !u[i].cached;
  }
  printf("%d new, %d cached (NVRTC programs for %s)\n", fresh, n - fresh, n ? u[0].arch : "?");
  free(u);
  return 0;
}

int cmd_gen(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_gen_spec, argc, argv, &a, &code)) return code;
  const char *path = cli_get(&a, "--config");
  if (!path || !path[0]) return cli_usage_err(&a, "option '--config FILE' is required");
  const char *outdir = cli_get(&a, "--out");
  int explain = cli_has(&a, "--explain");
  if (!explain && (!outdir || !outdir[0])) return cli_usage_err(&a, "option '-o DIR' is required");
  const char *device = cli_get(&a, "--device");
  if (!device) device = "cpu";
  if (strcmp(device, "cpu") && strcmp(device, "cuda"))
    return cli_usage_err(&a, "option '--device' must be cpu or cuda (got '%s')", device);
  long vocab = 0;
  if (cli_has(&a, "--vocab-size") && cli_int(&a, "--vocab-size", 1, 1L << 30, &vocab)) return 2;
  const char *prec = cli_get(&a, "--precision");
  if (prec && strcmp(prec, "fp32") && strcmp(prec, "bf16"))
    return cli_usage_err(&a, "option '--precision' must be fp32 or bf16 (got '%s')", prec);
  int profile = cli_has(&a, "--profile");
  if (profile && strcmp(device, "cpu")) return cli_usage_err(&a, "option '--profile' is for --device cpu");
  const char *arch = cli_get(&a, "--compile");
  int cc = 0;
  if (arch) {
    char *end;
    long v = strncmp(arch, "sm_", 3) ? 0 : strtol(arch + 3, &end, 10);
    if (v < 10 || v > 999 || *end) return cli_usage_err(&a, "option '--compile' must be sm_NN, e.g. sm_90 (got '%s')", arch);
    if (strcmp(device, "cuda")) return cli_usage_err(&a, "option '--compile' needs '--device cuda'");
    cc = (int)v;
  }

  const char *sets[CLI_MAX];
  int n_sets = cli_all(&a, "--set", sets, CLI_MAX);
  cfg_t cfg;
  if (cfg_load_file_set(path, sets, n_sets, &cfg)) return cli_fail();
  if (vocab ? cfg_set_vocab(&cfg, (int)vocab) : data_derive_vocab(&cfg)) return cli_fail();

  if (prec) cfg.precision = strcmp(prec, "bf16") ? CFG_FP32 : CFG_BF16;
  gen_set_profile(profile);
  if (explain) return strcmp(device, "cuda") ? cmd_gen_explain(&cfg) : cmd_gen_explain_cuda(&cfg, cc);

  char *src;
  size_t len;
  char hash[65];
  if (gen_source(&cfg, device, &src, &len, hash)) return cli_fail();
  char *summary = gen_summary(&cfg);
  if (!summary) {
    free(src);
    return cli_fail();
  }
  char p1[4200], p2[4200];
  int rc = 0;
  if (util_path(p1, sizeof p1, "%s/model.%s", outdir, strcmp(device, "cuda") ? "c" : "cu") ||
      util_path(p2, sizeof p2, "%s/shapes.txt", outdir))
    rc = util_err("--out: %s", util_errmsg());
  else if (util_mkdir_p(outdir))
    rc = util_err("output directory %s: %s", outdir, util_errmsg());
  if (!rc) rc = util_write_file_atomic(p1, src, len);
  if (!rc) rc = util_write_file_atomic(p2, summary, strlen(summary));
  /* --compile fills the cache with what a run loads: the per-kernel programs */
  int compiled = 0, n_units = 0, *fresh = NULL;
  char(*paths)[4200] = NULL;
  if (!rc && cc) {
    char *whole;
    size_t wl;
    char wh[65];
    gen_unit *units;
    rc = gen_cuda_units(&cfg, NULL, &whole, &wl, wh, &units, &n_units);
    if (!rc && cuda_dist_unit(&units, &n_units)) { /* what a run loads too */
      free(whole);
      gen_units_free(units, n_units);
      rc = -1;
    } else if (!rc) {
      free(whole);
      paths = util_calloc((size_t)n_units + 1, sizeof *paths, "unit list");
      fresh = util_calloc((size_t)n_units + 1, sizeof *fresh, "unit list");
      rc = paths && fresh ? cuda_precompile_units(units, n_units, cc, &compiled, paths, fresh) : -1;
      gen_units_free(units, n_units);
    }
  }
  free(src);
  free(summary);
  if (!rc) printf("%s\n%s\nhash %s\n", p1, p2, hash);
  for (int i = 0; !rc && i < n_units; i++) printf("%s (%s)\n", paths[i], fresh[i] ? "compiled" : "already in the cache");
  free(paths);
  free(fresh);
  return rc ? cli_fail() : 0;
}
