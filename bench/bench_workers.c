/* bench_workers: images per second through the pipeline with 1 and with 2
 * (or more) worker threads sharing one registry and one pipeline.
 *
 *   bench_workers [-r ROUNDS] [-w MAXWORKERS] [-t THREADS] MODEL.onnx IMAGE.png...
 *
 * Each worker has its own workspace and takes the next image from a shared
 * counter; every image is read from memory (PNG bytes loaded up front), so
 * the run measures decode + preprocessing + inference + post-processing.
 * Inference goes through the engine's one executor (one oneDNN graph at a
 * time on all cores), so a second worker can only gain by overlapping its
 * decode and post-processing with the other's inference. For each worker
 * count the rounds alternate (1, 2, 1, 2, ...) so that drift on a shared
 * machine hits both alike; the median wall time of the rounds is printed,
 * with images/s and the ratio to one worker. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "osseg_pipeline.h"

struct image_bytes {
  void *data;
  size_t size;
};

struct shared {
  const struct osseg_pipeline *p;
  const struct image_bytes *imgs;
  size_t nimgs;
  _Atomic size_t next;
  _Atomic int failed;
};

static void *worker(void *arg) {
  struct shared *s = arg;
  struct osseg_workspace *ws;
  if (osseg_workspace_create(&ws, 0) != 0) {
    atomic_store(&s->failed, 1);
    return NULL;
  }
  for (;;) {
    size_t i = atomic_fetch_add(&s->next, 1);
    if (i >= s->nimgs) break;
    struct osseg_diag d;
    osseg_diag_clear(&d);
    if (osseg_pipeline_run_png(s->p, ws, s->imgs[i].data, s->imgs[i].size, NULL, &d) != 0) {
      fprintf(stderr, "bench_workers: image %zu: %s\n", i, d.message);
      atomic_store(&s->failed, 1);
    }
  }
  osseg_workspace_free(ws);
  return NULL;
}

/* Wall milliseconds to run every image once with n workers. */
static double run_round(struct shared *s, int n) {
  pthread_t th[16];
  atomic_store(&s->next, 0);
  uint64_t t0 = osseg_now_ns();
  for (int i = 1; i < n; i++) pthread_create(&th[i], NULL, worker, s);
  worker(s);
  for (int i = 1; i < n; i++) pthread_join(th[i], NULL);
  return (double)(osseg_now_ns() - t0) / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int read_file(const char *path, struct image_bytes *out) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  out->data = malloc(n > 0 ? (size_t)n : 1);
  out->size = out->data && n > 0 ? fread(out->data, 1, (size_t)n, f) : 0;
  fclose(f);
  return out->size == (size_t)n && n > 0 ? 0 : -1;
}

int main(int argc, char **argv) {
  int rounds = 5, maxw = 2, threads = 0, a = 1;
  for (; a + 1 < argc && argv[a][0] == '-'; a += 2) {
    if (!strcmp(argv[a], "-r")) rounds = atoi(argv[a + 1]);
    else if (!strcmp(argv[a], "-w")) maxw = atoi(argv[a + 1]);
    else if (!strcmp(argv[a], "-t")) threads = atoi(argv[a + 1]);
    else break;
  }
  if (argc - a < 2 || rounds < 1 || rounds > 99 || maxw < 1 || maxw > 16) {
    fprintf(stderr, "usage: bench_workers [-r ROUNDS] [-w MAXWORKERS] [-t THREADS] "
                    "MODEL.onnx IMAGE.png...\n");
    return 2;
  }
  struct osseg_engine_options eo;
  osseg_engine_options_default(&eo);
  eo.threads = threads;
  struct osseg_registry *r;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  struct osseg_model_spec spec = {.name = "m", .path = argv[a]};
  if (osseg_registry_create(&r, &eo) != 0 || osseg_registry_load(r, &spec, NULL, &d) != 0) {
    fprintf(stderr, "bench_workers: %s\n", d.message);
    return 1;
  }
  struct osseg_pipeline_options o;
  osseg_pipeline_options_default(&o);
  o.models[0] = "m";
  o.nmodels = 1;
  struct osseg_pipeline *p;
  if (osseg_pipeline_create(&p, r, &o, &d) != 0) {
    fprintf(stderr, "bench_workers: %s\n", d.message);
    return 1;
  }
  size_t n = (size_t)(argc - a - 1);
  struct image_bytes *imgs = calloc(n, sizeof *imgs);
  for (size_t i = 0; i < n; i++)
    if (read_file(argv[a + 1 + (int)i], &imgs[i]) != 0) {
      fprintf(stderr, "bench_workers: cannot read %s\n", argv[a + 1 + (int)i]);
      return 1;
    }
  struct shared s = {p, imgs, n, 0, 0};
  run_round(&s, 1); /* warm-up: workspaces, page faults, oneDNN's caches */
  double ms[16][99];
  for (int k = 0; k < rounds; k++)
    for (int w = 1; w <= maxw; w++) ms[w - 1][k] = run_round(&s, w);
  if (atomic_load(&s.failed)) return 1;
  double base = 0;
  printf("workers  median_ms  images/s  speed-up   (%zu images, %d rounds)\n", n, rounds);
  for (int w = 1; w <= maxw; w++) {
    qsort(ms[w - 1], (size_t)rounds, sizeof(double), cmp_double);
    double med = ms[w - 1][rounds / 2];
    if (w == 1) base = med;
    printf("%7d  %9.1f  %8.2f  %7.3fx\n", w, med, 1e3 * (double)n / med, base / med);
  }
  osseg_pipeline_free(p);
  osseg_registry_free(r);
  for (size_t i = 0; i < n; i++) free(imgs[i].data);
  free(imgs);
  return 0;
}
