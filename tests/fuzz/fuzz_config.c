/* fuzz_config: cfg_load_string, i.e. the Lua sandbox and the schema in
 * gen/config.lua. Properties: a rejected config has a message; an accepted
 * one serializes (cfg_serialize) to source that loads again to the same
 * serialization. Hangs and memory blowups are findings (libFuzzer's
 * -timeout and -rss_limit_mb). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_config_roundtrip(data, size, "fuzz.lua", cfg_load_string);
  return 0;
}
