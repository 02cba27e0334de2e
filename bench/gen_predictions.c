/* gen_predictions: synthetic prediction CSVs for benchmarks and demos.
 *
 *   gen_predictions [--seed S] [--images N] [--models M] [--height H]
 *                   [--width W] OUT_DIR
 *
 * writes OUT_DIR/gt.csv and OUT_DIR/model1.csv .. modelM.csv: one row per
 * (image, class) for the 29 hand-bone classes in canonical order, RLE in
 * the competition format. Every image is a "hand": 19 finger bones laid
 * out along five rays, 8 carpals in a cluster, radius and ulna at the
 * bottom, each a rotated ellipse whose left and right borders wander with a
 * smooth per-bone noise. The models see the same bones with their own small
 * border noise and offsets, so they disagree only near the borders, like
 * real models of one architecture trained differently; now and then a
 * model also misses a small bone entirely. Everything follows from the
 * seed: the same arguments give byte-identical files.
 *
 * Image names look like "ID007_image1661320372752.png" (with an '_', which
 * broke the original ensemble script). At 2048x2048, 300 images, a model's
 * CSV is about 25 MB with about 260 runs per mask. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "osseg_base.h"

#define NCLASSES 29
#define MAX_MODELS 16

static const char *const class_names[NCLASSES] = {
    "finger-1",  "finger-2",  "finger-3",  "finger-4",  "finger-5",  "finger-6",
    "finger-7",  "finger-8",  "finger-9",  "finger-10", "finger-11", "finger-12",
    "finger-13", "finger-14", "finger-15", "finger-16", "finger-17", "finger-18",
    "finger-19", "Trapezium", "Trapezoid", "Capitate",  "Hamate",    "Scaphoid",
    "Lunate",    "Triquetrum", "Pisiform", "Radius",    "Ulna"};

/* splitmix64: small, deterministic, good enough for shapes. */
static uint64_t rng_state;
static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0); }
static double rng_range(double lo, double hi) { return lo + (hi - lo) * rng_unit(); }

/* A smooth border wobble: a few sines of the row coordinate. */
struct wobble {
  double amp[3], freq[3], phase[3];
};

static void wobble_init(struct wobble *w, double amplitude) {
  for (int i = 0; i < 3; i++) {
    w->amp[i] = amplitude * rng_range(0.3, 1.0) / (i + 1);
    w->freq[i] = rng_range(0.01, 0.06) * (i + 1);
    w->phase[i] = rng_range(0, 6.283185307);
  }
}

static double wobble_at(const struct wobble *w, double y) {
  double s = 0;
  for (int i = 0; i < 3; i++) s += w->amp[i] * sin(w->freq[i] * y + w->phase[i]);
  return s;
}

struct bone {
  double cx, cy, a, b, angle; /* semi-axes: a along the bone, b across */
  struct wobble left, right;
};

struct model_noise {
  struct wobble left, right;
  double dx, dy;
  int missing;
};

/* Base layout of a hand in unit coordinates (x right, y down). */
static void make_hand(struct bone bones[NCLASSES], double side) {
  double scale = rng_range(1.02, 1.20);
  double ox = rng_range(-0.03, 0.03), oy = rng_range(-0.02, 0.02);
  double tilt = rng_range(-0.12, 0.12);
  int idx = 0;
  /* Five rays from the wrist: thumb (3 bones), then four fingers (4). */
  static const double ray_angle[5] = {-0.95, -0.30, -0.05, 0.18, 0.42};
  static const double ray_x[5] = {0.36, 0.43, 0.50, 0.57, 0.63};
  for (int ray = 0; ray < 5; ray++) {
    int nb = ray == 0 ? 3 : 4;
    double ang = ray_angle[ray] + tilt;
    double x = ray_x[ray], y = 0.64;
    for (int k = 0; k < nb; k++) {
      /* Metacarpal longest, distal phalanx shortest. */
      double len = (ray == 0 ? 0.15 - 0.025 * k : 0.19 - 0.035 * k) * scale;
      double dxu = sin(ang), dyu = -cos(ang);
      struct bone *b = &bones[idx++];
      b->cx = x + dxu * len / 2;
      b->cy = y + dyu * len / 2;
      b->a = len / 2 * 0.95;
      b->b = (0.022 - 0.003 * k) * scale;
      b->angle = ang + 1.5707963;
      x += dxu * len;
      y += dyu * len;
    }
  }
  /* Carpals: two rows of four. */
  for (int k = 0; k < 8; k++) {
    struct bone *b = &bones[idx++];
    b->cx = 0.40 + 0.065 * (k % 4) + rng_range(-0.01, 0.01);
    b->cy = 0.69 + 0.06 * (k / 4) + rng_range(-0.01, 0.01);
    b->a = rng_range(0.04, 0.06) * scale;
    b->b = rng_range(0.022, 0.032) * scale;
    b->angle = rng_range(0, 3.14159);
  }
  /* Radius and ulna run off the bottom edge. */
  for (int k = 0; k < 2; k++) {
    struct bone *b = &bones[idx++];
    b->cx = k == 0 ? 0.44 : 0.60;
    b->cy = 0.97;
    b->a = (k == 0 ? 0.20 : 0.18) * scale;
    b->b = (k == 0 ? 0.045 : 0.032) * scale;
    b->angle = 1.5707963 + tilt * 0.5;
  }
  for (int i = 0; i < NCLASSES; i++) {
    bones[i].cx = (bones[i].cx + ox) * side;
    bones[i].cy = (bones[i].cy + oy) * side;
    bones[i].a *= side;
    bones[i].b *= side;
    wobble_init(&bones[i].left, side * 0.004);
    wobble_init(&bones[i].right, side * 0.004);
  }
}

struct text {
  char *p;
  size_t len, cap;
};

static void text_reserve(struct text *t, size_t extra) {
  if (t->len + extra <= t->cap) return;
  while (t->len + extra > t->cap) t->cap = t->cap ? t->cap * 2 : 1 << 20;
  t->p = realloc(t->p, t->cap);
  if (!t->p) {
    fprintf(stderr, "gen_predictions: out of memory\n");
    exit(1);
  }
}

/* Appends the RLE of one bone, as seen with the given noise (NULL = truth),
 * rows in order, one run per row. */
static void append_rle(struct text *t, const struct bone *b, const struct model_noise *m,
                       int height, int width) {
  double ca = cos(b->angle), sa = sin(b->angle);
  double ia2 = 1.0 / (b->a * b->a), ib2 = 1.0 / (b->b * b->b);
  double A = ca * ca * ia2 + sa * sa * ib2;
  double cx = b->cx + (m ? m->dx : 0), cy = b->cy + (m ? m->dy : 0);
  double reach = b->a > b->b ? b->a : b->b;
  int y0 = (int)floor(cy - reach) - 1, y1 = (int)ceil(cy + reach) + 1;
  if (y0 < 0) y0 = 0;
  if (y1 > height - 1) y1 = height - 1;
  int first = 1;
  for (int y = y0; y <= y1; y++) {
    double v = y - cy;
    double B = 2 * v * sa * ca * (ia2 - ib2);
    double C = v * v * (sa * sa * ia2 + ca * ca * ib2) - 1;
    double disc = B * B - 4 * A * C;
    if (disc <= 0) continue;
    double r = sqrt(disc);
    double xl = cx + (-B - r) / (2 * A) + wobble_at(&b->left, y);
    double xr = cx + (-B + r) / (2 * A) + wobble_at(&b->right, y);
    if (m) {
      xl += wobble_at(&m->left, y);
      xr += wobble_at(&m->right, y);
    }
    long l = lround(xl), rr = lround(xr);
    if (l < 0) l = 0;
    if (rr > width - 1) rr = width - 1;
    if (rr < l) continue;
    text_reserve(t, 32);
    t->len += (size_t)sprintf(t->p + t->len, first ? "%ld %ld" : " %ld %ld",
                              (long)y * width + l + 1, rr - l + 1);
    first = 0;
  }
}

static void write_file(const char *dir, const char *name, const struct text *t) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (osseg_output_write_file(path, t->p, t->len, &diag) != 0) {
    fprintf(stderr, "gen_predictions: %s\n", diag.message);
    exit(1);
  }
}

static long arg_long(const char *s, long lo, long hi, const char *what) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "gen_predictions: bad %s '%s'\n", what, s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  long seed = 1, images = 300, models = 3, height = 2048, width = 2048;
  const char *dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
      seed = arg_long(argv[++i], 0, 1L << 62, "seed");
    else if (strcmp(argv[i], "--images") == 0 && i + 1 < argc)
      images = arg_long(argv[++i], 1, 1000000, "image count");
    else if (strcmp(argv[i], "--models") == 0 && i + 1 < argc)
      models = arg_long(argv[++i], 1, MAX_MODELS, "model count");
    else if (strcmp(argv[i], "--height") == 0 && i + 1 < argc)
      height = arg_long(argv[++i], 64, 16384, "height");
    else if (strcmp(argv[i], "--width") == 0 && i + 1 < argc)
      width = arg_long(argv[++i], 64, 16384, "width");
    else if (argv[i][0] != '-' && !dir)
      dir = argv[i];
    else {
      fprintf(stderr,
              "usage: gen_predictions [--seed S] [--images N] [--models M] [--height H] "
              "[--width W] OUT_DIR\n");
      return 2;
    }
  }
  if (!dir) {
    fprintf(stderr, "gen_predictions: no OUT_DIR\n");
    return 2;
  }
  rng_state = (uint64_t)seed * 0x2545F4914F6CDD1Dull + 1;
  struct text gt = {0}, out[MAX_MODELS];
  memset(out, 0, sizeof out);
  static const char header[] = "image_name,class,rle\n";
  double side = height < width ? (double)height : (double)width;
  for (long m = -1; m < models; m++) {
    struct text *t = m < 0 ? &gt : &out[m];
    text_reserve(t, sizeof header);
    memcpy(t->p, header, sizeof header - 1);
    t->len = sizeof header - 1;
  }
  for (long img = 0; img < images; img++) {
    struct bone bones[NCLASSES];
    make_hand(bones, side);
    char name[64];
    snprintf(name, sizeof name, "ID%03ld_image%013lld.png", img / 2 + 1,
             1661319116107ll + (long long)img * 7919);
    for (int c = 0; c < NCLASSES; c++) {
      struct model_noise noise[MAX_MODELS];
      for (long m = 0; m < models; m++) {
        wobble_init(&noise[m].left, side * 0.0012);
        wobble_init(&noise[m].right, side * 0.0012);
        noise[m].dx = rng_range(-1.5, 1.5);
        noise[m].dy = rng_range(-1.5, 1.5);
        /* Small distal bones are the ones models lose. */
        noise[m].missing = rng_unit() < 0.01;
      }
      for (long m = -1; m < models; m++) {
        struct text *t = m < 0 ? &gt : &out[m];
        text_reserve(t, 128);
        t->len += (size_t)sprintf(t->p + t->len, "%s,%s,", name, class_names[c]);
        if (m < 0 || !noise[m].missing)
          append_rle(t, &bones[c], m < 0 ? NULL : &noise[m], (int)height, (int)width);
        text_reserve(t, 1);
        t->p[t->len++] = '\n';
      }
    }
  }
  write_file(dir, "gt.csv", &gt);
  free(gt.p);
  for (long m = 0; m < models; m++) {
    char name[32];
    snprintf(name, sizeof name, "model%ld.csv", m + 1);
    write_file(dir, name, &out[m]);
    free(out[m].p);
  }
  return 0;
}
