/* The inference executor (engine/executor.c): every run of every model from
 * every thread executes on one engine thread, one at a time, with results
 * identical to sequential runs; a queued run whose cancel flag or deadline
 * fires leaves the queue promptly instead of waiting for the runs ahead. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine_test_hooks.h"
#include "engine_test_util.h"
#include "osseg_engine.h"
#include "test_support.h"

static long tid(void) { return (long)syscall(SYS_gettid); }

#define NMODELS 3
#define NTHREADS 4
#define NREPEAT 3

static const struct { const char *dir, *name; } model_files[NMODELS] = {
    {"models", "unetpp_r18_tiny_op13"}, {"models", "segformer_tiny_op13"}, {"engine", "wg_chunks"}};

/* Every step of every run: which thread executed it. */
static atomic_long exec_tid;
static atomic_int tid_mismatch, steps_seen;

static void note_thread(void *ctx, int step) {
  (void)ctx, (void)step;
  long t = tid(), expect = 0;
  atomic_fetch_add(&steps_seen, 1);
  if (!atomic_compare_exchange_strong(&exec_tid, &expect, t) && expect != t)
    atomic_fetch_add(&tid_mismatch, 1);
}

struct worker {
  struct engine_fixture *f; /* NMODELS */
  float *out[NMODELS];
  const float *ref[NMODELS];
  int errors, differ;
  long tid;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  w->tid = tid();
  for (int r = 0; r < NREPEAT; r++)
    for (int i = 0; i < NMODELS; i++) {
      int mi = (i + r) % NMODELS; /* (the threads interleave different models) */
      if (osseg_model_run(w->f[mi].m, w->f[mi].in.data, w->out[mi], NULL)) w->errors++;
      else if (memcmp(w->out[mi], w->ref[mi], w->f[mi].nout * sizeof(float))) w->differ++;
    }
  return NULL;
}

/* NTHREADS threads x NMODELS models at once: outputs equal the sequential
 * runs', at most one graph executes at any moment, and every step of every
 * run ran on the executor thread, which is none of the callers. */
static void test_one_executor(void **state) {
  (void)state;
  struct engine_fixture f[NMODELS];
  float *ref[NMODELS];
  for (int i = 0; i < NMODELS; i++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/data/%s", test_source_dir(), model_files[i].dir);
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
    o.threads = engine_test_threads(i == 1 ? 1 : 2); /* the executor sets the team size per model */
    engine_fixture_load(&f[i], dir, model_files[i].name, &o);
    ref[i] = malloc(f[i].nout * sizeof(float));
    assert_non_null(ref[i]);
    assert_int_equal(osseg_model_run(f[i].m, f[i].in.data, ref[i], NULL), 0);
    osseg__model_set_step_hook(f[i].m, note_thread, NULL);
  }
  struct osseg__executor_stats st;
  osseg__executor_get_stats(&st, 1);
  assert_true(st.started);
  assert_true(st.thread_tid > 0 && st.thread_tid != tid());
  atomic_store(&exec_tid, 0);
  atomic_store(&tid_mismatch, 0);
  atomic_store(&steps_seen, 0);

  struct worker w[NTHREADS];
  pthread_t th[NTHREADS];
  for (int t = 0; t < NTHREADS; t++) {
    memset(&w[t], 0, sizeof w[t]);
    w[t].f = f;
    for (int i = 0; i < NMODELS; i++) {
      w[t].out[i] = malloc(f[i].nout * sizeof(float));
      assert_non_null(w[t].out[i]);
      w[t].ref[i] = ref[i];
    }
    assert_int_equal(pthread_create(&th[t], NULL, worker_main, &w[t]), 0);
  }
  for (int t = 0; t < NTHREADS; t++) pthread_join(th[t], NULL);
  osseg__executor_get_stats(&st, 0);
  print_message("%llu runs, max %d at once, %llu elsewhere, executor tid %ld, %d steps seen\n",
                (unsigned long long)st.runs, st.max_concurrent, (unsigned long long)st.runs_elsewhere,
                st.thread_tid, atomic_load(&steps_seen));
  for (int t = 0; t < NTHREADS; t++) {
    assert_int_equal(w[t].errors, 0);
    assert_int_equal(w[t].differ, 0);
    assert_true(w[t].tid != st.thread_tid);
  }
  assert_int_equal(st.runs, NTHREADS * NMODELS * NREPEAT);
  assert_int_equal(st.max_concurrent, 1);
  assert_int_equal(st.runs_elsewhere, 0);
  assert_int_equal(atomic_load(&tid_mismatch), 0);
  assert_int_equal(atomic_load(&exec_tid), st.thread_tid);
  int steps = 0;
  for (int i = 0; i < NMODELS; i++) {
    struct osseg_model_stats ms;
    osseg_model_get_stats(f[i].m, &ms);
    steps += ms.steps;
  }
  assert_int_equal(atomic_load(&steps_seen), NTHREADS * NREPEAT * steps);
  for (int t = 0; t < NTHREADS; t++)
    for (int i = 0; i < NMODELS; i++) free(w[t].out[i]);
  for (int i = 0; i < NMODELS; i++) {
    osseg__model_set_step_hook(f[i].m, NULL, NULL);
    free(ref[i]);
    engine_fixture_free(&f[i]);
  }
}

/* A run that blocks in its first step until released: the "long run"
 * ahead in the queue. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int entered, release;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void block_at_first_step(void *ctx, int step) {
  (void)ctx;
  if (step != 0) return;
  pthread_mutex_lock(&gate.mu);
  gate.entered = 1;
  pthread_cond_broadcast(&gate.cv);
  while (!gate.release) pthread_cond_wait(&gate.cv, &gate.mu);
  pthread_mutex_unlock(&gate.mu);
}

struct job {
  struct engine_fixture *f;
  const struct osseg_run_control *ctl;
  int err;
  uint64_t end_ns;
};

static void *job_main(void *arg) {
  struct job *j = arg;
  j->err = osseg_model_run_ctl(j->f->m, j->f->in.data, j->f->out, j->ctl, NULL);
  j->end_ns = osseg_now_ns();
  return NULL;
}

/* Behind a run that does not finish: a queued run returns OSSEG_ECANCELED
 * within 100 ms of its flag (the poll is ~5 ms), another OSSEG_ETIMEDOUT
 * within 100 ms of its deadline; the long run then completes correctly and
 * the canceled model runs normally. */
static void test_cancel_while_queued(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", engine_models_dir());
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
  struct engine_fixture a, b;
  engine_fixture_load(&a, dir, "unetpp_r18_tiny_op13", &o);
  engine_fixture_load(&b, dir, "segformer_tiny_op13", &o);
  float *ref_a = malloc(a.nout * sizeof(float)), *ref_b = malloc(b.nout * sizeof(float));
  assert_non_null(ref_a);
  assert_non_null(ref_b);
  assert_int_equal(osseg_model_run(a.m, a.in.data, ref_a, NULL), 0);
  assert_int_equal(osseg_model_run(b.m, b.in.data, ref_b, NULL), 0);

  osseg__model_set_step_hook(a.m, block_at_first_step, NULL);
  gate.entered = gate.release = 0;
  struct job ja = {&a, NULL, -1, 0};
  pthread_t ta, tb, tc;
  assert_int_equal(pthread_create(&ta, NULL, job_main, &ja), 0);
  pthread_mutex_lock(&gate.mu);
  while (!gate.entered) pthread_cond_wait(&gate.cv, &gate.mu);
  pthread_mutex_unlock(&gate.mu);

  _Atomic int flag = 0;
  struct osseg_run_control cancel = {&flag, 0};
  struct job jb = {&b, &cancel, -1, 0};
  assert_int_equal(pthread_create(&tb, NULL, job_main, &jb), 0);
  const uint64_t deadline = osseg_now_ns() + 50000000ull;
  struct osseg_run_control timed = {NULL, deadline};
  struct job jc = {&b, &timed, -1, 0};
  assert_int_equal(pthread_create(&tc, NULL, job_main, &jc), 0);
  usleep(20000);
  const uint64_t set_ns = osseg_now_ns();
  atomic_store(&flag, 1);
  pthread_join(tb, NULL);
  pthread_join(tc, NULL);
  double cancel_ms = (double)(jb.end_ns - set_ns) / 1e6;
  double timeout_ms = (double)((int64_t)(jc.end_ns - deadline)) / 1e6;
  print_message("queued: canceled %.2f ms after the flag, timed out %.2f ms after the deadline\n",
                cancel_ms, timeout_ms);
  assert_int_equal(jb.err, OSSEG_ECANCELED);
  assert_int_equal(jc.err, OSSEG_ETIMEDOUT);
  assert_true(cancel_ms < 100);
  assert_true(jc.end_ns >= deadline && timeout_ms < 100);
  /* the long run is still blocked in its first step */
  pthread_mutex_lock(&gate.mu);
  assert_int_equal(gate.release, 0);
  gate.release = 1;
  pthread_cond_broadcast(&gate.cv);
  pthread_mutex_unlock(&gate.mu);
  pthread_join(ta, NULL);
  assert_int_equal(ja.err, 0);
  assert_memory_equal(a.out, ref_a, a.nout * sizeof(float));
  osseg__model_set_step_hook(a.m, NULL, NULL);
  assert_int_equal(osseg_model_run(b.m, b.in.data, b.out, NULL), 0);
  assert_memory_equal(b.out, ref_b, b.nout * sizeof(float));
  free(ref_a);
  free(ref_b);
  engine_fixture_free(&a);
  engine_fixture_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_executor),
      cmocka_unit_test(test_cancel_while_queued),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
