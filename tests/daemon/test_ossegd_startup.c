/* ossegd integration tests, start-up and the command line: models that do
 * not load, bad usage, stale and live sockets, the socket's mode. See
 * daemon_harness.h. */
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

static void test_startup(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char sock[300];
  snprintf(sock, sizeof sock, "%s/ossegd.sock", dir);
  char *err = NULL;
  /* A model that does not load: exit 1, naming the file, and no socket. */
  char arg[1024];
  snprintf(arg, sizeof arg, "x=%s/missing.onnx", dir);
  assert_int_equal(daemon_fail(sock, &err, "--model", arg, NULL), 1);
  assert_non_null(strstr(err, "missing.onnx"));
  free(err);
  struct stat st;
  assert_int_equal(stat(sock, &st), -1);
  /* Model options reach the registry: normalize keeps its commas, and two
   * class names for 29 channels is the model's error. */
  snprintf(arg, sizeof arg, "c=%s,normalize=mean=0.5,0.5,0.5;std=0.2,0.2,0.2,classes=x;y",
           model_file("unetpp_r18_tiny_op13"));
  assert_int_equal(daemon_fail(sock, &err, "--model", arg, NULL), 1);
  assert_non_null(strstr(err, "2 class names for 29 output channels"));
  free(err);
  /* Bad usage: exit 2. */
  assert_int_equal(daemon_fail(sock, &err, "--max-queue", "zero", NULL), 2);
  assert_non_null(strstr(err, "--max-queue"));
  free(err);
  assert_int_equal(daemon_fail(sock, &err, "--model", "nameonly", NULL), 2);
  free(err);
  snprintf(arg, sizeof arg, "d=%s,precision=bf17", model_file("unetpp_r18_tiny_op13"));
  assert_int_equal(daemon_fail(sock, &err, "--model", arg, NULL), 2);
  assert_non_null(strstr(err, "precision must be fp32, bf16, bf16-mixed, int8 or auto, not 'bf17'"));
  free(err);

  /* A stale socket file is replaced; a live one is refused. */
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  assert_true(strlen(sock) < sizeof a.sun_path);
  memcpy(a.sun_path, sock, strlen(sock) + 1);
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  close(s); /* the file stays, nobody listens */
  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, NULL), 0);
  assert_int_equal(stat(d.sock, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0660);
  assert_int_equal(daemon_fail(sock, &err, NULL), 1);
  assert_non_null(strstr(err, "another daemon listens"));
  free(err);
  Osseg__Wire__Response *h = health(&d); /* the first is unharmed */
  osseg__wire__response__free_unpacked(h, NULL);
  assert_int_equal(daemon_stop(&d, 20), 0);
  assert_int_equal(stat(sock, &st), -1);
}

/* --max-image-side: on the command line and in --help, reported by Health
 * beside --max-image-pixels, and enforced on PNG headers (bytes and file
 * descriptors) and raw dimensions with IMAGE_TOO_LARGE naming the image's
 * size and the limit; an image within both limits is served. */
static void test_max_image_side(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char sock[300];
  snprintf(sock, sizeof sock, "%s/ossegd.sock", dir);
  char *err = NULL, *out = NULL;
  assert_int_equal(daemon_fail(sock, &err, "--max-image-side", "0", NULL), 2);
  assert_non_null(strstr(err, "--max-image-side must be 1..16384, not '0'"));
  free(err);
  assert_int_equal(daemon_fail(sock, &err, "--max-image-side", "16385", NULL), 2);
  assert_non_null(strstr(err, "--max-image-side must be 1..16384, not '16385'"));
  free(err);
  const char *help[] = {test_path("%s/bin/ossegd", test_binary_dir()), "--help", NULL};
  assert_int_equal(test_run(help, &out, NULL, 30), 0);
  assert_non_null(strstr(out, "--max-image-side N"));
  free(out);

  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, "--max-image-side", "100", "--max-image-pixels", "6000",
                                NULL), 0);
  Osseg__Wire__Response *h = health(&d);
  assert_true(h->health->has_max_image_side);
  assert_int_equal(h->health->max_image_side, 100);
  assert_int_equal(h->health->max_image_pixels, 6000);
  osseg__wire__response__free_unpacked(h, NULL);

  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  int code;
  char msg[512];
  struct seg_req q;
  /* PNG bytes over the side, in either direction. */
  static const uint32_t dims[][2] = {{120, 50}, {50, 120}, {101, 10}};
  for (size_t i = 0; i < 3; i++) {
    size_t size;
    uint8_t *png = make_png(dims[i][0], dims[i][1], 1, &size);
    seg_init(&q, 10 + i, png, size, "a");
    segment_outcome(fd, &q, &code, msg, sizeof msg);
    free(png);
    assert_int_equal(code, CODE(IMAGE_TOO_LARGE) + 1);
    char want[64];
    snprintf(want, sizeof want, "%ux%u", dims[i][0], dims[i][1]);
    if (!strstr(msg, want) || !strstr(msg, "100"))
      fail_msg("'%s' does not name %s and the limit 100", msg, want);
  }
  /* Raw pixels over the side. */
  static uint8_t pixels[101 * 10];
  seg_init(&q, 20, NULL, 0, "a");
  seg_set_raw(&q, 101, 10, 8, pixels, sizeof pixels);
  segment_outcome(fd, &q, &code, msg, sizeof msg);
  assert_int_equal(code, CODE(IMAGE_TOO_LARGE) + 1);
  assert_non_null(strstr(msg, "101x10 is over the limit of 100 pixels a side"));
  /* Within the side, over the pixels: 80x80 = 6400 > 6000. */
  size_t size;
  uint8_t *png = make_png(80, 80, 1, &size);
  seg_init(&q, 21, png, size, "a");
  segment_outcome(fd, &q, &code, msg, sizeof msg);
  assert_int_equal(code, CODE(IMAGE_TOO_LARGE) + 1);
  if (!strstr(msg, "80x80") || !strstr(msg, "6000"))
    fail_msg("'%s' does not name 80x80 and the limit of 6000 pixels", msg);
  free(png);
  /* A file descriptor of a PNG over the side. */
  png = make_png(120, 50, 1, &size);
  const char *path = test_path("%s/wide.png", dir);
  assert_int_equal(test_write_file(path, png, size), 0);
  free(png);
  int pfd = open(path, O_RDONLY);
  assert_true(pfd >= 0);
  seg_init(&q, 22, NULL, 0, "a");
  seg_set_fd(&q);
  assert_int_equal(send_request_fd(fd, &q.r, pfd), 0);
  close(pfd);
  struct result x = {.id = 22};
  assert_int_equal(collect(fd, &x, 1), 0);
  assert_int_equal(x.error, CODE(IMAGE_TOO_LARGE) + 1);
  if (!strstr(x.message, "120x50") || !strstr(x.message, "100"))
    fail_msg("'%s' does not name 120x50 and the limit 100", x.message);
  result_free(&x);
  /* Within both: 96x60 = 5760 pixels. */
  png = make_png(96, 60, 1, &size);
  seg_init(&q, 23, png, size, "a");
  segment_outcome(fd, &q, &code, msg, sizeof msg);
  free(png);
  if (code != 0) fail_msg("96x60 refused: %s", msg);
  close(fd);
  assert_int_equal(daemon_stop(&d, 20), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_startup),
      cmocka_unit_test(test_max_image_side),
  };
  return harness_main(tests, harness_group_setup, harness_group_teardown);
}
