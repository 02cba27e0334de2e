/* AVX-512 variant of the CSV special-byte search (csv_internal.h). The last
 * partial vector is read with a byte-masked load, which does not fault on
 * the masked-off bytes, so a buffer may end right before a guard page. */
#include <immintrin.h>

#include "csv_internal.h"

const char *osseg__csv_scan_avx512(const char *p, const char *end) {
  const __m512i comma = _mm512_set1_epi8(','), quote = _mm512_set1_epi8('"');
  const __m512i lf = _mm512_set1_epi8('\n'), cr = _mm512_set1_epi8('\r');
  const __m512i nul = _mm512_setzero_si512();
  while (p < end) {
    size_t left = (size_t)(end - p);
    __mmask64 valid = left >= 64 ? ~0ull : _bzhi_u64(~0ull, (unsigned)left);
    __m512i x = _mm512_maskz_loadu_epi8(valid, p);
    __mmask64 m = _mm512_mask_cmpeq_epi8_mask(valid, x, comma) |
                  _mm512_mask_cmpeq_epi8_mask(valid, x, quote) |
                  _mm512_mask_cmpeq_epi8_mask(valid, x, lf) |
                  _mm512_mask_cmpeq_epi8_mask(valid, x, cr) |
                  _mm512_mask_cmpeq_epi8_mask(valid, x, nul);
    if (m) return p + __builtin_ctzll(m);
    p += 64;
  }
  return end;
}
