/* cmd_ckpt: placeholder until the module lands. */
#include <stdio.h>
#include "cmds.h"
int cmd_import(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "gptc: 'import' is not available in this build\n"); return 1; }
int cmd_export_hf(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "gptc: 'export-hf' is not available in this build\n"); return 1; }
