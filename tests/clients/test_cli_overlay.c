/* `osseg overlay`: golden-image tests with exact pixels on a 64x48 image
 * and hand-made RLE for three classes (finger-1, Radius, Ulna): the image
 * untouched outside the masks, class colours blended by the documented
 * formula inside, outlines opaque, TP/FP/FN colours in diff mode, titles
 * and legend text (including the Dice values) glyph by glyph, swatches at
 * their documented places; ground truth from label JSON; --classes; the
 * whole side-by-side output against a committed reference PNG; and the
 * error paths with their messages and exit statuses.
 *
 * The reference is tests/data/overlay/side_by_side.png. When the output
 * changes on purpose, regenerate it with
 *   OSSEG_UPDATE_GOLDEN=1 ctest -R test_cli_overlay
 * (the test then writes the reference instead of comparing) and commit it. */
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
#include <png.h>

#include "imaging_internal.h"
#include "osseg_imaging.h"
#include "test_support.h"

#define W 64
#define H 48

static const char *dir;
static char img_path[4096], gt_path[4096], pred_path[4096], json_path[4096];

static int gray(uint32_t x, uint32_t y) { return 40 + (int)x + (int)y; }

/* Appends "s l" runs of the rectangle [x0, x1] x [y0, y1] (inclusive) to
 * buf: one run per row, 1-based starts, row-major pixels. */
static void rect_rle(char *buf, size_t cap, int x0, int y0, int x1, int y1) {
  size_t len = strlen(buf);
  for (int y = y0; y <= y1; y++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%d %d", len ? " " : "", y * W + x0 + 1,
                            x1 - x0 + 1);
}

/* Ground truth: finger-1 x 4..19, y 4..11; Radius x 30..45, y 30..39.
 * Prediction: finger-1 x 10..25, y 4..11 (TP 10..19, FN 4..9, FP
 * 20..25); Radius exact; Ulna x 50..59, y 20..23 (no ground truth row). */
static void write_inputs(void) {
  struct osseg_image img = {0};
  assert_int_equal(osseg_image_init(&img, W, H, 1, 8), 0);
  for (uint32_t y = 0; y < H; y++)
    for (uint32_t x = 0; x < W; x++) img.data[(size_t)y * img.stride + x] = (uint8_t)gray(x, y);
  snprintf(img_path, sizeof img_path, "%s/img.png", dir);
  assert_int_equal(osseg_png_encode_file(img_path, &img, 6, NULL), 0);
  osseg_image_free(&img);

  char f1[2048] = "", radius[2048] = "", p1[2048] = "", ulna[2048] = "";
  rect_rle(f1, sizeof f1, 4, 4, 19, 11);
  rect_rle(radius, sizeof radius, 30, 30, 45, 39);
  rect_rle(p1, sizeof p1, 10, 4, 25, 11);
  rect_rle(ulna, sizeof ulna, 50, 20, 59, 23);
  char text[16384];
  snprintf(gt_path, sizeof gt_path, "%s/gt.csv", dir);
  int n = snprintf(text, sizeof text,
                   "image_name,class,rle\nother.png,finger-1,1 5\nimg.png,finger-1,%s\n"
                   "img.png,Radius,%s\n",
                   f1, radius);
  assert_int_equal(test_write_file(gt_path, text, (size_t)n), 0);
  snprintf(pred_path, sizeof pred_path, "%s/pred.csv", dir);
  n = snprintf(text, sizeof text,
               "image_name,class,rle\nimg.png,finger-1,%s\nimg.png,Radius,%s\n"
               "img.png,Ulna,%s\nimg.png,Hamate,\n",
               p1, radius, ulna);
  assert_int_equal(test_write_file(pred_path, text, (size_t)n), 0);
  /* Label JSON: the same Radius as a polygon (cv2.fillPoly fills the
   * rectangle's border too), no other class. */
  snprintf(json_path, sizeof json_path, "%s/img.json", dir);
  static const char json[] =
      "{\"annotations\":[{\"label\":\"Radius\",\"points\":[[30,30],[45,30],[45,39],[30,39]]}]}";
  assert_int_equal(test_write_file(json_path, json, sizeof json - 1), 0);
}

static int setup(void **state) {
  (void)state;
  dir = test_tmpdir();
  if (!dir) return -1;
  write_inputs();
  return 0;
}

/* Decodes a PNG as 8-bit RGB with libpng's simplified API (osseg's own
 * decoder gives gray). */
static void read_rgb(const char *path, struct osseg_image *out) {
  png_image pi;
  memset(&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&pi, path)) fail_msg("%s: %s", path, pi.message);
  pi.format = PNG_FORMAT_RGB;
  memset(out, 0, sizeof *out);
  assert_int_equal(osseg_image_init(out, pi.width, pi.height, 3, 8), 0);
  if (!png_image_finish_read(&pi, NULL, out->data, (png_int_32)out->stride, NULL))
    fail_msg("%s: %s", path, pi.message);
}

/* Runs osseg overlay with the given arguments (NULL-terminated) into
 * DIR/out.png and decodes the result into *out. */
static void run_overlay(struct osseg_image *out, const char *name, ...) {
  const char *args[32];
  size_t n = 0;
  args[n++] = "overlay";
  va_list ap;
  va_start(ap, name);
  for (const char *a; (a = va_arg(ap, const char *)) != NULL;) args[n++] = a;
  va_end(ap);
  const char *path = test_path("%s/%s", dir, name);
  args[n++] = "-o";
  args[n++] = path;
  while (n < 32) args[n++] = NULL;
  char *sout = NULL, *serr = NULL;
  int rc = test_osseg_run(&sout, &serr, args[0], args[1], args[2], args[3], args[4], args[5],
                          args[6], args[7], args[8], args[9], args[10], args[11], args[12],
                          args[13], args[14], args[15], NULL);
  if (rc != 0) fail_msg("osseg overlay exited %d: %s", rc, serr);
  assert_string_equal(sout, "");
  assert_string_equal(serr, "");
  free(sout);
  free(serr);
  read_rgb(path, out);
}

static const uint8_t *px(const struct osseg_image *im, uint32_t x, uint32_t y) {
  return im->data + (size_t)y * im->stride + 3 * (size_t)x;
}

static void expect_rgb(const struct osseg_image *im, uint32_t x, uint32_t y, int r, int g, int b) {
  const uint8_t *p = px(im, x, y);
  if (p[0] != r || p[1] != g || p[2] != b)
    fail_msg("pixel (%u, %u) is (%d, %d, %d), expected (%d, %d, %d)", x, y, p[0], p[1], p[2], r,
             g, b);
}

static void expect_gray(const struct osseg_image *im, uint32_t x, uint32_t y, uint32_t ix,
                        uint32_t iy) {
  int v = gray(ix, iy);
  expect_rgb(im, x, y, v, v, v);
}

/* The blend with a = round(opacity * 256). */
static void expect_blend(const struct osseg_image *im, uint32_t x, uint32_t y, uint32_t ix,
                         uint32_t iy, int a, const uint8_t c[3]) {
  int v = gray(ix, iy);
  expect_rgb(im, x, y, (v * (256 - a) + c[0] * a + 128) >> 8,
             (v * (256 - a) + c[1] * a + 128) >> 8, (v * (256 - a) + c[2] * a + 128) >> 8);
}

/* Checks the 6x10 cells of text at (x, y), scale 1, up to column x_end:
 * white where the glyph has a pixel, black elsewhere (a black background
 * is what titles and legends are drawn on). */
static void expect_text(const struct osseg_image *im, uint32_t x, uint32_t y, uint32_t x_end,
                        const char *text) {
  for (size_t i = 0; text[i]; i++) {
    const uint8_t *g = osseg__font_glyph((unsigned char)text[i]);
    for (uint32_t r = 0; r < 7; r++)
      for (uint32_t c = 0; c < 6; c++) {
        uint32_t cx = x + 6 * (uint32_t)i + c;
        if (cx >= x_end) continue;
        int on = c < 5 && ((g[r] >> (4 - c)) & 1);
        const uint8_t *p = px(im, cx, y + r);
        int want = on ? 255 : 0;
        if (p[0] != want || p[1] != want || p[2] != want)
          fail_msg("'%s': char %zu '%c' row %u col %u at (%u, %u) is %d, expected %d", text, i,
                   text[i], r, c, cx, y + r, p[0], want);
      }
  }
}

/* Compares out with the committed reference, pixel for pixel (PNG bytes
 * may differ between zlib versions; pixels may not). With
 * OSSEG_UPDATE_GOLDEN=1 in the environment, writes the reference
 * instead. */
static void compare_golden(const struct osseg_image *out, const char *name) {
  const char *ref = test_path("%s/tests/data/overlay/%s", test_source_dir(), name);
  const char *update = getenv("OSSEG_UPDATE_GOLDEN");
  if (update && strcmp(update, "1") == 0) {
    assert_int_equal(osseg_png_encode_file(ref, out, 9, NULL), 0);
    return;
  }
  struct osseg_image want;
  read_rgb(ref, &want);
  assert_int_equal(want.width, out->width);
  assert_int_equal(want.height, out->height);
  for (uint32_t y = 0; y < out->height; y++)
    for (uint32_t x = 0; x < out->width; x++)
      if (memcmp(px(out, x, y), px(&want, x, y), 3) != 0)
        fail_msg("%s: pixel (%u, %u) differs from the reference", name, x, y);
  osseg_image_free(&want);
}

static void class_rgb(unsigned c, uint8_t rgb[3]) { osseg_overlay_class_color(c, rgb); }

enum { FINGER1 = 0, RADIUS = 27, ULNA = 28 };

/* image | truth | prediction, opacity 0.5 (a = 128). Layout: title bar
 * 10, panels at y 10..57, x 0, 72, 144; legend from y 62, rows 10 high. */
static void test_side_by_side(void **state) {
  (void)state;
  struct osseg_image o;
  run_overlay(&o, "sbs.png", img_path, "--gt", gt_path, "--pred", pred_path, "--opacity", "0.5",
              NULL);
  assert_int_equal(o.width, 3 * W + 2 * 8);
  assert_int_equal(o.height, 10 + H + 4 + 6 * 10);
  uint8_t f1[3], ra[3], ul[3];
  class_rgb(FINGER1, f1);
  class_rgb(RADIUS, ra);
  class_rgb(ULNA, ul);
  const uint32_t y0 = 10, gx = 72, px0 = 144;
  /* The image panel is the image, everywhere. */
  expect_gray(&o, 8, y0 + 7, 8, 7);
  expect_gray(&o, 35, y0 + 35, 35, 35);
  expect_gray(&o, 63, y0 + 47, 63, 47);
  /* Truth: finger-1 interior blended, its outline opaque, Radius, and the
   * image where there is no mask (including where only the prediction
   * has Ulna). */
  expect_blend(&o, gx + 8, y0 + 7, 8, 7, 128, f1);
  expect_rgb(&o, gx + 4, y0 + 7, f1[0], f1[1], f1[2]);
  expect_rgb(&o, gx + 19, y0 + 4, f1[0], f1[1], f1[2]);
  expect_blend(&o, gx + 35, y0 + 35, 35, 35, 128, ra);
  expect_gray(&o, gx + 22, y0 + 7, 22, 7);
  expect_gray(&o, gx + 55, y0 + 21, 55, 21);
  /* Prediction: finger-1 moved right, Ulna present. */
  expect_gray(&o, px0 + 8, y0 + 7, 8, 7);
  expect_blend(&o, px0 + 15, y0 + 7, 15, 7, 128, f1);
  expect_rgb(&o, px0 + 25, y0 + 7, f1[0], f1[1], f1[2]);
  expect_blend(&o, px0 + 55, y0 + 21, 55, 21, 128, ul);
  /* The gaps are black. */
  expect_rgb(&o, 66, y0 + 20, 0, 0, 0);
  expect_rgb(&o, 140, y0 + 20, 0, 0, 0);
  /* Titles, cut at each panel's right edge. */
  expect_text(&o, 1, 1, 64, "img.png");
  expect_text(&o, gx + 1, 1, gx + 64, "truth: gt.csv");
  expect_text(&o, px0 + 1, 1, px0 + 64, "pred.csv");
  /* Legend: header, then the classes in class order with their swatch
   * and Dice (finger-1 (160 + 1e-4) / (256 + 1e-4), Radius 1; Hamate has
   * an empty row in the prediction only, Ulna no ground truth: no Dice),
   * then the mean over the scored classes. */
  expect_text(&o, 10, 63, o.width, "Dice            ");
  expect_text(&o, 10, 73, o.width, "finger-1   0.625");
  expect_text(&o, 10, 83, o.width, "Hamate         -");
  expect_text(&o, 10, 93, o.width, "Radius     1.000");
  expect_text(&o, 10, 103, o.width, "Ulna           -");
  expect_text(&o, 10, 113, o.width, "mean       0.813");
  uint8_t ha[3];
  class_rgb(22, ha);
  expect_rgb(&o, 1, 63, 0, 0, 0); /* the header has no swatch */
  expect_rgb(&o, 1, 73, f1[0], f1[1], f1[2]);
  expect_rgb(&o, 7, 79, f1[0], f1[1], f1[2]);
  expect_rgb(&o, 8, 79, 0, 0, 0);
  expect_rgb(&o, 1, 80, 0, 0, 0);
  expect_rgb(&o, 4, 86, ha[0], ha[1], ha[2]);
  expect_rgb(&o, 4, 96, ra[0], ra[1], ra[2]);
  expect_rgb(&o, 4, 106, ul[0], ul[1], ul[2]);
  expect_rgb(&o, 4, 116, 0, 0, 0);
  compare_golden(&o, "side_by_side.png");
  osseg_image_free(&o);
}

/* --mode diff, default opacity 0.45 (a = 115): image | diff. The diff
 * panel at x 72: FN green/red/blue by the documented priority; the legend
 * lists the three colours first, then the classes without swatches. */
static void test_diff(void **state) {
  (void)state;
  struct osseg_image o;
  run_overlay(&o, "diff.png", img_path, "--gt", gt_path, "--pred", pred_path, "--mode", "diff",
              NULL);
  /* The legend's longest row, "TP: prediction and truth", widens the
   * image to 10 + 6 * 24 + 6 = 160; rows: 3 colours, header, 4 classes,
   * mean. */
  assert_int_equal(o.width, 160);
  assert_int_equal(o.height, 10 + H + 4 + 9 * 10);
  uint8_t tp[3], fp[3], fn[3];
  osseg_overlay_diff_color(OSSEG_OVERLAY_TP, tp);
  osseg_overlay_diff_color(OSSEG_OVERLAY_FP, fp);
  osseg_overlay_diff_color(OSSEG_OVERLAY_FN, fn);
  assert_memory_equal(tp, ((uint8_t[]){0, 200, 0}), 3);
  assert_memory_equal(fp, ((uint8_t[]){255, 0, 0}), 3);
  assert_memory_equal(fn, ((uint8_t[]){0, 96, 255}), 3);
  const uint32_t y0 = 10, dx = 72;
  expect_gray(&o, 8, y0 + 7, 8, 7); /* the image panel */
  expect_blend(&o, dx + 6, y0 + 7, 6, 7, 115, fn);   /* finger-1 truth only */
  expect_blend(&o, dx + 4, y0 + 4, 4, 4, 115, fn);   /* no opaque outline */
  expect_blend(&o, dx + 15, y0 + 7, 15, 7, 115, tp); /* both */
  expect_blend(&o, dx + 22, y0 + 7, 22, 7, 115, fp); /* prediction only */
  expect_blend(&o, dx + 35, y0 + 35, 35, 35, 115, tp); /* Radius exact */
  expect_blend(&o, dx + 55, y0 + 21, 55, 21, 115, fp); /* Ulna, no truth */
  expect_gray(&o, dx + 40, y0 + 10, 40, 10);
  expect_text(&o, dx + 1, 1, dx + 64, "pred.csv");
  expect_rgb(&o, 1, 63, tp[0], tp[1], tp[2]);
  expect_rgb(&o, 1, 73, fp[0], fp[1], fp[2]);
  expect_rgb(&o, 1, 83, fn[0], fn[1], fn[2]);
  expect_text(&o, 10, 63, o.width, "TP: prediction and truth");
  expect_text(&o, 10, 73, o.width, "FP: prediction only");
  expect_text(&o, 10, 83, o.width, "FN: truth only");
  expect_text(&o, 10, 103, o.width, "finger-1   0.625");
  expect_rgb(&o, 4, 106, 0, 0, 0); /* classes have no swatch in diff mode */
  expect_text(&o, 10, 143, o.width, "mean       0.813");
  osseg_image_free(&o);
}

/* Two predictions: one panel each, titled P1/P2 with the file name, and a
 * Dice column each. --classes Radius draws and scores Radius only. */
static void test_two_preds_and_classes(void **state) {
  (void)state;
  struct osseg_image o;
  run_overlay(&o, "two.png", img_path, "--gt", gt_path, "--pred", pred_path, "--pred", gt_path,
              "--classes", "Radius", "--opacity", "1", NULL);
  assert_int_equal(o.width, 4 * W + 3 * 8);
  assert_int_equal(o.height, 10 + H + 4 + 3 * 10);
  uint8_t ra[3];
  class_rgb(RADIUS, ra);
  const uint32_t y0 = 10;
  /* finger-1 not drawn in any panel; Radius opaque at opacity 1. */
  for (uint32_t k = 1; k < 4; k++) {
    expect_gray(&o, k * 72 + 15, y0 + 7, 15, 7);
    expect_rgb(&o, k * 72 + 35, y0 + 35, ra[0], ra[1], ra[2]);
  }
  expect_gray(&o, 2 * 72 + 55, y0 + 21, 55, 21); /* Ulna hidden too */
  expect_text(&o, 2 * 72 + 1, 1, 2 * 72 + 64, "P1: pred.csv");
  expect_text(&o, 3 * 72 + 1, 1, 3 * 72 + 64, "P2: gt.csv");
  expect_text(&o, 10, 63, o.width, "Dice          P1    P2");
  expect_text(&o, 10, 73, o.width, "Radius     1.000 1.000");
  expect_text(&o, 10, 83, o.width, "mean       1.000 1.000");
  osseg_image_free(&o);
}

/* Ground truth from label JSON: drawn as cv2.fillPoly draws it, and every
 * class scored (the file has Radius only: an empty class the prediction
 * leaves empty scores 1, finger-1 predicted where there is none 0). */
static void test_label_json(void **state) {
  (void)state;
  struct osseg_image o;
  run_overlay(&o, "json.png", img_path, "--gt", json_path, "--pred", pred_path, "--classes",
              "finger-1,Hamate,Radius", "--opacity", "0.5", NULL);
  uint8_t ra[3];
  class_rgb(RADIUS, ra);
  const uint32_t y0 = 10, gx = 72;
  expect_rgb(&o, gx + 30, y0 + 30, ra[0], ra[1], ra[2]); /* outline corner */
  expect_blend(&o, gx + 35, y0 + 35, 35, 35, 128, ra);
  expect_gray(&o, gx + 29, y0 + 35, 29, 35);
  expect_gray(&o, gx + 8, y0 + 7, 8, 7);
  expect_text(&o, gx + 1, 1, gx + 64, "truth: img.json");
  expect_text(&o, 10, 73, o.width, "finger-1   0.000");
  expect_text(&o, 10, 83, o.width, "Hamate     1.000");
  expect_text(&o, 10, 93, o.width, "Radius     1.000");
  expect_text(&o, 10, 103, o.width, "mean       0.667");
  osseg_image_free(&o);
}

static const char *write_csv(const char *name, const char *text) {
  const char *path = test_path("%s/%s", dir, name);
  assert_int_equal(test_write_file(path, text, strlen(text)), 0);
  return path;
}

/* Bad input: exit 1 with the file (and line) named; usage: exit 2. The
 * output file is not created by a failed run. */
static void test_errors(void **state) {
  (void)state;
  char path[4096], out[4096], msg[8192];
  snprintf(out, sizeof out, "%s/err.png", dir);
  snprintf(path, sizeof path, "%s/none.png", dir);
  snprintf(msg, sizeof msg, "osseg overlay: %s: No such file or directory\n", path);
  test_osseg_expect_fail(1, msg, "overlay", path, "-o", out, NULL);

  const char *other = write_csv("other.csv", "image_name,class,rle\nx.png,Ulna,1 2\n");
  snprintf(msg, sizeof msg, "osseg overlay: %s: no rows for image 'img.png'\n", other);
  test_osseg_expect_fail(1, msg, "overlay", img_path, "--pred", other, "-o", out, NULL);
  test_osseg_expect_fail(1, msg, "overlay", img_path, "--gt", other, "-o", out, NULL);

  const char *bad = write_csv("bad.csv", "image_name,class,rle\nimg.png,Ulna,1 2\n"
                                         "img.png,Radius,5 x\n");
  snprintf(msg, sizeof msg, "osseg overlay: %s:3: rle: offset 2: unexpected character 'x' "
                            "(RLE holds digits and spaces)\n", bad);
  test_osseg_expect_fail(1, msg, "overlay", img_path, "--pred", bad, "-o", out, NULL);

  const char *past = write_csv("past.csv", "image_name,class,rle\nimg.png,Ulna,3070 10\n");
  snprintf(msg, sizeof msg, "osseg overlay: %s:2: rle: offset 0: run '3070 10' ends past the "
                            "image end (3072 pixels)\n", past);
  test_osseg_expect_fail(1, msg, "overlay", img_path, "--gt", past, "-o", out, NULL);

  const char *unk = write_csv("unk.csv", "image_name,class,rle\nimg.png,finger-20,1 2\n");
  snprintf(msg, sizeof msg, "osseg overlay: %s:2: unknown class 'finger-20'\n", unk);
  test_osseg_expect_fail(1, msg, "overlay", img_path, "--pred", unk, "-o", out, NULL);

  const char *badjson = write_csv("bad.json", "{\"annotations\":[{\"label\":\"Radius\"}]}");
  snprintf(msg, sizeof msg, "osseg overlay: %s: annotations[0] (Radius): no \"points\"\n", badjson);
  test_osseg_expect_fail(1, msg, "overlay", img_path, "--gt", badjson, "-o", out, NULL);
  assert_null(test_read_file(out, &(size_t){0}));

  test_osseg_expect_fail(2,
                         "osseg overlay: --classes: unknown class 'Radiu' (the classes are "
                         "finger-1 ... finger-19, Trapezium, Trapezoid, Capitate, Hamate, "
                         "Scaphoid, Lunate, Triquetrum, Pisiform, Radius, Ulna)\n",
                         "overlay", img_path, "--classes", "Radius,Radiu", "-o", out, NULL);
  test_osseg_expect_fail(2, "osseg overlay: --mode diff needs --gt and at least one --pred\n",
                         "overlay", img_path, "--pred", pred_path, "--mode", "diff", "-o", out,
                         NULL);
  test_osseg_expect_fail(2, "osseg overlay: --mode must be side-by-side or diff, not 'x'\n",
                         "overlay", img_path, "--mode", "x", "-o", out, NULL);
  test_osseg_expect_fail(2, "osseg overlay: --opacity must be a number in [0, 1], not '1.5'\n",
                         "overlay", img_path, "--opacity", "1.5", "-o", out, NULL);
  test_osseg_expect_fail(2, "osseg overlay: -o OUT.png is required\n", "overlay", img_path,
                         NULL);
  char *sout = NULL, *serr = NULL;
  assert_int_equal(test_osseg_run(&sout, &serr, "overlay", "--help", NULL), 0);
  assert_non_null(strstr(sout, "usage: osseg overlay IMAGE.png"));
  assert_non_null(strstr(sout, "--mode diff"));
  free(sout);
  free(serr);
  assert_int_equal(test_osseg_run(NULL, NULL, "overlay", NULL), 2);
}

/* Output goes through osseg_output: a symlink stays a symlink and its
 * target gets the PNG. */
static void test_output_symlink(void **state) {
  (void)state;
  const char *target = test_path("%s/target.png", dir);
  const char *link = test_path("%s/link.png", dir);
  assert_int_equal(symlink(target, link), 0);
  char *serr = NULL;
  assert_int_equal(test_osseg_run(NULL, &serr, "overlay", img_path, "-o", link, NULL), 0);
  free(serr);
  struct stat st;
  assert_int_equal(lstat(link, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  struct osseg_image o;
  read_rgb(target, &o);
  assert_int_equal(o.width, W);
  assert_int_equal(o.height, 10 + H);
  expect_gray(&o, 20, 10 + 20, 20, 20);
  osseg_image_free(&o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_side_by_side),
      cmocka_unit_test(test_diff),
      cmocka_unit_test(test_two_preds_and_classes),
      cmocka_unit_test(test_label_json),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_output_symlink),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
