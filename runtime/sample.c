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

int sample_next(const float *logits, int V, double temperature, int top_k, sample_rng *r, double *work) {
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
 * sequence, so streamed output never splits a character. */
static size_t sample_complete(const char *s, size_t n) {
  size_t i = n;
  int back = 0;
  while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--, back++;
  if (i == 0) return n;
  unsigned char c = (unsigned char)s[i - 1];
  int need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  return need == back + 1 || need == 1 ? n : i - 1;
}

/* Writes the part of the decoded seq[from..n) past `*printed` bytes; with
 * `all` 0 only up to the last complete UTF-8 character. */
static int sample_flush(tok_t *tok, const int32_t *seq, size_t from, size_t n, size_t *printed, int all,
                        FILE *out) {
  char *text;
  size_t tl;
  if (tok_decode(tok, seq + from, n - from, &text, &tl)) return -1;
  size_t ok = all ? tl : sample_complete(text, tl);
  if (ok > *printed) {
    fwrite(text + *printed, 1, ok - *printed, out);
    fflush(out);
    *printed = ok;
  }
  free(text);
  return 0;
}

int sample_generate(const sample_model *m, tok_t *tok, const char *prompt, const sample_opts *o, FILE *out) {
  int V = m->vocab_size, ctx = m->context_length, eot = tok_eot(tok);
  int rc = -1;
  int32_t *ids = NULL, *seq = NULL;
  size_t n_prompt = 0;
  float *logits = NULL;
  double *work = NULL;
  if (sample_prompt_ids(tok, prompt, &ids, &n_prompt)) goto out;
  size_t cap = n_prompt + (size_t)o->tokens;
  seq = util_malloc(cap * sizeof(int32_t), "token sequence");
  logits = util_malloc((size_t)V * sizeof(float), "logits");
  work = util_malloc((size_t)V * sizeof(double), "sampling buffer");
  if (!seq || !logits || !work) goto out;
  memcpy(seq, ids, n_prompt * sizeof(int32_t));
  size_t n = n_prompt;
  /* the prompt's tail that fits the context feeds the cache */
  size_t start = n > (size_t)ctx ? n - (size_t)ctx : 0;
  int pos = 0;
  for (size_t i = start; i < n; i++)
    if (m->infer(m->ctx, seq[i], pos++, logits)) goto out;
  int skip_prompt_text = !(prompt && *prompt); /* the synthetic start token is not echoed */
  size_t printed = 0, gen_start = skip_prompt_text ? n_prompt : 0;
  if (!skip_prompt_text) {
    /* the prompt as given; continuation bytes start after its decoded length */
    fputs(prompt, out);
    char *text;
    if (tok_decode(tok, seq, n, &text, &printed)) goto out;
    free(text);
  }
  fflush(out);
  sample_rng r;
  sample_seed(&r, o->seed);
  for (int k = 0; k < o->tokens; k++) {
    int next = sample_next(logits, V, o->temperature, o->top_k, &r, work);
    if (next == eot) break;
    seq[n++] = next;
    if (sample_flush(tok, seq, gen_start, n, &printed, 0, out)) goto out;
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
  if (sample_flush(tok, seq, gen_start, n, &printed, 1, out)) goto out;
  fputc('\n', out);
  if (fflush(out) || ferror(out)) {
    util_err("writing the generated text failed (output closed or full)");
    goto out;
  }
  rc = 0;
out:
  free(ids);
  free(seq);
  free(logits);
  free(work);
  return rc;
}
