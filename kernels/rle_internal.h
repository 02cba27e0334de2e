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

/* Handles one number of a fast path: returns 0, or -1 to bail. `*pending`
 * holds the start of the current run (0 when the next number is a start);
 * starts are never 0 on the success path, so 0 is free to mean "none". */
static inline int osseg__rle_take(uint64_t value, uint64_t npixels, uint32_t *pending,
                                  struct osseg__rle_sink *sink) {
  if (*pending == 0) {
    if (value == 0 || value > UINT32_MAX) return -1;
    *pending = (uint32_t)value;
    return 0;
  }
  uint64_t s0 = (uint64_t)*pending - 1;
  *pending = 0;
  if (value > UINT32_MAX || s0 >= npixels || s0 + value > npixels) return -1;
  if (value == 0) return 0;
  sink->noncanonical |= (int64_t)s0 <= sink->prev_end;
  sink->prev_end = (int64_t)(s0 + value);
  sink->dst[sink->nruns].start = (uint32_t)s0;
  sink->dst[sink->nruns].len = (uint32_t)value;
  sink->nruns++;
  return 0;
}

/* Cursor of a fast path between 64-byte blocks. */
struct osseg__rle_scan {
  uint64_t carry;    /* 1 when the previous block ended with a digit */
  size_t open_start; /* start of a token still open at the block end */
  int open;
  uint32_t pending; /* see osseg__rle_take */
};

/* Consumes one 64-byte block at text + base, given its digit mask D and
 * space mask S (bit i = byte base + i; every byte is one or the other).
 * Tokens are paired by order: starts are digits after a non-digit, ends
 * (exclusive) are spaces after a digit, and they alternate. */
static inline int osseg__rle_block(const char *text, size_t base, uint64_t D, uint64_t S,
                                   uint64_t npixels, struct osseg__rle_scan *c,
                                   struct osseg__rle_sink *sink) {
  uint64_t prev = (D << 1) | c->carry;
  uint64_t starts = D & ~prev;
  uint64_t ends = S & prev;
  c->carry = D >> 63;
  while (ends) {
    size_t e = base + (size_t)__builtin_ctzll(ends);
    ends &= ends - 1;
    size_t s;
    if (c->open) {
      s = c->open_start;
      c->open = 0;
    } else {
      s = base + (size_t)__builtin_ctzll(starts);
      starts &= starts - 1;
    }
    if (osseg__rle_take(osseg__rle_token_value(text, s, e), npixels, &c->pending, sink))
      return -1;
  }
  if (starts) {
    c->open_start = base + (size_t)__builtin_ctzll(starts);
    c->open = 1;
  }
  return 0;
}

/* After the last block: closes a token that runs to the end of the text and
 * checks that every start got its length. */
static inline int osseg__rle_finish(const char *text, size_t len, uint64_t npixels,
                                    struct osseg__rle_scan *c, struct osseg__rle_sink *sink) {
  if (c->open) {
    if (osseg__rle_take(osseg__rle_token_value(text, c->open_start, len), npixels,
                        &c->pending, sink))
      return -1;
  }
  return c->pending ? -1 : 0;
}

#endif
