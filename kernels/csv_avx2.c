/* AVX2 variant of the CSV special-byte search (csv_internal.h): nibble
 * table lookups, 32 bytes per step. The tail shorter than a vector is
 * finished byte by byte so nothing past `end` is read. */
#include <immintrin.h>

#include "csv_internal.h"

const char *osseg__csv_scan_avx2(const char *p, const char *end) {
  const __m256i lut_lo = _mm256_broadcastsi128_si256(_mm_setr_epi8(OSSEG__CSV_LUT_LO));
  const __m256i lut_hi = _mm256_broadcastsi128_si256(_mm_setr_epi8(OSSEG__CSV_LUT_HI));
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  while (end - p >= 32) {
    __m256i x = _mm256_loadu_si256((const __m256i *)p);
    __m256i lo = _mm256_shuffle_epi8(lut_lo, _mm256_and_si256(x, nibble));
    __m256i hi =
        _mm256_shuffle_epi8(lut_hi, _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble));
    __m256i none = _mm256_cmpeq_epi8(_mm256_and_si256(lo, hi), _mm256_setzero_si256());
    uint32_t bits = ~(uint32_t)_mm256_movemask_epi8(none);
    if (bits) return p + __builtin_ctz(bits);
    p += 32;
  }
  return osseg__csv_scan_generic(p, end);
}
