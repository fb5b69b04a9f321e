/* data: see data.h.
 *
 * Token cache: one file per split in the cache directory (train.tokens,
 * val.tokens) plus vocab.txt, the tokenizer's vocabulary blob. A split file
 * is a fixed header followed by the ids, all little-endian:
 *
 *   offset size
 *        0    8  magic "GPTCTOK\0"
 *        8    4  format version
 *       12    4  tokenizer kind (CFG_TOK_*)
 *       16    4  id width in bytes: 2 when vocab_size <= 65536, else 4
 *       20    4  vocab size
 *       24    8  number of ids
 *       32    8  checksum: FNV-1a 64 over the header (this field as zero)
 *                followed by the id bytes
 *       40   64  vocab hash (tok_vocab_hash, hex)
 *      104   64  text hash: SHA-256 hex of the split's own text, so a
 *                change of the text or of val_ratio both invalidate it
 *      168       ids (count * width bytes)
 *
 * A file whose size or checksum is wrong is never trusted: it is rebuilt
 * with a notice on stderr. A well-formed file for another text, tokenizer or
 * vocabulary is stale and rebuilt silently. */
#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define DATA_MAGIC "GPTCTOK"
#define DATA_VERSION 1u
#define DATA_HDR 168
#define DATA_EOT "<|endoftext|>"

/* ---- text loading ------------------------------------------------------ */

/* Appends one document (a file) to `text`, preceded by `sep` unless it is the
 * first. Checks the rules every document must meet. */
static int data_add_file(const char *path, const char *sep, util_buf *text) {
  char *s;
  size_t n;
  if (util_read_text(path, &s, &n)) return -1;
  int rc = 0;
  if (text->len > 0 && sep[0]) rc = util_buf_add(text, sep, strlen(sep));
  if (rc == 0) rc = util_buf_add(text, s, n);
  free(s);
  return rc;
}

static int data_cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory's *.txt files (not hidden, not subdirectories) in byte order of
 * their names, so the joined text does not depend on readdir's order. */
static int data_add_dir(const char *dir, const char *sep, util_buf *text) {
  DIR *d = opendir(dir);
  if (!d) return util_err("%s: cannot open directory: %s", dir, strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".txt")) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      char **p = util_realloc(names, cap * sizeof *names, "directory listing");
      if (!p) {
        rc = -1;
        break;
      }
      names = p;
    }
    size_t plen = strlen(dir) + len + 2;
    names[n] = util_malloc(plen, "file path");
    if (!names[n]) {
      rc = -1;
      break;
    }
    snprintf(names[n++], plen, "%s/%s", dir, e->d_name);
  }
  closedir(d);
  if (rc == 0 && n > 1) qsort(names, n, sizeof *names, data_cmp_str);
  size_t used = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (util_is_dir(names[i])) continue;
    rc = data_add_file(names[i], sep, text);
    used++;
  }
  if (rc == 0 && used == 0) rc = util_err("%s: directory has no *.txt files", dir);
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return rc;
}

/* Byte offset where code point `k` (0-based) starts in valid UTF-8 text, or
 * n when the text has k code points. */
static size_t data_cp_offset(const char *s, size_t n, size_t k) {
  size_t i = 0;
  for (size_t seen = 0; i < n; i++) {
    if (((unsigned char)s[i] & 0xC0) == 0x80) continue;
    if (seen++ == k) break;
  }
  return i;
}

static size_t data_cp_count(const char *s, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
  return c;
}

/* ---- token cache ------------------------------------------------------- */

/* What a cache file must match to be reused. */
typedef struct {
  int kind, vocab_size, width;
  char vocab_hash[65], text_hash[65];
} data_key;

static void data_put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static void data_put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static uint32_t data_get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static uint64_t data_get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* Checksum of a whole cache file image, read with the checksum field as zero. */
static uint64_t data_checksum(const uint8_t *file, size_t len) {
  static const uint8_t zero[8];
  uint64_t h = util_fnv1a(file, 32, 0);
  h = util_fnv1a(zero, 8, h);
  return util_fnv1a(file + 40, len - 40, h);
}

static int data_cache_store(const char *path, const data_key *k, const int32_t *ids, size_t n) {
  size_t w = (size_t)k->width;
  if (n > (SIZE_MAX - DATA_HDR) / w) return util_err("%s: token cache too large (%zu ids)", path, n);
  size_t len = DATA_HDR + n * w;
  uint8_t *f = util_calloc(len, 1, "token cache"); // (DATA_HDR + n * w,) bytes
  if (!f) return -1;
  memcpy(f, DATA_MAGIC, 8);
  data_put32(f + 8, DATA_VERSION);
  data_put32(f + 12, (uint32_t)k->kind);
  data_put32(f + 16, (uint32_t)k->width);
  data_put32(f + 20, (uint32_t)k->vocab_size);
  data_put64(f + 24, n);
  memcpy(f + 40, k->vocab_hash, 64);
  memcpy(f + 104, k->text_hash, 64);
  uint8_t *p = f + DATA_HDR;
  for (size_t i = 0; i < n; i++, p += w) {
    if (w == 2) p[0] = (uint8_t)ids[i], p[1] = (uint8_t)(ids[i] >> 8);
    else data_put32(p, (uint32_t)ids[i]);
  }
  data_put64(f + 32, data_checksum(f, len));
  int rc = util_write_file_atomic(path, f, len);
  free(f);
  return rc;
}

/* Checks a mapped cache image against `k` and decodes its ids. Returns 1 with
 * *ids set when usable, 0 when stale, or -1 with `why` set when damaged. */
static int data_cache_parse(const uint8_t *f, size_t len, const data_key *k, int32_t **ids, size_t *n,
                            const char **why) {
  if (len < DATA_HDR || memcmp(f, DATA_MAGIC, 8)) return *why = "not a token cache file", -1;
  uint32_t width = data_get32(f + 16);
  uint64_t count = data_get64(f + 24);
  if ((width != 2 && width != 4) || count > (len - DATA_HDR) / width || DATA_HDR + count * width != len)
    return *why = "size does not match its header", -1;
  if (data_get64(f + 32) != data_checksum(f, len)) return *why = "checksum mismatch", -1;
  if (data_get32(f + 8) != DATA_VERSION || data_get32(f + 12) != (uint32_t)k->kind ||
      width != (uint32_t)k->width || data_get32(f + 20) != (uint32_t)k->vocab_size ||
      memcmp(f + 40, k->vocab_hash, 64) || memcmp(f + 104, k->text_hash, 64))
    return 0;
  int32_t *out = util_malloc((size_t)count * sizeof *out, "token ids"); // (count,)
  if (!out) return *why = util_errmsg(), -1;
  const uint8_t *p = f + DATA_HDR;
  for (size_t i = 0; i < count; i++, p += width) {
    uint32_t v = width == 2 ? (uint32_t)(p[0] | p[1] << 8) : data_get32(p);
    if (v >= (uint32_t)k->vocab_size) {
      free(out);
      return *why = "id out of the vocabulary's range", -1;
    }
    out[i] = (int32_t)v;
  }
  *ids = out;
  *n = (size_t)count;
  return 1;
}

/* Returns 1 with the cached ids when `path` holds a valid cache for `k`, else
 * 0 (missing, stale, or damaged with a notice). */
static int data_cache_load(const char *path, const data_key *k, int32_t **ids, size_t *n) {
  /* O_NONBLOCK: a FIFO in its place must not block the run (it is refused
   * below, and replaced by the rebuilt file) */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) fprintf(stderr, "gptc: token cache %s: %s; rebuilding it\n", path, strerror(errno));
    return 0;
  }
  struct stat st;
  const char *why = NULL;
  int rc = 0;
  char kind[64];
  if (fstat(fd, &st) != 0) {
    why = strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    snprintf(kind, sizeof kind, "not a regular file (%s)", util_mode_name(st.st_mode));
    why = kind;
  } else if ((size_t)st.st_size < DATA_HDR) {
    why = "shorter than its header";
  } else {
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      why = strerror(errno);
    } else {
      rc = data_cache_parse(m, (size_t)st.st_size, k, ids, n, &why);
      munmap(m, (size_t)st.st_size);
    }
  }
  close(fd);
  if (why) fprintf(stderr, "gptc: token cache %s: %s; rebuilding it\n", path, why);
  return rc == 1;
}

/* Ids of one split: from the cache when valid, else encoded and cached. */
static int data_split(tok_t *tok, const char *text, size_t len, const char *dir, const char *name,
                      data_key *k, int32_t **ids, size_t *n) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/%s.tokens", dir, name) >= (int)sizeof path)
    return util_err("%s: cache directory path too long", dir);
  util_sha256_hex(text, len, k->text_hash);
  if (data_cache_load(path, k, ids, n)) return 0;
  if (len == 0) {
    *ids = util_malloc(0, "token ids");
    *n = 0;
    if (!*ids) return -1;
  } else {
    /* allow_special: see data_load on "<|endoftext|>" inside a document */
    if (tok_encode(tok, text, len, 1, ids, n)) return util_err("%s split: %s", name, util_errmsg());
  }
  if (data_cache_store(path, k, *ids, *n)) {
    free(*ids);
    *ids = NULL;
    return -1;
  }
  return 0;
}

/* Keeps vocab.txt in the cache equal to the tokenizer's blob, so the ids
 * there can always be decoded with the vocabulary that produced them. */
static int data_store_vocab(const tok_t *tok, const char *dir) {
  char path[4096], *blob, *old = NULL;
  size_t n, old_n = 0;
  if (snprintf(path, sizeof path, "%s/vocab.txt", dir) >= (int)sizeof path)
    return util_err("%s: cache directory path too long", dir);
  if (tok_vocab_save(tok, &blob, &n)) return -1;
  int same = util_file_exists(path) && util_read_file(path, &old, &old_n) == 0 && old_n == n &&
             memcmp(old, blob, n) == 0;
  util_errclear();
  int rc = same ? 0 : util_write_file_atomic(path, blob, n);
  free(old);
  free(blob);
  return rc;
}

/* ---- data_load --------------------------------------------------------- */

void data_free(data_set *ds) {
  if (!ds) return;
  tok_free(ds->tok);
  free(ds->train);
  free(ds->val);
  memset(ds, 0, sizeof *ds);
}

static tok_t *data_tokenizer(int kind, const char *text, size_t n) {
  switch (kind) {
  case CFG_TOK_GPT2: return tok_gpt2_new();
  case CFG_TOK_CHAR: return tok_char_new(text, n);
  case CFG_TOK_WORD: return tok_word_new(text, n);
  default: util_err("data: unknown tokenizer kind %d", kind); return NULL;
  }
}

/* Documents are joined with "<|endoftext|>" for gpt2 and " <|endoftext|> "
 * for word (the word tokenizer only knows whitespace-delimited items, so the
 * seeds join with spaces around it; the spaces add no tokens). A literal
 * "<|endoftext|>" inside a document is encoded as the special token, exactly
 * like the separator (and like the seeds, which encode with
 * allowed_special={"<|endoftext|>"}): it marks a document boundary wherever
 * it appears, so one file holding "A<|endoftext|>B" (word: with the spaces)
 * and a directory holding A and B give the same ids. The char tokenizer has no special token, so
 * documents are joined with nothing and the literal stays ordinary text. */
int data_load(cfg_t *cfg, const char *const *paths, int n_paths, const char *cache_dir, data_set *ds) {
  return data_load_run(cfg, paths, n_paths, cache_dir, NULL, NULL, ds);
}

int data_load_run(cfg_t *cfg, const char *const *paths, int n_paths, const char *cache_dir, const char *want_hash,
                  const char *ckpt, data_set *ds) {
  memset(ds, 0, sizeof *ds);
  const char *cfg_paths[CFG_MAX_DATA];
  if (!paths) {
    for (int i = 0; i < cfg->n_data; i++) cfg_paths[i] = cfg->data[i];
    paths = cfg_paths;
    n_paths = cfg->n_data;
  }
  if (n_paths <= 0)
    return util_err("%s: no text to load (set the config's 'data' field or pass --text)",
                    cfg->path[0] ? cfg->path : cfg->name);
  const char *sep = cfg->tokenizer == CFG_TOK_CHAR   ? ""
                    : cfg->tokenizer == CFG_TOK_WORD ? " " DATA_EOT " "
                                                     : DATA_EOT;
  util_buf text = {0}; // (bytes,) the joined documents
  for (int i = 0; i < n_paths; i++) {
    int rc = util_is_dir(paths[i]) ? data_add_dir(paths[i], sep, &text) : data_add_file(paths[i], sep, &text);
    if (rc) {
      util_buf_free(&text);
      return -1;
    }
  }
  if (util_mkdir_p(cache_dir)) {
    util_buf_free(&text);
    return -1;
  }
  util_sha256_hex(text.data, text.len, ds->text_hash);
  /* before the tokenizer runs: a wrong text fails fast */
  if (want_hash && strcmp(want_hash, ds->text_hash)) {
    util_buf_free(&text);
    return util_err("%s%s: the text's SHA-256 is %.12s... but checkpoint %s was trained on a text whose SHA-256 is "
                    "%.12s... (text_hash); pass the run's own text with --text", paths[0], n_paths > 1 ? " (joined)" : "",
                    ds->text_hash, ckpt, want_hash);
  }
  ds->n_chars = data_cp_count(text.data, text.len);
  ds->n_chars_train = (size_t)((1.0 - cfg->train.val_ratio) * (double)ds->n_chars);
  size_t cut = data_cp_offset(text.data, text.len, ds->n_chars_train);

  ds->tok = data_tokenizer(cfg->tokenizer, text.data, text.len);
  int rc = ds->tok ? 0 : -1;
  if (rc == 0) rc = cfg_set_vocab(cfg, tok_vocab_size(ds->tok));
  if (rc == 0) rc = data_store_vocab(ds->tok, cache_dir);
  if (rc == 0) {
    data_key k = {.kind = tok_kind(ds->tok), .vocab_size = tok_vocab_size(ds->tok)};
    k.width = k.vocab_size <= 65536 ? 2 : 4;
    snprintf(k.vocab_hash, sizeof k.vocab_hash, "%s", tok_vocab_hash(ds->tok));
    rc = data_split(ds->tok, text.data, cut, cache_dir, "train", &k, &ds->train, &ds->n_train);
    if (rc == 0)
      rc = data_split(ds->tok, text.data + cut, text.len - cut, cache_dir, "val", &k, &ds->val, &ds->n_val);
  }
  util_buf_free(&text);
  if (rc) data_free(ds);
  return rc;
}

/* ---- windows and batches ----------------------------------------------- */

static uint64_t data_splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [0, bound) without modulo bias (rejection of the short tail). */
static uint64_t data_below(uint64_t *s, uint64_t bound) {
  uint64_t lim = (0 - bound) % bound;
  uint64_t x;
  do x = data_splitmix(s);
  while (x < lim);
  return x % bound;
}

/* The window order of one epoch: Fisher-Yates from the identity with a
 * splitmix64 stream keyed by (seed, epoch), so any batch of any epoch can be
 * produced on its own. data_loader is a plain value (const here), so the last
 * two orders (a train and a val loader) are kept per thread instead of being
 * rebuilt for every batch, which would cost O(windows) each. */
typedef struct {
  size_t n, *perm;
  uint64_t seed, epoch;
} data_order;

static _Thread_local data_order data_orders[2];
static _Thread_local int data_order_next;

static const size_t *data_permutation(size_t n, uint64_t seed, uint64_t epoch) {
  for (int i = 0; i < 2; i++) {
    data_order *o = &data_orders[i];
    if (o->perm && o->n == n && o->seed == seed && o->epoch == epoch) return o->perm;
  }
  data_order *o = &data_orders[data_order_next];
  size_t *p = util_realloc(o->perm, n * sizeof *p, "window order"); // (n,)
  if (!p) return NULL;
  data_order_next ^= 1;
  uint64_t s = seed;
  s = data_splitmix(&s) ^ epoch;
  for (size_t i = 0; i < n; i++) p[i] = i;
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)data_below(&s, i);
    size_t t = p[i - 1];
    p[i - 1] = p[j];
    p[j] = t;
  }
  *o = (data_order){.n = n, .perm = p, .seed = seed, .epoch = epoch};
  return p;
}

int data_cache_dir(const cfg_t *cfg, char *out, size_t cap) {
  char name[256];
  size_t j = 0;
  for (size_t i = 0; cfg->name[i] && j + 1 < sizeof name; i++) {
    char c = cfg->name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
             (c == '.' && j > 0); /* no leading dot: never "." or ".." */
    name[j++] = ok ? c : '_';
  }
  if (j == 0) name[j++] = '_';
  name[j] = '\0';
  if (snprintf(out, cap, "%s/data/%s", util_cache_dir(), name) >= (int)cap)
    return util_err("cache directory path too long: %s/data/%s", util_cache_dir(), name);
  return 0;
}

int data_derive_vocab(cfg_t *cfg) {
  if (cfg->vocab_size > 0) return 0;
  char dir[4096];
  data_set ds;
  if (data_cache_dir(cfg, dir, sizeof dir) || data_load(cfg, NULL, 0, dir, &ds)) return -1;
  int v = tok_vocab_size(ds.tok);
  data_free(&ds);
  return cfg_set_vocab(cfg, v);
}

int data_loader_init(data_loader *dl, const int32_t *ids, size_t n, int B, int T, int stride, int shuffle,
                     int drop_last, uint64_t seed, const char *split_name) {
  memset(dl, 0, sizeof *dl);
  if (B < 1 || T < 1 || stride < 1)
    return util_err("%s loader: batch_size (%d), max_length (%d) and stride (%d) must be >= 1", split_name, B,
                    T, stride);
  if (n <= (size_t)T)
    return util_err("%s split has %zu tokens, too few for one window of max_length %d (needs at least %d)",
                    split_name, n, T, T + 1);
  *dl = (data_loader){.ids = ids, .n = n, .B = B, .T = T, .stride = stride, .shuffle = shuffle != 0,
                      .drop_last = drop_last != 0, .seed = seed};
  dl->n_windows = (n - (size_t)T - 1) / (size_t)stride + 1;
  dl->n_batches = drop_last ? dl->n_windows / (size_t)B : (dl->n_windows + (size_t)B - 1) / (size_t)B;
  if (dl->n_batches == 0)
    return util_err("%s split has %zu windows, too few for one full batch of %d with drop_last (lower "
                    "batch_size or set drop_last = false)",
                    split_name, dl->n_windows, B);
  return 0;
}

int data_batch(const data_loader *dl, uint64_t epoch, size_t b, int32_t *inputs, int32_t *targets) {
  if (b >= dl->n_batches) return util_err("data: batch %zu out of range (%zu batches)", b, dl->n_batches);
  const size_t *perm = NULL;
  if (dl->shuffle && !(perm = data_permutation(dl->n_windows, dl->seed, epoch))) return -1;
  size_t T = (size_t)dl->T, first = b * (size_t)dl->B;
  size_t rows = dl->n_windows - first < (size_t)dl->B ? dl->n_windows - first : (size_t)dl->B;
  for (size_t r = 0; r < (size_t)dl->B; r++) {
    int32_t *in = inputs + r * T, *tg = targets + r * T; // (T,) row r of (B, T)
    if (r >= rows) {
      for (size_t t = 0; t < T; t++) in[t] = 0, tg[t] = -1;
      continue;
    }
    size_t w = perm ? perm[first + r] : first + r;
    const int32_t *src = dl->ids + w * (size_t)dl->stride;
    memcpy(in, src, T * sizeof *in);
    memcpy(tg, src + 1, T * sizeof *tg);
  }
  return (int)rows;
}

/* ---- random starts and evaluation windows ------------------------------- */

/* The start of a splitmix64 stream for item `i` of purpose `tag` under
 * `seed`: two rounds of mixing, so neighbouring seeds and items give
 * unrelated streams (the counter-based RNG of sampling and eval windows). */
static uint64_t data_stream(uint64_t seed, uint64_t tag, uint64_t i) {
  uint64_t s = seed ^ tag;
  s = data_splitmix(&s) ^ i;
  return data_splitmix(&s);
}

#define DATA_TAG_RANDOM 0x72616E646F6D6261ull /* "randomba" */
#define DATA_TAG_EVAL 0x6576616C77696E64ull   /* "evalwind" */

void data_random_batch(const data_loader *dl, uint64_t g, int32_t *inputs, int32_t *targets, size_t *starts) {
  size_t T = (size_t)dl->T;
  uint64_t s = data_stream(dl->seed, DATA_TAG_RANDOM, g);
  for (size_t r = 0; r < (size_t)dl->B; r++) {
    /* data_loader_init guarantees n > T: at least one start */
    size_t w = (size_t)data_below(&s, (uint64_t)(dl->n - T));
    if (starts) starts[r] = w;
    memcpy(inputs + r * T, dl->ids + w, T * sizeof *inputs); // (T,) row r of (B, T)
    memcpy(targets + r * T, dl->ids + w + 1, T * sizeof *targets);
  }
}

size_t data_full_windows(size_t n, int T) { return T >= 1 && n > (size_t)T ? (n - 1) / (size_t)T : 0; }

size_t *data_eval_windows(size_t n, int T, size_t want, uint64_t seed, const char *split_name, size_t *count) {
  size_t full = data_full_windows(n, T);
  if (full == 0) {
    util_err("%s split has %zu tokens, too few for one window of max_length %d (needs at least %d)", split_name, n, T,
             T + 1);
    return NULL;
  }
  size_t k = want == 0 || want >= full ? full : want;
  size_t *w = util_malloc(k * sizeof *w, "evaluation windows"); // (k,) window starts
  if (!w) return NULL;
  if (k == full) {
    for (size_t i = 0; i < k; i++) w[i] = i * (size_t)T;
  } else {
    /* stratum i holds the starts [i*S/k, (i+1)*S/k) of the S = n - T; k <
     * full <= S, so none is empty. 128-bit products: S*k can pass 2^64. */
    unsigned __int128 S = n - (size_t)T;
    for (size_t i = 0; i < k; i++) {
      size_t lo = (size_t)(S * i / k), hi = (size_t)(S * (i + 1) / k);
      uint64_t st = data_stream(seed, DATA_TAG_EVAL, i);
      w[i] = lo + (size_t)data_below(&st, hi - lo);
    }
  }
  *count = k;
  return w;
}
