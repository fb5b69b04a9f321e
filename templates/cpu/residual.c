/* ---- residual: out = x + dropout(out), N={{k.N}} elements {{shape_str(k.shape)}} ---- */
% if k.forward_used then
KERNEL void {{k.fn}}_forward(real *out, const real *x, gptc_rng rng, uint32_t site) {
% if p == 0 then
  (void)rng;
  (void)site;
% end
#pragma omp parallel for schedule(static)
  for (size_t i0 = 0; i0 < {{k.N}}; i0 += {{k.CH}}) {
    int n = i0 + {{k.CH}} <= {{k.N}} ? {{k.CH}} : (int)({{k.N}} - i0);
% if p > 0 then
    if (rng.train) {
      uint32_t w[{{k.CH + 128}}];
      int s = dropout_words(rng, site, i0, n, w);
      for (int i = 0; i < n; i++) out[i0 + i] = x[i0 + i] + (w[s + i] >= DROP_THRESHOLD ? out[i0 + i] * DROP_SCALE : 0);
      continue;
    }
% end
    for (int i = 0; i < n; i++) out[i0 + i] += x[i0 + i];
  }
}
% end
% if k.backward then

/* the branch gradient: dbranch = dropout(dout) with the forward's mask; the
 * skip path passes dout through unchanged */
KERNEL void {{k.fn}}_backward(real *dbranch, const real *dout, gptc_rng rng, uint32_t site) {
%   if p == 0 then
  (void)rng;
  (void)site;
%   end
#pragma omp parallel for schedule(static)
  for (size_t i0 = 0; i0 < {{k.N}}; i0 += {{k.CH}}) {
    int n = i0 + {{k.CH}} <= {{k.N}} ? {{k.CH}} : (int)({{k.N}} - i0);
%   if p > 0 then
    if (rng.train) {
      uint32_t w[{{k.CH + 128}}];
      int s = dropout_words(rng, site, i0, n, w);
      for (int i = 0; i < n; i++) dbranch[i0 + i] = w[s + i] >= DROP_THRESHOLD ? dout[i0 + i] * DROP_SCALE : 0;
      continue;
    }
%   end
    for (int i = 0; i < n; i++) dbranch[i0 + i] = dout[i0 + i];
  }
}
% end
