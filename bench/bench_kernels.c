/* Microbenchmark of the mask kernels: RLE encode (to_runs), popcount, hard
 * vote over masks and over run lists, and the fused upsample + threshold /
 * soft vote, each on every ISA variant this CPU supports. Prints the median
 * of repeated runs, in thread CPU time. Inputs are synthetic but shaped like real predictions:
 * one smooth blob per class covering about 0.5-3% of a 2048x2048 image.
 * The upsample kernels also run on "noisy" logits, independent uniform
 * values in [-2, 2] per low-resolution pixel, as an untrained (random
 * weight) model gives: nearly every cell is then on a boundary, the case
 * the cell skipping cannot help.
 *
 *   bench_kernels [repeats]     (default 15; keep it small on shared hosts) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitmask_internal.h"
#include "upsample_threshold_internal.h"
#include "vote_internal.h"

#define SIDE 2048u
#define LOW 512u
#define CLASSES 29

static int repeats = 15;

/* CPU time of this thread: on a shared 2-core host wall time mostly
 * measures the neighbours' builds, CPU time far less so. */
static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_u64);
  return t[n / 2];
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double unit(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* Logits of one class at LOW x LOW: a disc of radius r (low-res pixels)
 * with logit 8 at the centre falling to -12, plus noise. */
static void make_logits(float *v, double r) {
  double cx = 80 + unit() * (LOW - 160), cy = 80 + unit() * (LOW - 160);
  for (uint32_t y = 0; y < LOW; y++)
    for (uint32_t x = 0; x < LOW; x++) {
      double d = sqrt((x - cx) * (x - cx) + (y - cy) * (y - cy));
      double s = 8.0 * (1.0 - d / r);
      v[y * LOW + x] = (float)((s < -12 ? -12 : s) + (unit() - 0.5) * 0.5);
    }
}

static const char *names[] = {"generic", "avx2", "avx512"};
static const unsigned needs[] = {0, OSSEG_CPU_AVX2, OSSEG_CPU_AVX512};

int main(int argc, char **argv) {
  /* The libraries never read the environment; OSSEG_DISABLE_CPU_FEATURES
   * (avx512, avx2, bf16, amx) forces the lower code paths. */
  if (osseg_cpu_features_disable(getenv("OSSEG_DISABLE_CPU_FEATURES"))) {
    fprintf(stderr, "%s: OSSEG_DISABLE_CPU_FEATURES: expected a comma-separated list of "
                    "avx512, avx2, bf16, amx\n", "bench_kernels");
    return 2;
  }
  if (argc > 1) repeats = atoi(argv[1]);
  if (repeats < 1 || repeats > 1000) repeats = 15;
  unsigned f = osseg_cpu_features();
  printf("cpu features: %s; median of %d runs (thread CPU time)\n", osseg_cpu_features_string(), repeats);
  uint64_t *t = malloc((size_t)repeats * sizeof *t);

  /* Per-class logits and the masks they give (for the mask kernels). */
  /* One spare row (+1) so the offset planes of the soft-vote bench stay
   * inside the buffer. */
  float *logits = calloc((size_t)CLASSES * LOW * LOW + LOW + 1, sizeof(float));
  for (int c = 0; c < CLASSES; c++)
    make_logits(logits + (size_t)c * LOW * LOW, 512 * sqrt((0.005 + unit() * 0.025) / M_PI));
  struct osseg_upsample_plan plan;
  if (osseg_upsample_plan_init(&plan, LOW, LOW, SIDE, SIDE) != 0) return 1;
  struct osseg_bitmask masks[CLASSES];
  uint64_t set = 0;
  for (int c = 0; c < CLASSES; c++) {
    osseg_bitmask_init(&masks[c], SIDE, SIDE);
    osseg__upsample_threshold_ops(&osseg__ut_ops_generic, &plan, logits + (size_t)c * LOW * LOW,
                                  LOW, 0.0f, &masks[c]);
    set += osseg_bitmask_count(&masks[c]);
  }
  printf("masks: %d x %ux%u, mean coverage %.2f%%\n", CLASSES, SIDE, SIDE,
         100.0 * (double)set / CLASSES / SIDE / SIDE);

  /* to_runs and popcount over all 29 masks. */
  struct osseg_runs runs = {0};
  size_t nwords = masks[0].nwords;
  osseg__to_runs_fn to_runs[] = {osseg__to_runs_generic, osseg__to_runs_avx2, osseg__to_runs_avx512};
  osseg__popcount_fn popc[] = {osseg__popcount_generic, osseg__popcount_avx2, osseg__popcount_avx512};
  for (int v = 0; v < 3; v++) {
    if ((f & needs[v]) != needs[v]) continue;
    size_t nruns = 0;
    for (int r = 0; r < repeats; r++) {
      uint64_t t0 = now_ns();
      nruns = 0;
      for (int c = 0; c < CLASSES; c++) {
        to_runs[v](masks[c].bits, nwords, &runs);
        nruns += runs.n;
      }
      t[r] = now_ns() - t0;
    }
    uint64_t m = median(t, repeats);
    printf("to_runs      %-8s %8.3f ms / 29 masks  %7.1f Gpixel/s  (%zu runs)\n", names[v],
           m / 1e6, (double)CLASSES * SIDE * SIDE / (double)m, nruns);
  }
  for (int v = 0; v < 3; v++) {
    if ((f & needs[v]) != needs[v]) continue;
    volatile uint64_t sink = 0;
    for (int r = 0; r < repeats; r++) {
      uint64_t t0 = now_ns();
      for (int c = 0; c < CLASSES; c++) sink += popc[v](masks[c].bits, nwords);
      t[r] = now_ns() - t0;
    }
    uint64_t m = median(t, repeats);
    printf("popcount     %-8s %8.3f ms / 29 masks  %7.1f GB/s\n", names[v], m / 1e6,
           (double)CLASSES * nwords * 8 / (double)m);
  }

  /* Hard vote of 3 models (3 slightly different masks per class). */
  {
    struct osseg_bitmask out;
    osseg_bitmask_init(&out, SIDE, SIDE);
    const uint64_t *in[3] = {masks[0].bits, masks[1].bits, masks[2].bits};
    osseg__vote_words_fn fns[] = {osseg__vote_words_generic, osseg__vote_words_avx2,
                                  osseg__vote_words_avx512};
    for (int v = 0; v < 3; v++) {
      if ((f & needs[v]) != needs[v]) continue;
      for (int r = 0; r < repeats; r++) {
        uint64_t t0 = now_ns();
        for (int c = 0; c < CLASSES; c++) fns[v](in, 3, 2, out.bits, nwords);
        t[r] = now_ns() - t0;
      }
      uint64_t m = median(t, repeats);
      printf("vote_masks   %-8s %8.3f ms / 29 x k=3  %7.1f Gpixel/s\n", names[v], m / 1e6,
             (double)CLASSES * SIDE * SIDE / (double)m);
    }
    osseg_bitmask_free(&out);

    /* The run-list vote (no SIMD variants: it is a merge). */
    struct osseg_runs lists[3] = {{0}, {0}, {0}}, res = {0};
    for (int j = 0; j < 3; j++) osseg_bitmask_to_runs(&masks[j], &lists[j]);
    const struct osseg_runs *lp[3] = {&lists[0], &lists[1], &lists[2]};
    for (int r = 0; r < repeats; r++) {
      uint64_t t0 = now_ns();
      for (int c = 0; c < CLASSES; c++) osseg_vote_runs(lp, 3, 2, &res);
      t[r] = now_ns() - t0;
    }
    printf("vote_runs    merge    %8.3f ms / 29 x k=3  (%zu+%zu+%zu runs in)\n",
           median(t, repeats) / 1e6, lists[0].n, lists[1].n, lists[2].n);
    for (int j = 0; j < 3; j++) osseg_runs_free(&lists[j]);
    osseg_runs_free(&res);
  }

  /* Fused upsample + threshold: 29 classes 512 -> 2048, and soft vote of 3. */
  const struct osseg__ut_ops *ops[] = {&osseg__ut_ops_generic, &osseg__ut_ops_avx2,
                                       &osseg__ut_ops_avx512};
  struct osseg_bitmask out;
  osseg_bitmask_init(&out, SIDE, SIDE);
  for (int v = 0; v < 3; v++) {
    if ((f & needs[v]) != needs[v]) continue;
    for (int r = 0; r < repeats; r++) {
      uint64_t t0 = now_ns();
      for (int c = 0; c < CLASSES; c++)
        osseg__upsample_threshold_ops(ops[v], &plan, logits + (size_t)c * LOW * LOW, LOW, 0.0f,
                                      &out);
      t[r] = now_ns() - t0;
    }
    uint64_t m = median(t, repeats);
    printf("upsample_thr %-8s %8.3f ms / 29 classes 512->2048  %6.1f Gpixel/s\n", names[v],
           m / 1e6, (double)CLASSES * SIDE * SIDE / (double)m);
  }
  float *noisy = malloc((size_t)CLASSES * LOW * LOW * sizeof(float));
  for (size_t i = 0; i < (size_t)CLASSES * LOW * LOW; i++) noisy[i] = (float)(unit() * 4.0 - 2.0);
  for (int v = 0; v < 3; v++) {
    if ((f & needs[v]) != needs[v]) continue;
    for (int r = 0; r < repeats; r++) {
      uint64_t t0 = now_ns();
      for (int c = 0; c < CLASSES; c++)
        osseg__upsample_threshold_ops(ops[v], &plan, noisy + (size_t)c * LOW * LOW, LOW, 0.0f,
                                      &out);
      t[r] = now_ns() - t0;
    }
    uint64_t m = median(t, repeats);
    printf("upsample_thr %-8s %8.3f ms / 29 noisy classes           %6.1f Gpixel/s\n",
           names[v], m / 1e6, (double)CLASSES * SIDE * SIDE / (double)m);
  }
  free(noisy);
  for (int v = 0; v < 3; v++) {
    if ((f & needs[v]) != needs[v]) continue;
    for (int r = 0; r < repeats; r++) {
      uint64_t t0 = now_ns();
      for (int c = 0; c < CLASSES; c++) {
        /* Three "models": the class's plane and copies offset by one column
         * and one row, so their edges disagree as real models' do. */
        const float *base = logits + (size_t)c * LOW * LOW;
        const float *planes[3] = {base, base + 1, base + LOW};
        osseg__upsample_soft_vote_ops(ops[v], &plan, planes, 3, LOW, 0.5f, &out);
      }
      t[r] = now_ns() - t0;
    }
    uint64_t m = median(t, repeats);
    printf("soft_vote    %-8s %8.3f ms / 29 classes x k=3\n", names[v], m / 1e6);
  }
  osseg_bitmask_free(&out);
  for (int c = 0; c < CLASSES; c++) osseg_bitmask_free(&masks[c]);
  osseg_upsample_plan_free(&plan);
  osseg_runs_free(&runs);
  free(logits);
  free(t);
  return 0;
}
