/* Tests of pipeline/label_json.c: the dataset's label JSON parsed into
 * polygons and rasterised as cv2.fillPoly draws them. The sample phantoms'
 * JSON must give their gt.csv masks pixel for pixel; every malformed file
 * gets its error code and a message naming the source and where; a run of
 * the pipeline with labels scores like one with the same masks as runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "osseg_pipeline.h"
#include "test_support.h"

static const char *canonical[OSSEG_CANONICAL_CLASSES];

static int setup(void **state) {
  (void)state;
  for (unsigned i = 0; i < OSSEG_CANONICAL_CLASSES; i++) canonical[i] = osseg_canonical_class(i);
  return 0;
}

static int parse(struct osseg_labels **l, const char *json,
                 const struct osseg_label_json_limits *lim, struct osseg_diag *d) {
  osseg_diag_clear(d);
  return osseg_labels_parse_json(l, "x.json", json, strlen(json), canonical,
                                 OSSEG_CANONICAL_CLASSES, lim, d);
}

/* Parses json, which must succeed, and draws it at h x w. */
static struct osseg_labels *parse_ok(const char *json) {
  struct osseg_labels *l = NULL;
  struct osseg_diag d;
  int rc = parse(&l, json, NULL, &d);
  if (rc) fail_msg("parse failed (%d): %s", rc, d.message);
  return l;
}

struct drawn {
  struct osseg_runs runs[OSSEG_MAX_CLASSES];
  struct osseg_ground_truth gt;
};

static void draw(const struct osseg_labels *l, uint32_t h, uint32_t w, struct drawn *out) {
  memset(out, 0, sizeof *out);
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, h, w), 0);
  assert_int_equal(osseg_labels_rasterize(l, &m, out->runs, &out->gt, NULL), 0);
  osseg_bitmask_free(&m);
}

static void drawn_free(struct drawn *d) {
  for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++) osseg_runs_free(&d->runs[c]);
}

/* The canonical runs of polygons filled one by one into one mask. */
static void fill_runs(uint32_t h, uint32_t w, const struct osseg_point *const *polys,
                      const size_t *counts, size_t n, int together, struct osseg_runs *out) {
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, h, w), 0);
  if (together) {
    assert_int_equal(osseg_polygon_fill(&m, polys, counts, n), 0);
  } else {
    for (size_t i = 0; i < n; i++) assert_int_equal(osseg_polygon_fill1(&m, polys[i], counts[i]), 0);
  }
  assert_int_equal(osseg_bitmask_to_runs(&m, out), 0);
  osseg_bitmask_free(&m);
}

static int same_runs(const struct osseg_run *a, size_t na, const struct osseg_runs *b) {
  if (na != b->n) return 0;
  for (size_t i = 0; i < na; i++)
    if (a[i].start != b->v[i].start || a[i].len != b->v[i].len) return 0;
  return 1;
}

/* ---------------------------------------------------------- the samples --- */

/* data/samples/labels/X.json rasterised at the size of images/X.png is
 * gt.csv's rows for X.png, every class, pixel for pixel. */
static void test_samples_equal_gt_csv(void **state) {
  (void)state;
  char samples[4096];
  snprintf(samples, sizeof samples, "%s/data/samples", test_source_dir());
  struct stat st;
  if (stat(test_path("%s/gt.csv", samples), &st) != 0) {
    print_message("no %s/gt.csv: skipped\n", samples);
    skip();
  }
  struct osseg_csv gt;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  if (osseg_csv_open(&gt, test_path("%s/gt.csv", samples), NULL, &d) != 0)
    fail_msg("%s", d.message);
  static const char *const names[] = {"phantom_1000100", "phantom_1000101", "phantom_1000102",
                                      "phantom_1000103"};
  size_t images = 0, compared = 0, nonempty = 0;
  struct osseg_runs want = {0};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    size_t len;
    char *json = test_read_file(test_path("%s/labels/%s.json", samples, names[k]), &len);
    if (!json) continue;
    struct osseg_image img;
    assert_int_equal(
        osseg_png_decode_file(test_path("%s/images/%s.png", samples, names[k]), NULL, &img, NULL),
        0);
    struct osseg_labels *l = NULL;
    osseg_diag_clear(&d);
    int rc = osseg_labels_parse_json(&l, names[k], json, len, canonical, OSSEG_CANONICAL_CLASSES,
                                     NULL, &d);
    if (rc) fail_msg("%s", d.message);
    struct drawn dr;
    draw(l, img.height, img.width, &dr);
    char image_name[64];
    snprintf(image_name, sizeof image_name, "%s.png", names[k]);
    size_t rows = 0;
    for (size_t r = 0; r < gt.nrows; r++) {
      const struct osseg_csv_row *row = &gt.rows[r];
      if (row->image_len != strlen(image_name) || memcmp(row->image, image_name, row->image_len))
        continue;
      size_t c = 0;
      while (c < OSSEG_CANONICAL_CLASSES &&
             (strlen(canonical[c]) != row->cls_len || memcmp(canonical[c], row->cls, row->cls_len)))
        c++;
      assert_true(c < OSSEG_CANONICAL_CLASSES);
      want.n = 0;
      assert_int_equal(osseg_rle_parse(row->rle, row->rle_len,
                                       (uint64_t)img.width * img.height, &want, NULL), 0);
      assert_true(dr.gt.has[c]);
      if (!same_runs(dr.gt.runs[c], dr.gt.nruns[c], &want))
        fail_msg("%s, class %s: %zu runs drawn, gt.csv has %zu", image_name, canonical[c],
                 dr.gt.nruns[c], want.n);
      nonempty += want.n > 0;
      rows++;
    }
    assert_int_equal(rows, OSSEG_CANONICAL_CLASSES);
    compared += rows;
    images++;
    drawn_free(&dr);
    osseg_labels_free(l);
    osseg_image_free(&img);
    free(json);
  }
  osseg_runs_free(&want);
  osseg_csv_close(&gt);
  if (images == 0) {
    print_message("no sample label files: skipped\n");
    skip();
  }
  print_message("%zu images, %zu masks equal to gt.csv (%zu not empty)\n", images, compared,
                nonempty);
  assert_true(nonempty >= images * 25); /* the comparison is about real bones */
}

/* ------------------------------------------------------------- drawing --- */

/* Polygons of one label unite; other classes are empty masks, scored. */
static void test_union_of_polygons(void **state) {
  (void)state;
  const uint32_t H = 40, W = 50;
  static const struct osseg_point outer[] = {{2, 2}, {30, 2}, {30, 30}, {2, 30}};
  static const struct osseg_point inner[] = {{10, 10}, {20, 10}, {20, 20}, {10, 20}};
  static const struct osseg_point apart[] = {{35, 5}, {45, 5}, {40, 35}};
  struct osseg_labels *l = parse_ok(
      "{\"annotations\": ["
      "{\"label\": \"Radius\", \"points\": [[2,2],[30,2],[30,30],[2,30]]},"
      "{\"label\": \"Ulna\", \"points\": [[35,5],[45,5],[40,35]]},"
      "{\"label\": \"Radius\", \"points\": [[10,10],[20,10],[20,20],[10,20]]},"
      "{\"label\": \"Radius\", \"points\": [[35,5],[45,5],[40,35]]}]}");
  assert_int_equal(osseg_labels_class_count(l), OSSEG_CANONICAL_CLASSES);
  assert_int_equal(osseg_labels_polygon_count(l, 27), 3);
  assert_int_equal(osseg_labels_polygon_count(l, 28), 1);
  assert_int_equal(osseg_labels_polygon_count(l, 0), 0);
  struct drawn dr;
  draw(l, H, W, &dr);

  const struct osseg_point *polys[] = {outer, inner, apart};
  const size_t counts[] = {4, 4, 3};
  struct osseg_runs united = {0}, evenodd = {0}, ulna = {0};
  fill_runs(H, W, polys, counts, 3, 0, &united);
  fill_runs(H, W, polys, counts, 3, 1, &evenodd);
  fill_runs(H, W, polys + 2, counts + 2, 1, 0, &ulna);
  assert_true(same_runs(dr.gt.runs[27], dr.gt.nruns[27], &united));
  /* Filled together the inner square would be a hole: the union is not
   * what fillPoly with all contours at once gives. */
  assert_false(same_runs(dr.gt.runs[27], dr.gt.nruns[27], &evenodd));
  assert_true(same_runs(dr.gt.runs[28], dr.gt.nruns[28], &ulna));
  for (size_t c = 0; c < 27; c++) {
    assert_true(dr.gt.has[c]);
    assert_int_equal(dr.gt.nruns[c], 0);
  }
  assert_false(dr.gt.has[29]);

  /* Drawing again into used run lists and a dirty mask gives the same. */
  struct drawn again;
  memcpy(&again, &dr, sizeof again);
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, H, W), 0);
  memset(m.bits, 0xff, m.nwords * sizeof *m.bits);
  assert_int_equal(osseg_labels_rasterize(l, &m, again.runs, &again.gt, NULL), 0);
  assert_true(same_runs(again.gt.runs[27], again.gt.nruns[27], &united));
  assert_int_equal(again.gt.nruns[0], 0);
  osseg_bitmask_free(&m);
  drawn_free(&again);
  osseg_runs_free(&united);
  osseg_runs_free(&evenodd);
  osseg_runs_free(&ulna);
  osseg_labels_free(l);
}

/* Vertices off the image are clipped as OpenCV clips them (the polygon
 * kernel's semantics); a polygon wholly outside draws nothing. */
static void test_clipping(void **state) {
  (void)state;
  const uint32_t H = 30, W = 20;
  static const struct osseg_point off[] = {{-15, -4}, {40, 3}, {12, 90}, {-3, 25}};
  struct osseg_labels *l = parse_ok(
      "{\"annotations\": ["
      "{\"label\": \"Capitate\", \"points\": [[-15,-4],[40,3],[12,90],[-3,25]]},"
      "{\"label\": \"Hamate\", \"points\": [[-100,-100],[-50,-100],[-70,-40]]},"
      "{\"label\": \"Lunate\", \"points\": [[-1048576,5],[1048576,5],[0,1048576]]}]}");
  struct drawn dr;
  draw(l, H, W, &dr);
  const struct osseg_point *polys[] = {off};
  const size_t counts[] = {4};
  struct osseg_runs want = {0};
  fill_runs(H, W, polys, counts, 1, 0, &want);
  assert_true(want.n > 0);
  assert_true(same_runs(dr.gt.runs[21], dr.gt.nruns[21], &want));
  assert_int_equal(dr.gt.nruns[22], 0);
  /* The largest coordinates allowed still draw (rows 5.. of the image). */
  assert_true(dr.gt.nruns[24] > 0);
  assert_int_equal(dr.gt.runs[24][0].start, 5 * W);
  osseg_runs_free(&want);
  drawn_free(&dr);
  osseg_labels_free(l);
}

/* What the dataset's files carry besides polygons is ignored; keys may
 * come in any order. */
static void test_other_members_ignored(void **state) {
  (void)state;
  struct osseg_labels *l = parse_ok(
      "{\"filename\": \"image1661130828152_R.png\", \"metadata\": {\"height\": 2048, "
      "\"width\": 2048, \"scale\": 0.5, \"tags\": [\"a\", [1, 2.5]]},\n"
      " \"annotations\": [{\"id\": \"3b2a\", \"type\": \"poly_seg\", \"attributes\": {},\n"
      "  \"points\": [[1, 1], [5, 1], [5, 5]], \"label\": \"Pisiform\"}],\n"
      " \"last_workers\": {}}");
  assert_int_equal(osseg_labels_polygon_count(l, 26), 1);
  osseg_labels_free(l);
  l = parse_ok("{\"annotations\": []}");
  struct drawn dr;
  draw(l, 4, 4, &dr);
  for (size_t c = 0; c < OSSEG_CANONICAL_CLASSES; c++) {
    assert_true(dr.gt.has[c]);
    assert_int_equal(dr.gt.nruns[c], 0);
  }
  drawn_free(&dr);
  osseg_labels_free(l);
}

/* ------------------------------------------------------------ bad input --- */

/* A triangle of label L with its points as given. */
#define ANN(label, points) "{\"annotations\": [{\"label\": " label ", \"points\": " points "}]}"
#define TRI "[[0,0],[4,0],[4,4]]"

static void expect_error(const char *json, const struct osseg_label_json_limits *lim, int code,
                         const char *message) {
  struct osseg_labels *l = (struct osseg_labels *)&l; /* must be reset */
  struct osseg_diag d;
  int rc = parse(&l, json, lim, &d);
  if (rc != code || !strstr(d.message, message))
    fail_msg("%s\n  gave %s '%s',\n  expected %s with '%s'", json, osseg_err_name(rc), d.message,
             osseg_err_name(code), message);
  assert_null(l);
}

static void test_not_json(void **state) {
  (void)state;
  /* jansson's position: line and column, after the source's name. */
  expect_error("", NULL, OSSEG_EPARSE, "x.json:1:0: '[' or '{' expected near end of file");
  expect_error("{\"annotations\": [", NULL, OSSEG_EPARSE, "x.json:1:17: ");
  expect_error("{\n  \"annotations\": [\n    {\"label\": \"Radius\",\n"
               "     \"points\": [[1, 2], [3, 4] [5, 6]]}\n  ]\n}",
               NULL, OSSEG_EPARSE, "x.json:4:32: ']' expected near '['");
  expect_error("{\"annotations\": []} x", NULL, OSSEG_EPARSE, "x.json:1:21: end of file expected");
  expect_error("{\"annotations\": [], \"annotations\": []}", NULL, OSSEG_EPARSE,
               "duplicate object key");
  expect_error(ANN("\"Radius\"", "[[0,0],[4,0],[4,4]], \"points\": " TRI), NULL, OSSEG_EPARSE,
               "duplicate object key");
  expect_error(ANN("\"Rad\xffius\"", TRI), NULL, OSSEG_EPARSE, "x.json:1:");
  expect_error(ANN("\"Radius\\u0000\"", TRI), NULL, OSSEG_EPARSE, "x.json:1:");
  expect_error(ANN("\"Radius\"", "[[NaN,0],[4,0],[4,4]]"), NULL, OSSEG_EPARSE, "x.json:1:");
  /* Numbers no vertex can be: jansson's overflow, with its position. */
  expect_error(ANN("\"Radius\"", "[[99999999999999999999,0],[4,0],[4,4]]"), NULL, OSSEG_ERANGE,
               "x.json:1:");
  expect_error(ANN("\"Radius\"", "[[1e999,0],[4,0],[4,4]]"), NULL, OSSEG_ERANGE, "x.json:1:");
  /* A NUL byte in the text is no JSON either. */
  static const char with_nul[] = "{\"annotations\": [\0]}";
  struct osseg_labels *l = NULL;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_labels_parse_json(&l, "x.json", with_nul, sizeof with_nul - 1, canonical,
                                           OSSEG_CANONICAL_CLASSES, NULL, &d),
                   OSSEG_EPARSE);
  assert_non_null(strstr(d.message, "x.json:1:"));
}

static void test_not_label_json(void **state) {
  (void)state;
  expect_error("[]", NULL, OSSEG_EPARSE,
               "x.json: the top level is an array, not an object with \"annotations\"");
  expect_error("{}", NULL, OSSEG_EPARSE, "x.json: no \"annotations\" at the top level");
  expect_error("{\"annotations\": {}}", NULL, OSSEG_EPARSE,
               "x.json: annotations: an array expected, not an object");
  expect_error("{\"annotations\": [1]}", NULL, OSSEG_EPARSE,
               "x.json: annotations[0]: an object with \"label\" and \"points\" expected, not an "
               "integer");
  expect_error("{\"annotations\": [{\"points\": " TRI "}]}", NULL, OSSEG_EPARSE,
               "x.json: annotations[0]: no \"label\"");
  expect_error(ANN("5", TRI), NULL, OSSEG_EPARSE,
               "x.json: annotations[0].label: a string expected, not an integer");
  expect_error("{\"annotations\": [{\"label\": \"Radius\"}]}", NULL, OSSEG_EPARSE,
               "x.json: annotations[0] (Radius): no \"points\"");
  expect_error(ANN("\"Radius\"", "\"0,0 4,0 4,4\""), NULL, OSSEG_EPARSE,
               "x.json: annotations[0] (Radius): points: an array of [x, y] expected, not a "
               "string");
}

static void test_unknown_label(void **state) {
  (void)state;
  /* The second annotation's: the message names it and where it is. */
  expect_error("{\"annotations\": [{\"label\": \"Ulna\", \"points\": " TRI "},"
               "{\"label\": \"Kneecap\", \"points\": " TRI "}]}",
               NULL, OSSEG_ENOTFOUND,
               "x.json: annotations[1].label: 'Kneecap' is none of the 29 classes (finger-1 ... "
               "Ulna)");
  expect_error(ANN("\"radius\"", TRI), NULL, OSSEG_ENOTFOUND, "'radius' is none of the 29");
  expect_error(ANN("\"finger-20\"", TRI), NULL, OSSEG_ENOTFOUND, "'finger-20'");
  expect_error(ANN("\"Ulna\\n\\u0001\"", TRI), NULL, OSSEG_ENOTFOUND, "'Ulna?" "?' is none");
  /* Against another class list, the canonical names are unknown. */
  static const char *const two[] = {"bone", "background"};
  struct osseg_labels *l = NULL;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  const char *json = ANN("\"Ulna\"", TRI);
  assert_int_equal(
      osseg_labels_parse_json(&l, "x.json", json, strlen(json), two, 2, NULL, &d),
      OSSEG_ENOTFOUND);
  assert_non_null(strstr(d.message, "'Ulna' is none of the 2 classes (bone ... background)"));
  json = ANN("\"background\"", TRI);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_labels_parse_json(&l, "x.json", json, strlen(json), two, 2, NULL, &d), 0);
  assert_int_equal(osseg_labels_polygon_count(l, 1), 1);
  osseg_labels_free(l);
}

static void test_bad_points(void **state) {
  (void)state;
  expect_error(ANN("\"Radius\"", "[[0,0],[4,0]]"), NULL, OSSEG_EPARSE,
               "x.json: annotations[0] (Radius): points: 2 points; a polygon needs at least 3");
  expect_error(ANN("\"Radius\"", "[]"), NULL, OSSEG_EPARSE, "points: 0 points");
  expect_error(ANN("\"Radius\"", "[[0,0],[4,0,1],[4,4]]"), NULL, OSSEG_EPARSE,
               "x.json: annotations[0] (Radius): points[1]: [x, y] expected, not 3 values");
  expect_error(ANN("\"Radius\"", "[[0,0],[4],[4,4]]"), NULL, OSSEG_EPARSE,
               "points[1]: [x, y] expected, not 1 values");
  expect_error(ANN("\"Radius\"", "[[0,0],{\"x\":4,\"y\":0},[4,4]]"), NULL, OSSEG_EPARSE,
               "points[1]: [x, y] expected, not an object");
  expect_error(ANN("\"Radius\"", "[[0,0],[4,0],[4.5,4]]"), NULL, OSSEG_EPARSE,
               "x.json: annotations[0] (Radius): points[2][0]: 4.5 is written as a real number");
  expect_error(ANN("\"Radius\"", "[[0,0],[4,0],[4,4.0]]"), NULL, OSSEG_EPARSE,
               "points[2][1]: 4 is written as a real number");
  expect_error(ANN("\"Radius\"", "[[0,0],[\"4\",0],[4,4]]"), NULL, OSSEG_EPARSE,
               "points[1][0]: an integer expected, not a string");
  expect_error(ANN("\"Radius\"", "[[0,null],[4,0],[4,4]]"), NULL, OSSEG_EPARSE,
               "points[0][1]: an integer expected, not null");
  expect_error(ANN("\"Radius\"", "[[0,0],[2000000,0],[4,4]]"), NULL, OSSEG_ERANGE,
               "x.json: annotations[0] (Radius): points[1][0]: 2000000 is far outside any "
               "image (the limit is 1048576)");
  expect_error(ANN("\"Radius\"", "[[0,0],[4,0],[4,-1048577]]"), NULL, OSSEG_ERANGE,
               "points[2][1]: -1048577 is far outside");
}

static void test_limits(void **state) {
  (void)state;
  struct osseg_label_json_limits lim;
  osseg_label_json_limits_default(&lim);
  assert_int_equal(lim.max_bytes, 4u << 20);
  assert_int_equal(lim.max_depth, 16);
  /* Nesting: 17 levels of unknown members are too deep by default, and
   * jansson's own cap (2048) is reported with its position. */
  char deep[5000];
  size_t n = (size_t)sprintf(deep, "{\"annotations\": [], \"x\": ");
  for (int i = 0; i < 16; i++) deep[n++] = '[';
  for (int i = 0; i < 16; i++) deep[n++] = ']';
  sprintf(deep + n, "}");
  expect_error(deep, NULL, OSSEG_ELIMIT, "x.json: JSON nested deeper than 16 levels (the limit)");
  lim.max_depth = 17;
  struct osseg_labels *l = NULL;
  struct osseg_diag d;
  assert_int_equal(parse(&l, deep, &lim, &d), 0);
  osseg_labels_free(l);
  n = (size_t)sprintf(deep, "{\"annotations\": [], \"x\": ");
  for (int i = 0; i < 2100; i++) deep[n++] = '[';
  deep[n] = '\0';
  lim.max_depth = 5000;
  expect_error(deep, &lim, OSSEG_ELIMIT, "maximum parsing depth");
  /* The format itself needs 5 levels. */
  osseg_label_json_limits_default(&lim);
  lim.max_depth = 4;
  expect_error(ANN("\"Ulna\"", TRI), &lim, OSSEG_ELIMIT, "nested deeper than 4 levels");
  lim.max_depth = 5;
  assert_int_equal(parse(&l, ANN("\"Ulna\"", TRI), &lim, &d), 0);
  osseg_labels_free(l);

  /* Bytes, checked before parsing: even garbage is refused for its size. */
  osseg_label_json_limits_default(&lim);
  lim.max_bytes = 19;
  expect_error("{\"annotations\": [] }", &lim, OSSEG_ELIMIT, "x.json: 20 bytes, over the limit of 19");
  expect_error("not json at all: 27 bytes..", &lim, OSSEG_ELIMIT, "27 bytes");
  lim.max_bytes = 20;
  assert_int_equal(parse(&l, "{\"annotations\": [] }", &lim, &d), 0);
  osseg_labels_free(l);

  /* Points of all annotations together. */
  osseg_label_json_limits_default(&lim);
  lim.max_points = 5;
  const char *two = "{\"annotations\": [{\"label\": \"Ulna\", \"points\": " TRI "},"
                    "{\"label\": \"Radius\", \"points\": " TRI "}]}";
  expect_error(two, &lim, OSSEG_ELIMIT,
               "x.json: annotations[1] (Radius): more than 5 points in all annotations");
  lim.max_points = 6;
  assert_int_equal(parse(&l, two, &lim, &d), 0);
  osseg_labels_free(l);

  /* Coordinates. */
  osseg_label_json_limits_default(&lim);
  lim.max_coordinate = 4;
  assert_int_equal(parse(&l, ANN("\"Ulna\"", "[[-4,0],[4,0],[4,4]]"), &lim, &d), 0);
  osseg_labels_free(l);
  expect_error(ANN("\"Ulna\"", "[[-5,0],[4,0],[4,4]]"), &lim, OSSEG_ERANGE,
               "-5 is far outside any image (the limit is 4)");
  lim.max_coordinate = (uint32_t)INT32_MAX + 1;
  expect_error(ANN("\"Ulna\"", TRI), &lim, OSSEG_EINVAL, "max_coordinate");
}

static void test_arguments(void **state) {
  (void)state;
  struct osseg_labels *l = NULL;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  const char *json = ANN("\"Ulna\"", TRI);
  assert_int_equal(osseg_labels_parse_json(NULL, "x", json, strlen(json), canonical, 29, NULL, &d),
                   OSSEG_EINVAL);
  assert_int_equal(osseg_labels_parse_json(&l, "x", json, strlen(json), canonical, 0, NULL, &d),
                   OSSEG_EINVAL);
  assert_int_equal(osseg_labels_parse_json(&l, "x", json, strlen(json), canonical, 65, NULL, &d),
                   OSSEG_EINVAL);
  assert_int_equal(osseg_labels_parse_json(&l, "x", NULL, 3, canonical, 29, NULL, &d),
                   OSSEG_EINVAL);
  /* No name: messages still say what they are about. */
  osseg_diag_clear(&d);
  assert_int_equal(osseg_labels_parse_json(&l, NULL, "{}", 2, canonical, 29, NULL, &d),
                   OSSEG_EPARSE);
  assert_string_equal(d.message, "label JSON: no \"annotations\" at the top level");
  struct osseg_runs runs[OSSEG_MAX_CLASSES];
  struct osseg_ground_truth gt;
  struct osseg_bitmask none = {0};
  assert_int_equal(parse(&l, json, NULL, &d), 0);
  assert_int_equal(osseg_labels_rasterize(l, &none, runs, &gt, NULL), OSSEG_EINVAL);
  osseg_labels_free(l);
  osseg_labels_free(NULL);
}

/* Every allocation of parsing and drawing can fail: a clean ENOMEM, no
 * leak (LeakSanitizer in CI), and success once allocations succeed. */
static void test_allocation_failures(void **state) {
  (void)state;
  const char *json = "{\"annotations\": [{\"label\": \"Ulna\", \"points\": [[1,1],[9,1],[5,9]]},"
                     "{\"label\": \"Radius\", \"points\": [[0,0],[9,0],[9,9],[0,9]]}]}";
  for (uint64_t nth = 1;; nth++) {
    struct osseg_labels *l = NULL;
    struct osseg_diag d;
    osseg_diag_clear(&d);
    struct osseg_runs runs[OSSEG_MAX_CLASSES];
    memset(runs, 0, sizeof runs);
    struct osseg_ground_truth gt;
    struct osseg_bitmask m;
    assert_int_equal(osseg_bitmask_init(&m, 10, 10), 0);
    osseg__alloc_fail_at(nth);
    int rc = osseg_labels_parse_json(&l, "x.json", json, strlen(json), canonical,
                                     OSSEG_CANONICAL_CLASSES, NULL, &d);
    if (rc == 0) rc = osseg_labels_rasterize(l, &m, runs, &gt, &d);
    osseg__alloc_fail_at(0);
    osseg_labels_free(l);
    osseg_bitmask_free(&m);
    for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++) osseg_runs_free(&runs[c]);
    if (rc == 0) {
      assert_true(nth > 4); /* the labels, their tables, and two run lists */
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
    assert_non_null(strstr(d.message, "out of memory"));
  }
}

/* ------------------------------------------------------------ pipeline --- */

static int on_dice(void *ctx, const struct osseg_dice_report *r) {
  *(struct osseg_dice_report *)ctx = *r;
  return 0;
}

/* Labels given to a run score exactly as the same masks given as runs;
 * the drawn ground truth stays in the workspace until the next run. */
static void test_pipeline_run(void **state) {
  (void)state;
  struct osseg_registry *reg = NULL;
  assert_int_equal(osseg_registry_create(&reg, NULL), 0);
  struct osseg_model_spec spec = {
      .name = "a",
      .path = test_path("%s/tests/data/models/unetpp_r18_tiny_op13.onnx", test_source_dir())};
  assert_int_equal(osseg_registry_load(reg, &spec, NULL, NULL), 0);
  struct osseg_pipeline_options po;
  osseg_pipeline_options_default(&po);
  po.models[0] = "a";
  po.nmodels = 1;
  struct osseg_pipeline *p = NULL;
  assert_int_equal(osseg_pipeline_create(&p, reg, &po, NULL), 0);
  assert_int_equal(osseg_pipeline_class_count(p), OSSEG_CANONICAL_CLASSES);
  assert_string_equal(osseg_pipeline_class_names(p)[28], "Ulna");
  struct osseg_workspace *ws = NULL;
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);

  const uint32_t H = 80, W = 96;
  struct osseg_image img;
  assert_int_equal(osseg_image_init(&img, W, H, 1, 8), 0);
  for (uint32_t y = 0; y < H; y++)
    for (uint32_t x = 0; x < W; x++)
      img.data[(size_t)y * img.stride + x] = (uint8_t)((x - 30) * (x - 30) + (y - 40) * (y - 40) <
                                                               400
                                                           ? 230
                                                           : (x * 2 + y) & 0x7f);
  const char *json =
      "{\"annotations\": [{\"label\": \"finger-1\", \"points\": [[10,20],[50,20],[40,60]]},"
      "{\"label\": \"Radius\", \"points\": [[0,0],[95,0],[95,79],[0,79]]},"
      "{\"label\": \"Lunate\", \"points\": [[60,10],[90,10],[75,70]]}]}";
  struct osseg_labels *l = NULL;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_labels_parse_json(&l, "x.json", json, strlen(json),
                                           osseg_pipeline_class_names(p),
                                           osseg_pipeline_class_count(p), NULL, &d),
                   0);
  struct drawn dr;
  draw(l, H, W, &dr);

  struct osseg_dice_report with_labels, with_runs;
  memset(&with_labels, 0, sizeof with_labels);
  memset(&with_runs, 0, sizeof with_runs);
  struct osseg_run_request rq = {.on_dice = on_dice, .ctx = &with_labels, .labels = l};
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, &rq, &d), 0);
  const struct osseg_ground_truth *kept = osseg_workspace_ground_truth(ws);
  assert_non_null(kept);
  for (size_t c = 0; c < OSSEG_CANONICAL_CLASSES; c++) {
    assert_true(kept->has[c]);
    assert_int_equal(kept->nruns[c], dr.gt.nruns[c]);
    if (kept->nruns[c])
      assert_memory_equal(kept->runs[c], dr.gt.runs[c], kept->nruns[c] * sizeof *kept->runs[c]);
  }
  struct osseg_run_request rq2 = {.on_dice = on_dice, .ctx = &with_runs, .gt = &dr.gt};
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, &rq2, &d), 0);
  assert_null(osseg_workspace_ground_truth(ws));
  assert_int_equal(with_labels.n, OSSEG_CANONICAL_CLASSES);
  assert_int_equal(with_runs.n, with_labels.n);
  for (size_t k = 0; k < with_labels.n; k++) {
    assert_int_equal(with_labels.cls[k], with_runs.cls[k]);
    assert_true(with_labels.dice[k] == with_runs.dice[k]);
  }
  assert_true(with_labels.mean == with_runs.mean);
  /* Radius covers the whole image: its Dice is that of the predicted mask
   * against everything, so not trivially 1 unless the model says so. */
  assert_true(with_labels.mean > 0 && with_labels.mean <= 1);

  /* Both kinds at once, or labels of another class list: refused. */
  struct osseg_run_request both = {.gt = &dr.gt, .labels = l};
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, &both, &d), OSSEG_EINVAL);
  assert_non_null(strstr(d.message, "not both"));
  static const char *const two[] = {"finger-1", "Radius"};
  struct osseg_labels *l2 = NULL;
  const char *j2 = "{\"annotations\": []}";
  assert_int_equal(osseg_labels_parse_json(&l2, "y", j2, strlen(j2), two, 2, NULL, NULL), 0);
  struct osseg_run_request other = {.labels = l2};
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, &other, &d), OSSEG_EINVAL);
  assert_non_null(strstr(d.message, "labels parsed against 2 classes, the models have 29"));
  assert_null(osseg_workspace_ground_truth(ws));

  osseg_labels_free(l2);
  osseg_labels_free(l);
  drawn_free(&dr);
  osseg_image_free(&img);
  osseg_workspace_free(ws);
  osseg_pipeline_free(p);
  osseg_registry_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_samples_equal_gt_csv),
      cmocka_unit_test(test_union_of_polygons),
      cmocka_unit_test(test_clipping),
      cmocka_unit_test(test_other_members_ignored),
      cmocka_unit_test(test_not_json),
      cmocka_unit_test(test_not_label_json),
      cmocka_unit_test(test_unknown_label),
      cmocka_unit_test(test_bad_points),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_arguments),
      cmocka_unit_test(test_allocation_failures),
      cmocka_unit_test(test_pipeline_run),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
