/* AVX2 inner loops of the fused upsample + threshold kernel: 8 cells or
 * pixels per step. Each interpolation step is vfmadd(a, wa, b * wb), the
 * exact form of osseg__ut_lerp, so every pixel equals the generic
 * reference (and PyTorch) bit for bit. */
#include <immintrin.h>
#include <string.h>

#include "upsample_threshold_internal.h"

static inline __m256 abs256(__m256 x) {
  return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
}

static void classify_row_avx2(const float *row, uint32_t w, float t_lo, float t_hi,
                              uint64_t *below, uint64_t *above) {
  size_t nw = ((size_t)w + 63) / 64;
  memset(below, 0, nw * sizeof(uint64_t));
  memset(above, 0, nw * sizeof(uint64_t));
  uint8_t *bb = (uint8_t *)below, *ab = (uint8_t *)above;
  float tm = __builtin_fabsf(t_lo) > __builtin_fabsf(t_hi) ? __builtin_fabsf(t_lo)
                                                          : __builtin_fabsf(t_hi);
  const __m256 vlo = _mm256_set1_ps(t_lo), vhi = _mm256_set1_ps(t_hi), vtm = _mm256_set1_ps(tm);
  const __m256 rel = _mm256_set1_ps(OSSEG__UT_REL_MARGIN);
  const __m256 absm = _mm256_set1_ps(OSSEG__UT_ABS_MARGIN);
  uint32_t c = 0;
  /* Same operations as osseg__ut_classify_range, 8 values at a time; c is
   * a multiple of 8, so each block's bits fill one byte. Ordered
   * comparisons are false for NaN, as in the scalar rule. */
  for (; c + 8 <= w; c += 8) {
    __m256 v = _mm256_loadu_ps(row + c);
    __m256 m = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(abs256(v), vtm), rel), absm);
    bb[c / 8] = (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_add_ps(v, m), vlo, _CMP_LT_OQ));
    ab[c / 8] = (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_sub_ps(v, m), vhi, _CMP_GT_OQ));
  }
  osseg__ut_classify_range(row, c, w, t_lo, t_hi, below, above);
}

/* As in the AVX-512 file: when the 8 outputs of a step read at most 8
 * consecutive source values (upsampling), one load of that window and two
 * permutes replace the gathers, with the same values. */
static void hinterp_avx2(const float *row, const struct osseg__ut_tables *t,
                         uint32_t xa, uint32_t xb, float *h) {
  uint32_t x = xa;
  for (; x + 8 <= xb; x += 8) {
    __m256i i0 = _mm256_loadu_si256((const __m256i *)(t->x0 + x));
    __m256i i1 = _mm256_loadu_si256((const __m256i *)(t->x1 + x));
    uint32_t base = t->x0[x];
    __m256 v0, v1;
    if (t->x1[x + 7] - base < 8) {
      uint32_t avail = t->in_width - base;
      __m256 win;
      if (avail >= 8) {
        win = _mm256_loadu_ps(row + base);
      } else {
        /* Lanes past the row end are neither loaded nor selected. */
        __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)avail), lane);
        win = _mm256_maskload_ps(row + base, keep);
      }
      __m256i vb = _mm256_set1_epi32((int)base);
      v0 = _mm256_permutevar8x32_ps(win, _mm256_sub_epi32(i0, vb));
      v1 = _mm256_permutevar8x32_ps(win, _mm256_sub_epi32(i1, vb));
    } else {
      v0 = _mm256_i32gather_ps(row, i0, 4);
      v1 = _mm256_i32gather_ps(row, i1, 4);
    }
    __m256 r = _mm256_fmadd_ps(v0, _mm256_loadu_ps(t->wx0 + x),
                               _mm256_mul_ps(v1, _mm256_loadu_ps(t->wx1 + x)));
    _mm256_storeu_ps(h + x, r);
  }
  for (; x < xb; x++)
    h[x] = osseg__ut_lerp(row[t->x0[x]], t->wx0[x], row[t->x1[x]], t->wx1[x]);
}

static inline unsigned vthresh8(const float *h0, const float *h1, __m256 w0, __m256 w1,
                                __m256 t) {
  __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(h0), w0, _mm256_mul_ps(_mm256_loadu_ps(h1), w1));
  return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, t, _CMP_GT_OQ));
}

static void vthresh_avx2(const float *h0, const float *h1, float wy0, float wy1,
                         float thr, uint32_t xa, uint32_t xb, uint64_t *bits) {
  const __m256 w0 = _mm256_set1_ps(wy0), w1 = _mm256_set1_ps(wy1), t = _mm256_set1_ps(thr);
  uint32_t x = xa;
  /* 64 pixels a step, ORed into the row as one word. */
  for (; x + 64 <= xb; x += 64) {
    uint64_t m = 0;
    for (unsigned q = 0; q < 8; q++)
      m |= (uint64_t)vthresh8(h0 + x + 8 * q, h1 + x + 8 * q, w0, w1, t) << (8 * q);
    if (m) osseg__ut_or_bits(bits, x, m, 64);
  }
  for (; x + 8 <= xb; x += 8) {
    unsigned m = vthresh8(h0 + x, h1 + x, w0, w1, t);
    if (m) osseg__ut_or_bits(bits, x, m, 8);
  }
  for (; x < xb; x++)
    if (osseg__ut_lerp(h0[x], wy0, h1[x], wy1) > thr) bits[x / 64] |= 1ull << (x % 64);
}

/* exp(x) for the sigmoid: Cody-Waite reduction by ln 2 and a degree-6
 * polynomial (Cephes expf coefficients), a couple of ulp from expf over
 * the clamped range; NaN propagates (it is the second operand of min/max). */
static inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-87.3365447505531f), x);
  __m256i n = _mm256_cvtps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)));
  __m256 fn = _mm256_cvtepi32_ps(n);
  __m256 r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static void vsoft_avx2(const float *h, size_t hstride, size_t k, float wy0, float wy1,
                       float p, uint32_t xa, uint32_t xb, uint64_t *bits) {
  const __m256 w0 = _mm256_set1_ps(wy0), w1 = _mm256_set1_ps(wy1);
  const __m256 one = _mm256_set1_ps(1.0f), vk = _mm256_set1_ps((float)k);
  const __m256 vp = _mm256_set1_ps(p), sign = _mm256_set1_ps(-0.0f);
  uint32_t x = xa;
  for (; x + 8 <= xb; x += 8) {
    __m256 sum = _mm256_setzero_ps();
    for (size_t j = 0; j < k; j++) {
      const float *h0 = h + 2 * j * hstride, *h1 = h0 + hstride;
      __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(h0 + x), w0,
                                 _mm256_mul_ps(_mm256_loadu_ps(h1 + x), w1));
      __m256 e = exp256(_mm256_xor_ps(v, sign));
      sum = _mm256_add_ps(sum, _mm256_div_ps(one, _mm256_add_ps(one, e)));
    }
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_div_ps(sum, vk), vp, _CMP_GT_OQ));
    if (m) osseg__ut_or_bits(bits, x, m, 8);
  }
  if (x < xb) osseg__ut_ops_generic.vsoft(h, hstride, k, wy0, wy1, p, x, xb, bits);
}

const struct osseg__ut_ops osseg__ut_ops_avx2 = {classify_row_avx2, hinterp_avx2,
                                                 vthresh_avx2, vsoft_avx2, "avx2"};
