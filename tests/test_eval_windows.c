/* Evaluation over the whole split (periodic windows, the final full
 * evaluation, `gptc eval --split`) and train.sampling = "random": issue 15
 * items 1 and 2. The window choices are checked directly on data.c's
 * functions; everything else end to end through the CLI on a tiny model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "ckpt.h"
#include "data.h"
#include "testutil.h"
#include "train.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------------ */

/* One model shape for every end-to-end test, so the kernels compile once. */
static const char *ew_cfg(const char *name, const char *extra_train) {
  char src[4096];
  snprintf(src, sizeof src,
           "return { name = '%s', tokenizer = 'char', data = '%s', emb_dim = 16, n_heads = 2, n_layers = 2,\n"
           "  context_length = 16, drop_rate = 0.0,\n"
           "  train = { batch_size = 2, max_length = 16, stride = 16, lr = 3e-3, steps = 12, eval_interval = 3,\n"
           "            eval_steps = 3, %s } }\n",
           name, tu_src("data/the-verdict.txt"), extra_train);
  char fname[256];
  snprintf(fname, sizeof fname, "%s.lua", name);
  return tu_write_str(fname, src);
}

static const char *ew_dir(const char *name) {
  static char b[4][1024];
  static int i;
  i = (i + 1) % 4;
  snprintf(b[i], sizeof b[i], "%s/%s", tu_tmpdir(), name);
  return b[i];
}

static void ew_train(const char *cfg, const char *dir, const char *extra) {
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet --threads 1 %s", cfg, dir, extra) == 0,
                "train %s: %s", dir, r.err);
  tu_run_free(&r);
}

/* The text after `"key":` on the log line of `step` (up to , or }), or "" */
static void ew_field(const char *dir, int step, const char *key, char *out, size_t cap) {
  char path[1200], *data, pre[64], k[64];
  size_t len;
  snprintf(path, sizeof path, "%s/log.jsonl", dir);
  ck_assert_msg(util_read_file(path, &data, &len) == 0, "%s", util_errmsg());
  snprintf(pre, sizeof pre, "{\"step\":%d,", step);
  snprintf(k, sizeof k, "\"%s\":", key);
  out[0] = '\0';
  for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
    if (strncmp(line, pre, strlen(pre))) continue;
    char *v = strstr(line, k);
    if (!v) continue;
    v += strlen(k);
    size_t n = strcspn(v, ",}");
    ck_assert_uint_lt(n, cap);
    memcpy(out, v, n);
    out[n] = '\0';
  }
  free(data);
}

/* The lines of the log (one per step, step i+1 at i) and their count. */
static int ew_lines(const char *dir) {
  char path[1200], *data;
  size_t len;
  snprintf(path, sizeof path, "%s/log.jsonl", dir);
  ck_assert_msg(util_read_file(path, &data, &len) == 0, "%s", util_errmsg());
  int n = 0;
  for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
    int step;
    ck_assert_msg(sscanf(line, "{\"step\":%d,\"loss\":", &step) == 1, "not a step line: %s", line);
    ck_assert_int_eq(step, ++n);
  }
  free(data);
  return n;
}

static void ew_params(const char *ckpt, float **params, size_t *n) {
  train_loaded l;
  ck_assert_msg(train_load_ckpt(ckpt, &l) == 0, "%s", util_errmsg());
  *n = l.mod.model->n_params;
  *params = l.params;
  l.params = NULL;
  train_loaded_free(&l);
}

static int ew_same_params(const char *a, const char *b) {
  float *pa, *pb;
  size_t na, nb;
  ew_params(a, &pa, &na);
  ew_params(b, &pb, &nb);
  int same = na == nb && !memcmp(pa, pb, na * sizeof *pa);
  free(pa);
  free(pb);
  return same;
}

/* `gptc eval --split`: the exact value (the "exact" hex field) and the
 * printed `loss` line. */
static double ew_eval_split(const char *ckpt, const char *split, const char *extra, char *printed, size_t cap) {
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "eval --ckpt '%s' --split %s --threads 1 %s", ckpt, split, extra) == 0, "%s", r.err);
  char *x = strstr(r.out, "| exact ");
  ck_assert_msg(x != NULL, "%s", r.out);
  double v = strtod(x + 8, NULL);
  char *l = strstr(r.out, "\nloss ");
  ck_assert_msg(l != NULL, "%s", r.out);
  size_t n = strcspn(l + 6, "\n");
  ck_assert_uint_lt(n, cap);
  memcpy(printed, l + 6, n);
  printed[n] = '\0';
  tu_run_free(&r);
  return v;
}

static int ew_same_double(double a, double b) { return !memcmp(&a, &b, sizeof a); }

/* ---- the windows themselves (data.c) ---------------------------------------- */

START_TEST(eval_windows_cover_the_split) {
  size_t n = 111540, count = 0, full = (n - 1) / 64; /* tinyshakespeare's val split in chars, ctx 64 */
  size_t S = n - 64;
  size_t *w = data_eval_windows(n, 64, 240, 1337, "val", &count);
  ck_assert_ptr_nonnull(w);
  ck_assert_uint_eq(count, 240);
  for (size_t i = 0; i < count; i++) {
    /* in its own stratum of the starts 0 .. n-T-1 */
    size_t lo = S * i / count, hi = S * (i + 1) / count;
    ck_assert_msg(w[i] >= lo && w[i] < hi, "window %zu starts at %zu, outside [%zu, %zu)", i, w[i], lo, hi);
    ck_assert_uint_le(w[i] + 64, n - 1); /* a target for every position */
  }
  ck_assert_uint_lt(w[0], n / 10);              /* the first tenth */
  ck_assert_uint_ge(w[count - 1], n - n / 10); /* the last tenth */
  /* a function of its arguments: the same set every time (every evaluation, every --resume) */
  size_t c2;
  size_t *w2 = data_eval_windows(n, 64, 240, 1337, "val", &c2);
  ck_assert_uint_eq(c2, count);
  ck_assert_mem_eq(w, w2, count * sizeof *w);
  free(w2);
  /* another seed, another draw inside the same strata */
  w2 = data_eval_windows(n, 64, 240, 1338, "val", &c2);
  ck_assert_int_ne(memcmp(w, w2, count * sizeof *w), 0);
  free(w2);
  free(w);

  /* 0, or as many as or more than the split holds: every non-overlapping window, in order */
  size_t asks[] = {0, full, full + 1, 1u << 30};
  for (size_t a = 0; a < sizeof asks / sizeof *asks; a++) {
    w = data_eval_windows(n, 64, asks[a], 1337, "val", &count);
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(count, full);
    for (size_t i = 0; i < count; i++) ck_assert_uint_eq(w[i], i * 64);
    ck_assert_uint_le(w[count - 1] + 64, n - 1);
    ck_assert_uint_gt(w[count - 1] + 64 + 64, n - 1); /* no further window fits: only the tail is left out */
    free(w);
  }
  ck_assert_uint_eq(data_full_windows(65, 64), 1);
  ck_assert_uint_eq(data_full_windows(64, 64), 0);
  ck_assert_uint_eq(data_full_windows(129, 64), 2);
  ck_assert_uint_eq(data_full_windows(128, 64), 1);
  /* a split too short for one window is an error naming it */
  ck_assert_ptr_null(data_eval_windows(64, 64, 0, 1, "val", &count));
  ck_assert_str_eq(util_errmsg(), "val split has 64 tokens, too few for one window of max_length 64 (needs at least 65)");
  ck_assert_ptr_null(data_eval_windows(10, 64, 5, 1, "train", &count));
  ck_assert_str_eq(util_errmsg(), "train split has 10 tokens, too few for one window of max_length 64 (needs at least 65)");
}
END_TEST

START_TEST(random_batches_stay_in_the_split) {
  enum { N = 67, T = 64, B = 12, G = 200 };
  int32_t ids[N];
  for (int i = 0; i < N; i++) ids[i] = 1000 + i; /* an id tells its position */
  data_loader dl;
  ck_assert_int_eq(data_loader_init(&dl, ids, N, B, T, 1, 0, 0, 7, "train"), 0);
  int32_t in[B * T], tg[B * T], in2[B * T], tg2[B * T];
  size_t st[B], st2[B];
  int seen[N] = {0};
  for (uint64_t g = 0; g < G; g++) {
    data_random_batch(&dl, g, in, tg, st);
    for (int r = 0; r < B; r++) {
      ck_assert_uint_le(st[r], N - T - 1); /* nanoGPT: randint(len - block_size) */
      seen[st[r]]++;
      for (int t = 0; t < T; t++) {
        ck_assert_int_eq(in[r * T + t], 1000 + (int)st[r] + t);
        ck_assert_int_eq(tg[r * T + t], 1000 + (int)st[r] + t + 1);
      }
    }
    /* keyed by (seed, g) alone: drawn again, the same batch */
    data_random_batch(&dl, g, in2, tg2, st2);
    ck_assert_mem_eq(st, st2, sizeof st);
    ck_assert_mem_eq(in, in2, sizeof in);
    ck_assert_mem_eq(tg, tg2, sizeof tg);
  }
  /* every start, the first and the last included, is drawn (2400 draws of 3) */
  for (int s = 0; s <= N - T - 1; s++) ck_assert_msg(seen[s] > 600, "start %d drawn %d times", s, seen[s]);
  /* another seed, other batches */
  data_loader d2 = dl;
  d2.seed = 8;
  size_t a[B], b[B];
  int differ = 0;
  for (uint64_t g = 0; g < 8; g++) {
    data_random_batch(&dl, g, in, tg, a);
    data_random_batch(&d2, g, in, tg, b);
    differ += memcmp(a, b, sizeof a) != 0;
  }
  ck_assert_int_gt(differ, 0);
}
END_TEST

/* ---- config ------------------------------------------------------------------------ */

START_TEST(sampling_field) {
  cfg_t c;
  ck_assert_int_eq(cfg_load_string("return { name = 'x', emb_dim = 8, n_heads = 2, n_layers = 1, context_length = 8 }",
                                   "x.lua", &c),
                   0);
  ck_assert_int_eq(c.train.sampling, CFG_SAMPLE_WINDOWS);
  ck_assert_int_eq(c.train.eval_steps, 20);
  ck_assert_int_eq(cfg_load_string("return { name = 'x', emb_dim = 8, n_heads = 2, n_layers = 1, context_length = 8,"
                                   " train = { sampling = 'random', eval_steps = 0 } }",
                                   "x.lua", &c),
                   0);
  ck_assert_int_eq(c.train.sampling, CFG_SAMPLE_RANDOM);
  ck_assert_int_eq(c.train.eval_steps, 0);
  /* the stored config keeps it */
  char *src = cfg_serialize(&c);
  ck_assert_ptr_nonnull(strstr(src, "sampling = \"random\""));
  cfg_t back;
  ck_assert_int_eq(cfg_load_data(src, "ckpt", &back), 0);
  ck_assert_int_eq(back.train.sampling, CFG_SAMPLE_RANDOM);
  free(src);
  ck_assert_int_eq(cfg_load_string("return { name = 'x', emb_dim = 8, n_heads = 2, n_layers = 1, context_length = 8,"
                                   " train = { sampling = 'shuffled' } }",
                                   "x.lua", &c),
                   -1);
  ck_assert_str_eq(util_errmsg(), "x.lua: field 'train.sampling' must be one of windows, random (got \"shuffled\")");
  ck_assert_int_eq(cfg_load_string("return { name = 'x', emb_dim = 8, n_heads = 2, n_layers = 1, context_length = 8,"
                                   " train = { eval_steps = -1 } }",
                                   "x.lua", &c),
                   -1);
  ck_assert_ptr_nonnull(strstr(util_errmsg(), "'train.eval_steps' must be a non-negative integer"));
  /* through the CLI: a one-line error naming the field, exit 1 */
  tu_run_result r;
  const char *bad = ew_cfg("bad-sampling", "sampling = 'epochs'");
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", bad, ew_dir("bad-sampling")), 1);
  ck_assert_ptr_nonnull(strstr(r.err, "field 'train.sampling' must be one of windows, random (got \"epochs\")"));
  ck_assert_int_eq((int)(strchr(r.err, '\n') - r.err), (int)r.err_len - 1); /* one line */
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "help config"), 0);
  ck_assert_ptr_nonnull(strstr(r.out, "train.sampling"));
  ck_assert_ptr_nonnull(strstr(r.out, "windows | random"));
  tu_run_free(&r);
}
END_TEST

START_TEST(recipe_configs) {
  cfg_t c;
  ck_assert_msg(cfg_load_file(tu_src("configs/shakespeare-char-baby.lua"), &c) == 0, "%s", util_errmsg());
  ck_assert_int_eq(c.tokenizer, CFG_TOK_CHAR);
  ck_assert_int_eq(c.n_layers, 4);
  ck_assert_int_eq(c.n_heads, 4);
  ck_assert_int_eq(c.emb_dim, 128);
  ck_assert_int_eq(c.context_length, 64);
  ck_assert(c.drop_rate == 0.0);
  ck_assert_int_eq(c.qkv_bias, 0);
  ck_assert_int_eq(c.train.batch_size, 12);
  ck_assert_int_eq(c.train.max_length, 64);
  ck_assert_int_eq(c.train.steps, 2000);
  ck_assert(c.train.lr == 1e-3 && c.train.min_lr == 1e-4);
  ck_assert_int_eq(c.train.warmup_steps, 100);
  ck_assert(c.train.beta2 == 0.99 && c.train.weight_decay == 0.1 && c.train.grad_clip == 1.0);
  ck_assert_int_eq(c.train.sampling, CFG_SAMPLE_RANDOM);
  ck_assert_int_eq(c.train.eval_interval, 250);
  ck_assert_int_eq(c.train.eval_steps, 20);
  ck_assert(c.train.val_ratio == 0.1);
  ck_assert_msg(util_file_exists(c.data[0]), "%s", c.data[0]);
  ck_assert_int_eq(cfg_load_file(tu_src("configs/shakespeare-char-mid.lua"), &c), 0);
  ck_assert_int_eq(c.n_layers, 6);
  ck_assert_int_eq(c.n_heads, 6);
  ck_assert_int_eq(c.emb_dim, 384);
  ck_assert_int_eq(c.context_length, 256);
  ck_assert_int_eq(c.train.batch_size, 64);
  ck_assert(c.drop_rate == 0.2);
  ck_assert(c.train.lr == 1e-3 && c.train.min_lr == 1e-4 && c.train.beta2 == 0.99);
  ck_assert_int_eq(c.train.warmup_steps, 100);
  ck_assert_int_eq(c.train.steps, 5000);
  ck_assert_int_eq(c.train.sampling, CFG_SAMPLE_RANDOM);
}
END_TEST

/* ---- checkpoint metadata ---------------------------------------------------------- */

/* val_loss_full and texts: round trips (exact double, JSON escaping), absent
 * on a zeroed meta, and a bad value is a clear error naming the field. */
START_TEST(metadata_fields) {
  static const gptc_tensor t[] = {{"ln_f.bias", 1, {4, 0}, 0, 4, 0, 0.0f, 0.0f}};
  float p[4] = {1, 2, 3, 4};
  ckpt_meta m;
  memset(&m, 0, sizeof m);
  m.config_src = "return { name = \"t\" }\n";
  m.tokenizer = CFG_TOK_GPT2;
  m.best_val = 2.5;
  const char *path = tu_write("meta.safetensors", "", 0);
  ck_assert_int_eq(ckpt_save(path, t, 1, 4, p, NULL, NULL, &m), 0);
  ckpt_meta got;
  ck_assert_int_eq(ckpt_load_meta(path, &got), 0);
  ck_assert_int_eq(got.has_val_loss_full, 0);
  ck_assert_int_eq(got.n_texts, 0);
  ckpt_meta_free(&got);

  m.has_val_loss_full = 1;
  m.val_loss_full = 1.9051234567890123;
  m.n_texts = 2;
  m.texts[0] = "/data/a \"quoted\" \\ file.txt";
  m.texts[1] = "/data/\xc3\xa9t\xc3\xa9/b.txt";
  ck_assert_int_eq(ckpt_save(path, t, 1, 4, p, NULL, NULL, &m), 0);
  ck_assert_int_eq(ckpt_load_meta(path, &got), 0);
  ck_assert_int_eq(got.has_val_loss_full, 1);
  ck_assert(ew_same_double(got.val_loss_full, m.val_loss_full));
  ck_assert_int_eq(got.n_texts, 2);
  ck_assert_str_eq(got.texts[0], m.texts[0]);
  ck_assert_str_eq(got.texts[1], m.texts[1]);
  ckpt_meta_free(&got);

  /* hand-written headers with a bad field */
  static const struct {
    const char *kv, *err;
  } bad[] = {
      {"\"val_loss_full\":\"1.5x\"", "metadata 'val_loss_full' must be a number (got \"1.5x\")"},
      {"\"val_loss_full\":\"\"", "metadata 'val_loss_full' must be a number"},
      {"\"texts\":\"{}\"", "metadata 'texts' must be a JSON array of at most 16 paths"},
      {"\"texts\":\"[1]\"", "metadata 'texts' must be a JSON array of at most 16 paths"},
      {"\"texts\":\"[\\\"a\"", "metadata 'texts': invalid JSON"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char hdr[1024];
    int n = snprintf(hdr, sizeof hdr,
                     "{\"__metadata__\":{\"format\":\"pt\",\"gptc_format\":\"1\",\"config\":\"return {}\","
                     "\"tokenizer\":\"gpt2\",\"step\":\"1\",\"data_pos\":\"1\",\"seed\":\"1\",\"best_val\":\"1\","
                     "\"text_hash\":\"\",%s},\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                     bad[i].kv);
    char file[1100];
    uint64_t len = (uint64_t)n;
    memcpy(file, &len, 8); /* little-endian host */
    memcpy(file + 8, hdr, (size_t)n);
    memset(file + 8 + n, 0, 4);
    const char *bp = tu_write("bad-meta.safetensors", file, (size_t)n + 12);
    ck_assert_int_eq(ckpt_load_meta(bp, &got), -1);
    ck_assert_msg(strstr(util_errmsg(), bad[i].err) && strstr(util_errmsg(), bp), "%zu: %s", i, util_errmsg());
  }
}
END_TEST

/* ---- end to end ---------------------------------------------------------------- */

/* With weights that cannot move (lr far below a float's resolution of
 * them), every periodic evaluation must give the same number bit for bit:
 * the same windows each time. */
START_TEST(periodic_windows_are_fixed) {
  const char *cfg = ew_cfg("fixed", "lr = 1e-30, min_lr = 1e-30, weight_decay = 0.0");
  const char *dir = ew_dir("fixed");
  ew_train(cfg, dir, "");
  ck_assert_int_eq(ew_lines(dir), 12);
  char first[64], v[64];
  ew_field(dir, 3, "val_loss", first, sizeof first);
  ck_assert_str_ne(first, "");
  for (int s = 6; s <= 12; s += 3) {
    ew_field(dir, s, "val_loss", v, sizeof v);
    ck_assert_msg(!strcmp(v, first), "step %d: val_loss %s, step 3: %s", s, v, first);
  }
  /* 6 windows of the val split's 127 are not all of them: the full value differs */
  ew_field(dir, 12, "val_loss_full", v, sizeof v);
  ck_assert_str_ne(v, "");
  ck_assert_str_ne(v, first);
}
END_TEST

/* A run stopped at step 6 and resumed logs the same periodic val losses, and
 * ends with the same val_loss_full and weights, as a straight run. */
START_TEST(resume_logs_the_same_val_losses) {
  const char *cfg = ew_cfg("resume", "");
  char straight[1024], split[1024];
  snprintf(straight, sizeof straight, "%s", ew_dir("resume-straight"));
  snprintf(split, sizeof split, "%s", ew_dir("resume-split"));
  ew_train(cfg, straight, "");
  ew_train(cfg, split, "--steps 6");
  char a[64], b[64];
  ew_field(split, 6, "val_loss_full", a, sizeof a); /* the stop's own full evaluation */
  ck_assert_str_ne(a, "");
  ew_train(cfg, split, "--resume");
  ck_assert_int_eq(ew_lines(straight), 12);
  ck_assert_int_eq(ew_lines(split), 12);
  for (int s = 3; s <= 12; s += 3) {
    ew_field(straight, s, "val_loss", a, sizeof a);
    ew_field(split, s, "val_loss", b, sizeof b);
    ck_assert_str_ne(a, "");
    ck_assert_msg(!strcmp(a, b), "step %d: %s straight, %s resumed", s, a, b);
  }
  /* the stop's val_loss_full is gone from the resumed log: it reads as one straight run */
  ew_field(split, 6, "val_loss_full", b, sizeof b);
  ck_assert_str_eq(b, "");
  char *la = tu_log_without_timing(straight), *lb = tu_log_without_timing(split);
  ck_assert_str_eq(la, lb);
  free(la);
  free(lb);
  char pa[1100], pb[1100];
  snprintf(pa, sizeof pa, "%s/last.safetensors", straight);
  snprintf(pb, sizeof pb, "%s/last.safetensors", split);
  ck_assert(ew_same_params(pa, pb));
}
END_TEST

/* The end-of-run full evaluation is `gptc eval --split val` on last.safetensors,
 * bit for bit; with eval_steps = 0 the periodic evaluation is that too. */
START_TEST(full_eval_equals_gptc_eval) {
  const char *cfg = ew_cfg("full0", "eval_steps = 0");
  const char *dir = ew_dir("full0");
  ew_train(cfg, dir, "");
  char ck[1100], logged[64], periodic[64], printed[64];
  snprintf(ck, sizeof ck, "%s/last.safetensors", dir);
  ckpt_meta meta;
  ck_assert_int_eq(ckpt_load_meta(ck, &meta), 0);
  ck_assert_int_eq(meta.has_val_loss_full, 1);
  ck_assert_int_eq(meta.n_texts, 1);
  ck_assert_str_eq(meta.texts[0], realpath(tu_src("data/the-verdict.txt"), (char[4096]){0}));
  double full = meta.val_loss_full;
  ckpt_meta_free(&meta);
  /* the text the checkpoint records is found without --text */
  double ev = ew_eval_split(ck, "val", "", printed, sizeof printed);
  ck_assert_msg(ew_same_double(full, ev), "val_loss_full %a, gptc eval %a", full, ev);
  ew_field(dir, 12, "val_loss_full", logged, sizeof logged);
  ck_assert_str_eq(logged, printed);
  /* eval_steps = 0: every non-overlapping window, so the last periodic value is the full one */
  ew_field(dir, 12, "val_loss", periodic, sizeof periodic);
  ck_assert_str_eq(periodic, logged);
  /* best.safetensors has no full value of its own (the periodic estimate chose it) */
  snprintf(ck, sizeof ck, "%s/best.safetensors", dir);
  ck_assert_int_eq(ckpt_load_meta(ck, &meta), 0);
  ck_assert_int_eq(meta.has_val_loss_full, 0);
  ckpt_meta_free(&meta);
}
END_TEST

/* --split val and train against an independent evaluator: the split's own
 * text cut by hand and scored by `gptc eval --text` (its own window loop and
 * the evaluation forward): the same windows and positions, the same loss to
 * float rounding. Then the refusals. */
START_TEST(split_matches_the_text_cut_by_hand) {
  const char *cfg = ew_cfg("split", "");
  const char *dir = ew_dir("split");
  ew_train(cfg, dir, "--steps 3");
  char ck[1100];
  snprintf(ck, sizeof ck, "%s/last.safetensors", dir);
  char *text;
  size_t len;
  ck_assert_int_eq(util_read_file(tu_src("data/the-verdict.txt"), &text, &len), 0);
  /* the cut: the first (1 - 0.1) of the code points are train */
  size_t cps = 0;
  for (size_t i = 0; i < len; i++) cps += ((unsigned char)text[i] & 0xC0) != 0x80;
  size_t want = (size_t)(0.9 * (double)cps), cut = 0;
  for (size_t seen = 0; cut < len; cut++) {
    if (((unsigned char)text[cut] & 0xC0) == 0x80) continue;
    if (seen++ == want) break;
  }
  const char *parts[2][2] = {{"train", tu_write("train-part.txt", text, cut)},
                             {"val", tu_write("val-part.txt", text + cut, len - cut)}};
  free(text);
  for (int p = 0; p < 2; p++) {
    char extra[1200], printed[64];
    snprintf(extra, sizeof extra, "--text '%s'", tu_src("data/the-verdict.txt"));
    double split = ew_eval_split(ck, parts[p][0], extra, printed, sizeof printed);
    tu_run_result r, s;
    ck_assert_msg(tu_run(&r, NULL, "eval --ckpt '%s' --split %s --threads 1", ck, parts[p][0]) == 0, "%s", r.err);
    ck_assert_msg(tu_run(&s, NULL, "eval --ckpt '%s' --text '%s' --threads 1", ck, parts[p][1]) == 0, "%s", s.err);
    size_t wa, wb, ta, tb;
    double pa, pb, lb;
    ck_assert_msg(sscanf(strstr(r.out, "windows "), "windows %zu of 16 | tokens %zu | positions %lf", &wa, &ta, &pa) == 3,
                  "%s", r.out);
    ck_assert_msg(sscanf(s.out, "windows %zu | tokens %zu | positions %lf", &wb, &tb, &pb) == 3, "%s", s.out);
    ck_assert_msg(sscanf(strstr(s.out, "\nloss "), "\nloss %lf", &lb) == 1, "%s", s.out);
    ck_assert_uint_eq(wa, wb);
    ck_assert_uint_eq(ta, tb);
    ck_assert(pa == pb && pa == (double)wa * 16);
    ck_assert_msg(fabs(split - lb) <= 2e-6, "%s: --split %.9g, the text cut by hand %.9g", parts[p][0], split, lb);
    tu_run_free(&r);
    tu_run_free(&s);
  }
  /* another text: refused before anything is tokenized, naming the file and the hash */
  tu_run_result r;
  const char *other = tu_src("data/tinyshakespeare.txt");
  ck_assert_int_eq(tu_run(&r, NULL, "eval --ckpt '%s' --split val --text '%s'", ck, other), 1);
  ck_assert_msg(strstr(r.err, other) && strstr(r.err, "text_hash") && strstr(r.err, ck), "%s", r.err);
  ck_assert_int_eq((int)(strchr(r.err, '\n') - r.err), (int)r.err_len - 1);
  tu_run_free(&r);
  /* the same text with one byte changed: refused too */
  ck_assert_int_eq(util_read_file(tu_src("data/the-verdict.txt"), &text, &len), 0);
  text[len / 2] = text[len / 2] == 'x' ? 'y' : 'x';
  const char *edited = tu_write("edited.txt", text, len);
  free(text);
  ck_assert_int_eq(tu_run(&r, NULL, "eval --ckpt '%s' --split train --text '%s'", ck, edited), 1);
  ck_assert_msg(strstr(r.err, "text_hash"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "eval --ckpt '%s' --split test", ck), 2);
  ck_assert_msg(strstr(r.err, "'--split' must be val or train (got 'test')"), "%s", r.err);
  tu_run_free(&r);
}
END_TEST

/* "random": reproducible, exact on --resume, and not the windows' batches;
 * the default stays the windows (no sampling field = "windows"). */
START_TEST(random_sampling_runs) {
  const char *rnd = ew_cfg("rnd", "sampling = 'random'");
  const char *win = ew_cfg("win", "sampling = 'windows'");
  const char *def = ew_cfg("def", "");
  char a[1024], b[1024], c[1024], w[1024], d[1024];
  snprintf(a, sizeof a, "%s", ew_dir("rnd-a"));
  snprintf(b, sizeof b, "%s", ew_dir("rnd-b"));
  snprintf(c, sizeof c, "%s", ew_dir("rnd-split"));
  snprintf(w, sizeof w, "%s", ew_dir("win"));
  snprintf(d, sizeof d, "%s", ew_dir("def"));
  ew_train(rnd, a, "");
  ew_train(rnd, b, "");
  ew_train(rnd, c, "--steps 6"); /* a multiple of eval_interval: a stop evaluates */
  ew_train(rnd, c, "--resume");
  ew_train(win, w, "--steps 12");
  ew_train(def, d, "--steps 12");
  char pa[1100], pb[1100];
  char *la = tu_log_without_timing(a), *lb = tu_log_without_timing(b), *lc = tu_log_without_timing(c);
  char *lw = tu_log_without_timing(w), *ld = tu_log_without_timing(d);
  ck_assert_str_eq(la, lb); /* reproducible */
  ck_assert_str_eq(la, lc); /* resume-exact */
  ck_assert_str_eq(lw, ld); /* the default is "windows" */
  ck_assert_str_ne(la, lw); /* and "random" is something else */
  free(la);
  free(lb);
  free(lc);
  free(lw);
  free(ld);
  snprintf(pa, sizeof pa, "%s/last.safetensors", a);
  snprintf(pb, sizeof pb, "%s/last.safetensors", b);
  ck_assert(ew_same_params(pa, pb));
  snprintf(pb, sizeof pb, "%s/last.safetensors", c);
  ck_assert(ew_same_params(pa, pb));
  snprintf(pb, sizeof pb, "%s/last.safetensors", w);
  ck_assert(!ew_same_params(pa, pb));
  /* and the moments too: a resumed random run continues exactly */
  snprintf(pb, sizeof pb, "%s/last.safetensors", c);
  float *ma = NULL, *mc = NULL, *va = NULL, *vc = NULL;
  train_loaded l;
  ck_assert_int_eq(train_load_ckpt(pa, &l), 0);
  size_t n = l.mod.model->n_params;
  ma = malloc(n * 4), va = malloc(n * 4), mc = malloc(n * 4), vc = malloc(n * 4);
  float *tmp = malloc(n * 4);
  ck_assert_int_eq(ckpt_load_params(pa, l.mod.model->tensors, l.mod.model->n_tensors, n, tmp, ma, va), 0);
  ck_assert_int_eq(ckpt_load_params(pb, l.mod.model->tensors, l.mod.model->n_tensors, n, tmp, mc, vc), 0);
  ck_assert_mem_eq(ma, mc, n * 4);
  ck_assert_mem_eq(va, vc, n * 4);
  train_loaded_free(&l);
  free(ma);
  free(va);
  free(mc);
  free(vc);
  free(tmp);
}
END_TEST

int main(void) {
  Suite *s = suite_create("eval_windows");
  TCase *tc = tcase_create("eval_windows");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, eval_windows_cover_the_split);
  tcase_add_test(tc, random_batches_stay_in_the_split);
  tcase_add_test(tc, sampling_field);
  tcase_add_test(tc, recipe_configs);
  tcase_add_test(tc, metadata_fields);
  tcase_add_test(tc, periodic_windows_are_fixed);
  tcase_add_test(tc, resume_logs_the_same_val_losses);
  tcase_add_test(tc, full_eval_equals_gptc_eval);
  tcase_add_test(tc, split_matches_the_text_cut_by_hand);
  tcase_add_test(tc, random_sampling_runs);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
