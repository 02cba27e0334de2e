/* PLACEHOLDER: replaced by the real 'osseg run-model' implementation. */
#include <stdio.h>

#include "commands.h"

int osseg_cmd_run_model(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "osseg run-model: not built yet\n");
  return 2;
}
