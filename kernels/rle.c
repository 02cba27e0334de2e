/* RLE text <-> run lists: see osseg_kernels.h and rle_internal.h.
 *
 * Parsing is the hot loop of `osseg ensemble` and `osseg dice` (millions of
 * numbers per CSV), so the driver picks a SIMD fast path once; this file
 * holds the generic reference, which is also the only producer of error
 * messages, and the integer formatter. */
#include <stdatomic.h>

#include "rle_internal.h"

static _Atomic unsigned forced_level = ~0u;

void osseg__rle_force_level(unsigned level) { atomic_store(&forced_level, level); }

static int is_digit(unsigned char c) { return (unsigned)(c - '0') < 10u; }

static int fail_byte(struct osseg_diag *diag, size_t off, unsigned char c) {
  if (c >= 0x21 && c < 0x7f)
    return osseg__fail(diag, OSSEG_EPARSE,
                       "offset %zu: unexpected character '%c' (RLE holds digits and spaces)",
                       off, c);
  return osseg__fail(diag, OSSEG_EPARSE,
                     "offset %zu: unexpected byte 0x%02x (RLE holds digits and spaces)", off,
                     c);
}

int osseg__rle_parse_generic(const char *text, size_t len, uint64_t npixels,
                             struct osseg__rle_sink *sink, struct osseg_diag *diag) {
  const unsigned char *t = (const unsigned char *)text;
  size_t i = 0, count = 0;
  uint32_t start = 0;
  size_t start_off = 0;
  for (;;) {
    while (i < len && t[i] == ' ') i++;
    if (i == len) break;
    size_t tok = i;
    uint64_t v = 0;
    while (i < len && is_digit(t[i])) {
      if (i - tok == 10)
        return osseg__fail(diag, OSSEG_ERANGE, "offset %zu: number longer than 10 digits",
                           tok);
      v = v * 10 + (uint64_t)(t[i] - '0');
      i++;
    }
    if (i == tok) return fail_byte(diag, i, t[i]);
    if (i < len && t[i] != ' ') return fail_byte(diag, i, t[i]);
    if (v > UINT32_MAX)
      return osseg__fail(diag, OSSEG_ERANGE, "offset %zu: number %llu above 4294967295",
                         tok, (unsigned long long)v);
    if ((count & 1) == 0) {
      if (v == 0)
        return osseg__fail(diag, OSSEG_EPARSE,
                           "offset %zu: start of 0 (RLE starts are 1-based)", tok);
      start = (uint32_t)v;
      start_off = tok;
    } else {
      uint64_t s0 = (uint64_t)start - 1;
      if (s0 >= npixels || s0 + v > npixels)
        return osseg__fail(diag, OSSEG_ERANGE,
                           "offset %zu: run '%u %llu' ends past the image end (%llu pixels)",
                           start_off, start, (unsigned long long)v,
                           (unsigned long long)npixels);
      if (v != 0) {
        sink->noncanonical |= (int64_t)s0 <= sink->prev_end;
        sink->prev_end = (int64_t)(s0 + v);
        sink->dst[sink->nruns].start = (uint32_t)s0;
        sink->dst[sink->nruns].len = (uint32_t)v;
        sink->nruns++;
      }
    }
    count++;
  }
  if (count & 1)
    return osseg__fail(diag, OSSEG_EPARSE,
                       "offset %zu: odd number of numbers (%zu): the last start has no length",
                       len, count);
  return 0;
}

int osseg_rle_parse(const char *text, size_t len, uint64_t npixels, struct osseg_runs *out,
                    struct osseg_diag *diag) {
  if (npixels == 0 || npixels > OSSEG_MAX_PIXELS)
    return osseg__fail(diag, OSSEG_EINVAL, "image of %llu pixels",
                       (unsigned long long)npixels);
  /* Every run takes at least "1 1 " (4 bytes, the last one 3), so this
   * bound lets the parsers store runs without checking capacity. */
  size_t room = (len + 1) / 4, need;
  if (osseg__add_size(out->n, room, &need) != 0) return OSSEG_EOVERFLOW;
  if (need > out->cap) {
    /* Grow geometrically so a reused buffer settles after a few rows. */
    size_t cap = out->cap < 64 ? 64 : out->cap;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    int rc = osseg_runs_reserve(out, cap);
    if (rc < 0) return osseg__fail(diag, rc, "%s", osseg_strerror(rc));
  }
  struct osseg__rle_sink sink = {out->v + out->n, 0, -1, 0};
  if (out->n > 0) {
    const struct osseg_run *last = &out->v[out->n - 1];
    sink.prev_end = (int64_t)last->start + last->len;
  }
  struct osseg__rle_sink fresh = sink;

  unsigned level = osseg_cpu_features() & atomic_load_explicit(&forced_level, memory_order_relaxed);
  int rc = -1;
  /* Fast paths keep positions in 32 bits. */
  if (len >= ((size_t)1 << 31))
    level = 0;
  if (level & OSSEG_CPU_AVX512)
    rc = osseg__rle_parse_fast_avx512(text, len, npixels, &sink);
  else if (level & OSSEG_CPU_AVX2)
    rc = osseg__rle_parse_fast_avx2(text, len, npixels, &sink);
  if (rc != 0) {
    sink = fresh;
    rc = osseg__rle_parse_generic(text, len, npixels, &sink, diag);
    if (rc < 0) return rc;
  }
  out->n += sink.nruns;
  if (sink.noncanonical) osseg_runs_canonicalize(out);
  return 0;
}

/* ------------------------------------------------------------ format --- */

static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static const uint64_t pow10_table[20] = {1ull,
                                         10ull,
                                         100ull,
                                         1000ull,
                                         10000ull,
                                         100000ull,
                                         1000000ull,
                                         10000000ull,
                                         100000000ull,
                                         1000000000ull,
                                         10000000000ull,
                                         100000000000ull,
                                         1000000000000ull,
                                         10000000000000ull,
                                         100000000000000ull,
                                         1000000000000000ull,
                                         10000000000000000ull,
                                         100000000000000000ull,
                                         1000000000000000000ull,
                                         10000000000000000000ull};

/* Decimal digits of v (1 for 0): log2 * 1233 / 4096 approximates log10 from below by
 * at most one, and one table comparison corrects it. */
static inline unsigned decimal_digits(uint64_t v) {
  v |= v == 0; /* "0" has one digit */
  unsigned bits = 64u - (unsigned)__builtin_clzll(v);
  unsigned t = (bits * 1233u) >> 12;
  return t + (v >= pow10_table[t]);
}

/* Writes v in decimal two digits at a time, from the back; returns the end. */
static inline char *put_u64(char *p, uint64_t v) {
  unsigned n = decimal_digits(v);
  char *q = p + n;
  while (v >= 100) {
    q -= 2;
    memcpy(q, digit_pairs + (v % 100) * 2, 2);
    v /= 100;
  }
  if (v >= 10) {
    q -= 2;
    memcpy(q, digit_pairs + v * 2, 2);
  } else {
    *--q = (char)('0' + v);
  }
  return p + n;
}

size_t osseg_rle_format_bound(size_t n) {
  /* A start (at most 2^32, 10 digits) and a length (10 digits), each with a
   * separator. Callers stay far below SIZE_MAX / 22 runs. */
  return n * 22;
}

/* Writes v < 10^8 as its decimal digits with one unaligned 8-byte store
 * (so 8 bytes must be writable at p) and no division loop: v is split into
 * two 4-digit halves, then into 2-digit and 1-digit lanes of one 64-bit word
 * with multiply-shift divisions (x * 10486 >> 20 = x / 100 for x < 10^4,
 * y * 103 >> 10 = y / 10 for y < 100), the most significant digit ending in
 * the lowest byte; shifting out the leading zeros leaves the number. */
static inline char *put_small(char *p, uint64_t v) {
  unsigned n = decimal_digits(v);
  uint64_t x = (v / 10000) | ((v % 10000) << 32);
  uint64_t hundreds = ((x * 10486) >> 20) & 0x0000007F0000007Full;
  x = hundreds | ((x - hundreds * 100) << 16);
  uint64_t tens = ((x * 103) >> 10) & 0x000F000F000F000Full;
  x = tens | ((x - tens * 10) << 8);
  x = (x | 0x3030303030303030ull) >> (8 * (8 - n));
  memcpy(p, &x, 8);
  return p + n;
}

static inline char *put_number(char *p, uint64_t v) {
  return v < 100000000u ? put_small(p, v) : put_u64(p, v);
}

size_t osseg_rle_format(const struct osseg_run *v, size_t n, char *out) {
  char *p = out;
  size_t i = 0;
  unsigned level = osseg_cpu_features() & atomic_load_explicit(&forced_level, memory_order_relaxed);
  if (level & OSSEG_CPU_AVX512) p += osseg__rle_format_avx512(v, n, out, &i);
  for (; i < n; i++) {
    p = put_number(p, (uint64_t)v[i].start + 1);
    *p++ = ' ';
    p = put_number(p, v[i].len);
    *p++ = ' ';
  }
  /* The separator after the last number is not part of the text. */
  return n ? (size_t)(p - out) - 1 : 0;
}
