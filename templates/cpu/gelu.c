/* ---- GELU, tanh approximation (GPT-2): N={{k.N}} elements ---- */
KERNEL void {{k.fn}}_forward(real *out, const real *inp) {
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < {{k.N}}; c0 += {{k.CH}}) {
    int n = c0 + {{k.CH}} <= {{k.N}} ? {{k.CH}} : {{k.N}} - c0;
    for (int i = c0; i < c0 + n; i++) {
      real x = inp[i];
      out[i] = (real)0.5 * x * (1 + tanh_r(GELU_S * (x + GELU_A * x * x * x)));
    }
  }
}
% if k.backward then

/* d (N) *= gelu'(inp), in place */
KERNEL void {{k.fn}}_backward(real *d, const real *inp) {
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < {{k.N}}; c0 += {{k.CH}}) {
    int n = c0 + {{k.CH}} <= {{k.N}} ? {{k.CH}} : {{k.N}} - c0;
    for (int i = c0; i < c0 + n; i++) {
      real x = inp[i];
      real th = tanh_r(GELU_S * (x + GELU_A * x * x * x));
      real du = GELU_S * (1 + 3 * GELU_A * x * x);
      d[i] *= (real)0.5 * (1 + th) + (real)0.5 * x * (1 - th * th) * du;
    }
  }
}
% end
