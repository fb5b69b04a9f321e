/* cfg: model configs. A config is a Lua file returning a table; the schema,
 * defaults and rules live in gen/config.lua (one place), which the Lua
 * bridge (gen.h, gen_cfg.c) runs in the embedded interpreter and copies
 * into this C struct. */
#ifndef GPTC_CFG_H
#define GPTC_CFG_H

#include <stddef.h>
#include <stdint.h>

enum { CFG_TOK_GPT2, CFG_TOK_CHAR, CFG_TOK_WORD };
enum { CFG_FP32, CFG_BF16 };
/* train.sampling: the seeds' windows in epochs, or nanoGPT's uniform random starts */
enum { CFG_SAMPLE_WINDOWS, CFG_SAMPLE_RANDOM };

#define CFG_MAX_DATA 16

/* The plain numeric fields, written once: X(KIND, name) with KIND I
 * (integer, an int), N (number, a double) or B (boolean, an int 0/1). The
 * struct members, the Lua -> C copy (gen_cfg.c's gen_cfg_from_table) and the C -> Lua
 * push (cfg_push, and through it cfg_serialize and cfg_field_json) are
 * derived from these lists, in this order; each field's rule, bounds and
 * default are gen/config.lua's. The fields with a representation of their
 * own (name, tokenizer, data, vocab_size, precision, train.sampling,
 * train.seed) are spelled out where they are used. */
#define CFG_MODEL_FIELDS(X)                                                                               \
  X(I, emb_dim) X(I, n_heads) X(I, n_layers) X(I, context_length) X(N, drop_rate) X(B, qkv_bias)          \
  X(B, tie_embeddings)
/* train = { ... }: the fields before sampling and seed, then the rest */
#define CFG_TRAIN_FIELDS_1(X) X(I, batch_size) X(I, max_length) X(I, stride) X(N, val_ratio) X(B, shuffle) X(B, drop_last)
#define CFG_TRAIN_FIELDS_2(X)                                                                             \
  X(N, lr) X(N, min_lr) X(I, warmup_steps) X(I, steps) X(N, weight_decay) X(N, beta1) X(N, beta2) X(N, eps) \
  X(N, grad_clip) X(I, grad_accum) X(I, eval_interval) X(I, eval_steps)
#define CFG_CTYPE_I int
#define CFG_CTYPE_N double
#define CFG_CTYPE_B int
#define CFG_MEMBER(kind, f) CFG_CTYPE_##kind f;

typedef struct {
  CFG_TRAIN_FIELDS_1(CFG_MEMBER)
  int sampling; /* CFG_SAMPLE_* */
  uint64_t seed;
  CFG_TRAIN_FIELDS_2(CFG_MEMBER)
} cfg_train;

typedef struct {
  char name[128];
  char path[1024]; /* the file it came from ("" when loaded from a string) */
  int tokenizer;   /* CFG_TOK_* */
  int n_data;      /* default text paths, resolved against the config's dir */
  char data[CFG_MAX_DATA][1024];
  int vocab_size; /* 0 until known (char/word: derived from the text) */
  int vocab_stated; /* vocab_size was in the config: a text must agree */
  CFG_MODEL_FIELDS(CFG_MEMBER)
  int precision; /* CFG_FP32, CFG_BF16 */
  cfg_train train;
} cfg_t;

/* Loads, sandboxes and validates a config file; -1 with util_err on failure. */
int cfg_load_file(const char *path, cfg_t *cfg);
/* Same for config source text; `name` is used in messages. */
int cfg_load_string(const char *src, const char *name, cfg_t *cfg);
/* The same with command-line overrides: sets[i] is "FIELD=VALUE" (`--set`),
 * FIELD a dotted path (n_layers, train.lr), VALUE a literal read as data
 * (number, quoted string, true/false; lit.c) or a bare word taken as a
 * string (bf16, char, a path); never run. Applied in order to the table the
 * file returned, then validated as the file is; messages name the --set.
 * A relative `--set data=PATH` is relative to the working directory. */
int cfg_load_file_set(const char *path, const char *const *sets, int n_sets, cfg_t *cfg);
int cfg_load_string_set(const char *src, const char *name, const char *const *sets, int n_sets, cfg_t *cfg);
/* Splits "FIELD=VALUE" (checking FIELD's form; field has `cap` bytes). */
int cfg_set_split(const char *set, char *field, size_t cap, const char **value);
/* The last of sets that sets `field` ("train.lr=..."), or NULL. */
const char *cfg_set_find(const char *const *sets, int n_sets, const char *field);
/* The value of `field` (dotted path) as JSON text: 4, 0.001, true, "bf16". */
int cfg_field_json(const cfg_t *cfg, const char *field, char *out, size_t cap);
/* A checkpoint's stored config (cfg_serialize's output) read as data: parsed
 * as a plain table literal, never run, then validated like a file. */
int cfg_load_data(const char *src, const char *name, cfg_t *cfg);
/* Sets the vocabulary size once the tokenizer knows it (char/word); one
 * the config stated must agree. */
int cfg_set_vocab(cfg_t *cfg, int vocab_size);
/* train's default output directory, out/<name>; fails, naming the rule,
 * when the name would not be one plain directory inside out/. */
int cfg_default_out(const cfg_t *cfg, char *out, size_t n);
/* Fails, naming the sizes, when training this model would not fit in this
 * machine's memory (the CPU backend's check before it allocates). */
int cfg_check_memory(const cfg_t *cfg);
/* Tokens one optimizer step trains on: batch_size x max_length x grad_accum
 * (the step's (grad_accum, B, T) batch; the log's tokens_per_s is over this). */
size_t cfg_tokens_per_step(const cfg_train *t);
/* The resolved config as Lua source (re-loadable with cfg_load_string);
 * caller frees. Data paths are left out. */
char *cfg_serialize(const cfg_t *cfg);
/* The schema with defaults, as text (`gptc help config`); caller frees. */
char *cfg_describe(void);
/* "gpt2", "char" or "word" (inline: the bridge names tokenizers too, and calls nothing in cfg.c) */
static inline const char *cfg_tokenizer_name(int tok) {
  return tok == CFG_TOK_CHAR ? "char" : tok == CFG_TOK_WORD ? "word" : "gpt2";
}

#endif
