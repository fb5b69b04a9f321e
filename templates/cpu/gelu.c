/* ---- GELU, tanh approximation (GPT-2): N={{k.N}} elements ---- */
KERNEL void {{k.fn}}_forward(real *restrict out, const real *restrict inp) {
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < {{k.N}}; c0 += {{k.CH}}) {
    int n = c0 + {{k.CH}} <= {{k.N}} ? {{k.CH}} : {{k.N}} - c0;
    for (int i = c0; i < c0 + n; i++) out[i] = gelu_r(inp[i]);
  }
}
% if k.backward then

/* d (N) *= gelu'(inp), in place */
KERNEL void {{k.fn}}_backward(real *restrict d, const real *restrict inp) {
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < {{k.N}}; c0 += {{k.CH}}) {
    int n = c0 + {{k.CH}} <= {{k.N}} ? {{k.CH}} : {{k.N}} - c0;
    for (int i = c0; i < c0 + n; i++) d[i] *= gelu_grad_r(inp[i]);
  }
}
% end
