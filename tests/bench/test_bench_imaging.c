/* Tests of bench/bench_imaging, run as a program: a timing line for a valid
 * PNG, and a one-line error with exit status 1 and nothing leaked (the ASan
 * build's LeakSanitizer would change the status and print a report) for a
 * file that is not a PNG, first or after a good one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_imaging.h"
#include "test_support.h"

static const char *bench_bin(void) {
  static char path[4096];
  if (!path[0]) snprintf(path, sizeof path, "%s/bin/bench_imaging", test_binary_dir());
  return path;
}

static void test_bench_imaging(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  assert_non_null(dir);
  char png[4096], bad[4096];
  snprintf(png, sizeof png, "%s/ok.png", dir);
  snprintf(bad, sizeof bad, "%s/not_a.png", dir);
  struct osseg_image img = {0};
  assert_int_equal(osseg_image_init(&img, 40, 30, 1, 8), 0);
  for (size_t i = 0; i < 40 * 30; i++) img.data[i] = (uint8_t)(i * 7);
  assert_int_equal(osseg_png_encode_file(png, &img, 1, NULL), 0);
  osseg_image_free(&img);
  assert_int_equal(test_write_file(bad, "plain text, not a PNG\n", 22), 0);

  char *out, *err;
  const char *ok_argv[] = {bench_bin(), "-n", "3", "-s", "16", png, NULL};
  assert_int_equal(test_run(ok_argv, &out, &err, 60), 0);
  assert_int_equal(strncmp(out, "files 1 x 3 repeats, size 16: median thread CPU ms: decode ", 59),
                   0);
  assert_string_equal(err, "");
  free(out);
  free(err);

  /* The bad file alone, and after a good one (buffers in use by then). */
  for (int order = 0; order < 2; order++) {
    const char *argv[] = {bench_bin(), "-n", "2", "-s", "16", order ? png : bad, bad, NULL};
    int rc = test_run(argv, &out, &err, 60);
    if (rc != 1 || strncmp(err, "bench_imaging: ", 15) != 0 ||
        strchr(err, '\n') != err + strlen(err) - 1)
      fail_msg("order %d: exit %d, stderr '%s'", order, rc, err);
    assert_non_null(strstr(err, "not_a.png"));
    assert_string_equal(out, "");
    free(out);
    free(err);
  }
  const char *rm[] = {"/bin/rm", "-rf", dir, NULL};
  test_run(rm, NULL, NULL, 30);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bench_imaging),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
