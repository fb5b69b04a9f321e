/* cpu: JIT for the generated C. Generates the source for a config, compiles
 * each kernel instance on its own into an object cached by content hash
 * under util_cache_dir()/obj, links them into a shared object cached under
 * util_cache_dir()/cpu, dlopens it and checks its ABI. cpu_build compiles a
 * whole generated source at once (benchmarks, tests, the single-unit
 * reference a model's units must match bit for bit). */
#ifndef GPTC_CPU_H
#define GPTC_CPU_H

#include "cfg.h"
#include "model.h"

typedef struct {
  const gptc_model *model;
  void *handle;       /* dlopen handle */
  char so_path[4096]; /* the cached shared object */
  char src_path[4096];/* the generated source next to it */
  int compiled;       /* 1 when this call compiled or linked, 0 on a cache hit */
  int n_units;        /* the model's compilation units: its kernel instances and the glue */
  int units_compiled; /* how many of them this call compiled (the rest came from the cache) */
} cpu_module;

/* One compilation unit of a model, for `gptc gen --explain`. */
typedef struct {
  char name[128]; /* the kernel instance, or "model" (the glue: passes, AdamW, inference) */
  char key[65];   /* its object: util_cache_dir()/obj/KEY.o */
  int cached;     /* 1 when that object is in the cache and whole */
} cpu_unit_info;

/* A compiled, loaded object of some generated source. */
typedef struct {
  void *handle;        /* dlopen handle */
  char so_path[4096];  /* the cached shared object: util_cache_dir()/KIND/KEY.so */
  char src_path[4096]; /* the source next to it: KEY.c */
  int compiled;        /* 1 when this call ran the compiler, 0 on a cache hit */
} cpu_object;

/* Called on every object opened (cached or fresh): 0 keeps it, -1 with
 * util_err rejects it (a rejected cached object is rebuilt once). */
typedef int (*cpu_check_fn)(void *handle, const char *so_path, void *ctx);

/* Compiles `src` with $CC and JIT_FLAGS_SO (jit.h) into util_cache_dir()/KIND/,
 * keyed by jit_key (source, compiler identity, flags, CPU), or reuses the cached
 * object; dlopens it and runs `check` (may be NULL). -1 with util_err. */
int cpu_build(const char *src, size_t len, const char *kind, cpu_check_fn check, void *ctx, cpu_object *obj);
void cpu_object_close(cpu_object *obj);

/* Generates cfg's source as units (one per kernel instance, and the glue),
 * compiles those not in util_cache_dir()/obj/ (in parallel, one compiler
 * per online CPU), links them into util_cache_dir()/cpu/ (reused when the
 * same units were linked before), dlopens the model and checks its ABI. */
int cpu_load(const cfg_t *cfg, cpu_module *mod);
/* cfg's units as cpu_load would build them, each with its key and whether
 * its object is cached; *linked says whether the linked model is. Compiles
 * nothing. *units is malloc'ed. */
int cpu_explain(const cfg_t *cfg, cpu_unit_info **units, int *n, int *linked);
void cpu_unload(cpu_module *mod);
/* Sets the OpenMP thread count used by generated kernels (0 = default). */
void cpu_set_threads(int n);

#endif
