/* PLACEHOLDER: replaced by the real 'osseg predict' implementation. */
#include <stdio.h>

#include "commands.h"

int osseg_cmd_predict(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "osseg predict: not built yet\n");
  return 2;
}
