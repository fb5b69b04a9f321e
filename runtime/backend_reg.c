/* backend_reg: the backend registry, backend_open (backend.h). The one
 * file that knows every backend; the backends themselves call only the
 * helpers in backend.c, so nothing calls back up into the registry. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu.h"
#include "backend_cuda.h"
#include "cuda.h"
#include "util.h"

int backend_open(const cfg_t *cfg, const char *device, backend **out) {
  *out = NULL;
  if (!device || !strcmp(device, "cpu")) return backend_cpu_open(cfg, out);
  if (!strcmp(device, "cuda")) {
    if (cuda_probe()) return util_err("--device cuda: %s (use --device cpu or auto)", util_errmsg());
    return backend_cuda_open(cfg, out);
  }
  if (!strcmp(device, "auto")) {
    if (cuda_probe() == 0) return backend_cuda_open(cfg, out);
    fprintf(stderr, "gptc: --device auto: no usable CUDA GPU (%s); running on the CPU\n", util_errmsg());
    util_errclear();
    return backend_cpu_open(cfg, out);
  }
  return util_err("device '%s' is not known (use cpu, cuda or auto)", device);
}
