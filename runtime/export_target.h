/* export_target: which machines an exported executable runs on
 * (`gptc export --target`), and how each of its parts is compiled.
 *
 * A target is one or more kernel variants (the generated inference step
 * compiled for one vector width, in its own translation unit with its own
 * -march and a suffixed symbol, export_infer<suffix>) plus the flags of
 * everything else (tokenizer, sampling, CLI: the target's baseline ISA).
 * The exported executable's cpu_dispatch.c (templates/export/) picks one
 * variant at start-up. Every target but native links statically. */
#ifndef GPTC_EXPORT_TARGET_H
#define GPTC_EXPORT_TARGET_H

typedef struct {
  const char *name;      /* "x86-64-v3": what --info and GPTC_KERNELS call it */
  const char *suffix;    /* "_v3": export_infer_v3 in model_v3.c */
  const char *what;      /* "AVX2+FMA, 256-bit vectors" for --info */
  const char *cpu_check; /* the __builtin_cpu_supports feature it needs, NULL: none checked */
  const char *flags;     /* code-generation flags of its unit */
  int vec_bytes;         /* the generator's vector width for it (emit.infer_body opts.vec_bytes) */
} export_variant;

typedef struct {
  const char *name;             /* --target value */
  const export_variant *variants; /* narrowest first; the dispatcher takes the widest the CPU runs */
  int n_variants;
  const char *base_flags; /* flags of every unit that is not a kernel variant */
  int is_static;          /* -static: no shared library, no PT_INTERP */
  int cross_aarch64;      /* compiled by the aarch64 cross compiler (jit_cc(1), on a non-aarch64 host) */
} export_target;

/* The target called `name` (NULL: the default, portable); -1 with util_err
 * listing the valid names when there is none. */
int export_target_find(const char *name, const export_target **t);

/* "portable, native, x86-64-v2, ..." for help texts and errors. */
const char *export_target_names(void);

#endif
