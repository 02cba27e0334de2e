/* Prediction CSV writer: see osseg_kernels.h.
 *
 * Output goes to "DIR/.NAME.tmp.PID.N" next to the destination and is
 * renamed over it when everything has been written, so readers see either
 * the old file or the complete new one. There is no fsync: the outputs are
 * reproducible from the inputs, and a flush to disk would cost more than
 * the whole ensemble. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "osseg_kernels.h"

#define WRITER_BUFFER (1u << 20)

struct osseg_csv_writer {
  int fd;
  int error; /* first errno of a failed write, 0 if none */
  char *path;
  char *tmp;
  char *buf;
  size_t len;
};

size_t osseg_csv_field_bound(size_t len) { return 2 * len + 2; }

char *osseg_csv_put_field(char *out, const char *s, size_t len) {
  int quote = 0;
  for (size_t i = 0; i < len && !quote; i++)
    quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
  if (!quote) {
    memcpy(out, s, len);
    return out + len;
  }
  *out++ = '"';
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '"') *out++ = '"';
    *out++ = s[i];
  }
  *out++ = '"';
  return out;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void flush(struct osseg_csv_writer *w) {
  if (w->len && !w->error) w->error = write_all(w->fd, w->buf, w->len);
  w->len = 0;
}

int osseg_csv_write_raw(struct osseg_csv_writer *w, const char *data, size_t len) {
  if (w->error) return OSSEG_EIO;
  if (w->len + len > WRITER_BUFFER) flush(w);
  if (len >= WRITER_BUFFER) {
    if (!w->error) w->error = write_all(w->fd, data, len);
  } else {
    memcpy(w->buf + w->len, data, len);
    w->len += len;
  }
  return w->error ? OSSEG_EIO : 0;
}

int osseg_csv_write_row(struct osseg_csv_writer *w, const char *image, size_t image_len,
                        const char *cls, size_t cls_len, const char *rle, size_t rle_len) {
  size_t need = osseg_csv_field_bound(image_len) + osseg_csv_field_bound(cls_len) +
                osseg_csv_field_bound(rle_len) + 3;
  if (w->error) return OSSEG_EIO;
  if (need > WRITER_BUFFER) {
    /* Rare (a field of half a megabyte): format in a temporary buffer. */
    char *tmp = osseg__malloc(need);
    if (!tmp) return OSSEG_ENOMEM;
    char *p = osseg_csv_put_field(tmp, image, image_len);
    *p++ = ',';
    p = osseg_csv_put_field(p, cls, cls_len);
    *p++ = ',';
    p = osseg_csv_put_field(p, rle, rle_len);
    *p++ = '\n';
    int rc = osseg_csv_write_raw(w, tmp, (size_t)(p - tmp));
    osseg__free(tmp);
    return rc;
  }
  if (w->len + need > WRITER_BUFFER) flush(w);
  char *p = osseg_csv_put_field(w->buf + w->len, image, image_len);
  *p++ = ',';
  p = osseg_csv_put_field(p, cls, cls_len);
  *p++ = ',';
  p = osseg_csv_put_field(p, rle, rle_len);
  *p++ = '\n';
  w->len = (size_t)(p - w->buf);
  return w->error ? OSSEG_EIO : 0;
}

static void destroy(struct osseg_csv_writer *w) {
  if (w->fd >= 0) close(w->fd);
  osseg__free(w->buf);
  osseg__free(w->path);
  osseg__free(w->tmp);
  osseg__free(w);
}

void osseg_csv_writer_abort(struct osseg_csv_writer *w) {
  if (!w) return;
  if (w->fd >= 0) {
    close(w->fd);
    w->fd = -1;
    unlink(w->tmp);
  }
  destroy(w);
}

int osseg_csv_writer_open(struct osseg_csv_writer **out, const char *path,
                          struct osseg_diag *diag) {
  *out = NULL;
  struct osseg_csv_writer *w = osseg__calloc(1, sizeof *w);
  if (!w) return osseg__fail(diag, OSSEG_ENOMEM, "%s: out of memory", path);
  w->fd = -1;
  size_t plen = strlen(path), tlen = plen + 64;
  w->path = osseg__strndup(path, plen);
  w->tmp = osseg__malloc(tlen);
  w->buf = osseg__malloc(WRITER_BUFFER);
  if (!w->path || !w->tmp || !w->buf) {
    destroy(w);
    return osseg__fail(diag, OSSEG_ENOMEM, "%s: out of memory", path);
  }
  const char *slash = strrchr(path, '/');
  int dirlen = slash ? (int)(slash - path + 1) : 0;
  const char *base = slash ? slash + 1 : path;
  if (*base == '\0') {
    destroy(w);
    return osseg__fail(diag, OSSEG_EINVAL, "%s: not a file name", path);
  }
  for (unsigned attempt = 0; attempt < 100 && w->fd < 0; attempt++) {
    snprintf(w->tmp, tlen, "%.*s.%s.tmp.%ld.%u", dirlen, path, base, (long)getpid(), attempt);
    /* 0666 and the umask give the output the mode any new file would get. */
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (w->fd < 0 && errno != EEXIST) break;
  }
  if (w->fd < 0) {
    int e = errno;
    destroy(w);
    return osseg__fail(diag, OSSEG_EIO, "%s: cannot create a file in its folder: %s", path,
                       strerror(e));
  }
  static const char header[] = "image_name,class,rle\n";
  memcpy(w->buf, header, sizeof header - 1);
  w->len = sizeof header - 1;
  *out = w;
  return 0;
}

int osseg_csv_writer_close(struct osseg_csv_writer *w, struct osseg_diag *diag) {
  flush(w);
  int rc = 0;
  if (w->error) {
    rc = osseg__fail(diag, OSSEG_EIO, "%s: write failed: %s", w->path, strerror(w->error));
  } else if (close(w->fd) != 0) {
    w->fd = -1;
    rc = osseg__fail(diag, OSSEG_EIO, "%s: write failed: %s", w->path, strerror(errno));
    unlink(w->tmp);
  } else {
    w->fd = -1;
    if (rename(w->tmp, w->path) != 0) {
      rc = osseg__fail(diag, OSSEG_EIO, "%s: cannot replace: %s", w->path, strerror(errno));
      unlink(w->tmp);
    }
  }
  if (rc < 0 && w->fd >= 0) {
    close(w->fd);
    w->fd = -1;
    unlink(w->tmp);
  }
  destroy(w);
  return rc;
}
