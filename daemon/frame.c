/* Framing: u32 little-endian length + payload, read incrementally. */
#include <stdlib.h>
#include <string.h>

#include "daemon_internal.h"

void ossegd__frame_reader_init(struct ossegd__frame_reader *r, uint64_t max) {
  memset(r, 0, sizeof *r);
  r->max = max;
}

void ossegd__frame_reader_reset(struct ossegd__frame_reader *r) {
  free(r->buf);
  r->buf = NULL;
  r->nhdr = 0;
  r->len = r->have = 0;
}

int ossegd__frame_reader_feed(struct ossegd__frame_reader *r, const uint8_t *data, size_t size,
                              size_t *used, uint8_t **frame, size_t *frame_len) {
  size_t i = 0;
  *frame = NULL;
  *frame_len = 0;
  while (r->nhdr < 4) {
    if (i == size) {
      *used = i;
      return 0;
    }
    r->hdr[r->nhdr++] = data[i++];
    if (r->nhdr < 4) continue;
    uint32_t len = (uint32_t)r->hdr[0] | (uint32_t)r->hdr[1] << 8 | (uint32_t)r->hdr[2] << 16 |
                   (uint32_t)r->hdr[3] << 24;
    /* The declared length is checked before it sizes anything. */
    if (len > r->max) {
      *used = i;
      return OSSEG_ELIMIT;
    }
    r->len = len;
    r->have = 0;
    if (len == 0) {
      r->nhdr = 0;
      *used = i;
      return 1;
    }
    r->buf = malloc(len);
    if (!r->buf) {
      r->nhdr = 0;
      *used = i;
      return OSSEG_ENOMEM;
    }
  }
  size_t take = r->len - r->have;
  if (take > size - i) take = size - i;
  memcpy(r->buf + r->have, data + i, take);
  r->have += take;
  i += take;
  *used = i;
  if (r->have < r->len) return 0;
  *frame = r->buf;
  *frame_len = r->len;
  r->buf = NULL;
  r->nhdr = 0;
  r->len = r->have = 0;
  return 1;
}

uint8_t *ossegd__pack_response(const Osseg__Wire__Response *resp, size_t *len) {
  size_t n = osseg__wire__response__get_packed_size(resp);
  if (n > UINT32_MAX) return NULL;
  uint8_t *f = malloc(n + 4);
  if (!f) return NULL;
  f[0] = (uint8_t)n;
  f[1] = (uint8_t)(n >> 8);
  f[2] = (uint8_t)(n >> 16);
  f[3] = (uint8_t)(n >> 24);
  osseg__wire__response__pack(resp, f + 4);
  *len = n + 4;
  return f;
}
