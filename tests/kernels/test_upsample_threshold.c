/* Tests for kernels/upsample_threshold*.c.
 *
 * Tolerance: the hard threshold must equal, pixel for pixel, a plain
 * per-pixel evaluation of the PyTorch formula written here from the spec
 * (same float operations in the same order), on every CPU level: exact
 * equality, no tolerance. That formula itself is checked value for value
 * against real PyTorch output (tests/data/engine/resize_bilinear_*.npy,
 * torch 1.13), and the kernel's masks against thresholds placed exactly on
 * PyTorch's values. As an independent check of the semantics, masks must
 * also agree with a double-precision evaluation wherever that value is
 * more than 1e-5 (relative) away from the threshold. The soft vote's
 * generic path equals the float reference exactly; the SIMD paths may
 * differ only where the reference mean probability is within 1e-6 of the
 * threshold (polynomial exp). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "upsample_threshold_internal.h"
#include "test_support.h"

struct variant {
  unsigned need;
  const struct osseg__ut_ops *ops;
};
static const struct variant variants[] = {
    {0, &osseg__ut_ops_generic},
    {OSSEG_CPU_AVX2, &osseg__ut_ops_avx2},
    {OSSEG_CPU_AVX512, &osseg__ut_ops_avx512},
};
#define NVARIANTS (sizeof variants / sizeof variants[0])

static int usable(const struct variant *v) {
  return (osseg_cpu_features() & v->need) == v->need;
}

/* ------------------------------------------------------------ reference --- */

/* PyTorch's index/weight rule for one output coordinate, from the spec in
 * osseg_kernels.h (torch 1.13: source coordinate in double, lambda rounded
 * to float when stored). */
static void ref_axis(uint32_t in, uint32_t out, uint32_t d, uint32_t *i0, uint32_t *i1,
                     float *w0, float *w1) {
  if (in == out) {
    *i0 = *i1 = d;
    *w0 = 1.0f;
    *w1 = 0.0f;
    return;
  }
  float scale = (float)in / (float)out;
  double src = (double)scale * ((double)d + 0.5) - 0.5;
  if (src < 0) src = 0;
  int64_t idx = (int64_t)floor(src);
  if (idx > (int64_t)in - 1) idx = (int64_t)in - 1;
  *i0 = (uint32_t)idx;
  *i1 = (uint32_t)idx + (idx < (int64_t)in - 1 ? 1 : 0);
  *w1 = (float)(src - (double)idx);
  *w0 = 1.0f - *w1;
}

/* Float value in PyTorch's order (fused as its FMA build does); with dbl, dbl[0] gets the same in double
 * for the semantic cross-check and dbl[1] the corners' magnitude. */
static float ref_value(const float *v, size_t stride, uint32_t ih, uint32_t iw,
                       uint32_t oh, uint32_t ow, uint32_t y, uint32_t x, double *dbl) {
  uint32_t y0, y1, x0, x1;
  float wy0, wy1, wx0, wx1;
  ref_axis(ih, oh, y, &y0, &y1, &wy0, &wy1);
  ref_axis(iw, ow, x, &x0, &x1, &wx0, &wx1);
  float r0 = fmaf(v[y0 * stride + x0], wx0, v[y0 * stride + x1] * wx1);
  float r1 = fmaf(v[y1 * stride + x0], wx0, v[y1 * stride + x1] * wx1);
  if (dbl) {
    double d0 = (double)v[y0 * stride + x0] * wx0 + (double)v[y0 * stride + x1] * wx1;
    double d1 = (double)v[y1 * stride + x0] * wx0 + (double)v[y1 * stride + x1] * wx1;
    *dbl = d0 * wy0 + d1 * wy1;
    /* Float rounding scales with the corners, not with the result (which
     * can cancel), so the cross-check's tolerance uses their magnitude. */
    dbl[1] = fabs((double)v[y0 * stride + x0]) + fabs((double)v[y0 * stride + x1]) +
             fabs((double)v[y1 * stride + x0]) + fabs((double)v[y1 * stride + x1]);
  }
  return fmaf(r0, wy0, r1 * wy1);
}

static int get_bit(const struct osseg_bitmask *m, uint64_t p) {
  return (int)((m->bits[p / 64] >> (p % 64)) & 1);
}

/* Runs every usable variant (and the public entry point) on one plane and
 * compares with the reference, exactly. */
static void check_plane(const float *v, size_t stride, uint32_t ih, uint32_t iw,
                        uint32_t oh, uint32_t ow, float thr) {
  struct osseg_upsample_plan plan;
  assert_int_equal(osseg_upsample_plan_init(&plan, ih, iw, oh, ow), 0);
  struct osseg_bitmask want, got;
  assert_int_equal(osseg_bitmask_init(&want, oh, ow), 0);
  assert_int_equal(osseg_bitmask_init(&got, oh, ow), 0);
  for (uint32_t y = 0; y < oh; y++) {
    for (uint32_t x = 0; x < ow; x++) {
      double dm[2];
      float f = ref_value(v, stride, ih, iw, oh, ow, y, x, dm);
      double d = dm[0];
      if (f > thr) want.bits[((uint64_t)y * ow + x) / 64] |= 1ull << (((uint64_t)y * ow + x) % 64);
      /* Semantic cross-check against double precision. */
      if (isfinite(dm[1]) && fabs(d - thr) > 1e-5 * (fabs(thr) + dm[1] + 1e-3))
        assert_int_equal(f > thr, d > thr);
    }
  }
  for (size_t vi = 0; vi < NVARIANTS + 1; vi++) {
    int rc;
    memset(got.bits, 0xa5, got.nwords * 8); /* contents must be replaced */
    if (vi == NVARIANTS) {
      rc = osseg_upsample_threshold(&plan, v, stride, thr, &got);
    } else {
      if (!usable(&variants[vi])) continue;
      rc = osseg__upsample_threshold_ops(variants[vi].ops, &plan, v, stride, thr, &got);
    }
    assert_int_equal(rc, 0);
    if (memcmp(got.bits, want.bits, want.nwords * 8) != 0) {
      for (uint64_t p = 0; p < (uint64_t)oh * ow; p++)
        if (get_bit(&got, p) != get_bit(&want, p))
          fail_msg("%s: %ux%u -> %ux%u: pixel (%u, %u) got %d want %d (value %.9g thr %.9g)",
                   vi == NVARIANTS ? "dispatch" : variants[vi].ops->name, ih, iw, oh, ow,
                   (unsigned)(p / ow), (unsigned)(p % ow), get_bit(&got, p), get_bit(&want, p),
                   (double)ref_value(v, stride, ih, iw, oh, ow, (uint32_t)(p / ow),
                                     (uint32_t)(p % ow), NULL),
                   (double)thr);
      fail_msg("bits past the last pixel differ");
    }
  }
  osseg_bitmask_free(&want);
  osseg_bitmask_free(&got);
  osseg_upsample_plan_free(&plan);
}

/* Smooth logits with a few blobs, like a segmentation head's output: large
 * negative background, positive inside, a band of values near 0. */
static void fill_blobs(struct test_rng *rng, float *v, size_t stride, uint32_t h,
                       uint32_t w, int nblobs, float noise) {
  float cx[8], cy[8], rad[8];
  for (int b = 0; b < nblobs; b++) {
    cx[b] = (float)test_rng_unit(rng) * (float)w;
    cy[b] = (float)test_rng_unit(rng) * (float)h;
    rad[b] = 1.0f + (float)test_rng_unit(rng) * (float)(w < h ? w : h) / 4;
  }
  for (uint32_t y = 0; y < h; y++) {
    for (uint32_t x = 0; x < w; x++) {
      float best = -12.0f;
      for (int b = 0; b < nblobs; b++) {
        float dx = (float)x - cx[b], dy = (float)y - cy[b];
        float s = 8.0f * (1.0f - sqrtf(dx * dx + dy * dy) / rad[b]);
        if (s > best) best = s;
      }
      v[(size_t)y * stride + x] = best + noise * (float)(test_rng_unit(rng) - 0.5);
    }
  }
}

static void test_golden_2x2(void **state) {
  (void)state;
  unsigned f = osseg_cpu_features();
  assert_string_equal(osseg__ut_ops_dispatch()->name, (f & OSSEG_CPU_AVX512) ? "avx512"
                                                      : (f & OSSEG_CPU_AVX2)  ? "avx2"
                                                                              : "generic");
  /* [[0, 1], [2, 3]] to 4x4: source coordinates 0, 0.25, 0.75, 1.25 (the
   * last clamped to index 1) on both axes give the values
   *   0    0.25 0.75 1
   *   0.5  0.75 1.25 1.5
   *   1.5  1.75 2.25 2.5
   *   2    2.25 2.75 3
   * and "> 1" (strict: the 1 at (0, 3) stays off) sets pixels 6, 7, 8..15. */
  const float v[4] = {0, 1, 2, 3};
  struct osseg_upsample_plan plan;
  assert_int_equal(osseg_upsample_plan_init(&plan, 2, 2, 4, 4), 0);
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, 4, 4), 0);
  for (size_t vi = 0; vi < NVARIANTS; vi++) {
    if (!usable(&variants[vi])) continue;
    assert_int_equal(osseg__upsample_threshold_ops(variants[vi].ops, &plan, v, 2, 1.0f, &m), 0);
    assert_int_equal(m.bits[0], 0xffc0ull);
  }
  struct osseg_runs r = {0};
  assert_int_equal(osseg_bitmask_to_runs(&m, &r), 0);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.v[0].start, 6);
  assert_int_equal(r.v[0].len, 10);
  osseg_runs_free(&r);
  check_plane(v, 2, 2, 2, 4, 4, 1.0f);
  check_plane(v, 2, 2, 2, 4, 4, 0.75f);
  osseg_bitmask_free(&m);
  osseg_upsample_plan_free(&plan);
}

/* Geometries: the usual 4x, non-integer up and down ratios, identity,
 * single rows/columns, 1x1 in and out, and a 16384-wide output. */
static void test_random_geometries(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 41);
  static const uint32_t geo[][4] = {
      {8, 8, 32, 32},   {7, 5, 13, 29},  {100, 100, 37, 37}, {1, 1, 5, 5},
      {5, 5, 1, 1},     {3, 1, 1, 7},    {50, 50, 50, 50},   {64, 64, 256, 256},
      {33, 65, 130, 129}, {17, 3, 51, 100}, {2, 300, 3, 16384}, {128, 96, 512, 384},
      {9, 9, 10, 10},   {40, 30, 41, 31}, {10, 200, 30, 67}};
  for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
    uint32_t ih = geo[g][0], iw = geo[g][1], oh = geo[g][2], ow = geo[g][3];
    size_t stride = iw + (g % 3); /* padded rows too */
    float *v = test_guarded_alloc(((size_t)(ih - 1) * stride + iw) * sizeof(float));
    assert_non_null(v);
    for (int iter = 0; iter < 3; iter++) {
      fill_blobs(&rng, v, stride, ih, iw, 1 + iter, iter == 2 ? 4.0f : 0.5f);
      check_plane(v, stride, ih, iw, oh, ow, 0.0f);
      check_plane(v, stride, ih, iw, oh, ow, (float)(test_rng_unit(&rng) * 6 - 3));
    }
    test_guarded_free(v);
  }
}

/* Every source width around the vector and word sizes (tails of 0..15
 * values in the row classifiers, cell bits crossing 64-bit words), rows
 * ending at a guard page, with upsampling and downsampling. */
static void test_all_widths(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 46);
  for (uint32_t iw = 1; iw <= 136; iw++) {
    if (iw > 40 && (iw < 60 || iw > 70) && iw < 124) continue;
    const uint32_t ih = 3;
    float *v = test_guarded_alloc((size_t)ih * iw * sizeof(float));
    assert_non_null(v);
    fill_blobs(&rng, v, iw, ih, iw, 2, 2.0f);
    check_plane(v, iw, ih, iw, 7, 2 * iw + 1, 0.0f);
    check_plane(v, iw, ih, iw, 2, iw / 2 + 1, 0.0f);
    test_guarded_free(v);
  }
}

static void test_full_size(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 42);
  float *v = malloc(512 * 512 * sizeof(float));
  fill_blobs(&rng, v, 512, 512, 512, 3, 1.0f);
  check_plane(v, 512, 512, 512, 2048, 2048, 0.0f);
  free(v);
}

/* Noise, as an untrained model gives: most cells straddle the threshold,
 * so the kernel takes its full-width path (one range per row, the source
 * row interpolations reused between cell rows, thresholding straight into
 * the mask when rows are whole words). Bands of rows alternate between
 * pure noise, a flat background, noise on the left half only (merged
 * ranges, template on the right) and sparse noise (short ranges), so every
 * path follows every other and a stale reused row would show. Source rows
 * end at a guard page (the SIMD windows near the row end). */
static void fill_noise_bands(struct test_rng *rng, float *v, size_t stride, uint32_t h,
                             uint32_t w) {
  for (uint32_t y = 0; y < h; y++) {
    unsigned band = (y / 5) % 4;
    for (uint32_t x = 0; x < w; x++) {
      float noise = (float)(test_rng_unit(rng) * 4.0 - 2.0);
      float bg = y % 2 ? -6.0f : 6.0f;
      float val = noise;
      if (band == 1) val = bg;
      if (band == 2 && x >= w / 2) val = bg;
      if (band == 3 && test_rng_unit(rng) < 0.9) val = bg;
      v[(size_t)y * stride + x] = val;
    }
  }
}

static void test_noisy_logits(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 47);
  static const uint32_t geo[][4] = {
      {64, 64, 256, 256}, {40, 100, 160, 400}, {33, 47, 97, 131}, {30, 130, 90, 128},
      {25, 70, 25, 70},   {64, 64, 32, 32},    {16, 512, 64, 2048}, {20, 36, 79, 1000}};
  for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
    uint32_t ih = geo[g][0], iw = geo[g][1], oh = geo[g][2], ow = geo[g][3];
    float *v = test_guarded_alloc((size_t)ih * iw * sizeof(float));
    assert_non_null(v);
    fill_noise_bands(&rng, v, iw, ih, iw);
    check_plane(v, iw, ih, iw, oh, ow, 0.0f);
    check_plane(v, iw, ih, iw, oh, ow, 0.5f);
    for (size_t i = 0; i < (size_t)ih * iw; i++) v[i] = (float)(test_rng_unit(&rng) * 4 - 2);
    check_plane(v, iw, ih, iw, oh, ow, 0.0f);
    test_guarded_free(v);
  }
}

/* Ties, NaN, infinities, denormals and a threshold right at corner values:
 * the cell shortcut must never decide these, and strict > must hold. */
static void test_adversarial_values(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 43);
  const uint32_t ih = 12, iw = 19;
  float v[12 * 19];
  static const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 1e-40f, -1e-40f, 3.0f,
                                   1.0000001f, 0.99999994f, 1e30f, -1e30f};
  for (int iter = 0; iter < 40; iter++) {
    for (size_t i = 0; i < ih * iw; i++) {
      uint64_t k = test_rng_below(&rng, 16);
      if (k < 11)
        v[i] = specials[k];
      else if (k == 11)
        v[i] = iter % 4 == 0 ? NAN : 1.0f;
      else if (k == 12)
        v[i] = iter % 4 == 1 ? INFINITY : -1.0f;
      else if (k == 13)
        v[i] = iter % 4 == 2 ? -INFINITY : 0.0f;
      else
        v[i] = (float)(test_rng_unit(&rng) * 4 - 2);
    }
    check_plane(v, iw, ih, iw, 48, 76, 1.0f);
    check_plane(v, iw, ih, iw, 31, 23, 0.0f);
    check_plane(v, iw, ih, iw, 12, 19, 1.0f);
  }
  /* A constant plane exactly at the threshold: nothing may be set, since
   * every interpolated value is the threshold (or rounds to it). */
  for (size_t i = 0; i < ih * iw; i++) v[i] = 0.3f;
  check_plane(v, iw, ih, iw, 48, 76, 0.3f);
  check_plane(v, iw, ih, iw, 48, 76, 0.29999998f);
}

/* Corners a few ulp from the threshold: interpolating equal corners can
 * round to a value on the other side (1 - l is rounded), which is exactly
 * what the cell margin must leave to the per-pixel path. Constant and
 * near-constant planes over many thresholds and awkward ratios. */
static void test_near_threshold(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 45);
  const uint32_t ih = 9, iw = 11;
  float v[9 * 11];
  static const uint32_t geo[][2] = {{23, 31}, {40, 53}, {7, 97}};
  for (int iter = 0; iter < 60; iter++) {
    float thr = (float)(test_rng_unit(&rng) * 20 - 10);
    int constant = iter % 2 == 0;
    int32_t k0 = (int32_t)test_rng_below(&rng, 9) - 4;
    for (size_t i = 0; i < ih * iw; i++) {
      int32_t k = constant ? k0 : (int32_t)test_rng_below(&rng, 9) - 4;
      float x = thr;
      for (; k > 0; k--) x = nextafterf(x, INFINITY);
      for (; k < 0; k++) x = nextafterf(x, -INFINITY);
      v[i] = x;
    }
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++)
      check_plane(v, iw, ih, iw, geo[g][0], geo[g][1], thr);
  }
}

static void test_errors_and_alloc_failures(void **state) {
  (void)state;
  struct osseg_upsample_plan plan;
  assert_int_equal(osseg_upsample_plan_init(&plan, 0, 4, 4, 4), OSSEG_ERANGE);
  assert_null(plan.impl_);
  assert_int_equal(osseg_upsample_plan_init(&plan, 4, 4, 4, OSSEG_MAX_SIDE + 1), OSSEG_ERANGE);
  osseg_upsample_plan_free(&plan); /* free of an empty plan is fine */
  osseg__alloc_fail_at(1);
  assert_int_equal(osseg_upsample_plan_init(&plan, 4, 4, 8, 8), OSSEG_ENOMEM);
  osseg__alloc_fail_at(0);
  assert_null(plan.impl_);

  assert_int_equal(osseg_upsample_plan_init(&plan, 4, 4, 8, 8), 0);
  float v[16] = {0};
  v[5] = 5;
  struct osseg_bitmask m, wrong;
  assert_int_equal(osseg_bitmask_init(&m, 8, 8), 0);
  assert_int_equal(osseg_bitmask_init(&wrong, 8, 9), 0);
  assert_int_equal(osseg_upsample_threshold(&plan, v, 4, 0, &wrong), OSSEG_ESHAPE);
  assert_int_equal(osseg_upsample_threshold(&plan, v, 3, 0, &m), OSSEG_EINVAL);
  assert_int_equal(osseg_upsample_threshold(&plan, v, SIZE_MAX / 2, 0, &m), OSSEG_EOVERFLOW);
  assert_int_equal(osseg_upsample_threshold(&plan, NULL, 4, 0, &m), OSSEG_EINVAL);
  const float *planes[2] = {v, v};
  assert_int_equal(osseg_upsample_soft_vote(&plan, planes, 0, 4, 0.5f, &m), OSSEG_EINVAL);
  assert_int_equal(osseg_upsample_soft_vote(&plan, planes, 65, 4, 0.5f, &m), OSSEG_EINVAL);
  assert_int_equal(osseg_upsample_soft_vote(&plan, planes, 2, 4, 0.0f, &m), OSSEG_EINVAL);
  assert_int_equal(osseg_upsample_soft_vote(&plan, planes, 2, 4, 1.0f, &m), OSSEG_EINVAL);
  assert_int_equal(osseg_upsample_soft_vote(&plan, planes, 2, 4, NAN, &m), OSSEG_EINVAL);
  const float *with_null[2] = {v, NULL};
  assert_int_equal(osseg_upsample_soft_vote(&plan, with_null, 2, 4, 0.5f, &m), OSSEG_EINVAL);

  /* Allocation-failure sweep over both entry points: a clean OSSEG_ENOMEM
   * until the call has all it needs, then the right answer. */
  for (int soft = 0; soft < 2; soft++) {
    for (uint64_t nth = 1;; nth++) {
      osseg__alloc_fail_at(nth);
      int rc = soft ? osseg_upsample_soft_vote(&plan, planes, 2, 4, 0.5f, &m)
                    : osseg_upsample_threshold(&plan, v, 4, 0.0f, &m);
      uint64_t seen = osseg__alloc_fail_at(0);
      if (rc == 0) {
        assert_true(seen < nth);
        assert_true(osseg_bitmask_count(&m) > 0);
        break;
      }
      assert_int_equal(rc, OSSEG_ENOMEM);
    }
  }
  osseg_bitmask_free(&m);
  osseg_bitmask_free(&wrong);
  osseg_upsample_plan_free(&plan);
}

/* ------------------------------------------------------ PyTorch data --- */

/* Reads a little-endian float32 C-order .npy file of the expected shape. */
static float *read_npy(const char *path, const uint32_t *shape, int ndim) {
  size_t size;
  char *buf = test_read_file(path, &size);
  if (!buf) fail_msg("cannot read %s", path);
  assert_true(size > 10 && memcmp(buf, "\x93NUMPY", 6) == 0);
  size_t hlen = (size_t)(unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
  assert_true(10 + hlen <= size);
  assert_non_null(strstr(buf + 10, "'descr': '<f4'"));
  const char *p = strstr(buf + 10, "'shape': (");
  assert_non_null(p);
  p += 10;
  size_t n = 1;
  for (int i = 0; i < ndim; i++) {
    char *end;
    unsigned long d = strtoul(p, &end, 10);
    assert_int_equal(d, shape[i]);
    n *= d;
    p = end + 1;
    while (*p == ' ') p++;
  }
  assert_int_equal(size - 10 - hlen, n * sizeof(float));
  float *v = malloc(n * sizeof(float));
  memcpy(v, buf + 10 + hlen, n * sizeof(float));
  free(buf);
  return v;
}

/* PyTorch 1.13's F.interpolate(bilinear, align_corners=False) outputs for a
 * (1, 4, 12, 10) input: the reference formula must reproduce every value
 * bit for bit, and the kernel's mask at thresholds placed exactly on (and
 * one ulp either side of) PyTorch's values must equal `value > threshold`. */
static void check_torch_case(const char *name, uint32_t oh, uint32_t ow) {
  const uint32_t ih = 12, iw = 10, nch = 4;
  const uint32_t in_shape[4] = {1, nch, ih, iw}, out_shape[4] = {1, nch, oh, ow};
  float *in = read_npy(test_path("%s/tests/data/engine/%s.input.npy", test_source_dir(), name),
                       in_shape, 4);
  float *out = read_npy(test_path("%s/tests/data/engine/%s.output.npy", test_source_dir(), name),
                        out_shape, 4);
  struct osseg_upsample_plan plan;
  assert_int_equal(osseg_upsample_plan_init(&plan, ih, iw, oh, ow), 0);
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, oh, ow), 0);
  for (uint32_t c = 0; c < nch; c++) {
    const float *v = in + (size_t)c * ih * iw, *want = out + (size_t)c * oh * ow;
    for (uint32_t y = 0; y < oh; y++)
      for (uint32_t x = 0; x < ow; x++) {
        float got = ref_value(v, iw, ih, iw, oh, ow, y, x, NULL);
        if (memcmp(&got, &want[y * ow + x], sizeof got) != 0)
          fail_msg("%s channel %u (%u, %u): formula %.9g, PyTorch %.9g", name, c, y, x,
                   (double)got, (double)want[y * ow + x]);
      }
    for (uint32_t k = 0; k < oh * ow; k += 7) {
      for (int side = -1; side <= 1; side++) {
        float thr = want[k];
        if (side) thr = nextafterf(thr, side * INFINITY);
        for (size_t vi = 0; vi < NVARIANTS; vi++) {
          if (!usable(&variants[vi])) continue;
          assert_int_equal(osseg__upsample_threshold_ops(variants[vi].ops, &plan, v, iw, thr, &m), 0);
          for (uint32_t q = 0; q < oh * ow; q++)
            if (get_bit(&m, q) != (want[q] > thr))
              fail_msg("%s %s channel %u pixel %u: threshold %.9g, PyTorch value %.9g, got %d",
                       variants[vi].ops->name, name, c, q, (double)thr, (double)want[q],
                       get_bit(&m, q));
        }
      }
    }
  }
  osseg_bitmask_free(&m);
  osseg_upsample_plan_free(&plan);
  free(in);
  free(out);
}

static void test_matches_pytorch(void **state) {
  (void)state;
  check_torch_case("resize_bilinear_hp", 17, 23);   /* non-integer upsampling */
  check_torch_case("resize_bilinear_down", 6, 5);   /* 2x downsampling */
}

/* ------------------------------------------------------------ soft vote --- */

static void check_soft(const float *const *planes, size_t k, size_t stride, uint32_t ih,
                       uint32_t iw, uint32_t oh, uint32_t ow, float p) {
  struct osseg_upsample_plan plan;
  assert_int_equal(osseg_upsample_plan_init(&plan, ih, iw, oh, ow), 0);
  uint64_t npix = (uint64_t)oh * ow;
  uint8_t *want = malloc(npix);
  double *mean = malloc(npix * sizeof(double));
  for (uint32_t y = 0; y < oh; y++) {
    for (uint32_t x = 0; x < ow; x++) {
      float sum = 0;
      double dsum = 0;
      for (size_t j = 0; j < k; j++) {
        float val = ref_value(planes[j], stride, ih, iw, oh, ow, y, x, NULL);
        sum += 1.0f / (1.0f + expf(-val));
        dsum += 1.0 / (1.0 + exp(-(double)val));
      }
      want[(uint64_t)y * ow + x] = sum / (float)k > p;
      mean[(uint64_t)y * ow + x] = dsum / (double)k;
    }
  }
  struct osseg_bitmask got;
  assert_int_equal(osseg_bitmask_init(&got, oh, ow), 0);
  for (size_t vi = 0; vi < NVARIANTS; vi++) {
    if (!usable(&variants[vi])) continue;
    assert_int_equal(osseg__upsample_soft_vote_ops(variants[vi].ops, &plan, planes, k, stride,
                                                   p, &got), 0);
    for (uint64_t q = 0; q < npix; q++) {
      if (get_bit(&got, q) == want[q]) continue;
      /* Generic must match exactly; SIMD only near the threshold. */
      if (vi == 0 || !(fabs(mean[q] - p) <= 1e-6))
        fail_msg("%s: soft pixel %llu got %d want %d (mean %.9g, p %.9g)",
                 variants[vi].ops->name, (unsigned long long)q, get_bit(&got, q), want[q],
                 mean[q], (double)p);
    }
    for (uint64_t q = npix; q < got.nwords * 64; q++) assert_int_equal(get_bit(&got, q), 0);
  }
  assert_int_equal(osseg_upsample_soft_vote(&plan, planes, k, stride, p, &got), 0);
  free(want);
  free(mean);
  osseg_bitmask_free(&got);
  osseg_upsample_plan_free(&plan);
}

static void test_soft_vote(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 44);
  static const uint32_t geo[][4] = {{16, 16, 64, 64}, {7, 5, 13, 29}, {30, 30, 17, 23},
                                    {64, 48, 256, 192}, {1, 1, 3, 3}};
  for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
    uint32_t ih = geo[g][0], iw = geo[g][1], oh = geo[g][2], ow = geo[g][3];
    for (size_t k = 1; k <= 4; k++) {
      float *buf[4];
      const float *planes[4];
      struct test_rng shared = rng;
      for (size_t j = 0; j < k; j++) {
        buf[j] = malloc((size_t)ih * iw * sizeof(float));
        /* Models that mostly agree (same blobs), with their own noise. */
        struct test_rng blob = shared;
        fill_blobs(&blob, buf[j], iw, ih, iw, 2, 0.0f);
        for (size_t i = 0; i < (size_t)ih * iw; i++)
          buf[j][i] += (float)(test_rng_unit(&rng) - 0.5) * 3.0f;
        planes[j] = buf[j];
      }
      test_rng_next(&rng);
      check_soft(planes, k, iw, ih, iw, oh, ow, 0.5f);
      check_soft(planes, k, iw, ih, iw, oh, ow, 0.3f);
      check_soft(planes, k, iw, ih, iw, oh, ow, 0.999f);
      for (size_t j = 0; j < k; j++) free(buf[j]);
    }
  }
  /* NaN and infinities: a NaN mean is never set, on every level. */
  float odd[3][12] = {{0}};
  for (int j = 0; j < 3; j++)
    for (int i = 0; i < 12; i++) odd[j][i] = (float)((i * 7 + j * 5) % 9) - 4.0f;
  odd[0][4] = NAN;
  odd[1][7] = INFINITY;
  odd[2][2] = -INFINITY;
  const float *op[3] = {odd[0], odd[1], odd[2]};
  check_soft(op, 3, 4, 3, 4, 11, 13, 0.5f);
  check_soft(op, 2, 4, 3, 4, 11, 13, 0.3f);

  /* A model far above and one far below: cells must not be decided. */
  float hi[4] = {20, 20, 20, 20}, lo[4] = {-20, -20, -20, -20};
  const float *pl[2] = {hi, lo};
  check_soft(pl, 2, 2, 2, 2, 8, 8, 0.4f);
  check_soft(pl, 2, 2, 2, 2, 8, 8, 0.6f);
}

/* A plan with reserved scratch gives the same masks as one without and
 * allocates nothing per call; a reservation for k models serves any k' <= k
 * and a larger k' still works (allocating for that call). */
static void test_reserved_scratch(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 45);
  const uint32_t ih = 37, iw = 41, oh = 300, ow = 257;
  float *buf[3];
  const float *planes[3];
  for (int j = 0; j < 3; j++) {
    buf[j] = malloc((size_t)ih * iw * sizeof(float));
    assert_non_null(buf[j]);
    fill_blobs(&rng, buf[j], iw, ih, iw, 3, 2.0f);
    planes[j] = buf[j];
  }
  struct osseg_upsample_plan plain, reserved;
  assert_int_equal(osseg_upsample_plan_init(&plain, ih, iw, oh, ow), 0);
  assert_int_equal(osseg_upsample_plan_init(&reserved, ih, iw, oh, ow), 0);
  assert_int_equal(osseg_upsample_plan_reserve(&reserved, 0), OSSEG_EINVAL);
  assert_int_equal(osseg_upsample_plan_reserve(&reserved, 65), OSSEG_EINVAL);
  assert_int_equal(osseg_upsample_plan_reserve(&reserved, 2), 0);
  struct osseg_bitmask a, b;
  assert_int_equal(osseg_bitmask_init(&a, oh, ow), 0);
  assert_int_equal(osseg_bitmask_init(&b, oh, ow), 0);
  for (int round = 0; round < 2; round++) {
    assert_int_equal(osseg_upsample_threshold(&plain, planes[0], iw, 0.3f, &a), 0);
    osseg__alloc_fail_at(0);
    assert_int_equal(osseg_upsample_threshold(&reserved, planes[0], iw, 0.3f, &b), 0);
    assert_int_equal(osseg__alloc_fail_at(0), 0);
    assert_memory_equal(a.bits, b.bits, a.nwords * sizeof *a.bits);

    assert_int_equal(osseg_upsample_soft_vote(&plain, planes, 2, iw, 0.4f, &a), 0);
    osseg__alloc_fail_at(0);
    assert_int_equal(osseg_upsample_soft_vote(&reserved, planes, 2, iw, 0.4f, &b), 0);
    assert_int_equal(osseg__alloc_fail_at(0), 0);
    assert_memory_equal(a.bits, b.bits, a.nwords * sizeof *a.bits);
  }
  /* Three models exceed the reservation: one allocation, same result. */
  assert_int_equal(osseg_upsample_soft_vote(&plain, planes, 3, iw, 0.5f, &a), 0);
  osseg__alloc_fail_at(0);
  assert_int_equal(osseg_upsample_soft_vote(&reserved, planes, 3, iw, 0.5f, &b), 0);
  assert_int_equal(osseg__alloc_fail_at(0), 1);
  assert_memory_equal(a.bits, b.bits, a.nwords * sizeof *a.bits);
  osseg_bitmask_free(&a);
  osseg_bitmask_free(&b);
  osseg_upsample_plan_free(&plain);
  osseg_upsample_plan_free(&reserved);
  for (int j = 0; j < 3; j++) free(buf[j]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_2x2),
      cmocka_unit_test(test_matches_pytorch),
      cmocka_unit_test(test_random_geometries),
      cmocka_unit_test(test_all_widths),
      cmocka_unit_test(test_full_size),
      cmocka_unit_test(test_noisy_logits),
      cmocka_unit_test(test_adversarial_values),
      cmocka_unit_test(test_near_threshold),
      cmocka_unit_test(test_errors_and_alloc_failures),
      cmocka_unit_test(test_soft_vote),
      cmocka_unit_test(test_reserved_scratch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
