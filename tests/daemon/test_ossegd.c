/* Integration tests: start bin/ossegd on a temporary socket with the tiny
 * fixture models and speak the wire protocol to it over raw sockets (a
 * small helper here; the client library is not used). Every daemon is
 * stopped with SIGTERM, then SIGKILL after a timeout, so no test hangs. */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "osseg.pb-c.h"
#include "osseg_pipeline.h"
#include "test_support.h"

#define CODE(x) OSSEG__WIRE__ERROR__CODE__##x

/* ------------------------------------------------------------ daemon --- */

struct daemon {
  pid_t pid;
  char sock[256];
  char log[256];
};

/* Every daemon started and not yet reaped, so that a failing test (cmocka
 * jumps out of it) leaves none behind: the group teardown stops them. */
static pid_t live[16];

static void live_add(pid_t pid) {
  for (int i = 0; i < 16; i++)
    if (!live[i]) {
      live[i] = pid;
      return;
    }
}

static void live_remove(pid_t pid) {
  for (int i = 0; i < 16; i++)
    if (live[i] == pid) live[i] = 0;
}

static const char *model_file(const char *name) {
  return test_path("%s/tests/data/models/%s.onnx", test_source_dir(), name);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int try_connect(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Starts ossegd with the two standard models plus extra arguments
 * (NULL-terminated) and waits until it accepts a connection. Returns 0, or
 * the exit status if it ended first. */
static int daemon_start_v(struct daemon *d, const char *dir, int with_models, va_list ap) {
  const char *argv[64];
  int n = 0;
  snprintf(d->sock, sizeof d->sock, "%s/ossegd.sock", dir);
  snprintf(d->log, sizeof d->log, "%s/ossegd.log", dir);
  char ma[512], mb[512];
  snprintf(ma, sizeof ma, "a=%s", model_file("unetpp_r18_tiny_op13"));
  snprintf(mb, sizeof mb, "b=%s", model_file("unet_effb0_tiny_op13"));
  argv[n++] = test_path("%s/bin/ossegd", test_binary_dir());
  argv[n++] = "--socket";
  argv[n++] = d->sock;
  if (with_models) {
    argv[n++] = "--model";
    argv[n++] = ma;
    argv[n++] = "--model";
    argv[n++] = mb;
    argv[n++] = "--threads";
    argv[n++] = "1";
  }
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 62) argv[n++] = a;
  argv[n] = NULL;
  d->pid = fork();
  assert_true(d->pid >= 0);
  if (d->pid == 0) {
    int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 2);
      dup2(fd, 1);
    }
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  live_add(d->pid);
  double t0 = now_s();
  while (now_s() - t0 < 60) {
    int status;
    if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
      live_remove(d->pid);
      d->pid = 0;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    int fd = try_connect(d->sock);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    usleep(20000);
  }
  fail_msg("ossegd did not become ready in 60 s");
  return -1;
}

/* Runs ossegd with the two standard models and the extra arguments,
 * expecting it to exit; returns its status, *err its stderr. */
static int daemon_fail(const char *sock, char **err, ...) {
  const char *argv[32];
  int n = 0;
  char ma[512], mb[512];
  snprintf(ma, sizeof ma, "a=%s", model_file("unetpp_r18_tiny_op13"));
  snprintf(mb, sizeof mb, "b=%s", model_file("unet_effb0_tiny_op13"));
  argv[n++] = test_path("%s/bin/ossegd", test_binary_dir());
  argv[n++] = "--socket";
  argv[n++] = sock;
  argv[n++] = "--model";
  argv[n++] = ma;
  argv[n++] = "--model";
  argv[n++] = mb;
  va_list ap;
  va_start(ap, err);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 30) argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  return test_run(argv, NULL, err, 60);
}

static int daemon_start(struct daemon *d, const char *dir, ...) {
  va_list ap;
  va_start(ap, dir);
  int rc = daemon_start_v(d, dir, 1, ap);
  va_end(ap);
  return rc;
}

/* SIGTERM, then SIGKILL after timeout_s; returns the exit status (128+sig
 * if killed). */
static int daemon_stop(struct daemon *d, double timeout_s) {
  if (d->pid <= 0) return -1;
  kill(d->pid, SIGTERM);
  double t0 = now_s();
  int status = 0;
  for (;;) {
    pid_t r = waitpid(d->pid, &status, WNOHANG);
    if (r == d->pid) break;
    if (now_s() - t0 > timeout_s) {
      kill(d->pid, SIGKILL);
      waitpid(d->pid, &status, 0);
      break;
    }
    usleep(10000);
  }
  live_remove(d->pid);
  d->pid = 0;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---------------------------------------------------------- protocol --- */

static int write_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

static int send_request(int fd, const Osseg__Wire__Request *r) {
  size_t n = osseg__wire__request__get_packed_size(r);
  uint8_t *f = malloc(n + 4);
  assert_non_null(f);
  f[0] = (uint8_t)n;
  f[1] = (uint8_t)(n >> 8);
  f[2] = (uint8_t)(n >> 16);
  f[3] = (uint8_t)(n >> 24);
  osseg__wire__request__pack(r, f + 4);
  int rc = write_all(fd, f, n + 4);
  free(f);
  return rc;
}

/* Appends a framed request to a growing buffer (to send many at once). */
static void frame_append(uint8_t **buf, size_t *len, const Osseg__Wire__Request *r) {
  size_t n = osseg__wire__request__get_packed_size(r);
  *buf = realloc(*buf, *len + n + 4);
  assert_non_null(*buf);
  uint8_t *f = *buf + *len;
  f[0] = (uint8_t)n;
  f[1] = (uint8_t)(n >> 8);
  f[2] = (uint8_t)(n >> 16);
  f[3] = (uint8_t)(n >> 24);
  osseg__wire__request__pack(r, f + 4);
  *len += n + 4;
}

/* Reads exactly n bytes; 0, or -1 on EOF/error/timeout. */
static int read_all(int fd, void *p, size_t n, int timeout_ms) {
  uint8_t *b = p;
  while (n > 0) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int pr = poll(&pfd, 1, timeout_ms);
    if (pr <= 0) return -1;
    ssize_t r = read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    b += r;
    n -= (size_t)r;
  }
  return 0;
}

/* The next response, or NULL at EOF (or after 30 s). */
static Osseg__Wire__Response *recv_response(int fd) {
  uint8_t h[4];
  if (read_all(fd, h, 4, 30000) != 0) return NULL;
  uint32_t n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
  uint8_t *b = malloc(n ? n : 1);
  assert_non_null(b);
  if (read_all(fd, b, n, 30000) != 0) {
    free(b);
    return NULL;
  }
  Osseg__Wire__Response *r = osseg__wire__response__unpack(NULL, n, b);
  free(b);
  assert_non_null(r);
  return r;
}

/* Whether the daemon closed the connection (EOF within 10 s). */
static int closed_by_peer(int fd) {
  uint8_t b[256];
  double t0 = now_s();
  while (now_s() - t0 < 10) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 1000) <= 0) continue;
    ssize_t r = read(fd, b, sizeof b);
    if (r == 0 || (r < 0 && errno == ECONNRESET)) return 1;
  }
  return 0;
}

/* What came back for one request. */
struct result {
  uint64_t id;
  int ended;
  int nmasks;
  char *rle[OSSEG_MAX_CLASSES];
  uint64_t area[OSSEG_MAX_CLASSES];
  uint8_t *png[OSSEG_MAX_CLASSES]; /* OUTPUT_PNG_MASK */
  size_t png_len[OSSEG_MAX_CLASSES];
  int in_order;          /* masks came in class order, before Dice and Done */
  int done;
  Osseg__Wire__Done done_msg;
  int error;             /* Error.Code + 1, 0 = none */
  char message[512];
  int has_dice;
  size_t dice_n;
  uint32_t dice_cls[OSSEG_MAX_CLASSES];
  double dice[OSSEG_MAX_CLASSES], dice_mean;
  int dice_before_done;
  int other;             /* Health, ModelList, Stats */
  Osseg__Wire__Response *kept; /* the terminal non-Segment response */
};

static void result_free(struct result *r) {
  for (int i = 0; i < OSSEG_MAX_CLASSES; i++) {
    free(r->rle[i]);
    free(r->png[i]);
  }
  if (r->kept) osseg__wire__response__free_unpacked(r->kept, NULL);
  memset(r, 0, sizeof *r);
}

/* Reads responses until every one of the n results (ids set) has ended.
 * Returns 0, or -1 if the connection ended first. */
static int collect(int fd, struct result *res, size_t n) {
  size_t open = n;
  for (size_t i = 0; i < n; i++) res[i].in_order = 1;
  while (open > 0) {
    Osseg__Wire__Response *r = recv_response(fd);
    if (!r) return -1;
    struct result *x = NULL;
    for (size_t i = 0; i < n; i++)
      if (res[i].id == r->id && !res[i].ended) x = &res[i];
    if (!x) fail_msg("response for unexpected id %llu", (unsigned long long)r->id);
    int keep = 0;
    switch (r->kind_case) {
      case OSSEG__WIRE__RESPONSE__KIND_CLASS_MASK: {
        Osseg__Wire__ClassMask *m = r->class_mask;
        assert_true(m->index < OSSEG_MAX_CLASSES);
        if (x->nmasks && x->rle[m->index]) x->in_order = 0;
        if (x->has_dice || x->done) x->in_order = 0;
        for (unsigned k = m->index + 1; k < OSSEG_MAX_CLASSES; k++)
          if (x->rle[k]) x->in_order = 0;
        x->rle[m->index] = strdup(m->rle ? m->rle : "");
        x->area[m->index] = m->area;
        if (m->has_png) {
          x->png[m->index] = malloc(m->png.len);
          assert_non_null(x->png[m->index]);
          memcpy(x->png[m->index], m->png.data, m->png.len);
          x->png_len[m->index] = m->png.len;
        }
        x->nmasks++;
        break;
      }
      case OSSEG__WIRE__RESPONSE__KIND_DICE:
        x->has_dice = 1;
        x->dice_n = r->dice->n_classes;
        for (size_t k = 0; k < r->dice->n_classes; k++) {
          x->dice_cls[k] = r->dice->classes[k]->index;
          x->dice[k] = r->dice->classes[k]->dice;
        }
        x->dice_mean = r->dice->mean;
        x->dice_before_done = !x->done;
        break;
      case OSSEG__WIRE__RESPONSE__KIND_DONE:
        x->done = 1;
        x->done_msg = *r->done;
        x->done_msg.inference = NULL;
        x->ended = 1;
        break;
      case OSSEG__WIRE__RESPONSE__KIND_ERROR:
        x->error = r->error->code + 1;
        snprintf(x->message, sizeof x->message, "%s", r->error->message);
        x->ended = 1;
        break;
      default:
        x->other = r->kind_case;
        x->ended = 1;
        keep = 1;
        x->kept = r;
        break;
    }
    if (x->ended) open--;
    if (!keep) osseg__wire__response__free_unpacked(r, NULL);
  }
  return 0;
}

/* ------------------------------------------------------------ images --- */

/* A synthetic radiograph-like image: a gradient with bright blobs. */
static void make_image(struct osseg_image *img, uint32_t w, uint32_t h, uint32_t seed) {
  assert_int_equal(osseg_image_init(img, w, h, 1, 8), 0);
  for (uint32_t y = 0; y < h; y++)
    for (uint32_t x = 0; x < w; x++) {
      uint32_t v = (x * 255 / w + y * 128 / h + seed * 31) & 0xff;
      int dx = (int)x - (int)(w / 3), dy = (int)y - (int)(h / 2);
      if (dx * dx + dy * dy < (int)(w * w / 25)) v = 250 - (seed & 7);
      img->data[(size_t)y * img->stride + x] = (uint8_t)v;
    }
}

static uint8_t *make_png(uint32_t w, uint32_t h, uint32_t seed, size_t *size) {
  struct osseg_image img;
  make_image(&img, w, h, seed);
  uint8_t *png = NULL;
  assert_int_equal(osseg_png_encode_mem(&img, 1, &png, size, NULL), 0);
  osseg_image_free(&img);
  return png;
}

/* --------------------------------------------------------- reference --- */

static struct osseg_registry *ref_reg;

struct ref {
  char *rle[OSSEG_MAX_CLASSES];
  size_t n;
  struct osseg_dice_report dice;
  int has_dice;
};

static int ref_on_class(void *ctx, size_t cls, const char *name, const struct osseg_bitmask *m,
                        const struct osseg_run *runs, size_t nruns) {
  struct ref *r = ctx;
  char *t = malloc(osseg_rle_format_bound(nruns) + 1);
  assert_non_null(t);
  t[osseg_rle_format(runs, nruns, t)] = '\0';
  r->rle[cls] = t;
  r->n++;
  return 0;
}

static int ref_on_dice(void *ctx, const struct osseg_dice_report *rep) {
  struct ref *r = ctx;
  r->dice = *rep;
  r->has_dice = 1;
  return 0;
}

/* The pipeline library's answer for a PNG, as `osseg predict` computes it. */
static void reference(struct ref *out, const uint8_t *png, size_t size, const char *const *models,
                      size_t nmodels, int soft, const struct osseg_ground_truth *gt) {
  memset(out, 0, sizeof *out);
  struct osseg_pipeline_options po;
  osseg_pipeline_options_default(&po);
  for (size_t i = 0; i < nmodels; i++) po.models[i] = models[i];
  po.nmodels = nmodels;
  po.vote = soft ? OSSEG_VOTE_SOFT : OSSEG_VOTE_HARD;
  struct osseg_pipeline *p;
  struct osseg_workspace *ws;
  assert_int_equal(osseg_pipeline_create(&p, ref_reg, &po, NULL), 0);
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);
  struct osseg_run_request rq = {.on_class = ref_on_class, .on_dice = ref_on_dice, .ctx = out,
                                 .gt = gt};
  assert_int_equal(osseg_pipeline_run_png(p, ws, png, size, &rq, NULL), 0);
  osseg_workspace_free(ws);
  osseg_pipeline_free(p);
}

static void ref_free(struct ref *r) {
  for (int i = 0; i < OSSEG_MAX_CLASSES; i++) free(r->rle[i]);
}

/* ---------------------------------------------------------- requests --- */

/* A Segment request; the arrays live in the struct. */
struct seg_req {
  Osseg__Wire__Request r;
  Osseg__Wire__Segment s;
  Osseg__Wire__Vote vote;
  Osseg__Wire__RawImage raw;
  Osseg__Wire__GroundTruth gt;
  Osseg__Wire__ClassRles rles;
  Osseg__Wire__ClassRle rle[OSSEG_MAX_CLASSES], *rlep[OSSEG_MAX_CLASSES];
  char *models[8];
};

static void seg_init(struct seg_req *q, uint64_t id, const uint8_t *png, size_t size,
                     const char *model) {
  memset(q, 0, sizeof *q);
  osseg__wire__request__init(&q->r);
  osseg__wire__segment__init(&q->s);
  q->r.id = id;
  q->r.kind_case = OSSEG__WIRE__REQUEST__KIND_SEGMENT;
  q->r.segment = &q->s;
  q->s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_PNG;
  q->s.png.data = (uint8_t *)png;
  q->s.png.len = size;
  q->models[0] = (char *)model;
  q->s.models = q->models;
  q->s.n_models = 1;
}

static void simple_req(Osseg__Wire__Request *r, uint64_t id, int kind) {
  static Osseg__Wire__HealthRequest h = OSSEG__WIRE__HEALTH_REQUEST__INIT;
  static Osseg__Wire__ListModels l = OSSEG__WIRE__LIST_MODELS__INIT;
  static Osseg__Wire__StatsRequest st = OSSEG__WIRE__STATS_REQUEST__INIT;
  osseg__wire__request__init(r);
  r->id = id;
  r->kind_case = kind;
  if (kind == OSSEG__WIRE__REQUEST__KIND_HEALTH) r->health = &h;
  if (kind == OSSEG__WIRE__REQUEST__KIND_LIST_MODELS) r->list_models = &l;
  if (kind == OSSEG__WIRE__REQUEST__KIND_STATS) r->stats = &st;
}

/* Asks Health on a fresh connection; returns the response (caller frees). */
static Osseg__Wire__Response *health(const struct daemon *d) {
  int fd = try_connect(d->sock);
  assert_true(fd >= 0);
  Osseg__Wire__Request r;
  simple_req(&r, 1, OSSEG__WIRE__REQUEST__KIND_HEALTH);
  assert_int_equal(send_request(fd, &r), 0);
  Osseg__Wire__Response *resp = recv_response(fd);
  close(fd);
  assert_non_null(resp);
  assert_int_equal(resp->kind_case, OSSEG__WIRE__RESPONSE__KIND_HEALTH);
  return resp;
}

/* ------------------------------------------------------------- state --- */

static struct daemon shared; /* models a and b, 2 workers, 1 MiB frames */
static uint8_t *png64;
static size_t png64_size;

static int group_setup(void **state) {
  (void)state;
  if (osseg_registry_create(&ref_reg, NULL) != 0) return -1;
  struct osseg_model_spec sa = {.name = "a", .path = model_file("unetpp_r18_tiny_op13")};
  struct osseg_model_spec sb = {.name = "b", .path = model_file("unet_effb0_tiny_op13")};
  if (osseg_registry_load(ref_reg, &sa, NULL, NULL) || osseg_registry_load(ref_reg, &sb, NULL, NULL))
    return -1;
  const char *dir = test_tmpdir();
  if (!dir) return -1;
  if (daemon_start(&shared, dir, "--max-frame-bytes", "4000000", NULL) != 0) return -1;
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  int st = daemon_stop(&shared, 20);
  for (int i = 0; i < 16; i++)
    if (live[i]) {
      struct daemon left = {.pid = live[i]};
      daemon_stop(&left, 5);
    }
  osseg_registry_free(ref_reg);
  free(png64);
  return st == 0 ? 0 : -1;
}

static const uint8_t *test_png(size_t *size) {
  if (!png64) png64 = make_png(96, 80, 3, &png64_size);
  *size = png64_size;
  return png64;
}

/* -------------------------------------------------------------- tests --- */

static void compare(const struct result *x, const struct ref *ref) {
  assert_int_equal(x->error, 0);
  assert_true(x->done);
  assert_true(x->in_order);
  assert_int_equal((size_t)x->nmasks, ref->n);
  for (size_t c = 0; c < ref->n; c++) {
    assert_non_null(x->rle[c]);
    assert_string_equal(x->rle[c], ref->rle[c]);
  }
}

static void test_segment_matches_pipeline(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a"};
  struct ref ref;
  reference(&ref, png, size, models, 1, 0, NULL);
  assert_int_equal(ref.n, 29);

  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  struct seg_req q;
  seg_init(&q, 5, png, size, "a");
  q.s.image_name = "hand.png";
  assert_int_equal(send_request(fd, &q.r), 0);
  struct result x = {.id = 5};
  assert_int_equal(collect(fd, &x, 1), 0);
  compare(&x, &ref);
  assert_int_equal(x.done_msg.width, 96);
  assert_int_equal(x.done_msg.height, 80);
  assert_true(x.done_msg.total_ms >= x.done_msg.queue_ms);
  /* Some class is not empty, so the comparison says something. */
  int nonempty = 0;
  for (int c = 0; c < 29; c++) nonempty += x.area[c] > 0;
  assert_true(nonempty > 0);
  result_free(&x);

  /* The same pixels as a raw image give the same masks. */
  struct osseg_image img;
  make_image(&img, 96, 80, 3);
  seg_init(&q, 6, NULL, 0, "a");
  osseg__wire__raw_image__init(&q.raw);
  q.raw.width = 96;
  q.raw.height = 80;
  q.raw.bit_depth = 8;
  q.raw.pixels.data = img.data; /* stride == width for 8-bit gray here */
  q.raw.pixels.len = (size_t)96 * 80;
  assert_int_equal(img.stride, 96);
  q.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_RAW;
  q.s.raw = &q.raw;
  assert_int_equal(send_request(fd, &q.r), 0);
  x.id = 6;
  assert_int_equal(collect(fd, &x, 1), 0);
  compare(&x, &ref);
  result_free(&x);
  osseg_image_free(&img);

  /* PNG masks: the same pixels as the RLE. */
  seg_init(&q, 7, png, size, "a");
  q.s.has_output = 1;
  q.s.output = OSSEG__WIRE__OUTPUT__OUTPUT_PNG_MASK;
  assert_int_equal(send_request(fd, &q.r), 0);
  x.id = 7;
  assert_int_equal(collect(fd, &x, 1), 0);
  assert_int_equal(x.nmasks, 29);
  for (int c = 0; c < 29; c++) {
    assert_non_null(x.png[c]);
    /* IHDR: bit depth 1, colour type 0 (gray), as the proto promises. */
    assert_true(x.png_len[c] > 26);
    assert_int_equal(x.png[c][24], 1);
    assert_int_equal(x.png[c][25], 0);
    struct osseg_image m;
    assert_int_equal(osseg_png_decode_mem(x.png[c], x.png_len[c], NULL, &m, NULL), 0);
    assert_int_equal(m.width, 96);
    assert_int_equal(m.height, 80);
    struct osseg_runs runs = {0};
    assert_int_equal(osseg_rle_parse(ref.rle[c], strlen(ref.rle[c]), 96 * 80, &runs, NULL), 0);
    struct osseg_bitmask want;
    assert_int_equal(osseg_bitmask_init(&want, 80, 96), 0);
    assert_int_equal(osseg_bitmask_paint_runs(&want, runs.v, runs.n), 0);
    uint64_t area = 0;
    for (uint32_t y = 0; y < 80; y++)
      for (uint32_t xx = 0; xx < 96; xx++) {
        uint64_t p = (uint64_t)y * 96 + xx;
        int bit = (int)((want.bits[p / 64] >> (p % 64)) & 1);
        uint8_t v = m.data[(size_t)y * m.stride + xx];
        assert_int_equal(v, bit ? 255 : 0);
        area += bit;
      }
    assert_int_equal(area, x.area[c]);
    osseg_bitmask_free(&want);
    osseg_runs_free(&runs);
    osseg_image_free(&m);
  }
  result_free(&x);
  close(fd);
  ref_free(&ref);
}

static void test_ensembles(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a", "b"};
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  for (int soft = 0; soft <= 1; soft++) {
    struct ref ref;
    reference(&ref, png, size, models, 2, soft, NULL);
    struct seg_req q;
    seg_init(&q, 10 + (uint64_t)soft, png, size, "a");
    q.models[1] = "b";
    q.s.n_models = 2;
    osseg__wire__vote__init(&q.vote);
    q.vote.has_kind = 1;
    q.vote.kind = soft ? OSSEG__WIRE__VOTE__KIND__SOFT : OSSEG__WIRE__VOTE__KIND__HARD;
    q.s.vote = &q.vote;
    assert_int_equal(send_request(fd, &q.r), 0);
    struct result x = {.id = 10 + (uint64_t)soft};
    assert_int_equal(collect(fd, &x, 1), 0);
    compare(&x, &ref);
    result_free(&x);
    ref_free(&ref);
  }
  close(fd);
}

static void test_dice(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  /* Ground truth: model b's masks of a few classes. */
  const char *mb[] = {"b"}, *ma[] = {"a"};
  struct ref gtref;
  reference(&gtref, png, size, mb, 1, 0, NULL);
  static const int classes[] = {0, 5, 19, 27, 28};
  struct osseg_runs runs[5];
  memset(runs, 0, sizeof runs);
  struct osseg_ground_truth gt;
  memset(&gt, 0, sizeof gt);
  for (int i = 0; i < 5; i++) {
    const char *t = gtref.rle[classes[i]];
    assert_int_equal(osseg_rle_parse(t, strlen(t), 96 * 80, &runs[i], NULL), 0);
    gt.has[classes[i]] = 1;
    gt.runs[classes[i]] = runs[i].v;
    gt.nruns[classes[i]] = runs[i].n;
  }
  struct ref ref;
  reference(&ref, png, size, ma, 1, 0, &gt);
  assert_true(ref.has_dice);

  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  for (int dice_only = 0; dice_only <= 1; dice_only++) {
    struct seg_req q;
    seg_init(&q, 20 + (uint64_t)dice_only, png, size, "a");
    osseg__wire__ground_truth__init(&q.gt);
    osseg__wire__class_rles__init(&q.rles);
    for (int i = 0; i < 5; i++) {
      osseg__wire__class_rle__init(&q.rle[i]);
      q.rle[i].name = (char *)osseg_canonical_class((unsigned)classes[i]);
      q.rle[i].rle = gtref.rle[classes[i]];
      q.rlep[i] = &q.rle[i];
    }
    q.rles.classes = q.rlep;
    q.rles.n_classes = 5;
    q.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES;
    q.gt.rles = &q.rles;
    q.s.ground_truth = &q.gt;
    if (dice_only) {
      q.s.has_output = 1;
      q.s.output = OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY;
    }
    assert_int_equal(send_request(fd, &q.r), 0);
    struct result x = {.id = 20 + (uint64_t)dice_only};
    assert_int_equal(collect(fd, &x, 1), 0);
    assert_int_equal(x.error, 0);
    if (!x.has_dice) fail_msg("no Dice: %d masks, done %d", x.nmasks, x.done);
    assert_true(x.dice_before_done);
    assert_int_equal(x.nmasks, dice_only ? 0 : 29);
    assert_int_equal(x.dice_n, ref.dice.n);
    for (size_t k = 0; k < ref.dice.n; k++) {
      assert_int_equal(x.dice_cls[k], ref.dice.cls[k]);
      assert_true(x.dice[k] == ref.dice.dice[k]);
    }
    assert_true(x.dice_mean == ref.dice.mean);
    result_free(&x);
  }
  /* A run past the end of the image is the request's fault. */
  struct seg_req q;
  seg_init(&q, 22, png, size, "a");
  osseg__wire__ground_truth__init(&q.gt);
  osseg__wire__class_rles__init(&q.rles);
  osseg__wire__class_rle__init(&q.rle[0]);
  q.rle[0].name = "Radius";
  q.rle[0].rle = "7600 100";
  q.rlep[0] = &q.rle[0];
  q.rles.classes = q.rlep;
  q.rles.n_classes = 1;
  q.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES;
  q.gt.rles = &q.rles;
  q.s.ground_truth = &q.gt;
  assert_int_equal(send_request(fd, &q.r), 0);
  struct result x = {.id = 22};
  assert_int_equal(collect(fd, &x, 1), 0);
  assert_int_equal(x.error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x.message, "ground_truth.rles"));
  result_free(&x);
  close(fd);
  for (int i = 0; i < 5; i++) osseg_runs_free(&runs[i]);
  ref_free(&ref);
  ref_free(&gtref);
}

/* Sends a Segment of the PNG with label_json ground truth, Dice only. */
static void send_label_json(int fd, uint64_t id, const uint8_t *png, size_t size,
                            const char *json, int dice_only) {
  struct seg_req q;
  seg_init(&q, id, png, size, "a");
  osseg__wire__ground_truth__init(&q.gt);
  q.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_LABEL_JSON;
  q.gt.label_json = (char *)json;
  q.s.ground_truth = &q.gt;
  if (dice_only) {
    q.s.has_output = 1;
    q.s.output = OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY;
  }
  assert_int_equal(send_request(fd, &q.r), 0);
}

/* ground_truth.label_json of a sample phantom scores exactly as the RLE of
 * its gt.csv rows: the same 29 Dice values and mean; without one of its
 * annotations that class scores differently (the Dice comes from the
 * JSON). Bad label JSON is BAD_REQUEST naming the problem, and the daemon
 * goes on answering. */
static void test_label_json(void **state) {
  (void)state;
  char samples[4096];
  snprintf(samples, sizeof samples, "%s/data/samples", test_source_dir());
  const char *image = "phantom_1000100";
  size_t png_size = 0, json_size = 0;
  uint8_t *png = (uint8_t *)test_read_file(test_path("%s/images/%s.png", samples, image),
                                           &png_size);
  char *json = test_read_file(test_path("%s/labels/%s.json", samples, image), &json_size);
  struct osseg_csv gt = {0};
  int have_gt = osseg_csv_open(&gt, test_path("%s/gt.csv", samples), NULL, NULL) == 0;
  if (!png || !json || !have_gt) {
    free(png);
    free(json);
    if (have_gt) osseg_csv_close(&gt);
    print_message("sample phantom %s not found: skipped\n", image);
    skip();
  }

  /* The RLE request: gt.csv's 29 rows of the image. */
  struct seg_req q;
  seg_init(&q, 30, png, png_size, "a");
  osseg__wire__ground_truth__init(&q.gt);
  osseg__wire__class_rles__init(&q.rles);
  char *texts[OSSEG_MAX_CLASSES] = {0};
  size_t n = 0;
  char image_name[64];
  snprintf(image_name, sizeof image_name, "%s.png", image);
  for (size_t r = 0; r < gt.nrows && n < OSSEG_MAX_CLASSES; r++) {
    const struct osseg_csv_row *row = &gt.rows[r];
    if (row->image_len != strlen(image_name) || memcmp(row->image, image_name, row->image_len))
      continue;
    texts[n] = malloc(row->cls_len + row->rle_len + 2);
    assert_non_null(texts[n]);
    memcpy(texts[n], row->cls, row->cls_len);
    texts[n][row->cls_len] = '\0';
    memcpy(texts[n] + row->cls_len + 1, row->rle, row->rle_len);
    texts[n][row->cls_len + 1 + row->rle_len] = '\0';
    osseg__wire__class_rle__init(&q.rle[n]);
    q.rle[n].name = texts[n];
    q.rle[n].rle = texts[n] + row->cls_len + 1;
    q.rlep[n] = &q.rle[n];
    n++;
  }
  assert_int_equal(n, 29);
  q.rles.classes = q.rlep;
  q.rles.n_classes = n;
  q.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES;
  q.gt.rles = &q.rles;
  q.s.ground_truth = &q.gt;
  q.s.has_output = 1;
  q.s.output = OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY;

  /* The JSON without its Capitate annotation (class 21). */
  char *cut = strstr(json, "{\"label\":\"Capitate\"");
  assert_non_null(cut);
  char *cut_end = strstr(cut, "]]}");
  assert_non_null(cut_end);
  cut_end += 3;
  if (*cut_end == ',') cut_end++;
  else if (cut[-1] == ',') cut--;
  size_t without_len = json_size - (size_t)(cut_end - cut);
  char *without = malloc(without_len + 1);
  assert_non_null(without);
  memcpy(without, json, (size_t)(cut - json));
  memcpy(without + (cut - json), cut_end, json_size - (size_t)(cut_end - json));
  without[without_len] = '\0';

  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  assert_int_equal(send_request(fd, &q.r), 0);
  send_label_json(fd, 31, png, png_size, json, 1);
  send_label_json(fd, 32, png, png_size, without, 1);
  send_label_json(fd, 33, png, png_size, json, 0); /* masks streamed too */
  struct result x[4] = {{.id = 30}, {.id = 31}, {.id = 32}, {.id = 33}};
  assert_int_equal(collect(fd, x, 4), 0);
  for (int i = 0; i < 4; i++) {
    if (x[i].error) fail_msg("request %d: error %d: %s", 30 + i, x[i].error - 1, x[i].message);
    assert_true(x[i].has_dice);
    assert_true(x[i].dice_before_done);
    assert_int_equal(x[i].dice_n, 29);
    assert_int_equal(x[i].nmasks, i == 3 ? 29 : 0);
  }
  assert_int_equal(x[3].done_msg.width, 2048);
  int differ = 0;
  for (size_t k = 0; k < 29; k++) {
    assert_int_equal(x[1].dice_cls[k], x[0].dice_cls[k]);
    if (x[1].dice[k] != x[0].dice[k])
      fail_msg("class %u: Dice %.9g from label_json, %.9g from rles", x[0].dice_cls[k],
               x[1].dice[k], x[0].dice[k]);
    assert_true(x[3].dice[k] == x[0].dice[k]);
    if (x[2].dice[k] != x[0].dice[k]) {
      assert_int_equal(x[2].dice_cls[k], 21);
      differ++;
    }
  }
  assert_true(x[1].dice_mean == x[0].dice_mean);
  assert_int_equal(differ, 1);
  double x0_dice[29];
  memcpy(x0_dice, x[0].dice, sizeof x0_dice);
  for (int i = 0; i < 4; i++) result_free(&x[i]);

  /* Bad label JSON: BAD_REQUEST naming the problem; the connection and
   * the daemon go on. */
  size_t small_size;
  const uint8_t *small = test_png(&small_size);
  send_label_json(fd, 34, small, small_size,
                  "{\"annotations\": [{\"label\": \"Kneecap\", \"points\": [[1,1],[9,1],[5,9]]}]}", 0);
  send_label_json(fd, 35, small, small_size, "{\"annotations\": [{\"label\": \"Ulna\",", 0);
  send_label_json(fd, 36, small, small_size,
                  "{\"annotations\": [{\"label\": \"Ulna\", \"points\": [[1,1],[9,1]]}]}", 1);
  send_label_json(fd, 37, small, small_size,
                  "{\"annotations\": [{\"label\": \"Ulna\", \"points\": [[1,1],[90,1],[50,79]]}]}",
                  0);
  struct result y[4] = {{.id = 34}, {.id = 35}, {.id = 36}, {.id = 37}};
  assert_int_equal(collect(fd, y, 4), 0);
  assert_int_equal(y[0].error, CODE(BAD_REQUEST) + 1);
  assert_string_equal(y[0].message,
                      "ground_truth.label_json: annotations[0].label: 'Kneecap' is none of the 29 "
                      "classes (finger-1 ... Ulna)");
  assert_int_equal(y[1].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(y[1].message, "ground_truth.label_json:1:"));
  assert_int_equal(y[2].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(y[2].message, "a polygon needs at least 3"));
  assert_int_equal(y[3].error, 0);
  assert_int_equal(y[3].nmasks, 29);
  assert_int_equal(y[3].dice_n, 29);
  for (int i = 0; i < 4; i++) result_free(&y[i]);

  /* Text over 64 KiB is parsed by the worker: the sample's JSON padded
   * with an ignored member scores the same; with a bad label it is the
   * same BAD_REQUEST. */
  size_t pad = (size_t)70 << 10;
  char *big = malloc(json_size + pad + 32);
  assert_non_null(big);
  char *end = strrchr(json, '}');
  assert_non_null(end);
  size_t head = (size_t)(end - json);
  memcpy(big, json, head);
  size_t m = head + (size_t)sprintf(big + head, ",\"pad\":\"");
  memset(big + m, 'x', pad);
  strcpy(big + m + pad, "\"}");
  send_label_json(fd, 38, png, png_size, big, 1);
  char *label = strstr(big, "\"label\":\"Ulna\"");
  assert_non_null(label);
  memcpy(label + 9, "Ulma", 4);
  send_label_json(fd, 39, png, png_size, big, 1);
  struct result z[2] = {{.id = 38}, {.id = 39}};
  assert_int_equal(collect(fd, z, 2), 0);
  assert_int_equal(z[0].error, 0);
  assert_int_equal(z[0].dice_n, 29);
  for (size_t k = 0; k < 29; k++) assert_true(z[0].dice[k] == x0_dice[k]);
  assert_int_equal(z[1].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(z[1].message, "].label: 'Ulma' is none of the 29 classes"));
  for (int i = 0; i < 2; i++) result_free(&z[i]);
  free(big);
  close(fd);
  Osseg__Wire__Response *h = health(&shared);
  assert_true(h->health->ready);
  osseg__wire__response__free_unpacked(h, NULL);

  for (size_t i = 0; i < n; i++) free(texts[i]);
  free(without);
  free(json);
  free(png);
  osseg_csv_close(&gt);
}

static void test_pipelined(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a"};
  struct ref ref;
  reference(&ref, png, size, models, 1, 0, NULL);
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  enum { N = 24 };
  struct result x[N];
  memset(x, 0, sizeof x);
  for (int i = 0; i < N; i++) {
    x[i].id = 100 + (uint64_t)i;
    if (i % 6 == 5) {
      Osseg__Wire__Request r;
      simple_req(&r, x[i].id, OSSEG__WIRE__REQUEST__KIND_HEALTH);
      assert_int_equal(send_request(fd, &r), 0);
    } else {
      struct seg_req q;
      seg_init(&q, x[i].id, png, size, "a");
      if (i % 2) {
        q.s.has_priority = 1;
        q.s.priority = OSSEG__WIRE__PRIORITY__PRIORITY_BATCH;
      }
      assert_int_equal(send_request(fd, &q.r), 0);
    }
  }
  assert_int_equal(collect(fd, x, N), 0);
  for (int i = 0; i < N; i++) {
    if (i % 6 == 5)
      assert_int_equal(x[i].other, OSSEG__WIRE__RESPONSE__KIND_HEALTH);
    else
      compare(&x[i], &ref);
    result_free(&x[i]);
  }
  close(fd);
  ref_free(&ref);
}

static void test_concurrent_connections(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a"};
  struct ref ref;
  reference(&ref, png, size, models, 1, 0, NULL);
  enum { C = 5, R = 3 };
  int fds[C];
  for (int c = 0; c < C; c++) {
    fds[c] = try_connect(shared.sock);
    assert_true(fds[c] >= 0);
    for (int r = 0; r < R; r++) {
      struct seg_req q;
      seg_init(&q, (uint64_t)r, png, size, "a"); /* the same ids on every connection */
      assert_int_equal(send_request(fds[c], &q.r), 0);
    }
  }
  for (int c = 0; c < C; c++) {
    struct result x[R];
    memset(x, 0, sizeof x);
    for (int r = 0; r < R; r++) x[r].id = (uint64_t)r;
    assert_int_equal(collect(fds[c], x, R), 0);
    for (int r = 0; r < R; r++) {
      compare(&x[r], &ref);
      result_free(&x[r]);
    }
    close(fds[c]);
  }
  ref_free(&ref);
}

static void test_bad_inputs(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  /* A declared length over the limit: closed without reading it. */
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  uint8_t big[4] = {0x00, 0x00, 0x00, 0x10}; /* 256 MiB */
  assert_int_equal(write_all(fd, big, 4), 0);
  assert_true(closed_by_peer(fd));
  close(fd);
  Osseg__Wire__Response *h = health(&shared);
  assert_int_equal(h->health->max_frame_bytes, 4000000);
  osseg__wire__response__free_unpacked(h, NULL);

  /* Garbage that does not unpack as a Request. */
  fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  uint8_t junk[4 + 16] = {16, 0, 0, 0};
  memset(junk + 4, 0xff, 16);
  assert_int_equal(write_all(fd, junk, sizeof junk), 0);
  assert_true(closed_by_peer(fd));
  close(fd);
  /* A zero-length frame (no id) does not either. */
  fd = try_connect(shared.sock);
  uint8_t zero[4] = {0};
  assert_int_equal(write_all(fd, zero, 4), 0);
  assert_true(closed_by_peer(fd));
  close(fd);
  h = health(&shared);
  osseg__wire__response__free_unpacked(h, NULL);

  /* Invalid requests are answered and the connection stays usable. */
  fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  struct seg_req q;
  seg_init(&q, 1, png, size, "nosuchmodel");
  assert_int_equal(send_request(fd, &q.r), 0);
  /* Signature and IHDR intact, the image data garbage. */
  uint8_t corrupt[96];
  memcpy(corrupt, png, 33);
  memset(corrupt + 33, 0x5a, sizeof corrupt - 33);
  seg_init(&q, 2, corrupt, sizeof corrupt, "a");
  assert_int_equal(send_request(fd, &q.r), 0);
  uint8_t pixels[100] = {0};
  seg_init(&q, 3, NULL, 0, "a");
  osseg__wire__raw_image__init(&q.raw);
  q.raw.width = 10;
  q.raw.height = 11; /* 110 pixels, 100 bytes sent */
  q.raw.bit_depth = 8;
  q.raw.pixels.data = pixels;
  q.raw.pixels.len = sizeof pixels;
  q.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_RAW;
  q.s.raw = &q.raw;
  assert_int_equal(send_request(fd, &q.r), 0);
  seg_init(&q, 4, png, size, "a");
  q.s.has_threshold = 1;
  q.s.threshold = 2.0f;
  assert_int_equal(send_request(fd, &q.r), 0);
  Osseg__Wire__Request hr;
  simple_req(&hr, 5, OSSEG__WIRE__REQUEST__KIND_HEALTH);
  assert_int_equal(send_request(fd, &hr), 0);
  struct result x[5];
  memset(x, 0, sizeof x);
  for (int i = 0; i < 5; i++) x[i].id = (uint64_t)i + 1;
  assert_int_equal(collect(fd, x, 5), 0);
  assert_int_equal(x[0].error, CODE(UNKNOWN_MODEL) + 1);
  assert_non_null(strstr(x[0].message, "models[0]: no model named 'nosuchmodel'"));
  assert_int_equal(x[1].error, CODE(BAD_IMAGE) + 1);
  assert_int_equal(x[2].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x[2].message, "image.raw.pixels"));
  assert_int_equal(x[3].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x[3].message, "threshold"));
  assert_int_equal(x[4].other, OSSEG__WIRE__RESPONSE__KIND_HEALTH);
  for (int i = 0; i < 5; i++) result_free(&x[i]);
  close(fd);
}

static void test_list_models_and_stats(void **state) {
  (void)state;
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  Osseg__Wire__Request r;
  simple_req(&r, 1, OSSEG__WIRE__REQUEST__KIND_LIST_MODELS);
  assert_int_equal(send_request(fd, &r), 0);
  simple_req(&r, 2, OSSEG__WIRE__REQUEST__KIND_STATS);
  assert_int_equal(send_request(fd, &r), 0);
  struct result x[2] = {{.id = 1}, {.id = 2}};
  assert_int_equal(collect(fd, x, 2), 0);
  Osseg__Wire__ModelList *ml = x[0].kept->models;
  assert_int_equal(ml->n_models, 2);
  for (size_t i = 0; i < 2; i++) {
    Osseg__Wire__ModelInfo *m = ml->models[i];
    assert_string_equal(m->name, i ? "b" : "a");
    assert_int_equal(strlen(m->sha256), 64);
    assert_int_equal(m->input_size, 64);
    assert_string_equal(m->precision, "fp32");
    assert_int_equal(m->n_classes, 29);
    assert_string_equal(m->classes[28], "Ulna");
    assert_true(m->has_generation && m->generation >= 1);
  }
  struct osseg_loaded_model *lm;
  assert_int_equal(osseg_registry_get(ref_reg, "a", &lm), 0);
  assert_string_equal(ml->models[0]->sha256, osseg_loaded_model_sha256(lm));
  osseg_loaded_model_unref(lm);
  Osseg__Wire__Stats *st = x[1].kept->stats;
  assert_int_equal(st->n_outcomes, 9);
  assert_string_equal(st->outcomes[0]->name, "ok");
  assert_true(st->connections >= 1);
  assert_true(st->bytes_in > 0 && st->bytes_out > 0);
  assert_int_equal(st->n_models, 2);
  assert_true(st->n_latency > 0);
  /* Earlier tests: successes, an unknown model, a corrupt PNG. */
  assert_true(st->outcomes[0]->count >= 10);
  assert_string_equal(st->outcomes[CODE(UNKNOWN_MODEL) + 1]->name, "UNKNOWN_MODEL");
  assert_true(st->outcomes[CODE(UNKNOWN_MODEL) + 1]->count >= 1);
  assert_true(st->outcomes[CODE(BAD_IMAGE) + 1]->count >= 1);
  /* Buckets are cumulative: the last (infinity) counts every success. */
  assert_int_equal(st->latency[st->n_latency - 1]->count, st->outcomes[0]->count);
  for (size_t i = 1; i < st->n_latency; i++)
    assert_true(st->latency[i]->count >= st->latency[i - 1]->count);
  assert_true(st->models[0]->runs >= 10);
  assert_true(st->models[0]->mean_ms > 0 && st->models[0]->max_ms >= st->models[0]->mean_ms);
  result_free(&x[0]);
  result_free(&x[1]);
  close(fd);
}

/* Big images keep the workers busy for a while. */
static uint8_t *big_png;
static size_t big_png_size;
static const uint8_t *busy_png(size_t *size) {
  if (!big_png) big_png = make_png(1536, 1536, 9, &big_png_size);
  *size = big_png_size;
  return big_png;
}

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
  int status = 0;
  assert_int_equal(waitpid(d.pid, &status, 0), d.pid);
  live_remove(d.pid);
  d.pid = 0;
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  struct stat st;
  assert_int_equal(stat(d.sock, &st), -1); /* the socket file is gone */
}

/* More requests than the in-flight limit in one write, and a client that
 * does not read for a while: slowed down, never refused or stuck. */
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
  usleep(300000); /* not reading: the daemon's write queue fills */
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

/* Sends one frame with a descriptor attached to its first byte. */
static int send_request_fd(int sock, const Osseg__Wire__Request *r, int fd) {
  size_t n = osseg__wire__request__get_packed_size(r);
  uint8_t *f = malloc(n + 4);
  assert_non_null(f);
  f[0] = (uint8_t)n;
  f[1] = (uint8_t)(n >> 8);
  f[2] = (uint8_t)(n >> 16);
  f[3] = (uint8_t)(n >> 24);
  osseg__wire__request__pack(r, f + 4);
  struct iovec iov = {.iov_base = f, .iov_len = 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  int rc = sendmsg(sock, &m, MSG_NOSIGNAL) == 1 ? write_all(sock, f + 1, n + 3) : -1;
  free(f);
  return rc;
}

static void test_image_fd(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a"};
  struct ref ref;
  reference(&ref, png, size, models, 1, 0, NULL);
  const char *dir = test_tmpdir();
  const char *path = test_path("%s/hand.png", dir);
  assert_int_equal(test_write_file(path, png, size), 0);
  int sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  Osseg__Wire__ImageFd imfd = OSSEG__WIRE__IMAGE_FD__INIT;
  struct result x[4];
  memset(x, 0, sizeof x);
  /* Two files in a row, the second read from a moved offset. */
  for (int i = 0; i < 2; i++) {
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    if (i == 1) assert_true(lseek(fd, 10, SEEK_SET) == 10);
    struct seg_req q;
    seg_init(&q, (uint64_t)i, NULL, 0, "a");
    q.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_FD;
    q.s.fd = &imfd;
    assert_int_equal(send_request_fd(sock, &q.r, fd), 0);
    close(fd); /* the daemon has its own copy */
    x[i].id = (uint64_t)i;
  }
  /* A directory. */
  struct seg_req q;
  seg_init(&q, 3, NULL, 0, "a");
  q.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_FD;
  q.s.fd = &imfd;
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  assert_true(dfd >= 0);
  assert_int_equal(send_request_fd(sock, &q.r, dfd), 0);
  close(dfd);
  x[2].id = 3;
  assert_int_equal(collect(sock, x, 3), 0);
  compare(&x[0], &ref);
  compare(&x[1], &ref);
  assert_int_equal(x[2].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x[2].message, "not a regular file"));
  /* No descriptor at all (pairing is first come, first served, so this is
   * tested alone on its connection). */
  int sock2 = try_connect(shared.sock);
  assert_true(sock2 >= 0);
  q.r.id = 2;
  assert_int_equal(send_request_fd(sock2, &q.r, -1), 0);
  x[3].id = 2;
  assert_int_equal(collect(sock2, &x[3], 1), 0);
  assert_int_equal(x[3].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x[3].message, "image.fd: no file descriptor"));
  close(sock2);
  for (int i = 0; i < 4; i++) result_free(&x[i]);
  close(sock);
  ref_free(&ref);
}

/* The response that ends request id (Done or Error), skipping its masks;
 * the caller frees it. */
static Osseg__Wire__Response *recv_final(int fd, uint64_t id) {
  for (;;) {
    Osseg__Wire__Response *r = recv_response(fd);
    assert_non_null(r);
    assert_true(r->id == id);
    if (r->kind_case == OSSEG__WIRE__RESPONSE__KIND_DONE ||
        r->kind_case == OSSEG__WIRE__RESPONSE__KIND_ERROR)
      return r;
    osseg__wire__response__free_unpacked(r, NULL);
  }
}

static const char *demo_model(void) {
  return test_path("%s/data/models/unetpp_demo.onnx", test_source_dir());
}

/* Done and Stats carry each model's own engine time: a 256x256 model next
 * to a 64x64 one in one ensemble takes longer, and Stats reports exactly
 * the times Done did. */
static void test_model_times(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *dir = test_tmpdir();
  char big[512];
  snprintf(big, sizeof big, "big=%s", demo_model());
  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, "--model", big, NULL), 0);
  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  struct seg_req q;
  seg_init(&q, 1, png, size, "big");
  q.models[1] = "a";
  q.s.n_models = 2;
  assert_int_equal(send_request(fd, &q.r), 0);
  Osseg__Wire__Response *r = recv_final(fd, 1);
  assert_int_equal(r->kind_case, OSSEG__WIRE__RESPONSE__KIND_DONE);
  Osseg__Wire__Done *done = r->done;
  assert_int_equal(done->n_inference, 2);
  assert_string_equal(done->inference[0]->model, "big");
  assert_string_equal(done->inference[1]->model, "a");
  double big_ms = done->inference[0]->ms, a_ms = done->inference[1]->ms;
  assert_true(a_ms > 0 && big_ms > a_ms);
  assert_true(done->decode_ms + done->preprocess_ms + big_ms + a_ms + done->postprocess_ms <=
              done->total_ms + 1e-6);
  osseg__wire__response__free_unpacked(r, NULL);

  Osseg__Wire__Request sr;
  simple_req(&sr, 2, OSSEG__WIRE__REQUEST__KIND_STATS);
  assert_int_equal(send_request(fd, &sr), 0);
  r = recv_response(fd);
  assert_non_null(r);
  assert_int_equal(r->kind_case, OSSEG__WIRE__RESPONSE__KIND_STATS);
  int seen = 0;
  for (size_t i = 0; i < r->stats->n_models; i++) {
    const Osseg__Wire__Stats__ModelStats *m = r->stats->models[i];
    double want = strcmp(m->model, "big") == 0 ? big_ms : strcmp(m->model, "a") == 0 ? a_ms : 0;
    if (want == 0) {
      assert_int_equal(m->runs, 0); /* b did not run */
      continue;
    }
    assert_int_equal(m->runs, 1);
    assert_true(m->mean_ms == want && m->max_ms == want);
    seen++;
  }
  assert_int_equal(seen, 2);
  osseg__wire__response__free_unpacked(r, NULL);
  close(fd);
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

static void test_startup(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char sock[300];
  snprintf(sock, sizeof sock, "%s/ossegd.sock", dir);
  char *err = NULL;
  /* A model that does not load: exit 1, naming the file, and no socket. */
  char arg[1024];
  snprintf(arg, sizeof arg, "x=%s/missing.onnx", dir);
  assert_int_equal(daemon_fail(sock, &err, "--model", arg, NULL), 1);
  assert_non_null(strstr(err, "missing.onnx"));
  free(err);
  struct stat st;
  assert_int_equal(stat(sock, &st), -1);
  /* Model options reach the registry: normalize keeps its commas, and two
   * class names for 29 channels is the model's error. */
  snprintf(arg, sizeof arg, "c=%s,normalize=mean=0.5,0.5,0.5;std=0.2,0.2,0.2,classes=x;y",
           model_file("unetpp_r18_tiny_op13"));
  assert_int_equal(daemon_fail(sock, &err, "--model", arg, NULL), 1);
  assert_non_null(strstr(err, "2 class names for 29 output channels"));
  free(err);
  /* Bad usage: exit 2. */
  assert_int_equal(daemon_fail(sock, &err, "--max-queue", "zero", NULL), 2);
  assert_non_null(strstr(err, "--max-queue"));
  free(err);
  assert_int_equal(daemon_fail(sock, &err, "--model", "nameonly", NULL), 2);
  free(err);
  snprintf(arg, sizeof arg, "d=%s,precision=bf17", model_file("unetpp_r18_tiny_op13"));
  assert_int_equal(daemon_fail(sock, &err, "--model", arg, NULL), 2);
  assert_non_null(strstr(err, "precision must be fp32, bf16 or bf16-mixed, not 'bf17'"));
  free(err);

  /* A stale socket file is replaced; a live one is refused. */
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  assert_true(strlen(sock) < sizeof a.sun_path);
  memcpy(a.sun_path, sock, strlen(sock) + 1);
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  close(s); /* the file stays, nobody listens */
  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, NULL), 0);
  assert_int_equal(stat(d.sock, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0660);
  assert_int_equal(daemon_fail(sock, &err, NULL), 1);
  assert_non_null(strstr(err, "another daemon listens"));
  free(err);
  Osseg__Wire__Response *h = health(&d); /* the first is unharmed */
  osseg__wire__response__free_unpacked(h, NULL);
  assert_int_equal(daemon_stop(&d, 20), 0);
  assert_int_equal(stat(sock, &st), -1);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_segment_matches_pipeline),
      cmocka_unit_test(test_ensembles),
      cmocka_unit_test(test_dice),
      cmocka_unit_test(test_label_json),
      cmocka_unit_test(test_pipelined),
      cmocka_unit_test(test_concurrent_connections),
      cmocka_unit_test(test_bad_inputs),
      cmocka_unit_test(test_list_models_and_stats),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_disconnect_and_health_while_busy),
      cmocka_unit_test(test_busy_and_drain),
      cmocka_unit_test(test_image_fd),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_model_times),
      cmocka_unit_test(test_queued_deadline),
      cmocka_unit_test(test_startup),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
