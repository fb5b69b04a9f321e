/* ---- optimizer: the parameter tensors walked in chunks of at most {{CHUNK}} floats ---- */
% -- k is nil in a model source. gen/bench.lua sets k.prefix (the names of its
% -- copy), k.generic (the tensor and chunk counts as run-time values, k.n_tensors
% -- and k.n_chunks) and k.update_only (AdamW alone: the norm would be unused)
% local pre = k and k.prefix or ""
% local g = k and k.generic
% local nt = g and k.n_tensors or #S.tensors
% local n_chunks = g and k.n_chunks or n_chunks
/* {offset, numel, first chunk, weight decay} of each tensor, in order */
static const struct {
  size_t offset, numel;
  int chunk0, decay;
} {{pre}}opt_tensors[{{g and "" or nt}}] = {
% for i, t in ipairs(S.tensors) do
  { {{t.offset}}, {{t.numel}}, {{t.chunk0}}, {{t.decay and 1 or 0}} }, /* {{t.name}} */
% end
};

/* the tensor holding chunk c (binary search over first chunks) */
static int {{pre}}opt_tensor_of(int c) {
  int lo = 0, hi = {{nt - 1}};
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if ({{pre}}opt_tensors[mid].chunk0 <= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
% if not (k and k.update_only) then

/* sum of squares of every gradient: chunks in parallel (each in double, in
 * order), then the {{n_chunks}} chunk sums added in order */
static double gptc_grad_sq_norm(const real *grads) {
  double part[{{n_chunks}}];
#pragma omp parallel for schedule(dynamic, 4)
  for (int c = 0; c < {{n_chunks}}; c++) {
    int ti = opt_tensor_of(c);
    size_t i0 = opt_tensors[ti].offset + (size_t)(c - opt_tensors[ti].chunk0) * {{CHUNK}};
    size_t n = min_z({{CHUNK}}, opt_tensors[ti].offset + opt_tensors[ti].numel - i0);
    const real *g = grads + i0;
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; j++) acc[j] += (double)g[i + j] * g[i + j];
    for (int j = 0; i + j < n; j++) acc[j] += (double)g[i + j] * g[i + j];
    double s = 0;
    for (int j = 0; j < 8; j++) s += acc[j];
    part[c] = s;
  }
  double total = 0;
  for (int c = 0; c < {{n_chunks}}; c++) total += part[c];
  return total;
}
% end

/* AdamW with PyTorch's semantics: g = grad * grad_scale; p *= 1 - lr * wd
 * (decay tensors only); m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2;
 * p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
 * One step's constants, from its arguments: */
typedef struct {
  real step, bc2_sqrt, gs, eps, b1c, b2, b2c, keep;
  int lerp_hi; /* torch's lerp switches formula at weight 0.5 */
} {{pre}}adamw_k;

static {{pre}}adamw_k {{pre}}adamw_consts(gptc_adamw_args a) {
  double bc1 = 1 - pow((double)a.beta1, a.t), bc2 = 1 - pow((double)a.beta2, a.t);
  {{pre}}adamw_k k = {(real)(a.lr / bc1), (real)sqrt(bc2), a.grad_scale, a.eps, (real)(1 - (double)a.beta1), a.beta2,
                      (real)(1 - (double)a.beta2), (real)(1 - (double)a.lr * a.weight_decay), 0};
  k.lerp_hi = k.b1c >= (real)0.5;
  return k;
}

/* The update of n consecutive elements of one tensor (dk: its decay factor),
 * the one element loop both entry points run. */
GPTC_INLINE void {{pre}}adamw_span(real *p, const real *g, real *mm, real *vv, size_t n, real dk,
                                   const {{pre}}adamw_k *k) {
  for (size_t i = 0; i < n; i++) {
    real gi = g[i] * k->gs;
    real mi = k->lerp_hi ? gi - (gi - mm[i]) * (1 - k->b1c) : mm[i] + k->b1c * (gi - mm[i]);
    real vi = vv[i] * k->b2 + k->b2c * (gi * gi);
    mm[i] = mi;
    vv[i] = vi;
    p[i] = p[i] * dk - k->step * (mi / (sqrt_r(vi) / k->bc2_sqrt + k->eps));
  }
}

static {{g and "__attribute__((noinline)) " or ""}}void {{pre}}gptc_adamw(real *params, const real *grads, real *m, real *v, gptc_adamw_args a) {
  const {{pre}}adamw_k k = {{pre}}adamw_consts(a);
#pragma omp parallel for schedule(dynamic, 4)
  for (int c = 0; c < {{n_chunks}}; c++) {
    int ti = {{pre}}opt_tensor_of(c);
    size_t i0 = {{pre}}opt_tensors[ti].offset + (size_t)(c - {{pre}}opt_tensors[ti].chunk0) * {{CHUNK}};
    size_t n = min_z({{CHUNK}}, {{pre}}opt_tensors[ti].offset + {{pre}}opt_tensors[ti].numel - i0);
    {{pre}}adamw_span(params + i0, grads + i0, m + i0, v + i0, n, {{pre}}opt_tensors[ti].decay ? k.keep : 1, &k);
  }
}
% if not k then

/* gptc_adamw on the elements [lo, hi) alone, its moments held shard-locally
 * (m[i - lo], v[i - lo]): ZeRO-1 (docs/distributed.md). Each element goes
 * through gptc_adamw's own loop (adamw_span, the same tensor's decay), so
 * the shards together are bitwise its whole update. */
static void gptc_adamw_range(real *params, const real *grads, real *m, real *v, gptc_adamw_args a, size_t lo,
                             size_t hi) {
  const adamw_k k = adamw_consts(a);
#pragma omp parallel for schedule(dynamic, 4)
  for (int c = 0; c < {{n_chunks}}; c++) {
    int ti = opt_tensor_of(c);
    size_t i0 = opt_tensors[ti].offset + (size_t)(c - opt_tensors[ti].chunk0) * {{CHUNK}};
    size_t i1 = i0 + min_z({{CHUNK}}, opt_tensors[ti].offset + opt_tensors[ti].numel - i0);
    if (i0 < lo) i0 = lo;
    if (i1 > hi) i1 = hi;
    if (i0 >= i1) continue;
    adamw_span(params + i0, grads + i0, m + (i0 - lo), v + (i0 - lo), i1 - i0, opt_tensors[ti].decay ? k.keep : 1, &k);
  }
}
% end
