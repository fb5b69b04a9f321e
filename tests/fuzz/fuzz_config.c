/* fuzz_config: cfg_load_string, i.e. the Lua sandbox and the schema in
 * gen/config.lua. Properties: a rejected config has a message; an accepted
 * one serializes (cfg_serialize) to source that loads again to the same
 * serialization. Hangs and memory blowups are findings (libFuzzer's
 * -timeout and -rss_limit_mb). */
#include <string.h>

#include "cfg.h"
#include "fuzz.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *src = malloc(size + 1);
  if (!src) fuzz_fail("out of memory");
  memcpy(src, data, size);
  src[size] = '\0';
  util_errclear();
  cfg_t c, c2;
  if (cfg_load_string(src, "fuzz.lua", &c)) {
    if (!strcmp(util_errmsg(), "unknown error")) fuzz_fail("rejected without a message");
    util_errclear();
    free(src);
    return 0;
  }
  char *ser = cfg_serialize(&c);
  if (!ser) fuzz_fail("cannot serialize an accepted config: %s", util_errmsg());
  if (cfg_load_string(ser, "fuzz serialized", &c2)) fuzz_fail("its serialization does not load: %s", util_errmsg());
  char *ser2 = cfg_serialize(&c2);
  if (!ser2 || strcmp(ser, ser2)) fuzz_fail("serialization changed:\n%s\n---\n%s", ser, ser2 ? ser2 : "(null)");
  free(ser2);
  free(ser);
  free(src);
  return 0;
}
