/* Tests for kernels/bitmask*.c: init/paint/encode/count, every ISA variant
 * the CPU (and OSSEG_DISABLE_CPU_FEATURES) allows against the generic
 * reference and a per-pixel model, on buffers that end at a guard page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bitmask_internal.h"
#include "test_support.h"

struct variant {
  const char *name;
  unsigned need;
  osseg__to_runs_fn to_runs;
  osseg__popcount_fn popcount;
  osseg__popcount_and_fn popcount_and;
};

static const struct variant variants[] = {
    {"generic", 0, osseg__to_runs_generic, osseg__popcount_generic,
     osseg__popcount_and_generic},
    {"avx2", OSSEG_CPU_AVX2, osseg__to_runs_avx2, osseg__popcount_avx2,
     osseg__popcount_and_avx2},
    {"avx512", OSSEG_CPU_AVX512, osseg__to_runs_avx512, osseg__popcount_avx512,
     osseg__popcount_and_avx512},
};
#define NVARIANTS (sizeof variants / sizeof variants[0])

static int usable(const struct variant *v) {
  return (osseg_cpu_features() & v->need) == v->need;
}

/* Reference encoder: one pixel at a time. */
static void ref_runs_words(const uint64_t *w, size_t nwords, struct osseg_runs *out) {
  out->n = 0;
  uint64_t nbits = (uint64_t)nwords * 64, i = 0;
  while (i < nbits) {
    if (!((w[i / 64] >> (i % 64)) & 1)) {
      i++;
      continue;
    }
    uint64_t s = i;
    while (i < nbits && ((w[i / 64] >> (i % 64)) & 1)) i++;
    assert_int_equal(osseg_runs_push(out, (uint32_t)s, (uint32_t)(i - s)), 0);
  }
}

static uint64_t ref_popcount(const uint64_t *w, size_t n) {
  uint64_t c = 0;
  for (size_t i = 0; i < n; i++)
    for (int b = 0; b < 64; b++) c += (w[i] >> b) & 1;
  return c;
}

static void assert_runs_equal(const struct osseg_runs *a, const struct osseg_runs *b) {
  assert_int_equal(a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    assert_int_equal(a->v[i].start, b->v[i].start);
    assert_int_equal(a->v[i].len, b->v[i].len);
  }
}

/* Runs every usable variant on w[0..n) (and a second buffer for the AND
 * count) and compares with the references. */
static void check_all_variants(const uint64_t *w, const uint64_t *w2, size_t n) {
  struct osseg_runs want = {0}, got = {0};
  ref_runs_words(w, n, &want);
  uint64_t want_count = ref_popcount(w, n);
  uint64_t want_and = 0;
  for (size_t i = 0; i < n; i++) want_and += (uint64_t)__builtin_popcountll(w[i] & w2[i]);
  for (size_t v = 0; v < NVARIANTS; v++) {
    if (!usable(&variants[v])) continue;
    assert_int_equal(variants[v].to_runs(w, n, &got), 0);
    assert_runs_equal(&got, &want);
    assert_int_equal(variants[v].popcount(w, n), want_count);
    assert_int_equal(variants[v].popcount_and(w, w2, n), want_and);
  }
  osseg_runs_free(&want);
  osseg_runs_free(&got);
}

static void test_init_errors_and_layout(void **state) {
  (void)state;
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, 0, 5), OSSEG_ERANGE);
  assert_null(m.bits);
  assert_int_equal(osseg_bitmask_init(&m, 5, 0), OSSEG_ERANGE);
  assert_int_equal(osseg_bitmask_init(&m, OSSEG_MAX_SIDE + 1, 1), OSSEG_ERANGE);
  assert_int_equal(osseg_bitmask_init(&m, 1, OSSEG_MAX_SIDE + 1), OSSEG_ERANGE);

  assert_int_equal(osseg_bitmask_init(&m, 1, 1), 0);
  assert_int_equal(m.nwords, 1);
  assert_int_equal((uintptr_t)m.bits % 64, 0);
  assert_int_equal(osseg_bitmask_count(&m), 0);
  struct osseg_run one = {0, 1};
  assert_int_equal(osseg_bitmask_paint_runs(&m, &one, 1), 0);
  assert_int_equal(m.bits[0], 1);
  struct osseg_runs r = {0};
  assert_int_equal(osseg_bitmask_to_runs(&m, &r), 0);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.v[0].len, 1);
  osseg_bitmask_free(&m);
  assert_null(m.bits);

  /* A full 16384-wide row plus a partial one. */
  assert_int_equal(osseg_bitmask_init(&m, 3, OSSEG_MAX_SIDE), 0);
  assert_int_equal(m.nwords, 3 * OSSEG_MAX_SIDE / 64);
  struct osseg_run full = {0, 3 * OSSEG_MAX_SIDE};
  assert_int_equal(osseg_bitmask_paint_runs(&m, &full, 1), 0);
  assert_int_equal(osseg_bitmask_count(&m), 3 * OSSEG_MAX_SIDE);
  assert_int_equal(osseg_bitmask_to_runs(&m, &r), 0);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.v[0].start, 0);
  assert_int_equal(r.v[0].len, 3 * OSSEG_MAX_SIDE);
  osseg_bitmask_clear(&m);
  assert_int_equal(osseg_bitmask_count(&m), 0);
  osseg_bitmask_free(&m);

  /* Allocation failure is a clean error. */
  osseg__alloc_fail_at(1);
  assert_int_equal(osseg_bitmask_init(&m, 10, 10), OSSEG_ENOMEM);
  osseg__alloc_fail_at(0);
  assert_null(m.bits);
  osseg_runs_free(&r);
}

static void test_golden_3x4(void **state) {
  (void)state;
  /* . X X X
   * X . . .
   * . . X .   pixels 1,2,3,4 and 10: runs (1,4) and (10,1); RLE "2 4 11 1". */
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, 3, 4), 0);
  struct osseg_run in[] = {{10, 1}, {1, 2}, {2, 3}}; /* unsorted, overlapping */
  assert_int_equal(osseg_bitmask_paint_runs(&m, in, 3), 0);
  assert_int_equal(m.bits[0], 0x41eull);
  struct osseg_runs r = {0};
  assert_int_equal(osseg_bitmask_to_runs(&m, &r), 0);
  assert_int_equal(r.n, 2);
  assert_int_equal(r.v[0].start, 1);
  assert_int_equal(r.v[0].len, 4);
  assert_int_equal(r.v[1].start, 10);
  assert_int_equal(r.v[1].len, 1);
  assert_int_equal(osseg_bitmask_count(&m), 5);

  /* A run past the end is rejected and the mask left alone. */
  struct osseg_run bad[] = {{0, 1}, {11, 2}};
  assert_int_equal(osseg_bitmask_paint_runs(&m, bad, 2), OSSEG_ERANGE);
  assert_int_equal(m.bits[0], 0x41eull);
  struct osseg_run last = {11, 1};
  assert_int_equal(osseg_bitmask_paint_runs(&m, &last, 1), 0);
  assert_int_equal(m.bits[0], 0xc1eull);

  struct osseg_bitmask b;
  assert_int_equal(osseg_bitmask_init(&b, 3, 4), 0);
  struct osseg_run bi = {3, 8};
  assert_int_equal(osseg_bitmask_paint_runs(&b, &bi, 1), 0);
  assert_int_equal(osseg_bitmask_count_and(&m, &b), 3); /* pixels 3, 4, 10 */
  osseg_bitmask_free(&m);
  osseg_bitmask_free(&b);
  osseg_runs_free(&r);
}

/* Random masks of many shapes through the public API, checked per pixel. */
static void test_random_roundtrip(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 11);
  static const uint32_t shapes[][2] = {{1, 1},   {1, 63},  {1, 64},   {1, 65},  {3, 4},
                                       {7, 9},   {13, 37}, {64, 64},  {5, 1000}, {100, 77},
                                       {2, 16384}, {257, 129}, {512, 512}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    uint32_t h = shapes[si][0], w = shapes[si][1];
    uint64_t npix = (uint64_t)h * w;
    for (int iter = 0; iter < 8; iter++) {
      struct osseg_bitmask m;
      assert_int_equal(osseg_bitmask_init(&m, h, w), 0);
      uint8_t *px = calloc(npix, 1);
      struct osseg_runs in = {0}, got = {0}, want = {0};
      size_t nr = test_rng_below(&rng, 50);
      uint64_t maxlen = iter < 4 ? 10 : npix / 4 + 1;
      for (size_t i = 0; i < nr; i++) {
        uint64_t s = test_rng_below(&rng, npix), l = test_rng_below(&rng, maxlen + 1);
        if (s + l > npix) l = npix - s;
        osseg_runs_push(&in, (uint32_t)s, (uint32_t)l);
        memset(px + s, 1, l);
      }
      if (iter == 7) {
        memset(px, 1, npix);
        osseg_runs_push(&in, 0, (uint32_t)npix);
      }
      assert_int_equal(osseg_bitmask_paint_runs(&m, in.v, in.n), 0);
      uint64_t count = 0;
      for (uint64_t p = 0; p < npix; p++) {
        assert_int_equal((m.bits[p / 64] >> (p % 64)) & 1, px[p]);
        count += px[p];
      }
      /* Bits past the last pixel stay 0. */
      for (uint64_t p = npix; p < (uint64_t)m.nwords * 64; p++)
        assert_int_equal((m.bits[p / 64] >> (p % 64)) & 1, 0);
      assert_int_equal(osseg_bitmask_count(&m), count);
      assert_int_equal(osseg_bitmask_to_runs(&m, &got), 0);
      ref_runs_words(m.bits, m.nwords, &want);
      assert_runs_equal(&got, &want);
      osseg_runs_canonicalize(&in);
      assert_runs_equal(&got, &in);
      check_all_variants(m.bits, m.bits, m.nwords);
      free(px);
      osseg_bitmask_free(&m);
      osseg_runs_free(&in);
      osseg_runs_free(&got);
      osseg_runs_free(&want);
    }
  }
}

/* Every length from 0 to twice the widest vector plus one, buffers ending
 * at a guard page (both 64-byte-aligned starts and odd ones), with
 * adversarial and random contents. */
static void test_variants_lengths_patterns(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 12);
  static const uint64_t patterns[] = {0, ~0ull, 0xaaaaaaaaaaaaaaaaull, 0x5555555555555555ull,
                                      1ull, 1ull << 63, 0xffffffff00000000ull};
  for (size_t n = 0; n <= 2 * 8 + 1; n++) {
    for (size_t shift = 0; shift < 2; shift++) {
      /* shift 1 moves the start by one word without moving the end. */
      uint64_t *a = test_guarded_alloc((n + shift) * 8);
      uint64_t *b = test_guarded_alloc((n + shift) * 8);
      assert_non_null(a);
      assert_non_null(b);
      uint64_t *wa = a + shift, *wb = b + shift;
      for (size_t p = 0; p < sizeof patterns / sizeof patterns[0]; p++) {
        for (size_t i = 0; i < n; i++) {
          wa[i] = patterns[p];
          wb[i] = patterns[(p + 1) % (sizeof patterns / sizeof patterns[0])];
        }
        check_all_variants(wa, wb, n);
      }
      for (int iter = 0; iter < 30; iter++) {
        for (size_t i = 0; i < n; i++) {
          /* Mix sparse, dense and uniform words so that both skip paths and
           * the transition path run in one buffer. */
          switch (test_rng_below(&rng, 4)) {
            case 0: wa[i] = 0; break;
            case 1: wa[i] = ~0ull; break;
            case 2: wa[i] = test_rng_next(&rng); break;
            default: wa[i] = 1ull << test_rng_below(&rng, 64); break;
          }
          wb[i] = test_rng_next(&rng);
        }
        check_all_variants(wa, wb, n);
      }
      test_guarded_free(a);
      test_guarded_free(b);
    }
  }
}

/* One run at every start and of lengths around 64/256/512 bits, so runs
 * begin, end and cross every word and vector boundary. */
static void test_variants_single_runs(void **state) {
  (void)state;
  const size_t n = 17;
  uint64_t *w = test_guarded_alloc(n * 8);
  assert_non_null(w);
  static const uint32_t lens[] = {1, 2, 63, 64, 65, 255, 256, 257, 511, 512, 513, 1000};
  for (uint32_t s = 0; s < n * 64; s++) {
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
      uint64_t l = lens[li];
      if (s + l > n * 64) l = n * 64 - s;
      memset(w, 0, n * 8);
      for (uint64_t p = s; p < s + l; p++) w[p / 64] |= 1ull << (p % 64);
      for (size_t v = 0; v < NVARIANTS; v++) {
        if (!usable(&variants[v])) continue;
        struct osseg_runs got = {0};
        assert_int_equal(variants[v].to_runs(w, n, &got), 0);
        assert_int_equal(got.n, 1);
        assert_int_equal(got.v[0].start, s);
        assert_int_equal(got.v[0].len, l);
        assert_int_equal(variants[v].popcount(w, n), l);
        osseg_runs_free(&got);
      }
    }
  }
  /* The complement: one hole in an all-ones mask. */
  for (uint32_t s = 0; s < n * 64; s += 7) {
    memset(w, 0xff, n * 8);
    w[s / 64] &= ~(1ull << (s % 64));
    for (size_t v = 0; v < NVARIANTS; v++) {
      if (!usable(&variants[v])) continue;
      struct osseg_runs got = {0};
      assert_int_equal(variants[v].to_runs(w, n, &got), 0);
      size_t want_n = (s > 0) + (s + 1 < n * 64);
      assert_int_equal(got.n, want_n);
      if (s > 0) assert_int_equal(got.v[0].len, s);
      osseg_runs_free(&got);
    }
  }
  test_guarded_free(w);
}

/* Allocation-failure sweep for the encoder: every failure point yields
 * OSSEG_ENOMEM and an empty list; eventually it succeeds. */
static void test_to_runs_alloc_failures(void **state) {
  (void)state;
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, 64, 64), 0);
  for (size_t i = 0; i < m.nwords; i++) m.bits[i] = 0x00ff00ff00ff00f0ull;
  struct osseg_runs want = {0};
  ref_runs_words(m.bits, m.nwords, &want);
  for (size_t v = 0; v < NVARIANTS; v++) {
    if (!usable(&variants[v])) continue;
    for (uint64_t nth = 1;; nth++) {
      struct osseg_runs got = {0};
      osseg__alloc_fail_at(nth);
      int rc = variants[v].to_runs(m.bits, m.nwords, &got);
      uint64_t seen = osseg__alloc_fail_at(0);
      if (rc == 0) {
        assert_true(seen < nth);
        assert_runs_equal(&got, &want);
        osseg_runs_free(&got);
        break;
      }
      assert_int_equal(rc, OSSEG_ENOMEM);
      assert_int_equal(got.n, 0);
      osseg_runs_free(&got);
    }
  }
  osseg_runs_free(&want);
  osseg_bitmask_free(&m);
}

/* The dispatcher picks the best variant the (possibly restricted) CPU
 * level allows, so each ctest level really runs a different path. */
static void test_dispatch_follows_cpu_level(void **state) {
  (void)state;
  unsigned f = osseg_cpu_features();
  const char *want = (f & OSSEG_CPU_AVX512) ? "avx512" : (f & OSSEG_CPU_AVX2) ? "avx2" : "generic";
  assert_string_equal(osseg__bitmask_impl()->name, want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dispatch_follows_cpu_level),
      cmocka_unit_test(test_init_errors_and_layout),
      cmocka_unit_test(test_golden_3x4),
      cmocka_unit_test(test_random_roundtrip),
      cmocka_unit_test(test_variants_lengths_patterns),
      cmocka_unit_test(test_variants_single_runs),
      cmocka_unit_test(test_to_runs_alloc_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
