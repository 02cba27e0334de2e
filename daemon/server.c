/* The daemon: start-up (models, warm-up, socket), the loop, shutdown. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon_internal.h"

#ifndef OSSEGD_VERSION
#define OSSEGD_VERSION "0"
#endif

const char *ossegd_version(void) { return OSSEGD_VERSION; }

void ossegd_options_default(struct ossegd_options *o) {
  memset(o, 0, sizeof *o);
  osseg_engine_options_default(&o->engine);
  o->workers = 2;
  o->max_frame_bytes = 64u << 20;
  o->max_image_pixels = OSSEG_MAX_PIXELS;
  o->max_image_side = OSSEG_MAX_SIDE;
  o->max_connections = 256;
  o->socket_mode = 0660;
  o->max_in_flight = 64;
  o->max_in_flight_total = 1024;
  o->max_queue = 256;
  o->max_output_bytes = 64u << 20;
  o->metrics_interval_ms = 15000;
  o->listen_fd = -1;
  o->drain_timeout_ms = 30000;
}

void ossegd__notify(struct ossegd *d, const char *fmt, ...) {
  if (!d->opt.notify.fn) return;
  char state[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(state, sizeof state, fmt, ap);
  va_end(ap);
  d->opt.notify.fn(d->opt.notify.ctx, state);
}

/* One inference per model, so the first client does not pay for oneDNN's
 * primitive creation and the workspaces' first growth. */
int ossegd__warm_up(struct osseg_registry *reg, struct osseg_workspace *ws, const char *name,
                    struct osseg_diag *diag) {
  struct osseg_loaded_model *m = NULL;
  int rc = osseg_registry_get(reg, name, &m);
  if (rc) return osseg__fail(diag, rc, "model %s: not registered", name);
  uint32_t size = osseg_loaded_model_input_size(m);
  osseg_loaded_model_unref(m);
  struct osseg_pipeline_options po;
  osseg_pipeline_options_default(&po);
  po.models[0] = name;
  po.nmodels = 1;
  struct osseg_pipeline *p = NULL;
  rc = osseg_pipeline_create(&p, reg, &po, diag);
  if (rc) return rc;
  struct osseg_image img;
  rc = osseg_image_init(&img, size ? size : 64, size ? size : 64, 1, 8);
  if (rc == 0) {
    for (uint32_t y = 0; y < img.height; y++)
      for (uint32_t x = 0; x < img.width; x++)
        img.data[(size_t)y * img.stride + x] = (uint8_t)((x + y) & 0xff);
    rc = osseg_pipeline_run_image(p, ws, &img, NULL, diag);
    osseg_image_free(&img);
  }
  osseg_pipeline_free(p);
  if (rc && diag && diag->code == rc) {
    char msg[sizeof diag->message];
    snprintf(msg, sizeof msg, "%s", diag->message);
    osseg_diag_clear(diag);
    osseg__fail(diag, rc, "model %s: warm-up failed: %s", name, msg);
  } else if (rc) {
    osseg__fail(diag, rc, "model %s: warm-up failed: %s", name, osseg_strerror(rc));
  }
  return rc;
}

/* A socket file left by a dead daemon is removed; a live one is an error,
 * and so is anything that is not a socket. */
static int clear_stale_socket(const char *path, struct osseg_diag *diag) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT) return 0;
    return osseg__fail(diag, OSSEG_EIO, "%s: %s", path, strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode))
    return osseg__fail(diag, OSSEG_EIO, "%s: exists and is not a socket; not removing it", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return osseg__fail(diag, OSSEG_EIO, "socket: %s", strerror(errno));
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, path, strlen(path) + 1);
  int live = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  int err = errno;
  close(fd);
  if (live) return osseg__fail(diag, OSSEG_EIO, "%s: another daemon listens on it", path);
  if (err != ECONNREFUSED)
    return osseg__fail(diag, OSSEG_EIO, "%s: cannot tell whether it is in use: %s", path,
                       strerror(err));
  if (unlink(path) != 0 && errno != ENOENT)
    return osseg__fail(diag, OSSEG_EIO, "%s: cannot remove the stale socket: %s", path,
                       strerror(errno));
  return 0;
}

static void on_signal(uv_signal_t *h, int signum) {
  struct ossegd *d = h->data;
  if (d->draining) return;
  osseg__log(&d->opt.log, OSSEG_LOG_INFO, "signal %d: draining %u request(s) (grace period %u ms)",
             signum, d->in_flight, (unsigned)d->opt.drain_timeout_ms);
  ossegd__begin_drain(d);
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }

/* SIGHUP: the audit file is opened again (logrotate moved it away), and
 * with a reload callback the configuration is read again (reload.c). */
static void on_sighup(uv_signal_t *h, int signum) {
  struct ossegd *d = h->data;
  if (d->draining) return;
  osseg__log(&d->opt.log, OSSEG_LOG_INFO, "SIGHUP: reopening the audit file%s",
             d->opt.reload.fn ? ", reloading the configuration" : "");
  ossegd__audit_reopen(&d->audit);
  if (d->opt.reload.fn) ossegd__reload_start(d);
}

/* The grace period of a drain ended: what is still queued is answered
 * CANCELLED at once, what runs is interrupted through its cancel flag (the
 * pipeline checks it between engine steps) and ends CANCELLED too. */
static void on_drain_timer(uv_timer_t *t) {
  struct ossegd *d = t->data;
  if (d->finished) return;
  d->drain_cancelled = 1;
  osseg__log(&d->opt.log, OSSEG_LOG_WARN,
             "drain: the grace period of %u ms ended; cancelling %u request(s)",
             (unsigned)d->opt.drain_timeout_ms, d->in_flight);
  ossegd__notify(d, "STATUS=cancelling %u request(s): the grace period ended", d->in_flight);
  struct ossegd__session *s = d->sessions;
  while (s && !d->finished) {
    struct ossegd__session *snext = s->next;
    struct ossegd__request *r = s->reqs;
    while (r && !d->finished) {
      struct ossegd__request *rnext = r->snext;
      atomic_store(&r->cancel, 1);
      if (ossegd__unschedule(d, r)) {
        ossegd__send_error(s, r->id, OSSEG__WIRE__ERROR__CODE__CANCELLED,
                           "daemon stopping: cancelled when the grace period ended");
        r->outcome = OSSEG__WIRE__ERROR__CODE__CANCELLED;
        ossegd__request_finish(d, r);
      }
      r = rnext;
    }
    s = snext;
  }
}

/* The watchdog (WATCHDOG_USEC): every half interval the loop looks at each
 * worker and sends WATCHDOG=1 only when all of them showed progress since
 * the last look; the timer firing at all shows the loop is alive. A worker
 * shows progress when its heartbeat moved (idle workers wake up to bump it
 * every idle_wait_ms, busy ones bump it when they take a request and with
 * every frame they hand over). A worker inside one long inference bumps
 * nothing for a while; it counts as progressing while the engine's step
 * counter (osseg_engine_steps) advances, because one executor runs every
 * inference step by step: a run that advances steps is alive, and a worker
 * waiting for the executor behind it is alive too. A single step longer
 * than half the interval (far beyond any model here) would miss a ping; a
 * worker or an executor really stuck stops the pings and systemd restarts
 * the service. */
static void on_watchdog_timer(uv_timer_t *t) {
  struct ossegd *d = t->data;
  uint64_t steps = osseg_engine_steps();
  int engine_moved = steps != d->wd_steps;
  d->wd_steps = steps;
  unsigned stuck = 0;
  for (unsigned i = 0; i < d->nworkers; i++) {
    struct ossegd__worker *w = &d->workers[i];
    uint64_t beat = atomic_load(&w->beat);
    int moved = beat != w->wd_beat || (atomic_load(&w->busy) && engine_moved);
    w->wd_beat = beat;
    if (!moved) stuck++;
  }
  if (stuck == 0) {
    ossegd__notify(d, "WATCHDOG=1");
  } else {
    osseg__log(&d->opt.log, OSSEG_LOG_WARN,
               "watchdog: %u worker(s) showed no progress; not pinging", stuck);
  }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  ossegd__session_close(req->data);
}

void ossegd__begin_drain(struct ossegd *d) {
  if (d->draining) return;
  d->draining = 1;
  d->drain_started_ns = osseg_now_ns();
  if (d->in_flight > 0 && d->drain_timer_init)
    uv_timer_start(&d->drain_timer, on_drain_timer, d->opt.drain_timeout_ms, 0);
  if (d->listener_init && !uv_is_closing((uv_handle_t *)&d->listener))
    uv_close((uv_handle_t *)&d->listener, on_handle_closed);
  if (d->socket_created) {
    unlink(d->socket_path);
    d->socket_created = 0;
  }
  /* Told once nobody can connect any more. */
  ossegd__notify(d, "STOPPING=1\nSTATUS=draining %u request(s)", d->in_flight);
  for (struct ossegd__session *s = d->sessions; s; s = s->next)
    ossegd__session_update_reading(s);
  ossegd__maybe_finish(d);
}

void ossegd__maybe_finish(struct ossegd *d) {
  if (!d->draining || d->finished || d->in_flight > 0) return;
  d->finished = 1;
  double ms = (double)(osseg_now_ns() - d->drain_started_ns) / 1e6;
  osseg__log(&d->opt.log, OSSEG_LOG_INFO, "drained in %.1f ms%s", ms,
             d->drain_cancelled ? " (the rest cancelled after the grace period)" : "");
  ossegd__notify(d, "STATUS=drained in %.0f ms; stopping", ms);
  /* Written responses go out first (shutdown waits for the write queue),
   * then each connection closes. */
  struct ossegd__session *s = d->sessions;
  while (s) {
    struct ossegd__session *next = s->next;
    s->shutdown.data = s;
    if (uv_shutdown(&s->shutdown, (uv_stream_t *)&s->pipe, on_shutdown) != 0)
      ossegd__session_close(s);
    s = next;
  }
  uv_close((uv_handle_t *)&d->async, on_handle_closed);
  uv_close((uv_handle_t *)&d->deadline_timer, on_handle_closed);
  uv_close((uv_handle_t *)&d->drain_timer, on_handle_closed);
  uv_close((uv_handle_t *)&d->watchdog_timer, on_handle_closed);
  ossegd__metrics_file_stop(d);
  uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
  uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
  uv_close((uv_handle_t *)&d->sighup, on_handle_closed);
}

/* A descriptor handed over by socket activation must be what ossegd would
 * have made itself: a listening AF_UNIX stream socket. */
static int check_listen_fd(int fd, struct osseg_diag *diag) {
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0)
    return osseg__fail(diag, OSSEG_EINVAL, "socket activation: descriptor %d is not a socket: %s",
                       fd, strerror(errno));
  if (v != AF_UNIX)
    return osseg__fail(diag, OSSEG_EINVAL,
                       "socket activation: descriptor %d is not an AF_UNIX socket (family %d); "
                       "use ListenStream=/path in ossegd.socket",
                       fd, v);
  len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) != 0 || v != SOCK_STREAM)
    return osseg__fail(diag, OSSEG_EINVAL,
                       "socket activation: descriptor %d is not a stream socket", fd);
  len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) != 0 || !v)
    return osseg__fail(diag, OSSEG_EINVAL, "socket activation: descriptor %d is not listening",
                       fd);
  return 0;
}

static void stop_workers(struct ossegd *d) {
  if (!d->workers) return;
  pthread_mutex_lock(&d->mu);
  d->workers_stop = 1;
  pthread_cond_broadcast(&d->cv);
  pthread_mutex_unlock(&d->mu);
  for (unsigned i = 0; i < d->nworkers; i++)
    if (d->workers[i].started) {
      pthread_join(d->workers[i].thread, NULL);
      d->workers[i].started = 0;
    }
}

int ossegd_create(struct ossegd **out, const struct ossegd_options *o, struct osseg_diag *diag) {
  *out = NULL;
  if (!o->socket_path || !o->socket_path[0])
    return osseg__fail(diag, OSSEG_EINVAL, "no socket path");
  if (strlen(o->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return osseg__fail(diag, OSSEG_EINVAL, "%s: socket path too long (at most %zu bytes)",
                       o->socket_path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
  if (o->nmodels == 0) return osseg__fail(diag, OSSEG_EINVAL, "no models");
  if (o->nmodels > OSSEGD_MAX_MODELS)
    return osseg__fail(diag, OSSEG_EINVAL, "at most %d models", OSSEGD_MAX_MODELS);
  if (o->socket_mode > 0777)
    return osseg__fail(diag, OSSEG_EINVAL, "socket mode %#o: only permission bits (0..0777)",
                       o->socket_mode);
  if (o->listen_fd >= 0) {
    int rc = check_listen_fd(o->listen_fd, diag);
    if (rc) return rc;
  }
  if (o->workers == 0 || o->max_in_flight == 0 || o->max_in_flight_total == 0 ||
      o->max_queue == 0 ||
      o->max_connections == 0 || o->max_frame_bytes == 0 || o->max_image_pixels == 0 ||
      o->max_image_side == 0 || o->max_output_bytes == 0)
    return osseg__fail(diag, OSSEG_EINVAL, "limits and the number of workers must be positive");

  struct ossegd *d = calloc(1, sizeof *d);
  if (!d) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  d->opt = *o;
  /* Names are resolved before the (slow) model loading, so a typo fails at
   * once. */
  int rc = ossegd__acl_init(&d->acl, o, diag);
  gid_t socket_gid = (gid_t)-1;
  if (rc == 0 && o->socket_group) {
    rc = ossegd__parse_group(o->socket_group, &socket_gid);
    if (rc)
      osseg__fail(diag, rc, "socket group '%s': %s", o->socket_group,
                  rc == OSSEG_ENOTFOUND ? "no such group" : "not a group name or id");
  }
  /* The audit file too: a path that cannot be opened fails at once. */
  if (rc == 0) rc = ossegd__audit_open(&d->audit, o, &d->opt.log, diag);
  if (rc) {
    free(d);
    return rc;
  }
  d->lim.max_image_pixels = o->max_image_pixels;
  d->lim.max_image_side = o->max_image_side > OSSEG_MAX_SIDE ? OSSEG_MAX_SIDE : o->max_image_side;
  d->start_ns = osseg_now_ns();
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  d->start_unix_s = (double)wall.tv_sec + (double)wall.tv_nsec / 1e9;
  pthread_mutex_init(&d->mu, NULL);
  pthread_cond_init(&d->cv, NULL);
  rc = OSSEG_ENOMEM;
  d->socket_path = strdup(o->socket_path);
  d->workers = calloc(o->workers, sizeof *d->workers);
  if (!d->socket_path || !d->workers) {
    osseg__fail(diag, rc, "out of memory");
    goto fail;
  }
  d->nworkers = o->workers;
  /* Idle workers wake up four times per watchdog interval (twice per
   * look) to show they are alive. */
  if (o->watchdog_usec)
    d->idle_wait_ms = o->watchdog_usec / 4000 ? (uint32_t)(o->watchdog_usec / 4000) : 1;
  /* The specs served, copied (a reload compares the next ones with them). */
  if ((rc = ossegd_config_create(&d->specs)) != 0) {
    osseg__fail(diag, rc, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < o->nmodels && o->models[i].name; i++)
    if ((rc = ossegd_config_set_model(d->specs, &o->models[i])) != 0) {
      osseg__fail(diag, rc, "out of memory");
      goto fail;
    }
  for (unsigned i = 0; i < d->nworkers; i++) {
    d->workers[i].d = d;
    if ((rc = osseg_workspace_create(&d->workers[i].ws, o->workspace_bytes)) != 0) {
      osseg__fail(diag, rc, "workspace: %s", osseg_strerror(rc));
      goto fail;
    }
  }

  /* Models, then their warm-up, then the socket. */
  if ((rc = osseg_registry_create(&d->reg, &o->engine)) != 0) {
    osseg__fail(diag, rc, "registry: %s", osseg_strerror(rc));
    goto fail;
  }
  for (size_t i = 0; i < o->nmodels; i++) {
    const struct osseg_model_spec *spec = &o->models[i];
    if (!spec->name || strlen(spec->name) >= OSSEG_MAX_MODEL_NAME) {
      rc = osseg__fail(diag, OSSEG_EINVAL, "%s: a model needs a name of 1..%d bytes",
                       spec->path ? spec->path : "model", OSSEG_MAX_MODEL_NAME - 1);
      goto fail;
    }
    for (size_t k = 0; k < d->nmodels; k++)
      if (strcmp(d->models[k].name, spec->name) == 0) {
        rc = osseg__fail(diag, OSSEG_EDUPLICATE, "model name '%s' given twice", spec->name);
        goto fail;
      }
    osseg__log(&o->log, OSSEG_LOG_INFO, "loading model %s from %s", spec->name,
               spec->path ? spec->path : "memory");
    ossegd__notify(d, "STATUS=loading model %s (%zu of %zu)", spec->name, i + 1, o->nmodels);
    struct ossegd__model_stats *ms = &d->models[d->nmodels];
    uint64_t t0 = osseg_now_ns();
    if ((rc = osseg_registry_load(d->reg, spec, NULL, diag)) != 0) goto fail;
    uint64_t t1 = osseg_now_ns();
    snprintf(ms->name, sizeof ms->name, "%s", spec->name);
    ms->precision = spec->precision;
    ms->load_ms = (double)(t1 - t0) / 1e6;
    d->nmodels++;
    if ((rc = ossegd__warm_up(d->reg, d->workers[0].ws, spec->name, diag)) != 0) goto fail;
    ms->warmup_ms = (double)(osseg_now_ns() - t1) / 1e6;
  }

  if (uv_loop_init(&d->loop) != 0) {
    rc = osseg__fail(diag, OSSEG_EIO, "uv_loop_init failed");
    goto fail;
  }
  d->loop_init = 1;
  uv_async_init(&d->loop, &d->async, ossegd__drain_completions);
  d->async.data = d;
  d->async_init = 1;
  uv_timer_init(&d->loop, &d->deadline_timer);
  d->deadline_timer.data = d;
  d->deadline_timer_init = 1;
  uv_timer_init(&d->loop, &d->drain_timer);
  d->drain_timer.data = d;
  d->drain_timer_init = 1;
  uv_timer_init(&d->loop, &d->watchdog_timer);
  d->watchdog_timer.data = d;
  d->watchdog_timer_init = 1;
  uv_signal_init(&d->loop, &d->sigint);
  uv_signal_init(&d->loop, &d->sigterm);
  uv_signal_init(&d->loop, &d->sighup);
  d->sigint.data = d->sigterm.data = d->sighup.data = d;
  d->signals_init = 1;
  uv_signal_start(&d->sigint, on_signal, SIGINT);
  uv_signal_start(&d->sigterm, on_signal, SIGTERM);
  uv_signal_start(&d->sighup, on_sighup, SIGHUP);

  int uerr = 0;
  if (o->listen_fd >= 0) {
    /* Socket activation: systemd made the socket (mode and group are its
     * SocketMode= and SocketGroup=) and may already hold connections in
     * its backlog; they are accepted from here on. */
    uv_pipe_init(&d->loop, &d->listener, 0);
    d->listener.data = d;
    d->listener_init = 1;
    uerr = uv_pipe_open(&d->listener, o->listen_fd);
    if (uerr == 0) uerr = uv_listen((uv_stream_t *)&d->listener, 128, ossegd__on_connection);
    if (uerr != 0) {
      rc = osseg__fail(diag, OSSEG_EIO, "socket activation: descriptor %d: cannot listen: %s",
                       o->listen_fd, uv_strerror(uerr));
      goto fail;
    }
    osseg__log(&o->log, OSSEG_LOG_INFO,
               "socket activation: serving descriptor %d (%s); its mode and group are the "
               "service manager's",
               o->listen_fd, d->socket_path);
    goto listening;
  }
  if ((rc = clear_stale_socket(d->socket_path, diag)) != 0) goto fail;
  uv_pipe_init(&d->loop, &d->listener, 0);
  d->listener.data = d;
  d->listener_init = 1;
  uerr = uv_pipe_bind(&d->listener, d->socket_path);
  /* Mode and group before listen(): nobody connects in between (a connect
   * before listen is refused). */
  if (uerr == 0) {
    d->socket_created = 1;
    if (chmod(d->socket_path, o->socket_mode) != 0) uerr = uv_translate_sys_error(errno);
  }
  if (uerr == 0 && o->socket_group && chown(d->socket_path, (uid_t)-1, socket_gid) != 0) {
    rc = osseg__fail(diag, OSSEG_EIO, "%s: cannot give the socket to group '%s': %s",
                     d->socket_path, o->socket_group, strerror(errno));
    goto fail;
  }
  if (uerr == 0) uerr = uv_listen((uv_stream_t *)&d->listener, 128, ossegd__on_connection);
  if (uerr != 0) {
    rc = osseg__fail(diag, OSSEG_EIO, "%s: cannot listen: %s", d->socket_path,
                     uv_strerror(uerr));
    goto fail;
  }
listening:
  if (o->metrics_file && (rc = ossegd__metrics_file_start(d, diag)) != 0) goto fail;

  for (unsigned i = 0; i < d->nworkers; i++) {
    if (pthread_create(&d->workers[i].thread, NULL, ossegd__worker_main, &d->workers[i]) != 0) {
      rc = osseg__fail(diag, OSSEG_EIO, "cannot start worker threads");
      goto fail;
    }
    d->workers[i].started = 1;
  }
  osseg__log(&o->log, OSSEG_LOG_INFO, "ready: %zu model(s), %u worker(s), listening on %s",
             d->nmodels, d->nworkers, d->socket_path);
  *out = d;
  return 0;
fail:
  ossegd_free(d);
  return rc;
}

int ossegd_run(struct ossegd *d) {
  /* Every model is loaded and warmed up, the socket listens and the
   * workers run: ready. */
  ossegd__notify(d, "READY=1\nSTATUS=ready: %zu model(s), %u worker(s)", d->nmodels,
                 d->nworkers);
  if (d->opt.watchdog_usec) {
    uint64_t every = d->opt.watchdog_usec / 2000;
    uv_timer_start(&d->watchdog_timer, on_watchdog_timer, every ? every : 1, every ? every : 1);
  }
  uv_run(&d->loop, UV_RUN_DEFAULT);
  stop_workers(d);
  ossegd__metrics_file_final(d);
  return 0;
}

void ossegd_stop(struct ossegd *d) {
  atomic_store(&d->stop_requested, 1);
  uv_async_send(&d->async);
}

void ossegd_free(struct ossegd *d) {
  if (!d) return;
  stop_workers(d);
  if (d->loop_init) {
    /* Not run, or run to its end: close what is still open. */
    if (d->listener_init && !uv_is_closing((uv_handle_t *)&d->listener))
      uv_close((uv_handle_t *)&d->listener, on_handle_closed);
    if (d->async_init && !uv_is_closing((uv_handle_t *)&d->async))
      uv_close((uv_handle_t *)&d->async, on_handle_closed);
    if (d->deadline_timer_init && !uv_is_closing((uv_handle_t *)&d->deadline_timer))
      uv_close((uv_handle_t *)&d->deadline_timer, on_handle_closed);
    if (d->drain_timer_init && !uv_is_closing((uv_handle_t *)&d->drain_timer))
      uv_close((uv_handle_t *)&d->drain_timer, on_handle_closed);
    if (d->watchdog_timer_init && !uv_is_closing((uv_handle_t *)&d->watchdog_timer))
      uv_close((uv_handle_t *)&d->watchdog_timer, on_handle_closed);
    ossegd__metrics_file_stop(d);
    if (d->signals_init) {
      if (!uv_is_closing((uv_handle_t *)&d->sigint))
        uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
      if (!uv_is_closing((uv_handle_t *)&d->sigterm))
        uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
      if (!uv_is_closing((uv_handle_t *)&d->sighup))
        uv_close((uv_handle_t *)&d->sighup, on_handle_closed);
    }
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
  }
  if (d->socket_created) unlink(d->socket_path);
  /* Requests never started (ossegd_free without a drain). */
  for (int pri = 0; pri < 2; pri++)
    while (d->q_head[pri]) {
      struct ossegd__request *r = d->q_head[pri];
      d->q_head[pri] = r->qnext;
      ossegd__request_free(r);
    }
  if (d->workers)
    for (unsigned i = 0; i < d->nworkers; i++) {
      osseg_workspace_free(d->workers[i].ws);
      for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++) osseg_runs_free(&d->workers[i].gt[c]);
      for (int k = 0; k < 2; k++) free(d->workers[i].text[k]);
    }
  free(d->workers);
  ossegd__metrics_file_free(d);
  osseg_registry_free(d->reg);
  pthread_mutex_destroy(&d->mu);
  pthread_cond_destroy(&d->cv);
  free(d->socket_path);
  ossegd_config_free(d->specs);
  ossegd__audit_close(&d->audit);
  free(d);
}
