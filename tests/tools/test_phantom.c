/* Tests of tools/phantom (osseg-phantom), run as a program: determinism,
 * labels JSON that re-rasterises to gt.csv exactly (through the pipeline's
 * label JSON reader), the CSV layout, and argument validation. argv[1] is
 * the path of the osseg-phantom binary. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_imaging.h"
#include "osseg_kernels.h"
#include "osseg_pipeline.h"
#include "test_support.h"

static const char *phantom_bin;

static const char *const classes[29] = {
    "finger-1",  "finger-2",  "finger-3",  "finger-4",   "finger-5",  "finger-6",
    "finger-7",  "finger-8",  "finger-9",  "finger-10",  "finger-11", "finger-12",
    "finger-13", "finger-14", "finger-15", "finger-16",  "finger-17", "finger-18",
    "finger-19", "Trapezium", "Trapezoid", "Capitate",   "Hamate",    "Scaphoid",
    "Lunate",    "Triquetrum", "Pisiform", "Radius",     "Ulna"};

static int run_phantom(const char *seed, const char *count, const char *out, const char *size,
                       char **err) {
  const char *argv[10];
  int n = 0;
  argv[n++] = phantom_bin;
  if (seed) { argv[n++] = "--seed"; argv[n++] = seed; }
  if (count) { argv[n++] = "--count"; argv[n++] = count; }
  if (out) { argv[n++] = "--out"; argv[n++] = out; }
  if (size) { argv[n++] = "--size"; argv[n++] = size; }
  argv[n] = NULL;
  return test_run(argv, NULL, err, 120);
}

static void assert_same_file(const char *a, const char *b) {
  size_t na, nb;
  char *da = test_read_file(a, &na), *db = test_read_file(b, &nb);
  assert_non_null(da);
  assert_non_null(db);
  assert_int_equal(na, nb);
  assert_memory_equal(da, db, na);
  free(da);
  free(db);
}

/* The same seed gives the same bytes, whether generated alone or as part
 * of a batch (image i uses seed S + i). */
static void test_deterministic(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char a[512], b[512];
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  assert_int_equal(run_phantom("41", "2", a, "256", NULL), 0);
  assert_int_equal(run_phantom("42", "1", b, "256", NULL), 0);
  assert_same_file(test_path("%s/images/phantom_42.png", a), test_path("%s/images/phantom_42.png", b));
  assert_same_file(test_path("%s/labels/phantom_42.json", a), test_path("%s/labels/phantom_42.json", b));
  /* Again into a fresh folder: the whole gt.csv is identical. */
  char c[512];
  snprintf(c, sizeof c, "%s/c", dir);
  assert_int_equal(run_phantom("41", "2", c, "256", NULL), 0);
  assert_same_file(test_path("%s/gt.csv", a), test_path("%s/gt.csv", c));
  assert_same_file(test_path("%s/images/phantom_41.png", a), test_path("%s/images/phantom_41.png", c));
  /* Different seeds differ. */
  size_t n1, n2;
  char *p1 = test_read_file(test_path("%s/images/phantom_41.png", a), &n1);
  char *p2 = test_read_file(test_path("%s/images/phantom_42.png", a), &n2);
  assert_true(n1 != n2 || memcmp(p1, p2, n1) != 0);
  free(p1);
  free(p2);
}

/* Every gt.csv row equals the JSON polygons of its class as the pipeline's
 * label JSON reader draws them (osseg_polygon_fill); rows come 29 per
 * image in canonical order. */
static void test_labels_match_gt(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  const uint32_t S = 512;
  assert_int_equal(run_phantom("1000000", "3", dir, "512", NULL), 0);
  size_t size;
  char *csv = test_read_file(test_path("%s/gt.csv", dir), &size);
  assert_non_null(csv);
  char *save = NULL, *line = strtok_r(csv, "\n", &save);
  assert_string_equal(line, "image_name,class,rle");
  struct osseg_runs runs[29];
  memset(runs, 0, sizeof runs);
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, S, S), 0);
  int rows = 0, nonempty = 0;
  for (uint64_t img = 1000000; img < 1000003; img++) {
    char name[64];
    snprintf(name, sizeof name, "phantom_%" PRIu64, img);
    size_t jn;
    char *json = test_read_file(test_path("%s/labels/%s.json", dir, name), &jn);
    assert_non_null(json);
    struct osseg_labels *labels = NULL;
    struct osseg_diag d;
    osseg_diag_clear(&d);
    if (osseg_labels_parse_json(&labels, name, json, jn, classes, 29, NULL, &d) != 0)
      fail_msg("%s", d.message);
    size_t nann = 0;
    for (size_t c = 0; c < 29; c++) {
      assert_true(osseg_labels_polygon_count(labels, c) <= 1); /* one polygon per bone */
      nann += osseg_labels_polygon_count(labels, c);
    }
    assert_true(nann >= 25); /* a few bones may leave the frame, not many */
    struct osseg_ground_truth gt;
    assert_int_equal(osseg_labels_rasterize(labels, &m, runs, &gt, NULL), 0);
    struct osseg_image im;
    assert_int_equal(osseg_png_decode_file(test_path("%s/images/%s.png", dir, name), NULL, &im, NULL), 0);
    assert_int_equal(im.width, S);
    assert_int_equal(im.height, S);
    assert_int_equal(im.bit_depth, 8);
    osseg_image_free(&im);
    for (int c = 0; c < 29; c++) {
      line = strtok_r(NULL, "\n", &save);
      assert_non_null(line);
      rows++;
      char *f1 = strchr(line, ','), *f2 = f1 ? strchr(f1 + 1, ',') : NULL;
      assert_non_null(f2);
      *f1 = *f2 = '\0';
      assert_string_equal(line, test_path("%s.png", name));
      assert_string_equal(f1 + 1, classes[c]);
      /* Compare with the 1-based text, number by number. */
      const char *p = f2 + 1;
      for (size_t r = 0; r < gt.nruns[c]; r++) {
        char *end;
        unsigned long s = strtoul(p, &end, 10), l = strtoul(end, &end, 10);
        assert_int_equal(s, gt.runs[c][r].start + 1);
        assert_int_equal(l, gt.runs[c][r].len);
        p = end;
      }
      assert_int_equal(*p, '\0');
      if (gt.nruns[c]) nonempty++;
    }
    osseg_labels_free(labels);
    free(json);
  }
  assert_null(strtok_r(NULL, "\n", &save));
  assert_int_equal(rows, 3 * 29);
  assert_true(nonempty >= 3 * 25);
  for (int c = 0; c < 29; c++) osseg_runs_free(&runs[c]);
  osseg_bitmask_free(&m);
  free(csv);
}

/* Bad arguments: exit status 2 and a message naming the problem. */
static void test_arguments(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  static const struct {
    const char *seed, *count, *size, *needle;
  } cases[] = {
      {NULL, "1", NULL, "required"},
      {"1", NULL, NULL, "required"},
      {"x1", "1", NULL, "--seed"},
      {"-1", "1", NULL, "--seed"},
      {"18446744073709551616", "1", NULL, "too large"},
      {"18446744073709551615", "2", NULL, "overflows"},
      {"1", "0", NULL, "--count"},
      {"1", "100001", NULL, "--count"},
      {"1", "1x", NULL, "--count"},
      {"1", "1", "63", "--size"},
      {"1", "1", "16385", "--size"},
      {"1", "1", "", "--size"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *err = NULL;
    int rc = run_phantom(cases[i].seed, cases[i].count, dir, cases[i].size, &err);
    if (rc != 2 || !strstr(err, cases[i].needle))
      fail_msg("case %zu: status %d, stderr: %s", i, rc, err ? err : "(none)");
    free(err);
  }
  /* The largest seed works with count 1. */
  assert_int_equal(run_phantom("18446744073709551615", "1", dir, "64", NULL), 0);

  /* An output folder that cannot be created. */
  const char *file = test_path("%s/plain-file", dir);
  assert_int_equal(test_write_file(file, "x", 1), 0);
  char *err = NULL;
  int rc = run_phantom("1", "1", test_path("%s/plain-file/sub", dir), "64", &err);
  assert_int_equal(rc, 1);
  assert_non_null(strstr(err, "cannot create output folder"));
  free(err);

  /* Unknown options and missing values. */
  const char *argv1[] = {phantom_bin, "--seed", "1", "--count", "1", "--out", dir, "--bogus", NULL};
  err = NULL;
  assert_int_equal(test_run(argv1, NULL, &err, 30), 2);
  assert_non_null(strstr(err, "unknown argument"));
  free(err);
  const char *argv2[] = {phantom_bin, "--seed", NULL};
  err = NULL;
  assert_int_equal(test_run(argv2, NULL, &err, 30), 2);
  assert_non_null(strstr(err, "needs a value"));
  free(err);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_phantom PATH-TO-osseg-phantom\n");
    return 2;
  }
  phantom_bin = argv[1];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_labels_match_gt),
      cmocka_unit_test(test_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
