/* Tests for kernels/vote*.c: bit-sliced mask voting (every usable ISA
 * variant against the generic reference and a per-pixel count) and the
 * run-list sweep (linear and heap merges against per-pixel counts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vote_internal.h"
#include "test_support.h"

struct variant {
  const char *name;
  unsigned need;
  osseg__vote_words_fn fn;
};
static const struct variant variants[] = {
    {"generic", 0, osseg__vote_words_generic},
    {"avx2", OSSEG_CPU_AVX2, osseg__vote_words_avx2},
    {"avx512", OSSEG_CPU_AVX512, osseg__vote_words_avx512},
};
#define NVARIANTS (sizeof variants / sizeof variants[0])

static int usable(const struct variant *v) {
  return (osseg_cpu_features() & v->need) == v->need;
}

static void ref_vote_words(const uint64_t *const *in, size_t k, unsigned m,
                           uint64_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint64_t w = 0;
    for (int b = 0; b < 64; b++) {
      unsigned c = 0;
      for (size_t j = 0; j < k; j++) c += (in[j][i] >> b) & 1;
      if (c >= m) w |= 1ull << b;
    }
    out[i] = w;
  }
}

/* Every variant, every min_votes in 1..k, on k random word arrays of n
 * words each ending at a guard page. */
static void check_words(struct test_rng *rng, size_t k, size_t n, int density) {
  uint64_t *in[64];
  for (size_t j = 0; j < k; j++) {
    in[j] = test_guarded_alloc(n * 8);
    for (size_t i = 0; i < n; i++) {
      uint64_t x = test_rng_next(rng);
      /* density 0: uniform bits; 1: sparse; 2: dense; 3: mostly identical
       * across inputs (what real ensembles look like). */
      if (density == 1) x &= test_rng_next(rng) & test_rng_next(rng);
      if (density == 2) x |= test_rng_next(rng) | test_rng_next(rng);
      if (density == 3) x = (0xf0f0f0f0f0f0f0f0ull * (i & 1)) ^ (x & x >> 7 & x >> 13);
      in[j][i] = x;
    }
  }
  uint64_t *want = test_guarded_alloc(n * 8), *got = test_guarded_alloc(n * 8);
  for (unsigned m = 1; m <= k; m++) {
    ref_vote_words((const uint64_t *const *)in, k, m, want, n);
    for (size_t v = 0; v < NVARIANTS; v++) {
      if (!usable(&variants[v])) continue;
      memset(got, 0x5a, n * 8);
      variants[v].fn((const uint64_t *const *)in, k, m, got, n);
      assert_memory_equal(got, want, n * 8);
    }
  }
  for (size_t j = 0; j < k; j++) test_guarded_free(in[j]);
  test_guarded_free(want);
  test_guarded_free(got);
}

static void test_words_all_lengths(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 21);
  for (size_t n = 0; n <= 17; n++)
    for (size_t k = 1; k <= 9; k++) check_words(&rng, k, n, (int)(n + k) % 4);
  /* Plane-count boundaries: 15/16/17, 31/32/33, 63/64 votes. */
  static const size_t ks[] = {15, 16, 17, 31, 32, 33, 63, 64};
  for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) check_words(&rng, ks[i], 19, (int)i % 4);
}

/* Adversarial: every input all ones, all zero, or alternating; counts land
 * exactly on min_votes. */
static void test_words_adversarial(void **state) {
  (void)state;
  const size_t n = 17, k = 64;
  uint64_t *in[64];
  for (size_t j = 0; j < k; j++) in[j] = test_guarded_alloc(n * 8);
  uint64_t *got = test_guarded_alloc(n * 8);
  for (unsigned ones = 0; ones <= k; ones++) {
    /* The first `ones` inputs are all one; of the rest, odd-numbered ones
     * set the odd bits. Counts hit every value and land exactly on m. */
    for (size_t j = 0; j < k; j++)
      for (size_t i = 0; i < n; i++)
        in[j][i] = j < ones ? ~0ull : (j & 1 ? 0xaaaaaaaaaaaaaaaaull : 0);
    for (unsigned m = 1; m <= k; m += 7) {
      uint64_t want[17];
      ref_vote_words((const uint64_t *const *)in, k, m, want, n);
      for (size_t v = 0; v < NVARIANTS; v++) {
        if (!usable(&variants[v])) continue;
        variants[v].fn((const uint64_t *const *)in, k, m, got, n);
        assert_memory_equal(got, want, n * 8);
      }
    }
  }
  for (size_t j = 0; j < k; j++) test_guarded_free(in[j]);
  test_guarded_free(got);
}

static void test_masks_api(void **state) {
  (void)state;
  /* Golden: three 2x5 masks, majority (min_votes 2). */
  struct osseg_bitmask a, b, c, out, odd;
  assert_int_equal(osseg_bitmask_init(&a, 2, 5), 0);
  assert_int_equal(osseg_bitmask_init(&b, 2, 5), 0);
  assert_int_equal(osseg_bitmask_init(&c, 2, 5), 0);
  assert_int_equal(osseg_bitmask_init(&out, 2, 5), 0);
  assert_int_equal(osseg_bitmask_init(&odd, 5, 2), 0);
  a.bits[0] = 0x0ff; /* pixels 0-7 */
  b.bits[0] = 0x3f0; /* pixels 4-9 */
  c.bits[0] = 0x201; /* pixels 0 and 9 */
  const struct osseg_bitmask *abc[] = {&a, &b, &c};
  assert_int_equal(osseg_vote_masks(abc, 3, 2, &out), 0);
  assert_int_equal(out.bits[0], 0x2f1); /* 0, 4-7, 9 */
  assert_int_equal(osseg_vote_masks(abc, 3, 1, &out), 0);
  assert_int_equal(out.bits[0], 0x3ff);
  assert_int_equal(osseg_vote_masks(abc, 3, 3, &out), 0);
  assert_int_equal(out.bits[0], 0);
  out.bits[0] = 1;
  assert_int_equal(osseg_vote_masks(abc, 3, 4, &out), 0); /* > k: empty */
  assert_int_equal(out.bits[0], 0);
  assert_int_equal(osseg_vote_masks(abc, 1, 1, &out), 0); /* k = 1: copy */
  assert_int_equal(out.bits[0], 0x0ff);

  /* Errors. */
  assert_int_equal(osseg_vote_masks(abc, 0, 1, &out), OSSEG_EINVAL);
  assert_int_equal(osseg_vote_masks(abc, 3, 0, &out), OSSEG_EINVAL);
  assert_int_equal(osseg_vote_masks(abc, 65, 1, &out), OSSEG_EINVAL);
  assert_int_equal(osseg_vote_masks(NULL, 3, 1, &out), OSSEG_EINVAL);
  assert_int_equal(osseg_vote_masks(abc, 3, 1, &odd), OSSEG_ESHAPE);
  const struct osseg_bitmask *mixed[] = {&a, &odd};
  assert_int_equal(osseg_vote_masks(mixed, 2, 1, &out), OSSEG_ESHAPE);

  /* 1x1 masks (one word, a single valid bit). */
  struct osseg_bitmask p1[3], o1;
  const struct osseg_bitmask *pp[3] = {&p1[0], &p1[1], &p1[2]};
  for (int j = 0; j < 3; j++) assert_int_equal(osseg_bitmask_init(&p1[j], 1, 1), 0);
  assert_int_equal(osseg_bitmask_init(&o1, 1, 1), 0);
  p1[0].bits[0] = 1;
  p1[2].bits[0] = 1;
  assert_int_equal(osseg_vote_masks(pp, 3, 2, &o1), 0);
  assert_int_equal(o1.bits[0], 1);
  assert_int_equal(osseg_vote_masks(pp, 3, 3, &o1), 0);
  assert_int_equal(o1.bits[0], 0);
  for (int j = 0; j < 3; j++) osseg_bitmask_free(&p1[j]);
  osseg_bitmask_free(&o1);

  /* The dispatcher follows the CPU level this test runs at. */
  unsigned f = osseg_cpu_features();
  assert_string_equal(osseg__vote_impl()->name, (f & OSSEG_CPU_AVX512) ? "avx512"
                                                : (f & OSSEG_CPU_AVX2)  ? "avx2"
                                                                        : "generic");

  /* out may be one of the inputs. */
  assert_int_equal(osseg_vote_masks(abc, 3, 2, &a), 0);
  assert_int_equal(a.bits[0], 0x2f1);

  osseg_bitmask_free(&a);
  osseg_bitmask_free(&b);
  osseg_bitmask_free(&c);
  osseg_bitmask_free(&out);
  osseg_bitmask_free(&odd);
}

/* ---------------------------------------------------------- run lists --- */

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

/* k random canonical lists over npix pixels, voted at every threshold with
 * both merges, the dispatched API, and through bitmasks. */
static void check_vote_runs(struct test_rng *rng, size_t k, uint32_t npix) {
  uint8_t *px = calloc((size_t)k * npix, 1), *votes = calloc(npix, 1);
  struct osseg_runs lists[64];
  const struct osseg_runs *lp[64];
  struct osseg_bitmask masks[64];
  const struct osseg_bitmask *mp[64];
  /* Shared "true" blobs plus per-model noise, like real predictions. */
  uint32_t base_s = (uint32_t)test_rng_below(rng, npix), base_l = (uint32_t)test_rng_below(rng, npix / 3 + 1);
  for (size_t j = 0; j < k; j++) {
    uint8_t *p = px + j * npix;
    size_t nr = test_rng_below(rng, 30);
    for (size_t i = 0; i < nr; i++) {
      uint32_t s = (uint32_t)test_rng_below(rng, npix), l = (uint32_t)test_rng_below(rng, 60);
      if (s + l > npix) l = npix - s;
      memset(p + s, 1, l);
    }
    if (test_rng_below(rng, 2)) {
      uint32_t s = base_s + (uint32_t)test_rng_below(rng, 3), l = base_l;
      if (s > npix) s = npix;
      if (s + l > npix) l = npix - s;
      memset(p + s, 1, l);
    }
    lists[j] = (struct osseg_runs){0};
    ref_runs(p, npix, &lists[j]);
    lp[j] = &lists[j];
    assert_int_equal(osseg_bitmask_init(&masks[j], 1, npix), 0);
    assert_int_equal(osseg_bitmask_paint_runs(&masks[j], lists[j].v, lists[j].n), 0);
    mp[j] = &masks[j];
    for (uint32_t q = 0; q < npix; q++) votes[q] += p[q];
  }
  struct osseg_bitmask out;
  assert_int_equal(osseg_bitmask_init(&out, 1, npix), 0);
  uint8_t *want_px = calloc(npix, 1);
  struct osseg_runs want = {0}, got = {0}, via_mask = {0};
  for (unsigned m = 1; m <= k + 1; m++) {
    for (uint32_t q = 0; q < npix; q++) want_px[q] = votes[q] >= m;
    ref_runs(want_px, npix, &want);
    assert_int_equal(osseg__vote_runs_linear(lp, k, m, &got), 0);
    assert_runs_equal(&got, &want);
    assert_int_equal(osseg__vote_runs_heap(lp, k, m, &got), 0);
    assert_runs_equal(&got, &want);
    assert_int_equal(osseg_vote_runs(lp, k, m, &got), 0);
    assert_runs_equal(&got, &want);
    assert_int_equal(osseg_vote_masks(mp, k, m, &out), 0);
    assert_int_equal(osseg_bitmask_to_runs(&out, &via_mask), 0);
    assert_runs_equal(&via_mask, &want);
  }
  for (size_t j = 0; j < k; j++) {
    osseg_runs_free(&lists[j]);
    osseg_bitmask_free(&masks[j]);
  }
  osseg_bitmask_free(&out);
  osseg_runs_free(&want);
  osseg_runs_free(&got);
  osseg_runs_free(&via_mask);
  free(px);
  free(votes);
  free(want_px);
}

static void test_vote_runs_random(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 22);
  for (int iter = 0; iter < 60; iter++)
    check_vote_runs(&rng, 1 + test_rng_below(&rng, 12), 1 + (uint32_t)test_rng_below(&rng, 3000));
  check_vote_runs(&rng, 64, 5000);
  check_vote_runs(&rng, 3, 16384);
}

static void test_vote_runs_golden_and_errors(void **state) {
  (void)state;
  /* Touching runs from different lists must not split the output: A ends
   * at 10 where B begins, C covers both. */
  struct osseg_run av[] = {{0, 10}}, bv[] = {{10, 10}}, cv[] = {{5, 10}};
  struct osseg_runs a = {av, 1, 1}, b = {bv, 1, 1}, c = {cv, 1, 1};
  const struct osseg_runs *l[] = {&a, &b, &c};
  struct osseg_runs out = {0};
  assert_int_equal(osseg_vote_runs(l, 3, 2, &out), 0);
  assert_int_equal(out.n, 1);
  assert_int_equal(out.v[0].start, 5);
  assert_int_equal(out.v[0].len, 10);
  assert_int_equal(osseg_vote_runs(l, 3, 1, &out), 0);
  assert_int_equal(out.n, 1);
  assert_int_equal(out.v[0].len, 20);
  assert_int_equal(osseg_vote_runs(l, 3, 3, &out), 0);
  assert_int_equal(out.n, 0);
  assert_int_equal(osseg_vote_runs(l, 3, 4, &out), 0);
  assert_int_equal(out.n, 0);
  assert_int_equal(osseg_vote_runs(l, 1, 1, &out), 0);
  assert_int_equal(out.n, 1);
  assert_int_equal(out.v[0].len, 10);

  assert_int_equal(osseg_vote_runs(l, 0, 1, &out), OSSEG_EINVAL);
  assert_int_equal(osseg_vote_runs(l, 3, 0, &out), OSSEG_EINVAL);
  assert_int_equal(osseg_vote_runs(l, 65, 1, &out), OSSEG_EINVAL);
  const struct osseg_runs *self[] = {&a, &out};
  assert_int_equal(osseg_vote_runs(self, 2, 1, &out), OSSEG_EINVAL);
  /* Non-canonical inputs: touching, unsorted, empty run. */
  struct osseg_run t1[] = {{0, 5}, {5, 5}}, t2[] = {{10, 1}, {0, 1}}, t3[] = {{3, 0}};
  struct osseg_runs bad1 = {t1, 2, 2}, bad2 = {t2, 2, 2}, bad3 = {t3, 1, 1};
  const struct osseg_runs *b1[] = {&a, &bad1}, *b2[] = {&bad2}, *b3[] = {&bad3};
  assert_int_equal(osseg_vote_runs(b1, 2, 1, &out), OSSEG_EINVAL);
  assert_int_equal(osseg_vote_runs(b2, 1, 1, &out), OSSEG_EINVAL);
  assert_int_equal(osseg_vote_runs(b3, 1, 1, &out), OSSEG_EINVAL);
  osseg_runs_free(&out);

  /* Allocation-failure sweep. */
  for (uint64_t nth = 1;; nth++) {
    struct osseg_runs o = {0};
    osseg__alloc_fail_at(nth);
    int rc = osseg_vote_runs(l, 3, 2, &o);
    uint64_t seen = osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_true(seen < nth);
      assert_int_equal(o.n, 1);
      osseg_runs_free(&o);
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
    assert_int_equal(o.n, 0);
    osseg_runs_free(&o);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_words_all_lengths),
      cmocka_unit_test(test_words_adversarial),
      cmocka_unit_test(test_masks_api),
      cmocka_unit_test(test_vote_runs_random),
      cmocka_unit_test(test_vote_runs_golden_and_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
