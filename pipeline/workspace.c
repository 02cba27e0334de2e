/* Per-thread scratch memory of the pipeline. Model-dependent buffers are
 * sized at creation; image-dependent ones (masks, upsampling plans) when an
 * image of a new size arrives, and kept for the next image. */
#include <string.h>

#include "workspace_internal.h"

int osseg_workspace_create(struct osseg_workspace **out, const struct osseg_pipeline *p) {
  *out = NULL;
  struct osseg_workspace *ws = osseg__calloc(1, sizeof *ws);
  if (!ws) return OSSEG_ENOMEM;
  ws->nmodels = p->nmodels;
  int rc = 0;
  for (size_t i = 0; i < p->nmodels; i++) {
    const struct osseg__pmodel *pm = &p->models[i];
    if (pm->same_input_as < 0) {
      ws->input[i] = osseg__aligned_alloc(64, osseg_model_input_elems(pm->model) * sizeof(float));
      if (!ws->input[i]) goto nomem;
    }
    ws->logits[i] = osseg__aligned_alloc(64, osseg_model_output_elems(pm->model) * sizeof(float));
    if (!ws->logits[i]) goto nomem;
  }
  *out = ws;
  return 0;
nomem:
  rc = OSSEG_ENOMEM;
  osseg_workspace_free(ws);
  return rc;
}

static void release_image_buffers(struct osseg_workspace *ws) {
  for (size_t i = 0; i < OSSEG_MAX_MODELS + 1; i++) osseg_bitmask_free(&ws->masks[i]);
  for (size_t i = 0; i < OSSEG_MAX_MODELS; i++) osseg_upsample_plan_free(&ws->plans[i]);
  ws->height = ws->width = 0;
}

void osseg_workspace_free(struct osseg_workspace *ws) {
  if (!ws) return;
  for (size_t i = 0; i < OSSEG_MAX_MODELS; i++) {
    osseg__free(ws->input[i]);
    osseg__free(ws->logits[i]);
  }
  release_image_buffers(ws);
  osseg_runs_free(&ws->runs);
  osseg_image_free(&ws->image);
  osseg__free(ws);
}

int osseg__workspace_fit(struct osseg_workspace *ws, const struct osseg_pipeline *p,
                         uint32_t height, uint32_t width) {
  if (ws->height == height && ws->width == width) return 0;
  release_image_buffers(ws);
  /* masks[0..nmodels-1] take each model's vote; masks[nmodels] the result */
  int rc = 0;
  for (size_t i = 0; i <= p->nmodels && rc == 0; i++)
    rc = osseg_bitmask_init(&ws->masks[i], height, width);
  for (size_t i = 0; i < p->nmodels && rc == 0; i++)
    rc = osseg_upsample_plan_init(&ws->plans[i], p->models[i].out_height,
                                  p->models[i].out_width, height, width);
  if (rc) {
    release_image_buffers(ws);
    return rc;
  }
  ws->height = height;
  ws->width = width;
  return 0;
}

const struct osseg_image *osseg_workspace_image(const struct osseg_workspace *ws) {
  return ws->image.data ? &ws->image : NULL;
}
