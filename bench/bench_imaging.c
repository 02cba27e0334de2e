/* bench_imaging: thread CPU time of PNG decode and model preprocessing.
 *
 *   bench_imaging [-n REPEATS] [-s SIZE] FILE.png...
 *
 * For every file, decodes it (osseg_png_decode_file) and preprocesses the
 * result to SIZE x SIZE (default 256) REPEATS times (default 20) and prints
 * the median thread CPU time of each step and of both together. Thread CPU
 * time rather than wall time, so that other work on a shared machine
 * disturbs the numbers less; page faults still count, as they do in the
 * service. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "osseg_imaging.h"

static double thread_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
  /* The libraries never read the environment; OSSEG_DISABLE_CPU_FEATURES
   * (avx512, avx2, bf16, amx) forces the lower code paths. */
  if (osseg_cpu_features_disable(getenv("OSSEG_DISABLE_CPU_FEATURES"))) {
    fprintf(stderr, "%s: OSSEG_DISABLE_CPU_FEATURES: expected a comma-separated list of "
                    "avx512, avx2, bf16, amx\n", "bench_imaging");
    return 2;
  }
  int repeats = 20;
  unsigned size = 256;
  int first = 1;
  while (first < argc && argv[first][0] == '-') {
    if (!strcmp(argv[first], "-n") && first + 1 < argc) {
      repeats = atoi(argv[first + 1]);
    } else if (!strcmp(argv[first], "-s") && first + 1 < argc) {
      size = (unsigned)atoi(argv[first + 1]);
    } else {
      fprintf(stderr, "usage: bench_imaging [-n REPEATS] [-s SIZE] FILE.png...\n");
      return 2;
    }
    first += 2;
  }
  if (first >= argc || repeats < 1 || size < 1) {
    fprintf(stderr, "usage: bench_imaging [-n REPEATS] [-s SIZE] FILE.png...\n");
    return 2;
  }
  size_t nfiles = (size_t)(argc - first), n = nfiles * (size_t)repeats;
  int status = 1;
  double *dec = malloc(n * sizeof *dec), *pre = malloc(n * sizeof *pre),
         *both = malloc(n * sizeof *both);
  float *input = malloc((size_t)3 * size * size * sizeof *input);
  struct osseg_image img = {0};
  if (!dec || !pre || !both || !input) {
    fprintf(stderr, "bench_imaging: out of memory\n");
    goto out;
  }
  size_t k = 0;
  for (int r = 0; r < repeats; r++) {
    for (size_t f = 0; f < nfiles; f++, k++) {
      struct osseg_diag diag;
      osseg_diag_clear(&diag);
      double t0 = thread_ms();
      int rc = osseg_png_decode_file(argv[first + f], NULL, &img, &diag);
      double t1 = thread_ms();
      if (rc < 0) {
        fprintf(stderr, "bench_imaging: %s\n", diag.message);
        goto out;
      }
      rc = osseg_preprocess_gray(&img, size, NULL, input);
      double t2 = thread_ms();
      if (rc < 0) {
        fprintf(stderr, "bench_imaging: preprocess: %s\n", osseg_strerror(rc));
        goto out;
      }
      osseg_image_free(&img);
      dec[k] = t1 - t0;
      pre[k] = t2 - t1;
      both[k] = t2 - t0;
    }
  }
  printf("files %zu x %d repeats, size %u: median thread CPU ms: decode %.2f  "
         "preprocess %.2f  decode+preprocess %.2f\n",
         nfiles, repeats, size, median(dec, n), median(pre, n), median(both, n));
  status = 0;
out:
  /* Every exit frees everything, so LeakSanitizer runs stay clean. */
  osseg_image_free(&img);
  free(dec);
  free(pre);
  free(both);
  free(input);
  return status;
}
