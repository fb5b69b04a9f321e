/* export_target: see export_target.h. One table per host architecture: the
 * x86-64 micro-architecture levels (psABI x86-64-v2/v3/v4) are the portable
 * names for "SSE4.2", "AVX2+FMA" and "AVX-512", and GCC's
 * __builtin_cpu_supports knows them by the same names. */
#include "export_target.h"

#include <stdio.h>
#include <string.h>

#include "jit.h"
#include "util.h"

/* The flag strings are jit.h's (one definition each): JIT_FLAGS_COMMON
 * plus the -march of the variant or the baseline. */
#if defined(__x86_64__)
static const export_variant target_x86[] = {
    {"x86-64-v2", "_v2", "SSE4.2, 128-bit vectors", "x86-64-v2", JIT_FLAGS_X86_V2, 16},
    {"x86-64-v3", "_v3", "AVX2+FMA, 256-bit vectors", "x86-64-v3", JIT_FLAGS_X86_V3, 32},
    {"x86-64-v4", "_v4", "AVX-512, 512-bit vectors", "x86-64-v4", JIT_FLAGS_X86_V4, 64},
};
#endif
/* NEON is part of armv8-a: one variant runs on every aarch64 CPU. */
static const export_variant target_a64[] = {
    {"aarch64", "_a64", "NEON, 128-bit vectors", NULL, JIT_FLAGS_A64, 16},
};
/* Today's export: everything -march=native, linked dynamically; the width
 * is filled in from the host (gen_vec_bytes) by export.c. */
static const export_variant target_native[] = {
    {"native", "_native", "-march=native of the exporting host", NULL, JIT_FLAGS_NATIVE, 0},
};

static const export_target targets[] = {
#if defined(__x86_64__)
    {"portable", target_x86, 3, JIT_FLAGS_X86_BASE, 1, 0},
    {"native", target_native, 1, JIT_FLAGS_NATIVE, 0, 0},
    {"x86-64-v2", target_x86, 1, JIT_FLAGS_X86_BASE, 1, 0},
    {"x86-64-v3", target_x86 + 1, 1, JIT_FLAGS_X86_BASE, 1, 0},
    {"x86-64-v4", target_x86 + 2, 1, JIT_FLAGS_X86_BASE, 1, 0},
    {"aarch64", target_a64, 1, JIT_FLAGS_A64, 1, 1},
#elif defined(__aarch64__)
    {"portable", target_a64, 1, JIT_FLAGS_A64, 1, 0},
    {"native", target_native, 1, JIT_FLAGS_NATIVE, 0, 0},
    {"aarch64", target_a64, 1, JIT_FLAGS_A64, 1, 0},
#else
    {"native", target_native, 1, JIT_FLAGS_NATIVE, 0, 0},
#endif
};
#define TARGET_N ((int)(sizeof targets / sizeof targets[0]))

const char *export_target_names(void) {
  static char names[256];
  if (!names[0])
    for (int i = 0; i < TARGET_N; i++)
      snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", targets[i].name);
  return names;
}

int export_target_find(const char *name, const export_target **t) {
  if (!name) name = TARGET_N > 1 ? "portable" : "native";
  for (int i = 0; i < TARGET_N; i++)
    if (!strcmp(targets[i].name, name)) {
      *t = &targets[i];
      return 0;
    }
  return util_err("--target '%s': not a target this gptc builds (valid: %s)", name, export_target_names());
}
