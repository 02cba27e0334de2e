/* bench_daemon_cancel: how long ossegd takes to stop a running Segment
 * after a Cancel, and to start the next request.
 *
 *   bench_daemon_cancel --socket SOCK --model NAME --image PNG
 *                       [--next-model NAME] [--next-image PNG] [--trials N]
 *                       [--delays-ms D1,D2,...] [--timeout-ms MS]
 *
 * NAME should take well over a second per image (e.g. UNet++ R50 @1024);
 * the "next" request should be short (e.g. a tiny model on a small image;
 * defaults: the same model and image). Run against a daemon with
 * --workers 1, "next queue" below is exactly the wait for the worker.
 *
 * Baselines first, on one connection: one Segment of IMAGE with NAME run to
 * its end (decode + preprocess and inference times from its Done), and the
 * next request alone three times (median wall time, send -> Done).
 * Then N trials (default 5): send the Segment; after a delay (by default a
 * sweep from 15 % to 85 % of the baseline inference, counted from its
 * start, so the Cancel lands inside the inference) send Cancel and at once
 * the next Segment, and wait for all three answers. Measured from just
 * before the Cancel is sent (client clock):
 *   cancelled_ms   the CANCELLED error of the Segment arriving
 *   ack_ms         the Cancel's acknowledgement (empty Done) arriving
 *   next_queue_ms  the next request's Done.queue_ms (daemon clock: its
 *                  receipt -> a worker starting it, i.e. the worker free)
 *   next_done_ms   the next request's Done arriving; next_extra_ms is that
 *                  minus its baseline (what the cancel cost it)
 * A Segment that finished before the Cancel took effect is reported and
 * left out of the statistics. Prints one line per trial and summary lines
 *   cancel trials=N cancelled=K finished=F cancelled_median_ms=.. cancelled_max_ms=..
 *     ack_median_ms=.. next_queue_median_ms=.. next_queue_max_ms=..
 *     next_done_median_ms=.. next_done_max_ms=.. next_extra_median_ms=..
 *     next_extra_max_ms=..
 *   baseline inference_ms=.. pre_ms=.. total_ms=.. next_wall_ms=..
 * Exit status 0, 1 on a failure (no answer within --timeout-ms, default
 * 300000, per trial; a connection error; an unexpected error code), 2 for
 * bad usage. Only the client library (clients/osseg_client.h) is used. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "osseg_client.h"

#define MAX_TRIALS 1000

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_until_ms(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)(t / 1e3);
  ts.tv_nsec = (long)((t - (double)ts.tv_sec * 1e3) * 1e6);
  if (ts.tv_nsec < 0) ts.tv_nsec = 0;
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static int read_file(const char *path, unsigned char **data, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t cap = 1 << 20, n = 0;
  unsigned char *buf = malloc(cap);
  while (buf) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n < cap) break;
    unsigned char *p = realloc(buf, cap * 2);
    if (!p) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = p;
    cap *= 2;
  }
  int bad = !buf || ferror(f);
  fclose(f);
  if (bad) {
    errno = buf ? EIO : ENOMEM;
    free(buf);
    return -1;
  }
  *data = buf;
  *len = n;
  return 0;
}

/* One request being followed. */
struct req {
  uint64_t id;
  int ended;
  int code; /* -1: ended by Done; else the Error code */
  double t_end;
  double queue_ms, pre_ms, inference_ms, total_ms;
  char message[160];
};

static void req_init(struct req *r, uint64_t id) {
  memset(r, 0, sizeof *r);
  r->id = id;
  r->code = -2;
}

/* Reads responses until every request in rs has ended or deadline (ms,
 * monotonic) passes. 0, or -1 with the reason printed. */
static int pump(osseg_client_t *c, struct req *rs, size_t n, double deadline) {
  for (;;) {
    size_t open = 0;
    for (size_t i = 0; i < n; i++) open += !rs[i].ended;
    if (!open) return 0;
    double left = deadline - now_ms();
    if (left <= 0) {
      fprintf(stderr, "bench_daemon_cancel: no answer in time (%zu request(s) open)\n", open);
      return -1;
    }
    Osseg__Wire__Response *resp = NULL;
    int rc = osseg_client_recv(c, &resp, (int)left + 1);
    double t = now_ms();
    if (rc == OSSEG_CLIENT_ETIMEDOUT) continue;
    if (rc != 0) {
      fprintf(stderr, "bench_daemon_cancel: %s\n", osseg_client_message(c));
      return -1;
    }
    for (size_t i = 0; i < n; i++) {
      struct req *r = &rs[i];
      if (r->ended || r->id != resp->id) continue;
      if (resp->kind_case == OSSEG__WIRE__RESPONSE__KIND_DONE) {
        const Osseg__Wire__Done *d = resp->done;
        r->ended = 1;
        r->code = -1;
        r->t_end = t;
        r->queue_ms = d->queue_ms;
        r->pre_ms = d->queue_ms + d->decode_ms + d->preprocess_ms;
        for (size_t k = 0; k < d->n_inference; k++) r->inference_ms += d->inference[k]->ms;
        r->total_ms = d->total_ms;
      } else if (resp->kind_case == OSSEG__WIRE__RESPONSE__KIND_ERROR) {
        r->ended = 1;
        r->code = (int)resp->error->code;
        r->t_end = t;
        snprintf(r->message, sizeof r->message, "%s", resp->error->message);
      }
      /* ClassMask and DiceReport: not needed */
    }
    osseg__wire__response__free_unpacked(resp, NULL);
  }
}

static int send_segment(osseg_client_t *c, const char *model, const unsigned char *png,
                        size_t len, const char *name, uint64_t *id) {
  struct osseg_client_segment s;
  *id = osseg_client_next_id(c);
  osseg_client_segment_png(&s, *id, png, len, name);
  const char *models[1] = {model};
  osseg_client_segment_set_models(&s, models, 1);
  int rc = osseg_client_send(c, &s.req, -1);
  if (rc) fprintf(stderr, "bench_daemon_cancel: sending: %s\n", osseg_client_message(c));
  return rc;
}

/* Runs one Segment to its end; wall ms (send -> end) in *wall. */
static int run_alone(osseg_client_t *c, const char *model, const unsigned char *png, size_t len,
                     const char *name, double timeout, struct req *r, double *wall) {
  uint64_t id;
  double t0 = now_ms();
  if (send_segment(c, model, png, len, name, &id)) return -1;
  req_init(r, id);
  if (pump(c, r, 1, t0 + timeout)) return -1;
  if (r->code != -1) {
    fprintf(stderr, "bench_daemon_cancel: %s on %s: %s: %s\n", model, name,
            osseg_client_error_code_name(r->code), r->message);
    return -1;
  }
  *wall = r->t_end - t0;
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, size_t n) {
  if (!n) return 0;
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double maxv(const double *v, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    if (v[i] > m) m = v[i];
  return m;
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

static void usage(FILE *f) {
  fprintf(f, "usage: bench_daemon_cancel --socket SOCK --model NAME --image PNG\n"
             "                           [--next-model NAME] [--next-image PNG] [--trials N]\n"
             "                           [--delays-ms D1,D2,...] [--timeout-ms MS]\n");
}

int main(int argc, char **argv) {
  const char *socket_path = NULL, *model = NULL, *image = NULL, *next_model = NULL,
             *next_image = NULL, *delays_arg = NULL;
  long trials = 5;
  double timeout = 300000;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "bench_daemon_cancel: %s: missing value or unknown option\n", a);
      usage(stderr);
      return 2;
    }
    const char *v = argv[++i];
    char *end;
    if (!strcmp(a, "--socket")) socket_path = v;
    else if (!strcmp(a, "--model")) model = v;
    else if (!strcmp(a, "--image")) image = v;
    else if (!strcmp(a, "--next-model")) next_model = v;
    else if (!strcmp(a, "--next-image")) next_image = v;
    else if (!strcmp(a, "--delays-ms")) delays_arg = v;
    else if (!strcmp(a, "--trials")) {
      trials = strtol(v, &end, 10);
      if (*end || end == v || trials < 1 || trials > MAX_TRIALS) {
        fprintf(stderr, "bench_daemon_cancel: --trials: 1..%d\n", MAX_TRIALS);
        return 2;
      }
    } else if (!strcmp(a, "--timeout-ms")) {
      timeout = strtod(v, &end);
      if (*end || end == v || !(timeout >= 1)) {
        fprintf(stderr, "bench_daemon_cancel: --timeout-ms: a positive number\n");
        return 2;
      }
    } else {
      fprintf(stderr, "bench_daemon_cancel: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!socket_path || !model || !image) {
    usage(stderr);
    return 2;
  }
  if (!next_model) next_model = model;
  if (!next_image) next_image = image;

  static double delays[MAX_TRIALS];
  size_t ndelays = 0;
  if (delays_arg) {
    const char *p = delays_arg;
    while (*p) {
      char *end;
      double d = strtod(p, &end);
      if (end == p || d < 0 || (*end && *end != ',') || ndelays == MAX_TRIALS) {
        fprintf(stderr, "bench_daemon_cancel: --delays-ms: comma-separated milliseconds\n");
        return 2;
      }
      delays[ndelays++] = d;
      p = *end ? end + 1 : end;
    }
    trials = (long)ndelays;
  }

  unsigned char *png, *next_png;
  size_t len, next_len;
  if (read_file(image, &png, &len)) {
    fprintf(stderr, "bench_daemon_cancel: %s: %s\n", image, strerror(errno));
    return 1;
  }
  if (read_file(next_image, &next_png, &next_len)) {
    fprintf(stderr, "bench_daemon_cancel: %s: %s\n", next_image, strerror(errno));
    return 1;
  }
  const char *name = base_name(image), *next_name = base_name(next_image);

  char err[OSSEG_CLIENT_MSG_SIZE];
  osseg_client_t *c = NULL;
  if (osseg_client_connect(&c, socket_path, 10000, err)) {
    fprintf(stderr, "bench_daemon_cancel: %s\n", err);
    return 1;
  }
  osseg_client_set_send_timeout(c, (int)timeout);
  int status = 1;

  /* baselines */
  struct req base, nb;
  double base_wall, next_walls[3];
  if (run_alone(c, model, png, len, name, timeout, &base, &base_wall)) goto out;
  for (int k = 0; k < 3; k++)
    if (run_alone(c, next_model, next_png, next_len, next_name, timeout, &nb, &next_walls[k]))
      goto out;
  double next_wall = median(next_walls, 3);
  printf("baseline inference_ms=%.1f pre_ms=%.1f total_ms=%.1f wall_ms=%.1f next_wall_ms=%.1f\n",
         base.inference_ms, base.pre_ms, base.total_ms, base_wall, next_wall);
  if (!delays_arg) {
    double lo = base.pre_ms + 0.15 * base.inference_ms, hi = base.pre_ms + 0.85 * base.inference_ms;
    for (long t = 0; t < trials; t++)
      delays[t] = trials == 1 ? (lo + hi) / 2 : lo + (hi - lo) * (double)t / (double)(trials - 1);
    ndelays = (size_t)trials;
  }

  static double cancelled[MAX_TRIALS], ack[MAX_TRIALS], nq[MAX_TRIALS], nd[MAX_TRIALS],
      nx[MAX_TRIALS];
  size_t ncancelled = 0, nfinished = 0;
  for (size_t t = 0; t < ndelays; t++) {
    struct req rs[3]; /* the Segment, the Cancel, the next Segment */
    uint64_t id;
    double t0 = now_ms();
    if (send_segment(c, model, png, len, name, &id)) goto out;
    req_init(&rs[0], id);
    sleep_until_ms(t0 + delays[t]);
    double tc = now_ms();
    int rc = osseg_client_cancel(c, rs[0].id, &id);
    if (rc) {
      fprintf(stderr, "bench_daemon_cancel: sending Cancel: %s\n", osseg_client_message(c));
      goto out;
    }
    req_init(&rs[1], id);
    if (send_segment(c, next_model, next_png, next_len, next_name, &id)) goto out;
    req_init(&rs[2], id);
    if (pump(c, rs, 3, tc + timeout)) goto out;
    if (rs[1].code != -1 || rs[2].code != -1 ||
        (rs[0].code != -1 && rs[0].code != OSSEG__WIRE__ERROR__CODE__CANCELLED)) {
      fprintf(stderr, "bench_daemon_cancel: trial %zu: unexpected answers: segment %s, cancel %s, "
                      "next %s (%s%s%s)\n",
              t + 1, rs[0].code == -1 ? "Done" : osseg_client_error_code_name(rs[0].code),
              rs[1].code == -1 ? "Done" : osseg_client_error_code_name(rs[1].code),
              rs[2].code == -1 ? "Done" : osseg_client_error_code_name(rs[2].code), rs[0].message,
              rs[1].message, rs[2].message);
      goto out;
    }
    double a_ms = rs[0].t_end - tc, k_ms = rs[1].t_end - tc, d_ms = rs[2].t_end - tc;
    if (rs[0].code == -1) {
      nfinished++;
      printf("trial %zu delay_ms=%.0f finished before the cancel (Done %.1f ms after it)\n", t + 1,
             delays[t], a_ms);
      continue;
    }
    cancelled[ncancelled] = a_ms;
    ack[ncancelled] = k_ms;
    nq[ncancelled] = rs[2].queue_ms;
    nd[ncancelled] = d_ms;
    nx[ncancelled] = d_ms - next_wall;
    ncancelled++;
    printf("trial %zu delay_ms=%.0f cancelled_ms=%.1f ack_ms=%.1f next_queue_ms=%.1f "
           "next_inference_ms=%.1f next_done_ms=%.1f next_extra_ms=%.1f\n",
           t + 1, delays[t], a_ms, k_ms, rs[2].queue_ms, rs[2].inference_ms, d_ms,
           d_ms - next_wall);
    fflush(stdout);
  }
  {
    double mc = maxv(cancelled, ncancelled), mq = maxv(nq, ncancelled),
           md = maxv(nd, ncancelled), mx = maxv(nx, ncancelled);
    printf("cancel trials=%zu cancelled=%zu finished=%zu cancelled_median_ms=%.1f "
           "cancelled_max_ms=%.1f ack_median_ms=%.1f next_queue_median_ms=%.1f "
           "next_queue_max_ms=%.1f next_done_median_ms=%.1f next_done_max_ms=%.1f "
           "next_extra_median_ms=%.1f next_extra_max_ms=%.1f\n",
           ndelays, ncancelled, nfinished, median(cancelled, ncancelled), mc,
           median(ack, ncancelled), median(nq, ncancelled), mq, median(nd, ncancelled), md,
           median(nx, ncancelled), mx);
  }
  status = ncancelled ? 0 : 1;
out:
  osseg_client_close(c);
  free(png);
  free(next_png);
  return status;
}
