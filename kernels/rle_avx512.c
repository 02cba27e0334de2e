/* AVX-512 fast path of osseg_rle_parse.
 *
 * Phase A classifies 64 bytes per step with two compares into digit and
 * space masks and flattens the exclusive token ends (a space right after a
 * digit) into an array of positions with vpcompressd. Starts are not
 * needed: phase B gathers the 8 bytes that end at each token, and the
 * token's digits are exactly the bytes after the last non-digit of those 8
 * (found with vplzcntq), so the length comes from the data itself.
 * Phase B converts 8 tokens (4 runs) per step with the multiply-add ladder
 * (maddubs: pairs, madd: quads, mul_epu32: eights), checks them in vector
 * form and squeezes out zero-length runs with vpcompressq. Tokens of 8 or
 * more digits, or within 8 bytes of the text start, take the scalar path.
 *
 * The final partial block is read with a byte-masked load whose missing
 * bytes read as spaces (they close a trailing token) and which never
 * touches memory past the end, so a text ending right before a guard page
 * is safe. Gathers only read bytes [e - 8, e) of a token end e <= len. */
#include <immintrin.h>

#include "rle_internal.h"

/* Appends base + (bit positions of m) to out at n; returns the new count.
 * The four quarter counts are independent, so the stores do not wait on
 * each other. May write up to 16 entries past the last real one. */
static inline size_t flatten(uint32_t *out, size_t n, uint64_t m, uint32_t base) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32((int)base));
  const __m512i sixteen = _mm512_set1_epi32(16);
  __mmask16 k0 = (__mmask16)m, k1 = (__mmask16)(m >> 16), k2 = (__mmask16)(m >> 32),
            k3 = (__mmask16)(m >> 48);
  size_t c0 = (size_t)__builtin_popcount(k0), c1 = (size_t)__builtin_popcount(k1),
         c2 = (size_t)__builtin_popcount(k2);
  _mm512_storeu_si512((void *)(out + n), _mm512_maskz_compress_epi32(k0, idx));
  idx = _mm512_add_epi32(idx, sixteen);
  _mm512_storeu_si512((void *)(out + n + c0), _mm512_maskz_compress_epi32(k1, idx));
  idx = _mm512_add_epi32(idx, sixteen);
  _mm512_storeu_si512((void *)(out + n + c0 + c1), _mm512_maskz_compress_epi32(k2, idx));
  idx = _mm512_add_epi32(idx, sixteen);
  _mm512_storeu_si512((void *)(out + n + c0 + c1 + c2), _mm512_maskz_compress_epi32(k3, idx));
  return n + (size_t)_mm_popcnt_u64(m);
}

/* Value of the token that ends at e (scalar path). */
static inline uint64_t value_at(const char *text, uint32_t e, uint64_t *err) {
  uint32_t s = e;
  while (s > 0 && e - s <= 10 && (unsigned)(text[s - 1] - '0') < 10u) s--;
  uint64_t v = osseg__rle_token_value(text, s, e);
  *err |= v > UINT32_MAX;
  return v;
}

/* Converts the tokens ending at E[0..8) as four runs into a; -1 (doing
 * nothing) when one of them needs the scalar path. */
static inline int group8(const char *text, const uint32_t *E, uint64_t npixels,
                         struct osseg__rle_acc *a) {
  __m256i e32 = _mm256_loadu_si256((const __m256i *)E);
  if (_mm256_cmplt_epu32_mask(e32, _mm256_set1_epi32(8))) return -1;
  __m512i idx = _mm512_sub_epi64(_mm512_cvtepu32_epi64(e32), _mm512_set1_epi64(8));
  __m512i chunk = _mm512_i64gather_epi64(idx, (const void *)text, 1);
  __m512i dd = _mm512_sub_epi8(chunk, _mm512_set1_epi8('0'));
  __m512i nondigit = _mm512_movm_epi8(_mm512_cmpgt_epu8_mask(dd, _mm512_set1_epi8(9)));
  __m512i lz = _mm512_lzcnt_epi64(nondigit); /* 8 x the token's digit count */
  if (_mm512_cmpeq_epi64_mask(lz, _mm512_set1_epi64(64))) return -1;
  __m512i keep = _mm512_sllv_epi64(_mm512_set1_epi64(-1), _mm512_sub_epi64(_mm512_set1_epi64(64), lz));
  __m512i d = _mm512_and_si512(dd, keep);
  __m512i p2 = _mm512_maddubs_epi16(d, _mm512_set1_epi16(0x010A));    /* d0*10 + d1 */
  __m512i p4 = _mm512_madd_epi16(p2, _mm512_set1_epi32(0x00010064));  /* p0*100 + p1 */
  __m512i vals = _mm512_add_epi64(_mm512_mul_epu32(p4, _mm512_set1_epi64(10000)),
                                  _mm512_srli_epi64(p4, 32));
  /* 8 x u32 = 4 x {start value, length}: the layout of struct osseg_run. */
  __m256i v32 = _mm512_cvtepi64_epi32(vals);
  __m256i st = _mm256_and_si256(v32, _mm256_set1_epi64x(0xffffffff));
  __m256i ln = _mm256_srli_epi64(v32, 32);
  __m256i zero = _mm256_setzero_si256();
  __m256i np = _mm256_set1_epi64x((long long)npixels);
  /* start 0, start past the image, or start - 1 + len > npixels */
  __mmask8 bad = _mm256_cmpeq_epi64_mask(st, zero) | _mm256_cmpgt_epu64_mask(st, np) |
                 _mm256_cmpgt_epu64_mask(_mm256_add_epi64(st, ln),
                                         _mm256_add_epi64(np, _mm256_set1_epi64x(1)));
  a->err |= bad;
  __m256i runs = _mm256_sub_epi32(v32, _mm256_setr_epi32(1, 0, 1, 0, 1, 0, 1, 0));
  __mmask8 nz = (__mmask8)(~_mm256_cmpeq_epi64_mask(ln, zero) & 0xF);
  /* These four runs are within the (len + 1) / 4 the driver reserved. */
  _mm256_storeu_si256((__m256i *)(a->dst + a->nruns), _mm256_maskz_compress_epi64(nz, runs));
  a->nruns += (size_t)__builtin_popcount(nz);
  return 0;
}

struct state {
  uint32_t E[OSSEG__RLE_WINDOW_TOKENS];
  size_t ne;
  uint64_t carry;
  uint64_t pending;
  int have_pending;
};

static void convert(const char *text, uint64_t npixels, struct state *f,
                    struct osseg__rle_acc *a) {
  size_t ne = f->ne, i = 0;
  const uint32_t *E = f->E;
  if (f->have_pending && ne > 0) {
    osseg__rle_fast_pair(a, f->pending, value_at(text, E[0], &a->err), npixels);
    f->have_pending = 0;
    i = 1;
  }
  for (; i + 8 <= ne; i += 8) {
    if (group8(text, E + i, npixels, a) == 0) continue;
    for (size_t j = i; j < i + 8; j += 2) {
      uint64_t st = value_at(text, E[j], &a->err);
      osseg__rle_fast_pair(a, st, value_at(text, E[j + 1], &a->err), npixels);
    }
  }
  for (; i + 1 < ne; i += 2) {
    uint64_t st = value_at(text, E[i], &a->err);
    osseg__rle_fast_pair(a, st, value_at(text, E[i + 1], &a->err), npixels);
  }
  if (i < ne) {
    f->pending = value_at(text, E[i], &a->err);
    f->have_pending = 1;
  }
  f->ne = 0;
}

int osseg__rle_parse_fast_avx512(const char *text, size_t len, uint64_t npixels,
                                 struct osseg__rle_sink *sink) {
  const __m512i zero = _mm512_set1_epi8('0');
  const __m512i ten = _mm512_set1_epi8(10);
  const __m512i space = _mm512_set1_epi8(' ');
  struct state f;
  f.ne = 0;
  f.carry = 0;
  f.pending = 0;
  f.have_pending = 0;
  struct osseg__rle_acc a = {sink->dst, sink->nruns, 0};
  for (size_t wbase = 0; wbase < len; wbase += OSSEG__RLE_WINDOW) {
    size_t wend = wbase + OSSEG__RLE_WINDOW < len ? wbase + OSSEG__RLE_WINDOW : len;
    for (size_t base = wbase; base < wend; base += 64) {
      /* The text usually comes from a file mapping and is not cached; a
       * new row starts a new stream the hardware prefetcher has not seen.
       * Prefetches past the end are harmless (they never fault). */
      _mm_prefetch(text + base + 512, _MM_HINT_T0);
      size_t left = len - base;
      __m512i x;
      if (left >= 64)
        x = _mm512_loadu_si512((const void *)(text + base));
      else
        x = _mm512_mask_loadu_epi8(space, _bzhi_u64(~0ull, (unsigned)left), text + base);
      uint64_t D = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(x, zero), ten);
      uint64_t Sp = _mm512_cmpeq_epi8_mask(x, space);
      if ((D | Sp) != ~0ull) return -1;
      uint64_t prev = (D << 1) | f.carry;
      f.carry = D >> 63;
      f.ne = flatten(f.E, f.ne, Sp & prev, (uint32_t)base);
    }
    if (wend == len && f.carry) f.E[f.ne++] = (uint32_t)len;
    convert(text, npixels, &f, &a);
    if (a.err) return -1;
  }
  if (f.have_pending) return -1;
  size_t first = sink->nruns;
  sink->nruns = a.nruns;
  sink->noncanonical = osseg__rle_noncanonical(sink->dst + first, a.nruns - first, sink->prev_end);
  return 0;
}

/* ------------------------------------------------------------ format --- */

/* Formats runs while they come in groups of four whose numbers are all
 * below 10^8 (every run of an image up to 10^8 pixels); stops at the first
 * other group or when fewer than four runs are left, storing in *done how
 * many runs it wrote. Each number is followed by a space. Returns the
 * bytes written.
 *
 * Eight numbers (four starts + 1 and four lengths) per step, in 64-bit
 * lanes: split into two 4-digit halves (multiply by the 2^45 / 10^4 magic),
 * then 2-digit and 1-digit lanes with multiply-shift divisions, the most
 * significant digit in the lowest byte; the count of leading zero digits
 * is the number of low zero bytes (from vplzcntq of the lowest set bit).
 * The eight words are then stored one by one, 8 bytes each, advancing by
 * their digit counts. */
size_t osseg__rle_format_avx512(const struct osseg_run *v, size_t n, char *out, size_t *done) {
  char *p = out;
  size_t i = 0;
  const __m256i plus1 = _mm256_setr_epi32(1, 0, 1, 0, 1, 0, 1, 0);
  const __m256i limit = _mm256_set1_epi32(100000000 - 1);
  for (; i + 4 <= n; i += 4) {
    __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(v + i));
    /* raw < 10^8 - 1 keeps start + 1 below 10^8 and away from overflow. */
    if (_mm256_cmpge_epu32_mask(raw, limit)) break;
    __m512i x = _mm512_cvtepu32_epi64(_mm256_add_epi32(raw, plus1));
    __m512i hi = _mm512_srli_epi64(_mm512_mul_epu32(x, _mm512_set1_epi64(3518437209u)), 45);
    __m512i lo = _mm512_sub_epi64(x, _mm512_mul_epu32(hi, _mm512_set1_epi64(10000)));
    x = _mm512_or_si512(hi, _mm512_slli_epi64(lo, 32)); /* two 4-digit 32-bit lanes */
    __m512i h = _mm512_srli_epi32(_mm512_mullo_epi32(x, _mm512_set1_epi32(10486)), 20);
    x = _mm512_or_si512(h, _mm512_slli_epi32(_mm512_sub_epi32(x, _mm512_mullo_epi32(h, _mm512_set1_epi32(100))), 16));
    __m512i t = _mm512_srli_epi16(_mm512_mullo_epi16(x, _mm512_set1_epi16(103)), 10);
    x = _mm512_or_si512(t, _mm512_slli_epi16(_mm512_sub_epi16(x, _mm512_mullo_epi16(t, _mm512_set1_epi16(10))), 8));
    /* Leading zero digits: the byte index of the lowest non-zero byte (the
     * last digit is forced non-zero so that 0 prints as "0"). */
    __m512i y = _mm512_or_si512(x, _mm512_set1_epi64((long long)(1ull << 56)));
    __m512i lowbit = _mm512_and_si512(y, _mm512_sub_epi64(_mm512_setzero_si512(), y));
    __m512i skip = _mm512_and_si512(_mm512_sub_epi64(_mm512_set1_epi64(63), _mm512_lzcnt_epi64(lowbit)),
                                    _mm512_set1_epi64(~7ll)); /* 8 x zero digits */
    __m512i ascii = _mm512_srlv_epi64(_mm512_or_si512(x, _mm512_set1_epi8('0')), skip);
    /* Lanes go to general registers by extraction, not through memory: a
     * 64-byte store reloaded as 8-byte pieces stalls store forwarding. */
    uint64_t counts = (uint64_t)_mm_cvtsi128_si64(
        _mm512_cvtepi64_epi8(_mm512_sub_epi64(_mm512_set1_epi64(8), _mm512_srli_epi64(skip, 3))));
    __m256i a0 = _mm512_castsi512_si256(ascii), a1 = _mm512_extracti64x4_epi64(ascii, 1);
    __m128i q[4] = {_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1),
                    _mm256_castsi256_si128(a1), _mm256_extracti128_si256(a1, 1)};
    for (int k = 0; k < 4; k++) {
      uint64_t w0 = (uint64_t)_mm_cvtsi128_si64(q[k]), w1 = (uint64_t)_mm_extract_epi64(q[k], 1);
      memcpy(p, &w0, 8);
      p += counts & 0xff;
      *p++ = ' ';
      counts >>= 8;
      memcpy(p, &w1, 8);
      p += counts & 0xff;
      *p++ = ' ';
      counts >>= 8;
    }
  }
  *done = i;
  return (size_t)(p - out);
}
