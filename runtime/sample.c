/* sample: see sample.h. */
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* splitmix64: tiny, well mixed, and trivially reproducible in any language. */
uint64_t sample_u64(sample_rng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void sample_seed(sample_rng *r, uint64_t seed) { r->s = seed; }

double sample_uniform(sample_rng *r) { return (double)(sample_u64(r) >> 11) * 0x1.0p-53; }

/* qsort order for the top-p cut: larger first */
static int sample_desc(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

int sample_next(const float *logits, int V, double temperature, int top_k, double top_p, sample_rng *r,
                double *work) {
  int best = 0;
  for (int i = 1; i < V; i++)
    if (logits[i] > logits[best]) best = i;
  if (temperature <= 0) return best;
  /* the k-th largest logit is the cut: tokens below it get no mass. Found by
   * partial selection on a copy so ties at the cut are all kept. */
  double cut = -INFINITY;
  if (top_k > 0 && top_k < V) {
    for (int i = 0; i < V; i++) work[i] = logits[i];
    int lo = 0, hi = V - 1, k = top_k - 1; /* k-th largest = index k in descending order */
    while (lo < hi) {
      double pivot = work[(lo + hi) / 2];
      int i = lo, j = hi;
      while (i <= j) {
        while (work[i] > pivot) i++;
        while (work[j] < pivot) j--;
        if (i <= j) {
          double t = work[i];
          work[i] = work[j];
          work[j] = t;
          i++;
          j--;
        }
      }
      if (k <= j) hi = j;
      else if (k >= i) lo = i;
      else break;
    }
    cut = work[k];
  }
  double mx = logits[best], sum = 0;
  for (int i = 0; i < V; i++) {
    double p = logits[i] >= cut ? exp(((double)logits[i] - mx) / temperature) : 0.0;
    work[i] = p;
    sum += p;
  }
  if (top_p < 1) {
    /* nucleus: the most likely tokens whose mass reaches top_p of the
     * total; the cut is a probability, so ties at it are all kept, as at
     * the top-k cut. work[V..2V) holds the sorted copy. */
    double *sorted = work + V;
    int m = 0;
    for (int i = 0; i < V; i++)
      if (work[i] > 0) sorted[m++] = work[i];
    qsort(sorted, (size_t)m, sizeof(double), sample_desc);
    double want = top_p * sum, acc_p = 0, pcut = 0;
    for (int i = 0; i < m; i++) {
      acc_p += sorted[i];
      pcut = sorted[i];
      if (acc_p >= want) break;
    }
    sum = 0;
    for (int i = 0; i < V; i++) {
      if (work[i] < pcut) work[i] = 0;
      sum += work[i];
    }
  }
  double u = sample_uniform(r) * sum, acc = 0;
  int last = best;
  for (int i = 0; i < V; i++) {
    if (work[i] <= 0) continue;
    acc += work[i];
    last = i;
    if (u < acc) return i;
  }
  return last;
}

int sample_prompt_ids(tok_t *tok, const char *prompt, int32_t **ids, size_t *n) {
  *ids = NULL;
  *n = 0;
  if (prompt && *prompt) return tok_encode(tok, prompt, strlen(prompt), 1, ids, n);
  int32_t *one = util_malloc(sizeof(int32_t), "prompt");
  if (!one) return -1;
  int eot = tok_eot(tok);
  int32_t *nl = NULL;
  size_t n_nl = 0;
  if (eot >= 0) one[0] = eot;
  else if (tok_encode(tok, "\n", 1, 0, &nl, &n_nl) == 0 && n_nl == 1) one[0] = nl[0];
  else one[0] = 0;
  free(nl);
  util_errclear(); /* a vocabulary without a newline is not an error here */
  *ids = one;
  *n = 1;
  return 0;
}

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence, so streamed output never splits a character. Looks at the last
 * 5 bytes at most, and at whether s starts the text (i == 0). */
static size_t sample_complete(const char *s, size_t n) {
  size_t i = n;
  int back = 0;
  while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--, back++;
  if (i == 0) return n;
  unsigned char c = (unsigned char)s[i - 1];
  int need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  return need == back + 1 || need == 1 ? n : i - 1;
}

/* The decoded continuation, kept only as far back as the next write needs:
 * buf holds text[keep..len), where keep <= printed and either keep == 0 or
 * len - keep >= 5, so sample_complete on buf cuts where it would on the
 * whole text. Each token is decoded once: output is linear in its length. */
typedef struct {
  char *buf;
  size_t cap, keep, len, printed;
} sample_stream;

static int sample_stream_add(sample_stream *st, const char *p, size_t n) {
  size_t have = st->len - st->keep;
  if (have + n + 1 > st->cap) {
    size_t cap = st->cap ? st->cap : 64;
    while (cap < have + n + 1) cap *= 2;
    char *b = util_realloc(st->buf, cap, "generated text");
    if (!b) return -1;
    st->buf = b;
    st->cap = cap;
  }
  memcpy(st->buf + have, p, n);
  st->len += n;
  return 0;
}

/* Hands text[printed..) up to the last complete UTF-8 character (all 0)
 * or to the end (all 1) to the sink, then drops what no later write needs.
 * The sink's answer: 0 go on, 1 stop, -1 error. */
static int sample_stream_write(sample_stream *st, int all, const sample_sink *sink) {
  size_t have = st->len - st->keep;
  size_t ok = st->keep + (all ? have : sample_complete(st->buf, have));
  int rc = 0;
  if (ok > st->printed) {
    rc = sink->text(sink->arg, st->buf + (st->printed - st->keep), ok - st->printed);
    st->printed = ok;
  }
  size_t keep = st->len >= 5 ? st->len - 5 : 0;
  if (keep > st->printed) keep = st->printed;
  if (keep > st->keep) {
    memmove(st->buf, st->buf + (keep - st->keep), st->len - keep);
    st->keep = keep;
  }
  return rc;
}

/* Decodes seq[from..n) after the stream's text, the text of seq[0..from)
 * with the generation's first id at seq[0]. */
static int sample_stream_decode(sample_stream *st, tok_t *tok, const int32_t *seq, size_t from, size_t n) {
  char *text;
  size_t tl;
  if (tok_decode_from(tok, seq, from, n, &text, &tl)) return -1;
  int rc = sample_stream_add(st, text, tl);
  free(text);
  return rc;
}

int sample_run(const sample_model *m, tok_t *tok, const char *prompt, const sample_opts *o, const sample_sink *sink,
               sample_result *res) {
  int V = m->vocab_size, ctx = m->context_length, eot = tok_eot(tok);
  int rc = -1;
  int32_t *ids = NULL, *seq = NULL;
  size_t n_prompt = 0;
  float *logits = NULL;
  double *work = NULL;
  sample_stream st = {0};
  memset(res, 0, sizeof *res);
  if (sample_prompt_ids(tok, prompt, &ids, &n_prompt)) goto out;
  res->prompt_tokens = (int)n_prompt;
  size_t cap = n_prompt + (size_t)o->tokens;
  seq = util_malloc(cap * sizeof(int32_t), "token sequence");
  logits = util_malloc((size_t)V * sizeof(float), "logits");
  work = util_malloc(2 * (size_t)V * sizeof(double), "sampling buffer");
  if (!seq || !logits || !work) goto out;
  memcpy(seq, ids, n_prompt * sizeof(int32_t));
  size_t n = n_prompt;
  /* the prompt's tail that fits the context feeds the cache */
  size_t start = n > (size_t)ctx ? n - (size_t)ctx : 0;
  int pos = 0;
  for (size_t i = start; i < n; i++)
    if (m->infer(m->ctx, seq[i], pos++, logits)) goto out;
  int skip_prompt_text = !(prompt && *prompt); /* the synthetic start token is not echoed */
  size_t gen_start = skip_prompt_text ? n_prompt : 0;
  if (sink->begin && sink->begin(sink->arg)) goto out;
  if (!skip_prompt_text) {
    /* continuation bytes start after the prompt's decoded text */
    if (sample_stream_decode(&st, tok, seq, 0, n)) goto out;
    st.printed = st.len;
    if (sample_stream_write(&st, 1, sink) < 0) goto out;
  }
  sample_rng r;
  sample_seed(&r, o->seed);
  res->finish = SAMPLE_LENGTH;
  for (int k = 0; k < o->tokens; k++) {
    int next = sample_next(logits, V, o->temperature, o->top_k, o->top_p, &r, work);
    if (next == eot) {
      res->finish = SAMPLE_EOT;
      break;
    }
    seq[n++] = next;
    res->completion_tokens++;
    if (sample_stream_decode(&st, tok, seq + gen_start, n - 1 - gen_start, n - gen_start)) goto out;
    int w = sample_stream_write(&st, 0, sink);
    if (w < 0) goto out;
    if (w > 0) {
      res->finish = SAMPLE_STOPPED;
      break;
    }
    if (k + 1 == o->tokens) break;
    if (pos == ctx) {
      /* context full: keep the newer half and rebuild the cache from it */
      int keep = ctx / 2;
      pos = 0;
      for (size_t i = n - (size_t)keep; i < n - 1; i++)
        if (m->infer(m->ctx, seq[i], pos++, logits)) goto out;
    }
    if (m->infer(m->ctx, next, pos++, logits)) goto out;
  }
  if (res->finish != SAMPLE_STOPPED && sample_stream_write(&st, 1, sink) < 0) goto out;
  rc = 0;
out:
  free(ids);
  free(seq);
  free(logits);
  free(work);
  free(st.buf);
  return rc;
}

/* The CLI's sink: the text to a FILE as it comes, the prompt first. */
typedef struct {
  FILE *out;
  const char *prompt;
} sample_file_sink;

static int sample_file_begin(void *arg) {
  sample_file_sink *f = arg;
  if (f->prompt && *f->prompt) fputs(f->prompt, f->out);
  fflush(f->out);
  return 0;
}

static int sample_file_text(void *arg, const char *s, size_t n) {
  sample_file_sink *f = arg;
  fwrite(s, 1, n, f->out);
  fflush(f->out);
  return 0;
}

int sample_generate(const sample_model *m, tok_t *tok, const char *prompt, const sample_opts *o, FILE *out) {
  sample_file_sink f = {out, prompt};
  const sample_sink sink = {sample_file_begin, sample_file_text, &f};
  sample_result res;
  if (sample_run(m, tok, prompt, o, &sink, &res)) return -1;
  fputc('\n', out);
  if (fflush(out) || ferror(out)) return util_err("writing the generated text failed (output closed or full)");
  return 0;
}

/* ---- evaluation ---------------------------------------------------------------- */

int sample_eval(const sample_model *m, tok_t *tok, const char *path, FILE *out) {
  char *text;
  size_t len;
  if (util_read_text(path, &text, &len)) return -1;
  int32_t *ids = NULL;
  size_t n = 0, T = (size_t)m->context_length;
  float *logits = NULL;
  int rc = -1;
  if (tok_encode(tok, text, len, 1, &ids, &n)) goto out;
  if (n <= T) {
    util_err("%s: %zu tokens is too short for one window of context_length %zu + 1", path, n, T);
    goto out;
  }
  if (!(logits = util_malloc((size_t)m->vocab_size * sizeof(float), "logits"))) goto out; /* (V) */
  /* windows start at i = kT while kT < n - T (cmd_eval.c's count) */
  size_t n_windows = (n - 1) / T;
  double sum = 0;
  for (size_t w = 0; w < n_windows; w++)
    for (size_t t = 0; t < T; t++) {
      if (m->infer(m->ctx, ids[w * T + t], (int)t, logits)) goto out;
      /* -log softmax(logits)[target], in double */
      double mx = logits[0], z = 0;
      for (int v = 1; v < m->vocab_size; v++) mx = logits[v] > mx ? logits[v] : mx;
      for (int v = 0; v < m->vocab_size; v++) z += exp((double)logits[v] - mx);
      sum += mx + log(z) - (double)logits[ids[w * T + t + 1]];
    }
  double count = (double)n_windows * (double)T, mean = sum / count;
  fprintf(out, "windows %zu | tokens %zu | positions %.0f | perplexity %.4f\n", n_windows, n, count, exp(mean));
  fprintf(out, "loss %.6f\n", mean);
  rc = 0;
out:
  free(text);
  free(ids);
  free(logits);
  return rc;
}
