/* cpu_bf16: the bf16 GEMM path for this CPU (cpu_bf16.h). Asks cpuid and
 * XGETBV, never assumes: a CPU may have the instructions while the OS does
 * not save their registers, and Linux hands out AMX's tile data only on
 * request (arch_prctl), which a kernel or seccomp policy may refuse. */
#include "cpu_bf16.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* XCR0: the register state the OS saves (0 where XGETBV is not enabled) */
static unsigned long long xcr0(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; /* OSXSAVE */
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (unsigned long long)hi << 32 | lo;
}

/* leaf 7 sub-leaf `sub`: 0 where the CPU has no such leaf */
static void leaf7(unsigned sub, unsigned r[4]) {
  r[0] = r[1] = r[2] = r[3] = 0;
  if (__get_cpuid_max(0, NULL) >= 7) __cpuid_count(7, sub, r[0], r[1], r[2], r[3]);
}

static int has_avx512bf16(char *why, int n) {
  unsigned l0[4], l1[4];
  leaf7(0, l0);
  leaf7(1, l1);
  if (!(l0[1] & (1u << 16)) || !(l1[0] & (1u << 5))) { /* AVX512F: EBX 16; AVX512_BF16: EAX 5 */
    snprintf(why, (size_t)n, "this CPU lacks AVX512-BF16 (cpuid leaf 7)");
    return 0;
  }
  if ((xcr0() & 0xe6) != 0xe6) { /* SSE, AVX, opmask, ZMM halves */
    snprintf(why, (size_t)n, "the OS does not save the AVX-512 registers (XCR0)");
    return 0;
  }
  return 1;
}

/* arch_prctl once per process: the answer does not change */
static int amx_granted = -1;

static int has_amx(char *why, int n) {
  unsigned l0[4];
  leaf7(0, l0);
  if (!(l0[3] & (1u << 22)) || !(l0[3] & (1u << 24))) { /* AMX-BF16: EDX 22; AMX-TILE: EDX 24 */
    snprintf(why, (size_t)n, "this CPU lacks AMX-BF16 or AMX-TILE (cpuid leaf 7)");
    return 0;
  }
  if ((xcr0() & 0x60000) != 0x60000) { /* XTILECFG, XTILEDATA */
    snprintf(why, (size_t)n, "the OS does not save the AMX tile state (XCR0)");
    return 0;
  }
  if (amx_granted < 0) amx_granted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
  if (!amx_granted) {
    snprintf(why, (size_t)n, "the kernel refused arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)");
    return 0;
  }
  return 1;
}
#else
static int has_avx512bf16(char *why, int n) {
  snprintf(why, (size_t)n, "AVX512-BF16 is an x86-64 extension");
  return 0;
}
static int has_amx(char *why, int n) {
  snprintf(why, (size_t)n, "AMX is an x86-64 extension");
  return 0;
}
#endif

int cpu_bf16_has(const char *path, char *why, int n) {
  if (n > 0) why[0] = 0;
  if (!strcmp(path, "portable")) return 1;
  if (!strcmp(path, "avx512bf16")) return has_avx512bf16(why, n);
  if (!strcmp(path, "amx")) return has_amx(why, n);
  return -1;
}

const char *cpu_bf16_path(void) {
  static const char *const paths[] = {"amx", "avx512bf16", "portable"};
  char why[160];
  const char *force = getenv("GPTC_BF16_PATH");
  if (force && *force) {
    for (int i = 0; i < 3; i++)
      if (!strcmp(force, paths[i])) {
        if (cpu_bf16_has(paths[i], why, sizeof why) == 1) return paths[i];
        util_err("GPTC_BF16_PATH=%s: %s", force, why);
        return NULL;
      }
    util_err("GPTC_BF16_PATH='%s' is not a bf16 path (portable, avx512bf16 or amx)", force);
    return NULL;
  }
  for (int i = 0; i < 3; i++)
    if (cpu_bf16_has(paths[i], why, sizeof why) == 1) return paths[i];
  return "portable";
}
