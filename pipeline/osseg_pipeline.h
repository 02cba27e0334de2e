/* osseg pipeline: one image in, masks out.
 *
 *   PNG decode -> gray image -> per model: resize to the model's input size
 *   and normalise -> engine -> logits (C, s, s) -> per class: fused bilinear
 *   upsample + threshold straight to a full-resolution bitmask (hard voting
 *   over models, or soft voting of their probabilities) -> canonical runs.
 *
 * The same code serves `osseg predict` and the daemon. A pipeline holds the
 * loaded models and is read-only after creation: any number of threads may
 * run images through it at once, each with its own workspace (the engine
 * serialises the inference itself, one model at a time on all cores).
 *
 * Model preprocessing comes from the model's ONNX metadata_props when
 * present ("osseg.classes": comma-separated class names in output-channel
 * order; "osseg.input_size": S; "osseg.normalize": "div255", "imagenet" or
 * "mean=a,b,c;std=d,e,f"), else from the per-model overrides in the
 * configuration, else from the graph: input size from the input shape,
 * normalisation div255 (image / max value, 3 identical channels), and the
 * 29 canonical classes when the model has 29 output channels.
 */
#ifndef OSSEG_PIPELINE_H
#define OSSEG_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_base.h"
#include "osseg_engine.h"
#include "osseg_imaging.h"
#include "osseg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OSSEG_MAX_CLASSES 64
#define OSSEG_MAX_MODELS 8

/* The 29 hand-bone classes in canonical order (index 0..28). */
#define OSSEG_CANONICAL_CLASSES 29
const char *osseg_canonical_class(unsigned i); /* NULL past the end */

/* How the outputs of several models are combined. */
enum osseg_vote {
  OSSEG_VOTE_HARD = 0, /* pixel set when more than `vote_threshold` models
                          set it (count > T), each model thresholded alone */
  OSSEG_VOTE_SOFT = 1  /* mean of the models' sigmoid probabilities > the
                          class threshold; needs equal logit sizes */
};

struct osseg_pipeline_model {
  const char *path;              /* ONNX file */
  enum osseg_precision precision;
  int64_t input_size;            /* 0: metadata, else the graph's */
  const char *normalize;         /* NULL: metadata, else div255 */
  const char *classes;           /* NULL: metadata, else canonical; a
                                    comma-separated list of names */
};

/* A threshold for one class, by name. */
struct osseg_class_threshold {
  const char *name;
  float threshold; /* probability in (0, 1) */
};

struct osseg_pipeline_config {
  struct osseg_pipeline_model models[OSSEG_MAX_MODELS];
  size_t nmodels;
  int threads;                   /* engine threads, 0 = all cores */
  enum osseg_vote vote;
  double vote_threshold;         /* hard voting: count > T; < 0 = nmodels/2;
                                    T >= nmodels is an error, for one model too */
  float threshold;               /* probability threshold, default 0.5 */
  /* Per-class overrides of `threshold`; an unknown name is an error. */
  struct osseg_class_threshold class_thresholds[OSSEG_MAX_CLASSES];
  size_t nclass_thresholds;
  struct osseg_png_limits png;   /* image limits, checked before decoding */
  uint64_t max_model_bytes;      /* 0 = engine default */
  int verbose;                   /* engine warnings to stderr */
};

/* Defaults: no models, hard voting with T = nmodels/2, threshold 0.5,
 * default PNG limits. */
void osseg_pipeline_config_default(struct osseg_pipeline_config *cfg);

struct osseg_pipeline;

/* Loads and checks every model (classes agree across models and with the
 * output channels; input is (1,3,S,S); soft voting needs equal output
 * sizes). Errors name the model file. */
int osseg_pipeline_create(struct osseg_pipeline **out,
                          const struct osseg_pipeline_config *cfg,
                          struct osseg_diag *diag);
void osseg_pipeline_free(struct osseg_pipeline *p);

size_t osseg_pipeline_class_count(const struct osseg_pipeline *p);
const char *osseg_pipeline_class_name(const struct osseg_pipeline *p, size_t i);
size_t osseg_pipeline_model_count(const struct osseg_pipeline *p);
struct osseg_model *osseg_pipeline_model(const struct osseg_pipeline *p, size_t i);
/* Input side S of model i after metadata/overrides. */
uint32_t osseg_pipeline_model_input_size(const struct osseg_pipeline *p, size_t i);

/* Per-thread scratch: model inputs, logits, bitmasks, runs. Sized for the
 * pipeline at creation; image-size dependent parts grow on first use of a
 * larger image and are then kept. */
struct osseg_workspace;
int osseg_workspace_create(struct osseg_workspace **out,
                           const struct osseg_pipeline *p);
void osseg_workspace_free(struct osseg_workspace *ws);

struct osseg_timings {
  double decode_ms;      /* PNG decode */
  double preprocess_ms;  /* resize + normalise, all models */
  double inference_ms;   /* engine, all models */
  double postprocess_ms; /* upsample + threshold + vote + runs, all classes */
  double total_ms;
};

/* Called once per class, in class order, on the calling thread. mask and
 * runs are owned by the workspace and valid only during the call. A
 * non-zero return cancels the rest of the image and becomes the result of
 * osseg_pipeline_run (use a negative OSSEG_E* code, e.g. OSSEG_ECANCELED). */
typedef int (*osseg_class_cb)(void *ctx, size_t cls, const char *name,
                              const struct osseg_bitmask *mask,
                              const struct osseg_run *runs, size_t nruns);

/* Runs one decoded gray image through the pipeline. */
int osseg_pipeline_run_image(const struct osseg_pipeline *p,
                             struct osseg_workspace *ws,
                             const struct osseg_image *img, osseg_class_cb cb,
                             void *ctx, struct osseg_timings *timings,
                             struct osseg_diag *diag);

/* Decodes an encoded PNG (from memory), then runs it. The decoded image is
 * kept in the workspace until the next run (osseg_workspace_image). */
int osseg_pipeline_run_png(const struct osseg_pipeline *p,
                           struct osseg_workspace *ws, const void *png,
                           size_t png_size, osseg_class_cb cb, void *ctx,
                           struct osseg_timings *timings,
                           struct osseg_diag *diag);
/* The same from a file; the file's size is checked against the PNG limits
 * before reading it. */
int osseg_pipeline_run_file(const struct osseg_pipeline *p,
                            struct osseg_workspace *ws, const char *path,
                            osseg_class_cb cb, void *ctx,
                            struct osseg_timings *timings,
                            struct osseg_diag *diag);

/* The image decoded by the last run_png/run_file (NULL before). */
const struct osseg_image *osseg_workspace_image(const struct osseg_workspace *ws);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_PIPELINE_H */
