/* PLACEHOLDER: replaced by the real 'osseg rle' implementation. */
#include <stdio.h>

#include "commands.h"

int osseg_cmd_rle(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "osseg rle: not built yet\n");
  return 2;
}
