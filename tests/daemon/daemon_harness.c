/* The harness of the ossegd integration tests; see daemon_harness.h. */
#include "daemon_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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

#include "test_support.h"

/* ------------------------------------------------------------ daemon --- */

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

const char *model_file(const char *name) {
  return test_path("%s/tests/data/models/%s.onnx", test_source_dir(), name);
}

double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int try_connect(const char *path) {
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

/* Starts ossegd with the two standard models plus the extra arguments
 * (a NULL-terminated list) and waits until it accepts a connection.
 * Returns 0, or the exit status if it ended first. */
/* The standard models' --model arguments. */
struct std_models {
  char a[512], b[512];
};

/* Puts "ossegd --socket SOCK --model a=... --model b=..." at argv[0, 7);
 * returns 7. */
static int std_argv(const char **argv, const char *sock, struct std_models *m) {
  snprintf(m->a, sizeof m->a, "a=%s", model_file("unetpp_r18_tiny_op13"));
  snprintf(m->b, sizeof m->b, "b=%s", model_file("unet_effb0_tiny_op13"));
  int n = 0;
  argv[n++] = test_path("%s/bin/ossegd", test_binary_dir());
  argv[n++] = "--socket";
  argv[n++] = sock;
  argv[n++] = "--model";
  argv[n++] = m->a;
  argv[n++] = "--model";
  argv[n++] = m->b;
  return n;
}

static int daemon_start_list(struct daemon *d, const char *dir, const char *const *extra) {
  const char *argv[64];
  char sock[sizeof d->sock];
  snprintf(sock, sizeof sock, "%s/ossegd.sock", dir);
  struct std_models m;
  int n = std_argv(argv, sock, &m);
  argv[n++] = "--threads";
  argv[n++] = "1";
  for (size_t i = 0; extra[i] && n < 62; i++) argv[n++] = extra[i];
  argv[n] = NULL;
  return daemon_start_argv(d, dir, sock, NULL, argv, 1);
}

int daemon_start_argv(struct daemon *d, const char *dir, const char *sock,
                      const char *const *env, const char *const *argv, int wait) {
  snprintf(d->sock, sizeof d->sock, "%s", sock);
  snprintf(d->log, sizeof d->log, "%s/ossegd.log", dir);
  d->pid = fork();
  assert_true(d->pid >= 0);
  if (d->pid == 0) {
    int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 2);
      dup2(fd, 1);
    }
    for (size_t i = 0; env && env[i]; i++) {
      char name[128], pid[32];
      const char *eq = strchr(env[i], '=');
      if (!eq || (size_t)(eq - env[i]) >= sizeof name) _exit(126);
      memcpy(name, env[i], (size_t)(eq - env[i]));
      name[eq - env[i]] = '\0';
      snprintf(pid, sizeof pid, "%d", (int)getpid());
      setenv(name, strcmp(eq + 1, "@pid") == 0 ? pid : eq + 1, 1);
    }
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  live_add(d->pid);
  if (!wait) return 0;
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

int argv_append_va(const char **argv, int n, int max, va_list ap) {
  const char *a;
  while (n < max - 1 && (a = va_arg(ap, const char *)) != NULL) argv[n++] = a;
  argv[n] = NULL;
  return n;
}

/* Runs ossegd with the two standard models and the extra arguments,
 * expecting it to exit; returns its status, *err its stderr. */
int daemon_fail(const char *sock, char **err, ...) {
  const char *argv[32];
  struct std_models m;
  va_list ap;
  va_start(ap, err);
  argv_append_va(argv, std_argv(argv, sock, &m), 31, ap);
  va_end(ap);
  return test_run(argv, NULL, err, 60);
}

int ossegd_run(char **out, char **err, ...) {
  const char *argv[32];
  argv[0] = test_path("%s/bin/ossegd", test_binary_dir());
  va_list ap;
  va_start(ap, err);
  argv_append_va(argv, 1, 31, ap);
  va_end(ap);
  return test_run(argv, out, err, 60);
}

int daemon_start(struct daemon *d, const char *dir, ...) {
  const char *extra[56];
  va_list ap;
  va_start(ap, dir);
  argv_append_va(extra, 0, 56, ap);
  va_end(ap);
  return daemon_start_list(d, dir, extra);
}

/* SIGTERM, then SIGKILL after timeout_s; returns the exit status (128+sig
 * if killed). */
/* Daemons that exited with a status other than 0 (harness_exit). */
static int bad_exits;

/* Records how a reaped daemon ended; a bad end is counted and its log
 * (where a sanitizer report goes) printed. */
static int reaped(struct daemon *d, int status) {
  live_remove(d->pid);
  d->pid = 0;
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (code != 0) {
    bad_exits++;
    size_t n = 0;
    char *log = test_read_file(d->log, &n);
    const char *tail = log && n > 16384 ? log + n - 16384 : log;
    fprintf(stderr, "ossegd (%s) exited with status %d; its log:\n%s\n", d->sock, code,
            tail ? tail : "(none)");
    free(log);
  }
  return code;
}

int daemon_stop(struct daemon *d, double timeout_s) {
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
  return reaped(d, status);
}

int daemon_wait(struct daemon *d) {
  if (d->pid <= 0) return -1;
  int status = 0;
  pid_t r;
  while ((r = waitpid(d->pid, &status, 0)) < 0 && errno == EINTR) {
  }
  assert_int_equal(r, d->pid);
  return reaped(d, status);
}

uint64_t daemon_peak_rss_kib(const struct daemon *d) {
  char *st = test_read_file(test_path("/proc/%d/status", (int)d->pid), NULL);
  assert_non_null(st);
  const char *p = strstr(st, "VmHWM:");
  assert_non_null(p);
  uint64_t kib = strtoull(p + 6, NULL, 10);
  free(st);
  return kib;
}

/* ---------------------------------------------------------- protocol --- */

int write_all(int fd, const void *p, size_t n) {
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

/* r as one frame (a 4-byte little-endian length, then the payload);
 * *len its size. free() it. */
static uint8_t *pack_frame(const Osseg__Wire__Request *r, size_t *len) {
  uint8_t *f = NULL;
  *len = 0;
  frame_append(&f, len, r);
  return f;
}

int send_request(int fd, const Osseg__Wire__Request *r) {
  size_t len;
  uint8_t *f = pack_frame(r, &len);
  int rc = write_all(fd, f, len);
  free(f);
  return rc;
}

/* Grows *buf by a frame of n payload bytes, its length written; returns
 * where the payload goes. */
static uint8_t *frame_grow(uint8_t **buf, size_t *len, size_t n) {
  *buf = realloc(*buf, *len + n + 4);
  assert_non_null(*buf);
  uint8_t *f = *buf + *len;
  f[0] = (uint8_t)n;
  f[1] = (uint8_t)(n >> 8);
  f[2] = (uint8_t)(n >> 16);
  f[3] = (uint8_t)(n >> 24);
  *len += n + 4;
  return f + 4;
}

/* Appends a framed request to a growing buffer (to send many at once). */
void frame_append(uint8_t **buf, size_t *len, const Osseg__Wire__Request *r) {
  size_t n = osseg__wire__request__get_packed_size(r);
  osseg__wire__request__pack(r, frame_grow(buf, len, n));
}

void frame_append_raw(uint8_t **buf, size_t *len, const void *payload, size_t n) {
  uint8_t *f = frame_grow(buf, len, n);
  if (n) memcpy(f, payload, n);
}

/* Reads exactly n bytes; 0, or -1 on EOF/error/timeout. */
int read_all(int fd, void *p, size_t n, int timeout_ms) {
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

/* Reads one frame: 0 with *r the response (NULL if it does not parse),
 * -1 at EOF/error/timeout (30 s), -2 when its payload is over max bytes
 * or cannot be allocated. No cmocka asserts. */
static int recv_frame(int fd, uint32_t max, Osseg__Wire__Response **r) {
  *r = NULL;
  uint8_t h[4];
  if (read_all(fd, h, 4, 30000) != 0) return -1;
  uint32_t n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
  if (n > max) return -2;
  uint8_t *b = malloc(n ? n : 1);
  if (!b) return -2;
  int rc = read_all(fd, b, n, 30000);
  if (rc == 0) *r = osseg__wire__response__unpack(NULL, n, b);
  free(b);
  return rc;
}

/* The next response, or NULL at EOF (or after 30 s). */
Osseg__Wire__Response *recv_response(int fd) {
  Osseg__Wire__Response *r;
  int rc = recv_frame(fd, UINT32_MAX, &r);
  assert_int_not_equal(rc, -2);
  if (rc != 0) return NULL;
  assert_non_null(r);
  return r;
}

Osseg__Wire__Response *recv_response_nofail(int fd) {
  Osseg__Wire__Response *r;
  recv_frame(fd, 1u << 26, &r);
  return r;
}

/* Whether the daemon closed the connection (EOF within 10 s). */
int closed_by_peer(int fd) {
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

void result_free(struct result *r) {
  for (int i = 0; i < OSSEG_MAX_CLASSES; i++) {
    free(r->rle[i]);
    free(r->png[i]);
  }
  if (r->kept) osseg__wire__response__free_unpacked(r->kept, NULL);
  memset(r, 0, sizeof *r);
}

/* Reads responses until every one of the n results (ids set) has ended.
 * Returns 0, or -1 if the connection ended first. */
int collect(int fd, struct result *res, size_t n) {
  size_t open = n;
  unsigned ended = 0;
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
    if (x->ended) {
      open--;
      x->order = ++ended;
    }
    if (!keep) osseg__wire__response__free_unpacked(r, NULL);
  }
  return 0;
}

/* ------------------------------------------------------------ images --- */

/* A synthetic radiograph-like image: a gradient with bright blobs. */
void make_image(struct osseg_image *img, uint32_t w, uint32_t h, uint32_t seed) {
  assert_int_equal(osseg_image_init(img, w, h, 1, 8), 0);
  for (uint32_t y = 0; y < h; y++)
    for (uint32_t x = 0; x < w; x++) {
      uint32_t v = (x * 255 / w + y * 128 / h + seed * 31) & 0xff;
      int dx = (int)x - (int)(w / 3), dy = (int)y - (int)(h / 2);
      if (dx * dx + dy * dy < (int)(w * w / 25)) v = 250 - (seed & 7);
      img->data[(size_t)y * img->stride + x] = (uint8_t)v;
    }
}

uint8_t *make_png(uint32_t w, uint32_t h, uint32_t seed, size_t *size) {
  struct osseg_image img;
  make_image(&img, w, h, seed);
  uint8_t *png = NULL;
  assert_int_equal(osseg_png_encode_mem(&img, 1, &png, size, NULL), 0);
  osseg_image_free(&img);
  return png;
}

static uint8_t *png64, *big_png;
static size_t png64_size, big_png_size;

const uint8_t *test_png(size_t *size) {
  if (!png64) png64 = make_png(96, 80, 3, &png64_size);
  *size = png64_size;
  return png64;
}

/* Big images keep the workers busy for a while. */
const uint8_t *busy_png(size_t *size) {
  if (!big_png) big_png = make_png(1536, 1536, 9, &big_png_size);
  *size = big_png_size;
  return big_png;
}

static uint32_t crc32_png(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xffffffffu;
}

static uint8_t *be32_put(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
  return p + 4;
}

/* Writes one chunk at p; returns the end. */
static uint8_t *chunk(uint8_t *p, const char *type, const void *data, size_t n) {
  uint8_t *start = p + 4;
  p = be32_put(p, (uint32_t)n);
  memcpy(p, type, 4);
  if (n) memcpy(p + 4, data, n);
  p += 4 + n;
  return be32_put(p, crc32_png(start, 4 + n));
}

uint8_t *make_png_raw(uint32_t width, uint32_t height, const void *idat, size_t n,
                      size_t *size) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t *png = malloc(8 + 25 + 12 + n + 12);
  assert_non_null(png);
  memcpy(png, sig, 8);
  uint8_t ihdr[13];
  be32_put(ihdr, width);
  be32_put(ihdr + 4, height);
  ihdr[8] = 8; /* bit depth */
  ihdr[9] = 0; /* gray */
  ihdr[10] = ihdr[11] = ihdr[12] = 0;
  uint8_t *p = chunk(png + 8, "IHDR", ihdr, sizeof ihdr);
  p = chunk(p, "IDAT", idat, n);
  p = chunk(p, "IEND", NULL, 0);
  *size = (size_t)(p - png);
  return png;
}

/* --------------------------------------------------------- reference --- */

struct osseg_registry *ref_reg;

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
void reference(struct ref *out, const uint8_t *png, size_t size, const char *const *models,
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

void ref_free(struct ref *r) {
  for (int i = 0; i < OSSEG_MAX_CLASSES; i++) free(r->rle[i]);
}

/* ---------------------------------------------------------- requests --- */

void seg_init(struct seg_req *q, uint64_t id, const uint8_t *png, size_t size,
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

void seg_set_raw(struct seg_req *q, uint32_t w, uint32_t h, uint32_t bit_depth,
                 const uint8_t *pixels, size_t len) {
  osseg__wire__raw_image__init(&q->raw);
  q->raw.width = w;
  q->raw.height = h;
  q->raw.bit_depth = bit_depth;
  q->raw.pixels.data = (uint8_t *)pixels;
  q->raw.pixels.len = len;
  q->s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_RAW;
  q->s.raw = &q->raw;
}

void seg_set_fd(struct seg_req *q) {
  osseg__wire__image_fd__init(&q->fd);
  q->s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_FD;
  q->s.fd = &q->fd;
}

void seg_add_gt(struct seg_req *q, const char *cls, const char *rle) {
  if (!q->s.ground_truth) {
    osseg__wire__ground_truth__init(&q->gt);
    osseg__wire__class_rles__init(&q->rles);
    q->gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES;
    q->gt.rles = &q->rles;
    q->rles.classes = q->rlep;
    q->s.ground_truth = &q->gt;
  }
  size_t i = q->rles.n_classes++;
  assert_true(i < OSSEG_MAX_CLASSES);
  osseg__wire__class_rle__init(&q->rle[i]);
  q->rle[i].name = (char *)cls;
  q->rle[i].rle = (char *)rle;
  q->rlep[i] = &q->rle[i];
}

void simple_req(Osseg__Wire__Request *r, uint64_t id, int kind) {
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

Osseg__Wire__Response *ask_fresh(const struct daemon *d, int kind, int resp_kind) {
  int fd = try_connect(d->sock);
  assert_true(fd >= 0);
  Osseg__Wire__Request r;
  simple_req(&r, 1, kind);
  assert_int_equal(send_request(fd, &r), 0);
  Osseg__Wire__Response *resp = recv_response(fd);
  close(fd);
  assert_non_null(resp);
  assert_int_equal(resp->kind_case, resp_kind);
  return resp;
}

/* Asks Health on a fresh connection; returns the response (caller frees). */
Osseg__Wire__Response *health(const struct daemon *d) {
  return ask_fresh(d, OSSEG__WIRE__REQUEST__KIND_HEALTH, OSSEG__WIRE__RESPONSE__KIND_HEALTH);
}

Osseg__Wire__Response *stats(const struct daemon *d) {
  return ask_fresh(d, OSSEG__WIRE__REQUEST__KIND_STATS, OSSEG__WIRE__RESPONSE__KIND_STATS);
}

void segment_outcome(int fd, struct seg_req *q, int *code, char *msg, size_t msg_size) {
  assert_int_equal(send_request(fd, &q->r), 0);
  struct result x = {.id = q->r.id};
  assert_int_equal(collect(fd, &x, 1), 0);
  *code = x.error;
  snprintf(msg, msg_size, "%s", x.message);
  result_free(&x);
}

/* The pipeline's masks of the standard image with model "a", made once. */
static struct ref serving_ref;
static int have_serving_ref;

void assert_still_serving(const struct daemon *d) {
  Osseg__Wire__Response *h = health(d);
  assert_true(h->health->ready);
  osseg__wire__response__free_unpacked(h, NULL);
  size_t size;
  const uint8_t *png = test_png(&size);
  if (!have_serving_ref) {
    const char *models[] = {"a"};
    reference(&serving_ref, png, size, models, 1, 0, NULL);
    have_serving_ref = 1;
  }
  int fd = try_connect(d->sock);
  assert_true(fd >= 0);
  struct seg_req q;
  seg_init(&q, 77, png, size, "a");
  assert_int_equal(send_request(fd, &q.r), 0);
  struct result x = {.id = 77};
  assert_int_equal(collect(fd, &x, 1), 0);
  compare(&x, &serving_ref);
  result_free(&x);
  close(fd);
}

void compare(const struct result *x, const struct ref *ref) {
  assert_int_equal(x->error, 0);
  assert_true(x->done);
  assert_true(x->in_order);
  assert_int_equal((size_t)x->nmasks, ref->n);
  for (size_t c = 0; c < ref->n; c++) {
    assert_non_null(x->rle[c]);
    assert_string_equal(x->rle[c], ref->rle[c]);
  }
}

/* Sends one frame with a descriptor attached to its first byte. */
int send_request_fd(int sock, const Osseg__Wire__Request *r, int fd) {
  size_t len;
  uint8_t *f = pack_frame(r, &len);
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
  int rc = sendmsg(sock, &m, MSG_NOSIGNAL) == 1 ? write_all(sock, f + 1, len - 1) : -1;
  free(f);
  return rc;
}

/* The response that ends request id (Done or Error), skipping its masks;
 * the caller frees it. */
Osseg__Wire__Response *recv_final(int fd, uint64_t id) {
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

const char *demo_model(void) {
  return test_path("%s/data/models/unetpp_demo.onnx", test_source_dir());
}

/* ------------------------------------------------------------- group --- */

int harness_setup(void) {
  /* Under the sanitizer build, a leak in ossegd (LeakSanitizer checks when
   * it returns from main) or a memory error must end it with a status of
   * its own, distinct from ossegd's 1 and 2, whatever ASAN_OPTIONS the
   * caller set: appended options win. Set here, before any thread exists,
   * for every ossegd this program starts; a build without ASan ignores
   * the variable, and this process's own ASan has read its options
   * already. */
  const char *old = getenv("ASAN_OPTIONS");
  char opts[1024];
  snprintf(opts, sizeof opts, "%s%sdetect_leaks=1:exitcode=%d", old ? old : "",
           old && old[0] ? ":" : "", HARNESS_SANITIZER_EXIT);
  if (setenv("ASAN_OPTIONS", opts, 1) != 0) return -1;
  if (osseg_registry_create(&ref_reg, NULL) != 0) return -1;
  struct osseg_model_spec sa = {.name = "a", .path = model_file("unetpp_r18_tiny_op13")};
  struct osseg_model_spec sb = {.name = "b", .path = model_file("unet_effb0_tiny_op13")};
  if (osseg_registry_load(ref_reg, &sa, NULL, NULL) ||
      osseg_registry_load(ref_reg, &sb, NULL, NULL))
    return -1;
  return 0;
}

void harness_stop_left(void) {
  for (int i = 0; i < 16; i++)
    if (live[i]) {
      struct daemon left = {.pid = live[i]};
      daemon_stop(&left, 5);
    }
}

void harness_teardown(void) {
  harness_stop_left();
  if (have_serving_ref) ref_free(&serving_ref);
  have_serving_ref = 0;
  osseg_registry_free(ref_reg);
  ref_reg = NULL;
  free(png64);
  free(big_png);
  png64 = big_png = NULL;
}

int harness_group_setup(void **state) {
  (void)state;
  return harness_setup();
}

int harness_group_teardown(void **state) {
  (void)state;
  harness_teardown();
  return 0;
}

/* The group's shared daemon and its extra arguments (harness_share). */
static struct daemon *shared_d;
static const char *shared_args[32];

void harness_share(struct daemon *d, ...) {
  shared_d = d;
  va_list ap;
  va_start(ap, d);
  argv_append_va(shared_args, 0, 32, ap);
  va_end(ap);
}

int harness_shared_group_setup(void **state) {
  (void)state;
  if (harness_setup() != 0) return -1;
  const char *dir = test_tmpdir();
  if (!dir) return -1;
  return daemon_start_list(shared_d, dir, shared_args) == 0 ? 0 : -1;
}

int harness_shared_group_teardown(void **state) {
  (void)state;
  int st = daemon_stop(shared_d, 20);
  harness_teardown();
  return st == 0 ? 0 : -1;
}

int harness_exit(int cmocka_failures) {
  if (bad_exits == 0) return cmocka_failures;
  fprintf(stderr, "[  FAILED  ] %d ossegd process(es) exited with a status other than 0\n",
          bad_exits);
  return cmocka_failures + 1;
}
