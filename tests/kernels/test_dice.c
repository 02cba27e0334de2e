/* Tests for kernels/dice.c: golden values, empty masks, and agreement of
 * the count, mask and run-list forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_kernels.h"
#include "test_support.h"

/* cmocka 1.1 has no assert_double_equal. */
static void assert_close(double got, double want, double tol) {
  double d = got > want ? got - want : want - got;
  if (!(d <= tol)) fail_msg("got %.17g, want %.17g", got, want);
}

static void test_golden(void **state) {
  (void)state;
  /* Two empty masks score exactly 1; disjoint non-empty masks score ~0. */
  assert_true(osseg_dice_from_counts(0, 0, 0) == 1.0);
  assert_close(osseg_dice_from_counts(0, 10, 10), 1e-4 / 20.0001, 1e-15);
  assert_close(osseg_dice_from_counts(10, 10, 10), 1.0, 1e-15);
  /* A = {0..4, 10..21} (17 px), B = {4..11} (8 px), |A∩B| = 1 + 2 = 3:
   * (6 + 1e-4) / (25 + 1e-4). */
  struct osseg_run a[] = {{0, 5}, {10, 12}}, b[] = {{4, 8}};
  double want = (6 + 1e-4) / (25 + 1e-4);
  assert_close(osseg_dice_runs(a, 2, b, 1), want, 1e-15);
  assert_true(osseg_dice_runs(NULL, 0, NULL, 0) == 1.0);
  /* One empty, one not: 1e-4 / (n + 1e-4). */
  assert_close(osseg_dice_runs(a, 2, NULL, 0), 1e-4 / (17 + 1e-4), 1e-15);

  struct osseg_bitmask ma, mb;
  assert_int_equal(osseg_bitmask_init(&ma, 4, 8), 0);
  assert_int_equal(osseg_bitmask_init(&mb, 4, 8), 0);
  assert_true(osseg_dice_masks(&ma, &mb) == 1.0);
  assert_int_equal(osseg_bitmask_paint_runs(&ma, a, 2), 0);
  assert_int_equal(osseg_bitmask_paint_runs(&mb, b, 1), 0);
  assert_true(osseg_dice_masks(&ma, &mb) == osseg_dice_runs(a, 2, b, 1));
  osseg_bitmask_free(&ma);
  osseg_bitmask_free(&mb);
}

/* Random masks: the mask and run forms compute the same three counts, so
 * the scores must be bit-identical, and match the per-pixel formula. */
static void test_random_agreement(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 31);
  for (int iter = 0; iter < 100; iter++) {
    uint32_t h = 1 + (uint32_t)test_rng_below(&rng, 60), w = 1 + (uint32_t)test_rng_below(&rng, 300);
    struct osseg_bitmask m[2];
    struct osseg_runs r[2] = {{0}, {0}};
    for (int j = 0; j < 2; j++) {
      assert_int_equal(osseg_bitmask_init(&m[j], h, w), 0);
      size_t nr = test_rng_below(&rng, 20);
      for (size_t i = 0; i < nr; i++) {
        uint64_t s = test_rng_below(&rng, (uint64_t)h * w), l = test_rng_below(&rng, 200);
        if (s + l > (uint64_t)h * w) l = (uint64_t)h * w - s;
        osseg_runs_push(&r[j], (uint32_t)s, (uint32_t)l);
      }
      assert_int_equal(osseg_bitmask_paint_runs(&m[j], r[j].v, r[j].n), 0);
      osseg_runs_canonicalize(&r[j]);
    }
    uint64_t inter = 0, ca = 0, cb = 0;
    for (uint64_t p = 0; p < (uint64_t)h * w; p++) {
      uint64_t x = (m[0].bits[p / 64] >> (p % 64)) & 1, y = (m[1].bits[p / 64] >> (p % 64)) & 1;
      inter += x & y;
      ca += x;
      cb += y;
    }
    double want = osseg_dice_from_counts(inter, ca, cb);
    assert_true(osseg_dice_masks(&m[0], &m[1]) == want);
    assert_true(osseg_dice_runs(r[0].v, r[0].n, r[1].v, r[1].n) == want);
    assert_true(osseg_dice_masks(&m[0], &m[0]) == 1.0);
    for (int j = 0; j < 2; j++) {
      osseg_bitmask_free(&m[j]);
      osseg_runs_free(&r[j]);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden),
      cmocka_unit_test(test_random_agreement),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
