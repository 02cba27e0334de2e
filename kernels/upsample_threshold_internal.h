/* Internals of the fused bilinear upsample + threshold kernel, shared by
 * upsample_threshold.c (driver, plan, generic reference), its ISA variants
 * and the tests.
 *
 * The driver walks the low-resolution grid one cell row at a time (input
 * rows r and r + 1 and the output rows whose top source row is r). The
 * per-ISA pieces are the three inner loops: classifying a row of cells,
 * interpolating one source row horizontally over an output column range,
 * and combining two such rows vertically into threshold bits. */
#ifndef OSSEG_UPSAMPLE_THRESHOLD_INTERNAL_H
#define OSSEG_UPSAMPLE_THRESHOLD_INTERNAL_H

#include "osseg_kernels.h"

/* Per-axis tables of a plan (one allocation). For output column x: source
 * columns x0[x], x1[x] and weights wx0[x], wx1[x]; likewise for rows. The
 * output columns whose x0 is c form the range [xs[c], xs[c + 1]) (empty when
 * downsampling skips column c); ys likewise for rows. */
struct osseg__ut_tables {
  uint32_t *x0, *x1, *y0, *y1;
  float *wx0, *wx1, *wy0, *wy1;
  uint32_t *xs; /* in_width + 1 entries */
  uint32_t *ys; /* in_height + 1 entries */
  /* Source row length: how far a SIMD window at column x0[x] may load. */
  uint32_t in_width;
  /* Scratch reserved by osseg_upsample_plan_reserve for calls with up to
   * scratch_k models (NULL: each call allocates its own). */
  void *scratch;
  size_t scratch_k;
};

struct osseg__ut_ops {
  /* For the w values of one source row: bit c of `below` when row[c] lies
   * below t_lo by the rounding margin (osseg__ut_below), bit c of `above`
   * when it exceeds t_hi by it. Writes all ceil(w / 64) words of both; bits
   * past w are 0. A cell is decided when all four of its corners are. */
  void (*classify_row)(const float *row, uint32_t w, float t_lo, float t_hi,
                       uint64_t *below, uint64_t *above);
  /* h[x] = row[x0[x]] * wx0[x] + row[x1[x]] * wx1[x] for x in [xa, xb). */
  void (*hinterp)(const float *row, const struct osseg__ut_tables *t, uint32_t xa,
                  uint32_t xb, float *h);
  /* ORs into bits the pixels x in [xa, xb) with h0[x]*wy0 + h1[x]*wy1 > thr. */
  void (*vthresh)(const float *h0, const float *h1, float wy0, float wy1, float thr,
                  uint32_t xa, uint32_t xb, uint64_t *bits);
  /* Soft vote: h holds 2k rows of hstride floats (model j: rows 2j, 2j+1);
   * ORs in pixels with (sum_j sigmoid(h0_j*wy0 + h1_j*wy1)) / k > p. */
  void (*vsoft)(const float *h, size_t hstride, size_t k, float wy0, float wy1,
                float p, uint32_t xa, uint32_t xb, uint64_t *bits);
  const char *name;
};

extern const struct osseg__ut_ops osseg__ut_ops_generic;
extern const struct osseg__ut_ops osseg__ut_ops_avx2;
extern const struct osseg__ut_ops osseg__ut_ops_avx512;
/* The variant chosen for this CPU (once, thread-safe). */
const struct osseg__ut_ops *osseg__ut_ops_dispatch(void);

/* The public entry points with an explicit variant, for tests and benches. */
int osseg__upsample_threshold_ops(const struct osseg__ut_ops *ops,
                                  const struct osseg_upsample_plan *plan,
                                  const float *logits, size_t row_stride,
                                  float threshold_logit, struct osseg_bitmask *out);
int osseg__upsample_soft_vote_ops(const struct osseg__ut_ops *ops,
                                  const struct osseg_upsample_plan *plan,
                                  const float *const *logits, size_t k,
                                  size_t row_stride, float prob_threshold,
                                  struct osseg_bitmask *out);

/* Margin by which a corner must clear the threshold for its cell to be
 * decided without interpolating. The computed value is
 *   sum_i w_i a_i (1 + e_i) over the four corners a_i,
 * |e_i| <= 4u + O(u^2) with u = 2^-24 (at most four roundings on any path
 * through the products and fused adds), and the stored weights w_i (products
 * of w0 = fl(1 - w1) and w1 per axis) sum to 1 + e with |e| <= 2u + u^2.
 * So value - t = sum_i w_i (a_i + a_i e_i - t) + t e, which is <= 0 when
 * every corner satisfies a_i + 4.1u|a_i| + 2.1u|t| <= t; symmetrically for
 * "above". The margin (|a_i| + |t|) * 2^-20 = 16u (|a_i| + |t|) covers that
 * and the rounding of the test itself with room to spare, plus 2^-120 for
 * underflow in the products. Because the bound is per corner, each logit
 * is classified once and a cell is decided by ANDing its corners' bits. A
 * NaN or infinite corner makes both comparisons false (the margin is NaN or
 * infinite), which sends its cells to the exact path. */
#define OSSEG__UT_REL_MARGIN 0x1p-20f
#define OSSEG__UT_ABS_MARGIN 0x1p-120f

/* The scalar rule every variant implements; tm = max(|t_lo|, |t_hi|). */
static inline void osseg__ut_classify_range(const float *row, uint32_t c_begin,
                                            uint32_t w, float t_lo, float t_hi,
                                            uint64_t *below, uint64_t *above) {
  float tm = __builtin_fabsf(t_lo) > __builtin_fabsf(t_hi) ? __builtin_fabsf(t_lo)
                                                          : __builtin_fabsf(t_hi);
  for (uint32_t c = c_begin; c < w; c++) {
    float v = row[c];
    float m = (__builtin_fabsf(v) + tm) * OSSEG__UT_REL_MARGIN + OSSEG__UT_ABS_MARGIN;
    if (v + m < t_lo) below[c / 64] |= 1ull << (c % 64);
    if (v - m > t_hi) above[c / 64] |= 1ull << (c % 64);
  }
}

/* ORs the n low bits of m into bits at bit position x; the caller guarantees
 * x + n does not pass the end of the row, so the second word exists when
 * it is touched. */
static inline void osseg__ut_or_bits(uint64_t *bits, uint32_t x, uint64_t m,
                                     unsigned n) {
  unsigned sh = x % 64;
  bits[x / 64] |= m << sh;
  if (sh + n > 64) bits[x / 64 + 1] |= m >> (64 - sh);
}

/* One step of the interpolation, a * wa + b * wb, in the form PyTorch's
 * CPU kernel takes when its AVX2 / AVX-512 build contracts it: one rounded
 * product and one fused multiply-add. fmaf is correctly rounded (glibc), so
 * the generic path, which may not use FMA instructions, still gives the
 * same bits as the SIMD paths' vfmadd. */
static inline float osseg__ut_lerp(float a, float wa, float b, float wb) {
  return __builtin_fmaf(a, wa, b * wb);
}

#endif
