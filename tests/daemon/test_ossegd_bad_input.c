/* ossegd integration tests, bad input: frames over the limit, garbage,
 * invalid requests; each answered by an Error or a closed connection, and
 * the daemon keeps serving. See daemon_harness.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon_harness.h"
#include "test_support.h"

static struct daemon shared; /* models a and b, 2 workers, 4 MB frames */

static int group_setup(void **state) {
  (void)state;
  if (harness_setup() != 0) return -1;
  const char *dir = test_tmpdir();
  if (!dir) return -1;
  if (daemon_start(&shared, dir, "--max-frame-bytes", "4000000", NULL) != 0) return -1;
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  int st = daemon_stop(&shared, 20);
  harness_teardown();
  return st == 0 ? 0 : -1;
}

static void test_bad_inputs(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  /* A declared length over the limit: closed without reading it. */
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  uint8_t big[4] = {0x00, 0x00, 0x00, 0x10}; /* 256 MiB */
  assert_int_equal(write_all(fd, big, 4), 0);
  assert_true(closed_by_peer(fd));
  close(fd);
  Osseg__Wire__Response *h = health(&shared);
  assert_int_equal(h->health->max_frame_bytes, 4000000);
  osseg__wire__response__free_unpacked(h, NULL);

  /* Garbage that does not unpack as a Request. */
  fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  uint8_t junk[4 + 16] = {16, 0, 0, 0};
  memset(junk + 4, 0xff, 16);
  assert_int_equal(write_all(fd, junk, sizeof junk), 0);
  assert_true(closed_by_peer(fd));
  close(fd);
  /* A zero-length frame (no id) does not either. */
  fd = try_connect(shared.sock);
  uint8_t zero[4] = {0};
  assert_int_equal(write_all(fd, zero, 4), 0);
  assert_true(closed_by_peer(fd));
  close(fd);
  h = health(&shared);
  osseg__wire__response__free_unpacked(h, NULL);

  /* Invalid requests are answered and the connection stays usable. */
  fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  struct seg_req q;
  seg_init(&q, 1, png, size, "nosuchmodel");
  assert_int_equal(send_request(fd, &q.r), 0);
  /* Signature and IHDR intact, the image data garbage. */
  uint8_t corrupt[96];
  memcpy(corrupt, png, 33);
  memset(corrupt + 33, 0x5a, sizeof corrupt - 33);
  seg_init(&q, 2, corrupt, sizeof corrupt, "a");
  assert_int_equal(send_request(fd, &q.r), 0);
  uint8_t pixels[100] = {0};
  seg_init(&q, 3, NULL, 0, "a");
  osseg__wire__raw_image__init(&q.raw);
  q.raw.width = 10;
  q.raw.height = 11; /* 110 pixels, 100 bytes sent */
  q.raw.bit_depth = 8;
  q.raw.pixels.data = pixels;
  q.raw.pixels.len = sizeof pixels;
  q.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_RAW;
  q.s.raw = &q.raw;
  assert_int_equal(send_request(fd, &q.r), 0);
  seg_init(&q, 4, png, size, "a");
  q.s.has_threshold = 1;
  q.s.threshold = 2.0f;
  assert_int_equal(send_request(fd, &q.r), 0);
  Osseg__Wire__Request hr;
  simple_req(&hr, 5, OSSEG__WIRE__REQUEST__KIND_HEALTH);
  assert_int_equal(send_request(fd, &hr), 0);
  struct result x[5];
  memset(x, 0, sizeof x);
  for (int i = 0; i < 5; i++) x[i].id = (uint64_t)i + 1;
  assert_int_equal(collect(fd, x, 5), 0);
  assert_int_equal(x[0].error, CODE(UNKNOWN_MODEL) + 1);
  assert_non_null(strstr(x[0].message, "models[0]: no model named 'nosuchmodel'"));
  assert_int_equal(x[1].error, CODE(BAD_IMAGE) + 1);
  assert_int_equal(x[2].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x[2].message, "image.raw.pixels"));
  assert_int_equal(x[3].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x[3].message, "threshold"));
  assert_int_equal(x[4].other, OSSEG__WIRE__RESPONSE__KIND_HEALTH);
  for (int i = 0; i < 5; i++) result_free(&x[i]);
  close(fd);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_inputs),
  };
  return harness_main(tests, group_setup, group_teardown);
}
