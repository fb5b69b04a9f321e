/* fuzz: what the libFuzzer targets in tests/fuzz share. Each target is one
 * LLVMFuzzerTestOneInput; a broken property is a finding, reported through
 * fuzz_fail (abort, so libFuzzer saves the input as crash-*). */
#ifndef GPTC_FUZZ_H
#define GPTC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cfg.h"

#define fuzz_fail(...)                                                         \
  do {                                                                         \
    fprintf(stderr, "fuzz finding (%s:%d): ", __FILE__, __LINE__);             \
    fprintf(stderr, __VA_ARGS__);                                              \
    fputc('\n', stderr);                                                       \
    abort();                                                                   \
  } while (0)

/* A private scratch directory for this process under $TMPDIR (build/fuzz.sh
 * points it at tmpfs, where the atomic writes' fsyncs cost nothing, and
 * removes it afterwards); created on first use. */
const char *fuzz_dir(void);
/* Replaces the file `name` in fuzz_dir() with `data` and returns its path
 * (valid until the next call with the same name). */
const char *fuzz_file(const char *name, const uint8_t *data, size_t size);

/* The config targets' property, for a loader `load` (cfg_load_string or
 * cfg_load_data): a rejected input has a message; an accepted config
 * serializes to text that `load` reads back to the same serialization. */
void fuzz_config_roundtrip(const uint8_t *data, size_t size, const char *name,
                           int (*load)(const char *src, const char *name, cfg_t *cfg));

#endif
