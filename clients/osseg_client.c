/* osseg_client: framing, fd passing and timeouts over ossegd's Unix socket.
 * See osseg_client.h for the contract. The socket is non-blocking; every
 * wait is a poll() against a deadline, so send and recv share one timeout
 * mechanism and EINTR is simply "poll again with what is left". */
#include "osseg_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct osseg_client {
  int fd;
  int broken;          /* a fatal error's code, or 0 */
  uint32_t max_frame;
  int send_timeout_ms;
  uint64_t next_id;
  /* The frame being read: header bytes, then the body. Kept across calls
   * so that a recv timeout does not lose the bytes already read. */
  unsigned char hdr[4];
  size_t hdr_got;
  uint8_t *body;
  uint32_t body_len;
  size_t body_got;
  char message[OSSEG_CLIENT_MSG_SIZE];
};

const char *osseg_client_strerror(int code) {
  switch (code) {
#define OSSEG_CLIENT__XX(name, value, text) \
  case OSSEG_CLIENT_E##name:                \
    return text;
    OSSEG_CLIENT_ERRNO_MAP(OSSEG_CLIENT__XX)
#undef OSSEG_CLIENT__XX
    default:
      return "unknown error";
  }
}

const char *osseg_client_error_code_name(int code) {
  switch (code) {
    case OSSEG__WIRE__ERROR__CODE__INTERNAL: return "INTERNAL";
    case OSSEG__WIRE__ERROR__CODE__BAD_REQUEST: return "BAD_REQUEST";
    case OSSEG__WIRE__ERROR__CODE__UNKNOWN_MODEL: return "UNKNOWN_MODEL";
    case OSSEG__WIRE__ERROR__CODE__IMAGE_TOO_LARGE: return "IMAGE_TOO_LARGE";
    case OSSEG__WIRE__ERROR__CODE__BAD_IMAGE: return "BAD_IMAGE";
    case OSSEG__WIRE__ERROR__CODE__BUSY: return "BUSY";
    case OSSEG__WIRE__ERROR__CODE__DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case OSSEG__WIRE__ERROR__CODE__CANCELLED: return "CANCELLED";
    case OSSEG__WIRE__ERROR__CODE__PERMISSION_DENIED: return "PERMISSION_DENIED";
    default: return "UNKNOWN";
  }
}

__attribute__((format(printf, 3, 4))) static int fail_buf(char *buf, int code, const char *fmt,
                                                          ...) {
  if (buf) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, OSSEG_CLIENT_MSG_SIZE, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* Records the message of a failed call; a fatal code also breaks c. */
__attribute__((format(printf, 3, 4))) static int fail(osseg_client_t *c, int code,
                                                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->message, sizeof c->message, fmt, ap);
  va_end(ap);
  if (code != OSSEG_CLIENT_ETIMEDOUT && code != OSSEG_CLIENT_EINVAL &&
      code != OSSEG_CLIENT_ENOMEM)
    c->broken = code;
  return code;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_of(int timeout_ms) { return timeout_ms < 0 ? -1 : now_ms() + timeout_ms; }

/* Waits for events on fd until the deadline (-1: none). Returns 1 when
 * ready, 0 on timeout, -1 with errno on error. EINTR restarts the wait
 * with the time that is left. */
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int left = -1;
    if (deadline >= 0) {
      int64_t d = deadline - now_ms();
      left = d < 0 ? 0 : d > 0x7fffffff ? 0x7fffffff : (int)d;
    }
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, left);
    if (n > 0) return 1;
    if (n == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

static osseg_client_t *client_new(int fd) {
  osseg_client_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->fd = fd;
  c->max_frame = OSSEG_CLIENT_DEFAULT_MAX_FRAME;
  c->send_timeout_ms = -1;
  c->next_id = 1;
  return c;
}

int osseg_client_connect(osseg_client_t **out, const char *socket_path, int timeout_ms,
                         char *err) {
  if (!out) return fail_buf(err, OSSEG_CLIENT_EINVAL, "no handle to fill");
  *out = NULL;
  if (!socket_path || !*socket_path)
    return fail_buf(err, OSSEG_CLIENT_EINVAL, "no socket path given");
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  size_t len = strlen(socket_path);
  if (len >= sizeof addr.sun_path)
    return fail_buf(err, OSSEG_CLIENT_ECONNECT,
                    "%s: socket path too long (%zu bytes; the limit is %zu)", socket_path, len,
                    sizeof addr.sun_path - 1);
  memcpy(addr.sun_path, socket_path, len + 1);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fail_buf(err, OSSEG_CLIENT_ECONNECT, "socket: %s", strerror(errno));
  int64_t deadline = deadline_of(timeout_ms);
  /* A Unix socket connects at once or fails with EAGAIN when the
   * listener's backlog is full; then retry until the deadline (a
   * non-blocking AF_UNIX connect does not complete in the background). */
  for (;;) {
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) break;
    int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EINPROGRESS) {
      if (deadline >= 0 && now_ms() >= deadline) {
        close(fd);
        return fail_buf(err, OSSEG_CLIENT_ETIMEDOUT,
                        "%s: the daemon did not accept the connection within %d ms",
                        socket_path, timeout_ms);
      }
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, NULL);
      continue;
    }
    close(fd);
    return fail_buf(err, OSSEG_CLIENT_ECONNECT, "%s: cannot connect: %s", socket_path,
                    strerror(e));
  }
  osseg_client_t *c = client_new(fd);
  if (!c) {
    close(fd);
    return fail_buf(err, OSSEG_CLIENT_ENOMEM, "out of memory");
  }
  *out = c;
  return 0;
}

int osseg_client_from_fd(osseg_client_t **out, int fd, char *err) {
  if (!out || fd < 0) return fail_buf(err, OSSEG_CLIENT_EINVAL, "invalid descriptor");
  *out = NULL;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return fail_buf(err, OSSEG_CLIENT_EINVAL, "fcntl: %s", strerror(errno));
  osseg_client_t *c = client_new(fd);
  if (!c) return fail_buf(err, OSSEG_CLIENT_ENOMEM, "out of memory");
  *out = c;
  return 0;
}

void osseg_client_close(osseg_client_t *c) {
  if (!c) return;
  if (c->fd >= 0) close(c->fd);
  free(c->body);
  free(c);
}

void osseg_client_set_max_frame(osseg_client_t *c, uint32_t bytes) { c->max_frame = bytes; }
void osseg_client_set_send_timeout(osseg_client_t *c, int timeout_ms) {
  c->send_timeout_ms = timeout_ms;
}
const char *osseg_client_message(const osseg_client_t *c) { return c->message; }
int osseg_client_fd(const osseg_client_t *c) { return c->fd; }
uint64_t osseg_client_next_id(osseg_client_t *c) { return c->next_id++; }

static int broken(osseg_client_t *c) {
  /* The message of the failure that broke the handle stays in place. */
  return c->broken;
}

/* ------------------------------------------------------------------ send --- */

/* Writes buf[0, len) completely; the first write carries fd (if >= 0) as
 * SCM_RIGHTS data, so the descriptor arrives with the frame's first byte. */
static int write_all(osseg_client_t *c, const uint8_t *buf, size_t len, int pass_fd) {
  int64_t deadline = deadline_of(c->send_timeout_ms);
  size_t done = 0;
  while (done < len) {
    ssize_t n;
    if (pass_fd >= 0 && done == 0) {
      struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
      union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
      } ctl;
      memset(&ctl, 0, sizeof ctl);
      struct msghdr msg = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = ctl.buf,
                           .msg_controllen = sizeof ctl.buf};
      struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
      n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    } else {
      n = send(c->fd, buf + done, len - done, MSG_NOSIGNAL);
    }
    if (n > 0) {
      done += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int w = wait_fd(c->fd, POLLOUT, deadline);
      if (w > 0) continue;
      if (w == 0) {
        /* Half a frame on the wire cannot be taken back. */
        if (done > 0)
          return fail(c, OSSEG_CLIENT_EIO,
                      "send timed out after %d ms with %zu of %zu bytes of a frame written",
                      c->send_timeout_ms, done, len);
        return fail(c, OSSEG_CLIENT_ETIMEDOUT, "send timed out after %d ms",
                    c->send_timeout_ms);
      }
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
      return fail(c, OSSEG_CLIENT_ECLOSED, "the daemon closed the connection");
    if (n < 0 && errno == EBADF && pass_fd >= 0 && done == 0)
      return fail(c, OSSEG_CLIENT_EINVAL, "descriptor %d to pass: %s", pass_fd,
                  strerror(errno));
    return fail(c, OSSEG_CLIENT_EIO, "send: %s", n < 0 ? strerror(errno) : "wrote nothing");
  }
  return 0;
}

int osseg_client_send(osseg_client_t *c, const Osseg__Wire__Request *req, int fd) {
  if (!c || !req) return OSSEG_CLIENT_EINVAL;
  if (c->broken) return broken(c);
  c->message[0] = '\0';
  size_t size = protobuf_c_message_get_packed_size(&req->base);
  if (size > UINT32_MAX - 4)
    return fail(c, OSSEG_CLIENT_EINVAL, "request of %zu bytes does not fit a frame", size);
  uint8_t *buf = malloc(size + 4);
  if (!buf) return fail(c, OSSEG_CLIENT_ENOMEM, "out of memory for a %zu-byte frame", size);
  buf[0] = (uint8_t)size;
  buf[1] = (uint8_t)(size >> 8);
  buf[2] = (uint8_t)(size >> 16);
  buf[3] = (uint8_t)(size >> 24);
  protobuf_c_message_pack(&req->base, buf + 4);
  int rc = write_all(c, buf, size + 4, fd);
  free(buf);
  return rc;
}

/* ------------------------------------------------------------------ recv --- */

/* Reads into dst[*got, want) what is available, waiting until the
 * deadline. 0 when complete, or a negative code. */
static int read_some(osseg_client_t *c, uint8_t *dst, size_t want, size_t *got,
                     int64_t deadline, int in_frame) {
  while (*got < want) {
    ssize_t n = recv(c->fd, dst + *got, want - *got, 0);
    if (n > 0) {
      *got += (size_t)n;
      continue;
    }
    if (n == 0) {
      if (!in_frame && *got == 0)
        return fail(c, OSSEG_CLIENT_ECLOSED, "the daemon closed the connection");
      return fail(c, OSSEG_CLIENT_ETRUNCATED,
                  "the connection ended in the middle of a frame (%zu of %zu %s bytes)", *got,
                  want, in_frame ? "body" : "length");
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int w = wait_fd(c->fd, POLLIN, deadline);
      if (w > 0) continue;
      if (w == 0) return fail(c, OSSEG_CLIENT_ETIMEDOUT, "no response within the timeout");
    }
    if (errno == ECONNRESET) return fail(c, OSSEG_CLIENT_ECLOSED, "connection reset by the daemon");
    return fail(c, OSSEG_CLIENT_EIO, "recv: %s", strerror(errno));
  }
  return 0;
}

int osseg_client_recv(osseg_client_t *c, Osseg__Wire__Response **resp, int timeout_ms) {
  if (!c || !resp) return OSSEG_CLIENT_EINVAL;
  *resp = NULL;
  if (c->broken) return broken(c);
  c->message[0] = '\0';
  int64_t deadline = deadline_of(timeout_ms);
  int rc;
  if (c->hdr_got < 4 || !c->body) {
    if (c->hdr_got < 4) {
      rc = read_some(c, c->hdr, 4, &c->hdr_got, deadline, c->hdr_got > 0);
      if (rc) return rc;
    }
    uint32_t len = (uint32_t)c->hdr[0] | (uint32_t)c->hdr[1] << 8 | (uint32_t)c->hdr[2] << 16 |
                   (uint32_t)c->hdr[3] << 24;
    /* The declared length sizes nothing until it passed the limit. */
    if (len > c->max_frame)
      return fail(c, OSSEG_CLIENT_ETOOBIG, "response frame of %u bytes is over the limit of %u",
                  len, c->max_frame);
    c->body = malloc(len ? len : 1);
    if (!c->body) /* not fatal: the next call tries again */
      return fail(c, OSSEG_CLIENT_ENOMEM, "out of memory for a %u-byte frame", len);
    c->body_len = len;
    c->body_got = 0;
  }
  rc = read_some(c, c->body, c->body_len, &c->body_got, deadline, 1);
  if (rc) return rc;
  Osseg__Wire__Response *r = osseg__wire__response__unpack(NULL, c->body_len, c->body);
  uint32_t len = c->body_len;
  free(c->body);
  c->body = NULL;
  c->hdr_got = 0;
  c->body_len = 0;
  c->body_got = 0;
  if (!r) return fail(c, OSSEG_CLIENT_EPARSE, "a %u-byte response frame does not parse", len);
  *resp = r;
  return 0;
}

/* -------------------------------------------------------------- builders --- */

static void segment_init(struct osseg_client_segment *s, uint64_t id, const char *image_name) {
  memset(s, 0, sizeof *s);
  osseg__wire__request__init(&s->req);
  osseg__wire__segment__init(&s->seg);
  osseg__wire__raw_image__init(&s->raw);
  osseg__wire__image_fd__init(&s->fd);
  osseg__wire__vote__init(&s->vote);
  osseg__wire__ground_truth__init(&s->gt);
  s->req.id = id;
  s->req.has_version = 1;
  s->req.version = OSSEG__WIRE__VERSION__VERSION_1;
  s->req.kind_case = OSSEG__WIRE__REQUEST__KIND_SEGMENT;
  s->req.segment = &s->seg;
  s->seg.image_name = (char *)image_name;
}

void osseg_client_segment_png(struct osseg_client_segment *s, uint64_t id, const void *png,
                              size_t len, const char *image_name) {
  segment_init(s, id, image_name);
  s->seg.image_case = OSSEG__WIRE__SEGMENT__IMAGE_PNG;
  s->seg.png.data = (uint8_t *)png;
  s->seg.png.len = len;
}

void osseg_client_segment_raw(struct osseg_client_segment *s, uint64_t id, uint32_t width,
                              uint32_t height, uint32_t bit_depth, const void *pixels,
                              size_t len, const char *image_name) {
  segment_init(s, id, image_name);
  s->raw.width = width;
  s->raw.height = height;
  s->raw.bit_depth = bit_depth;
  s->raw.pixels.data = (uint8_t *)pixels;
  s->raw.pixels.len = len;
  s->seg.image_case = OSSEG__WIRE__SEGMENT__IMAGE_RAW;
  s->seg.raw = &s->raw;
}

void osseg_client_segment_fd(struct osseg_client_segment *s, uint64_t id, uint64_t size_hint,
                             const char *image_name) {
  segment_init(s, id, image_name);
  if (size_hint) {
    s->fd.has_size_hint = 1;
    s->fd.size_hint = size_hint;
  }
  s->seg.image_case = OSSEG__WIRE__SEGMENT__IMAGE_FD;
  s->seg.fd = &s->fd;
}

void osseg_client_segment_set_models(struct osseg_client_segment *s, const char *const *names,
                                     size_t n) {
  s->seg.n_models = n;
  s->seg.models = (char **)names;
}

void osseg_client_segment_set_vote(struct osseg_client_segment *s, int soft, double threshold) {
  s->vote.has_kind = 1;
  s->vote.kind = soft ? OSSEG__WIRE__VOTE__KIND__SOFT : OSSEG__WIRE__VOTE__KIND__HARD;
  if (threshold >= 0) {
    s->vote.has_threshold = 1;
    s->vote.threshold = threshold;
  }
  s->seg.vote = &s->vote;
}

void osseg_client_segment_set_label_json(struct osseg_client_segment *s, const char *json) {
  osseg__wire__ground_truth__init(&s->gt);
  s->gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_LABEL_JSON;
  s->gt.label_json = (char *)json;
  s->seg.ground_truth = &s->gt;
}

static int send_simple(osseg_client_t *c, Osseg__Wire__Request__KindCase kind, uint64_t target,
                       uint64_t *id_out) {
  if (!c) return OSSEG_CLIENT_EINVAL;
  Osseg__Wire__Request req = OSSEG__WIRE__REQUEST__INIT;
  Osseg__Wire__ListModels lm = OSSEG__WIRE__LIST_MODELS__INIT;
  Osseg__Wire__HealthRequest hr = OSSEG__WIRE__HEALTH_REQUEST__INIT;
  Osseg__Wire__StatsRequest sr = OSSEG__WIRE__STATS_REQUEST__INIT;
  Osseg__Wire__Cancel cr = OSSEG__WIRE__CANCEL__INIT;
  req.id = osseg_client_next_id(c);
  req.has_version = 1;
  req.version = OSSEG__WIRE__VERSION__VERSION_1;
  req.kind_case = kind;
  switch (kind) {
    case OSSEG__WIRE__REQUEST__KIND_LIST_MODELS: req.list_models = &lm; break;
    case OSSEG__WIRE__REQUEST__KIND_HEALTH: req.health = &hr; break;
    case OSSEG__WIRE__REQUEST__KIND_STATS: req.stats = &sr; break;
    default:
      cr.id = target;
      req.cancel = &cr;
      break;
  }
  if (id_out) *id_out = req.id;
  return osseg_client_send(c, &req, -1);
}

int osseg_client_list_models(osseg_client_t *c, uint64_t *id) {
  return send_simple(c, OSSEG__WIRE__REQUEST__KIND_LIST_MODELS, 0, id);
}
int osseg_client_health(osseg_client_t *c, uint64_t *id) {
  return send_simple(c, OSSEG__WIRE__REQUEST__KIND_HEALTH, 0, id);
}
int osseg_client_stats(osseg_client_t *c, uint64_t *id) {
  return send_simple(c, OSSEG__WIRE__REQUEST__KIND_STATS, 0, id);
}
int osseg_client_cancel(osseg_client_t *c, uint64_t target, uint64_t *id) {
  return send_simple(c, OSSEG__WIRE__REQUEST__KIND_CANCEL, target, id);
}
