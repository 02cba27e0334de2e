/* PLACEHOLDER: replaced by the real 'osseg model-info' implementation. */
#include <stdio.h>

#include "commands.h"

int osseg_cmd_model_info(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "osseg model-info: not built yet\n");
  return 2;
}
