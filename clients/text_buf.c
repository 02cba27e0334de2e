/* Growable text buffers (text_buf.h). */
#include "text_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "osseg_base.h"

int buf_reserve(struct buf *b, size_t extra) {
  if (b->len + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra) cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) return OSSEG_ENOMEM;
  b->data = d;
  b->cap = cap;
  return 0;
}

int buf_append(struct buf *b, const char *s, size_t n) {
  if (buf_reserve(b, n)) return OSSEG_ENOMEM;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}

/* Appends s as a JSON string literal. */
int buf_json_string(struct buf *b, const char *s) {
  if (buf_append(b, "\"", 1)) return OSSEG_ENOMEM;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      if (buf_append(b, esc, 2)) return OSSEG_ENOMEM;
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      if (buf_append(b, esc, 6)) return OSSEG_ENOMEM;
    } else if (buf_append(b, (const char *)&c, 1)) {
      return OSSEG_ENOMEM;
    }
  }
  return buf_append(b, "\"", 1);
}
