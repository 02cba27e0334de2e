/* Internals of the RLE text kernels (rle.c, rle_avx2.c, rle_avx512.c).
 *
 * The public osseg_rle_parse() reserves room in the output, then runs the
 * fastest available "fast path". A fast path only ever *succeeds*: whenever
 * it meets anything unusual (a byte that is neither digit nor space, a number
 * too long or too large, a start of 0, a run past the image end, an odd
 * number of numbers) it gives up and the generic parser runs from scratch.
 * The generic parser alone produces error messages, so every CPU level
 * reports exactly the same error for the same text, and a fast path only
 * has to be exact on valid input. */
#ifndef OSSEG_RLE_INTERNAL_H
#define OSSEG_RLE_INTERNAL_H

#include <string.h>

#include "osseg_kernels.h"

/* State shared by a fast path and the driver. `dst` has room for every run
 * the text can hold ((len + 1) / 4). On success the fast path stores the
 * runs it appended in *nruns, and sets *noncanonical when an appended run
 * does not start strictly after the end of the previous one (prev_end,
 * exclusive, -1 when there is none). */
struct osseg__rle_sink {
  struct osseg_run *dst;
  size_t nruns;
  int64_t prev_end;
  int noncanonical;
};

/* Return 0 on success, -1 to hand the text to the generic parser. */
int osseg__rle_parse_fast_avx2(const char *text, size_t len, uint64_t npixels,
                               struct osseg__rle_sink *sink);
int osseg__rle_parse_fast_avx512(const char *text, size_t len, uint64_t npixels,
                                 struct osseg__rle_sink *sink);

/* AVX-512 formatting of the leading runs (see rle_avx512.c). */
size_t osseg__rle_format_avx512(const struct osseg_run *v, size_t n, char *out, size_t *done);

/* The reference: exact errors, any CPU. Same contract as osseg_rle_parse
 * except that it does not canonicalise (the driver does). */
int osseg__rle_parse_generic(const char *text, size_t len, uint64_t npixels,
                             struct osseg__rle_sink *sink,
                             struct osseg_diag *diag);

/* Forces one implementation, for tests and benchmarks: 0 = generic,
 * OSSEG_CPU_AVX2, OSSEG_CPU_AVX512, or ~0u for "best available" (the
 * default). A level the CPU lacks falls back to the next lower one. */
void osseg__rle_force_level(unsigned level);

/* Eight ASCII digits, most significant first in the lowest byte, to their
 * value, with three multiplications instead of eight (the SWAR method
 * described by Lemire and Muła). Bytes must all be '0'..'9'. */
static inline uint32_t osseg__rle_swar8(uint64_t chunk) {
  uint64_t v = chunk - 0x3030303030303030ull;
  v = (v * 10) + (v >> 8); /* pairs: byte 2i holds digits 2i..2i+1 */
  v = (((v & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
       (((v >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >>
      32;
  return (uint32_t)v;
}

/* Value of the digit token text[s, e), 1 <= e - s <= 10, or UINT64_MAX when
 * it is longer than 10 digits. Uses one unaligned 8-byte load ending at e
 * when it stays inside the text (e >= 8); bytes before s become '0'. */
static inline uint64_t osseg__rle_token_value(const char *text, size_t s, size_t e) {
  size_t n = e - s;
  if (n > 10) return UINT64_MAX;
  if (e < 8) {
    uint64_t v = 0;
    for (size_t i = s; i < e; i++) v = v * 10 + (uint64_t)(text[i] - '0');
    return v;
  }
  uint64_t chunk;
  memcpy(&chunk, text + e - 8, 8);
  if (n < 8) {
    uint64_t keep = ~0ull << (8 * (8 - n));
    chunk = (chunk & keep) | (0x3030303030303030ull & ~keep);
    return osseg__rle_swar8(chunk);
  }
  uint64_t hi = 0;
  for (size_t i = s; i + 8 < e; i++) hi = hi * 10 + (uint64_t)(text[i] - '0');
  return hi * 100000000ull + osseg__rle_swar8(chunk);
}

/* ------------------------------------------------------ fast paths ---
 *
 * Both SIMD fast paths work in two phases over windows of the text:
 *   A. classify 64 bytes per step into digit and space masks and flatten
 *      token boundaries into arrays of positions: exclusive ends (a space
 *      right after a digit) and, on AVX2, starts (a digit after a
 *      non-digit). Starts and ends alternate, so token i is [S[i], E[i]).
 *      AVX-512 needs no starts: it finds each token's digits in the bytes
 *      before its end (rle_avx512.c).
 *   B. convert the tokens a vector group at a time (8 on AVX-512, 4 on
 *      AVX2: a gather of the 8 bytes ending at each token, then a
 *      multiply-add ladder), with scalar pairs (osseg__rle_fast_value and
 *      osseg__rle_fast_pair below) for unusual tokens and the rest. Every
 *      condition that would be an error is ORed into one flag checked once
 *      per window; canonicality is checked once at the end.
 * Separating the phases keeps phase B free of data-dependent branches, so
 * the conversions of consecutive tokens overlap in the pipeline. */

#define OSSEG__RLE_WINDOW 4096 /* bytes per window, a multiple of 64 */
/* At most one start per two bytes; the slack absorbs the unconditional
 * stores of phase A (up to 16 entries past the last real one). */
#define OSSEG__RLE_WINDOW_TOKENS (OSSEG__RLE_WINDOW / 2 + 64)

/* Phase A output and carried state of the AVX2 path. */
struct osseg__rle_fast {
  uint32_t S[OSSEG__RLE_WINDOW_TOKENS];
  uint32_t E[OSSEG__RLE_WINDOW_TOKENS];
  size_t ns, ne;
  uint64_t carry; /* 1 when the previous block ended with a digit */
  uint64_t pending; /* start value waiting for its length, if have_pending */
  int have_pending;
  uint64_t err;
};

/* Value of token [s, e) on the fast path; sets *err for anything the
 * generic parser would reject as a number. */
static inline uint64_t osseg__rle_fast_value(const char *text, uint32_t s, uint32_t e,
                                             uint64_t *err) {
  uint32_t n = e - s;
  if (__builtin_expect(n > 8 || e < 8, 0)) {
    uint64_t v = osseg__rle_token_value(text, s, e);
    *err |= v > UINT32_MAX;
    return v;
  }
  uint64_t chunk;
  memcpy(&chunk, text + e - 8, 8);
  uint64_t keep = ~0ull << (8 * (8 - n));
  chunk = (chunk & keep) | (0x3030303030303030ull & ~keep);
  return osseg__rle_swar8(chunk);
}

/* Phase B state in locals: stores through dst (uint32_t) may alias
 * uint32_t fields of the structs, so working on them directly would force
 * the compiler to reload and store them after every run. Canonicality is
 * not tracked here but checked once at the end (osseg__rle_noncanonical). */
struct osseg__rle_acc {
  struct osseg_run *dst;
  size_t nruns;
  uint64_t err;
};

/* Stores the run (start value st, length ln) unless ln is 0; ORs any
 * problem into a->err. Branch-free. */
static inline void osseg__rle_fast_pair(struct osseg__rle_acc *a, uint64_t st, uint64_t ln,
                                        uint64_t npixels) {
  uint64_t s0 = st - 1; /* st == 0 wraps and fails the next test */
  a->err |= (uint64_t)(s0 >= npixels) | (uint64_t)(s0 + ln > npixels) |
            (uint64_t)(ln > UINT32_MAX);
  struct osseg_run r = {(uint32_t)s0, (uint32_t)ln};
  a->dst[a->nruns] = r;
  a->nruns += ln != 0;
}

/* Whether runs dst[0, n) continue canonically from prev_end: used by the
 * vector groups, which do not track it run by run. */
static inline int osseg__rle_noncanonical(const struct osseg_run *dst, size_t n,
                                          int64_t prev_end) {
  uint64_t nc = 0;
  for (size_t i = 0; i < n; i++) {
    nc |= (uint64_t)((int64_t)dst[i].start <= prev_end);
    prev_end = (int64_t)dst[i].start + dst[i].len;
  }
  return nc != 0;
}

#endif
