/* tok_bpe: the gpt2 tokenizer, byte-level BPE giving tiktoken's "gpt2" ids.
 *
 * Tables: data/gpt2/encoder.json maps each token (its bytes written in
 * GPT-2's printable stand-ins for bytes) to its id; the id is also its merge
 * rank, which vocab.bpe confirms at load time (merge line i makes id 256+i).
 *
 * Encoding: the text is cut into pieces by the GPT-2 regex (PCRE2, JIT
 * compiled when available); a piece that is a token is that token, anything
 * else is merged from single bytes, always merging the adjacent pair whose
 * concatenation has the lowest rank, leftmost first on ties, as tiktoken
 * does. The merge loop finds that pair in a min-tree over the pairs, so a
 * long piece costs O(n log n) instead of O(n^2) in 3 bytes of state a byte
 * (a 200 MB run of one letter is one piece), and merged pieces are cached. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "cfg.h"
#include "embed.h"
#include "json.h"
#include "tok_internal.h"

#define BPE_N_MERGEABLE 50256 /* ids 0..50255; 50256 is <|endoftext|> */
#define BPE_EOT 50256
#define BPE_EOT_TEXT "<|endoftext|>"
#define BPE_EOT_LEN 13
/* The piece cache is dropped when it grows past these (memory stays bounded
 * on text with endless new pieces); pieces longer than this are not cached. */
#define BPE_CACHE_MAX_PIECES (1u << 20)
#define BPE_CACHE_MAX_IDS (1u << 24)
#define BPE_CACHE_MAX_PIECE_LEN 4096
/* Merge state: a pair rank fits 16 bits (BPE_NONE = no pair), a part's
 * length 8 bits (parts are tokens); the min-tree's leaves are blocks of
 * BPE_BLOCK pairs. Scratch for pieces longer than BPE_SCRATCH_KEEP bytes is
 * freed after the piece, so one huge piece does not pin it. */
#define BPE_NONE 0xFFFFu
#define BPE_MAX_TOKEN_LEN 255
#define BPE_BLOCK 32
#define BPE_SCRATCH_KEEP (1u << 20)
_Static_assert(BPE_N_MERGEABLE < BPE_NONE, "ranks must fit 16 bits");

struct tok_bpe {
  tok_map ranks;                                       /* token bytes -> id, for the mergeable tokens */
  int32_t byte_id[256];                                /* id of each single byte */
  util_buf bytes;                                      /* every token's bytes */
  uint32_t off[BPE_N_MERGEABLE], len[BPE_N_MERGEABLE]; /* token id -> its bytes */
  size_t max_len;                                      /* the longest token, in bytes */
  pcre2_code *re;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jit;
  int jitted;
  char desc[160]; /* tok_bpe_describe */
  /* cache: piece -> span index; span i holds span_n[i] ids at pool[span_off[i]] */
  tok_map cache;
  uint32_t *span_off, *span_n; /* (spans_cap) */
  size_t spans_cap;
  int32_t *pool; /* (pool_cap) */
  size_t pool_n, pool_cap;
  /* merge scratch for a piece of n bytes, whose parts are runs of bytes:
   * plen[i] is the length of the part starting at i, stored at its last
   * byte too (so the part before a start k starts at k - plen[k - 1]);
   * prank[i] is the rank of merging the part at i with the next, BPE_NONE
   * when i starts no part or the two make no token; tree[x] is the least
   * of its two children (node 1 the root), tree[P + blk] the least prank of
   * block blk. */
  uint8_t *plen;     /* (n) */
  uint16_t *prank;   /* (n) */
  uint16_t *tree;    /* (2 P), P the power of two >= the block count */
  size_t scratch_cap, tree_cap, merge_n; /* merge_n: the piece's length */
};

typedef struct {
  int32_t *v;
  size_t n, cap;
} tok_bpe_out;

static int tok_bpe_out_reserve(tok_bpe_out *o, size_t want) {
  if (want <= o->cap) return 0;
  size_t cap = o->cap ? o->cap : 1024;
  while (cap < want) cap *= 2;
  int32_t *v = util_realloc(o->v, cap * sizeof *v, "token ids");
  if (!v) return -1;
  o->v = v;
  o->cap = cap;
  return 0;
}

static int tok_bpe_out_add(tok_bpe_out *o, const int32_t *ids, size_t n) {
  if (tok_bpe_out_reserve(o, o->n + n)) return -1;
  memcpy(o->v + o->n, ids, n * sizeof *ids);
  o->n += n;
  return 0;
}

/* ---- tables ---------------------------------------------------------------- */

/* GPT-2's byte <-> printable stand-in: bytes that print as themselves stay,
 * the other 68 (0x00..0x20, 0x7F..0xA0, the soft hyphen 0xAD) become
 * U+0100.. in byte order. Returns the byte for a stand-in code point, or -1. */
static int tok_bpe_byte_of(uint32_t cp) {
  if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
  if (cp < 0x100 || cp >= 0x100 + 68) return -1;
  uint32_t k = cp - 0x100;
  return k < 33 ? (int)k : k < 67 ? (int)(0x7F + k - 33) : 0xAD;
}

/* Converts stand-in text (UTF-8) to the bytes it spells, into out. */
static int tok_bpe_unmap(const char *s, size_t n, util_buf *out) {
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += (size_t)util_utf8_decode(s + i, &cp);
    int b = tok_bpe_byte_of(cp);
    if (b < 0) return -1;
    char c = (char)b;
    if (util_buf_add(out, &c, 1)) return -1;
  }
  return 0;
}

static size_t tok_bpe_skip_ws(const char *s, size_t n, size_t i) {
  while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++;
  return i;
}

static int tok_bpe_load_encoder(tok_bpe *b) {
  const char *F = "data/gpt2/encoder.json", *s;
  size_t n;
  int owned, rc = -1, have_eot = 0;
  if (embed_get(F, &s, &n, &owned)) return -1;
  util_buf key = {0}, raw = {0};
  long bad = util_utf8_invalid_at(s, n);
  if (bad >= 0) {
    util_err("%s: invalid UTF-8 at byte offset %ld", F, bad);
    goto done;
  }
  for (int i = 0; i < BPE_N_MERGEABLE; i++) b->len[i] = UINT32_MAX;
  size_t i = tok_bpe_skip_ws(s, n, 0), count = 0;
  if (i >= n || s[i] != '{') {
    util_err("%s, byte offset %zu: expected '{'", F, i);
    goto done;
  }
  i = tok_bpe_skip_ws(s, n, i + 1);
  while (i < n && s[i] != '}') {
    size_t at = i;
    key.len = raw.len = 0;
    long used = json_read_str(s + i, n - i, &key, F, i);
    if (used < 0) goto done;
    i = tok_bpe_skip_ws(s, n, i + (size_t)used);
    if (i >= n || s[i] != ':') {
      util_err("%s, byte offset %zu: expected ':'", F, i);
      goto done;
    }
    i = tok_bpe_skip_ws(s, n, i + 1);
    long id = 0;
    size_t d0 = i;
    while (i < n && s[i] >= '0' && s[i] <= '9' && id <= BPE_EOT) id = id * 10 + (s[i++] - '0');
    if (i == d0 || id > BPE_EOT || (i < n && s[i] >= '0' && s[i] <= '9')) {
      util_err("%s, byte offset %zu: expected a token id in 0..%d", F, d0, BPE_EOT);
      goto done;
    }
    if (key.len == BPE_EOT_LEN && !memcmp(key.data, BPE_EOT_TEXT, BPE_EOT_LEN)) {
      if (id != BPE_EOT) {
        util_err("%s, byte offset %zu: %s must have id %d", F, at, BPE_EOT_TEXT, BPE_EOT);
        goto done;
      }
      have_eot = 1;
    } else {
      if (id == BPE_EOT || b->len[id] != UINT32_MAX) {
        util_err("%s, byte offset %zu: token id %ld is used twice", F, d0, id);
        goto done;
      }
      if (tok_bpe_unmap(key.data, key.len, &raw) || !raw.len) {
        util_err("%s, byte offset %zu: key is not written in GPT-2's byte encoding", F, at);
        goto done;
      }
      int r = tok_map_put(&b->ranks, raw.data, raw.len, (int32_t)id);
      if (r < 0) goto done;
      if (!r) {
        util_err("%s, byte offset %zu: duplicate token", F, at);
        goto done;
      }
      b->off[id] = (uint32_t)b->bytes.len;
      b->len[id] = (uint32_t)raw.len;
      if (util_buf_add(&b->bytes, raw.data, raw.len)) goto done;
      if (raw.len > BPE_MAX_TOKEN_LEN) {
        util_err("%s, byte offset %zu: token longer than %d bytes", F, at, BPE_MAX_TOKEN_LEN);
        goto done;
      }
      if (raw.len > b->max_len) b->max_len = raw.len;
      count++;
    }
    i = tok_bpe_skip_ws(s, n, i);
    if (i < n && s[i] == ',')
      i = tok_bpe_skip_ws(s, n, i + 1);
    else if (i >= n || s[i] != '}') {
      util_err("%s, byte offset %zu: expected ',' or '}'", F, i);
      goto done;
    }
  }
  if (count != BPE_N_MERGEABLE || !have_eot) {
    util_err("%s: expected %d tokens and %s, found %zu tokens%s", F, BPE_N_MERGEABLE, BPE_EOT_TEXT, count,
             have_eot ? "" : " and no end-of-text token");
    goto done;
  }
  for (int c = 0; c < 256; c++) {
    char ch = (char)c;
    b->byte_id[c] = tok_map_get(&b->ranks, &ch, 1);
    if (b->byte_id[c] < 0) {
      util_err("%s: byte 0x%02X has no token", F, c);
      goto done;
    }
  }
  rc = 0;
done:
  util_buf_free(&key);
  util_buf_free(&raw);
  if (owned) free((void *)s);
  return rc;
}

/* Checks that merge line i of vocab.bpe produces token 256 + i: tiktoken
 * merges by the rank of the concatenation, which is only GPT-2's merge
 * order when the two agree. */
static int tok_bpe_check_merges(tok_bpe *b) {
  const char *F = "data/gpt2/vocab.bpe", *s;
  size_t n;
  int owned, rc = -1;
  if (embed_get(F, &s, &n, &owned)) return -1;
  util_buf raw = {0};
  long bad = util_utf8_invalid_at(s, n);
  const char *nl = memchr(s, '\n', n);
  if (bad >= 0) {
    util_err("%s: invalid UTF-8 at byte offset %ld", F, bad);
    goto done;
  }
  if (!nl || n < 8 || memcmp(s, "#version", 8)) {
    util_err("%s line 1: expected the '#version' header", F);
    goto done;
  }
  size_t i = (size_t)(nl - s) + 1;
  int line = 1, merges = 0;
  while (i < n) {
    line++;
    const char *e = memchr(s + i, '\n', n - i);
    size_t len = e ? (size_t)(e - (s + i)) : n - i;
    const char *sp = memchr(s + i, ' ', len);
    raw.len = 0;
    if (!sp || sp == s + i || sp == s + i + len - 1 || tok_bpe_unmap(s + i, (size_t)(sp - (s + i)), &raw) ||
        tok_bpe_unmap(sp + 1, len - (size_t)(sp + 1 - (s + i)), &raw)) {
      util_err("%s line %d: expected two tokens in GPT-2's byte encoding, separated by one space", F, line);
      goto done;
    }
    if (tok_map_get(&b->ranks, raw.data, raw.len) != 256 + merges) {
      util_err("%s line %d: the merge does not make token %d of encoder.json", F, line, 256 + merges);
      goto done;
    }
    merges++;
    i += len + 1;
  }
  if (merges != BPE_N_MERGEABLE - 256) {
    util_err("%s: expected %d merges, found %d", F, BPE_N_MERGEABLE - 256, merges);
    goto done;
  }
  rc = 0;
done:
  util_buf_free(&raw);
  if (owned) free((void *)s);
  return rc;
}

/* ---- the pre-tokenizer regex ------------------------------------------------ */

static int tok_bpe_add_class(util_buf *p, const uint32_t (*r)[2], size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (r[i][0] == r[i][1] ? util_buf_printf(p, "\\x{%X}", r[i][0])
                           : util_buf_printf(p, "\\x{%X}-\\x{%X}", r[i][0], r[i][1]))
      return -1;
  }
  return 0;
}

/* "14.0.0" -> 14000; 0 when unreadable */
static long tok_bpe_version(const char *v) {
  char *end;
  long major = strtol(v, &end, 10), minor = *end == '.' ? strtol(end + 1, NULL, 10) : 0;
  return end == v ? 0 : major * 1000 + minor;
}

/* GPT-2's pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with the classes made tiktoken's whatever Unicode version the system PCRE2
 * has (see tok_unicode.c). native: PCRE2's own \p{L} / \p{N} plus what was
 * assigned after tok_uni_base_version (a table lookup and a few ranges),
 * right when PCRE2's tables are of a version in between; otherwise every
 * range (a linear scan). \s is always spelled out: PCRE2's adds U+180E. */
static int tok_bpe_pattern(util_buf *p, int native) {
  const char *tmpl = "'s|'t|'re|'ve|'m|'ll|'d| ?[%L]+| ?[%N]+| ?[^%W%L%N]+|[%W]+(?![^%W])|[%W]+";
  for (const char *c = tmpl; *c; c++) {
    int rc;
    if (*c != '%')
      rc = util_buf_add(p, c, 1);
    else if (*++c == 'W')
      rc = tok_bpe_add_class(p, tok_uni_space, tok_uni_n_space);
    else if (*c == 'L' && native)
      rc = util_buf_add(p, "\\p{L}", 5) || tok_bpe_add_class(p, tok_uni_letter_added, tok_uni_n_letter_added);
    else if (*c == 'L')
      rc = tok_bpe_add_class(p, tok_uni_letter, tok_uni_n_letter);
    else if (native)
      rc = util_buf_add(p, "\\p{N}", 5) || tok_bpe_add_class(p, tok_uni_number_added, tok_uni_n_number_added);
    else
      rc = tok_bpe_add_class(p, tok_uni_number, tok_uni_n_number);
    if (rc) return -1;
  }
  return 0;
}

static int tok_bpe_compile(tok_bpe *b, int flags) {
  util_buf p = {0};
  int rc = -1;
  char ver[64] = "";
  pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, ver);
  long v = tok_bpe_version(ver);
  int native = !(flags & TOK_GPT2_EXPLICIT) && v >= tok_bpe_version(tok_uni_base_version) &&
               v <= tok_bpe_version(tok_uni_version);
  if (tok_bpe_pattern(&p, native)) goto done;
  int err;
  PCRE2_SIZE eoff;
  b->re = pcre2_compile((PCRE2_SPTR)p.data, p.len, PCRE2_UTF | PCRE2_UCP, &err, &eoff, NULL);
  if (!b->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    util_err("gpt2 pre-tokenizer regex, offset %zu: %s", (size_t)eoff, (const char *)msg);
    goto done;
  }
  b->md = pcre2_match_data_create_from_pattern(b->re, NULL);
  b->mctx = pcre2_match_context_create(NULL);
  if (!b->md || !b->mctx) {
    util_err("out of memory: gpt2 pre-tokenizer regex");
    goto done;
  }
  /* JIT when the platform has it; the interpreter gives the same matches */
  int jit = b->jitted = !(flags & TOK_GPT2_NO_JIT) && pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE) == 0;
  if (jit) {
    b->jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (b->jit) pcre2_jit_stack_assign(b->mctx, NULL, b->jit);
  }
  snprintf(b->desc, sizeof b->desc, "PCRE2 %d.%d (Unicode %s), %s, %s", PCRE2_MAJOR, PCRE2_MINOR, ver,
           native ? "native \\p{L}/\\p{N} + later ranges" : "explicit class ranges", jit ? "JIT" : "interpreter");
  rc = 0;
done:
  util_buf_free(&p);
  return rc;
}

const char *tok_bpe_describe(const tok_t *t) { return t->bpe ? t->bpe->desc : ""; }

/* ---- construction ------------------------------------------------------------ */

tok_t *tok_gpt2_new(void) { return tok_gpt2_new_ex(0); }

tok_t *tok_gpt2_new_ex(int flags) {
  tok_t *t = tok_alloc(CFG_TOK_GPT2);
  if (!t) return NULL;
  t->bpe = util_calloc(1, sizeof *t->bpe, "gpt2 tokenizer");
  if (!t->bpe || tok_map_init(&t->bpe->ranks, BPE_N_MERGEABLE) || tok_map_init(&t->bpe->cache, 1 << 14) ||
      tok_bpe_load_encoder(t->bpe) || tok_bpe_check_merges(t->bpe) || tok_bpe_compile(t->bpe, flags))
    goto fail;
  t->n_vocab = BPE_EOT + 1;
  t->eot = BPE_EOT;
  if (tok_finish(t)) goto fail;
  return t;
fail:
  tok_bpe_free(t->bpe); /* tok_release (tok_vocab.c) leaves the gpt2 state to us */
  t->bpe = NULL;
  tok_release(t);
  return NULL;
}

void tok_bpe_free(tok_bpe *b) {
  if (!b) return;
  if (b->ranks.slot) tok_map_free(&b->ranks);
  if (b->cache.slot) tok_map_free(&b->cache);
  util_buf_free(&b->bytes);
  pcre2_match_data_free(b->md);
  pcre2_match_context_free(b->mctx);
  pcre2_jit_stack_free(b->jit);
  pcre2_code_free(b->re);
  free(b->span_off);
  free(b->span_n);
  free(b->pool);
  free(b->plen);
  free(b->prank);
  free(b->tree);
  free(b);
}

/* ---- BPE merge ------------------------------------------------------------- */

/* per thread, so counting costs no atomic on the hot path */
static _Thread_local size_t tok_rank_lookups;
size_t tok_stat_rank_lookups(void) { return tok_rank_lookups; }

static int32_t tok_bpe_rank(const tok_bpe *b, const char *s, size_t n) {
  tok_rank_lookups++;
  return n > b->max_len ? -1 : tok_map_get(&b->ranks, s, n);
}

static uint16_t tok_bpe_pair(const tok_bpe *b, const char *s, size_t n) {
  int32_t r = tok_bpe_rank(b, s, n);
  return r < 0 ? BPE_NONE : (uint16_t)r;
}

static int tok_bpe_scratch(tok_bpe *b, size_t n, size_t P) {
  size_t cap = n < 256 ? 256 : n;
  if (n > b->scratch_cap) {
    free(b->plen), free(b->prank);
    b->plen = util_malloc(cap, "BPE merge");
    b->prank = util_malloc(cap * sizeof *b->prank, "BPE merge");
    b->scratch_cap = b->plen && b->prank ? cap : 0;
    if (!b->scratch_cap) return -1;
  }
  if (2 * P > b->tree_cap) {
    free(b->tree);
    b->tree = util_malloc(2 * P * sizeof *b->tree, "BPE merge");
    b->tree_cap = b->tree ? 2 * P : 0;
    if (!b->tree) return -1;
  }
  return 0;
}

static void tok_bpe_scratch_drop(tok_bpe *b) {
  free(b->plen), free(b->prank), free(b->tree);
  b->plen = NULL, b->prank = NULL, b->tree = NULL;
  b->scratch_cap = b->tree_cap = 0;
}

/* Sets prank[i] = v and brings the tree's minima up to date; stops as soon
 * as a node keeps its value (then so do all above it). */
static void tok_bpe_set(tok_bpe *b, size_t P, size_t i, uint16_t v) {
  uint16_t *pr = b->prank, *t = b->tree, old = pr[i];
  if (old == v) return;
  pr[i] = v;
  size_t blk = i / BPE_BLOCK, x = P + blk;
  uint16_t m = t[x];
  if (v < m) {
    m = v;
  } else if (old == m) {
    size_t end = (blk + 1) * BPE_BLOCK < b->merge_n ? (blk + 1) * BPE_BLOCK : b->merge_n;
    m = BPE_NONE;
    for (size_t q = blk * BPE_BLOCK; q < end; q++)
      if (pr[q] < m) m = pr[q];
  }
  if (m == t[x]) return;
  t[x] = m;
  for (x >>= 1; x; x >>= 1) {
    uint16_t c = t[2 * x] < t[2 * x + 1] ? t[2 * x] : t[2 * x + 1];
    if (t[x] == c) break;
    t[x] = c;
  }
}

/* Merges piece s (n >= 2 bytes, not itself a token) and appends its ids.
 * Each step merges the pair of lowest rank, leftmost among equals, as
 * tiktoken does: the tree's root is the lowest rank, and descending to the
 * left child whenever it holds that rank finds the leftmost block. */
static int tok_bpe_merge(tok_bpe *b, const char *s, size_t n, tok_bpe_out *out) {
  size_t nb = (n + BPE_BLOCK - 1) / BPE_BLOCK, P = 1;
  while (P < nb) P *= 2;
  if (tok_bpe_scratch(b, n, P)) return -1;
  uint8_t *len = b->plen;
  uint16_t *pr = b->prank, *t = b->tree;
  b->merge_n = n;
  for (size_t blk = 0; blk < P; blk++) {
    uint16_t m = BPE_NONE;
    for (size_t i = blk * BPE_BLOCK; i < n && i < (blk + 1) * BPE_BLOCK; i++) {
      len[i] = 1;
      pr[i] = i + 1 < n ? tok_bpe_pair(b, s + i, 2) : BPE_NONE;
      if (pr[i] < m) m = pr[i];
    }
    t[P + blk] = m;
  }
  for (size_t x = P - 1; x >= 1; x--) t[x] = t[2 * x] < t[2 * x + 1] ? t[2 * x] : t[2 * x + 1];
  while (t[1] != BPE_NONE) {
    uint16_t r = t[1];
    size_t x = 1;
    while (x < P) x = t[2 * x] == r ? 2 * x : 2 * x + 1;
    size_t i = (x - P) * BPE_BLOCK;
    while (pr[i] != r) i++;
    size_t j = i + len[i], k = j + len[j]; /* part j joins part i: [i, k) is token r */
    tok_bpe_set(b, P, j, BPE_NONE);
    len[i] = len[k - 1] = (uint8_t)(k - i);
    tok_bpe_set(b, P, i, k < n ? tok_bpe_pair(b, s + i, k + len[k] - i) : BPE_NONE);
    if (i > 0) {
      size_t h = i - len[i - 1];
      tok_bpe_set(b, P, h, tok_bpe_pair(b, s + h, k - h));
    }
  }
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i += len[i]) {
    int32_t id = len[i] == 1 ? b->byte_id[(unsigned char)s[i]] : tok_bpe_rank(b, s + i, len[i]);
    rc = tok_bpe_out_add(out, &id, 1);
  }
  if (n > BPE_SCRATCH_KEEP) tok_bpe_scratch_drop(b);
  return rc;
}

/* ---- pieces, cache, encode, decode ------------------------------------------- */

static int tok_bpe_cache_put(tok_bpe *b, const char *s, size_t n, const int32_t *ids, size_t k) {
  if (b->cache.n >= BPE_CACHE_MAX_PIECES || b->pool_n + k > BPE_CACHE_MAX_IDS) {
    tok_map_clear(&b->cache);
    b->pool_n = 0;
  }
  if (b->cache.n == b->spans_cap) {
    size_t cap = b->spans_cap ? b->spans_cap * 2 : 4096;
    uint32_t *o = util_realloc(b->span_off, cap * sizeof *o, "BPE cache");
    if (!o) return -1;
    b->span_off = o;
    uint32_t *c = util_realloc(b->span_n, cap * sizeof *c, "BPE cache");
    if (!c) return -1;
    b->span_n = c;
    b->spans_cap = cap;
  }
  if (b->pool_n + k > b->pool_cap) {
    size_t cap = b->pool_cap ? b->pool_cap : 1 << 16;
    while (cap < b->pool_n + k) cap *= 2;
    int32_t *p = util_realloc(b->pool, cap * sizeof *p, "BPE cache");
    if (!p) return -1;
    b->pool = p;
    b->pool_cap = cap;
  }
  size_t span = b->cache.n;
  if (tok_map_put(&b->cache, s, n, (int32_t)span) < 0) return -1;
  b->span_off[span] = (uint32_t)b->pool_n;
  b->span_n[span] = (uint32_t)k;
  memcpy(b->pool + b->pool_n, ids, k * sizeof *ids);
  b->pool_n += k;
  return 0;
}

static int tok_bpe_piece(tok_bpe *b, const char *s, size_t n, tok_bpe_out *out) {
  int32_t r = tok_bpe_rank(b, s, n); /* tiktoken takes a whole-token piece as is */
  if (r >= 0) return tok_bpe_out_add(out, &r, 1);
  int32_t c = n <= BPE_CACHE_MAX_PIECE_LEN ? tok_map_get(&b->cache, s, n) : -1;
  if (c >= 0) return tok_bpe_out_add(out, b->pool + b->span_off[c], b->span_n[c]);
  size_t first = out->n;
  if (tok_bpe_merge(b, s, n, out)) return -1;
  return n <= BPE_CACHE_MAX_PIECE_LEN ? tok_bpe_cache_put(b, s, n, out->v + first, out->n - first) : 0;
}

/* Runs the regex over s[0..n) (one segment: text between special tokens is
 * matched on its own, as tiktoken does) and calls the piece handler, or
 * records piece ends when `ends` is given. */
static int tok_bpe_segment(tok_bpe *b, const char *s, size_t n, size_t base, tok_bpe_out *out, tok_bpe_out *ends) {
  size_t off = 0;
  while (off < n) {
    /* the text is checked UTF-8 already; pcre2_jit_match skips the checks */
    int rc = b->jitted ? pcre2_jit_match(b->re, (PCRE2_SPTR)s, n, off, 0, b->md, b->mctx)
                       : pcre2_match(b->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, b->md, b->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return util_err("gpt2 pre-tokenizer at byte offset %zu: %s", base + off, (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(b->md);
    size_t st = ov[0], en = ov[1];
    if (en <= st) { /* the pattern has no empty match; step over one just in case */
      off = st + 1;
      while (off < n && ((unsigned char)s[off] & 0xC0) == 0x80) off++;
      continue;
    }
    if (ends) {
      int32_t e = (int32_t)(base + en);
      if (tok_bpe_out_add(ends, &e, 1)) return -1;
    } else if (tok_bpe_piece(b, s + st, en - st, out)) {
      return -1;
    }
    off = en;
  }
  return 0;
}

static const char *tok_bpe_find_eot(const char *s, size_t n) {
  for (const char *p = s; (p = memchr(p, '<', n - (size_t)(p - s))) != NULL; p++)
    if ((size_t)(s + n - p) >= BPE_EOT_LEN && !memcmp(p, BPE_EOT_TEXT, BPE_EOT_LEN)) return p;
  return NULL;
}

int tok_bpe_encode(tok_t *t, const char *s, size_t n, int allow_special, int32_t **ids, size_t *n_ids) {
  tok_bpe *b = t->bpe;
  tok_bpe_out out = {0};
  if (tok_bpe_out_reserve(&out, n / 4 + 16)) return -1; /* English runs ~4 bytes a token */
  size_t pos = 0;
  while (allow_special && pos < n) {
    const char *e = tok_bpe_find_eot(s + pos, n - pos);
    if (!e) break;
    int32_t eot = BPE_EOT;
    if (tok_bpe_segment(b, s + pos, (size_t)(e - (s + pos)), pos, &out, NULL) || tok_bpe_out_add(&out, &eot, 1))
      goto fail;
    pos = (size_t)(e - s) + BPE_EOT_LEN;
  }
  if (pos < n && tok_bpe_segment(b, s + pos, n - pos, pos, &out, NULL)) goto fail;
  *ids = out.v;
  *n_ids = out.n;
  return 0;
fail:
  free(out.v);
  return -1;
}

int tok_bpe_pieces(tok_t *t, const char *s, size_t n, size_t **ends, size_t *n_pieces) {
  tok_bpe_out e = {0};
  *ends = NULL;
  *n_pieces = 0;
  if (n > INT32_MAX) return util_err("gpt2 pieces: text longer than 2 GiB");
  long bad = util_utf8_invalid_at(s, n);
  if (bad >= 0) return util_err("invalid UTF-8 at byte offset %ld", bad);
  if (tok_bpe_out_reserve(&e, n / 3 + 16) || (n && tok_bpe_segment(t->bpe, s, n, 0, NULL, &e))) {
    free(e.v);
    return -1;
  }
  size_t *r = util_malloc((e.n ? e.n : 1) * sizeof *r, "gpt2 pieces");
  if (!r) {
    free(e.v);
    return -1;
  }
  for (size_t i = 0; i < e.n; i++) r[i] = (size_t)e.v[i];
  free(e.v);
  *ends = r;
  *n_pieces = e.n;
  return 0;
}

int tok_bpe_decode(const tok_t *t, const int32_t *ids, size_t n, util_buf *out) {
  const tok_bpe *b = t->bpe;
  for (size_t i = 0; i < n; i++) {
    int rc = ids[i] == BPE_EOT ? util_buf_add(out, BPE_EOT_TEXT, BPE_EOT_LEN)
                               : util_buf_add(out, b->bytes.data + b->off[ids[i]], b->len[ids[i]]);
    if (rc) return -1;
  }
  return 0;
}
