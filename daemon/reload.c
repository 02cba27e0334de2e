/* SIGHUP's reload: the configuration read again (through the caller's
 * reload callback), new and changed models loaded and warmed up beside the
 * served ones, then one switch on the loop thread.
 *
 * The slow part (reading the file, resolving names, hashing, loading,
 * warming up) runs on a libuv pool thread into a staging registry and a
 * workspace of its own, while the loop keeps serving from d->reg; the
 * engine's one executor interleaves the warm-up inferences with the
 * requests' ones. The switch (reload_done) runs on the loop thread, where
 * every request looks models up while it is validated, so no request sees
 * half of a reload: a request validated before holds references to the old
 * models in its pipeline and finishes on them, every request validated
 * after sees only the new set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon_internal.h"

enum reload_action {
  RELOAD_KEEP,   /* same file (SHA-256) and options: the served model stays */
  RELOAD_LOADED, /* new or changed: loaded and warmed up in staging */
  RELOAD_FAILED  /* new or changed, and it did not load: see why */
};

struct ossegd__reload {
  struct ossegd *d;
  uv_work_t work;
  uint64_t started_ns;
  int status;                 /* 0: the configuration was read */
  struct ossegd_config *cfg;  /* the new configuration */
  struct ossegd__acl acl;     /* its allow-list, names resolved */
  int acl_ok;
  char acl_error[sizeof ((struct osseg_diag *)0)->message];
  struct osseg_registry *staging;
  struct {
    enum reload_action action;
    int replaces;             /* a model of that name is served now */
    double load_ms, warmup_ms;
    char why[sizeof ((struct osseg_diag *)0)->message];
  } m[OSSEGD_MAX_MODELS];
};

static int same_string(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Whether two specs load the same model the same way (the file's bytes
 * are compared separately, by hash). */
static int same_spec(const struct osseg_model_spec *a, const struct osseg_model_spec *b) {
  if (!a->path || !b->path || strcmp(a->path, b->path) != 0) return 0;
  if (a->precision != b->precision || a->input_size != b->input_size ||
      a->threshold != b->threshold || a->nclass_thresholds != b->nclass_thresholds ||
      !same_string(a->normalize, b->normalize) || !same_string(a->classes, b->classes))
    return 0;
  for (size_t i = 0; i < a->nclass_thresholds; i++)
    if (strcmp(a->class_thresholds[i].name, b->class_thresholds[i].name) != 0 ||
        a->class_thresholds[i].threshold != b->class_thresholds[i].threshold)
      return 0;
  return 1;
}

static const struct osseg_model_spec *find_spec(const struct ossegd_options *o, const char *name) {
  for (size_t i = 0; i < o->nmodels; i++)
    if (strcmp(o->models[i].name, name) == 0) return &o->models[i];
  return NULL;
}

/* The pool thread. It reads d->specs, d->opt and d->reg, which the loop
 * does not change while a reload is in progress (d->reg is locked inside). */
static void reload_work(uv_work_t *w) {
  struct ossegd__reload *job = w->data;
  struct ossegd *d = job->d;
  job->status = d->opt.reload.fn(d->opt.reload.ctx, &job->cfg);
  if (job->status == 0 && !job->cfg) job->status = OSSEG_EINVAL;
  if (job->status) return;
  const struct ossegd_options *n = ossegd_config_options(job->cfg);
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (ossegd__acl_init(&job->acl, n, &diag) == 0)
    job->acl_ok = 1;
  else
    snprintf(job->acl_error, sizeof job->acl_error, "%s", diag.message);

  struct osseg_workspace *ws = NULL;
  int rc = osseg_registry_create(&job->staging, &d->opt.engine);
  if (rc == 0) rc = osseg_workspace_create(&ws, d->opt.workspace_bytes);
  if (rc) {
    job->status = rc;
    return;
  }
  const struct ossegd_options *cur = ossegd_config_options(d->specs);
  for (size_t i = 0; i < n->nmodels; i++) {
    const struct osseg_model_spec *spec = &n->models[i];
    const struct osseg_model_spec *old = find_spec(cur, spec->name);
    job->m[i].replaces = old != NULL;
    osseg_diag_clear(&diag);
    if (old && same_spec(old, spec)) {
      struct osseg_loaded_model *lm = NULL;
      char sha[65];
      if (osseg_registry_get(d->reg, spec->name, &lm) == 0) {
        int same = osseg_file_sha256(spec->path, sha, &diag) == 0 &&
                   strcmp(sha, osseg_loaded_model_sha256(lm)) == 0;
        osseg_loaded_model_unref(lm);
        if (same) {
          job->m[i].action = RELOAD_KEEP;
          continue;
        }
        osseg_diag_clear(&diag);
      }
    }
    uint64_t t0 = osseg_now_ns();
    rc = osseg_registry_load(job->staging, spec, NULL, &diag);
    uint64_t t1 = osseg_now_ns();
    if (rc == 0) rc = ossegd__warm_up(job->staging, ws, spec->name, &diag);
    if (rc) {
      job->m[i].action = RELOAD_FAILED;
      snprintf(job->m[i].why, sizeof job->m[i].why, "%s",
               diag.message[0] ? diag.message : osseg_strerror(rc));
      continue;
    }
    job->m[i].action = RELOAD_LOADED;
    job->m[i].load_ms = (double)(t1 - t0) / 1e6;
    job->m[i].warmup_ms = (double)(osseg_now_ns() - t1) / 1e6;
  }
  osseg_workspace_free(ws);
}

static void job_free(struct ossegd__reload *job) {
  ossegd_config_free(job->cfg);
  osseg_registry_free(job->staging);
  free(job);
}

/* Options that only a restart changes: logged, and kept as they are. */
static void check_restart_only(struct ossegd *d, const struct ossegd_options *n) {
  const struct ossegd_options *o = &d->opt;
  const char *what[12];
  size_t k = 0;
  if (!same_string(d->socket_path, n->socket_path)) what[k++] = "[socket] path";
  if (o->socket_mode != n->socket_mode) what[k++] = "[socket] mode";
  if (!same_string(o->socket_group, n->socket_group)) what[k++] = "[socket] group";
  if (o->workers != n->workers) what[k++] = "[daemon] workers";
  if (o->engine.threads != n->engine.threads) what[k++] = "[daemon] threads";
  if (o->workspace_bytes != n->workspace_bytes) what[k++] = "[daemon] workspace_bytes";
  if (!same_string(o->audit_file, n->audit_file)) what[k++] = "[audit] file";
  if (!same_string(o->metrics_file, n->metrics_file)) what[k++] = "[metrics] file";
  if (o->metrics_interval_ms != n->metrics_interval_ms) what[k++] = "[metrics] interval_ms";
  for (size_t i = 0; i < k; i++)
    osseg__log(&d->opt.log, OSSEG_LOG_WARN,
               "reload: %s changed; it takes a restart (the old value stays in use)", what[i]);
}

/* What may change while serving: applies to requests and connections
 * that come after the switch. */
static void apply_limits(struct ossegd *d, const struct ossegd_options *n) {
  struct ossegd_options *o = &d->opt;
  o->max_frame_bytes = n->max_frame_bytes;
  o->max_image_pixels = n->max_image_pixels;
  o->max_image_side = n->max_image_side;
  o->max_connections = n->max_connections;
  o->max_in_flight = n->max_in_flight;
  o->max_in_flight_total = n->max_in_flight_total;
  o->max_queue = n->max_queue;
  o->max_output_bytes = n->max_output_bytes;
  o->request_timeout_ms = n->request_timeout_ms;
  o->drain_timeout_ms = n->drain_timeout_ms;
  o->audit_image_name = n->audit_image_name;
  d->audit.image_name = n->audit_image_name;
  d->lim.max_image_pixels = n->max_image_pixels;
  d->lim.max_image_side =
      n->max_image_side > OSSEG_MAX_SIDE ? OSSEG_MAX_SIDE : n->max_image_side;
}

static void reload_done(uv_work_t *w, int status) {
  struct ossegd__reload *job = w->data;
  struct ossegd *d = job->d;
  d->reload = NULL;
  double ms = (double)(osseg_now_ns() - job->started_ns) / 1e6;
  if (d->draining) { /* stopping: nothing to switch to */
    job_free(job);
    return;
  }
  struct ossegd_config *merged = NULL;
  int rc = job->status;
  if (status != 0) rc = OSSEG_EIO; /* cancelled: not done */
  const struct ossegd_options *n = rc == 0 ? ossegd_config_options(job->cfg) : NULL;
  const struct ossegd_options *cur = ossegd_config_options(d->specs);
  /* The specs served after the switch: the new ones, except that a
   * changed model that failed keeps its old spec (and model), and a new
   * one that failed is left out. Built before anything changes, so that
   * running out of memory here changes nothing. */
  if (rc == 0) rc = ossegd_config_create(&merged);
  for (size_t i = 0; rc == 0 && i < n->nmodels; i++) {
    const struct osseg_model_spec *spec = &n->models[i];
    if (job->m[i].action == RELOAD_FAILED) spec = find_spec(cur, spec->name);
    if (spec) rc = ossegd_config_set_model(merged, spec);
  }
  if (rc) {
    ossegd_config_free(merged);
    d->reload_failures++;
    osseg__log(&d->opt.log, OSSEG_LOG_ERROR,
               "reload: %s; still serving %zu model(s) as before",
               job->status ? "the configuration could not be read (see above)"
                           : osseg_strerror(rc),
               d->nmodels);
    ossegd__notify(d, "READY=1\nSTATUS=reload failed: configuration not used (see the log); "
                      "ready: %zu model(s)",
                   d->nmodels);
    job_free(job);
    goto again;
  }

  /* The switch. */
  check_restart_only(d, n);
  apply_limits(d, n);
  if (job->acl_ok)
    d->acl = job->acl;
  else
    osseg__log(&d->opt.log, OSSEG_LOG_ERROR, "reload: [access]: %s; keeping the old allow-list",
               job->acl_error);
  size_t nloaded = 0, nfailed = 0, nremoved = 0;
  char failed[256] = "";
  for (size_t i = 0; i < n->nmodels; i++) {
    const char *name = n->models[i].name;
    if (job->m[i].action == RELOAD_FAILED) {
      nfailed++;
      osseg__log(&d->opt.log, OSSEG_LOG_ERROR, "reload: model %s: %s; %s", name, job->m[i].why,
                 job->m[i].replaces ? "keeping the model served until now" : "not served");
      size_t used = strlen(failed);
      snprintf(failed + used, sizeof failed - used, "%s%s", used ? ", " : "", name);
      continue;
    }
    if (job->m[i].action != RELOAD_LOADED) continue;
    struct osseg_loaded_model *m = NULL;
    if (osseg_registry_get(job->staging, name, &m) == 0) {
      if (osseg_registry_put(d->reg, m) == 0)
        nloaded++;
      else
        osseg__log(&d->opt.log, OSSEG_LOG_ERROR, "reload: model %s: out of memory", name);
      osseg_loaded_model_unref(m);
    }
  }
  for (size_t i = 0; i < cur->nmodels; i++)
    if (!find_spec(ossegd_config_options(merged), cur->models[i].name)) {
      osseg_registry_unload(d->reg, cur->models[i].name);
      osseg__log(&d->opt.log, OSSEG_LOG_INFO, "reload: model %s removed",
                 cur->models[i].name);
      nremoved++;
    }

  /* Per-model statistics follow the served set: kept models keep theirs,
   * new ones start at zero, removed ones go. */
  const struct ossegd_options *mo = ossegd_config_options(merged);
  struct ossegd__model_stats *ns = calloc(OSSEGD_MAX_MODELS, sizeof *ns);
  if (ns) {
    for (size_t k = 0; k < mo->nmodels; k++) {
      const struct osseg_model_spec *spec = &mo->models[k];
      for (size_t j = 0; j < d->nmodels; j++)
        if (strcmp(d->models[j].name, spec->name) == 0) ns[k] = d->models[j];
      snprintf(ns[k].name, sizeof ns[k].name, "%s", spec->name);
      for (size_t i = 0; i < n->nmodels; i++) {
        if (strcmp(n->models[i].name, spec->name) != 0 || job->m[i].action != RELOAD_LOADED)
          continue;
        ns[k].precision = spec->precision;
        ns[k].load_ms = job->m[i].load_ms;
        ns[k].warmup_ms = job->m[i].warmup_ms;
        if (job->m[i].replaces) ns[k].reloads++;
      }
    }
    memcpy(d->models, ns, OSSEGD_MAX_MODELS * sizeof *ns);
    d->nmodels = mo->nmodels;
    free(ns);
  }
  ossegd_config_free(d->specs);
  d->specs = merged;
  d->reloads_total++;
  if (nfailed) d->reload_failures++;
  osseg__log(&d->opt.log, nfailed ? OSSEG_LOG_WARN : OSSEG_LOG_INFO,
             "reload: done in %.1f ms: %zu model(s) loaded, %zu failed, %zu removed; serving %zu",
             ms, nloaded, nfailed, nremoved, d->nmodels);
  if (nfailed)
    ossegd__notify(d, "READY=1\nSTATUS=ready: %zu model(s); reload failed for %s (old kept, see "
                      "the log)",
                   d->nmodels, failed);
  else
    ossegd__notify(d, "READY=1\nSTATUS=ready: %zu model(s); reloaded in %.0f ms", d->nmodels, ms);
  job_free(job);
again:
  if (d->reload_again) {
    d->reload_again = 0;
    ossegd__reload_start(d);
  }
}

void ossegd__reload_start(struct ossegd *d) {
  if (d->reload) {
    d->reload_again = 1;
    osseg__log(&d->opt.log, OSSEG_LOG_INFO,
               "reload: one is in progress; another follows it");
    return;
  }
  struct ossegd__reload *job = calloc(1, sizeof *job);
  if (!job) {
    osseg__log(&d->opt.log, OSSEG_LOG_ERROR, "reload: out of memory");
    return;
  }
  job->d = d;
  job->work.data = job;
  job->started_ns = osseg_now_ns();
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  /* MONOTONIC_USEC: what systemd 253's Type=notify-reload wants with it. */
  ossegd__notify(d, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
                 (unsigned long long)ts.tv_sec * 1000000ull +
                     (unsigned long long)ts.tv_nsec / 1000u);
  int uerr = uv_queue_work(&d->loop, &job->work, reload_work, reload_done);
  if (uerr != 0) {
    osseg__log(&d->opt.log, OSSEG_LOG_ERROR, "reload: %s", uv_strerror(uerr));
    ossegd__notify(d, "READY=1\nSTATUS=reload failed: %s", uv_strerror(uerr));
    free(job);
    return;
  }
  d->reload = job;
}
