/* json: see json.h. A recursive-descent parser; the depth limit bounds the
 * recursion, the value limit bounds memory. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *s;
  size_t n, pos;
  size_t base; /* added to offsets in messages: where s starts in its file (json_read_str) */
  const char *what;
  int depth;
  size_t values;
} json_parser;

static int json_fail(json_parser *p, size_t at, const char *rule) {
  return util_err("%s: invalid JSON at byte %zu: %s", p->what, p->base + at, rule);
}

/* Describes the byte at `at` for "unexpected ..." messages. */
static int json_unexpected(json_parser *p, size_t at, const char *expected) {
  char msg[160];
  if (at >= p->n) {
    snprintf(msg, sizeof msg, "unexpected end of input, expected %s", expected);
  } else {
    unsigned char c = (unsigned char)p->s[at];
    if (c >= 0x20 && c < 0x7f) snprintf(msg, sizeof msg, "unexpected '%c', expected %s", c, expected);
    else snprintf(msg, sizeof msg, "unexpected byte 0x%02x, expected %s", c, expected);
  }
  return json_fail(p, at, msg);
}

static void json_ws(json_parser *p) {
  while (p->pos < p->n) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static void json_clear(json_val *v) {
  switch (v->type) {
  case JSON_STR:
    free(v->str);
    break;
  case JSON_ARR:
    for (size_t i = 0; i < v->len; i++) json_clear(&v->items[i]);
    free(v->items);
    break;
  case JSON_OBJ:
    for (size_t i = 0; i < v->len; i++) {
      free(v->members[i].key);
      json_clear(&v->members[i].val);
    }
    free(v->members);
    free(v->order);
    break;
  default:
    break;
  }
  memset(v, 0, sizeof *v);
}

void json_free(json_val *v) {
  if (!v) return;
  json_clear(v);
  free(v);
}

static int json_hex4(json_parser *p, size_t at, uint32_t *out) {
  if (at + 4 > p->n) return json_fail(p, at, "truncated \\u escape");
  uint32_t x = 0;
  for (int k = 0; k < 4; k++) {
    char c = p->s[at + (size_t)k];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return json_fail(p, at + (size_t)k, "\\u escape needs 4 hex digits");
    x = x << 4 | (uint32_t)d;
  }
  *out = x;
  return 0;
}

/* Parses a string at p->pos (the opening quote), appending its decoded
 * bytes to b (the caller frees b, also on failure). */
static int json_string_into(json_parser *p, util_buf *b) {
  size_t start = p->pos++;
  for (;;) {
    if (p->pos >= p->n) return json_fail(p, start, "unterminated string");
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '"') {
      p->pos++;
      break;
    }
    if (c < 0x20) return json_fail(p, p->pos, "control character in string (must be escaped)");
    if (c != '\\') {
      /* copy a run of plain bytes at once (UTF-8 was validated up front:
       * json_parse checks the whole text, json_read_str's caller its own) */
      size_t run = p->pos;
      while (run < p->n && p->s[run] != '"' && p->s[run] != '\\' && (unsigned char)p->s[run] >= 0x20) run++;
      if (util_buf_add(b, p->s + p->pos, run - p->pos)) return -1;
      p->pos = run;
      continue;
    }
    size_t esc = p->pos;
    if (esc + 1 >= p->n) return json_fail(p, start, "unterminated string");
    char e = p->s[esc + 1], lit = 0;
    p->pos += 2;
    switch (e) {
    case '"':
      lit = '"';
      break;
    case '\\':
      lit = '\\';
      break;
    case '/':
      lit = '/';
      break;
    case 'b':
      lit = '\b';
      break;
    case 'f':
      lit = '\f';
      break;
    case 'n':
      lit = '\n';
      break;
    case 'r':
      lit = '\r';
      break;
    case 't':
      lit = '\t';
      break;
    case 'u': {
      uint32_t cp;
      if (json_hex4(p, p->pos, &cp)) return -1;
      p->pos += 4;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return json_fail(p, esc, "lone low surrogate in \\u escape");
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t lo;
        if (p->pos + 1 >= p->n || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
          return json_fail(p, esc, "high surrogate not followed by a \\u low surrogate");
        if (json_hex4(p, p->pos + 2, &lo)) return -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
          return json_fail(p, p->pos, "high surrogate not followed by a \\u low surrogate");
        p->pos += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      char u[4];
      int k = util_utf8_encode(cp, u);
      if (util_buf_add(b, u, (size_t)k)) return -1;
      continue;
    }
    default:
      return json_fail(p, esc, "invalid escape (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
    }
    if (util_buf_add(b, &lit, 1)) return -1;
  }
  return 0;
}

/* Parses a string at p->pos (the opening quote) into a malloc'ed buffer. */
static int json_string(json_parser *p, char **out, size_t *out_len) {
  util_buf b = {0};
  if (json_string_into(p, &b)) return util_buf_free(&b), -1;
  *out_len = b.len;
  if (util_buf_add(&b, "", 1)) return util_buf_free(&b), -1;
  *out = b.data;
  return 0;
}

long json_read_str(const char *s, size_t n, util_buf *out, const char *what, size_t base) {
  json_parser p = {.s = s, .n = n, .base = base, .what = what};
  if (!n || s[0] != '"') return json_unexpected(&p, 0, "a string");
  return json_string_into(&p, out) ? -1 : (long)p.pos;
}

static int json_number(json_parser *p, json_val *v) {
  size_t start = p->pos, i = p->pos;
  int integral = 1;
  if (i < p->n && p->s[i] == '-') i++;
  if (i >= p->n || p->s[i] < '0' || p->s[i] > '9') return json_unexpected(p, i, "a digit");
  if (p->s[i] == '0') {
    i++;
    if (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') return json_fail(p, start, "leading zero in number");
  } else {
    while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
  }
  if (i < p->n && p->s[i] == '.') {
    integral = 0;
    i++;
    if (i >= p->n || p->s[i] < '0' || p->s[i] > '9') return json_unexpected(p, i, "a digit after '.'");
    while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
  }
  if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
    integral = 0;
    i++;
    if (i < p->n && (p->s[i] == '+' || p->s[i] == '-')) i++;
    if (i >= p->n || p->s[i] < '0' || p->s[i] > '9') return json_unexpected(p, i, "a digit in the exponent");
    while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
  }
  /* strtod needs a terminated copy: the text may end right after the number */
  size_t len = i - start;
  char small[64], *tmp = len < sizeof small ? small : util_malloc(len + 1, "JSON number");
  if (!tmp) return -1;
  memcpy(tmp, p->s + start, len);
  tmp[len] = '\0';
  double x = strtod(tmp, NULL);
  if (tmp != small) free(tmp);
  if (!isfinite(x)) return json_fail(p, start, "number out of range");
  v->type = JSON_NUM;
  v->num = x;
  if (integral) {
    int neg = p->s[start] == '-';
    uint64_t mag = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    int fits = 1;
    for (size_t k = start + (size_t)neg; k < i && fits; k++) {
      unsigned d = (unsigned)(p->s[k] - '0');
      if (mag > (lim - d) / 10) fits = 0;
      else mag = mag * 10 + d;
    }
    if (fits) {
      v->is_int = 1;
      v->i = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    }
  }
  p->pos = i;
  return 0;
}

static int json_literal(json_parser *p, const char *word, json_val *v, int type, int boolean) {
  size_t k = strlen(word);
  if (p->pos + k > p->n || memcmp(p->s + p->pos, word, k) != 0) return json_unexpected(p, p->pos, "a value");
  v->type = type;
  v->boolean = boolean;
  p->pos += k;
  return 0;
}

typedef struct {
  const char *key;
  size_t len, idx;
} json_keyref;

static int json_keycmp(const char *a, size_t na, const char *b, size_t nb) {
  int c = memcmp(a, b, na < nb ? na : nb);
  if (c) return c;
  return na < nb ? -1 : na > nb;
}

static int json_keyref_cmp(const void *x, const void *y) {
  const json_keyref *a = x, *b = y;
  int c = json_keycmp(a->key, a->len, b->key, b->len);
  if (c) return c;
  return a->idx < b->idx ? -1 : a->idx > b->idx; /* keeps the first duplicate first */
}

static int json_value(json_parser *p, json_val *v);

static int json_array(json_parser *p, json_val *v) {
  size_t cap = 0;
  v->type = JSON_ARR;
  p->pos++;
  json_ws(p);
  if (p->pos < p->n && p->s[p->pos] == ']') {
    p->pos++;
    return 0;
  }
  for (;;) {
    json_val item;
    memset(&item, 0, sizeof item);
    if (json_value(p, &item)) {
      json_clear(&item);
      return -1;
    }
    if (v->len == cap) {
      cap = cap ? cap * 2 : 4;
      json_val *grown = util_realloc(v->items, cap * sizeof *grown, "JSON array");
      if (!grown) {
        json_clear(&item);
        return -1;
      }
      v->items = grown;
    }
    v->items[v->len++] = item;
    json_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ',') {
      p->pos++;
      json_ws(p);
      if (p->pos < p->n && p->s[p->pos] == ']') return json_fail(p, p->pos, "trailing comma in array");
      continue;
    }
    if (p->pos < p->n && p->s[p->pos] == ']') {
      p->pos++;
      return 0;
    }
    return json_unexpected(p, p->pos, "',' or ']'");
  }
}

static int json_object(json_parser *p, json_val *v) {
  size_t cap = 0;
  v->type = JSON_OBJ;
  p->pos++;
  json_ws(p);
  if (p->pos < p->n && p->s[p->pos] == '}') {
    p->pos++;
  } else {
    for (;;) {
      if (p->pos >= p->n || p->s[p->pos] != '"') return json_unexpected(p, p->pos, "a string key");
      if (v->len == cap) {
        cap = cap ? cap * 2 : 4;
        json_member *grown = util_realloc(v->members, cap * sizeof *grown, "JSON object");
        if (!grown) return -1;
        v->members = grown;
      }
      json_member *m = &v->members[v->len];
      memset(m, 0, sizeof *m);
      size_t key_at = p->pos;
      if (json_string(p, &m->key, &m->key_len)) return -1;
      m->key_offset = key_at;
      v->len++;
      json_ws(p);
      if (p->pos >= p->n || p->s[p->pos] != ':') return json_unexpected(p, p->pos, "':'");
      p->pos++;
      if (json_value(p, &m->val)) return -1;
      json_ws(p);
      if (p->pos < p->n && p->s[p->pos] == ',') {
        p->pos++;
        json_ws(p);
        if (p->pos < p->n && p->s[p->pos] == '}') return json_fail(p, p->pos, "trailing comma in object");
        continue;
      }
      if (p->pos < p->n && p->s[p->pos] == '}') {
        p->pos++;
        break;
      }
      return json_unexpected(p, p->pos, "',' or '}'");
    }
  }
  if (!v->len) return 0;
  json_keyref *refs = util_malloc(v->len * sizeof *refs, "JSON object index");
  if (!refs) return -1;
  for (size_t i = 0; i < v->len; i++) refs[i] = (json_keyref){v->members[i].key, v->members[i].key_len, i};
  qsort(refs, v->len, sizeof *refs, json_keyref_cmp);
  for (size_t i = 1; i < v->len; i++) {
    if (!json_keycmp(refs[i - 1].key, refs[i - 1].len, refs[i].key, refs[i].len)) {
      char msg[200];
      snprintf(msg, sizeof msg, "duplicate key \"%.100s\"", refs[i].key);
      size_t at = v->members[refs[i].idx].key_offset;
      free(refs);
      return json_fail(p, at, msg);
    }
  }
  v->order = util_malloc(v->len * sizeof *v->order, "JSON object index");
  if (!v->order) {
    free(refs);
    return -1;
  }
  for (size_t i = 0; i < v->len; i++) v->order[i] = refs[i].idx;
  free(refs);
  return 0;
}

static int json_value(json_parser *p, json_val *v) {
  json_ws(p);
  v->offset = p->pos;
  if (++p->values > JSON_MAX_VALUES) {
    char msg[80];
    snprintf(msg, sizeof msg, "more than %u values", JSON_MAX_VALUES);
    return json_fail(p, p->pos, msg);
  }
  if (p->pos >= p->n) return json_unexpected(p, p->pos, "a value");
  char c = p->s[p->pos];
  if (c == '{' || c == '[') {
    if (p->depth >= JSON_MAX_DEPTH) {
      char msg[80];
      snprintf(msg, sizeof msg, "nesting deeper than %d levels", JSON_MAX_DEPTH);
      return json_fail(p, p->pos, msg);
    }
    p->depth++;
    int rc = c == '{' ? json_object(p, v) : json_array(p, v);
    p->depth--;
    return rc;
  }
  if (c == '"') {
    v->type = JSON_STR;
    return json_string(p, &v->str, &v->len);
  }
  if (c == 't') return json_literal(p, "true", v, JSON_BOOL, 1);
  if (c == 'f') return json_literal(p, "false", v, JSON_BOOL, 0);
  if (c == 'n') return json_literal(p, "null", v, JSON_NULL, 0);
  if (c == '-' || (c >= '0' && c <= '9')) return json_number(p, v);
  return json_unexpected(p, p->pos, "a value");
}

json_val *json_parse(const char *text, size_t len, const char *what) {
  if (len > JSON_MAX_BYTES)
    return util_err("%s: JSON text of %zu bytes is over the limit of %u bytes", what, len, JSON_MAX_BYTES), NULL;
  json_parser p = {.s = text, .n = len, .what = what};
  long bad = util_utf8_invalid_at(text, len);
  if (bad >= 0) return json_fail(&p, (size_t)bad, "invalid UTF-8"), NULL;
  json_val *v = util_calloc(1, sizeof *v, "JSON value");
  if (!v) return NULL;
  if (json_value(&p, v)) {
    json_free(v);
    return NULL;
  }
  json_ws(&p);
  if (p.pos != len) {
    json_unexpected(&p, p.pos, "end of input after the value");
    json_free(v);
    return NULL;
  }
  return v;
}

const json_val *json_get(const json_val *v, const char *key) {
  if (!v || v->type != JSON_OBJ) return NULL;
  size_t n = strlen(key), lo = 0, hi = v->len;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const json_member *m = &v->members[v->order[mid]];
    int c = json_keycmp(m->key, m->key_len, key, n);
    if (!c) return &m->val;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

const char *json_type_name(int type) {
  static const char *names[] = {"null", "boolean", "number", "string", "array", "object"};
  return type >= JSON_NULL && type <= JSON_OBJ ? names[type] : "unknown";
}

/* json_write_str (line 0) and json_write_str_line (line 1): one escaper,
 * so the two forms differ only where json.h says. */
static int json_write_esc(util_buf *b, const char *s, size_t n, const char *what, int line) {
  long bad = util_utf8_invalid_at(s, n);
  if (bad >= 0) return util_err("%s: invalid UTF-8 at byte %ld (JSON strings must be UTF-8)", what, bad);
  if (util_buf_add(b, "\"", 1)) return -1;
  size_t run = 0; /* s[run, i) is copied as it is */
  for (size_t i = 0; i < n; i++) {
    const unsigned char *u = (const unsigned char *)s + i;
    const char *esc = NULL;
    uint32_t cp = 0x110000; /* below: the code point to write as \uXXXX */
    size_t len = 1;         /* bytes of s the escape stands for */
    char e[8];
    if (u[0] == '"') esc = "\\\"";
    else if (u[0] == '\\') esc = "\\\\";
    else if (u[0] == '\n') esc = "\\n";
    else if (u[0] == '\r') esc = "\\r";
    else if (u[0] == '\t') esc = "\\t";
    else if (line && u[0] == '\b') esc = "\\b";
    else if (line && u[0] == '\f') esc = "\\f";
    else if (u[0] < 0x20 || (line && u[0] == 0x7F)) cp = u[0];
    else if (line && u[0] == 0xC2 && i + 1 < n && u[1] >= 0x80 && u[1] <= 0x9F) cp = u[1], len = 2;
    else if (line && u[0] == 0xE2 && i + 2 < n && u[1] == 0x80 && (u[2] == 0xA8 || u[2] == 0xA9))
      cp = 0x2000u + u[2] - 0x80, len = 3;
    if (cp < 0x110000) {
      snprintf(e, sizeof e, "\\u%04x", (unsigned)cp);
      esc = e;
    }
    if (!esc) continue;
    if (util_buf_add(b, s + run, i - run) || util_buf_add(b, esc, strlen(esc))) return -1;
    i += len - 1;
    run = i + 1;
  }
  if (util_buf_add(b, s + run, n - run) || util_buf_add(b, "\"", 1)) return -1;
  return 0;
}

int json_write_str(util_buf *b, const char *s, size_t n, const char *what) { return json_write_esc(b, s, n, what, 0); }

int json_write_str_line(util_buf *b, const char *s, size_t n, const char *what) {
  return json_write_esc(b, s, n, what, 1);
}

int json_write_num(util_buf *b, double x, const char *what) {
  if (!isfinite(x)) return util_err("%s: %g has no JSON representation (numbers must be finite)", what, x);
  char tmp[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, x);
    if (strtod(tmp, NULL) == x) break;
  }
  return util_buf_printf(b, "%s", tmp);
}
