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
};

struct osseg__ut_ops {
  /* For cells c in [0, w) between rows row0 and row1 (corners c and
   * min(c + 1, w - 1)): bit c of `on` when every corner exceeds t_hi by the
   * rounding margin, bit c of `mixed` when the cell is neither on nor "off"
   * (every corner below t_lo by the margin). Writes all ceil(w / 64) words
   * of both; bits past w are 0. */
  void (*classify)(const float *row0, const float *row1, uint32_t w, float t_lo,
                   float t_hi, uint64_t *on, uint64_t *mixed);
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
 * decided without interpolating. The computed interpolation of corners
 * a, b, c, d can leave their [min, max] hull by float rounding (w1 and
 * w0 = 1 - w1 are rounded, then three products and three sums or fused
 * multiply-adds): at most about 8 units of 2^-24 times max|corner|, plus
 * underflow far below 2^-120. The margin
 * (|a| + |b| + |c| + |d|) * 2^-20 >= 16 * 2^-24 * max|corner| covers that
 * with room to spare, and is NaN or infinite exactly when a corner is, which
 * makes every comparison false and sends the cell to the exact path. */
#define OSSEG__UT_REL_MARGIN 0x1p-20f
#define OSSEG__UT_ABS_MARGIN 0x1p-120f

/* 0 = off, 1 = on, 2 = mixed; the scalar rule every variant implements. */
static inline int osseg__ut_cell(float a, float b, float c, float d, float t_lo,
                                 float t_hi) {
  float m = (__builtin_fabsf(a) + __builtin_fabsf(b) + __builtin_fabsf(c) +
             __builtin_fabsf(d)) * OSSEG__UT_REL_MARGIN + OSSEG__UT_ABS_MARGIN;
  if (a + m < t_lo && b + m < t_lo && c + m < t_lo && d + m < t_lo) return 0;
  if (a - m > t_hi && b - m > t_hi && c - m > t_hi && d - m > t_hi) return 1;
  return 2;
}

/* Scalar classification of cells [c_begin, w): the generic variant and the
 * tails of the SIMD ones. Only sets bits (callers clear the words). */
static inline void osseg__ut_classify_range(const float *row0, const float *row1,
                                            uint32_t c_begin, uint32_t w, float t_lo,
                                            float t_hi, uint64_t *on, uint64_t *mixed) {
  for (uint32_t c = c_begin; c < w; c++) {
    uint32_t c1 = c + 1 < w ? c + 1 : c;
    int k = osseg__ut_cell(row0[c], row0[c1], row1[c], row1[c1], t_lo, t_hi);
    if (k == 1)
      on[c / 64] |= 1ull << (c % 64);
    else if (k == 2)
      mixed[c / 64] |= 1ull << (c % 64);
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
