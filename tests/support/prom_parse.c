/* A strict parser of the Prometheus text format for tests; see prom_parse.h. */
#include "prom_parse.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct family {
  char *name;
  char type[32];
};

/* A sample while parsing: what prom_sample holds, plus its family, its le
 * (NAN if none) and its labels without le (the histogram series key). */
struct item {
  size_t family;
  int has_le;
  double le;
  char *key;
};

struct parser {
  const char *p, *end;
  size_t line;
  char *err;
  size_t err_size;
  struct family *fam;
  size_t nfam;
  struct item *items;
  struct prom_doc *doc;
};

static int fail(struct parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parser *ps, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(ps->err, ps->err_size, "line %zu: %s", ps->line, msg);
  return -1;
}

static char *dup_range(const char *a, const char *b) {
  size_t n = (size_t)(b - a);
  char *s = malloc(n + 1);
  if (!s) abort();
  memcpy(s, a, n);
  s[n] = '\0';
  return s;
}

static int is_name_start(char c, int colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}
static int is_name_char(char c, int colon) {
  return is_name_start(c, colon) || (c >= '0' && c <= '9');
}

/* A name at *p up to lim; advances *p. Returns its length, 0 if none. */
static size_t scan_name(const char **p, const char *lim, int colon) {
  const char *s = *p;
  if (s >= lim || !is_name_start(*s, colon)) return 0;
  while (s < lim && is_name_char(*s, colon)) s++;
  size_t n = (size_t)(s - *p);
  *p = s;
  return n;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A value: a number strtod reads completely, or +Inf, -Inf, NaN. */
static int parse_value(const char *s, double *out) {
  if (strcmp(s, "+Inf") == 0) return *out = INFINITY, 0;
  if (strcmp(s, "-Inf") == 0) return *out = -INFINITY, 0;
  if (strcmp(s, "NaN") == 0) return *out = NAN, 0;
  if (!*s) return -1;
  /* strtod would take "inf", "nan", hex and leading spaces: not ours. */
  for (const char *c = s; *c; c++)
    if (!strchr("0123456789+-.eE", *c)) return -1;
  char *end;
  *out = strtod(s, &end);
  return *end ? -1 : 0;
}

static size_t family_of(const char *name, const struct family *fam, size_t nfam) {
  for (size_t i = 0; i < nfam; i++)
    if (strcmp(fam[i].name, name) == 0) return i;
  return (size_t)-1;
}

static int comment(struct parser *ps, const char *s, const char *lim, int *want_type) {
  int help = 0;
  if ((size_t)(lim - s) > 7 && memcmp(s, "# HELP ", 7) == 0)
    help = 1;
  else if (!((size_t)(lim - s) > 7 && memcmp(s, "# TYPE ", 7) == 0))
    return fail(ps, "a comment other than # HELP or # TYPE");
  s += 7;
  const char *n0 = s;
  if (!scan_name(&s, lim, 1)) return fail(ps, "no metric name after # %s", help ? "HELP" : "TYPE");
  char *name = dup_range(n0, s);
  if (s >= lim || *s != ' ') {
    free(name);
    return fail(ps, "no space after the metric name");
  }
  s++;
  if (help) {
    if (*want_type) {
      free(name);
      return fail(ps, "# HELP before the previous family's # TYPE");
    }
    if (family_of(name, ps->fam, ps->nfam) != (size_t)-1) {
      int r = fail(ps, "family %s appears twice", name);
      free(name);
      return r;
    }
    for (const char *c = s; c < lim; c++)
      if (*c == '\\' && (c + 1 >= lim || (c[1] != '\\' && c[1] != 'n'))) {
        free(name);
        return fail(ps, "bad escape in # HELP");
      } else if (*c == '\\') {
        c++;
      }
    ps->fam = realloc(ps->fam, (ps->nfam + 1) * sizeof *ps->fam);
    if (!ps->fam) abort();
    ps->fam[ps->nfam].name = name;
    ps->fam[ps->nfam].type[0] = '\0';
    ps->nfam++;
    *want_type = 1;
    return 0;
  }
  if (!*want_type || strcmp(ps->fam[ps->nfam - 1].name, name) != 0) {
    int r = fail(ps, "# TYPE %s does not follow its # HELP", name);
    free(name);
    return r;
  }
  free(name);
  char type[32];
  size_t tn = (size_t)(lim - s);
  if (tn == 0 || tn >= sizeof type) return fail(ps, "bad type");
  memcpy(type, s, tn);
  type[tn] = '\0';
  if (strcmp(type, "counter") && strcmp(type, "gauge") && strcmp(type, "histogram"))
    return fail(ps, "type '%s' is not counter, gauge or histogram", type);
  struct family *f = &ps->fam[ps->nfam - 1];
  if (strcmp(type, "counter") == 0 && !ends_with(f->name, "_total"))
    return fail(ps, "counter %s does not end in _total", f->name);
  snprintf(f->type, sizeof f->type, "%s", type);
  *want_type = 0;
  return 0;
}

/* Appends s[0, n) to a malloc'ed string. */
static void append(char **dst, size_t *len, const char *s, size_t n) {
  *dst = realloc(*dst, *len + n + 1);
  if (!*dst) abort();
  memcpy(*dst + *len, s, n);
  *len += n;
  (*dst)[*len] = '\0';
}

static int sample(struct parser *ps, const char *s, const char *lim) {
  const char *n0 = s;
  if (!scan_name(&s, lim, 1)) return fail(ps, "no metric name");
  char *name = dup_range(n0, s);
  if (ps->nfam == 0 || ps->fam[ps->nfam - 1].type[0] == '\0') {
    int r = fail(ps, "sample %s before its family's # HELP and # TYPE", name);
    free(name);
    return r;
  }
  struct family *f = &ps->fam[ps->nfam - 1];
  int hist = strcmp(f->type, "histogram") == 0;
  int is_bucket = 0;
  char want[3][160];
  snprintf(want[0], sizeof want[0], "%s_bucket", f->name);
  snprintf(want[1], sizeof want[1], "%s_sum", f->name);
  snprintf(want[2], sizeof want[2], "%s_count", f->name);
  if (hist) {
    is_bucket = strcmp(name, want[0]) == 0;
    if (!is_bucket && strcmp(name, want[1]) && strcmp(name, want[2])) {
      int r = fail(ps, "sample %s in histogram family %s", name, f->name);
      free(name);
      return r;
    }
  } else if (strcmp(name, f->name) != 0) {
    int r = fail(ps, "sample %s in family %s", name, f->name);
    free(name);
    return r;
  }

  char *labels = NULL, *key = NULL;
  size_t llen = 0, klen = 0;
  append(&labels, &llen, "", 0);
  append(&key, &klen, "", 0);
  int has_le = 0;
  double le = NAN;
  char seen[8][64];
  int nseen = 0;
  if (s < lim && *s == '{') {
    s++;
    const char *l0 = s;
    for (;;) {
      const char *k0 = s;
      if (!scan_name(&s, lim, 0)) goto bad_label;
      size_t kn = (size_t)(s - k0);
      if (kn >= 64 || (kn >= 2 && k0[0] == '_' && k0[1] == '_')) goto bad_label;
      for (int i = 0; i < nseen; i++)
        if (strlen(seen[i]) == kn && memcmp(seen[i], k0, kn) == 0) goto bad_label;
      if (nseen == 8) goto bad_label;
      memcpy(seen[nseen], k0, kn);
      seen[nseen++][kn] = '\0';
      if (s + 1 >= lim || s[0] != '=' || s[1] != '"') goto bad_label;
      s += 2;
      char *value = NULL;
      size_t vlen = 0;
      append(&value, &vlen, "", 0);
      while (s < lim && *s != '"') {
        if (*s == '\\') {
          if (s + 1 >= lim) break;
          char e = s[1] == 'n' ? '\n' : s[1];
          if (s[1] != 'n' && s[1] != '\\' && s[1] != '"') {
            free(value);
            goto bad_label;
          }
          append(&value, &vlen, &e, 1);
          s += 2;
        } else {
          append(&value, &vlen, s, 1);
          s++;
        }
      }
      if (s >= lim) {
        free(value);
        goto bad_label;
      }
      s++; /* closing quote */
      int is_le = kn == 2 && memcmp(k0, "le", 2) == 0;
      if (is_le) {
        if (!is_bucket || parse_value(value, &le) != 0 || isnan(le)) {
          free(value);
          goto bad_label;
        }
        has_le = 1;
      } else {
        if (klen) append(&key, &klen, ",", 1);
        append(&key, &klen, k0, (size_t)(s - k0));
      }
      free(value);
      if (s < lim && *s == ',') {
        s++;
        continue;
      }
      if (s < lim && *s == '}') break;
      goto bad_label;
    }
    append(&labels, &llen, l0, (size_t)(s - l0));
    s++;
  }
  if (is_bucket && !has_le) {
    free(labels);
    free(key);
    int r = fail(ps, "bucket %s without le", name);
    free(name);
    return r;
  }
  if (s >= lim || *s != ' ') {
    free(labels);
    free(key);
    int r = fail(ps, "%s: no single space before the value", name);
    free(name);
    return r;
  }
  s++;
  char vb[64];
  size_t vn = (size_t)(lim - s);
  double v;
  if (vn == 0 || vn >= sizeof vb) goto bad_value;
  memcpy(vb, s, vn);
  vb[vn] = '\0';
  if (parse_value(vb, &v) != 0) goto bad_value;
  for (size_t i = 0; i < ps->doc->n; i++)
    if (strcmp(ps->doc->samples[i].name, name) == 0 &&
        strcmp(ps->doc->samples[i].labels, labels) == 0) {
      free(labels);
      free(key);
      int r = fail(ps, "sample %s{%s} twice", name, ps->doc->samples[i].labels);
      free(name);
      return r;
    }
  ps->doc->samples = realloc(ps->doc->samples, (ps->doc->n + 1) * sizeof *ps->doc->samples);
  ps->items = realloc(ps->items, (ps->doc->n + 1) * sizeof *ps->items);
  if (!ps->doc->samples || !ps->items) abort();
  ps->doc->samples[ps->doc->n] = (struct prom_sample){name, labels, v};
  ps->items[ps->doc->n] = (struct item){ps->nfam - 1, has_le, le, key};
  ps->doc->n++;
  return 0;
bad_label:
  free(labels);
  free(key);
  {
    int r = fail(ps, "%s: malformed label", name);
    free(name);
    return r;
  }
bad_value:
  free(labels);
  free(key);
  {
    int r = fail(ps, "%s: bad value '%.*s'", name, (int)(vn < 40 ? vn : 40), s);
    free(name);
    return r;
  }
}

/* Every series of every histogram: buckets in increasing le order ending
 * at +Inf, counts non-decreasing, _sum and _count present, _count equal to
 * the +Inf bucket. */
static int check_histograms(struct parser *ps) {
  struct prom_doc *doc = ps->doc;
  for (size_t fi = 0; fi < ps->nfam; fi++) {
    if (strcmp(ps->fam[fi].type, "histogram") != 0) continue;
    char bucket[160], sum[160], count[160];
    snprintf(bucket, sizeof bucket, "%s_bucket", ps->fam[fi].name);
    snprintf(sum, sizeof sum, "%s_sum", ps->fam[fi].name);
    snprintf(count, sizeof count, "%s_count", ps->fam[fi].name);
    size_t nseries = 0;
    for (size_t i = 0; i < doc->n; i++) {
      if (ps->items[i].family != fi) continue;
      /* The first sample of each series (by key) checks the series. */
      int first = 1;
      for (size_t j = 0; j < i && first; j++)
        if (ps->items[j].family == fi && strcmp(ps->items[j].key, ps->items[i].key) == 0)
          first = 0;
      if (!first) continue;
      nseries++;
      const char *key = ps->items[i].key;
      double prev_le = -INFINITY, prev_count = 0, inf_count = NAN;
      int nb = 0, has_sum = 0, has_count = 0;
      double count_value = NAN;
      for (size_t j = 0; j < doc->n; j++) {
        if (ps->items[j].family != fi || strcmp(ps->items[j].key, key) != 0) continue;
        const struct prom_sample *x = &doc->samples[j];
        if (strcmp(x->name, bucket) == 0) {
          if (!isnan(inf_count) || has_sum || has_count) {
            snprintf(ps->err, ps->err_size, "%s{%s}: bucket after +Inf, _sum or _count", bucket,
                     key);
            return -1;
          }
          if (!(ps->items[j].le > prev_le) || (nb && x->value < prev_count)) {
            snprintf(ps->err, ps->err_size,
                     "%s{%s}: le must increase and counts never decrease (le %g, count %g)",
                     bucket, key, ps->items[j].le, x->value);
            return -1;
          }
          prev_le = ps->items[j].le;
          prev_count = x->value;
          if (isinf(prev_le)) inf_count = x->value;
          nb++;
        } else if (strcmp(x->name, sum) == 0) {
          has_sum = 1;
        } else if (strcmp(x->name, count) == 0) {
          has_count = 1;
          count_value = x->value;
        }
      }
      if (isnan(inf_count) || !has_sum || !has_count) {
        snprintf(ps->err, ps->err_size, "%s{%s}: needs a +Inf bucket, _sum and _count",
                 ps->fam[fi].name, key);
        return -1;
      }
      if (count_value != inf_count) {
        snprintf(ps->err, ps->err_size, "%s{%s}: _count %g differs from the +Inf bucket %g",
                 ps->fam[fi].name, key, count_value, inf_count);
        return -1;
      }
    }
    if (nseries == 0) {
      snprintf(ps->err, ps->err_size, "histogram %s has no samples", ps->fam[fi].name);
      return -1;
    }
  }
  return 0;
}

int prom_parse(const char *text, size_t len, struct prom_doc *doc, char *err, size_t err_size) {
  memset(doc, 0, sizeof *doc);
  struct parser ps = {.p = text, .end = text + len, .err = err, .err_size = err_size, .doc = doc};
  int want_type = 0, rc = 0;
  if (err_size) err[0] = '\0';
  if (len == 0 || text[len - 1] != '\n') {
    ps.line = 1;
    rc = fail(&ps, "the text does not end with a line feed");
  }
  while (rc == 0 && ps.p < ps.end) {
    ps.line++;
    const char *lim = memchr(ps.p, '\n', (size_t)(ps.end - ps.p));
    if (memchr(ps.p, '\0', (size_t)(lim - ps.p))) {
      rc = fail(&ps, "a NUL byte");
      break;
    }
    if (lim == ps.p)
      rc = fail(&ps, "an empty line");
    else if (ps.p[0] == '#')
      rc = comment(&ps, ps.p, lim, &want_type);
    else if (want_type)
      rc = fail(&ps, "a sample between # HELP and # TYPE");
    else
      rc = sample(&ps, ps.p, lim);
    ps.p = lim + 1;
  }
  if (rc == 0 && want_type) rc = fail(&ps, "# HELP without # TYPE at the end");
  if (rc == 0) rc = check_histograms(&ps);
  doc->families = ps.nfam;
  for (size_t i = 0; i < ps.nfam; i++) free(ps.fam[i].name);
  free(ps.fam);
  for (size_t i = 0; i < doc->n; i++) free(ps.items[i].key);
  free(ps.items);
  return rc;
}

void prom_free(struct prom_doc *doc) {
  for (size_t i = 0; i < doc->n; i++) {
    free(doc->samples[i].name);
    free(doc->samples[i].labels);
  }
  free(doc->samples);
  memset(doc, 0, sizeof *doc);
}

int prom_value(const struct prom_doc *doc, const char *name, const char *labels, double *out) {
  for (size_t i = 0; i < doc->n; i++)
    if (strcmp(doc->samples[i].name, name) == 0 && strcmp(doc->samples[i].labels, labels) == 0) {
      *out = doc->samples[i].value;
      return 0;
    }
  return -1;
}
