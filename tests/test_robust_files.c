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
#include <sys/wait.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "data.h"
#include "json.h"
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

#ifdef GPTC_HAVE_NVRTC
/* The CUDA module cache, through `gen --compile` (NVRTC, no GPU needed):
 * a damaged or hash-less cubin is compiled again, with the notice. */
START_TEST(cuda_cache_damaged_rebuilt) {
  char cache[1100], gen[1100], bin[1400], seal[1500], want[2048];
  snprintf(cache, sizeof cache, "%s/cu-cache", tu_tmpdir());
  snprintf(gen, sizeof gen, "%s/cu-gen", tu_tmpdir());
  setenv("GPTC_CACHE", cache, 1);
  const char *cfg = tu_write_str("cu.lua",
                                 "return { name = 'cu', tokenizer = 'char', vocab_size = 40, emb_dim = 16, n_heads = 2,"
                                 " n_layers = 1, context_length = 16, train = { batch_size = 2, max_length = 16 } }");
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "gen --config '%s' -o '%s' --device cuda --compile sm_80", cfg, gen) == 0, "%s",
                r.err);
  char *p = strstr(r.out, cache), *e = p ? strstr(p, " (compiled)\n") : NULL;
  ck_assert_msg(p && e, "%s", r.out);
  snprintf(bin, sizeof bin, "%.*s", (int)(e - p), p);
  tu_run_free(&r);
  snprintf(seal, sizeof seal, "%s.sha256", bin);
  ck_assert(util_file_exists(seal));

  char *b;
  size_t n;
  ck_assert_int_eq(util_read_file(bin, &b, &n), 0);
  for (size_t k = 0; k < 32; k++) b[n / 2 + k] ^= 0x33;
  FILE *f = fopen(bin, "wb");
  ck_assert_uint_eq(fwrite(b, 1, n, f), n);
  fclose(f);
  free(b);
  tu_run(&r, NULL, "gen --config '%s' -o '%s' --device cuda --compile sm_80", cfg, gen);
  ck_assert_int_eq(r.code, 0);
  snprintf(want, sizeof want, "gptc: cached object %s: its contents do not match their hash (damaged); rebuilding it\n",
           bin);
  ck_assert_str_eq(r.err, want);
  ck_assert_msg(strstr(r.out, " (compiled)\n"), "%s", r.out);
  tu_run_free(&r);

  ck_assert_int_eq(unlink(seal), 0);
  tu_run(&r, NULL, "gen --config '%s' -o '%s' --device cuda --compile sm_80", cfg, gen);
  ck_assert_int_eq(r.code, 0);
  snprintf(want, sizeof want, "gptc: cached object %s: no content hash beside it; rebuilding it\n", bin);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);
  ck_assert_msg(tu_run(&r, NULL, "gen --config '%s' -o '%s' --device cuda --compile sm_80", cfg, gen) == 0, "%s",
                r.err);
  ck_assert_str_eq(r.err, "");
  ck_assert_msg(strstr(r.out, "(already in the cache)"), "%s", r.out);
  tu_run_free(&r);
}
END_TEST
#endif

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

/* ---- item 18: checkpoints and exports ---------------------------------------- */

/* Set once by the fixture (in the parent, before the forked tests). */
static char fx_dir[1024], fx_ckpt[1200], fx_exe[1200];

static void fx_setup(void) {
  snprintf(fx_dir, sizeof fx_dir, "%s", tu_tmpdir());
  snprintf(fx_ckpt, sizeof fx_ckpt, "%s/fx/last.safetensors", fx_dir);
  snprintf(fx_exe, sizeof fx_exe, "%s/fx-model", fx_dir);
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --steps 2 --quiet --out '%s/fx'", tu_src("configs/tiny-test.lua"),
                       fx_dir) == 0,
                "train: %s", r.err);
  tu_run_free(&r);
  ck_assert_msg(tu_run(&r, NULL, "export --ckpt '%s' -o '%s'", fx_ckpt, fx_exe) == 0, "export: %s", r.err);
  tu_run_free(&r);
}

/* Runs `sh -c cmd` with stdin from `in` (n bytes), stdout/stderr captured. */
static int sh_run(tu_run_result *r, const void *in, size_t n, const char *cmd) {
  char ip[1200], op[1200], ep[1200], full[8192];
  snprintf(ip, sizeof ip, "%s/.sh-in", tu_tmpdir());
  snprintf(op, sizeof op, "%s/.sh-out", tu_tmpdir());
  snprintf(ep, sizeof ep, "%s/.sh-err", tu_tmpdir());
  tu_write(".sh-in", in, n);
  snprintf(full, sizeof full, "( %s ) <'%s' >'%s' 2>'%s'", cmd, ip, op, ep);
  int st = system(full);
  memset(r, 0, sizeof *r);
  r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (util_read_file(op, &r->out, &r->out_len)) r->out = util_strdup("");
  if (util_read_file(ep, &r->err, &r->err_len)) r->err = util_strdup("");
  return r->code;
}

/* A copy of the fixture checkpoint with `value` as float 0 of the tensor
 * whose data comes first; returns that tensor's name. */
static const char *poisoned(const char *name, float value, char *path, size_t cap) {
  static char tname[256];
  ckpt_st *st = ckpt_st_open(fx_ckpt);
  ck_assert_msg(st != NULL, "%s", util_errmsg());
  tname[0] = 0;
  for (int i = 0; i < ckpt_st_count(st); i++)
    if (ckpt_st_at(st, i)->begin == 0) snprintf(tname, sizeof tname, "%s", ckpt_st_at(st, i)->name);
  ckpt_st_close(st);
  ck_assert(tname[0]);
  char *b;
  size_t n;
  ck_assert_int_eq(util_read_file(fx_ckpt, &b, &n), 0);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)b[i];
  memcpy(b + 8 + hl, &value, 4);
  snprintf(path, cap, "%s", tu_write(name, b, n));
  free(b);
  return tname;
}

/* A diverged checkpoint is refused by name instead of sampling newlines. */
START_TEST(nonfinite_checkpoint_refused) {
  char p[1200], q[1200], want[2048];
  const char *t = poisoned("nan.safetensors", NAN, p, sizeof p);
  tu_run_result r;
  tu_run(&r, NULL, "sample --ckpt '%s' --tokens 20", p);
  snprintf(want, sizeof want,
           "gptc: %s: the weights of tensor '%s' hold nan: the run diverged before this save; use an earlier "
           "checkpoint\n",
           p, t);
  ck_assert_msg(r.code == 1, "exit %d, out: %s", r.code, r.out);
  ck_assert_str_eq(r.err, want);
  ck_assert_str_eq(r.out, "");
  tu_run_free(&r);
  tu_run(&r, NULL, "eval --ckpt '%s' --text '%s'", p, tu_src("data/the-verdict.txt"));
  ck_assert_int_eq(r.code, 1);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);
  /* nor exported, nor exported to Hugging Face, nor fine-tuned from */
  tu_run(&r, NULL, "export --ckpt '%s' -o '%s/nan-model'", p, fx_dir);
  ck_assert_int_eq(r.code, 1);
  ck_assert_str_eq(r.err, want);
  snprintf(q, sizeof q, "%s/nan-model", fx_dir);
  ck_assert(!util_file_exists(q));
  tu_run_free(&r);
  tu_run(&r, NULL, "export-hf '%s' -o '%s/nan-hf'", p, fx_dir);
  ck_assert_int_eq(r.code, 1);
  ck_assert_str_eq(r.err, want);
  snprintf(q, sizeof q, "%s/nan-hf", fx_dir);
  ck_assert(!util_file_exists(q));
  tu_run_free(&r);
  tu_run(&r, NULL, "train --config '%s' --init '%s' --steps 1 --quiet --out '%s/nan-init'", tu_src("configs/tiny-test.lua"),
         p, fx_dir);
  ck_assert_int_eq(r.code, 1);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);

  t = poisoned("inf.safetensors", -INFINITY, p, sizeof p);
  tu_run(&r, NULL, "sample --ckpt '%s' --tokens 20", p);
  snprintf(want, sizeof want,
           "gptc: %s: the weights of tensor '%s' hold inf: the run diverged before this save; use an earlier "
           "checkpoint\n",
           p, t);
  ck_assert_int_eq(r.code, 1);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);

  /* the finite original still samples */
  ck_assert_msg(tu_run(&r, NULL, "sample --ckpt '%s' --tokens 20", fx_ckpt) == 0, "%s", r.err);
  tu_run_free(&r);
}
END_TEST

/* A tensor whose header entry is gone (its data left behind) is named as
 * missing, not reported as "N bytes after the last tensor's data". */
START_TEST(missing_tensor_named) {
  ckpt_st *st = ckpt_st_open(fx_ckpt);
  ck_assert_ptr_nonnull(st);
  const ckpt_st_tensor *last = NULL;
  for (int i = 0; i < ckpt_st_count(st); i++)
    if (!last || ckpt_st_at(st, i)->begin > last->begin) last = ckpt_st_at(st, i);
  util_buf h = {0};
  /* the same metadata, so the loader gets as far as the tensors */
  static const char *const keys[] = {"format", "gptc_format", "config",   "tokenizer", "vocab",   "step",
                                     "data_pos", "seed",      "best_val", "text_hash", "pair_tag"};
  util_buf_printf(&h, "{\"__metadata__\":{");
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    size_t len;
    const char *v = ckpt_st_meta(st, keys[i], &len);
    ck_assert_ptr_nonnull(v);
    util_buf_printf(&h, "%s\"%s\":", i ? "," : "", keys[i]);
    ck_assert_int_eq(json_write_str(&h, v, len, "meta"), 0);
  }
  util_buf_printf(&h, "}");
  for (int i = 0; i < ckpt_st_count(st); i++) {
    const ckpt_st_tensor *t = ckpt_st_at(st, i);
    if (t == last) continue;
    util_buf_printf(&h, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", t->name);
    for (int d = 0; d < t->ndim; d++) util_buf_printf(&h, "%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
    util_buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)t->begin,
                    (unsigned long long)t->end);
  }
  util_buf_printf(&h, "}");
  char missing[256];
  snprintf(missing, sizeof missing, "%s", last->name);
  ckpt_st_close(st);
  char *b;
  size_t n;
  ck_assert_int_eq(util_read_file(fx_ckpt, &b, &n), 0);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)b[i];
  util_buf f = {0};
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
  util_buf_add(&f, len8, 8);
  util_buf_add(&f, h.data, h.len);
  util_buf_add(&f, b + 8 + hl, n - 8 - (size_t)hl);
  const char *p = tu_write("missing.safetensors", f.data, f.len);
  free(b);
  util_buf_free(&h);
  util_buf_free(&f);

  tu_run_result r;
  char want[2048];
  tu_run(&r, NULL, "sample --ckpt '%s' --tokens 5", p);
  snprintf(want, sizeof want, "gptc: %s: missing tensor '%s'\n", p, missing);
  ck_assert_int_eq(r.code, 1);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);
  /* the reader alone still refuses the stray bytes */
  ck_assert_ptr_null(ckpt_st_open(p));
  ck_assert_ptr_nonnull(strstr(util_errmsg(), " bytes after the last tensor's data (file byte "));
}
END_TEST

/* export-hf that fails writing (a file size limit standing in for a full
 * disk) takes back the directories it created; an existing one stays with
 * what it held. */
START_TEST(export_hf_cleans_up) {
  char out[1100], cmd[4096], keep[1200];
  tu_run_result r;
  snprintf(out, sizeof out, "%s/hf-new/a/b", fx_dir);
  snprintf(cmd, sizeof cmd, "trap '' XFSZ; ulimit -f 2; exec '%s' export-hf '%s' -o '%s'", GPTC_EXE, fx_ckpt, out);
  sh_run(&r, "", 0, cmd);
  ck_assert_msg(r.code == 1, "exit %d: %s", r.code, r.err);
  ck_assert_msg(strstr(r.err, "model.safetensors: write failed: File too large"), "%s", r.err);
  tu_run_free(&r);
  snprintf(out, sizeof out, "%s/hf-new", fx_dir);
  ck_assert_msg(!util_file_exists(out), "%s was left behind", out);

  snprintf(out, sizeof out, "%s/hf-old", fx_dir);
  ck_assert_int_eq(util_mkdir_p(out), 0);
  snprintf(keep, sizeof keep, "%s/hf-old/README", fx_dir);
  FILE *f = fopen(keep, "w");
  fputs("mine\n", f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "trap '' XFSZ; ulimit -f 2; exec '%s' export-hf '%s' -o '%s'", GPTC_EXE, fx_ckpt, out);
  ck_assert_int_eq(sh_run(&r, "", 0, cmd), 1);
  tu_run_free(&r);
  ck_assert(util_is_dir(out));
  ck_assert(util_file_exists(keep));
  snprintf(keep, sizeof keep, "%s/hf-old/model.safetensors", fx_dir);
  ck_assert(!util_file_exists(keep));
  /* without the limit it writes the directory */
  snprintf(out, sizeof out, "%s/hf-ok/x", fx_dir);
  ck_assert_msg(tu_run(&r, NULL, "export-hf '%s' -o '%s'", fx_ckpt, out) == 0, "%s", r.err);
  tu_run_free(&r);
  snprintf(keep, sizeof keep, "%s/config.json", out);
  ck_assert(util_file_exists(keep));
}
END_TEST

/* A prompt on standard input with a NUL byte is refused, not cut short. */
START_TEST(stdin_prompt_nul) {
  char cmd[2048];
  tu_run_result r, a;
  snprintf(cmd, sizeof cmd, "'%s' --seed 3 --tokens 10", fx_exe);
  sh_run(&r, "I had\0 always", 14, cmd);
  ck_assert_int_eq(r.code, 1);
  ck_assert_str_eq(r.err, "fx-model: standard input: the prompt has a NUL byte at offset 5 (a prompt is text)\n");
  ck_assert_str_eq(r.out, "");
  tu_run_free(&r);
  /* before the fix this ran as the prompt "I had"; that prompt still runs */
  ck_assert_int_eq(sh_run(&a, "I had", 5, cmd), 0);
  ck_assert_int_eq(strncmp(a.out, "I had", 5), 0);
  tu_run_free(&a);
}
END_TEST

/* The same for a word model: as many words, one of them another. */
START_TEST(init_checks_word_vocabulary) {
  const char *cfg = tu_write_str("wvocab.lua",
                                 "return { name = 'wvocab', tokenizer = 'word', emb_dim = 16, n_heads = 2, n_layers = 1,"
                                 " context_length = 16, drop_rate = 0.0, train = { batch_size = 2, max_length = 16,"
                                 " stride = 16, steps = 1, eval_interval = 100, eval_steps = 1 } }");
  util_buf a = {0}, d = {0};
  for (int i = 0; i < 200; i++) {
    util_buf_printf(&a, "alpha beta gamma.\n");
    util_buf_printf(&d, "alpha beta delta.\n");
  }
  const char *ta = tu_write("wa.txt", a.data, a.len), *td = tu_write("wd.txt", d.data, d.len);
  util_buf_free(&a);
  util_buf_free(&d);
  char out[1100], ck[1200], want[2048];
  snprintf(out, sizeof out, "%s/wvocab-a", tu_tmpdir());
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s' --quiet", cfg, ta, out) == 0, "%s", r.err);
  tu_run_free(&r);
  /* sorted: . alpha beta gamma <|endoftext|> <|unk|>  vs  . alpha beta delta ... */
  tu_run(&r, NULL, "train --config '%s' --text '%s' --out '%s/wvocab-d' --init '%s' --quiet", cfg, td, tu_tmpdir(),
         ck);
  snprintf(want, sizeof want,
           "gptc: %s: the checkpoint's word vocabulary differs from the training text's: entry 3 is \"gamma\" in the "
           "checkpoint but \"delta\" in the text (--init needs the same vocabulary)\n",
           ck);
  ck_assert_msg(r.code == 1, "exit %d: %s", r.code, r.err);
  ck_assert_str_eq(r.err, want);
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
#ifdef GPTC_HAVE_NVRTC
  tcase_add_test(tc, cuda_cache_damaged_rebuilt);
#endif
  suite_add_tcase(s, tc);
  tc = tcase_create("init");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, init_checks_char_vocabulary);
  tcase_add_test(tc, init_checks_word_vocabulary);
  suite_add_tcase(s, tc);
  tc = tcase_create("ckpt");
  tcase_set_timeout(tc, 600);
  tcase_add_unchecked_fixture(tc, fx_setup, NULL);
  tcase_add_test(tc, nonfinite_checkpoint_refused);
  tcase_add_test(tc, missing_tensor_named);
  tcase_add_test(tc, export_hf_cleans_up);
  tcase_add_test(tc, stdin_prompt_nul);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
