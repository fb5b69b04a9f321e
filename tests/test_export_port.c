/* gptc export --target: the portable executable's kernel variants (each one
 * this CPU runs), the aarch64 build under qemu and the static file alone in
 * an empty root all give gptc sample's greedy text and, within the tolerance
 * of their sum orders, its logits; the files are static; a variant the CPU
 * lacks and an unknown target are refused with one line.
 *
 * The empty-root case needs root or an unprivileged user namespace
 * (unshare -r); without either the suite ends with exit 77, which ctest
 * reports as SKIP (CMakeLists.txt), never as a pass. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "gen.h"
#include "testutil.h"
#include "tok.h"
#include "train.h"
#include "util.h"

#define PORT_SKIP 77
/* every child process is bounded: a hang fails the test instead of the CI job */
#define PORT_TIMEOUT "timeout 300 "

/* Set once by the fixture (in the parent, before the forked tests). */
static char dir[1024], ckpt[1200], port_exe[1200], a64_exe[1200], greedy[8192];
static const char *const prompt = "I had always thought Jack";
/* --dump-logits takes at most context_length (16) prompt tokens */
static const char *const lprompt = "I had always th";
static int can_chroot; /* root, or unshare -r works */

/* ---- helpers ------------------------------------------------------------------ */


/* The x86-64 levels this CPU runs, by the test's own cpuid (not the
 * executable's): the dispatcher must pick the widest of them. */
static const char *const levels[] = {"x86-64-v2", "x86-64-v3", "x86-64-v4"};
static int level_ok(int i) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (i == 0) return __builtin_cpu_supports("x86-64-v2");
  if (i == 1) return __builtin_cpu_supports("x86-64-v3");
  return __builtin_cpu_supports("x86-64-v4");
#else
  (void)i;
  return 0;
#endif
}

/* ---- fixture: a tiny char model, gptc sample's greedy text, two exports -------- */

static void port_setup(void) {
  snprintf(dir, sizeof dir, "%s", tu_tmpdir());
  tu_run_result r;
  /* trained enough that greedy decoding is not all spaces (a few seconds; the
   * logits comparisons below are the finer check) */
  int code = tu_run(&r, NULL, "train --config '%s' --set train.steps=300 --set train.lr=1e-2 --quiet --out '%s/char'",
                    tu_src("configs/tiny-test.lua"), dir);
  ck_assert_msg(code == 0, "train: %s", r.err);
  tu_run_free(&r);
  snprintf(ckpt, sizeof ckpt, "%s/char/last.safetensors", dir);
  code = tu_run(&r, NULL, "sample --ckpt '%s' --prompt '%s' --tokens 200 --temperature 0", ckpt, prompt);
  ck_assert_msg(code == 0 && r.out_len > strlen(prompt) + 100, "sample: %s", r.err);
  snprintf(greedy, sizeof greedy, "%s", r.out);
  tu_run_free(&r);
  snprintf(port_exe, sizeof port_exe, "%s/model", dir);
  snprintf(a64_exe, sizeof a64_exe, "%s/model-a64", dir);
  code = tu_run(&r, NULL, "export --ckpt '%s' -o '%s'", ckpt, port_exe); /* portable: the default */
  ck_assert_msg(code == 0 && r.out_len == 0 && r.err_len == 0, "export portable (%d): %s", code, r.err);
  tu_run_free(&r);
  code = tu_run(&r, NULL, "export --target aarch64 --ckpt '%s' -o '%s'", ckpt, a64_exe);
  ck_assert_msg(code == 0 && r.err_len == 0, "export aarch64 (%d): %s (build/setup.sh installs "
                "gcc-aarch64-linux-gnu)", code, r.err);
  tu_run_free(&r);
}

/* Largest |logit difference| between `cmd`'s --dump-logits (written to
 * `path`) and gptc's own compiled model, over every prompt token. */
static double logits_diff(const char *cmd, const char *path) {
  tu_run_result r;
  ck_assert_msg(tu_sh(&r, NULL, "%s", cmd) == 0, "%s: %s", cmd, r.err);
  tu_run_free(&r);
  char *data;
  size_t len;
  ck_assert_int_eq(util_read_file(path, &data, &len), 0);
  train_loaded l;
  ck_assert_msg(train_load_ckpt(ckpt, &l) == 0, "%s", util_errmsg());
  const gptc_model *m = l.mod.model;
  int32_t *ids;
  size_t n;
  ck_assert_int_eq(tok_encode(l.tok, lprompt, strlen(lprompt), 1, &ids, &n), 0);
  ck_assert_uint_eq(n, 15);
  ck_assert_uint_eq(len, n * (size_t)m->vocab_size * sizeof(float));
  float *kv = calloc(m->n_kv, sizeof(float)), *scratch = calloc(m->n_infer_scratch + 1, sizeof(float));
  float *logits = calloc((size_t)m->vocab_size, sizeof(float));
  const float *got = (const float *)(const void *)data;
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    m->infer(l.params, kv, scratch, ids[i], (int)i, logits);
    for (int v = 0; v < m->vocab_size; v++) {
      float g = got[i * (size_t)m->vocab_size + (size_t)v];
      ck_assert_msg(isfinite(logits[v]) && isfinite(g), "token %zu: logit %d is %g vs %g", i, v, logits[v], g);
      double d = fabs((double)logits[v] - g);
      if (d > worst) worst = d;
    }
  }
  free(kv);
  free(scratch);
  free(logits);
  free(ids);
  free(data);
  train_loaded_free(&l);
  return worst;
}

/* readelf's view: no program interpreter, no dynamic section at all. */
static void check_static(const char *exe, const char *machine) {
  tu_run_result r;
  ck_assert_int_eq(tu_sh(&r, NULL, "readelf -hlW '%s'", exe), 0);
  ck_assert_msg(strstr(r.out, machine), "%s is not %s:\n%s", exe, machine, r.out);
  ck_assert_msg(!strstr(r.out, "INTERP") && !strstr(r.out, "DYNAMIC"), "%s has a dynamic part:\n%s", exe, r.out);
  tu_run_free(&r);
  ck_assert_int_eq(tu_sh(&r, NULL, "readelf -dW '%s'", exe), 0);
  ck_assert_msg(!strstr(r.out, "NEEDED"), "%s needs a shared library:\n%s", exe, r.out);
  tu_run_free(&r);
}

/* ---- the x86-64 variants ------------------------------------------------------ */

START_TEST(portable_is_static) {
  check_static(port_exe, "X86-64");
  check_static(a64_exe, "AArch64");
}
END_TEST

START_TEST(dispatch_picks_widest) {
  int widest = -1;
  for (int i = 0; i < 3; i++)
    if (level_ok(i)) widest = i;
  ck_assert_msg(widest >= 0, "this host is below x86-64-v2: the suite assumes an x86-64-v2 CPU");
  tu_run_result r;
  ck_assert_int_eq(tu_sh(&r, NULL, "env -i %s'%s' --info", PORT_TIMEOUT, port_exe), 0);
  char want[128];
  snprintf(want, sizeof want, "\nkernels: %s (", levels[widest]);
  ck_assert_msg(strstr(r.out, want), "--info lacks '%s':\n%s", want + 1, r.out);
  ck_assert_msg(strstr(r.out, "the widest this CPU supports of: x86-64-v2, x86-64-v3, x86-64-v4\n"), "%s", r.out);
  const char *ms = strstr(r.out, "\nload_ms: ");
  ck_assert_msg(ms && strtod(ms + 10, NULL) >= 0, "--info lacks load_ms:\n%s", r.out);
  tu_run_free(&r);
  /* forced narrower: --info says so */
  ck_assert_int_eq(tu_sh(&r, NULL, "env -i GPTC_KERNELS=x86-64-v2 %s'%s' --info", PORT_TIMEOUT, port_exe), 0);
  ck_assert_msg(strstr(r.out, "\nkernels: x86-64-v2 (SSE4.2, 128-bit vectors), forced by GPTC_KERNELS"), "%s", r.out);
  tu_run_free(&r);
  /* a name it does not have: one line listing the ones it has */
  ck_assert_int_eq(tu_sh(&r, NULL, "GPTC_KERNELS=avx9 %s'%s' x", PORT_TIMEOUT, port_exe), 1);
  ck_assert_str_eq(r.err, "model: GPTC_KERNELS=avx9: not one of this executable's kernels (x86-64-v2, x86-64-v3, "
                          "x86-64-v4)\n");
  tu_run_free(&r);
  /* a level this CPU lacks (v4 on the AVX2 hosts this was written on): refused, not SIGILL */
  for (int i = 0; i < 3; i++)
    if (!level_ok(i)) {
      ck_assert_int_eq(tu_sh(&r, NULL, "GPTC_KERNELS=%s %s'%s' x", levels[i], PORT_TIMEOUT, port_exe), 1);
      char line[256];
      snprintf(line, sizeof line, "model: GPTC_KERNELS=%s: this CPU does not support %s (", levels[i], levels[i]);
      ck_assert_msg(!strncmp(r.err, line, strlen(line)) && strchr(r.err, '\n') == r.err + r.err_len - 1, "%s",
                    r.err);
      ck_assert_str_eq(r.out, "");
      tu_run_free(&r);
    }
}
END_TEST

/* Every level this CPU runs: gptc sample's greedy text for 200 tokens, and
 * its logits within the tolerance of the sum orders (the variants add in
 * 4-, 8- and 16-lane partial sums; the JIT in the host's width). */
START_TEST(variants_same_greedy_text) {
  int ran = 0;
  for (int i = 0; i < 3; i++) {
    if (!level_ok(i)) continue;
    tu_run_result r;
    ck_assert_int_eq(tu_sh(&r, NULL, "GPTC_KERNELS=%s %s'%s' '%s' --tokens 200 --temperature 0", levels[i], PORT_TIMEOUT,
                          port_exe, prompt),
                     0);
    ck_assert_msg(!strcmp(r.out, greedy), "%s greedy text:\n%s\ngptc sample:\n%s", levels[i], r.out, greedy);
    tu_run_free(&r);
    char path[1200], cmd[4096];
    snprintf(path, sizeof path, "%s/logits-%s", dir, levels[i]);
    snprintf(cmd, sizeof cmd, "GPTC_KERNELS=%s %s'%s' --dump-logits '%s' '%s'", levels[i], PORT_TIMEOUT, port_exe,
             path, lprompt);
    double d = logits_diff(cmd, path);
    ck_assert_msg(d <= 1e-4, "%s: max |logit difference| %g from gptc sample's model", levels[i], d);
    ran++;
  }
  ck_assert_int_ge(ran, 1);
}
END_TEST

/* ---- aarch64 under qemu ------------------------------------------------------------- */

START_TEST(aarch64_same_greedy_text) {
  tu_run_result r;
  /* one thread: OpenMP's spinning workers are slow under emulation */
  ck_assert_msg(tu_sh(&r, NULL, "%sqemu-aarch64-static '%s' '%s' --tokens 200 --temperature 0 --threads 1", PORT_TIMEOUT,
                     a64_exe, prompt) == 0,
                "qemu-aarch64-static (build/setup.sh installs qemu-user-static): %s", r.err);
  ck_assert_msg(!strcmp(r.out, greedy), "aarch64 greedy text:\n%s\ngptc sample:\n%s", r.out, greedy);
  tu_run_free(&r);
  ck_assert_int_eq(tu_sh(&r, NULL, "%sqemu-aarch64-static '%s' --info", PORT_TIMEOUT, a64_exe), 0);
  ck_assert_msg(strstr(r.out, "\nkernels: aarch64 (NEON, 128-bit vectors)\n"), "%s", r.out);
  tu_run_free(&r);
  char path[1200], cmd[4096];
  snprintf(path, sizeof path, "%s/logits-a64", dir);
  snprintf(cmd, sizeof cmd, "%sqemu-aarch64-static '%s' --threads 1 --dump-logits '%s' '%s'", PORT_TIMEOUT, a64_exe,
           path, lprompt);
  double d = logits_diff(cmd, path);
  ck_assert_msg(d <= 1e-4, "aarch64: max |logit difference| %g from gptc sample's model", d);
  /* --serve: with the arm64 libevent (libevent-dev:arm64, build/setup.sh)
   * the file serves, under qemu too; without it the file is made without the
   * server and says so */
  tu_sh(&r, NULL, "aarch64-linux-gnu-gcc -print-file-name=libevent_core.a");
  int have_event = r.out[0] == '/';
  tu_run_free(&r);
  if (have_event) {
    ck_assert_msg(tu_sh(&r, NULL, "%ssh -c 'qemu-aarch64-static \"$0\" --serve --port 0 --threads 1 > \"$1\" & pid=$!; "
                           "for i in $(seq 300); do p=$(sed -n \"s/^listening on http:.*:\\([0-9]*\\)$/\\1/p\" \"$1\"); "
                           "[ -n \"$p\" ] && break; sleep 0.1; done; curl -s --max-time 20 http://127.0.0.1:$p/health; "
                           "kill -TERM $pid; wait $pid' '%s' '%s/a64-serve.out'",
                       PORT_TIMEOUT, a64_exe, dir) == 0,
                  "aarch64 --serve: %s", r.err);
    ck_assert_msg(!strcmp(r.out, "{\"status\":\"ok\"}"), "aarch64 --serve /health: '%s'", r.out);
  } else {
    ck_assert_int_eq(tu_sh(&r, NULL, "%sqemu-aarch64-static '%s' --serve --port 0", PORT_TIMEOUT, a64_exe), 1);
    ck_assert_msg(strstr(r.err, "--serve: this executable was exported for aarch64 without libevent"), "%s", r.err);
  }
  tu_run_free(&r);
}
END_TEST

/* ---- alone in an empty root ------------------------------------------------------- */

/* A root holding only the executable and the prompt: no /lib, /proc, /dev,
 * /etc or /tmp, and an empty environment. As root a plain chroot; else a
 * user namespace that maps this user to root (unshare -r). */
START_TEST(empty_root) {
  char root[1200], exe[1300], pfile[1300];
  snprintf(root, sizeof root, "%s/root", dir);
  ck_assert_int_eq(util_mkdir_p(root), 0);
  snprintf(exe, sizeof exe, "%s/model", root);
  snprintf(pfile, sizeof pfile, "%s/prompt.txt", root);
  tu_run_result r;
  ck_assert_int_eq(tu_sh(&r, NULL, "cp '%s' '%s' && printf '%%s' '%s' >'%s' && ls -A '%s' | wc -l", port_exe, exe, prompt,
                        pfile, root),
                   0);
  ck_assert_str_eq(r.out, "2\n");
  tu_run_free(&r);
  const char *ns = geteuid() == 0 ? "" : "\"$U\" -r ";
  /* the tools' paths are looked up before env -i empties PATH */
  ck_assert_int_eq(tu_sh(&r, NULL,
                        "C=$(command -v chroot) U=$(command -v unshare) T=$(command -v timeout) && "
                        "env -i \"$T\" 300 %s\"$C\" '%s' /model --tokens 200 --temperature 0 <'%s'",
                        ns, root, pfile),
                   0);
  ck_assert_msg(!strcmp(r.out, greedy), "empty root greedy text:\n%s\n(stderr %s)\ngptc sample:\n%s", r.out, r.err,
                greedy);
  ck_assert_str_eq(r.err, "");
  tu_run_free(&r);
  ck_assert_int_eq(tu_sh(&r, NULL, "C=$(command -v chroot) U=$(command -v unshare) && env -i %s\"$C\" '%s' /model --info",
                        ns, root),
                   0);
  ck_assert_msg(strstr(r.out, "\nload_ms: "), "%s", r.out);
  tu_run_free(&r);
}
END_TEST

/* ---- refusals ------------------------------------------------------------------------ */

START_TEST(unknown_target_refused) {
  char out[1200];
  snprintf(out, sizeof out, "%s/never", dir);
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "export --target sparc --ckpt '%s' -o '%s'", ckpt, out), 2);
  ck_assert_msg(strstr(r.err, "--target 'sparc': not a target this gptc builds (valid: portable, native, x86-64-v2, "
                              "x86-64-v3, x86-64-v4, aarch64)"),
                "%s", r.err);
  ck_assert_msg(strchr(r.err, '\n') == r.err + r.err_len - 1 || strstr(r.err, "gptc export --help"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_ne(access(out, F_OK), 0);
  /* a single-level executable on a CPU below that level: one clear line at start-up */
  for (int i = 0; i < 3; i++)
    if (!level_ok(i)) {
      ck_assert_int_eq(tu_run(&r, NULL, "export --target %s --ckpt '%s' -o '%s'", levels[i], ckpt, out), 0);
      tu_run_free(&r);
      ck_assert_int_eq(tu_sh(&r, NULL, "%s'%s' x", PORT_TIMEOUT, out), 1);
      char line[256];
      snprintf(line, sizeof line, "never: this CPU does not support %s (", levels[i]);
      ck_assert_msg(!strncmp(r.err, line, strlen(line)) && strstr(r.err, "--target portable\n"), "%s", r.err);
      tu_run_free(&r);
      break;
    }
}
END_TEST

/* A gpt2-tokenizer model for aarch64 needs the arm64 libpcre2-8.a: without
 * it, one line naming the package before anything is built; with it (a CI
 * machine with libpcre2-dev:arm64), a static arm64 file. The checkpoint is
 * written directly (zero weights; nothing runs it). */
START_TEST(aarch64_gpt2_pcre2) {
  cfg_t cfg;
  ck_assert_int_eq(cfg_load_string("return { name = 'g', tokenizer = 'gpt2', emb_dim = 16, n_heads = 2, n_layers = 1,"
                                   " context_length = 16, train = { batch_size = 1, max_length = 16 } }",
                                   "g", &cfg),
                   0);
  gptc_tensor *ts;
  int nt;
  size_t np;
  ck_assert_int_eq(gen_tensors(&cfg, &ts, &nt, &np), 0);
  float *params = calloc(np, sizeof(float));
  ckpt_meta meta = {0};
  meta.config_src = cfg_serialize(&cfg);
  meta.tokenizer = cfg.tokenizer;
  meta.best_val = INFINITY;
  char g[1200], out[1200];
  snprintf(g, sizeof g, "%s/g.safetensors", dir);
  snprintf(out, sizeof out, "%s/g-a64", dir);
  ck_assert_int_eq(ckpt_save(g, ts, nt, np, params, NULL, NULL, &meta), 0);
  free(meta.config_src);
  free(params);
  gen_tensors_free(ts, nt);
  tu_run_result r;
  tu_sh(&r, NULL, "aarch64-linux-gnu-gcc -print-file-name=libpcre2-8.a");
  int have = r.out[0] == '/';
  tu_run_free(&r);
  int code = tu_run(&r, NULL, "export --target aarch64 --ckpt '%s' -o '%s'", g, out);
  if (have) {
    ck_assert_msg(code == 0, "%s", r.err);
    check_static(out, "AArch64");
    tu_run_free(&r);
    /* the arm64 PCRE2 pre-tokenizer at work: the same prompt ids and greedy
     * text as gptc sample's x86-64 model (zero weights: every logit ties) */
    ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s' --prompt 'Hello, world! 123' --tokens 5 --temperature 0", g), 0);
    char want[512];
    snprintf(want, sizeof want, "%s", r.out);
    tu_run_free(&r);
    ck_assert_msg(tu_sh(&r, NULL, "%sqemu-aarch64-static '%s' 'Hello, world! 123' --tokens 5 --temperature 0 --threads 1",
                       PORT_TIMEOUT, out) == 0,
                  "%s", r.err);
    ck_assert_msg(!strcmp(r.out, want), "aarch64 gpt2 text '%s', gptc sample '%s'", r.out, want);
  } else {
    ck_assert_int_eq(code, 1);
    char want[1400];
    snprintf(want, sizeof want, "gptc: %s: --target aarch64 with the gpt2 tokenizer needs PCRE2 for that architecture",
             out);
    ck_assert_msg(!strncmp(r.err, want, strlen(want)) && strstr(r.err, "libpcre2-dev:arm64)\n"), "%s", r.err);
    ck_assert_int_ne(access(out, F_OK), 0);
  }
  tu_run_free(&r);
}
END_TEST

int main(void) {
  /* decided before the fork: a skipped case must show in the exit code */
  can_chroot = geteuid() == 0 || system("unshare -r true >/dev/null 2>&1") == 0;
  Suite *s = suite_create("export_port");
  TCase *tc = tcase_create("export_port");
  tcase_set_timeout(tc, 600);
  tcase_add_unchecked_fixture(tc, port_setup, NULL);
  tcase_add_test(tc, unknown_target_refused);
  tcase_add_test(tc, portable_is_static);
  tcase_add_test(tc, dispatch_picks_widest);
  tcase_add_test(tc, variants_same_greedy_text);
  tcase_add_test(tc, aarch64_same_greedy_text);
  tcase_add_test(tc, aarch64_gpt2_pcre2);
  if (can_chroot) tcase_add_test(tc, empty_root);
  suite_add_tcase(s, tc);
  int rc = tu_main(s);
  if (rc == 0 && !can_chroot) {
    fprintf(stderr, "test_export_port: SKIP empty_root: needs root or user namespaces (unshare -r)\n");
    return PORT_SKIP;
  }
  return rc;
}
