/* Ground truth from the dataset's label JSON: parsed by jansson, checked
 * against the label format and the class list, and rasterised by
 * osseg_polygon_fill, the same kernel osseg-phantom draws its gt.csv masks
 * with (so a phantom's JSON gives its gt.csv exactly).
 *
 * Parsing and rasterising are two steps because only the second needs the
 * image's size: a request is refused for a bad label before its image is
 * decoded, and the polygons wait in a compact form (a few bytes a vertex,
 * none of jansson's tree) until the worker knows the size. */
#include <jansson.h>
#include <string.h>

#include "pipeline_internal.h"

/* points[first, first + n) of struct osseg_labels. */
struct label_polygon {
  size_t first;
  size_t n;
};

struct osseg_labels {
  size_t nclasses;
  /* Polygons grouped by class: class c has polygons[start[c], start[c+1]). */
  size_t start[OSSEG_MAX_CLASSES + 1];
  struct label_polygon *polygons;
  struct osseg_point *points;
};

void osseg_label_json_limits_default(struct osseg_label_json_limits *lim) {
  lim->max_bytes = (uint64_t)4 << 20;
  lim->max_depth = 16;
  lim->max_points = (uint64_t)1 << 20;
  lim->max_coordinate = (uint32_t)1 << 20;
}

/* ------------------------------------------------------------- messages --- */

static const char *json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
  }
  return "a value";
}

/* A label for a one-line message: cut, control characters replaced. */
static const char *printable(const char *s, size_t len, char *buf, size_t size) {
  size_t n = 0;
  for (; n < len && n + 4 < size && n < 64; n++) {
    unsigned char c = (unsigned char)s[n];
    buf[n] = c < 0x20 || c == 0x7f ? '?' : (char)c;
  }
  if (n < len) {
    memcpy(buf + n, "...", 3);
    n += 3;
  }
  buf[n] = '\0';
  return buf;
}

/* ------------------------------------------------------------- parsing --- */

/* What a parse needs at hand, for checks and messages. */
struct parse {
  const char *name;
  const char *const *classes;
  size_t nclasses;
  const struct osseg_label_json_limits *lim;
  struct osseg_diag *diag;
};

/* Whether a container sits deeper than max levels (the top level is 1).
 * The recursion is bounded by jansson, which refuses deeper than
 * JSON_PARSER_MAX_DEPTH (2048) while parsing. */
static int too_deep(json_t *v, unsigned level, unsigned max) {
  if (!json_is_array(v) && !json_is_object(v)) return 0;
  if (level > max) return 1;
  json_t *child;
  if (json_is_array(v)) {
    size_t i;
    json_array_foreach(v, i, child) if (too_deep(child, level + 1, max)) return 1;
  } else {
    const char *key;
    json_object_foreach(v, key, child) if (too_deep(child, level + 1, max)) return 1;
  }
  return 0;
}

/* Index of a label among the classes (exact spelling), or -1. */
static int class_of(const struct parse *ps, const char *s, size_t len) {
  for (size_t c = 0; c < ps->nclasses; c++)
    if (strlen(ps->classes[c]) == len && memcmp(ps->classes[c], s, len) == 0) return (int)c;
  return -1;
}

/* Checks annotation i ({"label": ..., "points": [[x, y], ...]}) and gives
 * its class and point count; *total counts the points of all annotations
 * against max_points. */
static int check_annotation(const struct parse *ps, size_t i, json_t *ann, size_t *cls,
                            size_t *npoints, uint64_t *total) {
  struct osseg_diag *diag = ps->diag;
  const char *name = ps->name;
  if (!json_is_object(ann))
    return osseg__fail(diag, OSSEG_EPARSE,
                       "%s: annotations[%zu]: an object with \"label\" and \"points\" "
                       "expected, not %s",
                       name, i, json_type_name(ann));
  json_t *label = json_object_get(ann, "label");
  if (!label)
    return osseg__fail(diag, OSSEG_EPARSE, "%s: annotations[%zu]: no \"label\"", name, i);
  if (!json_is_string(label))
    return osseg__fail(diag, OSSEG_EPARSE, "%s: annotations[%zu].label: a string expected, not %s",
                       name, i, json_type_name(label));
  char shown[80];
  const char *text = json_string_value(label);
  size_t text_len = json_string_length(label);
  int c = class_of(ps, text, text_len);
  if (c < 0)
    return osseg__fail(diag, OSSEG_ENOTFOUND,
                       "%s: annotations[%zu].label: '%s' is none of the %zu classes (%s ... %s)",
                       name, i, printable(text, text_len, shown, sizeof shown), ps->nclasses,
                       ps->classes[0], ps->classes[ps->nclasses - 1]);
  const char *cname = ps->classes[c];

  json_t *points = json_object_get(ann, "points");
  if (!points)
    return osseg__fail(diag, OSSEG_EPARSE, "%s: annotations[%zu] (%s): no \"points\"", name, i,
                       cname);
  if (!json_is_array(points))
    return osseg__fail(diag, OSSEG_EPARSE,
                       "%s: annotations[%zu] (%s): points: an array of [x, y] expected, not %s",
                       name, i, cname, json_type_name(points));
  size_t n = json_array_size(points);
  if (n < 3)
    return osseg__fail(diag, OSSEG_EPARSE,
                       "%s: annotations[%zu] (%s): points: %zu point%s; a polygon needs at "
                       "least 3",
                       name, i, cname, n, n == 1 ? "" : "s");
  if (n > ps->lim->max_points - *total)
    return osseg__fail(diag, OSSEG_ELIMIT,
                       "%s: annotations[%zu] (%s): more than %llu points in all annotations "
                       "(the limit)",
                       name, i, cname, (unsigned long long)ps->lim->max_points);
  int64_t max = ps->lim->max_coordinate;
  for (size_t j = 0; j < n; j++) {
    json_t *pt = json_array_get(points, j);
    if (!json_is_array(pt))
      return osseg__fail(diag, OSSEG_EPARSE,
                         "%s: annotations[%zu] (%s): points[%zu]: [x, y] expected, not %s", name,
                         i, cname, j, json_type_name(pt));
    if (json_array_size(pt) != 2)
      return osseg__fail(diag, OSSEG_EPARSE,
                         "%s: annotations[%zu] (%s): points[%zu]: [x, y] expected, not %zu "
                         "values",
                         name, i, cname, j, json_array_size(pt));
    for (int k = 0; k < 2; k++) {
      json_t *v = json_array_get(pt, (size_t)k);
      if (json_is_real(v))
        return osseg__fail(diag, OSSEG_EPARSE,
                           "%s: annotations[%zu] (%s): points[%zu][%d]: %.17g is written as a "
                           "real number; vertices are whole pixels, written as integers "
                           "(12, not 12.0 or 12.5)",
                           name, i, cname, j, k, json_real_value(v));
      if (!json_is_integer(v))
        return osseg__fail(diag, OSSEG_EPARSE,
                           "%s: annotations[%zu] (%s): points[%zu][%d]: an integer expected, "
                           "not %s",
                           name, i, cname, j, k, json_type_name(v));
      json_int_t x = json_integer_value(v);
      if (x < -max || x > max)
        return osseg__fail(diag, OSSEG_ERANGE,
                           "%s: annotations[%zu] (%s): points[%zu][%d]: %lld is far outside "
                           "any image (the limit is %lld)",
                           name, i, cname, j, k, (long long)x, (long long)max);
    }
  }
  *cls = (size_t)c;
  *npoints = n;
  *total += n;
  return 0;
}

/* The top level: an object whose "annotations" is an array. */
static int annotations_of(const struct parse *ps, json_t *root, json_t **out) {
  if (!json_is_object(root))
    return osseg__fail(ps->diag, OSSEG_EPARSE,
                       "%s: the top level is %s, not an object with \"annotations\"", ps->name,
                       json_type_name(root));
  json_t *a = json_object_get(root, "annotations");
  if (!a)
    return osseg__fail(ps->diag, OSSEG_EPARSE, "%s: no \"annotations\" at the top level",
                       ps->name);
  if (!json_is_array(a))
    return osseg__fail(ps->diag, OSSEG_EPARSE, "%s: annotations: an array expected, not %s",
                       ps->name, json_type_name(a));
  *out = a;
  return 0;
}

/* Builds the labels from checked annotations: polygons grouped by class
 * (a counting sort: cls[i] and count[i] from check_annotation). */
static int build(struct osseg_labels *l, json_t *anns, const size_t *cls, const size_t *count,
                 uint64_t total) {
  size_t nann = json_array_size(anns);
  l->polygons = osseg__malloc((nann ? nann : 1) * sizeof *l->polygons);
  l->points = osseg__malloc((total ? (size_t)total : 1) * sizeof *l->points);
  if (!l->polygons || !l->points) return OSSEG_ENOMEM;
  size_t next[OSSEG_MAX_CLASSES];
  memset(l->start, 0, sizeof l->start);
  for (size_t i = 0; i < nann; i++) l->start[cls[i] + 1]++;
  for (size_t c = 0; c < l->nclasses; c++) {
    l->start[c + 1] += l->start[c];
    next[c] = l->start[c];
  }
  for (size_t c = l->nclasses; c < OSSEG_MAX_CLASSES; c++) l->start[c + 1] = l->start[c];
  size_t first = 0;
  for (size_t i = 0; i < nann; i++) {
    json_t *points = json_object_get(json_array_get(anns, i), "points");
    struct label_polygon *pg = &l->polygons[next[cls[i]]++];
    pg->first = first;
    pg->n = count[i];
    for (size_t j = 0; j < count[i]; j++) {
      json_t *pt = json_array_get(points, j);
      /* Checked to be integers within max_coordinate (< 2^31). */
      l->points[first + j].x = (int32_t)json_integer_value(json_array_get(pt, 0));
      l->points[first + j].y = (int32_t)json_integer_value(json_array_get(pt, 1));
    }
    first += count[i];
  }
  return 0;
}

int osseg_labels_parse_json(struct osseg_labels **out, const char *name, const char *json,
                            size_t len, const char *const *classes, size_t nclasses,
                            const struct osseg_label_json_limits *lim,
                            struct osseg_diag *diag) {
  if (!name) name = "label JSON";
  if (!out || (!json && len) || !classes || nclasses == 0 || nclasses > OSSEG_MAX_CLASSES)
    return osseg__fail(diag, OSSEG_EINVAL, "%s: invalid arguments", name);
  *out = NULL;
  for (size_t c = 0; c < nclasses; c++)
    if (!classes[c]) return osseg__fail(diag, OSSEG_EINVAL, "%s: class %zu has no name", name, c);
  struct osseg_label_json_limits defaults;
  if (!lim) {
    osseg_label_json_limits_default(&defaults);
    lim = &defaults;
  }
  if (lim->max_coordinate > INT32_MAX)
    return osseg__fail(diag, OSSEG_EINVAL, "%s: max_coordinate %lu is past 32-bit vertices", name,
                       (unsigned long)lim->max_coordinate);
  if (len > lim->max_bytes)
    return osseg__fail(diag, OSSEG_ELIMIT, "%s: %zu bytes, over the limit of %llu", name, len,
                       (unsigned long long)lim->max_bytes);

  json_error_t err;
  json_t *root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &err);
  if (!root) {
    enum json_error_code jc = json_error_code(&err);
    int rc = jc == json_error_out_of_memory      ? OSSEG_ENOMEM
             : jc == json_error_numeric_overflow ? OSSEG_ERANGE
             : jc == json_error_stack_overflow   ? OSSEG_ELIMIT
                                                 : OSSEG_EPARSE;
    return osseg__fail(diag, rc, "%s:%d:%d: %s", name, err.line, err.column, err.text);
  }
  struct parse ps = {.name = name, .classes = classes, .nclasses = nclasses, .lim = lim,
                     .diag = diag};
  struct osseg_labels *l = NULL;
  size_t *cls = NULL;
  json_t *anns = NULL;
  int rc = 0;
  if (too_deep(root, 1, lim->max_depth))
    rc = osseg__fail(diag, OSSEG_ELIMIT, "%s: JSON nested deeper than %u levels (the limit)",
                     name, lim->max_depth);
  if (rc == 0) rc = annotations_of(&ps, root, &anns);
  size_t nann = anns ? json_array_size(anns) : 0;
  if (rc == 0) {
    cls = osseg__malloc(2 * (nann ? nann : 1) * sizeof *cls); /* classes, then counts */
    l = osseg__calloc(1, sizeof *l);
    if (!cls || !l) rc = osseg__fail(diag, OSSEG_ENOMEM, "%s: out of memory", name);
  }
  uint64_t total = 0;
  for (size_t i = 0; rc == 0 && i < nann; i++)
    rc = check_annotation(&ps, i, json_array_get(anns, i), &cls[i], &cls[nann + i], &total);
  if (rc == 0) {
    l->nclasses = nclasses;
    rc = build(l, anns, cls, cls + nann, total);
    if (rc) osseg__fail(diag, rc, "%s: out of memory", name);
  }
  osseg__free(cls);
  json_decref(root);
  if (rc) {
    osseg_labels_free(l);
    return rc;
  }
  *out = l;
  return 0;
}

void osseg_labels_free(struct osseg_labels *l) {
  if (!l) return;
  osseg__free(l->polygons);
  osseg__free(l->points);
  osseg__free(l);
}

size_t osseg_labels_class_count(const struct osseg_labels *l) { return l->nclasses; }

size_t osseg_labels_polygon_count(const struct osseg_labels *l, size_t c) {
  return c < l->nclasses ? l->start[c + 1] - l->start[c] : 0;
}

/* ---------------------------------------------------------- rasterising --- */

int osseg_labels_rasterize(const struct osseg_labels *l, struct osseg_bitmask *mask,
                           struct osseg_runs *runs, struct osseg_ground_truth *gt,
                           struct osseg_diag *diag) {
  if (!l || !mask || !mask->bits || !runs || !gt)
    return osseg__fail(diag, OSSEG_EINVAL, "rasterising labels: invalid arguments");
  memset(gt, 0, sizeof *gt);
  for (size_t c = 0; c < l->nclasses; c++) {
    runs[c].n = 0;
    if (l->start[c + 1] > l->start[c]) {
      osseg_bitmask_clear(mask);
      /* One polygon at a time: filled together, a polygon inside another
       * would cut a hole (even-odd) instead of uniting with it. */
      for (size_t k = l->start[c]; k < l->start[c + 1]; k++) {
        const struct label_polygon *pg = &l->polygons[k];
        int rc = osseg_polygon_fill1(mask, l->points + pg->first, pg->n);
        if (rc)
          return osseg__fail(diag, rc, "rasterising the labels of class %zu: %s", c,
                             osseg_strerror(rc));
      }
      int rc = osseg_bitmask_to_runs(mask, &runs[c]);
      if (rc)
        return osseg__fail(diag, rc, "rasterising the labels of class %zu: %s", c,
                           osseg_strerror(rc));
    }
    gt->has[c] = 1;
    gt->runs[c] = runs[c].v;
    gt->nruns[c] = runs[c].n;
  }
  return 0;
}
