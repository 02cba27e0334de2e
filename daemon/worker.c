/* The scheduler (a bounded queue with two priorities) and the worker
 * threads that run Segment requests through the pipeline. Workers see a
 * validated request and produce encoded frames; the loop thread writes
 * them (ossegd__drain_completions). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon_internal.h"

#define CODE(x) OSSEG__WIRE__ERROR__CODE__##x

int ossegd__schedule(struct ossegd *d, struct ossegd__request *req) {
  int pri = req->seg.priority == OSSEG__WIRE__PRIORITY__PRIORITY_BATCH;
  pthread_mutex_lock(&d->mu);
  if (d->queued >= d->opt.max_queue) {
    pthread_mutex_unlock(&d->mu);
    return OSSEG_ELIMIT;
  }
  req->qnext = NULL;
  if (d->q_tail[pri])
    d->q_tail[pri]->qnext = req;
  else
    d->q_head[pri] = req;
  d->q_tail[pri] = req;
  d->queued++;
  d->queued_pri[pri]++;
  pthread_cond_signal(&d->cv);
  pthread_mutex_unlock(&d->mu);
  return 0;
}

int ossegd__unschedule(struct ossegd *d, struct ossegd__request *req) {
  int found = 0;
  pthread_mutex_lock(&d->mu);
  for (int pri = 0; pri < 2 && !found; pri++) {
    struct ossegd__request *prev = NULL;
    for (struct ossegd__request *r = d->q_head[pri]; r; prev = r, r = r->qnext) {
      if (r != req) continue;
      if (prev)
        prev->qnext = r->qnext;
      else
        d->q_head[pri] = r->qnext;
      if (d->q_tail[pri] == r) d->q_tail[pri] = prev;
      d->queued--;
      d->queued_pri[pri]--;
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&d->mu);
  return found;
}

unsigned ossegd__queue_depth(struct ossegd *d) {
  pthread_mutex_lock(&d->mu);
  unsigned n = d->queued;
  pthread_mutex_unlock(&d->mu);
  return n;
}

void ossegd__queue_depths(struct ossegd *d, unsigned out[2]) {
  pthread_mutex_lock(&d->mu);
  out[0] = d->queued_pri[0];
  out[1] = d->queued_pri[1];
  pthread_mutex_unlock(&d->mu);
}

static void push_completion(struct ossegd *d, struct ossegd__completion *c) {
  c->next = NULL;
  pthread_mutex_lock(&d->mu);
  if (d->c_tail)
    d->c_tail->next = c;
  else
    d->c_head = c;
  d->c_tail = c;
  pthread_mutex_unlock(&d->mu);
  uv_async_send(&d->async);
}

/* Hands a non-final frame to the loop; takes ownership of frame. */
static int emit(struct ossegd__worker *w, struct ossegd__request *req, uint8_t *frame,
                size_t len) {
  struct ossegd *d = w->d;
  if (!frame) return OSSEG_ENOMEM;
  struct ossegd__completion *c = malloc(sizeof *c);
  if (!c) {
    free(frame);
    return OSSEG_ENOMEM;
  }
  c->req = req;
  c->frame = frame;
  c->len = len;
  c->final = 0;
  push_completion(d, c);
  atomic_fetch_add(&w->beat, 1); /* a frame handed over is progress (the watchdog) */
  return 0;
}

static void finish(struct ossegd *d, struct ossegd__request *req, int outcome, uint8_t *frame,
                   size_t len) {
  req->outcome = outcome;
  req->done.req = req;
  req->done.frame = frame;
  req->done.len = len;
  req->done.final = 1;
  push_completion(d, &req->done);
}

static void finish_error(struct ossegd *d, struct ossegd__request *req, int code,
                         const char *message) {
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  Osseg__Wire__Error e = OSSEG__WIRE__ERROR__INIT;
  e.code = code;
  e.message = (char *)message;
  r.id = req->id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_ERROR;
  r.error = &e;
  size_t len = 0;
  uint8_t *f = ossegd__pack_response(&r, &len);
  finish(d, req, code, f, len);
}

struct run_ctx {
  struct ossegd__worker *w;
  struct ossegd__request *req;
  uint32_t width, height;
  /* The ClassMask frame of each class, packed by on_class_work (maybe on
   * the workspace's helper thread) and sent by on_class, in class order;
   * what a failed run leaves here is freed after it. */
  uint8_t *frame[OSSEG_MAX_CLASSES];
  size_t frame_len[OSSEG_MAX_CLASSES];
};

/* A 1-bit gray PNG of a mask (1 = the class). */
static int mask_png(const struct osseg_bitmask *m, uint8_t **png, size_t *size) {
  struct osseg_image img;
  int rc = osseg_image_init(&img, m->width, m->height, 1, 8);
  if (rc) return rc;
  for (uint32_t y = 0; y < m->height; y++) {
    uint8_t *row = img.data + (size_t)y * img.stride;
    for (uint32_t x = 0; x < m->width; x++) {
      uint64_t p = (uint64_t)y * m->width + x;
      row[x] = (uint8_t)((m->bits[p / 64] >> (p % 64)) & 1);
    }
  }
  rc = osseg_png_encode_mask_mem(&img, 1, png, size, NULL);
  osseg_image_free(&img);
  return rc;
}

/* Packs the ClassMask frame of one class. Runs on the worker or on its
 * workspace's helper thread, for two classes at once: it touches only its
 * class's slot and the text buffer of the thread it runs on. */
static int on_class_work(void *vctx, size_t cls, const char *name,
                         const struct osseg_bitmask *mask, const struct osseg_run *runs,
                         size_t nruns) {
  struct run_ctx *ctx = vctx;
  const struct ossegd__request *req = ctx->req;
  if (req->seg.output == OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY) return 0;
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  Osseg__Wire__ClassMask cm = OSSEG__WIRE__CLASS_MASK__INIT;
  cm.index = (uint32_t)cls;
  cm.name = (char *)name;
  cm.area = osseg_runs_area(runs, nruns);
  cm.width = mask->width;
  cm.height = mask->height;
  uint8_t *png = NULL;
  if (req->seg.output == OSSEG__WIRE__OUTPUT__OUTPUT_PNG_MASK) {
    size_t size = 0;
    int rc = mask_png(mask, &png, &size);
    if (rc) return rc;
    cm.has_png = 1;
    cm.png.data = png;
    cm.png.len = size;
  } else {
    struct ossegd__worker *w = ctx->w;
    int k = pthread_equal(pthread_self(), w->self) ? 0 : 1;
    size_t need = osseg_rle_format_bound(nruns) + 1;
    if (need > w->text_cap[k]) {
      char *t = realloc(w->text[k], need);
      if (!t) return OSSEG_ENOMEM;
      w->text[k] = t;
      w->text_cap[k] = need;
    }
    w->text[k][osseg_rle_format(runs, nruns, w->text[k])] = '\0';
    cm.rle = w->text[k];
  }
  r.id = req->id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_CLASS_MASK;
  r.class_mask = &cm;
  size_t len = 0;
  uint8_t *f = ossegd__pack_response(&r, &len);
  osseg__free(png);
  if (!f) return OSSEG_ENOMEM;
  ctx->frame[cls] = f;
  ctx->frame_len[cls] = len;
  return 0;
}

/* Sends the frame on_class_work packed, in class order. */
static int on_class(void *vctx, size_t cls, const char *name, const struct osseg_bitmask *mask,
                    const struct osseg_run *runs, size_t nruns) {
  (void)name;
  (void)runs;
  (void)nruns;
  struct run_ctx *ctx = vctx;
  ctx->width = mask->width;
  ctx->height = mask->height;
  if (ctx->req->seg.output == OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY) return 0;
  uint8_t *f = ctx->frame[cls];
  ctx->frame[cls] = NULL;
  return emit(ctx->w, ctx->req, f, ctx->frame_len[cls]);
}

static int on_dice(void *vctx, const struct osseg_dice_report *rep) {
  struct run_ctx *ctx = vctx;
  struct ossegd__request *req = ctx->req;
  Osseg__Wire__DiceReport dr = OSSEG__WIRE__DICE_REPORT__INIT;
  Osseg__Wire__DiceReport__ClassDice cd[OSSEG_MAX_CLASSES];
  Osseg__Wire__DiceReport__ClassDice *cdp[OSSEG_MAX_CLASSES];
  for (size_t i = 0; i < rep->n; i++) {
    osseg__wire__dice_report__class_dice__init(&cd[i]);
    cd[i].index = (uint32_t)rep->cls[i];
    cd[i].name = (char *)osseg_pipeline_class_name(req->seg.pipeline, rep->cls[i]);
    cd[i].dice = rep->dice[i];
    cdp[i] = &cd[i];
  }
  dr.n_classes = rep->n;
  dr.classes = cdp;
  dr.mean = rep->mean;
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  r.id = req->id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_DICE;
  r.dice = &dr;
  size_t len = 0;
  uint8_t *f = ossegd__pack_response(&r, &len); /* before len is read */
  return emit(ctx->w, req, f, len);
}

static double ms_since(uint64_t t0, uint64_t t1) { return (double)(t1 - t0) / 1e6; }

static void run_request(struct ossegd__worker *w, struct ossegd__request *req) {
  struct ossegd *d = w->d;
  uint64_t started = osseg_now_ns();
  req->started = 1;
  req->queue_ms = ms_since(req->received_ns, started);
  if (atomic_load(&req->cancel)) {
    finish_error(d, req, CODE(CANCELLED), "request cancelled before it started");
    return;
  }
  if (req->deadline_ns && started >= req->deadline_ns) {
    finish_error(d, req, CODE(DEADLINE_EXCEEDED), "deadline_ms passed while the request waited");
    return;
  }
  const Osseg__Wire__Segment *s = req->msg->segment;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  char msg[sizeof diag.message + 128];

  /* Label JSON too long to parse on the loop thread is parsed here. */
  if (req->seg.gt_label_json) {
    int code;
    if (ossegd__parse_label_json(req->seg.gt_label_json, req->seg.pipeline, &req->seg.gt_labels,
                                 &code, msg, sizeof msg) != 0) {
      finish_error(d, req, code, msg);
      return;
    }
  }

  /* Ground truth: the runs of each given class (label polygons are drawn
   * by the pipeline once the image is decoded). */
  struct osseg_ground_truth gt;
  memset(&gt, 0, sizeof gt);
  int gt_rles = req->seg.has_gt && !req->seg.gt_labels;
  if (gt_rles) {
    uint64_t npixels = OSSEG_MAX_PIXELS;
    if (req->seg.image == OSSEGD_IMAGE_RAW) npixels = (uint64_t)s->raw->width * s->raw->height;
    for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++) {
      if (!req->seg.gt_rle[c]) continue;
      w->gt[c].n = 0;
      int rc = osseg_rle_parse(req->seg.gt_rle[c], strlen(req->seg.gt_rle[c]), npixels,
                               &w->gt[c], &diag);
      if (rc) {
        snprintf(msg, sizeof msg, "ground_truth.rles: class '%s': %s",
                 osseg_pipeline_class_name(req->seg.pipeline, c),
                 diag.message[0] ? diag.message : osseg_strerror(rc));
        finish_error(d, req, rc == OSSEG_ENOMEM ? CODE(INTERNAL) : CODE(BAD_REQUEST), msg);
        return;
      }
      gt.has[c] = 1;
      gt.runs[c] = w->gt[c].v;
      gt.nruns[c] = w->gt[c].n;
    }
  }

  struct run_ctx ctx = {.w = w, .req = req};
  struct osseg_timings t;
  memset(&t, 0, sizeof t);
  struct osseg_run_request rq = {.on_class = on_class,
                                 .on_class_work = on_class_work,
                                 .on_dice = req->seg.has_gt ? on_dice : NULL,
                                 .ctx = &ctx,
                                 .gt = gt_rles ? &gt : NULL,
                                 .labels = req->seg.gt_labels,
                                 .cancel = &req->cancel,
                                 .deadline_ns = req->deadline_ns,
                                 .timings = &t,
                                 .parallel_postprocess = 1};
  int rc;
  if (req->seg.image == OSSEGD_IMAGE_RAW) {
    const Osseg__Wire__RawImage *raw = s->raw;
    struct osseg_image img;
    rc = osseg_image_init(&img, raw->width, raw->height, 1, raw->bit_depth);
    if (rc == 0) {
      size_t row = (size_t)raw->width * (raw->bit_depth / 8);
      for (uint32_t y = 0; y < raw->height; y++)
        memcpy(img.data + (size_t)y * img.stride, raw->pixels.data + (size_t)y * row, row);
      rc = osseg_pipeline_run_image(req->seg.pipeline, w->ws, &img, &rq, &diag);
      osseg_image_free(&img);
    }
  } else if (req->seg.image == OSSEGD_IMAGE_FD) {
    /* Read from offset 0 whatever the descriptor's position, then closed. */
    size_t size = (size_t)req->fd_size, got = 0;
    uint8_t *buf = malloc(size ? size : 1);
    rc = buf ? 0 : OSSEG_ENOMEM;
    while (rc == 0 && got < size) {
      ssize_t n = pread(req->fd, buf + got, size - got, (off_t)got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) rc = osseg__fail(&diag, OSSEG_EIO, "image.fd: %s",
                                   n < 0 ? strerror(errno) : "the file shrank while read");
      else got += (size_t)n;
    }
    close(req->fd);
    req->fd = -1;
    if (rc == 0)
      rc = osseg_pipeline_run_png(req->seg.pipeline, w->ws, buf, size, &rq, &diag);
    free(buf);
    const struct osseg_image *img = osseg_workspace_image(w->ws);
    if (rc == 0 && img) {
      ctx.width = img->width;
      ctx.height = img->height;
    }
  } else {
    rc = osseg_pipeline_run_png(req->seg.pipeline, w->ws, s->png.data, s->png.len, &rq, &diag);
    const struct osseg_image *img = osseg_workspace_image(w->ws);
    if (rc == 0 && img) {
      ctx.width = img->width;
      ctx.height = img->height;
    }
  }
  /* Frames packed for classes the run did not get to send. */
  for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++) free(ctx.frame[c]);
  uint64_t ended = osseg_now_ns();
  req->total_ms = ms_since(req->received_ns, ended);
  memcpy(req->model_ms, t.model_ms, sizeof req->model_ms);
  if (rc) {
    const char *text = diag.message[0] ? diag.message : osseg_strerror(rc);
    int code;
    switch (rc) {
      case OSSEG_ECANCELED: code = CODE(CANCELLED); text = "request cancelled"; break;
      case OSSEG_ETIMEDOUT: code = CODE(DEADLINE_EXCEEDED); text = "deadline_ms passed"; break;
      case OSSEG_EPARSE:
      case OSSEG_EUNSUPPORTED:
      case OSSEG_EIO: code = CODE(BAD_IMAGE); break;
      case OSSEG_ELIMIT: code = CODE(IMAGE_TOO_LARGE); break;
      case OSSEG_ERANGE:
        /* Ground truth whose runs pass the end of the image (validation
         * cannot know an ImageFd's size): the pipeline's message names the
         * class. Label polygons are clipped to the image instead. */
        code = gt_rles ? CODE(BAD_REQUEST) : CODE(BAD_IMAGE);
        break;
      default: code = CODE(INTERNAL); break;
    }
    snprintf(msg, sizeof msg, "%s%s", code == CODE(BAD_REQUEST) ? "ground_truth.rles: " : "",
             text);
    finish_error(d, req, code, msg);
    return;
  }

  size_t nm = osseg_pipeline_model_count(req->seg.pipeline);
  Osseg__Wire__ModelTime mt[OSSEG_MAX_MODELS];
  Osseg__Wire__ModelTime *mtp[OSSEG_MAX_MODELS];
  for (size_t i = 0; i < nm; i++) {
    osseg__wire__model_time__init(&mt[i]);
    mt[i].model = (char *)osseg_loaded_model_name(osseg_pipeline_model(req->seg.pipeline, i));
    mt[i].ms = t.model_ms[i];
    mtp[i] = &mt[i];
  }
  Osseg__Wire__Done done = OSSEG__WIRE__DONE__INIT;
  done.width = ctx.width;
  done.height = ctx.height;
  done.queue_ms = req->queue_ms;
  done.decode_ms = t.decode_ms;
  done.preprocess_ms = t.preprocess_ms;
  done.n_inference = nm;
  done.inference = mtp;
  done.postprocess_ms = t.postprocess_ms;
  done.total_ms = req->total_ms;
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  r.id = req->id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_DONE;
  r.done = &done;
  size_t len = 0;
  uint8_t *f = ossegd__pack_response(&r, &len);
  finish(d, req, -1, f, len);
}

void *ossegd__worker_main(void *arg) {
  struct ossegd__worker *w = arg;
  struct ossegd *d = w->d;
  /* Set by the thread itself: pthread_create's store of the id may come
   * after the thread starts. The helper threads, started later from this
   * one, see it too. */
  w->self = pthread_self();
  for (;;) {
    pthread_mutex_lock(&d->mu);
    while (d->queued == 0 && !d->workers_stop) {
      atomic_fetch_add(&w->beat, 1);
      if (!d->idle_wait_ms) {
        pthread_cond_wait(&d->cv, &d->mu);
        continue;
      }
      /* With the watchdog: wake up now and then to show we are alive. */
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)d->idle_wait_ms * 1000000u;
      until.tv_sec += (time_t)(ns / 1000000000u);
      until.tv_nsec = (long)(ns % 1000000000u);
      pthread_cond_timedwait(&d->cv, &d->mu, &until);
    }
    if (d->queued == 0) {
      pthread_mutex_unlock(&d->mu);
      break;
    }
    /* Interactive before batch. */
    int pri = d->q_head[0] ? 0 : 1;
    struct ossegd__request *req = d->q_head[pri];
    d->q_head[pri] = req->qnext;
    if (!d->q_head[pri]) d->q_tail[pri] = NULL;
    d->queued--;
    d->queued_pri[pri]--;
    pthread_mutex_unlock(&d->mu);
    atomic_store(&w->busy, 1);
    atomic_fetch_add(&w->beat, 1);
    run_request(w, req);
    atomic_fetch_add(&w->beat, 1);
    atomic_store(&w->busy, 0);
  }
  return NULL;
}

void ossegd__request_free(struct ossegd__request *req) {
  if (!req) return;
  if (req->fd >= 0) close(req->fd);
  ossegd__segment_release(&req->seg);
  if (req->msg) osseg__wire__request__free_unpacked(req->msg, NULL);
  free(req);
}

void ossegd__drain_completions(uv_async_t *async) {
  struct ossegd *d = async->data;
  pthread_mutex_lock(&d->mu);
  struct ossegd__completion *c = d->c_head;
  d->c_head = d->c_tail = NULL;
  pthread_mutex_unlock(&d->mu);
  while (c) {
    struct ossegd__completion *next = c->next;
    struct ossegd__request *req = c->req;
    struct ossegd__session *s = req->s;
    if (c->frame) {
      if (!s->closed)
        ossegd__session_write(s, c->frame, c->len);
      else
        free(c->frame);
    } else if (c->final) {
      ossegd__session_close(s); /* not even the error could be encoded */
    }
    if (c->final)
      ossegd__request_finish(d, req);
    else
      free(c);
    c = next;
  }
  if (atomic_load(&d->stop_requested)) {
    /* ossegd_stop from another thread. */
    ossegd__begin_drain(d);
  }
}
