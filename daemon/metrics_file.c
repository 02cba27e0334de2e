/* --metrics-file: the Stats in the Prometheus text format, rewritten every
 * interval for node_exporter's textfile collector.
 *
 * The text is made on the loop thread (the counters live there; a few KB,
 * microseconds). The file is written by a libuv pool thread, because
 * osseg_output_write_file fsyncs before it renames, and an fsync behind a
 * busy disk can take seconds: the loop must not wait for it. One write at
 * a time: a tick that finds the previous write still running is skipped. */
#include <stdlib.h>
#include <string.h>

#include "daemon_internal.h"

struct ossegd__metrics_file {
  struct ossegd *d;
  char *path;
  uv_timer_t timer;
  int timer_init;
  uv_work_t work;
  int busy;            /* a write is queued or running (loop thread's flag) */
  /* The write's text and result: the pool thread's between uv_queue_work
   * and after_write, the loop thread's otherwise. */
  char *text;
  size_t len;
  int rc;
  struct osseg_diag diag;
  int failing;         /* the last write failed and was logged */
};

/* Logs the first failure and the first success after failures only, so a
 * full disk does not flood the log every interval. */
static void report(struct ossegd__metrics_file *mf, int rc, const struct osseg_diag *diag) {
  if (rc && !mf->failing)
    osseg__log(&mf->d->opt.log, OSSEG_LOG_WARN, "metrics file: %s (retrying every %u ms)",
               diag->message[0] ? diag->message : osseg_strerror(rc),
               (unsigned)mf->d->opt.metrics_interval_ms);
  else if (!rc && mf->failing)
    osseg__log(&mf->d->opt.log, OSSEG_LOG_INFO, "metrics file: %s written again", mf->path);
  mf->failing = rc != 0;
}

/* Formats and writes on the calling thread. */
static int write_now(struct ossegd__metrics_file *mf, struct osseg_diag *diag) {
  char *text = NULL;
  size_t len = 0;
  int rc = ossegd__metrics_text(mf->d, &text, &len);
  if (rc) return osseg__fail(diag, rc, "%s: %s", mf->path, osseg_strerror(rc));
  rc = osseg_output_write_file(mf->path, text, len, diag);
  osseg__free(text);
  return rc;
}

static void do_write(uv_work_t *w) {
  struct ossegd__metrics_file *mf = w->data;
  osseg_diag_clear(&mf->diag);
  mf->rc = osseg_output_write_file(mf->path, mf->text, mf->len, &mf->diag);
}

static void after_write(uv_work_t *w, int status) {
  struct ossegd__metrics_file *mf = w->data;
  osseg__free(mf->text);
  mf->text = NULL;
  mf->busy = 0;
  report(mf, status ? OSSEG_EIO : mf->rc, &mf->diag);
}

static void on_tick(uv_timer_t *t) {
  struct ossegd__metrics_file *mf = t->data;
  if (mf->busy) return;
  int rc = ossegd__metrics_text(mf->d, &mf->text, &mf->len);
  if (rc) {
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    osseg__fail(&diag, rc, "%s: %s", mf->path, osseg_strerror(rc));
    report(mf, rc, &diag);
    return;
  }
  mf->work.data = mf;
  mf->busy = 1;
  if (uv_queue_work(&mf->d->loop, &mf->work, do_write, after_write) != 0) {
    osseg__free(mf->text);
    mf->text = NULL;
    mf->busy = 0;
  }
}

int ossegd__metrics_file_start(struct ossegd *d, struct osseg_diag *diag) {
  if (d->opt.metrics_interval_ms == 0)
    return osseg__fail(diag, OSSEG_EINVAL, "the metrics interval must be positive");
  struct ossegd__metrics_file *mf = calloc(1, sizeof *mf);
  if (!mf) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  d->metrics_file = mf;
  mf->d = d;
  mf->path = strdup(d->opt.metrics_file);
  if (!mf->path) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  /* Once now: a path that cannot be written is a start-up error. */
  struct osseg_diag local;
  osseg_diag_clear(&local);
  int rc = write_now(mf, &local);
  if (rc) return osseg__fail(diag, rc, "metrics file: %s", local.message);
  uv_timer_init(&d->loop, &mf->timer);
  mf->timer.data = mf;
  mf->timer_init = 1;
  uv_timer_start(&mf->timer, on_tick, d->opt.metrics_interval_ms, d->opt.metrics_interval_ms);
  osseg__log(&d->opt.log, OSSEG_LOG_INFO, "metrics: %s, rewritten every %g s", mf->path,
             d->opt.metrics_interval_ms / 1000.0);
  return 0;
}

void ossegd__metrics_file_stop(struct ossegd *d) {
  struct ossegd__metrics_file *mf = d->metrics_file;
  if (mf && mf->timer_init && !uv_is_closing((uv_handle_t *)&mf->timer))
    uv_close((uv_handle_t *)&mf->timer, NULL);
}

void ossegd__metrics_file_final(struct ossegd *d) {
  struct ossegd__metrics_file *mf = d->metrics_file;
  if (!mf) return;
  /* The loop has ended, so no pool write is pending: the last word is
   * this one, with the final counts. */
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  report(mf, write_now(mf, &diag), &diag);
}

void ossegd__metrics_file_free(struct ossegd *d) {
  struct ossegd__metrics_file *mf = d->metrics_file;
  if (!mf) return;
  osseg__free(mf->text);
  free(mf->path);
  free(mf);
  d->metrics_file = NULL;
}
