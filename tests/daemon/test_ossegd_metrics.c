/* Metrics of a real ossegd: bin/ossegd with the two tiny fixture models and
 * --metrics-file, Segment requests through the client library (ok ones,
 * an ensemble, failing ones at validation and in a worker), then
 *   - `osseg stats --prometheus` parses strictly (tests/support/prom_parse)
 *     and its counts are the requests sent: by outcome, by model and
 *     outcome (an ensemble counts for each model), histogram counts,
 *     gauges, load times;
 *   - the metrics file appears, parses, catches up with the same counts,
 *     and is replaced atomically: read in a loop while the daemon rewrites
 *     it every 20 ms, it is never seen partially written, and it changes
 *     while it is read;
 *   - after SIGTERM the file holds the final counts and no temporary file
 *     is left beside it;
 *   - a metrics path that cannot be written fails start-up naming it, and
 *     a bad interval is a usage error. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon_harness.h"
#include "osseg_base.h"
#include "osseg_client.h"
#include "osseg_imaging.h"
#include "prom_parse.h"
#include "test_support.h"

/* ------------------------------------------------------------ daemon --- */

/* A daemon of the harness with its folder and metrics file. */
struct mdaemon {
  struct daemon d;
  char dir[512], metrics[600];
};

/* Starts ossegd with models a and b and --metrics-file (interval given),
 * and waits until it takes connections and the file exists. */
static void metrics_start(struct mdaemon *m, const char *interval) {
  snprintf(m->dir, sizeof m->dir, "%s", test_tmpdir());
  snprintf(m->metrics, sizeof m->metrics, "%s/osseg.prom", m->dir);
  int rc = daemon_start(&m->d, m->dir, "--metrics-file", m->metrics, "--metrics-interval",
                        interval, NULL);
  if (rc != 0) {
    char *log = test_read_file(m->d.log, NULL);
    fail_msg("ossegd exited before it was ready (status %d): %s", rc, log ? log : "");
  }
  double t0 = now_s();
  struct stat st;
  while (stat(m->metrics, &st) != 0) {
    if (now_s() - t0 > 60) fail_msg("ossegd wrote no %s within 60 s", m->metrics);
    usleep(20000);
  }
}

static int teardown_test(void **state) {
  (void)state;
  harness_stop_left();
  return 0;
}

/* ---------------------------------------------------------- requests --- */

static uint8_t *gradient_png(uint32_t w, uint32_t h, size_t *size) {
  struct osseg_image img;
  assert_int_equal(osseg_image_init(&img, w, h, 1, 8), 0);
  for (uint32_t y = 0; y < h; y++)
    for (uint32_t x = 0; x < w; x++)
      img.data[(size_t)y * img.stride + x] = (uint8_t)((x * 3 + y * 5) & 0xff);
  uint8_t *png = NULL;
  assert_int_equal(osseg_png_encode_mem(&img, 1, &png, size, NULL), 0);
  osseg_image_free(&img);
  return png;
}

/* Sends one Segment of png with the models and returns how it ended:
 * -1 for Done, else the Error code. */
static int segment(osseg_client_t *c, const void *png, size_t len, const char *const *models,
                   size_t nmodels) {
  struct osseg_client_segment s;
  uint64_t id = osseg_client_next_id(c);
  osseg_client_segment_png(&s, id, png, len, "img");
  osseg_client_segment_set_models(&s, models, nmodels);
  assert_int_equal(osseg_client_send(c, &s.req, -1), 0);
  for (;;) {
    Osseg__Wire__Response *r = NULL;
    int rc = osseg_client_recv(c, &r, 60000);
    if (rc != 0) fail_msg("recv: %s", osseg_client_message(c));
    int end = r->id == id && (r->kind_case == OSSEG__WIRE__RESPONSE__KIND_DONE ||
                              r->kind_case == OSSEG__WIRE__RESPONSE__KIND_ERROR);
    int code = r->kind_case == OSSEG__WIRE__RESPONSE__KIND_ERROR ? (int)r->error->code : -1;
    osseg__wire__response__free_unpacked(r, NULL);
    if (end) return code;
  }
}

/* ----------------------------------------------------------- metrics --- */

static void parse_or_fail(const char *what, const char *text, size_t len, struct prom_doc *doc) {
  char err[512];
  if (prom_parse(text, len, doc, err, sizeof err) != 0)
    fail_msg("%s does not parse: %s\n%s", what, err, text);
}

static double value(const struct prom_doc *doc, const char *name, const char *labels) {
  double v;
  if (prom_value(doc, name, labels, &v) != 0) fail_msg("no sample %s{%s}", name, labels);
  return v;
}

#define EXPECT(doc, name, labels, want)                                                     \
  do {                                                                                      \
    double got_ = value(doc, name, labels);                                                 \
    if (got_ != (double)(want))                                                             \
      fail_msg("%s{%s} is %g, expected %g", name, labels, got_, (double)(want));            \
  } while (0)

/* What the requests of test_counts must have produced. */
static void expect_counts(const struct prom_doc *doc) {
  EXPECT(doc, "osseg_requests_total", "outcome=\"ok\"", 3);
  EXPECT(doc, "osseg_requests_total", "outcome=\"BAD_IMAGE\"", 2);
  EXPECT(doc, "osseg_requests_total", "outcome=\"UNKNOWN_MODEL\"", 1);
  EXPECT(doc, "osseg_requests_total", "outcome=\"BAD_REQUEST\"", 1);
  EXPECT(doc, "osseg_requests_total", "outcome=\"BUSY\"", 0);
  /* Two with a, one ensemble a+b: a ok 3, b ok 1. */
  EXPECT(doc, "osseg_model_requests_total", "model=\"a\",outcome=\"ok\"", 3);
  EXPECT(doc, "osseg_model_requests_total", "model=\"b\",outcome=\"ok\"", 1);
  /* A corrupt PNG (worker) and an empty one (validation), both to b. */
  EXPECT(doc, "osseg_model_requests_total", "model=\"b\",outcome=\"BAD_IMAGE\"", 2);
  EXPECT(doc, "osseg_model_requests_total", "model=\"a\",outcome=\"BAD_IMAGE\"", 0);
  /* [a, nosuchmodel]: counted for a only. */
  EXPECT(doc, "osseg_model_requests_total", "model=\"a\",outcome=\"UNKNOWN_MODEL\"", 1);
  EXPECT(doc, "osseg_model_requests_total", "model=\"b\",outcome=\"UNKNOWN_MODEL\"", 0);
  double v;
  assert_int_equal(prom_value(doc, "osseg_model_requests_total",
                              "model=\"nosuchmodel\",outcome=\"UNKNOWN_MODEL\"", &v),
                   -1);
  /* No models at all: in requests_total only. */
  EXPECT(doc, "osseg_model_requests_total", "model=\"a\",outcome=\"BAD_REQUEST\"", 0);
  EXPECT(doc, "osseg_model_requests_total", "model=\"b\",outcome=\"BAD_REQUEST\"", 0);
  EXPECT(doc, "osseg_request_duration_seconds_count", "", 3);
  EXPECT(doc, "osseg_request_duration_seconds_bucket", "le=\"+Inf\"", 3);
  /* A worker took the three ok ones and the corrupt one. */
  EXPECT(doc, "osseg_queue_wait_seconds_count", "", 4);
  EXPECT(doc, "osseg_inference_duration_seconds_count", "model=\"a\"", 3);
  EXPECT(doc, "osseg_inference_duration_seconds_count", "model=\"b\"", 1);
  assert_true(value(doc, "osseg_request_duration_seconds_sum", "") > 0);
  assert_true(value(doc, "osseg_inference_duration_seconds_sum", "model=\"a\"") > 0);
  assert_true(value(doc, "osseg_inference_duration_seconds_sum", "model=\"a\"") <=
              value(doc, "osseg_request_duration_seconds_sum", ""));
  EXPECT(doc, "osseg_model_reloads_total", "model=\"a\"", 0);
  assert_true(value(doc, "osseg_model_load_seconds", "model=\"a\"") > 0);
  assert_true(value(doc, "osseg_model_load_seconds", "model=\"b\"") > 0);
  assert_true(value(doc, "osseg_model_warmup_seconds", "model=\"a\"") > 0);
  EXPECT(doc, "osseg_queue_depth", "priority=\"interactive\"", 0);
  EXPECT(doc, "osseg_queue_depth", "priority=\"batch\"", 0);
  EXPECT(doc, "osseg_requests_in_flight", "", 0);
  EXPECT(doc, "osseg_refused_peers_total", "", 0);
}

static void test_counts(void **state) {
  (void)state;
  time_t wall0 = time(NULL);
  struct mdaemon m;
  metrics_start(&m, "0.05");
  size_t len;
  uint8_t *png = gradient_png(96, 80, &len);
  osseg_client_t *c = NULL;
  char err[OSSEG_CLIENT_MSG_SIZE];
  if (osseg_client_connect(&c, m.d.sock, 5000, err) != 0) fail_msg("%s", err);
  static const char *const a[] = {"a"}, *const b[] = {"b"}, *const ab[] = {"a", "b"};
  static const char *const unknown[] = {"a", "nosuchmodel"};
  /* A PNG whose header is sound (validation, which reads it on the loop,
   * lets it through) and whose image data is garbage (the worker's decode
   * fails). */
  uint8_t garbage[96];
  assert_true(len >= 33);
  memcpy(garbage, png, 33);
  memset(garbage + 33, 0x5a, sizeof garbage - 33);
  assert_int_equal(segment(c, png, len, a, 1), -1);
  assert_int_equal(segment(c, png, len, a, 1), -1);
  assert_int_equal(segment(c, png, len, ab, 2), -1);
  assert_int_equal(segment(c, garbage, sizeof garbage, b, 1),
                   OSSEG__WIRE__ERROR__CODE__BAD_IMAGE);
  assert_int_equal(segment(c, garbage, 0, b, 1), OSSEG__WIRE__ERROR__CODE__BAD_IMAGE);
  assert_int_equal(segment(c, png, len, unknown, 2), OSSEG__WIRE__ERROR__CODE__UNKNOWN_MODEL);
  assert_int_equal(segment(c, png, len, NULL, 0), OSSEG__WIRE__ERROR__CODE__BAD_REQUEST);

  /* The CLI, with this connection still open. */
  char *out, *errs;
  int rc = test_osseg_run(&out, &errs, "stats", "--socket", m.d.sock, "--prometheus", NULL);
  if (rc != 0) fail_msg("osseg stats --prometheus: exit %d: %s", rc, errs);
  struct prom_doc doc;
  parse_or_fail("osseg stats --prometheus", out, strlen(out), &doc);
  expect_counts(&doc);
  /* This connection and the CLI's; the start-up probe's too. */
  EXPECT(&doc, "osseg_connections", "", 2);
  double cli_total = value(&doc, "osseg_connections_total", "");
  assert_true(cli_total >= 2);
  assert_true(value(&doc, "osseg_received_bytes_total", "") > 4.0 * (double)len);
  assert_true(value(&doc, "osseg_sent_bytes_total", "") > 0);
  double start = value(&doc, "osseg_start_time_seconds", "");
  assert_true(start >= (double)wall0 - 1 && start <= (double)time(NULL) + 1);
  assert_true(value(&doc, "osseg_uptime_seconds", "") > 0);
  prom_free(&doc);
  free(out);
  free(errs);

  /* The file catches up within a few intervals. */
  double t0 = now_s();
  for (;;) {
    size_t n;
    char *text = test_read_file(m.metrics, &n);
    assert_non_null(text);
    parse_or_fail("the metrics file", text, n, &doc);
    free(text);
    /* Caught up: the last request (the one without models) is counted and
     * the CLI's connection has closed. Its connection being counted too
     * tells this apart from a file written before the CLI connected, when
     * one connection was open as well. */
    double refused = value(&doc, "osseg_requests_total", "outcome=\"BAD_REQUEST\"");
    double conns = value(&doc, "osseg_connections", "");
    double total = value(&doc, "osseg_connections_total", "");
    if (refused == 1 && conns == 1 && total >= cli_total) break;
    prom_free(&doc);
    if (now_s() - t0 > 20) fail_msg("the metrics file did not catch up in 20 s");
    usleep(20000);
  }
  expect_counts(&doc);
  prom_free(&doc);

  osseg_client_close(c);
  osseg__free(png);
  assert_int_equal(daemon_stop(&m.d, 30), 0);

  /* The last write has the final state, and nothing is left beside it. */
  size_t n;
  char *text = test_read_file(m.metrics, &n);
  assert_non_null(text);
  parse_or_fail("the final metrics file", text, n, &doc);
  free(text);
  expect_counts(&doc);
  EXPECT(&doc, "osseg_connections", "", 0);
  prom_free(&doc);
  DIR *dir = opendir(m.dir);
  assert_non_null(dir);
  struct dirent *e;
  while ((e = readdir(dir)) != NULL)
    if (strstr(e->d_name, ".tmp-")) fail_msg("left behind: %s", e->d_name);
  closedir(dir);
}

/* Read in a loop while the daemon rewrites the file every 20 ms: every
 * read is a whole document (it parses strictly and ends with the last
 * family), and the file is replaced during the loop (its uptime changes;
 * inode numbers are no proof, a file system may reuse them at once). */
static void test_atomic_replace(void **state) {
  (void)state;
  struct mdaemon m;
  metrics_start(&m, "0.02");
  size_t len;
  uint8_t *png = gradient_png(64, 64, &len);
  osseg_client_t *c = NULL;
  char err[OSSEG_CLIENT_MSG_SIZE];
  if (osseg_client_connect(&c, m.d.sock, 5000, err) != 0) fail_msg("%s", err);
  static const char *const a[] = {"a"};

  size_t versions = 0, reads = 0;
  double last_uptime = -1;
  double t0 = now_s();
  while (now_s() - t0 < 2.0 || versions < 5) {
    if (now_s() - t0 > 30) fail_msg("the file was replaced only %zu times in 30 s", versions);
    /* Keep the counters moving now and then. */
    if (reads % 50 == 0) assert_int_equal(segment(c, png, len, a, 1), -1);
    int fd = open(m.metrics, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_msg("%s: %s (the file must always exist)", m.metrics, strerror(errno));
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *text = malloc((size_t)st.st_size + 65536);
    size_t got = 0;
    ssize_t r;
    while ((r = read(fd, text + got, (size_t)st.st_size + 65536 - got)) > 0) got += (size_t)r;
    close(fd);
    assert_true(r == 0);
    assert_int_equal(got, (size_t)st.st_size); /* a file is never written in place */
    struct prom_doc doc;
    parse_or_fail("a metrics file read while it is rewritten", text, got, &doc);
    double uptime;
    if (prom_value(&doc, "osseg_uptime_seconds", "", &uptime) != 0)
      fail_msg("a read ended before the last family:\n%.*s", (int)got, text);
    prom_free(&doc);
    free(text);
    if (uptime != last_uptime) versions++;
    last_uptime = uptime;
    reads++;
  }
  print_message("%zu reads, %zu versions of the file\n", reads, versions);
  osseg_client_close(c);
  osseg__free(png);
  assert_int_equal(daemon_stop(&m.d, 30), 0);
}

static void test_bad_options(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char sock[600], bad[600], good[600], ma[1024], bin[1024];
  snprintf(sock, sizeof sock, "%s/s.sock", dir);
  snprintf(bad, sizeof bad, "%s/missing/osseg.prom", dir);
  snprintf(good, sizeof good, "%s/osseg.prom", dir);
  snprintf(ma, sizeof ma, "a=%s", model_file("unetpp_r18_tiny_op13"));
  snprintf(bin, sizeof bin, "%s", test_path("%s/bin/ossegd", test_binary_dir()));
  char *err = NULL;
  const char *argv1[] = {bin, "--socket", sock, "--model", ma, "--metrics-file", bad, NULL};
  assert_int_equal(test_run(argv1, NULL, &err, 60), 1);
  char want[800];
  snprintf(want, sizeof want, "ossegd: metrics file: %s: cannot create a file in its folder", bad);
  if (!strstr(err, want)) fail_msg("expected '%s' in: %s", want, err);
  free(err);
  struct stat st;
  assert_int_not_equal(stat(sock, &st), 0); /* no socket left behind */
  const char *bad_values[] = {"0", "-1", "0.001", "86401", "inf", "nan", "1x", ""};
  for (size_t i = 0; i < sizeof bad_values / sizeof *bad_values; i++) {
    const char *argv2[] = {bin,  "--socket",       sock, "--model", ma, "--metrics-file", good,
                           "--metrics-interval", bad_values[i], NULL};
    assert_int_equal(test_run(argv2, NULL, &err, 60), 2);
    snprintf(want, sizeof want,
             "ossegd: --metrics-interval must be 0.01..86400 seconds, not '%s'\n", bad_values[i]);
    assert_string_equal(err, want);
    free(err);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_counts, teardown_test),
      cmocka_unit_test_teardown(test_atomic_replace, teardown_test),
      cmocka_unit_test(test_bad_options),
  };
  return harness_main(tests, harness_group_setup, harness_group_teardown);
}
