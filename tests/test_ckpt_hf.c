/* Hugging Face conversion (ckpt_hf.c, cmd_ckpt.c): import of the goldens
 * written by tests/ref/hf_ref.py (values checked against the SHA-256 of
 * transformers' own F32 values), export-hf -> import round trips, and every
 * refusal of a bad config.json or weights file with its one-line message. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "gen.h"
#include "json.h"
#include "testutil.h"
#include "tok.h"
#include "util.h"

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Random bit patterns, including the ones a float copy could alter. */
static void fill(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t b = (uint32_t)rnd();
    memcpy(&x[i], &b, 4);
  }
  const uint32_t special[] = {0x80000000u, 0x7fc12345u, 0xff800001u, 0x7f800000u, 0x00000001u};
  for (size_t i = 0; i < 5 && i < n; i++) memcpy(&x[i], &special[i], 4);
}

static const char *tmp_path(const char *name) {
  static char bufs[8][1024];
  static int i;
  char *b = bufs[i++ & 7];
  snprintf(b, 1024, "%s/%s", tu_tmpdir(), name);
  return b;
}

/* Tensor ranges are equal. */
static void assert_tensors_equal(const float *a, const float *b, const gptc_tensor *t, int n) {
  for (int i = 0; i < n; i++)
    ck_assert_msg(memcmp(a + t[i].offset, b + t[i].offset, t[i].numel * 4) == 0, "tensor %s differs", t[i].name);
}

/* ---- Hugging Face import / export ------------------------------------------ */

typedef struct {
  cfg_t cfg;
  ckpt_meta meta;
  gptc_tensor *t;
  int n;
  size_t np;
  float *params;
} loaded;

static void load_ckpt(const char *path, loaded *l) {
  ck_assert_msg(ckpt_load_meta(path, &l->meta) == 0, "%s", util_errmsg());
  ck_assert_msg(cfg_load_string(l->meta.config_src, path, &l->cfg) == 0, "%s", util_errmsg());
  ck_assert_msg(gen_tensors(&l->cfg, &l->t, &l->n, &l->np) == 0, "%s", util_errmsg());
  l->params = calloc(l->np, sizeof *l->params);
  ck_assert_msg(ckpt_load_params(path, l->t, l->n, l->np, l->params, NULL, NULL) == 0, "%s", util_errmsg());
}

static void free_loaded(loaded *l) {
  ckpt_meta_free(&l->meta);
  gen_tensors_free(l->t, l->n);
  free(l->params);
}

static const float *tensor_of(const loaded *l, const char *name) {
  for (int i = 0; i < l->n; i++)
    if (!strcmp(l->t[i].name, name)) return l->params + l->t[i].offset;
  return NULL;
}

/* Runs gptc with `fmt` (two %s arguments), which must succeed. */
static void run_ok(const char *fmt, const char *a, const char *b) {
  tu_run_result r;
  tu_run(&r, NULL, fmt, a, b);
  ck_assert_msg(r.code == 0, "gptc %s failed (%d): %s", fmt, r.code, r.err);
  tu_run_free(&r);
}

/* Every tensor matches expected.json: shape and the SHA-256 of its F32
 * values as transformers computed them. */
static void check_expected(const char *name, const loaded *l) {
  char rel[256], *text;
  size_t len;
  snprintf(rel, sizeof rel, "tests/golden/hf/%s/expected.json", name);
  ck_assert_int_eq(util_read_file(tu_src(rel), &text, &len), 0);
  json_val *ex = json_parse(text, len, rel);
  free(text);
  ck_assert_ptr_nonnull(ex);
  const json_val *tensors = json_get(ex, "tensors");
  ck_assert_uint_eq(tensors->len, (size_t)l->n);
  for (int i = 0; i < l->n; i++) {
    const json_val *e = json_get(tensors, l->t[i].name);
    ck_assert_msg(e != NULL, "%s: %s not in expected.json", name, l->t[i].name);
    const json_val *sh = json_get(e, "shape");
    ck_assert_int_eq((int)sh->len, l->t[i].ndim);
    for (int d = 0; d < l->t[i].ndim; d++) ck_assert_int_eq(sh->items[d].i, l->t[i].shape[d]);
    char hex[65];
    util_sha256_hex(l->params + l->t[i].offset, l->t[i].numel * 4, hex);
    ck_assert_msg(!strcmp(hex, json_get(e, "sha256")->str), "%s: %s values differ", name, l->t[i].name);
  }
  json_free(ex);
}

START_TEST(import_goldens) {
  static const struct {
    const char *name;
    int C, L, ctx, tie;
  } g[] = {{"tiny", 8, 2, 16, 1}, {"small-bf16", 4, 1, 8, 1}, {"small-f16", 4, 1, 8, 0}};
  for (int i = 0; i < 3; i++) {
    char rel[128], out[1100];
    snprintf(rel, sizeof rel, "tests/golden/hf/%s", g[i].name);
    snprintf(out, sizeof out, "%s/imp-%s.safetensors", tu_tmpdir(), g[i].name);
    tu_run_result r;
    tu_run(&r, NULL, "import '%s' -o '%s'", tu_src(rel), out);
    ck_assert_msg(r.code == 0, "%s: %s", g[i].name, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "imported "));
    tu_run_free(&r);
    loaded l;
    load_ckpt(out, &l);
    ck_assert_str_eq(l.cfg.name, g[i].name);
    ck_assert(l.cfg.tokenizer == CFG_TOK_GPT2 && l.cfg.vocab_size == 50257);
    ck_assert(l.cfg.emb_dim == g[i].C && l.cfg.n_heads == 2 && l.cfg.n_layers == g[i].L);
    ck_assert(l.cfg.context_length == g[i].ctx && l.cfg.tie_embeddings == g[i].tie && l.cfg.qkv_bias == 1);
    ck_assert(l.cfg.drop_rate == 0.1);
    ck_assert(l.meta.step == 0 && l.meta.data_pos == 0 && l.meta.tokenizer == CFG_TOK_GPT2 && isinf(l.meta.best_val));
    char *opt = ckpt_opt_path(out);
    ck_assert(!util_file_exists(opt)); /* no moments: training starts them at zero */
    free(opt);
    check_expected(g[i].name, &l);
    free_loaded(&l);
  }
}
END_TEST

/* import -> export-hf -> import is bit-exact, and the export has the names
 * and config fields transformers expects. */
START_TEST(export_import_roundtrip) {
  const char *names[] = {"tiny", "small-f16"};
  for (int i = 0; i < 2; i++) {
    char rel[128], a[1100], dir[1100], b[1100], path[1200];
    snprintf(rel, sizeof rel, "tests/golden/hf/%s", names[i]);
    snprintf(a, sizeof a, "%s/rt-%s.safetensors", tu_tmpdir(), names[i]);
    snprintf(dir, sizeof dir, "%s/rt-%s-hf", tu_tmpdir(), names[i]);
    snprintf(b, sizeof b, "%s/rt-%s-back.safetensors", tu_tmpdir(), names[i]);
    run_ok("import '%s' -o '%s'", tu_src(rel), a);
    run_ok("export-hf '%s' -o '%s'", a, dir);
    run_ok("import '%s' --out '%s'", dir, b);
    loaded la, lb;
    load_ckpt(a, &la);
    load_ckpt(b, &lb);
    ck_assert_int_eq(la.n, lb.n);
    ck_assert_uint_eq(la.np, lb.np);
    assert_tensors_equal(la.params, lb.params, la.t, la.n);
    check_expected(names[i], &lb);

    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text;
    size_t len;
    ck_assert_int_eq(util_read_file(path, &text, &len), 0);
    json_val *c = json_parse(text, len, path);
    free(text);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(json_get(c, "architectures")->items[0].str, "GPT2LMHeadModel");
    ck_assert_str_eq(json_get(c, "model_type")->str, "gpt2");
    ck_assert_str_eq(json_get(c, "activation_function")->str, "gelu_new");
    ck_assert(json_get(c, "layer_norm_epsilon")->num == 1e-5);
    ck_assert_int_eq(json_get(c, "n_embd")->i, la.cfg.emb_dim);
    ck_assert_int_eq(json_get(c, "n_layer")->i, la.cfg.n_layers);
    ck_assert_int_eq(json_get(c, "n_head")->i, 2);
    ck_assert_int_eq(json_get(c, "n_positions")->i, la.cfg.context_length);
    ck_assert_int_eq(json_get(c, "vocab_size")->i, 50257);
    ck_assert_int_eq(json_get(c, "eos_token_id")->i, 50256);
    ck_assert_int_eq(json_get(c, "tie_word_embeddings")->boolean, la.cfg.tie_embeddings);
    json_free(c);

    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ckpt_st *st = ckpt_st_open(path);
    ck_assert_ptr_nonnull(st);
    ck_assert_str_eq(ckpt_st_meta(st, "format", NULL), "pt");
    ck_assert_int_eq(ckpt_st_count(st), la.n);
    for (int k = 0; k < ckpt_st_count(st); k++) {
      const ckpt_st_tensor *e = ckpt_st_at(st, k);
      ck_assert_int_eq(e->dtype, CKPT_F32);
      ck_assert_msg(!strncmp(e->name, "transformer.", 12) || !strcmp(e->name, "lm_head.weight"), "%s", e->name);
    }
    ck_assert((ckpt_st_find(st, "lm_head.weight") != NULL) == !la.cfg.tie_embeddings);
    ckpt_st_close(st);

    /* the gpt2 tokenizer files are the embedded BPE tables */
    char *x, *y;
    size_t nx, ny;
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    ck_assert_int_eq(util_read_file(path, &x, &nx), 0);
    ck_assert_int_eq(util_read_file(tu_src("data/gpt2/encoder.json"), &y, &ny), 0);
    ck_assert(nx == ny && memcmp(x, y, nx) == 0);
    free(x);
    free(y);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    ck_assert_int_eq(util_read_file(path, &x, &nx), 0);
    ck_assert_int_eq(util_read_file(tu_src("data/gpt2/vocab.bpe"), &y, &ny), 0);
    ck_assert(nx == ny && memcmp(x, y, nx) == 0);
    free(x);
    free(y);
    free_loaded(&la);
    free_loaded(&lb);
  }
}
END_TEST

/* A model without qkv_bias exports zero c_attn.bias tensors (GPT-2 always
 * has them); importing it back gives the same function. */
START_TEST(export_without_qkv_bias) {
  const char *src = "return { name = 'nq', tokenizer = 'gpt2', emb_dim = 8, n_heads = 2, n_layers = 2,"
                    " context_length = 8, qkv_bias = false, tie_embeddings = false, train = { batch_size = 1 } }";
  cfg_t cfg;
  ck_assert_msg(cfg_load_string(src, "nq.lua", &cfg) == 0, "%s", util_errmsg());
  gptc_tensor *t;
  int n;
  size_t np;
  ck_assert_int_eq(gen_tensors(&cfg, &t, &n, &np), 0);
  float *p = calloc(np, sizeof *p);
  for (size_t i = 0; i < np; i++) p[i] = (float)((int)(rnd() % 2001) - 1000) / 4096.0f;
  ckpt_meta meta;
  memset(&meta, 0, sizeof meta);
  meta.config_src = cfg_serialize(&cfg);
  meta.tokenizer = CFG_TOK_GPT2;
  meta.step = 77;
  const char *a = tmp_path("nq.safetensors"), *dir = tmp_path("nq-hf"), *b = tmp_path("nq-back.safetensors");
  ck_assert_int_eq(ckpt_save(a, t, n, np, p, NULL, NULL, &meta), 0);
  free(meta.config_src);
  run_ok("export-hf '%s' -o '%s'", a, dir);
  run_ok("import '%s' -o '%s'", dir, b);
  loaded lb;
  load_ckpt(b, &lb);
  ck_assert(lb.cfg.qkv_bias == 1 && lb.cfg.tie_embeddings == 0 && lb.n == n + 2);
  for (int i = 0; i < n; i++) {
    const float *x = tensor_of(&lb, t[i].name);
    ck_assert_msg(x && memcmp(x, p + t[i].offset, t[i].numel * 4) == 0, "%s differs", t[i].name);
  }
  for (int l = 0; l < 2; l++) {
    char name[64];
    snprintf(name, sizeof name, "h.%d.attn.c_attn.bias", l);
    const float *x = tensor_of(&lb, name);
    ck_assert_ptr_nonnull(x);
    for (int k = 0; k < 24; k++) ck_assert(x[k] == 0.0f && !signbit(x[k]));
  }
  free_loaded(&lb);
  gen_tensors_free(t, n);
  free(p);
}
END_TEST

/* A char-tokenizer model exports too (its vocabulary size, no end-of-text
 * id, no GPT-2 tokenizer files); the weights are the checkpoint's. */
START_TEST(export_char_model) {
  const char *text = "hello world, hello weights";
  tok_t *tok = tok_char_new(text, strlen(text));
  ck_assert_ptr_nonnull(tok);
  char *blob;
  size_t blen;
  ck_assert_int_eq(tok_vocab_save(tok, &blob, &blen), 0);
  cfg_t cfg;
  ck_assert_int_eq(cfg_load_string("return { name = 'c', tokenizer = 'char', emb_dim = 8, n_heads = 2, n_layers = 1,"
                                   " context_length = 8, train = { batch_size = 1 } }",
                                   "c.lua", &cfg),
                   0);
  ck_assert_int_eq(cfg_set_vocab(&cfg, tok_vocab_size(tok)), 0);
  gptc_tensor *t;
  int n;
  size_t np;
  ck_assert_int_eq(gen_tensors(&cfg, &t, &n, &np), 0);
  float *p = calloc(np, sizeof *p);
  fill(p, np);
  for (size_t i = 0; i < np; i++)
    if (!isfinite(p[i])) p[i] = 0.5f;
  ckpt_meta meta;
  memset(&meta, 0, sizeof meta);
  meta.config_src = cfg_serialize(&cfg);
  meta.tokenizer = CFG_TOK_CHAR;
  meta.vocab = blob;
  meta.vocab_len = blen;
  const char *a = tmp_path("char.safetensors"), *dir = tmp_path("char-hf");
  ck_assert_int_eq(ckpt_save(a, t, n, np, p, NULL, NULL, &meta), 0);
  run_ok("export-hf '%s' -o '%s'", a, dir);

  char path[1200], *txt;
  size_t len;
  snprintf(path, sizeof path, "%s/config.json", dir);
  ck_assert_int_eq(util_read_file(path, &txt, &len), 0);
  json_val *c = json_parse(txt, len, path);
  free(txt);
  ck_assert_int_eq(json_get(c, "vocab_size")->i, tok_vocab_size(tok));
  ck_assert_int_eq(json_get(c, "bos_token_id")->type, JSON_NULL);
  ck_assert_int_eq(json_get(c, "eos_token_id")->type, JSON_NULL);
  json_free(c);
  snprintf(path, sizeof path, "%s/vocab.json", dir);
  ck_assert(!util_file_exists(path));
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  ckpt_st *st = ckpt_st_open(path);
  ck_assert_ptr_nonnull(st);
  ck_assert_int_eq(ckpt_st_count(st), n + 1); /* + the zero c_attn.bias */
  float *x = malloc(np * sizeof *x);
  for (int i = 0; i < n; i++) {
    char name[128];
    snprintf(name, sizeof name, "transformer.%s", t[i].name);
    const ckpt_st_tensor *e = ckpt_st_find(st, name);
    ck_assert_msg(e && e->numel == t[i].numel, "%s", name);
    ck_assert_int_eq(ckpt_st_read_f32(st, e, x), 0);
    ck_assert_msg(memcmp(x, p + t[i].offset, t[i].numel * 4) == 0, "%s differs", name);
  }
  free(x);
  ckpt_st_close(st);
  free(meta.config_src);
  free(blob);
  free(p);
  gen_tensors_free(t, n);
  tok_free(tok);
}
END_TEST

/* ---- import errors ---------------------------------------------------------- */

static const char *BASE_CONFIG = "{\"n_embd\": 4, \"n_head\": 2, \"n_layer\": 1, \"n_positions\": 8,"
                                 " \"vocab_size\": 50257%s}";

/* A directory with config.json (BASE_CONFIG + extra, or `raw`) and the
 * small-bf16 golden's weights. */
static const char *hf_dir(const char *name, const char *extra, const char *raw) {
  static char dir[1100];
  char path[1200], cfgtext[2048];
  snprintf(dir, sizeof dir, "%s/%s", tu_tmpdir(), name);
  util_mkdir_p(dir);
  snprintf(path, sizeof path, "%s/config.json", dir);
  snprintf(cfgtext, sizeof cfgtext, BASE_CONFIG, extra ? extra : "");
  FILE *f = fopen(path, "w");
  fputs(raw ? raw : cfgtext, f);
  fclose(f);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  unlink(path);
  ck_assert_int_eq(symlink(tu_src("tests/golden/hf/small-bf16/model.safetensors"), path), 0);
  return dir;
}

static void import_fails(const char *dir, const char *msg) {
  tu_run_result r;
  char out[1200];
  snprintf(out, sizeof out, "%s/never.safetensors", tu_tmpdir());
  tu_run(&r, NULL, "import '%s' -o '%s'", dir, out);
  char want[4096];
  snprintf(want, sizeof want, "gptc: %s\n", msg);
  ck_assert_msg(r.code == 1, "exit %d for %s", r.code, msg);
  ck_assert_str_eq(r.err, want);
  ck_assert(!util_file_exists(out));
  tu_run_free(&r);
}

static void import_fails_cfg(const char *extra, const char *raw, const char *msg) {
  const char *dir = hf_dir("bad-cfg", extra, raw);
  char want[2048];
  snprintf(want, sizeof want, "%s/config.json: %s", dir, msg);
  import_fails(dir, want);
}

START_TEST(import_bad_config) {
  /* the base directory itself imports */
  const char *dir = hf_dir("good", NULL, NULL);
  run_ok("import '%s' -o '%s'", dir, tmp_path("good.safetensors"));

  import_fails_cfg(NULL, "{\"n_embd\": 4,}", "invalid JSON at byte 13: trailing comma in object");
  import_fails_cfg(NULL, "[4]", "must be a JSON object (got array)");
  import_fails_cfg(", \"model_type\": \"llama\"", NULL, "field 'model_type' must be \"gpt2\" (got \"llama\")");
  import_fails_cfg(NULL, "{\"n_head\": 2, \"n_layer\": 1, \"n_positions\": 8, \"vocab_size\": 50257}",
                   "field 'n_embd' is required");
  import_fails_cfg(NULL,
                   "{\"n_embd\": \"4\", \"n_head\": 2, \"n_layer\": 1, \"n_positions\": 8, \"vocab_size\": 50257}",
                   "field 'n_embd' must be a positive integer (got string)");
  import_fails_cfg(NULL, "{\"n_embd\": 4.5, \"n_head\": 2, \"n_layer\": 1, \"n_positions\": 8, \"vocab_size\": 50257}",
                   "field 'n_embd' must be a positive integer (got 4.5)");
  import_fails_cfg(NULL, "{\"n_embd\": 4, \"n_head\": 2, \"n_layer\": 1, \"vocab_size\": 50257}",
                   "field 'n_positions' (or 'n_ctx') is required");
  import_fails_cfg(NULL, "{\"n_embd\": 4, \"n_head\": 2, \"n_layer\": 1, \"n_positions\": 8, \"vocab_size\": 100}",
                   "field 'vocab_size' must be 50257, the GPT-2 tokenizer's vocabulary (got 100)");
  import_fails_cfg(", \"layer_norm_epsilon\": 1e-6", NULL,
                   "field 'layer_norm_epsilon' must be 1e-05 as in GPT-2 (got 1e-06)");
  import_fails_cfg(", \"activation_function\": \"relu\"", NULL,
                   "field 'activation_function' must be \"gelu_new\" (got \"relu\")");
  import_fails_cfg(", \"n_inner\": 12", NULL, "field 'n_inner' must be null or 4 * n_embd = 16 (got 12)");
  import_fails_cfg(", \"scale_attn_by_inverse_layer_idx\": true", NULL,
                   "field 'scale_attn_by_inverse_layer_idx' must be false for GPT-2");
  import_fails_cfg(", \"tie_word_embeddings\": 1", NULL,
                   "field 'tie_word_embeddings' must be true or false (got number)");
  /* a rule of gen/config.lua, reached through the generated config */
  import_fails_cfg(NULL, "{\"n_embd\": 5, \"n_head\": 2, \"n_layer\": 1, \"n_positions\": 8, \"vocab_size\": 50257}",
                   "field 'emb_dim' must be divisible by n_heads (2) (got 5)");
  /* n_ctx stands in for n_positions; gelu_pytorch_tanh and null n_inner are GPT-2 */
  dir = hf_dir("n-ctx", NULL,
               "{\"n_embd\": 4, \"n_head\": 2, \"n_layer\": 1, \"n_ctx\": 8, \"vocab_size\": 50257, \"n_inner\": null,"
               " \"activation_function\": \"gelu_pytorch_tanh\", \"resid_pdrop\": 0.0}");
  run_ok("import '%s' -o '%s'", dir, tmp_path("n-ctx.safetensors"));
  loaded l;
  load_ckpt(tmp_path("n-ctx.safetensors"), &l);
  ck_assert(l.cfg.context_length == 8 && l.cfg.drop_rate == 0.0);
  ck_assert_str_eq(l.cfg.name, "n-ctx");
  free_loaded(&l);
  /* the shape the config promises is checked against the weights */
  dir =
      hf_dir("wide", NULL, "{\"n_embd\": 8, \"n_head\": 2, \"n_layer\": 1, \"n_positions\": 8, \"vocab_size\": 50257}");
  char want[2048];
  snprintf(want, sizeof want,
           "%s/model.safetensors: tensor 'wte.weight' has shape [50257, 4], expected [50257, 8] from config.json", dir);
  import_fails(dir, want);
}
END_TEST

/* Writes `dir`/model.safetensors from the small-bf16 golden's tensors (as
 * F32, GPT2Model names), edited by `edit`. */
typedef struct {
  ckpt_st_out t[40];
  float *data[40];
  int n;
} hf_tensors;

static void hf_golden_tensors(hf_tensors *h) {
  ckpt_st *st = ckpt_st_open(tu_src("tests/golden/hf/small-bf16/model.safetensors"));
  ck_assert_ptr_nonnull(st);
  h->n = ckpt_st_count(st);
  for (int i = 0; i < h->n; i++) {
    const ckpt_st_tensor *e = ckpt_st_at(st, i);
    memset(&h->t[i], 0, sizeof h->t[i]);
    h->t[i].name = util_strdup(e->name);
    h->t[i].ndim = e->ndim;
    memcpy(h->t[i].shape, e->shape, sizeof e->shape);
    h->data[i] = malloc(e->numel * sizeof(float));
    ck_assert_int_eq(ckpt_st_read_f32(st, e, h->data[i]), 0);
    h->t[i].data = h->data[i];
  }
  ckpt_st_close(st);
}

static int hf_find(const hf_tensors *h, const char *name) {
  for (int i = 0; i < h->n; i++)
    if (!strcmp(h->t[i].name, name)) return i;
  ck_abort_msg("no tensor %s", name);
  return -1;
}

static void hf_add(hf_tensors *h, const char *name, int ndim, const uint64_t *shape, const float *like) {
  int i = h->n++;
  memset(&h->t[i], 0, sizeof h->t[i]);
  h->t[i].name = util_strdup(name);
  h->t[i].ndim = ndim;
  size_t numel = 1;
  for (int d = 0; d < ndim; d++) numel *= (size_t)(h->t[i].shape[d] = shape[d]);
  h->data[i] = calloc(numel, sizeof(float));
  if (like) memcpy(h->data[i], like, numel * sizeof(float));
  h->t[i].data = h->data[i];
}

static void hf_rename(hf_tensors *h, int i, const char *name) {
  free((char *)h->t[i].name);
  h->t[i].name = util_strdup(name);
}

static void hf_free(hf_tensors *h) {
  for (int i = 0; i < h->n; i++) {
    free((char *)h->t[i].name);
    free(h->data[i]);
  }
}

static const char *hf_write_dir(const char *name, hf_tensors *h, const char *extra_cfg) {
  const char *dir = hf_dir(name, extra_cfg, NULL);
  char path[1200];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  unlink(path);
  ckpt_st_kv kv[] = {{"format", "pt", 2}};
  ck_assert_int_eq(ckpt_st_write(path, kv, 1, h->t, h->n), 0);
  return dir;
}

START_TEST(import_bad_weights) {
  char want[2048];
  hf_tensors h;
  const char *dir;

  /* mask buffers of older transformers are skipped; an equal tied lm_head is fine */
  hf_golden_tensors(&h);
  const uint64_t mask[4] = {1, 1, 8, 8}, vocab[2] = {50257, 4}, three[1] = {3}, four[1] = {4};
  hf_add(&h, "h.0.attn.bias", 4, mask, NULL);
  hf_add(&h, "h.0.attn.masked_bias", 0, NULL, NULL);
  hf_add(&h, "lm_head.weight", 2, vocab, h.data[hf_find(&h, "wte.weight")]);
  dir = hf_write_dir("buffers", &h, NULL);
  run_ok("import '%s' -o '%s'", dir, tmp_path("buffers.safetensors"));
  loaded l;
  load_ckpt(tmp_path("buffers.safetensors"), &l);
  check_expected("small-bf16", &l);
  free_loaded(&l);

  /* a tied lm_head that differs from wte */
  h.data[h.n - 1][5] += 1.0f;
  dir = hf_write_dir("lm-head", &h, NULL);
  snprintf(want, sizeof want,
           "%s/model.safetensors: tensor 'lm_head.weight' differs from wte.weight but config.json"
           " ties them (tie_word_embeddings is true)",
           dir);
  import_fails(dir, want);
  /* untied but lm_head.weight absent */
  h.n--;
  free((char *)h.t[h.n].name);
  free(h.data[h.n]);
  dir = hf_write_dir("untied", &h, ", \"tie_word_embeddings\": false");
  snprintf(want, sizeof want, "%s/model.safetensors: missing tensor 'lm_head.weight'", dir);
  import_fails(dir, want);
  hf_free(&h);

  hf_golden_tensors(&h);
  int k = hf_find(&h, "ln_f.bias");
  h.data[k][3] = NAN;
  dir = hf_write_dir("nan", &h, NULL);
  snprintf(want, sizeof want, "%s/model.safetensors: tensor 'ln_f.bias' has a non-finite value at index 3", dir);
  import_fails(dir, want);
  h.data[k][3] = 0.0f;
  hf_rename(&h, k, "transformer.ln_f.bias");
  hf_add(&h, "ln_f.bias", 1, four, NULL);
  dir = hf_write_dir("twice", &h, NULL);
  snprintf(want, sizeof want,
           "%s/model.safetensors: tensor 'ln_f.bias' appears twice ('transformer.ln_f.bias' and"
           " 'ln_f.bias')",
           dir);
  import_fails(dir, want);
  hf_free(&h);

  hf_golden_tensors(&h);
  hf_add(&h, "transformer.h.0.attn.extra", 1, three, NULL);
  dir = hf_write_dir("extra", &h, NULL);
  snprintf(want, sizeof want,
           "%s/model.safetensors: unexpected tensor 'transformer.h.0.attn.extra' (not part of a"
           " GPT-2 model with this config.json)",
           dir);
  import_fails(dir, want);
  hf_free(&h);

  hf_golden_tensors(&h);
  k = hf_find(&h, "h.0.mlp.c_fc.weight");
  h.t[k].shape[0] = 16, h.t[k].shape[1] = 4; /* transposed (a Linear layout) */
  dir = hf_write_dir("transposed", &h, NULL);
  snprintf(want, sizeof want,
           "%s/model.safetensors: tensor 'h.0.mlp.c_fc.weight' has shape [16, 4], expected [4, 16]"
           " from config.json",
           dir);
  import_fails(dir, want);
  hf_free(&h);

  /* a dtype other than F32, F16 and BF16: ln_f.bias's 8 bytes relabelled as one F64 (the header
   * keeps its length: one space of padding, which safetensors allows) */
  char *b;
  size_t n;
  ck_assert_int_eq(util_read_file(tu_src("tests/golden/hf/small-bf16/model.safetensors"), &b, &n), 0);
  {
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (unsigned char)b[i];
    char *hdr = util_malloc(hlen + 1, "header");
    memcpy(hdr, b + 8, hlen);
    hdr[hlen] = 0;
    const char *from = "\"ln_f.bias\":{\"dtype\":\"BF16\",\"shape\":[4],";
    const char *to = "\"ln_f.bias\":{\"dtype\":\"F64\",\"shape\":[1],";
    char *at = strstr(hdr, from);
    ck_assert_ptr_nonnull(at);
    size_t pre = (size_t)(at - hdr), lf = strlen(from), lt = strlen(to);
    char *patched = util_malloc(n, "file");
    memcpy(patched, b, 8 + pre);
    memcpy(patched + 8 + pre, to, lt);
    memcpy(patched + 8 + pre + lt, hdr + pre + lf, hlen - pre - lf);
    memset(patched + 8 + hlen - (lf - lt), ' ', lf - lt);
    memcpy(patched + 8 + hlen, b + 8 + hlen, n - 8 - hlen);
    dir = hf_dir("f64", NULL, NULL);
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    tu_write("f64/model.safetensors", patched, n);
    snprintf(want, sizeof want, "%s/model.safetensors: tensor 'ln_f.bias' has dtype F64 (supported: F32, F16, BF16)",
             dir);
    import_fails(dir, want);
    free(hdr), free(patched);
  }
  /* no model.safetensors: sharded, PyTorch-only, or nothing */
  {
    dir = hf_dir("sharded", NULL, NULL);
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    tu_write_str("sharded/model.safetensors.index.json", "{\"weight_map\": {}}");
    snprintf(want, sizeof want, "%s: sharded checkpoints (model.safetensors.index.json) are not supported", dir);
    import_fails(dir, want);
    dir = hf_dir("none", NULL, NULL);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(want, sizeof want, "%s/model.safetensors: cannot open: No such file or directory", dir);
    import_fails(dir, want);
  }

  /* a truncated weights file is caught before any tensor is read */
  dir = hf_dir("cut", NULL, NULL);
  char path[1200];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  unlink(path);
  tu_write("cut/model.safetensors", b, n - 1);
  free(b);
  snprintf(want, sizeof want,
           "%s/model.safetensors: truncated: tensor 'wte.weight' data ends at byte %zu but the file"
           " has %zu bytes",
           dir, n, n - 1);
  import_fails(dir, want);
}
END_TEST

START_TEST(cli_errors) {
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "import --help"), 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: gptc import HF_DIR -o CKPT"));
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "export-hf --help"), 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: gptc export-hf CKPT -o DIR"));
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "import"), 2);
  ck_assert_str_eq(r.err, "gptc import: expected one HF_DIR argument (see 'gptc import --help')\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "import somedir"), 2);
  ck_assert_str_eq(r.err, "gptc import: option '--out' (-o) is required (see 'gptc import --help')\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "export-hf a b -o c"), 2);
  ck_assert_str_eq(r.err, "gptc export-hf: unexpected argument 'b' (see 'gptc export-hf --help')\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "export-hf a --bogus"), 2);
  tu_run_free(&r);

  char want[2048];
  const char *missing = tmp_path("nothing-here");
  ck_assert_int_eq(tu_run(&r, NULL, "import '%s' -o x", missing), 1);
  snprintf(want, sizeof want,
           "gptc: %s: not a directory (expected a Hugging Face GPT-2 directory with config.json and"
           " model.safetensors)\n",
           missing);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);
  util_mkdir_p(tmp_path("empty-hf"));
  tu_write("empty-hf/pytorch_model.bin", "x", 1);
  ck_assert_int_eq(tu_run(&r, NULL, "import '%s' -o x", tmp_path("empty-hf")), 1);
  snprintf(want, sizeof want,
           "gptc: %s: only model.safetensors is supported (found pytorch_model.bin; re-save it with"
           " safe_serialization=True)\n",
           tmp_path("empty-hf"));
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);

  ck_assert_int_eq(tu_run(&r, NULL, "export-hf '%s' -o '%s'", missing, tmp_path("x-hf")), 1);
  snprintf(want, sizeof want, "gptc: %s: cannot open: No such file or directory\n", missing);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);
  /* a Hugging Face file is not a gptc checkpoint */
  const char *hf = tu_src("tests/golden/hf/tiny/model.safetensors");
  ck_assert_int_eq(tu_run(&r, NULL, "export-hf '%s' -o '%s'", hf, tmp_path("x-hf")), 1);
  snprintf(want, sizeof want,
           "gptc: %s: not a gptc checkpoint (no gptc_format metadata; use `gptc import` for Hugging"
           " Face files)\n",
           hf);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ckpt_hf");
  TCase *hf = tcase_create("hf");
  tcase_add_test(hf, import_goldens);
  tcase_add_test(hf, export_import_roundtrip);
  tcase_add_test(hf, export_without_qkv_bias);
  tcase_add_test(hf, export_char_model);
  tcase_add_test(hf, import_bad_config);
  tcase_add_test(hf, import_bad_weights);
  tcase_add_test(hf, cli_errors);
  suite_add_tcase(s, hf);
  return tu_main(s);
}
