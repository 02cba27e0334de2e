/* Tests for kernels/runs.c: growth, canonicalisation (sorted fast path,
 * radix sort, heapsort fallback), area and intersection, each against a
 * per-pixel reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runs_internal.h"
#include "test_support.h"

/* Canonical runs of a byte-per-pixel mask: the obviously-correct reference. */
static void ref_runs(const uint8_t *px, size_t n, struct osseg_runs *out) {
  out->n = 0;
  size_t i = 0;
  while (i < n) {
    if (!px[i]) {
      i++;
      continue;
    }
    size_t s = i;
    while (i < n && px[i]) i++;
    assert_int_equal(osseg_runs_push(out, (uint32_t)s, (uint32_t)(i - s)), 0);
  }
}

static void assert_runs_equal(const struct osseg_runs *a, const struct osseg_runs *b) {
  assert_int_equal(a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    assert_int_equal(a->v[i].start, b->v[i].start);
    assert_int_equal(a->v[i].len, b->v[i].len);
  }
}

static void assert_canonical(const struct osseg_runs *r) {
  for (size_t i = 0; i < r->n; i++) {
    assert_true(r->v[i].len > 0);
    if (i) assert_true(r->v[i].start > (uint64_t)r->v[i - 1].start + r->v[i - 1].len);
  }
}

static void test_golden_canonicalize(void **state) {
  (void)state;
  struct osseg_runs r = {0};
  /* Unsorted; [0,3)+[3,5) touch; [10,15) and [12,22) overlap; [30,30) is
   * empty; [40,41) stands alone; [50,60) contains [52,54). */
  uint32_t in[][2] = {{10, 5}, {0, 3}, {30, 0}, {52, 2}, {3, 2}, {12, 10}, {40, 1}, {50, 10}};
  for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
    assert_int_equal(osseg_runs_push(&r, in[i][0], in[i][1]), 0);
  osseg_runs_canonicalize(&r);
  uint32_t want[][2] = {{0, 5}, {10, 12}, {40, 1}, {50, 10}};
  assert_int_equal(r.n, 4);
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(r.v[i].start, want[i][0]);
    assert_int_equal(r.v[i].len, want[i][1]);
  }
  assert_int_equal(osseg_runs_area(r.v, r.n), 28);

  /* Only empty runs: nothing left. */
  r.n = 0;
  osseg_runs_push(&r, 7, 0);
  osseg_runs_push(&r, 3, 0);
  osseg_runs_canonicalize(&r);
  assert_int_equal(r.n, 0);
  osseg_runs_canonicalize(&r); /* empty list is fine */
  assert_int_equal(r.n, 0);
  osseg_runs_free(&r);
  assert_null(r.v);
  assert_int_equal(r.cap, 0);
}

/* Random runs over npix pixels, compared with the per-pixel reference. The
 * sizes cover insertion sort, radix sort with two passes and with three. */
static void check_random_canonicalize(struct test_rng *rng, size_t nruns,
                                      uint64_t npix, uint32_t maxlen, int sorted) {
  struct osseg_runs r = {0}, want = {0};
  uint8_t *px = calloc(npix, 1);
  assert_non_null(px);
  for (size_t i = 0; i < nruns; i++) {
    uint32_t s = (uint32_t)test_rng_below(rng, npix);
    uint32_t l = (uint32_t)test_rng_below(rng, maxlen + 1);
    if (s + (uint64_t)l > npix) l = (uint32_t)(npix - s);
    assert_int_equal(osseg_runs_push(&r, s, l), 0);
    memset(px + s, 1, l);
  }
  if (sorted) {
    /* Sorted (with overlaps) input takes the no-sort path. */
    osseg__runs_sort(r.v, r.n);
  }
  ref_runs(px, npix, &want);
  osseg_runs_canonicalize(&r);
  assert_runs_equal(&r, &want);
  assert_canonical(&r);
  free(px);
  osseg_runs_free(&r);
  osseg_runs_free(&want);
}

static void test_random_canonicalize(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 1);
  for (int iter = 0; iter < 200; iter++) {
    size_t nruns = test_rng_below(&rng, 200);
    check_random_canonicalize(&rng, nruns, 1 + test_rng_below(&rng, 5000),
                              (uint32_t)test_rng_below(&rng, 40), iter & 1);
  }
  check_random_canonicalize(&rng, 20000, 1u << 22, 30, 0);
  check_random_canonicalize(&rng, 20000, 1u << 22, 30, 1);
  /* Starts up to 2^26 need the third radix pass. */
  check_random_canonicalize(&rng, 50000, 1u << 26, 100, 0);
}

/* Sorting keys that differ only in the top digit, all equal, and reverse
 * order: the radix pass skipping must not lose anything. */
static void test_sort_adversarial(void **state) {
  (void)state;
  size_t n = 5000;
  struct osseg_run *v = malloc(n * sizeof *v);
  assert_non_null(v);
  /* Keys differ only in the top radix digit; len tags each run so that the
   * result can be checked to be a permutation. */
  for (size_t i = 0; i < n; i++)
    v[i] = (struct osseg_run){(uint32_t)(((n - i) % 1024) << 22), (uint32_t)i};
  osseg__runs_sort(v, n);
  uint8_t *seen = calloc(n, 1);
  for (size_t i = 0; i < n; i++) {
    if (i) assert_true(v[i - 1].start <= v[i].start);
    assert_int_equal(v[i].start, ((n - v[i].len) % 1024) << 22);
    assert_int_equal(seen[v[i].len], 0);
    seen[v[i].len] = 1;
  }
  free(seen);
  for (size_t i = 0; i < n; i++) v[i] = (struct osseg_run){12345, (uint32_t)i};
  osseg__runs_sort(v, n);
  for (size_t i = 0; i < n; i++) assert_int_equal(v[i].start, 12345);
  for (size_t i = 0; i < n; i++) v[i] = (struct osseg_run){UINT32_MAX - (uint32_t)i, 0};
  osseg__runs_sort(v, n);
  for (size_t i = 1; i < n; i++) assert_true(v[i - 1].start <= v[i].start);
  free(v);
}

/* With every allocation failing, canonicalisation must still be right (the
 * heapsort fallback). */
static void test_canonicalize_without_memory(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 2);
  struct osseg_runs r = {0}, copy = {0};
  for (size_t i = 0; i < 3000; i++)
    osseg_runs_push(&r, (uint32_t)test_rng_below(&rng, 100000),
                    (uint32_t)test_rng_below(&rng, 50));
  assert_int_equal(osseg_runs_reserve(&copy, r.n), 0);
  memcpy(copy.v, r.v, r.n * sizeof *r.v);
  copy.n = r.n;
  osseg_runs_canonicalize(&copy);
  for (uint64_t nth = 1; nth <= 3; nth++) {
    struct osseg_runs t = {0};
    assert_int_equal(osseg_runs_reserve(&t, r.n), 0);
    memcpy(t.v, r.v, r.n * sizeof *r.v);
    t.n = r.n;
    osseg__alloc_fail_at(nth);
    osseg_runs_canonicalize(&t);
    osseg__alloc_fail_at(0);
    assert_runs_equal(&t, &copy);
    osseg_runs_free(&t);
  }
  osseg_runs_free(&r);
  osseg_runs_free(&copy);
}

static void test_push_reserve_errors(void **state) {
  (void)state;
  struct osseg_runs r = {0};
  assert_int_equal(osseg_runs_reserve(&r, SIZE_MAX / 2), OSSEG_EOVERFLOW);
  assert_int_equal(r.cap, 0);
  assert_int_equal(osseg_runs_reserve(&r, 0), 0);
  /* Allocation-failure sweep over a sequence of pushes: every failure is a
   * clean OSSEG_ENOMEM that leaves the list as it was. */
  for (uint64_t nth = 1;; nth++) {
    struct osseg_runs t = {0};
    osseg__alloc_fail_at(nth);
    int rc = 0;
    size_t pushed = 0;
    for (uint32_t i = 0; i < 1000 && rc == 0; i++) {
      rc = osseg_runs_push(&t, i * 2, 1);
      if (rc == 0) pushed++;
    }
    uint64_t seen = osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_true(seen < nth);
      assert_int_equal(t.n, 1000);
      osseg_runs_free(&t);
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
    assert_int_equal(t.n, pushed);
    for (size_t i = 0; i < t.n; i++) assert_int_equal(t.v[i].start, 2 * i);
    osseg_runs_free(&t);
  }
  assert_int_equal(osseg_runs_reserve(&r, 10), 0);
  assert_true(r.cap >= 10);
  size_t cap = r.cap;
  assert_int_equal(osseg_runs_reserve(&r, 5), 0); /* never shrinks */
  assert_int_equal(r.cap, cap);
  osseg_runs_free(&r);
}

static void test_intersection(void **state) {
  (void)state;
  /* Golden: A = [0,5) [10,22), B = [4,12) [20,30): overlap 1 + 2 + 2 = 5. */
  struct osseg_run a[] = {{0, 5}, {10, 12}};
  struct osseg_run b[] = {{4, 8}, {20, 10}};
  assert_int_equal(osseg_runs_intersection(a, 2, b, 2), 5);
  assert_int_equal(osseg_runs_intersection(b, 2, a, 2), 5);
  assert_int_equal(osseg_runs_intersection(a, 2, NULL, 0), 0);
  assert_int_equal(osseg_runs_intersection(a, 2, a, 2), 17);
  assert_int_equal(osseg_runs_area(NULL, 0), 0);

  struct test_rng rng;
  test_rng_seed(&rng, 3);
  for (int iter = 0; iter < 300; iter++) {
    size_t npix = 1 + test_rng_below(&rng, 3000);
    uint8_t *pa = calloc(npix, 1), *pb = calloc(npix, 1);
    for (int m = 0; m < 2; m++) {
      uint8_t *p = m ? pb : pa;
      size_t nr = test_rng_below(&rng, 40);
      for (size_t i = 0; i < nr; i++) {
        size_t s = test_rng_below(&rng, npix), l = test_rng_below(&rng, 100);
        if (s + l > npix) l = npix - s;
        memset(p + s, 1, l);
      }
    }
    struct osseg_runs ra = {0}, rb = {0};
    ref_runs(pa, npix, &ra);
    ref_runs(pb, npix, &rb);
    uint64_t want = 0, area_a = 0;
    for (size_t i = 0; i < npix; i++) {
      want += pa[i] & pb[i];
      area_a += pa[i];
    }
    assert_int_equal(osseg_runs_intersection(ra.v, ra.n, rb.v, rb.n), want);
    assert_int_equal(osseg_runs_area(ra.v, ra.n), area_a);
    free(pa);
    free(pb);
    osseg_runs_free(&ra);
    osseg_runs_free(&rb);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_canonicalize),
      cmocka_unit_test(test_random_canonicalize),
      cmocka_unit_test(test_sort_adversarial),
      cmocka_unit_test(test_canonicalize_without_memory),
      cmocka_unit_test(test_push_reserve_errors),
      cmocka_unit_test(test_intersection),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
