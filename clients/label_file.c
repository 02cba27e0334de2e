/* See label_file.h. */
#include "label_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "image_list.h"

int label_file_read(struct label_file *f, const char *dir, const char *image_path, char *msg,
                    size_t msg_size) {
  memset(f, 0, sizeof *f);
  const char *name = image_base_name(image_path);
  size_t n = strlen(name);
  if (n > 4 && (strcmp(name + n - 4, ".png") == 0 || strcmp(name + n - 4, ".PNG") == 0)) n -= 4;
  int len = snprintf(f->path, sizeof f->path, "%s/%.*s.json", dir, (int)n, name);
  if (len < 0 || (size_t)len >= sizeof f->path) {
    snprintf(msg, msg_size, "%s/%s: the label file's path is too long", dir, name);
    return -1;
  }
  return label_file_read_path(f, f->path, msg, msg_size);
}

int label_file_read_path(struct label_file *f, const char *path, char *msg, size_t msg_size) {
  if (f->path != path) {
    memset(f, 0, sizeof *f);
    int len = snprintf(f->path, sizeof f->path, "%s", path);
    if (len < 0 || (size_t)len >= sizeof f->path) {
      snprintf(msg, msg_size, "%s: the label file's path is too long", path);
      return -1;
    }
  }
  if (cli_read_file(f->path, LABEL_FILE_MAX_BYTES, &f->text, &f->len) != 0) {
    if (errno == EFBIG)
      snprintf(msg, msg_size, "%s: over %zu bytes, too large for a label file", f->path,
               LABEL_FILE_MAX_BYTES);
    else if (errno == EINVAL)
      snprintf(msg, msg_size, "%s: not a regular file", f->path);
    else
      snprintf(msg, msg_size, "%s: %s", f->path, strerror(errno));
    return -1;
  }
  if (memchr(f->text, '\0', f->len)) {
    snprintf(msg, msg_size, "%s: contains a NUL byte, so it is no JSON text", f->path);
    label_file_free(f);
    return -1;
  }
  return 0;
}

void label_file_free(struct label_file *f) {
  free(f->text);
  f->text = NULL;
  f->len = 0;
}
