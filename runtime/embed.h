/* embed: files compiled into the binary (gen/ Lua sources, templates/, data/gpt2/).
 *
 * GPTC_GEN_DIR, when set, names a source tree whose files take precedence,
 * so the generator and templates can be edited without a rebuild. */
#ifndef GPTC_EMBED_H
#define GPTC_EMBED_H

#include <stddef.h>

typedef struct {
  const char *name; /* path relative to the source root, e.g. "gen/shapes.lua" */
  const char *start, *end;
} embed_file;

extern const embed_file embed_files[];

/* Looks `name` up: $GPTC_GEN_DIR/name first (gen/ and templates/ only),
 * then the embedded table. The returned data is NUL-terminated. If *owned is
 * set on return, the caller frees *data. Returns -1 with util_err if absent. */
int embed_get(const char *name, const char **data, size_t *len, int *owned);

#endif
