/* export: a checkpoint as one self-contained executable (`gptc export`).
 *
 * The executable holds the generated batch-1 inference code specialized to
 * the checkpoint's shape (emit.infer_body), the weights (raw float32 in a
 * page-aligned read-only section, mapped lazily), the tokenizer (GPT-2
 * tables or the char/word vocabulary) and gptc's own generation loop
 * (sample.c). Built for --target native it needs libc, libm and the OpenMP
 * runtime at run time (PCRE2 linked statically); for every other target it
 * is one static file (docs/export.md). Building it needs a C compiler ($CC, default
 * cc), the PCRE2 headers and libpcre2-8.a, nothing from a source tree: the
 * runtime sources it compiles are embedded in gptc. */
#ifndef GPTC_EXPORT_H
#define GPTC_EXPORT_H

/* Builds the executable for `ckpt` in a temp directory next to `out` and
 * renames it into place, so `out` is either the whole program or untouched.
 * `target` is an export_target.h name (NULL: portable); `quant` a quant.h
 * kind (QUANT_Q8: the mat-vecs' weights as int8 blocks, gen/quant.lua's
 * layout, read by the q8 inference step). -1 with util_err
 * (one line) on an unknown target, a bad checkpoint, a shape the generator
 * rejects, an unwritable output, a write error or a failed compile. */
int export_program(const char *ckpt, const char *out, const char *target, int quant);

#endif
