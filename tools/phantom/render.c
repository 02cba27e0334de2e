/* Ground truth and image of one phantom.
 *
 * The labels are the polygons rasterised by osseg_polygon_fill (the same
 * code that turns label JSON into masks everywhere else). The image is then
 * computed from those masks, never from the polygons directly:
 *
 *   attenuation = tissue * envelope thickness
 *               + sum over bones of  mu * density * texture *
 *                 (chord(d, r) - (1 - medulla) * chord(d - c, r - c))
 *
 * where d is the distance from a pixel to the outside of the bone's mask
 * (chamfer 3-4), r the bone's largest such distance, c the cortical
 * thickness and chord(d, r) the path length through a cylinder of radius r
 * at depth d from its edge: a bright cortical rim around a darker medulla,
 * and overlapping bones (carpals) add up. Then exposure with a heel-effect
 * gradient, 1 - exp(-A) detector response, gamma, blur, noise, 8 bits. */
#include <math.h>
#include <string.h>

#include "phantom.h"

/* Value noise: a lattice of hashed values, bilinearly interpolated. */
static double lattice(uint64_t seed, int64_t ix, int64_t iy) {
  uint64_t z = seed ^ ((uint64_t)ix * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)iy * 0xc2b2ae3d27d4eb4full);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) * (1.0 / 9007199254740992.0) * 2 - 1; /* [-1, 1) */
}

static double value_noise(uint64_t seed, double x, double y) {
  double fx = floor(x), fy = floor(y);
  int64_t ix = (int64_t)fx, iy = (int64_t)fy;
  double tx = x - fx, ty = y - fy;
  tx = tx * tx * (3 - 2 * tx);
  ty = ty * ty * (3 - 2 * ty);
  double a = lattice(seed, ix, iy), b = lattice(seed, ix + 1, iy);
  double c = lattice(seed, ix, iy + 1), d = lattice(seed, ix + 1, iy + 1);
  return (a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty;
}

static inline double chord(double d, double r) {
  if (d <= 0 || r <= 0) return 0;
  if (d >= r) return 2 * r;
  return 2 * sqrt(2 * r * d - d * d);
}

/* Soft tissue: union of capsule cylinders on a grid `step` times coarser,
 * bilinearly upsampled into att. */
static int add_tissue(const struct phantom_scene *sc, float *att) {
  uint32_t n = sc->size, step = 8;
  uint32_t g = n / step + 2;
  float *coarse = osseg__malloc((size_t)g * g * sizeof *coarse);
  if (!coarse) return OSSEG_ENOMEM;
  for (uint32_t gy = 0; gy < g; gy++) {
    for (uint32_t gx = 0; gx < g; gx++) {
      double px = (double)gx * step, py = (double)gy * step, best = 0;
      for (size_t i = 0; i < sc->ncaps; i++) {
        const struct phantom_capsule *c = &sc->caps[i];
        double vx = c->bx - c->ax, vy = c->by - c->ay, wx = px - c->ax, wy = py - c->ay;
        double len2 = vx * vx + vy * vy, t = len2 > 0 ? (wx * vx + wy * vy) / len2 : 0;
        if (t < 0) t = 0;
        if (t > 1) t = 1;
        double dx = wx - t * vx, dy = wy - t * vy, d2 = dx * dx + dy * dy;
        if (d2 < c->r * c->r) {
          double th = 2 * sqrt(c->r * c->r - d2);
          if (th > best) best = th;
        }
      }
      coarse[(size_t)gy * g + gx] = (float)(best * sc->tissue);
    }
  }
  for (uint32_t y = 0; y < n; y++) {
    uint32_t gy = y / step;
    float ty = (float)(y % step) / (float)step;
    const float *r0 = coarse + (size_t)gy * g, *r1 = r0 + g;
    float *row = att + (size_t)y * n;
    for (uint32_t x = 0; x < n; x++) {
      uint32_t gx = x / step;
      float tx = (float)(x % step) / (float)step;
      float top = r0[gx] + (r0[gx + 1] - r0[gx]) * tx;
      float bot = r1[gx] + (r1[gx + 1] - r1[gx]) * tx;
      row[x] = top + (bot - top) * ty;
    }
  }
  osseg__free(coarse);
  return 0;
}

static inline int get_bit(const struct osseg_bitmask *m, uint32_t x, uint32_t y) {
  uint64_t p = (uint64_t)y * m->width + x;
  return (int)((m->bits[p >> 6] >> (p & 63)) & 1);
}

/* Adds one bone's attenuation, computed from its mask. */
static int add_bone(const struct phantom_scene *sc, const struct phantom_bone *b,
                    const struct osseg_bitmask *m, uint64_t tex_seed, float *att) {
  if (b->n == 0) return 0;
  int32_t x0 = INT32_MAX, y0 = INT32_MAX, x1 = INT32_MIN, y1 = INT32_MIN;
  for (size_t i = 0; i < b->n; i++) {
    if (b->pts[i].x < x0) x0 = b->pts[i].x;
    if (b->pts[i].x > x1) x1 = b->pts[i].x;
    if (b->pts[i].y < y0) y0 = b->pts[i].y;
    if (b->pts[i].y > y1) y1 = b->pts[i].y;
  }
  /* A one-pixel frame of "outside" around the box. Pixels on the image
   * border count as next to the outside too, which is what a bone that
   * leaves the image looks like on a detector edge... except that it is
   * not: the forearm continues. Treat the frame as inside where the bone
   * touches the image border so the shaft does not get a fake rim. */
  uint32_t w = (uint32_t)(x1 - x0 + 3), h = (uint32_t)(y1 - y0 + 3);
  uint16_t *dist = osseg__malloc((size_t)w * h * sizeof *dist);
  if (!dist) return OSSEG_ENOMEM;
  const uint16_t big = 60000;
  for (uint32_t j = 0; j < h; j++) {
    for (uint32_t i = 0; i < w; i++) {
      int64_t x = (int64_t)x0 + i - 1, y = (int64_t)y0 + j - 1;
      int in;
      if (x < 0 || y < 0 || x >= (int64_t)m->width || y >= (int64_t)m->height) {
        /* Outside the image: continue the bone across the border. */
        int64_t cx = x < 0 ? 0 : x >= (int64_t)m->width ? m->width - 1 : x;
        int64_t cy = y < 0 ? 0 : y >= (int64_t)m->height ? m->height - 1 : y;
        in = get_bit(m, (uint32_t)cx, (uint32_t)cy);
      } else if (i == 0 || j == 0 || i == w - 1 || j == h - 1) {
        in = 0;
      } else {
        in = get_bit(m, (uint32_t)x, (uint32_t)y);
      }
      dist[(size_t)j * w + i] = in ? big : 0;
    }
  }
  /* Chamfer 3-4 distance to the nearest outside pixel. */
  for (uint32_t j = 1; j + 1 < h; j++)
    for (uint32_t i = 1; i + 1 < w; i++) {
      uint16_t *d = &dist[(size_t)j * w + i];
      if (!*d) continue;
      uint32_t v = *d;
      uint32_t c[4] = {d[-1] + 3u, d[-(ptrdiff_t)w] + 3u, d[-(ptrdiff_t)w - 1] + 4u,
                       d[-(ptrdiff_t)w + 1] + 4u};
      for (int k = 0; k < 4; k++)
        if (c[k] < v) v = c[k];
      *d = (uint16_t)(v > big ? big : v);
    }
  uint32_t maxd = 0;
  for (uint32_t j = h - 2; j >= 1; j--) {
    for (uint32_t i = w - 2; i >= 1; i--) {
      uint16_t *d = &dist[(size_t)j * w + i];
      if (!*d) continue;
      uint32_t v = *d;
      uint32_t c[4] = {d[1] + 3u, d[w] + 3u, d[w + 1] + 4u, d[w - 1] + 4u};
      for (int k = 0; k < 4; k++)
        if (c[k] < v) v = c[k];
      *d = (uint16_t)(v > big ? big : v);
      if (v < big && v > maxd) maxd = v;
    }
  }
  double r = maxd / 3.0, c = b->cortex * r;
  double mu = sc->bone_mu * b->density, med = 1 - b->medulla;
  double scale = 24.0 * sc->size / 2048.0; /* texture grain in pixels */
  for (uint32_t j = 1; j + 1 < h; j++) {
    int64_t y = (int64_t)y0 + j - 1;
    if (y < 0 || y >= (int64_t)m->height) continue;
    for (uint32_t i = 1; i + 1 < w; i++) {
      uint16_t dv = dist[(size_t)j * w + i];
      int64_t x = (int64_t)x0 + i - 1;
      if (!dv || dv >= big || x < 0 || x >= (int64_t)m->width) continue;
      double d = dv / 3.0 - 0.5;
      double tex = 1 + 0.12 * value_noise(tex_seed, x / scale, y / scale) +
                   0.05 * value_noise(tex_seed ^ 0x55, x / (scale * 0.3), y / (scale * 0.3));
      double a = mu * tex * (chord(d, r) - med * chord(d - c, r - c));
      att[(size_t)y * m->width + (size_t)x] += (float)a;
    }
  }
  osseg__free(dist);
  return 0;
}

/* One pass of a separable [1 2 1] / 4 filter, edges clamped. */
static int blur121(float *img, uint32_t n) {
  float *tmp = osseg__malloc((size_t)n * sizeof *tmp);
  if (!tmp) return OSSEG_ENOMEM;
  for (uint32_t y = 0; y < n; y++) {
    float *row = img + (size_t)y * n;
    memcpy(tmp, row, (size_t)n * sizeof *tmp);
    for (uint32_t x = 0; x < n; x++) {
      float l = tmp[x ? x - 1 : 0], r = tmp[x + 1 < n ? x + 1 : n - 1];
      row[x] = 0.25f * l + 0.5f * tmp[x] + 0.25f * r;
    }
  }
  /* Vertical: keep the previous original row in tmp, walk down. */
  float *prev = tmp;
  memcpy(prev, img, (size_t)n * sizeof *prev);
  for (uint32_t y = 0; y < n; y++) {
    float *row = img + (size_t)y * n;
    const float *next = img + (size_t)(y + 1 < n ? y + 1 : n - 1) * n;
    for (uint32_t x = 0; x < n; x++) {
      float cur = row[x];
      row[x] = 0.25f * prev[x] + 0.5f * cur + 0.25f * next[x];
      prev[x] = cur;
    }
  }
  osseg__free(tmp);
  return 0;
}

int phantom_render(const struct phantom_scene *sc, struct osseg_bitmask masks[PHANTOM_NCLASSES],
                   struct osseg_image *image) {
  uint32_t n = sc->size;
  int rc = 0;
  float *att = NULL;
  memset(masks, 0, PHANTOM_NCLASSES * sizeof *masks);
  memset(image, 0, sizeof *image);
  for (int i = 0; i < PHANTOM_NCLASSES && rc == 0; i++) {
    rc = osseg_bitmask_init(&masks[i], n, n);
    if (rc == 0 && sc->bones[i].n) rc = osseg_polygon_fill1(&masks[i], sc->bones[i].pts, sc->bones[i].n);
  }
  if (rc == 0) rc = osseg_image_init(image, n, n, 1, 8);
  if (rc == 0) {
    att = osseg__malloc((size_t)n * n * sizeof *att);
    if (!att) rc = OSSEG_ENOMEM;
  }
  if (rc == 0) rc = add_tissue(sc, att);
  for (int i = 0; i < PHANTOM_NCLASSES && rc == 0; i++)
    rc = add_bone(sc, &sc->bones[i], &masks[i], sc->texture_seed + (uint64_t)i, att);

  if (rc == 0) {
    double ch = cos(sc->heel_angle), sh = sin(sc->heel_angle);
    for (uint32_t y = 0; y < n; y++) {
      float *row = att + (size_t)y * n;
      double gy = ((double)y / n - 0.5) * sh;
      for (uint32_t x = 0; x < n; x++) {
        double e = sc->gain * (1 + sc->heel * (((double)x / n - 0.5) * ch + gy));
        double v = sc->background + (sc->white - sc->background) * (1 - exp(-e * row[x]));
        row[x] = (float)pow(v, sc->gamma);
      }
    }
    for (int i = 0; i < sc->blur_passes && rc == 0; i++) rc = blur121(att, n);
  }
  if (rc == 0) {
    struct phantom_rng rng;
    phantom_rng_seed(&rng, sc->texture_seed ^ 0x6e6f697365ull);
    for (size_t p = 0; p < (size_t)n * n; p += 2) {
      /* Two approximately normal samples from one draw: each the sum of
       * two 16-bit uniforms, scaled to unit variance (triangular). */
      uint64_t z = phantom_rng_next(&rng);
      for (int k = 0; k < 2 && p + (size_t)k < (size_t)n * n; k++) {
        double u = (double)((z >> (32 * k)) & 0xffff) + (double)((z >> (32 * k + 16)) & 0xffff);
        double g = (u / 65535.0 - 1.0) * 2.449489742783178; /* sqrt(6) */
        double v = att[p + (size_t)k];
        double sigma = sc->noise * (0.6 + 0.8 * v);
        double q = v * 255.0 + g * sigma;
        image->data[p + (size_t)k] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : lround(q));
      }
    }
  }
  osseg__free(att);
  if (rc < 0) {
    for (int i = 0; i < PHANTOM_NCLASSES; i++) osseg_bitmask_free(&masks[i]);
    osseg_image_free(image);
  }
  return rc;
}
