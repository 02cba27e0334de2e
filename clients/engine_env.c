/* Engine options from the environment and the stderr log callback of the
 * osseg tool (see engine_env.h). */
#include "engine_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"

static const int warnings_on = 1, warnings_off = 0;

void cli_log_stderr(void *ctx, enum osseg_log_level level, const char *message) {
  const int *warn = ctx;
  switch (level) {
    case OSSEG_LOG_WARN:
      if (!warn || *warn) fprintf(stderr, "osseg: warning: %s\n", message);
      break;
    case OSSEG_LOG_INFO:
      fprintf(stderr, "osseg profile: %s\n", message);
      break;
    default:
      fprintf(stderr, "osseg: %s: %s\n", osseg_log_level_name(level), message);
      break;
  }
}

static int env_on(const char *name) {
  const char *e = getenv(name);
  return e && *e && strcmp(e, "0") != 0;
}

int cli_engine_options_from_env(struct osseg_engine_options *o, const char *cmd, int warnings) {
  o->profile = env_on("OSSEG_PROFILE");
  o->no_winograd = env_on("OSSEG_NO_WINOGRAD");
  o->no_dwconv = env_on("OSSEG_NO_DWCONV");
  o->no_upconv = env_on("OSSEG_NO_UPCONV");
  const char *umin = getenv("OSSEG_INT8_UPCONV_MIN");
  if (umin && *umin) {
    char *end;
    long v = strtol(umin, &end, 10);
    if (*end || v < -1 || v > 1000000) {
      cli_error(cmd, "OSSEG_INT8_UPCONV_MIN must be -1 (never) or a channel count from 0 to 1000000, "
                "not '%s'", umin);
      return -1;
    }
    o->int8_upconv_min = (int)v;
  }
  const char *tail = getenv("OSSEG_BF16_TAIL");
  if (tail && *tail) {
    char *end;
    long v = strtol(tail, &end, 10);
    if (*end || v < -1 || v > 30) {
      cli_error(cmd, "OSSEG_BF16_TAIL must be an integer from -1 to 30 (octaves), not '%s'", tail);
      return -1;
    }
    o->bf16_tail = (int)v;
  }
  o->log.fn = cli_log_stderr;
  o->log.ctx = (void *)(warnings ? &warnings_on : &warnings_off);
  o->log.max_level = o->profile ? OSSEG_LOG_INFO : warnings ? OSSEG_LOG_WARN : OSSEG_LOG_ERROR;
  return 0;
}
