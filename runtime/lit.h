/* lit: Lua table literals read as data. A checkpoint stores its config as
 * the Lua source cfg_serialize writes; lit parses that form without the
 * interpreter running anything and pushes the value it denotes.
 *
 * Grammar (a strict subset of Lua; nothing else is accepted):
 *   chunk  := ['return'] value EOF
 *   value  := table | string | number | 'true' | 'false'
 *   table  := '{' [field {(',' | ';') field} [',' | ';']] '}'
 *   field  := Name '=' value | '[' (string | number) ']' '=' value | value
 *   string := "..." or '...' with Lua's escapes (\n \t \\ \" \ddd \xXX \z
 *             \u{XXX} and a backslash before a newline); no long brackets
 *   number := ['-'] a Lua numeral (decimal or hex, integer or float), or
 *             ['-'] 'inf' | 'nan' (the forms %.17g gives non-finite floats)
 * Comments: '--' to the end of the line. No calls, operators, names as
 * values, nil or varargs. Tables nest at most LIT_MAX_DEPTH deep and a key
 * may not repeat. The value grammar stands alone too (`--set
 * FIELD=VALUE`): lit_push(L, "64", 2, "--set emb_dim") pushes 64. */
#ifndef GPTC_LIT_H
#define GPTC_LIT_H

#include <stddef.h>

#include <lua.h>

#define LIT_MAX_DEPTH 16

/* Parses src[0..n) and pushes its value on L; on failure pushes nothing and
 * returns -1 with util_err set to "<where>: line N: <rule broken>". The
 * state's memory cap (lx) bounds what a large literal can build. */
int lit_push(lua_State *L, const char *src, size_t n, const char *where);

#endif
