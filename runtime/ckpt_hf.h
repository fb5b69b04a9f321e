/* ckpt_hf: Hugging Face GPT-2 directories <-> gptc checkpoints (ckpt_hf.c). */
#ifndef GPTC_CKPT_HF_H
#define GPTC_CKPT_HF_H

/* HF_DIR (config.json + model.safetensors) -> the gptc checkpoint `out`
 * (F32, step 0, no moments); variants whose math differs from GPT-2 are
 * refused with the field named. */
int ckpt_hf_import(const char *dir, const char *out);
/* The gptc checkpoint `ckpt` -> directory `dir` (config.json,
 * model.safetensors, and for gpt2 vocab.json and merges.txt), restoring
 * what was there when a write fails. */
int ckpt_hf_export(const char *ckpt, const char *dir);

#endif
