/* Error codes and diagnostics. */
#include "osseg_base.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

const char *osseg_strerror(int err) {
  switch (err) {
    case OSSEG_OK:
      return "success";
#define OSSEG__XX(name, msg) \
  case OSSEG_E##name:        \
    return msg;
      OSSEG_ERRNO_MAP(OSSEG__XX)
#undef OSSEG__XX
    default:
      return "unknown error";
  }
}

const char *osseg_err_name(int err) {
  switch (err) {
    case OSSEG_OK:
      return "OSSEG_OK";
#define OSSEG__XX(name, msg) \
  case OSSEG_E##name:        \
    return "OSSEG_E" #name;
      OSSEG_ERRNO_MAP(OSSEG__XX)
#undef OSSEG__XX
    default:
      return "OSSEG_UNKNOWN";
  }
}

void osseg_diag_clear(struct osseg_diag *diag) {
  if (diag) {
    diag->code = 0;
    diag->message[0] = '\0';
  }
}

int osseg__vfail(struct osseg_diag *diag, int err, const char *fmt, va_list ap) {
  if (diag && diag->message[0] == '\0') {
    diag->code = err;
    vsnprintf(diag->message, sizeof diag->message, fmt, ap);
  }
  return err;
}

int osseg__fail(struct osseg_diag *diag, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  osseg__vfail(diag, err, fmt, ap);
  va_end(ap);
  return err;
}

uint64_t osseg_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
