/* AVX2 variant of the CSV special-byte search (csv_internal.h). The tail
 * shorter than a vector is finished byte by byte so nothing past `end` is
 * read. */
#include <immintrin.h>

#include "csv_internal.h"

const char *osseg__csv_scan_avx2(const char *p, const char *end) {
  const __m256i comma = _mm256_set1_epi8(','), quote = _mm256_set1_epi8('"');
  const __m256i lf = _mm256_set1_epi8('\n'), cr = _mm256_set1_epi8('\r');
  const __m256i nul = _mm256_setzero_si256();
  while (end - p >= 32) {
    __m256i x = _mm256_loadu_si256((const __m256i *)p);
    __m256i m = _mm256_or_si256(
        _mm256_or_si256(_mm256_cmpeq_epi8(x, comma), _mm256_cmpeq_epi8(x, quote)),
        _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(x, lf), _mm256_cmpeq_epi8(x, cr)),
                        _mm256_cmpeq_epi8(x, nul)));
    uint32_t bits = (uint32_t)_mm256_movemask_epi8(m);
    if (bits) return p + __builtin_ctz(bits);
    p += 32;
  }
  return osseg__csv_scan_generic(p, end);
}
