/* Stats -> Prometheus text exposition format 0.0.4; see osseg_prometheus.h. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "osseg_base.h"
#include "osseg_prometheus.h"

/* A growing text; after the first failed allocation every append is a
 * no-op and oom stays set, so the callers need not check each one. */
struct out {
  char *p;
  size_t len, cap;
  int oom;
};

static void put(struct out *o, const char *s, size_t n) {
  if (o->oom) return;
  if (o->len + n + 1 > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n + 1) cap *= 2;
    char *p = osseg__realloc(o->p, cap);
    if (!p) {
      o->oom = 1;
      return;
    }
    o->p = p;
    o->cap = cap;
  }
  memcpy(o->p + o->len, s, n);
  o->len += n;
  o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* The shortest %g form that reads back as the same double; +Inf, -Inf and
 * NaN as the format spells them. */
static void format_double(char *b, size_t size, double v) {
  if (isnan(v)) {
    snprintf(b, size, "NaN");
    return;
  }
  if (isinf(v)) {
    snprintf(b, size, "%s", v > 0 ? "+Inf" : "-Inf");
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(b, size, "%.*g", prec, v);
    if (strtod(b, NULL) == v) break;
  }
}

static void put_double(struct out *o, double v) {
  char b[40];
  format_double(b, sizeof b, v);
  puts_(o, b);
}

static void put_u64(struct out *o, uint64_t v) {
  char b[24];
  snprintf(b, sizeof b, "%" PRIu64, v);
  puts_(o, b);
}

/* A label value between double quotes: backslash, double quote and line
 * feed escaped as the format requires. */
static void put_label_value(struct out *o, const char *v) {
  put(o, "\"", 1);
  for (const char *p = v ? v : ""; *p; p++) {
    switch (*p) {
      case '\\': put(o, "\\\\", 2); break;
      case '"': put(o, "\\\"", 2); break;
      case '\n': put(o, "\\n", 2); break;
      default: put(o, p, 1); break;
    }
  }
  put(o, "\"", 1);
}

static void family(struct out *o, const char *name, const char *type, const char *help) {
  puts_(o, "# HELP ");
  puts_(o, name);
  put(o, " ", 1);
  puts_(o, help); /* constant text, no backslash or line feed to escape */
  puts_(o, "\n# TYPE ");
  puts_(o, name);
  put(o, " ", 1);
  puts_(o, type);
  put(o, "\n", 1);
}

/* Up to two labels; a NULL key ends the list. */
struct labels {
  const char *k1, *v1, *k2, *v2;
};

static void put_labels(struct out *o, const struct labels *l, const char *le) {
  int n = 0;
  const char *keys[3], *vals[3];
  if (l && l->k1) keys[n] = l->k1, vals[n++] = l->v1;
  if (l && l->k1 && l->k2) keys[n] = l->k2, vals[n++] = l->v2;
  if (le) keys[n] = "le", vals[n++] = le;
  if (n == 0) return;
  put(o, "{", 1);
  for (int i = 0; i < n; i++) {
    if (i) put(o, ",", 1);
    puts_(o, keys[i]);
    put(o, "=", 1);
    put_label_value(o, vals[i]);
  }
  put(o, "}", 1);
}

static void sample_u64(struct out *o, const char *name, const struct labels *l, uint64_t v) {
  puts_(o, name);
  put_labels(o, l, NULL);
  put(o, " ", 1);
  put_u64(o, v);
  put(o, "\n", 1);
}

static void sample_double(struct out *o, const char *name, const struct labels *l, double v) {
  puts_(o, name);
  put_labels(o, l, NULL);
  put(o, " ", 1);
  put_double(o, v);
  put(o, "\n", 1);
}

/* The samples of one histogram: cumulative buckets in seconds ending with
 * +Inf, then _sum (seconds) and _count. */
static void histogram(struct out *o, const char *name, const struct labels *l,
                      const Osseg__Wire__Stats__Histogram *h) {
  char metric[128], le[40];
  int saw_inf = 0;
  snprintf(metric, sizeof metric, "%s_bucket", name);
  for (size_t i = 0; i < h->n_buckets; i++) {
    double bound = h->buckets[i]->le_ms;
    if (isnan(bound)) continue; /* not a bound; nothing to say about it */
    if (isinf(bound) && bound > 0) saw_inf = 1;
    format_double(le, sizeof le, bound / 1000.0);
    puts_(o, metric);
    put_labels(o, l, le);
    put(o, " ", 1);
    put_u64(o, h->buckets[i]->count);
    put(o, "\n", 1);
  }
  if (!saw_inf) {
    puts_(o, metric);
    put_labels(o, l, "+Inf");
    put(o, " ", 1);
    put_u64(o, h->count);
    put(o, "\n", 1);
  }
  snprintf(metric, sizeof metric, "%s_sum", name);
  sample_double(o, metric, l, h->sum_ms / 1000.0);
  snprintf(metric, sizeof metric, "%s_count", name);
  sample_u64(o, metric, l, h->count);
}

int osseg_prometheus_format(const Osseg__Wire__Stats *s, char **text, size_t *len) {
  struct out o = {0};
  struct labels l = {0};

  family(&o, "osseg_requests_total", "counter",
         "Requests by outcome: every Segment once, and refused requests of other kinds.");
  for (size_t i = 0; i < s->n_outcomes; i++) {
    l = (struct labels){"outcome", s->outcomes[i]->name, NULL, NULL};
    sample_u64(&o, "osseg_requests_total", &l, s->outcomes[i]->count);
  }

  if (s->n_model_requests) {
    family(&o, "osseg_model_requests_total", "counter",
           "Segment requests by model and outcome; an ensemble counts once for each of its "
           "models.");
    for (size_t i = 0; i < s->n_model_requests; i++) {
      const Osseg__Wire__Stats__ModelOutcome *m = s->model_requests[i];
      l = (struct labels){"model", m->model, "outcome", m->outcome};
      sample_u64(&o, "osseg_model_requests_total", &l, m->count);
    }
  }

  if (s->total) {
    family(&o, "osseg_request_duration_seconds", "histogram",
           "Time from receipt to the last response of Segments that ended with Done.");
    histogram(&o, "osseg_request_duration_seconds", NULL, s->total);
  }
  if (s->queue_wait) {
    family(&o, "osseg_queue_wait_seconds", "histogram",
           "Time Segments waited in the queue before a worker took them.");
    histogram(&o, "osseg_queue_wait_seconds", NULL, s->queue_wait);
  }
  if (s->n_model_metrics) {
    family(&o, "osseg_inference_duration_seconds", "histogram",
           "Engine time of each model run in Segments that ended with Done.");
    for (size_t i = 0; i < s->n_model_metrics; i++) {
      const Osseg__Wire__Stats__ModelMetrics *m = s->model_metrics[i];
      if (!m->inference) continue;
      l = (struct labels){"model", m->model, NULL, NULL};
      histogram(&o, "osseg_inference_duration_seconds", &l, m->inference);
    }
  }

  family(&o, "osseg_queue_depth", "gauge", "Segment requests waiting for a worker.");
  if (s->n_queue_depths) {
    for (size_t i = 0; i < s->n_queue_depths; i++) {
      l = (struct labels){"priority", s->queue_depths[i]->priority, NULL, NULL};
      sample_u64(&o, "osseg_queue_depth", &l, s->queue_depths[i]->depth);
    }
  } else {
    sample_u64(&o, "osseg_queue_depth", NULL, s->queue_depth);
  }
  if (s->has_in_flight) {
    family(&o, "osseg_requests_in_flight", "gauge", "Segment requests accepted and not done.");
    sample_u64(&o, "osseg_requests_in_flight", NULL, s->in_flight);
  }
  family(&o, "osseg_connections", "gauge", "Open client connections.");
  sample_u64(&o, "osseg_connections", NULL, s->connections);
  family(&o, "osseg_connections_total", "counter", "Client connections accepted since start.");
  sample_u64(&o, "osseg_connections_total", NULL, s->connections_total);
  if (s->has_refused_peers) {
    family(&o, "osseg_refused_peers_total", "counter",
           "Connections refused because the peer is not allowed.");
    sample_u64(&o, "osseg_refused_peers_total", NULL, s->refused_peers);
  }
  if (s->has_audit_errors) {
    family(&o, "osseg_audit_errors_total", "counter",
           "Audit log lines that could not be written.");
    sample_u64(&o, "osseg_audit_errors_total", NULL, s->audit_errors);
  }
  family(&o, "osseg_received_bytes_total", "counter", "Bytes read from clients.");
  sample_u64(&o, "osseg_received_bytes_total", NULL, s->bytes_in);
  family(&o, "osseg_sent_bytes_total", "counter", "Bytes queued for writing to clients.");
  sample_u64(&o, "osseg_sent_bytes_total", NULL, s->bytes_out);

  if (s->n_model_metrics) {
    family(&o, "osseg_model_load_seconds", "gauge",
           "Time the model's last load took (read, hash, compile).");
    for (size_t i = 0; i < s->n_model_metrics; i++) {
      l = (struct labels){"model", s->model_metrics[i]->model, NULL, NULL};
      sample_double(&o, "osseg_model_load_seconds", &l, s->model_metrics[i]->load_ms / 1000.0);
    }
    family(&o, "osseg_model_warmup_seconds", "gauge",
           "Time the model's warm-up inference took.");
    for (size_t i = 0; i < s->n_model_metrics; i++) {
      l = (struct labels){"model", s->model_metrics[i]->model, NULL, NULL};
      sample_double(&o, "osseg_model_warmup_seconds", &l,
                    s->model_metrics[i]->warmup_ms / 1000.0);
    }
    family(&o, "osseg_model_reloads_total", "counter", "Reloads of the model since start.");
    for (size_t i = 0; i < s->n_model_metrics; i++) {
      l = (struct labels){"model", s->model_metrics[i]->model, NULL, NULL};
      sample_u64(&o, "osseg_model_reloads_total", &l, s->model_metrics[i]->reloads);
    }
  }
  if (s->has_start_time_s) {
    family(&o, "osseg_start_time_seconds", "gauge", "When the daemon started, in Unix time.");
    sample_double(&o, "osseg_start_time_seconds", NULL, s->start_time_s);
  }
  if (s->has_uptime_s) {
    family(&o, "osseg_uptime_seconds", "gauge", "Seconds since the daemon started.");
    sample_double(&o, "osseg_uptime_seconds", NULL, s->uptime_s);
  }

  if (!o.oom && !o.p) put(&o, "", 0); /* never NULL on success */
  if (o.oom) {
    osseg__free(o.p);
    *text = NULL;
    if (len) *len = 0;
    return OSSEG_ENOMEM;
  }
  *text = o.p;
  if (len) *len = o.len;
  return 0;
}
