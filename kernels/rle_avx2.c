/* AVX2 fast path of osseg_rle_parse (see rle_internal.h for the two
 * phases). Phase A classifies each 64-byte block as two 32-byte halves and
 * flattens token starts and ends with tzcnt, eight positions per step
 * written unconditionally (so the loop branches once per eight tokens, not
 * once per token). Phase B converts 4 tokens (2 runs) per step: a gather of
 * the 8 bytes ending at each token, digits before the token's start zeroed,
 * then the multiply-add ladder (maddubs, madd, mul_epu32). AVX2 has no
 * byte-masked load, so the final partial block is copied into a
 * space-filled local buffer rather than read past the end. */
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

/* Converts tokens [S[k], E[k]), k < 4, as two runs into a; -1 (doing
 * nothing) when one needs the scalar path: over 8 digits, within 8 bytes
 * of the text start, or a zero length (which the scalar path drops). */
static inline int group4(const char *text, const uint32_t *S, const uint32_t *E,
                         uint64_t npixels, struct osseg__rle_acc *a) {
  __m128i e32 = _mm_loadu_si128((const __m128i *)E);
  __m128i n32 = _mm_sub_epi32(e32, _mm_loadu_si128((const __m128i *)S));
  __m128i eight = _mm_set1_epi32(8);
  /* Positions stay below 2^31, so signed compares are exact. */
  if (_mm_movemask_epi8(_mm_or_si128(_mm_cmpgt_epi32(n32, eight), _mm_cmplt_epi32(e32, eight))))
    return -1;
  __m256i idx = _mm256_sub_epi64(_mm256_cvtepu32_epi64(e32), _mm256_set1_epi64x(8));
  __m256i chunk = _mm256_i64gather_epi64((const long long *)(const void *)text, idx, 1);
  __m256i shift = _mm256_sub_epi64(_mm256_set1_epi64x(64),
                                   _mm256_slli_epi64(_mm256_cvtepu32_epi64(n32), 3));
  __m256i keep = _mm256_sllv_epi64(_mm256_set1_epi64x(-1), shift);
  __m256i d = _mm256_and_si256(_mm256_sub_epi8(chunk, _mm256_set1_epi8('0')), keep);
  __m256i p2 = _mm256_maddubs_epi16(d, _mm256_set1_epi16(0x010A));
  __m256i p4 = _mm256_madd_epi16(p2, _mm256_set1_epi32(0x00010064));
  __m256i vals = _mm256_add_epi64(_mm256_mul_epu32(p4, _mm256_set1_epi64x(10000)),
                                  _mm256_srli_epi64(p4, 32));
  /* [t0, t1, t2, t3] as u32 = two {start value, length} pairs. */
  __m128i v32 = _mm256_castsi256_si128(
      _mm256_permutevar8x32_epi32(vals, _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0)));
  /* Lanes 0 and 2 are what count below: start, length, start + length. */
  __m128i ln = _mm_srli_epi64(v32, 32);
  __m128i zero = _mm_setzero_si128();
  __m128i np = _mm_set1_epi32((int)npixels); /* npixels <= 2^28 */
  __m128i bad = _mm_or_si128(
      _mm_or_si128(_mm_cmpeq_epi32(v32, zero), _mm_cmpgt_epi32(v32, np)),
      _mm_cmpgt_epi32(_mm_add_epi32(v32, ln), _mm_add_epi32(np, _mm_set1_epi32(1))));
  __m128i empty = _mm_cmpeq_epi32(ln, zero);
  if (_mm_movemask_epi8(empty) & 0x0F0F) return -1;
  a->err |= (uint64_t)(_mm_movemask_epi8(bad) & 0x0F0F);
  _mm_storeu_si128((__m128i *)(void *)(a->dst + a->nruns),
                   _mm_sub_epi32(v32, _mm_setr_epi32(1, 0, 1, 0)));
  a->nruns += 2;
  return 0;
}

/* Phase B: the shared scalar pairs around groups of four tokens. */
static void convert(const char *text, uint64_t npixels, struct osseg__rle_fast *f,
                    struct osseg__rle_sink *sink) {
  size_t ne = f->ne, i = 0;
  const uint32_t *S = f->S, *E = f->E;
  struct osseg__rle_acc a = {sink->dst, sink->nruns, f->err};
  if (f->have_pending && ne > 0) {
    uint64_t ln = osseg__rle_fast_value(text, S[0], E[0], &a.err);
    osseg__rle_fast_pair(&a, f->pending, ln, npixels);
    f->have_pending = 0;
    i = 1;
  }
  for (; i + 4 <= ne; i += 4) {
    if (group4(text, S + i, E + i, npixels, &a) == 0) continue;
    for (size_t j = i; j < i + 4; j += 2) {
      uint64_t st = osseg__rle_fast_value(text, S[j], E[j], &a.err);
      uint64_t ln = osseg__rle_fast_value(text, S[j + 1], E[j + 1], &a.err);
      osseg__rle_fast_pair(&a, st, ln, npixels);
    }
  }
  for (; i + 1 < ne; i += 2) {
    uint64_t st = osseg__rle_fast_value(text, S[i], E[i], &a.err);
    uint64_t ln = osseg__rle_fast_value(text, S[i + 1], E[i + 1], &a.err);
    osseg__rle_fast_pair(&a, st, ln, npixels);
  }
  if (i < ne) {
    f->pending = osseg__rle_fast_value(text, S[i], E[i], &a.err);
    f->have_pending = 1;
  }
  /* Canonicality is checked once at the end over all runs. */
  sink->nruns = a.nruns;
  f->err = a.err;
  if (f->ns > ne) {
    f->S[0] = f->S[ne];
    f->ns = 1;
  } else {
    f->ns = 0;
  }
  f->ne = 0;
}

int osseg__rle_parse_fast_avx2(const char *text, size_t len, uint64_t npixels,
                               struct osseg__rle_sink *sink) {
  struct osseg__rle_fast f;
  size_t first = sink->nruns;
  int64_t prev_end = sink->prev_end;
  f.ns = f.ne = 0;
  f.carry = 0;
  f.pending = 0;
  f.have_pending = 0;
  f.err = 0;
  for (size_t wbase = 0; wbase < len; wbase += OSSEG__RLE_WINDOW) {
    size_t wend = wbase + OSSEG__RLE_WINDOW < len ? wbase + OSSEG__RLE_WINDOW : len;
    for (size_t base = wbase; base < wend; base += 64) {
      /* The text usually comes from a file mapping and is not cached; a
       * new row starts a new stream the hardware prefetcher has not seen.
       * Prefetches past the end are harmless (they never fault). */
      _mm_prefetch(text + base + 512, _MM_HINT_T0);
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
    convert(text, npixels, &f, sink);
    if (f.err) return -1;
  }
  if (f.carry) f.E[f.ne++] = (uint32_t)len;
  convert(text, npixels, &f, sink);
  if (f.have_pending || f.ns || f.err) return -1;
  sink->noncanonical = osseg__rle_noncanonical(sink->dst + first, sink->nruns - first, prev_end);
  return 0;
}
