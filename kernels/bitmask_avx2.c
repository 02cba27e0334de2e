/* AVX2 variants of the bitmask kernels (compiled with -mavx2 -mpopcnt ...;
 * called only when osseg_cpu_features() reports AVX2). */
#include <immintrin.h>

#include "bitmask_internal.h"

int osseg__to_runs_avx2(const uint64_t *bits, size_t nwords,
                        struct osseg_runs *out) {
  struct osseg__bm_writer w = {out, 0, 0};
  const __m256i ones = _mm256_set1_epi64x(-1);
  size_t i = 0;
  int rc = 0;
  out->n = 0;
  /* The writer has a run open exactly when the last pixel seen was set, so
   * a 256-bit block holds no transition when it is all zero outside a run
   * or all one inside a run: one vptest decides it for four words. */
  while (i + 4 <= nwords) {
    __m256i x = _mm256_loadu_si256((const __m256i *)(bits + i));
    int uniform = w.open ? _mm256_testc_si256(x, ones) : _mm256_testz_si256(x, x);
    if (!uniform) {
      rc = osseg__bm_encode_words(&w, bits, i, i + 4);
      if (rc < 0) break;
    }
    i += 4;
  }
  if (rc == 0) rc = osseg__bm_encode_words(&w, bits, i, nwords);
  return osseg__bm_finish(&w, rc, nwords);
}

/* Per-64-bit-lane popcount with the nibble lookup of Muła et al.: two
 * vpshufb lookups and a vpsadbw; cheaper than four scalar POPCNTs. */
static inline __m256i popcount256(__m256i v) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i lo = _mm256_and_si256(v, low);
  __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
  __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
  return _mm256_sad_epu8(c, _mm256_setzero_si256());
}

static inline uint64_t hsum256(__m256i v) {
  __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return (uint64_t)_mm_cvtsi128_si64(s) + (uint64_t)_mm_extract_epi64(s, 1);
}

uint64_t osseg__popcount_avx2(const uint64_t *w, size_t n) {
  __m256i acc = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    acc = _mm256_add_epi64(acc, popcount256(_mm256_loadu_si256((const __m256i *)(w + i))));
  uint64_t total = hsum256(acc);
  for (; i < n; i++) total += (uint64_t)__builtin_popcountll(w[i]);
  return total;
}

uint64_t osseg__popcount_and_avx2(const uint64_t *a, const uint64_t *b,
                                  size_t n) {
  __m256i acc = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    __m256i x = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(a + i)),
                                 _mm256_loadu_si256((const __m256i *)(b + i)));
    acc = _mm256_add_epi64(acc, popcount256(x));
  }
  uint64_t total = hsum256(acc);
  for (; i < n; i++) total += (uint64_t)__builtin_popcountll(a[i] & b[i]);
  return total;
}
