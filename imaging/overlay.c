/* Colour overlays of class masks on a radiograph, for the demo and viewers. */
#include <string.h>

#include "imaging_internal.h"
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

static const uint8_t diff_palette[3][3] = {{0, 200, 0}, {255, 0, 0}, {0, 96, 255}};

void osseg_overlay_diff_color(enum osseg_overlay_diff_kind kind, uint8_t rgb[3]) {
  const uint8_t *c = diff_palette[(unsigned)kind < 3 ? kind : 0];
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

static inline int bit_or0(const struct osseg_bitmask *m, uint32_t x, uint32_t y) {
  return m ? bit(m, x, y) : 0;
}

/* The diff of masks against truth (see osseg_overlay_layout) into an RGB
 * buffer at column ox of out. */
static void draw_diff(const struct osseg_image *g, const struct osseg_bitmask *const *masks,
                      const struct osseg_bitmask *const *truth, size_t n, float alpha,
                      struct osseg_image *out, uint32_t ox) {
  int a = (int)(alpha * 256.0f + 0.5f);
  if (a < 0) a = 0;
  if (a > 256) a = 256;
  for (uint32_t y = 0; y < g->height; y++) {
    uint8_t *row = out->data + (size_t)y * out->stride + (size_t)ox * 3;
    for (uint32_t x = 0; x < g->width; x++) {
      int v = gray_at(g, x, y);
      int kind = -1;
      for (size_t i = 0; i < n && kind != OSSEG_OVERLAY_FN; i++) {
        int t = bit_or0(truth[i], x, y), p = masks ? bit_or0(masks[i], x, y) : 0;
        int k = t && p ? OSSEG_OVERLAY_TP : t ? OSSEG_OVERLAY_FN : p ? OSSEG_OVERLAY_FP : -1;
        if (k > kind) kind = k; /* FN > FP > TP, the enum's order */
      }
      uint8_t *px = row + 3 * (size_t)x;
      if (kind < 0) {
        px[0] = px[1] = px[2] = (uint8_t)v;
        continue;
      }
      const uint8_t *c = diff_palette[kind];
      for (int k = 0; k < 3; k++) px[k] = (uint8_t)((v * (256 - a) + c[k] * a + 128) >> 8);
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

static size_t text_len(const char *t) { return t ? strlen(t) : 0; }

static void fill_rect_rgb(struct osseg_image *img, uint32_t x, uint32_t y, uint32_t w, uint32_t h,
                          const uint8_t rgb[3]) {
  for (uint32_t j = y; j < y + h && j < img->height; j++)
    for (uint32_t i = x; i < x + w && i < img->width; i++)
      memcpy(img->data + (size_t)j * img->stride + 3 * (size_t)i, rgb, 3);
}

int osseg_overlay_compose(const struct osseg_image *gray, const struct osseg_overlay_layout *l,
                          struct osseg_image *out) {
  if (!gray || !gray->data || gray->channels != 1 || !out || !l || !l->panels ||
      l->npanels == 0 || l->npanels > 64 || l->nmasks > 64 || l->shrink == 0 || !(l->alpha >= 0 && l->alpha <= 1) ||
      (l->nlegend && !l->legend))
    return OSSEG_EINVAL;
  int rc;
  for (size_t k = 0; k < l->npanels; k++) {
    const struct osseg_overlay_panel *p = &l->panels[k];
    if ((p->masks && (rc = check_masks(gray, p->masks, l->nmasks)) < 0) ||
        (p->truth && (rc = check_masks(gray, p->truth, l->nmasks)) < 0))
      return rc;
  }
  uint64_t s = l->text_scale ? l->text_scale : 1;
  /* At least one pixel each way: a valid 3000x2 image shrunk 3 times is
   * 1000x1, not an error. */
  uint32_t pw = gray->width / l->shrink, ph = gray->height / l->shrink, gap = 8;
  if (pw == 0) pw = 1;
  if (ph == 0) ph = 1;
  uint64_t panels_w = (uint64_t)pw * l->npanels + (uint64_t)gap * (l->npanels - 1);
  int titled = 0;
  for (size_t k = 0; k < l->npanels; k++) titled |= l->panels[k].title != NULL;
  uint64_t title_h = titled ? OSSEG__FONT_CELL_H * s : 0;
  size_t longest = 0;
  for (size_t r = 0; r < l->nlegend; r++)
    if (text_len(l->legend[r].text) > longest) longest = text_len(l->legend[r].text);
  uint64_t col_w = (10 + (uint64_t)OSSEG__FONT_CELL_W * longest + 6) * s;
  uint64_t ncols = 1, nrows = 0, legend_h = 0;
  if (l->nlegend) {
    ncols = panels_w / col_w;
    if (ncols == 0) ncols = 1;
    if (ncols > l->nlegend) ncols = l->nlegend;
    nrows = (l->nlegend + ncols - 1) / ncols;
    ncols = (l->nlegend + nrows - 1) / nrows;
    legend_h = 4 * s + nrows * OSSEG__FONT_CELL_H * s;
  }
  uint64_t total_w = panels_w, total_h = title_h + ph + legend_h;
  if (l->nlegend && col_w > total_w) total_w = col_w;
  if (total_w > OSSEG_MAX_SIDE || total_h > OSSEG_MAX_SIDE) return OSSEG_ERANGE;
  struct osseg_image full = {0};
  rc = osseg_image_init(out, (uint32_t)total_w, (uint32_t)total_h, 3, 8);
  if (rc == 0) rc = osseg_image_init(&full, gray->width, gray->height, 3, 8);
  if (rc < 0) {
    osseg_image_free(out);
    return rc;
  }
  /* The panels go into a view of out below the title bar. */
  struct osseg_image view = *out;
  view.data = out->data + (size_t)title_h * out->stride;
  view.height = ph;
  static const uint8_t white[3] = {255, 255, 255};
  uint32_t ox = 0;
  for (size_t k = 0; k < l->npanels; k++) {
    const struct osseg_overlay_panel *p = &l->panels[k];
    if (p->truth)
      draw_diff(gray, p->masks, p->truth, l->nmasks, l->alpha, &full, 0);
    else
      draw_overlay(gray, p->masks, p->masks ? l->nmasks : 0, l->alpha, &full, 0);
    shrink_into(&full, l->shrink, pw, ph, &view, ox);
    if (p->title)
      osseg__font_draw(out, (int32_t)(ox + s), (int32_t)s, ox + pw, p->title, (uint32_t)s, white);
    ox += pw + gap;
  }
  uint64_t legend_y = title_h + ph + 4 * s;
  for (size_t r = 0; r < l->nlegend; r++) {
    const struct osseg_overlay_legend_row *row = &l->legend[r];
    uint64_t cx = (r / nrows) * col_w, ry = legend_y + (r % nrows) * OSSEG__FONT_CELL_H * s;
    if (row->swatch) fill_rect_rgb(out, (uint32_t)(cx + s), (uint32_t)(ry + s), (uint32_t)(7 * s),
                                   (uint32_t)(7 * s), row->rgb);
    if (row->text)
      osseg__font_draw(out, (int32_t)(cx + 10 * s), (int32_t)(ry + s), out->width, row->text,
                       (uint32_t)s, white);
  }
  osseg_image_free(&full);
  return 0;
}

int osseg_overlay_panels(const struct osseg_image *gray, const struct osseg_bitmask *const *gt,
                         const struct osseg_bitmask *const *pred, size_t nmasks, float alpha,
                         uint32_t shrink, struct osseg_image *out) {
  struct osseg_overlay_panel panels[3] = {{0}};
  size_t n = 1;
  if (gt) panels[n++].masks = gt;
  if (pred) panels[n++].masks = pred;
  struct osseg_overlay_layout l = {.panels = panels, .npanels = n, .nmasks = nmasks,
                                   .alpha = alpha, .shrink = shrink};
  return osseg_overlay_compose(gray, &l, out);
}
