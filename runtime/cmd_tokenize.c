/* cmd_tokenize: placeholder until the module lands. */
#include <stdio.h>
#include "cmds.h"
int cmd_tokenize(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "gptc: 'tokenize' is not available in this build\n");
  return 1;
}
