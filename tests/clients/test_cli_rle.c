/* Tests of `osseg rle`, run as a program: decode a CSV row to a PNG mask
 * and encode it back (canonical runs, quoting of the CSV form), errors and
 * exit statuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

static const char *dir;

static const char *put(const char *name, const char *text) {
  const char *path = test_path("%s/%s", dir, name);
  assert_int_equal(test_write_file(path, text, strlen(text)), 0);
  return path;
}

static const char CSV[] =
    "image_name,class,rle\n"
    "img_1.png,finger-1,11 2 2 3 3 1 16 1\n"
    "\"a,b\"\"c.png\",Ulna,\n"
    "full.png,Radius,1 16\n";

/* decode then encode gives the canonical runs back. */
static void roundtrip(const char *image, const char *cls, const char *expected) {
  const char *csv = put("in.csv", CSV);
  char png[4096];
  snprintf(png, sizeof png, "%s/mask.png", dir);
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "rle", "decode", "--height", "4", "--width", "4", "-o", png,
                       csv, image, cls, NULL),
                   0);
  assert_string_equal(out, "");
  assert_string_equal(err, "");
  free(out);
  free(err);
  assert_int_equal(test_osseg_run(&out, &err, "rle", "encode", png, NULL), 0);
  assert_string_equal(out, expected);
  free(out);
  free(err);
}

static void test_roundtrip(void **state) {
  (void)state;
  roundtrip("img_1.png", "finger-1", "2 3 11 2 16 1\n");
  roundtrip("a,b\"c.png", "Ulna", "\n");
  roundtrip("full.png", "Radius", "1 16\n");
}

static void test_encode_csv_form(void **state) {
  (void)state;
  const char *csv = put("in.csv", CSV);
  char png[4096];
  snprintf(png, sizeof png, "%s/mask.png", dir);
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "rle", "decode", "--height", "4", "--width", "4", "-o", png,
                       csv, "img_1.png", "finger-1", NULL),
                   0);
  free(out);
  free(err);
  assert_int_equal(test_osseg_run(&out, &err, "rle", "encode", "--image", "x_1,\"y\".png", "--class",
                       "finger-1", png, NULL),
                   0);
  assert_string_equal(out, "image_name,class,rle\n\"x_1,\"\"y\"\".png\",finger-1,2 3 11 2 16 1\n");
  free(out);
  free(err);
}

/* -o at a device node writes through it (the node stays, as /dev/null
 * must); -o at a symlink writes the file it points at and keeps the link. */
static void test_decode_to_device_and_symlink(void **state) {
  (void)state;
  const char *csv = put("in.csv", CSV);
  char dev[4096], real[4096], link[4096];
  snprintf(dev, sizeof dev, "%s/null", dir);
  snprintf(real, sizeof real, "%s/real.png", dir);
  snprintf(link, sizeof link, "%s/link.png", dir);
  test_mknod_null(dev);
  assert_int_equal(test_osseg_run(NULL, NULL, "rle", "decode", "--height", "4", "--width", "4",
                                  "-o", dev, csv, "img_1.png", "finger-1", NULL),
                   0);
  assert_true(test_is_null_device(dev));
  put("real.png", "old");
  assert_int_equal(symlink("real.png", link), 0);
  assert_int_equal(test_osseg_run(NULL, NULL, "rle", "decode", "--height", "4", "--width", "4",
                                  "-o", link, csv, "img_1.png", "finger-1", NULL),
                   0);
  struct stat st;
  assert_int_equal(lstat(link, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  char *out;
  assert_int_equal(test_osseg_run(&out, NULL, "rle", "encode", real, NULL), 0);
  assert_string_equal(out, "2 3 11 2 16 1\n");
  free(out);
  unlink(dev);
  unlink(link);
  unlink(real);
}

#define expect_fail(code, msg, ...) test_osseg_expect_fail(code, msg, "rle", __VA_ARGS__)

static void test_errors(void **state) {
  (void)state;
  const char *csv = put("in.csv", CSV);
  char png[4096], msg[8192];
  snprintf(png, sizeof png, "%s/never.png", dir);
  expect_fail(2, "osseg rle: expected 'decode' or 'encode' (see 'osseg rle --help')\n", NULL);
  expect_fail(2, "osseg rle: expected 'decode' or 'encode' (see 'osseg rle --help')\n", "play",
              NULL);
  expect_fail(2,
              "osseg rle: decode needs -o MASK.png CSV IMAGE_NAME CLASS (see 'osseg rle --help')\n",
              "decode", csv, "img_1.png", "finger-1", NULL);
  expect_fail(2,
              "osseg rle: encode needs MASK.png, and --image with --class or neither (see 'osseg "
              "rle --help')\n",
              "encode", "--image", "x", png, NULL);
  snprintf(msg, sizeof msg, "osseg rle: %s: no row for image 'img_2.png', class 'finger-1'\n", csv);
  expect_fail(1, msg, "decode", "-o", png, csv, "img_2.png", "finger-1", NULL);
  /* 16 pixels fit the default 2048x2048, not 3x3. */
  snprintf(msg, sizeof msg,
           "osseg rle: %s:4: rle: offset 0: run '1 16' ends past the image end (9 pixels)\n", csv);
  expect_fail(1, msg, "decode", "--height", "3", "--width", "3", "-o", png, csv, "full.png",
              "Radius", NULL);
  /* Two rows for one (image, class) are an error naming both lines, as in
   * dice and ensemble, also when the duplicate is not the row asked for. */
  const char *dup = put("dup.csv", "image_name,class,rle\n"
                                   "img_1.png,finger-1,1 2\n"
                                   "img_1.png,Ulna,\n"
                                   "img_1.png,finger-1,5 1\n");
  snprintf(msg, sizeof msg,
           "osseg rle: %s:4: duplicate row for image 'img_1.png', class 'finger-1' (first at "
           "line 2)\n",
           dup);
  expect_fail(1, msg, "decode", "--height", "4", "--width", "4", "-o", png, dup, "img_1.png",
              "finger-1", NULL);
  expect_fail(1, msg, "decode", "--height", "4", "--width", "4", "-o", png, dup, "img_1.png",
              "Ulna", NULL);
  struct stat st;
  assert_int_not_equal(stat(png, &st), 0); /* nothing written on failure */
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "rle", "encode", csv, NULL), 1);
  assert_int_equal(strncmp(err, "osseg rle: ", 11), 0);
  assert_string_equal(out, "");
  free(out);
  free(err);
  assert_int_equal(test_osseg_run(&out, &err, "rle", "--help", NULL), 0);
  assert_non_null(strstr(out, "usage: osseg rle decode"));
  free(out);
  free(err);
}

int main(void) {
  dir = strdup(test_tmpdir());
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_encode_csv_form),
      cmocka_unit_test(test_decode_to_device_and_symlink),
      cmocka_unit_test(test_errors),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  const char *argv[] = {"/bin/rm", "-rf", dir, NULL};
  test_run(argv, NULL, NULL, 30);
  return rc;
}
