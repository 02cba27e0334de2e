/* PLACEHOLDER: replaced by the real 'osseg ensemble' implementation. */
#include <stdio.h>

#include "commands.h"

int osseg_cmd_ensemble(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "osseg ensemble: not built yet\n");
  return 2;
}
