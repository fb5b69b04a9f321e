/* ---- softmax cross-entropy over V={{k.V}} for M={{k.M}} rows; targets < 0 are ignored ---- */
KERNEL real {{k.fn}}_forward(const real *logits, real *lse, real *losses, const int32_t *targets) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < {{k.M}}; r++) {
    if (targets[r] < 0) {
      lse[r] = 0;
      losses[r] = 0;
      continue;
    }
    const real *x = logits + (size_t)r * {{k.V}};
    real mx = vec_max(x, {{k.V}});
    real l = mx + log_r(vec_sum_exp(x, mx, {{k.V}}));
    lse[r] = l;
    losses[r] = l - x[targets[r]];
  }
  double sum = 0;
  int n = 0;
  for (int r = 0; r < {{k.M}}; r++)
    if (targets[r] >= 0) {
      sum += losses[r];
      n++;
    }
  return n ? (real)(sum / n) : 0;
}
% if k.backward then

/* in place: logits (M, V) become d(loss_scale * mean loss)/d(logits) =
 * (softmax - onehot(target)) * loss_scale / n_valid; ignored rows get 0 */
KERNEL void {{k.fn}}_backward(real *logits, const real *lse, const int32_t *targets, float loss_scale) {
  int n = 0;
  for (int r = 0; r < {{k.M}}; r++) n += targets[r] >= 0;
  real g = n ? (real)loss_scale / n : 0;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < {{k.M}}; r++) {
    real *x = logits + (size_t)r * {{k.V}};
    if (targets[r] < 0) {
      for (int v = 0; v < {{k.V}}; v++) x[v] = 0;
      continue;
    }
    real l = lse[r];
    for (int v = 0; v < {{k.V}}; v++) x[v] = exp_r(x[v] - l) * g;
    x[targets[r]] -= g;
  }
}
% end
