/* The Stats -> Prometheus text formatter (proto/prometheus.c): exact text
 * for a message with every field (escaping, cumulative buckets in seconds,
 * the +Inf bucket added when missing, _sum and _count), a message from a
 * daemon without the fields from 20 on, allocation failures; and the
 * strict parser of tests/support/prom_parse.c, which the daemon's
 * integration test also uses, against output it must accept and text it
 * must refuse. `promtool check metrics` is run too where it is installed
 * (Debian's prometheus package); the test says so and skips that part
 * otherwise. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "osseg_base.h"
#include "osseg_prometheus.h"
#include "prom_parse.h"
#include "test_support.h"

/* ------------------------------------------------------ a full message --- */

#define MAXB 8

/* A hand-made Stats with every field, in storage the test owns. */
struct msg {
  Osseg__Wire__Stats s;
  Osseg__Wire__Stats__Outcome oc[2], *ocp[2];
  Osseg__Wire__Stats__Bucket lat[2], *latp[2];
  Osseg__Wire__Stats__Histogram total, wait, inf[2];
  Osseg__Wire__Stats__Bucket tb[3], *tbp[3], wb[2], *wbp[2], ib[2][3], *ibp[2][3];
  Osseg__Wire__Stats__ModelOutcome mo[3], *mop[3];
  Osseg__Wire__Stats__ModelMetrics mm[2], *mmp[2];
  Osseg__Wire__Stats__QueueDepth qd[2], *qdp[2];
};

static void bucket(Osseg__Wire__Stats__Bucket *b, Osseg__Wire__Stats__Bucket **bp, double le,
                   uint64_t count) {
  osseg__wire__stats__bucket__init(b);
  b->le_ms = le;
  b->count = count;
  *bp = b;
}

static const char WEIRD[] = "we\"ird\\name\nx";

static void full_message(struct msg *m) {
  memset(m, 0, sizeof *m);
  Osseg__Wire__Stats *s = &m->s;
  osseg__wire__stats__init(s);
  const char *names[2] = {"ok", "BAD_REQUEST"};
  uint64_t counts[2] = {3, 1};
  for (int i = 0; i < 2; i++) {
    osseg__wire__stats__outcome__init(&m->oc[i]);
    m->oc[i].name = (char *)names[i];
    m->oc[i].count = counts[i];
    m->ocp[i] = &m->oc[i];
  }
  s->n_outcomes = 2;
  s->outcomes = m->ocp;
  /* Field 2 is not exported; it is set to show that. */
  bucket(&m->lat[0], &m->latp[0], 5, 1);
  bucket(&m->lat[1], &m->latp[1], INFINITY, 3);
  s->n_latency = 2;
  s->latency = m->latp;
  s->queue_depth = 2;
  s->connections = 1;
  s->connections_total = 7;
  s->bytes_in = 123456789012ull;
  s->bytes_out = 42;

  /* total: 5 ms, 2500 ms, +Inf; sum 1234.5 ms. */
  osseg__wire__stats__histogram__init(&m->total);
  bucket(&m->tb[0], &m->tbp[0], 5, 1);
  bucket(&m->tb[1], &m->tbp[1], 2500, 2);
  bucket(&m->tb[2], &m->tbp[2], INFINITY, 3);
  m->total.n_buckets = 3;
  m->total.buckets = m->tbp;
  m->total.sum_ms = 1234.5;
  m->total.count = 3;
  s->total = &m->total;
  /* queue_wait without an infinite bound: the formatter adds +Inf with
   * the count. */
  osseg__wire__stats__histogram__init(&m->wait);
  bucket(&m->wb[0], &m->wbp[0], 5, 2);
  bucket(&m->wb[1], &m->wbp[1], 60000, 4);
  m->wait.n_buckets = 2;
  m->wait.buckets = m->wbp;
  m->wait.sum_ms = 0.1;
  m->wait.count = 5;
  s->queue_wait = &m->wait;

  const char *models[2] = {"a", WEIRD};
  for (int k = 0; k < 2; k++) {
    osseg__wire__stats__histogram__init(&m->inf[k]);
    bucket(&m->ib[k][0], &m->ibp[k][0], 10, (uint64_t)k);
    bucket(&m->ib[k][1], &m->ibp[k][1], 100, 2 + (uint64_t)k);
    bucket(&m->ib[k][2], &m->ibp[k][2], INFINITY, 2 + (uint64_t)k);
    m->inf[k].n_buckets = 3;
    m->inf[k].buckets = m->ibp[k];
    m->inf[k].sum_ms = k ? 60 : 33.25;
    m->inf[k].count = 2 + (uint64_t)k;
    osseg__wire__stats__model_metrics__init(&m->mm[k]);
    m->mm[k].model = (char *)models[k];
    m->mm[k].inference = &m->inf[k];
    m->mm[k].load_ms = k ? 1500 : 12.5;
    m->mm[k].warmup_ms = k ? 250 : 3;
    m->mm[k].reloads = (uint64_t)k;
    m->mmp[k] = &m->mm[k];
  }
  s->n_model_metrics = 2;
  s->model_metrics = m->mmp;
  const char *mo_model[3] = {"a", "a", WEIRD};
  const char *mo_outcome[3] = {"ok", "BAD_REQUEST", "ok"};
  for (int i = 0; i < 3; i++) {
    osseg__wire__stats__model_outcome__init(&m->mo[i]);
    m->mo[i].model = (char *)mo_model[i];
    m->mo[i].outcome = (char *)mo_outcome[i];
    m->mo[i].count = (uint64_t)(i + 1);
    m->mop[i] = &m->mo[i];
  }
  s->n_model_requests = 3;
  s->model_requests = m->mop;
  const char *pri[2] = {"interactive", "batch"};
  for (int i = 0; i < 2; i++) {
    osseg__wire__stats__queue_depth__init(&m->qd[i]);
    m->qd[i].priority = (char *)pri[i];
    m->qd[i].depth = 2 - (uint32_t)i * 2;
    m->qdp[i] = &m->qd[i];
  }
  s->n_queue_depths = 2;
  s->queue_depths = m->qdp;
  s->has_in_flight = 1;
  s->in_flight = 3;
  s->has_refused_peers = 1;
  s->refused_peers = 2;
  s->has_audit_errors = 1;
  s->audit_errors = 1;
  s->has_start_time_s = 1;
  s->start_time_s = 1700000000.5;
  s->has_uptime_s = 1;
  s->uptime_s = 12.25;
}

static const char FULL[] =
    "# HELP osseg_requests_total Requests by outcome: every Segment once, and refused requests "
    "of other kinds.\n"
    "# TYPE osseg_requests_total counter\n"
    "osseg_requests_total{outcome=\"ok\"} 3\n"
    "osseg_requests_total{outcome=\"BAD_REQUEST\"} 1\n"
    "# HELP osseg_model_requests_total Segment requests by model and outcome; an ensemble "
    "counts once for each of its models.\n"
    "# TYPE osseg_model_requests_total counter\n"
    "osseg_model_requests_total{model=\"a\",outcome=\"ok\"} 1\n"
    "osseg_model_requests_total{model=\"a\",outcome=\"BAD_REQUEST\"} 2\n"
    "osseg_model_requests_total{model=\"we\\\"ird\\\\name\\nx\",outcome=\"ok\"} 3\n"
    "# HELP osseg_request_duration_seconds Time from receipt to the last response of Segments "
    "that ended with Done.\n"
    "# TYPE osseg_request_duration_seconds histogram\n"
    "osseg_request_duration_seconds_bucket{le=\"0.005\"} 1\n"
    "osseg_request_duration_seconds_bucket{le=\"2.5\"} 2\n"
    "osseg_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"
    "osseg_request_duration_seconds_sum 1.2345\n"
    "osseg_request_duration_seconds_count 3\n"
    "# HELP osseg_queue_wait_seconds Time Segments waited in the queue before a worker took "
    "them.\n"
    "# TYPE osseg_queue_wait_seconds histogram\n"
    "osseg_queue_wait_seconds_bucket{le=\"0.005\"} 2\n"
    "osseg_queue_wait_seconds_bucket{le=\"60\"} 4\n"
    "osseg_queue_wait_seconds_bucket{le=\"+Inf\"} 5\n"
    "osseg_queue_wait_seconds_sum 0.0001\n"
    "osseg_queue_wait_seconds_count 5\n"
    "# HELP osseg_inference_duration_seconds Engine time of each model run in Segments that "
    "ended with Done.\n"
    "# TYPE osseg_inference_duration_seconds histogram\n"
    "osseg_inference_duration_seconds_bucket{model=\"a\",le=\"0.01\"} 0\n"
    "osseg_inference_duration_seconds_bucket{model=\"a\",le=\"0.1\"} 2\n"
    "osseg_inference_duration_seconds_bucket{model=\"a\",le=\"+Inf\"} 2\n"
    "osseg_inference_duration_seconds_sum{model=\"a\"} 0.03325\n"
    "osseg_inference_duration_seconds_count{model=\"a\"} 2\n"
    "osseg_inference_duration_seconds_bucket{model=\"we\\\"ird\\\\name\\nx\",le=\"0.01\"} 1\n"
    "osseg_inference_duration_seconds_bucket{model=\"we\\\"ird\\\\name\\nx\",le=\"0.1\"} 3\n"
    "osseg_inference_duration_seconds_bucket{model=\"we\\\"ird\\\\name\\nx\",le=\"+Inf\"} 3\n"
    "osseg_inference_duration_seconds_sum{model=\"we\\\"ird\\\\name\\nx\"} 0.06\n"
    "osseg_inference_duration_seconds_count{model=\"we\\\"ird\\\\name\\nx\"} 3\n"
    "# HELP osseg_queue_depth Segment requests waiting for a worker.\n"
    "# TYPE osseg_queue_depth gauge\n"
    "osseg_queue_depth{priority=\"interactive\"} 2\n"
    "osseg_queue_depth{priority=\"batch\"} 0\n"
    "# HELP osseg_requests_in_flight Segment requests accepted and not done.\n"
    "# TYPE osseg_requests_in_flight gauge\n"
    "osseg_requests_in_flight 3\n"
    "# HELP osseg_connections Open client connections.\n"
    "# TYPE osseg_connections gauge\n"
    "osseg_connections 1\n"
    "# HELP osseg_connections_total Client connections accepted since start.\n"
    "# TYPE osseg_connections_total counter\n"
    "osseg_connections_total 7\n"
    "# HELP osseg_refused_peers_total Connections refused because the peer is not allowed.\n"
    "# TYPE osseg_refused_peers_total counter\n"
    "osseg_refused_peers_total 2\n"
    "# HELP osseg_audit_errors_total Audit log lines that could not be written.\n"
    "# TYPE osseg_audit_errors_total counter\n"
    "osseg_audit_errors_total 1\n"
    "# HELP osseg_received_bytes_total Bytes read from clients.\n"
    "# TYPE osseg_received_bytes_total counter\n"
    "osseg_received_bytes_total 123456789012\n"
    "# HELP osseg_sent_bytes_total Bytes queued for writing to clients.\n"
    "# TYPE osseg_sent_bytes_total counter\n"
    "osseg_sent_bytes_total 42\n"
    "# HELP osseg_model_load_seconds Time the model's last load took (read, hash, compile).\n"
    "# TYPE osseg_model_load_seconds gauge\n"
    "osseg_model_load_seconds{model=\"a\"} 0.0125\n"
    "osseg_model_load_seconds{model=\"we\\\"ird\\\\name\\nx\"} 1.5\n"
    "# HELP osseg_model_warmup_seconds Time the model's warm-up inference took.\n"
    "# TYPE osseg_model_warmup_seconds gauge\n"
    "osseg_model_warmup_seconds{model=\"a\"} 0.003\n"
    "osseg_model_warmup_seconds{model=\"we\\\"ird\\\\name\\nx\"} 0.25\n"
    "# HELP osseg_model_reloads_total Reloads of the model since start.\n"
    "# TYPE osseg_model_reloads_total counter\n"
    "osseg_model_reloads_total{model=\"a\"} 0\n"
    "osseg_model_reloads_total{model=\"we\\\"ird\\\\name\\nx\"} 1\n"
    "# HELP osseg_start_time_seconds When the daemon started, in Unix time.\n"
    "# TYPE osseg_start_time_seconds gauge\n"
    "osseg_start_time_seconds 1700000000.5\n"
    "# HELP osseg_uptime_seconds Seconds since the daemon started.\n"
    "# TYPE osseg_uptime_seconds gauge\n"
    "osseg_uptime_seconds 12.25\n";

static void check_parses(const char *text, size_t len) {
  struct prom_doc doc;
  char err[512];
  int rc = prom_parse(text, len, &doc, err, sizeof err);
  if (rc != 0) fail_msg("the strict parser refuses the output: %s\n%s", err, text);
  prom_free(&doc);
}

/* promtool check metrics on the text, where promtool is installed. */
static int promtool_check(const char *text, size_t len, char **out) {
  const char *argv[] = {"/bin/sh", "-c", "command -v promtool", NULL};
  if (test_run(argv, NULL, NULL, 30) != 0) return -1;
  const char *file = test_path("%s/metrics.prom", test_tmpdir());
  assert_int_equal(test_write_file(file, text, len), 0);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' 2>&1", file);
  const char *argv2[] = {"/bin/sh", "-c", cmd, NULL};
  return test_run(argv2, out, NULL, 60);
}

static void test_full(void **state) {
  (void)state;
  struct msg m;
  full_message(&m);
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(osseg_prometheus_format(&m.s, &text, &len), 0);
  assert_int_equal(len, strlen(text));
  assert_string_equal(text, FULL);
  check_parses(text, len);

  /* The parser reads the values back: escaped labels, cumulative buckets. */
  struct prom_doc doc;
  char err[256];
  assert_int_equal(prom_parse(text, len, &doc, err, sizeof err), 0);
  double v;
  assert_int_equal(prom_value(&doc, "osseg_model_requests_total",
                              "model=\"we\\\"ird\\\\name\\nx\",outcome=\"ok\"", &v),
                   0);
  assert_true(v == 3);
  assert_int_equal(prom_value(&doc, "osseg_queue_wait_seconds_bucket", "le=\"+Inf\"", &v), 0);
  assert_true(v == 5);
  assert_int_equal(prom_value(&doc, "osseg_received_bytes_total", "", &v), 0);
  assert_true(v == 123456789012.0);
  assert_int_equal(prom_value(&doc, "osseg_nothing", "", &v), -1);
  prom_free(&doc);

  char *out = NULL;
  int rc = promtool_check(text, len, &out);
  if (rc < 0) {
    print_message("promtool not installed (Debian's prometheus package): not run\n");
  } else if (rc != 0 || (out && out[0])) {
    fail_msg("promtool check metrics: exit %d:\n%s", rc, out ? out : "");
  }
  free(out);
  osseg__free(text);
}

/* A daemon without fields 20..: the families it can fill, queue depth
 * without the priority label, nothing invented. */
static void test_old_daemon(void **state) {
  (void)state;
  Osseg__Wire__Stats s = OSSEG__WIRE__STATS__INIT;
  Osseg__Wire__Stats__Outcome oc = OSSEG__WIRE__STATS__OUTCOME__INIT, *ocp = &oc;
  oc.name = "ok";
  oc.count = 7;
  s.n_outcomes = 1;
  s.outcomes = &ocp;
  s.queue_depth = 4;
  s.connections = 2;
  s.connections_total = 9;
  s.bytes_in = 10;
  s.bytes_out = 20;
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(osseg_prometheus_format(&s, &text, &len), 0);
  assert_string_equal(text,
                      "# HELP osseg_requests_total Requests by outcome: every Segment once, and "
                      "refused requests of other kinds.\n"
                      "# TYPE osseg_requests_total counter\n"
                      "osseg_requests_total{outcome=\"ok\"} 7\n"
                      "# HELP osseg_queue_depth Segment requests waiting for a worker.\n"
                      "# TYPE osseg_queue_depth gauge\n"
                      "osseg_queue_depth 4\n"
                      "# HELP osseg_connections Open client connections.\n"
                      "# TYPE osseg_connections gauge\n"
                      "osseg_connections 2\n"
                      "# HELP osseg_connections_total Client connections accepted since start.\n"
                      "# TYPE osseg_connections_total counter\n"
                      "osseg_connections_total 9\n"
                      "# HELP osseg_received_bytes_total Bytes read from clients.\n"
                      "# TYPE osseg_received_bytes_total counter\n"
                      "osseg_received_bytes_total 10\n"
                      "# HELP osseg_sent_bytes_total Bytes queued for writing to clients.\n"
                      "# TYPE osseg_sent_bytes_total counter\n"
                      "osseg_sent_bytes_total 20\n");
  check_parses(text, len);
  osseg__free(text);
}

/* Numbers: the shortest form that reads back exactly; NaN and infinities
 * as the format spells them. */
static void test_numbers(void **state) {
  (void)state;
  Osseg__Wire__Stats s = OSSEG__WIRE__STATS__INIT;
  s.has_uptime_s = 1;
  struct {
    double v;
    const char *want;
  } cases[] = {{0, "0"},
               {0.1, "0.1"},
               {1.0 / 3, "0.3333333333333333"},
               {1e300, "1e+300"},
               {0.1 + 0.2, "0.30000000000000004"},
               {123456789.125, "123456789.125"},
               {-2.5, "-2.5"},
               {NAN, "NaN"},
               {INFINITY, "+Inf"},
               {-INFINITY, "-Inf"}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    s.uptime_s = cases[i].v;
    char *text = NULL;
    assert_int_equal(osseg_prometheus_format(&s, &text, NULL), 0);
    char want[200];
    snprintf(want, sizeof want, "\nosseg_uptime_seconds %s\n", cases[i].want);
    if (!strstr(text, want)) fail_msg("%.17g: no '%s' in\n%s", cases[i].v, want, text);
    check_parses(text, strlen(text));
    osseg__free(text);
  }
}

/* Every allocation failure gives OSSEG_ENOMEM, no text and no leak (the
 * sanitizer build checks the leak). */
static void test_out_of_memory(void **state) {
  (void)state;
  struct msg m;
  full_message(&m);
  int succeeded = 0;
  for (uint64_t n = 1; n < 64 && !succeeded; n++) {
    osseg__alloc_fail_at(n);
    char *text = (char *)"untouched";
    size_t len = 99;
    int rc = osseg_prometheus_format(&m.s, &text, &len);
    osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_string_equal(text, FULL);
      osseg__free(text);
      succeeded = 1;
    } else {
      assert_int_equal(rc, OSSEG_ENOMEM);
      assert_null(text);
      assert_int_equal(len, 0);
    }
  }
  assert_true(succeeded);
}

/* The strict parser refuses what osseg must never write. */
static void refuse(const char *text, const char *why) {
  struct prom_doc doc;
  char err[512];
  int rc = prom_parse(text, strlen(text), &doc, err, sizeof err);
  prom_free(&doc);
  if (rc == 0) fail_msg("the parser accepted %s:\n%s", why, text);
  if (!err[0]) fail_msg("no message for %s", why);
}

#define H "# HELP x_total X.\n# TYPE x_total counter\n"
#define HH "# HELP h H.\n# TYPE h histogram\n"

static void test_parser_refuses(void **state) {
  (void)state;
  struct prom_doc doc;
  char err[256];
  const char *good = H "x_total{a=\"1\",b=\"q\\\"\\\\\\n\"} 2\n" HH
                       "h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";
  assert_int_equal(prom_parse(good, strlen(good), &doc, err, sizeof err), 0);
  assert_int_equal(doc.n, 5);
  assert_int_equal(doc.families, 2);
  prom_free(&doc);

  refuse(H "x_total 1", "a last line without a line feed");
  refuse(H "\nx_total 1\n", "an empty line");
  refuse("x_total 1\n", "a sample without HELP and TYPE");
  refuse("# HELP x_total X.\nx_total 1\n", "HELP without TYPE");
  refuse("# TYPE x_total counter\nx_total 1\n", "TYPE without HELP");
  refuse("# HELP x X.\n# TYPE x counter\nx 1\n", "a counter without _total");
  refuse("# HELP x X.\n# TYPE x summary\nx 1\n", "a summary");
  refuse(H "x_total 1\n" H, "a family twice");
  refuse(H "y_total 1\n", "a sample of another family");
  refuse(H "x_total 1\nx_total 2\n", "a sample twice");
  refuse(H "x_total 1 1700000000\n", "a timestamp");
  refuse(H "x_total  1\n", "two spaces");
  refuse(H "x_total inf\n", "inf spelled the C way");
  refuse(H "x_total{a=\"1\"\n", "an open label set");
  refuse(H "x_total{a=1} 1\n", "an unquoted label value");
  refuse(H "x_total{a=\"\\t\"} 1\n", "an escape other than \\\\, \\\" and \\n");
  refuse(H "x_total{a=\"1\",a=\"2\"} 1\n", "a label twice");
  refuse(H "x_total{__a=\"1\"} 1\n", "a reserved label name");
  refuse(H "x_total{1a=\"1\"} 1\n", "a label name starting with a digit");
  refuse("# HELP 1x_total X.\n# TYPE 1x_total counter\n1x_total 1\n", "a bad metric name");
  refuse("# comment\n" H "x_total 1\n", "a free comment");
  refuse(HH "h_bucket{le=\"0.5\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
         "decreasing bucket counts");
  refuse(HH "h_bucket{le=\"1\"} 1\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\n"
            "h_count 1\n",
         "decreasing le");
  refuse(HH "h_bucket{le=\"0.5\"} 1\nh_sum 0\nh_count 1\n", "no +Inf bucket");
  refuse(HH "h_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 3\n", "_count differing from +Inf");
  refuse(HH "h_bucket{le=\"+Inf\"} 2\nh_count 2\n", "no _sum");
  refuse(HH "h_bucket{le=\"+Inf\"} 2\nh_sum 1\n", "no _count");
  refuse(HH "h_bucket 2\nh_sum 1\nh_count 2\n", "a bucket without le");
  refuse(HH "h_bucket{le=\"x\"} 2\nh_sum 1\nh_count 2\n", "a le that is not a number");
  refuse(HH "h 2\n", "a plain sample in a histogram");
  refuse(HH "h_bucket{le=\"+Inf\",m=\"a\"} 1\nh_sum{m=\"a\"} 1\nh_count{m=\"a\"} 1\n"
            "h_bucket{le=\"+Inf\",m=\"b\"} 1\nh_sum{m=\"b\"} 1\n",
         "one series of two without _count");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full),           cmocka_unit_test(test_old_daemon),
      cmocka_unit_test(test_numbers),        cmocka_unit_test(test_out_of_memory),
      cmocka_unit_test(test_parser_refuses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
