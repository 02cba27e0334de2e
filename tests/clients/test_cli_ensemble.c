/* Tests of `osseg ensemble`, run as a program: hand-computed outputs,
 * thresholds, names with '_', commas and quotes, missing rows, every kind
 * of malformed input with its exact message and exit status, and the
 * guarantee that a failed run leaves no OUT.csv behind. */
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

static const char *put_n(const char *name, const char *text, size_t len) {
  const char *path = test_path("%s/%s", dir, name);
  assert_int_equal(test_write_file(path, text, len), 0);
  return path;
}

static const char *put(const char *name, const char *text) {
  return put_n(name, text, strlen(text));
}

static char *slurp(const char *path) {
  size_t size;
  return test_read_file(path, &size);
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* No temporary files left in dir (only the names we expect). */
static int count_hidden(void) {
  char *out = NULL;
  const char *argv[] = {"/bin/sh", "-c", test_path("ls -A '%s' | grep -c '^\\.' || true", dir), NULL};
  test_run(argv, &out, NULL, 10);
  int n = atoi(out);
  free(out);
  return n;
}

static const char A[] =
    "image_name,class,rle\n"
    "ID001_img_1.png,finger-1,1 3 10 2\n"
    "ID001_img_1.png,finger-2,\n"
    "\"a,b\"\"c.png\",finger-1,5 5\n"
    "ID001_img_2.png,Radius,16 1\n";
/* Other order, CRLF, quoted fields, unsorted and overlapping runs; no
 * finger-2 row; an extra row that A does not have. */
static const char B[] =
    "image_name,class,rle\r\n"
    "\"a,b\"\"c.png\",\"finger-1\",\"6 5\"\r\n"
    "ID001_img_1.png,finger-1,11 2 2 3 3 1\r\n"
    "ID001_img_2.png,Radius,16 1\r\n"
    "ID001_img_9.png,Radius,1 1\r\n";
static const char C[] =
    "image_name,class,rle\n"
    "ID001_img_1.png,finger-1,1 1\n"
    "ID001_img_1.png,finger-2,1 2\n"
    "ID001_img_2.png,Radius,1 16\n";

static void test_golden_majority(void **state) {
  (void)state;
  const char *a = put("a.csv", A), *b = put("b.csv", B), *c = put("c.csv", C);
  const char *o = test_path("%s/out.csv", dir);
  char *out, *err;
  int rc = test_osseg_run(&out, &err, "ensemble", "--height", "4", "--width", "4", "-o", o, a, b, c, NULL);
  assert_int_equal(rc, 0);
  /* finger-1 of img_1: A {0,1,2,9,10}, B {1,2,3,10,11}, C {0}: count >= 2 at
   * {0,1,2,10}. "a,b\"c": A {4..8}, B {5..9}, C none: {5..8}. finger-2: only
   * C votes: empty. Radius: A {15}, B {15}, C everything: {15}. */
  char *got = slurp(o);
  assert_string_equal(got,
                      "image_name,class,rle\n"
                      "ID001_img_1.png,finger-1,1 3 11 1\n"
                      "ID001_img_1.png,finger-2,\n"
                      "\"a,b\"\"c.png\",finger-1,6 4\n"
                      "ID001_img_2.png,Radius,16 1\n");
  assert_string_equal(out, "");
  char expected[1024];
  snprintf(expected, sizeof expected,
           "osseg ensemble: warning: %s: 1 of the 4 rows of %s are missing; counted as empty masks\n"
           "osseg ensemble: warning: %s: 1 rows have no (image, class) in %s; ignored\n"
           "osseg ensemble: warning: %s: 1 of the 4 rows of %s are missing; counted as empty masks\n",
           b, a, b, a, c, a);
  assert_string_equal(err, expected);
  free(got);
  free(out);
  free(err);
  assert_int_equal(count_hidden(), 0);
}

/* -o at a device node writes through it (the node stays, as /dev/null
 * must); -o at a symlink writes the file it points at and keeps the link. */
static void test_output_device_and_symlink(void **state) {
  (void)state;
  const char *a = put("a.csv", A), *b = put("b.csv", B), *c = put("c.csv", C);
  char dev[4096], real[4096], link[4096];
  snprintf(dev, sizeof dev, "%s/null", dir);
  snprintf(real, sizeof real, "%s/real.csv", dir);
  snprintf(link, sizeof link, "%s/link.csv", dir);
  test_mknod_null(dev);
  assert_int_equal(test_osseg_run(NULL, NULL, "ensemble", "--height", "4", "--width", "4", "-o",
                                  dev, a, b, c, NULL),
                   0);
  assert_true(test_is_null_device(dev));
  put("real.csv", "old");
  assert_int_equal(symlink("real.csv", link), 0);
  assert_int_equal(test_osseg_run(NULL, NULL, "ensemble", "--height", "4", "--width", "4", "-o",
                                  link, a, b, c, NULL),
                   0);
  struct stat st;
  assert_int_equal(lstat(link, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  char *got = slurp(real);
  assert_string_equal(got,
                      "image_name,class,rle\n"
                      "ID001_img_1.png,finger-1,1 3 11 1\n"
                      "ID001_img_1.png,finger-2,\n"
                      "\"a,b\"\"c.png\",finger-1,6 4\n"
                      "ID001_img_2.png,Radius,16 1\n");
  free(got);
  assert_int_equal(count_hidden(), 0);
  unlink(dev);
  unlink(link);
  unlink(real);
}

/* Blank lines at the end of a file (LF or CRLF, one or several, as editors
 * and pandas leave them) are accepted and change nothing. */
static void test_trailing_blank_lines(void **state) {
  (void)state;
  char a_text[512], b_text[512], c_text[512];
  snprintf(a_text, sizeof a_text, "%s\n", A);
  snprintf(b_text, sizeof b_text, "%s\r\n\r\n", B);
  snprintf(c_text, sizeof c_text, "%s\n\n\n", C);
  const char *a = put("a.csv", a_text), *b = put("b.csv", b_text), *c = put("c.csv", c_text);
  const char *o = test_path("%s/out.csv", dir);
  char *err;
  int rc = test_osseg_run(NULL, &err, "ensemble", "--height", "4", "--width", "4", "-o", o, a, b,
                          c, NULL);
  if (rc != 0) fail_msg("exit %d, stderr '%s'", rc, err);
  free(err);
  char *got = slurp(o);
  assert_string_equal(got,
                      "image_name,class,rle\n"
                      "ID001_img_1.png,finger-1,1 3 11 1\n"
                      "ID001_img_1.png,finger-2,\n"
                      "\"a,b\"\"c.png\",finger-1,6 4\n"
                      "ID001_img_2.png,Radius,16 1\n");
  free(got);
}

static void test_thresholds(void **state) {
  (void)state;
  const char *a = put("a.csv", A), *b = put("b.csv", B), *c = put("c.csv", C);
  const char *o = test_path("%s/out.csv", dir);
  static const struct {
    const char *t, *first_rle, *radius;
  } cases[] = {
      {"0", "1 4 10 3", "1 16"},   /* union */
      {"0.5", "1 4 10 3", "1 16"}, /* count > 0.5: the same */
      {"1", "1 3 11 1", "16 1"},   /* the default for 3 inputs */
      {"1.999", "1 3 11 1", "16 1"},
      {"2", "", "16 1"}, /* all three: only Radius pixel 15 */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *err;
    int rc = test_osseg_run(NULL, &err, "ensemble", "-t", cases[i].t, "--height", "4", "--width", "4",
                 "--output", o, a, b, c, NULL);
    assert_int_equal(rc, 0);
    free(err);
    char *got = slurp(o), expected[512];
    snprintf(expected, sizeof expected,
             "image_name,class,rle\nID001_img_1.png,finger-1,%s\nID001_img_1.png,finger-2,%s\n"
             "\"a,b\"\"c.png\",finger-1,%s\nID001_img_2.png,Radius,%s\n",
             cases[i].first_rle, strcmp(cases[i].t, "1") < 0 ? "1 2" : "",
             strcmp(cases[i].t, "1") < 0 ? "5 6" : strcmp(cases[i].t, "2") < 0 ? "6 4" : "",
             cases[i].radius);
    if (strcmp(got, expected) != 0) fail_msg("threshold %s:\n%s\nexpected\n%s", cases[i].t, got, expected);
    free(got);
  }
  /* A threshold at or above K empties every mask, with a warning. */
  char *err;
  assert_int_equal(test_osseg_run(NULL, &err, "ensemble", "-t", "3", "--height", "4", "--width", "4", "-o",
                       o, a, b, c, NULL),
                   0);
  assert_non_null(strstr(err, "warning: threshold 3 >= 3 inputs: every mask will be empty"));
  free(err);
  char *got = slurp(o);
  assert_string_equal(got,
                      "image_name,class,rle\nID001_img_1.png,finger-1,\nID001_img_1.png,finger-2,\n"
                      "\"a,b\"\"c.png\",finger-1,\nID001_img_2.png,Radius,\n");
  free(got);
  /* K = 2: the default keeps pixels both inputs vote for. */
  assert_int_equal(test_osseg_run(NULL, &err, "ensemble", "--height", "4", "--width", "4", "-o", o, a, b,
                       NULL),
                   0);
  free(err);
  got = slurp(o);
  assert_string_equal(got,
                      "image_name,class,rle\nID001_img_1.png,finger-1,2 2 11 1\n"
                      "ID001_img_1.png,finger-2,\n\"a,b\"\"c.png\",finger-1,6 4\n"
                      "ID001_img_2.png,Radius,16 1\n");
  free(got);
}

static void expect_usage(const char *msg, ...) {
  const char *argv[20];
  int n = 0;
  argv[n++] = test_osseg_bin();
  argv[n++] = "ensemble";
  va_list ap;
  va_start(ap, msg);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL) argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  char *out, *err;
  int rc = test_run(argv, &out, &err, 60);
  if (rc != 2 || strstr(err, msg) == NULL) fail_msg("exit %d, stderr '%s', expected 2 '%s'", rc, err, msg);
  assert_string_equal(out, "");
  free(out);
  free(err);
}

static void test_usage_errors(void **state) {
  (void)state;
  const char *a = put("a.csv", A), *b = put("b.csv", B);
  const char *o = test_path("%s/out.csv", dir);
  unlink(o);
  expect_usage("osseg ensemble: no output file: give -o OUT.csv", a, b, NULL);
  expect_usage("osseg ensemble: expected 2 to 8 input CSVs (at most 8 models per ensemble), got 1",
               "-o", o, a, NULL);
  expect_usage("osseg ensemble: expected 2 to 8 input CSVs (at most 8 models per ensemble), got 0",
               "-o", o, NULL);
  /* The README's limit of 8 models per ensemble (OSSEG_MAX_MODELS, as for
   * predict --model): 9 CSVs are refused, 8 accepted. */
  expect_usage("osseg ensemble: expected 2 to 8 input CSVs (at most 8 models per ensemble), got 9",
               "-o", o, a, a, a, a, a, a, a, a, a, NULL);
  expect_usage("osseg ensemble: --threshold: expected a number >= 0, got '-1'", "-t", "-1", "-o",
               o, a, b, NULL);
  expect_usage("osseg ensemble: --threshold: expected a number >= 0, got 'nan'", "-t", "nan",
               "-o", o, a, b, NULL);
  expect_usage("osseg ensemble: --threshold: expected a number >= 0, got 'inf'", "-t", "inf",
               "-o", o, a, b, NULL);
  expect_usage("osseg ensemble: --threshold: expected a number >= 0, got '1x'", "-t", "1x", "-o",
               o, a, b, NULL);
  expect_usage("osseg ensemble: --height: expected an integer in 1..16384, got '0'", "--height",
               "0", "-o", o, a, b, NULL);
  expect_usage("osseg ensemble: --width: expected an integer in 1..16384, got '16385'",
               "--width", "16385", "-o", o, a, b, NULL);
  expect_usage("osseg ensemble: --height: expected an integer in 1..16384, got '-5'", "--height",
               "-5", "-o", o, a, b, NULL);
  expect_usage("osseg ensemble: --threads: expected an integer in 1..64, got '0'", "--threads",
               "0", "-o", o, a, b, NULL);
  expect_usage("osseg ensemble: unknown option '--bogus'", "--bogus", "-o", o, a, b, NULL);
  expect_usage("osseg ensemble: option '-o' needs a value", a, b, "-o", NULL);
  assert_false(exists(o));

  char *out, *err;
  assert_int_equal(test_osseg_run(NULL, &err, "ensemble", "--height", "4", "--width", "4", "-o", o,
                                  a, a, a, a, a, a, a, a, NULL),
                   0);
  assert_string_equal(err, "");
  free(err);
  char *got = slurp(o);
  assert_string_equal(got, A); /* 8 identical votes keep every pixel */
  free(got);
  unlink(o);

  assert_int_equal(test_osseg_run(&out, &err, "ensemble", "--help", NULL), 0);
  assert_non_null(strstr(out, "usage: osseg ensemble"));
  assert_non_null(strstr(out, "--threshold"));
  assert_non_null(strstr(out, "2 <= K <= 8"));
  assert_string_equal(err, "");
  free(out);
  free(err);
}

/* A malformed input must exit 1 with exactly one line naming file, line
 * and problem, and leave the previous OUT.csv untouched and no temporary. */
static void expect_bad_n(const char *bad_text, size_t bad_len, const char *line_and_problem,
                         int bad_is_first) {
  const char *good = put("good.csv", A);
  const char *bad = put_n("bad.csv", bad_text, bad_len);
  const char *o = put("out.csv", "previous contents\n");
  char *out, *err;
  int rc = bad_is_first
               ? test_osseg_run(&out, &err, "ensemble", "--height", "4", "--width", "4", "-o", o, bad, good, NULL)
               : test_osseg_run(&out, &err, "ensemble", "--height", "4", "--width", "4", "-o", o, good, bad, NULL);
  char expected[1024];
  snprintf(expected, sizeof expected, "osseg ensemble: %s%s\n", bad, line_and_problem);
  if (rc != 1 || strcmp(err, expected) != 0)
    fail_msg("exit %d, stderr '%s', expected 1 '%s'", rc, err, expected);
  assert_string_equal(out, "");
  char *kept = slurp(o);
  assert_string_equal(kept, "previous contents\n");
  free(kept);
  assert_int_equal(count_hidden(), 0);
  free(out);
  free(err);
}

/* Literals may hold NUL bytes: their size, not strlen, is the file. */
#define expect_bad(text, msg, first) expect_bad_n(text, sizeof(text) - 1, msg, first)
#define ROW1 "ID001_img_1.png,finger-1,"
static void test_malformed_inputs(void **state) {
  (void)state;
  expect_bad("", ":1: empty file (expected the header image_name,class,rle)", 0);
  expect_bad(ROW1 "1 2\n", ":1: bad header (expected image_name,class,rle)", 0);
  expect_bad("image,class,rle\n" ROW1 "1 2\n", ":1: bad header (expected image_name,class,rle)", 1);
  expect_bad("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", ":1: bad header (expected image_name,class,rle)", 0);
  expect_bad("\0\0\0\0", ":1: bad header (expected image_name,class,rle)", 0);
  expect_bad("image_name,class,rle\n" ROW1 "1 2\nab\0cd,x,1 1\n", ":3: NUL byte", 0);
  expect_bad("image_name,class,rle\n" ROW1 "1 2,3\n",
             ":2: more than 3 fields (expected image_name,class,rle)", 0);
  expect_bad("image_name,class,rle\nID001_img_1.png,1 2\n",
             ":2: 2 fields (expected image_name,class,rle)", 0);
  expect_bad("image_name,class,rle\n\"ID001_img_1.png,finger-1,1 2\n",
             ":2: unterminated quoted field", 0);
  expect_bad("image_name,class,rle\nID\"001.png,finger-1,1 2\n",
             ":2: quote inside an unquoted field", 0);
  expect_bad("image_name,class,rle\n\"ID001.png\"x,finger-1,1 2\n",
             ":2: character after a closing quote", 0);
  expect_bad("image_name,class,rle\n" ROW1 "1 2\n\nID001_img_2.png,Radius,1 1\n", ":3: blank line",
             0);
  expect_bad("image_name,class,rle\r\n" ROW1 "1 2\r\n\r\n\r\nID001_img_2.png,Radius,1 1\r\n",
             ":3: blank line", 1);
  expect_bad("image_name,class,rle\n" ROW1 "1 2 3\n",
             ":2: rle: offset 5: odd number of numbers (3): the last start has no length", 0);
  expect_bad("image_name,class,rle\n" ROW1 "0 2\n",
             ":2: rle: offset 0: start of 0 (RLE starts are 1-based)", 0);
  expect_bad("image_name,class,rle\n" ROW1 "15 3\n",
             ":2: rle: offset 0: run '15 3' ends past the image end (16 pixels)", 0);
  expect_bad("image_name,class,rle\n" ROW1 "1 a\n",
             ":2: rle: offset 2: unexpected character 'a' (RLE holds digits and spaces)", 0);
  expect_bad("image_name,class,rle\n" ROW1 "1 -2\n",
             ":2: rle: offset 2: unexpected character '-' (RLE holds digits and spaces)", 0);
  expect_bad("image_name,class,rle\n" ROW1 "99999999999999999999 1\n",
             ":2: rle: offset 0: number longer than 10 digits", 0);
  expect_bad("image_name,class,rle\n" ROW1 "4294967296 1\n",
             ":2: rle: offset 0: number 4294967296 above 4294967295", 0);
  expect_bad("image_name,class,rle\n" ROW1 "1 2\n" ROW1 "3 1\n",
             ":3: duplicate row for image 'ID001_img_1.png', class 'finger-1' (first at line 2)", 0);
  expect_bad("image_name,class,rle\n" ROW1 "1 2\n" ROW1 "3 1\n",
             ":3: duplicate row for image 'ID001_img_1.png', class 'finger-1' (first at line 2)", 1);
  /* A bad row that the first CSV never asks for is still an error. */
  expect_bad("image_name,class,rle\n" ROW1 "1 2\nnot_in_a.png,finger-1,1 x\n",
             ":3: rle: offset 2: unexpected character 'x' (RLE holds digits and spaces)", 0);
  /* The first bad row in the first file's order is the one reported. */
  expect_bad("image_name,class,rle\nID001_img_2.png,Radius,0 1\n" ROW1 "1 x\n",
             ":3: rle: offset 2: unexpected character 'x' (RLE holds digits and spaces)", 0);

  /* Files that cannot be read or written. */
  const char *good = put("good.csv", A);
  char *err;
  const char *missing = test_path("%s/missing.csv", dir);
  assert_int_equal(test_osseg_run(NULL, &err, "ensemble", "-o", test_path("%s/o.csv", dir), good, missing, NULL), 1);
  char expected[1024];
  snprintf(expected, sizeof expected,
           "osseg ensemble: %s: cannot open: No such file or directory\n", missing);
  assert_string_equal(err, expected);
  free(err);
  assert_int_equal(test_osseg_run(NULL, &err, "ensemble", "-o", test_path("%s/o.csv", dir), good, dir, NULL), 1);
  snprintf(expected, sizeof expected, "osseg ensemble: %s: not a regular file\n", dir);
  assert_string_equal(err, expected);
  free(err);
  const char *nodir = test_path("%s/nodir/o.csv", dir);
  assert_int_equal(test_osseg_run(NULL, &err, "ensemble", "-o", nodir, good, good, NULL), 1);
  snprintf(expected, sizeof expected,
           "osseg ensemble: %s: cannot create a file in its folder: No such file or directory\n",
           nodir);
  assert_string_equal(err, expected);
  free(err);
  assert_false(exists(test_path("%s/o.csv", dir)));
}

/* Damaged copies of a valid file: the tool exits 0 with a complete output,
 * or 1 with exactly one "osseg ensemble: FILE..." line and no output file;
 * never a crash (which would show as 128 + signal). */
static void test_damaged_inputs(void **state) {
  (void)state;
  static const char junk[] = {',', '"', '\n', '\r', '\0', ' ', '0', '7', 'x', '\xff'};
  struct test_rng rng;
  test_rng_seed(&rng, 5);
  const char *good = put("good.csv", A);
  const char *o = test_path("%s/dmg_out.csv", dir);
  char buf[512];
  int ok = 0, failed = 0;
  for (int trial = 0; trial < 150; trial++) {
    size_t n = sizeof B - 1;
    memcpy(buf, B, n);
    for (int e = 0; e < 1 + (int)test_rng_below(&rng, 3); e++) {
      size_t at = (size_t)test_rng_below(&rng, n);
      if (test_rng_below(&rng, 4) == 0)
        n = at;
      else
        buf[at] = junk[test_rng_below(&rng, sizeof junk)];
    }
    const char *bad = put_n("dmg.csv", buf, n);
    unlink(o);
    char *out, *err;
    int rc = test_osseg_run(&out, &err, "ensemble", "--height", "4", "--width", "4", "-o", o, good, bad, NULL);
    if (rc == 0) {
      ok++;
      char *got = slurp(o);
      assert_non_null(got);
      assert_int_equal(strncmp(got, "image_name,class,rle\n", 21), 0);
      free(got);
    } else {
      failed++;
      if (rc != 1) fail_msg("exit %d on damaged input, stderr '%s'", rc, err);
      assert_int_equal(strncmp(err, "osseg ensemble: ", 16), 0);
      assert_ptr_equal(strchr(err, '\n'), err + strlen(err) - 1); /* one line */
      assert_false(exists(o));
    }
    assert_int_equal(count_hidden(), 0);
    free(out);
    free(err);
  }
  /* Both outcomes happen, or the damage was not varied enough. */
  assert_true(ok > 0 && failed > 0);
}

/* Random CSVs: the output must not depend on the number of threads, and
 * rows must come out in the first file's order. */
static void test_threads_agree(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 17);
  const char *paths[3];
  for (int m = 0; m < 3; m++) {
    size_t cap = 1 << 22, n = 0;
    char *t = malloc(cap);
    n += (size_t)sprintf(t, "image_name,class,rle\n");
    for (int img = 0; img < 60; img++) {
      for (int c = 0; c < 29; c++) {
        n += (size_t)sprintf(t + n, "img_%d_x.png,c%d,", m == 1 ? 59 - img : img, c);
        uint64_t pos = test_rng_below(&rng, 1000);
        for (int r = 0; r < 40 && pos < 60000; r++) {
          uint64_t len = 1 + test_rng_below(&rng, 300);
          if (pos + len > 65536) break;
          n += (size_t)sprintf(t + n, r ? " %llu %llu" : "%llu %llu", (unsigned long long)pos + 1,
                               (unsigned long long)len);
          pos += len + 1 + test_rng_below(&rng, 600);
        }
        t[n++] = '\n';
      }
    }
    char name[16];
    snprintf(name, sizeof name, "r%d.csv", m);
    t[n] = '\0';
    paths[m] = put(name, t);
    free(t);
  }
  char *o1 = NULL, *o4 = NULL;
  for (int pass = 0; pass < 2; pass++) {
    const char *o = test_path("%s/t%d.csv", dir, pass);
    char *err;
    assert_int_equal(test_osseg_run(NULL, &err, "ensemble", "--threads", pass ? "4" : "1", "--height", "256",
                         "--width", "256", "-o", o, paths[0], paths[1], paths[2], NULL),
                     0);
    assert_string_equal(err, "");
    free(err);
    if (pass)
      o4 = slurp(o);
    else
      o1 = slurp(o);
  }
  assert_true(strlen(o1) > 100000);
  assert_string_equal(o1, o4);
  assert_non_null(strstr(o1, "image_name,class,rle\nimg_0_x.png,c0,"));
  free(o1);
  free(o4);
}

int main(void) {
  dir = strdup(test_tmpdir());
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_majority),
      cmocka_unit_test(test_output_device_and_symlink),
      cmocka_unit_test(test_trailing_blank_lines),
      cmocka_unit_test(test_thresholds),
      cmocka_unit_test(test_usage_errors),
      cmocka_unit_test(test_malformed_inputs),
      cmocka_unit_test(test_damaged_inputs),
      cmocka_unit_test(test_threads_agree),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  const char *argv[] = {"/bin/rm", "-rf", dir, NULL};
  test_run(argv, NULL, NULL, 30);
  return rc;
}
