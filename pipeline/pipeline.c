/* Pipeline creation: load the models, resolve their preprocessing and
 * classes from metadata or overrides, and check that they fit together. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_internal.h"

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) osseg__free(names[i]);
}

/* Parses a strictly positive decimal integer (the "osseg.input_size"
 * metadata value); returns 0 when malformed. */
static int64_t parse_size(const char *s) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0 || v > (long long)OSSEG_MAX_SIDE) return 0;
  return v;
}

/* The engine no longer prints: its warnings come through a log callback.
 * Until the pipeline takes a struct osseg_log from its caller (issue 10,
 * pipeline rewrite), `verbose` keeps printing them as the engine did. */
static void engine_warnings_to_stderr(void *ctx, enum osseg_log_level level, const char *message) {
  (void)ctx;
  (void)level;
  fprintf(stderr, "osseg: warning: %s\n", message);
}

/* Loads model i and fills its description; on success the pipeline owns
 * it. Class names are checked against (or, for the first model, become)
 * the pipeline's classes. */
static int add_model(struct osseg_pipeline *p, const struct osseg_pipeline_config *cfg,
                     size_t i, struct osseg_diag *diag) {
  const struct osseg_pipeline_model *mc = &cfg->models[i];
  struct osseg__pmodel *pm = &p->models[i];
  pm->same_input_as = -1;
  if (!mc->path) return osseg__fail(diag, OSSEG_EINVAL, "model %zu has no path", i + 1);
  pm->path = osseg__strndup(mc->path, strlen(mc->path));
  if (!pm->path) return OSSEG_ENOMEM;

  struct osseg_engine_options eo;
  osseg_engine_options_default(&eo);
  eo.precision = mc->precision;
  eo.threads = cfg->threads;
  eo.input_size = mc->input_size;
  if (cfg->verbose) eo.log = (struct osseg_log){engine_warnings_to_stderr, NULL, OSSEG_LOG_WARN};
  if (cfg->max_model_bytes) eo.max_model_bytes = cfg->max_model_bytes;
  int rc = osseg_model_load(&pm->model, mc->path, &eo, diag);
  if (rc) return rc;

  const struct osseg_tensor_info *in = osseg_model_input(pm->model);
  const struct osseg_tensor_info *out = osseg_model_output(pm->model);
  if (in->rank != 4 || in->dims[0] != 1 || in->dims[1] != 3 || in->dims[2] != in->dims[3])
    return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                       "%s: the model input must be (1, 3, S, S); it is (%lld, %lld, "
                       "%lld, %lld)",
                       mc->path, (long long)in->dims[0], (long long)in->dims[1],
                       (long long)in->dims[2], (long long)in->dims[3]);
  if (out->rank != 4 || out->dims[0] != 1 || out->dims[1] < 1 ||
      out->dims[1] > OSSEG_MAX_CLASSES || out->dims[2] < 1 || out->dims[3] < 1 ||
      out->dims[2] > OSSEG_MAX_SIDE || out->dims[3] > OSSEG_MAX_SIDE)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                       "%s: the model output must be (1, C, H, W) with 1 <= C <= %d",
                       mc->path, OSSEG_MAX_CLASSES);
  pm->input_size = (uint32_t)in->dims[2];
  pm->out_height = (uint32_t)out->dims[2];
  pm->out_width = (uint32_t)out->dims[3];
  size_t nout = (size_t)out->dims[1];

  const char *meta_size = osseg_model_metadata(pm->model, "osseg.input_size");
  if (meta_size) {
    int64_t s = parse_size(meta_size);
    if (s == 0)
      return osseg__fail(diag, OSSEG_EINVAL, "%s: metadata osseg.input_size '%s' is not a size",
                         mc->path, meta_size);
    if (s != (int64_t)pm->input_size)
      return osseg__fail(diag, OSSEG_EINVAL,
                         "%s: metadata osseg.input_size %lld disagrees with the graph's "
                         "input size %u",
                         mc->path, (long long)s, pm->input_size);
  }

  const char *norm = mc->normalize ? mc->normalize
                                   : osseg_model_metadata(pm->model, "osseg.normalize");
  rc = osseg__parse_normalize(norm ? norm : "div255", &pm->norm, diag, mc->path);
  if (rc) return rc;

  char *names[OSSEG_MAX_CLASSES];
  size_t nnames;
  const char *list = mc->classes ? mc->classes : osseg_model_metadata(pm->model, "osseg.classes");
  if (list) {
    rc = osseg__parse_class_list(list, names, OSSEG_MAX_CLASSES, diag, mc->path);
    if (rc < 0) return rc;
    nnames = (size_t)rc;
  } else {
    if (nout != OSSEG_CANONICAL_CLASSES)
      return osseg__fail(diag, OSSEG_EINVAL,
                         "%s: the model has %zu output channels and no osseg.classes "
                         "metadata; name its classes (--classes)",
                         mc->path, nout);
    for (nnames = 0; nnames < OSSEG_CANONICAL_CLASSES; nnames++) {
      names[nnames] = osseg__strndup(osseg_canonical_class((unsigned)nnames), 64);
      if (!names[nnames]) {
        free_names(names, nnames);
        return OSSEG_ENOMEM;
      }
    }
  }
  if (nnames != nout) {
    free_names(names, nnames);
    return osseg__fail(diag, OSSEG_EINVAL, "%s: %zu class names for %zu output channels",
                       mc->path, nnames, nout);
  }
  if (i == 0) {
    memcpy(p->class_names, names, nnames * sizeof names[0]);
    p->nclasses = nnames;
    return 0;
  }
  int same = nnames == p->nclasses;
  for (size_t c = 0; same && c < nnames; c++) same = strcmp(names[c], p->class_names[c]) == 0;
  free_names(names, nnames);
  if (!same)
    return osseg__fail(diag, OSSEG_EINVAL,
                       "%s: its classes differ from those of %s (names and order must "
                       "match to combine the models)",
                       mc->path, p->models[0].path);
  return 0;
}

/* Probability threshold -> logit threshold: sigmoid(x) > t <=> x > log(t/(1-t)). */
static float logit_of(float t) { return (float)log((double)t / (1.0 - (double)t)); }

int osseg_pipeline_create(struct osseg_pipeline **out, const struct osseg_pipeline_config *cfg,
                          struct osseg_diag *diag) {
  *out = NULL;
  if (cfg->nmodels == 0)
    return osseg__fail(diag, OSSEG_EINVAL, "no model given");
  if (cfg->nmodels > OSSEG_MAX_MODELS)
    return osseg__fail(diag, OSSEG_ELIMIT, "%zu models given; at most %d can be combined",
                       cfg->nmodels, OSSEG_MAX_MODELS);
  if (!(cfg->threshold > 0.0f && cfg->threshold < 1.0f))
    return osseg__fail(diag, OSSEG_EINVAL, "threshold %g is not in (0, 1)",
                       (double)cfg->threshold);
  if (cfg->vote != OSSEG_VOTE_HARD && cfg->vote != OSSEG_VOTE_SOFT)
    return osseg__fail(diag, OSSEG_EINVAL, "unknown voting mode %d", (int)cfg->vote);
  if (isnan(cfg->vote_threshold))
    return osseg__fail(diag, OSSEG_EINVAL, "vote threshold is not a number");

  struct osseg_pipeline *p = osseg__calloc(1, sizeof *p);
  if (!p) return OSSEG_ENOMEM;
  p->vote = cfg->vote;
  p->png = cfg->png;
  int rc = 0;
  for (size_t i = 0; i < cfg->nmodels; i++) {
    p->nmodels = i + 1; /* so that free releases what add_model made */
    rc = add_model(p, cfg, i, diag);
    if (rc) goto fail;
  }

  for (size_t c = 0; c < p->nclasses; c++) p->prob_threshold[c] = cfg->threshold;
  if (cfg->nclass_thresholds > OSSEG_MAX_CLASSES) {
    rc = osseg__fail(diag, OSSEG_ELIMIT, "more than %d class thresholds", OSSEG_MAX_CLASSES);
    goto fail;
  }
  for (size_t i = 0; i < cfg->nclass_thresholds; i++) {
    const struct osseg_class_threshold *ct = &cfg->class_thresholds[i];
    size_t c = 0;
    while (c < p->nclasses && !(ct->name && strcmp(ct->name, p->class_names[c]) == 0)) c++;
    if (c == p->nclasses) {
      rc = osseg__fail(diag, OSSEG_EINVAL, "threshold for class '%s': the models have no such class",
                       ct->name ? ct->name : "(null)");
      goto fail;
    }
    if (!(ct->threshold > 0.0f && ct->threshold < 1.0f)) {
      rc = osseg__fail(diag, OSSEG_EINVAL, "threshold %g of class %s is not in (0, 1)",
                       (double)ct->threshold, ct->name);
      goto fail;
    }
    p->prob_threshold[c] = ct->threshold;
  }
  for (size_t c = 0; c < p->nclasses; c++) p->logit_threshold[c] = logit_of(p->prob_threshold[c]);

  double vt = cfg->vote_threshold < 0 ? (double)(p->nmodels / 2) : cfg->vote_threshold;
  if (p->nmodels == 1) vt = 0; /* one model: its own mask */
  if (vt >= (double)p->nmodels) {
    rc = osseg__fail(diag, OSSEG_EINVAL,
                     "vote threshold %g needs more than %g of %zu models: every mask "
                     "would be empty",
                     vt, vt, p->nmodels);
    goto fail;
  }
  p->min_votes = (unsigned)floor(vt) + 1;

  if (p->vote == OSSEG_VOTE_SOFT)
    for (size_t i = 1; i < p->nmodels; i++)
      if (p->models[i].out_height != p->models[0].out_height ||
          p->models[i].out_width != p->models[0].out_width) {
        rc = osseg__fail(diag, OSSEG_EUNSUPPORTED,
                         "soft voting needs logits of one size: %s gives %ux%u, %s "
                         "gives %ux%u",
                         p->models[0].path, p->models[0].out_height, p->models[0].out_width,
                         p->models[i].path, p->models[i].out_height, p->models[i].out_width);
        goto fail;
      }

  /* Models fed the same tensor share it: preprocessing runs once. */
  for (size_t i = 1; i < p->nmodels; i++)
    for (size_t j = 0; j < i; j++)
      if (p->models[j].same_input_as < 0 && p->models[j].input_size == p->models[i].input_size &&
          memcmp(&p->models[j].norm, &p->models[i].norm, sizeof p->models[i].norm) == 0) {
        p->models[i].same_input_as = (int)j;
        break;
      }
  *out = p;
  return 0;
fail:
  osseg_pipeline_free(p);
  return rc;
}

void osseg_pipeline_free(struct osseg_pipeline *p) {
  if (!p) return;
  for (size_t i = 0; i < p->nmodels; i++) {
    osseg_model_free(p->models[i].model);
    osseg__free(p->models[i].path);
  }
  free_names(p->class_names, p->nclasses);
  osseg__free(p);
}

size_t osseg_pipeline_class_count(const struct osseg_pipeline *p) { return p->nclasses; }

const char *osseg_pipeline_class_name(const struct osseg_pipeline *p, size_t i) {
  return i < p->nclasses ? p->class_names[i] : NULL;
}

size_t osseg_pipeline_model_count(const struct osseg_pipeline *p) { return p->nmodels; }

struct osseg_model *osseg_pipeline_model(const struct osseg_pipeline *p, size_t i) {
  return i < p->nmodels ? p->models[i].model : NULL;
}

uint32_t osseg_pipeline_model_input_size(const struct osseg_pipeline *p, size_t i) {
  return i < p->nmodels ? p->models[i].input_size : 0;
}
