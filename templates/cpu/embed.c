/* ---- token + position embedding: out (B={{k.B}}, T={{k.T}}, C={{k.C}}) = wte[inputs] + wpe[t] ---- */
KERNEL void {{k.fn}}_forward(real *out, const real *wte, const real *wpe, const int32_t *inputs, gptc_rng rng) {
% if p == 0 then
  (void)rng;
% end
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < {{k.B * k.T}}; bt++) {
    const real *we = wte + (size_t)inputs[bt] * {{k.C}};
    const real *pe = wpe + (size_t)(bt % {{k.T}}) * {{k.C}};
    real *o = out + (size_t)bt * {{k.C}};
    for (int c = 0; c < {{k.C}}; c++) o[c] = we[c] + pe[c];
% if p > 0 then
    if (rng.train) {
      uint32_t w[{{k.C + 128}}];
      int s = dropout_words(rng, {{k.site}}, (uint64_t)bt * {{k.C}}, {{k.C}}, w);
      for (int c = 0; c < {{k.C}}; c++) o[c] = w[s + c] >= DROP_THRESHOLD ? o[c] * DROP_SCALE : 0;
    }
% end
  }
}
% if k.backward then

/* dwte[inputs[b,t]] += dout[b,t], dwpe[t] += dout[b,t]. Each thread owns a
 * slice of channels and walks every position in order, so each sum has one
 * fixed order. dout (B, T, C) is overwritten (dropout applied in place). */
KERNEL void {{k.fn}}_backward(real *dwte, real *dwpe, real *dout, const int32_t *inputs, gptc_rng rng) {
%   if p > 0 then
  if (rng.train) {
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < {{k.B * k.T}}; bt++) {
      real *d = dout + (size_t)bt * {{k.C}};
      uint32_t w[{{k.C + 128}}];
      int s = dropout_words(rng, {{k.site}}, (uint64_t)bt * {{k.C}}, {{k.C}}, w);
      for (int c = 0; c < {{k.C}}; c++) d[c] = w[s + c] >= DROP_THRESHOLD ? d[c] * DROP_SCALE : 0;
    }
  }
%   else
  (void)rng;
%   end
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < {{k.C}}; c0 += {{k.CW}}) {
    for (int bt = 0; bt < {{k.B * k.T}}; bt++) {
      const real *d = dout + (size_t)bt * {{k.C}};
      real *gw = dwte + (size_t)inputs[bt] * {{k.C}};
      real *gp = dwpe + (size_t)(bt % {{k.T}}) * {{k.C}};
      for (int c = c0; c < c0 + {{k.CW}} && c < {{k.C}}; c++) {
        gw[c] += d[c];
        gp[c] += d[c];
      }
    }
  }
}
% end
