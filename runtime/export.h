/* export: a checkpoint as one self-contained executable (`gptc export`).
 *
 * The executable holds the generated batch-1 inference code specialized to
 * the checkpoint's shape (emit.infer_body), the weights (raw float32 in a
 * page-aligned read-only section, mapped lazily), the tokenizer (GPT-2
 * tables or the char/word vocabulary) and gptc's own generation loop
 * (sample.c). It needs only libc, libm and the OpenMP runtime at run time;
 * PCRE2 is linked statically. Building it needs a C compiler ($CC, default
 * cc), the PCRE2 headers and libpcre2-8.a, nothing from a source tree: the
 * runtime sources it compiles are embedded in gptc. */
#ifndef GPTC_EXPORT_H
#define GPTC_EXPORT_H

/* Builds the executable for `ckpt` in a temp directory next to `out` and
 * renames it into place, so `out` is either the whole program or untouched.
 * -1 with util_err (one line) on a bad checkpoint, a shape the generator
 * rejects, an unwritable output, a write error or a failed compile. */
int export_program(const char *ckpt, const char *out);
/* export_program with `quant` (quant.h): QUANT_Q8 holds the mat-vecs'
 * weights as int8 blocks (gen/quant.lua's layout) and runs the q8 step. */
int export_program_quant(const char *ckpt, const char *out, int quant);

#endif
