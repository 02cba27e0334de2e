/* The workspace's layout, shared by workspace.c and run.c. */
#ifndef OSSEG_WORKSPACE_INTERNAL_H
#define OSSEG_WORKSPACE_INTERNAL_H

#include "pipeline_internal.h"

struct osseg_workspace {
  size_t nmodels;
  float *input[OSSEG_MAX_MODELS];  /* NULL where the model shares an input */
  float *logits[OSSEG_MAX_MODELS];
  /* Image-size dependent; valid when height/width are non-zero. */
  uint32_t height, width;
  struct osseg_bitmask masks[OSSEG_MAX_MODELS + 1];
  struct osseg_upsample_plan plans[OSSEG_MAX_MODELS];
  struct osseg_runs runs;
  struct osseg_image image; /* last decoded image */
};

/* Makes the image-size dependent buffers fit height x width. */
int osseg__workspace_fit(struct osseg_workspace *ws, const struct osseg_pipeline *p,
                         uint32_t height, uint32_t width);

#endif
