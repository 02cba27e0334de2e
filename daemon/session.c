/* A session: one connection, its framing, its requests in flight and its
 * watermarks. Everything here runs on the loop thread. */
#include <math.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_internal.h"

#define CODE(x) OSSEG__WIRE__ERROR__CODE__##x

static void session_unref(struct ossegd__session *s) {
  if (--s->refs > 0) return;
  ossegd__frame_reader_reset(&s->rd);
  free(s->pending);
  free(s);
}

static void on_close(uv_handle_t *h) {
  struct ossegd__session *s = h->data;
  struct ossegd *d = s->d;
  session_unref(s);
  ossegd__maybe_finish(d);
}

void ossegd__session_close(struct ossegd__session *s) {
  if (s->closed) return;
  struct ossegd *d = s->d;
  s->closed = 1;
  s->reading = 0;
  /* The client went away: its requests need not run on. */
  for (struct ossegd__request *r = s->reqs; r; r = r->snext) atomic_store(&r->cancel, 1);
  if (s->prev)
    s->prev->next = s->next;
  else
    d->sessions = s->next;
  if (s->next) s->next->prev = s->prev;
  d->nsessions--;
  uv_close((uv_handle_t *)&s->pipe, on_close);
}

struct write_req {
  uv_write_t w;
  uint8_t *frame;
};

static void on_write(uv_write_t *w, int status) {
  struct write_req *wr = (struct write_req *)w;
  struct ossegd__session *s = w->data;
  free(wr->frame);
  free(wr);
  if (s->closed) return;
  if (status < 0) {
    ossegd__session_close(s);
    return;
  }
  if (s->paused_write &&
      uv_stream_get_write_queue_size((uv_stream_t *)&s->pipe) <= s->d->opt.max_output_bytes / 2) {
    s->paused_write = 0;
    ossegd__session_update_reading(s);
  }
}

void ossegd__session_write(struct ossegd__session *s, uint8_t *frame, size_t len) {
  struct ossegd *d = s->d;
  if (s->closed) {
    free(frame);
    return;
  }
  struct write_req *wr = malloc(sizeof *wr);
  if (!wr) {
    free(frame);
    ossegd__session_close(s);
    return;
  }
  wr->frame = frame;
  wr->w.data = s;
  uv_buf_t b = uv_buf_init((char *)frame, (unsigned)len);
  if (uv_write(&wr->w, (uv_stream_t *)&s->pipe, &b, 1, on_write) != 0) {
    free(frame);
    free(wr);
    ossegd__session_close(s);
    return;
  }
  d->bytes_out += len;
  if (uv_stream_get_write_queue_size((uv_stream_t *)&s->pipe) > d->opt.max_output_bytes) {
    s->paused_write = 1;
    ossegd__session_update_reading(s);
  }
}

static void send_response(struct ossegd__session *s, Osseg__Wire__Response *r) {
  size_t len = 0;
  uint8_t *f = ossegd__pack_response(r, &len);
  if (!f) {
    ossegd__session_close(s);
    return;
  }
  ossegd__session_write(s, f, len);
}

void ossegd__send_error(struct ossegd__session *s, uint64_t id, int code, const char *message) {
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  Osseg__Wire__Error e = OSSEG__WIRE__ERROR__INIT;
  e.code = code;
  e.message = (char *)message;
  r.id = id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_ERROR;
  r.error = &e;
  send_response(s, &r);
}

void ossegd__audit_request(struct ossegd *d, const struct ossegd__session *s, uint64_t id,
                           const Osseg__Wire__Segment *seg, const struct osseg_pipeline *p,
                           const double *model_ms, int outcome, uint64_t received,
                           int started, double queue_ms, double total_ms) {
  if (d->audit.fd < 0) return;
  struct ossegd__audit_segment e;
  memset(&e, 0, sizeof e);
  e.peer = &s->peer;
  e.conn = s->serial;
  e.id = id;
  e.image_name = seg ? seg->image_name : NULL;
  e.outcome = outcome;
  /* The models with their hashes: the pipeline's (the very models that
   * ran), else those the registry has under the names asked for. */
  struct osseg_loaded_model *held[OSSEG_MAX_MODELS];
  size_t nheld = 0;
  if (p) {
    e.timed = 1;
    e.nmodels = osseg_pipeline_model_count(p);
    for (size_t i = 0; i < e.nmodels; i++) {
      const struct osseg_loaded_model *m = osseg_pipeline_model(p, i);
      e.models[i].name = osseg_loaded_model_name(m);
      e.models[i].sha256 = osseg_loaded_model_sha256(m);
      e.models[i].ms = model_ms ? model_ms[i] : 0.0;
      e.inference_ms += e.models[i].ms;
    }
  } else if (seg) {
    e.nmodels = seg->n_models < OSSEG_MAX_MODELS ? seg->n_models : OSSEG_MAX_MODELS;
    e.more_models = seg->n_models - e.nmodels;
    for (size_t i = 0; i < e.nmodels; i++) {
      e.models[i].name = seg->models[i];
      if (osseg_registry_get(d->reg, seg->models[i], &held[nheld]) == 0)
        e.models[i].sha256 = osseg_loaded_model_sha256(held[nheld++]);
    }
  }
  uint64_t now = osseg_now_ns();
  e.total_ms = total_ms > 0 ? total_ms : (double)(now - received) / 1e6;
  /* Time in the queue: until a worker took it, or until it ended there
   * (0 for a request answered before it was queued). */
  e.queue_ms = started ? queue_ms : p ? e.total_ms : 0.0;
  ossegd__audit_segment(&d->audit, &e);
  for (size_t i = 0; i < nheld; i++) osseg_loaded_model_unref(held[i]);
}

void ossegd__request_finish(struct ossegd *d, struct ossegd__request *req) {
  struct ossegd__session *s = req->s;
  ossegd__metrics_finished(d, req);
  ossegd__audit_request(d, s, req->id, req->msg->segment, req->seg.pipeline, req->model_ms,
                        req->outcome, req->received_ns, req->started, req->queue_ms,
                        req->total_ms);
  if (req->sprev)
    req->sprev->snext = req->snext;
  else
    s->reqs = req->snext;
  if (req->snext) req->snext->sprev = req->sprev;
  s->in_flight--;
  d->in_flight--;
  if (s->paused_inflight && s->in_flight <= d->opt.max_in_flight / 2) {
    s->paused_inflight = 0;
    ossegd__session_update_reading(s);
  }
  ossegd__request_free(req);
  session_unref(s);
  ossegd__maybe_finish(d);
}

/* ------------------------------------------------- immediate answers --- */

static void answer_health(struct ossegd__session *s, uint64_t id) {
  struct ossegd *d = s->d;
  Osseg__Wire__Health h = OSSEG__WIRE__HEALTH__INIT;
  h.ready = 1;
  h.version = (char *)ossegd_version();
  h.models = (uint32_t)osseg_registry_count(d->reg);
  h.queue_depth = ossegd__queue_depth(d);
  h.in_flight = d->in_flight;
  h.connections = d->nsessions;
  h.uptime_s = (double)(osseg_now_ns() - d->start_ns) / 1e9;
  h.max_frame_bytes = d->opt.max_frame_bytes;
  h.max_image_pixels = d->opt.max_image_pixels;
  h.has_max_image_side = 1;
  h.max_image_side = d->lim.max_image_side;
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  r.id = id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_HEALTH;
  r.health = &h;
  send_response(s, &r);
}

static void answer_list(struct ossegd__session *s, uint64_t id) {
  struct ossegd *d = s->d;
  Osseg__Wire__ModelInfo info[OSSEGD_MAX_MODELS];
  Osseg__Wire__ModelInfo *infop[OSSEGD_MAX_MODELS];
  struct osseg_loaded_model *held[OSSEGD_MAX_MODELS];
  char *classes[OSSEGD_MAX_MODELS][OSSEG_MAX_CLASSES];
  size_t n = 0;
  while (n < OSSEGD_MAX_MODELS && osseg_registry_get_at(d->reg, n, &held[n]) == 0) {
    struct osseg_loaded_model *m = held[n];
    osseg__wire__model_info__init(&info[n]);
    info[n].name = (char *)osseg_loaded_model_name(m);
    info[n].sha256 = (char *)osseg_loaded_model_sha256(m);
    info[n].input_size = osseg_loaded_model_input_size(m);
    info[n].precision = "fp32";
    for (size_t k = 0; k < d->nmodels; k++)
      if (strcmp(d->models[k].name, info[n].name) == 0)
        info[n].precision = (char *)osseg_precision_name(d->models[k].precision);
    size_t nc = osseg_loaded_model_class_count(m);
    if (nc > OSSEG_MAX_CLASSES) nc = OSSEG_MAX_CLASSES;
    for (size_t c = 0; c < nc; c++) classes[n][c] = (char *)osseg_loaded_model_class_name(m, c);
    info[n].n_classes = nc;
    info[n].classes = classes[n];
    info[n].has_generation = 1;
    info[n].generation = osseg_loaded_model_generation(m);
    infop[n] = &info[n];
    n++;
  }
  Osseg__Wire__ModelList ml = OSSEG__WIRE__MODEL_LIST__INIT;
  ml.n_models = n;
  ml.models = infop;
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  r.id = id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_MODELS;
  r.models = &ml;
  send_response(s, &r);
  for (size_t i = 0; i < n; i++) osseg_loaded_model_unref(held[i]);
}

static void answer_stats(struct ossegd__session *s, uint64_t id) {
  Osseg__Wire__Stats *st = ossegd__stats_build(s->d);
  if (!st) {
    ossegd__send_error(s, id, CODE(INTERNAL), "out of memory");
    return;
  }
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  r.id = id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_STATS;
  r.stats = st;
  send_response(s, &r);
  ossegd__stats_free(st);
}

/* An acknowledgement: an empty Done carrying the Cancel's id. */
static void answer_cancel(struct ossegd__session *s, uint64_t id, uint64_t target) {
  struct ossegd *d = s->d;
  for (struct ossegd__request *r = s->reqs; r; r = r->snext) {
    if (r->id != target) continue;
    atomic_store(&r->cancel, 1);
    if (ossegd__unschedule(d, r)) {
      /* Still waiting: answered here, no worker involved. */
      ossegd__send_error(s, r->id, CODE(CANCELLED), "request cancelled before it started");
      r->outcome = CODE(CANCELLED);
      ossegd__request_finish(d, r);
    }
    break;
  }
  if (s->closed) return;
  Osseg__Wire__Done done = OSSEG__WIRE__DONE__INIT;
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  r.id = id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_DONE;
  r.done = &done;
  send_response(s, &r);
}

/* ------------------------------------------------ queued deadlines --- */

void ossegd__deadline_arm(struct ossegd *d, uint64_t deadline_ns) {
  if (!d->deadline_timer_init || uv_is_closing((uv_handle_t *)&d->deadline_timer)) return;
  if (d->deadline_due_ns && d->deadline_due_ns <= deadline_ns) return; /* fires earlier */
  uint64_t now = osseg_now_ns();
  /* Rounded up to whole milliseconds (libuv's unit): never early by more
   * than the loop's cached clock, and an early firing only re-arms. */
  uint64_t ms = deadline_ns > now ? (deadline_ns - now + 999999u) / 1000000u : 0;
  d->deadline_due_ns = deadline_ns;
  uv_update_time(&d->loop);
  uv_timer_start(&d->deadline_timer, ossegd__on_deadline_timer, ms, 0);
}

void ossegd__on_deadline_timer(uv_timer_t *t) {
  struct ossegd *d = t->data;
  uint64_t now = osseg_now_ns(), next = 0;
  d->deadline_due_ns = 0;
  /* First take every expired request out of the queue, without answering
   * (answering can resume reading and so handle more frames, a Cancel
   * among them, which would change the lists being walked). The taken
   * requests are chained through qnext, which the queue no longer uses. */
  struct ossegd__request *expired = NULL;
  for (struct ossegd__session *s = d->sessions; s; s = s->next)
    for (struct ossegd__request *r = s->reqs; r; r = r->snext) {
      if (!r->deadline_ns) continue;
      if (r->deadline_ns > now) {
        if (!next || r->deadline_ns < next) next = r->deadline_ns;
        continue;
      }
      if (!ossegd__unschedule(d, r)) continue; /* a worker has it */
      r->qnext = expired;
      expired = r;
    }
  while (expired) {
    struct ossegd__request *r = expired;
    expired = r->qnext;
    ossegd__send_error(r->s, r->id, CODE(DEADLINE_EXCEEDED),
                       "deadline_ms passed while the request waited in the queue");
    r->outcome = CODE(DEADLINE_EXCEEDED);
    ossegd__request_finish(d, r);
  }
  if (next) ossegd__deadline_arm(d, next);
}

static void free_handle(uv_handle_t *h) { free(h); }

/* The oldest descriptor received on the connection and not yet taken, or
 * -1. libuv hands it out through uv_accept into a handle; the descriptor
 * is duplicated out of that handle, which is then closed. */
static int take_fd(struct ossegd__session *s) {
  if (uv_pipe_pending_count(&s->pipe) <= 0) return -1;
  uv_pipe_t *tmp = malloc(sizeof *tmp);
  if (!tmp) return -1;
  uv_pipe_init(&s->d->loop, tmp, 0);
  int fd = -1;
  uv_os_fd_t raw;
  if (uv_accept((uv_stream_t *)&s->pipe, (uv_stream_t *)tmp) == 0 &&
      uv_fileno((uv_handle_t *)tmp, &raw) == 0)
    fd = fcntl(raw, F_DUPFD_CLOEXEC, 3);
  uv_close((uv_handle_t *)tmp, free_handle);
  return fd;
}

/* Checks an ImageFd's descriptor: a readable regular file of at most
 * max_bytes (the frame limit: an image sent as a descriptor may be as large
 * as one sent in a frame, no larger, since a worker reads it into memory).
 * Nothing is read here; fstat and fcntl never block, so a FIFO, a socket or
 * a device is refused without touching it. Returns 0 or -1 with code and
 * text. */
static int check_fd(int fd, uint64_t max_bytes, uint64_t *size, int *code, char *text,
                    size_t size_text) {
  struct stat st;
  if (fd < 0) {
    *code = CODE(BAD_REQUEST);
    snprintf(text, size_text, "image.fd: no file descriptor came with the frame (SCM_RIGHTS)");
    return -1;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *code = CODE(BAD_REQUEST);
    snprintf(text, size_text, "image.fd: the descriptor is not a regular file");
    return -1;
  }
  /* An O_PATH descriptor passes fstat and reports O_RDONLY, but cannot be
   * read (pread fails with EBADF). */
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY || (fl & O_PATH)) {
    *code = CODE(BAD_REQUEST);
    snprintf(text, size_text, "image.fd: the descriptor is not open for reading");
    return -1;
  }
  if (st.st_size == 0) {
    *code = CODE(BAD_IMAGE);
    snprintf(text, size_text, "image.fd: the file is empty");
    return -1;
  }
  if ((uint64_t)st.st_size > max_bytes) {
    *code = CODE(IMAGE_TOO_LARGE);
    snprintf(text, size_text, "image.fd: the file's %lld bytes are over the limit of %llu",
             (long long)st.st_size, (unsigned long long)max_bytes);
    return -1;
  }
  *size = (uint64_t)st.st_size;
  return 0;
}

/* A Segment answered at once with an Error (never queued): counted,
 * audited and answered; msg and fd are consumed. */
static void refuse_segment(struct ossegd__session *s, Osseg__Wire__Request *msg, int fd,
                           uint64_t received, int code, const char *text) {
  struct ossegd *d = s->d;
  ossegd__metrics_refused(d, code, msg->segment);
  ossegd__audit_request(d, s, msg->id, msg->segment, NULL, NULL, code, received, 0, 0.0, 0.0);
  ossegd__send_error(s, msg->id, code, text);
  if (fd >= 0) close(fd);
  osseg__wire__request__free_unpacked(msg, NULL);
}

/* Takes ownership of msg. */
static void handle_segment(struct ossegd__session *s, Osseg__Wire__Request *msg,
                           uint64_t received) {
  struct ossegd *d = s->d;
  char text[512];
  int code = 0;
  uint64_t id = msg->id;
  /* A descriptor that came with the frame is taken whatever happens to the
   * request, so the next ImageFd gets its own. */
  int fd = msg->segment->image_case == OSSEG__WIRE__SEGMENT__IMAGE_FD ? take_fd(s) : -1;
  for (struct ossegd__request *r = s->reqs; r; r = r->snext)
    if (r->id == id) {
      refuse_segment(s, msg, fd, received, CODE(BAD_REQUEST),
                     "id: another request of this connection with this id is in flight");
      return;
    }
  if (s->in_flight >= d->opt.max_in_flight) { /* feed() pauses before this */
    refuse_segment(s, msg, fd, received, CODE(BUSY),
                   "too many requests in flight on this connection");
    return;
  }
  if (d->in_flight >= d->opt.max_in_flight_total) {
    refuse_segment(s, msg, fd, received, CODE(BUSY),
                   "too many requests in flight in the daemon (max_in_flight_total); retry "
                   "later");
    return;
  }
  struct ossegd__request *req = calloc(1, sizeof *req);
  if (!req) {
    refuse_segment(s, msg, fd, received, CODE(INTERNAL), "out of memory");
    return;
  }
  req->msg = msg;
  req->id = id;
  req->fd = fd; /* closed with the request */
  req->received_ns = received;
  if ((msg->segment->image_case == OSSEG__WIRE__SEGMENT__IMAGE_FD &&
       check_fd(fd, d->opt.max_frame_bytes, &req->fd_size, &code, text, sizeof text) != 0) ||
      ossegd__validate_segment(msg->segment, d->reg, &d->lim, &req->seg, &code, text,
                               sizeof text) != 0) {
    req->msg = NULL; /* back to refuse_segment, with the descriptor */
    req->fd = -1;
    ossegd__request_free(req);
    refuse_segment(s, msg, fd, received, code, text);
    return;
  }
  /* The daemon's request timeout stands in for a deadline not given. */
  uint32_t deadline_ms = req->seg.deadline_ms ? req->seg.deadline_ms : d->opt.request_timeout_ms;
  if (deadline_ms) req->deadline_ns = received + (uint64_t)deadline_ms * 1000000u;
  req->s = s;
  if (ossegd__schedule(d, req) != 0) {
    req->msg = NULL;
    req->fd = -1;
    ossegd__request_free(req);
    refuse_segment(s, msg, fd, received, CODE(BUSY), "the queue is full; retry later");
    return;
  }
  /* Only the loop thread touches the session list; the worker does not
   * look at it, so linking after queueing is safe. */
  req->snext = s->reqs;
  if (s->reqs) s->reqs->sprev = req;
  s->reqs = req;
  s->refs++;
  s->in_flight++;
  d->in_flight++;
  if (req->deadline_ns) ossegd__deadline_arm(d, req->deadline_ns);
  if (s->in_flight >= d->opt.max_in_flight) {
    s->paused_inflight = 1;
    ossegd__session_update_reading(s);
  }
}

static void handle_frame(struct ossegd__session *s, uint8_t *frame, size_t len) {
  struct ossegd *d = s->d;
  uint64_t received = osseg_now_ns();
  Osseg__Wire__Request *msg = osseg__wire__request__unpack(NULL, len, frame);
  free(frame);
  if (!msg) {
    osseg__log(&d->opt.log, OSSEG_LOG_WARN,
               "closing a connection: a %zu-byte frame is not a Request", len);
    ossegd__session_close(s);
    return;
  }
  char text[256];
  int code = 0;
  if (ossegd__validate_request(msg, &code, text, sizeof text) != 0) {
    if (msg->kind_case == OSSEG__WIRE__REQUEST__KIND_SEGMENT) {
      refuse_segment(s, msg, -1, received, code, text);
      return;
    }
    ossegd__metrics_refused(d, code, NULL);
    ossegd__send_error(s, msg->id, code, text);
    osseg__wire__request__free_unpacked(msg, NULL);
    return;
  }
  switch (msg->kind_case) {
    case OSSEG__WIRE__REQUEST__KIND_SEGMENT: handle_segment(s, msg, received); return;
    case OSSEG__WIRE__REQUEST__KIND_HEALTH: answer_health(s, msg->id); break;
    case OSSEG__WIRE__REQUEST__KIND_LIST_MODELS: answer_list(s, msg->id); break;
    case OSSEG__WIRE__REQUEST__KIND_STATS: answer_stats(s, msg->id); break;
    case OSSEG__WIRE__REQUEST__KIND_CANCEL: answer_cancel(s, msg->id, msg->cancel->id); break;
    default: break;
  }
  osseg__wire__request__free_unpacked(msg, NULL);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct ossegd__session *s = h->data;
  /* Reads are processed synchronously, so one buffer serves every
   * connection. */
  *buf = uv_buf_init((char *)s->d->readbuf, sizeof s->d->readbuf);
}

/* Feeds bytes to the frame reader and handles whole frames until the
 * input ends or the in-flight limit pauses the session; what is left then
 * waits in s->pending. */
static void feed(struct ossegd__session *s, const uint8_t *p, size_t left) {
  struct ossegd *d = s->d;
  s->feeding = 1;
  while (left > 0 && !s->closed && !s->paused_inflight) {
    size_t used = 0, len = 0;
    uint8_t *frame = NULL;
    int rc = ossegd__frame_reader_feed(&s->rd, p, left, &used, &frame, &len);
    p += used;
    left -= used;
    if (rc < 0) {
      osseg__log(&d->opt.log, OSSEG_LOG_WARN, "closing a connection: %s",
                 rc == OSSEG_ELIMIT ? "a frame over max_frame_bytes" : "out of memory");
      ossegd__session_close(s);
      break;
    }
    if (rc == 1) handle_frame(s, frame, len);
  }
  s->feeding = 0;
  if (left > 0 && !s->closed) {
    s->pending = malloc(left);
    if (!s->pending) {
      ossegd__session_close(s);
      return;
    }
    memcpy(s->pending, p, left);
    s->pending_len = left;
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  struct ossegd__session *s = stream->data;
  if (nread < 0) {
    /* EOF or an error: the client is gone (a half-close counts). */
    ossegd__session_close(s);
    return;
  }
  s->d->bytes_in += (uint64_t)nread;
  feed(s, (const uint8_t *)buf->base, (size_t)nread);
}

void ossegd__session_update_reading(struct ossegd__session *s) {
  int want = !s->closed && !s->d->draining && !s->paused_inflight && !s->paused_write;
  if (want && s->pending && !s->feeding) {
    uint8_t *p = s->pending;
    size_t n = s->pending_len;
    s->pending = NULL;
    s->pending_len = 0;
    feed(s, p, n);
    free(p);
    want = !s->closed && !s->d->draining && !s->paused_inflight && !s->paused_write;
  }
  if (s->pending) want = 0; /* fed first, when the session can take it */
  if (want && !s->reading) {
    if (uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read) == 0) s->reading = 1;
  } else if (!want && s->reading && !s->closed) {
    uv_read_stop((uv_stream_t *)&s->pipe);
    s->reading = 0;
  }
}

static void on_refused_close(uv_handle_t *h) { free(h); }

/* A peer the allow-list does not let in: one Error frame, then the
 * connection is shut down (after the write) and closed. Nothing is read.
 * The session that accepted it never joins the daemon's list; it is freed
 * with the handle. */
struct refusal {
  struct ossegd__session *s;
  uv_write_t write;
  uv_shutdown_t shutdown;
  uint8_t *frame;
};

static void on_refusal_closed(uv_handle_t *h) {
  struct refusal *r = h->data;
  free(r->frame);
  free(r->s);
  free(r);
}

static void on_refusal_shutdown(uv_shutdown_t *sh, int status) {
  struct refusal *r = sh->data;
  uv_close((uv_handle_t *)&r->s->pipe, on_refusal_closed);
}

static void on_refusal_written(uv_write_t *w, int status) { (void)w; }

static void refuse_peer(struct ossegd *d, struct refusal *r) {
  const struct ossegd__peer *peer = &r->s->peer;
  uint64_t serial = r->s->serial;
  uv_pipe_t *pipe = &r->s->pipe;
  pipe->data = r;
  d->refused_peers++;
  ossegd__audit_refused(&d->audit, peer, serial, CODE(PERMISSION_DENIED), "access");
  osseg__log(&d->opt.log, OSSEG_LOG_WARN,
             "refusing connection %llu: uid %u gid %u pid %d is not on the allow-list",
             (unsigned long long)serial, (unsigned)peer->uid, (unsigned)peer->gid,
             (int)peer->pid);
  char text[160];
  snprintf(text, sizeof text,
           "permission denied: uid %u is not allowed to use this daemon (its [access] list)",
           (unsigned)peer->uid);
  Osseg__Wire__Response resp = OSSEG__WIRE__RESPONSE__INIT;
  Osseg__Wire__Error e = OSSEG__WIRE__ERROR__INIT;
  e.code = CODE(PERMISSION_DENIED);
  e.message = text;
  resp.id = 0;
  resp.kind_case = OSSEG__WIRE__RESPONSE__KIND_ERROR;
  resp.error = &e;
  size_t len = 0;
  r->frame = ossegd__pack_response(&resp, &len);
  r->write.data = r->shutdown.data = r;
  if (r->frame) {
    uv_buf_t b = uv_buf_init((char *)r->frame, (unsigned)len);
    if (uv_write(&r->write, (uv_stream_t *)pipe, &b, 1, on_refusal_written) != 0) {
      free(r->frame);
      r->frame = NULL;
    }
  }
  /* The shutdown completes after the write; then the handle closes. */
  if (uv_shutdown(&r->shutdown, (uv_stream_t *)pipe, on_refusal_shutdown) != 0)
    uv_close((uv_handle_t *)pipe, on_refusal_closed);
}

/* Identifies the peer of a connection just accepted into pipe and checks it
 * against the allow-list. 1 = allowed; 0 = not (or not identified: logged). */
static int peer_allowed(struct ossegd *d, uv_pipe_t *pipe, struct ossegd__peer *peer) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)pipe, &fd) != 0 || ossegd__peer_get(fd, peer) != 0) {
    osseg__log(&d->opt.log, OSSEG_LOG_WARN, "refusing a connection: no peer credentials");
    peer->uid = (uid_t)-1;
    peer->gid = (gid_t)-1;
    peer->pid = 0;
    return 0;
  }
  return ossegd__access_check(&d->acl, fd, peer);
}

void ossegd__on_connection(uv_stream_t *server, int status) {
  struct ossegd *d = server->data;
  if (status < 0) {
    /* EMFILE and friends: libuv keeps a spare descriptor to shed the
     * connection; the listener stays up. */
    osseg__log(&d->opt.log, OSSEG_LOG_WARN, "accept failed: %s", uv_strerror(status));
    return;
  }
  if (d->draining) return;
  if (d->nsessions >= d->opt.max_connections) {
    uv_pipe_t *p = malloc(sizeof *p);
    if (!p) return;
    uv_pipe_init(&d->loop, p, 0);
    if (uv_accept(server, (uv_stream_t *)p) == 0) {
      struct ossegd__peer peer = {0, (uid_t)-1, (gid_t)-1};
      uv_os_fd_t fd;
      if (uv_fileno((uv_handle_t *)p, &fd) == 0) ossegd__peer_get(fd, &peer);
      uint64_t serial = ++d->connections_seen;
      osseg__log(&d->opt.log, OSSEG_LOG_WARN,
                 "refusing connection %llu (uid %u pid %d): %u connections open",
                 (unsigned long long)serial, (unsigned)peer.uid, (int)peer.pid, d->nsessions);
      ossegd__audit_refused(&d->audit, &peer, serial, CODE(BUSY), "max_connections");
    }
    uv_close((uv_handle_t *)p, on_refused_close);
    return;
  }
  struct ossegd__session *s = calloc(1, sizeof *s);
  if (!s) return;
  s->d = d;
  s->refs = 1;
  ossegd__frame_reader_init(&s->rd, d->opt.max_frame_bytes);
  /* ipc: libuv reads with recvmsg and keeps SCM_RIGHTS descriptors for
   * uv_accept (ImageFd). */
  uv_pipe_init(&d->loop, &s->pipe, 1);
  s->pipe.data = s;
  if (uv_accept(server, (uv_stream_t *)&s->pipe) != 0) {
    s->closed = 1;
    uv_close((uv_handle_t *)&s->pipe, on_close);
    return;
  }
  s->serial = ++d->connections_seen;
  if (!peer_allowed(d, &s->pipe, &s->peer)) {
    struct refusal *r = calloc(1, sizeof *r);
    if (!r) {
      s->closed = 1;
      uv_close((uv_handle_t *)&s->pipe, on_close);
      return;
    }
    r->s = s;
    refuse_peer(d, r);
    return;
  }
  s->next = d->sessions;
  if (d->sessions) d->sessions->prev = s;
  d->sessions = s;
  d->nsessions++;
  d->connections_total++;
  ossegd__session_update_reading(s);
}
