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
#include <unistd.h>

#include "gen.h"
#include "util.h"

/* No -ffast-math: NaN checks and exact IEEE behaviour matter. -fno-math-errno
 * only lets sqrt vectorize (errno is never read). */
#if defined(__x86_64__)
#define CPU_FLAGS "-O3 -march=native -mprefer-vector-width=512 -fno-math-errno -fopenmp -fPIC -shared"
#else
#define CPU_FLAGS "-O3 -march=native -fno-math-errno -fopenmp -fPIC -shared"
#endif

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

static int cpu_compile(const char *cc, const char *src_path, const char *so_path) {
  char tmp[4200], cmd[9000];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", so_path, (long)getpid());
  snprintf(cmd, sizeof cmd, "%s %s -o '%s' '%s' -lm 2>&1", cc, CPU_FLAGS, tmp, src_path);
  util_buf out = {0};
  int rc = cpu_run(cmd, &out);
  if (rc != 0) {
    char folded[1024];
    cpu_fold(out.data ? out.data : "", 4, folded, sizeof folded);
    util_buf_free(&out);
    unlink(tmp);
    return util_err("compiling %s with '%s' failed (exit %d): %s", src_path, cc, rc,
                    folded[0] ? folded : "no output");
  }
  util_buf_free(&out);
  /* the hash is of the bytes the compiler wrote, read before the rename so
   * a concurrent run's object is never sealed with this one's hash */
  char *bytes;
  size_t n;
  if (util_read_file(tmp, &bytes, &n)) {
    unlink(tmp);
    return util_err("%s: cannot read the compiled object: %s", so_path, util_errmsg());
  }
  if (rename(tmp, so_path)) {
    free(bytes);
    unlink(tmp);
    return util_err("%s: cannot move the compiled object into the cache", so_path);
  }
  util_fsync_dir_of(so_path);
  int sealed = util_cache_seal(so_path, bytes, n);
  free(bytes);
  if (sealed) return util_err("%s: cannot write its content hash: %s", so_path, util_errmsg());
  return 0;
}

const char *cpu_compiler(char *id, size_t n) {
  const char *cc = cpu_cc();
  cpu_compiler_id(cc, id, n);
  return cc;
}

const char *cpu_flags(void) { return CPU_FLAGS; }

int cpu_build(const char *src, size_t len, const char *kind, cpu_check_fn check, void *ctx, cpu_object *obj) {
  memset(obj, 0, sizeof *obj);
  char id[256];
  const char *cc = cpu_compiler(id, sizeof id);
  util_sha256 s;
  uint8_t digest[32];
  util_sha256_init(&s);
  util_sha256_update(&s, src, len);
  util_sha256_update(&s, "\n", 1);
  util_sha256_update(&s, id, strlen(id));
  util_sha256_update(&s, "\n", 1);
  util_sha256_update(&s, CPU_FLAGS, strlen(CPU_FLAGS));
  util_sha256_update(&s, "\n", 1);
  util_cpu_id(&s);
  util_sha256_final(&s, digest);
  char key[65];
  for (int i = 0; i < 32; i++) snprintf(key + 2 * i, 3, "%02x", digest[i]);

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

int cpu_load(const cfg_t *cfg, cpu_module *mod) {
  memset(mod, 0, sizeof *mod);
  char *src;
  size_t len;
  char hash[65];
  if (gen_source(cfg, "cpu", &src, &len, hash)) return -1;
  cpu_object obj;
  int rc = cpu_build(src, len, "cpu", cpu_check_model, hash, &obj);
  free(src);
  if (rc) return -1;
  mod->handle = obj.handle;
  mod->model = ((gptc_model_get_fn)(uintptr_t)dlsym(obj.handle, "gptc_model_get"))();
  memcpy(mod->so_path, obj.so_path, sizeof mod->so_path);
  memcpy(mod->src_path, obj.src_path, sizeof mod->src_path);
  mod->compiled = obj.compiled;
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
