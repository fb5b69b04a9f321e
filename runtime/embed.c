/* embed: see embed.h. */
#include "embed.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

int embed_get(const char *name, const char **data, size_t *len, int *owned) {
  *owned = 0;
  const char *dev = getenv("GPTC_GEN_DIR");
  if (dev && *dev && (!strncmp(name, "gen/", 4) || !strncmp(name, "templates/", 10))) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dev, name);
    if (util_file_exists(path)) {
      char *buf;
      if (util_read_file(path, &buf, len)) return -1;
      *data = buf;
      *owned = 1;
      return 0;
    }
  }
  for (const embed_file *f = embed_files; f->name; f++) {
    if (strcmp(f->name, name) == 0) {
      *data = f->start;
      *len = (size_t)(f->end - f->start);
      return 0;
    }
  }
  return util_err("%s: no such embedded file (rebuild gptc, or check GPTC_GEN_DIR)", name);
}
