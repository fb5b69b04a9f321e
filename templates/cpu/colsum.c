/* bias gradient: db (N={{k.N}}) += column sums of dout (M={{k.M}}, N={{k.N}}); each thread owns
 * a slice of columns and adds the rows in order */
KERNEL void {{k.fn}}(real *db, const real *dout) {
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < {{k.N}}; c0 += {{k.CW}})
    for (int r = 0; r < {{k.M}}; r++) {
      const real *d = dout + (size_t)r * {{k.N}};
      for (int c = c0; c < c0 + {{k.CW}} && c < {{k.N}}; c++) db[c] += d[c];
    }
}
