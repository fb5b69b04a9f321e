/* sample: see sample.h. */
#include "sample.h"

#include <math.h>
#include <stdlib.h>

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
