/* Dice scores from counts, masks and run lists. */
#include <assert.h>
#include <math.h>

#include "bitmask_internal.h"

/* The smoothing term of the competition's metric: it makes two empty masks
 * score exactly 1 and keeps the ratio finite. */
#define DICE_EPS 1e-4

double osseg_dice_from_counts(uint64_t intersection, uint64_t area_a,
                              uint64_t area_b) {
  return (2.0 * (double)intersection + DICE_EPS) /
         ((double)area_a + (double)area_b + DICE_EPS);
}

double osseg_dice_masks(const struct osseg_bitmask *a,
                        const struct osseg_bitmask *b) {
  /* Masks of different sizes are a programming error (the caller decoded
   * both for one image); without assertions the score is NaN, which no
   * report can mistake for a real value. */
  assert(a->height == b->height && a->width == b->width);
  if (a->height != b->height || a->width != b->width || a->nwords != b->nwords)
    return NAN;
  const struct osseg__bitmask_impl *im = osseg__bitmask_impl();
  return osseg_dice_from_counts(im->popcount_and(a->bits, b->bits, a->nwords),
                                im->popcount(a->bits, a->nwords),
                                im->popcount(b->bits, b->nwords));
}

double osseg_dice_runs(const struct osseg_run *a, size_t na,
                       const struct osseg_run *b, size_t nb) {
  return osseg_dice_from_counts(osseg_runs_intersection(a, na, b, nb),
                                osseg_runs_area(a, na), osseg_runs_area(b, nb));
}
