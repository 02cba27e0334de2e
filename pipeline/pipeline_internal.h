/* Internals shared by the pipeline's files. */
#ifndef OSSEG_PIPELINE_INTERNAL_H
#define OSSEG_PIPELINE_INTERNAL_H

#include <pthread.h>

#include "osseg_pipeline.h"

/* One loaded model with everything needed to feed it and read it.
 * Immutable after loading except for the reference count. */
struct osseg_loaded_model {
  _Atomic size_t refs;
  char *name;
  char *path;                /* "" when loaded from memory */
  char sha256[65];           /* hex of the ONNX bytes */
  uint64_t generation;
  struct osseg_model *model;
  uint32_t input_size;       /* S: input is (1, 3, S, S) */
  uint32_t out_height;       /* logits (1, C, out_height, out_width) */
  uint32_t out_width;
  struct osseg_normalize norm;
  char *class_names[OSSEG_MAX_CLASSES];
  size_t nclasses;
  float threshold[OSSEG_MAX_CLASSES]; /* own probability threshold per class */
};

/* Loads and describes one model (registry.c's worker; no registry state). */
int osseg__loaded_model_create(struct osseg_loaded_model **out,
                               const struct osseg_model_spec *spec,
                               const struct osseg_engine_options *engine,
                               struct osseg_diag *diag);

struct osseg_pipeline {
  struct osseg_loaded_model *models[OSSEG_MAX_MODELS]; /* one reference each */
  size_t nmodels;
  int same_input_as[OSSEG_MAX_MODELS]; /* index of an earlier model with the
                                          same S and normalisation whose input
                                          tensor is reused, or -1 */
  size_t nclasses;                       /* models[0]'s classes */
  unsigned char selected[OSSEG_MAX_CLASSES];
  enum osseg_vote vote;
  unsigned min_votes;                    /* hard voting: count >= min_votes */
  /* Soft voting: the mean probability is compared with prob_threshold[c].
   * Otherwise each model i thresholds its own logits at
   * logit_threshold[i][c] (its thresholds may differ from the others'). */
  float prob_threshold[OSSEG_MAX_CLASSES];
  float logit_threshold[OSSEG_MAX_MODELS][OSSEG_MAX_CLASSES];
  struct osseg_png_limits png;
};

/* Parses an "osseg.normalize" value or --normalize flag: "div255",
 * "imagenet", or "mean=a[,b,c];std=d[,e,f]". */
int osseg__parse_normalize(const char *s, struct osseg_normalize *out,
                           struct osseg_diag *diag, const char *where);

/* Splits a comma-separated class list into at most max names (owned by the
 * caller: free each with osseg__free). Names are trimmed of spaces and must
 * be non-empty and unique. Returns the count or a negative error. */
int osseg__parse_class_list(const char *s, char **names, size_t max,
                            struct osseg_diag *diag, const char *where);

#endif
