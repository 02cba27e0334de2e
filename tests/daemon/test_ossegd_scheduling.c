/* ossegd integration tests, scheduling: cancel, deadlines (running and
 * queued), a client vanishing mid-stream, Health while busy, BUSY when the
 * queue is full, draining on SIGTERM, backpressure. See daemon_harness.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon_harness.h"
#include "test_support.h"

static struct daemon shared; /* models a and b, 2 workers, 4 MB frames */

static void test_cancel(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = busy_png(&size);
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  enum { N = 6 };
  struct result x[N + 2];
  memset(x, 0, sizeof x);
  /* One write: the Cancel is read right behind the Segments. */
  uint8_t *all = NULL;
  size_t all_len = 0;
  for (int i = 0; i < N; i++) {
    struct seg_req q;
    seg_init(&q, (uint64_t)i + 1, png, size, "a");
    frame_append(&all, &all_len, &q.r);
    x[i].id = (uint64_t)i + 1;
  }
  /* Cancel the last (queued behind the others) and the first (running or
   * done by now). */
  Osseg__Wire__Cancel c1 = OSSEG__WIRE__CANCEL__INIT, c2 = OSSEG__WIRE__CANCEL__INIT;
  Osseg__Wire__Request r = OSSEG__WIRE__REQUEST__INIT;
  r.kind_case = OSSEG__WIRE__REQUEST__KIND_CANCEL;
  c1.id = N;
  r.id = 1000;
  r.cancel = &c1;
  frame_append(&all, &all_len, &r);
  c2.id = 1;
  r.id = 1001;
  r.cancel = &c2;
  frame_append(&all, &all_len, &r);
  assert_int_equal(write_all(fd, all, all_len), 0);
  free(all);
  x[N].id = 1000;
  x[N + 1].id = 1001;
  assert_int_equal(collect(fd, x, N + 2), 0);
  assert_int_equal(x[N - 1].error, CODE(CANCELLED) + 1);
  assert_true(x[0].done || x[0].error == CODE(CANCELLED) + 1);
  assert_true(x[N].done && x[N].done_msg.width == 0); /* the acknowledgement */
  assert_true(x[N + 1].done);
  for (int i = 1; i < N - 1; i++) assert_true(x[i].done);
  for (int i = 0; i < N + 2; i++) result_free(&x[i]);

  /* A deadline passed in the middle of the work. */
  struct seg_req q;
  seg_init(&q, 50, png, size, "a");
  q.s.has_deadline_ms = 1;
  q.s.deadline_ms = 1;
  assert_int_equal(send_request(fd, &q.r), 0);
  struct result y = {.id = 50};
  assert_int_equal(collect(fd, &y, 1), 0);
  assert_int_equal(y.error, CODE(DEADLINE_EXCEEDED) + 1);
  result_free(&y);
  close(fd);
}

static void test_disconnect_and_health_while_busy(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = busy_png(&size);
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  for (int i = 0; i < 6; i++) {
    struct seg_req q;
    seg_init(&q, (uint64_t)i, png, size, "a");
    assert_int_equal(send_request(fd, &q.r), 0);
  }
  /* Health on another connection is answered at once, not queued. */
  double t0 = now_s();
  Osseg__Wire__Response *h = health(&shared);
  double dt = now_s() - t0;
  assert_true(h->health->ready);
  assert_true(h->health->in_flight >= 1);
  assert_true(h->health->connections >= 2);
  assert_true(dt < 2.0);
  osseg__wire__response__free_unpacked(h, NULL);
  /* Read one response, then vanish mid-stream. */
  Osseg__Wire__Response *r = recv_response(fd);
  assert_non_null(r);
  osseg__wire__response__free_unpacked(r, NULL);
  close(fd);
  /* The daemon drops the rest and stays healthy; the dropped requests end
   * (cancelled) and in_flight returns to 0. */
  double t1 = now_s();
  for (;;) {
    h = health(&shared);
    unsigned inflight = h->health->in_flight;
    osseg__wire__response__free_unpacked(h, NULL);
    if (inflight == 0) break;
    assert_true(now_s() - t1 < 30);
    usleep(20000);
  }
}

static void test_busy_and_drain(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = busy_png(&size);
  const char *dir = test_tmpdir();
  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, "--workers", "1", "--max-queue", "1", NULL), 0);
  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  enum { N = 6 };
  struct result x[N];
  memset(x, 0, sizeof x);
  for (int i = 0; i < N; i++) {
    struct seg_req q;
    seg_init(&q, (uint64_t)i, png, size, "a");
    assert_int_equal(send_request(fd, &q.r), 0);
    x[i].id = (uint64_t)i;
  }
  assert_int_equal(collect(fd, x, N), 0);
  int busy = 0, done = 0;
  for (int i = 0; i < N; i++) {
    busy += x[i].error == CODE(BUSY) + 1;
    done += x[i].done;
    result_free(&x[i]);
  }
  assert_true(busy >= 1);
  assert_true(done >= 1);
  assert_int_equal(busy + done, N);

  /* SIGTERM while requests run: they finish, then exit 0. */
  for (int i = 0; i < 2; i++) {
    struct seg_req q;
    seg_init(&q, 100 + (uint64_t)i, png, size, "a");
    assert_int_equal(send_request(fd, &q.r), 0);
    x[i].id = 100 + (uint64_t)i;
  }
  usleep(50000);
  kill(d.pid, SIGTERM);
  assert_int_equal(collect(fd, x, 2), 0);
  assert_true(x[0].done);
  for (int i = 0; i < 2; i++) result_free(&x[i]);
  assert_true(closed_by_peer(fd));
  close(fd);
  assert_int_equal(daemon_wait(&d), 0);
  struct stat st;
  assert_int_equal(stat(d.sock, &st), -1); /* the socket file is gone */
}

/* More requests than the in-flight limit in one write, and a client that
 * does not read for a while: slowed down, never refused or stuck. (These
 * answers are small enough for the socket's buffers; test_stalled_reader
 * fills the daemon's write queue.) */
static void test_backpressure(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a"};
  struct ref ref;
  reference(&ref, png, size, models, 1, 0, NULL);
  const char *dir = test_tmpdir();
  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, "--max-in-flight", "2", "--max-output-bytes", "2000",
                                "--max-connections", "2", NULL), 0);
  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  /* Connections past the limit are closed at once; the others work. Wait
   * until the daemon saw the readiness probe's connection go. */
  for (double t0 = now_s();;) {
    Osseg__Wire__Request hr;
    simple_req(&hr, 99, OSSEG__WIRE__REQUEST__KIND_HEALTH);
    assert_int_equal(send_request(fd, &hr), 0);
    Osseg__Wire__Response *resp = recv_response(fd);
    assert_non_null(resp);
    unsigned conns = resp->health->connections;
    osseg__wire__response__free_unpacked(resp, NULL);
    if (conns == 1) break;
    assert_true(now_s() - t0 < 10);
    usleep(10000);
  }
  int fd2 = try_connect(d.sock);
  assert_true(fd2 >= 0);
  usleep(100000); /* both accepted */
  int fd3 = try_connect(d.sock);
  assert_true(fd3 >= 0);
  assert_true(closed_by_peer(fd3));
  close(fd3);
  close(fd2);
  enum { N = 16 };
  /* All frames in one write. */
  uint8_t *all = NULL;
  size_t all_len = 0;
  struct result x[N];
  memset(x, 0, sizeof x);
  for (int i = 0; i < N; i++) {
    struct seg_req q;
    seg_init(&q, (uint64_t)i, png, size, "a");
    frame_append(&all, &all_len, &q.r);
    x[i].id = (uint64_t)i;
  }
  assert_int_equal(write_all(fd, all, all_len), 0);
  free(all);
  usleep(300000); /* not reading for a while */
  Osseg__Wire__Response *h = health(&d); /* a second connection again */
  assert_true(h->health->in_flight <= 2);
  osseg__wire__response__free_unpacked(h, NULL);
  assert_int_equal(collect(fd, x, N), 0);
  for (int i = 0; i < N; i++) {
    compare(&x[i], &ref);
    result_free(&x[i]);
  }
  close(fd);
  ref_free(&ref);
  assert_int_equal(daemon_stop(&d, 20), 0);
}

/* A deadline that passes while the request waits behind slow ones is
 * answered when it passes: with one worker, the request cannot reach a
 * worker before the second slow request is done, and its
 * DEADLINE_EXCEEDED comes before that (ordering, not a timing bound). */
static void test_queued_deadline(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = busy_png(&size);
  const char *dir = test_tmpdir();
  char big[512];
  snprintf(big, sizeof big, "big=%s", demo_model());
  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, "--model", big, "--workers", "1", NULL), 0);
  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  uint8_t *all = NULL;
  size_t all_len = 0;
  enum { SLOW = 3 };
  for (int i = 0; i < SLOW; i++) {
    struct seg_req q;
    seg_init(&q, (uint64_t)i + 1, png, size, "big");
    frame_append(&all, &all_len, &q.r);
  }
  struct seg_req q;
  seg_init(&q, 100, png, size, "a");
  q.s.has_deadline_ms = 1;
  q.s.deadline_ms = 5;
  frame_append(&all, &all_len, &q.r);
  double t0 = now_s();
  assert_int_equal(write_all(fd, all, all_len), 0);
  free(all);
  int finished_slow = 0, deadline_seen = 0;
  double deadline_after = 0;
  while (finished_slow < SLOW || !deadline_seen) {
    Osseg__Wire__Response *r = recv_response(fd);
    assert_non_null(r);
    if (r->id == 100) {
      assert_int_equal(r->kind_case, OSSEG__WIRE__RESPONSE__KIND_ERROR);
      assert_int_equal(r->error->code, CODE(DEADLINE_EXCEEDED));
      assert_non_null(strstr(r->error->message, "waited in the queue"));
      if (finished_slow >= 2)
        fail_msg("DEADLINE_EXCEEDED came only after %d slow requests had ended", finished_slow);
      deadline_seen = 1;
      deadline_after = now_s() - t0;
    } else if (r->kind_case == OSSEG__WIRE__RESPONSE__KIND_DONE) {
      finished_slow++;
    } else {
      assert_int_equal(r->kind_case, OSSEG__WIRE__RESPONSE__KIND_CLASS_MASK);
    }
    osseg__wire__response__free_unpacked(r, NULL);
  }
  print_message("queued deadline of 5 ms answered after %.1f ms\n", deadline_after * 1e3);
  /* Stats count it as DEADLINE_EXCEEDED. */
  Osseg__Wire__Request sr;
  simple_req(&sr, 200, OSSEG__WIRE__REQUEST__KIND_STATS);
  assert_int_equal(send_request(fd, &sr), 0);
  Osseg__Wire__Response *r = recv_response(fd);
  assert_non_null(r);
  assert_int_equal(r->kind_case, OSSEG__WIRE__RESPONSE__KIND_STATS);
  assert_int_equal(r->stats->outcomes[CODE(DEADLINE_EXCEEDED) + 1]->count, 1);
  assert_int_equal(r->stats->outcomes[0]->count, SLOW);
  osseg__wire__response__free_unpacked(r, NULL);
  close(fd);
  assert_int_equal(daemon_stop(&d, 20), 0);
}

/* "An interactive request queued behind 10 batch requests starts within one
 * inference time." One worker and a model that takes a while on a 1536 x
 * 1536 image. Ten BATCH Segments go first; once the first of them runs
 * (Health: 9 queued) an INTERACTIVE one follows on the same connection with
 * a Health right behind it, whose answer (written once the interactive
 * request is queued) tells how many batch requests had ended: k, normally
 * 0. Measured against the same run, not a wall-clock constant:
 *   - the interactive request ends right after batch request k + 1, the one
 *     running when it came: before batch requests k + 2..10;
 *   - its queue_ms is at most the service time (Done's total_ms - queue_ms:
 *     decode, inference, post-processing) of the batch request that ended
 *     right before it, plus slack for a loaded machine. Since the worker
 *     starts it right after that one ends, this says exactly that it came
 *     after that one had started: it waited for the request in progress
 *     and nothing else. A FIFO queue would make it about nine service
 *     times.
 * One race is allowed for: batch request k + 1 may end, and the worker take
 * k + 2, in the moment between the interactive request's arrival and the
 * loop's draining of k + 1's completion (microseconds after the end of a
 * service time, while the request is sent near the start of one); the
 * Health then says k but batch k + 2 was in progress. The timing check is
 * exact either way. */
static void test_priority(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = busy_png(&size);
  const char *dir = test_tmpdir();
  char big[512];
  snprintf(big, sizeof big, "big=%s", demo_model());
  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, "--model", big, "--workers", "1", NULL), 0);
  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  enum { NB = 10, INTERACTIVE = 100, HEALTH = 101 };
  uint8_t *all = NULL;
  size_t all_len = 0;
  for (int i = 0; i < NB; i++) {
    struct seg_req q;
    seg_init(&q, (uint64_t)i + 1, png, size, "big");
    q.s.has_priority = 1;
    q.s.priority = OSSEG__WIRE__PRIORITY__PRIORITY_BATCH;
    frame_append(&all, &all_len, &q.r);
  }
  assert_int_equal(write_all(fd, all, all_len), 0);
  free(all);
  all = NULL;
  all_len = 0;
  /* Until the first batch request runs and the other nine wait. */
  for (double t0 = now_s();;) {
    Osseg__Wire__Response *h = health(&d);
    unsigned in_flight = h->health->in_flight, queued = h->health->queue_depth;
    osseg__wire__response__free_unpacked(h, NULL);
    /* One runs, the rest wait. Batch requests the daemon has not read yet
     * come before the interactive one on the connection anyway. */
    if (in_flight >= 1 && queued + 1 == in_flight) break;
    assert_true(now_s() - t0 < 60);
    usleep(2000);
  }
  struct seg_req q;
  seg_init(&q, INTERACTIVE, png, size, "big");
  q.s.has_priority = 1;
  q.s.priority = OSSEG__WIRE__PRIORITY__PRIORITY_INTERACTIVE;
  frame_append(&all, &all_len, &q.r);
  Osseg__Wire__Request hr;
  simple_req(&hr, HEALTH, OSSEG__WIRE__REQUEST__KIND_HEALTH);
  frame_append(&all, &all_len, &hr);
  assert_int_equal(write_all(fd, all, all_len), 0);
  free(all);

  /* Every final answer, in the order the daemon wrote them. */
  double service[NB + 1] = {0}, inter_queue = -1;
  int ended_before_health = -1, batch_before_inter = -1, ended = 0, finals = 0;
  uint64_t ended_id[NB];
  while (finals < NB + 1 || ended_before_health < 0) {
    Osseg__Wire__Response *r = recv_response(fd);
    assert_non_null(r);
    if (r->kind_case == OSSEG__WIRE__RESPONSE__KIND_HEALTH) {
      assert_int_equal(r->id, HEALTH);
      ended_before_health = ended;
    } else if (r->kind_case == OSSEG__WIRE__RESPONSE__KIND_ERROR) {
      fail_msg("request %llu: %s", (unsigned long long)r->id, r->error->message);
    } else if (r->kind_case == OSSEG__WIRE__RESPONSE__KIND_DONE) {
      finals++;
      if (r->id == INTERACTIVE) {
        inter_queue = r->done->queue_ms;
        service[NB] = r->done->total_ms - r->done->queue_ms;
        batch_before_inter = ended;
      } else {
        assert_true(r->id >= 1 && r->id <= NB);
        service[r->id - 1] = r->done->total_ms - r->done->queue_ms;
        ended_id[ended++] = r->id;
      }
    }
    osseg__wire__response__free_unpacked(r, NULL);
  }
  close(fd);
  /* Batch requests run in their order. */
  for (int i = 0; i < NB; i++) assert_int_equal(ended_id[i], (uint64_t)i + 1);
  assert_true(batch_before_inter >= 1);
  double in_progress = service[batch_before_inter - 1];
  double lo = service[0], hi = service[0];
  for (int i = 1; i < NB; i++) {
    if (service[i] < lo) lo = service[i];
    if (service[i] > hi) hi = service[i];
  }
  print_message("batch service times %.1f..%.1f ms; the interactive request came while batch "
                "request %d ran (%d had ended), waited %.1f ms (that batch request's service "
                "time %.1f ms), ran %.1f ms, and ended after %d batch requests\n",
                lo, hi, ended_before_health + 1, ended_before_health, inter_queue, in_progress,
                service[NB], batch_before_inter);
  assert_true(ended_before_health >= 0 && ended_before_health < NB);
  int after = batch_before_inter - ended_before_health;
  if (after == 2)
    print_message("batch request %d ended as the interactive request came\n",
                  ended_before_health + 1);
  else if (after != 1)
    fail_msg("the interactive request came while batch request %d ran but ended after %d "
             "batch requests", ended_before_health + 1, batch_before_inter);
  double slack = 0.25 * in_progress + 20;
  if (inter_queue > in_progress + slack)
    fail_msg("the interactive request waited %.1f ms, more than the %.1f ms the batch request "
             "in progress took (+%.1f ms slack)", inter_queue, in_progress, slack);
  assert_int_equal(daemon_stop(&d, 20), 0);
}

/* Round trips of n Segments of the standard image, one after another, on
 * one connection; returns the slowest in ms and adds all to *sum_ms. */
static double round_trips(int fd, uint64_t id0, int n, const struct ref *ref, double *sum_ms) {
  size_t size;
  const uint8_t *png = test_png(&size);
  double worst = 0;
  for (int i = 0; i < n; i++) {
    struct seg_req q;
    seg_init(&q, id0 + (uint64_t)i, png, size, "a");
    double t0 = now_s();
    assert_int_equal(send_request(fd, &q.r), 0);
    struct result x = {.id = id0 + (uint64_t)i};
    assert_int_equal(collect(fd, &x, 1), 0);
    double ms = (now_s() - t0) * 1e3;
    compare(&x, ref);
    result_free(&x);
    *sum_ms += ms;
    if (ms > worst) worst = ms;
  }
  return worst;
}

/* "A client that stops reading delays nobody else", measured. Client S
 * sends two Segments of a 1024 x 1024 image whose answers (RLE of 29
 * classes, megabytes) are far larger than the socket's buffers and
 * --max-output-bytes, reads nothing, and sends two more. Client B's round
 * trips on the standard image are timed before S stalls and while it does:
 *   - the daemon finished S's first two requests without blocking on their
 *     output (it waits in the daemon's write queue: more bytes went out
 *     than any socket buffer holds) and stopped reading S, so S's next two
 *     requests are not done while S stalls (backpressure);
 *   - B's round trips while S stalls take no longer than before (at most
 *     three times the baseline plus 50 ms each, on the same run);
 * and once S reads again the daemon reads it again too: all four answers
 * arrive, complete and equal to the pipeline's. */
static void test_stalled_reader(void **state) {
  (void)state;
  size_t size;
  const uint8_t *small = test_png(&size);
  const char *models[] = {"a"};
  struct ref ref, sref;
  reference(&ref, small, size, models, 1, 0, NULL);
  size_t ssize;
  uint8_t *spng = make_png(1024, 1024, 11, &ssize);
  reference(&sref, spng, ssize, models, 1, 0, NULL);
  size_t answer = 0;
  for (size_t c = 0; c < sref.n; c++) answer += strlen(sref.rle[c]);
  const char *dir = test_tmpdir();
  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, "--max-output-bytes", "65536", NULL), 0);

  int b = try_connect(d.sock);
  assert_true(b >= 0);
  enum { NB = 10 };
  double base_sum = 0, stall_sum = 0;
  round_trips(b, 1, 2, &ref, &base_sum); /* warm: the workspaces grow once */
  base_sum = 0;
  double base_worst = round_trips(b, 100, NB, &ref, &base_sum);

  /* S's frames are small (the image compresses well): the ones the daemon
   * will not read wait in the socket without blocking this thread. */
  enum { NS = 4 };
  struct result sx[NS];
  memset(sx, 0, sizeof sx);
  uint8_t *half[2] = {NULL, NULL};
  size_t half_len[2] = {0, 0};
  for (int i = 0; i < NS; i++) {
    struct seg_req q;
    seg_init(&q, (uint64_t)i + 1, spng, ssize, "a");
    frame_append(&half[i / 2], &half_len[i / 2], &q.r);
    sx[i].id = (uint64_t)i + 1;
  }
  assert_true(half_len[0] + half_len[1] < 100000);
  int s = try_connect(d.sock);
  assert_true(s >= 0);
  assert_int_equal(write_all(s, half[0], half_len[0]), 0);
  /* Until the daemon has done both: their output is queued now. */
  uint64_t done_s = 0;
  for (double t0 = now_s(); done_s < 2;) {
    assert_true(now_s() - t0 < 60);
    usleep(10000);
    Osseg__Wire__Response *st = stats(&d);
    done_s = st->stats->outcomes[0]->count - (2 + NB);
    osseg__wire__response__free_unpacked(st, NULL);
  }
  assert_int_equal(write_all(s, half[1], half_len[1]), 0);
  free(half[0]);
  free(half[1]);
  usleep(200000); /* time enough to read and run them, were it reading S */
  double stall_worst = round_trips(b, 200, NB, &ref, &stall_sum);
  /* Not read: a request read is in flight until it is done. */
  Osseg__Wire__Response *h = health(&d);
  assert_int_equal(h->health->in_flight, 0);
  osseg__wire__response__free_unpacked(h, NULL);
  Osseg__Wire__Response *st = stats(&d);
  done_s = st->stats->outcomes[0]->count - (2 + 2 * NB);
  uint64_t bytes_out = st->stats->bytes_out;
  osseg__wire__response__free_unpacked(st, NULL);
  print_message("S: %d requests with %zu bytes of RLE each, %llu done while S stalled; B's "
                "round trips: %.1f ms mean, %.1f ms worst before, %.1f ms mean, %.1f ms "
                "worst while S stalled\n",
                NS, answer, (unsigned long long)done_s, base_sum / NB, base_worst,
                stall_sum / NB, stall_worst);
  /* The daemon wrote (or queued) megabytes S did not read, and did not
   * read S's last two requests (neither in flight nor done). */
  assert_true(answer > 500000);
  assert_true(bytes_out > 2 * answer);
  assert_int_equal(done_s, 2);
  /* B was not slowed down. */
  if (stall_sum > 3 * base_sum + 50 * NB)
    fail_msg("B's round trips took %.1f ms while S stalled, %.1f ms before", stall_sum,
             base_sum);
  /* S reads again: everything arrives, complete and right. */
  assert_int_equal(collect(s, sx, NS), 0);
  for (int i = 0; i < NS; i++) {
    compare(&sx[i], &sref);
    result_free(&sx[i]);
  }
  close(s);
  close(b);
  free(spng);
  ref_free(&ref);
  ref_free(&sref);
  assert_int_equal(daemon_stop(&d, 20), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_disconnect_and_health_while_busy),
      cmocka_unit_test(test_busy_and_drain),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_stalled_reader),
      cmocka_unit_test(test_queued_deadline),
      cmocka_unit_test(test_priority),
  };
  return harness_main_shared(tests, &shared, "--max-frame-bytes", "4000000", NULL);
}
