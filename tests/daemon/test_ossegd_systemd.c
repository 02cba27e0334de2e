/* ossegd under systemd, without systemd as PID 1: socket activation through
 * systemd-socket-activate, Type=notify against a NOTIFY_SOCKET datagram
 * socket this test listens on (READY=1 after warm-up, STATUS=, STOPPING=1,
 * RELOADING=1 then READY=1, WATCHDOG=1), the units checked by
 * systemd-analyze (verify, and the security exposure), SIGHUP reloads under
 * load (a swapped model file, a broken one, a removed model) and SIGTERM
 * drains (finished within the grace period, or cancelled after it). See
 * daemon_harness.h. */
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

/* A systemd tool (a string of its own), or NULL when it is not
 * installed. */
static const char *systemd_tool(const char *name) {
  static const char *const dirs[] = {"/usr/bin", "/bin", "/usr/local/bin"};
  static char found[4][256];
  static int next;
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
    char *p = found[next & 3];
    snprintf(p, sizeof found[0], "%s/%s", dirs[i], name);
    if (access(p, X_OK) == 0) {
      next++;
      return p;
    }
  }
  return NULL;
}

/* ---------------------------------------------------------- notify --- */

/* The service manager's end of NOTIFY_SOCKET: a datagram socket. Messages
 * other than WATCHDOG=1 are kept in order in `seen` ('|' between them);
 * pings are counted. */
struct notifier {
  int fd;
  char path[108]; /* sun_path */
  char seen[16384];
  unsigned pings;
};

static void notifier_open(struct notifier *n, const char *dir) {
  memset(n, 0, sizeof *n);
  assert_true(strlen(dir) + strlen("/notify") < sizeof n->path);
  snprintf(n->path, sizeof n->path, "%s/notify", dir);
  unlink(n->path);
  n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(n->fd >= 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, n->path, sizeof a.sun_path);
  assert_int_equal(bind(n->fd, (struct sockaddr *)&a, sizeof a), 0);
}

static void notifier_close(struct notifier *n) {
  close(n->fd);
  unlink(n->path);
}

/* The next message (NUL-terminated in buf), or -1 after timeout_ms. */
static int notify_recv(struct notifier *n, char *buf, size_t size, int timeout_ms) {
  struct pollfd p = {.fd = n->fd, .events = POLLIN};
  if (poll(&p, 1, timeout_ms) <= 0) return -1;
  ssize_t len = recv(n->fd, buf, size - 1, 0);
  if (len < 0) return -1;
  buf[len] = '\0';
  if (strcmp(buf, "WATCHDOG=1") == 0) {
    n->pings++;
  } else {
    size_t used = strlen(n->seen);
    snprintf(n->seen + used, sizeof n->seen - used, "%s%s", used ? "|" : "", buf);
  }
  return (int)len;
}

/* Reads messages until one contains want; returns the time it came (now_s)
 * and copies it into got (when not NULL). Fails after timeout_s. */
static double notify_wait(struct notifier *n, const char *want, double timeout_s, char *got,
                          size_t got_size) {
  char buf[4096];
  double t0 = now_s();
  while (now_s() - t0 < timeout_s) {
    if (notify_recv(n, buf, sizeof buf, 100) < 0) continue;
    if (strstr(buf, want)) {
      if (got) snprintf(got, got_size, "%s", buf);
      return now_s();
    }
  }
  fail_msg("no notification containing '%s' in %.0f s; seen: %s", want, timeout_s, n->seen);
  return 0;
}

/* Whether a came before b in what the notifier saw (both present). */
static int seen_before(const struct notifier *n, const char *a, const char *b) {
  const char *pa = strstr(n->seen, a), *pb = strstr(n->seen, b);
  return pa && pb && pa < pb;
}

/* ---------------------------------------------------------- helpers --- */

static const char *ossegd_bin(void) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/bin/ossegd", test_binary_dir());
  return path;
}

static void copy_file(const char *from, const char *to) {
  size_t n = 0;
  char *data = test_read_file(from, &n);
  assert_non_null(data);
  /* Written beside and renamed: a reload never reads half a file. */
  const char *tmp = test_path("%s.tmp", to);
  assert_int_equal(test_write_file(tmp, data, n), 0);
  assert_int_equal(rename(tmp, to), 0);
  free(data);
}

/* Stats.in_flight of a running daemon. */
static uint32_t in_flight(const struct daemon *d) {
  Osseg__Wire__Response *r = stats(d);
  uint32_t n = r->stats->in_flight;
  osseg__wire__response__free_unpacked(r, NULL);
  return n;
}

static void wait_in_flight(const struct daemon *d, uint32_t n) {
  double t0 = now_s();
  while (in_flight(d) < n) {
    assert_true(now_s() - t0 < 30);
    usleep(5000);
  }
}

/* ListModels: the sha256 and generation of model name (sha NULL if absent). */
static int model_info(const struct daemon *d, const char *name, char sha[65], uint64_t *gen) {
  Osseg__Wire__Response *resp =
      ask_fresh(d, OSSEG__WIRE__REQUEST__KIND_LIST_MODELS, OSSEG__WIRE__RESPONSE__KIND_MODELS);
  int found = 0;
  for (size_t i = 0; i < resp->models->n_models; i++) {
    Osseg__Wire__ModelInfo *m = resp->models->models[i];
    if (strcmp(m->name, name) != 0) continue;
    found = 1;
    if (sha) snprintf(sha, 65, "%s", m->sha256);
    if (gen) *gen = m->generation;
  }
  osseg__wire__response__free_unpacked(resp, NULL);
  return found;
}

static const char *ref_sha(const char *name) {
  struct osseg_loaded_model *m = NULL;
  assert_int_equal(osseg_registry_get(ref_reg, name, &m), 0);
  static char sha[65];
  snprintf(sha, sizeof sha, "%s", osseg_loaded_model_sha256(m));
  osseg_loaded_model_unref(m);
  return sha;
}

/* Whether a result ended with Done and the masks of ref. */
static int same_as(const struct result *x, const struct ref *ref) {
  if (x->error || !x->done || !x->in_order || (size_t)x->nmasks != ref->n) return 0;
  for (size_t c = 0; c < ref->n; c++)
    if (!x->rle[c] || strcmp(x->rle[c], ref->rle[c]) != 0) return 0;
  return 1;
}

/* Sends n Segments of png with model, ids first.., pipelined. */
static int batch_priority; /* send_batch's requests are PRIORITY_BATCH */

static void send_batch_model(int fd, const uint8_t *png, size_t size, uint64_t first, size_t n,
                             struct result *res, const char *model) {
  uint8_t *buf = NULL;
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    struct seg_req q;
    seg_init(&q, first + i, png, size, model);
    if (batch_priority) {
      q.s.has_priority = 1;
      q.s.priority = OSSEG__WIRE__PRIORITY__PRIORITY_BATCH;
    }
    frame_append(&buf, &len, &q.r);
    memset(&res[i], 0, sizeof res[i]);
    res[i].id = first + i;
  }
  assert_int_equal(write_all(fd, buf, len), 0);
  free(buf);
}

static void send_batch(int fd, const uint8_t *png, size_t size, uint64_t first, size_t n,
                       struct result *res) {
  send_batch_model(fd, png, size, first, n, res, "a");
}

/* ----------------------------------------------------------- units --- */

static void test_units(void **state) {
  (void)state;
  const char *analyze = systemd_tool("systemd-analyze");
  if (!analyze) {
    fprintf(stderr, "systemd-analyze is not installed: skipped\n");
    skip();
  }
  /* The service as configure_file made it, ExecStart pointing at the
   * build tree's ossegd (verify wants an executable there). */
  const char *dir = test_tmpdir();
  char *svc = test_read_file(test_path("%s/systemd/ossegd.service", test_binary_dir()), NULL);
  assert_non_null(svc);
  char *exec = strstr(svc, "\nExecStart=");
  assert_non_null(exec);
  char *bin = exec + strlen("\nExecStart=");
  char *space = strchr(bin, ' ');
  assert_non_null(space);
  assert_true(bin[0] == '/' && strstr(bin, "/ossegd ") == space - strlen("/ossegd"));
  char *copy = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&copy, &n);
  fprintf(f, "%.*s%s%s", (int)(bin - svc), svc, ossegd_bin(), space);
  fclose(f);
  const char *svc_path = test_path("%s/ossegd.service", dir);
  assert_int_equal(test_write_file(svc_path, copy, strlen(copy)), 0);
  char *sock = test_read_file(test_path("%s/systemd/ossegd.socket", test_source_dir()), &n);
  assert_non_null(sock);
  const char *sock_path = test_path("%s/ossegd.socket", dir);
  assert_int_equal(test_write_file(sock_path, sock, n), 0);
  free(svc);
  free(copy);
  free(sock);

  const char *verify[] = {analyze, "verify", svc_path, sock_path, NULL};
  char *out = NULL, *err = NULL;
  int rc = test_run(verify, &out, &err, 60);
  if (rc != 0) fprintf(stderr, "systemd-analyze verify: %s%s\n", out, err);
  assert_int_equal(rc, 0);
  /* Clean: nothing said about our units. */
  assert_null(strstr(err, "ossegd."));
  free(out);
  free(err);

  const char *security[] = {analyze, "security", "--offline=true", svc_path, NULL};
  rc = test_run(security, &out, &err, 60);
  const char *p = strstr(out, "Overall exposure level for ossegd.service: ");
  if (!p) fprintf(stderr, "systemd-analyze security: %s%s\n", out, err);
  assert_non_null(p);
  double exposure = strtod(p + strlen("Overall exposure level for ossegd.service: "), NULL);
  fprintf(stderr, "systemd-analyze security --offline=true ossegd.service: exposure %.1f\n",
          exposure);
  assert_true(exposure >= 0 && exposure <= 2.0);
  free(out);
  free(err);
}

/* ------------------------------------------------------ activation --- */

static void test_socket_activation(void **state) {
  (void)state;
  const char *activate = systemd_tool("systemd-socket-activate");
  if (!activate) {
    fprintf(stderr, "systemd-socket-activate is not installed: skipped\n");
    skip();
  }
  const char *dir = test_tmpdir();
  struct notifier n;
  notifier_open(&n, dir);
  char sock[300], ma[512], mb[512], env_notify[400];
  snprintf(sock, sizeof sock, "%s/act.sock", dir);
  snprintf(ma, sizeof ma, "a=%s", model_file("unetpp_r18_tiny_op13"));
  snprintf(mb, sizeof mb, "b=%s", model_file("unet_effb0_tiny_op13"));
  snprintf(env_notify, sizeof env_notify, "NOTIFY_SOCKET=%s", n.path);
  const char *env[] = {env_notify, NULL};
  /* systemd-socket-activate listens and execs ossegd (same pid) at the
   * first connection, passing the socket as descriptor 3. */
  const char *argv[] = {activate, "-l", sock, "-E", "NOTIFY_SOCKET", ossegd_bin(), "--socket",
                        sock, "--model", ma, "--model", mb, "--threads", "1", NULL};
  struct daemon d;
  assert_int_equal(daemon_start_argv(&d, dir, sock, env, argv, 0), 0);
  int fd = -1;
  double t0 = now_s();
  while ((fd = try_connect(sock)) < 0) {
    assert_true(now_s() - t0 < 30);
    usleep(5000);
  }
  /* Connected before ossegd even started: the request waits in the
   * backlog while the models load. */
  size_t size;
  const uint8_t *png = test_png(&size);
  struct seg_req q;
  seg_init(&q, 5, png, size, "a");
  assert_int_equal(send_request(fd, &q.r), 0);
  notify_wait(&n, "READY=1", 60, NULL, 0);
  assert_true(seen_before(&n, "STATUS=loading model a (1 of 2)", "READY=1"));
  assert_true(seen_before(&n, "STATUS=loading model b (2 of 2)", "READY=1"));
  struct result x = {.id = 5};
  assert_int_equal(collect(fd, &x, 1), 0);
  struct ref ra;
  const char *models[] = {"a"};
  reference(&ra, png, size, models, 1, 0, NULL);
  compare(&x, &ra);
  result_free(&x);
  close(fd);
  assert_still_serving(&d);
  char *log = test_read_file(d.log, NULL);
  assert_non_null(strstr(log, "socket activation: serving descriptor 3"));
  free(log);
  assert_int_equal(daemon_stop(&d, 30), 0);
  notify_wait(&n, "STOPPING=1", 5, NULL, 0);
  ref_free(&ra);
  notifier_close(&n);
}

/* LISTEN_FDS with a descriptor that is not a listening AF_UNIX stream
 * socket: ossegd says so and exits 1. */
static void bad_listen_fd(const char *dir, int kind, const char *want) {
  const char *log_path = test_path("%s/bad_fd.log", dir);
  char ma[512];
  snprintf(ma, sizeof ma, "a=%s", model_file("unetpp_r18_tiny_op13"));
  const char *sock = test_path("%s/unused.sock", dir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int log = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(log, 1);
    dup2(log, 2);
    int fd = kind == 0 ? open(log_path, O_RDONLY) : socket(AF_UNIX, kind, 0);
    if (fd < 0 || dup2(fd, 3) != 3) _exit(126);
    char pid_s[32];
    snprintf(pid_s, sizeof pid_s, "%d", (int)getpid());
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_PID", pid_s, 1);
    execl(ossegd_bin(), ossegd_bin(), "--socket", sock, "--model", ma, "--threads", "1",
          (char *)NULL);
    _exit(127);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 1);
  char *log = test_read_file(log_path, NULL);
  assert_non_null(log);
  if (!strstr(log, want)) fprintf(stderr, "log: %s\n", log);
  assert_non_null(strstr(log, want));
  /* Refused before loading anything. */
  assert_null(strstr(log, "loading model"));
  free(log);
}

static void test_bad_listen_fd(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  bad_listen_fd(dir, 0, "socket activation: descriptor 3 is not a socket");
  bad_listen_fd(dir, SOCK_DGRAM, "socket activation: descriptor 3 is not a stream socket");
  bad_listen_fd(dir, SOCK_STREAM, "socket activation: descriptor 3 is not listening");
}

/* ---------------------------------------------------------- notify --- */

/* ossegd with the two standard models and NOTIFY_SOCKET, with watchdog
 * also WATCHDOG_USEC (200 ms) and WATCHDOG_PID (its own pid); extra
 * arguments after. sd_notify() blocks while the notify socket's queue is
 * full, as it would with a stuck service manager; so only tests that read
 * the socket all along turn the watchdog's pings on. */
static void start_notified_wd(struct daemon *d, const char *dir, struct notifier *n,
                              const char *const *extra, int watchdog) {
  notifier_open(n, dir);
  static char sock[300], ma[512], mb[512], env_notify[400];
  snprintf(sock, sizeof sock, "%s/ossegd.sock", dir);
  snprintf(ma, sizeof ma, "a=%s", model_file("unetpp_r18_tiny_op13"));
  snprintf(mb, sizeof mb, "b=%s", model_file("unet_effb0_tiny_op13"));
  snprintf(env_notify, sizeof env_notify, "NOTIFY_SOCKET=%s", n->path);
  const char *env[] = {env_notify, watchdog ? "WATCHDOG_USEC=200000" : NULL,
                       "WATCHDOG_PID=@pid", NULL};
  const char *argv[32] = {ossegd_bin(), "--socket", sock, "--threads", "1"};
  int k = 5;
  int models = 0;
  for (size_t i = 0; extra && extra[i]; i++) {
    if (strcmp(extra[i], "--model") == 0 || strcmp(extra[i], "--config") == 0) models = 1;
    argv[k++] = extra[i];
  }
  if (!models) {
    argv[k++] = "--model";
    argv[k++] = ma;
    argv[k++] = "--model";
    argv[k++] = mb;
  }
  argv[k] = NULL;
  assert_int_equal(daemon_start_argv(d, dir, sock, env, argv, 0), 0);
  notify_wait(n, "READY=1", 60, NULL, 0);
}

static void start_notified(struct daemon *d, const char *dir, struct notifier *n,
                           const char *const *extra) {
  start_notified_wd(d, dir, n, extra, 0);
}

static void test_notify(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  struct notifier n;
  struct daemon d;
  start_notified_wd(&d, dir, &n, NULL, 1);
  /* READY=1 only after both models loaded (and warmed up: the status of
   * the second comes before), with the socket already serving. */
  assert_true(seen_before(&n, "STATUS=loading model a (1 of 2)",
                          "STATUS=loading model b (2 of 2)"));
  assert_true(seen_before(&n, "STATUS=loading model b (2 of 2)", "READY=1"));
  assert_non_null(strstr(n.seen, "READY=1\nSTATUS=ready: 2 model(s), 2 worker(s)"));
  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  close(fd);
  assert_still_serving(&d);

  /* The watchdog: WATCHDOG_USEC 200 ms, a ping every 100 ms while idle... */
  char buf[4096];
  unsigned before = n.pings;
  double t0 = now_s();
  while (now_s() - t0 < 1.0) notify_recv(&n, buf, sizeof buf, 50);
  assert_true(n.pings - before >= 6);
  /* ...and while the workers run long requests. */
  fd = try_connect(d.sock);
  assert_true(fd >= 0);
  size_t size;
  const uint8_t *png = busy_png(&size);
  struct result res[4];
  send_batch(fd, png, size, 10, 4, res);
  wait_in_flight(&d, 1);
  before = n.pings;
  t0 = now_s();
  while (now_s() - t0 < 1.0) notify_recv(&n, buf, sizeof buf, 50);
  assert_true(n.pings - before >= 6);
  assert_int_equal(collect(fd, res, 4), 0);
  for (int i = 0; i < 4; i++) {
    assert_true(res[i].done);
    result_free(&res[i]);
  }
  close(fd);

  /* SIGHUP: RELOADING=1, then READY=1. */
  kill(d.pid, SIGHUP);
  double t1 = notify_wait(&n, "RELOADING=1", 10, buf, sizeof buf);
  assert_non_null(strstr(buf, "MONOTONIC_USEC="));
  double t2 = notify_wait(&n, "READY=1", 30, buf, sizeof buf);
  assert_true(t2 >= t1);
  assert_non_null(strstr(buf, "STATUS=ready: 2 model(s); reloaded in"));
  assert_true(seen_before(&n, "RELOADING=1", "READY=1\nSTATUS=ready: 2 model(s); reloaded"));
  assert_still_serving(&d);

  /* SIGTERM: STOPPING=1, a drain status, exit 0. */
  kill(d.pid, SIGTERM);
  notify_wait(&n, "STOPPING=1", 10, buf, sizeof buf);
  assert_non_null(strstr(buf, "STATUS=draining 0 request(s)"));
  assert_int_equal(daemon_wait(&d), 0);
  notifier_close(&n);
}

/* ---------------------------------------------------------- reload --- */

static void test_reload_under_load(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char a_path[300], b_path[300], ma[400], mb[400];
  snprintf(a_path, sizeof a_path, "%s/a.onnx", dir);
  snprintf(b_path, sizeof b_path, "%s/b.onnx", dir);
  copy_file(model_file("unetpp_r18_tiny_op13"), a_path);
  copy_file(model_file("unet_effb0_tiny_op13"), b_path);
  snprintf(ma, sizeof ma, "a=%s", a_path);
  snprintf(mb, sizeof mb, "b=%s", b_path);
  const char *extra[] = {"--model", ma, "--model", mb, NULL};
  struct notifier n;
  struct daemon d;
  start_notified(&d, dir, &n, extra);
  char sha0[65];
  uint64_t gen0 = 0, gen_b0 = 0, gen_b1 = 0;
  assert_true(model_info(&d, "a", sha0, &gen0));
  assert_string_equal(sha0, ref_sha("a"));
  assert_true(model_info(&d, "b", NULL, &gen_b0));

  /* The new model: the demo UNet++, whose loading and warm-up take long
   * enough to serve requests meanwhile. */
  struct osseg_model_spec demo = {.name = "demo", .path = demo_model()};
  struct osseg_loaded_model *held = NULL;
  if (osseg_registry_get(ref_reg, "demo", &held) == 0)
    osseg_loaded_model_unref(held);
  else
    assert_int_equal(osseg_registry_load(ref_reg, &demo, NULL, NULL), 0);
  size_t small_size, busy_size;
  const uint8_t *small = test_png(&small_size), *busy = busy_png(&busy_size);
  struct ref old_small, new_small, old_busy;
  const char *ma_ref[] = {"a"}, *mb_ref[] = {"demo"};
  reference(&old_small, small, small_size, ma_ref, 1, 0, NULL);
  reference(&new_small, small, small_size, mb_ref, 1, 0, NULL);
  reference(&old_busy, busy, busy_size, ma_ref, 1, 0, NULL);

  /* Generation 1 in flight: long requests, all validated (in flight)
   * before the reload starts; batch priority, so that the interactive
   * ones below are served first. */
  int c1 = try_connect(d.sock);
  assert_true(c1 >= 0);
  enum { OLD = 24 };
  struct result old_res[OLD];
  batch_priority = 1;
  send_batch(c1, busy, busy_size, 100, OLD, old_res);
  batch_priority = 0;
  wait_in_flight(&d, OLD);

  /* The file of model a becomes another model's; SIGHUP. */
  copy_file(demo_model(), a_path);
  kill(d.pid, SIGHUP);
  double t_reloading = notify_wait(&n, "RELOADING=1", 10, NULL, 0);

  /* Requests keep being served during the reload, one at a time, each
   * answered by the old model or the new one, none failed. */
  int c2 = try_connect(d.sock);
  assert_true(c2 >= 0);
  char buf[4096];
  double t_ready = 0;
  unsigned during = 0, on_old = 0;
  char ready_msg[4096] = "";
  for (uint64_t id = 1000; !t_ready; id++) {
    struct seg_req q;
    seg_init(&q, id, small, small_size, "a");
    assert_int_equal(send_request(c2, &q.r), 0);
    struct result x = {.id = id};
    assert_int_equal(collect(c2, &x, 1), 0);
    int old = same_as(&x, &old_small), new = same_as(&x, &new_small);
    if (!old && !new) fprintf(stderr, "request %llu: error %d %s\n", (unsigned long long)id,
                              x.error, x.message);
    assert_true(old || new);
    result_free(&x);
    on_old += old;
    while (notify_recv(&n, buf, sizeof buf, 0) >= 0)
      if (strstr(buf, "READY=1")) {
        t_ready = now_s();
        snprintf(ready_msg, sizeof ready_msg, "%s", buf);
      }
    if (!t_ready) during++;
    assert_true(now_s() - t_reloading < 60);
  }
  assert_non_null(strstr(ready_msg, "reloaded in"));
  fprintf(stderr, "reload: %.0f ms (RELOADING=1 to READY=1), %u request(s) served during it "
                  "(%u by the old model), %d long ones in flight\n",
          (t_ready - t_reloading) * 1000, during, on_old, OLD);
  assert_true(on_old >= 1);

  /* Generation 2: new requests get the new model's answers. */
  int c3 = try_connect(d.sock);
  assert_true(c3 >= 0);
  struct result new_res[4];
  send_batch(c3, small, small_size, 200, 4, new_res);
  assert_int_equal(collect(c3, new_res, 4), 0);
  for (int i = 0; i < 4; i++) {
    compare(&new_res[i], &new_small);
    result_free(&new_res[i]);
  }
  /* The long requests finished on the model they started with. */
  assert_int_equal(collect(c1, old_res, OLD), 0);
  for (int i = 0; i < OLD; i++) {
    compare(&old_res[i], &old_busy);
    result_free(&old_res[i]);
  }
  close(c1);
  close(c2);
  close(c3);

  /* ListModels: a's hash is the new file's, its generation newer; b was
   * not touched (same file, same options). */
  char sha1[65];
  uint64_t gen1 = 0;
  assert_true(model_info(&d, "a", sha1, &gen1));
  assert_string_equal(sha1, ref_sha("demo"));
  assert_true(gen1 > gen0);
  assert_true(model_info(&d, "b", NULL, &gen_b1));
  assert_int_equal(gen_b1, gen_b0);
  /* Stats: a reloaded once, b never. */
  Osseg__Wire__Response *st = stats(&d);
  int seen_a = 0;
  for (size_t i = 0; i < st->stats->n_model_metrics; i++) {
    Osseg__Wire__Stats__ModelMetrics *m = st->stats->model_metrics[i];
    if (strcmp(m->model, "a") == 0) {
      seen_a = 1;
      assert_int_equal(m->reloads, 1);
      assert_true(m->load_ms > 0 && m->warmup_ms > 0);
    } else {
      assert_int_equal(m->reloads, 0);
    }
  }
  assert_true(seen_a);
  osseg__wire__response__free_unpacked(st, NULL);
  assert_int_equal(daemon_stop(&d, 30), 0);
  ref_free(&old_small);
  ref_free(&new_small);
  ref_free(&old_busy);
  notifier_close(&n);
}

/* With --config: a model whose new file is broken keeps the old one, a
 * model taken out of the file disappears, limits change. */
static void test_reload_config(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char a_path[300], b_path[300], conf[300], text[2048];
  snprintf(a_path, sizeof a_path, "%s/a.onnx", dir);
  snprintf(b_path, sizeof b_path, "%s/b.onnx", dir);
  snprintf(conf, sizeof conf, "%s/ossegd.conf", dir);
  copy_file(model_file("unetpp_r18_tiny_op13"), a_path);
  copy_file(model_file("unet_effb0_tiny_op13"), b_path);
  snprintf(text, sizeof text,
           "[socket]\npath = %s/ossegd.sock\n[audit]\nfile = none\n"
           "[model a]\npath = %s\n[model b]\npath = %s\n",
           dir, a_path, b_path);
  assert_int_equal(test_write_file(conf, text, strlen(text)), 0);
  const char *extra[] = {"--config", conf, NULL};
  struct notifier n;
  struct daemon d;
  start_notified(&d, dir, &n, extra);
  char sha0[65];
  assert_true(model_info(&d, "a", sha0, NULL));

  /* a's file is broken; b leaves the file; the frame limit shrinks. */
  const char junk[] = "not an ONNX model";
  const char *tmp = test_path("%s/a.tmp", dir);
  assert_int_equal(test_write_file(tmp, junk, sizeof junk), 0);
  assert_int_equal(rename(tmp, a_path), 0);
  snprintf(text, sizeof text,
           "[socket]\npath = %s/ossegd.sock\n[audit]\nfile = none\n"
           "[limits]\nmax_frame_bytes = 1 MiB\n[daemon]\nworkers = 3\n"
           "[model a]\npath = %s\n",
           dir, a_path);
  assert_int_equal(test_write_file(conf, text, strlen(text)), 0);
  kill(d.pid, SIGHUP);
  char buf[4096];
  notify_wait(&n, "RELOADING=1", 10, NULL, 0);
  notify_wait(&n, "READY=1", 30, buf, sizeof buf);
  assert_non_null(strstr(buf, "reload failed for a"));
  /* a: the old model, same hash, same answers; b: gone. */
  char sha1[65];
  assert_true(model_info(&d, "a", sha1, NULL));
  assert_string_equal(sha1, sha0);
  assert_false(model_info(&d, "b", NULL, NULL));
  assert_still_serving(&d);
  Osseg__Wire__Response *h = health(&d);
  assert_int_equal(h->health->models, 1);
  assert_int_equal(h->health->max_frame_bytes, 1u << 20);
  osseg__wire__response__free_unpacked(h, NULL);
  char *log = test_read_file(d.log, NULL);
  assert_non_null(strstr(log, "reload: model a: "));
  assert_non_null(strstr(log, "keeping the model served until now"));
  assert_non_null(strstr(log, "reload: model b removed"));
  assert_non_null(strstr(log, "reload: [daemon] workers changed; it takes a restart"));
  free(log);

  /* A file that does not parse changes nothing, and says so. */
  assert_int_equal(test_write_file(conf, "[nonsense]\n", 11), 0);
  kill(d.pid, SIGHUP);
  notify_wait(&n, "RELOADING=1", 10, NULL, 0);
  notify_wait(&n, "READY=1", 30, buf, sizeof buf);
  assert_non_null(strstr(buf, "reload failed"));
  assert_still_serving(&d);
  assert_int_equal(daemon_stop(&d, 30), 0);
  notifier_close(&n);
}

/* ----------------------------------------------------------- drain --- */

static void test_sigterm_under_load(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  struct notifier n;
  struct daemon d;
  start_notified(&d, dir, &n, NULL);
  size_t size;
  const uint8_t *png = busy_png(&size);
  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  enum { N = 24 };
  struct result res[N];
  send_batch(fd, png, size, 1, N, res);
  wait_in_flight(&d, N);
  double t0 = now_s();
  kill(d.pid, SIGTERM);
  char buf[4096];
  notify_wait(&n, "STOPPING=1", 10, buf, sizeof buf);
  assert_non_null(strstr(buf, "STATUS=draining "));
  /* New connections are refused while it drains. */
  assert_true(try_connect(d.sock) < 0);
  assert_int_equal(collect(fd, res, N), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(res[i].error, 0);
    assert_true(res[i].done);
    result_free(&res[i]);
  }
  assert_int_equal(daemon_wait(&d), 0);
  fprintf(stderr, "drain under load: %d requests (1536x1536) in flight finished, exit 0 "
                  "after %.0f ms\n",
          N, (now_s() - t0) * 1000);
  close(fd);
  notifier_close(&n);
}

static void test_drain_timeout(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  struct notifier n;
  struct daemon d;
  /* The demo model (256x256 UNet++) on one worker: each request takes a
   * while, so the grace period ends with one running and the rest queued. */
  char big[512];
  snprintf(big, sizeof big, "big=%s", demo_model());
  const char *extra[] = {"--drain-timeout-ms", "100", "--workers", "1", "--model", big, NULL};
  start_notified(&d, dir, &n, extra);
  size_t size;
  const uint8_t *png = busy_png(&size);
  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  enum { N = 24 };
  struct result res[N];
  send_batch_model(fd, png, size, 1, N, res, "big");
  wait_in_flight(&d, N);
  double t0 = now_s();
  kill(d.pid, SIGTERM);
  assert_int_equal(collect(fd, res, N), 0);
  int cancelled = 0, done = 0;
  for (int i = 0; i < N; i++) {
    assert_true(res[i].done || res[i].error == CODE(CANCELLED) + 1);
    cancelled += res[i].error == CODE(CANCELLED) + 1;
    done += res[i].done;
    result_free(&res[i]);
  }
  /* What did not finish within the grace period was cancelled (how many
   * finished depends on the machine and the build). */
  assert_true(cancelled >= 1);
  assert_int_equal(daemon_wait(&d), 0);
  double ms = (now_s() - t0) * 1000;
  fprintf(stderr, "drain timeout 100 ms: %d of %d finished, %d cancelled, exit 0 after %.0f ms\n",
          done, N, cancelled, ms);
  assert_true(ms < 5000);
  char *log = test_read_file(d.log, NULL);
  assert_non_null(strstr(log, "the grace period of 100 ms ended"));
  free(log);
  close(fd);
  notifier_close(&n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_units),
      cmocka_unit_test(test_socket_activation),
      cmocka_unit_test(test_bad_listen_fd),
      cmocka_unit_test(test_notify),
      cmocka_unit_test(test_reload_under_load),
      cmocka_unit_test(test_reload_config),
      cmocka_unit_test(test_sigterm_under_load),
      cmocka_unit_test(test_drain_timeout),
  };
  return harness_main(tests, harness_group_setup, harness_group_teardown);
}
