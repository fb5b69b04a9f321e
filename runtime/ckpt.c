/* ckpt: see ckpt.h. gptc checkpoints over the safetensors format of
 * ckpt_st.c. A checkpoint is the params file plus, optionally, "<base>.opt.safetensors" with the AdamW
 * moments; both carry the same random pair tag so a mismatched pair (a crash
 * between the two renames, or files copied from different runs) is caught. */
#include "ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

#define CKPT_FORMAT "1"
#define CKPT_PREV ".prev" /* the previous save's moments, kept while a save runs */

/* ---- gptc checkpoints ------------------------------------------------------ */

char *ckpt_opt_path(const char *path) {
  static const char ext[] = ".safetensors";
  size_t n = strlen(path), e = sizeof ext - 1;
  size_t base = n >= e && !strcmp(path + n - e, ext) ? n - e : n;
  char *out = util_malloc(base + 32, "file name");
  if (out) snprintf(out, base + 32, "%.*s.opt.safetensors", (int)base, path);
  return out;
}

/* A fresh tag shared by the two files of one save. */
static void ckpt_pair_tag(char out[17]) {
  uint64_t r = 0;
  FILE *f = fopen("/dev/urandom", "rb");
  if (!f || fread(&r, sizeof r, 1, f) != 1) {
    double t = util_now();
    r = util_fnv1a(&t, sizeof t, 0xcbf29ce484222325ull) ^ (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
  }
  if (f) fclose(f);
  snprintf(out, 17, "%016" PRIx64, r);
}

/* The table must fit the buffer: a generator bug must not become an
 * out-of-bounds read or write here. */
static int ckpt_check_table(const gptc_tensor *t, int n, size_t n_params) {
  if (n <= 0 || !t) return util_err("tensor table is empty");
  for (int i = 0; i < n; i++) {
    size_t numel = 1;
    if (!t[i].name || t[i].ndim < 1 || t[i].ndim > 2)
      return util_err("tensor table: entry %d has no name or a rank other than 1 or 2", i);
    for (int d = 0; d < t[i].ndim; d++) {
      if (t[i].shape[d] <= 0) return util_err("tensor table: '%s' has a non-positive dimension", t[i].name);
      numel *= (size_t)t[i].shape[d];
    }
    if (numel != t[i].numel)
      return util_err("tensor table: '%s' has numel %zu but its shape holds %zu", t[i].name, t[i].numel, numel);
    if (t[i].offset > n_params || t[i].numel > n_params - t[i].offset)
      return util_err("tensor table: '%s' (offset %zu, %zu floats) lies outside the %zu parameters", t[i].name,
                      t[i].offset, t[i].numel, n_params);
  }
  return 0;
}

static int ckpt_outs(const gptc_tensor *t, int n, const char *prefix, const float *base, ckpt_st_out *out,
                     char **names) {
  for (int i = 0; i < n; i++) {
    size_t len = strlen(prefix) + strlen(t[i].name) + 1;
    names[i] = util_malloc(len, "tensor name");
    if (!names[i]) return -1;
    snprintf(names[i], len, "%s%s", prefix, t[i].name);
    memset(&out[i], 0, sizeof out[i]);
    out[i].name = names[i];
    out[i].ndim = t[i].ndim;
    for (int d = 0; d < t[i].ndim; d++) out[i].shape[d] = (uint64_t)t[i].shape[d];
    out[i].data = base + t[i].offset;
  }
  return 0;
}

/* Writes the moments to a temp file next to `path`; *tmp gets its name. */
static int ckpt_save_opt(const char *path, const gptc_tensor *t, int n, const float *m, const float *v, const char *tag,
                         const char *step, char **tmp) {
  ckpt_st_out *outs = util_calloc((size_t)(2 * n), sizeof *outs, "tensor list");
  char **names = util_calloc((size_t)(2 * n), sizeof *names, "tensor names");
  int rc = -1;
  if (outs && names && !ckpt_outs(t, n, "m.", m, outs, names) && !ckpt_outs(t, n, "v.", v, outs + n, names + n)) {
    ckpt_st_kv kv[] = {
        {"format", "pt", 2},
        {"gptc_format", CKPT_FORMAT, strlen(CKPT_FORMAT)},
        {"gptc_kind", "adamw_moments", 13},
        {"pair_tag", tag, strlen(tag)},
        {"step", step, strlen(step)},
    };
    rc = ckpt_st_emit(path, kv, (int)(sizeof kv / sizeof kv[0]), outs, 2 * n, tmp);
  }
  for (int i = 0; names && i < 2 * n; i++) free(names[i]);
  free(names);
  free(outs);
  return rc;
}

static char *ckpt_prev_path(const char *opt) {
  size_t n = strlen(opt) + sizeof CKPT_PREV;
  char *out = util_malloc(n, "file name");
  if (out) snprintf(out, n, "%s" CKPT_PREV, opt);
  return out;
}

/* Removes `path` if present; the directory is fsynced so it stays removed. */
static void ckpt_unlink(const char *path) {
  if (unlink(path) == 0) util_fsync_dir_of(path);
}

/* The save protocol (docs/checkpoints.md). A save is two files, the weights
 * (`path`) and the AdamW moments (`opt`), each written atomically, but
 * kill -9 or a power cut can land between the two renames. So the moments
 * that pair with the weights on disk are kept as opt.prev until the new
 * weights are in place:
 *   1. new moments -> temp file, fsync
 *   2. rename opt -> opt.prev      (the old pair: weights + opt.prev)
 *   3. rename temp -> opt
 *   4. new weights -> temp, fsync, rename -> path   (the new pair)
 *   5. unlink opt.prev
 * Stopped anywhere in 2-4, the weights on disk are the old ones and opt.prev
 * (or opt, before 3) holds their moments; ckpt_resume_pair finds the file
 * whose pair tag matches and puts it back. Step-stamped files behind a
 * pointer would also work, but last.safetensors must stay a plain weights
 * file that Hugging Face tools load and users copy by name. The protocol
 * assumes `opt` pairs with `path` when a save starts: a fresh run has no
 * weights yet, a resumed one ran ckpt_resume_pair. */
int ckpt_save(const char *path, const gptc_tensor *tensors, int n_tensors, size_t n_params, const float *params,
              const float *m, const float *v, const ckpt_meta *meta) {
  if (!params || !meta || !meta->config_src) return util_err("%s: nothing to save (params or config missing)", path);
  if (!m != !v) return util_err("%s: AdamW moments need both m and v", path);
  if (meta->tokenizer < CFG_TOK_GPT2 || meta->tokenizer > CFG_TOK_WORD)
    return util_err("%s: unknown tokenizer kind %d", path, meta->tokenizer);
  if (ckpt_check_table(tensors, n_tensors, n_params)) return -1;

  char tag[17], step[24], data_pos[24], seed[24], best[40], full[40];
  snprintf(full, sizeof full, "%.17g", meta->val_loss_full);
  snprintf(step, sizeof step, "%" PRIu64, meta->step);
  snprintf(data_pos, sizeof data_pos, "%" PRIu64, meta->data_pos);
  snprintf(seed, sizeof seed, "%" PRIu64, meta->seed);
  snprintf(best, sizeof best, "%.17g", meta->best_val);
  ckpt_pair_tag(tag);

  const char *tok = cfg_tokenizer_name(meta->tokenizer);
  util_buf texts = {0}; /* the JSON array of meta->texts */
  for (int i = 0; i < meta->n_texts; i++)
    if (util_buf_add(&texts, i ? "," : "[", 1) ||
        json_write_str(&texts, meta->texts[i], strlen(meta->texts[i]), "metadata 'texts'")) {
      util_buf_free(&texts);
      return -1;
    }
  if (meta->n_texts && util_buf_add(&texts, "]", 2)) {
    util_buf_free(&texts);
    return -1;
  }
  ckpt_st_kv kv[14];
  int k = 0;
  kv[k++] = (ckpt_st_kv){"format", "pt", 2};
  kv[k++] = (ckpt_st_kv){"gptc_format", CKPT_FORMAT, strlen(CKPT_FORMAT)};
  kv[k++] = (ckpt_st_kv){"config", meta->config_src, strlen(meta->config_src)};
  kv[k++] = (ckpt_st_kv){"tokenizer", tok, strlen(tok)};
  if (meta->vocab) kv[k++] = (ckpt_st_kv){"vocab", meta->vocab, meta->vocab_len};
  kv[k++] = (ckpt_st_kv){"step", step, strlen(step)};
  kv[k++] = (ckpt_st_kv){"data_pos", data_pos, strlen(data_pos)};
  kv[k++] = (ckpt_st_kv){"seed", seed, strlen(seed)};
  kv[k++] = (ckpt_st_kv){"best_val", best, strlen(best)};
  kv[k++] = (ckpt_st_kv){"text_hash", meta->text_hash, strnlen(meta->text_hash, 64)};
  if (meta->has_val_loss_full) kv[k++] = (ckpt_st_kv){"val_loss_full", full, strlen(full)};
  if (meta->n_texts) kv[k++] = (ckpt_st_kv){"texts", texts.data, texts.len - 1};
  kv[k++] = (ckpt_st_kv){"pair_tag", tag, strlen(tag)};

  char *opt = ckpt_opt_path(path), *prev = opt ? ckpt_prev_path(opt) : NULL, *opt_tmp = NULL;
  ckpt_st_out *outs = util_calloc((size_t)n_tensors, sizeof *outs, "tensor list");
  char **names = util_calloc((size_t)n_tensors, sizeof *names, "tensor names");
  int rc = -1, kept = 0;
  if (!opt || !prev || !outs || !names || ckpt_outs(tensors, n_tensors, "", params, outs, names)) goto out;
  if (m) {
    if (ckpt_save_opt(opt, tensors, n_tensors, m, v, tag, step, &opt_tmp)) goto out; /* 1 */
    if (rename(opt, prev) == 0) { /* 2 */
      kept = 1;
      util_fsync_dir_of(prev);
    } else if (errno != ENOENT) {
      util_err("%s: cannot keep the previous moments as %s: %s", opt, prev, strerror(errno));
      unlink(opt_tmp);
      goto out;
    }
    if (util_commit_tmp(opt_tmp, opt)) goto undo; /* 3 */
  }
  if (ckpt_st_write(path, kv, k, outs, n_tensors)) goto undo; /* 4 */
  rc = 0;
  if (m) ckpt_unlink(prev); /* 5 */
  else {
    ckpt_unlink(opt); /* stale moments of an earlier save */
    ckpt_unlink(prev);
  }
  goto out;
undo:
  /* the old weights are still in place: give them back their moments */
  if (kept && rename(prev, opt) == 0) util_fsync_dir_of(opt);
out:
  for (int i = 0; names && i < n_tensors; i++) free(names[i]);
  free(names);
  free(outs);
  free(opt_tmp);
  free(prev);
  free(opt);
  util_buf_free(&texts);
  return rc;
}

static int ckpt_check_format(const ckpt_st *st, const char *path, const char *kind) {
  const char *f = ckpt_st_meta(st, "gptc_format", NULL);
  if (!f)
    return util_err("%s: not a gptc checkpoint (no gptc_format metadata; use `gptc import` for Hugging Face files)",
                    path);
  if (strcmp(f, CKPT_FORMAT))
    return util_err("%s: gptc_format \"%.20s\" is not supported (this gptc reads format %s)", path, f, CKPT_FORMAT);
  const char *k = ckpt_st_meta(st, "gptc_kind", NULL);
  if (kind ? !k || strcmp(k, kind) : k != NULL)
    return util_err("%s: metadata gptc_kind is \"%.40s\", expected \"%s\"", path, k ? k : "(none)",
                    kind ? kind : "(none)");
  return 0;
}

static const char *ckpt_need(const ckpt_st *st, const char *path, const char *key) {
  const char *v = ckpt_st_meta(st, key, NULL);
  if (!v) util_err("%s: metadata '%s' is missing", path, key);
  return v;
}

static int ckpt_parse_u64(const char *path, const char *key, const char *s, uint64_t *out) {
  uint64_t x = 0;
  if (!*s) return util_err("%s: metadata '%s' must be a decimal integer (got \"\")", path, key);
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9' || x > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
      return util_err("%s: metadata '%s' must be a decimal integer below 2^64 (got \"%.40s\")", path, key, s);
    x = x * 10 + (uint64_t)(*p - '0');
  }
  *out = x;
  return 0;
}

static int ckpt_fill_meta(const ckpt_st *st, const char *path, ckpt_meta *meta) {
  const char *cfg = ckpt_need(st, path, "config"), *tok = ckpt_need(st, path, "tokenizer");
  const char *step = ckpt_need(st, path, "step"), *pos = ckpt_need(st, path, "data_pos");
  const char *seed = ckpt_need(st, path, "seed"), *best = ckpt_need(st, path, "best_val");
  const char *hash = ckpt_need(st, path, "text_hash");
  if (!cfg || !tok || !step || !pos || !seed || !best || !hash) return -1;
  meta->tokenizer = -1;
  for (int k = CFG_TOK_GPT2; k <= CFG_TOK_WORD; k++)
    if (!strcmp(tok, cfg_tokenizer_name(k))) meta->tokenizer = k;
  if (meta->tokenizer < 0)
    return util_err("%s: metadata 'tokenizer' must be gpt2, char or word (got \"%.40s\")", path, tok);
  if (ckpt_parse_u64(path, "step", step, &meta->step) || ckpt_parse_u64(path, "data_pos", pos, &meta->data_pos) ||
      ckpt_parse_u64(path, "seed", seed, &meta->seed))
    return -1;
  char *end;
  meta->best_val = strtod(best, &end);
  if (end == best || *end) return util_err("%s: metadata 'best_val' must be a number (got \"%.40s\")", path, best);
  size_t hl = strlen(hash);
  if (hl && (hl != 64 || strspn(hash, "0123456789abcdef") != 64))
    return util_err("%s: metadata 'text_hash' must be empty or 64 lowercase hex digits", path);
  memcpy(meta->text_hash, hash, hl + 1);
  const char *full = ckpt_st_meta(st, "val_loss_full", NULL); /* optional: only a finished run's last */
  if (full) {
    meta->val_loss_full = strtod(full, &end);
    if (end == full || *end)
      return util_err("%s: metadata 'val_loss_full' must be a number (got \"%.40s\")", path, full);
    meta->has_val_loss_full = 1;
  }
  size_t tlen;
  const char *texts = ckpt_st_meta(st, "texts", &tlen); /* optional */
  if (texts) {
    char what[1100];
    snprintf(what, sizeof what, "%s: metadata 'texts'", path);
    json_val *j = json_parse(texts, tlen, what);
    if (!j) return -1;
    int ok = j->type == JSON_ARR && j->len <= CFG_MAX_DATA;
    for (size_t i = 0; ok && i < j->len; i++) ok = j->items[i].type == JSON_STR && strlen(j->items[i].str) == j->items[i].len;
    for (size_t i = 0; ok && i < j->len; i++) {
      if (!(meta->texts[i] = util_strdup(j->items[i].str))) ok = -1;
      else meta->n_texts++;
    }
    json_free(j);
    if (ok < 0) return -1;
    if (!ok) return util_err("%s: metadata 'texts' must be a JSON array of at most %d paths", path, CFG_MAX_DATA);
  }
  if (!cfg[0]) return util_err("%s: metadata 'config' is empty", path);
  meta->config_src = util_strdup(cfg);
  if (!meta->config_src) return -1;
  size_t vlen;
  const char *vocab = ckpt_st_meta(st, "vocab", &vlen);
  if (vocab) {
    meta->vocab = util_malloc(vlen + 1, "vocabulary");
    if (!meta->vocab) return -1;
    memcpy(meta->vocab, vocab, vlen + 1);
    meta->vocab_len = vlen;
  } else if (meta->tokenizer != CFG_TOK_GPT2) {
    return util_err("%s: metadata 'vocab' is required for the %s tokenizer", path, tok);
  }
  return 0;
}

int ckpt_load_meta(const char *path, ckpt_meta *meta) {
  memset(meta, 0, sizeof *meta);
  ckpt_st *st = ckpt_st_open_lax(path); /* the metadata only: ckpt_load_params checks the data */
  if (!st) return -1;
  int rc = ckpt_check_format(st, path, NULL) || ckpt_fill_meta(st, path, meta) ? -1 : 0;
  ckpt_st_close(st);
  if (rc) ckpt_meta_free(meta);
  return rc;
}

void ckpt_meta_free(ckpt_meta *meta) {
  if (!meta) return;
  free(meta->config_src);
  free(meta->vocab);
  for (int i = 0; i < meta->n_texts; i++) free(meta->texts[i]);
  memset(meta, 0, sizeof *meta);
}

/* Checks that `st` holds exactly the table's tensors (names with `prefix`),
 * as F32 with the table's shapes. */
static int ckpt_match(const ckpt_st *st, const char *path, const gptc_tensor *t, int n, const char *prefix) {
  char name[512], got[160], want[160];
  for (int i = 0; i < n; i++) {
    snprintf(name, sizeof name, "%s%s", prefix, t[i].name);
    const ckpt_st_tensor *e = ckpt_st_find(st, name);
    if (!e) return util_err("%s: missing tensor '%s'", path, name);
    if (e->dtype != CKPT_F32) return util_err("%s: tensor '%s' has dtype %s, expected F32", path, name, e->dtype_name);
    uint64_t ws[2] = {(uint64_t)t[i].shape[0], (uint64_t)(t[i].ndim > 1 ? t[i].shape[1] : 0)};
    if (e->ndim != t[i].ndim || e->shape[0] != ws[0] || (t[i].ndim > 1 && e->shape[1] != ws[1])) {
      ckpt_shape_str(got, sizeof got, e->ndim, e->shape);
      ckpt_shape_str(want, sizeof want, t[i].ndim, ws);
      return util_err("%s: tensor '%s' has shape %s, expected %s from the config", path, name, got, want);
    }
  }
  return 0;
}

/* Every tensor in the file must be one of the expected names. */
static int ckpt_no_extra(const ckpt_st *st, const char *path, const gptc_tensor *t, int n, const char *const *prefixes,
                         int n_prefixes) {
  if (ckpt_st_count(st) == n * n_prefixes) return 0; /* all expected ones are present, names are unique */
  for (int i = 0; i < ckpt_st_count(st); i++) {
    const char *name = ckpt_st_at(st, i)->name;
    int found = 0;
    for (int p = 0; p < n_prefixes && !found; p++) {
      size_t pl = strlen(prefixes[p]);
      if (strncmp(name, prefixes[p], pl)) continue;
      for (int k = 0; k < n && !found; k++) found = !strcmp(name + pl, t[k].name);
    }
    if (!found) return util_err("%s: unexpected tensor '%s' (not in the config's tensor table)", path, name);
  }
  return 0;
}

static int ckpt_read_all(ckpt_st *st, const gptc_tensor *t, int n, const char *prefix, float *base) {
  char name[512];
  for (int i = 0; i < n; i++) {
    snprintf(name, sizeof name, "%s%s", prefix, t[i].name);
    if (ckpt_st_read_f32(st, ckpt_st_find(st, name), base + t[i].offset)) return -1;
  }
  return 0;
}

/* [lo, hi) of the flat vector from the tensors named prefix + name: out:
 * (hi - lo); one tensor at a time through tmp */
static int ckpt_read_range(ckpt_st *st, const gptc_tensor *t, int n, const char *prefix, size_t lo, size_t hi,
                           float *out) {
  char name[512];
  float *tmp = NULL; // (largest overlapping tensor)
  size_t cap = 0;
  int rc = 0;
  memset(out, 0, (hi - lo) * sizeof(float));
  for (int i = 0; i < n && rc == 0; i++) {
    size_t a = t[i].offset > lo ? t[i].offset : lo, b = t[i].offset + t[i].numel < hi ? t[i].offset + t[i].numel : hi;
    if (a >= b) continue;
    if (t[i].numel > cap) {
      free(tmp);
      cap = t[i].numel;
      if (!(tmp = util_malloc(cap * sizeof(float), "a tensor of AdamW moments"))) return -1;
    }
    snprintf(name, sizeof name, "%s%s", prefix, t[i].name);
    if ((rc = ckpt_st_read_f32(st, ckpt_st_find(st, name), tmp)) == 0)
      memcpy(out + (a - lo), tmp + (a - t[i].offset), (b - a) * sizeof(float));
  }
  free(tmp);
  return rc ? -1 : 0;
}

/* ckpt_load_params, and with `ranged` ckpt_load_moments_range (params NULL) */
static int ckpt_load(const char *path, const gptc_tensor *tensors, int n_tensors, size_t n_params, float *params,
                     float *m, float *v, int ranged, size_t lo, size_t hi) {
  if (!m != !v) return util_err("%s: AdamW moments need both m and v", path);
  if (ckpt_check_table(tensors, n_tensors, n_params)) return -1;
  static const char *const none[] = {""}, *const mv[] = {"m.", "v."};
  ckpt_st *st = ckpt_st_open_lax(path), *so = NULL;
  char *opt = NULL;
  int rc = -1;
  if (!st || ckpt_check_format(st, path, NULL) || ckpt_match(st, path, tensors, n_tensors, "") ||
      ckpt_no_extra(st, path, tensors, n_tensors, none, 1) || ckpt_st_check_tail(st))
    goto out;
  if (m) {
    opt = ckpt_opt_path(path);
    if (!opt) goto out;
    if (!util_file_exists(opt)) {
      util_err("%s: no optimizer moments next to %s (it was saved without them)", opt, path);
      goto out;
    }
    so = ckpt_st_open_lax(opt);
    if (!so || ckpt_check_format(so, opt, "adamw_moments") || ckpt_match(so, opt, tensors, n_tensors, "m.") ||
        ckpt_match(so, opt, tensors, n_tensors, "v.") || ckpt_no_extra(so, opt, tensors, n_tensors, mv, 2) ||
        ckpt_st_check_tail(so))
      goto out;
    const char *a = ckpt_st_meta(st, "pair_tag", NULL), *b = ckpt_st_meta(so, "pair_tag", NULL);
    if (!a || !b || strcmp(a, b)) {
      util_err("%s: optimizer moments are from a different save than %s (pair_tag %.20s vs %.20s)", opt, path,
               b ? b : "(none)", a ? a : "(none)");
      goto out;
    }
  }
  if (params && ckpt_read_all(st, tensors, n_tensors, "", params)) goto out;
  if (ranged) {
    if (lo > hi || hi > n_params) {
      util_err("%s: moments [%zu, %zu) outside the %zu parameters", path, lo, hi, n_params);
      goto out;
    }
    if (ckpt_read_range(so, tensors, n_tensors, "m.", lo, hi, m) || ckpt_read_range(so, tensors, n_tensors, "v.", lo, hi, v))
      goto out;
  } else if (m && (ckpt_read_all(so, tensors, n_tensors, "m.", m) || ckpt_read_all(so, tensors, n_tensors, "v.", v)))
    goto out;
  rc = 0;
out:
  ckpt_st_close(st);
  ckpt_st_close(so);
  free(opt);
  return rc;
}

int ckpt_load_params(const char *path, const gptc_tensor *tensors, int n_tensors, size_t n_params, float *params,
                     float *m, float *v) {
  return ckpt_load(path, tensors, n_tensors, n_params, params, m, v, 0, 0, 0);
}

int ckpt_load_moments_range(const char *path, const gptc_tensor *tensors, int n_tensors, size_t n_params, size_t lo,
                            size_t hi, float *m, float *v) {
  if (!m || !v) return util_err("%s: AdamW moments need both m and v", path);
  return ckpt_load(path, tensors, n_tensors, n_params, NULL, m, v, 1, lo, hi);
}

/* The pair tag and step of a moments file, or -1 (any reason) */
static int ckpt_opt_tag(const char *opt, char tag[17], uint64_t *step) {
  if (!util_file_exists(opt)) return -1;
  ckpt_st *st = ckpt_st_open(opt);
  if (!st) return -1;
  const char *t = ckpt_st_meta(st, "pair_tag", NULL), *s = ckpt_st_meta(st, "step", NULL);
  int rc = -1;
  if (t && strlen(t) == 16) {
    memcpy(tag, t, 17);
    *step = 0;
    if (s) ckpt_parse_u64(opt, "step", s, step);
    rc = 0;
  }
  ckpt_st_close(st);
  return rc;
}

int ckpt_resume_pair(const char *path, uint64_t *interrupted) {
  *interrupted = 0;
  ckpt_st *st = ckpt_st_open(path);
  if (!st) return -1;
  const char *t = ckpt_st_meta(st, "pair_tag", NULL);
  char want[17] = "", got[17], kept[17];
  if (t && strlen(t) == 16) memcpy(want, t, 17);
  ckpt_st_close(st);
  char *opt = ckpt_opt_path(path), *prev = opt ? ckpt_prev_path(opt) : NULL;
  int rc = -1;
  if (!opt || !prev) goto out;
  uint64_t opt_step = 0, prev_step;
  rc = 0;
  if (!want[0]) goto out;
  if (ckpt_opt_tag(opt, got, &opt_step) == 0 && !strcmp(got, want)) {
    ckpt_unlink(prev); /* left by a save killed after its last rename: pairs with nothing */
    goto out;
  }
  if (ckpt_opt_tag(prev, kept, &prev_step) == 0 && !strcmp(kept, want)) {
    if (rename(prev, opt) != 0) {
      rc = util_err("%s: cannot restore the moments of %s from %s: %s", opt, path, prev, strerror(errno));
      goto out;
    }
    util_fsync_dir_of(opt);
    *interrupted = opt_step;
    rc = 1;
  }
  /* else: no matching pair here; ckpt_load_params says what is wrong */
out:
  if (rc >= 0) util_errclear(); /* a moments file that failed to open is just not the match */
  free(prev);
  free(opt);
  return rc;
}

int ckpt_nonfinite(const gptc_tensor *tensors, int n_tensors, const float *base, const char *what, char *out,
                   size_t cap) {
  for (int i = 0; i < n_tensors; i++) {
    const gptc_tensor *t = &tensors[i];
    for (size_t k = 0; k < t->numel; k++) {
      float x = base[t->offset + k];
      if (!isfinite(x)) {
        snprintf(out, cap, "%s of tensor '%s' hold %s", what, t->name, isnan(x) ? "nan" : "inf");
        return 1;
      }
    }
  }
  return 0;
}

int ckpt_check_finite(const char *path, const gptc_tensor *tensors, int n_tensors, const float *params) {
  char bad[300];
  if (ckpt_nonfinite(tensors, n_tensors, params, "the weights", bad, sizeof bad))
    return util_err("%s: %s: the run diverged before this save; use an earlier checkpoint", path, bad);
  return 0;
}
