/* export: see export.h. The Lua generator renders every source (the
 * inference step through emit.infer_body, the rest from templates/export/);
 * this file gathers the inputs into a temp directory next to the output,
 * runs the compiler there (jit.c) and renames the result into place. */
#include "export.h"
#include "export_target.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "embed.h"
#include "gen.h"
#include "jit.h"
#include "quant.h"
#include "tok.h"
#include "util.h"

/* The compiler, its flag sets (export_target.c's table names them) and its
 * invocation are jit.c's. native has the host JIT's code-generation flags
 * without -fPIC -shared, so its inference
 * step compiles to the same arithmetic as the JIT model `gptc sample` uses
 * and logits agree bit for bit; the other targets compile each kernel
 * variant for its own ISA level and everything else for the baseline.
 * PCRE2 (the GPT-2 pre-tokenizer regex) comes from libpcre2-8.a, only for a
 * gpt2 model. native keeps libc, libm and libgomp shared; every other
 * target is one static file (glibc's libc.a and gcc's libgomp.a). */
/* libevent (evhttp, --serve) is linked statically on every target that has
 * it (docs/serve.md); a cross build without the target's libevent gets
 * templates/export/serve_none.c, whose --serve says so. */
#define EXPORT_LIBS_PCRE2 "-lpcre2-8"
#define EXPORT_LIBS_EVENT "-levent_extra -levent_pthreads -levent_core"
#define EXPORT_TEMPLATES "templates/export/"

/* A char or word model compiles templates/export/tok_bpe_none.c instead of
 * runtime/tok_bpe.c: no GPT-2 tokenizer, no PCRE2. */
#define EXPORT_BPE "tok_bpe.c"
#define EXPORT_RUNTIME "runtime/"

typedef struct {
  const char *ckpt, *out;
  const export_target *target;
  int quant; /* QUANT_F32 or QUANT_Q8: the weights section and the inference step that reads it */
  ckpt_meta meta;
  cfg_t cfg;
  char dir[4096]; /* the temp build directory, "" until created */
  gen_env *env; /* the templates' environment */
  int serve; /* libevent links for this target: serve.c, else serve_none.c */
} export_job;

static int export_gpt2(const export_job *j) { return j->cfg.tokenizer == CFG_TOK_GPT2; }

/* The runtime sources the program compiles are the files embedded under
 * runtime/: CMakeLists.txt's GPTC_EMBED_FILES is their one list, so an
 * installed gptc exports without a source tree. Returns f's name relative
 * to runtime/ if j's program takes f (tok_bpe.c for a gpt2 model only),
 * else NULL. */
static const char *export_runtime_file(const export_job *j, const embed_file *f) {
  if (strncmp(f->name, EXPORT_RUNTIME, strlen(EXPORT_RUNTIME))) return NULL;
  const char *name = f->name + strlen(EXPORT_RUNTIME);
  return export_gpt2(j) || strcmp(name, EXPORT_BPE) ? name : NULL;
}

/* Whether `name` is a C source (the compiler's inputs; headers are not). */
static int export_is_c(const char *name) {
  size_t n = strlen(name);
  return n > 2 && !strcmp(name + n - 2, ".c");
}

/* `s` in single quotes for the shell. */
static int export_shq(util_buf *b, const char *s) {
  if (util_buf_add(b, "'", 1)) return -1;
  for (; *s; s++)
    if (*s == '\'' ? util_buf_add(b, "'\\''", 4) : util_buf_add(b, s, 1)) return -1;
  return util_buf_add(b, "'", 1);
}

static int export_check_cc(export_job *j, const char *cc) {
  if (jit_cc_check(cc, j->target->cross_aarch64)) return -1;
  /* The host's libevent and libpcre2-8 are x86-64: a cross build needs the
   * target's. Without libevent the file is made without --serve (its
   * --serve says why); a gpt2 model cannot do without PCRE2. */
  j->serve = !j->target->cross_aarch64 || jit_cc_has(cc, "libevent_core.a");
  if (!j->target->cross_aarch64 || !export_gpt2(j) || jit_cc_has(cc, "libpcre2-8.a")) return 0;
  return util_err("%s: --target %s with the gpt2 tokenizer needs PCRE2 for that architecture, and '%s' finds no "
                  "libpcre2-8.a (Debian: dpkg --add-architecture arm64; apt-get install libpcre2-dev:arm64)",
                  j->out, j->target->name, cc);
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

/* The weights as the generated code lays them out: raw float32, or
 * quant_q8_pack's blob. */
static int export_weights(const export_job *j) {
  gptc_tensor *ts;
  int n;
  size_t n_params;
  if (gen_tensors(&j->cfg, &ts, &n, &n_params)) return -1;
  float *params = util_calloc(n_params ? n_params : 1, sizeof(float), "model parameters");
  int rc = params ? ckpt_load_params(j->ckpt, ts, n, n_params, params, NULL, NULL) : -1;
  if (rc == 0) rc = ckpt_check_finite(j->ckpt, ts, n, params);
  if (rc == 0 && j->quant == QUANT_Q8) {
    unsigned char *blob;
    size_t bytes;
    rc = quant_q8_pack(&j->cfg, params, &blob, &bytes);
    if (rc == 0) {
      rc = export_write(j, "weights.bin", blob, bytes);
      free(blob);
    }
  } else if (rc == 0) {
    rc = export_write(j, "weights.bin", params, n_params * sizeof(float));
  }
  free(params);
  gen_tensors_free(ts, n);
  return rc;
}

/* ---- the generator side -------------------------------------------------------- */

/* The templates' environment: the derived shapes S, the config table, the
 * generated inference step and what --info prints. */
static int export_env(export_job *j, const char *sha) {
  gen_env *e = j->env = gen_env_new(&j->cfg);
  if (!e) return util_err("%s: the generator rejects this model: %s", j->ckpt, util_errmsg());
  const export_target *t = j->target;
  for (int i = 0; i < t->n_variants; i++) {
    const export_variant *v = &t->variants[i];
    gen_env_append(e, "variants");
    gen_env_item_str(e, "name", v->name);
    gen_env_item_str(e, "suffix", v->suffix);
    gen_env_item_str(e, "what", v->what);
    gen_env_item_str(e, "flags", v->flags);
    gen_env_item_str(e, "cpu_check", v->cpu_check);
  }
  gen_env_str(e, "target", t->name);
  gen_env_bool(e, "x86", t->variants[0].cpu_check != NULL);
  gen_env_str(e, "quant", quant_name(j->quant));
  /* the weights section's size in bytes (data.S) */
  if (j->quant == QUANT_Q8) {
    gen_q8_layout q;
    if (gen_q8_derive(&j->cfg, &q)) return util_err("%s: %s", j->ckpt, util_errmsg());
    gen_env_int(e, "weights_bytes", (long long)q.bytes);
    gen_q8_layout_free(&q);
  } else {
    size_t n_params;
    if (gen_n_params(&j->cfg, &n_params, NULL))
      return util_err("%s: the generator rejects this model: %s", j->ckpt, util_errmsg());
    gen_env_int(e, "weights_bytes", (long long)n_params * 4);
  }

  const char *base = strrchr(j->out, '/'), *cbase = strrchr(j->ckpt, '/');
  char step[32];
  snprintf(step, sizeof step, "%llu", (unsigned long long)j->meta.step);
  gen_env_str(e, "program", base ? base + 1 : j->out);
  gen_env_str(e, "ckpt_name", cbase ? cbase + 1 : j->ckpt);
  gen_env_str(e, "ckpt_sha256", sha);
  gen_env_str(e, "step", step);
  gen_env_str(e, "config", j->meta.config_src);
  gen_env_str(e, "version", GPTC_VERSION);
  gen_env_str(e, "tokenizer", cfg_tokenizer_name(j->cfg.tokenizer));
  gen_env_int(e, "tok_kind", j->cfg.tokenizer);
  static const struct {
    const char *name;
    int id;
  } kinds[] = {{"CFG_TOK_GPT2", CFG_TOK_GPT2}, {"CFG_TOK_CHAR", CFG_TOK_CHAR}, {"CFG_TOK_WORD", CFG_TOK_WORD}};
  for (int i = 0; i < 3; i++) {
    gen_env_append(e, "tok_kinds");
    gen_env_item_str(e, "enum", kinds[i].name);
    gen_env_item_str(e, "name", cfg_tokenizer_name(kinds[i].id));
    gen_env_item_int(e, "id", kinds[i].id);
  }
  return 0;
}

/* Writes `data` as build-directory file emb_<i>.bin and lists it in
 * env.files under `name` (data.S embeds it, embed_index.c indexes it). */
static int export_embed(export_job *j, const char *name, const char *data, size_t len) {
  char file[32];
  snprintf(file, sizeof file, "emb_%d.bin", gen_env_len(j->env, "files") + 1);
  gen_env_append(j->env, "files");
  gen_env_item_str(j->env, "name", name);
  gen_env_item_str(j->env, "path", file);
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

/* templates/export/`file` rendered into the build directory as `as`. */
static int export_render(export_job *j, const char *file, const char *as) {
  char name[128], *s;
  size_t len;
  snprintf(name, sizeof name, EXPORT_TEMPLATES "%s", file);
  if (gen_env_render(j->env, name, &s, &len)) return -1;
  int rc = export_write(j, as, s, len);
  free(s);
  return rc;
}

/* model<suffix>.c for each kernel variant: the inference step generated for
 * the variant's vector width (native: the host's, as gptc sample's model). */
static int export_models(export_job *j) {
  for (int i = 0; i < j->target->n_variants; i++) {
    const export_variant *v = &j->target->variants[i];
    char *src, as[64];
    size_t len;
    if (quant_infer_unit(&j->cfg, j->quant, v->vec_bytes ? v->vec_bytes : gen_vec_bytes(), v->suffix, v->flags, &src,
                         &len))
      return util_err("%s: %s", j->ckpt, util_errmsg());
    snprintf(as, sizeof as, "model%s.c", v->suffix);
    int rc = export_write(j, as, src, len);
    free(src);
    if (rc) return -1;
  }
  return 0;
}

static int export_sources(export_job *j) {
  for (const embed_file *f = embed_files; f->name; f++) {
    const char *name = export_runtime_file(j, f);
    if (name && export_write(j, name, f->start, (size_t)(f->end - f->start))) return -1;
  }
  static const char *const rendered[] = {"cfg.h", "main.c", "cpu_dispatch.c", "serve.h", "embed_index.c", "data.S", NULL};
  for (int i = 0; rendered[i]; i++)
    if (export_render(j, rendered[i], rendered[i])) return -1;
  if (export_render(j, j->serve ? "serve.c" : "serve_none.c", j->serve ? "serve.c" : "serve_none.c")) return -1;
  if (!export_gpt2(j) && export_render(j, "tok_bpe_none.c", "tok_bpe_none.c")) return -1;
  return export_models(j);
}

/* Runs one compiler command in the build directory; errors name the output. */
static int export_cc_run(const export_job *j, const char *cc, util_buf *args) {
  util_buf cmd = {0};
  int rc = util_buf_add(&cmd, "cd ", 3) || export_shq(&cmd, j->dir) || util_buf_add(&cmd, " && TMPDIR=", 11) ||
           export_shq(&cmd, j->dir) || util_buf_printf(&cmd, " %s %s", cc, args->data);
  util_buf_free(args);
  if (rc) return util_buf_free(&cmd), -1;
  char what[4200];
  snprintf(what, sizeof what, "%s: compiling the executable", j->out);
  rc = jit_run(what, cc, cmd.data);
  util_buf_free(&cmd);
  return rc;
}

/* Each kernel variant on its own with its own -march (model<suffix>.o),
 * then the rest with the target's baseline flags, linked into `program`. */
static int export_compile(const export_job *j, const char *cc) {
  const export_target *t = j->target;
  for (int i = 0; i < t->n_variants; i++) {
    const char *sfx = t->variants[i].suffix;
    util_buf a = {0};
    if (util_buf_printf(&a, "%s -I. -c -o model%s.o model%s.c", t->variants[i].flags, sfx, sfx) ||
        export_cc_run(j, cc, &a))
      return -1;
  }
  util_buf a = {0};
  int rc = util_buf_printf(&a, "%s%s -I. -o program main.c cpu_dispatch.c %s", t->base_flags,
                           t->is_static ? " -static" : "", j->serve ? "serve.c" : "serve_none.c");
  for (const embed_file *f = embed_files; f->name && !rc; f++) {
    const char *name = export_runtime_file(j, f);
    if (name && export_is_c(name)) rc = util_buf_printf(&a, " %s", name);
  }
  if (!rc && !export_gpt2(j)) rc = util_buf_printf(&a, " tok_bpe_none.c");
  for (int i = 0; i < t->n_variants && !rc; i++) rc = util_buf_printf(&a, " model%s.o", t->variants[i].suffix);
  /* the libraries: all static for a static target; for native only these
   * two, with libc, libm, libpthread and libgomp shared */
  if (!rc) rc = util_buf_printf(&a, " embed_index.c data.S%s", t->is_static ? "" : " -Wl,-Bstatic");
  if (!rc && export_gpt2(j)) rc = util_buf_printf(&a, " " EXPORT_LIBS_PCRE2);
  if (!rc && j->serve) rc = util_buf_printf(&a, " " EXPORT_LIBS_EVENT);
  if (!rc) rc = util_buf_printf(&a, "%s -lm -lpthread", t->is_static ? "" : " -Wl,-Bdynamic");
  if (rc) return util_buf_free(&a), -1;
  return export_cc_run(j, cc, &a);
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

int export_program(const char *ckpt, const char *out, const char *target, int quant) {
  export_job j;
  memset(&j, 0, sizeof j);
  j.ckpt = ckpt;
  j.out = out;
  j.quant = quant;
  if (export_target_find(target, &j.target)) return -1;
  const char *cc = jit_cc(j.target->cross_aarch64);
  char sha[65];
  int rc = -1;
  if (util_is_dir(out)) {
    util_err("%s: is a directory (name the executable to write)", out);
    goto done;
  }
  if (export_open(&j)) goto done;
  if (export_check_cc(&j, cc) || export_sha256_file(ckpt, sha) || export_env(&j, sha)) goto done;
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
  gen_env_free(j.env);
  ckpt_meta_free(&j.meta);
  return rc;
}
