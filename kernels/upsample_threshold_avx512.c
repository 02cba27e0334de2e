/* AVX-512 inner loops of the fused upsample + threshold kernel: 16 cells or
 * pixels per step, tails with masked loads. As in the AVX2 file, each
 * interpolation step is vfmadd(a, wa, b * wb), exactly osseg__ut_lerp. */
#include <immintrin.h>
#include <string.h>

#include "upsample_threshold_internal.h"

static void classify_row_avx512(const float *row, uint32_t w, float t_lo, float t_hi,
                                uint64_t *below, uint64_t *above) {
  size_t nw = ((size_t)w + 63) / 64;
  memset(below, 0, nw * sizeof(uint64_t));
  memset(above, 0, nw * sizeof(uint64_t));
  uint8_t *bb = (uint8_t *)below, *ab = (uint8_t *)above;
  float tm = __builtin_fabsf(t_lo) > __builtin_fabsf(t_hi) ? __builtin_fabsf(t_lo)
                                                          : __builtin_fabsf(t_hi);
  const __m512 vlo = _mm512_set1_ps(t_lo), vhi = _mm512_set1_ps(t_hi), vtm = _mm512_set1_ps(tm);
  const __m512 rel = _mm512_set1_ps(OSSEG__UT_REL_MARGIN);
  const __m512 absm = _mm512_set1_ps(OSSEG__UT_ABS_MARGIN);
  /* Same operations as osseg__ut_classify_range, 16 values at a time; the
   * tail uses a masked load (masked-off lanes never touch memory) and its
   * bits are masked off too. */
  for (uint32_t c = 0; c < w; c += 16) {
    /* The next source row comes from memory (29 planes of logits are far
     * larger than the caches): ask for it while this one is classified.
     * Prefetching past the end of the plane is harmless. */
    __builtin_prefetch(row + w + c);
    __mmask16 k = w - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (w - c)) - 1);
    __m512 v = _mm512_maskz_loadu_ps(k, row + c);
    __m512 m = _mm512_add_ps(_mm512_mul_ps(_mm512_add_ps(_mm512_abs_ps(v), vtm), rel), absm);
    uint16_t lo = (uint16_t)_mm512_mask_cmp_ps_mask(k, _mm512_add_ps(v, m), vlo, _CMP_LT_OQ);
    uint16_t hi = (uint16_t)_mm512_mask_cmp_ps_mask(k, _mm512_sub_ps(v, m), vhi, _CMP_GT_OQ);
    /* c is a multiple of 16 and the arrays are whole 64-bit words, so both
     * bytes exist even in the tail block (its upper bits are 0). */
    memcpy(bb + c / 8, &lo, 2);
    memcpy(ab + c / 8, &hi, 2);
  }
}

/* When upsampling, the 16 outputs of a step read at most 16 consecutive
 * source values: one load of that window and two permutes replace the two
 * gathers (slow on every x86 core), with the same values, so the same
 * bits. A window wider than 16 (downsampling) falls back to gathers. */
static void hinterp_avx512(const float *row, const struct osseg__ut_tables *t,
                           uint32_t xa, uint32_t xb, float *h) {
  uint32_t x = xa;
  while (x < xb) {
    unsigned n = xb - x >= 16 ? 16 : xb - x;
    __mmask16 k = (__mmask16)((1u << n) - 1);
    __m512i i0 = _mm512_maskz_loadu_epi32(k, t->x0 + x);
    __m512i i1 = _mm512_maskz_loadu_epi32(k, t->x1 + x);
    uint32_t base = t->x0[x];
    __m512 v0, v1;
    if (t->x1[x + n - 1] - base < 16) {
      uint32_t avail = t->in_width - base;
      __mmask16 kw = avail >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << avail) - 1);
      __m512 win = _mm512_maskz_loadu_ps(kw, row + base);
      __m512i vb = _mm512_set1_epi32((int)base);
      /* Masked-off lanes hold index 0, so base - base wraps to a huge
       * value; permutexvar uses only the low 4 bits, and those lanes are
       * not stored. */
      v0 = _mm512_permutexvar_ps(_mm512_sub_epi32(i0, vb), win);
      v1 = _mm512_permutexvar_ps(_mm512_sub_epi32(i1, vb), win);
    } else {
      /* Masked-off lanes gather index 0, which always exists. */
      v0 = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, i0, row, 4);
      v1 = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, i1, row, 4);
    }
    __m512 r = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(k, t->wx0 + x),
                               _mm512_mul_ps(v1, _mm512_maskz_loadu_ps(k, t->wx1 + x)));
    _mm512_mask_storeu_ps(h + x, k, r);
    x += n;
  }
}

static inline __m512 vlerp512(const float *h0, const float *h1, __m512 w0, __m512 w1,
                              __mmask16 k) {
  return _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, h0), w0,
                         _mm512_mul_ps(_mm512_maskz_loadu_ps(k, h1), w1));
}

static void vthresh_avx512(const float *h0, const float *h1, float wy0, float wy1,
                           float thr, uint32_t xa, uint32_t xb, uint64_t *bits) {
  const __m512 w0 = _mm512_set1_ps(wy0), w1 = _mm512_set1_ps(wy1), t = _mm512_set1_ps(thr);
  uint32_t x = xa;
  /* 64 pixels a step, their four masks ORed into the row as one word. */
  for (; x + 64 <= xb; x += 64) {
    uint64_t m = 0;
    for (unsigned q = 0; q < 4; q++) {
      __m512 v = vlerp512(h0 + x + 16 * q, h1 + x + 16 * q, w0, w1, 0xffff);
      m |= (uint64_t)_mm512_cmp_ps_mask(v, t, _CMP_GT_OQ) << (16 * q);
    }
    if (m) osseg__ut_or_bits(bits, x, m, 64);
  }
  while (x < xb) {
    unsigned n = xb - x >= 16 ? 16 : xb - x;
    __mmask16 k = (__mmask16)((1u << n) - 1);
    __m512 v = vlerp512(h0 + x, h1 + x, w0, w1, k);
    unsigned m = (unsigned)_mm512_mask_cmp_ps_mask(k, v, t, _CMP_GT_OQ);
    if (m) osseg__ut_or_bits(bits, x, m, n);
    x += n;
  }
}

/* exp(x): the same reduction and polynomial as exp256 in the AVX2 file. */
static inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(88.3762626647949f), x);
  x = _mm512_max_ps(_mm512_set1_ps(-87.3365447505531f), x);
  __m512i n = _mm512_cvtps_epi32(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)));
  __m512 fn = _mm512_cvtepi32_ps(n);
  __m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

static void vsoft_avx512(const float *h, size_t hstride, size_t k, float wy0,
                         float wy1, float p, uint32_t xa, uint32_t xb, uint64_t *bits) {
  const __m512 w0 = _mm512_set1_ps(wy0), w1 = _mm512_set1_ps(wy1);
  const __m512 one = _mm512_set1_ps(1.0f), vk = _mm512_set1_ps((float)k);
  const __m512 vp = _mm512_set1_ps(p);
  uint32_t x = xa;
  while (x < xb) {
    unsigned n = xb - x >= 16 ? 16 : xb - x;
    __mmask16 km = (__mmask16)((1u << n) - 1);
    __m512 sum = _mm512_setzero_ps();
    for (size_t j = 0; j < k; j++) {
      const float *h0 = h + 2 * j * hstride, *h1 = h0 + hstride;
      __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(km, h0 + x), w0,
                                 _mm512_mul_ps(_mm512_maskz_loadu_ps(km, h1 + x), w1));
      __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), v));
      sum = _mm512_add_ps(sum, _mm512_div_ps(one, _mm512_add_ps(one, e)));
    }
    unsigned m = (unsigned)_mm512_mask_cmp_ps_mask(km, _mm512_div_ps(sum, vk), vp, _CMP_GT_OQ);
    if (m) osseg__ut_or_bits(bits, x, m, n);
    x += n;
  }
}

const struct osseg__ut_ops osseg__ut_ops_avx512 = {classify_row_avx512, hinterp_avx512,
                                                   vthresh_avx512, vsoft_avx512, "avx512"};
