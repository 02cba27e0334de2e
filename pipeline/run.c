/* Running one image through the pipeline. */
#include <string.h>

#include "workspace_internal.h"

static double ms_since(uint64_t t0) { return (double)(osseg_now_ns() - t0) / 1e6; }

/* Feeds every model: preprocess (once per distinct input) and infer. */
static int infer_all(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                     const struct osseg_image *img, struct osseg_timings *t,
                     struct osseg_diag *diag) {
  for (size_t i = 0; i < p->nmodels; i++) {
    const struct osseg__pmodel *pm = &p->models[i];
    float *input = ws->input[pm->same_input_as < 0 ? i : (size_t)pm->same_input_as];
    if (pm->same_input_as < 0) {
      uint64_t t0 = osseg_now_ns();
      int rc = osseg_preprocess_gray(img, pm->input_size, &pm->norm, input);
      if (rc) return osseg__fail(diag, rc, "preprocessing for %s failed: %s", pm->path,
                                 osseg_strerror(rc));
      t->preprocess_ms += ms_since(t0);
    }
    uint64_t t0 = osseg_now_ns();
    int rc = osseg_model_run(pm->model, input, ws->logits[i], diag);
    if (rc) return rc;
    t->inference_ms += ms_since(t0);
  }
  return 0;
}

/* Turns the logits of class c into the combined full-resolution mask. */
static int class_mask(const struct osseg_pipeline *p, struct osseg_workspace *ws, size_t c,
                      struct osseg_bitmask **mask) {
  size_t k = p->nmodels;
  struct osseg_bitmask *result = &ws->masks[k];
  int rc;
  if (k == 1) {
    const struct osseg__pmodel *pm = &p->models[0];
    size_t plane = (size_t)pm->out_height * pm->out_width;
    rc = osseg_upsample_threshold(&ws->plans[0], ws->logits[0] + c * plane, pm->out_width,
                                  p->logit_threshold[c], result);
  } else if (p->vote == OSSEG_VOTE_SOFT) {
    const float *planes[OSSEG_MAX_MODELS];
    size_t plane = (size_t)p->models[0].out_height * p->models[0].out_width;
    for (size_t i = 0; i < k; i++) planes[i] = ws->logits[i] + c * plane;
    rc = osseg_upsample_soft_vote(&ws->plans[0], planes, k, p->models[0].out_width,
                                  p->prob_threshold[c], result);
  } else {
    const struct osseg_bitmask *votes[OSSEG_MAX_MODELS];
    rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
      const struct osseg__pmodel *pm = &p->models[i];
      size_t plane = (size_t)pm->out_height * pm->out_width;
      rc = osseg_upsample_threshold(&ws->plans[i], ws->logits[i] + c * plane, pm->out_width,
                                    p->logit_threshold[c], &ws->masks[i]);
      votes[i] = &ws->masks[i];
    }
    if (rc == 0) rc = osseg_vote_masks(votes, k, p->min_votes, result);
  }
  *mask = result;
  return rc;
}

/* Runs a decoded image; decode_ms is what decoding it took, if anything. */
static int run_decoded(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                       const struct osseg_image *img, osseg_class_cb cb, void *ctx,
                       struct osseg_timings *timings, double decode_ms,
                       struct osseg_diag *diag) {
  struct osseg_timings local;
  struct osseg_timings *t = timings ? timings : &local;
  memset(t, 0, sizeof *t);
  t->decode_ms = decode_ms;
  uint64_t start = osseg_now_ns();

  if (ws->nmodels != p->nmodels)
    return osseg__fail(diag, OSSEG_EINVAL, "workspace was made for another pipeline");
  if (!img || !img->data || img->channels != 1)
    return osseg__fail(diag, OSSEG_EINVAL, "the pipeline takes a decoded gray image");
  int rc = osseg__workspace_fit(ws, p, img->height, img->width);
  if (rc) return osseg__fail(diag, rc, "no memory for %ux%u masks", img->width, img->height);
  rc = infer_all(p, ws, img, t, diag);
  if (rc) return rc;

  uint64_t t0 = osseg_now_ns();
  for (size_t c = 0; c < p->nclasses; c++) {
    struct osseg_bitmask *mask;
    rc = class_mask(p, ws, c, &mask);
    if (rc == 0) rc = osseg_bitmask_to_runs(mask, &ws->runs);
    if (rc) return osseg__fail(diag, rc, "post-processing class %s failed: %s",
                               p->class_names[c], osseg_strerror(rc));
    if (cb) {
      rc = cb(ctx, c, p->class_names[c], mask, ws->runs.v, ws->runs.n);
      if (rc) return osseg__fail(diag, rc, "stopped at class %s", p->class_names[c]);
    }
  }
  t->postprocess_ms = ms_since(t0);
  t->total_ms = t->decode_ms + ms_since(start);
  return 0;
}

int osseg_pipeline_run_image(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                             const struct osseg_image *img, osseg_class_cb cb, void *ctx,
                             struct osseg_timings *timings, struct osseg_diag *diag) {
  return run_decoded(p, ws, img, cb, ctx, timings, 0.0, diag);
}

int osseg_pipeline_run_png(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                           const void *png, size_t png_size, osseg_class_cb cb, void *ctx,
                           struct osseg_timings *timings, struct osseg_diag *diag) {
  osseg_image_free(&ws->image);
  uint64_t t0 = osseg_now_ns();
  int rc = osseg_png_decode_mem(png, png_size, &p->png, &ws->image, diag);
  if (rc) return rc;
  return run_decoded(p, ws, &ws->image, cb, ctx, timings, ms_since(t0), diag);
}

int osseg_pipeline_run_file(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                            const char *path, osseg_class_cb cb, void *ctx,
                            struct osseg_timings *timings, struct osseg_diag *diag) {
  osseg_image_free(&ws->image);
  uint64_t t0 = osseg_now_ns();
  int rc = osseg_png_decode_file(path, &p->png, &ws->image, diag);
  if (rc) return rc;
  return run_decoded(p, ws, &ws->image, cb, ctx, timings, ms_since(t0), diag);
}
