/* AVX2 fast path of osseg_rle_parse: the same 64-byte block walk as the
 * AVX-512 one (rle_internal.h), with each block classified as two 32-byte
 * halves. AVX2 has no byte-masked load, so the final partial block is
 * copied into a space-filled local buffer rather than read past the end. */
#include <immintrin.h>

#include "rle_internal.h"

static inline uint32_t digit_mask32(__m256i x) {
  __m256i t = _mm256_sub_epi8(x, _mm256_set1_epi8('0'));
  /* unsigned t <= 9  <=>  min(t, 9) == t */
  __m256i d = _mm256_cmpeq_epi8(_mm256_min_epu8(t, _mm256_set1_epi8(9)), t);
  return (uint32_t)_mm256_movemask_epi8(d);
}

static inline uint32_t space_mask32(__m256i x) {
  return (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(' ')));
}

int osseg__rle_parse_fast_avx2(const char *text, size_t len, uint64_t npixels,
                               struct osseg__rle_sink *sink) {
  struct osseg__rle_scan c = {0, 0, 0, 0};
  for (size_t base = 0; base < len; base += 64) {
    size_t left = len - base;
    const char *p = text + base;
    char tail[64];
    if (left < 64) {
      memset(tail, ' ', sizeof tail);
      memcpy(tail, p, left);
      p = tail;
    }
    __m256i lo = _mm256_loadu_si256((const __m256i *)p);
    __m256i hi = _mm256_loadu_si256((const __m256i *)(p + 32));
    uint64_t D = digit_mask32(lo) | ((uint64_t)digit_mask32(hi) << 32);
    uint64_t S = space_mask32(lo) | ((uint64_t)space_mask32(hi) << 32);
    if ((D | S) != ~0ull) return -1;
    if (osseg__rle_block(text, base, D, S, npixels, &c, sink)) return -1;
  }
  return osseg__rle_finish(text, len, npixels, &c, sink);
}
