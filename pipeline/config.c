/* Canonical classes, and the parsing of model metadata values (class
 * lists, normalisation). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_internal.h"

static const char *const canonical_classes[OSSEG_CANONICAL_CLASSES] = {
    "finger-1",  "finger-2",  "finger-3",  "finger-4",  "finger-5",
    "finger-6",  "finger-7",  "finger-8",  "finger-9",  "finger-10",
    "finger-11", "finger-12", "finger-13", "finger-14", "finger-15",
    "finger-16", "finger-17", "finger-18", "finger-19", "Trapezium",
    "Trapezoid", "Capitate",  "Hamate",    "Scaphoid",  "Lunate",
    "Triquetrum", "Pisiform", "Radius",    "Ulna"};

const char *osseg_canonical_class(unsigned i) {
  return i < OSSEG_CANONICAL_CLASSES ? canonical_classes[i] : NULL;
}

/* Parses 1 or 3 comma-separated floats; one value applies to all channels. */
static int parse_triple(const char *s, size_t len, float out[3]) {
  char buf[128];
  if (len == 0 || len >= sizeof buf) return -1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  char *p = buf;
  int n = 0;
  for (;;) {
    if (n == 3) return -1; /* more than three values */
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno != 0 || !isfinite(v)) return -1;
    out[n++] = (float)v;
    while (*end == ' ') end++;
    if (*end == '\0') break;
    if (*end != ',') return -1;
    p = end + 1;
  }
  if (n == 1) out[1] = out[2] = out[0];
  else if (n != 3) return -1;
  return 0;
}

int osseg__parse_normalize(const char *s, struct osseg_normalize *out,
                           struct osseg_diag *diag, const char *where) {
  struct osseg_normalize n = {{0, 0, 0}, {1, 1, 1}};
  if (strcmp(s, "div255") == 0 || strcmp(s, "none") == 0) {
    *out = n;
    return 0;
  }
  if (strcmp(s, "imagenet") == 0) {
    struct osseg_normalize im = {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
    *out = im;
    return 0;
  }
  const char *semi = strchr(s, ';');
  if (strncmp(s, "mean=", 5) != 0 || !semi || strncmp(semi + 1, "std=", 4) != 0 ||
      parse_triple(s + 5, (size_t)(semi - s - 5), n.mean) != 0 ||
      parse_triple(semi + 5, strlen(semi + 5), n.std) != 0)
    return osseg__fail(diag, OSSEG_EINVAL,
                       "%s: normalisation '%s' is not div255, imagenet or "
                       "mean=a[,b,c];std=d[,e,f]",
                       where, s);
  for (int c = 0; c < 3; c++)
    if (!(n.std[c] > 0.0f))
      return osseg__fail(diag, OSSEG_EINVAL, "%s: normalisation '%s' has a std <= 0",
                         where, s);
  *out = n;
  return 0;
}

int osseg__parse_class_list(const char *s, char **names, size_t max,
                            struct osseg_diag *diag, const char *where) {
  size_t n = 0;
  const char *p = s;
  int rc = 0;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    const char *a = p, *b = p + len;
    while (a < b && isspace((unsigned char)*a)) a++;
    while (b > a && isspace((unsigned char)b[-1])) b--;
    if (a == b) {
      rc = osseg__fail(diag, OSSEG_EINVAL, "%s: class list has an empty name (item %zu)",
                       where, n + 1);
      goto fail;
    }
    if (n == max) {
      rc = osseg__fail(diag, OSSEG_ELIMIT, "%s: more than %zu classes", where, max);
      goto fail;
    }
    for (size_t i = 0; i < n; i++)
      if (strlen(names[i]) == (size_t)(b - a) && memcmp(names[i], a, (size_t)(b - a)) == 0) {
        rc = osseg__fail(diag, OSSEG_EINVAL, "%s: class '%.*s' is listed twice", where,
                         (int)(b - a), a);
        goto fail;
      }
    names[n] = osseg__strndup(a, (size_t)(b - a));
    if (!names[n]) {
      rc = OSSEG_ENOMEM;
      goto fail;
    }
    n++;
    if (!end) break;
    p = end + 1;
  }
  return (int)n;
fail:
  for (size_t i = 0; i < n; i++) osseg__free(names[i]);
  return rc;
}
