/* cuda_plan: see cuda.h. The launch plan at the end of a generated CUDA
 * source (gen/cuda/emit.lua writes it): parsed and checked against the
 * kernels the source defines. Needs no GPU and no NVRTC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"
#include "util.h"

/* ---- the launch plan ------------------------------------------------------------------ */

static const char *const cuda_buf_names[CUDA_N_BUFS] = {
    "params", "params16", "grads", "adam_m", "adam_v", "acts", "grad_acts", "scratch", "eval_acts", "kv", "infer",
    "io", "micro", "ctl"};
static const char *const cuda_prog_names[CUDA_N_PROGS] = {
    "train_forward", "train_backward", "eval_forward", "grad_norm", "adamw", "params_to_bf16", "infer"};

const char *cuda_buf_name(int buf) { return buf >= 0 && buf < CUDA_N_BUFS ? cuda_buf_names[buf] : "int"; }
const char *cuda_prog_name(int prog) { return prog >= 0 && prog < CUDA_N_PROGS ? cuda_prog_names[prog] : "?"; }

void cuda_plan_free(cuda_plan *p) {
  free(p->kernels);
  for (int i = 0; i < CUDA_N_PROGS; i++) free(p->progs[i]);
  free(p->acts);
  memset(p, 0, sizeof *p);
}

/* The value of "key=" in a line of key=value words; -1 when absent. */
static long long cuda_kv(const char *line, const char *key) {
  size_t kl = strlen(key);
  for (const char *p = line; (p = strstr(p, key)) != NULL; p += kl)
    if ((p == line || p[-1] == ' ') && p[kl] == '=') return strtoll(p + kl + 1, NULL, 10);
  return -1;
}

/* Adds every kernel defined in the source (extern "C" __global__ ...
 * NAME(params)) with its parameter count and int parameters. */
static int cuda_plan_kernels(const char *src, cuda_plan *p, unsigned **int_masks) {
  int cap = 0;
  *int_masks = NULL;
  for (const char *s = src; (s = strstr(s, "extern \"C\" __global__ void ")) != NULL; s++) {
    const char *q = s + strlen("extern \"C\" __global__ void ");
    int bound = 1024;
    if (!strncmp(q, "__launch_bounds__(", 18)) {
      bound = atoi(q + 18);
      q = strchr(q, ')');
      if (!q) break;
      q++;
    }
    while (*q == ' ') q++;
    const char *name = q;
    while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '_') q++;
    if (*q != '(' || q == name || q - name >= (long)sizeof p->kernels[0].name)
      return util_err("CUDA source: malformed kernel definition near '%.40s'", s);
    if (p->n_kernels == cap) {
      cap = cap ? 2 * cap : 64;
      cuda_kernel *k = util_realloc(p->kernels, (size_t)cap * sizeof *k, "kernel table");
      unsigned *m = util_realloc(*int_masks, (size_t)cap * sizeof *m, "kernel table");
      if (k) p->kernels = k;
      if (m) *int_masks = m;
      if (!k || !m) return -1;
    }
    cuda_kernel *k = &p->kernels[p->n_kernels];
    unsigned *mask = &(*int_masks)[p->n_kernels];
    snprintf(k->name, sizeof k->name, "%.*s", (int)(q - name), name);
    k->max_threads = bound;
    const char *end = strchr(q, ')');
    if (!end) return util_err("CUDA source: kernel %s: unterminated parameter list", k->name);
    k->nparams = 0;
    *mask = 0;
    for (const char *a = q + 1; a < end;) {
      const char *comma = memchr(a, ',', (size_t)(end - a));
      const char *e = comma ? comma : end;
      while (a < e && (*a == ' ' || *a == '\n')) a++;
      if (a == e) break;
      if (!memchr(a, '*', (size_t)(e - a))) {
        if (strncmp(a, "int ", 4)) return util_err("CUDA source: kernel %s: parameter %d is neither a pointer nor an int",
                                                   k->name, k->nparams + 1);
        *mask |= 1u << k->nparams;
      }
      k->nparams++;
      a = comma ? comma + 1 : end;
    }
    if (k->nparams > CUDA_MAX_ARGS) return util_err("CUDA source: kernel %s has more than %d parameters", k->name,
                                                   CUDA_MAX_ARGS);
    p->n_kernels++;
  }
  return 0;
}

static int cuda_plan_launch(cuda_plan *p, const unsigned *int_masks, const char *line, cuda_call *ln) {
  char name[128];
  int used = 0;
  memset(ln, 0, sizeof *ln);
  if (sscanf(line, "@k %127s %u %u %u %u %u %u%n", name, &ln->grid[0], &ln->grid[1], &ln->grid[2], &ln->block[0],
             &ln->block[1], &ln->block[2], &used) != 7)
    return util_err("CUDA plan: malformed launch '%.60s'", line);
  ln->kernel = -1;
  for (int i = 0; i < p->n_kernels; i++)
    if (!strcmp(p->kernels[i].name, name)) ln->kernel = i;
  if (ln->kernel < 0) return util_err("CUDA plan: launches %s, which the source does not define", name);
  unsigned threads = ln->block[0] * ln->block[1] * ln->block[2];
  if (threads == 0 || threads > 1024 || ln->block[2] > 64 || !ln->grid[0] || !ln->grid[1] || !ln->grid[2] ||
      ln->grid[1] > 65535 || ln->grid[2] > 65535)
    return util_err("CUDA plan: %s: grid %ux%ux%u or block %ux%ux%u is outside the hardware's limits", name,
                    ln->grid[0], ln->grid[1], ln->grid[2], ln->block[0], ln->block[1], ln->block[2]);
  if ((int)threads > p->kernels[ln->kernel].max_threads)
    return util_err("CUDA plan: %s: a block of %u threads exceeds its __launch_bounds__(%d)", name, threads,
                    p->kernels[ln->kernel].max_threads);
  for (const char *a = line + used;;) {
    while (*a == ' ') a++;
    if (!*a || *a == '\n') break;
    if (ln->nargs == CUDA_MAX_ARGS) return util_err("CUDA plan: %s: too many arguments", name);
    cuda_arg *g = &ln->args[ln->nargs];
    char *e;
    if (*a == '#') {
      g->buf = CUDA_ARG_INT;
      g->off = strtoll(a + 1, &e, 10);
    } else {
      size_t n = strcspn(a, "+ \n");
      g->buf = -2;
      for (int b = 0; b < CUDA_N_BUFS; b++)
        if (strlen(cuda_buf_names[b]) == n && !strncmp(a, cuda_buf_names[b], n)) g->buf = b;
      if (g->buf == -2) return util_err("CUDA plan: %s: unknown buffer '%.*s'", name, (int)n, a);
      e = (char *)a + n;
      g->off = 0;
      if (*e == '+') g->off = strtoll(e + 1, &e, 10);
      size_t count = g->buf == CUDA_BUF_IO ? p->io_slot : p->count[g->buf];
      if (g->off < 0 || (size_t)g->off >= count)
        return util_err("CUDA plan: %s: argument %d (%s+%lld) is outside its buffer of %zu elements", name,
                        ln->nargs + 1, cuda_buf_names[g->buf], (long long)g->off, count);
    }
    int is_int = (int_masks[ln->kernel] >> ln->nargs) & 1;
    if (is_int != (g->buf == CUDA_ARG_INT))
      return util_err("CUDA plan: %s: argument %d is %s but the kernel takes %s", name, ln->nargs + 1,
                      g->buf == CUDA_ARG_INT ? "an int" : "a buffer", is_int ? "an int" : "a pointer");
    ln->nargs++;
    a = e;
  }
  if (ln->nargs != p->kernels[ln->kernel].nparams)
    return util_err("CUDA plan: %s is launched with %d arguments but takes %d", name, ln->nargs,
                    p->kernels[ln->kernel].nparams);
  return 0;
}

static int cuda_plan_line(cuda_plan *p, const unsigned *masks, const char *line, int *prog, int *cap) {
  if (!strncmp(line, "@model ", 7)) {
    long long v[7];
    const char *keys[7] = {"V", "ctx", "B", "T", "eval_B", "eval_T", "bf16"};
    for (int i = 0; i < 7; i++)
      if ((v[i] = cuda_kv(line, keys[i])) < 0) return util_err("CUDA plan: @model has no %s", keys[i]);
    p->V = (int)v[0], p->ctx = (int)v[1], p->B = (int)v[2], p->T = (int)v[3];
    p->eval_B = (int)v[4], p->eval_T = (int)v[5], p->bf16 = (int)v[6];
    long long np = cuda_kv(line, "n_params");
    if (np <= 0) return util_err("CUDA plan: @model has no n_params");
    p->n_params = (size_t)np;
    p->count[CUDA_BUF_PARAMS] = p->count[CUDA_BUF_GRADS] = p->count[CUDA_BUF_ADAM_M] = p->count[CUDA_BUF_ADAM_V] =
        p->n_params;
    p->count[CUDA_BUF_PARAMS16] = p->bf16 ? p->n_params : 0;
    p->count[CUDA_BUF_MICRO] = p->count[CUDA_BUF_CTL] = 1;
  } else if (!strncmp(line, "@buffer ", 8)) {
    char name[32];
    unsigned long long n;
    if (sscanf(line, "@buffer %31s %llu", name, &n) != 2) return util_err("CUDA plan: malformed '%.60s'", line);
    int b = -1;
    for (int i = 0; i < CUDA_N_BUFS; i++)
      if (!strcmp(name, cuda_buf_names[i])) b = i;
    if (b < 0) return util_err("CUDA plan: unknown buffer '%s'", name);
    p->count[b] = (size_t)n;
  } else if (!strncmp(line, "@io ", 4)) {
    long long v[6];
    const char *keys[6] = {"slot", "inputs", "targets", "order", "seg_start", "seg_tok"};
    for (int i = 0; i < 6; i++)
      if ((v[i] = cuda_kv(line, keys[i])) < 0) return util_err("CUDA plan: @io has no %s", keys[i]);
    p->io_slot = (size_t)v[0], p->io_inputs = (size_t)v[1], p->io_targets = (size_t)v[2];
    p->io_order = (size_t)v[3], p->io_seg_start = (size_t)v[4], p->io_seg_tok = (size_t)v[5];
    p->count[CUDA_BUF_IO] = p->io_slot;
  } else if (!strncmp(line, "@logits ", 8)) {
    long long t = cuda_kv(line, "train"), e = cuda_kv(line, "eval"), i = cuda_kv(line, "infer");
    if (t < 0 || e < 0 || i < 0) return util_err("CUDA plan: malformed '%.60s'", line);
    p->logits_train = (size_t)t, p->logits_eval = (size_t)e, p->logits_infer = (size_t)i;
  } else if (!strncmp(line, "@act ", 5)) {
    struct cuda_act a;
    unsigned long long off, stride, numel;
    if (sscanf(line, "@act %31s %llu %llu %d %llu", a.name, &off, &stride, &a.layers, &numel) != 5)
      return util_err("CUDA plan: malformed '%.60s'", line);
    a.offset = (size_t)off, a.stride = (size_t)stride, a.numel = (size_t)numel;
    struct cuda_act *na = util_realloc(p->acts, (size_t)(p->n_acts + 1) * sizeof *na, "activation table");
    if (!na) return -1;
    p->acts = na;
    p->acts[p->n_acts++] = a;
  } else if (!strncmp(line, "@prog ", 6)) {
    char name[64];
    if (sscanf(line, "@prog %63s", name) != 1) return util_err("CUDA plan: malformed '%.60s'", line);
    *prog = -1;
    for (int i = 0; i < CUDA_N_PROGS; i++)
      if (!strcmp(name, cuda_prog_names[i])) *prog = i;
    if (*prog < 0) return util_err("CUDA plan: unknown program '%s'", name);
    *cap = 0;
  } else if (!strncmp(line, "@k ", 3)) {
    if (*prog < 0) return util_err("CUDA plan: launch outside a program");
    if (!p->io_slot || !p->n_params) return util_err("CUDA plan: launches before @model and @io");
    int n = p->n_launches[*prog];
    if (n == *cap) {
      *cap = *cap ? 2 * *cap : 256;
      cuda_call *l = util_realloc(p->progs[*prog], (size_t)*cap * sizeof *l, "launch plan");
      if (!l) return -1;
      p->progs[*prog] = l;
    }
    if (cuda_plan_launch(p, masks, line, &p->progs[*prog][n])) return -1;
    p->n_launches[*prog]++;
  } else {
    return util_err("CUDA plan: unknown line '%.60s'", line);
  }
  return 0;
}

int cuda_plan_parse(const char *src, size_t len, cuda_plan *p) {
  memset(p, 0, sizeof *p);
  (void)len;
  const char *at = strstr(src, "\n@gptc-cuda-plan ");
  if (!at) return util_err("CUDA source: no launch plan (@gptc-cuda-plan)");
  if (atoi(at + 17) != 1) return util_err("CUDA source: launch plan version %d, this gptc reads version 1", atoi(at + 17));
  unsigned *masks = NULL;
  int rc = cuda_plan_kernels(src, p, &masks);
  int prog = -1, cap = 0, ended = 0;
  char line[4096];
  for (const char *s = strchr(at + 1, '\n'); rc == 0 && s && !ended; s = strchr(s, '\n')) {
    s++;
    if (*s != '@') continue;
    size_t n = strcspn(s, "\n");
    if (n >= sizeof line) {
      rc = util_err("CUDA plan: line too long");
      break;
    }
    memcpy(line, s, n);
    line[n] = 0;
    if (!strcmp(line, "@end")) ended = 1;
    else rc = cuda_plan_line(p, masks, line, &prog, &cap);
  }
  free(masks);
  if (rc == 0 && !ended) rc = util_err("CUDA plan: no @end");
  for (int i = 0; rc == 0 && i < CUDA_N_PROGS; i++)
    if (!p->n_launches[i] && !(i == CUDA_PROG_TO_BF16 && !p->bf16))
      rc = util_err("CUDA plan: program %s is missing", cuda_prog_names[i]);
  if (rc) cuda_plan_free(p);
  return rc;
}
