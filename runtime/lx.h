/* lx: the embedded Lua interpreter that runs configs and the generator,
 * and the Lua-side declarations of the bridge (gen.h). Only the bridge's
 * files (gen*.c, lx.c, lit.c) and tests include this header.
 *
 * lx_new() opens the standard libraries and installs a package searcher so
 * `require "shapes"` finds gen/shapes.lua in the embedded files (or under
 * $GPTC_GEN_DIR). It also provides the global table `gptc` with:
 *   gptc.read(name)  -> contents of an embedded file, e.g. "templates/cpu/model.c"
 *   gptc.version     -> the gptc version string
 *   gptc.mem_total   -> physical memory in bytes (for the config memory check)
 *   gptc.closest(name, list) -> the entry of list closest to a misspelled name, or nil
 *                       (util_closest: "did you mean" in config errors) */
#ifndef GPTC_LX_H
#define GPTC_LX_H

#include <lua.h>

#include "gen.h"

/* The generator's Lua modules (gen/NAME.lua), the one place the bridge
 * spells their names. */
#define GEN_MOD_CONFIG "config"
#define GEN_MOD_SHAPES "shapes"
#define GEN_MOD_TEMPLATE "template"
#define GEN_MOD_EMIT "cpu.emit"       /* the CPU source: gen/cpu/emit.lua */
#define GEN_MOD_EMIT_CUDA "cuda.emit" /* the CUDA source: gen/cuda/emit.lua */
#define GEN_MOD_BENCH "bench"
#define GEN_MOD_TUNE "tune"
#define GEN_MOD_QUANT "quant"

/* Every state has a memory cap (LX_GEN_MEM for the generator's own code). */
#define LX_GEN_MEM ((size_t)1 << 30) /* gpt2-124m generates in under 40 MB */
/* Limits for states that run a config or read a checkpoint's config: memory
 * beyond what the state uses already, Lua instructions and CPU time (a
 * config is a few lines; the shipped ones take under 0.01 s). */
#define LX_CFG_MEM ((size_t)64 << 20)
#define LX_CFG_INSTRUCTIONS 20000000LL
#define LX_CFG_SECONDS 2.0 /* thread CPU time; errors can be costlier than instructions */

lua_State *lx_new(void);
/* Arms the config limits on `L` from here to lua_close: a C count hook that,
 * once the budget (instructions or CPU time) is spent, fires on every
 * instruction (no pcall or metamethod escapes it), and the LX_CFG_MEM cap. `where` names the config
 * in the limits' messages ("X: config ran too long (instruction limit)" or "(time limit)",
 * "X: uses more than N MB (memory limit)"). */
void lx_sandbox(lua_State *L, const char *where);
/* require(module) and call module[fn] with `nargs` arguments already pushed
 * on the stack; leaves `nres` results. On error returns -1 with util_err set
 * to the Lua message (traceback stripped to one line). */
int lx_call(lua_State *L, const char *module, const char *fn, int nargs, int nres);
/* lua_pcall of the function below `nargs` arguments, with lx_call's error
 * handling (one-line message, the limits named, no metamethods). */
int lx_pcall(lua_State *L, int nargs, int nres);

/* Pushes the config as a Lua table (the generator's input; gen_cfg.c). */
void cfg_push(lua_State *L, const cfg_t *cfg);

/* Sets the fields of the options table on the top of L's stack. */
typedef void gen_opts_fn(lua_State *L, const void *arg);

/* Sets the host's fields of the options table on the top of L's stack:
 * real = "float", vec_bytes, threads (the processor count). */
void gen_host_opts(lua_State *L);

/* One generated source from gen/<module>.lua: header(cfg, hash, opts) ..
 * body(cfg, opts), hash = SHA-256 of the body (a header that takes no opts
 * ignores them). *src is malloc'ed. */
int gen_render(const cfg_t *cfg, const char *module, gen_opts_fn *fill, const void *arg, char **src, size_t *len,
               char hash[65]);

/* gen_units for any module with a split(cfg, opts): glue_header 1 puts the
 * header above the last unit (the CPU's glue), 0 leaves the units as the
 * module returned them (the CUDA kernels: gen_cuda_units). */
int gen_units_render(const cfg_t *cfg, const char *module, gen_opts_fn *fill, const void *arg, int glue_header,
                     char **src, size_t *len, char hash[65], gen_unit **units, int *n);

#endif
