/* A growable byte buffer for text the commands build before writing it
 * (an image's CSV rows, a JSON line). */
#ifndef OSSEG_CLIENTS_TEXT_BUF_H
#define OSSEG_CLIENTS_TEXT_BUF_H

#include <stddef.h>

struct buf {
  char *data; /* owned: free() */
  size_t len, cap;
};

/* Room for `extra` more bytes; 0 or OSSEG_ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const char *s, size_t n);
/* Appends s as a JSON string literal (quotes, backslashes and control
 * bytes escaped). */
int buf_json_string(struct buf *b, const char *s);

#endif
