/* AVX2 fast path of osseg_rle_parse (see rle_internal.h for the two
 * phases). Phase A classifies each 64-byte block as two 32-byte halves and
 * flattens token starts and ends with tzcnt, eight positions per step
 * written unconditionally (so the loop branches once per eight tokens, not
 * once per token). AVX2 has no byte-masked load, so the final partial block
 * is copied into a space-filled local buffer rather than read past the end. */
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

/* Appends base + (bit positions of m) to out; returns the new count. May
 * write up to 8 entries past the last real one. */
static inline size_t flatten(uint32_t *out, size_t n, uint64_t m, uint32_t base) {
  size_t cnt = (size_t)_mm_popcnt_u64(m);
  uint32_t *o = out + n;
  for (size_t done = 0; done < cnt; done += 8) {
    for (int i = 0; i < 8; i++) {
      o[i] = base + (uint32_t)_tzcnt_u64(m);
      m = _blsr_u64(m);
    }
    o += 8;
  }
  return n + cnt;
}

int osseg__rle_parse_fast_avx2(const char *text, size_t len, uint64_t npixels,
                               struct osseg__rle_sink *sink) {
  struct osseg__rle_fast f;
  f.ns = f.ne = 0;
  f.carry = 0;
  f.pending = 0;
  f.have_pending = 0;
  f.err = 0;
  for (size_t wbase = 0; wbase < len; wbase += OSSEG__RLE_WINDOW) {
    size_t wend = wbase + OSSEG__RLE_WINDOW < len ? wbase + OSSEG__RLE_WINDOW : len;
    for (size_t base = wbase; base < wend; base += 64) {
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
      uint64_t Sp = space_mask32(lo) | ((uint64_t)space_mask32(hi) << 32);
      if ((D | Sp) != ~0ull) return -1;
      uint64_t prev = (D << 1) | f.carry;
      f.carry = D >> 63;
      f.ns = flatten(f.S, f.ns, D & ~prev, (uint32_t)base);
      f.ne = flatten(f.E, f.ne, Sp & prev, (uint32_t)base);
    }
    if (wend == len) break;
    osseg__rle_fast_convert(text, npixels, &f, sink);
    if (f.err) return -1;
  }
  return osseg__rle_fast_finish(text, len, npixels, &f, sink);
}
