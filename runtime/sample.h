/* sample: next-token choice from logits (greedy, temperature, top-k) with a
 * seeded generator, shared by `gptc sample` and exported executables so both
 * give the same text for the same seed. */
#ifndef GPTC_SAMPLE_H
#define GPTC_SAMPLE_H

#include <stdint.h>

typedef struct {
  uint64_t s;
} sample_rng;

void sample_seed(sample_rng *r, uint64_t seed);
uint64_t sample_u64(sample_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double sample_uniform(sample_rng *r);
/* temperature 0 -> argmax (lowest id among ties); top_k 0 -> all tokens.
 * `work` holds V doubles. */
int sample_next(const float *logits, int V, double temperature, int top_k, sample_rng *r, double *work);

#endif
