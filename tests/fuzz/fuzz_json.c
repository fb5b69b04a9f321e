/* fuzz_json: the strict JSON parser (safetensors headers, config.json).
 * Property: whatever it accepts, written back with json.c's own writers,
 * parses again to the same tree (types, key order, string bytes, numbers). */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "json.h"

/* v as JSON text through json_write_str / json_write_num. */
static void fuzz_write(util_buf *b, const json_val *v) {
  int rc = 0;
  switch (v->type) {
  case JSON_NULL: rc = util_buf_add(b, "null", 4); break;
  case JSON_BOOL: rc = v->boolean ? util_buf_add(b, "true", 4) : util_buf_add(b, "false", 5); break;
  case JSON_NUM:
    rc = v->is_int ? util_buf_printf(b, "%lld", (long long)v->i) : json_write_num(b, v->num, "fuzz");
    break;
  case JSON_STR: rc = json_write_str(b, v->str, v->len, "fuzz"); break;
  case JSON_ARR:
    rc = util_buf_add(b, "[", 1);
    for (size_t i = 0; i < v->len && !rc; i++) {
      if (i) rc = util_buf_add(b, ",", 1);
      fuzz_write(b, &v->items[i]);
    }
    if (!rc) rc = util_buf_add(b, "]", 1);
    break;
  case JSON_OBJ:
    rc = util_buf_add(b, "{", 1);
    for (size_t i = 0; i < v->len && !rc; i++) {
      if (i) rc = util_buf_add(b, ",", 1);
      if (!rc) rc = json_write_str(b, v->members[i].key, v->members[i].key_len, "fuzz key");
      if (!rc) rc = util_buf_add(b, ":", 1);
      fuzz_write(b, &v->members[i].val);
    }
    if (!rc) rc = util_buf_add(b, "}", 1);
    break;
  default: fuzz_fail("unknown JSON type %d", v->type);
  }
  if (rc) fuzz_fail("cannot write back a parsed value: %s", util_errmsg());
}

static void fuzz_same(const json_val *a, const json_val *b) {
  if (a->type != b->type) fuzz_fail("type %d became %d", a->type, b->type);
  switch (a->type) {
  case JSON_BOOL:
    if (a->boolean != b->boolean) fuzz_fail("boolean changed");
    break;
  case JSON_NUM:
    /* == not bits: -0 written as "-0" may come back as the integer 0 */
    if (a->num != b->num) fuzz_fail("number %.17g became %.17g", a->num, b->num);
    if (a->is_int && (!b->is_int || a->i != b->i)) fuzz_fail("integer %lld changed", (long long)a->i);
    break;
  case JSON_STR:
    if (a->len != b->len || memcmp(a->str, b->str, a->len)) fuzz_fail("string changed");
    break;
  case JSON_ARR:
    if (a->len != b->len) fuzz_fail("array length %zu became %zu", a->len, b->len);
    for (size_t i = 0; i < a->len; i++) fuzz_same(&a->items[i], &b->items[i]);
    break;
  case JSON_OBJ:
    if (a->len != b->len) fuzz_fail("object size %zu became %zu", a->len, b->len);
    for (size_t i = 0; i < a->len; i++) {
      const json_member *x = &a->members[i], *y = &b->members[i];
      if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len)) fuzz_fail("key changed");
      if (json_get(a, x->key) == NULL && !memchr(x->key, 0, x->key_len)) fuzz_fail("json_get misses a key");
      fuzz_same(&x->val, &y->val);
    }
    break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  util_errclear();
  json_val *v = json_parse((const char *)data, size, "fuzz");
  if (!v) {
    if (!strcmp(util_errmsg(), "unknown error")) fuzz_fail("rejected without a message");
    util_errclear();
    return 0;
  }
  util_buf b = {0};
  fuzz_write(&b, v);
  json_val *w = json_parse(b.data ? b.data : "", b.len, "fuzz rewritten");
  if (!w) fuzz_fail("its own output does not parse: %s", util_errmsg());
  fuzz_same(v, w);
  json_free(w);
  json_free(v);
  util_buf_free(&b);
  return 0;
}
