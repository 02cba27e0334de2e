/* AVX-512 fast path of osseg_rle_parse: classifies 64 bytes per step into
 * digit and space masks with two compares, then walks token ends with
 * tzcnt and converts each token with one 8-byte SWAR step (rle_internal.h).
 * The final partial block is read with a masked load, which never touches
 * the bytes past the end, so a text ending at a page boundary is safe. */
#include <immintrin.h>

#include "rle_internal.h"

int osseg__rle_parse_fast_avx512(const char *text, size_t len, uint64_t npixels,
                                 struct osseg__rle_sink *sink) {
  const __m512i zero = _mm512_set1_epi8('0');
  const __m512i ten = _mm512_set1_epi8(10);
  const __m512i space = _mm512_set1_epi8(' ');
  struct osseg__rle_scan c = {0, 0, 0, 0};
  for (size_t base = 0; base < len; base += 64) {
    size_t left = len - base;
    __m512i x;
    if (left >= 64)
      x = _mm512_loadu_si512((const void *)(text + base));
    else /* missing bytes read as spaces, which end a trailing token */
      x = _mm512_mask_loadu_epi8(space, _bzhi_u64(~0ull, (unsigned)left), text + base);
    uint64_t D = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(x, zero), ten);
    uint64_t S = _mm512_cmpeq_epi8_mask(x, space);
    if ((D | S) != ~0ull) return -1;
    if (osseg__rle_block(text, base, D, S, npixels, &c, sink)) return -1;
  }
  return osseg__rle_finish(text, len, npixels, &c, sink);
}
