/* export: see export.h. The Lua generator renders every source (the
 * inference step through emit.infer_body, the rest from templates/export/);
 * this file gathers the inputs into a temp directory next to the output,
 * runs the compiler there and renames the result into place. */
#include "export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "embed.h"
#include "gen.h"
#include "lx.h"
#include "tok.h"
#include "util.h"

/* cpu.c's code-generation flags without -fPIC -shared: the inference step
 * then compiles to the same arithmetic as in the JIT model `gptc sample`
 * uses, so logits and sampled text agree bit for bit. */
#if defined(__x86_64__)
#define EXPORT_FLAGS "-O3 -march=native -mprefer-vector-width=512 -fno-math-errno -fopenmp"
#else
#define EXPORT_FLAGS "-O3 -march=native -fno-math-errno -fopenmp"
#endif
/* PCRE2 (the GPT-2 pre-tokenizer regex) from libpcre2-8.a; libm and libgomp
 * stay shared, as libc does. */
#define EXPORT_LIBS "-Wl,-Bstatic -lpcre2-8 -Wl,-Bdynamic -lm"
#define EXPORT_TEMPLATES "templates/export/"

/* The runtime sources the program compiles, embedded in gptc at build time
 * (CMakeLists.txt) so an installed gptc exports without a source tree. */
static const char *const export_runtime[] = {
    "cli.c", "cli.h", "embed.c", "embed.h", "sample.c", "sample.h", "tok.c", "tok.h", "tok_bpe.c", "tok_internal.h",
    "tok_map.c", "tok_simple.c", "tok_unicode.c", "tok_vocab.c", "util.c", "util.h", NULL,
};

typedef struct {
  const char *ckpt, *out;
  ckpt_meta meta;
  cfg_t cfg;
  char dir[4096]; /* the temp build directory, "" until created */
  lua_State *L;
  int env; /* stack index of the templates' environment */
} export_job;

static const char *export_cc(void) {
  const char *cc = getenv("CC");
  return cc && *cc ? cc : GPTC_C_COMPILER_DEFAULT;
}

/* `s` in single quotes for the shell. */
static int export_shq(util_buf *b, const char *s) {
  if (util_buf_add(b, "'", 1)) return -1;
  for (; *s; s++)
    if (*s == '\'' ? util_buf_add(b, "'\\''", 4) : util_buf_add(b, s, 1)) return -1;
  return util_buf_add(b, "'", 1);
}

/* Runs `cmd` through the shell; `msg` gets its first output lines joined
 * by "; " (for one-line errors). Returns the exit status, -1 if it did not
 * run. */
static int export_sh(const char *cmd, char *msg, size_t n) {
  msg[0] = 0;
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  char line[1024];
  size_t o = 0;
  int lines = 0;
  while (fgets(line, sizeof line, p)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!line[0] || lines == 3 || o + 3 >= n) continue;
    o += (size_t)snprintf(msg + o, n - o, "%s%s", lines++ ? "; " : "", line);
    if (o >= n) o = n - 1;
  }
  int st = pclose(p);
  return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int export_check_cc(const char *cc) {
  char cmd[1200], msg[512];
  snprintf(cmd, sizeof cmd, "%s --version 2>&1", cc);
  int rc = export_sh(cmd, msg, sizeof msg);
  if (rc == 0) return 0;
  return util_err("C compiler '%s' does not run (%s): install one or set CC", cc, msg[0] ? msg : "no output");
}

/* ---- files in the build directory ------------------------------------------ */

/* Errors name the output: the build directory is gone by the time the
 * message is read. */
static int export_write(const export_job *j, const char *name, const void *data, size_t len) {
  char path[4400];
  snprintf(path, sizeof path, "%s/%s", j->dir, name);
  FILE *f = fopen(path, "wb");
  int bad = !f || (len && fwrite(data, 1, len, f) != len);
  int err = errno;
  if (f && fclose(f) && !bad) bad = 1, err = errno;
  if (bad) return util_err("%s: cannot write %s in the build directory: %s", j->out, name, strerror(err));
  return 0;
}

static void export_rmdir(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    char path[4400];
    while ((e = readdir(d)))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
      }
    closedir(d);
  }
  rmdir(dir);
}

/* A fresh directory next to the output, so the final rename stays on one
 * file system and is atomic. */
static int export_mkdir(export_job *j) {
  const char *slash = strrchr(j->out, '/');
  char parent[4000];
  if (!slash) snprintf(parent, sizeof parent, ".");
  else if (slash == j->out) snprintf(parent, sizeof parent, "/");
  else snprintf(parent, sizeof parent, "%.*s", (int)(slash - j->out), j->out);
  snprintf(j->dir, sizeof j->dir, "%s/.gptc-export.XXXXXX", parent);
  if (!mkdtemp(j->dir)) {
    j->dir[0] = 0;
    return util_err("%s: cannot create files in %s: %s", j->out, parent, strerror(errno));
  }
  return 0;
}

static int export_sha256_file(const char *path, char hex[65]) {
  FILE *f = fopen(path, "rb");
  if (!f) return util_err("%s: cannot open: %s", path, strerror(errno));
  enum { CHUNK = 1 << 20 };
  char *buf = util_malloc(CHUNK, "checksum buffer");
  if (!buf) return fclose(f), -1;
  util_sha256 s;
  util_sha256_init(&s);
  size_t n;
  while ((n = fread(buf, 1, CHUNK, f)) > 0) util_sha256_update(&s, buf, n);
  int bad = ferror(f);
  fclose(f);
  free(buf);
  if (bad) return util_err("%s: read error", path);
  uint8_t d[32];
  util_sha256_final(&s, d);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
  return 0;
}

/* The weights as the generated code lays them out (raw float32). */
static int export_weights(const export_job *j) {
  gptc_tensor *ts;
  int n;
  size_t n_params;
  if (gen_tensors(&j->cfg, &ts, &n, &n_params)) return -1;
  float *params = util_calloc(n_params ? n_params : 1, sizeof(float), "model parameters");
  int rc = params ? ckpt_load_params(j->ckpt, ts, n, n_params, params, NULL, NULL) : -1;
  if (rc == 0) rc = ckpt_check_finite(j->ckpt, ts, n, params);
  if (rc == 0) rc = export_write(j, "weights.bin", params, n_params * sizeof(float));
  free(params);
  gen_tensors_free(ts, n);
  return rc;
}

/* ---- the generator side -------------------------------------------------------- */

static void export_setstr(lua_State *L, int t, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, t, k);
}

/* Pushes the templates' environment: the derived shapes S, the config
 * table, the generated inference step and what --info prints. */
static int export_env(export_job *j, const char *sha) {
  lua_State *L = j->L;
  cfg_push(L, &j->cfg);
  int cfg = lua_gettop(L);
  lua_newtable(L);
  j->env = lua_gettop(L);
  lua_pushvalue(L, cfg);
  lua_setfield(L, j->env, "cfg");
  lua_pushvalue(L, cfg);
  if (lx_call(L, "shapes", "derive", 1, 1))
    return util_err("%s: the generator rejects this model: %s", j->ckpt, util_errmsg());
  lua_setfield(L, j->env, "S");
  lua_pushvalue(L, cfg);
  lua_newtable(L);
  export_setstr(L, lua_gettop(L), "real", "float");
  lua_pushinteger(L, gen_vec_bytes()); /* the width gptc sample's model has: the same inference step */
  lua_setfield(L, -2, "vec_bytes");
  if (lx_call(L, "emit", "infer_body", 2, 1))
    return util_err("%s: the generator rejects this model: %s", j->ckpt, util_errmsg());
  lua_setfield(L, j->env, "infer_src");

  const char *base = strrchr(j->out, '/'), *cbase = strrchr(j->ckpt, '/');
  char step[32];
  snprintf(step, sizeof step, "%llu", (unsigned long long)j->meta.step);
  export_setstr(L, j->env, "program", base ? base + 1 : j->out);
  export_setstr(L, j->env, "ckpt_name", cbase ? cbase + 1 : j->ckpt);
  export_setstr(L, j->env, "ckpt_sha256", sha);
  export_setstr(L, j->env, "step", step);
  export_setstr(L, j->env, "config", j->meta.config_src);
  export_setstr(L, j->env, "version", GPTC_VERSION);
  export_setstr(L, j->env, "tokenizer", cfg_tokenizer_name(j->cfg.tokenizer));
  lua_pushinteger(L, j->cfg.tokenizer);
  lua_setfield(L, j->env, "tok_kind");
  static const struct {
    const char *name;
    int id;
  } kinds[] = {{"CFG_TOK_GPT2", CFG_TOK_GPT2}, {"CFG_TOK_CHAR", CFG_TOK_CHAR}, {"CFG_TOK_WORD", CFG_TOK_WORD}};
  lua_newtable(L);
  for (int i = 0; i < 3; i++) {
    lua_newtable(L);
    export_setstr(L, lua_gettop(L), "enum", kinds[i].name);
    export_setstr(L, lua_gettop(L), "name", cfg_tokenizer_name(kinds[i].id));
    lua_pushinteger(L, kinds[i].id);
    lua_setfield(L, -2, "id");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, j->env, "tok_kinds");
  lua_newtable(L);
  lua_setfield(L, j->env, "files");
  return 0;
}

/* Writes `data` as build-directory file emb_<i>.bin and lists it in
 * env.files under `name` (data.S embeds it, embed_index.c indexes it). */
static int export_embed(export_job *j, const char *name, const char *data, size_t len) {
  lua_State *L = j->L;
  lua_getfield(L, j->env, "files");
  int i = (int)lua_rawlen(L, -1) + 1;
  char file[32];
  snprintf(file, sizeof file, "emb_%d.bin", i);
  lua_newtable(L);
  export_setstr(L, lua_gettop(L), "name", name);
  export_setstr(L, lua_gettop(L), "path", file);
  lua_rawseti(L, -2, i);
  lua_pop(L, 1);
  return export_write(j, file, data, len);
}

/* The tokenizer's data: every embedded data/gpt2/ table, or the vocabulary
 * blob from the checkpoint as the file "vocab". */
static int export_tokenizer_files(export_job *j) {
  if (j->cfg.tokenizer != CFG_TOK_GPT2) return export_embed(j, "vocab", j->meta.vocab, j->meta.vocab_len);
  for (const embed_file *f = embed_files; f->name; f++)
    if (!strncmp(f->name, "data/gpt2/", 10) && export_embed(j, f->name, f->start, (size_t)(f->end - f->start)))
      return -1;
  return 0;
}

static int export_render(export_job *j, const char *file) {
  lua_State *L = j->L;
  char name[128];
  snprintf(name, sizeof name, EXPORT_TEMPLATES "%s", file);
  lua_pushstring(L, name);
  lua_pushvalue(L, j->env);
  if (lx_call(L, "template", "render", 2, 1)) return -1;
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  int rc = export_write(j, file, s, len);
  lua_pop(L, 1);
  return rc;
}

static int export_sources(export_job *j) {
  for (int i = 0; export_runtime[i]; i++) {
    char name[128];
    const char *data;
    size_t len;
    int owned;
    snprintf(name, sizeof name, "runtime/%s", export_runtime[i]);
    if (embed_get(name, &data, &len, &owned)) return -1;
    int rc = export_write(j, export_runtime[i], data, len);
    if (owned) free((void *)data);
    if (rc) return -1;
  }
  static const char *const rendered[] = {"cfg.h", "model.c", "main.c", "embed_index.c", "data.S", NULL};
  for (int i = 0; rendered[i]; i++)
    if (export_render(j, rendered[i])) return -1;
  return 0;
}

static int export_compile(const export_job *j, const char *cc) {
  util_buf cmd = {0};
  int rc = util_buf_add(&cmd, "cd ", 3) || export_shq(&cmd, j->dir) || util_buf_add(&cmd, " && TMPDIR=", 11) ||
           export_shq(&cmd, j->dir) || util_buf_printf(&cmd, " %s %s -I. -o program main.c model.c", cc, EXPORT_FLAGS);
  for (int i = 0; export_runtime[i] && !rc; i++)
    if (strstr(export_runtime[i], ".c")) rc = util_buf_printf(&cmd, " %s", export_runtime[i]);
  if (rc || util_buf_printf(&cmd, " embed_index.c data.S %s 2>&1", EXPORT_LIBS)) {
    util_buf_free(&cmd);
    return -1;
  }
  char msg[1024];
  int st = export_sh(cmd.data, msg, sizeof msg);
  util_buf_free(&cmd);
  if (st != 0)
    return util_err("%s: compiling the executable with '%s' failed (exit %d): %s", j->out, cc, st,
                    msg[0] ? msg : "no output");
  return 0;
}

/* The linker's output reaches the disk before the rename publishes it, so
 * a crash never leaves a renamed but empty executable. */
static int export_fsync(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0 || fsync(fd)) {
    int err = errno;
    if (fd >= 0) close(fd);
    errno = err;
    return -1;
  }
  return close(fd);
}

/* Checks the checkpoint's metadata, config and vocabulary (cheap) before
 * anything is written. */
static int export_open(export_job *j) {
  if (ckpt_load_meta(j->ckpt, &j->meta)) return -1;
  char where[4200];
  snprintf(where, sizeof where, "%s (config)", j->ckpt);
  if (cfg_load_data(j->meta.config_src, where, &j->cfg)) return -1;
  tok_t *tok = j->cfg.tokenizer == CFG_TOK_GPT2 ? tok_gpt2_new()
                                                 : tok_from_vocab(j->cfg.tokenizer, j->meta.vocab, j->meta.vocab_len);
  if (!tok) return util_err("%s: tokenizer: %s", j->ckpt, util_errmsg());
  int V = tok_vocab_size(tok);
  tok_free(tok);
  if (V != j->cfg.vocab_size)
    return util_err("%s: vocabulary has %d entries but the config says vocab_size %d", j->ckpt, V,
                    j->cfg.vocab_size);
  return 0;
}

int export_program(const char *ckpt, const char *out) {
  export_job j;
  memset(&j, 0, sizeof j);
  j.ckpt = ckpt;
  j.out = out;
  const char *cc = export_cc();
  char sha[65];
  int rc = -1;
  if (util_is_dir(out)) {
    util_err("%s: is a directory (name the executable to write)", out);
    goto done;
  }
  if (export_open(&j)) goto done;
  if (!(j.L = lx_new())) goto done;
  if (export_check_cc(cc) || export_sha256_file(ckpt, sha) || export_env(&j, sha)) goto done;
  if (export_mkdir(&j) || export_weights(&j) || export_tokenizer_files(&j) || export_sources(&j) ||
      export_compile(&j, cc))
    goto done;
  char built[4200];
  snprintf(built, sizeof built, "%s/program", j.dir);
  if (export_fsync(built) || rename(built, out)) {
    util_err("%s: cannot move the executable into place: %s", out, strerror(errno));
    goto done;
  }
  util_fsync_dir_of(out);
  rc = 0;
done:
  if (j.dir[0]) export_rmdir(j.dir);
  if (j.L) lua_close(j.L);
  ckpt_meta_free(&j.meta);
  return rc;
}
