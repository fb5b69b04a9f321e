/* cmd_gen: placeholder until the module lands. */
#include <stdio.h>
#include "cmds.h"
int cmd_gen(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "gptc: 'gen' is not available in this build\n");
  return 1;
}
