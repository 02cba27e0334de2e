/* What the tools tell the user about a precision choice. */
#include "cli_util.h"
#include "osseg_engine.h"

#include <stdio.h>

void cli_note_bf16(const char *cmd, int bf16) {
  const char *isa;
  if (!bf16 || osseg_engine_bf16_native(&isa)) return;
  fprintf(stderr,
          "osseg %s: note: this CPU has no native bf16 (oneDNN ISA %s, below avx512_core_bf16): "
          "emulated, bf16 runs slower than fp32 here\n",
          cmd, isa);
}
