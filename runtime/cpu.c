/* cpu: see cpu.h. The cache key is the SHA-256 of the source, the compiler
 * identity and the flags, so a changed generator, compiler or flag set
 * never reuses a stale object; a compile goes to a temp name and is renamed
 * into place, so concurrent runs never see a partial file. */
#include "cpu.h"

#include <dlfcn.h>
#include <elf.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gen.h"
#include "util.h"

/* No -ffast-math: NaN checks and exact IEEE behaviour matter. -fno-math-errno
 * only lets sqrt vectorize (errno is never read). */
#if defined(__x86_64__)
#define CPU_CFLAGS "-O3 -march=native -mprefer-vector-width=512 -fno-math-errno -fopenmp -fPIC"
#else
#define CPU_CFLAGS "-O3 -march=native -fno-math-errno -fopenmp -fPIC"
#endif
/* a whole source straight to a shared object; also the link of the units */
#define CPU_FLAGS CPU_CFLAGS " -shared"
/* one unit to an object: the same code generation flags as CPU_FLAGS */
#define CPU_OFLAGS CPU_CFLAGS " -c"

static const char *cpu_cc(void) {
  const char *cc = getenv("CC");
  return cc && *cc ? cc : GPTC_C_COMPILER_DEFAULT;
}

/* Runs `cmd` through the shell, capturing stdout and stderr together.
 * Returns the exit status (-1 if it could not run). */
static int cpu_run(const char *cmd, util_buf *out) {
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0)
    if (out) util_buf_add(out, buf, n);
  if (out) util_buf_add(out, "", 1);
  int st = pclose(p);
  return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The first `max_lines` lines of `s`, newlines folded to "; ". */
static void cpu_fold(const char *s, int max_lines, char *out, size_t n) {
  size_t o = 0;
  int lines = 0;
  while (*s && lines < max_lines && o + 3 < n) {
    const char *e = strchr(s, '\n');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    if (len) {
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

/* `$CC --version`'s first line: the compiler identity in the cache key. A
 * compiler that does not run gets its error output instead; the compile
 * step then fails with a message naming the source. */
static void cpu_compiler_id(const char *cc, char *id, size_t n) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s --version 2>&1", cc);
  util_buf out = {0};
  int rc = cpu_run(cmd, &out);
  const char *text = out.data ? out.data : "";
  const char *e = strchr(text, '\n');
  snprintf(id, n, "%s%.*s", rc ? "unusable: " : "", (int)(e ? e - text : (long)strlen(text)), text);
  util_buf_free(&out);
}

/* 1 when `path` is a whole 64-bit ELF object: every segment and the section
 * header table lie inside the file. dlopen maps a truncated object without
 * complaint and the process dies of SIGBUS on first touch, so a cached
 * object is checked before it is opened. */
static int cpu_elf_complete(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  int ok = 0;
  Elf64_Ehdr eh;
  if (fseek(f, 0, SEEK_END) == 0) {
    long size = ftell(f);
    rewind(f);
    ok = size > 0 && fread(&eh, sizeof eh, 1, f) == 1 && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
         eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr) &&
         eh.e_phoff + (uint64_t)eh.e_phnum * eh.e_phentsize <= (uint64_t)size &&
         eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize <= (uint64_t)size;
    for (int i = 0; ok && i < eh.e_phnum; i++) {
      Elf64_Phdr ph;
      ok = fseek(f, (long)(eh.e_phoff + (uint64_t)i * sizeof ph), SEEK_SET) == 0 && fread(&ph, sizeof ph, 1, f) == 1 &&
           (ph.p_type != PT_LOAD || ph.p_offset + ph.p_filesz <= (uint64_t)size);
    }
  }
  fclose(f);
  return ok;
}

/* dlopen + the caller's check; -1 with util_err (and nothing left open). */
static int cpu_open(const char *so_path, cpu_check_fn check, void *ctx, void **handle) {
  *handle = NULL;
  if (!cpu_elf_complete(so_path)) return util_err("%s: not a complete shared object", so_path);
  void *h = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
  if (!h) return util_err("%s: cannot load the compiled object: %s", so_path, dlerror());
  if (check && check(h, so_path, ctx)) {
    dlclose(h);
    return -1;
  }
  *handle = h;
  return 0;
}

/* Moves what the compiler wrote at tmp into the cache at path and seals it.
 * The hash is of the bytes the compiler wrote, read before the rename so a
 * concurrent run's object is never sealed with this one's hash. */
static int cpu_store(const char *tmp, const char *path) {
  char *bytes;
  size_t n;
  if (util_read_file(tmp, &bytes, &n)) {
    unlink(tmp);
    return util_err("%s: cannot read the compiled object: %s", path, util_errmsg());
  }
  if (rename(tmp, path)) {
    free(bytes);
    unlink(tmp);
    return util_err("%s: cannot move the compiled object into the cache", path);
  }
  util_fsync_dir_of(path);
  int sealed = util_cache_seal(path, bytes, n);
  free(bytes);
  if (sealed) return util_err("%s: cannot write its content hash: %s", path, util_errmsg());
  return 0;
}

/* The error of a failed compile or link: its first lines of output. */
static int cpu_failed(const char *what, const char *cc, int rc, const char *output) {
  char folded[1024];
  cpu_fold(output ? output : "", 4, folded, sizeof folded);
  return util_err("%s with '%s' failed (exit %d): %s", what, cc, rc, folded[0] ? folded : "no output");
}

static int cpu_compile(const char *cc, const char *src_path, const char *so_path) {
  char tmp[4200], cmd[9000], what[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", so_path, (long)getpid());
  snprintf(cmd, sizeof cmd, "%s %s -o '%s' '%s' -lm 2>&1", cc, CPU_FLAGS, tmp, src_path);
  util_buf out = {0};
  int rc = cpu_run(cmd, &out);
  if (rc != 0) {
    snprintf(what, sizeof what, "compiling %s", src_path);
    cpu_failed(what, cc, rc, out.data);
    util_buf_free(&out);
    unlink(tmp);
    return -1;
  }
  util_buf_free(&out);
  return cpu_store(tmp, so_path);
}

const char *cpu_compiler(char *id, size_t n) {
  const char *cc = cpu_cc();
  cpu_compiler_id(cc, id, n);
  return cc;
}

const char *cpu_flags(void) { return CPU_FLAGS; }

/* SHA-256(src, compiler identity, flags, this CPU) as 64 hex digits. */
static void cpu_key(const char *src, size_t len, const char *id, const char *flags, char key[65]) {
  util_sha256 s;
  uint8_t digest[32];
  util_sha256_init(&s);
  util_sha256_update(&s, src, len);
  util_sha256_update(&s, "\n", 1);
  util_sha256_update(&s, id, strlen(id));
  util_sha256_update(&s, "\n", 1);
  util_sha256_update(&s, flags, strlen(flags));
  util_sha256_update(&s, "\n", 1);
  util_cpu_id(&s);
  util_sha256_final(&s, digest);
  for (int i = 0; i < 32; i++) snprintf(key + 2 * i, 3, "%02x", digest[i]);
}

int cpu_build(const char *src, size_t len, const char *kind, cpu_check_fn check, void *ctx, cpu_object *obj) {
  memset(obj, 0, sizeof *obj);
  char id[256];
  const char *cc = cpu_compiler(id, sizeof id);
  char key[65];
  cpu_key(src, len, id, CPU_FLAGS, key);

  char dir[4000];
  snprintf(dir, sizeof dir, "%s/%s", util_cache_dir(), kind);
  if (util_mkdir_p(dir)) return util_err("cache directory %s: %s", dir, util_errmsg());
  snprintf(obj->so_path, sizeof obj->so_path, "%s/%s.so", dir, key);
  snprintf(obj->src_path, sizeof obj->src_path, "%s/%s.c", dir, key);

  /* a cached object that fails its content hash (damaged, or from a gptc
   * that stored none) is rebuilt with a notice, never loaded; one that
   * fails to load or check (an older ABI) is rebuilt quietly */
  if (util_file_exists(obj->so_path) && util_cache_verify(obj->so_path, NULL, NULL) == 0 &&
      cpu_open(obj->so_path, check, ctx, &obj->handle) == 0) {
    if (!util_file_exists(obj->src_path)) util_write_file_atomic(obj->src_path, src, len);
    return 0;
  }
  util_errclear();
  if (util_write_file_atomic(obj->src_path, src, len))
    return util_err("cannot write the generated source: %s", util_errmsg());
  if (cpu_compile(cc, obj->src_path, obj->so_path)) return -1;
  if (cpu_open(obj->so_path, check, ctx, &obj->handle)) return -1;
  obj->compiled = 1;
  return 0;
}

void cpu_object_close(cpu_object *obj) {
  if (obj->handle) dlclose(obj->handle);
  obj->handle = NULL;
}

/* The model's check: its ABI version and the content hash of its source. */
static int cpu_check_model(void *h, const char *so_path, void *ctx) {
  const char *hash = ctx;
  gptc_model_get_fn get = (gptc_model_get_fn)(uintptr_t)dlsym(h, "gptc_model_get");
  const gptc_model *m = get ? get() : NULL;
  if (!m) return util_err("%s: no gptc_model_get in the compiled model", so_path);
  if (m->abi_version != GPTC_ABI_VERSION)
    return util_err("%s: model ABI version %d, this gptc needs %d", so_path, m->abi_version, GPTC_ABI_VERSION);
  if (!m->hash || strcmp(m->hash, hash) != 0)
    return util_err("%s: content hash does not match the generated source", so_path);
  return 0;
}

/* ---- the model as separately compiled units ------------------------------------
 * Each kernel instance is its own translation unit (gen/cpu/emit.lua M.split),
 * compiled to util_cache_dir()/obj/KEY.o with KEY = SHA-256(unit source,
 * compiler identity, CPU_OFLAGS, this CPU), so a config that keeps a
 * kernel's shapes reuses its object; the model's glue is one more unit.
 * The objects are linked into util_cache_dir()/cpu/MKEY.so, MKEY the hash
 * of the units' keys, so a warm start neither compiles nor links. The
 * numbers are those of the whole source compiled at once (cpu_build): the
 * same text and code generation flags, kernels called through hidden
 * symbols instead of static ones, and no sum spans two units (the glue
 * only passes pointers and returns the loss the loss kernel computed). */

/* 1 when the sealed object at path is there and whole; `notice` prints
 * util_cache_verify's line about a damaged one. */
static int cpu_unit_cached(const char *path, int notice) {
  if (!util_file_exists(path)) return 0;
  if (notice) return util_cache_verify(path, NULL, NULL) == 0;
  char *data;
  size_t n;
  if (util_read_file(path, &data, &n)) return 0;
  int ok = util_cache_check(path, data, n) == NULL;
  free(data);
  return ok;
}

/* The units of cfg with their keys and object paths, and the model's key. */
typedef struct {
  gen_unit *u;
  int n;
  char (*key)[65];
  char (*path)[4200];
  char *src;  /* the whole source (cpu/MKEY.c, what `gptc gen` writes) */
  size_t len;
  char hash[65];
  char mkey[65];
  char cc_id[256];
  const char *cc;
} cpu_units;

static void cpu_units_free(cpu_units *p) {
  gen_units_free(p->u, p->n);
  free(p->key);
  free(p->path);
  free(p->src);
  memset(p, 0, sizeof *p);
}

static int cpu_units_make(const cfg_t *cfg, cpu_units *p) {
  memset(p, 0, sizeof *p);
  if (gen_units(cfg, &p->src, &p->len, p->hash, &p->u, &p->n)) return -1;
  p->key = util_calloc((size_t)p->n, sizeof *p->key, "unit keys");
  p->path = util_calloc((size_t)p->n, sizeof *p->path, "unit paths");
  if (!p->key || !p->path) {
    cpu_units_free(p);
    return -1;
  }
  p->cc = cpu_compiler(p->cc_id, sizeof p->cc_id);
  char dir[4000];
  snprintf(dir, sizeof dir, "%s/obj", util_cache_dir());
  util_buf all = {0};
  util_buf_add(&all, "gptc model of units\n", 20);
  for (int i = 0; i < p->n; i++) {
    cpu_key(p->u[i].src, p->u[i].len, p->cc_id, CPU_OFLAGS, p->key[i]);
    snprintf(p->path[i], sizeof p->path[i], "%s/%s.o", dir, p->key[i]);
    util_buf_add(&all, p->key[i], 64);
    util_buf_add(&all, "\n", 1);
  }
  cpu_key(all.data, all.len, p->cc_id, CPU_FLAGS, p->mkey);
  util_buf_free(&all);
  return 0;
}

static int cpu_online(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

/* Compiles the units whose objects are missing (todo[i] set), up to one
 * compiler per online CPU at a time; every one is finished (or failed)
 * before it returns. -1 with util_err naming the first that failed. */
static int cpu_compile_units(const cpu_units *p, const int *todo) {
  int max = cpu_online(), running = 0, next = 0, rc = 0;
  pid_t *pid = util_calloc((size_t)p->n, sizeof *pid, "compiler processes");
  if (!pid) return -1;
  const struct timespec tick = {0, 2000000};
  for (;;) {
    while (!rc && running < max && next < p->n) {
      int i = next++;
      if (!todo[i]) continue;
      char src_path[4200], tmp[4300], cmd[13000];
      snprintf(src_path, sizeof src_path, "%.*s.c", (int)strlen(p->path[i]) - 2, p->path[i]);
      if (util_write_file_atomic(src_path, p->u[i].src, p->u[i].len)) {
        rc = util_err("cannot write the generated source: %s", util_errmsg());
        break;
      }
      /* the compiler's output goes to PATH.log.PID, read on failure */
      snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p->path[i], (long)getpid());
      snprintf(cmd, sizeof cmd, "exec %s %s -o '%s' '%s' >'%s.log' 2>&1", p->cc, CPU_OFLAGS, tmp, src_path, tmp);
      fflush(NULL);
      pid_t c = fork();
      if (c == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
      }
      if (c < 0) {
        rc = util_err("cannot start the compiler for %s", src_path);
        break;
      }
      pid[i] = c;
      running++;
    }
    if (!running) break;
    /* reap whichever finished; only this function's children are waited on */
    int done = 0;
    for (int i = 0; i < p->n && !done; i++) {
      if (!pid[i]) continue;
      int st;
      pid_t w = waitpid(pid[i], &st, WNOHANG);
      if (w == 0) continue;
      done = 1;
      pid[i] = 0;
      running--;
      char tmp[4300], log[4400];
      snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p->path[i], (long)getpid());
      snprintf(log, sizeof log, "%s.log", tmp);
      int code = w < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      if (code == 0 && !rc) {
        if (cpu_store(tmp, p->path[i])) rc = -1;
      } else if (!rc) {
        char *out = NULL, what[4400];
        size_t n;
        if (util_read_file(log, &out, &n)) out = NULL;
        snprintf(what, sizeof what, "compiling kernel %s from %.*s.c", p->u[i].name, (int)strlen(p->path[i]) - 2,
                 p->path[i]);
        rc = cpu_failed(what, p->cc, code, out);
        free(out);
      }
      unlink(tmp);
      unlink(log);
    }
    if (!done) nanosleep(&tick, NULL);
  }
  free(pid);
  return rc;
}

/* Links the units' objects into so_path (a temp name, then renamed). */
static int cpu_link(const cpu_units *p, const char *so_path) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", so_path, (long)getpid());
  util_buf cmd = {0};
  char head[4600];
  int hn = snprintf(head, sizeof head, "%s %s -o '%s'", p->cc, CPU_FLAGS, tmp);
  util_buf_add(&cmd, head, (size_t)hn);
  for (int i = 0; i < p->n; i++) {
    util_buf_add(&cmd, " '", 2);
    util_buf_add(&cmd, p->path[i], strlen(p->path[i]));
    util_buf_add(&cmd, "'", 1);
  }
  util_buf_add(&cmd, " -lm 2>&1", 10); /* with the NUL */
  util_buf out = {0};
  int rc = cmd.data ? cpu_run(cmd.data, &out) : -1;
  util_buf_free(&cmd);
  if (rc != 0) {
    char what[4300];
    snprintf(what, sizeof what, "linking %s", so_path);
    cpu_failed(what, p->cc, rc, out.data);
    util_buf_free(&out);
    unlink(tmp);
    return -1;
  }
  util_buf_free(&out);
  return cpu_store(tmp, so_path);
}

int cpu_explain(const cfg_t *cfg, cpu_unit_info **units, int *n, int *linked) {
  *units = NULL;
  *n = 0;
  cpu_units p;
  if (cpu_units_make(cfg, &p)) return -1;
  cpu_unit_info *u = util_calloc((size_t)p.n, sizeof *u, "unit list");
  if (!u) {
    cpu_units_free(&p);
    return -1;
  }
  for (int i = 0; i < p.n; i++) {
    snprintf(u[i].name, sizeof u[i].name, "%s", p.u[i].name);
    memcpy(u[i].key, p.key[i], 65);
    u[i].cached = cpu_unit_cached(p.path[i], 0);
  }
  char so_path[4200];
  snprintf(so_path, sizeof so_path, "%s/cpu/%s.so", util_cache_dir(), p.mkey);
  *linked = cpu_unit_cached(so_path, 0);
  *units = u;
  *n = p.n;
  cpu_units_free(&p);
  return 0;
}

int cpu_load(const cfg_t *cfg, cpu_module *mod) {
  memset(mod, 0, sizeof *mod);
  cpu_units p;
  if (cpu_units_make(cfg, &p)) return -1;
  mod->n_units = p.n;
  char dir[4000];
  snprintf(dir, sizeof dir, "%s/cpu", util_cache_dir());
  int rc = 0;
  if (util_mkdir_p(dir)) rc = util_err("cache directory %s: %s", dir, util_errmsg());
  snprintf(mod->so_path, sizeof mod->so_path, "%s/%s.so", dir, p.mkey);
  snprintf(mod->src_path, sizeof mod->src_path, "%s/%s.c", dir, p.mkey);
  snprintf(dir, sizeof dir, "%s/obj", util_cache_dir());
  if (!rc && util_mkdir_p(dir)) rc = util_err("cache directory %s: %s", dir, util_errmsg());
  if (rc) {
    cpu_units_free(&p);
    return -1;
  }
  /* the whole source beside the object, for reading (what `gptc gen` writes) */
  if (!util_file_exists(mod->src_path)) util_write_file_atomic(mod->src_path, p.src, p.len);
  /* a linked model that fails its content hash is relinked with a notice, one
   * that fails to load or check quietly (cpu_build's rules) */
  if (!(util_file_exists(mod->so_path) && util_cache_verify(mod->so_path, NULL, NULL) == 0 &&
        cpu_open(mod->so_path, cpu_check_model, p.hash, &mod->handle) == 0)) {
    util_errclear();
    int *todo = util_calloc((size_t)p.n, sizeof *todo, "unit list");
    if (!todo) rc = -1;
    for (int i = 0; !rc && i < p.n; i++) {
      todo[i] = !cpu_unit_cached(p.path[i], 1);
      mod->units_compiled += todo[i];
    }
    if (!rc && mod->units_compiled) rc = cpu_compile_units(&p, todo);
    free(todo);
    if (!rc) rc = cpu_link(&p, mod->so_path);
    if (!rc) rc = cpu_open(mod->so_path, cpu_check_model, p.hash, &mod->handle);
    mod->compiled = !rc;
  }
  cpu_units_free(&p);
  if (rc) return -1;
  mod->model = ((gptc_model_get_fn)(uintptr_t)dlsym(mod->handle, "gptc_model_get"))();
  return 0;
}

void cpu_unload(cpu_module *mod) {
  if (mod->handle) dlclose(mod->handle);
  mod->handle = NULL;
  mod->model = NULL;
}

void cpu_set_threads(int n) {
  static int initial;
  if (!initial) initial = omp_get_max_threads();
  omp_set_num_threads(n > 0 ? n : initial);
}
