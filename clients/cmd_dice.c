/* PLACEHOLDER: replaced by the real 'osseg dice' implementation. */
#include <stdio.h>

#include "commands.h"

int osseg_cmd_dice(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "osseg dice: not built yet\n");
  return 2;
}
