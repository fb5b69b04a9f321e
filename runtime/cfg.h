/* cfg: model configs. A config is a Lua file returning a table; the schema,
 * defaults and rules live in gen/config.lua (one place), which this module
 * runs in the embedded interpreter and copies into a C struct. */
#ifndef GPTC_CFG_H
#define GPTC_CFG_H

#include <stdint.h>

#include <lua.h>

enum { CFG_TOK_GPT2, CFG_TOK_CHAR, CFG_TOK_WORD };
enum { CFG_FP32, CFG_BF16 };
/* train.sampling: the seeds' windows in epochs, or nanoGPT's uniform random starts */
enum { CFG_SAMPLE_WINDOWS, CFG_SAMPLE_RANDOM };

#define CFG_MAX_DATA 16

typedef struct {
  int batch_size, max_length, stride;
  double val_ratio;
  int shuffle, drop_last;
  int sampling; /* CFG_SAMPLE_* */
  uint64_t seed;
  double lr, min_lr;
  int warmup_steps, steps;
  double weight_decay, beta1, beta2, eps, grad_clip;
  int grad_accum, eval_interval, eval_steps;
} cfg_train;

typedef struct {
  char name[128];
  char path[1024]; /* the file it came from ("" when loaded from a string) */
  int tokenizer;   /* CFG_TOK_* */
  int n_data;      /* default text paths, resolved against the config's dir */
  char data[CFG_MAX_DATA][1024];
  int vocab_size; /* 0 until known (char/word: derived from the text) */
  int vocab_stated; /* vocab_size was in the config: a text must agree */
  int emb_dim, n_heads, n_layers, context_length;
  double drop_rate;
  int qkv_bias, tie_embeddings;
  int precision; /* CFG_FP32, CFG_BF16 */
  cfg_train train;
} cfg_t;

/* Loads, sandboxes and validates a config file; -1 with util_err on failure. */
int cfg_load_file(const char *path, cfg_t *cfg);
/* Same for config source text; `name` is used in messages. */
int cfg_load_string(const char *src, const char *name, cfg_t *cfg);
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
/* The resolved config as Lua source (re-loadable with cfg_load_string);
 * caller frees. Data paths are left out. */
char *cfg_serialize(const cfg_t *cfg);
/* Pushes the config as a Lua table (the generator's input). */
void cfg_push(lua_State *L, const cfg_t *cfg);
/* The schema with defaults, as text (`gptc help config`); caller frees. */
char *cfg_describe(void);
const char *cfg_tokenizer_name(int tok);

#endif
