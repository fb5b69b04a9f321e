/* cmd_data: placeholder until the module lands. */
#include <stdio.h>
#include "cmds.h"
int cmd_data(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "gptc: 'data' is not available in this build\n");
  return 1;
}
