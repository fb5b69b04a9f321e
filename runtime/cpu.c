/* cpu: see cpu.h. The compiler, its flags and the cache key are jit.c's
 * (the key hashes the source, the compiler identity and the flags, so a
 * changed generator, compiler or flag set never reuses a stale object);
 * this file decides what is compiled and where it is cached. A compile goes
 * to a temp name and is renamed into place, so concurrent runs never see a
 * partial file. */
#include "cpu.h"

#include <dlfcn.h>
#include <elf.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gen.h"
#include "jit.h"
#include "util.h"

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

static int cpu_compile(const char *cc, const char *src_path, const char *so_path) {
  char tmp[4200], cmd[9000], what[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", so_path, (long)getpid());
  snprintf(cmd, sizeof cmd, "%s " JIT_FLAGS_SO " -o '%s' '%s' -lm", cc, tmp, src_path);
  snprintf(what, sizeof what, "compiling %s", src_path);
  if (jit_run(what, cc, cmd)) {
    unlink(tmp);
    return -1;
  }
  return cpu_store(tmp, so_path);
}

int cpu_build(const char *src, size_t len, const char *kind, cpu_check_fn check, void *ctx, cpu_object *obj) {
  memset(obj, 0, sizeof *obj);
  char id[256];
  const char *cc = jit_cc(0);
  /* a compiler that does not run is named before anything is written */
  if (jit_cc_id(cc, id, sizeof id)) return jit_cc_check(cc, 0);
  char key[65];
  jit_key(src, len, id, JIT_FLAGS_SO, key);

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
 * compiler identity, JIT_FLAGS_OBJ, this CPU: jit_key), so a config that keeps a
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
  int cc_bad; /* $CC does not run: the keys are computed, nothing can be compiled */
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
  p->cc = jit_cc(0);
  p->cc_bad = jit_cc_id(p->cc, p->cc_id, sizeof p->cc_id) != 0;
  char dir[4000];
  snprintf(dir, sizeof dir, "%s/obj", util_cache_dir());
  util_buf all = {0};
  util_buf_add(&all, "gptc model of units\n", 20);
  for (int i = 0; i < p->n; i++) {
    jit_key(p->u[i].src, p->u[i].len, p->cc_id, JIT_FLAGS_OBJ, p->key[i]);
    snprintf(p->path[i], sizeof p->path[i], "%s/%s.o", dir, p->key[i]);
    util_buf_add(&all, p->key[i], 64);
    util_buf_add(&all, "\n", 1);
  }
  jit_key(all.data, all.len, p->cc_id, JIT_FLAGS_SO, p->mkey);
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
      char src_path[4200], tmp[4300], log[4400], cmd[13000];
      snprintf(src_path, sizeof src_path, "%.*s.c", (int)strlen(p->path[i]) - 2, p->path[i]);
      if (util_write_file_atomic(src_path, p->u[i].src, p->u[i].len)) {
        rc = util_err("cannot write the generated source: %s", util_errmsg());
        break;
      }
      /* the compiler's output goes to PATH.tmp.PID.log, read on failure */
      snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p->path[i], (long)getpid());
      snprintf(log, sizeof log, "%s.log", tmp);
      snprintf(cmd, sizeof cmd, "%s " JIT_FLAGS_OBJ " -o '%s' '%s'", p->cc, tmp, src_path);
      pid_t c = jit_spawn(cmd, log);
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
      int code;
      if (!jit_reap(pid[i], &code)) continue;
      done = 1;
      pid[i] = 0;
      running--;
      char tmp[4300], log[4400];
      snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p->path[i], (long)getpid());
      snprintf(log, sizeof log, "%s.log", tmp);
      if (code == 0 && !rc) {
        if (cpu_store(tmp, p->path[i])) rc = -1;
      } else if (!rc) {
        char what[4400];
        snprintf(what, sizeof what, "compiling kernel %s from %.*s.c", p->u[i].name, (int)strlen(p->path[i]) - 2,
                 p->path[i]);
        rc = jit_failed_log(what, p->cc, code, log);
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
  int hn = snprintf(head, sizeof head, "%s " JIT_FLAGS_SO " -o '%s'", p->cc, tmp);
  util_buf_add(&cmd, head, (size_t)hn);
  for (int i = 0; i < p->n; i++) {
    util_buf_add(&cmd, " '", 2);
    util_buf_add(&cmd, p->path[i], strlen(p->path[i]));
    util_buf_add(&cmd, "'", 1);
  }
  util_buf_add(&cmd, " -lm", 5); /* with the NUL */
  char what[4300];
  snprintf(what, sizeof what, "linking %s", so_path);
  int rc = cmd.data ? jit_run(what, p->cc, cmd.data) : -1;
  util_buf_free(&cmd);
  if (rc) {
    unlink(tmp);
    return -1;
  }
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
    /* compiling or linking needs a compiler that runs: one clear line if not */
    if (p.cc_bad) rc = jit_cc_check(p.cc, 0);
    int *todo = rc ? NULL : util_calloc((size_t)p.n, sizeof *todo, "unit list");
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
