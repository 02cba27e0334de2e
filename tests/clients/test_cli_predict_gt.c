/* `osseg predict --gt`: Dice computed in the pipeline gives the numbers
 * `osseg dice` computes from the written CSV and the same ground truth;
 * classes without ground truth are not scored; a ground-truth row past the
 * image's end names its line. */
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dice_equals_osseg_dice),
      cmocka_unit_test(test_gt_past_image_end),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
