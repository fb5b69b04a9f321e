/* jit: the one compiler driver (runtime/jit.c). The cache keys against an
 * independent SHA-256 of their parts, and through `gptc gen --explain`
 * under compilers of the same and of another identity; a compile error as
 * one line naming the file and its first error (in-process, and from the
 * parallel unit compiles of `gptc train`); a compiler's output kept bounded;
 * a compiler that does not run refused in one line; and every export
 * target's flag sets as docs/export.md's table states them, read from the
 * table and from the command lines `gptc export` runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpu.h"
#include "export_target.h"
#include "jit.h"
#include "testutil.h"
#include "util.h"

/* Set once by main (before the forked tests). */
static char dir[1024];

/* The whole file at path (NUL-terminated); the test fails without it. */
static char *slurp(const char *path) {
  char *data;
  size_t n;
  ck_assert_msg(util_read_file(path, &data, &n) == 0, "%s", util_errmsg());
  return data;
}

/* An executable shell script at dir/name. */
static const char *script(const char *name, const char *body) {
  const char *p = tu_write_str(name, body);
  ck_assert_int_eq(chmod(p, 0755), 0);
  return p;
}

/* The number of lines in s (a last line without a newline counts). */
static int lines(const char *s) {
  int n = 0;
  for (const char *p = s; *p; p++) n += *p == '\n';
  return n + (*s && s[strlen(s) - 1] != '\n');
}

/* ---- cache keys --------------------------------------------------------------------- */

/* SHA-256 of the concatenated parts, as hex: the reference for the keys. */
static void ref_sha(char out[65], int n, const char *const *parts) {
  util_buf b = {0};
  for (int i = 0; i < n; i++) util_buf_add(&b, parts[i], strlen(parts[i]));
  util_sha256_hex(b.data ? b.data : "", b.len, out);
  util_buf_free(&b);
}

START_TEST(key_parts) {
  setenv("GPTC_CPU_ID", "cpu A", 1);
  const char *src = "int f(void) { return 1; }\n";
  char k[65], again[65], ref[65];
  jit_key(src, strlen(src), "cc 12.2", "-O3 -fPIC", k);
  ref_sha(ref, 7, (const char *const[]){src, "\n", "cc 12.2", "\n", "-O3 -fPIC", "\n", "cpu A"});
  ck_assert_str_eq(k, ref);
  jit_key(src, strlen(src), "cc 12.2", "-O3 -fPIC", again);
  ck_assert_str_eq(k, again);

  /* each input on its own changes the key */
  char v[5][65];
  const char *src2 = "int f(void) { return 2; }\n";
  jit_key(src2, strlen(src2), "cc 12.2", "-O3 -fPIC", v[0]);
  jit_key(src, strlen(src), "cc 12.3", "-O3 -fPIC", v[1]);
  jit_key(src, strlen(src), "cc 12.2", "-O2 -fPIC", v[2]);
  jit_key(src, strlen(src) - 1, "cc 12.2", "-O3 -fPIC", v[3]); /* the length counts, not a NUL */
  setenv("GPTC_CPU_ID", "cpu B", 1);
  jit_key(src, strlen(src), "cc 12.2", "-O3 -fPIC", v[4]);
  for (int i = 0; i < 5; i++) {
    ck_assert_str_ne(v[i], k);
    for (int j = 0; j < i; j++) ck_assert_str_ne(v[i], v[j]);
  }

  /* NVRTC: source, architecture, options and version */
  jit_key_nvrtc(src, strlen(src), "sm_90", "nvrtc 12.4", k);
  ck_assert_ptr_nonnull(jit_nvrtc_options[0]);
  util_buf opts = {0};
  for (int i = 0; jit_nvrtc_options[i]; i++) util_buf_add(&opts, jit_nvrtc_options[i], strlen(jit_nvrtc_options[i]));
  util_buf_add(&opts, "", 1);
  ref_sha(ref, 5, (const char *const[]){src, "\n", "sm_90", opts.data, "nvrtc 12.4"});
  util_buf_free(&opts);
  ck_assert_str_eq(k, ref);
  jit_key_nvrtc(src2, strlen(src2), "sm_90", "nvrtc 12.4", v[0]);
  jit_key_nvrtc(src, strlen(src), "compute_90", "nvrtc 12.4", v[1]);
  jit_key_nvrtc(src, strlen(src), "sm_90", "nvrtc 12.5", v[2]);
  for (int i = 0; i < 3; i++) {
    ck_assert_str_ne(v[i], k);
    for (int j = 0; j < i; j++) ck_assert_str_ne(v[i], v[j]);
  }
}
END_TEST

/* `gptc gen --explain`'s unit keys ("unit key state" lines) into keys, one
 * per line; the number of units. */
static int explain_keys(const char *env, util_buf *keys) {
  tu_run_result r;
  int code = tu_sh(&r, NULL, "%s timeout 120 '%s' gen --config '%s' --explain", env, GPTC_EXE,
                   tu_src("configs/tiny-test.lua"));
  ck_assert_msg(code == 0, "exit %d: %s", code, r.err);
  int n = 0;
  for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
    char name[200], key[80], state[40];
    if (sscanf(line, "%199s %79s %39s", name, key, state) == 3 && strlen(key) == 64 &&
        strspn(key, "0123456789abcdef") == 64) {
      util_buf_add(keys, key, 64);
      util_buf_add(keys, "\n", 1);
      n++;
    }
  }
  util_buf_add(keys, "", 1);
  tu_run_free(&r);
  return n;
}

START_TEST(key_compiler_identity) {
  /* the same compiler under another name: same identity, same keys */
  const char *same = script("cc-same", "#!/bin/sh\nexec cc \"$@\"\n");
  /* another identity (its --version line), otherwise the same compiler */
  const char *other = script("cc-other", "#!/bin/sh\n"
                                         "if [ \"$1\" = --version ]; then echo 'othercc 9.9'; exit 0; fi\n"
                                         "exec cc \"$@\"\n");
  char env[2400];
  util_buf k0 = {0}, k1 = {0}, k2 = {0}, k3 = {0};
  int n = explain_keys("CC=cc", &k0);
  ck_assert_int_gt(n, 3);
  snprintf(env, sizeof env, "CC='%s'", same);
  ck_assert_int_eq(explain_keys(env, &k1), n);
  ck_assert_str_eq(k0.data, k1.data);
  snprintf(env, sizeof env, "CC='%s'", other);
  ck_assert_int_eq(explain_keys(env, &k2), n);
  /* every unit's key changes, not just some */
  for (int i = 0; i < n; i++) ck_assert_msg(memcmp(k0.data + 65 * i, k2.data + 65 * i, 64), "unit %d kept its key", i);
  /* and another CPU (the objects are -march=native) */
  ck_assert_int_eq(explain_keys("CC=cc GPTC_CPU_ID=another-cpu", &k3), n);
  for (int i = 0; i < n; i++) ck_assert_msg(memcmp(k0.data + 65 * i, k3.data + 65 * i, 64), "unit %d kept its key", i);
  util_buf_free(&k0);
  util_buf_free(&k1);
  util_buf_free(&k2);
  util_buf_free(&k3);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------- */

START_TEST(fold_output) {
  char out[1024];
  jit_fold("In file included from a.h:1,\n"
           "                 from x.c:2:\n"
           "x.c: In function 'f':\r\n"
           "x.c:3:5: error: 'a' undeclared\n"
           "    3 |   return a;\n"
           "      |          ^\n"
           "\n"
           "x.c:3:5: note: each undeclared identifier\n"
           "x.c:4:5: error: 'b' undeclared\n"
           "x.c:5:5: error: 'c' undeclared\n"
           "x.c:6:5: error: 'd' undeclared\n",
           out, sizeof out);
  ck_assert_str_eq(out, "x.c:3:5: error: 'a' undeclared; x.c:3:5: note: each undeclared identifier; "
                        "x.c:4:5: error: 'b' undeclared; x.c:5:5: error: 'c' undeclared");
  /* a linker's output has no context lines: kept from its first */
  jit_fold("/usr/bin/ld: cannot find -lnope\ncollect2: error: ld returned 1 exit status\n", out, sizeof out);
  ck_assert_str_eq(out, "/usr/bin/ld: cannot find -lnope; collect2: error: ld returned 1 exit status");
  jit_fold("", out, sizeof out);
  ck_assert_str_eq(out, "");
  /* cut to fit, always terminated */
  char small[16];
  memset(small, 'z', sizeof small);
  jit_fold("x.c:1:1: error: a long message that does not fit\n", small, sizeof small);
  ck_assert_uint_lt(strlen(small), sizeof small);
  ck_assert_str_eq(small, "x.c:1:1: error:");
}
END_TEST

START_TEST(compile_error_one_line) {
  char cache[1100];
  snprintf(cache, sizeof cache, "%s/cache-err", dir);
  setenv("GPTC_CACHE", cache, 1);
  setenv("CC", "cc", 1);
  const char *src = "int f(void) {\n"
                    "  return first_missing_name;\n"
                    "}\n"
                    "int g(void) { return second_missing_name; }\n";
  cpu_object obj;
  ck_assert_int_eq(cpu_build(src, strlen(src), "err", NULL, NULL, &obj), -1);
  const char *msg = util_errmsg();
  ck_assert_msg(!strchr(msg, '\n'), "%s", msg);
  /* "compiling PATH with 'cc' failed (exit 1): PATH:2:10: error: 'first_missing_name' undeclared ..." */
  char want[9000];
  snprintf(want, sizeof want, "compiling %s with 'cc' failed (exit 1): %s:2:", obj.src_path, obj.src_path);
  ck_assert_msg(!strncmp(msg, want, strlen(want)), "%s\nwant prefix %s", msg, want);
  const char *first = strstr(msg, "first_missing_name");
  ck_assert_msg(first && strstr(msg, ": error: ") < first, "%s", msg);
  const char *second = strstr(msg, "second_missing_name");
  ck_assert_msg(!second || second > first, "%s", msg);
  /* gcc's excerpt of the line is left out: the name appears once in its error */
  ck_assert_msg(!strstr(first + 1, "first_missing_name"), "%s", msg);
  /* the source is kept for reading; no object, no temp file left */
  ck_assert(util_file_exists(obj.src_path));
  ck_assert(!util_file_exists(obj.so_path));
  tu_run_result r;
  ck_assert_int_eq(tu_sh(&r, NULL, "ls '%s/err' | grep -c tmp", cache), 1);
  ck_assert_str_eq(r.out, "0\n");
  tu_run_free(&r);
}
END_TEST

START_TEST(output_bounded) {
  util_buf out = {0};
  /* 5 MB of output: all read (the writer finishes), the first part kept */
  ck_assert_int_eq(jit_sh("head -c 5000000 /dev/zero | tr '\\000' x", &out), 0);
  ck_assert_uint_eq(out.len, JIT_OUTPUT_MAX + 1);
  ck_assert_int_eq(out.data[JIT_OUTPUT_MAX], 0);
  ck_assert_int_eq(out.data[0], 'x');
  ck_assert_int_eq(out.data[JIT_OUTPUT_MAX - 1], 'x');
  util_buf_free(&out);
  /* stderr is captured too, and the exit status comes back */
  ck_assert_int_eq(jit_sh("echo to-stderr >&2; exit 7", &out), 7);
  ck_assert_str_eq(out.data, "to-stderr\n");
  util_buf_free(&out);
  /* a failing command with endless output: one bounded line */
  ck_assert_int_eq(jit_run("running a test", "sh", "yes 'x.c:1:1: error: again' | head -n 200000; exit 3"), -1);
  const char *msg = util_errmsg();
  ck_assert_msg(!strncmp(msg, "running a test with 'sh' failed (exit 3): x.c:1:1: error: again; ", 63), "%s", msg);
  ck_assert_msg(!strchr(msg, '\n') && strlen(msg) < 1100, "%s", msg);
}
END_TEST

START_TEST(missing_compiler) {
  char cache[1100];
  snprintf(cache, sizeof cache, "%s/cache-missing", dir);
  setenv("GPTC_CACHE", cache, 1);
  setenv("CC", "/nonexistent/cc", 1);
  const char *src = "int f(void) { return 1; }\n";
  cpu_object obj;
  ck_assert_int_eq(cpu_build(src, strlen(src), "missing", NULL, NULL, &obj), -1);
  const char *msg = util_errmsg();
  ck_assert_msg(!strncmp(msg, "C compiler '/nonexistent/cc' does not run (", 43), "%s", msg);
  ck_assert_msg(strstr(msg, "/nonexistent/cc: not found") || strstr(msg, "No such file"), "%s", msg);
  ck_assert_msg(strstr(msg, "): install one or set CC") && !strchr(msg, '\n'), "%s", msg);
  ck_assert_int_eq(jit_cc_check("/nonexistent/cc", 1), -1);
  ck_assert_msg(strstr(util_errmsg(), "install one or set GPTC_CC_AARCH64"), "%s", util_errmsg());
  ck_assert_int_eq(jit_cc_has("/nonexistent/cc", "libm.a"), 0);
  /* the CLI: one line, exit 1, nothing written to --out */
  tu_run_result r;
  int code = tu_sh(&r, NULL, "CC=/nonexistent/cc timeout 120 '%s' train --config '%s' --steps 1 --quiet --out '%s/run-missing'",
                   GPTC_EXE, tu_src("configs/tiny-test.lua"), dir);
  ck_assert_msg(code == 1, "exit %d: %s", code, r.err);
  ck_assert_msg(lines(r.err) == 1 && !strncmp(r.err, "gptc: C compiler '/nonexistent/cc' does not run (", 49),
                "%s", r.err);
  char ck[1200];
  snprintf(ck, sizeof ck, "%s/run-missing/last.safetensors", dir);
  ck_assert(!util_file_exists(ck));
  tu_run_free(&r);
}
END_TEST

/* A compiler that runs but fails every compile: the parallel unit compiles
 * of a model report the first failure in one line. */
START_TEST(unit_compile_error) {
  const char *bad = script("cc-broken", "#!/bin/sh\n"
                                        "if [ \"$1\" = --version ]; then echo 'brokencc 1.0'; exit 0; fi\n"
                                        "echo \"In file included from /p/x.h:1,\" >&2\n"
                                        "echo \"/p/x.c: In function 'k':\" >&2\n"
                                        "echo \"/p/x.c:7:3: error: broken on purpose\" >&2\n"
                                        "exit 1\n");
  tu_run_result r;
  int code = tu_sh(&r, NULL, "CC='%s' GPTC_CACHE='%s/cache-broken' timeout 120 '%s' train --config '%s' --steps 1 "
                   "--quiet --out '%s/run-broken'", bad, dir, GPTC_EXE, tu_src("configs/tiny-test.lua"), dir);
  ck_assert_msg(code == 1, "exit %d: %s", code, r.err);
  ck_assert_msg(lines(r.err) == 1, "%s", r.err);
  char want[2400];
  snprintf(want, sizeof want, " with '%s' failed (exit 1): /p/x.c:7:3: error: broken on purpose\n", bad);
  ck_assert_msg(!strncmp(r.err, "gptc: compiling kernel ", 23) && strstr(r.err, want), "%s", r.err);
  ck_assert_msg(strstr(r.err, "/cache-broken/obj/") && strstr(r.err, ".c with '"), "%s", r.err);
  tu_run_free(&r);
  /* no temp object or log left in the cache */
  ck_assert_int_eq(tu_sh(&r, NULL, "ls '%s/cache-broken/obj' | grep -c tmp", dir), 1);
  ck_assert_str_eq(r.out, "0\n");
  tu_run_free(&r);
}
END_TEST

/* ---- flag sets ---------------------------------------------------------------------- */

/* The value of -march= in flags ("x86-64-v3"); the test fails without one. */
static void march_of(const char *flags, char *out, size_t n) {
  const char *m = strstr(flags, "-march=");
  ck_assert_msg(m != NULL, "no -march in '%s'", flags);
  m += 7;
  snprintf(out, n, "%.*s", (int)strcspn(m, " "), m);
}

/* Column c (0-based, after the leading '|') of a markdown table row, trimmed. */
static void column(const char *row, int c, char *out, size_t n) {
  const char *p = row;
  for (int i = 0; i <= c; i++) {
    p = strchr(p, '|');
    ck_assert_msg(p != NULL, "row has no column %d: %s", c, row);
    p++;
  }
  while (*p == ' ') p++;
  size_t len = strcspn(p, "|");
  while (len && p[len - 1] == ' ') len--;
  snprintf(out, n, "%.*s", (int)len, p);
}

/* docs/export.md's Targets row of `name` (first column lists "`name`"). */
static const char *doc_row(const char *doc, const char *name, char *row, size_t n) {
  char tick[64];
  snprintf(tick, sizeof tick, "`%s`", name);
  for (const char *p = doc; (p = strstr(p, "\n| `")); p++) {
    const char *e = strchr(p + 1, '\n');
    char first[256];
    snprintf(row, n, "%.*s", (int)(e ? e - p - 1 : (long)strlen(p + 1)), p + 1);
    column(row, 0, first, sizeof first);
    if (strstr(first, tick)) return row;
  }
  ck_abort_msg("docs/export.md: no row for target %s", name);
  return NULL;
}

START_TEST(flags_as_documented) {
  char *doc = slurp(tu_src("docs/export.md"));
  const char *names = export_target_names();
  char list[256];
  snprintf(list, sizeof list, "%s", names);
  int n_targets = 0;
  for (char *name = strtok(list, ", "); name; name = strtok(NULL, ", "), n_targets++) {
    const export_target *t;
    ck_assert_int_eq(export_target_find(name, &t), 0);
    char row[2048], variants[1024], base[256], linked[512], m[64], want[128];
    doc_row(doc, name, row, sizeof row);
    column(row, 1, variants, sizeof variants);
    column(row, 2, base, sizeof base);
    column(row, 3, linked, sizeof linked);
    /* the baseline: the shared flags and the column's -march */
    march_of(t->base_flags, m, sizeof m);
    snprintf(want, sizeof want, "`-march=%s`", m);
    ck_assert_msg(!strcmp(base, want), "%s: baseline %s, docs say %s", name, t->base_flags, base);
    /* (native's baseline is its variant's: the host JIT's code generation) */
    snprintf(want, sizeof want, JIT_FLAGS_COMMON " -march=%s", m);
    ck_assert_str_eq(t->base_flags, strcmp(m, "native") ? want : JIT_FLAGS_NATIVE);
    /* linked statically exactly where the docs say -static */
    ck_assert_msg(!!strstr(linked, "`-static`") == t->is_static, "%s: is_static %d, docs: %s", name, t->is_static,
                  linked);
    ck_assert_msg(!!strstr(linked, "aarch64-linux-gnu-gcc") == t->cross_aarch64, "%s: %s", name, linked);
    for (int i = 0; i < t->n_variants; i++) {
      const char *f = t->variants[i].flags;
      ck_assert_msg(!strncmp(f, JIT_FLAGS_COMMON " -march=", strlen(JIT_FLAGS_COMMON) + 8), "%s", f);
      ck_assert_msg(!strstr(f, "fast-math"), "%s", f);
      march_of(f, m, sizeof m);
      /* the variant named in the column (or "that one": the target's own level) */
      char named[80], bare[80];
      snprintf(named, sizeof named, "`-march=%s`", m);
      snprintf(bare, sizeof bare, "`%s`", m);
      const char *at = strstr(variants, named) ? strstr(variants, named) : strstr(variants, bare);
      if (!at) ck_assert_msg(!strcmp(variants, "that one") && !strcmp(name, m), "%s: -march=%s not in '%s'", name, m,
                             variants);
      /* -mprefer-vector-width=512 where the docs name it for that variant
       * (portable's row for the x86-64 levels), or "the JIT's flags" */
      const char *seg = at;
      if (!seg) {
        char prow[2048], pvar[1024];
        column(doc_row(doc, "portable", prow, sizeof prow), 1, pvar, sizeof pvar);
        seg = strstr(pvar, bare);
        ck_assert_ptr_nonnull(seg);
        int wide = !!strstr(seg, "-mprefer-vector-width=512") &&
                   (!strchr(seg, ')') || strstr(seg, "-mprefer-vector-width=512") < strchr(seg, ')'));
        ck_assert_msg(!!strstr(f, "-mprefer-vector-width=512") == wide, "%s: %s", name, f);
      } else if (strstr(at, "the JIT's flags")) {
        /* native: the host JIT's code generation, less -fPIC */
        ck_assert_str_eq(f, JIT_FLAGS_NATIVE);
        char host[256], *p;
        snprintf(host, sizeof host, "%s", JIT_FLAGS_HOST);
        ck_assert_ptr_nonnull(p = strstr(host, " -fPIC"));
        memmove(p, p + 6, strlen(p + 6) + 1);
        for (char *tok = strtok(host, " "); tok; tok = strtok(NULL, " "))
          ck_assert_msg(strstr(f, tok), "native lacks the JIT's %s: %s", tok, f);
        ck_assert_uint_eq(strlen(f), strlen(JIT_FLAGS_HOST) - 6);
      } else {
        const char *close = strchr(at, ')');
        const char *w = strstr(at, "-mprefer-vector-width=512");
        ck_assert_msg(!!strstr(f, "-mprefer-vector-width=512") == (w && (!close || w < close)), "%s: %s", name, f);
      }
    }
  }
  ck_assert_int_gt(n_targets, 0);
  /* the host JIT: the whole-source and the per-unit flag sets differ only in -shared / -c */
  ck_assert_str_eq(JIT_FLAGS_SO, JIT_FLAGS_HOST " -shared");
  ck_assert_str_eq(JIT_FLAGS_OBJ, JIT_FLAGS_HOST " -c");
  ck_assert_ptr_null(strstr(JIT_FLAGS_HOST, "fast-math"));
  free(doc);
}
END_TEST

/* `gptc export --target T` under a compiler that logs its arguments: the
 * variants and the baseline are compiled with the table's flags. The
 * logging compiler writes no file, so each export ends with "cannot move
 * the executable into place" after its compiles. */
START_TEST(export_command_lines) {
  tu_run_result r;
  char run[1100];
  snprintf(run, sizeof run, "%s/run-export", dir);
  int code = tu_sh(&r, NULL, "CC=cc timeout 300 '%s' train --config '%s' --steps 1 --quiet --out '%s'", GPTC_EXE,
                   tu_src("configs/tiny-test.lua"), run);
  ck_assert_msg(code == 0, "exit %d: %s", code, r.err);
  tu_run_free(&r);
  char body[1400];
  snprintf(body, sizeof body,
           "#!/bin/sh\n"
           "echo \"$*\" >> '%s/cc.log'\n"
           "if [ \"$1\" = --version ]; then echo 'logcc 1.0'; fi\n"
           "exit 0\n",
           dir);
  const char *logcc = script("cc-log", body);
  char list[256], log[1100];
  snprintf(list, sizeof list, "%s", export_target_names());
  snprintf(log, sizeof log, "%s/cc.log", dir);
  for (char *name = strtok(list, ", "); name; name = strtok(NULL, ", ")) {
    const export_target *t;
    ck_assert_int_eq(export_target_find(name, &t), 0);
    unlink(log);
    code = tu_sh(&r, NULL, "CC='%s' GPTC_CC_AARCH64='%s' timeout 120 '%s' export --ckpt '%s/last.safetensors' -o "
                 "'%s/exe' --target %s", logcc, logcc, GPTC_EXE, run, dir, name);
    ck_assert_msg(code == 1 && strstr(r.err, "cannot move the executable into place"), "%s: exit %d: %s", name, code,
                  r.err);
    tu_run_free(&r);
    char *got = slurp(log);
    ck_assert_msg(!strncmp(got, "--version\n", 10), "%s: %s", name, got);
    char want[512];
    for (int i = 0; i < t->n_variants; i++) {
      const char *sfx = t->variants[i].suffix;
      snprintf(want, sizeof want, "\n%s -I. -c -o model%s.o model%s.c\n", t->variants[i].flags, sfx, sfx);
      ck_assert_msg(strstr(got, want), "%s: no line '%s' in\n%s", name, want + 1, got);
    }
    snprintf(want, sizeof want, "\n%s%s -I. -o program main.c ", t->base_flags, t->is_static ? " -static" : "");
    ck_assert_msg(strstr(got, want), "%s: no line starting '%s' in\n%s", name, want + 1, got);
    /* nothing else compiled: the version check, the cross target's library
     * probe for libevent (a char model needs no PCRE2), the variants, the link */
    ck_assert_int_eq(lines(got), 1 + t->cross_aarch64 + t->n_variants + 1);
    free(got);
  }
}
END_TEST

int main(void) {
  snprintf(dir, sizeof dir, "%s", tu_tmpdir());
  Suite *s = suite_create("jit");
  TCase *tc = tcase_create("jit");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, key_parts);
  tcase_add_test(tc, key_compiler_identity);
  tcase_add_test(tc, fold_output);
  tcase_add_test(tc, compile_error_one_line);
  tcase_add_test(tc, output_bounded);
  tcase_add_test(tc, missing_compiler);
  tcase_add_test(tc, unit_compile_error);
  tcase_add_test(tc, flags_as_documented);
  tcase_add_test(tc, export_command_lines);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
