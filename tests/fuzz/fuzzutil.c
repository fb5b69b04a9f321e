/* fuzzutil: see fuzz.h. */
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "util.h"

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

void fuzz_config_roundtrip(const uint8_t *data, size_t size, const char *name,
                           int (*load)(const char *src, const char *name, cfg_t *cfg)) {
  char *src = malloc(size + 1);
  if (!src) fuzz_fail("out of memory");
  memcpy(src, data, size);
  src[size] = '\0';
  util_errclear();
  cfg_t c, c2;
  if (load(src, name, &c)) {
    if (!strcmp(util_errmsg(), "unknown error")) fuzz_fail("rejected without a message");
    util_errclear();
    free(src);
    return;
  }
  char *ser = cfg_serialize(&c);
  if (!ser) fuzz_fail("cannot serialize an accepted config: %s", util_errmsg());
  if (load(ser, "fuzz serialized", &c2)) fuzz_fail("its serialization does not load: %s", util_errmsg());
  char *ser2 = cfg_serialize(&c2);
  if (!ser2 || strcmp(ser, ser2)) fuzz_fail("serialization changed:\n%s\n---\n%s", ser, ser2 ? ser2 : "(null)");
  free(ser2);
  free(ser);
  free(src);
}
