/* The model registry: models loaded once by name, hashed, reference-counted.
 *
 * The registry holds one reference to each model it lists; every pipeline
 * holds one per model it uses. Replacing or unloading a name drops the
 * registry's reference, so a model lives exactly as long as the last run
 * that started with it. The lock guards only the name table: loading (the
 * slow part) happens outside it. */
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_internal.h"

struct osseg_registry {
  pthread_mutex_t lock;
  struct osseg_loaded_model **models; /* sorted by name */
  size_t n, cap;
  uint64_t generation;                /* of the last load */
  struct osseg_engine_options engine;
};

/* ---------------------------------------------------------- one model --- */

static void free_model(struct osseg_loaded_model *m) {
  osseg_model_free(m->model);
  for (size_t i = 0; i < m->nclasses; i++) osseg__free(m->class_names[i]);
  osseg__free(m->name);
  osseg__free(m->path);
  osseg__free(m);
}

struct osseg_loaded_model *osseg_loaded_model_ref(struct osseg_loaded_model *m) {
  if (m) atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
  return m;
}

void osseg_loaded_model_unref(struct osseg_loaded_model *m) {
  if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) free_model(m);
}

const char *osseg_loaded_model_name(const struct osseg_loaded_model *m) { return m->name; }
const char *osseg_loaded_model_path(const struct osseg_loaded_model *m) { return m->path; }
const char *osseg_loaded_model_sha256(const struct osseg_loaded_model *m) { return m->sha256; }
struct osseg_model *osseg_loaded_model_engine(const struct osseg_loaded_model *m) {
  return m->model;
}
uint32_t osseg_loaded_model_input_size(const struct osseg_loaded_model *m) {
  return m->input_size;
}
int osseg_loaded_model_preprocess(const struct osseg_loaded_model *m, const struct osseg_image *img,
                                  float *out) {
  return osseg_preprocess_gray(img, m->input_size, &m->norm, out);
}
size_t osseg_loaded_model_class_count(const struct osseg_loaded_model *m) { return m->nclasses; }
const char *osseg_loaded_model_class_name(const struct osseg_loaded_model *m, size_t i) {
  return i < m->nclasses ? m->class_names[i] : NULL;
}
uint64_t osseg_loaded_model_generation(const struct osseg_loaded_model *m) {
  return m->generation;
}
float osseg_loaded_model_threshold(const struct osseg_loaded_model *m, size_t i) {
  return i < m->nclasses ? m->threshold[i] : 0.0f;
}

int osseg_model_name_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= OSSEG_MAX_MODEL_NAME) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '.' || *s == '_' || *s == '+' || *s == '-'))
      return 0;
  return 1;
}

static void sha256_hex(const void *data, size_t size, char out[65]) {
  struct sha256_ctx ctx;
  uint8_t digest[SHA256_DIGEST_SIZE];
  sha256_init(&ctx);
  /* nettle takes size_t lengths; feed in bounded pieces all the same */
  const uint8_t *p = data;
  while (size > 0) {
    size_t n = size > ((size_t)1 << 30) ? ((size_t)1 << 30) : size;
    sha256_update(&ctx, n, p);
    p += n;
    size -= n;
  }
  sha256_digest(&ctx, sizeof digest, digest);
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < sizeof digest; i++) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 15];
  }
  out[64] = '\0';
}

/* Parses a strictly positive decimal integer (the "osseg.input_size"
 * metadata value); returns 0 when malformed. */
static int64_t parse_size(const char *s) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0 || v > (long long)OSSEG_MAX_SIDE) return 0;
  return v;
}

/* Input/output shapes, metadata, normalisation and classes of a model the
 * engine has loaded. `where` names it in messages. */
static int describe(struct osseg_loaded_model *m, const struct osseg_model_spec *spec,
                    const char *where, struct osseg_diag *diag) {
  const struct osseg_tensor_info *in = osseg_model_input(m->model);
  const struct osseg_tensor_info *out = osseg_model_output(m->model);
  if (in->rank != 4 || in->dims[0] != 1 || in->dims[1] != 3 || in->dims[2] != in->dims[3])
    return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                       "%s: the model input must be (1, 3, S, S); it is (%lld, %lld, "
                       "%lld, %lld)",
                       where, (long long)in->dims[0], (long long)in->dims[1],
                       (long long)in->dims[2], (long long)in->dims[3]);
  if (out->rank != 4 || out->dims[0] != 1 || out->dims[1] < 1 ||
      out->dims[1] > OSSEG_MAX_CLASSES || out->dims[2] < 1 || out->dims[3] < 1 ||
      out->dims[2] > OSSEG_MAX_SIDE || out->dims[3] > OSSEG_MAX_SIDE)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                       "%s: the model output must be (1, C, H, W) with 1 <= C <= %d",
                       where, OSSEG_MAX_CLASSES);
  m->input_size = (uint32_t)in->dims[2];
  m->out_height = (uint32_t)out->dims[2];
  m->out_width = (uint32_t)out->dims[3];
  size_t nout = (size_t)out->dims[1];

  const char *meta_size = osseg_model_metadata(m->model, "osseg.input_size");
  if (meta_size) {
    int64_t s = parse_size(meta_size);
    if (s == 0)
      return osseg__fail(diag, OSSEG_EINVAL, "%s: metadata osseg.input_size '%s' is not a size",
                         where, meta_size);
    if (s != (int64_t)m->input_size)
      return osseg__fail(diag, OSSEG_EINVAL,
                         "%s: metadata osseg.input_size %lld disagrees with the graph's "
                         "input size %u",
                         where, (long long)s, m->input_size);
  }

  const char *norm = spec->normalize ? spec->normalize
                                     : osseg_model_metadata(m->model, "osseg.normalize");
  int rc = osseg__parse_normalize(norm ? norm : "div255", &m->norm, diag, where);
  if (rc) return rc;

  const char *list = spec->classes ? spec->classes
                                   : osseg_model_metadata(m->model, "osseg.classes");
  if (list) {
    rc = osseg__parse_class_list(list, m->class_names, OSSEG_MAX_CLASSES, diag, where);
    if (rc < 0) return rc;
    m->nclasses = (size_t)rc;
  } else {
    if (nout != OSSEG_CANONICAL_CLASSES)
      return osseg__fail(diag, OSSEG_EINVAL,
                         "%s: the model has %zu output channels and no osseg.classes "
                         "metadata; name its classes (--classes)",
                         where, nout);
    for (; m->nclasses < OSSEG_CANONICAL_CLASSES; m->nclasses++) {
      const char *c = osseg_canonical_class((unsigned)m->nclasses);
      m->class_names[m->nclasses] = osseg__strndup(c, strlen(c));
      if (!m->class_names[m->nclasses]) return OSSEG_ENOMEM;
    }
  }
  if (m->nclasses != nout)
    return osseg__fail(diag, OSSEG_EINVAL, "%s: %zu class names for %zu output channels", where,
                       m->nclasses, nout);

  /* The model's own thresholds (the spec's values were checked). */
  for (size_t c = 0; c < m->nclasses; c++)
    m->threshold[c] = spec->threshold > 0.0f ? spec->threshold : 0.5f;
  for (size_t i = 0; i < spec->nclass_thresholds; i++) {
    const struct osseg_class_threshold *ct = &spec->class_thresholds[i];
    size_t c = 0;
    while (c < m->nclasses && strcmp(m->class_names[c], ct->name) != 0) c++;
    if (c == m->nclasses)
      return osseg__fail(diag, OSSEG_EINVAL, "%s: threshold for class '%s': the model has no "
                         "such class", where, ct->name);
    m->threshold[c] = ct->threshold;
  }
  return 0;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static int probability(float t) { return t > 0.0f && t < 1.0f; }

int osseg_model_spec_check(const struct osseg_model_spec *spec, struct osseg_diag *diag) {
  /* Messages name the file a user gave, else the model's name. */
  char buf[OSSEG_MAX_MODEL_NAME + 16];
  snprintf(buf, sizeof buf, "model %.*s", OSSEG_MAX_MODEL_NAME,
           spec->name ? spec->name : "(unnamed)");
  const char *where = spec->path ? spec->path : buf;
  if (spec->name && !osseg_model_name_valid(spec->name))
    return osseg__fail(diag, OSSEG_EINVAL,
                       "model name '%.*s' must be 1..%d characters of A-Z a-z 0-9 . _ + -",
                       OSSEG_MAX_MODEL_NAME, spec->name, OSSEG_MAX_MODEL_NAME - 1);
  if (!spec->path && !spec->data)
    return osseg__fail(diag, OSSEG_EINVAL, "%s: no file and no data", where);
  if (spec->input_size < 0 || spec->input_size > OSSEG_MAX_SIDE)
    return osseg__fail(diag, OSSEG_EINVAL, "%s: input size %lld is not in 1..%d", where,
                       (long long)spec->input_size, OSSEG_MAX_SIDE);
  if (spec->normalize) {
    struct osseg_normalize n;
    int rc = osseg__parse_normalize(spec->normalize, &n, diag, where);
    if (rc) return rc;
  }
  char *names[OSSEG_MAX_CLASSES];
  int nnames = -1;
  if (spec->classes) {
    nnames = osseg__parse_class_list(spec->classes, names, OSSEG_MAX_CLASSES, diag, where);
    if (nnames < 0) return nnames;
  }
  int rc = 0;
  if (spec->threshold != 0.0f && !probability(spec->threshold))
    rc = osseg__fail(diag, OSSEG_EINVAL, "%s: threshold %g is not in (0, 1)", where,
                     (double)spec->threshold);
  if (spec->nclass_thresholds > OSSEG_MAX_CLASSES && rc == 0)
    rc = osseg__fail(diag, OSSEG_ELIMIT, "%s: more than %d class thresholds", where,
                     OSSEG_MAX_CLASSES);
  for (size_t i = 0; i < spec->nclass_thresholds && rc == 0; i++) {
    const struct osseg_class_threshold *ct = &spec->class_thresholds[i];
    if (!ct->name) {
      rc = osseg__fail(diag, OSSEG_EINVAL, "%s: a class threshold without a class", where);
      break;
    }
    if (!probability(ct->threshold)) {
      rc = osseg__fail(diag, OSSEG_EINVAL, "%s: threshold %g of class %s is not in (0, 1)",
                       where, (double)ct->threshold, ct->name);
      break;
    }
    for (size_t k = 0; k < i; k++)
      if (strcmp(spec->class_thresholds[k].name, ct->name) == 0)
        rc = osseg__fail(diag, OSSEG_EINVAL, "%s: class %s has two thresholds", where,
                         ct->name);
    if (rc == 0 && nnames >= 0) {
      int known = 0;
      for (int k = 0; k < nnames; k++) known |= strcmp(names[k], ct->name) == 0;
      if (!known)
        rc = osseg__fail(diag, OSSEG_EINVAL, "%s: threshold for class '%s': not among its "
                         "classes", where, ct->name);
    }
  }
  for (int k = 0; k < nnames; k++) osseg__free(names[k]);
  return rc;
}

int osseg__loaded_model_create(struct osseg_loaded_model **out,
                               const struct osseg_model_spec *spec,
                               const struct osseg_engine_options *engine,
                               struct osseg_diag *diag) {
  *out = NULL;
  if (!spec->path && !spec->data)
    return osseg__fail(diag, OSSEG_EINVAL, "model %s: no file and no data",
                       spec->name ? spec->name : "(unnamed)");
  const char *name = spec->name ? spec->name : spec->path ? base_name(spec->path) : NULL;
  if (!name || !osseg_model_name_valid(name))
    return osseg__fail(diag, OSSEG_EINVAL,
                       "model name '%.*s' must be 1..%d characters of A-Z a-z 0-9 . _ + -",
                       OSSEG_MAX_MODEL_NAME, name ? name : "", OSSEG_MAX_MODEL_NAME - 1);
  int rc = osseg_model_spec_check(spec, diag);
  if (rc) return rc;
  /* Messages name the file a user gave, else the model's name. */
  char where[OSSEG_MAX_MODEL_NAME + 16];
  if (!spec->path) snprintf(where, sizeof where, "model %s", name);
  const char *w = spec->path ? spec->path : where;

  struct osseg_loaded_model *m = osseg__calloc(1, sizeof *m);
  if (!m) return OSSEG_ENOMEM;
  atomic_init(&m->refs, 1);
  m->name = osseg__strndup(name, strlen(name));
  m->path = osseg__strndup(spec->path ? spec->path : "", spec->path ? strlen(spec->path) : 0);
  if (!m->name || !m->path) {
    free_model(m);
    return OSSEG_ENOMEM;
  }

  struct osseg_engine_options eo = *engine;
  eo.precision = spec->precision;
  eo.input_size = spec->input_size;
  /* Hash and load the same bytes: the file is mapped once. */
  void *map = NULL;
  size_t size = spec->size;
  const void *bytes = spec->data;
  if (spec->path) {
    rc = osseg__map_file(spec->path, eo.max_model_bytes, &map, &size, diag);
    bytes = map;
  }
  if (rc == 0) {
    sha256_hex(bytes, size, m->sha256);
    struct osseg_diag local;
    osseg_diag_clear(&local);
    rc = osseg_model_load_buffer(&m->model, bytes, size, &eo, &local);
    /* The engine does not know the file name; say it once, in front. */
    if (rc) osseg__fail(diag, rc, "%s: %s", w, local.message[0] ? local.message : osseg_strerror(rc));
  }
  osseg__unmap_file(map, size);
  if (rc == 0) rc = describe(m, spec, w, diag);
  if (rc) {
    free_model(m);
    return rc;
  }
  *out = m;
  return 0;
}

/* ----------------------------------------------------------- registry --- */

int osseg_registry_create(struct osseg_registry **out, const struct osseg_engine_options *engine) {
  *out = NULL;
  struct osseg_registry *r = osseg__calloc(1, sizeof *r);
  if (!r) return OSSEG_ENOMEM;
  if (pthread_mutex_init(&r->lock, NULL) != 0) {
    osseg__free(r);
    return OSSEG_EINTERNAL;
  }
  if (engine)
    r->engine = *engine;
  else
    osseg_engine_options_default(&r->engine);
  *out = r;
  return 0;
}

void osseg_registry_free(struct osseg_registry *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n; i++) osseg_loaded_model_unref(r->models[i]);
  osseg__free(r->models);
  pthread_mutex_destroy(&r->lock);
  osseg__free(r);
}

/* Index of name, or where it would go (*found = 0). Caller holds the lock. */
static size_t find(const struct osseg_registry *r, const char *name, int *found) {
  size_t lo = 0, hi = r->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(r->models[mid]->name, name);
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  *found = 0;
  return lo;
}

/* Puts m (whose reference the registry takes over) under its name, with
 * a new generation; a model it replaces comes back in *old for the caller
 * to release outside the lock (freeing a model takes a while), and found
 * says whether there was one. OSSEG_ENOMEM leaves the registry as it was. */
static int install(struct osseg_registry *r, struct osseg_loaded_model *m,
                   struct osseg_loaded_model **old, int *found) {
  pthread_mutex_lock(&r->lock);
  size_t i = find(r, m->name, found);
  if (!*found && r->n == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 8;
    struct osseg_loaded_model **v = osseg__realloc(r->models, cap * sizeof *v);
    if (!v) {
      pthread_mutex_unlock(&r->lock);
      return OSSEG_ENOMEM;
    }
    r->models = v;
    r->cap = cap;
  }
  /* Nobody else reads the generation of a model being installed: it was
   * just loaded, here or into a staging registry. */
  m->generation = ++r->generation;
  if (*found) {
    *old = r->models[i];
  } else {
    memmove(r->models + i + 1, r->models + i, (r->n - i) * sizeof *r->models);
    r->n++;
  }
  r->models[i] = m;
  pthread_mutex_unlock(&r->lock);
  return 0;
}

int osseg_registry_load(struct osseg_registry *r, const struct osseg_model_spec *spec,
                        int *replaced, struct osseg_diag *diag) {
  if (replaced) *replaced = 0;
  struct osseg_loaded_model *m;
  int rc = osseg__loaded_model_create(&m, spec, &r->engine, diag);
  if (rc) return rc;

  struct osseg_loaded_model *old = NULL;
  int found = 0;
  rc = install(r, m, &old, &found);
  if (rc) {
    osseg_loaded_model_unref(m);
    return osseg__fail(diag, rc, "out of memory registering model %s", spec->name);
  }
  /* The old model goes when its last run ends; outside the lock, since
   * freeing a model takes a while. */
  osseg_loaded_model_unref(old);
  if (replaced) *replaced = found;
  return 0;
}

int osseg_registry_put(struct osseg_registry *r, struct osseg_loaded_model *m) {
  struct osseg_loaded_model *old = NULL;
  int found;
  int rc = install(r, osseg_loaded_model_ref(m), &old, &found);
  if (rc) {
    osseg_loaded_model_unref(m);
    return rc;
  }
  osseg_loaded_model_unref(old);
  return 0;
}

int osseg_file_sha256(const char *path, char out[65], struct osseg_diag *diag) {
  void *map = NULL;
  size_t size = 0;
  int rc = osseg__map_file(path, 0, &map, &size, diag);
  if (rc) return rc;
  sha256_hex(map, size, out);
  osseg__unmap_file(map, size);
  return 0;
}

int osseg_registry_unload(struct osseg_registry *r, const char *name) {
  pthread_mutex_lock(&r->lock);
  int found;
  size_t i = find(r, name, &found);
  struct osseg_loaded_model *old = NULL;
  if (found) {
    old = r->models[i];
    memmove(r->models + i, r->models + i + 1, (r->n - i - 1) * sizeof *r->models);
    r->n--;
  }
  pthread_mutex_unlock(&r->lock);
  osseg_loaded_model_unref(old);
  return found ? 0 : OSSEG_ENOTFOUND;
}

size_t osseg_registry_count(const struct osseg_registry *r) {
  pthread_mutex_lock((pthread_mutex_t *)&r->lock);
  size_t n = r->n;
  pthread_mutex_unlock((pthread_mutex_t *)&r->lock);
  return n;
}

int osseg_registry_get(struct osseg_registry *r, const char *name,
                       struct osseg_loaded_model **out) {
  *out = NULL;
  if (!name) return OSSEG_EINVAL;
  pthread_mutex_lock(&r->lock);
  int found;
  size_t i = find(r, name, &found);
  if (found) *out = osseg_loaded_model_ref(r->models[i]);
  pthread_mutex_unlock(&r->lock);
  return found ? 0 : OSSEG_ENOTFOUND;
}

int osseg_registry_get_at(struct osseg_registry *r, size_t i, struct osseg_loaded_model **out) {
  *out = NULL;
  pthread_mutex_lock(&r->lock);
  if (i < r->n) *out = osseg_loaded_model_ref(r->models[i]);
  pthread_mutex_unlock(&r->lock);
  return *out ? 0 : OSSEG_ENOTFOUND;
}
