/* tok_simple: the char and word tokenizers.
 *
 * char: the vocabulary is the sorted set of code points of a text; an id is
 * the index in that list.
 * word: the seeds' SimpleTokenizerV2 (LLMs from scratch, ch. 2): the text is
 * split by the regex ([,.:;?_!"()']|--|\s) keeping the delimiters, items
 * are stripped and empty ones dropped; the vocabulary is the sorted unique
 * items (code point order, like Python's sorted()) then <|endoftext|> and
 * <|unk|>. Decoding joins with spaces and removes the space before
 * , . : ; ? ! " ( ) ' as the seeds' re.sub(r'\s+([,.:;?!"()\'])', r'\1'). */
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "tok_internal.h"

#define TOK_EOT_TEXT "<|endoftext|>"
#define TOK_UNK_TEXT "<|unk|>"

int tok_py_space(uint32_t cp) {
  /* Python's str.isspace() (= re's \s for str patterns): Unicode White_Space
   * plus the information separators U+001C..U+001F */
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Growable id output of the word encoder. */
typedef struct {
  int32_t *v;
  size_t n, cap;
} tok_idvec;

static int tok_idvec_push(tok_idvec *o, int32_t id) {
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 1024;
    int32_t *v = util_realloc(o->v, cap * sizeof *v, "token ids");
    if (!v) return -1;
    o->v = v;
    o->cap = cap;
  }
  o->v[o->n++] = id;
  return 0;
}

/* ---- char -------------------------------------------------------------------- */

tok_t *tok_char_new(const char *text, size_t n) {
  if (!n) return util_err("char vocabulary: the text is empty"), NULL;
  long bad = util_utf8_invalid_at(text, n);
  if (bad >= 0) return util_err("char vocabulary: invalid UTF-8 at byte offset %ld", bad), NULL;
  /* one bit per code point: (0x110000 / 64) words */
  uint64_t *seen = util_calloc(0x110000 / 64, sizeof *seen, "char vocabulary");
  if (!seen) return NULL;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += (size_t)util_utf8_decode(text + i, &cp);
    seen[cp >> 6] |= 1ULL << (cp & 63);
  }
  tok_t *t = tok_alloc(CFG_TOK_CHAR);
  for (uint32_t w = 0; t && w < 0x110000 / 64; w++) {
    for (uint64_t bits = seen[w]; bits; bits &= bits - 1) {
      char u[4];
      uint32_t cp = w << 6 | (uint32_t)__builtin_ctzll(bits);
      if (tok_add_entry(t, u, (size_t)util_utf8_encode(cp, u))) {
        tok_release(t);
        t = NULL;
        break;
      }
    }
  }
  free(seen);
  if (t && (tok_char_index(t) || tok_finish(t))) {
    tok_release(t);
    t = NULL;
  }
  return t;
}

int tok_char_index(tok_t *t) {
  t->cps = util_malloc((size_t)t->n_vocab * sizeof *t->cps, "char vocabulary");
  if (!t->cps) return -1;
  for (int c = 0; c < 128; c++) t->ascii[c] = -1;
  for (int i = 0; i < t->n_vocab; i++) {
    util_utf8_decode(t->ent.data + t->ent_off[i], &t->cps[i]);
    if (t->cps[i] < 128) t->ascii[t->cps[i]] = i;
  }
  return 0;
}

static int32_t tok_char_lookup(const tok_t *t, uint32_t cp) {
  if (cp < 128) return t->ascii[cp];
  size_t lo = 0, hi = (size_t)t->n_vocab;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (t->cps[mid] < cp)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < (size_t)t->n_vocab && t->cps[lo] == cp ? (int32_t)lo : -1;
}

int tok_char_encode(tok_t *t, const char *s, size_t n, int32_t **ids, size_t *n_ids) {
  /* at most one id per byte; the array is trimmed at the end */
  int32_t *out = util_malloc((n ? n : 1) * sizeof *out, "token ids");
  if (!out) return -1;
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int len = util_utf8_decode(s + i, &cp);
    int32_t id = tok_char_lookup(t, cp);
    if (id < 0) {
      /* control and line-separator characters are named only by number so
       * the message stays one printable line */
      int show = cp >= 0x20 && cp != 0x7F && !(cp >= 0x80 && cp < 0xA0) && cp != 0x2028 && cp != 0x2029;
      util_err("char tokenizer: unknown character U+%04X%s%.*s%s at character %zu (byte offset %zu)", cp,
               show ? " '" : "", show ? len : 0, s + i, show ? "'" : "", k, i);
      free(out);
      return -1;
    }
    out[k++] = id;
    i += (size_t)len;
  }
  int32_t *trim = realloc(out, (k ? k : 1) * sizeof *out);
  *ids = trim ? trim : out;
  *n_ids = k;
  return 0;
}

/* ---- word -------------------------------------------------------------------- */

static int tok_word_punct(unsigned char c) { return c && strchr(",.:;?_!\"()'", c); }
/* the marks the seeds' decoder pulls left (no '_' among them) */
static int tok_word_tight(unsigned char c) { return c && strchr(",.:;?!\"()'", c); }

typedef int (*tok_word_fn)(void *ctx, const char *w, size_t len, size_t off);

/* Calls fn for each item of the seeds' split: runs of ordinary characters,
 * single punctuation marks and "--"; whitespace only separates. */
static int tok_word_split(const char *s, size_t n, tok_word_fn fn, void *ctx) {
  size_t start = 0, i = 0;
  int in_word = 0;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    size_t len = 1, delim = 0;
    uint32_t cp = c;
    if (c >= 0x80) len = (size_t)util_utf8_decode(s + i, &cp);
    if (tok_word_punct(c))
      delim = 1;
    else if (c == '-' && i + 1 < n && s[i + 1] == '-')
      delim = 2;
    else if (tok_py_space(cp))
      delim = len;
    if (!delim) {
      if (!in_word) start = i, in_word = 1;
      i += len;
      continue;
    }
    if (in_word && fn(ctx, s + start, i - start, start)) return -1;
    in_word = 0;
    if (!tok_py_space(cp) && fn(ctx, s + i, delim, i)) return -1;
    i += delim;
  }
  return in_word ? fn(ctx, s + start, n - start, start) : 0;
}

static int tok_word_is(const char *w, size_t len, const char *lit) {
  return len == strlen(lit) && !memcmp(w, lit, len);
}

static int tok_word_collect(void *ctx, const char *w, size_t len, size_t off) {
  (void)off;
  /* the specials get their fixed places at the end, not a sorted one */
  if (tok_word_is(w, len, TOK_EOT_TEXT) || tok_word_is(w, len, TOK_UNK_TEXT)) return 0;
  return tok_map_put(ctx, w, len, 0) < 0 ? -1 : 0;
}

typedef struct {
  const char *p;
  uint32_t len;
} tok_word_ref;

/* UTF-8 byte order is code point order, so this is Python's str order. */
static int tok_word_cmp(const void *a, const void *b) {
  const tok_word_ref *x = a, *y = b;
  int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
  return c ? c : (x->len > y->len) - (x->len < y->len);
}

tok_t *tok_word_new_ex(const char *text, size_t n, int with_specials) {
  if (!n) return util_err("word vocabulary: the text is empty"), NULL;
  long bad = util_utf8_invalid_at(text, n);
  if (bad >= 0) return util_err("word vocabulary: invalid UTF-8 at byte offset %ld", bad), NULL;
  tok_map set;
  tok_word_ref *refs = NULL;
  tok_t *t = NULL;
  if (tok_map_init(&set, 4096)) return NULL;
  if (tok_word_split(text, n, tok_word_collect, &set)) goto fail;
  if (!set.n) {
    util_err("word vocabulary: the text has no words (only whitespace)");
    goto fail;
  }
  refs = util_malloc(set.n * sizeof *refs, "word vocabulary");
  if (!refs) goto fail;
  for (size_t i = 0; i < set.n; i++) refs[i] = (tok_word_ref){set.keys.data + set.ent[i].off, set.ent[i].len};
  qsort(refs, set.n, sizeof *refs, tok_word_cmp);
  t = tok_alloc(CFG_TOK_WORD);
  if (!t || tok_map_init(&t->words, set.n + 2)) goto fail;
  for (size_t i = 0; i < set.n; i++)
    if (tok_add_entry(t, refs[i].p, refs[i].len)) goto fail;
  if (with_specials) {
    t->eot = t->n_vocab;
    if (tok_add_entry(t, TOK_EOT_TEXT, strlen(TOK_EOT_TEXT))) goto fail;
    t->unk = t->n_vocab;
    if (tok_add_entry(t, TOK_UNK_TEXT, strlen(TOK_UNK_TEXT))) goto fail;
  }
  for (int i = 0; i < t->n_vocab; i++)
    if (tok_map_put(&t->words, t->ent.data + t->ent_off[i], t->ent_off[i + 1] - t->ent_off[i], i) < 0) goto fail;
  if (tok_finish(t)) goto fail;
  free(refs);
  tok_map_free(&set);
  return t;
fail:
  free(refs);
  tok_map_free(&set);
  tok_release(t);
  return NULL;
}

tok_t *tok_word_new(const char *text, size_t n) { return tok_word_new_ex(text, n, 1); }

typedef struct {
  tok_t *t;
  int allow_special;
  tok_idvec out;
} tok_word_enc;

static int tok_word_emit(void *ctx, const char *w, size_t len, size_t off) {
  tok_word_enc *e = ctx;
  int32_t id = tok_map_get(&e->t->words, w, len);
  /* a disallowed <|endoftext|> is ordinary text, and no word of the text */
  if (id >= 0 && id == e->t->eot && !e->allow_special) id = -1;
  if (id < 0) id = e->t->unk;
  if (id < 0) {
    size_t show = len;
    if (show > 64) /* a long word is cut, at a character boundary */
      for (show = 64; ((unsigned char)w[show] & 0xC0) == 0x80; show--) {
      }
    return util_err("word tokenizer: unknown word \"%.*s%s\" at byte offset %zu (the vocabulary has no <|unk|>)",
                    (int)show, w, show < len ? "..." : "", off);
  }
  return tok_idvec_push(&e->out, id);
}

int tok_word_encode(tok_t *t, const char *s, size_t n, int allow_special, int32_t **ids, size_t *n_ids) {
  tok_word_enc e = {t, allow_special, {0}};
  if (tok_word_split(s, n, tok_word_emit, &e) || tok_idvec_push(&e.out, 0)) {
    free(e.out.v);
    return -1;
  }
  *ids = e.out.v;
  *n_ids = e.out.n - 1; /* the pushed 0 only guarantees an allocation */
  return 0;
}

int tok_word_decode(const tok_t *t, const int32_t *ids, size_t from, size_t n, util_buf *out) {
  for (size_t i = from; i < n; i++) {
    const char *w = t->ent.data + t->ent_off[ids[i]];
    size_t len = t->ent_off[ids[i] + 1] - t->ent_off[ids[i]];
    /* entries hold no whitespace, so the seeds' "\s+" before these marks is
     * exactly the one joining space */
    if (i && !tok_word_tight((unsigned char)w[0]) && util_buf_add(out, " ", 1)) return -1;
    if (util_buf_add(out, w, len)) return -1;
  }
  return 0;
}
