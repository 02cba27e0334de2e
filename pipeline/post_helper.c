/* A workspace's post-processing helper: one thread that turns the logits
 * of one class into its mask and runs (lane 1 of the workspace) while the
 * caller does another class and calls the run's callbacks, which stay on
 * the calling thread and in class order.
 *
 * Why a thread of the workspace and not OpenMP: the engine's executor runs
 * its OpenMP team on all cores, and a second team started by a worker
 * thread would compete with it. A run uses the helper only when the engine
 * has no inference queued or running (run.c), and a workspace belongs to
 * one thread, so the helper never has more than one job. */
#include <pthread.h>

#include "workspace_internal.h"

struct osseg__post_helper {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct osseg_workspace *ws;
  /* The job, under mu: posted (has_job) by the caller, done by the helper. */
  const struct osseg_pipeline *p;
  const struct osseg_run_request *rq;
  size_t cls;
  int has_job, done, quit;
  int rc;
  struct osseg_bitmask *mask;
};

static void *helper_main(void *arg) {
  struct osseg__post_helper *h = arg;
  pthread_mutex_lock(&h->mu);
  for (;;) {
    while (!h->has_job && !h->quit) pthread_cond_wait(&h->cv, &h->mu);
    if (h->quit) break;
    const struct osseg_pipeline *p = h->p;
    const struct osseg_run_request *rq = h->rq;
    size_t c = h->cls;
    h->has_job = 0;
    pthread_mutex_unlock(&h->mu);
    struct osseg_bitmask *mask = NULL;
    int rc = osseg__class_post(p, h->ws, rq, &h->ws->lane[1], c, &mask);
    pthread_mutex_lock(&h->mu);
    h->rc = rc;
    h->mask = mask;
    h->done = 1;
    pthread_cond_broadcast(&h->cv);
  }
  pthread_mutex_unlock(&h->mu);
  return NULL;
}

int osseg__post_helper_start(struct osseg_workspace *ws) {
  if (ws->helper) return 0;
  struct osseg__post_helper *h = osseg__calloc(1, sizeof *h);
  if (!h) return OSSEG_ENOMEM;
  h->ws = ws;
  if (pthread_mutex_init(&h->mu, NULL) != 0) {
    osseg__free(h);
    return OSSEG_ENOMEM;
  }
  int err = pthread_cond_init(&h->cv, NULL);
  if (err == 0) {
    err = pthread_create(&h->thread, NULL, helper_main, h);
    if (err) pthread_cond_destroy(&h->cv);
  }
  if (err) {
    pthread_mutex_destroy(&h->mu);
    osseg__free(h);
    return OSSEG_ENOMEM;
  }
  ws->helper = h;
  return 0;
}

void osseg__post_helper_post(struct osseg__post_helper *h, const struct osseg_pipeline *p,
                             const struct osseg_run_request *rq, size_t c) {
  pthread_mutex_lock(&h->mu);
  h->p = p;
  h->rq = rq;
  h->cls = c;
  h->done = 0;
  h->has_job = 1;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
}

int osseg__post_helper_wait(struct osseg__post_helper *h, struct osseg_bitmask **mask) {
  pthread_mutex_lock(&h->mu);
  while (!h->done) pthread_cond_wait(&h->cv, &h->mu);
  h->done = 0;
  int rc = h->rc;
  *mask = h->mask;
  pthread_mutex_unlock(&h->mu);
  return rc;
}

void osseg__post_helper_stop(struct osseg_workspace *ws) {
  struct osseg__post_helper *h = ws->helper;
  if (!h) return;
  pthread_mutex_lock(&h->mu);
  h->quit = 1;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
  pthread_join(h->thread, NULL);
  pthread_cond_destroy(&h->cv);
  pthread_mutex_destroy(&h->mu);
  osseg__free(h);
  ws->helper = NULL;
}
