/* bench_report: what `gptc bench` measured, three ways: an aligned table
 * for the terminal, JSON with every number, and a self-contained SVG bar
 * chart. All three derive rates the same way (bench_rate). */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "json.h"
#include "plot.h"

void bench_rate(const bench_report *r, const bench_op_result *o, int var, double *rate, double *frac) {
  *rate = *frac = 0;
  const bench_var *v = &o->v[var];
  const gptc_bench_op *op = o->op;
  if (v->status != BENCH_OK || v->t.n == 0 || !(v->t.median > 0)) return;
  double work = op->compute_bound ? op->flops : op->bytes;
  if (var == BENCH_LIB) {
    double m = op->M, n = op->N, k = op->K;
    work = op->compute_bound ? 2 * m * n * k : 4 * (m * k + k * n + m * n * (1 + op->accumulate));
  }
  *rate = work / v->t.median / 1e9;
  double peak = op->compute_bound ? r->machine.fma_gflops : r->machine.copy_gbs;
  *frac = peak > 0 ? *rate / peak : 0;
}

int bench_mismatches(const bench_report *r) {
  int n = 0;
  for (int i = 0; i < r->n_ops; i++)
    for (int v = 0; v < BENCH_NVAR; v++) n += r->ops[i].v[v].status == BENCH_MISMATCH;
  return n;
}

/* time x calls of the specialized variant over all ops that have one */
static double bench_ops_total(const bench_report *r) {
  double s = 0;
  for (int i = 0; i < r->n_ops; i++)
    if (r->ops[i].v[BENCH_SPEC].status == BENCH_OK) s += r->ops[i].v[BENCH_SPEC].t.median * r->ops[i].op->calls;
  return s;
}

/* speedup of the specialized variant over `var` (0 when either is untimed) */
static double bench_speedup(const bench_op_result *o, int var) {
  const bench_var *s = &o->v[BENCH_SPEC], *v = &o->v[var];
  if (s->status != BENCH_OK || v->status != BENCH_OK || !(s->t.median > 0)) return 0;
  return v->t.median / s->t.median;
}

/* ---- table -------------------------------------------------------------------------- */

/* milliseconds with three significant digits and no exponent */
static void bench_fmt_ms(char *out, size_t n, double sec) {
  double ms = sec * 1e3;
  int dec = ms >= 100 ? 0 : ms >= 10 ? 1 : ms >= 1 ? 2 : ms >= 0.1 ? 3 : ms >= 0.01 ? 4 : 5;
  snprintf(out, n, "%.*f", dec, ms);
}

#define BENCH_COLS 17
#define BENCH_CELL 64

static const char *const bench_heads[BENCH_COLS] = {
    "op", "pass", "kernel", "calls", "check", "ms", "rate", "peak", "ms", "rate", "peak", "ms", "rate", "peak",
    "x gen", "x lib", "share"};

static void bench_row(const bench_report *r, const bench_op_result *o, double total, char (*c)[BENCH_CELL]) {
  const gptc_bench_op *op = o->op;
  int bad = 0;
  for (int v = 0; v < BENCH_NVAR; v++) bad |= o->v[v].status == BENCH_MISMATCH;
  snprintf(c[0], BENCH_CELL, "%s", op->op);
  snprintf(c[1], BENCH_CELL, "%s", op->pass);
  snprintf(c[2], BENCH_CELL, "%s", op->kernel);
  snprintf(c[3], BENCH_CELL, "%d", op->calls);
  snprintf(c[4], BENCH_CELL, "%s", bad ? "FAIL" : "ok");
  static const int order[BENCH_NVAR] = {BENCH_SPEC, BENCH_GEN, BENCH_LIB};
  for (int k = 0; k < BENCH_NVAR; k++) {
    const bench_var *v = &o->v[order[k]];
    char *ms = c[5 + 3 * k], *rate = c[6 + 3 * k], *pk = c[7 + 3 * k];
    if (v->status == BENCH_NA) {
      snprintf(ms, BENCH_CELL, "%s", op->gemm ? "n/a" : "");
      rate[0] = pk[0] = 0;
    } else if (v->status == BENCH_MISMATCH) {
      snprintf(ms, BENCH_CELL, "MISMATCH");
      snprintf(rate, BENCH_CELL, "err %.1e", v->err);
      pk[0] = 0;
    } else {
      double x, f;
      bench_rate(r, o, order[k], &x, &f);
      bench_fmt_ms(ms, BENCH_CELL, v->t.median);
      snprintf(rate, BENCH_CELL, "%.1f %s", x, op->compute_bound ? "GF/s" : "GB/s");
      snprintf(pk, BENCH_CELL, "%.1f%%", 100 * f);
    }
  }
  double sg = bench_speedup(o, BENCH_GEN), sl = bench_speedup(o, BENCH_LIB);
  c[14][0] = c[15][0] = '\0'; /* blank when there is no speedup to show */
  if (sg > 0) snprintf(c[14], BENCH_CELL, "%.2f", sg);
  if (sl > 0) snprintf(c[15], BENCH_CELL, "%.2f", sl);
  if (o->v[BENCH_SPEC].status == BENCH_OK && total > 0)
    snprintf(c[16], BENCH_CELL, "%.1f%%", 100 * o->v[BENCH_SPEC].t.median * op->calls / total);
  else c[16][0] = 0;
}

static void bench_print_ops(FILE *f, const bench_report *r) {
  double total = bench_ops_total(r);
  char(*cells)[BENCH_COLS][BENCH_CELL] = malloc(sizeof *cells * (size_t)r->n_ops);
  if (!cells) return;
  int w[BENCH_COLS];
  for (int j = 0; j < BENCH_COLS; j++) w[j] = (int)strlen(bench_heads[j]);
  for (int i = 0; i < r->n_ops; i++) {
    bench_row(r, &r->ops[i], total, cells[i]);
    for (int j = 0; j < BENCH_COLS; j++)
      if ((int)strlen(cells[i][j]) > w[j]) w[j] = (int)strlen(cells[i][j]);
  }
  /* the group line: each variant's name over its three columns */
  int lead = 0;
  for (int j = 0; j < 5; j++) lead += w[j] + 2;
  fprintf(f, "%*s", lead, "");
  for (int k = 0; k < BENCH_NVAR; k++) {
    int span = w[5 + 3 * k] + w[6 + 3 * k] + w[7 + 3 * k] + 6; /* three columns, two spaces after each */
    fprintf(f, "| %-*s", span, bench_var_names[k]);
  }
  fprintf(f, "| speedup\n");
  for (int i = -1; i < r->n_ops; i++) {
    for (int j = 0; j < BENCH_COLS; j++) {
      const char *s = i < 0 ? bench_heads[j] : cells[i][j];
      if (j == 5 || j == 8 || j == 11 || j == 14) fputs("| ", f);
      if (j < 3) fprintf(f, "%-*s  ", w[j], s);
      else fprintf(f, "%*s%s", w[j], s, j + 1 < BENCH_COLS ? "  " : "\n");
    }
  }
  free(cells);
}

static double bench_mib(size_t bytes) { return (double)bytes / 1048576.0; }

void bench_print_machine(FILE *f, const bench_machine *m) {
  fprintf(f, "machine: %s | %d cores, %d logical CPUs, %d thread%s used | %s | %s | gptc %s\n", m->cpu, m->cores,
          m->logical_cpus, m->threads, m->threads == 1 ? "" : "s", m->isa, m->compiler, GPTC_VERSION);
  if (m->fma_gflops > 0)
    fprintf(f, "peaks:   fp32 FMA %.1f GFLOP/s (%d-lane FMA loop, all threads), copy %.1f GB/s (read + write)\n",
            m->fma_gflops, m->fma_lanes, m->copy_gbs);
  if (m->fma_gflops > 0) {
    /* a why only where bench_bf16_peaks ran */
    const char *dw = m->bf16_dp_why, *aw = m->bf16_amx_why;
    if (m->bf16_dp_gflops > 0) fprintf(f, "         bf16 vdpbf16ps peak: %.1f GFLOP/s (all threads)\n", m->bf16_dp_gflops);
    else fprintf(f, "         bf16 vdpbf16ps peak: not available on this CPU%s%s%s\n", *dw ? " (" : "", dw, *dw ? ")" : "");
    if (m->bf16_amx_gflops > 0)
      fprintf(f, "         bf16 AMX tdpbf16ps peak: %.1f GFLOP/s (16x32 tiles, all threads)\n", m->bf16_amx_gflops);
    else fprintf(f, "         bf16 AMX tdpbf16ps peak: not available on this CPU%s%s%s\n", *aw ? " (" : "", aw, *aw ? ")" : "");
  }
}

/* ---- the step profile ------------------------------------------------------------------- */

/* the per-op table's op for a profile row (same kernel and pass), or NULL */
static const bench_op_result *bench_prof_op(const bench_report *r, const struct bench_prof_row *p) {
  for (int i = 0; i < r->n_ops; i++)
    if (!strcmp(r->ops[i].op->kernel, p->fn) && !strcmp(r->ops[i].op->pass, p->pass)) return &r->ops[i];
  return NULL;
}

/* the rows by time, longest first (insertion sort: a few dozen rows) */
static int *bench_prof_order(const bench_step_result *s) {
  int *o = malloc(sizeof *o * (size_t)(s->n_prof ? s->n_prof : 1));
  if (!o) return NULL;
  for (int i = 0; i < s->n_prof; i++) {
    int j = i;
    for (; j > 0 && s->prof[o[j - 1]].seconds < s->prof[i].seconds; j--) o[j] = o[j - 1];
    o[j] = i;
  }
  return o;
}

/* "matmul" for gemm_..., else the kernel name up to its first '_' */
static void bench_prof_kind(const char *fn, char *out, size_t cap) {
  if (!strncmp(fn, "gemm_", 5)) snprintf(out, cap, "matmul");
  else if (!strncmp(fn, "gptc_", 5)) snprintf(out, cap, "%s", fn + 5);
  else snprintf(out, cap, "%.*s", (int)strcspn(fn, "_"), fn);
}

static void bench_print_profile(FILE *f, const bench_report *r) {
  const bench_step_result *s = &r->step;
  int *o = bench_prof_order(s);
  if (!o) return;
  double step = s->prof_step_s, rest = s->prof_rest_s;
  int w = 6;
  for (int i = 0; i < s->n_prof; i++)
    if ((int)strlen(s->prof[i].fn) > w) w = (int)strlen(s->prof[i].fn);
  fprintf(f, "\nprofile: the profiled steps' time by call site (a timing mark after every kernel call; %.2f ms a "
             "step,\n         the mean of the timed steps; rest: outside the marks, e.g. zeroing gradients); isolated: the per-op table's specialized ms a call\n",
          step * 1e3);
  fprintf(f, "%-8s  %-*s  %5s  %9s  %9s  %6s  %9s  %s\n", "pass", w, "kernel", "calls", "ms/step", "ms/call", "share",
          "isolated", "in step / isolated");
  for (int k = 0; k < s->n_prof; k++) {
    const struct bench_prof_row *p = &s->prof[o[k]];
    if (p->calls <= 0) continue;
    double call = p->seconds / p->calls;
    fprintf(f, "%-8s  %-*s  %5.0f  %9.3f  %9.4f  %5.1f%%", p->pass, w, p->fn, p->calls, p->seconds * 1e3, call * 1e3,
            step > 0 ? 100 * p->seconds / step : 0.0);
    const bench_op_result *op = bench_prof_op(r, p);
    if (op && op->v[BENCH_SPEC].status == BENCH_OK && op->v[BENCH_SPEC].t.median > 0)
      fprintf(f, "  %9.4f  %.2fx\n", op->v[BENCH_SPEC].t.median * 1e3, call / op->v[BENCH_SPEC].t.median);
    else
      fprintf(f, "  %9s\n", "-");
  }
  fprintf(f, "%-8s  %-*s  %5s  %9.3f  %9s  %5.1f%%\n", "rest", w, "(outside the marks)",
          "", rest * 1e3, "", step > 0 ? 100 * rest / step : 0.0);
  /* by kind, largest first */
  char kinds[16][24];
  double ks[16];
  int nk = 0;
  for (int i = 0; i < s->n_prof; i++) {
    char k[24];
    bench_prof_kind(s->prof[i].fn, k, sizeof k);
    int j = 0;
    while (j < nk && strcmp(kinds[j], k)) j++;
    if (j == nk) {
      if (nk == 16) continue;
      snprintf(kinds[nk], sizeof kinds[nk], "%s", k);
      ks[nk++] = 0;
    }
    ks[j] += s->prof[i].seconds;
  }
  fprintf(f, "by kind:");
  for (int n = 0; n < nk; n++) {
    int b = -1;
    for (int j = 0; j < nk; j++)
      if (ks[j] >= 0 && (b < 0 || ks[j] > ks[b])) b = j;
    fprintf(f, "%s %s %.1f%%", n ? "," : "", kinds[b], step > 0 ? 100 * ks[b] / step : 0.0);
    ks[b] = -1;
  }
  fprintf(f, ", rest %.1f%%\n", step > 0 ? 100 * rest / step : 0.0);
  free(o);
}

void bench_print(FILE *f, const bench_report *r) {
  const cfg_t *c = r->cfg;
  const bench_machine *m = &r->machine;
  fprintf(f, "gptc bench: %s (V %d, C %d, H %d, L %d, B %d, T %d)\n", c->name, c->vocab_size, c->emb_dim,
          c->n_heads, c->n_layers, c->train.batch_size, c->train.max_length);
  bench_print_machine(f, m);
  if (r->n_ops > 0) {
    if (r->blas && r->blas->handle)
      fprintf(f, "library: %s cblas_sgemm (core %s, %d thread%s)\n", r->blas->name, r->blas->corename,
              r->blas->threads, r->blas->threads == 1 ? "" : "s");
    else if (r->blas) fprintf(f, "library: n/a (%s)\n", r->blas->why);
    const bench_timing *t = &r->op_timing;
    if (t->repeats > 0)
      fprintf(f, "timing:  %d warm-up runs, then the median of %d runs; ", t->warmup, t->repeats);
    else
      fprintf(f, "timing:  %d warm-up runs, then the median of >= %d runs and >= %.1f s (at most %d); ",
              t->warmup, t->min_runs, t->min_seconds, t->max_runs);
    fprintf(f, "checked first: max |x - ref| / max |ref| <= %g\n", BENCH_TOLERANCE);
    if (t->flush_bytes)
      fprintf(f, "caches:  cold (%.0f MiB read and written before each timed run)\n", t->flush_bytes / 1048576.0);
    else
      fprintf(f, "caches:  warm (each run finds the previous run's data in the caches; --cold evicts them)\n");
    fprintf(f, "rate: GFLOP/s (GF/s) for compute-bound ops, else GB/s; peak: of the FMA peak or the copy bandwidth;\n"
               "speedup: specialized over generic and over the library (its product alone); share: of the ops' "
               "time x calls\n\n");
    bench_print_ops(f, r);
    double total = bench_ops_total(r);
    fprintf(f, "\nops: specialized time x calls = %.3f ms per step", total * 1e3);
    if (r->step.ran && r->step.t.median > 0)
      fprintf(f, " (%.0f%% of the measured step)", 100 * total / r->step.t.median);
    fprintf(f, "\n");
  }
  const bench_step_result *s = &r->step;
  if (s->ran) {
    double sec = s->t.median, gf = s->flops_per_token * s->tokens_per_step / sec / 1e9;
    fprintf(f, "step (%s): %.2f ms/step (median of %d, p10 %.2f, p90 %.2f), %.0f tokens/s, %.2f GFLOP/s", s->device,
            sec * 1e3, s->t.n, s->t.p10 * 1e3, s->t.p90 * 1e3, s->tokens_per_step / sec, gf);
    if (!strcmp(s->device, "cpu") && m->fma_gflops > 0) fprintf(f, ", MFU %.1f%%", 100 * gf / m->fma_gflops);
    fprintf(f, "\n        FLOPs/token = 6N + 12LTC = %.3g (N = %zu parameters), %.0f tokens/step, loss %.3f\n",
            s->flops_per_token, s->n_params, s->tokens_per_step, s->loss);
    fprintf(f, "memory: peak RSS %.1f MiB", bench_mib(s->rss_bytes));
    if (s->have_model_bytes)
      fprintf(f, "; model %.1f MiB = params %.1f + grads %.1f + AdamW moments %.1f + activations %.1f",
              bench_mib(s->params_bytes + s->grads_bytes + s->moments_bytes + s->acts_bytes),
              bench_mib(s->params_bytes), bench_mib(s->grads_bytes), bench_mib(s->moments_bytes),
              bench_mib(s->acts_bytes));
    fprintf(f, "\n");
    if (s->n_prof) bench_print_profile(f, r);
  }
  if (r->note) fprintf(f, "%s\n", r->note);
  int bad = bench_mismatches(r);
  if (bad)
    fprintf(f, "MISMATCH: %d variant%s differ from the reference by more than %g (not timed)\n", bad,
            bad == 1 ? "" : "s", BENCH_TOLERANCE);
}

/* ---- JSON ------------------------------------------------------------------------------ */

/* A tiny streaming writer: it tracks whether a comma is due at each depth. */
typedef struct {
  util_buf *b;
  int depth, fail;
  int first[16];
} bench_jw;

static void bench_jkey(bench_jw *w, const char *key) {
  if (w->depth > 0 && !w->first[w->depth]) w->fail |= util_buf_add(w->b, ",", 1);
  w->first[w->depth] = 0;
  if (key) w->fail |= json_write_str(w->b, key, strlen(key), "JSON key") || util_buf_add(w->b, ":", 1);
}

static void bench_jopen(bench_jw *w, const char *key, char brace) {
  bench_jkey(w, key);
  w->fail |= util_buf_add(w->b, &brace, 1);
  w->first[++w->depth] = 1;
}

static void bench_jclose(bench_jw *w, char brace) {
  w->depth--;
  w->fail |= util_buf_add(w->b, &brace, 1);
}

static void bench_jstr(bench_jw *w, const char *key, const char *s) {
  bench_jkey(w, key);
  /* non-UTF-8 text (a CPU name, a compiler line) becomes null, not an error */
  if (!s || util_utf8_invalid_at(s, strlen(s)) >= 0) w->fail |= util_buf_add(w->b, "null", 4);
  else w->fail |= json_write_str(w->b, s, strlen(s), key ? key : "string");
}

static void bench_jnum(bench_jw *w, const char *key, double x) {
  bench_jkey(w, key);
  if (!isfinite(x)) w->fail |= util_buf_add(w->b, "null", 4);
  else if (x == floor(x) && fabs(x) < 9e15) w->fail |= util_buf_printf(w->b, "%.0f", x); /* counts read as integers */
  else w->fail |= json_write_num(w->b, x, key ? key : "number");
}

static void bench_jbool(bench_jw *w, const char *key, int v) {
  bench_jkey(w, key);
  w->fail |= util_buf_add(w->b, v ? "true" : "false", v ? 4 : 5);
}

static void bench_jstats_ms(bench_jw *w, const bench_stats *t) {
  bench_jnum(w, "median_ms", t->median * 1e3);
  bench_jnum(w, "min_ms", t->min * 1e3);
  bench_jnum(w, "max_ms", t->max * 1e3);
  bench_jnum(w, "p10_ms", t->p10 * 1e3);
  bench_jnum(w, "p90_ms", t->p90 * 1e3);
  bench_jnum(w, "runs", t->n);
}

static void bench_json_machine(bench_jw *w, const bench_report *r) {
  const bench_machine *m = &r->machine;
  bench_jopen(w, "machine", '{');
  bench_jstr(w, "cpu", m->cpu);
  bench_jnum(w, "cores", m->cores);
  bench_jnum(w, "logical_cpus", m->logical_cpus);
  bench_jnum(w, "threads", m->threads);
  bench_jstr(w, "isa", m->isa);
  bench_jnum(w, "fma_lanes", m->fma_lanes);
  bench_jstr(w, "cc", m->cc);
  bench_jstr(w, "compiler", m->compiler);
  bench_jstr(w, "flags", m->flags);
  bench_jstr(w, "gptc_version", GPTC_VERSION);
  bench_jnum(w, "fma_peak_gflops", m->fma_gflops);
  bench_jnum(w, "copy_gbs", m->copy_gbs);
  bench_jnum(w, "bf16_vdpbf16ps_peak_gflops", m->bf16_dp_gflops > 0 ? m->bf16_dp_gflops : NAN);
  bench_jnum(w, "bf16_amx_peak_gflops", m->bf16_amx_gflops > 0 ? m->bf16_amx_gflops : NAN);
  if (r->blas) {
    bench_jopen(w, "library", '{');
    bench_jbool(w, "available", r->blas->handle != NULL);
    bench_jstr(w, "name", r->blas->name);
    if (r->blas->handle) {
      bench_jstr(w, "corename", r->blas->corename);
      bench_jnum(w, "threads", r->blas->threads);
    } else bench_jstr(w, "why", r->blas->why);
    bench_jclose(w, '}');
  }
  bench_jclose(w, '}');
}

static void bench_json_op(bench_jw *w, const bench_report *r, const bench_op_result *o, double total) {
  const gptc_bench_op *op = o->op;
  bench_jopen(w, NULL, '{');
  bench_jstr(w, "op", op->op);
  bench_jstr(w, "pass", op->pass);
  bench_jstr(w, "kernel", op->kernel);
  bench_jstr(w, "what", op->what);
  bench_jnum(w, "calls", op->calls);
  bench_jnum(w, "flops", op->flops);
  bench_jnum(w, "bytes", op->bytes);
  bench_jbool(w, "compute_bound", op->compute_bound);
  bench_jopen(w, "dims", '{');
  for (int i = 0; i < op->n_dims; i++) bench_jnum(w, op->dim_names ? op->dim_names[i] : "?", op->dims[i]);
  bench_jclose(w, '}');
  if (op->gemm) {
    bench_jopen(w, "gemm", '{');
    bench_jnum(w, "M", op->M), bench_jnum(w, "N", op->N), bench_jnum(w, "K", op->K);
    bench_jbool(w, "ta", op->ta), bench_jbool(w, "tb", op->tb), bench_jbool(w, "accumulate", op->accumulate);
    bench_jclose(w, '}');
  }
  for (int v = 0; v < BENCH_NVAR; v++) {
    const bench_var *x = &o->v[v];
    if (v == BENCH_LIB && !op->gemm) continue;
    bench_jopen(w, bench_var_names[v], '{');
    bench_jstr(w, "check", x->status == BENCH_OK ? "ok" : x->status == BENCH_MISMATCH ? "mismatch" : "n/a");
    if (x->status != BENCH_NA) bench_jnum(w, "rel_err", x->err);
    if (x->status == BENCH_OK) {
      double rate, frac;
      bench_rate(r, o, v, &rate, &frac);
      bench_jstats_ms(w, &x->t);
      bench_jnum(w, op->compute_bound ? "gflops" : "gbs", rate);
      bench_jnum(w, "peak_fraction", frac);
    }
    bench_jclose(w, '}');
  }
  double sg = bench_speedup(o, BENCH_GEN), sl = bench_speedup(o, BENCH_LIB);
  bench_jnum(w, "speedup_vs_generic", sg > 0 ? sg : NAN);
  if (op->gemm) bench_jnum(w, "speedup_vs_library", sl > 0 ? sl : NAN);
  bench_jnum(w, "step_share",
             o->v[BENCH_SPEC].status == BENCH_OK && total > 0 ? o->v[BENCH_SPEC].t.median * op->calls / total : NAN);
  bench_jclose(w, '}');
}

static void bench_json_step(bench_jw *w, const bench_report *r) {
  const bench_step_result *s = &r->step;
  if (!s->ran) {
    bench_jkey(w, "step");
    w->fail |= util_buf_add(w->b, "null", 4);
    return;
  }
  double sec = s->t.median, gf = s->flops_per_token * s->tokens_per_step / sec / 1e9;
  bench_jopen(w, "step", '{');
  bench_jstr(w, "device", s->device);
  bench_jstr(w, "model", s->about);
  bench_jnum(w, "ms_per_step", sec * 1e3);
  bench_jstats_ms(w, &s->t);
  bench_jnum(w, "tokens_per_step", s->tokens_per_step);
  bench_jnum(w, "tokens_per_s", s->tokens_per_step / sec);
  bench_jnum(w, "n_params", (double)s->n_params);
  bench_jnum(w, "flops_per_token", s->flops_per_token);
  bench_jnum(w, "gflops", gf);
  bench_jnum(w, "mfu", !strcmp(s->device, "cpu") && r->machine.fma_gflops > 0 ? gf / r->machine.fma_gflops : NAN);
  bench_jnum(w, "loss", s->loss);
  bench_jnum(w, "peak_rss_bytes", (double)s->rss_bytes);
  if (s->have_model_bytes) {
    bench_jopen(w, "model_bytes", '{');
    bench_jnum(w, "params", (double)s->params_bytes);
    bench_jnum(w, "grads", (double)s->grads_bytes);
    bench_jnum(w, "adamw_moments", (double)s->moments_bytes);
    bench_jnum(w, "activations", (double)s->acts_bytes);
    bench_jnum(w, "total", (double)(s->params_bytes + s->grads_bytes + s->moments_bytes + s->acts_bytes));
    bench_jclose(w, '}');
  }
  if (r->n_ops > 0) bench_jnum(w, "ops_ms", bench_ops_total(r) * 1e3);
  if (s->n_prof) {
    bench_jopen(w, "profile", '{');
    bench_jnum(w, "ms_per_step", s->prof_step_s * 1e3);
    bench_jopen(w, "sites", '[');
    for (int i = 0; i < s->n_prof; i++) {
      const struct bench_prof_row *p = &s->prof[i];
      bench_jopen(w, NULL, '{');
      bench_jstr(w, "pass", p->pass);
      bench_jstr(w, "kernel", p->fn);
      bench_jnum(w, "calls_per_step", p->calls);
      bench_jnum(w, "ms_per_step", p->seconds * 1e3);
      bench_jclose(w, '}');
    }
    bench_jclose(w, ']');
    bench_jnum(w, "rest_ms_per_step", s->prof_rest_s * 1e3);
    bench_jclose(w, '}');
  }
  bench_jclose(w, '}');
}

int bench_json(const bench_report *r, util_buf *out) {
  bench_jw w = {out, 0, 0, {1}};
  const cfg_t *c = r->cfg;
  bench_jopen(&w, NULL, '{');
  bench_jopen(&w, "config", '{');
  bench_jstr(&w, "name", c->name);
  bench_jstr(&w, "path", c->path);
  bench_jstr(&w, "bench_hash", r->hash);
  bench_jnum(&w, "vocab_size", c->vocab_size);
  bench_jnum(&w, "emb_dim", c->emb_dim);
  bench_jnum(&w, "n_heads", c->n_heads);
  bench_jnum(&w, "n_layers", c->n_layers);
  bench_jnum(&w, "context_length", c->context_length);
  bench_jnum(&w, "batch_size", c->train.batch_size);
  bench_jnum(&w, "max_length", c->train.max_length);
  bench_jnum(&w, "grad_accum", c->train.grad_accum);
  bench_jclose(&w, '}');
  bench_json_machine(&w, r);
  bench_jopen(&w, "settings", '{');
  bench_jnum(&w, "seed", (double)r->seed);
  bench_jnum(&w, "tolerance", BENCH_TOLERANCE);
  bench_jnum(&w, "warmup", r->op_timing.warmup);
  bench_jnum(&w, "repeats", r->op_timing.repeats > 0 ? r->op_timing.repeats : NAN);
  bench_jnum(&w, "min_runs", r->op_timing.min_runs);
  bench_jnum(&w, "max_runs", r->op_timing.max_runs);
  bench_jnum(&w, "min_seconds", r->op_timing.min_seconds);
  bench_jbool(&w, "cold", r->op_timing.flush_bytes > 0);
  bench_jnum(&w, "flush_bytes", (double)r->op_timing.flush_bytes);
  bench_jclose(&w, '}');
  double total = bench_ops_total(r);
  bench_jopen(&w, "ops", '[');
  for (int i = 0; i < r->n_ops; i++) bench_json_op(&w, r, &r->ops[i], total);
  bench_jclose(&w, ']');
  bench_jnum(&w, "mismatches", bench_mismatches(r));
  bench_json_step(&w, r);
  bench_jstr(&w, "note", r->note);
  bench_jclose(&w, '}');
  w.fail |= util_buf_add(out, "\n", 1);
  return w.fail ? util_err("writing the benchmark JSON: %s", util_errmsg()) : 0;
}

/* ---- SVG --------------------------------------------------------------------------------- */

/* a round tick step (1, 2 or 5 x 10^k) giving at most about 8 ticks up to max */
static double bench_tick(double max) {
  double raw = max / 8, p = pow(10, floor(log10(raw)));
  return raw <= p ? p : raw <= 2 * p ? 2 * p : raw <= 5 * p ? 5 * p : 10 * p;
}

static int bench_svg_text(util_buf *b, double x, double y, const char *attrs, const char *fmt, ...)
    UTIL_PRINTF(5, 6);
static int bench_svg_text(util_buf *b, double x, double y, const char *attrs, const char *fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  int fail = util_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" %s>", x, y, attrs);
  fail |= plot_xml_escape(b, text);
  return fail | util_buf_add(b, "</text>\n", 8);
}

/* the chart's axis ends at most here (% of peak) */
#define BENCH_SVG_AXIS_CAP 200.0

int bench_svg(const bench_report *r, util_buf *b) {
  static const char *const colors[BENCH_NVAR] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
  /* monospace labels: about 7.2 px a character at 12 px */
  size_t longest = 0;
  double vmax = 0;
  for (int i = 0; i < r->n_ops; i++) {
    const gptc_bench_op *op = r->ops[i].op;
    size_t n = strlen(op->op) + strlen(op->pass) + strlen(op->kernel) + 2;
    if (n > longest) longest = n;
    for (int v = 0; v < BENCH_NVAR; v++) {
      double rate, frac;
      bench_rate(r, &r->ops[i], v, &rate, &frac);
      if (100 * frac > vmax) vmax = 100 * frac;
    }
  }
  /* Small memory-bound ops run from cache at several times the DRAM copy
   * bandwidth; an axis stretched to them would squash the matmuls' bars. */
  int cut = vmax > BENCH_SVG_AXIS_CAP;
  if (cut) vmax = BENCH_SVG_AXIS_CAP;
  double tick = bench_tick(vmax > 0 ? vmax : 1), axis_max = ceil((vmax > 0 ? vmax : 1) / tick) * tick;
  double left = 20 + 7.2 * (double)longest, plot_w = 640, top = 92, bar = 9, group = 3 * bar + 10;
  double width = left + plot_w + 70, plot_h = group * r->n_ops, height = top + plot_h + 60;
  double scale = plot_w / axis_max;
  int fail = util_buf_printf(b,
                             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                             "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
                             "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                             width, height, width, height);
  const bench_machine *m = &r->machine;
  fail |= bench_svg_text(b, 10, 22, "font-size=\"16\" font-weight=\"bold\"", "gptc bench: %s, %s, %d thread%s",
                         r->cfg->name, m->cpu, m->threads, m->threads == 1 ? "" : "s");
  fail |= bench_svg_text(b, 10, 42, "fill=\"#444\"",
                         "%% of peak: fp32 FMA %.1f GFLOP/s for compute-bound ops, copy %.1f GB/s otherwise (%s, gptc %s)%s",
                         m->fma_gflops, m->copy_gbs, m->isa, GPTC_VERSION,
                         cut ? "; bars past the axis are cut (data in cache)" : "");
  for (int v = 0; v < BENCH_NVAR; v++) {
    double x = left + 150.0 * v;
    fail |= util_buf_printf(b, "<rect x=\"%.1f\" y=\"56\" width=\"14\" height=\"14\" fill=\"%s\"/>\n", x, colors[v]);
    fail |= bench_svg_text(b, x + 20, 68, "", "%s", v == BENCH_LIB ? "library (sgemm)" : bench_var_names[v]);
  }
  /* grid and axis */
  for (double t = 0; t <= axis_max + tick / 2; t += tick) {
    double x = left + t * scale;
    fail |= util_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x, top, x,
                            top + plot_h);
    fail |= util_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x,
                            top + plot_h, x, top + plot_h + 5);
    fail |= bench_svg_text(b, x, top + plot_h + 18, "text-anchor=\"middle\"", "%g%%", t);
  }
  fail |= util_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", left,
                          top + plot_h, left + plot_w, top + plot_h);
  fail |= util_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", left, top,
                          left, top + plot_h);
  fail |= bench_svg_text(b, left + plot_w / 2, top + plot_h + 40, "text-anchor=\"middle\"", "%% of peak");
  for (int i = 0; i < r->n_ops; i++) {
    const bench_op_result *o = &r->ops[i];
    double y0 = top + group * i + 5;
    fail |= bench_svg_text(b, left - 8, y0 + 1.5 * bar + 4, "text-anchor=\"end\" font-family=\"monospace\"", "%s %s %s",
                           o->op->op, o->op->pass, o->op->kernel);
    for (int v = 0; v < BENCH_NVAR; v++) {
      double y = y0 + bar * v, rate, frac;
      if (v == BENCH_LIB && !o->op->gemm) continue;
      const bench_var *x = &o->v[v];
      if (x->status != BENCH_OK) {
        fail |= bench_svg_text(b, left + 4, y + bar - 1, x->status == BENCH_MISMATCH ? "font-size=\"9\" fill=\"#c00\""
                                                                                      : "font-size=\"9\" fill=\"#888\"",
                               "%s: %s", bench_var_names[v], x->status == BENCH_MISMATCH ? "mismatch" : "n/a");
        continue;
      }
      bench_rate(r, o, v, &rate, &frac);
      int over = 100 * frac > axis_max;
      double wbar = (over ? axis_max : 100 * frac) * scale;
      fail |= util_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\"><title>", left,
                              y, wbar, bar - 1, colors[v]);
      fail |= plot_xml_escape(b, o->op->kernel);
      fail |= util_buf_printf(b, " %s: %.4g ms, %.4g %s, %.1f%% of peak</title></rect>\n", bench_var_names[v],
                              x->t.median * 1e3, rate, o->op->compute_bound ? "GFLOP/s" : "GB/s", 100 * frac);
      if (over) /* a white notch near the end marks the cut */
        fail |= util_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"3\" height=\"%.1f\" fill=\"white\"/>\n",
                                left + wbar - 12, y, bar - 1);
      fail |= bench_svg_text(b, left + wbar + 3, y + bar - 1, "font-size=\"9\" fill=\"#333\"", "%.1f%%", 100 * frac);
    }
  }
  fail |= util_buf_add(b, "</svg>\n", 7);
  return fail ? util_err("writing the benchmark chart: %s", util_errmsg()) : 0;
}
