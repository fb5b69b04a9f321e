/* Loss charts: the SVG module, `gptc plot`, loss.svg during training and
 * sweep.svg. The SVGs are read back with a real XML parser (xmllint, from
 * libxml2-utils) and rendered with a real renderer (rsvg-convert, from
 * librsvg2-bin); build/setup.sh installs both. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "plot.h"
#include "testutil.h"
#include "util.h"

/* ---- helpers ---------------------------------------------------------------- */

/* Runs a shell command; returns its stdout (caller frees), *status its exit code. */
static char *sh(int *status, const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  FILE *p = popen(cmd, "r");
  ck_assert_msg(p != NULL, "popen %s", cmd);
  util_buf b = {0};
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) util_buf_add(&b, chunk, n);
  util_buf_add(&b, "", 1);
  int st = pclose(p);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return b.data;
}

/* The value of an XPath expression over `svg` (xmllint); caller frees. */
static char *xpath(const char *svg, const char *expr) {
  int st;
  char *out = sh(&st, "xmllint --xpath '%s' '%s' 2>&1", expr, svg);
  ck_assert_msg(st == 0, "xmllint --xpath %s on %s: %s", expr, svg, out);
  size_t n = strlen(out);
  if (n && out[n - 1] == '\n') out[n - 1] = 0; /* xmllint ends a string result with one */
  return out;
}

static void assert_well_formed(const char *svg) {
  int st;
  char *out = sh(&st, "xmllint --noout '%s' 2>&1", svg);
  ck_assert_msg(st == 0, "%s is not well-formed XML: %s", svg, out);
  free(out);
}

static int count_paths(const char *svg) {
  char *c = xpath(svg, "count(//*[local-name()=\"path\"])");
  int n = atoi(c);
  free(c);
  return n;
}

/* vertices of the i-th path (1-based): its d holds "Mx y Lx y ..." */
typedef struct {
  double x[4096], y[4096];
  int n;
} verts;

static void path_verts(const char *svg, int i, verts *v) {
  char expr[200];
  snprintf(expr, sizeof expr, "string((//*[local-name()=\"path\"])[%d]/@d)", i);
  char *d = xpath(svg, expr);
  v->n = 0;
  for (char *p = d; *p; p++) {
    if (*p != 'M' && *p != 'L') continue;
    ck_assert_int_lt(v->n, 4096);
    ck_assert_msg(sscanf(p + 1, "%lf %lf", &v->x[v->n], &v->y[v->n]) == 2, "bad path data %s", d);
    v->n++;
  }
  free(d);
}

/* the text of the i-th path's <title> */
static char *path_title(const char *svg, int i) {
  char expr[200];
  snprintf(expr, sizeof expr, "string((//*[local-name()=\"path\"])[%d]/*[local-name()=\"title\"])", i);
  return xpath(svg, expr);
}

/* 1 when some <text> element's content equals s exactly */
static int has_text(const char *svg, const char *s) {
  char expr[600];
  snprintf(expr, sizeof expr, "count(//*[local-name()=\"text\"][.=\"%s\"])", s);
  char *c = xpath(svg, expr);
  int n = atoi(c);
  free(c);
  return n > 0;
}

/* Renders svg to PNG with rsvg-convert and checks the PNG: its signature and
 * an IHDR whose size is the SVG's width and height. */
static void assert_renders(const char *svg) {
  char png[1200];
  snprintf(png, sizeof png, "%s.png", svg);
  int st;
  char *out = sh(&st, "rsvg-convert '%s' -o '%s' 2>&1", svg, png);
  ck_assert_msg(st == 0, "rsvg-convert %s: %s", svg, out);
  ck_assert_msg(out[0] == 0, "rsvg-convert %s said: %s", svg, out);
  free(out);
  char *data;
  size_t len;
  ck_assert_msg(util_read_file(png, &data, &len) == 0, "%s", util_errmsg());
  ck_assert_uint_gt(len, 1000);
  ck_assert_int_eq(memcmp(data, "\x89PNG\r\n\x1a\n", 8), 0);
  ck_assert_int_eq(memcmp(data + 12, "IHDR", 4), 0);
  const unsigned char *u = (const unsigned char *)data;
  unsigned w = (unsigned)u[16] << 24 | u[17] << 16 | u[18] << 8 | u[19];
  unsigned h = (unsigned)u[20] << 24 | u[21] << 16 | u[22] << 8 | u[23];
  char *sw = xpath(svg, "string(/*/@width)"), *sh_ = xpath(svg, "string(/*/@height)");
  ck_assert_uint_eq(w, (unsigned)atoi(sw));
  ck_assert_uint_eq(h, (unsigned)atoi(sh_));
  free(sw);
  free(sh_);
  free(data);
}

/* A fake run directory: DIR/log.jsonl = `log`, no checkpoint. */
static const char *fake_run(const char *name, const char *log) {
  static char dirs[4][1200];
  static int k;
  char *dir = dirs[k++ % 4];
  snprintf(dir, sizeof dirs[0], "%s/%s", tu_tmpdir(), name);
  ck_assert_int_eq(util_mkdir_p(dir), 0);
  char path[1300];
  snprintf(path, sizeof path, "%s/log.jsonl", dir);
  ck_assert_int_eq(util_write_file_atomic(path, log, strlen(log)), 0);
  return dir;
}

/* losses of the fake log: a noisy decreasing curve, known exactly */
static double fake_loss(int step) { return 4.0 / (1.0 + 0.05 * step) + 0.1 * ((step * 7) % 5 - 2); }

/* the log of `n` steps, val every 10 steps, a final line with val_loss_full */
static char *fake_log(int n, int with_full) {
  util_buf b = {0};
  for (int s = 1; s <= n; s++) {
    util_buf_printf(&b, "{\"step\":%d,\"loss\":%.9g,\"lr\":0.001,\"grad_norm\":1.5,\"tokens_per_s\":%.1f", s,
                    fake_loss(s), 1000.0 + s);
    if (s % 10 == 0) util_buf_printf(&b, ",\"val_loss\":%.9g", fake_loss(s) + 0.2);
    util_buf_printf(&b, "}\n");
  }
  if (with_full) util_buf_printf(&b, "{\"step\":%d,\"val_loss_full\":2.5}\n", n);
  util_buf_add(&b, "", 1);
  return b.data;
}

/* y = a + b * f(loss) from the points of the lowest and the highest loss
 * (far apart, so the 0.01 px rounding of the coordinates hardly moves b) */
static void fit(const verts *v, const double *f, double *a, double *b) {
  int lo = 0, hi = 0;
  for (int i = 0; i < v->n; i++) {
    if (f[i] < f[lo]) lo = i;
    if (f[i] > f[hi]) hi = i;
  }
  *b = (v->y[hi] - v->y[lo]) / (f[hi] - f[lo]);
  *a = v->y[lo] - *b * f[lo];
}

/* ---- gptc plot on a fake run ------------------------------------------------------ */

START_TEST(test_plot_run_paths) {
  char *log = fake_log(37, 1);
  const char *dir = fake_run("fake", log);
  free(log);
  char out[1300];
  snprintf(out, sizeof out, "%s/fake.svg", tu_tmpdir());
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "plot '%s' -o '%s' --smooth 5", dir, out), 0);
  tu_run_free(&r);
  assert_well_formed(out);
  /* raw train, smoothed train, periodic val, final full val: one path each */
  ck_assert_int_eq(count_paths(out), 4);
  verts raw, ema, val, full;
  path_verts(out, 1, &raw);
  path_verts(out, 2, &ema);
  path_verts(out, 3, &val);
  path_verts(out, 4, &full);
  ck_assert_int_eq(raw.n, 37); /* as many points as logged steps */
  ck_assert_int_eq(ema.n, 37);
  ck_assert_int_eq(val.n, 3); /* steps 10, 20, 30 */
  ck_assert_int_eq(full.n, 1);
  /* x is linear in the step; y is linear in the loss, decreasing upward */
  double dx = raw.x[1] - raw.x[0];
  ck_assert(dx > 0);
  for (int i = 0; i < 37; i++) ck_assert_double_eq_tol(raw.x[i], raw.x[0] + i * dx, 0.011);
  double f[37], a, b;
  for (int i = 0; i < 37; i++) f[i] = fake_loss(i + 1);
  fit(&raw, f, &a, &b);
  ck_assert(b < 0);
  for (int i = 0; i < 37; i++) ck_assert_double_eq_tol(raw.y[i], a + b * fake_loss(i + 1), 0.02);
  /* the smoothed curve is the debiased EMA with span 5 (weight 1/3 on the newest step) */
  double m = 0, w = 0;
  for (int i = 0; i < 37; i++) {
    m = m * (2.0 / 3) + fake_loss(i + 1) / 3;
    w = w * (2.0 / 3) + 1.0 / 3;
    ck_assert_double_eq_tol(ema.x[i], raw.x[i], 0.011);
    ck_assert_double_eq_tol(ema.y[i], a + b * (m / w), 0.02);
  }
  for (int i = 0; i < 3; i++) {
    ck_assert_double_eq_tol(val.x[i], raw.x[10 * (i + 1) - 1], 0.011);
    ck_assert_double_eq_tol(val.y[i], a + b * (fake_loss(10 * (i + 1)) + 0.2), 0.02);
  }
  ck_assert_double_eq_tol(full.x[0], raw.x[36], 0.011);
  ck_assert_double_eq_tol(full.y[0], a + b * 2.5, 0.02);
  /* axis labels, legend (the run's name: its directory without a checkpoint) */
  ck_assert(has_text(out, "step"));
  ck_assert(has_text(out, "cross-entropy loss (nats)"));
  ck_assert(has_text(out, "fake: train (EMA over 5 steps)"));
  ck_assert(has_text(out, "fake: val (periodic)"));
  ck_assert(has_text(out, "fake: val (full split, final)"));
  char *t = path_title(out, 3);
  ck_assert_str_eq(t, "fake: val (periodic)");
  free(t);
  assert_renders(out);
}
END_TEST

/* --x time: the running sum of tokens_per_step / tokens_per_s needs the
 * checkpoint; --log-y puts equal ratios at equal distances. */
START_TEST(test_plot_axes) {
  char *text = fake_log(20, 0);
  const char *dir = fake_run("axes", text);
  free(text);
  char out[1300];
  snprintf(out, sizeof out, "%s/axes.svg", tu_tmpdir());
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "plot '%s' -o '%s' --x time", dir, out), 1);
  ck_assert_msg(strstr(r.err, "--x time needs the run's last.safetensors"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "plot '%s' -o '%s' --x wall", dir, out), 2);
  ck_assert_msg(strstr(r.err, "--x: unknown axis 'wall' (step, tokens or time)"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "plot '%s' -o '%s' --log-y --smooth 1", dir, out), 0);
  tu_run_free(&r);
  assert_well_formed(out);
  verts raw;
  path_verts(out, 1, &raw);
  ck_assert_int_eq(raw.n, 20);
  double f[20], a, b;
  for (int i = 0; i < 20; i++) f[i] = log(fake_loss(i + 1));
  fit(&raw, f, &a, &b);
  for (int i = 0; i < 20; i++) ck_assert_double_eq_tol(raw.y[i], a + b * log(fake_loss(i + 1)), 0.02);
  ck_assert(has_text(out, "loss (log scale)"));
  /* less than a decade: ticks every 0.5, labelled with one decimal */
  ck_assert(has_text(out, "2.0") && has_text(out, "2.5") && has_text(out, "3.0") && has_text(out, "3.5"));
  ck_assert(has_text(out, "axes: train"));
  assert_renders(out);
}
END_TEST

/* ---- the chart module: escaping, non-finite values, grids -------------------------- */

START_TEST(test_svg_escape_nonfinite) {
  const char *nasty = "a&b<c>\"d'e \xc3\xa9\x01\xff";
  plot_panel p[3];
  ck_assert_int_eq(plot_panel_init(&p[0], nasty, "x & y", "<loss>"), 0);
  plot_series *s = plot_panel_add(&p[0], nasty, PLOT_LINE, 0);
  ck_assert_ptr_nonnull(s);
  double ys[] = {1, NAN, INFINITY, 2, -INFINITY, 3};
  for (int i = 0; i < 6; i++) ck_assert_int_eq(plot_series_push(s, i, ys[i]), 0);
  /* log y: values <= 0 cannot be drawn and are skipped like NaN */
  ck_assert_int_eq(plot_panel_init(&p[1], "log", "x", "y"), 0);
  p[1].log_y = 1;
  s = plot_panel_add(&p[1], "pos", PLOT_POINTS, 1);
  double ly[] = {0.5, 0, -1, 50, 5};
  for (int i = 0; i < 5; i++) ck_assert_int_eq(plot_series_push(s, i, ly[i]), 0);
  /* categorical x */
  ck_assert_int_eq(plot_panel_init(&p[2], "cats", "sampling", "val"), 0);
  s = plot_panel_add(&p[2], NULL, PLOT_DIAMONDS, 2);
  ck_assert_int_eq(plot_panel_cat(&p[2], "windows"), 0);
  ck_assert_int_eq(plot_panel_cat(&p[2], "random&"), 1);
  ck_assert_int_eq(plot_panel_cat(&p[2], "windows"), 0);
  ck_assert_int_eq(plot_series_push(s, 0, 1.5), 0);
  ck_assert_int_eq(plot_series_push(s, 1, 1.25), 0);
  char out[1300];
  snprintf(out, sizeof out, "%s/esc.svg", tu_tmpdir());
  ck_assert_msg(plot_svg_write(out, nasty, p, 3, 2) == 0, "%s", util_errmsg());
  for (int i = 0; i < 3; i++) plot_panel_free(&p[i]);
  assert_well_formed(out);
  ck_assert_int_eq(count_paths(out), 3);
  verts v;
  path_verts(out, 1, &v);
  ck_assert_int_eq(v.n, 3); /* 1, 2, 3: NaN and both infinities skipped */
  ck_assert(v.y[0] > v.y[1] && v.y[1] > v.y[2]);
  path_verts(out, 2, &v);
  ck_assert_int_eq(v.n, 3); /* 0.5, 50, 5 */
  /* log scale: 0.5 -> 5 -> 50 are equal steps */
  ck_assert_double_eq_tol(v.y[0] - v.y[2], v.y[2] - v.y[1], 0.02);
  path_verts(out, 3, &v);
  ck_assert_int_eq(v.n, 2);
  /* the escaped text reads back as the original, the control character and
   * the invalid byte as '?' */
  char *t = path_title(out, 1);
  ck_assert_str_eq(t, "a&b<c>\"d'e \xc3\xa9??");
  free(t);
  ck_assert(has_text(out, "x & y"));
  ck_assert(has_text(out, "<loss>"));
  ck_assert(has_text(out, "windows"));
  ck_assert(has_text(out, "random&"));
  /* never "nan" or "inf" in the document */
  char *data;
  size_t len;
  ck_assert_int_eq(util_read_file(out, &data, &len), 0);
  for (char *c = data; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
  ck_assert_ptr_null(strstr(data, "nan"));
  ck_assert_ptr_null(strstr(data, "inf"));
  ck_assert_ptr_null(strstr(data, "<script"));
  ck_assert_ptr_null(strstr(data, "href"));
  free(data);
  /* two columns of 640 px */
  char *w = xpath(out, "string(/*/@width)");
  ck_assert_str_eq(w, "1280");
  free(w);
  assert_renders(out);
}
END_TEST

/* ---- bad input ------------------------------------------------------------------ */

static void expect_fail(int code, const char *msg, const char *fmt, const char *arg) {
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, fmt, arg, tu_tmpdir()), code);
  ck_assert_msg(strstr(r.err, msg) != NULL, "expected '%s' in: %s", msg, r.err);
  char *nl = strchr(r.err, '\n');
  ck_assert_msg(nl && nl[1] == 0, "not one line: %s", r.err);
  tu_run_free(&r);
}

START_TEST(test_plot_bad_input) {
  const char *fmt = "plot '%s' -o '%s/bad.svg'";
  char msg[1400];
  const char *empty = fake_run("empty", "");
  snprintf(msg, sizeof msg, "gptc: %s/log.jsonl: empty (no step logged yet)", empty);
  expect_fail(1, msg, fmt, empty);
  const char *partial = fake_run("partial", "{\"step\":1,\"loss\":4.1,\"lr\"");
  snprintf(msg, sizeof msg, "gptc: %s/log.jsonl: no complete line", partial);
  expect_fail(1, msg, fmt, partial);
  const char *notrun = fake_run("notrun", "x");
  char p[1300];
  snprintf(p, sizeof p, "%s/log.jsonl", notrun);
  unlink(p);
  snprintf(msg, sizeof msg, "gptc: %s: not a run directory (no log.jsonl", notrun);
  expect_fail(1, msg, fmt, notrun);
  snprintf(p, sizeof p, "%s/nowhere", tu_tmpdir());
  snprintf(msg, sizeof msg, "gptc: %s: no such run directory", p);
  expect_fail(1, msg, fmt, p);
  const char *garbled = fake_run("garbled", "{\"step\":1,\"loss\":4.1}\n{\"step\":2,loss}\n{\"step\":3,\"loss\":4}\n");
  snprintf(msg, sizeof msg, "gptc: %s/log.jsonl line 2: invalid JSON at byte", garbled);
  expect_fail(1, msg, fmt, garbled);
  const char *strloss = fake_run("strloss", "{\"step\":1,\"loss\":\"4.1\"}\n");
  snprintf(msg, sizeof msg, "gptc: %s/log.jsonl line 1: field \"loss\" must be a number, not string", strloss);
  expect_fail(1, msg, fmt, strloss);
  expect_fail(2, "gptc plot: no run directory given", "plot -o '%s/x.svg'", tu_tmpdir());
  snprintf(p, sizeof p, "%s/bad.svg", tu_tmpdir());
  ck_assert(!util_file_exists(p)); /* no failure left a chart behind */

  /* a killed run's last line: the complete lines are plotted, one warning */
  const char *trunc = fake_run("trunc", "{\"step\":1,\"loss\":4.1}\n{\"step\":2,\"loss\":4.0}\n{\"step\":3,\"lo");
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, fmt, trunc, tu_tmpdir()), 0);
  snprintf(msg, sizeof msg,
           "gptc: warning: %s/log.jsonl: the last line is incomplete (a killed run?); plotting the 2 complete lines\n",
           trunc);
  ck_assert_str_eq(r.err, msg);
  tu_run_free(&r);
  assert_well_formed(p);
  verts v;
  path_verts(p, 1, &v);
  ck_assert_int_eq(v.n, 2);
}
END_TEST

/* ---- training writes loss.svg --------------------------------------------------- */

START_TEST(test_train_writes_loss_svg) {
  char dir[1200], svg[1300];
  snprintf(dir, sizeof dir, "%s/trained", tu_tmpdir());
  snprintf(svg, sizeof svg, "%s/loss.svg", dir);
  tu_run_result r;
  /* 10 of tiny-test's 20 steps (eval every 10), then the rest on --resume */
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 10 --quiet", tu_src("configs/tiny-test.lua"),
                          dir), 0);
  tu_run_free(&r);
  assert_well_formed(svg);
  verts v;
  path_verts(svg, 1, &v);
  ck_assert_int_eq(v.n, 10);
  path_verts(svg, 3, &v);
  ck_assert_int_eq(v.n, 1);
  /* a chart whose write was killed left its temp file: the next run removes it */
  char tmp[1300];
  snprintf(tmp, sizeof tmp, "%s/loss.svg.tmpAb12Cd", dir);
  ck_assert_int_eq(util_write_file_atomic(tmp, "<svg", 4), 0);
  /* resumed with a training-field override: the log gains a "resume_set" record, which is no step */
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --resume --set train.lr=0.0015 --quiet",
                          tu_src("configs/tiny-test.lua"), dir), 0);
  ck_assert_str_eq(r.err, "");
  tu_run_free(&r);
  ck_assert(!util_file_exists(tmp));
  char logp[1300], *logd;
  size_t logn;
  snprintf(logp, sizeof logp, "%s/log.jsonl", dir);
  ck_assert_int_eq(util_read_file(logp, &logd, &logn), 0);
  ck_assert_msg(strstr(logd, "\"resume_set\""), "%s", logd);
  free(logd);
  assert_well_formed(svg);
  path_verts(svg, 1, &v);
  ck_assert_int_eq(v.n, 20); /* rewritten: every logged step */
  path_verts(svg, 2, &v);
  ck_assert_int_eq(v.n, 20);
  path_verts(svg, 3, &v);
  ck_assert_int_eq(v.n, 2); /* the evaluations at 10 and 20 */
  /* the legend names the run and its config hash: SHA-256 of the stored config */
  char ckpt[1300], expect[200], hex[65];
  snprintf(ckpt, sizeof ckpt, "%s/last.safetensors", dir);
  ckpt_meta meta;
  ck_assert_int_eq(ckpt_load_meta(ckpt, &meta), 0);
  util_sha256_hex(meta.config_src, strlen(meta.config_src), hex);
  ckpt_meta_free(&meta);
  snprintf(expect, sizeof expect, "tiny-test %.12s: val (periodic)", hex);
  ck_assert_msg(has_text(svg, expect), "no legend '%s'", expect);
  assert_renders(svg);

  /* the tokens axis: step x batch_size 2 x max_length 16 */
  char out[1300];
  snprintf(out, sizeof out, "%s/tokens.svg", tu_tmpdir());
  ck_assert_int_eq(tu_run(&r, NULL, "plot '%s' -o '%s' --x tokens", dir, out), 0);
  tu_run_free(&r);
  ck_assert(has_text(out, "tokens trained"));
  /* step 20 sits at 640 tokens on the ticks' scale */
  char *t0 = xpath(out, "string(//*[@class=\"xtick\"][.=\"0\"]/@x)");
  char *t6 = xpath(out, "string(//*[@class=\"xtick\"][.=\"600\"]/@x)");
  double x0 = atof(t0), x600 = atof(t6);
  free(t0);
  free(t6);
  ck_assert(x600 > x0);
  path_verts(out, 1, &v);
  ck_assert_int_eq(v.n, 20);
  ck_assert_double_eq_tol(v.x[19], x0 + (x600 - x0) * 640 / 600, 0.02);
  ck_assert_double_eq_tol(v.x[0], x0 + (x600 - x0) * 32 / 600, 0.02);
  ck_assert_int_eq(tu_run(&r, NULL, "plot '%s' -o '%s' --x time", dir, out), 0);
  tu_run_free(&r);
  ck_assert(has_text(out, "training time, steps only (s)"));
  path_verts(out, 1, &v);
  ck_assert_int_eq(v.n, 20);
  /* time only goes forward (two steps may share a pixel at 0.01 px: the first step's JIT dwarfs the rest) */
  for (int i = 1; i < 20; i++) ck_assert(v.x[i] >= v.x[i - 1]);
  ck_assert(v.x[19] > v.x[0]);
}
END_TEST

/* A chart that cannot be written never stops training: one warning. */
START_TEST(test_train_survives_plot_failure) {
  char dir[1200], svg[1300];
  snprintf(dir, sizeof dir, "%s/noplot", tu_tmpdir());
  snprintf(svg, sizeof svg, "%s/loss.svg/x", dir);
  ck_assert_int_eq(util_mkdir_p(svg), 0); /* loss.svg is a non-empty directory: the rename fails */
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", tu_src("configs/tiny-test.lua"), dir), 0);
  char *w = strstr(r.err, "gptc: warning: cannot draw");
  ck_assert_msg(w != NULL, "%s", r.err);
  ck_assert_ptr_null(strstr(w + 1, "gptc: warning: cannot draw")); /* three draws, one warning */
  tu_run_free(&r);
  snprintf(svg, sizeof svg, "%s/last.safetensors", dir);
  ck_assert(util_file_exists(svg));
}
END_TEST

/* ---- sweep.svg ------------------------------------------------------------------ */

START_TEST(test_sweep_svg) {
  char sweep[1200];
  snprintf(sweep, sizeof sweep, "%s/sweep", tu_tmpdir());
  ck_assert_int_eq(util_mkdir_p(sweep), 0);
  /* three finished runs with logs, one pending without a directory */
  const char *names[] = {"sweep/r0", "sweep/r1", "sweep/r2"};
  for (int k = 0; k < 3; k++) {
    util_buf b = {0};
    for (int s = 1; s <= 30; s++) {
      util_buf_printf(&b, "{\"step\":%d,\"loss\":%g,\"tokens_per_s\":100.0", s, 4.0 - 0.01 * s - 0.1 * k);
      if (s % 10 == 0) util_buf_printf(&b, ",\"val_loss\":%g", 4.1 - 0.01 * s - 0.1 * k);
      if (s == 30) util_buf_printf(&b, ",\"val_loss_full\":%g", 3.7 - 0.1 * k);
      util_buf_printf(&b, "}\n");
    }
    util_buf_add(&b, "", 1);
    fake_run(names[k], b.data);
    util_buf_free(&b);
  }
  const char *json =
      "{\"config\":\"configs/tiny-test.lua\",\"fields\":[\"n_layers\",\"train.lr\",\"train.sampling\"],\"runs\":[\n"
      "{\"name\":\"n_layers=2 <&>\",\"dir\":\"r0\",\"values\":{\"n_layers\":2,\"train.lr\":0.001,\"train.sampling\":"
      "\"windows\"},\"status\":\"done\",\"params\":1234,\"tokens_per_s\":100,\"step_ms\":3.2,\"val_loss_full\":3.7,"
      "\"wall_s\":1.5},\n"
      "{\"name\":\"n_layers=4\",\"dir\":\"r1\",\"values\":{\"n_layers\":4,\"train.lr\":0.00003,\"train.sampling\":"
      "\"random\"},\"status\":\"done\",\"val_loss_full\":3.6},\n"
      "{\"name\":\"n_layers=6\",\"dir\":\"r2\",\"values\":{\"n_layers\":6,\"train.lr\":0.001,\"train.sampling\":"
      "\"windows\"},\"status\":\"done\",\"val_loss_full\":3.5},\n"
      "{\"name\":\"n_layers=8\",\"dir\":\"r3\",\"values\":{\"n_layers\":8,\"train.lr\":0.00003,\"train.sampling\":"
      "\"random\"},\"status\":\"pending\"}]}\n";
  char path[1300];
  snprintf(path, sizeof path, "%s/sweep.json", sweep);
  ck_assert_int_eq(util_write_file_atomic(path, json, strlen(json)), 0);
  ck_assert_msg(plot_sweep_svg(sweep) == 0, "%s", util_errmsg());
  char svg[1300];
  snprintf(svg, sizeof svg, "%s/sweep.svg", sweep);
  assert_well_formed(svg);
  /* panel 1: val and final full val per finished run (2 x 3); then one points path per field */
  ck_assert_int_eq(count_paths(svg), 6 + 3);
  verts v;
  for (int k = 0; k < 3; k++) {
    path_verts(svg, 1 + 2 * k, &v);
    ck_assert_int_eq(v.n, 3); /* val at steps 10, 20, 30 */
    path_verts(svg, 2 + 2 * k, &v);
    ck_assert_int_eq(v.n, 1);
  }
  char *t = path_title(svg, 1);
  ck_assert_str_eq(t, "n_layers=2 <&>");
  free(t);
  /* each field panel: the three runs with a final val loss */
  for (int f = 0; f < 3; f++) {
    path_verts(svg, 7 + f, &v);
    ck_assert_int_eq(v.n, 3);
  }
  /* n_layers: a numeric axis, higher layers lower loss here */
  path_verts(svg, 7, &v);
  ck_assert(v.x[0] < v.x[1] && v.x[1] < v.x[2]);
  ck_assert(v.y[0] < v.y[1] && v.y[1] < v.y[2]); /* 3.7 3.6 3.5 downward: larger y */
  ck_assert_double_eq_tol(v.x[1] - v.x[0], v.x[2] - v.x[1], 0.02);
  /* the learning rate spans decades: log axis, runs 0 and 2 share an x */
  path_verts(svg, 8, &v);
  ck_assert_double_eq_tol(v.x[0], v.x[2], 0.001);
  /* sampling: categorical, labelled with the values */
  path_verts(svg, 9, &v);
  ck_assert_double_eq_tol(v.x[0], v.x[2], 0.001);
  ck_assert(v.x[1] > v.x[0]);
  ck_assert(has_text(svg, "windows"));
  ck_assert(has_text(svg, "random"));
  ck_assert(has_text(svg, "final val loss vs train.sampling"));
  ck_assert(has_text(svg, "n_layers=8 (pending)")); /* in the legend, without a curve */
  assert_renders(svg);

  /* a sweep.json without runs: a clear error */
  ck_assert_int_eq(util_write_file_atomic(path, "{\"fields\":[]}", 13), 0);
  ck_assert_int_eq(plot_sweep_svg(sweep), -1);
  char expect[1400];
  snprintf(expect, sizeof expect, "%s: field \"runs\" must be an array of runs", path);
  ck_assert_str_eq(util_errmsg(), expect);
}
END_TEST

static Suite *plot_suite(void) {
  Suite *s = suite_create("plot");
  TCase *tc = tcase_create("svg");
  tcase_add_test(tc, test_plot_run_paths);
  tcase_add_test(tc, test_plot_axes);
  tcase_add_test(tc, test_svg_escape_nonfinite);
  tcase_add_test(tc, test_plot_bad_input);
  tcase_add_test(tc, test_sweep_svg);
  suite_add_tcase(s, tc);
  TCase *tt = tcase_create("train");
  tcase_add_test(tt, test_train_writes_loss_svg);
  tcase_add_test(tt, test_train_survives_plot_failure);
  suite_add_tcase(s, tt);
  return s;
}

int main(void) { return tu_main(plot_suite()); }
