/* bench_cancel: how long a running inference takes to stop after its
 * cancel flag is set (engine run control, osseg_model_run_ctl).
 *
 *   bench_cancel MODEL.onnx [--trials N] [--threads T] [--precision P] [--seed S]
 *
 * Loads the model, times one whole run, then N times: starts a run on a
 * thread, sets the flag from this thread after a delay spread over the run
 * (a sweep of N points from 2 % to 98 % of the run time, shuffled with a
 * random offset each), and measures from setting the flag to the run's
 * return. Prints each trial (delay, latency, where the run stopped) and the
 * median and maximum latency. Wall clock, so run it on a quiet machine. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "osseg_base.h"
#include "osseg_engine.h"

struct trial {
  struct osseg_model *m;
  const float *in;
  float *out;
  _Atomic int flag;
  int err;
  uint64_t end_ns;
  struct osseg_diag diag;
};

static void *run_main(void *arg) {
  struct trial *t = arg;
  struct osseg_run_control ctl = {&t->flag, 0};
  osseg_diag_clear(&t->diag);
  t->err = osseg_model_run_ctl(t->m, t->in, t->out, &ctl, &t->diag);
  t->end_ns = osseg_now_ns();
  return NULL;
}

static void sleep_until(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (osseg_cpu_features_disable(getenv("OSSEG_DISABLE_CPU_FEATURES"))) {
    fprintf(stderr, "bench_cancel: OSSEG_DISABLE_CPU_FEATURES: expected a comma-separated list of "
                    "avx512, avx2, bf16, amx\n");
    return 2;
  }
  const char *path = NULL;
  int trials = 20;
  unsigned seed = 1;
  struct osseg_engine_options o;
  osseg_engine_options_default(&o);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--trials") && v) trials = atoi(v), i++;
    else if (!strcmp(a, "--threads") && v) o.threads = atoi(v), i++;
    else if (!strcmp(a, "--seed") && v) seed = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--precision") && v) {
      if (osseg_precision_parse(v, &o.precision)) {
        fprintf(stderr, "bench_cancel: bad precision '%s'\n", v);
        return 2;
      }
      i++;
    } else if (a[0] != '-' && !path) path = a;
    else {
      fprintf(stderr, "usage: bench_cancel MODEL.onnx [--trials N] [--threads T] "
                      "[--precision fp32|bf16|bf16-mixed] [--seed S]\n");
      return 2;
    }
  }
  if (!path || trials < 1 || trials > 10000 || o.threads < 0) {
    fprintf(stderr, "usage: bench_cancel MODEL.onnx [--trials N] [--threads T] "
                    "[--precision fp32|bf16|bf16-mixed] [--seed S]\n");
    return 2;
  }
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  struct osseg_model *m = NULL;
  if (osseg_model_load(&m, path, &o, &diag)) {
    fprintf(stderr, "bench_cancel: %s: %s\n", path, diag.message);
    return 1;
  }
  size_t nin = osseg_model_input_elems(m), nout = osseg_model_output_elems(m);
  float *in = malloc(nin * sizeof(float)), *out = malloc(nout * sizeof(float));
  double *lat = malloc((size_t)trials * sizeof(double));
  if (!in || !out || !lat) return 1;
  srand(seed);
  for (size_t i = 0; i < nin; i++) in[i] = (float)(rand() % 256) / 255.0f;
  osseg_model_run(m, in, out, NULL); /* warm-up */
  uint64_t t0 = osseg_now_ns();
  if (osseg_model_run(m, in, out, &diag)) {
    fprintf(stderr, "bench_cancel: run failed: %s\n", diag.message);
    return 1;
  }
  const double run_ms = (double)(osseg_now_ns() - t0) / 1e6;
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  printf("model %s, %s, %d threads, %d steps, one run %.1f ms\n", path,
         osseg_precision_name(st.precision), st.threads, st.steps, run_ms);
  int n = 0;
  for (int k = 0; k < trials; k++) {
    /* sweep point k of the run, jittered within its slot */
    double frac = 0.02 + 0.96 * ((double)k + (double)rand() / RAND_MAX) / trials;
    struct trial t = {m, in, out, 0, -1, 0, {0, ""}};
    pthread_t th;
    uint64_t start = osseg_now_ns();
    if (pthread_create(&th, NULL, run_main, &t)) return 1;
    sleep_until(start + (uint64_t)(frac * run_ms * 1e6));
    uint64_t set = osseg_now_ns();
    atomic_store(&t.flag, 1);
    pthread_join(th, NULL);
    double ms = (double)(int64_t)(t.end_ns - set) / 1e6;
    if (t.err == OSSEG_ECANCELED)
      printf("trial %3d: flag at %7.1f ms, canceled, latency %7.2f ms  %s\n", k,
             (double)(set - start) / 1e6, ms, t.diag.message);
    else /* (the run ended before the flag: on a busy machine runs vary) */
      printf("trial %3d: flag at %7.1f ms, run already %s  %s\n", k, (double)(set - start) / 1e6,
             t.err == 0 ? "finished" : "failed", t.diag.message);
    if (t.err == OSSEG_ECANCELED) lat[n++] = ms;
  }
  if (n) {
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    double med = n % 2 ? lat[n / 2] : 0.5 * (lat[n / 2 - 1] + lat[n / 2]);
    printf("cancel latency over %d canceled runs: median %.2f ms, max %.2f ms\n", n, med, lat[n - 1]);
  }
  free(in), free(out), free(lat);
  osseg_model_free(m);
  return 0;
}
