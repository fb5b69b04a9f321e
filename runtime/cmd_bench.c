/* cmd_bench: `gptc bench`, the kernels of a config measured against this
 * machine's peaks, their generic twins and the BLAS library, then whole
 * training steps (bench.h does the work). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "cmds.h"
#include "cuda.h"
#include "data.h"
#include "dist_bench.h"
#include "tok.h"
#include "tune.h"
#include "util.h"

static const cli_opt cmd_bench_opts[] = {
    {"--config", "FILE", "model config (.lua); required unless --peaks"},
    {"--peaks", NULL, "only the machine's peaks: fp32 FMA, bf16 (vdpbf16ps, AMX tdpbf16ps: \"not available on this"
                      " CPU\" where it lacks them) and the copy bandwidth"},
    CLI_OPT_SET,
    {"--device", "NAME", "cpu (default) or cuda (the training step only: the per-op part is CPU-only)"},
    {"--threads", "N", "CPU threads for the kernels and the library (default: all cores)"},
    {"--repeats", "N", "timed runs per op and step (default: >= 5 and >= 0.2 s per op, >= 1 s per step)"},
    {"--json", "OUT", "write every number and the machine description as JSON"},
    {"--chart", "OUT.svg", "write a bar chart of each op's fraction of peak as SVG"},
    {"--cold", NULL, "evict the caches before each timed op run: inputs come from memory, as in a step whose"
                     " data outgrow the caches (default: warm, from the previous run)"},
    {"--no-step", NULL, "skip the end-to-end training steps"},
    {"--profile", NULL, "cpu: the steps run a source with a timing mark after every kernel call, and a table says "
                        "where a real step's time goes: each kernel's ms a step and share, beside its isolated time "
                        "(docs/bench-cpu.md, \"The step profile\")"},
    {"--ops-only", NULL, "the per-op benchmarks only (the same as --no-step)"},
    {"--vocab-size", "N", "vocabulary size for char/word configs (default: derived from the config's text)"},
    {"--no-tune", NULL, "do not measure GEMM schedules this host's file lacks (see gptc tune)"},
    {"--ranks", NULL, "under mpirun: the data-parallel step's gradient exchange (time, share, bytes, GB/s);"
                      " docs/distributed.md"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_bench_spec = {
    "gptc bench --config FILE [--set FIELD=VALUE]... [--device cpu|cuda] [--threads N] [--json OUT] [--chart OUT.svg] [--repeats N]\n"
    "                  [--cold] [--no-step] [--ops-only] [--profile]\n"
    "       gptc bench --peaks [--threads N]\n"
    "       mpirun -np N gptc bench --ranks --config FILE [--repeats N]",
    "Measures this machine's fp32 FMA peak, its bf16 peaks (vdpbf16ps, AMX) where the CPU has them and the\n"
    "copy bandwidth (--peaks: only these), then every kernel of the config's training step in three\n"
    "variants: specialized (the model's own, shapes as literals), generic (the same template with run-time\n"
    "shapes) and, for matmuls, OpenBLAS's cblas_sgemm (loaded at run time; n/a when missing). Each variant runs once on the same seeded inputs and is checked against the generic\n"
    "one (max |x - ref| / max |ref| <= 1e-4) before it is timed; a mismatch is reported and makes the\n"
    "exit status 1. Then whole training steps: ms/step, tokens/s, GFLOP/s, MFU and peak memory.",
    cmd_bench_opts,
    0,
};

/* Fails early on an output path that cannot be written, so an hour of
 * benchmarking does not end in an error. The file itself is written
 * atomically at the end. */
static int cmd_bench_writable(const char *opt, const char *path) {
  if (!path[0]) return util_err("%s: the path is empty", opt);
  if (util_is_dir(path)) return util_err("%s %s: is a directory", opt, path);
  char dir[4096];
  if (util_path(dir, sizeof dir, "%s", path)) return util_err("%s: %s", opt, util_errmsg());
  char *slash = strrchr(dir, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == dir) dir[1] = 0;
  else *slash = 0;
  if (!util_is_dir(dir)) return util_err("%s %s: directory %s does not exist", opt, path, dir);
  if (access(dir, W_OK)) return util_err("%s %s: directory %s is not writable", opt, path, dir);
  return 0;
}

static int cmd_bench_write(const char *path, int (*fn)(const bench_report *, util_buf *), const bench_report *r) {
  util_buf b = {0};
  int rc = fn(r, &b);
  if (!rc) rc = util_write_file_atomic(path, b.data, b.len);
  util_buf_free(&b);
  return rc;
}

static uint64_t cmd_bench_seed(const bench_report *r, int op) { return r->seed + (uint64_t)op * 0x9E3779B97F4A7C15ull; }

/* The machine's peaks (fp32, bf16) and copy bandwidth into m. */
static int cmd_bench_peaks(bench_machine *m) {
  fprintf(stderr, "gptc bench: measuring the fp32 and bf16 peaks and the copy bandwidth\n");
  m->fma_gflops = bench_fma_peak(&m->fma_lanes);
  bench_bf16_peaks(m);
  size_t bytes = (size_t)256 << 20, avail = util_mem_available();
  if (avail / 8 < bytes) bytes = avail / 8;
  return bench_copy_bw(bytes, &m->copy_gbs);
}

/* The per-op part: machine peaks, every op's own variants, then the
 * library's runs all together (bench.h: bench_op_lib says why). */
static int cmd_bench_ops(const cfg_t *cfg, bench_report *r, bench_blas *blas, cpu_object *obj) {
  if (cmd_bench_peaks(&r->machine)) return -1;
  const gptc_bench *b;
  if (bench_load(cfg, obj, &b)) return -1;
  r->hash = b->hash;
  fprintf(stderr, "gptc bench: %d ops, %s %s\n", b->n_ops, obj->compiled ? "compiled" : "cached", obj->so_path);
  r->ops = util_calloc((size_t)(b->n_ops ? b->n_ops : 1), sizeof *r->ops, "op results");
  if (!r->ops) return -1;
  for (int i = 0; i < b->n_ops; i++) {
    r->n_ops = i + 1;
    if (bench_op_run(&b->ops[i], cmd_bench_seed(r, i), &r->op_timing, &r->ops[i])) return -1;
  }
  r->blas = blas;
  if (bench_blas_open(r->machine.threads, blas)) return 0;
  /* OpenMP's idle threads spin for some milliseconds after the last
   * parallel region; let them go to sleep before the library runs */
  struct timespec pause = {0, 50 * 1000 * 1000};
  nanosleep(&pause, NULL);
  for (int i = 0; i < b->n_ops; i++)
    if (bench_op_lib(&b->ops[i], cmd_bench_seed(r, i), &r->op_timing, blas, &r->ops[i])) return -1;
  return 0;
}

int cmd_bench(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_bench_spec, argc, argv, &a, &code)) return code;
  const char *path = cli_get(&a, "--config");
  if (cli_has(&a, "--peaks")) {
    long nt = 0;
    if (path) return cli_usage_err(&a, "'--peaks' measures the machine only: it takes no '--config'");
    if (cli_int(&a, "--threads", 1, 4096, &nt)) return 2;
    cpu_set_threads((int)nt);
    bench_machine m;
    bench_describe(&m);
    if (cmd_bench_peaks(&m)) return cli_fail();
    bench_print_machine(stdout, &m);
    return 0;
  }
  if (!path || !path[0]) return cli_usage_err(&a, "option '--config FILE' is required");
  const char *device = cli_get(&a, "--device");
  if (!device) device = "cpu";
  if (strcmp(device, "cpu") && strcmp(device, "cuda"))
    return cli_usage_err(&a, "option '--device' must be cpu or cuda (got '%s')", device);
  int cuda = !strcmp(device, "cuda");
  long threads = 0, repeats = 0, vocab = 0;
  if (cli_int(&a, "--threads", 1, 4096, &threads) || cli_int(&a, "--repeats", 1, 100000, &repeats) ||
      cli_int(&a, "--vocab-size", 1, 1L << 30, &vocab))
    return 2;
  int no_step = cli_has(&a, "--no-step") || cli_has(&a, "--ops-only");
  const char *json = cli_get(&a, "--json"), *chart = cli_get(&a, "--chart");
  if (cuda && no_step)
    return cli_usage_err(&a, "'--device cuda' runs only the training step; '--no-step'/'--ops-only' leave nothing");
  int profile = cli_has(&a, "--profile");
  if (profile && cuda) return cli_usage_err(&a, "'--profile' times the CPU step's kernels; it is for --device cpu");
  if (profile && no_step) return cli_usage_err(&a, "'--profile' profiles the training step; '--no-step'/'--ops-only' skip it");
  if (cuda && chart) return cli_usage_err(&a, "'--chart' charts the per-op benchmarks, which run on the CPU only");
  if ((json && cmd_bench_writable("--json", json)) || (chart && cmd_bench_writable("--chart", chart)))
    return cli_fail();

  const char *sets[CLI_MAX];
  int n_sets = cli_all(&a, "--set", sets, CLI_MAX);
  cfg_t cfg;
  if (cfg_load_file_set(path, sets, n_sets, &cfg)) return cli_fail();
  if (vocab ? cfg_set_vocab(&cfg, (int)vocab) : data_derive_vocab(&cfg)) return cli_fail();
  if (cuda && cuda_probe()) {
    util_err("--device cuda: %s", util_errmsg());
    return cli_fail();
  }
  cpu_set_threads((int)threads);
  if (cli_has(&a, "--ranks")) return dist_bench(&cfg, (int)repeats) ? cli_fail() : 0;
  /* the GEMM schedules of this host (tune.h): the model and the ops benched are the ones train runs */
  if (!cli_has(&a, "--no-tune") && tune_ensure(&cfg, TUNE_AUTO_BUDGET, stderr)) return cli_fail();

  bench_report r = {0};
  r.cfg = &cfg;
  r.hash = "";
  r.seed = cfg.train.seed;
  r.op_timing = (bench_timing)BENCH_OP_TIMING;
  r.step_timing = (bench_timing)BENCH_STEP_TIMING;
  r.op_timing.repeats = r.step_timing.repeats = (int)repeats;
  if (cli_has(&a, "--cold")) r.op_timing.flush_bytes = bench_flush_bytes();
  bench_describe(&r.machine);
  bench_blas blas = {0};
  cpu_object obj = {0};
  int rc = 0;
  /* the step first: the RSS high-water it reports is then the model's,
   * not the copy-bandwidth arrays' or the op buffers' */
  if (!no_step) {
    fprintf(stderr, "gptc bench: timing training steps (%s)\n", device);
    rc = bench_step_profiled(&cfg, device, r.seed, &r.step_timing, profile, &r.step);
  }
  if (!rc && !cuda) rc = cmd_bench_ops(&cfg, &r, &blas, &obj);
  if (cuda) r.note = "per-op benchmarks: CPU only (run with --device cpu); the step above ran on the GPU";
  if (!rc) {
    fputc('\n', stderr);
    bench_print(stdout, &r);
    fflush(stdout);
    if (json && cmd_bench_write(json, bench_json, &r)) rc = -1;
    if (!rc && chart && cmd_bench_write(chart, bench_svg, &r)) {
      rc = -1;
      if (json) unlink(json); /* all outputs or none */
    }
  }
  int bad = bench_mismatches(&r);
  for (int i = 0; i < r.n_ops; i++) bench_op_free(&r.ops[i]);
  free(r.ops);
  bench_step_free(&r.step);
  bench_blas_close(&blas);
  cpu_object_close(&obj);
  if (rc) return cli_fail();
  return bad ? 1 : 0;
}
