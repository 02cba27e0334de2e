/* AVX-512 variants of the bitmask kernels (F, BW, DQ, VL, VPOPCNTDQ; called
 * only when osseg_cpu_features() reports AVX512). */
#include <immintrin.h>

#include "bitmask_internal.h"

int osseg__to_runs_avx512(const uint64_t *bits, size_t nwords,
                          struct osseg_runs *out) {
  struct osseg__bm_writer w = {out, 0, 0};
  const __m512i ones = _mm512_set1_epi64(-1);
  size_t i = 0;
  int rc = 0;
  out->n = 0;
  /* As in the AVX2 variant: a 512-bit block is skipped when it continues
   * the current state (all zero outside a run, all one inside one). */
  while (i + 8 <= nwords) {
    __m512i x = _mm512_loadu_si512((const void *)(bits + i));
    __mmask8 differs = w.open ? _mm512_cmpneq_epi64_mask(x, ones)
                              : _mm512_test_epi64_mask(x, x);
    if (differs) {
      rc = osseg__bm_encode_words(&w, bits, i, i + 8);
      if (rc < 0) break;
    }
    i += 8;
  }
  if (rc == 0) rc = osseg__bm_encode_words(&w, bits, i, nwords);
  return osseg__bm_finish(&w, rc, nwords);
}

/* Lanes [0, n) of a masked load; masked-out lanes are not touched, so the
 * tail never reads past the buffer. */
static inline __mmask8 tail_mask(size_t n) { return (__mmask8)((1u << n) - 1); }

uint64_t osseg__popcount_avx512(const uint64_t *w, size_t n) {
  __m512i acc = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_loadu_si512((const void *)(w + i))));
  if (i < n)
    acc = _mm512_add_epi64(
        acc, _mm512_popcnt_epi64(_mm512_maskz_loadu_epi64(tail_mask(n - i), w + i)));
  return (uint64_t)_mm512_reduce_add_epi64(acc);
}

uint64_t osseg__popcount_and_avx512(const uint64_t *a, const uint64_t *b,
                                    size_t n) {
  __m512i acc = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m512i x = _mm512_and_si512(_mm512_loadu_si512((const void *)(a + i)),
                                 _mm512_loadu_si512((const void *)(b + i)));
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
  }
  if (i < n) {
    __mmask8 k = tail_mask(n - i);
    __m512i x = _mm512_and_si512(_mm512_maskz_loadu_epi64(k, a + i),
                                 _mm512_maskz_loadu_epi64(k, b + i));
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
  }
  return (uint64_t)_mm512_reduce_add_epi64(acc);
}
