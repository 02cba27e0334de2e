/* Colour overlays of class masks on a radiograph, for the demo and viewers. */
#include <string.h>

#include "osseg_imaging.h"

/* 29 colours: hues spread around the wheel in an order that keeps
 * neighbouring bones (consecutive classes) far apart, at two lightness
 * levels. */
static const uint8_t palette[29][3] = {
    {230, 25, 75},   {60, 180, 75},   {255, 225, 25},  {0, 130, 200},   {245, 130, 48},
    {145, 30, 180},  {70, 240, 240},  {240, 50, 230},  {210, 245, 60},  {250, 190, 212},
    {0, 128, 128},   {220, 190, 255}, {170, 110, 40},  {255, 250, 200}, {128, 0, 0},
    {170, 255, 195}, {128, 128, 0},   {255, 215, 180}, {0, 0, 128},     {255, 99, 71},
    {46, 139, 87},   {218, 165, 32},  {65, 105, 225},  {255, 140, 0},   {186, 85, 211},
    {0, 206, 209},   {255, 20, 147},  {154, 205, 50},  {100, 149, 237},
};

void osseg_overlay_class_color(unsigned cls, uint8_t rgb[3]) {
  const uint8_t *c = palette[cls % 29];
  rgb[0] = c[0];
  rgb[1] = c[1];
  rgb[2] = c[2];
}

static inline int bit(const struct osseg_bitmask *m, uint32_t x, uint32_t y) {
  uint64_t p = (uint64_t)y * m->width + x;
  return (int)((m->bits[p >> 6] >> (p & 63)) & 1);
}

static int check_masks(const struct osseg_image *g, const struct osseg_bitmask *const *masks,
                       size_t n) {
  if (n > 64 || (n && !masks)) return OSSEG_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (masks[i] && (masks[i]->width != g->width || masks[i]->height != g->height))
      return OSSEG_ESHAPE;
  return 0;
}

static inline uint8_t gray_at(const struct osseg_image *g, uint32_t x, uint32_t y) {
  const uint8_t *row = g->data + (size_t)y * g->stride;
  return g->bit_depth == 8 ? row[x] : (uint8_t)(((const uint16_t *)row)[x] >> 8);
}

/* Writes the overlay of gray into an RGB buffer at (ox, oy) of out. */
static void draw_overlay(const struct osseg_image *g, const struct osseg_bitmask *const *masks,
                         size_t n, float alpha, struct osseg_image *out, uint32_t ox) {
  int a = (int)(alpha * 256.0f + 0.5f);
  if (a < 0) a = 0;
  if (a > 256) a = 256;
  for (uint32_t y = 0; y < g->height; y++) {
    uint8_t *row = out->data + (size_t)y * out->stride + (size_t)ox * 3;
    for (uint32_t x = 0; x < g->width; x++) {
      int v = gray_at(g, x, y);
      int cls = -1, edge = 0;
      for (size_t i = 0; i < n; i++) {
        const struct osseg_bitmask *m = masks[i];
        if (!m || !bit(m, x, y)) continue;
        cls = (int)i;
        /* An outline pixel has a 4-neighbour outside the mask (or is on
         * the image border). */
        edge = x == 0 || y == 0 || x + 1 == g->width || y + 1 == g->height ||
               !bit(m, x - 1, y) || !bit(m, x + 1, y) || !bit(m, x, y - 1) ||
               !bit(m, x, y + 1);
      }
      uint8_t *p = row + 3 * (size_t)x;
      if (cls < 0) {
        p[0] = p[1] = p[2] = (uint8_t)v;
        continue;
      }
      uint8_t c[3];
      osseg_overlay_class_color((unsigned)cls, c);
      for (int k = 0; k < 3; k++)
        p[k] = edge ? c[k] : (uint8_t)((v * (256 - a) + c[k] * a + 128) >> 8);
    }
  }
}

int osseg_overlay_masks(const struct osseg_image *gray, const struct osseg_bitmask *const *masks,
                        size_t nmasks, float alpha, struct osseg_image *out) {
  if (!gray || !gray->data || gray->channels != 1 || !out || !(alpha >= 0 && alpha <= 1))
    return OSSEG_EINVAL;
  int rc = check_masks(gray, masks, nmasks);
  if (rc < 0) return rc;
  rc = osseg_image_init(out, gray->width, gray->height, 3, 8);
  if (rc < 0) return rc;
  draw_overlay(gray, masks, nmasks, alpha, out, 0);
  return 0;
}

/* Box-average downscale of an 8-bit RGB image by an integer factor into a
 * panel of pw x ph pixels at column ox of dst. A side shorter than the
 * factor still gives one pixel (pw or ph = 1) that averages the whole side,
 * so boxes in the last row or column may hold fewer pixels than f x f. */
static void shrink_into(const struct osseg_image *src, uint32_t f, uint32_t pw, uint32_t ph,
                        struct osseg_image *dst, uint32_t ox) {
  for (uint32_t y = 0; y < ph; y++) {
    uint64_t y0 = (uint64_t)y * f, y1 = y0 + f < src->height ? y0 + f : src->height;
    uint8_t *o = dst->data + (size_t)y * dst->stride + (size_t)ox * 3;
    for (uint32_t x = 0; x < pw; x++) {
      uint64_t x0 = (uint64_t)x * f, x1 = x0 + f < src->width ? x0 + f : src->width;
      uint64_t sum[3] = {0, 0, 0}, count = (y1 - y0) * (x1 - x0);
      for (uint64_t j = y0; j < y1; j++) {
        const uint8_t *r = src->data + (size_t)j * src->stride;
        for (uint64_t i = x0 * 3; i < x1 * 3; i += 3) {
          sum[0] += r[i];
          sum[1] += r[i + 1];
          sum[2] += r[i + 2];
        }
      }
      for (int k = 0; k < 3; k++) o[3 * x + k] = (uint8_t)((sum[k] + count / 2) / count);
    }
  }
}

int osseg_overlay_panels(const struct osseg_image *gray, const struct osseg_bitmask *const *gt,
                         const struct osseg_bitmask *const *pred, size_t nmasks, float alpha,
                         uint32_t shrink, struct osseg_image *out) {
  if (!gray || !gray->data || gray->channels != 1 || !out || shrink == 0 ||
      !(alpha >= 0 && alpha <= 1))
    return OSSEG_EINVAL;
  int rc;
  if ((gt && (rc = check_masks(gray, gt, nmasks)) < 0) ||
      (pred && (rc = check_masks(gray, pred, nmasks)) < 0))
    return rc;
  const struct osseg_bitmask *const *sets[3] = {NULL, gt, pred};
  int use[3] = {1, gt != NULL, pred != NULL};
  uint32_t npanels = (uint32_t)(use[0] + use[1] + use[2]);
  /* At least one pixel each way: a valid 3000x2 image shrunk 3 times is
   * 1000x1, not an error. */
  uint32_t pw = gray->width / shrink, ph = gray->height / shrink, gap = 8;
  if (pw == 0) pw = 1;
  if (ph == 0) ph = 1;
  uint64_t total_w = (uint64_t)pw * npanels + (uint64_t)gap * (npanels - 1);
  if (total_w > OSSEG_MAX_SIDE) return OSSEG_ERANGE;
  struct osseg_image full = {0};
  rc = osseg_image_init(out, (uint32_t)total_w, ph, 3, 8);
  if (rc == 0) rc = osseg_image_init(&full, gray->width, gray->height, 3, 8);
  uint32_t ox = 0;
  for (int k = 0; k < 3 && rc == 0; k++) {
    if (!use[k]) continue;
    draw_overlay(gray, sets[k], sets[k] ? nmasks : 0, alpha, &full, 0);
    shrink_into(&full, shrink, pw, ph, out, ox);
    ox += pw + gap;
  }
  osseg_image_free(&full);
  if (rc < 0) osseg_image_free(out);
  return rc;
}
