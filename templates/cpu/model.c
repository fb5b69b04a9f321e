% local d = S.dims
% local sz = sizes
% local prof = pass.prof
% if prof then
/* ---- the step profile (`gptc bench --profile`) ------------------------------------
 * prof_mark(i) adds the time since the previous mark (or prof_start) to call
 * site kind i: a kernel of one pass, or AdamW and the gradient norm. The
 * kernels and their arguments are those of the source without marks. */
#include <time.h>
#define GPTC_PROF_N {{#prof.list + 2}}
static const char *const gptc_prof_names[GPTC_PROF_N] = {
%   for _, e in ipairs(prof.list) do
    "{{e.pass}} {{e.fn}}",
%   end
    "update gptc_grad_sq_norm",
    "update gptc_adamw",
};
static double gptc_prof_seconds[GPTC_PROF_N];
static long gptc_prof_calls[GPTC_PROF_N];
static struct timespec prof_t0;
static void prof_start(void) { clock_gettime(CLOCK_MONOTONIC, &prof_t0); }
static void prof_mark(int i) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  gptc_prof_seconds[i] += (double)(t.tv_sec - prof_t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - prof_t0.tv_nsec);
  gptc_prof_calls[i]++;
  prof_t0 = t;
}
static double gptc_prof_grad_sq_norm(const real *grads) {
  prof_start();
  double s = gptc_grad_sq_norm(grads);
  prof_mark({{#prof.list}});
  return s;
}
static void gptc_prof_adamw(real *params, const real *grads, real *m, real *v, gptc_adamw_args a) {
  prof_start();
  gptc_adamw(params, grads, m, v, a);
  prof_mark({{#prof.list + 1}});
}
/* the runtime's view (runtime/bench_step.c): names, seconds and calls by
 * call site kind, summed since the model was loaded or last cleared */
__attribute__((visibility("default"))) int gptc_prof_table(const char *const **names, double **seconds,
                                                            long **calls) {
  *names = gptc_prof_names;
  *seconds = gptc_prof_seconds;
  *calls = gptc_prof_calls;
  return GPTC_PROF_N;
}

% end
/* ---- the passes -------------------------------------------------------------------- */

/* 1 when every input id is in [0, V={{d.V}}) and every target < V */
static int ids_ok(const int32_t *inputs, const int32_t *targets, int n) {
  for (int i = 0; i < n; i++)
    if (inputs[i] < 0 || inputs[i] >= {{d.V}} || (targets && targets[i] >= {{d.V}})) return 0;
  return 1;
}

/* training forward at (B={{d.B}}, T={{d.T}}); acts holds every activation for the backward.
 * Returns the mean loss over targets >= 0 (0 without targets, NaN on an id out of range). */
static real gptc_forward(const real *params, real *acts, const int32_t *inputs, const int32_t *targets,
                         gptc_rng rng) {
  if (!ids_ok(inputs, targets, {{d.B * d.T}})) return NAN;
  real loss = 0;
% if prof then
  prof_start();
% end
{{pass.train.pre}}
  for (int l = 0; l < {{d.L}}; l++) {
    const real *lp = params + (size_t)l * {{S.layer_stride}};
    real *la = acts + (size_t)l * {{pass.train.acts_stride}};
    const real *x_in = {{pass.train.x_in}};
{{pass.train.layer}}
  }
{{pass.train.post}}
  return loss;
}

/* training backward: grads += loss_scale * d(mean loss)/d(params); grad_acts is scratch
 * and the logits in acts become their gradient */
static void gptc_backward(const real *params, real *grads, real *acts, real *grad_acts, const int32_t *inputs,
                          const int32_t *targets, gptc_rng rng, float loss_scale) {
  if (!targets || !ids_ok(inputs, targets, {{d.B * d.T}})) return;
% if prof then
  prof_start();
% end
{{pass.backward.post}}
  for (int l = {{d.L - 1}}; l >= 0; l--) {
    const real *lp = params + (size_t)l * {{S.layer_stride}};
    real *lg = grads + (size_t)l * {{S.layer_stride}};
    real *la = acts + (size_t)l * {{pass.train.acts_stride}};
    const real *x_in = {{pass.train.x_in}};
{{pass.backward.layer}}
  }
{{pass.backward.pre}}
}

/* evaluation forward at (B={{d.eval_B}}, T={{d.eval_T}}), no dropout; the layers share buffers */
static real gptc_forward_eval(const real *params, real *acts, const int32_t *inputs, const int32_t *targets) {
  if (!ids_ok(inputs, targets, {{d.eval_B * d.eval_T}})) return NAN;
  gptc_rng rng = {0, 0, 0};
  (void)rng;
  real loss = 0;
{{pass.eval.pre}}
  for (int l = 0; l < {{d.L}}; l++) {
    const real *lp = params + (size_t)l * {{S.layer_stride}};
    const real *x_in = {{pass.eval.x_in}};
{{pass.eval.layer}}
  }
{{pass.eval.post}}
  return loss;
}

/* ---- the model ----------------------------------------------------------------------- */

static const gptc_tensor gptc_tensors[{{#S.tensors}}] = {
% for _, t in ipairs(S.tensors) do
  {"{{t.name}}", {{t.ndim}}, { {{t.sizes[1]}}, {{t.sizes[2] or 0}} }, {{t.offset}}, {{t.numel}}, {{t.decay and 1 or 0}}, {{lit(t.init_std)}}, {{lit(t.init_value)}}},
% end
};

static const gptc_model gptc_the_model = {
  .abi_version = GPTC_ABI_VERSION,
  .config_name = "{{c_string(S.name)}}",
  .gen_version = "{{version}}",
  .hash = GPTC_SOURCE_HASH,
  .vocab_size = {{d.V}},
  .emb_dim = {{d.C}},
  .n_heads = {{d.H}},
  .head_dim = {{d.hd}},
  .n_layers = {{d.L}},
  .context_length = {{d.ctx}},
  .qkv_bias = {{S.qkv_bias and 1 or 0}},
  .tie_embeddings = {{S.tie_embeddings and 1 or 0}},
  .drop_rate = {{flit(d.p)}},
  .B = {{d.B}},
  .T = {{d.T}},
  .eval_B = {{d.eval_B}},
  .eval_T = {{d.eval_T}},
  .n_params = {{sz.n_params}},
  .n_tensors = {{#S.tensors}},
  .tensors = gptc_tensors,
  .n_acts = {{sz.n_acts}},
  .n_grad_acts = {{sz.n_grad_acts}},
  .n_eval_acts = {{sz.n_eval_acts}},
  .n_kv = {{sz.n_kv}},
  .n_infer_scratch = {{sz.n_infer_scratch}},
  .logits_offset = {{sz.logits_offset}},
  .eval_logits_offset = {{sz.eval_logits_offset}},
  .forward = gptc_forward,
  .backward = gptc_backward,
  .forward_eval = gptc_forward_eval,
  .grad_sq_norm = {{prof and "gptc_prof_grad_sq_norm" or "gptc_grad_sq_norm"}},
  .adamw = {{prof and "gptc_prof_adamw" or "gptc_adamw"}},
  .infer = gptc_infer,
  .adamw_range = gptc_adamw_range,
};

__attribute__((visibility("default"))) const gptc_model *gptc_model_get(void) { return &gptc_the_model; }
