/* The osseg tool's engine options from the environment, and its log
 * callback. The engine itself never reads the environment or prints; these
 * keep the switches users know working for every subcommand that loads a
 * model (engine_env.c). */
#ifndef OSSEG_CLIENTS_ENGINE_ENV_H
#define OSSEG_CLIENTS_ENGINE_ENV_H

#include "osseg_engine.h"

/* Maps the documented variables onto o (a switch is on when set, non-empty
 * and not "0"):
 *   OSSEG_PROFILE=1          o->profile (per-step table on stderr)
 *   OSSEG_NO_WINOGRAD=1      o->no_winograd
 *   OSSEG_NO_DWCONV=1        o->no_dwconv
 *   OSSEG_NO_UPCONV=1        o->no_upconv
 *   OSSEG_INT8_UPCONV_MIN=<n> o->int8_upconv_min (channels; -1 = never)
 *   OSSEG_BF16_TAIL=<n>      o->bf16_tail (octaves, -1..30)
 * and points o->log at stderr (cli_log_stderr): the profile lines when
 * OSSEG_PROFILE is on, the engine's warnings only when `warnings` is set.
 * Returns 0, or -1 after printing "osseg CMD: ..." for a bad value. */
int cli_engine_options_from_env(struct osseg_engine_options *o, const char *cmd, int warnings);

/* Log callback writing one line to stderr: "osseg: warning: MSG" (WARN),
 * "osseg profile: MSG" (INFO, the engine's profile table), "osseg: error:
 * MSG", "osseg: debug: MSG". ctx NULL or a pointer to an int: 0 drops
 * warnings. Thread-safe (one fprintf per line). */
void cli_log_stderr(void *ctx, enum osseg_log_level level, const char *message);

#endif
