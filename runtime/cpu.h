/* cpu: JIT for the generated C. Generates the source for a config, compiles
 * it with the system compiler into a shared object cached by content hash
 * under util_cache_dir(), dlopens it and checks its ABI. */
#ifndef GPTC_CPU_H
#define GPTC_CPU_H

#include "cfg.h"
#include "model.h"

typedef struct {
  const gptc_model *model;
  void *handle;       /* dlopen handle */
  char so_path[4096]; /* the cached shared object */
  char src_path[4096];/* the generated source next to it */
  int compiled;       /* 1 when this call ran the compiler, 0 on a cache hit */
} cpu_module;

int cpu_load(const cfg_t *cfg, cpu_module *mod);
void cpu_unload(cpu_module *mod);
/* Sets the OpenMP thread count used by generated kernels (0 = default). */
void cpu_set_threads(int n);

#endif
