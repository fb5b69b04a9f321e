% local d = S.dims
% local sz = sizes
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
  .grad_sq_norm = gptc_grad_sq_norm,
  .adamw = gptc_adamw,
  .infer = gptc_infer,
  .adamw_range = gptc_adamw_range,
};

__attribute__((visibility("default"))) const gptc_model *gptc_model_get(void) { return &gptc_the_model; }
