/* fuzzutil: see fuzz.h. */
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

const char *fuzz_dir(void) {
  static char dir[512];
  if (!dir[0]) {
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/gptc-fuzz-XXXXXX", base);
    if (!mkdtemp(dir)) fuzz_fail("cannot create a scratch directory under %s", base);
  }
  return dir;
}

const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
  FILE *f = fopen(path, "wb");
  if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) fuzz_fail("cannot write %s", path);
  return path;
}
