/* lx: the embedded Lua interpreter that runs configs and the generator.
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

lua_State *lx_new(void);
/* require(module) and call module[fn] with `nargs` arguments already pushed
 * on the stack; leaves `nres` results. On error returns -1 with util_err set
 * to the Lua message (traceback stripped to one line). */
int lx_call(lua_State *L, const char *module, const char *fn, int nargs, int nres);

#endif
