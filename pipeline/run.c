/* Running one image through the pipeline. */
#include <string.h>

#include "workspace_internal.h"

static double ms_since(uint64_t t0) { return (double)(osseg_now_ns() - t0) / 1e6; }

/* OSSEG_ECANCELED / OSSEG_ETIMEDOUT when the request was interrupted. */
static int interrupted(const struct osseg_run_request *rq, struct osseg_diag *diag,
                       const char *where) {
  if (rq->cancel && atomic_load_explicit(rq->cancel, memory_order_relaxed))
    return osseg__fail(diag, OSSEG_ECANCELED, "canceled %s", where);
  if (rq->deadline_ns && osseg_now_ns() >= rq->deadline_ns)
    return osseg__fail(diag, OSSEG_ETIMEDOUT, "deadline passed %s", where);
  return 0;
}

/* Feeds every model: preprocess (once per distinct input) and infer. */
static int infer_all(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                     const struct osseg_image *img, const struct osseg_run_request *rq,
                     struct osseg_timings *t, struct osseg_diag *diag) {
  for (size_t i = 0; i < p->nmodels; i++) {
    const struct osseg_loaded_model *m = p->models[i];
    int rc = interrupted(rq, diag, "before a model ran");
    if (rc) return rc;
    size_t src = p->same_input_as[i] < 0 ? i : (size_t)p->same_input_as[i];
    float *input = ws->input[src].v;
    if (p->same_input_as[i] < 0) {
      uint64_t t0 = osseg_now_ns();
      rc = osseg_preprocess_gray(img, m->input_size, &m->norm, input);
      if (rc) return osseg__fail(diag, rc, "preprocessing for model %s failed: %s", m->name,
                                 osseg_strerror(rc));
      t->preprocess_ms += ms_since(t0);
    }
    uint64_t t0 = osseg_now_ns();
    struct osseg_run_control ctl = {rq->cancel, rq->deadline_ns};
    rc = osseg_model_run_ctl(m->model, input, ws->logits[i].v, &ctl, diag);
    if (rc) return rc;
    /* One clock reading, so the per-model times add up to the total. */
    double ms = ms_since(t0);
    t->model_ms[i] = ms;
    t->inference_ms += ms;
  }
  return 0;
}

int osseg__class_post(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                      const struct osseg_run_request *rq, struct osseg__lane *ln, size_t c,
                      struct osseg_bitmask **mask) {
  size_t k = p->nmodels;
  int rc;
  if (k == 1) {
    const struct osseg_loaded_model *m = p->models[0];
    size_t plane = (size_t)m->out_height * m->out_width;
    *mask = &ln->masks[0].mask;
    rc = osseg_upsample_threshold(&ln->plans[0], ws->logits[0].v + c * plane, m->out_width,
                                  p->logit_threshold[0][c], *mask);
  } else if (p->vote == OSSEG_VOTE_SOFT) {
    const float *planes[OSSEG_MAX_MODELS];
    size_t plane = (size_t)p->models[0]->out_height * p->models[0]->out_width;
    for (size_t i = 0; i < k; i++) planes[i] = ws->logits[i].v + c * plane;
    *mask = &ln->masks[0].mask;
    rc = osseg_upsample_soft_vote(&ln->plans[0], planes, k, p->models[0]->out_width,
                                  p->prob_threshold[c], *mask);
  } else {
    const struct osseg_bitmask *votes[OSSEG_MAX_MODELS];
    rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
      const struct osseg_loaded_model *m = p->models[i];
      size_t plane = (size_t)m->out_height * m->out_width;
      rc = osseg_upsample_threshold(&ln->plans[i], ws->logits[i].v + c * plane, m->out_width,
                                    p->logit_threshold[i][c], &ln->masks[i].mask);
      votes[i] = &ln->masks[i].mask;
    }
    *mask = &ln->masks[k].mask;
    if (rc == 0) rc = osseg_vote_masks(votes, k, p->min_votes, *mask);
  }
  if (rc == 0) rc = osseg_bitmask_to_runs(*mask, &ln->runs);
  if (rc == 0 && rq->on_class_work)
    rc = rq->on_class_work(rq->ctx, c, osseg_pipeline_class_name(p, c), *mask, ln->runs.v,
                           ln->runs.n);
  return rc;
}

/* Post-processing on two threads pays when the other core is free: when
 * asked for and the engine has no inference queued or running (another
 * thread's model would compete for the cores), and when the helper's lane
 * and thread can be had (else the run goes on alone, with the same bits). */
static int use_helper(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                      const struct osseg_run_request *rq, uint32_t height, uint32_t width) {
  if (!rq->parallel_postprocess || osseg_engine_inference_pending() > 0) return 0;
  struct osseg_diag ignored;
  osseg_diag_clear(&ignored);
  if (osseg__workspace_fit_lane(ws, 1, p, height, width, &ignored) != 0) return 0;
  return osseg__post_helper_start(ws) == 0;
}

/* Ground truth runs must lie inside the image, or Dice would be wrong
 * without anyone noticing. */
static int check_gt(const struct osseg_pipeline *p, const struct osseg_ground_truth *gt,
                    uint64_t npixels, struct osseg_diag *diag) {
  for (size_t c = 0; c < p->nclasses; c++) {
    if (!p->selected[c] || !gt->has[c] || gt->nruns[c] == 0) continue;
    if (!gt->runs[c])
      return osseg__fail(diag, OSSEG_EINVAL, "ground truth of class %s has no runs",
                         osseg_pipeline_class_name(p, c));
    const struct osseg_run *last = &gt->runs[c][gt->nruns[c] - 1];
    if ((uint64_t)last->start + last->len > npixels)
      return osseg__fail(diag, OSSEG_ERANGE,
                         "ground truth of class %s runs past the image's %llu pixels",
                         osseg_pipeline_class_name(p, c), (unsigned long long)npixels);
  }
  return 0;
}

/* Label polygons drawn at the image's size, as the run's ground truth. */
static int label_truth(const struct osseg_run_request *rq, struct osseg_workspace *ws,
                       struct osseg_diag *diag) {
  int rc = osseg_labels_rasterize(rq->labels, &ws->label_mask.mask, ws->label_runs,
                                  &ws->label_gt, diag);
  ws->label_gt_valid = rc == 0;
  return rc;
}

/* Runs a decoded image; decode_ms is what decoding it took, if anything. */
static int run_decoded(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                       const struct osseg_image *img, const struct osseg_run_request *rq,
                       double decode_ms, struct osseg_diag *diag) {
  static const struct osseg_run_request none;
  if (!rq) rq = &none;
  struct osseg_timings local;
  struct osseg_timings *t = rq->timings ? rq->timings : &local;
  memset(t, 0, sizeof *t);
  t->decode_ms = decode_ms;
  uint64_t start = osseg_now_ns();

  ws->label_gt_valid = 0;
  if (!img || !img->data || img->channels != 1 || img->width == 0 || img->height == 0)
    return osseg__fail(diag, OSSEG_EINVAL, "the pipeline takes a decoded gray image");
  if (rq->labels && rq->gt)
    return osseg__fail(diag, OSSEG_EINVAL, "ground truth: give runs or labels, not both");
  if (rq->labels && osseg_labels_class_count(rq->labels) != p->nclasses)
    return osseg__fail(diag, OSSEG_EINVAL,
                       "ground truth: labels parsed against %zu classes, the models have %zu",
                       osseg_labels_class_count(rq->labels), p->nclasses);
  uint64_t npixels = (uint64_t)img->height * img->width;
  int rc = rq->gt ? check_gt(p, rq->gt, npixels, diag) : 0;
  if (rc == 0) rc = osseg__workspace_fit(ws, p, img->height, img->width, diag);
  if (rc == 0 && rq->labels) rc = osseg__workspace_fit_labels(ws, img->height, img->width, diag);
  if (rc == 0) rc = infer_all(p, ws, img, rq, t, diag);
  if (rc) return rc;

  uint64_t t0 = osseg_now_ns();
  /* Drawn after inference, so that a run interrupted there costs nothing. */
  const struct osseg_ground_truth *gt = rq->gt;
  if (rq->labels) {
    rc = label_truth(rq, ws, diag);
    if (rc) return rc;
    gt = &ws->label_gt;
  }
  struct osseg_dice_report dice = {0};
  double sum = 0;
  size_t order[OSSEG_MAX_CLASSES], n = 0;
  for (size_t c = 0; c < p->nclasses; c++)
    if (p->selected[c]) order[n++] = c;
  int two = use_helper(p, ws, rq, img->height, img->width);
  /* With the helper, classes go in pairs: it does the second of a pair
   * while this thread does the first, then this thread calls back for
   * both, in class order. */
  for (size_t i = 0; i < n; i += two ? 2 : 1) {
    rc = interrupted(rq, diag, "between classes");
    if (rc) return rc;
    size_t npair = two && i + 1 < n ? 2 : 1;
    if (npair == 2) osseg__post_helper_post(ws->helper, p, rq, order[i + 1]);
    for (size_t j = 0; j < npair; j++) {
      size_t c = order[i + j];
      const char *name = osseg_pipeline_class_name(p, c);
      struct osseg__lane *ln = &ws->lane[j];
      struct osseg_bitmask *mask = NULL;
      /* The helper's class is waited for even after a failure here: it
       * uses the workspace until it is done. */
      int prc = j == 0 ? osseg__class_post(p, ws, rq, ln, c, &mask)
                       : osseg__post_helper_wait(ws->helper, &mask);
      if (rc == 0 && prc)
        rc = osseg__fail(diag, prc, "post-processing class %s failed: %s", name,
                         osseg_strerror(prc));
      if (rc) continue;
      if (gt && gt->has[c]) {
        double d = osseg_dice_runs(ln->runs.v, ln->runs.n, gt->runs[c], gt->nruns[c]);
        dice.cls[dice.n] = c;
        dice.dice[dice.n++] = d;
        sum += d;
      }
      if (rq->on_class) {
        int crc = rq->on_class(rq->ctx, c, name, mask, ln->runs.v, ln->runs.n);
        if (crc) rc = osseg__fail(diag, crc, "stopped at class %s", name);
      }
    }
    if (rc) return rc;
  }
  if (gt) {
    /* Summed in class order, as `osseg dice` averages its columns. */
    dice.mean = dice.n ? sum / (double)dice.n : 0.0;
    if (rq->on_dice) {
      rc = rq->on_dice(rq->ctx, &dice);
      if (rc) return osseg__fail(diag, rc, "stopped at the Dice report");
    }
  }
  t->postprocess_ms = ms_since(t0);
  t->total_ms = t->decode_ms + ms_since(start);
  return 0;
}

int osseg_pipeline_run_image(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                             const struct osseg_image *img, const struct osseg_run_request *rq,
                             struct osseg_diag *diag) {
  return run_decoded(p, ws, img, rq, 0.0, diag);
}

/* Decodes into the workspace's decoder (made on first use), which keeps
 * its buffers: after the first image of a size, decoding a plain gray PNG
 * allocates nothing. */
static int decode(const struct osseg_pipeline *p, struct osseg_workspace *ws, const void *png,
                  size_t png_size, const char *path, double *ms, struct osseg_diag *diag) {
  memset(&ws->image, 0, sizeof ws->image);
  if (!ws->decoder) {
    int rc = osseg_png_decoder_create(&ws->decoder);
    if (rc) return osseg__fail(diag, rc, "no memory for a PNG decoder");
  }
  uint64_t t0 = osseg_now_ns();
  int rc = path ? osseg_png_decoder_decode_file(ws->decoder, path, &p->png, &ws->image, diag)
                : osseg_png_decoder_decode_mem(ws->decoder, png, png_size, &p->png, &ws->image,
                                               diag);
  *ms = ms_since(t0);
  return rc;
}

int osseg_pipeline_run_png(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                           const void *png, size_t png_size, const struct osseg_run_request *rq,
                           struct osseg_diag *diag) {
  double ms;
  int rc = decode(p, ws, png, png_size, NULL, &ms, diag);
  return rc ? rc : run_decoded(p, ws, &ws->image, rq, ms, diag);
}

int osseg_pipeline_run_file(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                            const char *path, const struct osseg_run_request *rq,
                            struct osseg_diag *diag) {
  double ms;
  int rc = decode(p, ws, NULL, 0, path, &ms, diag);
  return rc ? rc : run_decoded(p, ws, &ws->image, rq, ms, diag);
}
