/* cmd_train: placeholder until the module lands. */
#include <stdio.h>
#include "cmds.h"
int cmd_train(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "gptc: 'train' is not available in this build\n");
  return 1;
}
