/* cfg: see cfg.h. The Lua side (running a config through gen/config.lua, the table <-> struct copies) is the
 * bridge's, gen_cfg.c; this file reads the files, splits the --set overrides and holds the plain-C rules. */
#include "cfg.h"

#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "util.h"

int cfg_set_split(const char *set, char *field, size_t cap, const char **value) {
  const char *eq = strchr(set, '=');
  size_t n = eq ? (size_t)(eq - set) : strlen(set);
  if (!eq) return util_err("--set %s: expected FIELD=VALUE, e.g. --set n_layers=4 or --set train.lr=3e-4", set);
  /* a dotted path of Lua names: what gen/config.lua can look up */
  int ok = n > 0 && n < cap;
  for (size_t i = 0; ok && i < n; i++) {
    char c = set[i];
    int start = i == 0 || set[i - 1] == '.';
    ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!start && c >= '0' && c <= '9') ||
         (!start && c == '.' && i + 1 < n);
  }
  if (!ok)
    return util_err("--set %.*s: FIELD must be a config field name such as n_layers or train.lr (see `gptc help "
                    "config`)", (int)(n < 200 ? n : 200), set);
  memcpy(field, set, n);
  field[n] = '\0';
  *value = eq + 1;
  return 0;
}

int cfg_load_string_set(const char *src, const char *name, const char *const *sets, int n_sets, cfg_t *cfg) {
  /* (FIELD, VALUE) pairs for the bridge; a malformed one fails after the values before it were read, as the
   * overrides are applied in order */
  const char **fields = util_calloc((size_t)n_sets + 1, 2 * sizeof *fields, "--set overrides");
  if (!fields) return -1;
  const char **values = fields + n_sets + 1;
  char(*buf)[128] = util_calloc((size_t)n_sets + 1, sizeof *buf, "--set overrides");
  int rc = buf ? 0 : -1;
  for (int i = 0; !rc && i < n_sets; i++) {
    if (cfg_set_split(sets[i], buf[i], sizeof buf[i], &values[i])) {
      char msg[2048];
      snprintf(msg, sizeof msg, "%s", util_errmsg());
      if (gen_cfg_load(NULL, name, fields, values, i, cfg) == 0) util_err("%s", msg);
      rc = -1;
    }
    fields[i] = buf[i];
  }
  if (!rc) rc = gen_cfg_load(src, name, fields, values, n_sets, cfg);
  free(buf);
  free(fields);
  return rc;
}

int cfg_load_string(const char *src, const char *name, cfg_t *cfg) {
  return cfg_load_string_set(src, name, NULL, 0, cfg);
}

const char *cfg_set_find(const char *const *sets, int n_sets, const char *field) {
  size_t n = strlen(field);
  const char *hit = NULL;
  for (int i = 0; i < n_sets; i++)
    if (!strncmp(sets[i], field, n) && sets[i][n] == '=') hit = sets[i];
  return hit;
}

int cfg_load_file(const char *path, cfg_t *cfg) { return cfg_load_file_set(path, NULL, 0, cfg); }

int cfg_load_file_set(const char *path, const char *const *sets, int n_sets, cfg_t *cfg) {
  char *src;
  size_t len;
  if (util_read_file(path, &src, &len)) return util_err("config %s", util_errmsg());
  int rc = cfg_load_string_set(src, path, sets, n_sets, cfg);
  free(src);
  return rc;
}

int cfg_load_data(const char *src, const char *name, cfg_t *cfg) { return gen_cfg_load_data(src, name, cfg); }

int cfg_field_json(const cfg_t *cfg, const char *field, char *out, size_t cap) {
  return gen_cfg_field_json(cfg, field, out, cap);
}

int cfg_check_memory(const cfg_t *cfg) { return gen_cfg_check_memory(cfg); }

char *cfg_serialize(const cfg_t *cfg) { return gen_cfg_serialize(cfg); }

char *cfg_describe(void) { return gen_cfg_describe(); }

int cfg_set_vocab(cfg_t *cfg, int vocab_size) {
  if (cfg->tokenizer == CFG_TOK_GPT2 && vocab_size != 50257)
    return util_err("%s: field 'vocab_size' must be 50257 for the gpt2 tokenizer (got %d)", cfg->path,
                    vocab_size);
  /* a char/word config may state its vocabulary size (gen and bench use it
   * without a text); once the text gives the real one they must agree,
   * or ids would index a table of another size */
  if (cfg->vocab_stated && cfg->vocab_size != vocab_size)
    return util_err("%s: field 'vocab_size' is %d but the %s tokenizer finds %d in the text (leave it unset to "
                    "derive it)", cfg->path[0] ? cfg->path : cfg->name, cfg->vocab_size,
                    cfg_tokenizer_name(cfg->tokenizer), vocab_size);
  cfg->vocab_size = vocab_size;
  return 0;
}

int cfg_default_out(const cfg_t *cfg, char *out, size_t n) {
  /* out/<name> must stay one directory inside out/: no '/', no "..", no
   * hidden or option-like name, bounded. Names elsewhere (headers,
   * checkpoints) stay free, so old checkpoints keep loading. */
  const char *s = cfg->name;
  size_t len = strlen(s);
  int ok = len >= 1 && len <= 100 && s[0] != '.' && s[0] != '-';
  for (const char *p = s; ok && *p; p++)
    ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
         *p == '-';
  if (!ok)
    return util_err("%s: field 'name' must be 1 to 100 letters, digits, '.', '_' or '-', not starting with '.' or "
                    "'-', to name the default output directory out/<name> (pass --out DIR to keep this name)",
                    cfg->path[0] ? cfg->path : "config");
  snprintf(out, n, "out/%s", s);
  return 0;
}

size_t cfg_tokens_per_step(const cfg_train *t) {
  return (size_t)t->batch_size * (size_t)t->max_length * (size_t)t->grad_accum;
}
