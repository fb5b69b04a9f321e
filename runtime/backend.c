/* backend: see backend.h. The helpers every backend may call (the id
 * check, the generic training step); device selection is backend_reg.c. */
#include "backend.h"

#include <math.h>


void backend_close(backend *b) {
  if (b) b->ops->close(b);
}

int backend_ids_ok(const int32_t *inputs, const int32_t *targets, size_t n, int V) {
  for (size_t i = 0; i < n; i++)
    if (inputs[i] < 0 || inputs[i] >= V || (targets && targets[i] >= V)) return 0;
  return 1;
}

int backend_step_generic(backend *b, const backend_step *s, double *loss, double *norm) {
  const backend_ops *o = b->ops;
  size_t bt = (size_t)b->B * (size_t)b->T;
  *loss = 0;
  *norm = 0;
  if (o->zero_grads(b)) return -1;
  for (int i = 0; i < s->n_micro; i++) {
    gptc_rng rng = {s->seed, s->offset + (uint64_t)i, s->dropout};
    const int32_t *in = s->inputs + (size_t)i * bt, *tg = s->targets + (size_t)i * bt;
    float l;
    if (o->forward(b, in, tg, rng, &l)) return -1;
    *loss += l / s->n_micro;
    if (o->backward(b, in, tg, rng, 1.0f / s->n_micro)) return -1;
  }
  double sq;
  if (o->grad_sq_norm(b, &sq)) return -1;
  *norm = sqrt(sq);
  if (!isfinite(*loss) || !isfinite(*norm)) return 0;
  gptc_adamw_args a = s->adamw;
  a.grad_scale = s->grad_clip > 0 && *norm > s->grad_clip ? (float)(s->grad_clip / (*norm + 1e-6)) : 1.0f;
  return o->adamw(b, a);
}
