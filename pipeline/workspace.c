/* Per-thread scratch memory of the pipeline. It serves any pipeline: each
 * buffer grows to the largest model or image it has seen and is kept, so
 * after the first image of a size a run allocates nothing. The upsampling
 * plans depend on the exact geometry and are rebuilt when it changes. */
#include <string.h>

#include "workspace_internal.h"

int osseg_workspace_create(struct osseg_workspace **out, uint64_t max_bytes) {
  *out = osseg__calloc(1, sizeof **out);
  if (!*out) return OSSEG_ENOMEM;
  (*out)->max_bytes = max_bytes;
  return 0;
}

void osseg_workspace_free(struct osseg_workspace *ws) {
  if (!ws) return;
  osseg__post_helper_stop(ws);
  for (size_t i = 0; i < OSSEG_MAX_MODELS; i++) {
    osseg__free(ws->input[i].v);
    osseg__free(ws->logits[i].v);
  }
  for (size_t l = 0; l < 2; l++) {
    struct osseg__lane *ln = &ws->lane[l];
    for (size_t i = 0; i < OSSEG_MAX_MODELS; i++) osseg_upsample_plan_free(&ln->plans[i]);
    for (size_t i = 0; i < OSSEG_MAX_MODELS + 1; i++) osseg__free(ln->masks[i].mask.bits);
    osseg_runs_free(&ln->runs);
  }
  osseg__free(ws->label_mask.mask.bits);
  for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++) osseg_runs_free(&ws->label_runs[c]);
  osseg_png_decoder_free(ws->decoder);
  osseg__free(ws);
}

uint64_t osseg_workspace_bytes(const struct osseg_workspace *ws) { return ws->bytes; }

const struct osseg_image *osseg_workspace_image(const struct osseg_workspace *ws) {
  return ws->image.data ? &ws->image : NULL;
}

const struct osseg_ground_truth *osseg_workspace_ground_truth(const struct osseg_workspace *ws) {
  return ws->label_gt_valid ? &ws->label_gt : NULL;
}

/* Accounts for growing from `had` to `need` bytes against the cap. */
static int charge(struct osseg_workspace *ws, size_t had, size_t need, const char *what,
                  struct osseg_diag *diag) {
  uint64_t total = ws->bytes - had + need;
  if (ws->max_bytes && total > ws->max_bytes)
    return osseg__fail(diag, OSSEG_ELIMIT,
                       "the workspace would need %llu bytes (for %s), above its limit of %llu",
                       (unsigned long long)total, what, (unsigned long long)ws->max_bytes);
  return 0;
}

static int fit_floats(struct osseg_workspace *ws, struct osseg__fbuf *b, size_t n,
                      const char *what, struct osseg_diag *diag) {
  if (n <= b->cap) return 0;
  size_t bytes;
  if (osseg__mul_size(n, sizeof(float), &bytes))
    return osseg__fail(diag, OSSEG_EOVERFLOW, "%s: size overflows", what);
  int rc = charge(ws, b->cap * sizeof(float), bytes, what, diag);
  if (rc) return rc;
  float *v = osseg__aligned_alloc(64, bytes);
  if (!v) return osseg__fail(diag, OSSEG_ENOMEM, "no memory for %s (%zu bytes)", what, bytes);
  osseg__free(b->v);
  ws->bytes = ws->bytes - b->cap * sizeof(float) + bytes;
  b->v = v;
  b->cap = n;
  return 0;
}

/* Sets the mask to height x width, growing its buffer if needed. The bits
 * are cleared when the size changes (the kernels replace them anyway; this
 * keeps the padding of the last word defined). */
static int fit_mask(struct osseg_workspace *ws, struct osseg__mask_slot *s, uint32_t height,
                    uint32_t width, struct osseg_diag *diag) {
  struct osseg_bitmask *m = &s->mask;
  if (m->bits && m->height == height && m->width == width) return 0;
  size_t nwords = (size_t)(((uint64_t)height * width + 63) / 64);
  size_t alloc_words = (nwords + 7) & ~(size_t)7; /* whole 64-byte lines */
  if (alloc_words > s->cap_words) {
    size_t bytes = alloc_words * sizeof(uint64_t);
    int rc = charge(ws, s->cap_words * sizeof(uint64_t), bytes, "masks", diag);
    if (rc) return rc;
    uint64_t *bits = osseg__aligned_alloc(64, bytes);
    if (!bits) return osseg__fail(diag, OSSEG_ENOMEM, "no memory for %ux%u masks", width, height);
    osseg__free(m->bits);
    ws->bytes = ws->bytes - s->cap_words * sizeof(uint64_t) + bytes;
    m->bits = bits;
    s->cap_words = alloc_words;
  }
  memset(m->bits, 0, s->cap_words * sizeof(uint64_t));
  m->height = height;
  m->width = width;
  m->nwords = nwords;
  return 0;
}

/* Plan i for in_h x in_w logits upsampled to the image, with scratch for k
 * models. */
static int fit_plan(struct osseg_workspace *ws, struct osseg__lane *ln, size_t i,
                    uint32_t in_h, uint32_t in_w, uint32_t height, uint32_t width, size_t k,
                    struct osseg_diag *diag) {
  struct osseg_upsample_plan *pl = &ln->plans[i];
  if (pl->impl_ && pl->in_height == in_h && pl->in_width == in_w && pl->out_height == height &&
      pl->out_width == width && ln->plan_k[i] >= k)
    return 0;
  /* Tables (~24 bytes per output row and column) plus the scratch of k
   * models (two float rows of the image width each, and bit rows): an
   * estimate for the cap, exact enough to bound memory. */
  size_t bytes = 24 * ((size_t)height + width) + 8 * (size_t)k * width + 64 * (size_t)in_w;
  int rc = charge(ws, ln->plan_bytes[i], bytes, "upsampling tables", diag);
  if (rc) return rc;
  osseg_upsample_plan_free(pl);
  ws->bytes -= ln->plan_bytes[i];
  ln->plan_bytes[i] = 0;
  ln->plan_k[i] = 0;
  rc = osseg_upsample_plan_init(pl, in_h, in_w, height, width);
  if (rc == 0) rc = osseg_upsample_plan_reserve(pl, k);
  if (rc) {
    osseg_upsample_plan_free(pl);
    return osseg__fail(diag, rc, "upsampling %ux%u logits to %ux%u: %s", in_w, in_h, width,
                       height, osseg_strerror(rc));
  }
  ln->plan_bytes[i] = bytes;
  ln->plan_k[i] = k;
  ws->bytes += bytes;
  return 0;
}

/* Plans, masks and the run list of one lane for pipeline p on an image of
 * height x width. */
static int fit_lane(struct osseg_workspace *ws, struct osseg__lane *ln,
                    const struct osseg_pipeline *p, uint32_t height, uint32_t width,
                    struct osseg_diag *diag) {
  size_t k = p->nmodels;
  int rc = 0;
  /* Soft voting interpolates all models through plan 0. */
  size_t nplans = p->vote == OSSEG_VOTE_SOFT ? 1 : k;
  for (size_t i = 0; i < nplans && rc == 0; i++)
    rc = fit_plan(ws, ln, i, p->models[i]->out_height, p->models[i]->out_width, height, width,
                  p->vote == OSSEG_VOTE_SOFT ? k : 1, diag);
  size_t nmasks = k == 1 ? 1 : p->vote == OSSEG_VOTE_SOFT ? 1 : k + 1;
  for (size_t i = 0; i < nmasks && rc == 0; i++)
    rc = fit_mask(ws, &ln->masks[i], height, width, diag);
  if (rc) return rc;
  /* Runs of a mask of n pixels: at most ceil(n / 2). Reserved up front so
   * that no image, however fragmented its masks, allocates. */
  size_t max_runs = (size_t)(((uint64_t)height * width + 1) / 2);
  if (max_runs > ln->runs.cap) {
    rc = charge(ws, ln->runs.cap * sizeof *ln->runs.v, max_runs * sizeof *ln->runs.v,
                "run lists", diag);
    size_t had = ln->runs.cap;
    if (rc == 0 && osseg_runs_reserve(&ln->runs, max_runs) != 0)
      rc = osseg__fail(diag, OSSEG_ENOMEM, "no memory for the run list of a %ux%u mask", width,
                       height);
    if (rc) return rc;
    ws->bytes = ws->bytes - had * sizeof *ln->runs.v + ln->runs.cap * sizeof *ln->runs.v;
  }
  return 0;
}

int osseg__workspace_fit(struct osseg_workspace *ws, const struct osseg_pipeline *p,
                         uint32_t height, uint32_t width, struct osseg_diag *diag) {
  size_t k = p->nmodels;
  int rc = 0;
  for (size_t i = 0; i < k && rc == 0; i++) {
    const struct osseg_loaded_model *m = p->models[i];
    if (p->same_input_as[i] < 0)
      rc = fit_floats(ws, &ws->input[i], osseg_model_input_elems(m->model), "model inputs", diag);
    if (rc == 0)
      rc = fit_floats(ws, &ws->logits[i], osseg_model_output_elems(m->model), "logits", diag);
  }
  return rc ? rc : fit_lane(ws, &ws->lane[0], p, height, width, diag);
}

int osseg__workspace_fit_lane(struct osseg_workspace *ws, size_t lane,
                              const struct osseg_pipeline *p, uint32_t height, uint32_t width,
                              struct osseg_diag *diag) {
  return fit_lane(ws, &ws->lane[lane], p, height, width, diag);
}

int osseg__workspace_fit_labels(struct osseg_workspace *ws, uint32_t height, uint32_t width,
                                struct osseg_diag *diag) {
  return fit_mask(ws, &ws->label_mask, height, width, diag);
}
