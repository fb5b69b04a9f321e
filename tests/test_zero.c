/* ZeRO-1 (`gptc train --zero` under mpirun; runtime/dist.c): each rank keeps
 * the AdamW moments of its shard, updates that shard of the weights
 * (gptc_adamw_range) and all-gathers them. Against the unsharded run, bit
 * for bit: weights, gathered moments, the log; resume from and into a
 * single process; the ranged AdamW itself on pieces that cut chunks and
 * tensors. Every mpirun runs under timeout(1), one OpenMP thread per
 * rank, oversubscribed on this 2-core machine (the harness of test_mpi.c). */
#include <check.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cfg.h"
#include "ckpt.h"
#include "cpu.h"
#include "dist.h"
#include "testutil.h"
#include "util.h"


static const char *cfg(void) { return tu_src("configs/tiny-test.lua"); }

static const char *dir(const char *name) {
  static char b[4][1024];
  static int i;
  char *p = b[i++ & 3];
  snprintf(p, 1024, "%s/%s", tu_tmpdir(), name);
  return p;
}

static void single(const char *out, const char *args) {
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet %s", cfg(), out, args) == 0, "%s", r.err);
  tu_run_free(&r);
}

/* np ranks; the banner (stdout) is returned in *banner when asked */
static void ranks(int np, const char *out, const char *args, char **banner) {
  tu_run_result r;
  int code = tu_mpi_run(&r, NULL, "-np %d '%s' train --config '%s' --out '%s' %s %s", np, GPTC_EXE, cfg(), out,
                     banner ? "" : "--quiet", args);
  ck_assert_msg(code == 0, "%d ranks failed (%d): %s", np, code, r.err);
  if (banner) *banner = util_strdup(r.out);
  tu_run_free(&r);
}


/* The banner's per-rank optimizer state: 2 moments x 4 bytes x the largest
 * of dist_shards' np shards of the n_params it names. */
static void banner_bytes(const char *out, int np) {
  char want[96];
  snprintf(want, sizeof want, "ZeRO-1: AdamW moments sharded over %d ranks | optimizer state ", np);
  const char *p = strstr(out, want);
  ck_assert_msg(p, "%s", out);
  unsigned long long per, whole;
  ck_assert_int_eq(sscanf(p + strlen(want), "%llu bytes per rank (at most; %llu unsharded)", &per, &whole), 2);
  ck_assert_uint_eq(whole % 8, 0);
  size_t n = whole / 8, off[4], most = 0;
  dist_shards(n, np, off);
  for (int r = 0; r < np; r++)
    if (off[r + 1] - off[r] > most) most = off[r + 1] - off[r];
  ck_assert_uint_eq(per, 8 * most);
  ck_assert_uint_lt(per, whole / (size_t)np + 8 * 16);
}

/* The generated gptc_adamw_range on pieces that cut a 65536-float chunk,
 * a tensor and nothing (an empty piece), each with its own moments: the
 * pieces together are gptc_adamw's whole update, bit for bit (weights and
 * moments), over two steps with clipping and weight decay. wte (1100 x 64)
 * spans two chunks. */
START_TEST(range_pieces_equal_whole_update) {
  cfg_t c;
  ck_assert_msg(cfg_load_string("return { name = 'zero-unit', tokenizer = 'char', vocab_size = 1100, emb_dim = 64,"
                                " n_heads = 2, n_layers = 1, context_length = 8, train = { batch_size = 1,"
                                " max_length = 8 } }", "zero-unit.lua", &c) == 0, "%s", util_errmsg());
  cpu_module mod;
  ck_assert_msg(cpu_load(&c, &mod) == 0, "%s", util_errmsg());
  const gptc_model *m = mod.model;
  size_t n = m->n_params;
  ck_assert_uint_gt(n, 65536 + 1000);
  float *p = malloc(n * 4), *g = malloc(n * 4), *mw = calloc(n, 4), *vw = calloc(n, 4), *pw = malloc(n * 4); // (n) each
  float *mr = calloc(n, 4), *vr = calloc(n, 4);                                                    // (n) pieces' moments, end to end
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5);
    g[i] = (float)((double)(x & 0xffffff) / 16777216.0 - 0.5) * 1e-2f;
  }
  memcpy(pw, p, n * 4);
  float p5 = p[5];
  /* cuts: inside wte's first chunk and its second, one float either side
   * of the second tensor's start, an empty piece */
  size_t t1 = m->tensors[1].offset;
  size_t cuts[] = {0, 17, 65536 + 5, t1 - 1, t1 + 1, t1 + 1, n};
  ck_assert_uint_lt(65536 + 5, t1 - 1);
  int np = (int)(sizeof cuts / sizeof *cuts) - 1;
  for (int t = 1; t <= 2; t++) {
    gptc_adamw_args a = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, t == 1 ? 0.5f : 1.0f, t};
    m->adamw(pw, g, mw, vw, a);
    for (int k = 0; k < np; k++) {
      size_t lo = cuts[k], hi = cuts[k + 1];
      /* the piece's moments on their own, as a rank holds them */
      float *pm = malloc((hi - lo + 1) * 4), *pv = malloc((hi - lo + 1) * 4); // (hi - lo) each
      memcpy(pm, mr + lo, (hi - lo) * 4);
      memcpy(pv, vr + lo, (hi - lo) * 4);
      m->adamw_range(p, g, pm, pv, a, lo, hi);
      memcpy(mr + lo, pm, (hi - lo) * 4);
      memcpy(vr + lo, pv, (hi - lo) * 4);
      free(pm), free(pv);
    }
  }
  ck_assert_msg(memcmp(p, pw, n * 4) == 0, "weights differ");
  ck_assert_msg(memcmp(mr, mw, n * 4) == 0, "first moments differ");
  ck_assert_msg(memcmp(vr, vw, n * 4) == 0, "second moments differ");
  /* and the update did something, with decay on wte (2-D) */
  ck_assert(m->tensors[0].decay);
  ck_assert(p[5] != p5 && mw[5] != 0 && vw[5] > 0);
  free(p), free(g), free(mw), free(vw), free(pw), free(mr), free(vr);
  cpu_unload(&mod);
}
END_TEST

/* ckpt_load_moments_range (a ZeRO-1 rank's resume) against the whole
 * moments ckpt_load_params reads, for ranges that start and end anywhere:
 * inside tensors, in the gaps between them (0 there), empty; a hand-made
 * table with offsets out of order and gaps, as test_ckpt.c's. */
START_TEST(moments_range_equals_whole) {
  static const gptc_tensor tt[] = {
      {"wte.weight", 2, {6, 4}, 16, 24, 1, 0.02f, 0.0f},
      {"h.0.ln_1.weight", 1, {4, 0}, 0, 4, 0, 0.0f, 1.0f},
      {"h.0.attn.c_attn.weight", 2, {4, 12}, 48, 48, 1, 0.02f, 0.0f},
      {"ln_f.bias", 1, {4, 0}, 8, 4, 0, 0.0f, 0.0f},
  };
  enum { NT = 4, NP = 96 };
  float p[NP] = {0}, m[NP] = {0}, v[NP] = {0}, wm[NP], wv[NP], pm[NP], pv[NP];
  for (int i = 0; i < NT; i++)
    for (size_t j = tt[i].offset; j < tt[i].offset + tt[i].numel; j++)
      p[j] = (float)j, m[j] = (float)j * 0.5f - 7, v[j] = (float)j * 0.25f + 1;
  ckpt_meta meta;
  memset(&meta, 0, sizeof meta);
  meta.config_src = "return { name = \"t\", tokenizer = 'char' }\n";
  meta.tokenizer = CFG_TOK_CHAR;
  meta.vocab = "ab";
  meta.vocab_len = 2;
  const char *path = dir("range.safetensors");
  ck_assert_msg(ckpt_save(path, tt, NT, NP, p, m, v, &meta) == 0, "%s", util_errmsg());
  ck_assert_msg(ckpt_load_params(path, tt, NT, NP, pm, wm, wv) == 0, "%s", util_errmsg());
  for (int i = 0; i < NT; i++) /* the whole read, the reference the ranges are held to */
    for (size_t j = tt[i].offset; j < tt[i].offset + tt[i].numel; j++) ck_assert(wm[j] == m[j] && wv[j] == v[j]);
  int checked = 0;
  for (size_t lo = 0; lo <= NP; lo += 3)
    for (size_t hi = lo; hi <= NP; hi += 5) {
      for (size_t i = 0; i < NP; i++) pm[i] = pv[i] = -1;
      ck_assert_msg(ckpt_load_moments_range(path, tt, NT, NP, lo, hi, pm, pv) == 0, "%s", util_errmsg());
      for (size_t i = lo; i < hi; i++) {
        ck_assert_msg(pm[i - lo] == m[i] && pv[i - lo] == v[i], "[%zu, %zu) at %zu", lo, hi, i);
      }
      ck_assert(hi - lo == NP || pm[hi - lo] == -1); /* nothing past the range is written */
      checked++;
    }
  ck_assert_int_gt(checked, 100);
  ck_assert_int_ne(ckpt_load_moments_range(path, tt, NT, NP, 10, 97, pm, pv), 0);
  ck_assert_msg(strstr(util_errmsg(), "range.safetensors: moments [10, 97) outside the 96 parameters"), "%s",
                util_errmsg());
}
END_TEST

/* dropout on, so the per-micro-batch dropout keys are checked too */
#define DROP "--set drop_rate=0.1 --steps 6"

START_TEST(two_ranks_zero_equals_unsharded) {
  const char *a = dir("z2-off"), *b = dir("z2-on");
  ranks(2, a, DROP, NULL);
  char *out;
  ranks(2, b, DROP " --zero", &out);
  banner_bytes(out, 2);
  free(out);
  tu_same_run(a, b);
  /* the job's log records, ranks and batch included, are the same */
  char *la = tu_log_without_timing(a), *lb = tu_log_without_timing(b);
  ck_assert_msg(strstr(la, "\"ranks\":2,\"batch\":4"), "%s", la);
  ck_assert_str_eq(la, lb);
  free(la);
  free(lb);
}
END_TEST

/* 3 ranks x grad_accum 2 with --zero: the same without, and one process x
 * grad_accum 6 */
START_TEST(three_ranks_zero_equals_single) {
  const char *a = dir("z3-single"), *b = dir("z3-on"), *c = dir("z3-off");
  single(a, DROP " --set train.grad_accum=6");
  ranks(3, c, DROP " --set train.grad_accum=2", NULL);
  char *out;
  ranks(3, b, DROP " --set train.grad_accum=2 --zero", &out);
  banner_bytes(out, 3);
  free(out);
  tu_same_run(c, b);
  tu_same_run(a, b);
}
END_TEST

/* ZeRO-1 -> one process -> ZeRO-1 again, against one straight process
 * (a global batch of 4 sequences of 2 throughout) */
START_TEST(resume_between_zero_and_single) {
  const char *a = dir("zr-straight"), *b = dir("zr-mixed");
  single(a, DROP " --set train.grad_accum=4");
  ranks(2, b, "--set drop_rate=0.1 --steps 2 --set train.grad_accum=2 --zero", NULL);
  single(b, "--set drop_rate=0.1 --steps 4 --set train.grad_accum=4 --resume");
  ranks(2, b, DROP " --set train.grad_accum=2 --resume --zero", NULL);
  tu_same_tensors(a, b, "last.safetensors");
  tu_same_tensors(a, b, "last.opt.safetensors");
}
END_TEST

/* one rank with --zero (its shard is everything, grad_accum 1: still
 * dist_step's ranged AdamW) is the single process */
START_TEST(one_rank_zero_equals_single) {
  const char *a = dir("z1-single"), *b = dir("z1-on");
  single(a, DROP);
  ranks(1, b, DROP " --zero", NULL);
  tu_same_run(a, b);
}
END_TEST

/* --zero on one rank only: the options differ, every rank stops naming it */
START_TEST(zero_on_one_rank_only) {
  tu_run_result r;
  const char *out = dir("z-mixed");
  int code = tu_mpi_run(&r, NULL, "-np 1 '%s' train --config '%s' --out '%s' --quiet --steps 1 --zero : -np 1 '%s' train "
                     "--config '%s' --out '%s' --quiet --steps 1", GPTC_EXE, cfg(), out, GPTC_EXE, cfg(), out);
  ck_assert_int_ne(code, 0);
  ck_assert_msg(strstr(r.err, "rank 1's options (SHA-256 of --out, --steps, --resume, --init, --zero, --set, --text) "
                              "differs from rank 0's"), "%s", r.err);
  tu_run_free(&r);
  ck_assert(!util_file_exists(dir("z-mixed/last.safetensors")));
}
END_TEST

/* --zero without a launcher: a clear error, nothing written */
START_TEST(zero_needs_a_launcher) {
  tu_run_result r;
  const char *out = dir("z-plain");
  ck_assert_int_ne(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet --steps 1 --zero", cfg(), out), 0);
  ck_assert_msg(strstr(r.err, "--zero: shards the AdamW moments over the ranks of an MPI job: run it under mpirun"),
                "%s", r.err);
  tu_run_free(&r);
  ck_assert(!util_file_exists(out));
}
END_TEST

int main(void) {
  Suite *s = suite_create("zero");
  tu_add_case(s, "range", range_pieces_equal_whole_update, 300);
  tu_add_case(s, "moments_range", moments_range_equals_whole, 300);
  tu_add_case(s, "needs_launcher", zero_needs_a_launcher, 300);
  tu_add_case(s, "one_rank", one_rank_zero_equals_single, 300);
  tu_add_case(s, "mixed", zero_on_one_rank_only, 300);
  tu_add_case(s, "two_ranks", two_ranks_zero_equals_unsharded, 300);
  tu_add_case(s, "three_ranks", three_ranks_zero_equals_single, 300);
  tu_add_case(s, "resume", resume_between_zero_and_single, 300);
  return tu_main(s);
}
