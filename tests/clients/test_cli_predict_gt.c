/* `osseg predict --gt`: Dice computed in the pipeline gives the numbers
 * `osseg dice` computes from the written CSV and the same ground truth;
 * classes without ground truth are not scored; a ground-truth row past the
 * image's end names its line. `osseg predict --labels`: the sample
 * phantoms' label JSON scores as their gt.csv does; a missing or bad label
 * file fails its image, named; overlays show the labels as ground truth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "osseg_imaging.h"
#include "test_support.h"

#define H 120
#define W 100

static const char *dir;
static char model_a[4096], model_b[4096];

static void write_png(const char *path, uint32_t seed) {
  struct osseg_image img = {0};
  assert_int_equal(osseg_image_init(&img, W, H, 1, 8), 0);
  for (uint32_t y = 0; y < H; y++)
    for (uint32_t x = 0; x < W; x++) {
      int dx = (int)x - (int)(W / 3 + seed % 17), dy = (int)y - H / 2;
      int v = dx * dx + dy * dy < W * H / 16 ? 220 : 40 + (int)((x * 7 + y * 3 + seed) % 30);
      img.data[(size_t)y * img.stride + x] = (uint8_t)v;
    }
  assert_int_equal(osseg_png_encode_file(path, &img, 1, NULL), 0);
  osseg_image_free(&img);
}

static int setup(void **state) {
  (void)state;
  dir = test_tmpdir();
  if (!dir) return -1;
  snprintf(model_a, sizeof model_a, "%s/tests/data/models/unetpp_r18_tiny_op13.onnx",
           test_source_dir());
  snprintf(model_b, sizeof model_b, "%s/tests/data/models/unet_effb0_tiny_op13.onnx",
           test_source_dir());
  mkdir(test_path("%s/imgs", dir), 0777);
  for (uint32_t i = 0; i < 3; i++) write_png(test_path("%s/imgs/img_%u.png", dir, i), i * 5);
  return 0;
}

/* The number after `key` in s; fails the test when absent. */
static double number_after(const char *s, const char *key) {
  const char *p = strstr(s, key);
  if (!p) fail_msg("'%s' not in: %s", key, s);
  return strtod(p + strlen(key), NULL);
}

/* Writes the GT CSV: model B's predictions, less the rows of `drop`. */
static const char *make_gt(const char *drop) {
  const char *full = test_path("%s/gt_full.csv", dir);
  char *err = NULL;
  int rc = test_osseg_run(NULL, &err, "predict", "--model", model_b, "-o", full,
                          test_path("%s/imgs", dir), NULL);
  assert_int_equal(rc, 0);
  free(err);
  size_t n;
  char *text = test_read_file(full, &n);
  assert_non_null(text);
  const char *gt = test_path("%s/gt_%s.csv", dir, drop ? "part" : "all");
  FILE *f = fopen(gt, "w");
  assert_non_null(f);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
    if (!drop || !strstr(line, drop)) fprintf(f, "%s\n", line);
  fclose(f);
  free(text);
  return gt;
}

static void check_against_dice(const char *gt) {
  const char *pred = test_path("%s/pred.csv", dir);
  char *out = NULL, *err = NULL;
  int rc = test_osseg_run(&out, &err, "predict", "--model", model_a, "--gt", gt, "--json", "-o",
                          pred, test_path("%s/imgs", dir), NULL);
  if (rc != 0) fail_msg("predict: %s", err);
  /* One JSON line per image, each with its Dice. */
  const char *p = out;
  int lines = 0;
  for (; (p = strstr(p, "\"dice\":")) != NULL; p++) {
    double d = number_after(p, "\"dice\":");
    assert_true(d > 0.0 && d <= 1.0);
    lines++;
  }
  assert_int_equal(lines, 3);
  double mean = number_after(err, "mean Dice ");
  free(out);
  free(err);

  char h[16], w[16];
  snprintf(h, sizeof h, "%d", H);
  snprintf(w, sizeof w, "%d", W);
  rc = test_osseg_run(&out, &err, "dice", "--json", "--height", h, "--width", w, pred, gt, NULL);
  assert_int_equal(rc, 0);
  double want = number_after(out, "\"mean\":");
  /* predict prints 6 decimals */
  if (!(mean > want - 6e-7 && mean < want + 6e-7)) fail_msg("predict %.9f, dice %.9f", mean, want);
  assert_true(want < 1.0); /* the models differ: not a vacuous 1 */
  free(out);
  free(err);
}

static void test_dice_equals_osseg_dice(void **state) {
  (void)state;
  check_against_dice(make_gt(NULL));
  /* Without GT rows for Radius, Radius is scored by neither. */
  check_against_dice(make_gt(",Radius,"));
}

static void test_gt_past_image_end(void **state) {
  (void)state;
  const char *gt = test_path("%s/gt_bad.csv", dir);
  char row[256];
  int n = snprintf(row, sizeof row, "image_name,class,rle\nimg_0.png,Ulna,%d 5\n", H * W - 2);
  assert_int_equal(test_write_file(gt, row, (size_t)n), 0);
  char *out = NULL, *err = NULL;
  int rc = test_osseg_run(&out, &err, "predict", "--model", model_a, "--gt", gt, "-o",
                          test_path("%s/bad.csv", dir), test_path("%s/imgs/img_0.png", dir), NULL);
  assert_int_equal(rc, 1);
  char want[4200];
  snprintf(want, sizeof want, "%s:2: run past the end of the %dx%d image", gt, W, H);
  if (!strstr(err, want)) fail_msg("stderr lacks '%s': %s", want, err);
  free(out);
  free(err);
}

/* The "dice" of each JSON line and the mean line (up to its source), as
 * printed. */
static void dice_text(const char *out, const char *err, char *buf, size_t size) {
  size_t n = 0;
  for (const char *p = out; (p = strstr(p, "\"dice\":")) != NULL; p++) {
    const char *end = strchr(p, '}');
    assert_non_null(end);
    n += (size_t)snprintf(buf + n, size - n, "%.*s;", (int)(end - p), p);
    assert_true(n < size);
  }
  const char *mean = strstr(err, "mean Dice ");
  assert_non_null(mean);
  const char *against = strstr(mean, " against ");
  assert_non_null(against);
  snprintf(buf + n, size - n, "%.*s", (int)(against - mean), mean);
}

static void test_labels_score_as_gt(void **state) {
  (void)state;
  char samples[4096];
  snprintf(samples, sizeof samples, "%s/data/samples", test_source_dir());
  const char *img0 = test_path("%s/images/phantom_1000100.png", samples);
  const char *img3 = test_path("%s/images/phantom_1000103.png", samples);
  struct stat st;
  if (stat(test_path("%s/gt.csv", samples), &st) != 0 ||
      stat(test_path("%s/labels/phantom_1000103.json", samples), &st) != 0 ||
      stat(img0, &st) != 0 || stat(img3, &st) != 0) {
    print_message("no sample phantoms: skipped\n");
    skip();
  }
  const char *pred = test_path("%s/pred_samples.csv", dir);
  char *out1, *err1, *out2, *err2;
  int rc = test_osseg_run(&out1, &err1, "predict", "--model", model_a, "--labels",
                          test_path("%s/labels", samples), "--json", "-o", pred, img0, img3, NULL);
  if (rc != 0) fail_msg("predict --labels: %s", err1);
  rc = test_osseg_run(&out2, &err2, "predict", "--model", model_a, "--gt",
                      test_path("%s/gt.csv", samples), "--json", "-o", pred, img0, img3, NULL);
  if (rc != 0) fail_msg("predict --gt: %s", err2);
  char a[1024], b[1024];
  dice_text(out1, err1, a, sizeof a);
  dice_text(out2, err2, b, sizeof b);
  assert_string_equal(a, b);
  assert_non_null(strstr(a, "over 29 class(es)"));
  free(out1);
  free(err1);
  free(out2);
  free(err2);
}

static void test_labels_errors_and_overlay(void **state) {
  (void)state;
  const char *labels = test_path("%s/labels", dir);
  mkdir(labels, 0777);
  const char *knee = "{\"annotations\": [{\"label\": \"Knee\", \"points\": [[1,1],[9,1],[5,9]]}]}";
  /* A Radius square in the middle of the 100 x 120 image. */
  const char *radius =
      "{\"annotations\": [{\"label\": \"Radius\", \"points\": [[40,50],[60,50],[60,70],[40,70]]}]}";
  assert_int_equal(test_write_file(test_path("%s/img_0.json", labels), knee, strlen(knee)), 0);
  assert_int_equal(test_write_file(test_path("%s/img_2.json", labels), radius, strlen(radius)), 0);
  char ldir[4096], csv[4096], ov[4096], imgs[4096];
  snprintf(ldir, sizeof ldir, "%s", labels);
  snprintf(csv, sizeof csv, "%s/pred_labels.csv", dir);
  snprintf(ov, sizeof ov, "%s/ov", dir);
  snprintf(imgs, sizeof imgs, "%s/imgs", dir);
  char *out, *err;
  int rc = test_osseg_run(&out, &err, "predict", "--model", model_a, "--labels", ldir,
                          "--overlay-dir", ov, "-o", csv, imgs, NULL);
  assert_int_equal(rc, 1);
  char want[9000];
  snprintf(want, sizeof want,
           "osseg predict: %s/img_0.png: %s/img_0.json: annotations[0].label: 'Knee' is none "
           "of the 29 classes (finger-1 ... Ulna)\n",
           imgs, ldir);
  if (!strstr(err, want)) fail_msg("stderr lacks '%s': %s", want, err);
  snprintf(want, sizeof want,
           "osseg predict: %s/img_1.png: %s/img_1.json: No such file or directory\n", imgs, ldir);
  if (!strstr(err, want)) fail_msg("stderr lacks '%s': %s", want, err);
  assert_non_null(strstr(err, "osseg predict: 2 of 3 image(s) failed"));
  assert_non_null(strstr(err, "mean Dice"));
  char *rows = test_read_file(csv, NULL);
  assert_non_null(rows);
  assert_null(strstr(rows, "img_0.png"));
  assert_null(strstr(rows, "img_1.png"));
  assert_non_null(strstr(rows, "img_2.png,Radius,"));
  free(rows);
  free(out);
  free(err);

  /* The overlay of img_2: image | ground truth | prediction, the middle
   * panel coloured inside the Radius square and gray outside it. */
  struct osseg_image o;
  assert_int_equal(osseg_png_decode_file(test_path("%s/img_2.png.overlay.png", ov), NULL, &o, NULL),
                   0);
  assert_int_equal(o.width, 3 * W + 2 * 8);
  assert_int_equal(o.height, H);
  /* Decoded to gray: compare with the image panel at the same place. */
  uint32_t x0 = W + 8;
  uint8_t inside_img = o.data[(size_t)60 * o.stride + 50];
  uint8_t inside_gt = o.data[(size_t)60 * o.stride + x0 + 50];
  uint8_t outside_img = o.data[(size_t)10 * o.stride + 90];
  uint8_t outside_gt = o.data[(size_t)10 * o.stride + x0 + 90];
  assert_int_not_equal(inside_img, inside_gt);
  assert_int_equal(outside_img, outside_gt);
  osseg_image_free(&o);

  /* One source of ground truth at a time. */
  test_osseg_expect_fail(2, "osseg predict: --gt and --labels both give ground truth; use one\n",
                         "predict", "--model", model_a, "--gt", "gt.csv", "--labels", ldir, "-o",
                         csv, imgs, NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dice_equals_osseg_dice),
      cmocka_unit_test(test_gt_past_image_end),
      cmocka_unit_test(test_labels_score_as_gt),
      cmocka_unit_test(test_labels_errors_and_overlay),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
