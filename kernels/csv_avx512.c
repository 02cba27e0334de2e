/* AVX-512 variant of the CSV special-byte search (csv_internal.h): nibble
 * table lookups, 64 bytes per step. The last partial vector is read with a
 * byte-masked load, which does not fault on the masked-off bytes, so a
 * buffer may end right before a guard page. */
#include <immintrin.h>

#include "csv_internal.h"

const char *osseg__csv_scan_avx512(const char *p, const char *end) {
  const __m512i lut_lo = _mm512_broadcast_i32x4(_mm_setr_epi8(OSSEG__CSV_LUT_LO));
  const __m512i lut_hi = _mm512_broadcast_i32x4(_mm_setr_epi8(OSSEG__CSV_LUT_HI));
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  while (p < end) {
    size_t left = (size_t)(end - p);
    __mmask64 valid = left >= 64 ? ~0ull : _bzhi_u64(~0ull, (unsigned)left);
    __m512i x = _mm512_maskz_loadu_epi8(valid, p);
    __m512i lo = _mm512_shuffle_epi8(lut_lo, _mm512_and_si512(x, nibble));
    __m512i hi = _mm512_shuffle_epi8(lut_hi, _mm512_and_si512(_mm512_srli_epi16(x, 4), nibble));
    __mmask64 m = _mm512_mask_test_epi8_mask(valid, lo, hi);
    if (m) return p + __builtin_ctzll(m);
    p += 64;
  }
  return end;
}
