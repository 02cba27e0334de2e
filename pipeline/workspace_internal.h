/* The workspace's layout, shared by workspace.c and run.c. */
#ifndef OSSEG_WORKSPACE_INTERNAL_H
#define OSSEG_WORKSPACE_INTERNAL_H

#include "pipeline_internal.h"

/* A float buffer that only grows. */
struct osseg__fbuf {
  float *v;
  size_t cap; /* floats */
};

/* A bitmask whose bit buffer only grows: the mask header is set to the
 * current image size. */
struct osseg__mask_slot {
  struct osseg_bitmask mask;
  size_t cap_words;
};

struct osseg_workspace {
  uint64_t max_bytes; /* 0 = no cap */
  uint64_t bytes;     /* held now */
  /* One slot per model position of the pipeline being run. */
  struct osseg__fbuf input[OSSEG_MAX_MODELS];
  struct osseg__fbuf logits[OSSEG_MAX_MODELS];
  struct osseg_upsample_plan plans[OSSEG_MAX_MODELS]; /* reserved scratch */
  size_t plan_k[OSSEG_MAX_MODELS];                    /* models it reserves for */
  size_t plan_bytes[OSSEG_MAX_MODELS];
  /* masks[0..k-1] take each model's vote; masks[k] (or masks[0] for one
   * model) the result. */
  struct osseg__mask_slot masks[OSSEG_MAX_MODELS + 1];
  struct osseg_runs runs;  /* reserved for the worst case of the image */
  struct osseg_png_decoder *decoder; /* made on the first PNG */
  struct osseg_image image;          /* last decoded image: the decoder's */
  /* Ground truth drawn from a run's labels: a scratch mask of the image's
   * size (charged like the others), one run list per class (grown to what
   * the polygons need, small next to a mask: not charged) and the ground
   * truth pointing into them, valid when label_gt_valid is set. */
  struct osseg__mask_slot label_mask;
  struct osseg_runs label_runs[OSSEG_MAX_CLASSES];
  struct osseg_ground_truth label_gt;
  int label_gt_valid;
};

/* Makes the workspace fit pipeline p and an image of height x width:
 * OSSEG_ENOMEM, or OSSEG_ELIMIT past max_bytes (diag names the sizes). */
int osseg__workspace_fit(struct osseg_workspace *ws, const struct osseg_pipeline *p,
                         uint32_t height, uint32_t width, struct osseg_diag *diag);

/* Makes the label scratch mask height x width (same errors). */
int osseg__workspace_fit_labels(struct osseg_workspace *ws, uint32_t height, uint32_t width,
                                struct osseg_diag *diag);

#endif
