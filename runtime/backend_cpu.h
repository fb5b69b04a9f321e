/* backend_cpu: the CPU backend (backend_cpu.c), the generated C run
 * through gptc_model (cpu.h, model.h). */
#ifndef GPTC_BACKEND_CPU_H
#define GPTC_BACKEND_CPU_H

#include "backend.h"
#include "cfg.h"
#include "cpu.h"

int backend_cpu_open(const cfg_t *cfg, backend **out);
/* The CPU backend's compiled module (NULL on other devices). */
const cpu_module *backend_cpu_module(const backend *b);
/* For the parity tests: the CPU backend's training activations (laid out
 * as gen/shapes.lua's acts; NULL before alloc or on other devices). */
const float *backend_cpu_acts(const backend *b);

#endif
