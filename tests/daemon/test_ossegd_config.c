/* Integration tests of ossegd's configuration file, access control and
 * audit log, through bin/ossegd: --check-config on good and bad files (the
 * example in systemd/ too), flags over the file, the socket's mode and
 * group, peers refused or let in by uid and group (children that become
 * nobody; skipped unless the tests run as root, as in CI), audit lines
 * (parsed by jansson) and their file reopened on SIGHUP. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <math.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "daemon_harness.h"
#include "test_support.h"

#define NOBODY 65534

static char dir[512];  /* this program's temporary folder */

/* Writes text (printf-style) to dir/name; returns the path (static). */
static const char *write_file(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *write_file(const char *name, const char *fmt, ...) {
  static char path[8][600];
  static int k;
  char *p = path[k++ % 8];
  char text[16384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  snprintf(p, 600, "%s/%s", dir, name);
  assert_int_equal(test_write_file(p, text, strlen(text)), 0);
  return p;
}

/* ------------------------------------------------------------ daemon --- */

/* Starts ossegd --config conf --threads 1 [args...] (NULL-terminated) and
 * waits until sock accepts a connection; fails the test if it exits. */
static void start_config(struct daemon *d, const char *conf, const char *sock, ...) {
  const char *argv[32];
  int n = 0;
  argv[n++] = test_path("%s/bin/ossegd", test_binary_dir());
  argv[n++] = "--config";
  argv[n++] = conf;
  argv[n++] = "--threads";
  argv[n++] = "1";
  va_list ap;
  va_start(ap, sock);
  argv_append_va(argv, n, 31, ap);
  va_end(ap);
  int rc = daemon_start_argv(d, dir, sock, NULL, argv, 1);
  if (rc != 0) {
    char *log = test_read_file(d->log, NULL);
    fail_msg("ossegd exited during start-up (status %d): %s", rc, log ? log : "");
  }
}

/* SIGTERM; the daemon must drain and exit 0 within 30 s. */
static void stop(struct daemon *d) { assert_int_equal(daemon_stop(d, 30), 0); }

/* ---------------------------------------------------------- protocol --- */

/* Sends a request without a body of its own (Health, ListModels, Stats)
 * and returns the answer; fails the test unless it is of that kind. */
static Osseg__Wire__Response *ask(int fd, Osseg__Wire__Request__KindCase kind, uint64_t id) {
  Osseg__Wire__Request r;
  simple_req(&r, id, kind);
  assert_int_equal(send_request(fd, &r), 0);
  Osseg__Wire__Response *a = recv_response(fd);
  assert_non_null(a);
  assert_int_equal(a->id, id);
  return a;
}

/* Reads the responses of request id to its end: -1 for Done, else the
 * Error code. */
static int segment_end(int fd, uint64_t id) {
  for (;;) {
    Osseg__Wire__Response *a = recv_response(fd);
    assert_non_null(a);
    assert_int_equal(a->id, id);
    int end = a->kind_case == OSSEG__WIRE__RESPONSE__KIND_DONE ? -1
              : a->kind_case == OSSEG__WIRE__RESPONSE__KIND_ERROR ? (int)a->error->code
                                                                   : -2;
    osseg__wire__response__free_unpacked(a, NULL);
    if (end != -2) return end;
  }
}

/* Appends the frame of a Segment of a side x side raw gray image through
 * `models` (comma-separated), deadline_ms 0 = none, to *buf. */
static void segment_frame(uint8_t **buf, size_t *len, uint64_t id, const char *models,
                          const char *image_name, uint32_t side, uint32_t deadline_ms) {
  static uint8_t pixels[1024 * 1024];
  assert_true(side <= 1024);
  for (size_t i = 0; i < (size_t)side * side; i++) pixels[i] = (uint8_t)(i * 7 + i / side);
  Osseg__Wire__RawImage raw = OSSEG__WIRE__RAW_IMAGE__INIT;
  raw.width = raw.height = side;
  raw.bit_depth = 8;
  raw.pixels.data = pixels;
  raw.pixels.len = (size_t)side * side;
  char names[256];
  snprintf(names, sizeof names, "%s", models);
  char *list[8];
  size_t n = 0;
  for (char *t = strtok(names, ","); t && n < 8; t = strtok(NULL, ",")) list[n++] = t;
  Osseg__Wire__Segment s;
  osseg__wire__segment__init(&s);
  s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_RAW;
  s.raw = &raw;
  s.n_models = n;
  s.models = list;
  s.image_name = (char *)image_name;
  s.has_deadline_ms = deadline_ms > 0;
  s.deadline_ms = deadline_ms;
  Osseg__Wire__Request r = OSSEG__WIRE__REQUEST__INIT;
  r.id = id;
  r.kind_case = OSSEG__WIRE__REQUEST__KIND_SEGMENT;
  r.segment = &s;
  frame_append(buf, len, &r);
}

static void segment_send(int fd, uint64_t id, const char *models, const char *image_name,
                         uint32_t side, uint32_t deadline_ms) {
  uint8_t *buf = NULL;
  size_t len = 0;
  segment_frame(&buf, &len, id, models, image_name, side, deadline_ms);
  assert_int_equal(write_all(fd, buf, len), 0);
  free(buf);
}

/* A Segment of a 64x64 image, read to its end: -1 for Done, else the
 * Error code. */
static int segment(int fd, uint64_t id, const char *models, const char *image_name) {
  segment_send(fd, id, models, image_name, 64, 0);
  return segment_end(fd, id);
}

/* --------------------------------------------------------------- JSON --- */

/* The lines of an audit file (at most 64), each parsed strictly by jansson
 * (the tree's JSON library): one object per line, valid UTF-8, no
 * duplicate keys, nothing after it. */
struct lines {
  char *text;
  char *line[64];  /* raw, without the newline */
  json_t *obj[64];
  size_t n;
};

static void read_lines(const char *path, struct lines *l) {
  memset(l, 0, sizeof *l);
  l->text = test_read_file(path, NULL);
  if (!l->text) fail_msg("%s: cannot read", path);
  for (char *s = l->text; *s && l->n < 64;) {
    char *nl = strchr(s, '\n');
    assert_non_null(nl); /* every line complete */
    *nl = '\0';
    json_error_t err;
    json_t *o = json_loads(s, JSON_REJECT_DUPLICATES, &err);
    if (!o || !json_is_object(o))
      fail_msg("%s: not a JSON object line (%s): %s", path, o ? "not an object" : err.text, s);
    l->line[l->n] = s;
    l->obj[l->n] = o;
    l->n++;
    s = nl + 1;
  }
}

static void lines_free(struct lines *l) {
  for (size_t i = 0; i < l->n; i++) json_decref(l->obj[i]);
  free(l->text);
}

/* A string member (NULL for JSON null); fails when absent or of another
 * type. */
static const char *str_of(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!v) fail_msg("no member '%s'", key);
  if (json_is_null(v)) return NULL;
  if (!json_is_string(v)) fail_msg("member '%s' is not a string", key);
  return json_string_value(v);
}

static long long int_of(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_integer(v)) fail_msg("member '%s' is absent or not an integer", key);
  return (long long)json_integer_value(v);
}

static double num_of(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_number(v)) fail_msg("member '%s' is absent or not a number", key);
  return json_number_value(v);
}

/* ------------------------------------------------------ check-config --- */

/* The example with its model paths pointing at the test fixtures. */
static char *example_copy(void) {
  char *ex = test_read_file(test_path("%s/systemd/ossegd.conf.example", test_source_dir()), NULL);
  assert_non_null(ex);
  size_t cap = strlen(ex) + 4096;
  char *out = malloc(cap);
  assert_non_null(out);
  out[0] = '\0';
  for (char *s = ex; *s;) {
    char *nl = strchr(s, '\n');
    size_t n = nl ? (size_t)(nl - s + 1) : strlen(s);
    if (strncmp(s, "path = /var/lib/osseg/models/", 29) == 0)
      snprintf(out + strlen(out), cap - strlen(out), "path = %s\n",
               model_file(strstr(s, "unetpp") == s + 29 ? "unetpp_r18_tiny_op13"
                                                         : "unet_effb0_tiny_op13"));
    else
      snprintf(out + strlen(out), cap - strlen(out), "%.*s", (int)n, s);
    s += n;
  }
  free(ex);
  return out;
}

static void test_check_config_example(void **state) {
  (void)state;
  char *copy = example_copy();
  const char *path = write_file("example.conf", "%s", copy);
  char *out = NULL, *err = NULL;
  int rc = ossegd_run(&out, &err, "--check-config", path, NULL);
  if (rc != 0) fail_msg("exit %d: %s", rc, err);
  assert_string_equal(err, "");
  assert_string_equal(out, test_path("%s: good: socket /run/osseg/ossegd.sock, 2 model(s)\n", path));
  free(out);
  free(err);

  /* Every key the parser knows is documented, with its default or as a
   * commented-out example. */
  static const char *const keys[] = {
      "path", "mode", "group", "users", "groups", "max_frame_bytes", "max_image_pixels",
      "max_image_side", "max_connections", "max_in_flight", "max_in_flight_total", "max_queue",
      "max_output_bytes", "request_timeout_ms", "threads", "workers", "workspace_bytes", "file",
      "include_image_name", "interval_ms", "precision", "size", "normalize", "classes",
      "threshold", "threshold.finger-1"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    char a[64], b[64];
    snprintf(a, sizeof a, "\n%s = ", keys[i]);
    snprintf(b, sizeof b, "\n;%s = ", keys[i]);
    if (!strstr(copy, a) && !strstr(copy, b)) fail_msg("the example lacks key %s", keys[i]);
  }
  assert_non_null(strstr(copy, "\n[metrics]\n"));
  assert_non_null(strstr(copy, "\n;file = /var/lib/prometheus/"));

  /* The commented-out examples are good values too (the names made ones
   * that exist here). */
  size_t cap = strlen(copy) + 4096;
  char *all = malloc(cap);
  assert_non_null(all);
  all[0] = '\0';
  for (char *s = copy; *s;) {
    char *nl = strchr(s, '\n');
    size_t n = nl ? (size_t)(nl - s + 1) : strlen(s);
    if (strncmp(s, ";group = ", 9) == 0) strcat(all, "group = root\n");
    else if (strncmp(s, ";users = ", 9) == 0) strcat(all, "users = root, 1001\n");
    else if (strncmp(s, ";groups = ", 10) == 0) strcat(all, "groups = root, 2001\n");
    else if (strncmp(s, ";file = /var/lib/prometheus/", 28) == 0)
      snprintf(all + strlen(all), cap - strlen(all), "file = %s/x.prom\n", dir);
    else if (s[0] == ';') strncat(all, s + 1, n - 1);
    else strncat(all, s, n);
    s += n;
  }
  path = write_file("example-all.conf", "%s", all);
  rc = ossegd_run(&out, &err, "--check-config", path, NULL);
  if (rc != 0) fail_msg("exit %d: %s", rc, err);
  free(out);
  free(err);
  free(all);
  free(copy);
}

/* Runs --check-config on text; expects exit 1 and exactly these stderr
 * lines (after "ossegd: PATH:"), nothing on stdout. */
static void expect_bad(const char *text, ...) {
  const char *path = write_file("bad.conf", "%s", text);
  char *out = NULL, *err = NULL;
  assert_int_equal(ossegd_run(&out, &err, "--check-config", path, NULL), 1);
  assert_string_equal(out, "");
  char want[4096] = "";
  va_list ap;
  va_start(ap, text);
  const char *m;
  while ((m = va_arg(ap, const char *)) != NULL)
    snprintf(want + strlen(want), sizeof want - strlen(want), "ossegd: %s:%s\n", path, m);
  va_end(ap);
  assert_string_equal(err, want);
  free(out);
  free(err);
}

static void test_check_config_errors(void **state) {
  (void)state;
  const char *a = model_file("unetpp_r18_tiny_op13");
  char text[4096];
  snprintf(text, sizeof text,
           "[socket]\npath = /tmp/x.sock\nmodes = 0660\n[limits]\nmax_queue = lots\n"
           "[model a]\npath = %s\n[model b]\npath = /no/such/b.onnx\n[limits]\n",
           a);
  expect_bad(text, "3: unknown key 'modes' in [socket] (keys: path, mode, group)",
             "5: [limits] max_queue: 'lots' is not a whole number of requests in 1..1000000",
             "9: [model b] path: /no/such/b.onnx: No such file or directory",
             "10: section [limits] again (first at line 4); give each section once", NULL);
  /* No model at all: a whole-file error. */
  expect_bad("[socket]\npath = /tmp/x.sock\n",
             " no model ([model NAME] sections, or --model)", NULL);
  /* A file that is not there. */
  char *out = NULL, *err = NULL;
  assert_int_equal(ossegd_run(&out, &err, "--check-config", "/no/such.conf", NULL), 1);
  assert_string_equal(err, "ossegd: /no/such.conf: No such file or directory\n");
  free(out);
  free(err);
  /* Bad usage stays exit 2. */
  assert_int_equal(ossegd_run(&out, &err, "--check-config", NULL), 2);
  free(out);
  free(err);
}

/* ------------------------------------------------------------- flags --- */

static void test_flags_override_file(void **state) {
  (void)state;
  const char *file_sock = test_path("%s/file.sock", dir);
  const char *flag_sock = test_path("%s/flag.sock", dir);
  char file_sock_s[600], flag_sock_s[600];
  snprintf(file_sock_s, sizeof file_sock_s, "%s", file_sock);
  snprintf(flag_sock_s, sizeof flag_sock_s, "%s", flag_sock);
  const char *conf = write_file("flags.conf",
                                "[socket]\npath = %s\n[limits]\nmax_frame_bytes = 1 MiB\n"
                                "max_image_pixels = 1000000\n[model a]\npath = %s\n",
                                file_sock_s, model_file("unetpp_r18_tiny_op13"));
  char ma[600], mb[600];
  snprintf(ma, sizeof ma, "a=%s", model_file("unet_effb0_tiny_op13"));
  snprintf(mb, sizeof mb, "b=%s", model_file("unet_effb0_tiny_op13"));
  struct daemon d;
  start_config(&d, conf, flag_sock_s, "--socket", flag_sock_s, "--max-frame-bytes", "2000000",
               "--model", ma, "--model", mb, NULL);
  struct stat st;
  assert_int_equal(stat(file_sock_s, &st), -1); /* the flag's socket only */
  int fd = try_connect(flag_sock_s);
  assert_true(fd >= 0);
  Osseg__Wire__Response *h = ask(fd, OSSEG__WIRE__REQUEST__KIND_HEALTH, 1);
  assert_int_equal(h->health->max_frame_bytes, 2000000); /* flag */
  assert_int_equal(h->health->max_image_pixels, 1000000); /* file */
  osseg__wire__response__free_unpacked(h, NULL);
  /* --model a replaced the file's a; b was added. */
  Osseg__Wire__Response *l = ask(fd, OSSEG__WIRE__REQUEST__KIND_LIST_MODELS, 2);
  assert_int_equal(l->models->n_models, 2);
  assert_string_equal(l->models->models[0]->name, "a");
  assert_string_equal(l->models->models[1]->name, "b");
  assert_string_equal(l->models->models[0]->sha256, l->models->models[1]->sha256);
  osseg__wire__response__free_unpacked(l, NULL);
  close(fd);
  stop(&d);
}

/* Limits only the file sets here: the total in-flight limit and the
 * default deadline. */
static void test_limits_from_file(void **state) {
  (void)state;
  char sock[600];
  snprintf(sock, sizeof sock, "%s/limits.sock", dir);
  char audit[600];
  snprintf(audit, sizeof audit, "%s/limits-audit.log", dir);
  unlink(audit);
  const char *conf = write_file("limits.conf",
                                "[socket]\npath = %s\n[limits]\nmax_in_flight_total = 1\n"
                                "request_timeout_ms = 1\nmax_connections = 1\n[audit]\n"
                                "file = %s\n[model a]\npath = %s\n",
                                sock, audit, model_file("unetpp_r18_tiny_op13"));
  struct daemon d;
  start_config(&d, conf, sock, NULL);
  /* The one connection allowed (once the start-up probe's is gone). */
  int fd = -1;
  double t0 = now_s();
  while (fd < 0 && now_s() - t0 < 30) {
    fd = try_connect(sock);
    Osseg__Wire__Request r;
    simple_req(&r, 99, OSSEG__WIRE__REQUEST__KIND_HEALTH);
    Osseg__Wire__Response *a = NULL;
    if (fd >= 0 && send_request(fd, &r) == 0) a = recv_response(fd);
    if (!a && fd >= 0) {
      close(fd);
      fd = -1;
      usleep(20000);
    }
    if (a) osseg__wire__response__free_unpacked(a, NULL);
  }
  assert_true(fd >= 0);
  /* A second one is accepted and closed at once, and audited. */
  int fd2 = try_connect(sock);
  assert_true(fd2 >= 0);
  assert_null(recv_response(fd2));
  close(fd2);
  /* Two Segments in one write: the second is read while the first is in
   * flight (the daemon reads on before a worker can finish the first:
   * a 512x512 image), which is past the total. */
  uint8_t *buf = NULL;
  size_t len = 0;
  segment_frame(&buf, &len, 1, "a", NULL, 512, 60000);
  segment_frame(&buf, &len, 2, "a", NULL, 64, 60000);
  assert_int_equal(write_all(fd, buf, len), 0);
  free(buf);
  /* The BUSY comes first (at once), then the first request's end. */
  assert_int_equal(segment_end(fd, 2), CODE(BUSY));
  assert_int_equal(segment_end(fd, 1), -1); /* its own deadline_ms overrides the 1 ms */
  /* Without deadline_ms the 1 ms request timeout applies: a 512x512 image
   * takes longer than that. */
  segment_send(fd, 3, "a", NULL, 512, 0);
  assert_int_equal(segment_end(fd, 3), CODE(DEADLINE_EXCEEDED));
  close(fd);
  stop(&d);
  struct lines l;
  read_lines(audit, &l);
  size_t refused = 0, busy = 0, expired = 0;
  for (size_t i = 0; i < l.n; i++) {
    json_t *o = l.obj[i];
    const char *code = str_of(o, "code");
    if (strcmp(str_of(o, "event"), "refused") == 0) {
      refused++;
      assert_string_equal(str_of(o, "reason"), "max_connections");
      assert_string_equal(code, "BUSY");
      assert_int_equal(int_of(o, "pid"), getpid());
    } else if (code && strcmp(code, "BUSY") == 0) {
      busy++;
      assert_int_equal(int_of(o, "id"), 2);
    } else if (code && strcmp(code, "DEADLINE_EXCEEDED") == 0) {
      expired++;
    }
  }
  /* fd2, and the first tries of fd while the probe's connection was still
   * open, if any. */
  assert_true(refused >= 1);
  assert_int_equal(busy, 1);
  assert_int_equal(expired, 1);
  assert_int_equal(l.n, refused + 3); /* and request 1's ok */
  lines_free(&l);
}

/* ------------------------------------------------------------ socket --- */

/* A group to give the socket: one the test user is in, other than its
 * primary group where possible (root may use any: nogroup). */
static gid_t test_group(char *name, size_t size) {
  gid_t g = getegid();
  struct group *gr = geteuid() == 0 ? getgrgid(NOBODY) : NULL;
  if (gr) g = gr->gr_gid;
  snprintf(name, size, "%u", (unsigned)g);
  return g;
}

static void test_socket_mode_and_group(void **state) {
  (void)state;
  char group[32];
  gid_t g = test_group(group, sizeof group);
  char sock[600];
  snprintf(sock, sizeof sock, "%s/mode.sock", dir);
  const char *conf = write_file("mode.conf", "[socket]\npath = %s\nmode = 0640\ngroup = %s\n"
                                "[model a]\npath = %s\n",
                                sock, group, model_file("unetpp_r18_tiny_op13"));
  struct daemon d;
  start_config(&d, conf, sock, NULL);
  struct stat st;
  assert_int_equal(stat(sock, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0640);
  assert_int_equal(st.st_gid, g);
  stop(&d);
  /* The default: 0660, the daemon's group. */
  conf = write_file("mode.conf", "[socket]\npath = %s\n[model a]\npath = %s\n", sock,
                    model_file("unetpp_r18_tiny_op13"));
  start_config(&d, conf, sock, NULL);
  assert_int_equal(stat(sock, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0660);
  assert_int_equal(st.st_gid, getegid());
  stop(&d);
}

/* ------------------------------------------------------------ access --- */

/* In a child that becomes uid/gid NOBODY with the given supplementary
 * groups: connects and asks for Health. Exit status 0: Health answered;
 * 10: one Error PERMISSION_DENIED with id 0, then EOF; others: failures. */
static int peer_as_nobody(const char *sock, const gid_t *groups, size_t ngroups) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (setgroups(ngroups, groups) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
        setresuid(NOBODY, NOBODY, NOBODY) != 0)
      _exit(2);
    int fd = try_connect(sock);
    if (fd < 0) _exit(3);
    Osseg__Wire__Request r;
    simple_req(&r, 7, OSSEG__WIRE__REQUEST__KIND_HEALTH);
    send_request(fd, &r); /* may fail once refused */
    Osseg__Wire__Response *a = recv_response_nofail(fd);
    if (!a) _exit(4);
    int status = 5;
    if (a->id == 7 && a->kind_case == OSSEG__WIRE__RESPONSE__KIND_HEALTH) status = 0;
    if (a->id == 0 && a->kind_case == OSSEG__WIRE__RESPONSE__KIND_ERROR &&
        a->error->code == CODE(PERMISSION_DENIED) && strstr(a->error->message, "65534") &&
        recv_response_nofail(fd) == NULL)
      status = 10;
    _exit(status);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

/* Starts a daemon whose [access] section is `access` (may be empty), with
 * a socket everyone may open, and an audit file. */
static void start_with_access(struct daemon *d, const char *access, char *sock, size_t size) {
  snprintf(sock, size, "%s/acl.sock", dir);
  const char *conf = write_file("acl.conf",
                                "[socket]\npath = %s\nmode = 0666\n%s\n[audit]\nfile = %s/audit.log\n"
                                "[model a]\npath = %s\n",
                                sock, access, dir, model_file("unetpp_r18_tiny_op13"));
  unlink(test_path("%s/audit.log", dir));
  start_config(d, conf, sock, NULL);
}

static void test_peer_access(void **state) {
  (void)state;
  if (geteuid() != 0) skip(); /* becoming another user needs root (CI runs as root) */
  /* nobody must reach the socket through the folder. */
  assert_int_equal(chmod(dir, 0755), 0);
  char sock[600];
  struct daemon d;
  const gid_t extra[] = {4242};

  /* Not listed: refused with one Error, logged, counted, audited. */
  start_with_access(&d, "[access]\nusers = 12345\ngroups = 4243", sock, sizeof sock);
  assert_int_equal(peer_as_nobody(sock, NULL, 0), 10);
  assert_int_equal(peer_as_nobody(sock, extra, 1), 10);
  int fd = try_connect(sock); /* root always */
  assert_true(fd >= 0);
  Osseg__Wire__Response *st = ask(fd, OSSEG__WIRE__REQUEST__KIND_STATS, 1);
  assert_true(st->stats->has_refused_peers);
  assert_int_equal(st->stats->refused_peers, 2);
  /* Refused ones are no connections: the start-up probe and this one. */
  assert_int_equal(st->stats->connections_total, 2);
  osseg__wire__response__free_unpacked(st, NULL);
  close(fd);
  stop(&d);
  char *log = test_read_file(d.log, NULL);
  assert_non_null(strstr(log, "uid 65534 gid 65534 pid "));
  assert_non_null(strstr(log, "is not on the allow-list"));
  free(log);
  struct lines l;
  read_lines(test_path("%s/audit.log", dir), &l);
  assert_int_equal(l.n, 2);
  json_t *o = l.obj[0];
  assert_string_equal(str_of(o, "event"), "refused");
  assert_int_equal(int_of(o, "uid"), NOBODY);
  assert_int_equal(int_of(o, "gid"), NOBODY);
  assert_true(int_of(o, "pid") > 0);
  assert_string_equal(str_of(o, "outcome"), "error");
  assert_string_equal(str_of(o, "code"), "PERMISSION_DENIED");
  assert_string_equal(str_of(o, "reason"), "access");
  lines_free(&l);

  /* Allowed by uid, by name or number. */
  start_with_access(&d, "[access]\nusers = root, nobody", sock, sizeof sock);
  assert_int_equal(peer_as_nobody(sock, NULL, 0), 0);
  stop(&d);
  start_with_access(&d, "[access]\nusers = 65534", sock, sizeof sock);
  assert_int_equal(peer_as_nobody(sock, NULL, 0), 0);
  stop(&d);
  /* Allowed by group: its gid, or a supplementary group (SO_PEERGROUPS). */
  start_with_access(&d, "[access]\ngroups = nogroup", sock, sizeof sock);
  assert_int_equal(peer_as_nobody(sock, NULL, 0), 0);
  stop(&d);
  start_with_access(&d, "[access]\nusers = 1\ngroups = 4242", sock, sizeof sock);
  assert_int_equal(peer_as_nobody(sock, extra, 1), 0);
  assert_int_equal(peer_as_nobody(sock, NULL, 0), 10);
  stop(&d);
  /* No list: the socket's mode decides. */
  start_with_access(&d, "", sock, sizeof sock);
  assert_int_equal(peer_as_nobody(sock, NULL, 0), 0);
  stop(&d);
  assert_int_equal(chmod(dir, 0700), 0);
}

/* ------------------------------------------------------------- audit --- */

static void test_audit_lines(void **state) {
  (void)state;
  char sock[600];
  snprintf(sock, sizeof sock, "%s/audit.sock", dir);
  const char *audit = test_path("%s/audit-lines.log", dir);
  char audit_s[600];
  snprintf(audit_s, sizeof audit_s, "%s", audit);
  unlink(audit_s);
  const char *conf = write_file("audit.conf",
                                "[socket]\npath = %s\n[audit]\nfile = %s\n[model a]\npath = %s\n"
                                "[model b]\npath = %s\n",
                                sock, audit_s, model_file("unetpp_r18_tiny_op13"),
                                model_file("unet_effb0_tiny_op13"));
  struct daemon d;
  start_config(&d, conf, sock, NULL);
  struct stat st;
  assert_int_equal(stat(audit_s, &st), 0);
  mode_t mask = umask(0);
  umask(mask);
  assert_int_equal(st.st_mode & 0777, 0640 & ~mask); /* created 0640, less the umask */
  int fd = try_connect(sock);
  assert_true(fd >= 0);
  Osseg__Wire__Response *lm = ask(fd, OSSEG__WIRE__REQUEST__KIND_LIST_MODELS, 1);
  char sha_a[80], sha_b[80];
  snprintf(sha_a, sizeof sha_a, "%s", lm->models->models[0]->sha256);
  snprintf(sha_b, sizeof sha_b, "%s", lm->models->models[1]->sha256);
  assert_int_equal(strlen(sha_a), 64);
  osseg__wire__response__free_unpacked(lm, NULL);
  assert_int_equal(segment(fd, 10, "a,b", "secret-patient.png"), -1);
  assert_int_equal(segment(fd, 11, "a,nope", "secret-patient.png"), CODE(UNKNOWN_MODEL));
  close(fd);
  stop(&d);

  struct lines l;
  read_lines(audit_s, &l);
  assert_int_equal(l.n, 2); /* ListModels and Health are not audited */
  json_t *ok = l.obj[0], *bad = l.obj[1];
  assert_null(strstr(l.line[0], "secret-patient")); /* no image name by default */
  assert_null(json_object_get(ok, "image_name"));
  /* time: RFC 3339 UTC with milliseconds */
  const char *t = str_of(ok, "time");
  int y, mo, da, h, mi, se, ms;
  char z;
  assert_int_equal(strlen(t), 24);
  assert_int_equal(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &da, &h, &mi, &se, &ms, &z),
                   8);
  assert_int_equal(z, 'Z');
  assert_true(y >= 2024 && mo >= 1 && mo <= 12 && da >= 1 && h < 24 && mi < 60 && se < 61);
  assert_string_equal(str_of(ok, "event"), "segment");
  assert_int_equal(int_of(ok, "uid"), geteuid());
  assert_int_equal(int_of(ok, "gid"), getegid());
  assert_int_equal(int_of(ok, "pid"), getpid());
  assert_int_equal(int_of(ok, "id"), 10);
  assert_int_equal(int_of(ok, "conn"), 2); /* 1: the start-up probe */
  assert_string_equal(str_of(ok, "outcome"), "ok");
  assert_null(str_of(ok, "code"));
  json_t *models = json_object_get(ok, "models");
  assert_int_equal(json_array_size(models), 2);
  const char *want_sha[2] = {sha_a, sha_b};
  double sum = 0;
  for (size_t i = 0; i < 2; i++) {
    json_t *m = json_array_get(models, i);
    assert_string_equal(str_of(m, "name"), i ? "b" : "a");
    assert_string_equal(str_of(m, "sha256"), want_sha[i]);
    sum += num_of(m, "inference_ms");
  }
  double q = num_of(ok, "queue_ms"), inf = num_of(ok, "inference_ms");
  double tot = num_of(ok, "total_ms");
  assert_true(q >= 0 && inf > 0 && tot >= q + inf);
  assert_true(fabs(sum - inf) < 0.01);
  assert_int_equal(int_of(bad, "id"), 11);
  assert_string_equal(str_of(bad, "outcome"), "error");
  assert_string_equal(str_of(bad, "code"), "UNKNOWN_MODEL");
  models = json_object_get(bad, "models");
  assert_int_equal(json_array_size(models), 2);
  assert_string_equal(str_of(json_array_get(models, 0), "name"), "a");
  assert_string_equal(str_of(json_array_get(models, 0), "sha256"), sha_a);
  assert_null(json_object_get(json_array_get(models, 0), "inference_ms")); /* never ran */
  assert_string_equal(str_of(json_array_get(models, 1), "name"), "nope");
  assert_null(str_of(json_array_get(models, 1), "sha256"));
  assert_true(num_of(bad, "queue_ms") == 0.0);
  lines_free(&l);

  /* With include_image_name: the name, JSON-escaped (quotes, backslashes,
   * control characters; bytes that are not UTF-8 become U+FFFD). */
  unlink(audit_s);
  conf = write_file("audit.conf",
                    "[socket]\npath = %s\n[audit]\nfile = %s\ninclude_image_name = yes\n"
                    "[model a]\npath = %s\n",
                    sock, audit_s, model_file("unetpp_r18_tiny_op13"));
  start_config(&d, conf, sock, NULL);
  fd = try_connect(sock);
  assert_true(fd >= 0);
  assert_int_equal(segment(fd, 1, "a", "hand \"7\" \\ r\xc3\xa9sum\xc3\xa9.png"), -1);
  assert_int_equal(segment(fd, 2, "a", "bad\x01name\xff.png"), CODE(BAD_REQUEST));
  assert_int_equal(segment(fd, 3, "a", NULL), -1);
  close(fd);
  stop(&d);
  read_lines(audit_s, &l);
  assert_int_equal(l.n, 3);
  assert_string_equal(str_of(l.obj[0], "image_name"), "hand \"7\" \\ r\xc3\xa9sum\xc3\xa9.png");
  /* A control character escaped, a byte that is not UTF-8 replaced. */
  assert_string_equal(str_of(l.obj[1], "image_name"), "bad\x01name\xef\xbf\xbd.png");
  assert_non_null(strstr(l.line[1], "\"image_name\":\"bad\\u0001name\\ufffd.png\""));
  assert_string_equal(str_of(l.obj[1], "code"), "BAD_REQUEST");
  assert_null(str_of(l.obj[2], "image_name"));
  lines_free(&l);
}

/* logrotate: the file is renamed, SIGHUP, new lines go to a new file. */
static void test_audit_reopen_on_sighup(void **state) {
  (void)state;
  char sock[600], audit[600], rotated[600];
  snprintf(sock, sizeof sock, "%s/hup.sock", dir);
  snprintf(audit, sizeof audit, "%s/hup-audit.log", dir);
  snprintf(rotated, sizeof rotated, "%s/hup-audit.log.1", dir);
  unlink(audit);
  unlink(rotated);
  const char *conf = write_file("hup.conf", "[socket]\npath = %s\n[audit]\nfile = %s\n"
                                "[model a]\npath = %s\n",
                                sock, audit, model_file("unetpp_r18_tiny_op13"));
  struct daemon d;
  start_config(&d, conf, sock, NULL);
  int fd = try_connect(sock);
  assert_true(fd >= 0);
  assert_int_equal(segment(fd, 1, "a", NULL), -1);
  assert_int_equal(rename(audit, rotated), 0);
  assert_int_equal(segment(fd, 2, "a", NULL), -1); /* still the old file */
  assert_int_equal(kill(d.pid, SIGHUP), 0);
  struct stat st;
  double t0 = now_s();
  while (stat(audit, &st) != 0 && now_s() - t0 < 30) usleep(10000);
  assert_int_equal(stat(audit, &st), 0);
  assert_int_equal(segment(fd, 3, "a", NULL), -1);
  assert_int_equal(segment(fd, 4, "a", NULL), -1);
  /* The daemon lives on after the SIGHUP, with its connection. */
  Osseg__Wire__Response *h = ask(fd, OSSEG__WIRE__REQUEST__KIND_HEALTH, 5);
  assert_true(h->health->ready);
  osseg__wire__response__free_unpacked(h, NULL);
  close(fd);
  stop(&d);
  struct lines old, fresh;
  read_lines(rotated, &old);
  read_lines(audit, &fresh);
  assert_int_equal(old.n, 2);
  assert_int_equal(int_of(old.obj[0], "id"), 1);
  assert_int_equal(int_of(old.obj[1], "id"), 2);
  assert_int_equal(fresh.n, 2);
  assert_int_equal(int_of(fresh.obj[0], "id"), 3);
  assert_int_equal(int_of(fresh.obj[1], "id"), 4);
  lines_free(&old);
  lines_free(&fresh);
  char *log = test_read_file(d.log, NULL);
  assert_non_null(strstr(log, "reopened"));
  free(log);
}

/* ------------------------------------------------------------- setup --- */

static int setup(void **state) {
  (void)state;
  const char *t = test_tmpdir();
  if (!t) return -1;
  snprintf(dir, sizeof dir, "%s", t);
  return harness_setup();
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Daemons a failed test left behind are stopped (and counted) by
 * harness_teardown. */
static int teardown(void **state) {
  (void)state;
  harness_teardown();
  nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}
int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check_config_example),
      cmocka_unit_test(test_check_config_errors),
      cmocka_unit_test(test_flags_override_file),
      cmocka_unit_test(test_limits_from_file),
      cmocka_unit_test(test_socket_mode_and_group),
      cmocka_unit_test(test_peer_access),
      cmocka_unit_test(test_audit_lines),
      cmocka_unit_test(test_audit_reopen_on_sighup),
  };
  return harness_main(tests, setup, teardown);
}
