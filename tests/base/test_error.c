/* Tests for base/: error table, diagnostics, allocation failure hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_base.h"

static void test_codes_are_negative_and_distinct(void **state) {
  (void)state;
  int codes[] = {
#define XX(name, msg) OSSEG_E##name,
      OSSEG_ERRNO_MAP(XX)
#undef XX
  };
  size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++) {
    assert_true(codes[i] < 0);
    assert_string_not_equal(osseg_strerror(codes[i]), "unknown error");
    for (size_t j = i + 1; j < n; j++) assert_int_not_equal(codes[i], codes[j]);
  }
  assert_string_equal(osseg_strerror(OSSEG_ENOMEM), "out of memory");
  assert_string_equal(osseg_err_name(OSSEG_EPARSE), "OSSEG_EPARSE");
  assert_string_equal(osseg_strerror(12345), "unknown error");
  assert_string_equal(osseg_strerror(0), "success");
}

static void test_diag_first_error_wins(void **state) {
  (void)state;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg__fail(&d, OSSEG_EPARSE, "line %d: bad", 7), OSSEG_EPARSE);
  assert_int_equal(osseg__fail(&d, OSSEG_ENOMEM, "later"), OSSEG_ENOMEM);
  assert_string_equal(d.message, "line 7: bad");
  assert_int_equal(d.code, OSSEG_EPARSE);
  assert_int_equal(osseg__fail(NULL, OSSEG_EIO, "ignored"), OSSEG_EIO);
}

static void test_alloc_fail_hook(void **state) {
  (void)state;
  osseg__alloc_fail_at(2);
  void *a = osseg__malloc(16);
  void *b = osseg__malloc(16);
  void *c = osseg__calloc(2, 8);
  assert_non_null(a);
  assert_null(b);
  assert_null(c);
  assert_int_equal(osseg__alloc_fail_at(0), 3);
  void *d = osseg__malloc(16);
  assert_non_null(d);
  osseg__free(a);
  osseg__free(d);
}

static void test_overflow_checks(void **state) {
  (void)state;
  size_t r;
  assert_int_equal(osseg__mul_size(SIZE_MAX / 2 + 1, 2, &r), OSSEG_EOVERFLOW);
  assert_int_equal(osseg__mul_size(1000, 1000, &r), 0);
  assert_int_equal(r, 1000000);
  assert_int_equal(osseg__add_size(SIZE_MAX, 1, &r), OSSEG_EOVERFLOW);
  int64_t q;
  assert_int_equal(osseg__mul_i64(INT64_MAX, 2, &q), OSSEG_EOVERFLOW);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_codes_are_negative_and_distinct),
      cmocka_unit_test(test_diag_first_error_wins),
      cmocka_unit_test(test_alloc_fail_hook),
      cmocka_unit_test(test_overflow_checks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
