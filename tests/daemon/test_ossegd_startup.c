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

static int group_setup(void **state) {
  (void)state;
  return harness_setup();
}

static int group_teardown(void **state) {
  (void)state;
  harness_teardown();
  return 0;
}

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
  assert_non_null(strstr(err, "precision must be fp32, bf16 or bf16-mixed, not 'bf17'"));
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

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_startup),
  };
  return harness_main(tests, group_setup, group_teardown);
}
