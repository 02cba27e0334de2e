/* The anatomical hand model: pose and anatomy from the seed, then the 29
 * bone outlines as integer polygons in image coordinates.
 *
 * Design frame: a right hand seen postero-anteriorly, fingers up, thumb on
 * the left, units of pixels of a 2048 image at scale 1, origin near the
 * middle of the palm, y down. Every bone is placed in this frame, then the
 * pose transform (mirror for a left hand, scale, rotation, translation)
 * maps it into the image. Sizes follow adult hand proportions loosely; the
 * aim is a segmentation task with the real one's structure (long bones in
 * five rays, eight overlapping carpals, the distal forearm), not anatomical
 * accuracy. */
#include <math.h>
#include <string.h>

#include "phantom.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif
#define DEG (M_PI / 180.0)

const char *const phantom_class_names[PHANTOM_NCLASSES] = {
    "finger-1",  "finger-2",  "finger-3",  "finger-4",   "finger-5",  "finger-6",
    "finger-7",  "finger-8",  "finger-9",  "finger-10",  "finger-11", "finger-12",
    "finger-13", "finger-14", "finger-15", "finger-16",  "finger-17", "finger-18",
    "finger-19", "Trapezium", "Trapezoid", "Capitate",   "Hamate",    "Scaphoid",
    "Lunate",    "Triquetrum", "Pisiform", "Radius",     "Ulna"};

enum {
  C_TRAPEZIUM = 19,
  C_TRAPEZOID,
  C_CAPITATE,
  C_HAMATE,
  C_SCAPHOID,
  C_LUNATE,
  C_TRIQUETRUM,
  C_PISIFORM,
  C_RADIUS,
  C_ULNA
};

/* ---------------------------------------------------------------- rng --- */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void phantom_rng_seed(struct phantom_rng *r, uint64_t seed) {
  uint64_t x = seed ^ 0x6f737365672d7068ull; /* "osseg-ph" */
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t phantom_rng_next(struct phantom_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double phantom_rng_unit(struct phantom_rng *r) {
  return (double)(phantom_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

double phantom_rng_range(struct phantom_rng *r, double lo, double hi) {
  return lo + (hi - lo) * phantom_rng_unit(r);
}

double phantom_rng_normal(struct phantom_rng *r) {
  double u = 1.0 - phantom_rng_unit(r), v = phantom_rng_unit(r);
  return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* --------------------------------------------------------------- pose --- */

struct vec {
  double x, y;
};

struct pose {
  double scale, cosr, sinr, tx, ty;
  int mirror;
};

static struct vec to_image(const struct pose *p, struct vec v) {
  double x = p->mirror ? -v.x : v.x, y = v.y;
  x *= p->scale;
  y *= p->scale;
  return (struct vec){p->cosr * x - p->sinr * y + p->tx, p->sinr * x + p->cosr * y + p->ty};
}

/* ------------------------------------------------------------- outlines --- */

/* A polygon in the design frame being built. */
struct outline {
  struct vec v[PHANTOM_MAX_VERTS];
  size_t n;
};

static double sgnpow(double v, double e) { return v < 0 ? -pow(-v, e) : pow(v, e); }

/* A long bone (metacarpal or phalanx) from its base point b to its head
 * point h: a superellipse of exponent pexp whose half-width follows a
 * profile with a wide base, a narrow shaft and a rounded head, slightly
 * bowed. */
static void long_bone(struct outline *o, struct vec b, struct vec h, double wb, double ws,
                      double wh, double pexp, double bow, size_t n) {
  double dx = h.x - b.x, dy = h.y - b.y, len = sqrt(dx * dx + dy * dy);
  double ux = dx / len, uy = dy / len, nx = -uy, ny = ux;
  double cx = (b.x + h.x) / 2, cy = (b.y + h.y) / 2, a = len / 2;
  o->n = n;
  for (size_t i = 0; i < n; i++) {
    double phi = 2 * M_PI * (double)i / (double)n;
    double xi = sgnpow(cos(phi), 2 / pexp); /* -1 base .. 1 head */
    double s = sgnpow(sin(phi), 2 / pexp);
    double zb = (xi + 1) / 0.55, zh = (1 - xi) / 0.45;
    double w = ws + (wb - ws) * exp(-zb * zb) + (wh - ws) * exp(-zh * zh);
    double along = xi * a;
    double across = s * w + bow * len * (1 - xi * xi);
    o->v[i].x = cx + ux * along + nx * across;
    o->v[i].y = cy + uy * along + ny * across;
  }
}

/* A carpal: an ellipse with radii (ra, rb) rotated by ang, made boxier by a
 * superellipse exponent and irregular by a few random harmonics. */
static void blob(struct outline *o, struct phantom_rng *rng, struct vec c, double ra, double rb,
                 double ang, double pexp, size_t n) {
  double amp[3], ph[3];
  for (int k = 0; k < 3; k++) {
    amp[k] = phantom_rng_range(rng, -0.05, 0.05);
    ph[k] = phantom_rng_range(rng, 0, 2 * M_PI);
  }
  double ca = cos(ang), sa = sin(ang);
  o->n = n;
  for (size_t i = 0; i < n; i++) {
    double phi = 2 * M_PI * (double)i / (double)n;
    double rr = 1;
    for (int k = 0; k < 3; k++) rr += amp[k] * cos((k + 2) * phi + ph[k]);
    double x = ra * rr * sgnpow(cos(phi), 2 / pexp), y = rb * rr * sgnpow(sin(phi), 2 / pexp);
    o->v[i].x = c.x + ca * x - sa * y;
    o->v[i].y = c.y + sa * x + ca * y;
  }
}

/* A closed Catmull-Rom spline through k control points, n samples. */
static void spline(struct outline *o, const struct vec *cp, size_t k, size_t n) {
  o->n = n;
  for (size_t i = 0; i < n; i++) {
    double t = (double)i * (double)k / (double)n;
    size_t j = (size_t)t;
    double f = t - (double)j;
    struct vec p0 = cp[(j + k - 1) % k], p1 = cp[j % k], p2 = cp[(j + 1) % k],
               p3 = cp[(j + 2) % k];
    double f2 = f * f, f3 = f2 * f;
    double c0 = -0.5 * f3 + f2 - 0.5 * f, c1 = 1.5 * f3 - 2.5 * f2 + 1,
           c2 = -1.5 * f3 + 2 * f2 + 0.5 * f, c3 = 0.5 * f3 - 0.5 * f2;
    o->v[i].x = c0 * p0.x + c1 * p1.x + c2 * p2.x + c3 * p3.x;
    o->v[i].y = c0 * p0.y + c1 * p1.y + c2 * p2.y + c3 * p3.y;
  }
}

/* Maps an outline into the image, clips it to [0, size-1]^2
 * (Sutherland-Hodgman, one edge of the square at a time), rounds to
 * integers and drops repeated vertices. */
static void emit(struct phantom_bone *bone, const struct outline *o, const struct pose *p,
                 uint32_t size) {
  struct vec a[PHANTOM_MAX_VERTS + 8], b[PHANTOM_MAX_VERTS + 8];
  size_t na = o->n;
  for (size_t i = 0; i < na; i++) a[i] = to_image(p, o->v[i]);
  double lim = (double)size - 1;
  for (int side = 0; side < 4 && na > 0; side++) {
    size_t nb = 0;
    for (size_t i = 0; i < na; i++) {
      struct vec s = a[(i + na - 1) % na], e = a[i];
      double ds, de; /* signed distance inside the half-plane */
      switch (side) {
        case 0: ds = s.x; de = e.x; break;
        case 1: ds = lim - s.x; de = lim - e.x; break;
        case 2: ds = s.y; de = e.y; break;
        default: ds = lim - s.y; de = lim - e.y; break;
      }
      if ((ds >= 0) != (de >= 0) && nb < PHANTOM_MAX_VERTS + 8) {
        double t = ds / (ds - de);
        b[nb++] = (struct vec){s.x + t * (e.x - s.x), s.y + t * (e.y - s.y)};
      }
      if (de >= 0 && nb < PHANTOM_MAX_VERTS + 8) b[nb++] = e;
    }
    memcpy(a, b, nb * sizeof *a);
    na = nb;
  }
  size_t n = 0;
  for (size_t i = 0; i < na; i++) {
    int32_t x = (int32_t)lround(a[i].x), y = (int32_t)lround(a[i].y);
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    if (x > (int32_t)lim) x = (int32_t)lim;
    if (y > (int32_t)lim) y = (int32_t)lim;
    if (n > 0 && bone->pts[n - 1].x == x && bone->pts[n - 1].y == y) continue;
    bone->pts[n].x = x;
    bone->pts[n].y = y;
    n++;
  }
  while (n > 1 && bone->pts[n - 1].x == bone->pts[0].x && bone->pts[n - 1].y == bone->pts[0].y)
    n--;
  bone->n = n >= 3 ? n : 0;
}

static void add_capsule(struct phantom_scene *sc, const struct pose *p, struct vec a,
                        struct vec b, double r) {
  if (sc->ncaps >= PHANTOM_MAX_CAPSULES) return;
  struct vec ia = to_image(p, a), ib = to_image(p, b);
  sc->caps[sc->ncaps++] =
      (struct phantom_capsule){ia.x, ia.y, ib.x, ib.y, r * p->scale};
}

/* ------------------------------------------------------------- the hand --- */

struct ray_spec {
  double base_x, base_y; /* metacarpal base */
  double angle;          /* degrees from vertical, + toward the little finger */
  double spread;         /* extra finger angle per unit of spread */
  double len[4];         /* metacarpal, proximal, middle, distal (0: none) */
  double wscale;
};

/* Thumb, index, middle, ring, little. */
static const struct ray_spec rays[5] = {
    {-235, 320, -38, -14, {235, 150, 0, 105}, 1.05},
    {-110, 300, -7, -7, {390, 230, 140, 100}, 1.0},
    {-15, 285, 0, 0, {375, 250, 165, 105}, 1.0},
    {85, 300, 7, 6, {340, 235, 155, 100}, 0.95},
    {178, 322, 15, 14, {305, 185, 112, 90}, 0.85},
};

/* Half-widths (base, shaft, head) per bone kind. */
static const double widths[4][3] = {
    {42, 27, 39},     /* metacarpal */
    {36, 23, 30},     /* proximal phalanx */
    {30, 19, 25},     /* middle phalanx */
    {25, 15, 19},     /* distal phalanx */
};

/* finger-N class (0-based) for ray r, bone kind k (0 metacarpal .. 3 distal). */
static int finger_class(int r, int k) {
  if (r == 0) return k == 0 ? 2 : k == 1 ? 1 : 0; /* thumb: MC1 3, PP 2, DP 1 */
  int first = 3 + 4 * (r - 1);                    /* distal phalanx of the ray */
  return first + (3 - k);
}

static void set_material(struct phantom_bone *b, struct phantom_rng *rng, double density) {
  b->density = density * phantom_rng_range(rng, 0.9, 1.1);
  b->medulla = phantom_rng_range(rng, 0.25, 0.55);
  b->cortex = phantom_rng_range(rng, 0.15, 0.28);
}

void phantom_build_scene(uint64_t seed, uint32_t size, struct phantom_scene *sc) {
  struct phantom_rng rng;
  phantom_rng_seed(&rng, seed);
  memset(sc, 0, sizeof *sc);
  sc->size = size;

  /* Pose. The hand occupies ~75-90% of the image height. */
  struct pose p;
  double unit = (double)size / 2048.0;
  p.mirror = phantom_rng_unit(&rng) < 0.5;
  double hand_scale = phantom_rng_range(&rng, 0.88, 1.1);
  p.scale = 1.22 * hand_scale * unit;
  double rot = phantom_rng_range(&rng, -20, 20) * DEG;
  p.cosr = cos(rot);
  p.sinr = sin(rot);
  /* The design frame's palm centre (60, 250) goes near the image centre. */
  double cx = (p.mirror ? -60 : 60) * p.scale, cy = 250 * p.scale;
  p.tx = size / 2.0 - (p.cosr * cx - p.sinr * cy) + phantom_rng_range(&rng, -70, 70) * unit;
  p.ty = size / 2.0 + 60 * unit - (p.sinr * cx + p.cosr * cy) +
         phantom_rng_range(&rng, -60, 60) * unit;

  double spread = phantom_rng_range(&rng, 0.2, 1.4);
  double density = phantom_rng_range(&rng, 0.75, 1.25);
  double width = phantom_rng_range(&rng, 0.9, 1.12);
  double tissue_r = phantom_rng_range(&rng, 0.9, 1.2);

  /* Rays: metacarpal then phalanges, each bone continuing from the last
   * one's head across a joint gap, with a little flexion at each joint. */
  for (int r = 0; r < 5; r++) {
    const struct ray_spec *rs = &rays[r];
    double lscale = phantom_rng_range(&rng, 0.94, 1.06);
    double ang = (rs->angle + phantom_rng_range(&rng, -2.5, 2.5)) * DEG;
    if (r == 0) ang += (spread - 0.8) * 10 * DEG;
    else ang += (spread - 0.8) * rs->angle * 0.35 * DEG;
    struct vec base = {rs->base_x + phantom_rng_range(&rng, -6, 6),
                       rs->base_y + phantom_rng_range(&rng, -6, 6)};
    struct vec tip = base;
    for (int k = 0; k < 4; k++) {
      double len = rs->len[k];
      if (len == 0) continue; /* the thumb has no middle phalanx */
      len *= lscale * phantom_rng_range(&rng, 0.97, 1.03);
      if (k == 1) ang += rs->spread * spread * DEG;
      if (k >= 1) ang += phantom_rng_range(&rng, -4, 4) * DEG;
      struct vec head = {base.x + sin(ang) * len, base.y - cos(ang) * len};
      double ws = rs->wscale * width;
      double pexp = k == 0 ? 3.2 : k == 3 ? 2.4 : 2.8;
      struct outline o;
      long_bone(&o, base, head, widths[k][0] * ws, widths[k][1] * ws, widths[k][2] * ws,
                pexp, phantom_rng_range(&rng, -0.02, 0.02), k == 0 ? 64 : 48);
      struct phantom_bone *b = &sc->bones[finger_class(r, k)];
      emit(b, &o, &p, size);
      set_material(b, &rng, density);
      double gap = (k == 0 ? 16 : 13) * phantom_rng_range(&rng, 0.8, 1.2);
      base = (struct vec){head.x + sin(ang) * gap, head.y - cos(ang) * gap};
      tip = head;
    }
    /* Soft tissue: the finger, and the palm around the metacarpal. */
    struct vec mcb = {rs->base_x, rs->base_y};
    double fr = (r == 0 ? 58 : 52) * rs->wscale * width * tissue_r;
    add_capsule(sc, &p, mcb, tip, fr);
    if (r > 0) add_capsule(sc, &p, mcb, (struct vec){rs->base_x + sin(ang) * 200,
                                                        rs->base_y - cos(ang) * 320},
                           75 * tissue_r);
  }

  /* Carpals: two rows; the real overlaps (trapezium/trapezoid,
   * triquetrum/pisiform) come from the positions. */
  struct carpal {
    int cls;
    double x, y, ra, rb, ang, pexp;
  } carpals[8] = {
      {C_TRAPEZIUM, -195, 372, 56, 44, -30, 2.3},  {C_TRAPEZOID, -118, 358, 42, 40, 10, 2.6},
      {C_CAPITATE, -22, 372, 48, 72, 0, 2.4},      {C_HAMATE, 88, 382, 54, 64, 12, 2.4},
      {C_SCAPHOID, -150, 470, 76, 40, -48, 2.0},   {C_LUNATE, -32, 512, 52, 47, 0, 2.2},
      {C_TRIQUETRUM, 78, 478, 50, 42, 22, 2.2},    {C_PISIFORM, 104, 452, 32, 29, 0, 2.0},
  };
  for (int i = 0; i < 8; i++) {
    const struct carpal *c = &carpals[i];
    struct outline o;
    double s = width * phantom_rng_range(&rng, 0.93, 1.07);
    struct vec ctr = {c->x + phantom_rng_range(&rng, -6, 6), c->y + phantom_rng_range(&rng, -6, 6)};
    blob(&o, &rng, ctr, c->ra * s, c->rb * s, (c->ang + phantom_rng_range(&rng, -8, 8)) * DEG,
         c->pexp, 48);
    emit(&sc->bones[c->cls], &o, &p, size);
    set_material(&sc->bones[c->cls], &rng, density);
  }

  /* Distal radius and ulna, running out of the image at the bottom. */
  {
    double j[14];
    for (int i = 0; i < 14; i++) j[i] = phantom_rng_range(&rng, -7, 7);
    double w = width;
    struct vec rad[] = {
        {-228 * w + j[0], 548 + j[1]}, {-150 * w, 572 + j[2]}, {-60 * w, 588 + j[3]},
        {38 * w, 590 + j[4]},          {46 * w, 628},          {28 * w + j[5], 720},
        {12 * w, 860},                 {8 * w, 1250},          {-178 * w, 1250},
        {-188 * w, 860},               {-205 * w + j[6], 720}, {-232 * w, 620},
    };
    struct outline o;
    spline(&o, rad, sizeof rad / sizeof rad[0], 72);
    emit(&sc->bones[C_RADIUS], &o, &p, size);
    set_material(&sc->bones[C_RADIUS], &rng, density);
    struct vec uln[] = {
        {68 * w, 618 + j[7]},  {100 * w, 596 + j[8]}, {138 * w, 598 + j[9]},
        {160 * w, 572 + j[10]}, {174 * w, 602},       {168 * w, 700},
        {152 * w, 840},        {146 * w, 1250},       {74 * w, 1250},
        {78 * w, 840},         {70 * w + j[11], 700},
    };
    spline(&o, uln, sizeof uln / sizeof uln[0], 64);
    emit(&sc->bones[C_ULNA], &o, &p, size);
    set_material(&sc->bones[C_ULNA], &rng, density);
  }

  /* Soft tissue of the wrist, thenar eminence and forearm. */
  add_capsule(sc, &p, (struct vec){-20, 430}, (struct vec){-40, 1500}, 255 * tissue_r);
  add_capsule(sc, &p, (struct vec){-160, 430}, (struct vec){-300, 250}, 95 * tissue_r);
  add_capsule(sc, &p, (struct vec){120, 420}, (struct vec){190, 150}, 90 * tissue_r);
  add_capsule(sc, &p, (struct vec){-60, 300}, (struct vec){60, 300}, 170 * tissue_r);

  /* Imaging. */
  sc->tissue = phantom_rng_range(&rng, 0.0012, 0.0026) / unit;
  sc->bone_mu = phantom_rng_range(&rng, 0.012, 0.02) / unit;
  sc->gain = phantom_rng_range(&rng, 0.8, 1.25);
  sc->gamma = phantom_rng_range(&rng, 0.75, 1.35);
  sc->background = phantom_rng_range(&rng, 0.02, 0.16);
  sc->white = phantom_rng_range(&rng, 0.82, 0.98);
  sc->heel = phantom_rng_range(&rng, 0.0, 0.12);
  sc->heel_angle = phantom_rng_range(&rng, 0, 2 * M_PI);
  sc->noise = phantom_rng_range(&rng, 1.5, 7.0);
  sc->blur_passes = 1 + (int)(phantom_rng_unit(&rng) * 3);
  sc->texture_seed = phantom_rng_next(&rng);
}
