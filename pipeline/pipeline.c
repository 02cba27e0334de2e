/* Pipeline creation: take the named models from the registry, check that
 * they fit together, and resolve the per-request options (thresholds,
 * voting, classes). No model is loaded here. */
#include <math.h>
#include <string.h>

#include "pipeline_internal.h"

void osseg_pipeline_options_default(struct osseg_pipeline_options *o) {
  memset(o, 0, sizeof *o);
  o->vote = OSSEG_VOTE_HARD;
  o->vote_threshold = -1.0;
  o->threshold = 0.0f; /* the models' own */
  osseg_png_limits_default(&o->png);
}

/* Probability threshold -> logit threshold: sigmoid(x) > t <=> x > log(t/(1-t)). */
static float logit_of(float t) { return (float)log((double)t / (1.0 - (double)t)); }

static size_t class_index(const struct osseg_loaded_model *m, const char *name) {
  size_t c = 0;
  while (c < m->nclasses && !(name && strcmp(name, m->class_names[c]) == 0)) c++;
  return c;
}

/* Where a model is named in messages: its file when it has one. */
static const char *label(const struct osseg_loaded_model *m) {
  return m->path[0] ? m->path : m->name;
}

static int check_models(struct osseg_pipeline *p, struct osseg_diag *diag) {
  const struct osseg_loaded_model *first = p->models[0];
  for (size_t i = 1; i < p->nmodels; i++) {
    const struct osseg_loaded_model *m = p->models[i];
    int same = m->nclasses == first->nclasses;
    for (size_t c = 0; same && c < m->nclasses; c++)
      same = strcmp(m->class_names[c], first->class_names[c]) == 0;
    if (!same)
      return osseg__fail(diag, OSSEG_EINVAL,
                         "%s: its classes differ from those of %s (names and order must "
                         "match to combine the models)",
                         label(m), label(first));
    if (p->vote == OSSEG_VOTE_SOFT &&
        (m->out_height != first->out_height || m->out_width != first->out_width))
      return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                         "soft voting needs logits of one size: %s gives %ux%u, %s "
                         "gives %ux%u",
                         label(first), first->out_height, first->out_width, label(m),
                         m->out_height, m->out_width);
  }
  return 0;
}

static int resolve_options(struct osseg_pipeline *p, const struct osseg_pipeline_options *o,
                           struct osseg_diag *diag) {
  const struct osseg_loaded_model *m = p->models[0];
  p->nclasses = m->nclasses;
  /* The request's threshold for class c, or 0 where the models' own
   * apply. */
  float req[OSSEG_MAX_CLASSES];
  for (size_t c = 0; c < p->nclasses; c++) req[c] = o->threshold;
  if (o->nclass_thresholds > OSSEG_MAX_CLASSES)
    return osseg__fail(diag, OSSEG_ELIMIT, "more than %d class thresholds", OSSEG_MAX_CLASSES);
  for (size_t i = 0; i < o->nclass_thresholds; i++) {
    const struct osseg_class_threshold *ct = &o->class_thresholds[i];
    size_t c = class_index(m, ct->name);
    if (c == p->nclasses)
      return osseg__fail(diag, OSSEG_EINVAL,
                         "threshold for class '%s': the models have no such class",
                         ct->name ? ct->name : "(null)");
    if (!(ct->threshold > 0.0f && ct->threshold < 1.0f))
      return osseg__fail(diag, OSSEG_EINVAL, "threshold %g of class %s is not in (0, 1)",
                         (double)ct->threshold, ct->name);
    req[c] = ct->threshold;
  }
  /* Each model thresholds at the request's value, else at its own; soft
   * voting compares the mean probability with the mean of those (all
   * equal when the request set it). */
  for (size_t c = 0; c < p->nclasses; c++) {
    double sum = 0;
    for (size_t i = 0; i < p->nmodels; i++) {
      float t = req[c] > 0.0f ? req[c] : p->models[i]->threshold[c];
      p->logit_threshold[i][c] = logit_of(t);
      sum += t;
    }
    p->prob_threshold[c] = req[c] > 0.0f ? req[c] : (float)(sum / (double)p->nmodels);
  }

  if (o->nclasses > OSSEG_MAX_CLASSES)
    return osseg__fail(diag, OSSEG_ELIMIT, "more than %d classes asked for", OSSEG_MAX_CLASSES);
  memset(p->selected, o->nclasses == 0, sizeof p->selected);
  for (size_t i = 0; i < o->nclasses; i++) {
    size_t c = class_index(m, o->classes[i]);
    if (c == p->nclasses)
      return osseg__fail(diag, OSSEG_EINVAL, "class '%s': the models have no such class",
                         o->classes[i] ? o->classes[i] : "(null)");
    p->selected[c] = 1;
  }

  /* One model: its own mask, whatever the vote threshold says (a given
   * threshold must still be a possible one). */
  double vt = o->vote_threshold < 0 ? (double)(p->nmodels / 2) : o->vote_threshold;
  if (vt >= (double)p->nmodels)
    return osseg__fail(diag, OSSEG_EINVAL,
                       "vote threshold %g needs more than %g of %zu model(s): every mask "
                       "would be empty",
                       vt, vt, p->nmodels);
  p->min_votes = p->nmodels == 1 ? 1 : (unsigned)floor(vt) + 1;
  return 0;
}

int osseg_pipeline_create(struct osseg_pipeline **out, struct osseg_registry *r,
                          const struct osseg_pipeline_options *o, struct osseg_diag *diag) {
  *out = NULL;
  if (o->nmodels == 0) return osseg__fail(diag, OSSEG_EINVAL, "no model given");
  if (o->nmodels > OSSEG_MAX_MODELS)
    return osseg__fail(diag, OSSEG_ELIMIT, "%zu models given; at most %d can be combined",
                       o->nmodels, OSSEG_MAX_MODELS);
  if (!(o->threshold == 0.0f || (o->threshold > 0.0f && o->threshold < 1.0f)))
    return osseg__fail(diag, OSSEG_EINVAL, "threshold %g is not in (0, 1)",
                       (double)o->threshold);
  if (o->vote != OSSEG_VOTE_HARD && o->vote != OSSEG_VOTE_SOFT)
    return osseg__fail(diag, OSSEG_EINVAL, "unknown voting mode %d", (int)o->vote);
  if (isnan(o->vote_threshold))
    return osseg__fail(diag, OSSEG_EINVAL, "vote threshold is not a number");

  struct osseg_pipeline *p = osseg__calloc(1, sizeof *p);
  if (!p) return OSSEG_ENOMEM;
  p->vote = o->vote;
  p->png = o->png;
  int rc = 0;
  for (size_t i = 0; i < o->nmodels && rc == 0; i++) {
    rc = osseg_registry_get(r, o->models[i], &p->models[i]);
    if (rc == 0) p->nmodels = i + 1;
    else rc = osseg__fail(diag, rc, "model '%s' is not loaded", o->models[i] ? o->models[i] : "");
  }
  if (rc == 0) rc = check_models(p, diag);
  if (rc == 0) rc = resolve_options(p, o, diag);
  if (rc) {
    osseg_pipeline_free(p);
    return rc;
  }
  /* Models fed the same tensor share it: preprocessing runs once. */
  for (size_t i = 0; i < p->nmodels; i++) {
    p->same_input_as[i] = -1;
    for (size_t j = 0; j < i; j++)
      if (p->same_input_as[j] < 0 && p->models[j]->input_size == p->models[i]->input_size &&
          memcmp(&p->models[j]->norm, &p->models[i]->norm, sizeof p->models[i]->norm) == 0) {
        p->same_input_as[i] = (int)j;
        break;
      }
  }
  *out = p;
  return 0;
}

void osseg_pipeline_free(struct osseg_pipeline *p) {
  if (!p) return;
  for (size_t i = 0; i < p->nmodels; i++) osseg_loaded_model_unref(p->models[i]);
  osseg__free(p);
}

size_t osseg_pipeline_class_count(const struct osseg_pipeline *p) { return p->nclasses; }

const char *osseg_pipeline_class_name(const struct osseg_pipeline *p, size_t i) {
  return i < p->nclasses ? p->models[0]->class_names[i] : NULL;
}

const char *const *osseg_pipeline_class_names(const struct osseg_pipeline *p) {
  return (const char *const *)p->models[0]->class_names;
}

int osseg_pipeline_class_selected(const struct osseg_pipeline *p, size_t i) {
  return i < p->nclasses && p->selected[i];
}

size_t osseg_pipeline_model_count(const struct osseg_pipeline *p) { return p->nmodels; }

const struct osseg_loaded_model *osseg_pipeline_model(const struct osseg_pipeline *p, size_t i) {
  return i < p->nmodels ? p->models[i] : NULL;
}
