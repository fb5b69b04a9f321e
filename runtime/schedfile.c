/* schedfile: see schedfile.h. */
#include "schedfile.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void sched_path(char *out, size_t n) {
  util_sha256 s;
  uint8_t d[32];
  util_sha256_init(&s);
  util_cpu_id(&s);
  char more[128];
  snprintf(more, sizeof more, "\nprocessors %d vector bytes %d gptc %s\n", omp_get_num_procs(), util_vec_bytes(),
           GPTC_VERSION);
  util_sha256_update(&s, more, strlen(more));
  util_sha256_final(&s, d);
  char key[17];
  for (int i = 0; i < 8; i++) snprintf(key + 2 * i, 3, "%02x", d[i]);
  snprintf(out, n, "%s/tune/%s.txt", util_cache_dir(), key);
}

/* " \t" trimmed copy of [s, e) into out (n bytes); 0 when it does not fit */
static int sched_copy(char *out, size_t n, const char *s, const char *e) {
  while (s < e && (*s == ' ' || *s == '\t')) s++;
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
  if ((size_t)(e - s) >= n) return 0;
  memcpy(out, s, (size_t)(e - s));
  out[e - s] = 0;
  return 1;
}

/* One line into *x; NULL when it is a good entry, else why not. */
static const char *sched_parse_line(const char *line, const char *end, sched_entry *x) {
  memset(x, 0, sizeof *x);
  const char *hash = memchr(line, '#', (size_t)(end - line));
  const char *body_end = hash ? hash : end;
  const char *sp = line;
  while (sp < body_end && *sp != ' ' && *sp != '\t') sp++;
  if (!sched_copy(x->name, sizeof x->name, line, sp) ||
      (strncmp(x->name, "gemm_", 5) && strncmp(x->name, "attention_", 10)))
    return "the first word must be a GEMM instance's name (gemm_...) or an attention instance's (attention_...)";
  for (const char *c = x->name; *c; c++)
    if (!(*c == '_' || (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z')))
      return "an instance's name has only a-z, 0-9 and _";
  if (!sched_copy(x->sched, sizeof x->sched, sp, body_end) || !x->sched[0])
    return "a schedule ('mr=6 nv=2 ...' or '-') must follow the name";
  for (const char *c = x->sched; *c; c++)
    if (!(*c == ' ' || *c == '=' || *c == '-' || (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z')))
      return "a schedule has only field=number words";
  if (hash && !sched_copy(x->note, sizeof x->note, hash + 1, end)) x->note[0] = 0;
  return NULL;
}

int sched_load(sched_file *f) {
  memset(f, 0, sizeof *f);
  sched_path(f->path, sizeof f->path);
  if (!util_file_exists(f->path)) return 0;
  char *data;
  size_t len;
  if (util_read_file(f->path, &data, &len)) return util_err("tuned schedules %s: %s", f->path, util_errmsg());
  const char *p = data, *end = data + len;
  int lineno = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    lineno++;
    const char *q = p;
    while (q < le && (*q == ' ' || *q == '\t')) q++;
    if (q < le && *q != '#' && *q != '\r') {
      sched_entry x;
      const char *why = sched_parse_line(q, le, &x);
      if (why) fprintf(stderr, "gptc: %s:%d: line ignored: %s\n", f->path, lineno, why);
      else if (sched_set(f, x.name, x.sched, x.note)) {
        free(data);
        sched_free(f);
        return -1;
      }
    }
    p = le + (nl ? 1 : 0);
  }
  free(data);
  return 0;
}

const sched_entry *sched_find(const sched_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->e[i].name, name)) return &f->e[i];
  return NULL;
}

int sched_set(sched_file *f, const char *name, const char *sched, const char *note) {
  sched_entry *x = (sched_entry *)sched_find(f, name);
  if (!x) {
    if (f->n == f->cap) {
      int cap = f->cap ? 2 * f->cap : 32;
      sched_entry *e = util_realloc(f->e, (size_t)cap * sizeof *e, "tuned schedules");
      if (!e) return -1;
      f->e = e, f->cap = cap;
    }
    x = &f->e[f->n++];
  }
  memset(x, 0, sizeof *x);
  snprintf(x->name, sizeof x->name, "%s", name);
  snprintf(x->sched, sizeof x->sched, "%s", sched);
  snprintf(x->note, sizeof x->note, "%s", note ? note : "");
  return 0;
}

static int sched_cmp(const void *a, const void *b) {
  return strcmp(((const sched_entry *)a)->name, ((const sched_entry *)b)->name);
}

/* "model name" of /proc/cpuinfo, for the file's header */
static void sched_cpu_name(char *out, size_t n) {
  snprintf(out, n, "unknown CPU");
  FILE *p = fopen("/proc/cpuinfo", "r");
  if (!p) return;
  char line[1024];
  while (fgets(line, sizeof line, p)) {
    if (strncmp(line, "model name", 10)) continue;
    char *c = strchr(line, ':');
    if (c) sched_copy(out, n, c + 1, line + strcspn(line, "\n"));
    break;
  }
  fclose(p);
}

int sched_save(const sched_file *f) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/tune", util_cache_dir());
  if (util_mkdir_p(dir)) return util_err("cache directory %s: %s", dir, util_errmsg());
  sched_entry *e = util_malloc((size_t)(f->n ? f->n : 1) * sizeof *e, "tuned schedules");
  if (!e) return -1;
  if (f->n) memcpy(e, f->e, (size_t)f->n * sizeof *e);
  qsort(e, (size_t)f->n, sizeof *e, sched_cmp);
  char cpu[256];
  sched_cpu_name(cpu, sizeof cpu);
  util_buf b = {0};
  util_buf_printf(&b,
                  "# gptc %s: GEMM schedules measured by `gptc tune` on this host: %s, %d processors, %d-byte vectors.\n"
                  "# One line a GEMM or attention instance: its name, its schedule (fields: gen/cpu/schedule.lua; '-': the heuristic's),\n"
                  "# '#' and what was measured. Every schedule sums in the same order, so an edit changes speed, not results.\n",
                  GPTC_VERSION, cpu, omp_get_num_procs(), util_vec_bytes());
  for (int i = 0; i < f->n; i++)
    util_buf_printf(&b, "%s %s%s%s\n", e[i].name, e[i].sched, e[i].note[0] ? " # " : "", e[i].note);
  free(e);
  int rc = b.data ? util_write_file_atomic(f->path, b.data, b.len) : util_err("out of memory: tuned schedules");
  util_buf_free(&b);
  return rc;
}

void sched_free(sched_file *f) {
  free(f->e);
  f->e = NULL;
  f->n = f->cap = 0;
}
