/* ckpt_hf: Hugging Face GPT-2 directories to gptc checkpoints and back (the
 * work of `gptc import` and `gptc export-hf`, whose commands are cmd_ckpt.c).
 * Output loads with transformers' GPT2LMHeadModel.from_pretrained.
 *
 * gptc tensors already carry the Hugging Face GPT-2 names and layouts
 * (Conv1D weights [in, out]), so both directions are renames: a
 * "transformer." prefix, the tied lm_head, and c_attn.bias, which GPT-2
 * always has and a gptc model only with qkv_bias. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "ckpt_hf.h"
#include "embed.h"
#include "gen.h"
#include "json.h"
#include "tok.h"
#include "util.h"

/* ---- config.json ---------------------------------------------------------- */

typedef struct {
  int n_embd, n_head, n_layer, n_positions, tie;
  double drop;
} ckpt_hf_config;

static const json_val *ckpt_hf_field(const json_val *root, const char *key, int type, const char *path,
                                     const char *rule, int *bad) {
  const json_val *v = json_get(root, key);
  if (!v || v->type == JSON_NULL) return NULL;
  if (v->type != type) {
    util_err("%s: field '%s' must be %s (got %s)", path, key, rule, json_type_name(v->type));
    *bad = 1;
    return NULL;
  }
  return v;
}

static int ckpt_hf_posint(const json_val *root, const char *key, const char *path, int *out, int *bad) {
  const json_val *v = ckpt_hf_field(root, key, JSON_NUM, path, "a positive integer", bad);
  if (*bad) return -1;
  if (!v) return 0;
  if (!v->is_int || v->i <= 0 || v->i > INT32_MAX)
    return *bad = 1, util_err("%s: field '%s' must be a positive integer (got %g)", path, key, v->num);
  *out = (int)v->i;
  return 1;
}

/* Reads the fields that define the model and refuses any variant whose math
 * differs from the GPT-2 gptc generates. */
static int ckpt_hf_read_config(const char *dir, ckpt_hf_config *hc) {
  char path[4200];
  if (util_path(path, sizeof path, "%s/config.json", dir)) return -1;
  char *text;
  size_t len;
  if (util_read_file(path, &text, &len)) return -1;
  json_val *root = json_parse(text, len, path);
  free(text);
  if (!root) return -1;
  int bad = 0, rc = -1, vocab = 0;
  const json_val *v;
  if (root->type != JSON_OBJ) {
    util_err("%s: must be a JSON object (got %s)", path, json_type_name(root->type));
    goto out;
  }
  if ((v = ckpt_hf_field(root, "model_type", JSON_STR, path, "a string", &bad)) && strcmp(v->str, "gpt2")) {
    util_err("%s: field 'model_type' must be \"gpt2\" (got \"%.40s\")", path, v->str);
    goto out;
  }
  if (bad) goto out;
  static const char *const need[] = {"n_embd", "n_head", "n_layer", "vocab_size"};
  int *dst[] = {&hc->n_embd, &hc->n_head, &hc->n_layer, &vocab};
  for (int i = 0; i < 4; i++) {
    int got = ckpt_hf_posint(root, need[i], path, dst[i], &bad);
    if (got < 0) goto out;
    if (!got) {
      util_err("%s: field '%s' is required", path, need[i]);
      goto out;
    }
  }
  int got = ckpt_hf_posint(root, "n_positions", path, &hc->n_positions, &bad);
  if (!got) got = ckpt_hf_posint(root, "n_ctx", path, &hc->n_positions, &bad);
  if (got < 0) goto out;
  if (!got) {
    util_err("%s: field 'n_positions' (or 'n_ctx') is required", path);
    goto out;
  }
  if (vocab != 50257) {
    util_err("%s: field 'vocab_size' must be 50257, the GPT-2 tokenizer's vocabulary (got %d)", path, vocab);
    goto out;
  }
  if ((v = ckpt_hf_field(root, "layer_norm_epsilon", JSON_NUM, path, "a number", &bad)) && v->num != 1e-5) {
    util_err("%s: field 'layer_norm_epsilon' must be 1e-05 as in GPT-2 (got %g)", path, v->num);
    goto out;
  }
  if (bad) goto out;
  /* gelu_pytorch_tanh is the same tanh approximation under another name */
  if ((v = ckpt_hf_field(root, "activation_function", JSON_STR, path, "a string", &bad)) &&
      strcmp(v->str, "gelu_new") && strcmp(v->str, "gelu_pytorch_tanh")) {
    util_err("%s: field 'activation_function' must be \"gelu_new\" (got \"%.40s\")", path, v->str);
    goto out;
  }
  if (bad) goto out;
  int n_inner = 0;
  if (ckpt_hf_posint(root, "n_inner", path, &n_inner, &bad) < 0) goto out;
  if (n_inner && n_inner != 4 * hc->n_embd) {
    util_err("%s: field 'n_inner' must be null or 4 * n_embd = %d (got %d)", path, 4 * hc->n_embd, n_inner);
    goto out;
  }
  static const struct {
    const char *key;
    int want;
  } flags[] = {{"scale_attn_weights", 1}, {"scale_attn_by_inverse_layer_idx", 0}, {"add_cross_attention", 0}};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    v = ckpt_hf_field(root, flags[i].key, JSON_BOOL, path, "true or false", &bad);
    if (bad) goto out;
    if (v && v->boolean != flags[i].want) {
      util_err("%s: field '%s' must be %s for GPT-2", path, flags[i].key, flags[i].want ? "true" : "false");
      goto out;
    }
  }
  hc->tie = 1;
  v = ckpt_hf_field(root, "tie_word_embeddings", JSON_BOOL, path, "true or false", &bad);
  if (bad) goto out;
  if (v) hc->tie = v->boolean;
  hc->drop = 0.1;
  v = ckpt_hf_field(root, "resid_pdrop", JSON_NUM, path, "a number", &bad);
  if (bad) goto out;
  if (v) hc->drop = v->num;
  rc = 0;
out:
  json_free(root);
  return rc;
}

/* The model name: the directory's last component, at most 100 bytes (cut
 * at a UTF-8 character boundary). */
static void ckpt_hf_name(const char *dir, char *out, size_t cap) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", dir);
  size_t n = strlen(buf);
  while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
  char *base = strrchr(buf, '/');
  base = base ? base + 1 : buf;
  char *real = NULL;
  if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) {
    real = realpath(dir, NULL);
    const char *slash = real ? strrchr(real, '/') : NULL;
    base = slash && slash[1] ? (char *)slash + 1 : "imported";
  }
  snprintf(out, cap, "%s", base);
  free(real);
  size_t k = strlen(out);
  if (k > 100) {
    k = 100;
    while (k > 0 && ((unsigned char)out[k] & 0xC0) == 0x80) k--;
    out[k] = '\0';
  }
}

static int ckpt_lua_str(util_buf *b, const char *s) {
  if (util_buf_add(b, "\"", 1)) return -1;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      if (util_buf_printf(b, "\\%c", *p)) return -1;
    } else if (*p < 0x20 || *p == 0x7f) {
      if (util_buf_printf(b, "\\%03d", *p)) return -1;
    } else if (util_buf_add(b, p, 1)) {
      return -1;
    }
  }
  return util_buf_add(b, "\"", 1);
}

/* Builds the gptc config through the ordinary loader, so every rule of
 * gen/config.lua applies. Training settings follow configs/gpt2-124m.lua
 * (small batches for fine-tuning); the rest are the schema defaults. */
static int ckpt_hf_cfg(const char *dir, const ckpt_hf_config *hc, cfg_t *cfg) {
  char name[256], where[4200];
  ckpt_hf_name(dir, name, sizeof name);
  util_buf b = {0};
  int rc = -1;
  if (util_buf_printf(&b, "return {\n  name = ") || ckpt_lua_str(&b, name) ||
      util_buf_printf(&b,
                      ",\n  tokenizer = \"gpt2\",\n  vocab_size = 50257,\n  emb_dim = %d,\n  n_heads = %d,\n"
                      "  n_layers = %d,\n  context_length = %d,\n  drop_rate = %.17g,\n  qkv_bias = true,\n"
                      "  tie_embeddings = %s,\n  train = { batch_size = 2, max_length = %d },\n}\n",
                      hc->n_embd, hc->n_head, hc->n_layer, hc->n_positions, hc->drop, hc->tie ? "true" : "false",
                      hc->n_positions < 256 ? hc->n_positions : 256))
    goto out;
  snprintf(where, sizeof where, "%s/config.json", dir);
  rc = cfg_load_data(b.data, where, cfg);
out:
  util_buf_free(&b);
  return rc;
}

/* ---- import ------------------------------------------------------------- */

static int ckpt_hf_ignored(const char *name) {
  size_t n = strlen(name);
  if (strncmp(name, "h.", 2)) return 0;
  return (n > 10 && !strcmp(name + n - 10, ".attn.bias")) || (n > 17 && !strcmp(name + n - 17, ".attn.masked_bias"));
}

static void ckpt_hf_shape(char *out, size_t cap, int ndim, const uint64_t *shape) {
  size_t k = (size_t)snprintf(out, cap, "[");
  for (int i = 0; i < ndim && k < cap; i++)
    k += (size_t)snprintf(out + k, cap - k, "%s%" PRIu64, i ? ", " : "", shape[i]);
  if (k < cap) snprintf(out + k, cap - k, "]");
}

static int ckpt_hf_finite(const char *path, const char *name, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return util_err("%s: tensor '%s' has a non-finite value at index %zu", path, name, i);
  return 0;
}

/* Fills params from the HF file: every table tensor must appear once (with
 * or without the "transformer." prefix) with its shape; a tied lm_head.weight
 * must equal wte; attention mask buffers are skipped; anything else is an
 * error. */
static int ckpt_hf_load(ckpt_st *st, const char *path, const gptc_tensor *t, int n, float *params,
                        const char **dtype_seen) {
  const ckpt_st_tensor **src = util_calloc((size_t)n, sizeof *src, "tensor map");
  const ckpt_st_tensor *lm_head = NULL;
  float *tmp = NULL;
  int rc = -1;
  if (!src) return -1;
  for (int i = 0; i < ckpt_st_count(st); i++) {
    const ckpt_st_tensor *e = ckpt_st_at(st, i);
    const char *name = !strncmp(e->name, "transformer.", 12) ? e->name + 12 : e->name;
    if (ckpt_hf_ignored(name)) continue;
    int k = 0;
    while (k < n && strcmp(t[k].name, name)) k++;
    if (k == n && !strcmp(name, "lm_head.weight")) {
      lm_head = e;
      continue;
    }
    if (k == n) {
      util_err("%s: unexpected tensor '%s' (not part of a GPT-2 model with this config.json)", path, e->name);
      goto out;
    }
    if (src[k]) {
      util_err("%s: tensor '%s' appears twice ('%s' and '%s')", path, t[k].name, src[k]->name, e->name);
      goto out;
    }
    src[k] = e;
  }
  for (int k = 0; k < n; k++) {
    const ckpt_st_tensor *e = src[k];
    if (!e) {
      util_err("%s: missing tensor '%s'", path, t[k].name);
      goto out;
    }
    if (e->dtype == CKPT_OTHER) {
      util_err("%s: tensor '%s' has dtype %s (supported: F32, F16, BF16)", path, e->name, e->dtype_name);
      goto out;
    }
    uint64_t want[2] = {(uint64_t)t[k].shape[0], t[k].ndim > 1 ? (uint64_t)t[k].shape[1] : 0};
    if (e->ndim != t[k].ndim || e->shape[0] != want[0] || (t[k].ndim == 2 && e->shape[1] != want[1])) {
      char gs[160], ws[160];
      ckpt_hf_shape(gs, sizeof gs, e->ndim, e->shape);
      ckpt_hf_shape(ws, sizeof ws, t[k].ndim, want);
      util_err("%s: tensor '%s' has shape %s, expected %s from config.json", path, e->name, gs, ws);
      goto out;
    }
    if (ckpt_st_read_f32(st, e, params + t[k].offset) ||
        ckpt_hf_finite(path, e->name, params + t[k].offset, t[k].numel))
      goto out;
    *dtype_seen = e->dtype_name;
  }
  if (lm_head) {
    int w = 0;
    while (w < n && strcmp(t[w].name, "wte.weight")) w++;
    if (w == n || lm_head->numel != t[w].numel || lm_head->dtype == CKPT_OTHER) {
      util_err("%s: tensor 'lm_head.weight' does not match wte.weight (tie_word_embeddings is true)", path);
      goto out;
    }
    tmp = util_malloc(t[w].numel * sizeof *tmp, "lm_head.weight");
    if (!tmp || ckpt_st_read_f32(st, lm_head, tmp)) goto out;
    if (memcmp(tmp, params + t[w].offset, t[w].numel * sizeof *tmp)) {
      util_err("%s: tensor 'lm_head.weight' differs from wte.weight but config.json ties them"
               " (tie_word_embeddings is true)",
               path);
      goto out;
    }
  }
  rc = 0;
out:
  free(tmp);
  free(src);
  return rc;
}

int ckpt_hf_import(const char *dir, const char *out) {
  if (!util_is_dir(dir))
    return util_err("%s: not a directory (expected a Hugging Face GPT-2 directory with config.json and "
                    "model.safetensors)",
                    dir);
  char path[4200];
  if (util_path(path, sizeof path, "%s/model.safetensors", dir)) return -1;
  if (!util_file_exists(path)) {
    char other[4200];
    if (util_path(other, sizeof other, "%s/model.safetensors.index.json", dir)) return -1;
    if (util_file_exists(other))
      return util_err("%s: sharded checkpoints (model.safetensors.index.json) are not supported", dir);
    if (util_path(other, sizeof other, "%s/pytorch_model.bin", dir)) return -1;
    if (util_file_exists(other))
      return util_err("%s: only model.safetensors is supported (found pytorch_model.bin; re-save it with "
                      "safe_serialization=True)",
                      dir);
    return util_err("%s: cannot open: %s", path, strerror(ENOENT));
  }
  ckpt_hf_config hc;
  cfg_t cfg;
  if (ckpt_hf_read_config(dir, &hc) || ckpt_hf_cfg(dir, &hc, &cfg)) return -1;

  gptc_tensor *t = NULL;
  int n = 0, rc = -1;
  size_t n_params = 0;
  float *params = NULL;
  ckpt_st *st = NULL;
  ckpt_meta meta;
  memset(&meta, 0, sizeof meta);
  const char *dtype = "F32";
  if (gen_tensors(&cfg, &t, &n, &n_params)) return -1;
  params = util_malloc(n_params * sizeof *params, "parameters");
  if (!params || !(st = ckpt_st_open(path)) || ckpt_hf_load(st, path, t, n, params, &dtype)) goto out;
  meta.config_src = cfg_serialize(&cfg);
  if (!meta.config_src) goto out;
  meta.tokenizer = CFG_TOK_GPT2;
  meta.seed = cfg.train.seed;
  meta.best_val = INFINITY;
  char *slash = strrchr(out, '/');
  if (slash && slash != out) {
    char parent[4200];
    if (util_path(parent, sizeof parent, "%.*s", (int)(slash - out), out) || util_mkdir_p(parent)) goto out;
  }
  if (ckpt_save(out, t, n, n_params, params, NULL, NULL, &meta)) goto out;
  printf("imported %s (%s): n_layers %d, n_heads %d, emb_dim %d, context_length %d, %s embeddings, %zu parameters"
         " -> %s\n",
         dir, dtype, cfg.n_layers, cfg.n_heads, cfg.emb_dim, cfg.context_length, cfg.tie_embeddings ? "tied" : "untied",
         n_params, out);
  rc = 0;
out:
  ckpt_st_close(st);
  free(meta.config_src);
  free(params);
  gen_tensors_free(t, n);
  return rc;
}

/* ---- export ------------------------------------------------------------- */

/* Every field transformers' GPT2Config has, in its own key order; "dtype"
 * is the current name of "torch_dtype", both are written for old and new
 * versions. eot < 0 writes null bos/eos ids. */
static int ckpt_hf_config_json(const cfg_t *cfg, int eot, const char *path) {
  util_buf drop = {0}, b = {0};
  char eots[16] = "null";
  if (eot >= 0) snprintf(eots, sizeof eots, "%d", eot);
  int rc = -1;
  if (json_write_num(&drop, cfg->drop_rate, path) || util_buf_add(&drop, "", 1)) goto out;
  if (util_buf_printf(&b,
                      "{\n"
                      "  \"activation_function\": \"gelu_new\",\n"
                      "  \"add_cross_attention\": false,\n"
                      "  \"architectures\": [\n    \"GPT2LMHeadModel\"\n  ],\n"
                      "  \"attn_pdrop\": %s,\n"
                      "  \"bos_token_id\": %s,\n"
                      "  \"dtype\": \"float32\",\n"
                      "  \"embd_pdrop\": %s,\n"
                      "  \"eos_token_id\": %s,\n"
                      "  \"initializer_range\": 0.02,\n"
                      "  \"layer_norm_epsilon\": 1e-05,\n"
                      "  \"model_type\": \"gpt2\",\n"
                      "  \"n_ctx\": %d,\n"
                      "  \"n_embd\": %d,\n"
                      "  \"n_head\": %d,\n"
                      "  \"n_inner\": null,\n"
                      "  \"n_layer\": %d,\n"
                      "  \"n_positions\": %d,\n"
                      "  \"reorder_and_upcast_attn\": false,\n"
                      "  \"resid_pdrop\": %s,\n"
                      "  \"scale_attn_by_inverse_layer_idx\": false,\n"
                      "  \"scale_attn_weights\": true,\n"
                      "  \"summary_activation\": null,\n"
                      "  \"summary_first_dropout\": 0.1,\n"
                      "  \"summary_proj_to_labels\": true,\n"
                      "  \"summary_type\": \"cls_index\",\n"
                      "  \"summary_use_proj\": true,\n"
                      "  \"tie_word_embeddings\": %s,\n"
                      "  \"torch_dtype\": \"float32\",\n"
                      "  \"use_cache\": true,\n"
                      "  \"vocab_size\": %d\n"
                      "}\n",
                      drop.data, eots, drop.data, eots, cfg->context_length, cfg->emb_dim, cfg->n_heads, cfg->n_layers,
                      cfg->context_length, drop.data, cfg->tie_embeddings ? "true" : "false", cfg->vocab_size))
    goto out;
  rc = util_write_file_atomic(path, b.data, b.len);
out:
  util_buf_free(&drop);
  util_buf_free(&b);
  return rc;
}

/* The GPT-2 BPE files gptc embeds are the Hugging Face vocab.json and
 * merges.txt, so the exported directory also loads with AutoTokenizer. */
static int ckpt_hf_copy_embedded(const char *name, const char *dir, const char *as) {
  const char *data;
  size_t len;
  int owned;
  char path[4200];
  if (embed_get(name, &data, &len, &owned)) return -1;
  int rc = util_path(path, sizeof path, "%s/%s", dir, as) ? -1 : util_write_file_atomic(path, data, len);
  if (owned) free((char *)data);
  return rc;
}

/* The end-of-text id for bos/eos in config.json (-1: the vocabulary has
 * none); also settles vocab_size for a config saved before it was known. */
static int ckpt_hf_eot(const ckpt_meta *meta, cfg_t *cfg, const char *ckpt, int *eot) {
  if (meta->tokenizer == CFG_TOK_GPT2) {
    *eot = 50256;
    return 0;
  }
  tok_t *tok = tok_from_vocab(meta->tokenizer, meta->vocab, meta->vocab_len);
  if (!tok) return util_err("%s: vocabulary: %s", ckpt, util_errmsg());
  *eot = tok_eot(tok);
  int rc = !cfg->vocab_size && cfg_set_vocab(cfg, tok_vocab_size(tok)) ? -1 : 0;
  tok_free(tok);
  return rc;
}

#define CKPT_NAME_MAX 160
typedef char ckpt_name[CKPT_NAME_MAX];

/* The export's tensor list: the gptc tensors with the "transformer." prefix
 * (lm_head as is), plus a zero c_attn.bias per layer when the model has no
 * qkv_bias. Returns the count, or -1. */
static int ckpt_hf_outs(const cfg_t *cfg, const gptc_tensor *t, int n, const float *params, const float *zeros,
                        ckpt_st_out *outs, ckpt_name *names) {
  int k = 0;
  for (int i = 0; i < n; i++, k++) {
    const char *prefix = strcmp(t[i].name, "lm_head.weight") ? "transformer." : "";
    if (snprintf(names[k], CKPT_NAME_MAX, "%s%s", prefix, t[i].name) >= CKPT_NAME_MAX)
      return util_err("tensor table: name '%.40s...' is too long", t[i].name);
    memset(&outs[k], 0, sizeof outs[k]);
    outs[k].name = names[k];
    outs[k].ndim = t[i].ndim;
    for (int d = 0; d < t[i].ndim; d++) outs[k].shape[d] = (uint64_t)t[i].shape[d];
    outs[k].data = params + t[i].offset;
  }
  for (int l = 0; !cfg->qkv_bias && l < cfg->n_layers; l++, k++) {
    snprintf(names[k], CKPT_NAME_MAX, "transformer.h.%d.attn.c_attn.bias", l);
    memset(&outs[k], 0, sizeof outs[k]);
    outs[k].name = names[k];
    outs[k].ndim = 1;
    outs[k].shape[0] = (uint64_t)3 * (uint64_t)cfg->emb_dim;
    outs[k].data = zeros;
  }
  return k;
}

/* What export-hf creates, to take back when it fails (a full disk): the
 * files that were not there before, then the directories it made, from
 * `dir` up to the highest one that was missing. Files it replaced stay. */
static const char *const ckpt_hf_files[] = {"model.safetensors", "config.json", "vocab.json", "merges.txt"};
#define CKPT_HF_NFILES (int)(sizeof ckpt_hf_files / sizeof *ckpt_hf_files)
typedef struct {
  int n_new_dirs;                /* levels of dir created (0: it existed) */
  int existed[CKPT_HF_NFILES];   /* the file was there before */
} ckpt_hf_undo;

static void ckpt_hf_undo_begin(const char *dir, ckpt_hf_undo *u) {
  char p[4200];
  memset(u, 0, sizeof *u);
  snprintf(p, sizeof p, "%s", dir);
  for (size_t n = strlen(p); n > 1 && p[n - 1] == '/'; n--) p[n - 1] = '\0'; /* "a/b/" */
  while (p[0] && !util_file_exists(p)) {
    u->n_new_dirs++;
    char *slash = strrchr(p, '/');
    if (!slash || slash == p) break;
    *slash = '\0';
  }
  for (int i = 0; i < CKPT_HF_NFILES; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, ckpt_hf_files[i]);
    u->existed[i] = util_file_exists(p);
  }
}

static void ckpt_hf_undo_run(const char *dir, const ckpt_hf_undo *u) {
  char p[4200];
  for (int i = 0; i < CKPT_HF_NFILES; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, ckpt_hf_files[i]);
    if (!u->existed[i]) unlink(p);
  }
  snprintf(p, sizeof p, "%s", dir);
  for (size_t n = strlen(p); n > 1 && p[n - 1] == '/'; n--) p[n - 1] = '\0';
  for (int k = 0; k < u->n_new_dirs; k++) {
    if (rmdir(p) != 0 && errno != ENOENT) break; /* not empty: something else is in it now */
    char *slash = strrchr(p, '/');
    if (!slash || slash == p) break;
    *slash = '\0';
  }
}

int ckpt_hf_export(const char *ckpt, const char *dir) {
  ckpt_meta meta;
  cfg_t cfg;
  gptc_tensor *t = NULL;
  int n = 0, eot = -1, rc = -1;
  size_t n_params = 0;
  float *params = NULL, *zeros = NULL;
  ckpt_st_out *outs = NULL;
  ckpt_name *names = NULL;
  char path[4200];
  if (ckpt_load_meta(ckpt, &meta)) return -1;
  if (cfg_load_data(meta.config_src, ckpt, &cfg) || ckpt_hf_eot(&meta, &cfg, ckpt, &eot) ||
      gen_tensors(&cfg, &t, &n, &n_params))
    goto out;
  params = util_malloc(n_params * sizeof *params, "parameters");
  if (!params || ckpt_load_params(ckpt, t, n, n_params, params, NULL, NULL) || ckpt_check_finite(ckpt, t, n, params))
    goto out;
  size_t n_out = (size_t)n + (size_t)cfg.n_layers;
  outs = util_calloc(n_out, sizeof *outs, "tensor list");
  names = util_calloc(n_out, sizeof *names, "tensor names");
  zeros = util_calloc((size_t)3 * (size_t)cfg.emb_dim, sizeof *zeros, "c_attn.bias");
  int k = outs && names && zeros ? ckpt_hf_outs(&cfg, t, n, params, zeros, outs, names) : -1;
  /* model.safetensors is the longest name: when it fits, every path below does */
  if (k < 0 || util_path(path, sizeof path, "%s/%s", dir, ckpt_hf_files[0])) goto out;
  ckpt_hf_undo undo;
  ckpt_hf_undo_begin(dir, &undo);
  ckpt_st_kv kv[] = {{"format", "pt", 2}};
  snprintf(path, sizeof path, "%s/%s", dir, ckpt_hf_files[0]);
  int bad = util_mkdir_p(dir) || ckpt_st_write(path, kv, 1, outs, k);
  snprintf(path, sizeof path, "%s/%s", dir, ckpt_hf_files[1]);
  bad = bad || ckpt_hf_config_json(&cfg, eot, path);
  bad = bad || (meta.tokenizer == CFG_TOK_GPT2 &&
                (ckpt_hf_copy_embedded("data/gpt2/encoder.json", dir, ckpt_hf_files[2]) ||
                 ckpt_hf_copy_embedded("data/gpt2/vocab.bpe", dir, ckpt_hf_files[3])));
  if (bad) {
    ckpt_hf_undo_run(dir, &undo);
    goto out;
  }
  printf("exported %s (step %" PRIu64 ", %zu parameters, %s embeddings%s) -> %s\n", ckpt, meta.step, n_params,
         cfg.tie_embeddings ? "tied" : "untied", cfg.qkv_bias ? "" : ", zero c_attn.bias", dir);
  rc = 0;
out:
  free(names);
  free(outs);
  free(zeros);
  free(params);
  gen_tensors_free(t, n);
  ckpt_meta_free(&meta);
  return rc;
}
