/* Training loop, evaluation and sampling, end to end through the CLI. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "gen.h"
#include "testutil.h"
#include "train.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------------ */

/* Parses log.jsonl: fills loss[] (index step-1) and returns the line count. */
static int read_log(const char *dir, double *loss, double *val, int max) {
  char path[1200], *data;
  size_t len;
  snprintf(path, sizeof path, "%s/log.jsonl", dir);
  ck_assert_msg(util_read_file(path, &data, &len) == 0, "%s", util_errmsg());
  int n = 0;
  for (char *line = strtok(data, "\n"); line && n < max; line = strtok(NULL, "\n")) {
    int step;
    double l;
    ck_assert_msg(sscanf(line, "{\"step\":%d,\"loss\":%lf", &step, &l) == 2, "bad log line: %s", line);
    ck_assert_int_eq(step, n + 1);
    loss[n] = l;
    char *v = strstr(line, "\"val_loss\":");
    if (val) val[n] = v ? atof(v + 11) : NAN;
    n++;
  }
  free(data);
  return n;
}

static const char *write_cfg(const char *name, const char *extra_top, const char *extra_train) {
  char src[4096];
  snprintf(src, sizeof src,
           "return { name = '%s', tokenizer = 'char', data = '%s', emb_dim = 16, n_heads = 2, n_layers = 2,\n"
           "  context_length = 16, drop_rate = 0.0, %s\n"
           "  train = { batch_size = 2, max_length = 16, stride = 16, lr = 3e-3, steps = 20, eval_interval = 5,\n"
           "            eval_steps = 2, %s } }\n",
           name, tu_src("data/the-verdict.txt"), extra_top, extra_train);
  char fname[256];
  snprintf(fname, sizeof fname, "%s.lua", name);
  return tu_write_str(fname, src);
}

static void load_params(const char *ckpt, float **params, size_t *n) {
  train_loaded l;
  ck_assert_msg(train_load_ckpt(ckpt, &l) == 0, "%s", util_errmsg());
  *n = l.mod.model->n_params;
  *params = l.params;
  l.params = NULL;
  train_loaded_free(&l);
}

/* ---- tests ---------------------------------------------------------------------- */

START_TEST(lr_schedule) {
  cfg_train t = {0};
  t.lr = 1e-3;
  t.min_lr = 1e-4;
  t.warmup_steps = 10;
  t.steps = 110;
  ck_assert_double_eq_tol(train_lr(&t, 0), 1e-4, 1e-15);     /* (0+1)/10 of lr */
  ck_assert_double_eq_tol(train_lr(&t, 9), 1e-3, 1e-15);     /* end of warmup */
  ck_assert_double_eq_tol(train_lr(&t, 10), 1e-3, 1e-15);    /* cosine starts at lr */
  ck_assert_double_eq_tol(train_lr(&t, 60), 5.5e-4, 1e-15);  /* halfway: (lr+min)/2 */
  ck_assert_double_eq_tol(train_lr(&t, 110), 1e-4, 1e-15);   /* end: min_lr */
  ck_assert_double_eq_tol(train_lr(&t, 500), 1e-4, 1e-15);   /* past the end: stays */
  ck_assert_double_eq_tol(train_lr(&t, 35), 1e-4 + 0.5 * (1 + cos(M_PI * 0.25)) * 9e-4, 1e-15);
}
END_TEST

START_TEST(init_statistics) {
  cfg_t c;
  ck_assert_int_eq(cfg_load_file(tu_src("configs/tiny-test.lua"), &c), 0);
  ck_assert_int_eq(cfg_set_vocab(&c, 50), 0);
  cpu_module mod;
  ck_assert_msg(cpu_load(&c, &mod) == 0, "%s", util_errmsg());
  const gptc_model *m = mod.model;
  float *p = calloc(m->n_params, sizeof(float));
  float *q = calloc(m->n_params, sizeof(float));
  train_init_params(m, p, 7);
  train_init_params(m, q, 7);
  ck_assert_int_eq(memcmp(p, q, m->n_params * sizeof(float)), 0); /* reproducible */
  for (int i = 0; i < m->n_tensors; i++) {
    const gptc_tensor *t = &m->tensors[i];
    double s = 0, s2 = 0;
    for (size_t k = 0; k < t->numel; k++) {
      s += p[t->offset + k];
      s2 += (double)p[t->offset + k] * p[t->offset + k];
    }
    double mean = s / t->numel, sd = sqrt(s2 / t->numel - mean * mean);
    if (t->init_std == 0) {
      ck_assert_double_eq_tol(mean, t->init_value, 1e-7);
      ck_assert_double_eq_tol(sd, 0, 1e-7);
    } else if (t->numel >= 512) {
      ck_assert_msg(fabs(sd - t->init_std) < 0.1 * t->init_std, "%s: sd %g vs %g", t->name, sd, t->init_std);
      ck_assert_msg(fabs(mean) < 4 * t->init_std / sqrt((double)t->numel), "%s: mean %g", t->name, mean);
    }
  }
  free(p);
  free(q);
  cpu_unload(&mod);
}
END_TEST

/* configs/verdict-gpt2-small.lua memorises the-verdict: loss from ~ln(50257)
 * to below 1.0, as the seeds' chapter 5 shows for GPT-124M. */
START_TEST(verdict_memorises) {
  char out[1024];
  snprintf(out, sizeof out, "%s/verdict", tu_tmpdir());
  tu_run_result r;
  int code = tu_run(&r, NULL, "train --config '%s' --out '%s' --threads 2", tu_src("configs/verdict-gpt2-small.lua"), out);
  ck_assert_msg(code == 0, "train failed: %s", r.err);
  tu_run_free(&r);
  double loss[4096], val[4096];
  int n = read_log(out, loss, val, 4096);
  ck_assert_int_ge(n, 100);
  ck_assert_msg(fabs(loss[0] - log(50257.0)) < 0.3, "first loss %g, expected ~%g", loss[0], log(50257.0));
  ck_assert_msg(loss[n - 1] < 1.0, "final train loss %g is not below 1.0", loss[n - 1]);
  ck_assert_msg(!isnan(val[n - 1]), "no val loss at the last step");
}
END_TEST

/* 20 steps straight and 10 + 10 resumed give the same weights and log */
static void check_resume(const char *name, const char *extra_top) {
  const char *cfgp = write_cfg(name, extra_top, "grad_accum = 2,");
  char a[1024], b[1024], pa[1100], pb[1100];
  snprintf(a, sizeof a, "%s/%s-straight", tu_tmpdir(), name);
  snprintf(b, sizeof b, "%s/%s-halves", tu_tmpdir(), name);
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 20 --quiet", cfgp, a) == 0, "%s", r.err);
  tu_run_free(&r);
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 10 --quiet", cfgp, b) == 0, "%s", r.err);
  tu_run_free(&r);
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 20 --resume --quiet", cfgp, b) == 0, "%s",
                r.err);
  tu_run_free(&r);
  snprintf(pa, sizeof pa, "%s/last.safetensors", a);
  snprintf(pb, sizeof pb, "%s/last.safetensors", b);
  float *wa, *wb;
  size_t na, nb;
  load_params(pa, &wa, &na);
  load_params(pb, &wb, &nb);
  ck_assert_uint_eq(na, nb);
  ck_assert_msg(memcmp(wa, wb, na * sizeof(float)) == 0, "weights differ after resume");
  free(wa);
  free(wb);
  char *la = tu_log_without_timing(a), *lb = tu_log_without_timing(b);
  ck_assert_str_eq(la, lb);
  free(la);
  free(lb);
}

START_TEST(resume_is_exact) { check_resume("resume", "drop_rate = 0.1,"); }
END_TEST

/* bf16 on the CPU: resume is exact; its checkpoints hold fp32 weights, so an
 * fp32 run starts from one and eval reads one like any other. */
START_TEST(bf16_resume_and_checkpoints) {
  check_resume("resume-bf16", "drop_rate = 0.1, precision = 'bf16',");
  const char *cfgp = write_cfg("from-bf16", "", "");
  char ck[1100], out[1024];
  snprintf(ck, sizeof ck, "%s/resume-bf16-straight/last.safetensors", tu_tmpdir());
  snprintf(out, sizeof out, "%s/from-bf16", tu_tmpdir());
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --init '%s' --steps 2 --quiet", cfgp, out, ck) == 0,
                "%s", r.err);
  tu_run_free(&r);
  ck_assert_msg(tu_run(&r, NULL, "eval --ckpt '%s' --text '%s'", ck, tu_src("data/the-verdict.txt")) == 0, "%s", r.err);
  ck_assert_msg(strstr(r.out, "loss"), "%s", r.out);
  tu_run_free(&r);
}
END_TEST

START_TEST(threads_do_not_change_numbers) {
  const char *cfgp = write_cfg("threads", "drop_rate = 0.1,", "");
  char a[1024], b[1024];
  snprintf(a, sizeof a, "%s/t1", tu_tmpdir());
  snprintf(b, sizeof b, "%s/t2", tu_tmpdir());
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 6 --threads 1 --quiet", cfgp, a) == 0, "%s",
                r.err);
  tu_run_free(&r);
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 6 --threads 2 --quiet", cfgp, b) == 0, "%s",
                r.err);
  tu_run_free(&r);
  double la[16], lb[16];
  int n = read_log(a, la, NULL, 16);
  ck_assert_int_eq(n, 6);
  ck_assert_int_eq(read_log(b, lb, NULL, 16), 6);
  for (int i = 0; i < n; i++) ck_assert_msg(fabs(la[i] - lb[i]) <= 1e-6, "step %d: %g vs %g", i + 1, la[i], lb[i]);
}
END_TEST

START_TEST(refuses_to_overwrite_and_bad_resume) {
  const char *cfgp = write_cfg("guard", "", "");
  char out[1024];
  snprintf(out, sizeof out, "%s/guard", tu_tmpdir());
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 2 --quiet --resume", cfgp, out), 1);
  ck_assert_ptr_nonnull(strstr(r.err, "no checkpoint to resume from"));
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 2 --quiet", cfgp, out), 0);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 4 --quiet", cfgp, out), 1);
  ck_assert_ptr_nonnull(strstr(r.err, "last.safetensors exists: pass --resume"));
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "train --out '%s'", out), 2);
  ck_assert_ptr_nonnull(strstr(r.err, "option '--config' is required"));
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --steps zero", cfgp), 2);
  ck_assert_ptr_nonnull(strstr(r.err, "option '--steps' must be an integer"));
  tu_run_free(&r);
}
END_TEST

/* The text a run trains on: none at all, too little for one batch, and a
 * resume on different text are refused with the rule named, and the refused
 * resume leaves the saved checkpoint as it was. */
START_TEST(training_text_rules) {
  char src[1024], out[1024];
  snprintf(src, sizeof src,
           "return { name = 'notext', tokenizer = 'char', emb_dim = 16, n_heads = 2, n_layers = 1,\n"
           "  context_length = 16, train = { batch_size = 4, max_length = 16, steps = 2 } }\n");
  const char *cfgp = tu_write_str("notext.lua", src);
  snprintf(out, sizeof out, "%s/notext", tu_tmpdir());
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", cfgp, out), 1);
  ck_assert_msg(strstr(r.err, "notext.lua: no training text: pass --text FILE or set the config's 'data' field"), "%s",
                r.err);
  tu_run_free(&r);

  /* 60 characters: 54 train tokens are 3 windows of 16, no batch of 4 */
  const char *tiny = tu_write_str("tiny.txt", "I had always thought Jack Gisburn rather a cheap genius--tho");
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s' --quiet", cfgp, tiny, out), 1);
  ck_assert_msg(strstr(r.err, "train split has 3 windows, too few for one full batch of 4"), "%s", r.err);
  tu_run_free(&r);
  char ck[1100];
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  ck_assert_msg(!util_file_exists(ck), "a refused run wrote a checkpoint");

  /* the same characters in a different order: same vocabulary, other text */
  char *a, *b;
  size_t n;
  ck_assert_int_eq(util_read_file(tu_src("data/the-verdict.txt"), &a, &n), 0);
  b = util_malloc(n + 1, "text");
  memcpy(b, a + n / 2, n - n / 2);
  memcpy(b + (n - n / 2), a, n / 2);
  b[n] = 0;
  const char *ta = tu_write("a.txt", a, n), *tb = tu_write("b.txt", b, n);
  free(a), free(b);
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s' --quiet", cfgp, ta, out), 0);
  tu_run_free(&r);
  char *before, *after;
  size_t nb, na;
  ck_assert_int_eq(util_read_file(ck, &before, &nb), 0);
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s' --steps 4 --resume --quiet", cfgp,
                          tb, out), 1);
  ck_assert_msg(strstr(r.err, "the training text changed since this checkpoint; resume needs the same text"), "%s",
                r.err);
  tu_run_free(&r);
  ck_assert_int_eq(util_read_file(ck, &after, &na), 0);
  ck_assert(nb == na && memcmp(before, after, nb) == 0);
  free(before), free(after);
  /* and the same text resumes */
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s' --steps 4 --resume --quiet", cfgp,
                          ta, out), 0);
  tu_run_free(&r);
}
END_TEST

/* Host memory is the CPU backend's limit, not the config's: a model far
 * larger than any machine's memory is refused by `train` on the CPU with the
 * sizes named, while `gen` (which allocates nothing) still writes its code. */
START_TEST(too_large_for_memory) {
  char src[1024], out[1024];
  snprintf(src, sizeof src,
           "return { name = 'huge', tokenizer = 'gpt2', data = '%s', emb_dim = 8192, n_heads = 64, n_layers = 48,\n"
           "  context_length = 256, train = { batch_size = 2, max_length = 256, steps = 1 } }\n",
           tu_src("data/the-verdict.txt"));
  const char *cfgp = tu_write_str("huge.lua", src);
  snprintf(out, sizeof out, "%s/huge", tu_tmpdir());
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", cfgp, out), 1);
  ck_assert_msg(strstr(r.err, "huge.lua: model too large: training needs") && strstr(r.err, "GiB"), "%s", r.err);
  tu_run_free(&r);
  char ck[1100];
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  ck_assert_msg(!util_file_exists(ck), "a refused run wrote a checkpoint");
  ck_assert_int_eq(tu_run(&r, NULL, "gen --config '%s' -o '%s/gen'", cfgp, out), 0);
  tu_run_free(&r);
}
END_TEST

START_TEST(init_shape_mismatch) {
  const char *small = write_cfg("init16", "", "");
  char out[1024], out2[1024], ck[1100];
  snprintf(out, sizeof out, "%s/init16", tu_tmpdir());
  snprintf(out2, sizeof out2, "%s/init32", tu_tmpdir());
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 2 --quiet", small, out), 0);
  tu_run_free(&r);
  char src[2048];
  snprintf(src, sizeof src,
           "return { name = 'init32', tokenizer = 'char', data = '%s', emb_dim = 32, n_heads = 2, n_layers = 2,"
           " context_length = 16, train = { batch_size = 2, steps = 2 } }",
           tu_src("data/the-verdict.txt"));
  const char *big = tu_write_str("init32.lua", src);
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --init '%s' --quiet", big, out2, ck), 1);
  ck_assert_msg(strstr(r.err, "field 'emb_dim' is 16 in the checkpoint but 32 in the config") != NULL, "%s", r.err);
  tu_run_free(&r);
  /* a matching config fine-tunes from the weights */
  snprintf(out2, sizeof out2, "%s/init16b", tu_tmpdir());
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --init '%s' --quiet", small, out2, ck) == 0, "%s",
                r.err);
  tu_run_free(&r);
}
END_TEST

START_TEST(nan_stops_and_keeps_checkpoint) {
  const char *cfgp = write_cfg("nan", "", "lr = 1e30, min_lr = 1e30, grad_clip = 0.0, eval_interval = 1,");
  char out[1024], ck[1100];
  snprintf(out, sizeof out, "%s/nan", tu_tmpdir());
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", cfgp, out), 1);
  ck_assert_msg(strstr(r.err, "training stopped:") && strstr(r.err, "last good checkpoint"), "%s", r.err);
  tu_run_free(&r);
  ck_assert(util_file_exists(ck));
  ckpt_meta meta;
  ck_assert_int_eq(ckpt_load_meta(ck, &meta), 0);
  ck_assert_uint_ge(meta.step, 1);
  ck_assert_uint_lt(meta.step, 20);
  ckpt_meta_free(&meta);
}
END_TEST

START_TEST(sigint_saves_and_exits_zero) {
  const char *cfgp = write_cfg("sigint", "", "steps = 100000, eval_interval = 100000,");
  char out[1024], ck[1100], cmd[4096];
  snprintf(out, sizeof out, "%s/sigint", tu_tmpdir());
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  snprintf(cmd, sizeof cmd, "%s/log.jsonl", out);
  pid_t pid = fork();
  if (pid == 0) {
    freopen("/dev/null", "w", stdout);
    execl(GPTC_EXE, "gptc", "train", "--config", cfgp, "--out", out, "--quiet", (char *)NULL);
    _exit(127);
  }
  /* wait until a few steps are logged */
  for (int i = 0; i < 600; i++) {
    char *d;
    size_t n;
    if (util_read_file(cmd, &d, &n) == 0) {
      int lines = 0;
      for (size_t k = 0; k < n; k++) lines += d[k] == '\n';
      free(d);
      if (lines >= 3) break;
    }
    usleep(100000);
  }
  kill(pid, SIGINT);
  int st;
  waitpid(pid, &st, 0);
  ck_assert(WIFEXITED(st));
  ck_assert_int_eq(WEXITSTATUS(st), 0);
  ckpt_meta meta;
  ck_assert_msg(ckpt_load_meta(ck, &meta) == 0, "%s", util_errmsg());
  ck_assert_uint_ge(meta.step, 3);
  ckpt_meta_free(&meta);
}
END_TEST

START_TEST(eval_and_sample) {
  const char *cfgp = write_cfg("evs", "", "steps = 30,");
  char out[1024], ck[1100];
  snprintf(out, sizeof out, "%s/evs", tu_tmpdir());
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", cfgp, out), 0);
  tu_run_free(&r);

  ck_assert_msg(tu_run(&r, NULL, "eval --ckpt '%s' --text '%s'", ck, tu_src("data/the-verdict.txt")) == 0, "%s", r.err);
  char *last = r.out + strlen(r.out) - 1;
  while (last > r.out && last[-1] != '\n') last--;
  double loss;
  ck_assert_msg(sscanf(last, "loss %lf", &loss) == 1, "last line: %s", last);
  /* 30 steps of a tiny char model: better than uniform over the vocab, far from perfect */
  ck_assert_msg(loss > 1.0 && loss < 4.0, "loss %g", loss);
  tu_run_free(&r);

  ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s' --prompt 'The ' --tokens 40 --seed 5", ck), 0);
  char *first = util_strdup(r.out);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s' --prompt 'The ' --tokens 40 --seed 5", ck), 0);
  ck_assert_str_eq(first, r.out);
  ck_assert(strncmp(r.out, "The ", 4) == 0);
  /* char model: no end token, so exactly 40 characters follow the prompt */
  size_t chars = 0;
  for (char *p = r.out + 4; *p; p++) chars += ((unsigned char)*p & 0xC0) != 0x80;
  ck_assert_uint_eq(chars, 40 + 1); /* + the final newline */
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s' --prompt 'The ' --tokens 40 --seed 6", ck), 0);
  ck_assert_str_ne(first, r.out);
  tu_run_free(&r);
  free(first);
  /* greedy decoding past the context length (16) exercises the cache rebuild */
  ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s' --tokens 50 --temperature 0", ck), 0);
  char *g1 = util_strdup(r.out);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s' --tokens 50 --temperature 0 --seed 99", ck), 0);
  ck_assert_str_eq(g1, r.out);
  tu_run_free(&r);
  free(g1);
  /* output that cannot be written is an error, not a silent success (gptc
   * sample used to skip the check the exported executables made) */
  if (access("/dev/full", W_OK) == 0) {
    char cmd[4096], errp[600];
    snprintf(errp, sizeof errp, "%s/.full.err", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' sample --ckpt '%s' --tokens 20 >/dev/full 2>'%s'", GPTC_EXE, ck, errp);
    int st = system(cmd);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char *err;
    size_t n;
    ck_assert_int_eq(util_read_file(errp, &err, &n), 0);
    ck_assert_str_eq(err, "gptc: writing the generated text failed (output closed or full)\n");
    free(err);
  }

  /* texts eval cannot score, and the shortest it can: T + 1 = 17 tokens make one window */
  ck_assert_int_eq(tu_run(&r, NULL, "eval --ckpt '%s' --text '%s'", ck, tu_write_str("empty.txt", "")), 1);
  ck_assert_msg(strstr(r.err, "empty.txt: empty text"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "eval --ckpt '%s' --text '%s'", ck, tu_write("bad.txt", "ab\xff" "cd", 5)), 1);
  ck_assert_msg(strstr(r.err, "bad.txt: invalid UTF-8 at byte offset 2"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "eval --ckpt '%s' --text '%s'", ck, tu_write_str("t16.txt", "I had always tho")), 1);
  ck_assert_msg(strstr(r.err, "t16.txt: 16 tokens is too short for one window of context_length 16 + 1"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "eval --ckpt '%s' --text '%s'", ck, tu_write_str("t17.txt", "I had always thou")), 0);
  ck_assert_msg(strstr(r.out, "windows 1 | tokens 17 | positions 16"), "%s", r.out);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "eval --ckpt /nonexistent.safetensors --text '%s'", tu_src("data/the-verdict.txt")), 1);
  ck_assert_ptr_nonnull(strstr(r.err, "/nonexistent.safetensors"));
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s' --temperature -1", ck), 2);
  tu_run_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("train");
  TCase *tc = tcase_create("train");
  tcase_set_timeout(tc, 900);
  tcase_add_test(tc, lr_schedule);
  tcase_add_test(tc, init_statistics);
  tcase_add_test(tc, verdict_memorises);
  tcase_add_test(tc, resume_is_exact);
  tcase_add_test(tc, bf16_resume_and_checkpoints);
  tcase_add_test(tc, threads_do_not_change_numbers);
  tcase_add_test(tc, refuses_to_overwrite_and_bad_resume);
  tcase_add_test(tc, init_shape_mismatch);
  tcase_add_test(tc, nan_stops_and_keeps_checkpoint);
  tcase_add_test(tc, sigint_saves_and_exits_zero);
  tcase_add_test(tc, eval_and_sample);
  tcase_add_test(tc, too_large_for_memory);
  tcase_add_test(tc, training_text_rules);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
