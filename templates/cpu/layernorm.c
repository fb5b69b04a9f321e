/* ---- LayerNorm over C={{k.C}} for N={{k.N}} rows (eps 1e-5, biased variance) ---- */
KERNEL void {{k.fn}}_forward(real *out, real *mean, real *rstd, const real *inp, const real *w, const real *b) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < {{k.N}}; r++) {
    const real *x = inp + (size_t)r * {{k.C}};
    real m = vec_sum(x, {{k.C}}) / {{k.C}};
    real v = vec_sqdev(x, m, {{k.C}}) / {{k.C}};
    real s = 1 / sqrt_r(v + {{lit(1e-5)}});
    real *o = out + (size_t)r * {{k.C}};
    for (int c = 0; c < {{k.C}}; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
    mean[r] = m;
    rstd[r] = s;
  }
}
% for _, acc in ipairs(k.bwd) do

/* dinp {{acc and "+=" or "="}} rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * w;
 * dw += sum over rows of dout * xhat, db += sum of dout (column slices, rows in order) */
KERNEL void {{k.fn}}_backward{{acc and "_acc" or ""}}(real *dinp, real *dw, real *db, const real *dout, const real *inp,
                        const real *mean, const real *rstd, const real *w) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < {{k.N}}; r++) {
    const real *x = inp + (size_t)r * {{k.C}}, *dy = dout + (size_t)r * {{k.C}};
    real m = mean[r], s = rstd[r];
    real a1[{{VL}}] = {0}, a2[{{VL}}] = {0};
    int c = 0;
    for (; c + {{VL}} <= {{k.C}}; c += {{VL}})
      for (int j = 0; j < {{VL}}; j++) {
        real g = dy[c + j] * w[c + j];
        a1[j] += g;
        a2[j] += g * (x[c + j] - m) * s;
      }
    for (int j = 0; c + j < {{k.C}}; j++) {
      real g = dy[c + j] * w[c + j];
      a1[j] += g;
      a2[j] += g * (x[c + j] - m) * s;
    }
    real mg = lanes_total(a1) / {{k.C}}, mgx = lanes_total(a2) / {{k.C}};
    real *dx = dinp + (size_t)r * {{k.C}};
    for (c = 0; c < {{k.C}}; c++) dx[c] {{acc and "+=" or "="}} s * (dy[c] * w[c] - mg - (x[c] - m) * s * mgx);
  }
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < {{k.C}}; c0 += {{k.CW}}) {
    for (int r = 0; r < {{k.N}}; r++) {
      const real *x = inp + (size_t)r * {{k.C}}, *dy = dout + (size_t)r * {{k.C}};
      real m = mean[r], s = rstd[r];
      for (int c = c0; c < c0 + {{k.CW}} && c < {{k.C}}; c++) {
        dw[c] += dy[c] * (x[c] - m) * s;
        db[c] += dy[c];
      }
    }
  }
}
% end
