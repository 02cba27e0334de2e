/* The inference executor: one engine thread per process runs every graph.
 *
 * Why: oneDNN (Debian's build uses OpenMP) runs a primitive on the OpenMP
 * team of the thread that calls it. Two application threads running two
 * models would run two teams on the same cores at once, each slower than
 * running one after the other, and each OpenMP master keeps its own team
 * (and its spinning threads) alive. So callers do not run graphs: they
 * queue a job on the stack and wait; this thread takes jobs first come,
 * first served, sets its team size from the model's `threads` option and
 * executes. Only one team exists, and one graph at a time uses it.
 *
 * A caller whose run control fires while its job is still queued removes
 * the job itself (it polls with a ~5 ms timed wait); once the job runs, the
 * run control is checked by osseg__execute between steps and by the own
 * loops, on this thread and its team.
 *
 * The thread starts on the first run and lives until the process exits,
 * blocked on a condition variable when idle; it blocks all signals, so
 * they go to the application's threads. Jobs live on the callers' stacks:
 * nothing is allocated per run. */
#include "engine_internal.h"
#include "engine_test_hooks.h"

#include <omp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define POLL_NS 5000000ull /* a queued job's run control is checked this often */

enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct job {
  struct osseg_model *m;
  const float *input;
  float *output;
  const struct osseg_run_control *ctl;
  struct osseg_diag *diag;
  int state; /* under ex.mu */
  int result;
  struct job *next;
};

static struct {
  pthread_mutex_t mu;
  pthread_cond_t work; /* a job was queued */
  pthread_cond_t done; /* a job finished (CLOCK_MONOTONIC, for timed waits) */
  int started;
  pthread_t thread;
  struct job *head, *tail;
  int default_threads; /* OpenMP's team size for threads == 0 */
} ex = {.mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER};

/* Counters for engine_test_hooks.h, updated around every graph execution. */
static atomic_int active, max_active;
/* Runs between enqueue and return (osseg_engine_inference_pending). */
static atomic_int pending;

int osseg_engine_inference_pending(void) { return atomic_load(&pending); }
static _Atomic uint64_t runs, runs_elsewhere;
static atomic_long thread_tid;

/* Bookkeeping around every graph execution (what engine_test_hooks.h
 * reports). */
static void executor_enter(void) {
  atomic_fetch_add(&runs, 1);
  if (!ex.started || !pthread_equal(pthread_self(), ex.thread)) atomic_fetch_add(&runs_elsewhere, 1);
  int now = atomic_fetch_add(&active, 1) + 1;
  int seen = atomic_load(&max_active);
  while (now > seen && !atomic_compare_exchange_weak(&max_active, &seen, now)) {
  }
}

static void executor_leave(void) { atomic_fetch_sub(&active, 1); }

void osseg__executor_get_stats(struct osseg__executor_stats *st, int reset) {
  pthread_mutex_lock(&ex.mu);
  st->started = ex.started;
  pthread_mutex_unlock(&ex.mu);
  st->runs = atomic_load(&runs);
  st->runs_elsewhere = atomic_load(&runs_elsewhere);
  st->max_concurrent = atomic_load(&max_active);
  st->thread_tid = atomic_load(&thread_tid);
  if (reset) {
    atomic_store(&runs, 0);
    atomic_store(&runs_elsewhere, 0);
    atomic_store(&max_active, 0);
  }
}

static void *executor_main(void *arg) {
  (void)arg;
  atomic_store(&thread_tid, (long)syscall(SYS_gettid));
  pthread_mutex_lock(&ex.mu);
  for (;;) {
    while (!ex.head) pthread_cond_wait(&ex.work, &ex.mu);
    struct job *j = ex.head;
    ex.head = j->next;
    if (!ex.head) ex.tail = NULL;
    j->state = JOB_RUNNING;
    pthread_mutex_unlock(&ex.mu);

    const int nt = j->m->opt.threads > 0 ? j->m->opt.threads : ex.default_threads;
    if (omp_get_max_threads() != nt) omp_set_num_threads(nt);
    executor_enter();
    int result = osseg__execute(j->m, j->input, j->output, j->ctl, j->diag);
    executor_leave();

    pthread_mutex_lock(&ex.mu);
    j->result = result;
    j->state = JOB_DONE;
    pthread_cond_broadcast(&ex.done);
  }
  return NULL;
}

/* Under ex.mu: starts the thread once; 0 or an error (retried next run). */
static int start_locked(struct osseg_diag *diag) {
  if (ex.started) return 0;
  static int done_init;
  if (!done_init) {
    pthread_condattr_t ca;
    int ok = pthread_condattr_init(&ca) == 0;
    ok = ok && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
         pthread_cond_init(&ex.done, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!ok) return osseg__fail(diag, OSSEG_EINTERNAL, "cannot create the executor's condition");
    done_init = 1;
  }
  /* The team size OpenMP would use (OMP_NUM_THREADS or all cores), read
   * here since the new thread starts from the initial values. */
  ex.default_threads = omp_get_max_threads();
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&ex.thread, NULL, executor_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) return osseg__fail(diag, OSSEG_EINTERNAL, "cannot start the inference thread");
  pthread_detach(ex.thread);
  ex.started = 1;
  return 0;
}

static void unlink_locked(struct job *j) {
  struct job **pp = &ex.head, *prev = NULL;
  while (*pp && *pp != j) prev = *pp, pp = &(*pp)->next;
  if (!*pp) return;
  *pp = j->next;
  if (ex.tail == j) ex.tail = prev;
}

int osseg__executor_run(struct osseg_model *m, const float *input, float *output,
                        const struct osseg_run_control *ctl, struct osseg_diag *diag) {
  struct job j = {m, input, output, ctl, diag, JOB_QUEUED, 0, NULL};
  const int polls = ctl && (ctl->cancel || ctl->deadline_ns);
  pthread_mutex_lock(&ex.mu);
  int err = start_locked(diag);
  if (err) {
    pthread_mutex_unlock(&ex.mu);
    return err;
  }
  if (ex.tail) ex.tail->next = &j;
  else ex.head = &j;
  ex.tail = &j;
  atomic_fetch_add(&pending, 1);
  pthread_cond_signal(&ex.work);
  while (j.state != JOB_DONE) {
    if (j.state == JOB_QUEUED && polls) {
      int code = osseg__ctl_check(ctl);
      if (code) {
        unlink_locked(&j);
        atomic_fetch_sub(&pending, 1);
        pthread_mutex_unlock(&ex.mu);
        return osseg__fail(diag, code, "%s while waiting for the inference thread",
                           code == OSSEG_ECANCELED ? "canceled" : "deadline exceeded");
      }
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      uint64_t ns = (uint64_t)ts.tv_nsec + POLL_NS;
      ts.tv_sec += (time_t)(ns / 1000000000ull);
      ts.tv_nsec = (long)(ns % 1000000000ull);
      pthread_cond_timedwait(&ex.done, &ex.mu, &ts);
    } else {
      pthread_cond_wait(&ex.done, &ex.mu);
    }
  }
  atomic_fetch_sub(&pending, 1);
  pthread_mutex_unlock(&ex.mu);
  return j.result;
}
