/* bench_health: round-trip time of Health requests to ossegd, e.g. while
 * other clients load it (bench/bench_daemon.sh runs it beside its 4-client
 * throughput run).
 *
 *   bench_health --socket SOCK [--interval-ms MS] [--max-s S] [--count N]
 *                [--timeout-ms MS] [--samples FILE]
 *
 * Every MS milliseconds (default 200) it makes two probes:
 *   fresh:      connect + Health + answer on a new connection, then close
 *               (what `osseg health` does, without the process start);
 *   persistent: Health + answer on one connection kept open (the loop
 *               thread's answer time alone).
 * It stops on SIGTERM/SIGINT, after S seconds (default 600) or after N
 * ticks (default: no limit), then prints one summary line per kind:
 *   fresh probes=N failed=F median_ms=M p90_ms=P max_ms=X connect_median_ms=C
 *   persistent probes=N failed=F median_ms=M p90_ms=P max_ms=X
 *   load max_queue_depth=Q max_in_flight=I max_connections=K
 * (the load line: the largest values the Health answers reported, to show
 * the daemon was busy). --samples FILE writes every probe
 * ("kind ms queue_depth in_flight", ms -1 for a failure). A probe that gets
 * no answer within --timeout-ms (default 5000) counts as failed.
 * Exit status 0, 1 when no probe succeeded, 2 for bad usage. Only the
 * client library (clients/osseg_client.h) is used. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "osseg_client.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Sleeps until the monotonic time t (ms); returns early on a signal. */
static void sleep_until_ms(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)(t / 1e3);
  ts.tv_nsec = (long)((t - (double)ts.tv_sec * 1e3) * 1e6);
  if (ts.tv_nsec < 0) ts.tv_nsec = 0;
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  while (!stop_flag && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

struct series {
  double *ms;
  size_t n, cap, failed;
};

static int series_add(struct series *s, double ms) {
  if (ms < 0) {
    s->failed++;
    return 0;
  }
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    double *p = realloc(s->ms, cap * sizeof *p);
    if (!p) return -1;
    s->ms = p;
    s->cap = cap;
  }
  s->ms[s->n++] = ms;
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* q-quantile (nearest rank) of sorted values; 0 when empty. */
static double quantile(const double *v, size_t n, double q) {
  if (!n) return 0;
  size_t k = (size_t)(q * (double)n + 0.999999);
  if (k < 1) k = 1;
  if (k > n) k = n;
  return v[k - 1];
}

struct load {
  uint32_t queue, in_flight, connections;
};

/* One Health round trip on c: ms, or -1 (message in err). */
static double health_rtt(osseg_client_t *c, int timeout_ms, struct load *seen, char *err) {
  uint64_t id;
  double t0 = now_ms();
  int rc = osseg_client_health(c, &id);
  Osseg__Wire__Response *r = NULL;
  /* Anything else on this connection would be a daemon bug; skip it. */
  while (rc == 0) {
    double left = (double)timeout_ms - (now_ms() - t0);
    if (left <= 0) {
      rc = OSSEG_CLIENT_ETIMEDOUT;
      break;
    }
    rc = osseg_client_recv(c, &r, (int)left + 1);
    if (rc == 0 && r->id == id) break;
    if (rc == 0) {
      osseg__wire__response__free_unpacked(r, NULL);
      r = NULL;
    }
  }
  double t1 = now_ms();
  if (rc != 0) {
    snprintf(err, OSSEG_CLIENT_MSG_SIZE, "%s", osseg_client_message(c)[0]
                                                   ? osseg_client_message(c)
                                                   : osseg_client_strerror(rc));
    return -1;
  }
  double ms = t1 - t0;
  if (r->kind_case != OSSEG__WIRE__RESPONSE__KIND_HEALTH) {
    snprintf(err, OSSEG_CLIENT_MSG_SIZE, "unexpected answer kind %d", (int)r->kind_case);
    ms = -1;
  } else {
    const Osseg__Wire__Health *h = r->health;
    if (h->queue_depth > seen->queue) seen->queue = h->queue_depth;
    if (h->in_flight > seen->in_flight) seen->in_flight = h->in_flight;
    if (h->connections > seen->connections) seen->connections = h->connections;
  }
  osseg__wire__response__free_unpacked(r, NULL);
  return ms;
}

static void summary(const char *kind, struct series *s, const struct series *connect) {
  qsort(s->ms, s->n, sizeof *s->ms, cmp_double);
  printf("%s probes=%zu failed=%zu median_ms=%.3f p90_ms=%.3f max_ms=%.3f", kind,
         s->n + s->failed, s->failed, quantile(s->ms, s->n, 0.5), quantile(s->ms, s->n, 0.9),
         s->n ? s->ms[s->n - 1] : 0.0);
  if (connect) {
    struct series c = *connect;
    qsort(c.ms, c.n, sizeof *c.ms, cmp_double);
    printf(" connect_median_ms=%.3f connect_max_ms=%.3f", quantile(c.ms, c.n, 0.5),
           c.n ? c.ms[c.n - 1] : 0.0);
  }
  printf("\n");
}

static void usage(FILE *f) {
  fprintf(f, "usage: bench_health --socket SOCK [--interval-ms MS] [--max-s S] [--count N]\n"
             "                    [--timeout-ms MS] [--samples FILE]\n");
}

static int parse_num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  const char *socket_path = NULL, *samples_path = NULL;
  double interval = 200, max_s = 600, count = 0, timeout = 5000;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    double *num = NULL, lo = 0, hi = 0;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "bench_health: %s: missing value or unknown option\n", a);
      usage(stderr);
      return 2;
    }
    if (!strcmp(a, "--socket")) socket_path = argv[++i];
    else if (!strcmp(a, "--samples")) samples_path = argv[++i];
    else if (!strcmp(a, "--interval-ms")) num = &interval, lo = 1, hi = 3600e3;
    else if (!strcmp(a, "--max-s")) num = &max_s, lo = 0.001, hi = 86400;
    else if (!strcmp(a, "--count")) num = &count, lo = 1, hi = 1e9;
    else if (!strcmp(a, "--timeout-ms")) num = &timeout, lo = 1, hi = 3600e3;
    else {
      fprintf(stderr, "bench_health: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
    if (num && parse_num(argv[++i], lo, hi, num)) {
      fprintf(stderr, "bench_health: %s: expected a number in [%g, %g]\n", a, lo, hi);
      return 2;
    }
  }
  if (!socket_path) {
    usage(stderr);
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: sleeps end at once */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  FILE *samples = NULL;
  if (samples_path && !(samples = fopen(samples_path, "w"))) {
    fprintf(stderr, "bench_health: %s: %s\n", samples_path, strerror(errno));
    return 1;
  }
  struct series fresh = {0}, persistent = {0}, connect = {0};
  struct load seen = {0};
  char err[OSSEG_CLIENT_MSG_SIZE] = "", last_err[OSSEG_CLIENT_MSG_SIZE] = "";
  osseg_client_t *pc = NULL;
  double start = now_ms(), next = start;
  for (long tick = 0; !stop_flag && (count == 0 || tick < (long)count); tick++) {
    if (now_ms() - start > max_s * 1e3) break;
    /* fresh connection, like `osseg health` */
    osseg_client_t *c = NULL;
    double t0 = now_ms(), ms = -1;
    if (osseg_client_connect(&c, socket_path, (int)timeout, err) == 0) {
      double t1 = now_ms();
      double rtt = health_rtt(c, (int)timeout, &seen, err);
      if (rtt >= 0) {
        ms = now_ms() - t0;
        if (series_add(&connect, t1 - t0)) goto oom;
      }
      osseg_client_close(c);
    }
    if (ms < 0) snprintf(last_err, sizeof last_err, "fresh: %s", err);
    if (series_add(&fresh, ms)) goto oom;
    if (samples) fprintf(samples, "fresh %.3f %u %u\n", ms, seen.queue, seen.in_flight);
    /* one connection kept open; reconnected after a failure */
    ms = -1;
    if (!pc && osseg_client_connect(&pc, socket_path, (int)timeout, err) != 0) pc = NULL;
    if (pc) {
      ms = health_rtt(pc, (int)timeout, &seen, err);
      if (ms < 0) {
        osseg_client_close(pc);
        pc = NULL;
      }
    }
    if (ms < 0) snprintf(last_err, sizeof last_err, "persistent: %s", err);
    if (series_add(&persistent, ms)) goto oom;
    if (samples) fprintf(samples, "persistent %.3f %u %u\n", ms, seen.queue, seen.in_flight);
    next += interval;
    if (next < now_ms()) next = now_ms(); /* fell behind: no burst to catch up */
    sleep_until_ms(next);
  }
  osseg_client_close(pc);
  if (samples) fclose(samples);
  summary("fresh", &fresh, &connect);
  summary("persistent", &persistent, NULL);
  printf("load max_queue_depth=%u max_in_flight=%u max_connections=%u\n", seen.queue,
         seen.in_flight, seen.connections);
  if (last_err[0]) fprintf(stderr, "bench_health: last failure: %s\n", last_err);
  fflush(stdout);
  int ok = fresh.n + persistent.n > 0;
  free(fresh.ms);
  free(persistent.ms);
  free(connect.ms);
  return ok ? 0 : 1;
oom:
  fprintf(stderr, "bench_health: out of memory\n");
  return 1;
}
