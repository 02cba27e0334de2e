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

/* What post-processing one class needs of its own: the upsampling plans
 * (their reserved scratch is written by each call), the vote and result
 * masks, and the run list. A workspace has two, so that a helper thread
 * can post-process one class while the caller does another. */
struct osseg__lane {
  struct osseg_upsample_plan plans[OSSEG_MAX_MODELS]; /* reserved scratch */
  size_t plan_k[OSSEG_MAX_MODELS];                    /* models it reserves for */
  size_t plan_bytes[OSSEG_MAX_MODELS];
  /* masks[0..k-1] take each model's vote; masks[k] (or masks[0] for one
   * model) the result. */
  struct osseg__mask_slot masks[OSSEG_MAX_MODELS + 1];
  struct osseg_runs runs; /* reserved for the worst case of the image */
};

struct osseg__post_helper; /* post_helper.c */

struct osseg_workspace {
  uint64_t max_bytes; /* 0 = no cap */
  uint64_t bytes;     /* held now */
  /* One slot per model position of the pipeline being run. */
  struct osseg__fbuf input[OSSEG_MAX_MODELS];
  struct osseg__fbuf logits[OSSEG_MAX_MODELS];
  /* lane[0] is the caller's; lane[1] the helper's, fitted only for runs
   * that post-process on two threads. */
  struct osseg__lane lane[2];
  struct osseg__post_helper *helper; /* started on first use */
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
/* The same for one lane alone (osseg__workspace_fit fits lane 0). */
int osseg__workspace_fit_lane(struct osseg_workspace *ws, size_t lane,
                              const struct osseg_pipeline *p, uint32_t height, uint32_t width,
                              struct osseg_diag *diag);

/* Turns the logits of class c into its combined full-resolution mask and
 * its runs, in the given lane, then calls rq->on_class_work if set
 * (run.c). */
int osseg__class_post(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                      const struct osseg_run_request *rq, struct osseg__lane *lane, size_t c,
                      struct osseg_bitmask **mask);

/* The helper thread of a workspace (post_helper.c): start it (OSSEG_ENOMEM
 * or a thread error leaves nothing behind), post one class to it (lane 1),
 * wait for that class, stop (join) it. */
int osseg__post_helper_start(struct osseg_workspace *ws);
void osseg__post_helper_post(struct osseg__post_helper *h, const struct osseg_pipeline *p,
                             const struct osseg_run_request *rq, size_t c);
int osseg__post_helper_wait(struct osseg__post_helper *h, struct osseg_bitmask **mask);
void osseg__post_helper_stop(struct osseg_workspace *ws);

/* Makes the label scratch mask height x width (same errors). */
int osseg__workspace_fit_labels(struct osseg_workspace *ws, uint32_t height, uint32_t width,
                                struct osseg_diag *diag);

#endif
