/* Tests for daemon/frame.c: the incremental frame reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "daemon_internal.h"
#include "test_support.h"

static size_t put_frame(uint8_t *out, const uint8_t *payload, uint32_t len) {
  out[0] = (uint8_t)len;
  out[1] = (uint8_t)(len >> 8);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 24);
  memcpy(out + 4, payload, len);
  return 4 + (size_t)len;
}

/* Feeds `stream` in pieces of the given sizes (cycled) and collects the
 * frames; returns how many, checking each against the expected payloads. */
static size_t feed_all(struct ossegd__frame_reader *r, const uint8_t *stream, size_t size,
                       size_t split, const uint8_t *const *want, const size_t *want_len) {
  size_t nframes = 0, pos = 0;
  while (pos < size) {
    size_t chunk = split && split < size - pos ? split : size - pos;
    size_t off = 0;
    while (off < chunk) {
      size_t used = 0, len = 0;
      uint8_t *frame = NULL;
      int rc = ossegd__frame_reader_feed(r, stream + pos + off, chunk - off, &used, &frame, &len);
      assert_true(rc == 0 || rc == 1);
      assert_true(used <= chunk - off);
      off += used;
      if (rc == 1) {
        assert_int_equal(len, want_len[nframes]);
        if (len) assert_memory_equal(frame, want[nframes], len);
        else assert_null(frame);
        free(frame);
        nframes++;
      } else {
        assert_int_equal(off, chunk);
      }
    }
    pos += chunk;
  }
  return nframes;
}

static void test_split_at_every_byte(void **state) {
  (void)state;
  uint8_t a[300], b[1], stream[600];
  for (size_t i = 0; i < sizeof a; i++) a[i] = (uint8_t)(i * 7 + 1);
  b[0] = 0x42;
  size_t n = put_frame(stream, a, sizeof a);
  n += put_frame(stream + n, b, 0); /* zero length */
  n += put_frame(stream + n, b, 1);
  const uint8_t *want[] = {a, NULL, b};
  const size_t want_len[] = {sizeof a, 0, 1};
  /* Every split size, and every single split point of two pieces. */
  for (size_t split = 0; split <= n; split++) {
    struct ossegd__frame_reader r;
    ossegd__frame_reader_init(&r, 1000);
    assert_int_equal(feed_all(&r, stream, n, split, want, want_len), 3);
    ossegd__frame_reader_reset(&r);
  }
  for (size_t cut = 1; cut < n; cut++) {
    struct ossegd__frame_reader r;
    ossegd__frame_reader_init(&r, 1000);
    size_t got = feed_all(&r, stream, cut, 0, want, want_len);
    /* the rest, with the frames already seen skipped */
    got += feed_all(&r, stream + cut, n - cut, 0, want + got, want_len + got);
    assert_int_equal(got, 3);
    ossegd__frame_reader_reset(&r);
  }
}

static void test_over_limit(void **state) {
  (void)state;
  struct ossegd__frame_reader r;
  ossegd__frame_reader_init(&r, 100);
  uint8_t hdr[4] = {101, 0, 0, 0};
  size_t used = 0, len = 0;
  uint8_t *frame = NULL;
  /* Three header bytes are not enough to decide. */
  assert_int_equal(ossegd__frame_reader_feed(&r, hdr, 3, &used, &frame, &len), 0);
  assert_int_equal(used, 3);
  assert_int_equal(ossegd__frame_reader_feed(&r, hdr + 3, 1, &used, &frame, &len), OSSEG_ELIMIT);
  assert_null(r.buf); /* nothing allocated for it */
  ossegd__frame_reader_reset(&r);

  /* 0xffffffff: refused at once, not allocated. */
  uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
  ossegd__frame_reader_init(&r, 64u << 20);
  assert_int_equal(ossegd__frame_reader_feed(&r, huge, 4, &used, &frame, &len), OSSEG_ELIMIT);
  assert_null(frame);
  ossegd__frame_reader_reset(&r);

  /* Exactly the limit is fine. */
  uint8_t stream[104];
  memset(stream, 9, sizeof stream);
  stream[0] = 100;
  stream[1] = stream[2] = stream[3] = 0;
  ossegd__frame_reader_init(&r, 100);
  assert_int_equal(ossegd__frame_reader_feed(&r, stream, sizeof stream, &used, &frame, &len), 1);
  assert_int_equal(len, 100);
  free(frame);
  ossegd__frame_reader_reset(&r);
}

static void test_reset_frees_partial(void **state) {
  (void)state;
  struct ossegd__frame_reader r;
  ossegd__frame_reader_init(&r, 100);
  uint8_t part[10] = {50, 0, 0, 0, 1, 2, 3};
  size_t used, len;
  uint8_t *frame;
  assert_int_equal(ossegd__frame_reader_feed(&r, part, 7, &used, &frame, &len), 0);
  assert_non_null(r.buf);
  ossegd__frame_reader_reset(&r); /* ASan: no leak */
  assert_null(r.buf);
}

static void test_pack_response(void **state) {
  (void)state;
  Osseg__Wire__Response resp = OSSEG__WIRE__RESPONSE__INIT;
  Osseg__Wire__Error e = OSSEG__WIRE__ERROR__INIT;
  e.code = OSSEG__WIRE__ERROR__CODE__BUSY;
  e.message = "x";
  resp.id = 77;
  resp.kind_case = OSSEG__WIRE__RESPONSE__KIND_ERROR;
  resp.error = &e;
  size_t len = 0;
  uint8_t *f = ossegd__pack_response(&resp, &len);
  assert_non_null(f);
  uint32_t n = (uint32_t)f[0] | (uint32_t)f[1] << 8 | (uint32_t)f[2] << 16 | (uint32_t)f[3] << 24;
  assert_int_equal(n + 4, len);
  Osseg__Wire__Response *back = osseg__wire__response__unpack(NULL, n, f + 4);
  assert_non_null(back);
  assert_int_equal(back->id, 77);
  assert_int_equal(back->error->code, OSSEG__WIRE__ERROR__CODE__BUSY);
  osseg__wire__response__free_unpacked(back, NULL);
  free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_at_every_byte),
      cmocka_unit_test(test_over_limit),
      cmocka_unit_test(test_reset_frees_partial),
      cmocka_unit_test(test_pack_response),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
