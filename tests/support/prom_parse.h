/* A small, strict parser of the Prometheus text exposition format 0.0.4,
 * for tests of what osseg writes (promtool is not always installed). It
 * accepts less than Prometheus does: exactly the subset osseg promises.
 *
 *   - Every line ends with a line feed; no empty lines, no other comments
 *     than "# HELP name text" and "# TYPE name type", no timestamps.
 *   - Each family has HELP then TYPE (counter, gauge or histogram) before
 *     its samples, and appears once; its samples follow without another
 *     family in between. Counter names end in _total.
 *   - Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 *     [a-zA-Z_][a-zA-Z0-9_]* (not starting with __); label values are
 *     quoted, with only \\, \" and \n as escapes; no label twice in a
 *     sample, no sample (name and labels) twice.
 *   - Values are numbers as strtod reads them, or +Inf, -Inf, NaN.
 *   - Histograms: for each label set, the _bucket samples have le values
 *     in increasing order ending with "+Inf", counts that never decrease,
 *     a _sum and a _count, and _count equals the +Inf bucket. */
#ifndef OSSEG_TEST_PROM_PARSE_H
#define OSSEG_TEST_PROM_PARSE_H

#include <stddef.h>

struct prom_sample {
  char *name;
  char *labels; /* as written between the braces ("" when none) */
  double value;
};

struct prom_doc {
  struct prom_sample *samples;
  size_t n;
  size_t families;
};

/* Parses text[0, len). Returns 0, or -1 with a message naming the line in
 * err. The document is freed with prom_free in either case. */
int prom_parse(const char *text, size_t len, struct prom_doc *doc, char *err, size_t err_size);
void prom_free(struct prom_doc *doc);
/* The value of the sample name{labels} (labels as written, "" for none);
 * 0, or -1 if there is no such sample. */
int prom_value(const struct prom_doc *doc, const char *name, const char *labels, double *out);

#endif
