/* Bilinear resize and model-input preprocessing.
 *
 * The arithmetic follows PyTorch's CPU upsample_bilinear2d with
 * align_corners=False in float32: scale = in / out, src = scale * (dst +
 * 0.5) - 0.5 clamped at 0, i0 = floor(src) (at most in - 1), i1 = i0 + 1
 * unless i0 is the last index, weight = src - i0. The result agrees with
 * torch within 2e-6 on values in [0, 1] (tests/imaging/test_resize.c
 * compares against committed torch output; integer scale factors agree to
 * 1 ULP, others up to ~12 ULP where torch rounds the source coordinate
 * differently). Bit equality is not promised; an 8-bit level is 4e-3. */
#include <string.h>

#include "osseg_imaging.h"

struct tap {
  uint32_t i0, i1;
  float w1; /* weight of i1; i0 gets 1 - w1 */
};

static struct tap tap_for(uint32_t in, float scale, uint32_t o) {
  float src = scale * ((float)o + 0.5f) - 0.5f;
  if (src < 0) src = 0;
  uint32_t i0 = (uint32_t)src; /* src >= 0: truncation is floor */
  if (i0 > in - 1) i0 = in - 1;
  float l = src - (float)i0;
  if (l < 0) l = 0;
  if (l > 1) l = 1;
  return (struct tap){i0, i0 < in - 1 ? i0 + 1 : i0, l};
}

int osseg_resize_bilinear_f32(const float *src, uint32_t ih, uint32_t iw, size_t src_stride,
                              float *dst, uint32_t oh, uint32_t ow, size_t dst_stride) {
  if (!src || !dst || !ih || !iw || !oh || !ow || src_stride < iw || dst_stride < ow)
    return OSSEG_EINVAL;
  struct tap *xs = osseg__malloc((size_t)ow * sizeof *xs);
  if (!xs) return OSSEG_ENOMEM;
  float sx = (float)iw / (float)ow, sy = (float)ih / (float)oh;
  for (uint32_t x = 0; x < ow; x++) xs[x] = tap_for(iw, sx, x);
  for (uint32_t y = 0; y < oh; y++) {
    struct tap ty = tap_for(ih, sy, y);
    const float *r0 = src + (size_t)ty.i0 * src_stride, *r1 = src + (size_t)ty.i1 * src_stride;
    float wy1 = ty.w1, wy0 = 1.0f - wy1;
    float *out = dst + (size_t)y * dst_stride;
    for (uint32_t x = 0; x < ow; x++) {
      const struct tap *t = &xs[x];
      float wx1 = t->w1, wx0 = 1.0f - wx1;
      out[x] = wy0 * (wx0 * r0[t->i0] + wx1 * r0[t->i1]) +
               wy1 * (wx0 * r1[t->i0] + wx1 * r1[t->i1]);
    }
  }
  osseg__free(xs);
  return 0;
}

/* One source row scaled to [0, 1] (as torch's image / maxval) and
 * interpolated horizontally at the output columns: exactly the inner
 * brackets of osseg_resize_bilinear_f32's formula, so the vertical blend of
 * two such rows gives the same bits as resizing the whole scaled plane. */
static void hpass_row(const struct osseg_image *img, uint32_t y, const struct tap *xs,
                      uint32_t ow, const float *lut8, float *h) {
  const uint8_t *row = img->data + (size_t)y * img->stride;
  if (img->bit_depth == 8) {
    for (uint32_t x = 0; x < ow; x++) {
      const struct tap *t = &xs[x];
      float wx1 = t->w1, wx0 = 1.0f - wx1;
      h[x] = wx0 * lut8[row[t->i0]] + wx1 * lut8[row[t->i1]];
    }
  } else {
    const uint16_t *r16 = (const uint16_t *)row;
    for (uint32_t x = 0; x < ow; x++) {
      const struct tap *t = &xs[x];
      float wx1 = t->w1, wx0 = 1.0f - wx1;
      h[x] = wx0 * ((float)r16[t->i0] / 65535.0f) + wx1 * ((float)r16[t->i1] / 65535.0f);
    }
  }
}

/* Why not convert the image to float and call osseg_resize_bilinear_f32:
 * a 2048 x 2048 radiograph would need a 16 MB float copy, written and read
 * once, while a downscale to S rows reads only two source rows per output
 * row. Only those rows are converted and interpolated horizontally (into
 * two S-float slots, reused when consecutive output rows share a source
 * row, as upscaling does); the per-pixel arithmetic is the same as the
 * whole-plane path in the same order, so the output is bit-identical
 * (tests/imaging/test_resize.c keeps the old implementation to check). */
int osseg_preprocess_gray(const struct osseg_image *img, uint32_t size,
                          const struct osseg_normalize *norm, float *out) {
  if (!img || !img->data || !out || img->channels != 1 || size == 0 || img->width == 0 ||
      img->height == 0 || (img->bit_depth != 8 && img->bit_depth != 16))
    return OSSEG_EINVAL;
  float mean[3] = {0, 0, 0}, inv_std[3] = {1, 1, 1};
  if (norm) {
    for (int c = 0; c < 3; c++) {
      if (!(norm->std[c] != 0)) return OSSEG_EINVAL; /* also rejects NaN */
      mean[c] = norm->mean[c];
      inv_std[c] = 1.0f / norm->std[c];
    }
  }
  uint32_t ih = img->height, iw = img->width, ow = size, oh = size;
  /* The column taps and the two row slots live in channels 1 and 2 of out,
   * which are written only after channel 0 is complete: no allocation per
   * image. They need 20 bytes per column, so sizes below 3 (where the two
   * channels hold less) allocate. */
  size_t ss = (size_t)size * size;
  size_t scratch = (size_t)ow * (sizeof(struct tap) + 2 * sizeof(float));
  struct tap *xs;
  float *slots;
  void *heap = NULL;
  if (scratch <= 2 * ss * sizeof *out) {
    slots = out + ss;
    xs = (struct tap *)(void *)(slots + 2 * (size_t)ow);
  } else {
    heap = osseg__malloc(scratch);
    if (!heap) return OSSEG_ENOMEM;
    xs = heap;
    slots = (float *)(void *)(xs + ow);
  }
  /* (float)v / 255.0f for every 8-bit value: the same correctly rounded
   * quotients the per-pixel division gives. */
  float lut8[256];
  for (int v = 0; v < 256; v++) lut8[v] = (float)v / 255.0f;
  float sx = (float)iw / (float)ow, sy = (float)ih / (float)oh;
  for (uint32_t x = 0; x < ow; x++) xs[x] = tap_for(iw, sx, x);
  float *slot[2] = {slots, slots + ow};
  int64_t held[2] = {-1, -1}; /* source row in each slot */
  for (uint32_t y = 0; y < oh; y++) {
    struct tap ty = tap_for(ih, sy, y);
    const float *h0 = NULL, *h1 = NULL;
    for (int s = 0; s < 2; s++) {
      if (held[s] == ty.i0) h0 = slot[s];
      if (held[s] == ty.i1) h1 = slot[s];
    }
    if (!h0) {
      /* Evict the slot that does not hold the other needed row. */
      int s = held[0] == ty.i1 ? 1 : 0;
      hpass_row(img, ty.i0, xs, ow, lut8, slot[s]);
      held[s] = ty.i0;
      h0 = slot[s];
      if (ty.i1 == ty.i0) h1 = h0;
    }
    if (!h1) {
      int s = slot[0] == h0 ? 1 : 0;
      hpass_row(img, ty.i1, xs, ow, lut8, slot[s]);
      held[s] = ty.i1;
      h1 = slot[s];
    }
    float wy1 = ty.w1, wy0 = 1.0f - wy1;
    float *o = out + (size_t)y * ow;
    for (uint32_t x = 0; x < ow; x++) o[x] = wy0 * h0[x] + wy1 * h1[x];
  }
  osseg__free(heap);
  /* Channels 1 and 2 are copies of channel 0, each normalised. */
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
