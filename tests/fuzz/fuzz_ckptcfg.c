/* fuzz_ckptcfg: cfg_load_data, the reader of a checkpoint's stored config
 * (runtime/lit.c's table literal, then gen/config.lua's schema). Unlike the
 * config target this one is all instrumented C up to the schema check, so
 * libFuzzer sees the parser. Properties: a rejected input has a message; an
 * accepted one serializes (cfg_serialize) to source that cfg_load_data reads
 * back to the same serialization. Nothing is ever run: a hang is a finding. */
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
  if (cfg_load_data(src, "fuzz checkpoint", &c)) {
    if (!strcmp(util_errmsg(), "unknown error")) fuzz_fail("rejected without a message");
    util_errclear();
    free(src);
    return 0;
  }
  char *ser = cfg_serialize(&c);
  if (!ser) fuzz_fail("cannot serialize an accepted config: %s", util_errmsg());
  if (cfg_load_data(ser, "fuzz serialized", &c2)) fuzz_fail("its serialization does not read back: %s", util_errmsg());
  char *ser2 = cfg_serialize(&c2);
  if (!ser2 || strcmp(ser, ser2)) fuzz_fail("serialization changed:\n%s\n---\n%s", ser, ser2 ? ser2 : "(null)");
  free(ser2);
  free(ser);
  free(src);
  return 0;
}
