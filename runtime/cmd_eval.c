/* cmd_eval: placeholder until the module lands. */
#include <stdio.h>
#include "cmds.h"
int cmd_eval(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "gptc: 'eval' is not available in this build\n");
  return 1;
}
