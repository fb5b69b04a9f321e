/* cpu_bf16: which bf16 GEMM path this CPU runs (precision = "bf16" on the
 * CPU), decided once when a source is generated. The paths, fastest first:
 *   amx         tdpbf16ps on 16x32 bf16 tiles (AMX-BF16 + AMX-TILE, the OS
 *               saving the tile state, and arch_prctl(ARCH_REQ_XCOMP_PERM,
 *               XTILEDATA) granted to this process)
 *   avx512bf16  vdpbf16ps (AVX512-BF16, AVX-512 state saved by the OS)
 *   portable    the pair-order kernel in plain C vectors: every host
 * All three read the same pair layout and sum in the order docs/bench-cpu.md
 * gives. GPTC_BF16_PATH=portable|avx512bf16|amx forces one. */
#ifndef GPTC_CPU_BF16_H
#define GPTC_CPU_BF16_H

/* 1 when this CPU (and OS) can run `path`, else 0 with why into why[n]
 * ("" for portable, which every host runs). -1 for a name not a path. */
int cpu_bf16_has(const char *path, char *why, int n);
/* The path to generate: GPTC_BF16_PATH when set, else the fastest this CPU
 * has. NULL with util_err when GPTC_BF16_PATH names an unknown path or one
 * this CPU lacks. */
const char *cpu_bf16_path(void);

#endif
