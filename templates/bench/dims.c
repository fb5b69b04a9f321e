/* ==== run-time shapes ====
 * The generic kernels read every dimension from gd, and each generic thunk
 * fills gd from the `dims` the harness passes at run time, so no shape is a
 * compile-time constant there. One op runs at a time: they all share gd. */
static struct {
  int {{table.concat(fields, ", ")}};
} gd;
