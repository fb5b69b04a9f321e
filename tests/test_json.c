/* JSON parser and writers: valid documents, every strictness rule with its
 * byte offset, escapes and surrogate pairs, limits, write/parse round trips. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "testutil.h"
#include "util.h"

static json_val *parse(const char *s) { return json_parse(s, strlen(s), "t.json"); }

/* The exact message for invalid input. */
static void expect_err(const char *s, const char *msg) {
  json_val *v = parse(s);
  ck_assert_msg(v == NULL, "'%s' parsed but should fail", s);
  ck_assert_str_eq(util_errmsg(), msg);
}

START_TEST(valid_document) {
  json_val *v = parse(" {\"a\": [1, -2.5, 3e2, true, false, null], \"b\": {\"c\": \"d\"}, \"\": 0 } \n");
  ck_assert_ptr_nonnull(v);
  ck_assert_int_eq(v->type, JSON_OBJ);
  ck_assert_uint_eq(v->len, 3);
  ck_assert_str_eq(v->members[0].key, "a"); /* document order is kept */
  ck_assert_str_eq(v->members[2].key, "");
  const json_val *a = json_get(v, "a");
  ck_assert_int_eq(a->type, JSON_ARR);
  ck_assert_uint_eq(a->len, 6);
  ck_assert_uint_eq(a->offset, 7);
  ck_assert(a->items[0].is_int && a->items[0].i == 1);
  ck_assert(!a->items[1].is_int && a->items[1].num == -2.5);
  ck_assert(!a->items[2].is_int && a->items[2].num == 300.0);
  ck_assert(a->items[3].type == JSON_BOOL && a->items[3].boolean == 1);
  ck_assert(a->items[4].type == JSON_BOOL && a->items[4].boolean == 0);
  ck_assert_int_eq(a->items[5].type, JSON_NULL);
  ck_assert_str_eq(json_get(json_get(v, "b"), "c")->str, "d");
  ck_assert_ptr_nonnull(json_get(v, ""));
  ck_assert_ptr_null(json_get(v, "z"));
  ck_assert_ptr_null(json_get(a, "a")); /* not an object */
  json_free(v);

  v = parse("-0");
  ck_assert(v->is_int && v->i == 0 && signbit(v->num));
  json_free(v);
  v = parse("1.5E-3");
  ck_assert(v->num == 1.5e-3);
  json_free(v);
  v = parse("[]");
  ck_assert(v->type == JSON_ARR && v->len == 0);
  json_free(v);
  v = parse("{}");
  ck_assert(v->type == JSON_OBJ && v->len == 0 && json_get(v, "a") == NULL);
  json_free(v);
}
END_TEST

START_TEST(integers_exact) {
  json_val *v = parse("[9223372036854775807, -9223372036854775808, 9223372036854775808, 12345678901234567]");
  ck_assert(v->items[0].is_int && v->items[0].i == INT64_MAX);
  ck_assert(v->items[1].is_int && v->items[1].i == INT64_MIN);
  ck_assert(!v->items[2].is_int); /* does not fit: only the double is kept */
  ck_assert(v->items[2].num == 9223372036854775808.0);
  ck_assert(v->items[3].is_int && v->items[3].i == 12345678901234567LL); /* beyond 2^53, still exact */
  json_free(v);
}
END_TEST

START_TEST(many_keys_lookup) {
  util_buf b = {0};
  util_buf_add(&b, "{", 1);
  for (int i = 999; i >= 0; i--) util_buf_printf(&b, "%s\"k%d\":%d", i == 999 ? "" : ",", i, i);
  util_buf_add(&b, "}", 1);
  json_val *v = json_parse(b.data, b.len, "t.json");
  ck_assert_ptr_nonnull(v);
  char key[16];
  for (int i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    const json_val *x = json_get(v, key);
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(x->i, i);
  }
  ck_assert_ptr_null(json_get(v, "k1000"));
  json_free(v);
  util_buf_free(&b);
}
END_TEST

START_TEST(escapes) {
  json_val *v = parse("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u0041\\u00e9\\u20ac \\ud83d\\ude00 \\u0000z\"");
  ck_assert_ptr_nonnull(v);
  const char want[] = "q\" b\\ s/ \b\f\n\r\t A\xc3\xa9\xe2\x82\xac \xf0\x9f\x98\x80 \0z";
  ck_assert_uint_eq(v->len, sizeof want - 1);
  ck_assert(memcmp(v->str, want, sizeof want - 1) == 0);
  json_free(v);
  v = parse("\"raw \xc3\xa9 \xf0\x9f\x98\x80\"");
  ck_assert_str_eq(v->str, "raw \xc3\xa9 \xf0\x9f\x98\x80");
  json_free(v);
  /* keys are decoded too, and compared by their bytes */
  v = parse("{\"\\u0061\": 1, \"a\\u0000\": 2}");
  ck_assert_int_eq(json_get(v, "a")->i, 1);
  ck_assert_uint_eq(v->members[1].key_len, 2);
  json_free(v);
}
END_TEST

START_TEST(invalid_with_offsets) {
  expect_err("", "t.json: invalid JSON at byte 0: unexpected end of input, expected a value");
  expect_err("  ", "t.json: invalid JSON at byte 2: unexpected end of input, expected a value");
  expect_err("{\"a\":1,}", "t.json: invalid JSON at byte 7: trailing comma in object");
  expect_err("[1,2,]", "t.json: invalid JSON at byte 5: trailing comma in array");
  expect_err("[1 2]", "t.json: invalid JSON at byte 3: unexpected '2', expected ',' or ']'");
  expect_err("{\"a\" 1}", "t.json: invalid JSON at byte 5: unexpected '1', expected ':'");
  expect_err("{a:1}", "t.json: invalid JSON at byte 1: unexpected 'a', expected a string key");
  expect_err("{\"a\":1", "t.json: invalid JSON at byte 6: unexpected end of input, expected ',' or '}'");
  expect_err("[1", "t.json: invalid JSON at byte 2: unexpected end of input, expected ',' or ']'");
  expect_err("01", "t.json: invalid JSON at byte 0: leading zero in number");
  expect_err("-", "t.json: invalid JSON at byte 1: unexpected end of input, expected a digit");
  expect_err("1.", "t.json: invalid JSON at byte 2: unexpected end of input, expected a digit after '.'");
  expect_err("1.e5", "t.json: invalid JSON at byte 2: unexpected 'e', expected a digit after '.'");
  expect_err("1e+", "t.json: invalid JSON at byte 3: unexpected end of input, expected a digit in the exponent");
  expect_err(".5", "t.json: invalid JSON at byte 0: unexpected '.', expected a value");
  expect_err("+1", "t.json: invalid JSON at byte 0: unexpected '+', expected a value");
  expect_err("1e999", "t.json: invalid JSON at byte 0: number out of range");
  expect_err("NaN", "t.json: invalid JSON at byte 0: unexpected 'N', expected a value");
  expect_err("tru", "t.json: invalid JSON at byte 0: unexpected 't', expected a value");
  expect_err("nul", "t.json: invalid JSON at byte 0: unexpected 'n', expected a value");
  expect_err("true false", "t.json: invalid JSON at byte 5: unexpected 'f', expected end of input after the value");
  expect_err("{} x", "t.json: invalid JSON at byte 3: unexpected 'x', expected end of input after the value");
  expect_err("// c\n1", "t.json: invalid JSON at byte 0: unexpected '/', expected a value");
  expect_err("\"abc", "t.json: invalid JSON at byte 0: unterminated string");
  expect_err("\"a\tb\"", "t.json: invalid JSON at byte 2: control character in string (must be escaped)");
  expect_err("\"\\x\"",
             "t.json: invalid JSON at byte 1: invalid escape (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
  expect_err("\"\\u12G4\"", "t.json: invalid JSON at byte 5: \\u escape needs 4 hex digits");
  expect_err("\"\\u12", "t.json: invalid JSON at byte 3: truncated \\u escape");
  expect_err("\"\\ud83d\"", "t.json: invalid JSON at byte 1: high surrogate not followed by a \\u low surrogate");
  expect_err("\"\\ud83d\\u0041\"",
             "t.json: invalid JSON at byte 7: high surrogate not followed by a \\u low surrogate");
  expect_err("\"x\\ude00\"", "t.json: invalid JSON at byte 2: lone low surrogate in \\u escape");
  expect_err("\"\xff\"", "t.json: invalid JSON at byte 1: invalid UTF-8");
  expect_err("\"\xc0\xaf\"", "t.json: invalid JSON at byte 1: invalid UTF-8");     /* overlong '/' */
  expect_err("\"\xed\xa0\x80\"", "t.json: invalid JSON at byte 1: invalid UTF-8"); /* raw surrogate */
  expect_err("\x01", "t.json: invalid JSON at byte 0: unexpected byte 0x01, expected a value");
  expect_err("{\"a\":1,\"b\":2,\"a\":3}", "t.json: invalid JSON at byte 13: duplicate key \"a\"");
  /* a NUL inside the text is just a bad byte, not the end */
  json_val *v = json_parse("[1]\0", 4, "t.json");
  ck_assert_ptr_null(v);
  ck_assert_str_eq(util_errmsg(),
                   "t.json: invalid JSON at byte 3: unexpected byte 0x00, expected end of input after the value");
}
END_TEST

/* Input that is not NUL-terminated must not be read past `len`. */
START_TEST(no_read_past_len) {
  const char *full = "[12345, \"abc\"]";
  for (size_t n = 0; n < strlen(full); n++) {
    char *copy = malloc(n ? n : 1);
    memcpy(copy, full, n);
    json_val *v = json_parse(copy, n, "t.json");
    ck_assert_ptr_null(v);
    ck_assert_ptr_nonnull(strstr(util_errmsg(), "t.json: invalid JSON at byte "));
    free(copy);
  }
  json_val *v = json_parse("12345", 3, "t.json");
  ck_assert(v && v->is_int && v->i == 123);
  json_free(v);
}
END_TEST

static char *nested(int depth) {
  char *s = malloc((size_t)depth * 2 + 1);
  for (int i = 0; i < depth; i++) s[i] = '[', s[depth + i] = ']';
  s[2 * depth] = '\0';
  return s;
}

START_TEST(depth_limit) {
  char *ok = nested(JSON_MAX_DEPTH);
  json_val *v = parse(ok);
  ck_assert_ptr_nonnull(v);
  json_free(v);
  free(ok);
  char *deep = nested(JSON_MAX_DEPTH + 1);
  expect_err(deep, "t.json: invalid JSON at byte 64: nesting deeper than 64 levels");
  free(deep);
  /* far deeper than the stack would allow without the limit */
  size_t n = 5000000;
  char *huge = malloc(n + 1);
  memset(huge, '{', n);
  huge[n] = '\0';
  ck_assert_ptr_null(parse(huge));
  ck_assert_ptr_nonnull(strstr(util_errmsg(), "expected a string key"));
  memset(huge, '[', n);
  ck_assert_ptr_null(parse(huge));
  ck_assert_str_eq(util_errmsg(), "t.json: invalid JSON at byte 64: nesting deeper than 64 levels");
  free(huge);
}
END_TEST

START_TEST(size_limits) {
  ck_assert_ptr_null(json_parse("1", (size_t)JSON_MAX_BYTES + 1, "t.json"));
  ck_assert_str_eq(util_errmsg(), "t.json: JSON text of 100000001 bytes is over the limit of 100000000 bytes");
  /* more values than the limit: "[0,0,...]" */
  size_t n = (size_t)JSON_MAX_VALUES + 10;
  char *s = malloc(2 * n + 2);
  s[0] = '[';
  for (size_t i = 0; i < n; i++) s[1 + 2 * i] = '0', s[2 + 2 * i] = ',';
  s[2 * n] = ']';
  ck_assert_ptr_null(json_parse(s, 2 * n + 1, "t.json"));
  ck_assert_str_eq(util_errmsg(), "t.json: invalid JSON at byte 1999999: more than 1000000 values");
  free(s);
}
END_TEST

START_TEST(write_roundtrip) {
  util_buf b = {0};
  const char s[] = "a\"b\\c\n\t\x01\x1f\x7f \xc3\xa9 \xf0\x9f\x98\x80 \0end";
  ck_assert_int_eq(json_write_str(&b, s, sizeof s - 1, "s"), 0);
  util_buf_add(&b, "", 1);
  ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f\x7f \xc3\xa9 \xf0\x9f\x98\x80 \\u0000end\"");
  json_val *v = json_parse(b.data, b.len - 1, "t.json");
  ck_assert_uint_eq(v->len, sizeof s - 1);
  ck_assert(memcmp(v->str, s, sizeof s - 1) == 0);
  json_free(v);
  util_buf_free(&b);

  ck_assert_int_eq(json_write_str(&b, "ok\xff", 3, "config 'name'"), -1);
  ck_assert_str_eq(util_errmsg(), "config 'name': invalid UTF-8 at byte 2 (JSON strings must be UTF-8)");
  util_buf_free(&b);

  const double xs[] = {0.0, 1.0, -2.5, 1e-5, 0.1, 1.0 / 3.0, 6.02214076e23, 5e-324, 1.7976931348623157e308, 50257};
  const char *want[] = {
      "0",    "1", "-2.5", "1e-05", "0.1", "0.3333333333333333", "6.02214076e+23", "5e-324", "1.7976931348623157e+308",
      "50257"};
  for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
    util_buf_free(&b);
    ck_assert_int_eq(json_write_num(&b, xs[i], "x"), 0);
    util_buf_add(&b, "", 1);
    ck_assert_str_eq(b.data, want[i]);
    v = json_parse(b.data, b.len - 1, "t.json");
    ck_assert_ptr_nonnull(v);
    ck_assert(v->num == xs[i]); /* reads back exactly */
    json_free(v);
  }
  util_buf_free(&b);
  ck_assert_int_eq(json_write_num(&b, INFINITY, "best_val"), -1);
  ck_assert_str_eq(util_errmsg(), "best_val: inf has no JSON representation (numbers must be finite)");
  ck_assert_int_eq(json_write_num(&b, NAN, "x"), -1);
  util_buf_free(&b);
}
END_TEST

/* Random mutations of a valid document: must parse or fail cleanly. */
START_TEST(fuzz_mutations) {
  const char *base = "{\"__metadata__\":{\"k\":\"v\\u00e9\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                     "\"data_offsets\":[0,24]},\"x\":[true,false,null,-1.5e3]}";
  size_t n = strlen(base);
  char *s = malloc(n);
  uint64_t r = 0x9e3779b97f4a7c15ull;
  int ok = 0, bad = 0;
  for (int it = 0; it < 20000; it++) {
    memcpy(s, base, n);
    int flips = 1 + it % 3;
    for (int k = 0; k < flips; k++) {
      r ^= r << 13, r ^= r >> 7, r ^= r << 17;
      s[r % n] = (char)(r >> 24);
    }
    json_val *v = json_parse(s, n, "t.json");
    if (v) ok++;
    else {
      bad++;
      ck_assert_ptr_nonnull(strstr(util_errmsg(), "t.json: invalid JSON at byte "));
    }
    json_free(v);
  }
  ck_assert_int_gt(ok, 0);
  ck_assert_int_gt(bad, 0);
  free(s);
}
END_TEST

int main(void) {
  Suite *s = suite_create("json");
  TCase *tc = tcase_create("json");
  tcase_add_test(tc, valid_document);
  tcase_add_test(tc, integers_exact);
  tcase_add_test(tc, many_keys_lookup);
  tcase_add_test(tc, escapes);
  tcase_add_test(tc, invalid_with_offsets);
  tcase_add_test(tc, no_read_past_len);
  tcase_add_test(tc, depth_limit);
  tcase_add_test(tc, size_limits);
  tcase_add_test(tc, write_roundtrip);
  tcase_add_test(tc, fuzz_mutations);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
