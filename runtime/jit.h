/* jit: the one compiler driver. Everything gptc asks of a C compiler or
 * NVRTC goes through here: which compiler ($CC, $GPTC_CC_AARCH64) and its
 * identity, the flag sets of every target, running it with its output
 * captured (bounded) and folded into one error line, and the content-hash
 * key the caches file compiled code under. Callers (cpu.c: the model, the
 * bench and tune harnesses, the q8 inference step; export.c: exported
 * executables; cuda.c and cuda_nvrtc.c: NVRTC) decide what to compile and
 * where it goes; none of them spells a flag or runs a compiler itself. */
#ifndef GPTC_JIT_H
#define GPTC_JIT_H

#include <stddef.h>
#include <sys/types.h>

#include "util.h"

/* ---- the flag sets ---------------------------------------------------------------
 * No -ffast-math anywhere: NaN checks and exact IEEE behaviour matter.
 * -fno-math-errno only lets sqrt vectorize (errno is never read); OpenMP
 * runs the kernels' parallel loops. */
#define JIT_FLAGS_COMMON "-O3 -fno-math-errno -fopenmp"

/* The host JIT (cpu.c: models, the bench and tune harnesses, `gptc sample
 * --quant q8`): this CPU's whole instruction set. The same flags as
 * JIT_FLAGS_NATIVE plus -fPIC, spelled in their historical order because
 * the string is part of every cached object's key. */
#if defined(__x86_64__)
#define JIT_FLAGS_HOST "-O3 -march=native -mprefer-vector-width=512 -fno-math-errno -fopenmp -fPIC"
#else
#define JIT_FLAGS_HOST "-O3 -march=native -fno-math-errno -fopenmp -fPIC"
#endif
/* a whole source straight to a shared object; also the link of the units */
#define JIT_FLAGS_SO JIT_FLAGS_HOST " -shared"
/* one unit to an object: the same code generation flags as JIT_FLAGS_SO */
#define JIT_FLAGS_OBJ JIT_FLAGS_HOST " -c"

/* Exported executables (export_target.c's table, docs/export.md): native
 * has the host JIT's code generation (so its logits match `gptc sample`'s
 * bit for bit); every other target compiles each kernel variant for its
 * ISA level and the rest for the baseline. */
#if defined(__x86_64__)
#define JIT_FLAGS_NATIVE JIT_FLAGS_COMMON " -march=native -mprefer-vector-width=512"
#else
#define JIT_FLAGS_NATIVE JIT_FLAGS_COMMON " -march=native"
#endif
#define JIT_FLAGS_X86_BASE JIT_FLAGS_COMMON " -march=x86-64"
#define JIT_FLAGS_X86_V2 JIT_FLAGS_COMMON " -march=x86-64-v2"
#define JIT_FLAGS_X86_V3 JIT_FLAGS_COMMON " -march=x86-64-v3"
#define JIT_FLAGS_X86_V4 JIT_FLAGS_COMMON " -march=x86-64-v4 -mprefer-vector-width=512"
/* NEON is part of armv8-a: the baseline and the one kernel variant */
#define JIT_FLAGS_A64 JIT_FLAGS_COMMON " -march=armv8-a"

/* NVRTC's options besides --gpu-architecture: -lineinfo maps SASS back to
 * generated lines (profilers, compute-sanitizer); no --use_fast_math, so
 * expf, sqrtf and the divisions stay IEEE. NULL-terminated. */
extern const char *const jit_nvrtc_options[];

/* ---- the compiler ------------------------------------------------------------------ */

/* The C compiler command: $CC (default GPTC_C_COMPILER_DEFAULT), or for
 * the aarch64 cross target $GPTC_CC_AARCH64 (default aarch64-linux-gnu-gcc). */
const char *jit_cc(int cross_aarch64);
/* `cc --version`'s first line into id: the compiler's identity in cache
 * keys. Returns 0 when it ran; else its exit status (-1: not started), and
 * id is "unusable: " and the first line it printed. */
int jit_cc_id(const char *cc, char *id, size_t n);
/* 0 when `cc --version` runs, else -1 with util_err: "C compiler 'CC' does
 * not run (its first output line): install one or set CC" (or
 * GPTC_CC_AARCH64 for the cross compiler). */
int jit_cc_check(const char *cc, int cross_aarch64);
/* 1 when `cc` finds library file `lib` (a cross compiler looks in its
 * own sysroot), else 0. */
int jit_cc_has(const char *cc, const char *lib);

/* ---- running it ------------------------------------------------------------------- */

/* The most of a compiler's output kept (the rest is read and dropped):
 * a source with thousands of errors costs no more memory than this. */
#define JIT_OUTPUT_MAX 65536

/* Runs `{ cmd; } 2>&1` through /bin/sh; out (may be NULL) gets the first
 * JIT_OUTPUT_MAX bytes of its output, NUL-terminated. Returns the exit
 * status (128 + the signal of a killed one), -1 if it did not start. */
int jit_sh(const char *cmd, util_buf *out);
/* A compiler's output as one line: gcc's leading context lines ("x.c: In
 * function 'f':", "In file included from ...") dropped, so the first line
 * kept is the first diagnostic ("x.c:3:5: error: ..."); then up to four
 * non-empty lines joined by "; " (the source excerpts under gcc's
 * diagnostics, "  2 |   return x;", left out), cut to fit n. */
void jit_fold(const char *output, char *out, size_t n);
/* util_err("WHAT with 'CC' failed (exit CODE): <folded output>"); -1. */
int jit_failed(const char *what, const char *cc, int code, const char *output);
/* jit_sh(cmd) with its output folded into util_err (jit_failed) when it
 * exits non-zero; `what` says what it was doing ("compiling x.c"). */
int jit_run(const char *what, const char *cc, const char *cmd);

/* Starts `exec CMD >'LOG' 2>&1` through /bin/sh in the background (a
 * compiler per unit, cpu.c): its pid, or -1 with util_err. */
pid_t jit_spawn(const char *cmd, const char *log);
/* Whether the spawned `pid` has finished (waitpid WNOHANG): 1 with *code
 * its exit status (jit_sh's convention), 0 while it runs. */
int jit_reap(pid_t pid, int *code);
/* jit_failed with the first JIT_OUTPUT_MAX bytes of the file `log`. */
int jit_failed_log(const char *what, const char *cc, int code, const char *log);

/* ---- cache keys -------------------------------------------------------------------- */

/* The key of a C object: SHA-256 of the source, the compiler identity
 * (jit_cc_id), the flags and this CPU (util_cpu_id: -march=native code
 * differs between CPUs), as 64 hex digits. The gptc version is in the
 * source (the generated header names it). */
void jit_key(const char *src, size_t len, const char *cc_id, const char *flags, char key[65]);
/* The key of an NVRTC module: SHA-256 of the source, the target
 * architecture (sm_90, compute_90), jit_nvrtc_options and NVRTC's version
 * (cuda_nvrtc_version). */
void jit_key_nvrtc(const char *src, size_t len, const char *arch, const char *nvrtc_version, char key[65]);

#endif
