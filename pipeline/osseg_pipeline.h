/* osseg pipeline: a model registry, and one image in, masks out.
 *
 *   PNG decode -> gray image -> per model: resize to the model's input size
 *   and normalise -> engine -> logits (C, s, s) -> per class: fused bilinear
 *   upsample + threshold straight to a full-resolution bitmask (hard voting
 *   over models, or soft voting of their probabilities) -> canonical runs
 *   -> Dice against ground truth, if given.
 *
 * The same code serves `osseg predict` and the daemon. Three objects:
 *
 *   - The registry loads each model once, by name, hashes its bytes
 *     (SHA-256) and keeps it reference-counted. Loading a model under a name
 *     that is taken replaces it: runs that started with the old model finish
 *     on it, and it is freed when the last of them releases it (a reload).
 *   - A pipeline is one set of per-request options: which registered models,
 *     how they vote, the thresholds, the classes to produce. Creating one is
 *     cheap (no loading: it takes references to the registry's current
 *     models and validates the combination), so the daemon makes one per
 *     request and `osseg predict` one per invocation. Read-only after
 *     creation; any number of threads may run images through it.
 *   - A workspace is one thread's scratch memory. It serves any pipeline:
 *     buffers grow to the largest model and image seen and are then reused,
 *     so after the first image of a size a run allocates nothing (within
 *     the workspace's memory cap; past it a run fails with OSSEG_ELIMIT).
 *
 * Inference itself goes through the engine's one executor per process: one
 * oneDNN graph at a time on all cores, whichever thread asks; decoding,
 * preprocessing and post-processing of other threads proceed meanwhile.
 *
 * Model preprocessing comes from the model's ONNX metadata_props when
 * present ("osseg.classes": comma-separated class names in output-channel
 * order; "osseg.input_size": S; "osseg.normalize": "div255", "imagenet" or
 * "mean=a,b,c;std=d,e,f"), else from the overrides in its load spec, else
 * from the graph: input size from the input shape, normalisation div255
 * (image / max value, 3 identical channels), and the 29 canonical classes
 * when the model has 29 output channels.
 *
 * The library never prints and never reads the environment; engine
 * messages go to the log callback in the registry's engine options.
 */
#ifndef OSSEG_PIPELINE_H
#define OSSEG_PIPELINE_H

#include <stdatomic.h>
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
#define OSSEG_MAX_MODEL_NAME 128 /* bytes of a registry name */
/* Whether s is a valid registry name: 1 to OSSEG_MAX_MODEL_NAME - 1 bytes
 * of letters, digits and . _ + - (the registry, configuration files and
 * the daemon's requests all use this rule). */
int osseg_model_name_valid(const char *s);

/* The 29 hand-bone classes in canonical order (index 0..28). */
#define OSSEG_CANONICAL_CLASSES 29
const char *osseg_canonical_class(unsigned i); /* NULL past the end */

/* ------------------------------------------------------------ registry --- */

/* A threshold for one class, by name. */
struct osseg_class_threshold {
  const char *name;
  float threshold; /* probability in (0, 1) */
};

/* How to load one model. Strings and arrays are read during the call. */
struct osseg_model_spec {
  const char *name;      /* registry key: 1..127 bytes of [A-Za-z0-9._+-];
                            NULL = the file's base name */
  const char *path;      /* ONNX file; or NULL and data/size below */
  const void *data;      /* ONNX bytes in memory (read during the call) */
  size_t size;
  enum osseg_precision precision;
  int64_t input_size;    /* 0: metadata, else the graph's */
  const char *normalize; /* NULL: metadata, else div255 */
  const char *classes;   /* NULL: metadata, else canonical; a
                            comma-separated list of names */
  /* The model's own probability thresholds, used by a pipeline whose
   * options do not set one (see osseg_pipeline_options.threshold):
   * `threshold` for every class (0 = 0.5), and per class by name (a name
   * the model does not have fails the load). */
  float threshold;
  const struct osseg_class_threshold *class_thresholds;
  size_t nclass_thresholds;
};

/* Checks what can be checked of a spec without loading the model: the
 * name (when given), the normalisation and class list syntax, thresholds
 * in (0, 1), and class threshold names against `classes` when that is
 * given (else the load checks them against the model's classes). Errors
 * name the model. osseg_registry_load does the same checks. */
int osseg_model_spec_check(const struct osseg_model_spec *spec, struct osseg_diag *diag);

struct osseg_registry;
/* A model as the registry loaded it: engine model, preprocessing, classes,
 * hash. Immutable; valid while the caller holds a reference. */
struct osseg_loaded_model;

/* engine: options applied to every model (threads, limits, log, A/B
 * switches); each spec sets its own precision and input size. NULL =
 * defaults. The registry keeps a copy. */
int osseg_registry_create(struct osseg_registry **out,
                          const struct osseg_engine_options *engine);
/* Drops the registry's references; models still held elsewhere live on. */
void osseg_registry_free(struct osseg_registry *r);

/* Loads, checks and registers a model (errors name the file or "model
 * NAME"). The registry lock is held only to install the model: loading
 * does not block runs or other lookups. Replaces a model of the same name;
 * *replaced (if not NULL) says whether it did. */
int osseg_registry_load(struct osseg_registry *r, const struct osseg_model_spec *spec,
                        int *replaced, struct osseg_diag *diag);
/* Registers a model another registry loaded (it takes a reference of its
 * own), replacing a model of the same name like a load does, and gives it
 * this registry's next generation. Lets a caller load and warm up new models in a
 * staging registry, then install them all at once. 0 or OSSEG_ENOMEM. */
int osseg_registry_put(struct osseg_registry *r, struct osseg_loaded_model *m);
/* The SHA-256 of a file's bytes as osseg_loaded_model_sha256 gives it (to
 * tell whether a model file changed without loading it). 0, or the errors
 * of mapping the file (named in diag). */
int osseg_file_sha256(const char *path, char out[65], struct osseg_diag *diag);
/* Removes a name (OSSEG_ENOTFOUND if absent); holders keep the model. */
int osseg_registry_unload(struct osseg_registry *r, const char *name);
size_t osseg_registry_count(const struct osseg_registry *r);

/* A new reference to the model registered under name (OSSEG_ENOTFOUND), or
 * to the i-th in name order (for listings; OSSEG_ENOTFOUND past the end). */
int osseg_registry_get(struct osseg_registry *r, const char *name,
                       struct osseg_loaded_model **out);
int osseg_registry_get_at(struct osseg_registry *r, size_t i,
                          struct osseg_loaded_model **out);
/* Takes another reference / drops one (the last frees the model). */
struct osseg_loaded_model *osseg_loaded_model_ref(struct osseg_loaded_model *m);
void osseg_loaded_model_unref(struct osseg_loaded_model *m);

const char *osseg_loaded_model_name(const struct osseg_loaded_model *m);
const char *osseg_loaded_model_path(const struct osseg_loaded_model *m); /* "" from memory */
/* SHA-256 of the ONNX bytes, as 64 lowercase hex digits. */
const char *osseg_loaded_model_sha256(const struct osseg_loaded_model *m);
struct osseg_model *osseg_loaded_model_engine(const struct osseg_loaded_model *m);
uint32_t osseg_loaded_model_input_size(const struct osseg_loaded_model *m);
size_t osseg_loaded_model_class_count(const struct osseg_loaded_model *m);
const char *osseg_loaded_model_class_name(const struct osseg_loaded_model *m, size_t i);
/* Increases by one with every load into the registry (1, 2, ...): tells a
 * reloaded model from its predecessor. */
uint64_t osseg_loaded_model_generation(const struct osseg_loaded_model *m);
/* The model's own probability threshold for class i (from its load spec;
 * 0.5 by default); 0 past the last class. */
float osseg_loaded_model_threshold(const struct osseg_loaded_model *m, size_t i);
/* The model's own preprocessing of a gray image (resize to its input size,
 * its normalisation), as a run does it: out gets
 * osseg_model_input_elems(engine) floats. Errors of osseg_preprocess_gray. */
int osseg_loaded_model_preprocess(const struct osseg_loaded_model *m, const struct osseg_image *img,
                                  float *out);

/* ------------------------------------------------------------ pipeline --- */

/* How the outputs of several models are combined. */
enum osseg_vote {
  OSSEG_VOTE_HARD = 0, /* pixel set when more than `vote_threshold` models
                          set it (count > T), each model thresholded alone */
  OSSEG_VOTE_SOFT = 1  /* mean of the models' sigmoid probabilities > the
                          class threshold; needs equal logit sizes */
};

/* One request's options. Strings are only read during
 * osseg_pipeline_create. */
struct osseg_pipeline_options {
  const char *models[OSSEG_MAX_MODELS]; /* registry names */
  size_t nmodels;
  enum osseg_vote vote;
  double vote_threshold;         /* hard voting: count > T, 0 <= T < nmodels;
                                    < 0 = nmodels/2 rounded down */
  /* Probability threshold for every class and model; 0 (the default) =
   * each model's own thresholds (0.5 unless its load spec set others; soft
   * voting then thresholds a class at the mean of the models' thresholds
   * for it). */
  float threshold;
  /* Per-class overrides of `threshold` and of the models' own; an unknown
   * name is an error. */
  struct osseg_class_threshold class_thresholds[OSSEG_MAX_CLASSES];
  size_t nclass_thresholds;
  /* Produce only these classes (names; results come in the models' class
   * order whatever the order here); 0 = all. */
  const char *classes[OSSEG_MAX_CLASSES];
  size_t nclasses;
  struct osseg_png_limits png;   /* image limits, checked before decoding */
};

/* Defaults: no models, hard voting with T = nmodels/2, the models' own
 * thresholds (0.5 unless they were loaded with others), all classes,
 * default PNG limits. */
void osseg_pipeline_options_default(struct osseg_pipeline_options *o);

struct osseg_pipeline;

/* Takes references to the named models and checks the combination (classes
 * agree across models; soft voting needs equal output sizes; thresholds in
 * (0, 1), or 0 for the models' own; 0 <= vote_threshold < nmodels).
 * Errors name the model. */
int osseg_pipeline_create(struct osseg_pipeline **out, struct osseg_registry *r,
                          const struct osseg_pipeline_options *o, struct osseg_diag *diag);
void osseg_pipeline_free(struct osseg_pipeline *p); /* releases the models */

/* All classes of the models, in output-channel order; results use these
 * indices. */
size_t osseg_pipeline_class_count(const struct osseg_pipeline *p);
const char *osseg_pipeline_class_name(const struct osseg_pipeline *p, size_t i);
/* The same names as one array of osseg_pipeline_class_count entries (for
 * osseg_labels_parse_json); valid while p lives. */
const char *const *osseg_pipeline_class_names(const struct osseg_pipeline *p);
/* Whether class i is produced (options.classes). */
int osseg_pipeline_class_selected(const struct osseg_pipeline *p, size_t i);
size_t osseg_pipeline_model_count(const struct osseg_pipeline *p);
const struct osseg_loaded_model *osseg_pipeline_model(const struct osseg_pipeline *p,
                                                      size_t i);

/* ----------------------------------------------------------- workspace --- */

/* Per-thread scratch: decoded image, model inputs, logits, bitmasks, runs,
 * upsampling plans. max_bytes caps what it may hold (0 = no cap). */
struct osseg_workspace;
int osseg_workspace_create(struct osseg_workspace **out, uint64_t max_bytes);
void osseg_workspace_free(struct osseg_workspace *ws);
/* Bytes the workspace holds now. */
uint64_t osseg_workspace_bytes(const struct osseg_workspace *ws);

/* ----------------------------------------------------------------- run --- */

struct osseg_timings {
  double decode_ms;      /* PNG decode */
  double preprocess_ms;  /* resize + normalise, all models */
  double inference_ms;   /* engine, all models (includes waiting for the
                            executor while another thread's model runs) */
  /* The engine time of each model, in the pipeline's model order
   * (osseg_pipeline_model(p, i)); they add up to inference_ms. Entries past
   * the pipeline's model count are 0. */
  double model_ms[OSSEG_MAX_MODELS];
  double postprocess_ms; /* upsample + threshold + vote + runs + Dice,
                            and rasterising label ground truth */
  double total_ms;
};

/* Called once per produced class, in class order, on the calling thread.
 * mask and runs are owned by the workspace and valid only during the call.
 * A non-zero return stops the image and becomes the result of the run (use
 * a negative OSSEG_E* code, e.g. OSSEG_ECANCELED). */
typedef int (*osseg_class_cb)(void *ctx, size_t cls, const char *name,
                              const struct osseg_bitmask *mask,
                              const struct osseg_run *runs, size_t nruns);

/* Ground truth for Dice, per class index of the pipeline: canonical runs
 * (sorted, non-overlapping, as osseg_rle_parse gives) of a mask of the
 * image's size. Only produced classes with has[c] set are scored (as
 * `osseg dice` scores only the rows its ground truth has); nruns 0 is an
 * empty mask. */
struct osseg_ground_truth {
  unsigned char has[OSSEG_MAX_CLASSES];
  const struct osseg_run *runs[OSSEG_MAX_CLASSES];
  size_t nruns[OSSEG_MAX_CLASSES];
};

/* Dice per scored class, (2|A∩B| + 1e-4) / (|A| + |B| + 1e-4), and their
 * mean: the same numbers `osseg dice` computes from the two CSVs. */
struct osseg_dice_report {
  size_t n;                         /* scored classes */
  size_t cls[OSSEG_MAX_CLASSES];    /* their class indices */
  double dice[OSSEG_MAX_CLASSES];
  double mean;
};
/* Called once after the last class when ground truth was given. */
typedef int (*osseg_dice_cb)(void *ctx, const struct osseg_dice_report *report);

/* What one run takes besides the image. Zero-initialise; every field is
 * optional. */
struct osseg_run_request {
  osseg_class_cb on_class;
  /* Optional: called for each produced class with the same arguments just
   * before on_class, possibly on the workspace's helper thread (see
   * parallel_postprocess) and then concurrently with the calls for other
   * classes; it finishes before on_class of its class starts on the
   * calling thread. For the expensive part of consuming a mask (formatting
   * it), so that it runs in parallel too. A non-zero return fails the run
   * like a post-processing error of that class. */
  osseg_class_cb on_class_work;
  osseg_dice_cb on_dice;
  void *ctx;                            /* for both callbacks */
  const struct osseg_ground_truth *gt;  /* NULL: no Dice */
  /* Ground truth as label polygons (see "label JSON" below) instead of gt
   * (giving both is OSSEG_EINVAL): parsed against this pipeline's classes
   * (osseg_pipeline_class_names; another class count is OSSEG_EINVAL),
   * rasterised at the decoded image's size into the workspace
   * (osseg_workspace_ground_truth) after inference. Every produced class is
   * scored; one without polygons is an empty mask, as in the dataset. Not
   * allocation-free: the polygon fill allocates its edge table per polygon,
   * and run lists grow to the largest masks drawn. */
  const struct osseg_labels *labels;
  /* Interrupts, checked between engine steps (and inside long own loops),
   * between models and between classes: a set flag ends the run with
   * OSSEG_ECANCELED, a passed deadline (osseg_now_ns() clock) with
   * OSSEG_ETIMEDOUT. The workspace stays usable. */
  const _Atomic int *cancel;
  uint64_t deadline_ns;
  struct osseg_timings *timings;
  /* Non-zero: post-process on two threads (the caller and a helper thread
   * the workspace starts on first use) when the engine has no inference
   * queued or running at that moment, so that the other core would be
   * idle. The callbacks still run on the calling thread in class order,
   * and the results are the same bits. The workspace then also holds a
   * second set of masks and a run list (about 17 MB for a 2048x2048
   * image); past its memory cap, or when the thread cannot be started,
   * the run stays on one thread. */
  int parallel_postprocess;
};

/* Runs one decoded gray image through the pipeline. */
int osseg_pipeline_run_image(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                             const struct osseg_image *img,
                             const struct osseg_run_request *rq, struct osseg_diag *diag);
/* Decodes an encoded PNG (from memory) into the workspace, then runs it.
 * The decoded image stays in the workspace until the next run
 * (osseg_workspace_image). */
int osseg_pipeline_run_png(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                           const void *png, size_t png_size,
                           const struct osseg_run_request *rq, struct osseg_diag *diag);
/* The same from a file; the file's size is checked against the PNG limits
 * before reading it. */
int osseg_pipeline_run_file(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                            const char *path, const struct osseg_run_request *rq,
                            struct osseg_diag *diag);

/* The image decoded by the last run_png/run_file (NULL before). */
const struct osseg_image *osseg_workspace_image(const struct osseg_workspace *ws);
/* The ground truth the last run rasterised from its labels (for overlays),
 * valid until the next run on ws; NULL when that run had no labels or did
 * not get as far. */
const struct osseg_ground_truth *osseg_workspace_ground_truth(const struct osseg_workspace *ws);

/* ---------------------------------------------------------- label JSON --- */

/* The dataset's label files (label_json.c):
 *
 *   {"annotations": [{"label": "finger-1", "points": [[x, y], ...]}, ...]}
 *
 * One polygon per annotation, vertices in integer pixels (x to the right,
 * y down). A class is drawn as cv2.fillPoly draws each of its polygons
 * (osseg_polygon_fill, OpenCV 4.6 semantics, vertices outside the image
 * clipped as OpenCV clips them); several polygons with the same label
 * unite (each is filled on its own, so one inside another adds nothing and
 * cuts no hole). A class without annotations is an empty mask. Members other
 * than "annotations", "label" and "points" (ids, attributes, metadata) are
 * ignored, at any level.
 *
 * Strict where the dataset is: vertices are JSON integers, because the
 * dataset's are and because cv2.fillPoly refuses non-integer points (12.0
 * and 12.5 are both refused, 12 is taken); a polygon has at least 3
 * vertices; labels are class names exactly as the class list spells them;
 * duplicate keys in an object are refused (which "points" would count is
 * otherwise a guess).
 *
 * Parsing is done by jansson (it also checks UTF-8 and refuses NUL bytes
 * in strings); rasterising needs the image size, so it is a second step:
 * the daemon parses when it validates a request and rasterises on the
 * worker once the image is decoded. */

/* Polygons of one file, by class; opaque. */
struct osseg_labels;

/* Explicit limits, checked before the work they bound. */
struct osseg_label_json_limits {
  uint64_t max_bytes;      /* the text; default 4 MiB (a sample
                              phantom's file is 17 KB) */
  unsigned max_depth;      /* JSON nesting (containers inside containers);
                              default 16, the format needs 5. jansson stops
                              at 2048 whatever this says */
  uint64_t max_points;     /* vertices of all polygons; default 1 << 20 */
  uint32_t max_coordinate; /* |x| and |y| at most this; default 1 << 20
                              (64 times the largest image side): beyond it a
                              value is garbage, not a vertex off the image */
};
void osseg_label_json_limits_default(struct osseg_label_json_limits *lim);

/* Parses json[0, len) against the class list classes[0, nclasses)
 * (1..OSSEG_MAX_CLASSES names; e.g. osseg_pipeline_class_names). NULL lim =
 * defaults. name is the source for messages (a path, a protocol field).
 * Errors, diag "NAME:LINE:COLUMN: problem" when the text is no JSON
 * (jansson's position and words) and "NAME: annotations[3] (finger-4):
 * points[7][0]: problem" (the JSON path) when the JSON is not label JSON:
 *   OSSEG_EPARSE     not JSON, not UTF-8, a duplicate key, no
 *                    "annotations" array, an annotation without a string
 *                    label or an array of points, a point that is not two
 *                    integers, fewer than 3 points;
 *   OSSEG_ENOTFOUND  a label that is none of the classes (named);
 *   OSSEG_ERANGE     a coordinate past max_coordinate, or an integer past
 *                    64 bits;
 *   OSSEG_ELIMIT     over max_bytes (checked before parsing), max_depth or
 *                    max_points;
 *   OSSEG_EINVAL     NULL arguments or a bad class count; OSSEG_ENOMEM.
 * On success *out owns its polygons (the class names are not kept); free
 * it with osseg_labels_free. Reentrant. */
int osseg_labels_parse_json(struct osseg_labels **out, const char *name, const char *json,
                            size_t len, const char *const *classes, size_t nclasses,
                            const struct osseg_label_json_limits *lim,
                            struct osseg_diag *diag);
void osseg_labels_free(struct osseg_labels *l); /* NULL is a no-op */
/* The class count it was parsed against; the polygons labelled class c. */
size_t osseg_labels_class_count(const struct osseg_labels *l);
size_t osseg_labels_polygon_count(const struct osseg_labels *l, size_t c);

/* Rasterises every class at the size of mask (a caller's scratch mask of
 * the image's height x width, initialised; its bits are overwritten) into
 * runs[c] for c < the class count (zero-initialised or reused lists, their
 * contents replaced) and sets *gt to them: has[c] = 1 for every class, so
 * every class is scored. gt points into runs. OSSEG_EINVAL for NULL
 * arguments, OSSEG_ENOMEM. */
int osseg_labels_rasterize(const struct osseg_labels *l, struct osseg_bitmask *mask,
                           struct osseg_runs *runs, struct osseg_ground_truth *gt,
                           struct osseg_diag *diag);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_PIPELINE_H */
