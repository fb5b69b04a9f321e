/* fuzz_ckptcfg: cfg_load_data, the reader of a checkpoint's stored config
 * (runtime/lit.c's table literal, then gen/config.lua's schema). Unlike the
 * config target this one is all instrumented C up to the schema check, so
 * libFuzzer sees the parser. Properties: a rejected input has a message; an
 * accepted one serializes (cfg_serialize) to source that cfg_load_data reads
 * back to the same serialization. Nothing is ever run: a hang is a finding. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_config_roundtrip(data, size, "fuzz checkpoint", cfg_load_data);
  return 0;
}
