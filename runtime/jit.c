/* jit: see jit.h. A compiler runs through /bin/sh (CC may be a command
 * with arguments, "ccache gcc"), its stderr joined to its stdout, and only
 * the first JIT_OUTPUT_MAX bytes of what it prints are kept. */
#include "jit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *const jit_nvrtc_options[] = {"-lineinfo", "--std=c++17", NULL};

/* ---- the compiler ------------------------------------------------------------------ */

const char *jit_cc(int cross_aarch64) {
  const char *cc = getenv(cross_aarch64 ? "GPTC_CC_AARCH64" : "CC");
  if (cc && *cc) return cc;
  return cross_aarch64 ? "aarch64-linux-gnu-gcc" : GPTC_C_COMPILER_DEFAULT;
}

/* The first line of s (up to its newline) into out. */
static void jit_first_line(const char *s, const char *prefix, char *out, size_t n) {
  const char *e = strchr(s, '\n');
  snprintf(out, n, "%s%.*s", prefix, (int)(e ? e - s : (long)strlen(s)), s);
}

int jit_cc_id(const char *cc, char *id, size_t n) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s --version", cc);
  util_buf out = {0};
  int rc = jit_sh(cmd, &out);
  jit_first_line(out.data ? out.data : "", rc ? "unusable: " : "", id, n);
  util_buf_free(&out);
  return rc;
}

int jit_cc_check(const char *cc, int cross_aarch64) {
  char id[512];
  if (jit_cc_id(cc, id, sizeof id) == 0) return 0;
  const char *why = id + strlen("unusable: ");
  return util_err("C compiler '%s' does not run (%s): install one or set %s", cc, *why ? why : "no output",
                  cross_aarch64 ? "GPTC_CC_AARCH64 (Debian: gcc-aarch64-linux-gnu)" : "CC");
}

int jit_cc_has(const char *cc, const char *lib) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "%s -print-file-name=%s", cc, lib);
  util_buf out = {0};
  int ok = jit_sh(cmd, &out) == 0 && out.data && out.data[0] == '/';
  util_buf_free(&out);
  return ok;
}

/* ---- running it ------------------------------------------------------------------- */

/* A wait status as an exit code: 128 + the signal of a killed process. */
static int jit_code(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

/* Reads f to its end, keeping the first JIT_OUTPUT_MAX bytes in out (NUL-
 * terminated) and dropping the rest, so the writer never blocks on a full
 * pipe and memory stays bounded. */
static void jit_slurp(FILE *f, util_buf *out) {
  char buf[4096];
  size_t n, kept = 0;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    size_t take = kept < JIT_OUTPUT_MAX ? JIT_OUTPUT_MAX - kept : 0;
    if (take > n) take = n;
    if (out && take) util_buf_add(out, buf, take);
    kept += take;
  }
  if (out) util_buf_add(out, "", 1);
}

int jit_sh(const char *cmd, util_buf *out) {
  util_buf full = {0};
  /* the braces join the stderr of every command in cmd, not only the last's */
  if (util_buf_printf(&full, "{ %s\n} 2>&1", cmd)) return -1;
  FILE *p = popen(full.data, "r");
  util_buf_free(&full);
  if (!p) return -1;
  jit_slurp(p, out);
  int st = pclose(p);
  return st == -1 ? -1 : jit_code(st);
}

/* gcc's context lines, which say where an error is but not what it is. */
static int jit_context(const char *s, size_t len) {
  static const char *const marks[] = {": In function", ": In member function", "In file included from",
                                      "                 from ", ": At top level:", NULL};
  for (int i = 0; marks[i]; i++) {
    size_t m = strlen(marks[i]);
    for (size_t k = 0; k + m <= len; k++)
      if (!memcmp(s + k, marks[i], m)) return 1;
  }
  return 0;
}

/* gcc's excerpt of the source under a diagnostic ("    2 |   return x;",
 * "      |          ^"): it repeats the line the diagnostic names. */
static int jit_excerpt(const char *s, size_t len) {
  size_t k = 0;
  while (k < len && s[k] == ' ') k++;
  while (k < len && s[k] >= '0' && s[k] <= '9') k++;
  while (k < len && s[k] == ' ') k++;
  return k < len && s[k] == '|';
}

void jit_fold(const char *s, char *out, size_t n) {
  size_t o = 0;
  int lines = 0, leading = 1;
  if (!n) return;
  while (*s && lines < 4 && o + 3 < n) {
    const char *e = strchr(s, '\n');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    if (len && s[len - 1] == '\r') len--;
    if (len && !(leading && jit_context(s, len)) && !jit_excerpt(s, len)) {
      leading = 0;
      if (o) o += (size_t)snprintf(out + o, n - o, "; ");
      if (o < n) o += (size_t)snprintf(out + o, n - o, "%.*s", (int)len, s);
      if (o >= n) o = n - 1;
      lines++;
    }
    if (!e) break;
    s = e + 1;
  }
  out[o < n ? o : n - 1] = 0;
}

int jit_failed(const char *what, const char *cc, int code, const char *output) {
  char folded[1024];
  jit_fold(output ? output : "", folded, sizeof folded);
  return util_err("%s with '%s' failed (exit %d): %s", what, cc, code, folded[0] ? folded : "no output");
}

int jit_run(const char *what, const char *cc, const char *cmd) {
  util_buf out = {0};
  int rc = jit_sh(cmd, &out);
  if (rc) jit_failed(what, cc, rc, out.data);
  util_buf_free(&out);
  return rc ? -1 : 0;
}

pid_t jit_spawn(const char *cmd, const char *log) {
  util_buf full = {0};
  if (util_buf_printf(&full, "exec %s >'%s' 2>&1", cmd, log)) return -1;
  fflush(NULL);
  pid_t c = fork();
  if (c == 0) {
    execl("/bin/sh", "sh", "-c", full.data, (char *)NULL);
    _exit(127);
  }
  util_buf_free(&full);
  if (c < 0) return util_err("cannot start the compiler: %s", cmd), -1;
  return c;
}

int jit_reap(pid_t pid, int *code) {
  int st;
  pid_t w = waitpid(pid, &st, WNOHANG);
  if (w == 0) return 0;
  *code = w < 0 ? -1 : jit_code(st);
  return 1;
}

int jit_failed_log(const char *what, const char *cc, int code, const char *log) {
  util_buf out = {0};
  FILE *f = fopen(log, "rb");
  if (f) {
    jit_slurp(f, &out);
    fclose(f);
  }
  jit_failed(what, cc, code, out.data);
  util_buf_free(&out);
  return -1;
}

/* ---- cache keys -------------------------------------------------------------------- */

static void jit_hex(util_sha256 *s, char key[65]) {
  uint8_t digest[32];
  util_sha256_final(s, digest);
  for (int i = 0; i < 32; i++) snprintf(key + 2 * i, 3, "%02x", digest[i]);
}

void jit_key(const char *src, size_t len, const char *cc_id, const char *flags, char key[65]) {
  util_sha256 s;
  util_sha256_init(&s);
  util_sha256_update(&s, src, len);
  util_sha256_update(&s, "\n", 1);
  util_sha256_update(&s, cc_id, strlen(cc_id));
  util_sha256_update(&s, "\n", 1);
  util_sha256_update(&s, flags, strlen(flags));
  util_sha256_update(&s, "\n", 1);
  util_cpu_id(&s);
  jit_hex(&s, key);
}

/* (no separators between the parts: the historical key, kept so that a
 * GPU's cached modules stay valid) */
void jit_key_nvrtc(const char *src, size_t len, const char *arch, const char *nvrtc_version, char key[65]) {
  util_sha256 s;
  util_sha256_init(&s);
  util_sha256_update(&s, src, len);
  util_sha256_update(&s, "\n", 1);
  util_sha256_update(&s, arch, strlen(arch));
  for (int i = 0; jit_nvrtc_options[i]; i++) util_sha256_update(&s, jit_nvrtc_options[i], strlen(jit_nvrtc_options[i]));
  util_sha256_update(&s, nvrtc_version, strlen(nvrtc_version));
  jit_hex(&s, key);
}
