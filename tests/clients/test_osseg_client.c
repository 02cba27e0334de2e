/* Tests of the client library (clients/osseg_client.c) against a fake
 * daemon written here: the other end of a socketpair, or a Unix socket
 * served by a thread, speaking the framing of proto/osseg.proto. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "osseg_client.h"
#include "test_support.h"

/* ------------------------------------------------------- fake server --- */

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void write_all_fd(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    assert_true(w > 0);
    b += w;
    n -= (size_t)w;
  }
}

static int read_exact(int fd, void *p, size_t n) {
  uint8_t *b = p;
  while (n > 0) {
    ssize_t r = read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    b += r;
    n -= (size_t)r;
  }
  return 0;
}

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

/* A whole response frame in a malloc'ed buffer. */
static uint8_t *pack_response(const Osseg__Wire__Response *r, size_t *len) {
  size_t n = osseg__wire__response__get_packed_size(r);
  uint8_t *buf = malloc(n + 4);
  assert_non_null(buf);
  put_le32(buf, (uint32_t)n);
  osseg__wire__response__pack(r, buf + 4);
  *len = n + 4;
  return buf;
}

static void send_response(int fd, const Osseg__Wire__Response *r) {
  size_t len;
  uint8_t *buf = pack_response(r, &len);
  write_all_fd(fd, buf, len);
  free(buf);
}

/* Reads one request frame; *passed gets a descriptor that came with it
 * (SCM_RIGHTS) or -1. NULL at EOF. */
static Osseg__Wire__Request *read_request(int fd, int *passed) {
  uint8_t hdr[4];
  if (passed) *passed = -1;
  /* The first byte with recvmsg: a passed descriptor travels with it. */
  struct iovec iov = {.iov_base = hdr, .iov_len = 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                       .msg_controllen = sizeof ctl.buf};
  ssize_t r;
  do r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r != 1) return NULL;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      int got;
      memcpy(&got, CMSG_DATA(cm), sizeof got);
      if (passed) *passed = got;
      else close(got);
    }
  if (read_exact(fd, hdr + 1, 3)) return NULL;
  uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
               (uint32_t)hdr[3] << 24;
  uint8_t *body = malloc(n ? n : 1);
  assert_non_null(body);
  if (read_exact(fd, body, n)) {
    free(body);
    return NULL;
  }
  Osseg__Wire__Request *req = osseg__wire__request__unpack(NULL, n, body);
  free(body);
  return req;
}

static osseg_client_t *pair(int *server) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  osseg_client_t *c = NULL;
  char err[OSSEG_CLIENT_MSG_SIZE];
  assert_int_equal(osseg_client_from_fd(&c, sv[0], err), 0);
  *server = sv[1];
  return c;
}

static Osseg__Wire__Response done_response(uint64_t id, double total_ms) {
  static Osseg__Wire__Done done;
  osseg__wire__done__init(&done);
  done.width = 2048;
  done.height = 1024;
  done.total_ms = total_ms;
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  r.id = id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_DONE;
  r.done = &done;
  return r;
}

/* ---------------------------------------------------------------- tests --- */

static void test_round_trip(void **state) {
  (void)state;
  int srv;
  osseg_client_t *c = pair(&srv);
  static const uint8_t png[] = {0x89, 'P', 'N', 'G', 0, 1, 2, 3};
  const char *models[] = {"tiny", "big"};
  struct osseg_client_segment s;
  uint64_t id = osseg_client_next_id(c);
  assert_int_equal(id, 1);
  osseg_client_segment_png(&s, id, png, sizeof png, "hand 1.png");
  osseg_client_segment_set_models(&s, models, 2);
  osseg_client_segment_set_vote(&s, 1, -1);
  s.seg.has_threshold = 1;
  s.seg.threshold = 0.25f;
  static const char labels[] =
      "{\"annotations\": [{\"label\": \"Ulna\", \"points\": [[1, 2], [9, 2], [5, 8]]}]}";
  osseg_client_segment_set_label_json(&s, labels);
  assert_int_equal(osseg_client_send(c, &s.req, -1), 0);

  int passed;
  Osseg__Wire__Request *req = read_request(srv, &passed);
  assert_non_null(req);
  assert_int_equal(passed, -1);
  assert_int_equal(req->id, 1);
  assert_int_equal(req->version, OSSEG__WIRE__VERSION__VERSION_1);
  assert_int_equal(req->kind_case, OSSEG__WIRE__REQUEST__KIND_SEGMENT);
  assert_int_equal(req->segment->image_case, OSSEG__WIRE__SEGMENT__IMAGE_PNG);
  assert_int_equal(req->segment->png.len, sizeof png);
  assert_memory_equal(req->segment->png.data, png, sizeof png);
  assert_string_equal(req->segment->image_name, "hand 1.png");
  assert_int_equal(req->segment->n_models, 2);
  assert_string_equal(req->segment->models[1], "big");
  assert_int_equal(req->segment->vote->kind, OSSEG__WIRE__VOTE__KIND__SOFT);
  assert_false(req->segment->vote->has_threshold);
  assert_true(req->segment->threshold == 0.25f);
  assert_non_null(req->segment->ground_truth);
  assert_int_equal(req->segment->ground_truth->source_case,
                   OSSEG__WIRE__GROUND_TRUTH__SOURCE_LABEL_JSON);
  assert_string_equal(req->segment->ground_truth->label_json, labels);
  osseg__wire__request__free_unpacked(req, NULL);

  /* A ClassMask then Done; both come back in order. */
  Osseg__Wire__ClassMask cm = OSSEG__WIRE__CLASS_MASK__INIT;
  cm.index = 3;
  cm.name = "finger-4";
  cm.rle = "1 5 20 3";
  cm.area = 8;
  cm.width = cm.height = 64;
  Osseg__Wire__Response r1 = OSSEG__WIRE__RESPONSE__INIT;
  r1.id = 1;
  r1.kind_case = OSSEG__WIRE__RESPONSE__KIND_CLASS_MASK;
  r1.class_mask = &cm;
  send_response(srv, &r1);
  Osseg__Wire__Response r2 = done_response(1, 12.5);
  send_response(srv, &r2);

  Osseg__Wire__Response *got = NULL;
  assert_int_equal(osseg_client_recv(c, &got, 1000), 0);
  assert_int_equal(got->kind_case, OSSEG__WIRE__RESPONSE__KIND_CLASS_MASK);
  assert_string_equal(got->class_mask->rle, "1 5 20 3");
  assert_int_equal(got->class_mask->index, 3);
  osseg__wire__response__free_unpacked(got, NULL);
  assert_int_equal(osseg_client_recv(c, &got, 1000), 0);
  assert_int_equal(got->kind_case, OSSEG__WIRE__RESPONSE__KIND_DONE);
  assert_true(got->done->total_ms == 12.5);
  osseg__wire__response__free_unpacked(got, NULL);

  /* The simple requests carry fresh ids and their kind. */
  uint64_t hid, sid, lid, cid;
  assert_int_equal(osseg_client_health(c, &hid), 0);
  assert_int_equal(osseg_client_stats(c, &sid), 0);
  assert_int_equal(osseg_client_list_models(c, &lid), 0);
  assert_int_equal(osseg_client_cancel(c, 1, &cid), 0);
  assert_int_equal(hid, 2);
  assert_int_equal(cid, 5);
  static const int kinds[] = {OSSEG__WIRE__REQUEST__KIND_HEALTH, OSSEG__WIRE__REQUEST__KIND_STATS,
                              OSSEG__WIRE__REQUEST__KIND_LIST_MODELS,
                              OSSEG__WIRE__REQUEST__KIND_CANCEL};
  for (int i = 0; i < 4; i++) {
    req = read_request(srv, NULL);
    assert_non_null(req);
    assert_int_equal(req->id, 2 + i);
    assert_int_equal(req->kind_case, kinds[i]);
    if (i == 3) assert_int_equal(req->cancel->id, 1);
    osseg__wire__request__free_unpacked(req, NULL);
  }
  osseg_client_close(c);
  close(srv);
}

struct dribble {
  int fd;
  uint8_t *buf;
  size_t len;
};

static void *dribble_thread(void *arg) {
  struct dribble *d = arg;
  for (size_t i = 0; i < d->len; i++) {
    write_all_fd(d->fd, d->buf + i, 1);
    if (i % 7 == 0) sleep_ms(1);
  }
  return NULL;
}

static void test_one_byte_writes(void **state) {
  (void)state;
  int srv;
  osseg_client_t *c = pair(&srv);
  Osseg__Wire__Health h = OSSEG__WIRE__HEALTH__INIT;
  h.ready = 1;
  h.version = "0.1.0-test";
  h.models = 2;
  h.max_frame_bytes = 1u << 26;
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  r.id = 42;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_HEALTH;
  r.health = &h;
  struct dribble d = {.fd = srv};
  size_t l1, l2;
  uint8_t *f1 = pack_response(&r, &l1);
  Osseg__Wire__Response r2 = done_response(43, 1.0);
  uint8_t *f2 = pack_response(&r2, &l2);
  d.buf = malloc(l1 + l2);
  memcpy(d.buf, f1, l1);
  memcpy(d.buf + l1, f2, l2);
  d.len = l1 + l2;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, dribble_thread, &d), 0);
  Osseg__Wire__Response *got = NULL;
  assert_int_equal(osseg_client_recv(c, &got, 5000), 0);
  assert_int_equal(got->id, 42);
  assert_string_equal(got->health->version, "0.1.0-test");
  assert_int_equal(got->health->models, 2);
  osseg__wire__response__free_unpacked(got, NULL);
  assert_int_equal(osseg_client_recv(c, &got, 5000), 0);
  assert_int_equal(got->id, 43);
  assert_int_equal(got->kind_case, OSSEG__WIRE__RESPONSE__KIND_DONE);
  osseg__wire__response__free_unpacked(got, NULL);
  pthread_join(t, NULL);
  free(f1);
  free(f2);
  free(d.buf);
  osseg_client_close(c);
  close(srv);
}

static void test_over_limit_frame(void **state) {
  (void)state;
  int srv;
  osseg_client_t *c = pair(&srv);
  osseg_client_set_max_frame(c, 1000);
  /* Only the length arrives: a client that allocated and read the body
   * would wait for it and time out instead of refusing at once. */
  uint8_t hdr[4];
  put_le32(hdr, 1001);
  write_all_fd(srv, hdr, 4);
  Osseg__Wire__Response *got = (void *)1;
  assert_int_equal(osseg_client_recv(c, &got, 2000), OSSEG_CLIENT_ETOOBIG);
  assert_null(got);
  assert_string_equal(osseg_client_message(c),
                      "response frame of 1001 bytes is over the limit of 1000");
  /* The stream is out of step now: the handle stays broken. */
  assert_int_equal(osseg_client_recv(c, &got, 0), OSSEG_CLIENT_ETOOBIG);
  uint64_t id;
  assert_int_equal(osseg_client_health(c, &id), OSSEG_CLIENT_ETOOBIG);
  osseg_client_close(c);

  /* The default limit refuses a 4 GiB declaration the same way. */
  close(srv);
  c = pair(&srv);
  put_le32(hdr, 0xffffffffu);
  write_all_fd(srv, hdr, 4);
  assert_int_equal(osseg_client_recv(c, &got, 2000), OSSEG_CLIENT_ETOOBIG);
  /* A frame exactly at the limit is accepted. */
  osseg_client_close(c);
  close(srv);
  c = pair(&srv);
  Osseg__Wire__Response r = done_response(7, 2.0);
  size_t len;
  uint8_t *f = pack_response(&r, &len);
  osseg_client_set_max_frame(c, (uint32_t)(len - 4));
  write_all_fd(srv, f, len);
  assert_int_equal(osseg_client_recv(c, &got, 2000), 0);
  assert_int_equal(got->id, 7);
  osseg__wire__response__free_unpacked(got, NULL);
  free(f);
  osseg_client_close(c);
  close(srv);
}

static void test_eof(void **state) {
  (void)state;
  Osseg__Wire__Response r = done_response(9, 3.0);
  size_t len;
  uint8_t *f = pack_response(&r, &len);
  Osseg__Wire__Response *got;

  /* Between frames: a clean "closed". */
  int srv;
  osseg_client_t *c = pair(&srv);
  close(srv);
  assert_int_equal(osseg_client_recv(c, &got, 1000), OSSEG_CLIENT_ECLOSED);
  osseg_client_close(c);

  /* In the length, and in the body: "truncated", naming the counts. */
  c = pair(&srv);
  write_all_fd(srv, f, 2);
  close(srv);
  assert_int_equal(osseg_client_recv(c, &got, 1000), OSSEG_CLIENT_ETRUNCATED);
  assert_non_null(strstr(osseg_client_message(c), "2 of 4 length bytes"));
  osseg_client_close(c);

  c = pair(&srv);
  write_all_fd(srv, f, len - 1);
  close(srv);
  assert_int_equal(osseg_client_recv(c, &got, 1000), OSSEG_CLIENT_ETRUNCATED);
  char want[64];
  snprintf(want, sizeof want, "(%zu of %zu body bytes)", len - 5, len - 4);
  assert_non_null(strstr(osseg_client_message(c), want));
  assert_null(got);
  osseg_client_close(c);

  /* A whole frame, then EOF: the frame, then "closed". */
  c = pair(&srv);
  write_all_fd(srv, f, len);
  close(srv);
  assert_int_equal(osseg_client_recv(c, &got, 1000), 0);
  osseg__wire__response__free_unpacked(got, NULL);
  assert_int_equal(osseg_client_recv(c, &got, 1000), OSSEG_CLIENT_ECLOSED);
  osseg_client_close(c);

  /* Sending to a closed peer is an error, not SIGPIPE. */
  c = pair(&srv);
  close(srv);
  uint64_t id;
  assert_int_equal(osseg_client_health(c, &id), OSSEG_CLIENT_ECLOSED);
  osseg_client_close(c);
  free(f);
}

static void test_garbage_frame(void **state) {
  (void)state;
  int srv;
  osseg_client_t *c = pair(&srv);
  uint8_t frame[4 + 5] = {0};
  put_le32(frame, 5);
  memset(frame + 4, 0xff, 5);
  write_all_fd(srv, frame, sizeof frame);
  Osseg__Wire__Response *got;
  assert_int_equal(osseg_client_recv(c, &got, 1000), OSSEG_CLIENT_EPARSE);
  assert_string_equal(osseg_client_message(c), "a 5-byte response frame does not parse");
  osseg_client_close(c);
  close(srv);
}

static double elapsed_ms(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void test_timeouts(void **state) {
  (void)state;
  int srv;
  osseg_client_t *c = pair(&srv);
  Osseg__Wire__Response *got;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(osseg_client_recv(c, &got, 150), OSSEG_CLIENT_ETIMEDOUT);
  double ms = elapsed_ms(&t0);
  assert_true(ms >= 140 && ms < 2000);
  assert_int_equal(osseg_client_recv(c, &got, 0), OSSEG_CLIENT_ETIMEDOUT);

  /* A timeout in the middle of a frame keeps what was read: the next call
   * completes the frame. */
  Osseg__Wire__Response r = done_response(11, 4.0);
  size_t len;
  uint8_t *f = pack_response(&r, &len);
  write_all_fd(srv, f, 3);
  assert_int_equal(osseg_client_recv(c, &got, 50), OSSEG_CLIENT_ETIMEDOUT);
  write_all_fd(srv, f + 3, 5);
  assert_int_equal(osseg_client_recv(c, &got, 50), OSSEG_CLIENT_ETIMEDOUT);
  write_all_fd(srv, f + 8, len - 8);
  assert_int_equal(osseg_client_recv(c, &got, 1000), 0);
  assert_int_equal(got->id, 11);
  assert_true(got->done->total_ms == 4.0);
  osseg__wire__response__free_unpacked(got, NULL);
  free(f);

  /* A send that cannot get rid of its frame times out: the peer never
   * reads, and the frame is larger than the socket buffers. */
  osseg_client_set_send_timeout(c, 100);
  size_t big = 16u << 20;
  uint8_t *png = calloc(1, big);
  struct osseg_client_segment s;
  osseg_client_segment_png(&s, osseg_client_next_id(c), png, big, "big.png");
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = osseg_client_send(c, &s.req, -1);
  /* Part of the frame went out, so the handle cannot continue. */
  assert_int_equal(rc, OSSEG_CLIENT_EIO);
  assert_non_null(strstr(osseg_client_message(c), "send timed out after 100 ms"));
  assert_true(elapsed_ms(&t0) < 5000);
  free(png);
  osseg_client_close(c);
  close(srv);
}

static void test_fd_passing(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  const char *path = test_path("%s/image.png", dir);
  static const char content[] = "\x89PNG pretend image bytes";
  assert_int_equal(test_write_file(path, content, sizeof content - 1), 0);
  int file = open(path, O_RDONLY | O_CLOEXEC);
  assert_true(file >= 0);

  int srv;
  osseg_client_t *c = pair(&srv);
  struct osseg_client_segment s;
  osseg_client_segment_fd(&s, osseg_client_next_id(c), sizeof content - 1, "image.png");
  const char *model = "tiny";
  osseg_client_segment_set_models(&s, &model, 1);
  assert_int_equal(osseg_client_send(c, &s.req, file), 0);
  /* The caller's descriptor stays open and its own. */
  assert_true(fcntl(file, F_GETFD) >= 0);
  close(file);

  int passed;
  Osseg__Wire__Request *req = read_request(srv, &passed);
  assert_non_null(req);
  assert_true(passed >= 0);
  assert_int_equal(req->segment->image_case, OSSEG__WIRE__SEGMENT__IMAGE_FD);
  assert_int_equal(req->segment->fd->size_hint, sizeof content - 1);
  char got[64] = {0};
  ssize_t n = pread(passed, got, sizeof got, 0);
  assert_int_equal(n, (ssize_t)(sizeof content - 1));
  assert_memory_equal(got, content, sizeof content - 1);
  close(passed);
  osseg__wire__request__free_unpacked(req, NULL);

  /* A descriptor that is not open is refused without breaking the
   * handle. */
  osseg_client_segment_fd(&s, osseg_client_next_id(c), 0, "x.png");
  assert_int_equal(osseg_client_send(c, &s.req, 1000000), OSSEG_CLIENT_EINVAL);
  uint64_t id;
  assert_int_equal(osseg_client_health(c, &id), 0);
  req = read_request(srv, &passed);
  assert_non_null(req);
  assert_int_equal(passed, -1);
  assert_int_equal(req->kind_case, OSSEG__WIRE__REQUEST__KIND_HEALTH);
  osseg__wire__request__free_unpacked(req, NULL);
  osseg_client_close(c);
  close(srv);
}

/* A Unix socket served by a thread: answers Health to each request. */
struct server {
  int listen_fd;
  int requests;
};

static void *serve_health(void *arg) {
  struct server *s = arg;
  int fd = accept(s->listen_fd, NULL, NULL);
  if (fd < 0) return NULL;
  Osseg__Wire__Request *req;
  while ((req = read_request(fd, NULL)) != NULL) {
    Osseg__Wire__Health h = OSSEG__WIRE__HEALTH__INIT;
    h.ready = 1;
    h.version = "fake";
    Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
    r.id = req->id;
    r.kind_case = OSSEG__WIRE__RESPONSE__KIND_HEALTH;
    r.health = &h;
    send_response(fd, &r);
    s->requests++;
    osseg__wire__request__free_unpacked(req, NULL);
  }
  close(fd);
  return NULL;
}

static void test_connect(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  const char *path = test_path("%s/osseg.sock", dir);
  char err[OSSEG_CLIENT_MSG_SIZE];
  osseg_client_t *c = (void *)1;
  assert_int_equal(osseg_client_connect(&c, path, 100, err), OSSEG_CLIENT_ECONNECT);
  assert_null(c);
  char want[600];
  snprintf(want, sizeof want, "%s: cannot connect: No such file or directory", path);
  assert_string_equal(err, want);

  char longp[200];
  memset(longp, 'a', sizeof longp - 1);
  longp[sizeof longp - 1] = '\0';
  assert_int_equal(osseg_client_connect(&c, longp, 100, err), OSSEG_CLIENT_ECONNECT);
  assert_non_null(strstr(err, "socket path too long"));

  struct server s = {0};
  s.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
  assert_int_equal(bind(s.listen_fd, (struct sockaddr *)&addr, sizeof addr), 0);
  assert_int_equal(listen(s.listen_fd, 4), 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, serve_health, &s), 0);

  assert_int_equal(osseg_client_connect(&c, path, 1000, err), 0);
  assert_true(osseg_client_fd(c) >= 0);
  /* Pipelined: three requests out, three answers back in order. */
  uint64_t ids[3];
  for (int i = 0; i < 3; i++) assert_int_equal(osseg_client_health(c, &ids[i]), 0);
  for (int i = 0; i < 3; i++) {
    Osseg__Wire__Response *got;
    assert_int_equal(osseg_client_recv(c, &got, 5000), 0);
    assert_int_equal(got->id, ids[i]);
    assert_true(got->health->ready);
    osseg__wire__response__free_unpacked(got, NULL);
  }
  osseg_client_close(c);
  pthread_join(t, NULL);
  assert_int_equal(s.requests, 3);
  close(s.listen_fd);
}

static void test_strerror(void **state) {
  (void)state;
  assert_string_equal(osseg_client_strerror(OSSEG_CLIENT_ETOOBIG), "frame over the size limit");
  assert_string_equal(osseg_client_strerror(-1000), "unknown error");
  assert_string_equal(osseg_client_error_code_name(OSSEG__WIRE__ERROR__CODE__BAD_IMAGE),
                      "BAD_IMAGE");
  assert_string_equal(osseg_client_error_code_name(99), "UNKNOWN");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_one_byte_writes),
      cmocka_unit_test(test_over_limit_frame), cmocka_unit_test(test_eof),
      cmocka_unit_test(test_garbage_frame), cmocka_unit_test(test_timeouts),
      cmocka_unit_test(test_fd_passing),   cmocka_unit_test(test_connect),
      cmocka_unit_test(test_strerror),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
