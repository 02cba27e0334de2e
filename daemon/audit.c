/* The audit log: one JSON line per finished Segment and per refused peer,
 * on the loop thread. A line is built in a fixed buffer and written with
 * one write(2) on an O_APPEND descriptor: lines of concurrent writers do
 * not interleave, and a line is small (a few hundred bytes, at most
 * sizeof a->line) so the write costs the loop next to nothing, unless the
 * destination is a full pipe (stderr into a stalled journald). Never pixel
 * data; the image name only when configured. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon_internal.h"

#define NAME_BYTES 255 /* of a name copied into a line; longer ones are cut */

static int open_file(const char *path, int *fd) {
  *fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
  return *fd < 0 ? -1 : 0;
}

int ossegd__audit_open(struct ossegd__audit *a, const struct ossegd_options *o,
                       const struct osseg_log *log, struct osseg_diag *diag) {
  memset(a, 0, sizeof *a);
  a->fd = -1;
  a->log = log;
  a->image_name = o->audit_image_name;
  if (!o->audit_file) return 0;
  if (strcmp(o->audit_file, "stderr") == 0) {
    a->fd = 2;
    return 0;
  }
  a->path = strdup(o->audit_file);
  if (!a->path) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  if (open_file(a->path, &a->fd) != 0) {
    int rc = osseg__fail(diag, OSSEG_EIO, "audit file %s: %s", a->path, strerror(errno));
    free(a->path);
    a->path = NULL;
    return rc;
  }
  a->owned = 1;
  return 0;
}

void ossegd__audit_reopen(struct ossegd__audit *a) {
  if (!a->owned) return;
  int fd;
  if (open_file(a->path, &fd) != 0) {
    osseg__log(a->log, OSSEG_LOG_ERROR, "audit file %s: cannot reopen it: %s; still writing "
               "to the old one", a->path, strerror(errno));
    return;
  }
  close(a->fd);
  a->fd = fd;
  a->failing = 0;
  osseg__log(a->log, OSSEG_LOG_INFO, "audit file %s reopened", a->path);
}

void ossegd__audit_close(struct ossegd__audit *a) {
  if (a->owned) close(a->fd);
  free(a->path);
  a->path = NULL;
  a->fd = -1;
  a->owned = 0;
}

/* ------------------------------------------------------------- a line --- */

struct line {
  char *p;
  size_t n, cap;
  int full;
};

static void put(struct line *l, const char *s, size_t n) {
  if (l->full || n > l->cap - l->n) {
    l->full = 1;
    return;
  }
  memcpy(l->p + l->n, s, n);
  l->n += n;
}

static void putf(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct line *l, const char *fmt, ...) {
  if (l->full) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(l->p + l->n, l->cap - l->n, fmt, ap);
  va_end(ap);
  if (k < 0 || (size_t)k >= l->cap - l->n) l->full = 1;
  else l->n += (size_t)k;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t left) {
  unsigned c = s[0];
  size_t n;
  unsigned min;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) n = 2, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef) n = 3, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, min = 0x10000;
  else return 0;
  if (left < n) return 0;
  unsigned cp = c & (0x3f >> (n - 1));
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

/* A JSON string of the first NAME_BYTES bytes of s: quotes, backslashes
 * and control characters escaped, bytes that are not UTF-8 replaced by
 * U+FFFD, a cut marked by "...". NULL is null. */
static void put_string(struct line *l, const char *s) {
  if (!s) {
    put(l, "null", 4);
    return;
  }
  const unsigned char *u = (const unsigned char *)s;
  size_t len = strlen(s), i = 0;
  put(l, "\"", 1);
  while (i < len) {
    if (i >= NAME_BYTES) {
      put(l, "...", 3);
      break;
    }
    unsigned c = u[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      put(l, e, 2);
      i++;
    } else if (c < 0x20 || c == 0x7f) {
      putf(l, "\\u%04x", c);
      i++;
    } else {
      size_t n = utf8_len(u + i, len - i);
      if (n == 0) {
        put(l, "\\ufffd", 6);
        i++;
      } else {
        put(l, s + i, n);
        i += n;
      }
    }
  }
  put(l, "\"", 1);
}

/* "time" (RFC 3339, UTC, milliseconds), "event", the connection and its
 * peer. */
static void put_head(struct line *l, const char *event, const struct ossegd__peer *peer,
                     uint64_t conn) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  putf(l, "{\"time\":\"%s.%03ldZ\",\"event\":\"%s\",\"conn\":%llu,\"uid\":%u,\"gid\":%u,"
       "\"pid\":%d",
       when, ts.tv_nsec / 1000000, event, (unsigned long long)conn, (unsigned)peer->uid,
       (unsigned)peer->gid, (int)peer->pid);
}

static void put_outcome(struct line *l, int outcome) {
  if (outcome < 0) {
    put(l, ",\"outcome\":\"ok\",\"code\":null", 27);
    return;
  }
  const char *name = outcome + 1 < OSSEGD_NOUTCOMES ? ossegd__outcome_names[outcome + 1]
                     : outcome == OSSEG__WIRE__ERROR__CODE__PERMISSION_DENIED
                         ? "PERMISSION_DENIED"
                         : "INTERNAL";
  putf(l, ",\"outcome\":\"error\",\"code\":\"%s\"", name);
}

/* One write(2) of the whole line; a failure is counted, and logged once
 * until a write succeeds again (or the file is reopened). */
static void emit(struct ossegd__audit *a, struct line *l) {
  put(l, "}\n", 2);
  if (l->full) {
    /* Cannot happen with NAME_BYTES and the model limit; still, never a
     * half line. */
    a->errors++;
    osseg__log(a->log, OSSEG_LOG_ERROR, "audit: a line did not fit %zu bytes; dropped", l->cap);
    return;
  }
  ssize_t w;
  do w = write(a->fd, l->p, l->n);
  while (w < 0 && errno == EINTR);
  if (w == (ssize_t)l->n) {
    a->failing = 0;
    return;
  }
  a->errors++;
  if (!a->failing)
    osseg__log(a->log, OSSEG_LOG_ERROR,
               "audit: cannot write to %s: %s; failed lines are counted (Stats.audit_errors) "
               "and not logged again until a write succeeds",
               a->path ? a->path : "stderr", w < 0 ? strerror(errno) : "short write");
  a->failing = 1;
}

void ossegd__audit_segment(struct ossegd__audit *a, const struct ossegd__audit_segment *e) {
  if (a->fd < 0) return;
  struct line l = {a->line, 0, sizeof a->line, 0};
  put_head(&l, "segment", e->peer, e->conn);
  putf(&l, ",\"id\":%llu", (unsigned long long)e->id);
  if (a->image_name) {
    put(&l, ",\"image_name\":", 14);
    put_string(&l, e->image_name);
  }
  put(&l, ",\"models\":[", 11);
  for (size_t i = 0; i < e->nmodels; i++) {
    put(&l, i ? ",{\"name\":" : "{\"name\":", i ? 9 : 8);
    put_string(&l, e->models[i].name);
    put(&l, ",\"sha256\":", 10);
    put_string(&l, e->models[i].sha256);
    if (e->timed) putf(&l, ",\"inference_ms\":%.3f", e->models[i].ms);
    put(&l, "}", 1);
  }
  put(&l, "]", 1);
  if (e->more_models) putf(&l, ",\"more_models\":%zu", e->more_models);
  put_outcome(&l, e->outcome);
  putf(&l, ",\"queue_ms\":%.3f,\"inference_ms\":%.3f,\"total_ms\":%.3f", e->queue_ms,
       e->inference_ms, e->total_ms);
  emit(a, &l);
}

void ossegd__audit_refused(struct ossegd__audit *a, const struct ossegd__peer *peer,
                           uint64_t conn, int code, const char *reason) {
  if (a->fd < 0) return;
  struct line l = {a->line, 0, sizeof a->line, 0};
  put_head(&l, "refused", peer, conn);
  put(&l, ",\"reason\":", 10);
  put_string(&l, reason);
  put_outcome(&l, code);
  emit(a, &l);
}
