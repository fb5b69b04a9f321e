/* backend_cuda: the CUDA backend (backend_cuda.c), the generated CUDA run
 * through a launch plan (cuda.h). */
#ifndef GPTC_BACKEND_CUDA_H
#define GPTC_BACKEND_CUDA_H

#include <stddef.h>

#include "backend.h"
#include "cfg.h"
#include "gen.h"

int backend_cuda_open(const cfg_t *cfg, backend **out);
/* The CUDA backend on a variant of the generated kernels (gen.h's
 * gen_cuda_opts; NULL: the default), for tests. */
int backend_cuda_open_variant(const cfg_t *cfg, const gen_cuda_opts *gen, backend **out);
/* For the parity tests: n floats of the CUDA backend's training activation
 * `name` of layer `layer` (its launch plan's layout). */
int backend_cuda_act(backend *b, const char *name, int layer, float *out, size_t n);

#endif
