/* The log callback: level filter, formatting, truncation, NULL safety. */
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_base.h"

struct seen {
  int calls;
  enum osseg_log_level level;
  char msg[2048];
};

static void record(void *ctx, enum osseg_log_level level, const char *message) {
  struct seen *s = ctx;
  s->calls++;
  s->level = level;
  snprintf(s->msg, sizeof s->msg, "%s", message);
}

static void test_level_filter_and_format(void **state) {
  (void)state;
  struct seen s = {0};
  struct osseg_log log = {record, &s, OSSEG_LOG_WARN};
  osseg__log(&log, OSSEG_LOG_INFO, "dropped %d", 1);
  assert_int_equal(s.calls, 0);
  assert_false(osseg__log_on(&log, OSSEG_LOG_DEBUG));
  assert_true(osseg__log_on(&log, OSSEG_LOG_ERROR));
  osseg__log(&log, OSSEG_LOG_WARN, "node '%s' on %s", "conv1", "ref");
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.level, OSSEG_LOG_WARN);
  assert_string_equal(s.msg, "node 'conv1' on ref");
  assert_string_equal(osseg_log_level_name(OSSEG_LOG_WARN), "warning");
  assert_string_equal(osseg_log_level_name(OSSEG_LOG_DEBUG), "debug");
}

static void test_long_message_is_cut(void **state) {
  (void)state;
  struct seen s = {0};
  struct osseg_log log = {record, &s, OSSEG_LOG_DEBUG};
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  osseg__log(&log, OSSEG_LOG_INFO, "%s", big);
  assert_int_equal(s.calls, 1);
  assert_int_equal(strlen(s.msg), 1023);
}

static void test_null_log_is_silent(void **state) {
  (void)state;
  osseg__log(NULL, OSSEG_LOG_ERROR, "nobody listens");
  struct osseg_log none = {NULL, NULL, OSSEG_LOG_DEBUG};
  osseg__log(&none, OSSEG_LOG_ERROR, "nobody listens");
  assert_false(osseg__log_on(&none, OSSEG_LOG_ERROR));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_level_filter_and_format),
      cmocka_unit_test(test_long_message_is_cut),
      cmocka_unit_test(test_null_log_is_silent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
