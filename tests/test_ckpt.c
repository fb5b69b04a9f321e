/* Checkpoints: bit-exact save/load round trips of params, moments and
 * metadata; atomic saves; every corruption of a file caught with its
 * one-line message (and a fuzz loop that must never crash); exact F16/BF16
 * widening (ckpt.c, ckpt_st.c). The Hugging Face conversion is
 * tests/test_ckpt_hf.c. */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "gen.h"
#include "json.h"
#include "testutil.h"
#include "tok.h"
#include "util.h"

/* A hand-made table with offsets out of table order and gaps between the
 * tensors, as the generator's aligned layout has. */
static const gptc_tensor TT[] = {
    {"wte.weight", 2, {6, 4}, 16, 24, 1, 0.02f, 0.0f},
    {"h.0.ln_1.weight", 1, {4, 0}, 0, 4, 0, 0.0f, 1.0f},
    {"h.0.attn.c_attn.weight", 2, {4, 12}, 48, 48, 1, 0.02f, 0.0f},
    {"ln_f.bias", 1, {4, 0}, 8, 4, 0, 0.0f, 0.0f},
};
#define NT 4
#define NP 96

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

static const char VOCAB[] = "chars\n\"q\" \\ \xc3\xa9\xf0\x9f\x98\x80 \0after-nul";

static ckpt_meta sample_meta(void) {
  ckpt_meta m;
  memset(&m, 0, sizeof m);
  m.config_src = "return { name = \"t\", tokenizer = 'char' }\n";
  m.tokenizer = CFG_TOK_CHAR;
  m.vocab = (char *)VOCAB;
  m.vocab_len = sizeof VOCAB - 1;
  m.step = 1234;
  m.data_pos = UINT64_MAX;
  m.seed = 42;
  m.best_val = 1.2345678901234567;
  strcpy(m.text_hash, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  return m;
}

static const char *tmp_path(const char *name) {
  static char bufs[8][1024];
  static int i;
  char *b = bufs[i++ & 7];
  snprintf(b, 1024, "%s/%s", tu_tmpdir(), name);
  return b;
}

/* Tensor ranges are equal; gaps keep the filler `gap`. */
static void assert_tensors_equal(const float *a, const float *b, const gptc_tensor *t, int n) {
  for (int i = 0; i < n; i++)
    ck_assert_msg(memcmp(a + t[i].offset, b + t[i].offset, t[i].numel * 4) == 0, "tensor %s differs", t[i].name);
}

START_TEST(roundtrip_bit_exact) {
  float p[NP], m[NP], v[NP], p2[NP], m2[NP], v2[NP];
  fill(p, NP);
  fill(m, NP);
  fill(v, NP);
  ckpt_meta meta = sample_meta();
  const char *path = tmp_path("rt.safetensors");
  ck_assert_msg(ckpt_save(path, TT, NT, NP, p, m, v, &meta) == 0, "%s", util_errmsg());
  ck_assert(util_file_exists(tmp_path("rt.opt.safetensors")));

  memset(p2, 0xAB, sizeof p2);
  memset(m2, 0xAB, sizeof m2);
  memset(v2, 0xAB, sizeof v2);
  ck_assert_msg(ckpt_load_params(path, TT, NT, NP, p2, m2, v2) == 0, "%s", util_errmsg());
  assert_tensors_equal(p, p2, TT, NT);
  assert_tensors_equal(m, m2, TT, NT);
  assert_tensors_equal(v, v2, TT, NT);
  /* the gaps between tensors are not written */
  const unsigned char *g = (const unsigned char *)(p2 + 4);
  for (int i = 0; i < 16; i++) ck_assert_uint_eq(g[i], 0xAB);

  ckpt_meta got;
  ck_assert_int_eq(ckpt_load_meta(path, &got), 0);
  ck_assert_str_eq(got.config_src, meta.config_src);
  ck_assert_int_eq(got.tokenizer, CFG_TOK_CHAR);
  ck_assert_uint_eq(got.vocab_len, sizeof VOCAB - 1);
  ck_assert(memcmp(got.vocab, VOCAB, sizeof VOCAB - 1) == 0);
  ck_assert(got.step == 1234 && got.data_pos == UINT64_MAX && got.seed == 42);
  ck_assert(got.best_val == meta.best_val);
  ck_assert_str_eq(got.text_hash, meta.text_hash);
  ckpt_meta_free(&got);

  /* gpt2: no vocabulary; an infinite best_val; an empty text hash */
  meta.tokenizer = CFG_TOK_GPT2;
  meta.vocab = NULL;
  meta.vocab_len = 0;
  meta.best_val = INFINITY;
  meta.text_hash[0] = '\0';
  meta.step = 0;
  ck_assert_int_eq(ckpt_save(path, TT, NT, NP, p, m, v, &meta), 0);
  ck_assert_int_eq(ckpt_load_meta(path, &got), 0);
  ck_assert(got.vocab == NULL && got.tokenizer == CFG_TOK_GPT2 && isinf(got.best_val) && got.step == 0);
  ck_assert_str_eq(got.text_hash, "");
  ckpt_meta_free(&got);
}
END_TEST

/* The layout safetensors requires: 8-byte length, space-padded header, the
 * data 8-byte aligned and covered exactly. */
START_TEST(file_layout) {
  float p[NP];
  fill(p, NP);
  ckpt_meta meta = sample_meta();
  const char *path = tmp_path("layout.safetensors");
  ck_assert_int_eq(ckpt_save(path, TT, NT, NP, p, NULL, NULL, &meta), 0);
  char *d;
  size_t n;
  ck_assert_int_eq(util_read_file(path, &d, &n), 0);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)d[i];
  ck_assert_uint_eq((8 + hl) % 8, 0);
  ck_assert_uint_eq(n, 8 + hl + 4 * (24 + 4 + 48 + 4));
  ck_assert_int_eq(d[8], '{');
  size_t end = 8 + hl;
  while (d[end - 1] == ' ') end--;
  ck_assert_int_eq(d[end - 1], '}');
  json_val *h = json_parse(d + 8, hl, "header");
  ck_assert_ptr_nonnull(h);
  const json_val *w = json_get(h, "wte.weight");
  ck_assert_str_eq(json_get(w, "dtype")->str, "F32");
  ck_assert_int_eq(json_get(w, "shape")->items[1].i, 4);
  ck_assert_int_eq(json_get(w, "data_offsets")->items[0].i, 0); /* file order = table order */
  ck_assert_int_eq(json_get(w, "data_offsets")->items[1].i, 96);
  /* the bytes of a tensor are its floats, little-endian */
  ck_assert(memcmp(d + 8 + hl + 96, p + 0, 16) == 0); /* h.0.ln_1.weight follows wte */
  const json_val *md = json_get(h, "__metadata__");
  ck_assert_str_eq(json_get(md, "format")->str, "pt");
  ck_assert_str_eq(json_get(md, "gptc_format")->str, "1");
  ck_assert_str_eq(json_get(md, "step")->str, "1234");
  ck_assert_str_eq(json_get(md, "data_pos")->str, "18446744073709551615");
  ck_assert_uint_eq(strlen(json_get(md, "pair_tag")->str), 16);
  json_free(h);
  free(d);
}
END_TEST

START_TEST(opt_path_and_moment_rules) {
  char *s = ckpt_opt_path("runs/a/ckpt.safetensors");
  ck_assert_str_eq(s, "runs/a/ckpt.opt.safetensors");
  free(s);
  s = ckpt_opt_path("model.bin");
  ck_assert_str_eq(s, "model.bin.opt.safetensors");
  free(s);

  float p[NP], m[NP], v[NP];
  fill(p, NP);
  fill(m, NP);
  fill(v, NP);
  ckpt_meta meta = sample_meta();
  const char *path = tmp_path("mom.safetensors"), *opt = tmp_path("mom.opt.safetensors");
  ck_assert_int_eq(ckpt_save(path, TT, NT, NP, p, m, NULL, &meta), -1);
  ck_assert_ptr_nonnull(strstr(util_errmsg(), "AdamW moments need both m and v"));
  ck_assert_int_eq(ckpt_save(path, TT, NT, NP, p, m, v, &meta), 0);
  ck_assert(util_file_exists(opt));
  /* a save without moments removes the moments of the earlier save */
  ck_assert_int_eq(ckpt_save(path, TT, NT, NP, p, NULL, NULL, &meta), 0);
  ck_assert(!util_file_exists(opt));
  float p2[NP], m2[NP], v2[NP];
  ck_assert_int_eq(ckpt_load_params(path, TT, NT, NP, p2, NULL, NULL), 0);
  ck_assert_int_eq(ckpt_load_params(path, TT, NT, NP, p2, m2, v2), -1);
  char want[2048];
  snprintf(want, sizeof want, "%s: no optimizer moments next to %s (it was saved without them)", opt, path);
  ck_assert_str_eq(util_errmsg(), want);
}
END_TEST

/* Moments from another save (an interrupted save, or files mixed up by
 * hand) are refused: the pair tags differ. */
START_TEST(mismatched_pair) {
  float p[NP], m[NP], v[NP], p2[NP], m2[NP], v2[NP];
  fill(p, NP);
  fill(m, NP);
  fill(v, NP);
  ckpt_meta meta = sample_meta();
  const char *a = tmp_path("pa.safetensors"), *b = tmp_path("pb.safetensors");
  ck_assert_int_eq(ckpt_save(a, TT, NT, NP, p, m, v, &meta), 0);
  ck_assert_int_eq(ckpt_save(b, TT, NT, NP, p, m, v, &meta), 0);
  ck_assert_int_eq(rename(tmp_path("pb.opt.safetensors"), tmp_path("pa.opt.safetensors")), 0);
  ck_assert_int_eq(ckpt_load_params(a, TT, NT, NP, p2, m2, v2), -1);
  ck_assert_ptr_nonnull(strstr(util_errmsg(), "pa.opt.safetensors: optimizer moments are from a different save than "));
  ck_assert_ptr_nonnull(strstr(util_errmsg(), "pa.safetensors (pair_tag "));
  /* params alone still load */
  ck_assert_int_eq(ckpt_load_params(a, TT, NT, NP, p2, NULL, NULL), 0);
  /* a params file where the moments belong is refused by its kind */
  ck_assert_int_eq(rename(b, tmp_path("pa.opt.safetensors")), 0);
  ck_assert_int_eq(ckpt_load_params(a, TT, NT, NP, p2, m2, v2), -1);
  ck_assert_ptr_nonnull(
      strstr(util_errmsg(), "pa.opt.safetensors: metadata gptc_kind is \"(none)\", expected \"adamw_moments\""));
}
END_TEST

static int count_temp_files(void) {
  DIR *d = opendir(tu_tmpdir());
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp")) n++;
  closedir(d);
  return n;
}

/* Runs ckpt_save of new values in a child whose file size limit is `limit`
 * bytes: the save must fail with "File too large". */
static void save_limited(const char *path, const ckpt_meta *meta, long limit) {
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {(rlim_t)limit, (rlim_t)limit};
    setrlimit(RLIMIT_FSIZE, &rl);
    float q[NP];
    for (int i = 0; i < NP; i++) q[i] = (float)i;
    int rc = ckpt_save(path, TT, NT, NP, q, q, q, meta);
    _exit(rc == -1 && strstr(util_errmsg(), "write failed: File too large") ? 0 : 1);
  }
  int st;
  waitpid(pid, &st, 0);
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the save limited to %ld bytes did not fail as expected", limit);
}

static long file_size(const char *path) {
  struct stat sb;
  ck_assert_int_eq(stat(path, &sb), 0);
  return (long)sb.st_size;
}

/* A save that fails part-way leaves no temp file and the old pair intact:
 * failing in the moments file (written first) never touches the old pair;
 * failing in the params file, after the new moments were renamed in, puts
 * the old moments (kept as .prev) back. */
START_TEST(atomic_failed_save) {
  float p[NP], m[NP], v[NP], p2[NP], m2[NP], v2[NP];
  fill(p, NP);
  fill(m, NP);
  fill(v, NP);
  ckpt_meta meta = sample_meta();
  char big[4096]; /* a long config makes the params file the larger one */
  snprintf(big, sizeof big, "return {}\n--%03000d\n", 0);
  meta.config_src = big;
  const char *path = tmp_path("atomic.safetensors"), *opt = tmp_path("atomic.opt.safetensors");
  ck_assert_int_eq(ckpt_save(path, TT, NT, NP, p, m, v, &meta), 0);
  long main_n = file_size(path), opt_n = file_size(opt);
  ck_assert_int_lt(opt_n, main_n);

  save_limited(path, &meta, opt_n / 2);
  ck_assert_msg(ckpt_load_params(path, TT, NT, NP, p2, m2, v2) == 0, "%s", util_errmsg());
  assert_tensors_equal(p, p2, TT, NT);
  assert_tensors_equal(m, m2, TT, NT);
  assert_tensors_equal(v, v2, TT, NT);
  ck_assert_int_eq(count_temp_files(), 0);

  save_limited(path, &meta, (opt_n + main_n) / 2);
  ck_assert_msg(ckpt_load_params(path, TT, NT, NP, p2, m2, v2) == 0, "%s", util_errmsg());
  assert_tensors_equal(p, p2, TT, NT);
  assert_tensors_equal(m, m2, TT, NT);
  assert_tensors_equal(v, v2, TT, NT);
  ck_assert_int_eq(count_temp_files(), 0);
  ck_assert(!util_file_exists(tmp_path("atomic.opt.safetensors.prev")));

  /* an unwritable target */
  char missing[1100];
  snprintf(missing, sizeof missing, "%s/no/such/dir/c.safetensors", tu_tmpdir());
  ck_assert_int_eq(ckpt_save(missing, TT, NT, NP, p, NULL, NULL, &meta), -1);
  ck_assert_ptr_nonnull(strstr(util_errmsg(), "c.safetensors: cannot create temp file "));
  ck_assert_ptr_nonnull(strstr(util_errmsg(), ": No such file or directory"));
}
END_TEST

START_TEST(bad_table_and_args) {
  float p[NP];
  fill(p, NP);
  ckpt_meta meta = sample_meta();
  const char *path = tmp_path("tab.safetensors");
  gptc_tensor t[NT];
  memcpy(t, TT, sizeof t);
  t[2].offset = 60; /* 60 + 48 > 96 */
  ck_assert_int_eq(ckpt_save(path, t, NT, NP, p, NULL, NULL, &meta), -1);
  ck_assert_str_eq(util_errmsg(),
                   "tensor table: 'h.0.attn.c_attn.weight' (offset 60, 48 floats) lies outside the 96 parameters");
  ck_assert_int_eq(ckpt_load_params(path, t, NT, NP, p, NULL, NULL), -1);
  memcpy(t, TT, sizeof t);
  t[1].numel = 5;
  ck_assert_int_eq(ckpt_save(path, t, NT, NP, p, NULL, NULL, &meta), -1);
  ck_assert_str_eq(util_errmsg(), "tensor table: 'h.0.ln_1.weight' has numel 5 but its shape holds 4");
  meta.tokenizer = 7;
  ck_assert_int_eq(ckpt_save(path, TT, NT, NP, p, NULL, NULL, &meta), -1);
  ck_assert_str_eq(util_errmsg() + strlen(path), ": unknown tokenizer kind 7");
  meta = sample_meta();
  meta.vocab = (char *)"\xff\xfe";
  meta.vocab_len = 2;
  ck_assert_int_eq(ckpt_save(path, TT, NT, NP, p, NULL, NULL, &meta), -1);
  ck_assert_str_eq(util_errmsg() + strlen(path),
                   ": metadata 'vocab': invalid UTF-8 at byte 0 (JSON strings must be UTF-8)");
  ck_assert(!util_file_exists(path));
  ck_assert_int_eq(count_temp_files(), 0);
}
END_TEST

/* ---- corrupt files -------------------------------------------------------- */

#define META "\"__metadata__\":{\"gptc_format\":\"1\"}"
#define E_WTE "\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[6,4],\"data_offsets\":[0,96]}"
#define E_LN1 "\"h.0.ln_1.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[96,112]}"
#define E_ATT "\"h.0.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[4,12],\"data_offsets\":[112,304]}"
#define E_LNF "\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[304,320]}"
#define BODY E_WTE "," E_LN1 "," E_ATT

/* Writes 8-byte length + header + data_len bytes; returns the path. */
static const char *raw_file(const char *header, size_t data_len) {
  size_t hl = strlen(header);
  size_t n = 8 + hl + data_len;
  unsigned char *b = calloc(1, n);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, header, hl);
  const char *p = tu_write("raw.safetensors", b, n);
  free(b);
  return p;
}

/* Loading `header` + data fails with "<path>: <msg>". */
static void bad(const char *header, size_t data_len, const char *msg) {
  const char *path = raw_file(header, data_len);
  float p[NP];
  ck_assert_msg(ckpt_load_params(path, TT, NT, NP, p, NULL, NULL) == -1, "loaded: %s", header);
  char want[4096];
  snprintf(want, sizeof want, "%s: %s", path, msg);
  ck_assert_str_eq(util_errmsg(), want);
}

START_TEST(corrupt_header_length) {
  const char *path = tu_write("short.safetensors", "\x10\0\0", 3);
  float p[NP];
  char want[2048];
  ck_assert_int_eq(ckpt_load_params(path, TT, NT, NP, p, NULL, NULL), -1);
  snprintf(want, sizeof want, "%s: truncated: 3 bytes, but a safetensors file starts with an 8-byte header length",
           path);
  ck_assert_str_eq(util_errmsg(), want);

  unsigned char b[24] = {0};
  path = tu_write("zero.safetensors", b, sizeof b);
  ck_assert_int_eq(ckpt_load_params(path, TT, NT, NP, p, NULL, NULL), -1);
  snprintf(want, sizeof want, "%s: header length (bytes 0-7) is 0", path);
  ck_assert_str_eq(util_errmsg(), want);

  b[0] = 0x00, b[1] = 0xc2, b[2] = 0xeb, b[3] = 0x0b; /* 200000000 */
  path = tu_write("huge.safetensors", b, sizeof b);
  ck_assert_int_eq(ckpt_load_params(path, TT, NT, NP, p, NULL, NULL), -1);
  snprintf(want, sizeof want, "%s: header length 200000000 (bytes 0-7) is over the limit of 100000000 bytes", path);
  ck_assert_str_eq(util_errmsg(), want);

  memset(b, 0, sizeof b);
  b[0] = 17;
  path = tu_write("past.safetensors", b, sizeof b);
  ck_assert_int_eq(ckpt_load_params(path, TT, NT, NP, p, NULL, NULL), -1);
  snprintf(want, sizeof want, "%s: truncated: header length 17 (bytes 0-7) runs past the end of the file (24 bytes)",
           path);
  ck_assert_str_eq(util_errmsg(), want);

  memset(b, 0xff, 8); /* 2^64 - 1 */
  path = tu_write("max.safetensors", b, sizeof b);
  ck_assert_int_eq(ckpt_load_params(path, TT, NT, NP, p, NULL, NULL), -1);
  ck_assert_ptr_nonnull(strstr(util_errmsg(), ": header length 18446744073709551615 (bytes 0-7) is over the limit"));

  ck_assert_int_eq(ckpt_load_params(tmp_path("absent.safetensors"), TT, NT, NP, p, NULL, NULL), -1);
  snprintf(want, sizeof want, "%s: cannot open: No such file or directory", tmp_path("absent.safetensors"));
  ck_assert_str_eq(util_errmsg(), want);
  ck_assert_int_eq(ckpt_load_params(tu_tmpdir(), TT, NT, NP, p, NULL, NULL), -1);
  ck_assert_ptr_nonnull(strstr(util_errmsg(), ": is a directory, expected a safetensors file"));
}
END_TEST

START_TEST(corrupt_header_json) {
  /* a positive control first: the pieces below form a valid file */
  const char *ok = raw_file("{" META "," BODY "," E_LNF "}", 320);
  float p[NP];
  ck_assert_msg(ckpt_load_params(ok, TT, NT, NP, p, NULL, NULL) == 0, "%s", util_errmsg());

  char hdr[4096];
  bad("{\"a\":}", 0, "header: invalid JSON at byte 5: unexpected '}', expected a value");
  bad("{\"a\":1} {", 0, "header: invalid JSON at byte 8: unexpected '{', expected end of input after the value");
  bad("[]", 0, "header must be a JSON object (got array)");
  bad("{\"__metadata__\":[]}", 0, "__metadata__ must be an object (got array)");
  bad("{\"__metadata__\":{\"gptc_format\":1}}", 0, "__metadata__ value 'gptc_format' must be a string (got number)");
  bad("{" META ",\"ln_f.bias\":[1]}", 0, "tensor 'ln_f.bias': entry must be an object (got array)");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":1}}", 16,
      "tensor 'ln_f.bias': unknown field 'x' (expected dtype, shape, data_offsets)");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16,
      "tensor 'ln_f.bias': entry needs dtype, shape and data_offsets");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":7,\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
      "tensor 'ln_f.bias': dtype must be a string");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F33\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
      "tensor 'ln_f.bias': unknown dtype \"F33\"");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16,
      "tensor 'ln_f.bias': shape must be an array");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16,
      "tensor 'ln_f.bias': shape must hold non-negative integers (header byte 72)");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4.0],\"data_offsets\":[0,16]}}", 16,
      "tensor 'ln_f.bias': shape must hold non-negative integers (header byte 72)");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,16]}}", 16,
      "tensor 'ln_f.bias': shape has 9 dimensions (at most 8)");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,16]}}", 16,
      "tensor 'ln_f.bias': shape overflows 64 bits");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}", 16,
      "tensor 'ln_f.bias': data_offsets must be an array [begin, end]");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", 16,
      "tensor 'ln_f.bias': data_offsets begin 16 is after end 0");
  bad("{" META ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,1e1]}}", 16,
      "tensor 'ln_f.bias': data_offsets must hold non-negative integers (header byte 93)");
  bad("{" META ",\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
      "tensor name at header byte 36 contains a NUL character");
  /* sizes and ranges */
  bad("{" META "," BODY ",\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[304,316]}}", 316,
      "tensor 'ln_f.bias': data_offsets [304, 316] hold 12 bytes but F32 [4] needs 4 x 4");
  snprintf(hdr, sizeof hdr, "{" META "," BODY "," E_LNF "}");
  char msg[1024];
  snprintf(msg, sizeof msg, "truncated: tensor 'ln_f.bias' data ends at byte %zu but the file has %zu bytes",
           8 + strlen(hdr) + 320, 8 + strlen(hdr) + 310);
  bad(hdr, 310, msg);
  snprintf(msg, sizeof msg, "4 bytes after the last tensor's data (file byte %zu)", 8 + strlen(hdr) + 320);
  bad(hdr, 324, msg);
  bad("{" META "," E_WTE "," E_LN1
      ",\"h.0.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[4,12],\"data_offsets\":[104,296]},"
      "\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[296,312]}}",
      312, "tensor 'h.0.attn.c_attn.weight' (data bytes [104, 296)) overlaps tensor 'h.0.ln_1.weight'");
  snprintf(hdr, sizeof hdr,
           "{" META "," E_WTE "," E_LN1
           ",\"h.0.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[4,12],\"data_offsets\":[120,312]},"
           "\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[312,328]}}");
  snprintf(msg, sizeof msg, "data bytes [112, 120) (file byte %zu) belong to no tensor", 8 + strlen(hdr) + 112);
  bad(hdr, 328, msg);
  /* duplicate names are a JSON error (the later one is reported) */
  bad("{" META "," E_LNF "," E_LNF "}", 320, "header: invalid JSON at byte 101: duplicate key \"ln_f.bias\"");
}
END_TEST

START_TEST(corrupt_against_table) {
  bad("{" BODY "," E_LNF "}", 320,
      "not a gptc checkpoint (no gptc_format metadata; use `gptc import` for Hugging Face files)");
  bad("{\"__metadata__\":{\"gptc_format\":\"2\"}," BODY "," E_LNF "}", 320,
      "gptc_format \"2\" is not supported (this gptc reads format 1)");
  bad("{" META "," BODY "}", 304, "missing tensor 'ln_f.bias'");
  bad("{" META "," BODY "," E_LNF ",\"h.9.extra\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[320,324]}}", 324,
      "unexpected tensor 'h.9.extra' (not in the config's tensor table)");
  bad("{" META "," BODY ",\"ln_f.bias\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[304,312]}}", 312,
      "tensor 'ln_f.bias' has dtype F16, expected F32");
  bad("{" META ",\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]}," E_LN1 "," E_ATT "," E_LNF
      "}",
      320, "tensor 'wte.weight' has shape [4, 6], expected [6, 4] from the config");
  bad("{" META ",\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[24],\"data_offsets\":[0,96]}," E_LN1 "," E_ATT "," E_LNF
      "}",
      320, "tensor 'wte.weight' has shape [24], expected [6, 4] from the config");
}
END_TEST

#define M_BODY "}," BODY "," E_LNF "}"
#define M_TOK "\"gptc_format\":\"1\",\"config\":\"return {}\",\"tokenizer\":\"gpt2\""
#define M_NUM "\"step\":\"1\",\"data_pos\":\"2\",\"seed\":\"3\",\"best_val\":\"inf\",\"text_hash\":\"\""

static void bad_meta(const char *fields, const char *msg) {
  char hdr[4096];
  snprintf(hdr, sizeof hdr, "{\"__metadata__\":{%s" M_BODY, fields);
  const char *path = raw_file(hdr, 320);
  ckpt_meta m;
  ck_assert_msg(ckpt_load_meta(path, &m) == -1, "loaded: %s", fields);
  char want[4096];
  snprintf(want, sizeof want, "%s: %s", path, msg);
  ck_assert_str_eq(util_errmsg(), want);
  ck_assert_ptr_null(m.config_src);
}

START_TEST(corrupt_metadata) {
  ckpt_meta m;
  ck_assert_int_eq(ckpt_load_meta(raw_file("{\"__metadata__\":{" M_TOK "," M_NUM M_BODY, 320), &m), 0);
  ck_assert(m.step == 1 && m.data_pos == 2 && m.seed == 3 && isinf(m.best_val) && m.vocab == NULL);
  ckpt_meta_free(&m);

  bad_meta("\"gptc_format\":\"1\",\"tokenizer\":\"gpt2\"," M_NUM, "metadata 'config' is missing");
  bad_meta("\"gptc_format\":\"1\",\"config\":\"\",\"tokenizer\":\"gpt2\"," M_NUM, "metadata 'config' is empty");
  bad_meta("\"gptc_format\":\"1\",\"config\":\"x\",\"tokenizer\":\"bpe\"," M_NUM,
           "metadata 'tokenizer' must be gpt2, char or word (got \"bpe\")");
  bad_meta("\"gptc_format\":\"1\",\"config\":\"x\",\"tokenizer\":\"char\"," M_NUM,
           "metadata 'vocab' is required for the char tokenizer");
  bad_meta(M_TOK ",\"step\":\"12a\",\"data_pos\":\"2\",\"seed\":\"3\",\"best_val\":\"inf\",\"text_hash\":\"\"",
           "metadata 'step' must be a decimal integer below 2^64 (got \"12a\")");
  bad_meta(M_TOK ",\"step\":\"1\",\"data_pos\":\"18446744073709551616\",\"seed\":\"3\",\"best_val\":\"1\","
                 "\"text_hash\":\"\"",
           "metadata 'data_pos' must be a decimal integer below 2^64 (got \"18446744073709551616\")");
  bad_meta(M_TOK ",\"step\":\"\",\"data_pos\":\"2\",\"seed\":\"3\",\"best_val\":\"1\",\"text_hash\":\"\"",
           "metadata 'step' must be a decimal integer (got \"\")");
  bad_meta(M_TOK ",\"step\":\"1\",\"data_pos\":\"2\",\"seed\":\"3\",\"best_val\":\"low\",\"text_hash\":\"\"",
           "metadata 'best_val' must be a number (got \"low\")");
  bad_meta(M_TOK ",\"step\":\"1\",\"data_pos\":\"2\",\"seed\":\"3\",\"best_val\":\"1\",\"text_hash\":\"ABC\"",
           "metadata 'text_hash' must be empty or 64 lowercase hex digits");
  bad_meta(M_TOK ",\"step\":\"1\",\"data_pos\":\"2\",\"best_val\":\"1\",\"text_hash\":\"\"",
           "metadata 'seed' is missing");
}
END_TEST

/* A new file each time: rewriting a file in place makes ext4 flush it on
 * close (auto_da_alloc), which costs a millisecond per write. */
static void fresh_write(const char *name, const void *data, size_t n) {
  char path[1100];
  snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
  unlink(path);
  tu_write(name, data, n);
}

/* Every truncation and thousands of random byte flips of a valid checkpoint
 * (params and moments): each load succeeds or fails with a message naming
 * the file, and never reads or writes out of bounds. */
START_TEST(fuzz_truncations_and_flips) {
  float p[NP], m[NP], v[NP];
  fill(p, NP);
  fill(m, NP);
  fill(v, NP);
  ckpt_meta meta = sample_meta();
  const char *src = tmp_path("fz-src.safetensors");
  ck_assert_int_eq(ckpt_save(src, TT, NT, NP, p, m, v, &meta), 0);
  char *main_b, *opt_b;
  size_t main_n, opt_n;
  ck_assert_int_eq(util_read_file(src, &main_b, &main_n), 0);
  ck_assert_int_eq(util_read_file(tmp_path("fz-src.opt.safetensors"), &opt_b, &opt_n), 0);
  char path[1100], opt[1100];
  snprintf(path, sizeof path, "%s/fz.safetensors", tu_tmpdir());
  snprintf(opt, sizeof opt, "%s/fz.opt.safetensors", tu_tmpdir());
  float p2[NP + 8], m2[NP + 8], v2[NP + 8];
  ckpt_meta got;

  int ok = 0, failed = 0;
  char *buf = malloc(main_n > opt_n ? main_n : opt_n);
  for (int which = 0; which < 2; which++) {
    const char *name = which ? "fz.opt.safetensors" : "fz.safetensors", *who = which ? opt : path;
    const char *good = which ? main_b : opt_b;
    const char *orig = which ? opt_b : main_b;
    size_t n = which ? opt_n : main_n;
    fresh_write(which ? "fz.safetensors" : "fz.opt.safetensors", good, which ? main_n : opt_n);
    for (size_t len = 0; len < n; len++) {
      fresh_write(name, orig, len);
      ck_assert_int_eq(ckpt_load_params(path, TT, NT, NP, p2, m2, v2), -1);
      ck_assert_msg(!strncmp(util_errmsg(), who, strlen(who)), "len %zu: %s", len, util_errmsg());
      if (!which) {
        ck_assert_int_eq(ckpt_load_meta(path, &got), -1);
        ck_assert_msg(!strncmp(util_errmsg(), path, strlen(path)), "%s", util_errmsg());
      }
    }
    for (int it = 0; it < 1500; it++) {
      memcpy(buf, orig, n);
      int flips = 1 + (int)(rnd() % 4);
      for (int k = 0; k < flips; k++) {
        uint64_t r = rnd();
        /* half of the flips hit the length and header bytes, where they matter */
        size_t at = (r & 1) ? (size_t)(r >> 8) % (n < 700 ? n : 700) : (size_t)(r >> 8) % n;
        buf[at] ^= (char)(1 + (r >> 40) % 255);
      }
      fresh_write(name, buf, n);
      p2[NP] = m2[NP] = v2[NP] = 12345.0f;
      if (ckpt_load_params(path, TT, NT, NP, p2, m2, v2) == 0) {
        ok++;
      } else {
        failed++;
        ck_assert_msg(strstr(util_errmsg(), "fz.") != NULL, "message without the file: %s", util_errmsg());
      }
      ck_assert(p2[NP] == 12345.0f && m2[NP] == 12345.0f && v2[NP] == 12345.0f);
      if (ckpt_load_meta(path, &got) == 0) ckpt_meta_free(&got);
    }
  }
  ck_assert_int_gt(ok, 0);
  ck_assert_int_gt(failed, 0);
  free(buf);
  free(main_b);
  free(opt_b);
}
END_TEST

/* ---- general safetensors reading ------------------------------------------ */

static double ref_f16(unsigned h) {
  unsigned e = (h >> 10) & 31, m = h & 1023;
  double x = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, (int)e - 25);
  return h >> 15 ? -x : x;
}

static double ref_bf16(unsigned h) {
  unsigned e = (h >> 7) & 255, m = h & 127;
  double x = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, (int)e - 134);
  return h >> 15 ? -x : x;
}

/* Every one of the 65536 F16 and BF16 bit patterns widens to the exact
 * value (compared with an arithmetic definition of both formats). */
START_TEST(half_widening_exhaustive) {
  const char *hdr = "{\"h\":{\"dtype\":\"F16\",\"shape\":[256,256],\"data_offsets\":[0,131072]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[65536],\"data_offsets\":[131072,262144]},"
                    "\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[262144,262152]}}   ";
  size_t hl = strlen(hdr), n = 8 + hl + 262152;
  unsigned char *b = calloc(1, n);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, hdr, hl);
  for (unsigned i = 0; i < 65536; i++) {
    b[8 + hl + 2 * i] = b[8 + hl + 131072 + 2 * i] = (unsigned char)(i & 255);
    b[8 + hl + 2 * i + 1] = b[8 + hl + 131072 + 2 * i + 1] = (unsigned char)(i >> 8);
  }
  const char *path = tu_write("half.safetensors", b, n);
  free(b);
  ckpt_st *st = ckpt_st_open(path);
  ck_assert_msg(st != NULL, "%s", util_errmsg());
  ck_assert_int_eq(ckpt_st_count(st), 3);
  ck_assert_str_eq(ckpt_st_at(st, 1)->name, "b");
  const ckpt_st_tensor *th = ckpt_st_find(st, "h"), *tb = ckpt_st_find(st, "b");
  ck_assert(th->dtype == CKPT_F16 && th->ndim == 2 && th->shape[0] == 256 && th->numel == 65536);
  ck_assert(tb->dtype == CKPT_BF16 && tb->begin == 131072 && tb->end == 262144);
  ck_assert_ptr_null(ckpt_st_find(st, "x"));
  ck_assert_ptr_null(ckpt_st_meta(st, "format", NULL));
  float *x = malloc(65536 * sizeof *x);
  for (int pass = 0; pass < 2; pass++) {
    ck_assert_int_eq(ckpt_st_read_f32(st, pass ? tb : th, x), 0);
    for (unsigned i = 0; i < 65536; i++) {
      double want = pass ? ref_bf16(i) : ref_f16(i);
      if (isnan(want)) ck_assert_msg(isnan(x[i]), "pattern %04x", i);
      else
        ck_assert_msg((double)x[i] == want && !signbit(x[i]) == !signbit(want), "pattern %04x: %g vs %g", i, x[i],
                      want);
    }
  }
  ck_assert_int_eq(ckpt_st_read_f32(st, ckpt_st_find(st, "i"), x), -1);
  char want[2048];
  snprintf(want, sizeof want, "%s: tensor 'i' has dtype I32; only F32, F16 and BF16 can be read", path);
  ck_assert_str_eq(util_errmsg(), want);
  free(x);
  ckpt_st_close(st);
}
END_TEST

START_TEST(st_write_rules) {
  float a[6] = {1, 2, 3, 4, 5, 6};
  ckpt_st_out t[2] = {{"x", 2, {2, 3}, a}, {"x", 1, {6}, a}};
  ckpt_st_kv kv[] = {{"k", "v", 1}};
  const char *path = tmp_path("w.safetensors");
  ck_assert_int_eq(ckpt_st_write(path, kv, 1, t, 2), -1);
  ck_assert_str_eq(util_errmsg() + strlen(path), ": cannot write tensor 'x' twice");
  t[1].name = "y";
  t[1].ndim = 0; /* a scalar */
  ck_assert_int_eq(ckpt_st_write(path, kv, 1, t, 2), 0);
  ckpt_st *st = ckpt_st_open(path);
  ck_assert_msg(st != NULL, "%s", util_errmsg());
  ck_assert_str_eq(ckpt_st_meta(st, "k", NULL), "v");
  const ckpt_st_tensor *y = ckpt_st_find(st, "y");
  ck_assert(y->ndim == 0 && y->numel == 1 && y->begin == 24 && y->end == 28);
  float back[6];
  ck_assert_int_eq(ckpt_st_read_f32(st, ckpt_st_find(st, "x"), back), 0);
  ck_assert(memcmp(back, a, sizeof a) == 0);
  ckpt_st_close(st);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ckpt");
  TCase *tc = tcase_create("format");
  tcase_add_test(tc, roundtrip_bit_exact);
  tcase_add_test(tc, file_layout);
  tcase_add_test(tc, opt_path_and_moment_rules);
  tcase_add_test(tc, mismatched_pair);
  tcase_add_test(tc, atomic_failed_save);
  tcase_add_test(tc, bad_table_and_args);
  tcase_add_test(tc, corrupt_header_length);
  tcase_add_test(tc, corrupt_header_json);
  tcase_add_test(tc, corrupt_against_table);
  tcase_add_test(tc, corrupt_metadata);
  tcase_add_test(tc, fuzz_truncations_and_flips);
  tcase_add_test(tc, half_widening_exhaustive);
  tcase_add_test(tc, st_write_rules);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
