/* cmd_tokenize: `gptc tokenize`, text to token ids and back. Encoding prints
 * the ids on one line; --decode reads whitespace-separated ids and writes
 * the text exactly (no newline added), so the two round-trip. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "cli.h"
#include "cmds.h"
#include "tok.h"
#include "util.h"

static const cli_opt tokenize_opts[] = {
    {"--tokenizer", "NAME", "gpt2 (default), char or word"},
    {"--vocab-from", "FILE", "char/word: the text whose vocabulary to use (default when encoding: the input)"},
    {"--allow-special", NULL, "encode <|endoftext|> as the special token (gpt2, word), not as text"},
    {"--text", "FILE", "read the input from FILE instead of stdin"},
    {"--decode", NULL, "read token ids and print the text they stand for"},
    {NULL, NULL, NULL},
};

static const cli_spec tokenize_spec = {
    "gptc tokenize [options]",
    "Encodes UTF-8 text to token ids (printed on one line, separated by spaces), or with --decode\n"
    "turns whitespace-separated ids back into text. The char and word vocabularies come from a\n"
    "text: --vocab-from FILE, or the input itself when encoding.",
    tokenize_opts,
    0,
};

/* Reads FILE, or stdin when path is NULL; NUL-terminated. */
static int tokenize_read_input(const char *path, char **data, size_t *len) {
  if (path) return util_read_file(path, data, len);
  util_buf b = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
    if (util_buf_add(&b, chunk, n)) goto fail;
  if (ferror(stdin)) {
    util_err("stdin: read error");
    goto fail;
  }
  if (util_buf_add(&b, "", 1)) goto fail;
  *data = b.data;
  *len = b.len - 1;
  return 0;
fail:
  util_buf_free(&b);
  return -1;
}

static int tokenize_is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Parses whitespace-separated decimal ids; `name` names the input in errors. */
static int tokenize_parse_ids(const char *name, const char *s, size_t n, int32_t **ids, size_t *n_ids) {
  size_t cap = 1024, k = 0;
  int32_t *v = util_malloc(cap * sizeof *v, "token ids");
  if (!v) return -1;
  for (size_t i = 0; i < n;) {
    if (tokenize_is_space(s[i])) {
      i++;
      continue;
    }
    size_t j = i;
    while (j < n && !tokenize_is_space(s[j])) j++;
    char word[24], *end;
    long x = 0;
    int ok = j - i < sizeof word;
    if (ok) {
      memcpy(word, s + i, j - i);
      word[j - i] = '\0';
      errno = 0;
      x = strtol(word, &end, 10);
      ok = !errno && *end == '\0' && x >= INT32_MIN && x <= INT32_MAX;
    }
    if (!ok) {
      free(v);
      return util_err("%s: token %zu ('%.*s' at byte offset %zu) is not an integer id", name, k + 1,
                      (int)(j - i < 24 ? j - i : 24), s + i, i);
    }
    if (k == cap) {
      int32_t *w = util_realloc(v, (cap *= 2) * sizeof *v, "token ids");
      if (!w) {
        free(v);
        return -1;
      }
      v = w;
    }
    v[k++] = (int32_t)x;
    i = j;
  }
  *ids = v;
  *n_ids = k;
  return 0;
}

static int tokenize_write_out(const void *p, size_t n) {
  if ((n && fwrite(p, 1, n, stdout) != n) || fflush(stdout)) return util_err("stdout: write error");
  return 0;
}

/* Prints the ids as "%d %d ...\n" through a fixed buffer: the text of the
 * ids is about as long as the input, so it is streamed, not built. */
static int tokenize_print_ids(const int32_t *ids, size_t n) {
  char buf[1 << 16];
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    if (used > sizeof buf - 16) {
      if (tokenize_write_out(buf, used)) return -1;
      used = 0;
    }
    if (i) buf[used++] = ' ';
    char d[12];
    int k = 0;
    uint32_t v = ids[i] < 0 ? 0u - (uint32_t)ids[i] : (uint32_t)ids[i];
    do d[k++] = (char)('0' + v % 10);
    while (v /= 10);
    if (ids[i] < 0) buf[used++] = '-';
    while (k) buf[used++] = d[--k];
  }
  buf[used++] = '\n';
  return tokenize_write_out(buf, used);
}

/* The tokenizer for the options; `input` is the default vocabulary text. */
static tok_t *tokenize_make_tok(int kind, const char *vocab_path, const char *input, size_t n, const char *name) {
  if (kind == CFG_TOK_GPT2) return tok_gpt2_new();
  char *vtext = NULL;
  size_t vn = n;
  if (vocab_path) {
    if (util_read_file(vocab_path, &vtext, &vn)) return NULL;
    name = vocab_path;
    input = vtext;
  }
  tok_t *t = NULL;
  if (!vn)
    util_err("%s: empty vocabulary text", name);
  else
    t = kind == CFG_TOK_CHAR ? tok_char_new(input, vn) : tok_word_new(input, vn);
  if (!t && vn) util_err("%s: %s", name, util_errmsg());
  free(vtext);
  return t;
}

int cmd_tokenize(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&tokenize_spec, argc, argv, &a, &code)) return code;
  const char *tname = cli_get(&a, "--tokenizer"), *vocab = cli_get(&a, "--vocab-from"), *path = cli_get(&a, "--text");
  int decode = cli_has(&a, "--decode"), special = cli_has(&a, "--allow-special");
  int kind = CFG_TOK_GPT2;
  if (tname && !strcmp(tname, "char"))
    kind = CFG_TOK_CHAR;
  else if (tname && !strcmp(tname, "word"))
    kind = CFG_TOK_WORD;
  else if (tname && strcmp(tname, "gpt2"))
    return cli_usage_err(&a, "option '--tokenizer' must be gpt2, char or word (got '%s')", tname);
  if (vocab && kind == CFG_TOK_GPT2)
    return cli_usage_err(&a, "option '--vocab-from' applies to the char and word tokenizers only");
  if (special && kind == CFG_TOK_CHAR)
    return cli_usage_err(&a, "option '--allow-special' does not apply to the char tokenizer (it has no special token)");
  if (decode && kind != CFG_TOK_GPT2 && !vocab)
    return cli_usage_err(&a, "--decode with the %s tokenizer needs --vocab-from FILE", cfg_tokenizer_name(kind));

  const char *name = path ? path : "stdin";
  char *in = NULL, *text = NULL;
  size_t n = 0, n_ids = 0, len = 0;
  int32_t *ids = NULL;
  tok_t *t = NULL;
  int rc = 1;
  if (tokenize_read_input(path, &in, &n)) goto done;
  if (!n) {
    util_err("%s: empty input", name);
    goto done;
  }
  if (!decode) {
    long bad = util_utf8_invalid_at(in, n);
    if (bad >= 0) {
      util_err("%s: invalid UTF-8 at byte offset %ld", name, bad);
      goto done;
    }
  }
  if (!(t = tokenize_make_tok(kind, vocab, in, n, name))) goto done;
  if (decode) {
    if (tokenize_parse_ids(name, in, n, &ids, &n_ids)) goto done;
    if (!n_ids) {
      util_err("%s: no token ids in the input", name);
      goto done;
    }
    if (tok_decode(t, ids, n_ids, &text, &len)) {
      util_err("%s: %s", name, util_errmsg());
      goto done;
    }
    if (tokenize_write_out(text, len)) goto done;
  } else {
    if (tok_encode(t, in, n, special, &ids, &n_ids)) {
      util_err("%s: %s", name, util_errmsg());
      goto done;
    }
    if (tokenize_print_ids(ids, n_ids)) goto done;
  }
  rc = 0;
done:
  free(in);
  free(text);
  free(ids);
  tok_free(t);
  return rc ? cli_fail() : 0;
}
