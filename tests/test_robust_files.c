/* Issue 14, files: what gptc opens is a regular file or refused by name
 * (a FIFO never blocks, /dev/zero is never read), the compiled-object cache
 * is verified by content hash before dlopen, --init checks the vocabulary
 * itself, and the messages of item 18. */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "data.h"
#include "testutil.h"
#include "util.h"

/* A FIFO with no writer under the temp dir; opening it for reading the
 * ordinary way blocks forever (the tcase timeout is the guard). */
static const char *fifo(const char *name) {
  static char path[4][1024];
  static int i;
  char *p = path[i++ & 3];
  snprintf(p, 1024, "%s/%s", tu_tmpdir(), name);
  unlink(p);
  ck_assert_msg(mkfifo(p, 0644) == 0, "mkfifo %s: %s", p, strerror(errno));
  return p;
}

/* stderr of the last tu_run holds `want` (the whole "gptc: ..." line). */
static void expect_err(const tu_run_result *r, const char *want) {
  ck_assert_msg(r->code == 1, "exit %d, stderr: %s", r->code, r->err);
  ck_assert_msg(strstr(r->err, want) != NULL, "stderr lacks \"%s\": %s", want, r->err);
}

/* ---- regular files only ------------------------------------------------------ */

START_TEST(read_file_refuses_non_regular) {
  char *d;
  size_t n;
  char want[2048];
  const char *f = fifo("text.fifo");
  ck_assert_int_eq(util_read_file(f, &d, &n), -1);
  snprintf(want, sizeof want, "%s: not a regular file (FIFO)", f);
  ck_assert_str_eq(util_errmsg(), want);

  ck_assert_int_eq(util_read_file("/dev/zero", &d, &n), -1);
  ck_assert_str_eq(util_errmsg(), "/dev/zero: not a regular file (character device)");
  ck_assert_int_eq(util_read_file("/dev/null", &d, &n), -1);
  ck_assert_str_eq(util_errmsg(), "/dev/null: not a regular file (character device)");

  ck_assert_int_eq(util_read_file(tu_tmpdir(), &d, &n), -1);
  snprintf(want, sizeof want, "%s: is a directory, expected a file", tu_tmpdir());
  ck_assert_str_eq(util_errmsg(), want);

  /* a regular file still reads whole, NUL-terminated, NUL bytes kept */
  const char *p = tu_write("plain.txt", "ab\0cd", 5);
  ck_assert_int_eq(util_read_file(p, &d, &n), 0);
  ck_assert_uint_eq(n, 5);
  ck_assert_int_eq(memcmp(d, "ab\0cd", 6), 0);
  free(d);
  /* and an empty one gives an empty buffer */
  p = tu_write("empty.txt", "", 0);
  ck_assert_int_eq(util_read_file(p, &d, &n), 0);
  ck_assert_uint_eq(n, 0);
  ck_assert_int_eq(d[0], 0);
  free(d);
}
END_TEST

START_TEST(ckpt_refuses_non_regular) {
  char want[2048];
  const char *f = fifo("ckpt.fifo");
  ckpt_meta m;
  ck_assert_int_eq(ckpt_load_meta(f, &m), -1);
  snprintf(want, sizeof want, "%s: not a regular file (FIFO)", f);
  ck_assert_str_eq(util_errmsg(), want);
  /* was "/dev/zero: truncated: 0 bytes, but a safetensors file starts ..." */
  ck_assert_int_eq(ckpt_load_meta("/dev/zero", &m), -1);
  ck_assert_str_eq(util_errmsg(), "/dev/zero: not a regular file (character device)");
  ck_assert_ptr_null(ckpt_st_open("/dev/zero"));
  ck_assert_str_eq(util_errmsg(), "/dev/zero: not a regular file (character device)");
}
END_TEST

START_TEST(config_refuses_non_regular) {
  cfg_t c;
  char want[2048];
  const char *f = fifo("cfg.fifo");
  ck_assert_int_eq(cfg_load_file(f, &c), -1);
  snprintf(want, sizeof want, "config %s: not a regular file (FIFO)", f);
  ck_assert_str_eq(util_errmsg(), want);
}
END_TEST

/* Through the CLI: each returns at once with the rule, exit 1. */
START_TEST(cli_refuses_non_regular) {
  tu_run_result r;
  char want[2048];
  const char *cfg = tu_write_str("fifo-cfg.lua",
                                 "return { name = 'ff', tokenizer = 'char', emb_dim = 16, n_heads = 2, n_layers = 1,"
                                 " context_length = 16, train = { batch_size = 2, max_length = 16, steps = 1 } }");
  const char *f = fifo("cli.fifo");
  snprintf(want, sizeof want, "gptc: %s: not a regular file (FIFO)\n", f);

  tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s/ff-out'", cfg, f, tu_tmpdir());
  expect_err(&r, want);
  tu_run_free(&r);
  tu_run(&r, NULL, "train --config '%s' --text /dev/zero --out '%s/ff-out2'", cfg, tu_tmpdir());
  expect_err(&r, "gptc: /dev/zero: not a regular file (character device)\n");
  tu_run_free(&r);
  tu_run(&r, NULL, "sample --ckpt '%s'", f);
  expect_err(&r, want);
  tu_run_free(&r);
  tu_run(&r, NULL, "sample --ckpt /dev/zero");
  expect_err(&r, "gptc: /dev/zero: not a regular file (character device)\n");
  tu_run_free(&r);
  tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s/ff-out3'", f, tu_src("data/the-verdict.txt"),
         tu_tmpdir());
  snprintf(want, sizeof want, "gptc: config %s: not a regular file (FIFO)\n", f);
  expect_err(&r, want);
  tu_run_free(&r);
}
END_TEST

/* A FIFO in place of a token cache file is refused with a notice and
 * replaced by the rebuilt cache; the ids equal a fresh build's. */
START_TEST(token_cache_fifo_rebuilt) {
  char src[512], dir[1100], path[1200];
  snprintf(src, sizeof src,
           "return { name = 'tc', tokenizer = 'char', emb_dim = 16, n_heads = 2, n_layers = 1,"
           " context_length = 16, train = { val_ratio = 0.1 } }");
  const char *const text[] = {tu_src("data/the-verdict.txt")};
  cfg_t c;
  data_set want, got;
  snprintf(dir, sizeof dir, "%s/tc-fresh", tu_tmpdir());
  ck_assert_int_eq(cfg_load_string(src, "tc.lua", &c), 0);
  ck_assert_msg(data_load(&c, text, 1, dir, &want) == 0, "%s", util_errmsg());

  snprintf(dir, sizeof dir, "%s/tc-fifo", tu_tmpdir());
  ck_assert_int_eq(util_mkdir_p(dir), 0);
  snprintf(path, sizeof path, "%s/train.tokens", dir);
  ck_assert_int_eq(mkfifo(path, 0644), 0);
  ck_assert_int_eq(cfg_load_string(src, "tc.lua", &c), 0);
  ck_assert_msg(data_load(&c, text, 1, dir, &got) == 0, "%s", util_errmsg());
  ck_assert_uint_eq(got.n_train, want.n_train);
  ck_assert_uint_eq(got.n_val, want.n_val);
  ck_assert_int_eq(memcmp(got.train, want.train, want.n_train * sizeof *want.train), 0);
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert(S_ISREG(st.st_mode));
  data_free(&got);
  data_free(&want);
}
END_TEST

/* ---- the compiled-object cache --------------------------------------------- */

/* The one "*.so" in dir (the test's private cache has one model). */
static void only_so(const char *dir, char *out, size_t n) {
  DIR *d = opendir(dir);
  ck_assert_msg(d != NULL, "%s: %s", dir, strerror(errno));
  struct dirent *e;
  int found = 0;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l > 3 && !strcmp(e->d_name + l - 3, ".so")) {
      snprintf(out, n, "%s/%s", dir, e->d_name);
      found++;
    }
  }
  closedir(d);
  ck_assert_int_eq(found, 1);
}

/* Flips 64 bytes in the middle of the object's .text section (its ELF
 * structure stays whole, so only a content check can tell). */
static void flip_text(const char *so) {
  char *b;
  size_t n;
  ck_assert_int_eq(util_read_file(so, &b, &n), 0);
  Elf64_Ehdr eh;
  memcpy(&eh, b, sizeof eh);
  ck_assert(eh.e_shoff + (size_t)eh.e_shnum * sizeof(Elf64_Shdr) <= n);
  Elf64_Shdr str;
  memcpy(&str, b + eh.e_shoff + (size_t)eh.e_shstrndx * sizeof str, sizeof str);
  int done = 0;
  for (int i = 0; i < eh.e_shnum && !done; i++) {
    Elf64_Shdr sh;
    memcpy(&sh, b + eh.e_shoff + (size_t)i * sizeof sh, sizeof sh);
    if (strcmp(b + str.sh_offset + sh.sh_name, ".text")) continue;
    ck_assert(sh.sh_size > 256 && sh.sh_offset + sh.sh_size <= n);
    for (size_t k = 0; k < 64; k++) b[sh.sh_offset + sh.sh_size / 2 + k] ^= 0x5a;
    done = 1;
  }
  ck_assert(done);
  FILE *f = fopen(so, "wb"); /* in place, as damage would be */
  ck_assert_uint_eq(fwrite(b, 1, n, f), n);
  fclose(f);
  free(b);
}

/* A damaged cached model (bytes flipped in .text) or one without its hash
 * is rebuilt with a notice, and the run gives the same text as before;
 * before the fix the damaged one was dlopened (crash or garbage). */
START_TEST(cpu_cache_damaged_rebuilt) {
  char cache[1100], cpu_dir[1200], so[1400], seal[1500], out[1200];
  snprintf(cache, sizeof cache, "%s/jit-cache", tu_tmpdir());
  snprintf(cpu_dir, sizeof cpu_dir, "%s/cpu", cache);
  snprintf(out, sizeof out, "%s/jit-run", tu_tmpdir());
  setenv("GPTC_CACHE", cache, 1);
  setenv("GPTC_TUNE", "off", 1);
  const char *cfg = tu_write_str("jit.lua",
                                 "return { name = 'jit', tokenizer = 'char', emb_dim = 16, n_heads = 2, n_layers = 1,"
                                 " context_length = 16, drop_rate = 0.0, train = { batch_size = 2, max_length = 16,"
                                 " stride = 16, steps = 1, eval_interval = 100, eval_steps = 1 } }");
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s' --quiet", cfg,
                       tu_src("data/the-verdict.txt"), out) == 0,
                "%s", r.err);
  tu_run_free(&r);
  only_so(cpu_dir, so, sizeof so);
  snprintf(seal, sizeof seal, "%s.sha256", so);
  ck_assert(util_file_exists(seal));

  tu_run_result first;
  ck_assert_msg(tu_run(&first, NULL, "sample --ckpt '%s/last.safetensors' --tokens 40 --seed 7", out) == 0, "%s",
                first.err);
  ck_assert_str_eq(first.err, ""); /* a cache hit, quietly */

  char want[2048];
  snprintf(want, sizeof want, "gptc: cached object %s: its contents do not match their hash (damaged); rebuilding it\n",
           so);
  flip_text(so);
  tu_run(&r, NULL, "sample --ckpt '%s/last.safetensors' --tokens 40 --seed 7", out);
  ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
  ck_assert_str_eq(r.err, want);
  ck_assert_str_eq(r.out, first.out);
  tu_run_free(&r);

  ck_assert_int_eq(unlink(seal), 0);
  snprintf(want, sizeof want, "gptc: cached object %s: no content hash beside it; rebuilding it\n", so);
  tu_run(&r, NULL, "sample --ckpt '%s/last.safetensors' --tokens 40 --seed 7", out);
  ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
  ck_assert_str_eq(r.err, want);
  ck_assert_str_eq(r.out, first.out);
  tu_run_free(&r);
  ck_assert(util_file_exists(seal)); /* sealed again by the rebuild */

  tu_run(&r, NULL, "sample --ckpt '%s/last.safetensors' --tokens 40 --seed 7", out);
  ck_assert_str_eq(r.err, "");
  ck_assert_str_eq(r.out, first.out);
  tu_run_free(&r);
  tu_run_free(&first);
}
END_TEST

/* The hash file's own damage, each with its reason. */
START_TEST(cache_check_reasons) {
  const char *obj = tu_write("obj.bin", "object bytes", 12);
  char seal[1100];
  snprintf(seal, sizeof seal, "%s.sha256", obj);
  unlink(seal);
  ck_assert_str_eq(util_cache_check(obj, "object bytes", 12), "no content hash beside it");
  ck_assert_int_eq(util_cache_seal(obj, "object bytes", 12), 0);
  ck_assert_ptr_null(util_cache_check(obj, "object bytes", 12));
  ck_assert_str_eq(util_cache_check(obj, "object bytez", 12), "its contents do not match their hash (damaged)");
  char *h;
  size_t n;
  ck_assert_int_eq(util_read_file(seal, &h, &n), 0);
  ck_assert_uint_eq(n, 65);
  char hex[65];
  util_sha256_hex("object bytes", 12, hex);
  ck_assert_int_eq(memcmp(h, hex, 64), 0);
  h[3] = 'x'; /* garbled */
  tu_write("obj.bin.sha256", h, n);
  ck_assert_str_eq(util_cache_check(obj, "object bytes", 12), "its content hash file is damaged");
  tu_write("obj.bin.sha256", h, 10); /* cut short */
  ck_assert_str_eq(util_cache_check(obj, "object bytes", 12), "its content hash file is damaged");
  free(h);
  unlink(seal);
  ck_assert_int_eq(mkfifo(seal, 0644), 0); /* never blocks */
  ck_assert_str_eq(util_cache_check(obj, "object bytes", 12), "its content hash cannot be read");
}
END_TEST

/* ---- --init checks the vocabulary itself ------------------------------------ */

/* n lines of "<w> <w>\n" words over the letters of `alpha`; two alphabets
 * of the same size give char vocabularies of the same size. */
static const char *alpha_text(const char *name, const char *alpha) {
  util_buf b = {0};
  size_t k = strlen(alpha);
  for (int i = 0; i < 400; i++) {
    char w[8];
    for (int j = 0; j < 5; j++) w[j] = alpha[(size_t)(i * 7 + j * 3 + i / 5) % k];
    util_buf_printf(&b, "%.5s %.3s\n", w, w + 1);
  }
  const char *p = tu_write(name, b.data, b.len);
  util_buf_free(&b);
  return p;
}

START_TEST(init_checks_char_vocabulary) {
  const char *cfg = tu_write_str("vocab.lua",
                                 "return { name = 'vocab', tokenizer = 'char', emb_dim = 16, n_heads = 2, n_layers = 1,"
                                 " context_length = 16, drop_rate = 0.0, train = { batch_size = 2, max_length = 16,"
                                 " stride = 16, steps = 1, eval_interval = 100, eval_steps = 1 } }");
  /* same size (8 letters + space + newline), "c" in one where the other has "z" */
  const char *a = alpha_text("abc.txt", "abcdefgh"), *z = alpha_text("abz.txt", "abzdefgh");
  char out[1100], ck[1200], want[2048];
  snprintf(out, sizeof out, "%s/vocab-a", tu_tmpdir());
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s' --quiet", cfg, a, out) == 0, "%s", r.err);
  tu_run_free(&r);

  /* sorted: "\n" " " a b c d e f g h  vs  "\n" " " a b d e f g h z: entry 4 differs */
  tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s/vocab-z' --init '%s' --quiet", cfg, z, tu_tmpdir(),
         ck);
  snprintf(want, sizeof want,
           "gptc: %s: the checkpoint's char vocabulary differs from the training text's: entry 4 is \"c\" in the "
           "checkpoint but \"d\" in the text (--init needs the same vocabulary)\n",
           ck);
  ck_assert_msg(r.code == 1, "exit %d: %s", r.code, r.err);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);

  /* the same alphabet in another text fine-tunes */
  const char *a2 = tu_write_str("abc2.txt", "hgfedcba ab\nabc def gh\n");
  char *t1, *t2;
  size_t n1, n2;
  ck_assert_int_eq(util_read_file(a, &t1, &n1), 0);
  ck_assert_int_eq(util_read_file(a2, &t2, &n2), 0);
  util_buf both = {0};
  util_buf_add(&both, t2, n2);
  util_buf_add(&both, t1, n1);
  a2 = tu_write("abc2.txt", both.data, both.len);
  util_buf_free(&both);
  free(t1);
  free(t2);
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s/vocab-a2' --init '%s' --quiet", cfg, a2,
                       tu_tmpdir(), ck) == 0,
                "%s", r.err);
  tu_run_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("robust_files");
  TCase *tc = tcase_create("regular");
  /* a guard, not a timing: before the fix the FIFO cases block forever */
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, read_file_refuses_non_regular);
  tcase_add_test(tc, ckpt_refuses_non_regular);
  tcase_add_test(tc, config_refuses_non_regular);
  tcase_add_test(tc, cli_refuses_non_regular);
  tcase_add_test(tc, token_cache_fifo_rebuilt);
  suite_add_tcase(s, tc);
  tc = tcase_create("cache");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, cpu_cache_damaged_rebuilt);
  tcase_add_test(tc, cache_check_reasons);
  suite_add_tcase(s, tc);
  tc = tcase_create("init");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, init_checks_char_vocabulary);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
