/* The daemon's counters and the Stats message made of them (the answer to
 * a Stats request, `osseg stats --prometheus` and --metrics-file).
 *
 * Every counter lives in struct ossegd and changes on the loop thread
 * only: workers never touch one. What a worker measures (queue wait,
 * total, engine time per model) it writes into its request before handing
 * the request back through the completion queue, whose mutex orders those
 * writes before the loop reads them in ossegd__metrics_finished. Queue
 * depths are the scheduler's, read under its mutex. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_internal.h"
#include "osseg_prometheus.h"

/* Prometheus-style bounds for 5 ms .. 60 s: a tiny model's inference sits
 * in the first buckets, a 2048^2 ensemble on two cores in the last ones. */
const double ossegd__bucket_le_ms[OSSEGD_NBUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000, 30000, 60000, INFINITY};
const char *const ossegd__outcome_names[OSSEGD_NOUTCOMES] = {
    "ok", "INTERNAL", "BAD_REQUEST", "UNKNOWN_MODEL", "IMAGE_TOO_LARGE",
    "BAD_IMAGE", "BUSY", "DEADLINE_EXCEEDED", "CANCELLED"};

void ossegd__histogram_observe(struct ossegd__histogram *h, double ms) {
  for (int b = 0; b < OSSEGD_NBUCKETS; b++)
    if (ms <= ossegd__bucket_le_ms[b]) h->le[b]++;
  h->sum_ms += ms;
  h->count++;
}

/* outcome: -1 for ok, else an Error code. */
static int outcome_index(int outcome) {
  int o = outcome < 0 ? 0 : outcome + 1;
  return o < OSSEGD_NOUTCOMES ? o : -1;
}

/* Counts a Segment once for each distinct registered model it names.
 * Names come from the client, so they are only compared, never kept: a
 * label is always a registered model's name. A list longer than a request
 * may have is not looked at (it was refused for that). */
static void count_models(struct ossegd *d, const Osseg__Wire__Segment *seg, int o) {
  if (!seg || seg->n_models > OSSEG_MAX_MODELS) return;
  _Static_assert(OSSEGD_MAX_MODELS <= 64, "one bit per model in `seen`");
  uint64_t seen = 0;
  for (size_t i = 0; i < seg->n_models; i++) {
    if (!seg->models[i]) continue;
    for (size_t k = 0; k < d->nmodels; k++)
      if (!(seen >> k & 1) && strcmp(d->models[k].name, seg->models[i]) == 0) {
        seen |= (uint64_t)1 << k;
        d->models[k].requests[o]++;
        break;
      }
  }
}

void ossegd__metrics_refused(struct ossegd *d, int code, const Osseg__Wire__Segment *seg) {
  int o = outcome_index(code);
  if (o <= 0) return;
  d->outcomes[o]++;
  count_models(d, seg, o);
}

void ossegd__metrics_finished(struct ossegd *d, const struct ossegd__request *req) {
  int o = outcome_index(req->outcome);
  if (o < 0) return;
  d->outcomes[o]++;
  count_models(d, req->msg ? req->msg->segment : NULL, o);
  if (req->started) ossegd__histogram_observe(&d->queue_wait, req->queue_ms);
  if (req->outcome >= 0) return;
  ossegd__histogram_observe(&d->total, req->total_ms);
  /* Engine time per run; a model named twice in an ensemble ran twice. */
  size_t nm = osseg_pipeline_model_count(req->seg.pipeline);
  for (size_t i = 0; i < nm; i++) {
    const char *name = osseg_loaded_model_name(osseg_pipeline_model(req->seg.pipeline, i));
    double ms = req->model_ms[i];
    for (size_t k = 0; k < d->nmodels; k++) {
      if (strcmp(d->models[k].name, name) != 0) continue;
      ossegd__histogram_observe(&d->models[k].inference, ms);
      if (ms > d->models[k].max_ms) d->models[k].max_ms = ms;
      break;
    }
  }
}

/* ------------------------------------------------------------- Stats --- */

/* A Stats message and everything it points to, in one allocation. */
struct stats_msg {
  Osseg__Wire__Stats st; /* first: ossegd__stats_free gets it back */
  Osseg__Wire__Stats__Outcome oc[OSSEGD_NOUTCOMES], *ocp[OSSEGD_NOUTCOMES];
  Osseg__Wire__Stats__Bucket lat[OSSEGD_NBUCKETS], *latp[OSSEGD_NBUCKETS];
  Osseg__Wire__Stats__ModelStats ms[OSSEGD_MAX_MODELS], *msp[OSSEGD_MAX_MODELS];
  Osseg__Wire__Stats__Histogram total, wait, inference[OSSEGD_MAX_MODELS];
  Osseg__Wire__Stats__Bucket tb[OSSEGD_NBUCKETS], *tbp[OSSEGD_NBUCKETS];
  Osseg__Wire__Stats__Bucket wb[OSSEGD_NBUCKETS], *wbp[OSSEGD_NBUCKETS];
  Osseg__Wire__Stats__Bucket ib[OSSEGD_MAX_MODELS][OSSEGD_NBUCKETS];
  Osseg__Wire__Stats__Bucket *ibp[OSSEGD_MAX_MODELS][OSSEGD_NBUCKETS];
  Osseg__Wire__Stats__ModelMetrics mm[OSSEGD_MAX_MODELS], *mmp[OSSEGD_MAX_MODELS];
  Osseg__Wire__Stats__ModelOutcome mo[OSSEGD_MAX_MODELS * OSSEGD_NOUTCOMES];
  Osseg__Wire__Stats__ModelOutcome *mop[OSSEGD_MAX_MODELS * OSSEGD_NOUTCOMES];
  Osseg__Wire__Stats__QueueDepth qd[2], *qdp[2];
};

static void fill_histogram(Osseg__Wire__Stats__Histogram *h, Osseg__Wire__Stats__Bucket *b,
                           Osseg__Wire__Stats__Bucket **bp, const struct ossegd__histogram *src) {
  osseg__wire__stats__histogram__init(h);
  for (int i = 0; i < OSSEGD_NBUCKETS; i++) {
    osseg__wire__stats__bucket__init(&b[i]);
    b[i].le_ms = ossegd__bucket_le_ms[i];
    b[i].count = src->le[i];
    bp[i] = &b[i];
  }
  h->n_buckets = OSSEGD_NBUCKETS;
  h->buckets = bp;
  h->sum_ms = src->sum_ms;
  h->count = src->count;
}

Osseg__Wire__Stats *ossegd__stats_build(struct ossegd *d) {
  struct stats_msg *m = osseg__malloc(sizeof *m);
  if (!m) return NULL;
  Osseg__Wire__Stats *st = &m->st;
  osseg__wire__stats__init(st);
  for (int i = 0; i < OSSEGD_NOUTCOMES; i++) {
    osseg__wire__stats__outcome__init(&m->oc[i]);
    m->oc[i].name = (char *)ossegd__outcome_names[i];
    m->oc[i].count = d->outcomes[i];
    m->ocp[i] = &m->oc[i];
  }
  st->n_outcomes = OSSEGD_NOUTCOMES;
  st->outcomes = m->ocp;
  /* Field 2 is the total histogram without its sum. */
  for (int i = 0; i < OSSEGD_NBUCKETS; i++) {
    osseg__wire__stats__bucket__init(&m->lat[i]);
    m->lat[i].le_ms = ossegd__bucket_le_ms[i];
    m->lat[i].count = d->total.le[i];
    m->latp[i] = &m->lat[i];
  }
  st->n_latency = OSSEGD_NBUCKETS;
  st->latency = m->latp;
  unsigned depth[2];
  ossegd__queue_depths(d, depth);
  st->queue_depth = depth[0] + depth[1];
  st->connections = d->nsessions;
  st->connections_total = d->connections_total;
  st->bytes_in = d->bytes_in;
  st->bytes_out = d->bytes_out;

  fill_histogram(&m->wait, m->wb, m->wbp, &d->queue_wait);
  st->queue_wait = &m->wait;
  fill_histogram(&m->total, m->tb, m->tbp, &d->total);
  st->total = &m->total;
  size_t nmo = 0;
  for (size_t k = 0; k < d->nmodels; k++) {
    const struct ossegd__model_stats *ms = &d->models[k];
    osseg__wire__stats__model_stats__init(&m->ms[k]);
    m->ms[k].model = (char *)ms->name;
    m->ms[k].runs = ms->inference.count;
    m->ms[k].mean_ms = ms->inference.count ? ms->inference.sum_ms / (double)ms->inference.count : 0;
    m->ms[k].max_ms = ms->max_ms;
    m->msp[k] = &m->ms[k];

    fill_histogram(&m->inference[k], m->ib[k], m->ibp[k], &ms->inference);
    osseg__wire__stats__model_metrics__init(&m->mm[k]);
    m->mm[k].model = (char *)ms->name;
    m->mm[k].inference = &m->inference[k];
    m->mm[k].load_ms = ms->load_ms;
    m->mm[k].warmup_ms = ms->warmup_ms;
    m->mm[k].reloads = ms->reloads;
    m->mmp[k] = &m->mm[k];

    for (int o = 0; o < OSSEGD_NOUTCOMES; o++, nmo++) {
      osseg__wire__stats__model_outcome__init(&m->mo[nmo]);
      m->mo[nmo].model = (char *)ms->name;
      m->mo[nmo].outcome = (char *)ossegd__outcome_names[o];
      m->mo[nmo].count = ms->requests[o];
      m->mop[nmo] = &m->mo[nmo];
    }
  }
  st->n_models = d->nmodels;
  st->models = m->msp;
  st->n_model_metrics = d->nmodels;
  st->model_metrics = m->mmp;
  st->n_model_requests = nmo;
  st->model_requests = m->mop;
  static const char *const priorities[2] = {"interactive", "batch"};
  for (int i = 0; i < 2; i++) {
    osseg__wire__stats__queue_depth__init(&m->qd[i]);
    m->qd[i].priority = (char *)priorities[i];
    m->qd[i].depth = depth[i];
    m->qdp[i] = &m->qd[i];
  }
  st->n_queue_depths = 2;
  st->queue_depths = m->qdp;
  st->has_in_flight = 1;
  st->in_flight = d->in_flight;
  st->has_refused_peers = 1;
  st->refused_peers = d->refused_peers;
  st->has_audit_errors = 1;
  st->audit_errors = d->audit.errors;
  st->has_start_time_s = 1;
  st->start_time_s = d->start_unix_s;
  st->has_uptime_s = 1;
  st->uptime_s = (double)(osseg_now_ns() - d->start_ns) / 1e9;
  return st;
}

void ossegd__stats_free(Osseg__Wire__Stats *st) { osseg__free(st); }

int ossegd__metrics_text(struct ossegd *d, char **text, size_t *len) {
  Osseg__Wire__Stats *st = ossegd__stats_build(d);
  if (!st) return OSSEG_ENOMEM;
  int rc = osseg_prometheus_format(st, text, len);
  ossegd__stats_free(st);
  return rc;
}
