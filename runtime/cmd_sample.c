/* cmd_sample: placeholder until the module lands. */
#include <stdio.h>
#include "cmds.h"
int cmd_sample(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "gptc: 'sample' is not available in this build\n");
  return 1;
}
