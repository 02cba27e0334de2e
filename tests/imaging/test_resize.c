/* Tests of imaging/resize.c: bilinear resize against hand-computed values
 * and against torch's F.interpolate output committed under
 * tests/data/imaging/ (tools/fixtures/make_imaging_refs.py), and the model
 * input preprocessing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_imaging.h"
#include "test_support.h"

#define TOL 1e-6f
#define TORCH_TOL 2e-6f

static void test_upsample_by_hand(void **state) {
  (void)state;
  /* 2x2 -> 4x4: source coordinates (o + 0.5) / 2 - 0.5 = -0.25 (clamped to
   * 0), 0.25, 0.75, 1.25 (upper neighbour clamped), i.e. weights 0, .25,
   * .75, 1 along each axis. */
  const float src[4] = {0, 1, 2, 3};
  float dst[16];
  assert_int_equal(osseg_resize_bilinear_f32(src, 2, 2, 2, dst, 4, 4, 4), 0);
  const float w[4] = {0, 0.25f, 0.75f, 1};
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++) {
      float want = w[x] * 1 + w[y] * 2; /* bilinear in a plane: exact */
      assert_float_equal(dst[y * 4 + x], want, TOL);
    }
}

static void test_downsample_by_hand(void **state) {
  (void)state;
  /* 4x4 -> 2x2: source coordinates 0.5 and 2.5: each output is the mean of
   * a 2x2 block. 6x6 -> 2x2: coordinates 1 and 4: exact samples. */
  float src[36], dst[4];
  for (int i = 0; i < 16; i++) src[i] = (float)(i * i % 7);
  assert_int_equal(osseg_resize_bilinear_f32(src, 4, 4, 4, dst, 2, 2, 2), 0);
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 2; x++) {
      const float *b = src + 8 * y + 2 * x;
      assert_float_equal(dst[2 * y + x], (b[0] + b[1] + b[4] + b[5]) / 4, TOL);
    }
  for (int i = 0; i < 36; i++) src[i] = (float)i;
  assert_int_equal(osseg_resize_bilinear_f32(src, 6, 6, 6, dst, 2, 2, 2), 0);
  assert_float_equal(dst[0], src[1 * 6 + 1], TOL);
  assert_float_equal(dst[1], src[1 * 6 + 4], TOL);
  assert_float_equal(dst[2], src[4 * 6 + 1], TOL);
  assert_float_equal(dst[3], src[4 * 6 + 4], TOL);
}

static void test_identity_and_strides(void **state) {
  (void)state;
  float src[5 * 8], dst[5 * 9];
  for (int i = 0; i < 40; i++) src[i] = (float)i / 7;
  memset(dst, 0xff, sizeof dst);
  /* Source rows 8 apart, 7 used; destination rows 9 apart. */
  assert_int_equal(osseg_resize_bilinear_f32(src, 5, 7, 8, dst, 5, 7, 9), 0);
  for (int y = 0; y < 5; y++)
    for (int x = 0; x < 7; x++) assert_true(dst[y * 9 + x] == src[y * 8 + x]);
  assert_int_equal(osseg_resize_bilinear_f32(src, 5, 7, 6, dst, 5, 7, 9), OSSEG_EINVAL);
  assert_int_equal(osseg_resize_bilinear_f32(src, 0, 7, 8, dst, 5, 7, 9), OSSEG_EINVAL);
  assert_int_equal(osseg_resize_bilinear_f32(NULL, 5, 7, 8, dst, 5, 7, 9), OSSEG_EINVAL);
}

static float *load_floats(const char *name, size_t n) {
  size_t size;
  char *d = test_read_file(test_path("%s/tests/data/imaging/%s", test_source_dir(), name), &size);
  assert_non_null(d);
  assert_int_equal(size, n * 4);
  float *f = malloc(n * sizeof *f);
  for (size_t i = 0; i < n; i++) {
    uint32_t v = (uint32_t)(uint8_t)d[4 * i] | (uint32_t)(uint8_t)d[4 * i + 1] << 8 |
                 (uint32_t)(uint8_t)d[4 * i + 2] << 16 | (uint32_t)(uint8_t)d[4 * i + 3] << 24;
    memcpy(&f[i], &v, 4);
  }
  free(d);
  return f;
}

/* torch.nn.functional.interpolate(img / 255, (H, W), mode="bilinear",
 * align_corners=False) for a 37 x 23 random image, up and down, square and
 * not, including the identity size. */
static void test_against_torch(void **state) {
  (void)state;
  size_t size;
  char *d = test_read_file(
      test_path("%s/tests/data/imaging/resize_src.bin", test_source_dir()), &size);
  assert_non_null(d);
  uint32_t h = (uint32_t)(uint8_t)d[0] | (uint32_t)(uint8_t)d[1] << 8,
           w = (uint32_t)(uint8_t)d[4] | (uint32_t)(uint8_t)d[5] << 8;
  assert_int_equal(h, 37);
  assert_int_equal(w, 23);
  assert_int_equal(size, 8 + (size_t)h * w);
  float *src = malloc(sizeof *src * h * w);
  for (size_t i = 0; i < (size_t)h * w; i++) src[i] = (float)(uint8_t)d[8 + i] / 255.0f;
  static const uint32_t outs[][2] = {{16, 16}, {64, 64}, {29, 41}, {37, 23}, {5, 3}};
  for (size_t k = 0; k < sizeof outs / sizeof outs[0]; k++) {
    uint32_t oh = outs[k][0], ow = outs[k][1];
    char name[64];
    snprintf(name, sizeof name, "resize_%ux%u.bin", oh, ow);
    float *want = load_floats(name, (size_t)oh * ow);
    float *got = malloc(sizeof *got * oh * ow);
    assert_int_equal(osseg_resize_bilinear_f32(src, h, w, w, got, oh, ow, ow), 0);
    float worst = 0;
    for (size_t i = 0; i < (size_t)oh * ow; i++) {
      float e = fabsf(got[i] - want[i]);
      if (e > worst) worst = e;
    }
    /* torch's kernel computes the source coordinates with a different
     * rounding on some sizes (non-integer scales); the outputs then differ
     * by up to ~12 ULP of values in [0, 1]: far below an 8-bit level and
     * irrelevant to thresholded masks. */
    if (worst > TORCH_TOL) fail_msg("%s: max error %g", name, (double)worst);
    free(want);
    free(got);
  }
  free(src);
  free(d);
}

static void test_preprocess(void **state) {
  (void)state;
  struct osseg_image im8, im16;
  assert_int_equal(osseg_image_init(&im8, 6, 4, 1, 8), 0);
  assert_int_equal(osseg_image_init(&im16, 6, 4, 1, 16), 0);
  for (int i = 0; i < 24; i++) {
    im8.data[i] = (uint8_t)(i * 10);
    ((uint16_t *)im16.data)[i] = (uint16_t)(i * 10 * 257); /* same value / 65535 */
  }
  const uint32_t S = 3;
  float a[3 * 9], b[3 * 9], plane[24], ref[9];
  for (int i = 0; i < 24; i++) plane[i] = (float)(i * 10) / 255.0f;
  assert_int_equal(osseg_resize_bilinear_f32(plane, 4, 6, 6, ref, S, S, S), 0);
  assert_int_equal(osseg_preprocess_gray(&im8, S, NULL, a), 0);
  assert_int_equal(osseg_preprocess_gray(&im16, S, NULL, b), 0);
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < 9; i++) {
      assert_float_equal(a[c * 9 + i], ref[i], TOL);
      assert_float_equal(b[c * 9 + i], ref[i], TOL);
    }
  struct osseg_normalize n = {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
  assert_int_equal(osseg_preprocess_gray(&im8, S, &n, a), 0);
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < 9; i++)
      assert_float_equal(a[c * 9 + i], (ref[i] - n.mean[c]) / n.std[c], 1e-5f);
  n.std[1] = 0;
  assert_int_equal(osseg_preprocess_gray(&im8, S, &n, a), OSSEG_EINVAL);
  assert_int_equal(osseg_preprocess_gray(&im8, 0, NULL, a), OSSEG_EINVAL);
  struct osseg_image rgb;
  assert_int_equal(osseg_image_init(&rgb, 2, 2, 3, 8), 0);
  assert_int_equal(osseg_preprocess_gray(&rgb, S, NULL, a), OSSEG_EINVAL);
  /* Its scratch lives in channels 1 and 2 of the output: no allocation,
   * except for sides below 3, where those channels are too small. */
  osseg__alloc_fail_at(0);
  assert_int_equal(osseg_preprocess_gray(&im8, S, NULL, a), 0);
  assert_int_equal(osseg__alloc_fail_at(0), 0);
  assert_int_equal(osseg_preprocess_gray(&im8, 3, NULL, a), 0);
  assert_int_equal(osseg__alloc_fail_at(0), 0);
  osseg__alloc_fail_at(1);
  int rc = osseg_preprocess_gray(&im8, 2, NULL, a);
  osseg__alloc_fail_at(0);
  assert_int_equal(rc, OSSEG_ENOMEM);
  assert_int_equal(osseg_preprocess_gray(&im8, 2, NULL, a), 0);
  assert_int_equal(osseg__alloc_fail_at(0), 1);
  osseg_image_free(&rgb);
  osseg_image_free(&im8);
  osseg_image_free(&im16);
}

/* The implementation of osseg_preprocess_gray before it stopped converting
 * the whole image to float (kept verbatim as the reference: the new one
 * must give the same bits). */
static int old_preprocess_gray(const struct osseg_image *img, uint32_t size,
                               const struct osseg_normalize *norm, float *out) {
  if (!img || !img->data || !out || img->channels != 1 || size == 0 ||
      (img->bit_depth != 8 && img->bit_depth != 16))
    return OSSEG_EINVAL;
  float mean[3] = {0, 0, 0}, inv_std[3] = {1, 1, 1};
  if (norm) {
    for (int c = 0; c < 3; c++) {
      if (!(norm->std[c] != 0)) return OSSEG_EINVAL; /* also rejects NaN */
      mean[c] = norm->mean[c];
      inv_std[c] = 1.0f / norm->std[c];
    }
  }
  size_t n = (size_t)img->width * img->height;
  float *plane = osseg__malloc(n * sizeof *plane);
  if (!plane) return OSSEG_ENOMEM;
  if (img->bit_depth == 8) {
    for (uint32_t y = 0; y < img->height; y++) {
      const uint8_t *row = img->data + (size_t)y * img->stride;
      float *o = plane + (size_t)y * img->width;
      for (uint32_t x = 0; x < img->width; x++) o[x] = (float)row[x] / 255.0f;
    }
  } else {
    for (uint32_t y = 0; y < img->height; y++) {
      const uint16_t *row = (const uint16_t *)(img->data + (size_t)y * img->stride);
      float *o = plane + (size_t)y * img->width;
      for (uint32_t x = 0; x < img->width; x++) o[x] = (float)row[x] / 65535.0f;
    }
  }
  size_t ss = (size_t)size * size;
  int rc = osseg_resize_bilinear_f32(plane, img->height, img->width, img->width, out, size,
                                     size, size);
  osseg__free(plane);
  if (rc < 0) return rc;
  for (int c = 2; c >= 0; c--) {
    float *dst = out + (size_t)c * ss;
    if (mean[c] == 0 && inv_std[c] == 1) {
      if (c) memcpy(dst, out, ss * sizeof *out);
      continue;
    }
    for (size_t i = 0; i < ss; i++) dst[i] = (out[i] - mean[c]) * inv_std[c];
  }
  return 0;
}

/* Random images of many shapes, 8 and 16 bit, up- and downscaled, with and
 * without normalisation: bit-identical to the old whole-plane version. */
static void test_preprocess_matches_old(void **state) {
  (void)state;
  static const uint32_t sides[] = {1, 2, 3, 5, 17, 64, 255, 256, 257, 513, 1000};
  static const uint32_t outs[] = {1, 2, 7, 64, 256, 300};
  struct test_rng rng;
  test_rng_seed(&rng, 42);
  struct osseg_normalize imagenet = {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
  size_t cases = 0;
  for (size_t hi = 0; hi < sizeof sides / sizeof sides[0]; hi++)
    for (int depth = 8; depth <= 16; depth += 8) {
      /* A width different from the height, so the axes are not confused. */
      uint32_t h = sides[hi], w = sides[(hi * 7 + 3) % (sizeof sides / sizeof sides[0])];
      struct osseg_image im;
      assert_int_equal(osseg_image_init(&im, w, h, 1, (uint32_t)depth), 0);
      for (size_t i = 0; i < im.stride * h; i++) im.data[i] = (uint8_t)test_rng_next(&rng);
      for (size_t oi = 0; oi < sizeof outs / sizeof outs[0]; oi++) {
        uint32_t S = outs[oi];
        size_t n = (size_t)3 * S * S;
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        const struct osseg_normalize *norm = (oi + hi) % 2 ? &imagenet : NULL;
        assert_int_equal(old_preprocess_gray(&im, S, norm, a), 0);
        assert_int_equal(osseg_preprocess_gray(&im, S, norm, b), 0);
        if (memcmp(a, b, n * sizeof *a) != 0)
          fail_msg("%ux%u %d-bit -> %u: differs from the old implementation", h, w, depth, S);
        free(a);
        free(b);
        cases++;
      }
      osseg_image_free(&im);
    }
  /* The service's case: a 2048 x 2048 radiograph to the model sizes. */
  for (int depth = 8; depth <= 16; depth += 8) {
    struct osseg_image im;
    assert_int_equal(osseg_image_init(&im, 2048, 2048, 1, (uint32_t)depth), 0);
    for (size_t i = 0; i < im.stride * 2048; i++) im.data[i] = (uint8_t)test_rng_next(&rng);
    for (uint32_t S = 256; S <= 512; S *= 2) {
      size_t n = (size_t)3 * S * S;
      float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
      assert_int_equal(old_preprocess_gray(&im, S, &imagenet, a), 0);
      assert_int_equal(osseg_preprocess_gray(&im, S, &imagenet, b), 0);
      assert_memory_equal(a, b, n * sizeof *a);
      free(a);
      free(b);
      cases++;
    }
    osseg_image_free(&im);
  }
  assert_int_equal(cases, 11 * 2 * 6 + 4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upsample_by_hand), cmocka_unit_test(test_downsample_by_hand),
      cmocka_unit_test(test_identity_and_strides), cmocka_unit_test(test_against_torch),
      cmocka_unit_test(test_preprocess), cmocka_unit_test(test_preprocess_matches_old),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
