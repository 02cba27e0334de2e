/* Prediction CSV writer: see osseg_kernels.h.
 *
 * The file itself is written through osseg_output (base/): a temporary
 * file renamed over a regular destination when everything has been
 * written, so readers see either the old file or the complete new one, and
 * a device, FIFO or symlink given as the destination is written through
 * rather than replaced. */
#include <string.h>

#include "osseg_kernels.h"

#define WRITER_BUFFER (1u << 20)

struct osseg_csv_writer {
  struct osseg_output out;
  int error;               /* first failed write (OSSEG_E*), 0 if none */
  struct osseg_diag diag;  /* its message */
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

static void write_out(struct osseg_csv_writer *w, const char *p, size_t n) {
  if (!w->error) w->error = osseg_output_write(&w->out, p, n, &w->diag);
}

static void flush(struct osseg_csv_writer *w) {
  if (w->len) write_out(w, w->buf, w->len);
  w->len = 0;
}

int osseg_csv_write_raw(struct osseg_csv_writer *w, const char *data, size_t len) {
  if (w->error) return OSSEG_EIO;
  if (w->len + len > WRITER_BUFFER) flush(w);
  if (len >= WRITER_BUFFER) {
    write_out(w, data, len);
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

void osseg_csv_writer_abort(struct osseg_csv_writer *w) {
  if (!w) return;
  osseg_output_abort(&w->out);
  osseg__free(w->buf);
  osseg__free(w);
}

int osseg_csv_writer_open(struct osseg_csv_writer **out, const char *path,
                          struct osseg_diag *diag) {
  *out = NULL;
  struct osseg_csv_writer *w = osseg__calloc(1, sizeof *w);
  char *buf = osseg__malloc(WRITER_BUFFER);
  if (!w || !buf) {
    osseg__free(w);
    osseg__free(buf);
    return osseg__fail(diag, OSSEG_ENOMEM, "%s: out of memory", path);
  }
  int rc = osseg_output_open(&w->out, path, diag);
  if (rc) {
    osseg__free(w);
    osseg__free(buf);
    return rc;
  }
  w->buf = buf;
  static const char header[] = "image_name,class,rle\n";
  memcpy(w->buf, header, sizeof header - 1);
  w->len = sizeof header - 1;
  *out = w;
  return 0;
}

int osseg_csv_writer_close(struct osseg_csv_writer *w, struct osseg_diag *diag) {
  flush(w);
  int rc;
  if (w->error) {
    rc = osseg__fail(diag, w->error, "%s", w->diag.message);
    osseg_output_abort(&w->out);
  } else {
    rc = osseg_output_commit(&w->out, diag);
  }
  osseg__free(w->buf);
  osseg__free(w);
  return rc;
}
