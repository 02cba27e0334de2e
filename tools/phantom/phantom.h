/* osseg-phantom internals: a synthetic hand radiograph generator.
 *
 * One phantom is made in three steps, all deterministic given the seed:
 *   hand.c    draws the pose and anatomy and builds the 29 bone polygons
 *             (integer vertices, clipped to the image), the soft-tissue
 *             envelope and the imaging parameters;
 *   render.c  rasterises each polygon with osseg_polygon_fill (the ground
 *             truth) and renders the image from those same masks: distance
 *             fields inside each bone give the X-ray path length, so the
 *             image and the labels cannot disagree;
 *   main.c    writes images/<name>.png, labels/<name>.json and gt.csv.
 */
#ifndef OSSEG_PHANTOM_H
#define OSSEG_PHANTOM_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_imaging.h"
#include "osseg_kernels.h"

#define PHANTOM_NCLASSES 29
#define PHANTOM_MAX_VERTS 96
#define PHANTOM_MAX_CAPSULES 40

extern const char *const phantom_class_names[PHANTOM_NCLASSES];

/* xoshiro256** seeded through splitmix64: our own generator so that the
 * output never depends on the C library's rand(). */
struct phantom_rng {
  uint64_t s[4];
};
void phantom_rng_seed(struct phantom_rng *r, uint64_t seed);
uint64_t phantom_rng_next(struct phantom_rng *r);
double phantom_rng_unit(struct phantom_rng *r);              /* [0, 1) */
double phantom_rng_range(struct phantom_rng *r, double lo, double hi);
double phantom_rng_normal(struct phantom_rng *r);            /* N(0, 1) */

struct phantom_bone {
  struct osseg_point pts[PHANTOM_MAX_VERTS + 8]; /* after clipping */
  size_t n;        /* 0: the bone lies outside the image */
  double density;  /* relative attenuation of cortical bone */
  double medulla;  /* medullary attenuation as a fraction of cortical */
  double cortex;   /* cortical thickness as a fraction of the half-width */
};

/* A soft-tissue element: a capsule around segment a-b with radius r (image
 * pixels). The envelope's thickness is the union (max) of the capsules'
 * cylinder profiles. */
struct phantom_capsule {
  double ax, ay, bx, by, r;
};

struct phantom_scene {
  uint32_t size;
  struct phantom_bone bones[PHANTOM_NCLASSES];
  struct phantom_capsule caps[PHANTOM_MAX_CAPSULES];
  size_t ncaps;
  /* imaging */
  double tissue;     /* soft-tissue attenuation per pixel of thickness */
  double bone_mu;    /* cortical attenuation per pixel of path */
  double gain;       /* exposure: scales total attenuation */
  double gamma;      /* display gamma */
  double background; /* background level in [0, 1] */
  double white;      /* level of infinite attenuation */
  double heel;       /* strength of the left-right exposure gradient */
  double heel_angle;
  double noise;      /* noise standard deviation, in 8-bit levels */
  int blur_passes;   /* passes of a [1 2 1]/4 filter */
  uint64_t texture_seed;
};

/* Builds the scene for one seed at size x size pixels. */
void phantom_build_scene(uint64_t seed, uint32_t size, struct phantom_scene *scene);

/* Rasterises the ground truth (masks[i] initialised here, size x size) and
 * renders the 8-bit gray image (initialised here). On error everything is
 * freed. */
int phantom_render(const struct phantom_scene *scene,
                   struct osseg_bitmask masks[PHANTOM_NCLASSES],
                   struct osseg_image *image);

#endif
