/* Logging through a caller-supplied callback (libraries never print). */
#include "osseg_base.h"

#include <stdio.h>

const char *osseg_log_level_name(enum osseg_log_level level) {
  switch (level) {
    case OSSEG_LOG_ERROR: return "error";
    case OSSEG_LOG_WARN: return "warning";
    case OSSEG_LOG_INFO: return "info";
    case OSSEG_LOG_DEBUG: return "debug";
  }
  return "unknown";
}

void osseg__log(const struct osseg_log *log, enum osseg_log_level level, const char *fmt, ...) {
  if (!osseg__log_on(log, level)) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  log->fn(log->ctx, level, msg);
}
