/* The generator and the CPU backend: shape derivation, the template engine,
 * the generated source, the JIT cache, compile errors, and results that do
 * not depend on the thread count. */
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>

#include "cfg.h"
#include "cpu.h"
#include "gen.h"
#include "lx.h"
#include "testutil.h"
#include "util.h"

static void load_cfg(const char *src, cfg_t *c) {
  ck_assert_msg(cfg_load_string(src, "t.lua", c) == 0, "%s", util_errmsg());
}

static const gptc_tensor *find(const gptc_tensor *ts, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(ts[i].name, name)) return &ts[i];
  return NULL;
}

/* ---- shapes ---- */

START_TEST(gpt2_124m_tensors) {
  cfg_t c;
  ck_assert_int_eq(cfg_load_file(tu_src("configs/gpt2-124m.lua"), &c), 0);
  gptc_tensor *ts;
  int n;
  size_t n_params;
  /* without the QKV bias (the config as shipped, as in the seeds) */
  ck_assert_msg(gen_tensors(&c, &ts, &n, &n_params) == 0, "%s", util_errmsg());
  size_t total = 0;
  for (int i = 0; i < n; i++) total += ts[i].numel;
  ck_assert_uint_eq(total, 124412160);
  gen_tensors_free(ts, n);
  /* Hugging Face's GPT-2 has the QKV bias */
  c.qkv_bias = 1;
  ck_assert_msg(gen_tensors(&c, &ts, &n, &n_params) == 0, "%s", util_errmsg());
  ck_assert_int_eq(n, 2 + 12 * 12 + 2);
  size_t end = 0;
  total = 0;
  for (int i = 0; i < n; i++) {
    total += ts[i].numel;
    ck_assert_msg(ts[i].offset % 16 == 0, "%s offset %zu is not 16-float aligned", ts[i].name, ts[i].offset);
    ck_assert_msg(ts[i].offset >= end, "%s overlaps the tensor before it", ts[i].name);
    size_t numel = (size_t)ts[i].shape[0] * (size_t)(ts[i].ndim == 2 ? ts[i].shape[1] : 1);
    ck_assert_uint_eq(numel, ts[i].numel);
    end = ts[i].offset + ts[i].numel;
  }
  ck_assert_uint_eq(total, 124439808); /* GPT-2 small, tied embeddings */
  ck_assert_uint_ge(n_params, end);
  ck_assert_uint_lt(n_params, end + 16);
  ck_assert_str_eq(ts[0].name, "wte.weight");
  ck_assert_int_eq(ts[0].shape[0], 50257);
  ck_assert_int_eq(ts[0].shape[1], 768);
  ck_assert_str_eq(ts[1].name, "wpe.weight");
  ck_assert_int_eq(ts[1].shape[0], 1024);
  const gptc_tensor *t = find(ts, n, "h.11.attn.c_attn.weight");
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->shape[0], 768); /* Conv1D layout [in, out] */
  ck_assert_int_eq(t->shape[1], 2304);
  ck_assert(t->decay);
  ck_assert_float_eq_tol(t->init_std, 0.02f, 1e-9f);
  t = find(ts, n, "h.3.mlp.c_proj.weight");
  ck_assert_int_eq(t->shape[0], 3072);
  ck_assert_int_eq(t->shape[1], 768);
  ck_assert_float_eq_tol(t->init_std, 0.02f / sqrtf(24.0f), 1e-9f);
  t = find(ts, n, "h.3.attn.c_proj.weight");
  ck_assert_float_eq_tol(t->init_std, 0.02f / sqrtf(24.0f), 1e-9f);
  t = find(ts, n, "h.0.ln_1.weight");
  ck_assert(!t->decay);
  ck_assert(t->init_std == 0 && t->init_value == 1);
  t = find(ts, n, "h.0.mlp.c_fc.bias");
  ck_assert(!t->decay && t->init_std == 0 && t->init_value == 0);
  ck_assert_int_eq(find(ts, n, "h.0.mlp.c_fc.bias")->shape[0], 3072);
  ck_assert_int_eq(find(ts, n, "h.0.attn.c_attn.bias")->shape[0], 2304);
  ck_assert_ptr_null(find(ts, n, "lm_head.weight"));
  ck_assert_str_eq(ts[n - 1].name, "ln_f.bias");
  gen_tensors_free(ts, n);
}
END_TEST

START_TEST(untied_with_qkv_bias) {
  cfg_t c;
  load_cfg("return { name = 'u', tokenizer = 'char', vocab_size = 30, emb_dim = 24, n_heads = 3, n_layers = 2,"
           " context_length = 10, qkv_bias = true, tie_embeddings = false }",
           &c);
  gptc_tensor *ts;
  int n;
  size_t n_params;
  ck_assert_int_eq(gen_tensors(&c, &ts, &n, &n_params), 0);
  ck_assert_int_eq(n, 2 + 2 * 12 + 3);
  const gptc_tensor *b = find(ts, n, "h.1.attn.c_attn.bias");
  ck_assert_ptr_nonnull(b);
  ck_assert_int_eq(b->ndim, 1);
  ck_assert_int_eq(b->shape[0], 72);
  const gptc_tensor *lm = &ts[n - 1];
  ck_assert_str_eq(lm->name, "lm_head.weight");
  ck_assert_int_eq(lm->shape[0], 30);
  ck_assert_int_eq(lm->shape[1], 24);
  ck_assert(lm->decay);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += ts[i].numel;
  /* 2 (V + ctx) C + L (12 C^2 + 13 C) + 2 C + V C, with the 3C qkv bias */
  ck_assert_uint_eq(total, 30 * 24 + 10 * 24 + 2 * (12 * 24 * 24 + 13 * 24) + 2 * 24 + 30 * 24);
  gen_tensors_free(ts, n);
  /* char configs need a vocabulary before anything has a shape */
  load_cfg("return { name = 'nv', tokenizer = 'char', emb_dim = 8, n_heads = 2, n_layers = 1, context_length = 4 }",
           &c);
  ck_assert_int_eq(gen_tensors(&c, &ts, &n, &n_params), -1);
  ck_assert_msg(strstr(util_errmsg(), "vocab_size is unknown") != NULL, "%s", util_errmsg());
}
END_TEST

/* The memory estimate the config check uses: 4 bytes x (4 n_params + acts + grad acts). */
START_TEST(memory_estimate) {
  lua_State *L = lx_new();
  cfg_t c;
  ck_assert_int_eq(cfg_load_file(tu_src("configs/shakespeare-char.lua"), &c), 0);
  c.vocab_size = 65;
  cfg_push(L, &c);
  ck_assert_int_eq(lx_call(L, "cpu.layout", "derive", 1, 1), 0);
  int S = lua_gettop(L);
  lua_getfield(L, S, "n_params");
  lua_Integer np = lua_tointeger(L, -1);
  lua_getfield(L, S, "acts");
  lua_getfield(L, -1, "n");
  lua_Integer na = lua_tointeger(L, -1);
  lua_getfield(L, S, "grad_acts");
  lua_getfield(L, -1, "n");
  lua_Integer ng = lua_tointeger(L, -1);
  lua_getfield(L, S, "memory");
  lua_getfield(L, -1, "train_bytes");
  ck_assert_int_eq(lua_tointeger(L, -1), 4 * (4 * np + na + ng));
  /* acts holds at least the per-layer (B, H, T, T) attention weights */
  ck_assert_int_ge(na, 4 * 12 * 4 * 64 * 64);
  lua_close(L);
}
END_TEST

/* ---- the template engine ---- */

/* Compiles `tpl` as template "t.c" and renders it with env {n = 3, name = "x"}. */
static int render(const char *tpl, char *out, size_t cap) {
  lua_State *L = lx_new();
  lua_pushstring(L, "t.c");
  lua_pushstring(L, tpl);
  int rc = lx_call(L, "template", "compile", 2, 1);
  if (rc == 0) {
    lua_newtable(L);
    lua_pushinteger(L, 3);
    lua_setfield(L, -2, "n");
    lua_pushstring(L, "x");
    lua_setfield(L, -2, "name");
    lua_getglobal(L, "string");
    lua_setfield(L, -2, "string");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      util_err("%s", lua_tostring(L, -1));
      rc = -1;
    } else {
      snprintf(out, cap, "%s", lua_tostring(L, -1));
    }
  }
  lua_close(L);
  return rc;
}

START_TEST(template_engine) {
  char out[1024];
  ck_assert_msg(render("int {{name}}[{{n * 4}}];\n"
                       "% for i = 1, n do\n"
                       "  a[{{i - 1}}] = {{i * i}};\n"
                       "% end\n"
                       "  %% 2 == {{string.format('%.2f', 0.5)}} }}{{'{'}}\n"
                       "% if n > 5 then\n"
                       "never\n"
                       "% end\n",
                       out, sizeof out) == 0,
                "%s", util_errmsg());
  ck_assert_str_eq(out, "int x[12];\n  a[0] = 1;\n  a[1] = 4;\n  a[2] = 9;\n  % 2 == 0.50 }}{\n");
  /* a Lua float that holds an integer prints as one */
  ck_assert_int_eq(render("{{n / 3}} {{n / 2}}", out, sizeof out), 0);
  ck_assert_str_eq(out, "1 1.5\n");

  ck_assert_int_eq(render("line 1\n\nx = {{missing}};\n", out, sizeof out), -1);
  ck_assert_msg(strstr(util_errmsg(), "t.c:3: {{missing}} is nil") != NULL, "%s", util_errmsg());
  ck_assert_int_eq(render("a\n{{n +}}\n", out, sizeof out), -1);
  ck_assert_msg(strstr(util_errmsg(), "t.c:2:") != NULL, "%s", util_errmsg());
  ck_assert_int_eq(render("a\nb\n% for i = 1, n do\nc\n", out, sizeof out), -1);
  ck_assert_msg(strstr(util_errmsg(), "t.c:") != NULL && strstr(util_errmsg(), "'end' expected") != NULL, "%s",
                util_errmsg());
  ck_assert_int_eq(render("ok\nx {{n\n", out, sizeof out), -1);
  ck_assert_msg(strstr(util_errmsg(), "t.c:2: '{{' without a closing '}}'") != NULL, "%s", util_errmsg());
  ck_assert_int_eq(render("% local t = nil\n{{t.field}}\n", out, sizeof out), -1);
  ck_assert_msg(strstr(util_errmsg(), "t.c:2:") != NULL, "%s", util_errmsg());
}
END_TEST

/* ---- the generated source ---- */

static const char *TINY =
    "return { name = 'tiny \"q\"', tokenizer = 'char', vocab_size = 13, emb_dim = 16, n_heads = 2, n_layers = 2,"
    " context_length = 16, drop_rate = 0.0, qkv_bias = true, train = { batch_size = 3, max_length = 12 } }";

START_TEST(generated_source) {
  cfg_t c;
  load_cfg(TINY, &c);
  char *src;
  size_t len;
  char hash[65];
  ck_assert_msg(gen_source(&c, "cpu", &src, &len, hash) == 0, "%s", util_errmsg());
  ck_assert_uint_eq(strlen(src), len);
  ck_assert_uint_eq(strlen(hash), 64);
  /* the header names the config, the generator version and the hash of the body */
  ck_assert_msg(strstr(src, "gptc model \"tiny \"q\"\": generated by gptc " GPTC_VERSION) != NULL, "%.300s", src);
  char def[128];
  snprintf(def, sizeof def, "#define GPTC_SOURCE_HASH \"%s\"\n", hash);
  const char *body = strstr(src, def);
  ck_assert_ptr_nonnull(body);
  body += strlen(def);
  char h2[65];
  util_sha256_hex(body, len - (size_t)(body - src), h2);
  ck_assert_str_eq(h2, hash);
  /* literal dimensions, shapes in comments, the escaped name */
  ck_assert_ptr_nonnull(strstr(src, "layernorm_36x16_forward("));
  ck_assert_ptr_nonnull(strstr(src, "(B=3, T=12, C=16)"));
  ck_assert_ptr_nonnull(strstr(src, "(B=3, H=2, T=12, T=12)"));
  ck_assert_ptr_nonnull(strstr(src, "gemm_36x48x16_nn_bias("));
  ck_assert_ptr_nonnull(strstr(src, "for (int r = 0; r < 36; r++)"));
  ck_assert_ptr_nonnull(strstr(src, ".config_name = \"tiny \\\"q\\\"\""));
  ck_assert_ptr_nonnull(strstr(src, "const gptc_model *gptc_model_get(void)"));
  /* same config, same bytes */
  char *src2;
  size_t len2;
  char hash2[65];
  ck_assert_int_eq(gen_source(&c, "cpu", &src2, &len2, hash2), 0);
  ck_assert_str_eq(hash, hash2);
  ck_assert(len == len2 && !memcmp(src, src2, len));
  free(src2);
  /* a different shape changes the hash */
  c.train.batch_size = 4;
  ck_assert_int_eq(gen_source(&c, "cpu", &src2, &len2, hash2), 0);
  ck_assert_str_ne(hash, hash2);
  free(src2);
  free(src);
  ck_assert_int_eq(gen_source(&c, "tpu", &src, &len, hash), -1);
  ck_assert_msg(strstr(util_errmsg(), "device 'tpu' is not known") != NULL, "%s", util_errmsg());
}
END_TEST

/* `gptc gen` writes model.c and shapes.txt */
START_TEST(gen_command) {
  tu_run_result r;
  char out[1024];
  snprintf(out, sizeof out, "%s/gen-out", tu_tmpdir());
  ck_assert_int_eq(tu_run(&r, NULL, "gen --config '%s' -o '%s' --vocab-size 65", tu_src("configs/shakespeare-char.lua"),
                          out),
                   0);
  tu_run_free(&r);
  char path[1200], *text;
  size_t n;
  snprintf(path, sizeof path, "%s/model.c", out);
  ck_assert_int_eq(util_read_file(path, &text, &n), 0);
  ck_assert_ptr_nonnull(strstr(text, "gptc model \"shakespeare-char\""));
  ck_assert_ptr_nonnull(strstr(text, "(B=12, T=64, C=128)"));
  free(text);
  snprintf(path, sizeof path, "%s/shapes.txt", out);
  ck_assert_int_eq(util_read_file(path, &text, &n), 0);
  ck_assert_ptr_nonnull(strstr(text, "h.3.mlp.c_proj.weight"));
  ck_assert_ptr_nonnull(strstr(text, "[512, 128]"));
  ck_assert_ptr_nonnull(strstr(text, "(B=12, H=4, T=64, T=64)"));
  free(text);
  ck_assert_int_eq(tu_run(&r, NULL, "gen --config '%s'", tu_src("configs/tiny-test.lua")), 2);
  ck_assert_msg(strstr(r.err, "'-o DIR' is required") != NULL, "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "gen --config '%s' -o '%s' --device tpu", tu_src("configs/tiny-test.lua"), out),
                   2);
  tu_run_free(&r);
}
END_TEST

/* ---- the JIT ---- */

/* Loads the config in a child process (the parent never maps the object, so
 * files it changes are opened afresh). Exit status: 10 + compiled, or 1. */
static int load_in_child(const char *src) {
  pid_t pid = fork();
  if (pid == 0) {
    cfg_t c;
    cpu_module m;
    if (cfg_load_string(src, "t.lua", &c) || cpu_load(&c, &m)) {
      fprintf(stderr, "load: %s\n", util_errmsg());
      _exit(1);
    }
    int ok = m.model->vocab_size == c.vocab_size && m.model->n_layers == c.n_layers;
    int compiled = m.compiled;
    cpu_unload(&m);
    _exit(ok ? 10 + compiled : 1);
  }
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert_msg(WIFEXITED(st), "the loading process died (signal %d)", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return WEXITSTATUS(st);
}

static void cache_files(const char *dir, char *so, size_t n, int *count) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  *count = 0;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l > 3 && !strcmp(e->d_name + l - 3, ".so")) {
      snprintf(so, n, "%s/%s", dir, e->d_name);
      (*count)++;
    }
  }
  closedir(d);
}

START_TEST(jit_cache) {
  char cache[1024], dir[1100], so[1400];
  snprintf(cache, sizeof cache, "%s/cache", tu_tmpdir());
  setenv("GPTC_CACHE", cache, 1);
  snprintf(dir, sizeof dir, "%s/cpu", cache);
  ck_assert_int_eq(load_in_child(TINY), 11); /* compiled */
  ck_assert_int_eq(load_in_child(TINY), 10); /* cache hit */
  int count;
  cache_files(dir, so, sizeof so, &count);
  ck_assert_int_eq(count, 1);
  /* the source sits beside the object */
  char c_path[1400];
  snprintf(c_path, sizeof c_path, "%.*s.c", (int)(strlen(so) - 3), so);
  ck_assert(util_file_exists(c_path));
  /* a corrupted object is rebuilt */
  ck_assert_int_eq(util_write_file_atomic(so, "not an ELF file", 15), 0);
  ck_assert_int_eq(load_in_child(TINY), 11);
  /* so is a truncated one (a crash mid-copy) */
  char *data;
  size_t n;
  ck_assert_int_eq(util_read_file(so, &data, &n), 0);
  ck_assert_int_eq(util_write_file_atomic(so, data, n / 2), 0);
  free(data);
  ck_assert_int_eq(load_in_child(TINY), 11);
  ck_assert_int_eq(load_in_child(TINY), 10);
  cache_files(dir, so, sizeof so, &count);
  ck_assert_int_eq(count, 1);
  /* another CPU (-march=native code may not run there) gets its own object */
  setenv("GPTC_CPU_ID", "another cpu", 1);
  ck_assert_int_eq(load_in_child(TINY), 11);
  ck_assert_int_eq(load_in_child(TINY), 10);
  unsetenv("GPTC_CPU_ID");
  ck_assert_int_eq(load_in_child(TINY), 10);
  char so2[1200];
  cache_files(dir, so2, sizeof so2, &count);
  ck_assert_int_eq(count, 2);
  /* a loadable object of another model under this key (its content hash
   * differs: a copy gone wrong, a hand edit) is rebuilt, not used */
  const char *other = "return { name = 'other', tokenizer = 'char', vocab_size = 13, emb_dim = 16, n_heads = 2,"
                      " n_layers = 1, context_length = 16, train = { batch_size = 3, max_length = 12 } }";
  cache_files(dir, so, sizeof so, &count); /* one of the two: both hold TINY */
  char tiny_so[1400];
  snprintf(tiny_so, sizeof tiny_so, "%s", so);
  char cache2[1100];
  snprintf(cache2, sizeof cache2, "%s/cache-other", tu_tmpdir());
  setenv("GPTC_CACHE", cache2, 1);
  ck_assert_int_eq(load_in_child(other), 11);
  char other_dir[1200], other_so[1400];
  snprintf(other_dir, sizeof other_dir, "%s/cpu", cache2);
  cache_files(other_dir, other_so, sizeof other_so, &count);
  ck_assert_int_eq(count, 1);
  ck_assert_int_eq(util_read_file(other_so, &data, &n), 0);
  ck_assert_int_eq(util_write_file_atomic(tiny_so, data, n), 0);
  free(data);
  setenv("GPTC_CACHE", cache, 1);
  /* the object replaced is this CPU's or the other's: load both, one is
   * rebuilt (11) and the other a cache hit (10) */
  int host = load_in_child(TINY);
  setenv("GPTC_CPU_ID", "another cpu", 1);
  int another = load_in_child(TINY);
  unsetenv("GPTC_CPU_ID");
  ck_assert_int_eq(host + another, 21);
  ck_assert_int_eq(load_in_child(TINY), 10);
  /* in one process, a second load reuses the mapped object */
  cfg_t c;
  load_cfg(TINY, &c);
  cpu_module a, b;
  ck_assert_int_eq(cpu_load(&c, &a), 0);
  ck_assert_int_eq(cpu_load(&c, &b), 0);
  ck_assert_int_eq(b.compiled, 0);
  ck_assert_ptr_eq(a.model, b.model);
  ck_assert_str_eq(a.so_path, b.so_path);
  cpu_unload(&b);
  cpu_unload(&a);
}
END_TEST

START_TEST(compile_errors) {
  char cache[1024];
  snprintf(cache, sizeof cache, "%s/cache-err", tu_tmpdir());
  setenv("GPTC_CACHE", cache, 1);
  cfg_t c;
  load_cfg(TINY, &c);
  cpu_module m;
  /* a compiler that fails with two lines of output */
  const char *script = tu_write_str("badcc", "#!/bin/sh\n"
                                             "[ \"$1\" = --version ] && { echo 'badcc 1.0'; exit 0; }\n"
                                             "echo 'model.c:1:1: error: something broke'\n"
                                             "echo 'second line'\n"
                                             "exit 1\n");
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "chmod +x '%s'", script);
  ck_assert_int_eq(system(cmd), 0);
  setenv("CC", script, 1);
  ck_assert_int_eq(cpu_load(&c, &m), -1);
  const char *msg = util_errmsg();
  ck_assert_msg(strstr(msg, "compiling ") != NULL && strstr(msg, cache) != NULL && strstr(msg, ".c with") != NULL,
                "%s", msg);
  ck_assert_msg(strstr(msg, "model.c:1:1: error: something broke; second line") != NULL, "%s", msg);
  ck_assert_ptr_null(strchr(msg, '\n'));
  /* no compiler at all */
  setenv("CC", "/nonexistent/cc", 1);
  ck_assert_int_eq(cpu_load(&c, &m), -1);
  msg = util_errmsg();
  /* refused before any source is written (jit_cc_check), naming the compiler and the way out */
  ck_assert_msg(strstr(msg, "C compiler '/nonexistent/cc' does not run") != NULL && strstr(msg, "set CC") != NULL,
                "%s", msg);
  ck_assert_msg(strstr(msg, "not found") != NULL || strstr(msg, "No such file") != NULL, "%s", msg);
  ck_assert_ptr_null(strchr(msg, '\n'));
  unsetenv("CC");
}
END_TEST

/* ---- running the compiled model ---- */

/* Multi-tile GEMMs (M, N and K above one block), blocked attention with a
 * partial last block (T = 37), dropout on, untied head. */
static const char *MID =
    "return { name = 'threads', tokenizer = 'char', vocab_size = 300, emb_dim = 96, n_heads = 3, n_layers = 2,"
    " context_length = 40, drop_rate = 0.1, qkv_bias = true, tie_embeddings = false,"
    " train = { batch_size = 4, max_length = 37 } }";

typedef struct {
  cpu_module mod;
  float *params, *grads, *acts, *ga;
  int32_t *in, *tg;
} run_state;

/* Buffers and seeded parameters and ids for the loaded s->mod. */
static void run_buffers(run_state *s) {
  const gptc_model *m = s->mod.model;
  s->params = calloc(m->n_params, 4);
  s->grads = calloc(m->n_params, 4);
  s->acts = calloc(m->n_acts, 4);
  s->ga = calloc(m->n_grad_acts, 4);
  s->in = calloc((size_t)m->B * m->T, 4);
  s->tg = calloc((size_t)m->B * m->T, 4);
  uint64_t x = 42;
  for (int i = 0; i < m->n_tensors; i++) {
    const gptc_tensor *t = &m->tensors[i];
    for (size_t j = 0; j < t->numel; j++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      float u = (float)((double)(x >> 40) / (double)(1ull << 24)) - 0.5f;
      s->params[t->offset + j] = t->init_std > 0 ? u * 4 * t->init_std * 3 : t->init_value + 0.1f * u;
    }
  }
  for (int i = 0; i < m->B * m->T; i++) {
    s->in[i] = (i * 37 + 5) % m->vocab_size;
    s->tg[i] = i % 11 == 3 ? -1 : (i * 13 + 1) % m->vocab_size;
  }
}

static void run_init(run_state *s, const char *src) {
  cfg_t c;
  load_cfg(src, &c);
  ck_assert_msg(cpu_load(&c, &s->mod) == 0, "%s", util_errmsg());
  run_buffers(s);
}

static void run_free(run_state *s) {
  cpu_unload(&s->mod);
  free(s->params);
  free(s->grads);
  free(s->acts);
  free(s->ga);
  free(s->in);
  free(s->tg);
}

static float step(run_state *s, gptc_rng rng) {
  const gptc_model *m = s->mod.model;
  memset(s->grads, 0, m->n_params * 4);
  float loss = m->forward(s->params, s->acts, s->in, s->tg, rng);
  m->backward(s->params, s->grads, s->acts, s->ga, s->in, s->tg, rng, 1.0f);
  return loss;
}

START_TEST(thread_independence) {
  run_state s;
  run_init(&s, MID);
  const gptc_model *m = s.mod.model;
  gptc_rng rng = {7, 3, 1};
  float *g1 = malloc(m->n_params * 4), *logits1 = malloc((size_t)m->B * m->T * m->vocab_size * 4);
  cpu_set_threads(1);
  float l1 = step(&s, rng);
  memcpy(g1, s.grads, m->n_params * 4);
  double n1 = m->grad_sq_norm(s.grads);
  float *ea = calloc(m->n_eval_acts, 4);
  float e1 = m->forward_eval(s.params, ea, s.in, s.tg);
  m->forward(s.params, s.acts, s.in, s.tg, rng);
  memcpy(logits1, s.acts + m->logits_offset, (size_t)m->B * m->T * m->vocab_size * 4);
  cpu_set_threads(2);
  float l2 = step(&s, rng);
  ck_assert(isfinite(l1) && l1 > 0);
  ck_assert_msg(memcmp(&l1, &l2, 4) == 0, "loss %.9g (1 thread) vs %.9g (2 threads)", l1, l2);
  ck_assert_msg(memcmp(g1, s.grads, m->n_params * 4) == 0, "gradients differ between 1 and 2 threads");
  double n2 = m->grad_sq_norm(s.grads);
  ck_assert(n1 == n2 && n1 > 0);
  m->forward(s.params, s.acts, s.in, s.tg, rng);
  ck_assert(!memcmp(logits1, s.acts + m->logits_offset, (size_t)m->B * m->T * m->vocab_size * 4));
  float e2 = m->forward_eval(s.params, ea, s.in, s.tg);
  free(ea);
  ck_assert(memcmp(&e1, &e2, 4) == 0);
  /* dropout follows the rng: the same offset repeats, another one differs,
   * and evaluation (no dropout) differs from both */
  float l3 = step(&s, rng);
  ck_assert(memcmp(&l1, &l3, 4) == 0);
  gptc_rng other = {7, 4, 1};
  float l4 = step(&s, other);
  ck_assert(l4 != l1);
  gptc_rng off = {7, 3, 0};
  float l5 = m->forward(s.params, s.acts, s.in, s.tg, off);
  ck_assert(l5 != l1);
  /* grad_sq_norm is the sum of squares over the tensors */
  double ref = 0;
  for (int i = 0; i < m->n_tensors; i++)
    for (size_t j = 0; j < m->tensors[i].numel; j++) {
      double g = s.grads[m->tensors[i].offset + j];
      ref += g * g;
    }
  double got = m->grad_sq_norm(s.grads);
  ck_assert_msg(fabs(got - ref) <= 1e-12 * ref, "grad_sq_norm %.17g, reference %.17g", got, ref);
  free(g1);
  free(logits1);
  run_free(&s);
}
END_TEST

/* The host a source is rendered for: vector width, processor count (0:
 * opts.threads unset, the emitter's default) */
typedef struct {
  int vec_bytes, threads;
  const char *schedule_all; /* one GEMM schedule forced on every instance, or NULL */
  int export_kernels;       /* every kernel an exported symbol */
} host_opts;

static void host_fill(lua_State *L, const void *arg) {
  const host_opts *h = arg;
  lua_pushstring(L, "float");
  lua_setfield(L, -2, "real");
  lua_pushinteger(L, h->vec_bytes);
  lua_setfield(L, -2, "vec_bytes");
  if (h->threads) {
    lua_pushinteger(L, h->threads);
    lua_setfield(L, -2, "threads");
  }
  if (h->schedule_all) {
    lua_pushstring(L, h->schedule_all);
    lua_setfield(L, -2, "schedule_all");
  }
  if (h->export_kernels) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "export_kernels");
  }
}

/* The C source (header and body) of config c rendered for host h. */
static char *render_for(const cfg_t *c, host_opts h, size_t *len) {
  char *src, hash[65];
  ck_assert_msg(gen_render(c, "cpu.emit", host_fill, &h, &src, len, hash) == 0, "%s", util_errmsg());
  return src;
}

static int accept_any(void *h, const char *so_path, void *ctx) {
  (void)h, (void)so_path, (void)ctx;
  return 0;
}

/* The GEMM tiles follow the generating host's processor count, the sums do
 * not: the code generated for 16 processors gives this machine's results
 * bit for bit, so a run resumes exactly on a machine with another count. */
START_TEST(processor_count_independence) {
  run_state a, b;
  run_init(&a, MID);
  cfg_t c;
  load_cfg(MID, &c);
  size_t len;
  char *src = render_for(&c, (host_opts){gen_vec_bytes(), 16, NULL, 0}, &len);
  ck_assert_msg(strstr(src, "and 16 processors"), "the header names the processor count");
  char *here;
  size_t here_len;
  ck_assert_int_eq(util_read_file(a.mod.src_path, &here, &here_len), 0);
  ck_assert_msg(here_len != len || memcmp(here, src, len), "16 processors generate other tiles");
  free(here);
  cpu_object obj;
  ck_assert_msg(cpu_build(src, len, "cpu", accept_any, NULL, &obj) == 0, "%s", util_errmsg());
  free(src);
  memset(&b, 0, sizeof b);
  b.mod.handle = obj.handle;
  b.mod.model = ((gptc_model_get_fn)(uintptr_t)dlsym(obj.handle, "gptc_model_get"))();
  ck_assert_ptr_nonnull(b.mod.model);
  run_buffers(&b);
  const gptc_model *m = a.mod.model;
  ck_assert_uint_eq(b.mod.model->n_params, m->n_params);
  gptc_rng rng = {7, 3, 1};
  float la = step(&a, rng), lb = step(&b, rng);
  ck_assert_msg(memcmp(&la, &lb, 4) == 0, "loss %.9g vs %.9g", la, lb);
  ck_assert_msg(memcmp(a.grads, b.grads, m->n_params * 4) == 0, "gradients differ between the tilings");
  run_free(&a);
  run_free(&b);
}
END_TEST

/* Every GEMM schedule sums each element of C in the same order (its start,
 * then k = 0, 1, .. K-1: gen/cpu/schedule.lua), so forced schedules with other
 * register blocks, K blocks (7 cuts K=384 into 55 blocks), tiles, packing of
 * A or B, unrolling, tile order and prefetch give the heuristic's loss and gradients bit for bit: what
 * `gptc tune` picks changes speed, never results. */
START_TEST(schedule_independence) {
  static const char *const forced[] = {
      "mr=4 nv=3 kc=40 unroll=4 order=1 pf=8",
      "mr=3 nv=4 kc=7 pack=1 packb=0",
      "mr=5 nv=1 kc=33 pack=0 unroll=2 packb=0 pf=16",
      "mr=2 nv=2 kc=1000 unroll=8",
  };
  run_state a;
  run_init(&a, MID);
  cfg_t c;
  load_cfg(MID, &c);
  gptc_rng rng = {7, 3, 1};
  float la = step(&a, rng);
  const gptc_model *m = a.mod.model;
  for (size_t f = 0; f < sizeof forced / sizeof *forced; f++) {
    size_t len;
    char *src = render_for(&c, (host_opts){gen_vec_bytes(), 0, forced[f], 0}, &len);
    ck_assert_msg(strstr(src, "(forced)"), "the header names the forced schedules");
    char want[64];
    snprintf(want, sizeof want, "mr=%c nv=%c", forced[f][3], forced[f][8]);
    ck_assert_msg(strstr(src, want), "the source runs schedule %s", forced[f]);
    cpu_object obj;
    ck_assert_msg(cpu_build(src, len, "cpu", accept_any, NULL, &obj) == 0, "%s", util_errmsg());
    free(src);
    run_state b;
    memset(&b, 0, sizeof b);
    b.mod.handle = obj.handle;
    b.mod.model = ((gptc_model_get_fn)(uintptr_t)dlsym(obj.handle, "gptc_model_get"))();
    ck_assert_ptr_nonnull(b.mod.model);
    run_buffers(&b);
    float lb = step(&b, rng);
    ck_assert_msg(memcmp(&la, &lb, 4) == 0, "%s: loss %.9g vs %.9g", forced[f], la, lb);
    ck_assert_msg(memcmp(a.grads, b.grads, m->n_params * 4) == 0, "%s: gradients differ from the heuristic's",
                  forced[f]);
    run_free(&b);
  }
  run_free(&a);
}
END_TEST

/* bf16_round's reference: round to nearest even bfloat16 (no NaN here) */
static float ref_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  memcpy(&x, &u, 4);
  return x;
}

/* The GEMM's summation order, from its definition (gen/cpu/schedule.lua): each
 * element of C is its start (0, the bias, or C for +=) plus a(i,k) b(k,j) for
 * k = 0 .. K-1, one fused multiply-add each; in a bf16 model the operands
 * rounded to bf16 and k summed in pairs (k + 1, then k). Each plain GEMM instance of MID (fp32 and bf16, under a
 * forced schedule with K blocks of 40) equals that loop bit for bit. */
START_TEST(gemm_sum_order) {
  ck_assert_msg(__builtin_cpu_supports("fma"), "this host has no FMA: the generated GEMMs contract a*b+c to it");
  for (int bf = 0; bf < 2; bf++) {
    char src_cfg[1024];
    snprintf(src_cfg, sizeof src_cfg, "%.*s, precision = '%s' }", (int)(strrchr(MID, '}') - MID), MID,
             bf ? "bf16" : "fp32");
    cfg_t c;
    load_cfg(src_cfg, &c);
    size_t len;
    char *src = render_for(&c, (host_opts){gen_vec_bytes(), 0, "mr=4 nv=2 kc=40", 1}, &len);
    cpu_object obj;
    ck_assert_msg(cpu_build(src, len, "cpu", accept_any, NULL, &obj) == 0, "%s", util_errmsg());
    int checked = 0;
    for (const char *p = src; (p = strstr(p, "KERNEL void gemm_")); p++) {
      char name[128], ta, tb, mode[16];
      int M, N, K;
      if (sscanf(p, "KERNEL void %127[a-z0-9_](", name) != 1) continue;
      if (sscanf(name, "gemm_%dx%dx%d_%c%c_%15[a-z0-9]", &M, &N, &K, &ta, &tb, mode) != 6) continue;
      char want[160];
      snprintf(want, sizeof want, "gemm_%dx%dx%d_%c%c_%s%s", M, N, K, ta, tb, mode, bf ? "_bf16" : "");
      if (strcmp(name, want)) continue; /* fused epilogues: other tests */
      void (*fn)(float *, const float *, const float *, const float *) =
          (void (*)(float *, const float *, const float *, const float *))(uintptr_t)dlsym(obj.handle, name);
      ck_assert_msg(fn != NULL, "%s not exported", name);
      float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)K * N * 4), *C = malloc((size_t)M * N * 4);
      float *R = malloc((size_t)M * N * 4), *bias = malloc((size_t)N * 4);
      uint64_t x = 7;
      float *all[] = {A, B, C, bias};
      size_t sizes[] = {(size_t)M * K, (size_t)K * N, (size_t)M * N, (size_t)N};
      for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < sizes[t]; i++) {
          x = x * 6364136223846793005ull + 1442695040888963407ull;
          all[t][i] = (float)((double)(x >> 40) / (double)(1ull << 24)) - 0.5f;
        }
      int acc = !strcmp(mode, "acc"), bias_mode = !strcmp(mode, "bias");
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
          float r = acc ? C[(size_t)i * N + j] : bias_mode ? bias[j] : 0;
          /* bf16: each pair (k, k + 1) odd element first (the pair order, docs/bench-cpu.md;
           * tests/test_bf16hw.c checks its flushes); no denormals here */
          for (int k = 0; k < K; k += bf ? 2 : 1) {
            for (int e = bf; e >= 0; e--) {
              if (k + e >= K) continue;
              float a = ta == 't' ? A[(size_t)(k + e) * M + i] : A[(size_t)i * K + k + e];
              float b = tb == 't' ? B[(size_t)j * K + k + e] : B[(size_t)(k + e) * N + j];
              r = bf ? fmaf(ref_bf16(a), ref_bf16(b), r) : fmaf(a, b, r);
            }
          }
          R[(size_t)i * N + j] = r;
        }
      fn(C, A, B, bias);
      for (size_t i = 0; i < (size_t)M * N; i++)
        ck_assert_msg(memcmp(&C[i], &R[i], 4) == 0, "%s: C[%zu] = %.9g, the k-order sum %.9g", name, i, C[i], R[i]);
      free(A), free(B), free(C), free(R), free(bias);
      checked++;
    }
    ck_assert_msg(checked >= 3, "%d plain GEMM instances checked", checked);
    free(src);
    cpu_object_close(&obj);
  }
}
END_TEST

/* precision = "bf16" on the CPU: after 10 AdamW steps the loss is within 2e-2
 * (relative) of fp32's, not equal to it (the rounding runs), and under another
 * schedule the same bits (the rounding is per element, not per block). */
START_TEST(bf16_training) {
  float loss[3];
  for (int v = 0; v < 3; v++) {
    char src_cfg[1024];
    snprintf(src_cfg, sizeof src_cfg, "%.*s, precision = '%s' }", (int)(strrchr(MID, '}') - MID), MID,
             v ? "bf16" : "fp32");
    cfg_t c;
    load_cfg(src_cfg, &c);
    size_t len;
    char *src = render_for(&c, (host_opts){gen_vec_bytes(), 0, v == 2 ? "mr=3 nv=4 kc=7 unroll=2" : NULL, 0}, &len);
    ck_assert_msg(!v == !strstr(src, "bf16_round("), "bf16 models round, fp32 ones do not");
    cpu_object obj;
    ck_assert_msg(cpu_build(src, len, "cpu", accept_any, NULL, &obj) == 0, "%s", util_errmsg());
    free(src);
    run_state s;
    memset(&s, 0, sizeof s);
    s.mod.handle = obj.handle;
    s.mod.model = ((gptc_model_get_fn)(uintptr_t)dlsym(obj.handle, "gptc_model_get"))();
    run_buffers(&s);
    const gptc_model *m = s.mod.model;
    float *mm = calloc(m->n_params, 4), *vv = calloc(m->n_params, 4);
    for (int t = 1; t <= 10; t++) {
      loss[v] = step(&s, (gptc_rng){7, (uint64_t)t, 1});
      m->adamw(s.params, s.grads, mm, vv, (gptc_adamw_args){1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, t});
    }
    free(mm), free(vv);
    run_free(&s);
  }
  ck_assert_msg(fabsf(loss[1] - loss[0]) <= 2e-2f * fabsf(loss[0]), "bf16 %.9g, fp32 %.9g", loss[1], loss[0]);
  ck_assert_msg(loss[1] != loss[0], "bf16 gave fp32's loss bit for bit: nothing was rounded");
  ck_assert_msg(memcmp(&loss[1], &loss[2], 4) == 0, "bf16 under another schedule: %.9g vs %.9g", loss[2], loss[1]);
}
END_TEST

/* A schedule that breaks a rule is refused with the rule named. */
START_TEST(schedule_rules) {
  cfg_t c;
  load_cfg(MID, &c);
  static const char *const bad[][2] = {
      {"mr=99", "mr must be 1 to 16"},
      {"mr=16 nv=4", "vector registers"},
      {"mr=6 mc=0", "must be positive"},
      {"unroll=3", "unroll must be"},
      {"order=2", "order must be 0 or 1"},
      {"packb=2", "packb must be 0 or 1"},
      {"pf=5", "pf must be 0, 4, 8, 16 or 32"},
      {"mr=6 bogus=1", "not a schedule field"},
      {"mr=six", "not field=number"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *src, hash[65];
    size_t len;
    host_opts h = {gen_vec_bytes(), 0, bad[i][0], 0};
    ck_assert_int_ne(gen_render(&c, "cpu.emit", host_fill, &h, &src, &len, hash), 0);
    ck_assert_msg(strstr(util_errmsg(), bad[i][1]), "'%s': %s", bad[i][0], util_errmsg());
  }
}
END_TEST

/* AdamW against a direct transcription of torch.optim.AdamW's update. */
START_TEST(adamw_matches_reference) {
  run_state s;
  run_init(&s, MID);
  const gptc_model *m = s.mod.model;
  step(&s, (gptc_rng){1, 1, 1});
  float *p = malloc(m->n_params * 4), *mm = calloc(m->n_params, 4), *vv = calloc(m->n_params, 4);
  float *rp = malloc(m->n_params * 4), *rm = calloc(m->n_params, 4), *rv = calloc(m->n_params, 4);
  memcpy(p, s.params, m->n_params * 4);
  memcpy(rp, s.params, m->n_params * 4);
  gptc_adamw_args a = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0};
  for (int t = 1; t <= 3; t++) {
    a.t = t;
    m->adamw(p, s.grads, mm, vv, a);
    double bc1 = 1 - pow(0.9f, t), bc2 = 1 - pow(0.95f, t);
    for (int i = 0; i < m->n_tensors; i++) {
      const gptc_tensor *ts = &m->tensors[i];
      for (size_t j = ts->offset; j < ts->offset + ts->numel; j++) {
        double g = (double)s.grads[j] * 0.5;
        double pj = ts->decay ? rp[j] * (1 - 1e-3 * 0.1) : rp[j];
        rm[j] = (float)(0.9 * rm[j] + 0.1 * g);
        rv[j] = (float)(0.95 * rv[j] + 0.05 * g * g);
        rp[j] = (float)(pj - 1e-3 / bc1 * rm[j] / (sqrt(rv[j]) / sqrt(bc2) + 1e-8));
      }
    }
  }
  for (int i = 0; i < m->n_tensors; i++) {
    const gptc_tensor *ts = &m->tensors[i];
    for (size_t j = ts->offset; j < ts->offset + ts->numel; j++) {
      /* relative to the operands, not the result: a weight the update brings
       * near zero keeps the rounding error of its start value */
      ck_assert_msg(fabsf(p[j] - rp[j]) <= 1e-6f * (fabsf(rp[j]) + fabsf(s.params[j])) + 1e-9f, "%s: %.9g vs %.9g",
                    ts->name, p[j], rp[j]);
      ck_assert(fabsf(mm[j] - rm[j]) <= 1e-5f * fabsf(rm[j]) + 1e-12f);
    }
  }
  /* no decay on LayerNorm weights: with a zero gradient they stay put */
  memset(s.grads, 0, m->n_params * 4);
  memset(mm, 0, m->n_params * 4);
  memset(vv, 0, m->n_params * 4);
  memcpy(p, s.params, m->n_params * 4);
  a.t = 1;
  m->adamw(p, s.grads, mm, vv, a);
  for (int i = 0; i < m->n_tensors; i++) {
    const gptc_tensor *ts = &m->tensors[i];
    float want = ts->decay ? s.params[ts->offset] * (1 - 1e-4f) : s.params[ts->offset];
    ck_assert_float_eq_tol(p[ts->offset], want, 1e-7f * fabsf(want) + 1e-12f);
  }
  free(p), free(mm), free(vv), free(rp), free(rm), free(rv);
  run_free(&s);
}
END_TEST

/* Random123's known-answer vectors for Philox4x32-10. */
START_TEST(philox_known_answers) {
  run_state s;
  run_init(&s, MID);
  void (*philox)(const uint32_t *, const uint32_t *, uint32_t *) =
      (void (*)(const uint32_t *, const uint32_t *, uint32_t *))(uintptr_t)dlsym(s.mod.handle, "gptc_philox4x32_10");
  ck_assert_ptr_nonnull(philox);
  static const uint32_t ctr[3][4] = {
      {0, 0, 0, 0}, {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}};
  static const uint32_t key[3][2] = {{0, 0}, {0xffffffff, 0xffffffff}, {0xa4093822, 0x299f31d0}};
  static const uint32_t want[3][4] = {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
                                      {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
                                      {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
  for (int i = 0; i < 3; i++) {
    uint32_t out[4];
    philox(ctr[i], key[i], out);
    for (int j = 0; j < 4; j++) ck_assert_uint_eq(out[j], want[i][j]);
  }
  run_free(&s);
}
END_TEST

/* The dropout mask of the compiled (vectorized) model is the documented
 * Philox mapping: element i of site s keeps its value (scaled by 1/(1-p))
 * unless word (i / 16) % 4 of philox({16 (i / 64) + i % 16, s, offset},
 * seed) is below round(p 2^32). Checked on the embedding output (site 0). */
START_TEST(dropout_mask_mapping) {
  run_state s;
  run_init(&s, MID);
  const gptc_model *m = s.mod.model;
  void (*philox)(const uint32_t *, const uint32_t *, uint32_t *) =
      (void (*)(const uint32_t *, const uint32_t *, uint32_t *))(uintptr_t)dlsym(s.mod.handle, "gptc_philox4x32_10");
  ck_assert_ptr_nonnull(philox);
  gptc_rng rng = {0x123456789abcdefull, 0x100000007ull, 1};
  m->forward(s.params, s.acts, s.in, s.tg, rng);
  const float *enc = s.acts; /* encoded (B, T, C) is the first activation buffer */
  const int C = m->emb_dim, BT = m->B * m->T;
  const uint32_t thresh = (uint32_t)llround(0.1 * 4294967296.0);
  const uint32_t key[2] = {(uint32_t)rng.seed, (uint32_t)(rng.seed >> 32)};
  int dropped = 0;
  for (int i = 0; i < BT * C; i++) {
    const uint32_t ctr[4] = {(uint32_t)(16 * (i >> 6) + (i & 15)), 0, (uint32_t)rng.offset,
                             (uint32_t)(rng.offset >> 32)};
    uint32_t w[4];
    philox(ctr, key, w);
    int bt = i / C, c = i % C;
    float x = s.params[m->tensors[0].offset + (size_t)s.in[bt] * C + c] +
              s.params[m->tensors[1].offset + (size_t)(bt % m->T) * C + c];
    float want = w[(i >> 4) & 3] >= thresh ? x * (1.0f / 0.9f) : 0;
    dropped += w[(i >> 4) & 3] < thresh;
    ck_assert_msg(fabsf(enc[i] - want) <= 1e-6f * fabsf(want), "element %d: %.9g, expected %.9g", i, enc[i], want);
  }
  /* about 10% dropped */
  ck_assert_int_gt(dropped, BT * C / 20);
  ck_assert_int_lt(dropped, BT * C / 5);
  run_free(&s);
}
END_TEST

/* Checks every GEMM's tiles in src (from the comment above each GEMM: "C (M, N) ... B^T ...
 * tiles MCxNC"): at least 4 a thread (2 with B^T), unless the tiles are at their smallest
 * (MC <= 2 MR = 16 rows, NC <= 2 NR = 64 columns with 64-byte vectors); returns the count. */
static int check_tiles(const char *src, int threads) {
  int n = 0;
  for (const char *p = src; (p = strstr(p, "/* C (")); p++) {
    int M, N, MC, NC;
    ck_assert_int_eq(sscanf(p, "/* C (%d, %d)", &M, &N), 2);
    const char *eol = strchr(p, '\n'), *t = strstr(p, "; tiles ");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(sscanf(t, "; tiles %dx%d", &MC, &NC), 2);
    char first[512];
    snprintf(first, sizeof first, "%.*s", (int)(eol - p), p);
    int tb = strstr(first, "B^T") != NULL;
    int tiles = (M + MC - 1) / MC * ((N + NC - 1) / NC), want = (tb ? 2 : 4) * threads;
    ck_assert_msg(tiles >= want || (MC <= 16 && NC <= 64),
                  "GEMM (%d, %d)%s: %d tiles of %dx%d for %d threads", M, N, tb ? " B^T" : "", tiles, MC, NC,
                  threads);
    n++;
  }
  return n;
}

/* GEMM tiles follow the host's processor count: on 2 the source is what it
 * was before the count mattered (opts.threads unset), on 16 every GEMM has
 * work for every core. */
START_TEST(gemm_tiles_per_thread) {
  static const struct {
    const char *path;
    int vocab;
  } cfgs[] = {{"configs/shakespeare-char.lua", 65}, {"configs/gpt2-124m.lua", 0}};
  for (int i = 0; i < 2; i++) {
    cfg_t c;
    ck_assert_msg(cfg_load_file(tu_src(cfgs[i].path), &c) == 0, "%s", util_errmsg());
    if (cfgs[i].vocab) c.vocab_size = cfgs[i].vocab;
    size_t len;
    char *unset = render_for(&c, (host_opts){64, 0, NULL, 0}, &len), *two = render_for(&c, (host_opts){64, 2, NULL, 0}, &len);
    ck_assert_str_eq(unset, two);
    ck_assert_int_ge(check_tiles(two, 2), 10);
    char *many = render_for(&c, (host_opts){64, 16, NULL, 0}, &len);
    ck_assert_int_ge(check_tiles(many, 16), 10);
    ck_assert_str_ne(two, many);
    free(unset), free(two), free(many);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("gen");
  TCase *tc = tcase_create("gen");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, gpt2_124m_tensors);
  tcase_add_test(tc, untied_with_qkv_bias);
  tcase_add_test(tc, memory_estimate);
  tcase_add_test(tc, template_engine);
  tcase_add_test(tc, generated_source);
  tcase_add_test(tc, gen_command);
  tcase_add_test(tc, jit_cache);
  tcase_add_test(tc, gemm_tiles_per_thread);
  tcase_add_test(tc, compile_errors);
  tcase_add_test(tc, thread_independence);
  tcase_add_test(tc, processor_count_independence);
  tcase_add_test(tc, schedule_independence);
  tcase_add_test(tc, schedule_rules);
  tcase_add_test(tc, gemm_sum_order);
  tcase_add_test(tc, bf16_training);
  tcase_add_test(tc, adamw_matches_reference);
  tcase_add_test(tc, philox_known_answers);
  tcase_add_test(tc, dropout_mask_mapping);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
