/* Tests of `osseg view`, run as a program: the URL of the in-tree viewer,
 * the files as a percent-encoded hint, --dir, and the exit statuses. The
 * page itself is tested in a browser by tests/viewer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_support.h"

static const char *dir;

static void test_url(void **state) {
  (void)state;
  const char *file = test_path("%s/pred A#1.csv", dir);
  assert_int_equal(test_write_file(file, "image_name,class,rle\n", 21), 0);
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "view", dir, file, NULL), 0);
  char expected[4096];
  snprintf(expected, sizeof expected,
           "file://%s/clients/viewer/index.html#%s|%s/pred%%20A%%231.csv\n"
           "\n"
           "Open the URL in a browser, then choose (\"Open files…\" or \"Open folder…\")\n"
           "or drop on the page:\n"
           "  %s/ (its .png, .json and .csv files)\n"
           "  %s/pred A#1.csv\n",
           test_source_dir(), dir, dir, dir, dir);
  assert_string_equal(out, expected);
  assert_string_equal(err, "");
  free(out);
  free(err);

  assert_int_equal(test_osseg_run(&out, &err, "view", NULL), 0);
  snprintf(expected, sizeof expected, "file://%s/clients/viewer/index.html\n", test_source_dir());
  assert_string_equal(out, expected);
  free(out);
  free(err);

  assert_int_equal(test_osseg_run(&out, &err, "view", "--dir", NULL), 0);
  snprintf(expected, sizeof expected, "%s/clients/viewer\n", test_source_dir());
  assert_string_equal(out, expected);
  free(out);
  free(err);
}

static void test_errors(void **state) {
  (void)state;
  const char *missing = test_path("%s/missing.csv", dir);
  char msg[4096];
  snprintf(msg, sizeof msg, "osseg view: %s: No such file or directory\n", missing);
  test_osseg_expect_fail(1, msg, "view", missing, NULL);
  test_osseg_expect_fail(2, "osseg view: unknown option '--bogus' (see 'osseg view --help')\n",
                         "view", "--bogus", NULL);
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "view", "--help", NULL), 0);
  assert_non_null(strstr(out, "usage: osseg view"));
  free(out);
  free(err);
}

int main(void) {
  dir = strdup(test_tmpdir());
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url),
      cmocka_unit_test(test_errors),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  const char *argv[] = {"/bin/rm", "-rf", dir, NULL};
  test_run(argv, NULL, NULL, 30);
  return rc;
}
