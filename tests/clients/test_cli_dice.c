/* Tests of `osseg dice`, run as a program: hand-computed scores in table
 * and JSON form, class order, missing and extra rows, malformed inputs with
 * their exact messages, and exit statuses. */
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

static const char *put_n(const char *name, const char *text, size_t len) {
  const char *path = test_path("%s/%s", dir, name);
  assert_int_equal(test_write_file(path, text, len), 0);
  return path;
}

static const char *put(const char *name, const char *text) {
  return put_n(name, text, strlen(text));
}

/* 4x4 images. Hand-computed per-row Dice, (2|A&B| + 1e-4)/(|A|+|B| + 1e-4):
 *   img_a finger-1: GT {0..3}, PRED {2..5}: |A&B| = 2  -> 4.0001/8.0001
 *   img_a finger-2: GT {4,5},  PRED empty              -> 0.0001/2.0001
 *   img_b finger-1: both empty                         -> 1
 *   img_b finger-2: GT all 16, PRED row missing        -> 0.0001/16.0001
 * Classes in GT order: finger-2 first (it comes first in GT). */
static const char GT[] =
    "image_name,class,rle\n"
    "img_a.png,finger-2,5 2\n"
    "img_a.png,finger-1,1 4\n"
    "img_b.png,finger-1,\n"
    "img_b.png,finger-2,1 16\n";
static const char PRED[] =
    "image_name,class,rle\r\n"
    "img_b.png,finger-1,\r\n"
    "img_a.png,finger-1,3 2 5 2\r\n"
    "img_a.png,finger-2,\r\n"
    "img_c.png,finger-1,1 1\r\n";

static double f1(void) { return ((4.0001 / 8.0001) + 1.0) / 2; }
static double f2(void) { return ((0.0001 / 2.0001) + (0.0001 / 16.0001)) / 2; }

static void test_table(void **state) {
  (void)state;
  const char *gt = put("gt.csv", GT), *pred = put("pred.csv", PRED);
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "dice", "--height", "4", "--width", "4", pred, gt, NULL), 0);
  char expected[1024];
  snprintf(expected, sizeof expected,
           "class       dice  images\n"
           "finger-2  %6.4f       2\n"
           "finger-1  %6.4f       2\n"
           "mean      %6.4f       2\n",
           f2(), f1(), (f1() + f2()) / 2);
  assert_string_equal(out, expected);
  assert_non_null(strstr(out, "finger-1  0.7500"));
  snprintf(expected, sizeof expected,
           "osseg dice: warning: %s: 1 of the 4 rows of %s are missing; scored as empty masks\n"
           "osseg dice: warning: %s: 1 rows have no (image, class) in %s; ignored\n",
           pred, gt, pred, gt);
  assert_string_equal(err, expected);
  free(out);
  free(err);
}

/* Trailing blank lines (LF or CRLF, as editors and pandas leave them) are
 * accepted; a blank line between rows is an error naming file and line. */
static void test_blank_lines(void **state) {
  (void)state;
  char gt_text[512], pred_text[512];
  snprintf(gt_text, sizeof gt_text, "%s\n\n", GT);
  snprintf(pred_text, sizeof pred_text, "%s\r\n\r\n", PRED);
  const char *gt = put("gt.csv", gt_text), *pred = put("pred.csv", pred_text);
  char *out, *err;
  int rc = test_osseg_run(&out, &err, "dice", "--json", "--height", "4", "--width", "4", pred, gt,
                          NULL);
  if (rc != 0) fail_msg("exit %d, stderr '%s'", rc, err);
  char expected[1024];
  snprintf(expected, sizeof expected,
           "{\"mean\":%.10g,\"per_class\":{\"finger-2\":%.10g,\"finger-1\":%.10g},\"images\":2}\n",
           (f2() + f1()) / 2, f2(), f1());
  assert_string_equal(out, expected);
  free(out);
  free(err);

  const char *bad = put("bad.csv", "image_name,class,rle\nimg_a.png,finger-1,1 1\n\n\n"
                                   "img_b.png,finger-1,\n");
  char msg[1024];
  snprintf(msg, sizeof msg, "osseg dice: %s:3: blank line\n", bad);
  test_osseg_expect_fail(1, msg, "dice", bad, gt, NULL);
}

/* Class names in UTF-8 (from the CSVs) are padded by terminal columns,
 * not bytes: accented (precomposed and with a combining mark), CJK (two
 * columns a character) and ASCII names line up. */
static void test_table_utf8_names(void **state) {
  (void)state;
  const char *csv = put("utf8.csv",
                        "image_name,class,rle\n"
                        "img.png,Trap\xc3\xa8ze,1 1\n"                  /* 7 columns, 8 bytes */
                        "img.png,\xe6\x9c\x88\xe7\x8a\xb6\xe9\xaa\xa8,\n" /* 6 columns, 9 bytes */
                        "img.png,Scapho\x69\xcc\x88\x64\x65,2 2\n"       /* 9 columns, 11 bytes */
                        "img.png,finger-1,5 1\n");
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "dice", "--height", "4", "--width", "4", csv, csv,
                                  NULL),
                   0);
  assert_string_equal(out,
                      "class        dice  images\n"
                      "Trap\xc3\xa8ze    1.0000       1\n"
                      "\xe6\x9c\x88\xe7\x8a\xb6\xe9\xaa\xa8     1.0000       1\n"
                      "Scapho\x69\xcc\x88\x64\x65  1.0000       1\n"
                      "finger-1   1.0000       1\n"
                      "mean       1.0000       1\n");
  free(out);
  free(err);
}

static void test_json(void **state) {
  (void)state;
  const char *gt = put("gt.csv", GT), *pred = put("pred.csv", PRED);
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "dice", "--json", "--height", "4", "--width", "4",
                       "--threads", "3", pred, gt, NULL),
                   0);
  char expected[1024];
  snprintf(expected, sizeof expected,
           "{\"mean\":%.10g,\"per_class\":{\"finger-2\":%.10g,\"finger-1\":%.10g},\"images\":2}\n",
           (f2() + f1()) / 2, f2(), f1());
  assert_string_equal(out, expected);
  free(out);
  free(err);
  /* Identical inputs score 1 everywhere; class names are JSON-escaped. */
  const char *same = put("same.csv",
                         "image_name,class,rle\n"
                         "x_1.png,\"say \"\"hi\"\"\\\",1 3\n"
                         "x_1.png,\"a,b\",\n");
  assert_int_equal(test_osseg_run(&out, &err, "dice", "--json", "--height", "4", "--width", "4", same, same,
                       NULL),
                   0);
  assert_string_equal(out, "{\"mean\":1,\"per_class\":{\"say \\\"hi\\\"\\\\\":1,\"a,b\":1},\"images\":1}\n");
  assert_string_equal(err, "");
  free(out);
  free(err);
}

#define expect_fail(code, msg, ...) test_osseg_expect_fail(code, msg, "dice", __VA_ARGS__)

static void test_errors(void **state) {
  (void)state;
  const char *gt = put("gt.csv", GT), *pred = put("pred.csv", PRED);
  expect_fail(2, "osseg dice: expected PRED.csv GT.csv, got 1 file (see 'osseg dice --help')\n",
              pred, NULL);
  expect_fail(2, "osseg dice: expected PRED.csv GT.csv, got 3 files (see 'osseg dice --help')\n",
              pred, gt, gt, NULL);
  expect_fail(2, "osseg dice: unknown option '--csv' (see 'osseg dice --help')\n", "--csv", pred,
              gt, NULL);
  expect_fail(2, "osseg dice: --width: expected an integer in 1..16384, got 'big'\n", "--width",
              "big", pred, gt, NULL);
  char msg[1024];
  const char *bad = put("bad.csv", "image_name,class,rle\nimg_a.png,finger-1,3 2 5\n");
  snprintf(msg, sizeof msg,
           "osseg dice: %s:2: rle: offset 5: odd number of numbers (3): the last start has no "
           "length\n", bad);
  expect_fail(1, msg, "--height", "4", "--width", "4", bad, gt, NULL);
  /* A bad PRED row that GT never asks for is still reported. */
  bad = put("bad.csv", "image_name,class,rle\nimg_z.png,finger-1,17 1\n");
  snprintf(msg, sizeof msg,
           "osseg dice: %s:2: rle: offset 0: run '17 1' ends past the image end (16 pixels)\n", bad);
  expect_fail(1, msg, "--height", "4", "--width", "4", bad, gt, NULL);
  bad = put("bad.csv", "image_name,class,rle\nimg_a.png,finger-1,1 1\nimg_a.png,finger-1,2 1\n");
  snprintf(msg, sizeof msg,
           "osseg dice: %s:3: duplicate row for image 'img_a.png', class 'finger-1' (first at "
           "line 2)\n", bad);
  expect_fail(1, msg, pred, bad, NULL);
  bad = put("bad.csv", "image_name,class,rle\n");
  snprintf(msg, sizeof msg, "osseg dice: %s:2: no rows: nothing to score\n", bad);
  expect_fail(1, msg, pred, bad, NULL);
  bad = put_n("bad.csv", "image_name,class,rle\nimg\0.png,finger-1,1 1\n", 43);
  snprintf(msg, sizeof msg, "osseg dice: %s:2: NUL byte\n", bad);
  expect_fail(1, msg, pred, bad, NULL);
  bad = put("bad.csv", "image_name;class;rle\n");
  snprintf(msg, sizeof msg, "osseg dice: %s:1: bad header (expected image_name,class,rle)\n", bad);
  expect_fail(1, msg, bad, gt, NULL);
  /* Default size 2048x2048: a run past 4194304 pixels. */
  bad = put("bad.csv", "image_name,class,rle\nimg_a.png,finger-1,4194304 2\n");
  snprintf(msg, sizeof msg,
           "osseg dice: %s:2: rle: offset 0: run '4194304 2' ends past the image end (4194304 "
           "pixels)\n", bad);
  expect_fail(1, msg, bad, gt, NULL);

  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "dice", "-h", NULL), 0);
  assert_non_null(strstr(out, "usage: osseg dice"));
  free(out);
  free(err);
}

int main(void) {
  dir = strdup(test_tmpdir());
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_blank_lines),
      cmocka_unit_test(test_table_utf8_names),
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_errors),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  const char *argv[] = {"/bin/rm", "-rf", dir, NULL};
  test_run(argv, NULL, NULL, 30);
  return rc;
}
