/* Tests of `osseg predict`, run as a program on a fixture model: rows per
 * image in class order, image names, the CSV's RLE decoded and compared run
 * for run and pixel for pixel with the masks the pipeline library gives for
 * the same image and model, determinism, JSON timings, overlays, and the
 * error paths (a corrupt image among good ones, duplicate names, bad
 * options, overlay failures). */
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

#include "osseg_imaging.h"
#include "osseg_pipeline.h"
#include "test_support.h"

static const char *dir;
static char model[4096];

/* Writes a gray test PNG of h x w with a bright disc. */
static void write_png(const char *path, uint32_t h, uint32_t w, uint32_t seed) {
  struct osseg_image img = {0};
  assert_int_equal(osseg_image_init(&img, w, h, 1, 8), 0);
  for (uint32_t y = 0; y < h; y++)
    for (uint32_t x = 0; x < w; x++) {
      int dx = (int)x - (int)(w / 3 + seed % 17), dy = (int)y - (int)(h / 2);
      int v = dx * dx + dy * dy < (int)(w * h / 16) ? 220 : 40 + (int)((x * 7 + y * 3 + seed) % 30);
      img.data[(size_t)y * img.stride + x] = (uint8_t)v;
    }
  assert_int_equal(osseg_png_encode_file(path, &img, 1, NULL), 0);
  osseg_image_free(&img);
}

static size_t count_lines(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* ------------------------------------------- CSV against the pipeline --- */

struct compare {
  const struct osseg_csv *csv;
  const char *image;  /* image_name of the rows to compare */
  size_t first_row;   /* the image's rows start here, one per class in order */
  size_t classes;     /* classes seen */
  uint64_t set, total; /* foreground and all pixels over the classes */
  struct osseg_runs runs;
  struct osseg_bitmask mask;
  char error[512];
};

static int compare_fail(struct compare *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int compare_fail(struct compare *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->error, sizeof c->error, fmt, ap);
  va_end(ap);
  return OSSEG_ECANCELED;
}

static int mask_bit(const struct osseg_bitmask *m, uint64_t p) {
  return (int)((m->bits[p >> 6] >> (p & 63)) & 1);
}

/* Pipeline callback: the CSV row of (image, class) must be the class-th row
 * of the image, and its RLE must decode to exactly the pipeline's runs and
 * mask. */
static int compare_class(void *vctx, size_t cls, const char *name,
                         const struct osseg_bitmask *mask, const struct osseg_run *runs,
                         size_t nruns) {
  struct compare *c = vctx;
  size_t r = c->first_row + cls;
  if (r >= c->csv->nrows) return compare_fail(c, "%s %s: no row %zu", c->image, name, r);
  const struct osseg_csv_row *row = &c->csv->rows[r];
  if (row->image_len != strlen(c->image) || memcmp(row->image, c->image, row->image_len) != 0 ||
      row->cls_len != strlen(name) || memcmp(row->cls, name, row->cls_len) != 0)
    return compare_fail(c, "line %u is '%.*s,%.*s', expected '%s,%s'", row->line,
                        (int)row->image_len, row->image, (int)row->cls_len, row->cls, c->image,
                        name);
  uint64_t npix = (uint64_t)mask->height * mask->width;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  c->runs.n = 0;
  if (osseg_rle_parse(row->rle, row->rle_len, npix, &c->runs, &d) != 0)
    return compare_fail(c, "line %u: %s", row->line, d.message);
  /* Run for run. */
  if (c->runs.n != nruns)
    return compare_fail(c, "line %u: %zu runs, the pipeline has %zu", row->line, c->runs.n,
                        nruns);
  for (size_t i = 0; i < nruns; i++)
    if (c->runs.v[i].start != runs[i].start || c->runs.v[i].len != runs[i].len)
      return compare_fail(c, "line %u: run %zu is %u+%u, the pipeline's %u+%u", row->line, i,
                          c->runs.v[i].start, c->runs.v[i].len, runs[i].start, runs[i].len);
  /* Pixel for pixel: the decoded row painted into a mask against the
   * pipeline's own bitmask. */
  osseg_bitmask_free(&c->mask);
  if (osseg_bitmask_init(&c->mask, mask->height, mask->width) != 0 ||
      osseg_bitmask_paint_runs(&c->mask, c->runs.v, c->runs.n) != 0)
    return compare_fail(c, "out of memory");
  for (uint64_t p = 0; p < npix; p++) {
    int want = mask_bit(mask, p);
    if (mask_bit(&c->mask, p) != want)
      return compare_fail(c, "line %u: pixel (%llu, %llu) is %d in the CSV, %d in the mask",
                          row->line, (unsigned long long)(p % mask->width),
                          (unsigned long long)(p / mask->width), !want, want);
    c->set += (uint64_t)want;
  }
  c->total += npix;
  c->classes++;
  return 0;
}

/* Runs the pipeline library with `model` (predict's defaults, and
 * threshold) on each of images[0..n) and checks that csv_path holds exactly
 * their rows, in that order, equal to the pipeline's masks. */
static void expect_csv_matches_pipeline(const char *csv_path, float threshold,
                                        const char *const *images, size_t n) {
  struct osseg_csv csv;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  if (osseg_csv_open(&csv, csv_path, NULL, &d) != 0) fail_msg("%s", d.message);
  struct osseg_registry *r = NULL;
  struct osseg_model_spec spec = {.name = "m", .path = model};
  assert_int_equal(osseg_registry_create(&r, NULL), 0);
  if (osseg_registry_load(r, &spec, NULL, &d) != 0) fail_msg("%s", d.message);
  struct osseg_pipeline_options cfg;
  osseg_pipeline_options_default(&cfg);
  cfg.models[0] = "m";
  cfg.nmodels = 1;
  cfg.threshold = threshold;
  struct osseg_pipeline *p = NULL;
  struct osseg_workspace *ws = NULL;
  if (osseg_pipeline_create(&p, r, &cfg, &d) != 0) fail_msg("%s", d.message);
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);
  size_t ncls = osseg_pipeline_class_count(p);
  assert_int_equal(ncls, 29);
  assert_int_equal(csv.nrows, n * ncls);
  struct compare c = {.csv = &csv};
  for (size_t i = 0; i < n; i++) {
    const char *slash = strrchr(images[i], '/');
    c.image = slash ? slash + 1 : images[i];
    c.first_row = i * ncls;
    c.classes = 0;
    struct osseg_timings t;
    osseg_diag_clear(&d);
    struct osseg_run_request rq = {.on_class = compare_class, .ctx = &c, .timings = &t};
    int rc = osseg_pipeline_run_file(p, ws, images[i], &rq, &d);
    if (rc != 0) fail_msg("%s: %s", images[i], c.error[0] ? c.error : d.message);
    assert_int_equal(c.classes, ncls);
  }
  /* The comparison means something only if the masks are neither all
   * empty nor all full. */
  assert_true(c.set > 0 && c.set < c.total);
  osseg_runs_free(&c.runs);
  osseg_bitmask_free(&c.mask);
  osseg_workspace_free(ws);
  osseg_pipeline_free(p);
  osseg_registry_free(r);
  osseg_csv_close(&csv);
}

static int setup(void **state) {
  (void)state;
  dir = test_tmpdir();
  snprintf(model, sizeof model, "%s/tests/data/models/unetpp_r18_tiny_op13.onnx",
           test_source_dir());
  char sub[4096];
  snprintf(sub, sizeof sub, "%s/imgs", dir);
  mkdir(sub, 0777);
  write_png(test_path("%s/imgs/b_1.png", dir), 120, 100, 1);
  write_png(test_path("%s/imgs/a_2.png", dir), 90, 130, 2);
  return dir ? 0 : -1;
}

static void test_predict_directory(void **state) {
  (void)state;
  char *out, *err;
  const char *csv = test_path("%s/pred.csv", dir);
  int rc = test_osseg_run(&out, &err, "predict", "--model", model, "-o", csv, "--json",
               test_path("%s/imgs", dir), NULL);
  if (rc != 0) fail_msg("exit %d: %s", rc, err);
  /* One JSON object per image with the timing fields, in name order. */
  assert_int_equal(count_lines(out), 2);
  assert_true(strstr(out, "{\"image\":\"a_2.png\",\"status\":\"ok\"") == out);
  const char *fields[] = {"\"decode_ms\":", "\"preprocess_ms\":", "\"inference_ms\":",
                          "\"postprocess_ms\":", "\"total_ms\":", "\"width\":130"};
  for (size_t i = 0; i < 6; i++) assert_non_null(strstr(out, fields[i]));
  size_t size;
  char *text = test_read_file(csv, &size);
  assert_non_null(text);
  assert_int_equal(count_lines(text), 1 + 2 * 29);
  assert_true(strncmp(text, "image_name,class,rle\na_2.png,finger-1,", 38) == 0);
  assert_non_null(strstr(text, "\nb_1.png,Ulna,"));
  assert_non_null(strstr(text, "\na_2.png,Trapezium,"));
  /* The rows are the pipeline's masks, decoded and compared. */
  char a2[4096], b1[4096];
  snprintf(a2, sizeof a2, "%s/imgs/a_2.png", dir);
  snprintf(b1, sizeof b1, "%s/imgs/b_1.png", dir);
  const char *const both[] = {a2, b1};
  expect_csv_matches_pipeline(csv, 0.5f, both, 2);

  /* Same input, same bytes; a threshold change changes the result. */
  const char *csv2 = test_path("%s/pred2.csv", dir);
  assert_int_equal(test_osseg_run(NULL, NULL, "predict", "--model", model, "-o", csv2,
                       test_path("%s/imgs/a_2.png", dir), test_path("%s/imgs/b_1.png", dir),
                       NULL),
                   0);
  char *text2 = test_read_file(csv2, NULL);
  assert_string_equal(text, text2);
  const char *csv3 = test_path("%s/pred3.csv", dir);
  assert_int_equal(test_osseg_run(NULL, NULL, "predict", "--model", model, "-o", csv3, "--threshold",
                       "0.2", test_path("%s/imgs", dir), NULL),
                   0);
  char *text3 = test_read_file(csv3, NULL);
  assert_string_not_equal(text, text3);
  expect_csv_matches_pipeline(csv3, 0.2f, both, 2);

  /* An ensemble of the same model three times equals the model alone. */
  const char *csv4 = test_path("%s/pred4.csv", dir);
  assert_int_equal(test_osseg_run(NULL, NULL, "predict", "--model", model, "--model", model, "--model",
                       model, "-o", csv4, test_path("%s/imgs", dir), NULL),
                   0);
  char *text4 = test_read_file(csv4, NULL);
  assert_string_equal(text, text4);
  free(text);
  free(text2);
  free(text3);
  free(text4);
  free(out);
  free(err);
}

static void test_predict_bad_image_among_good(void **state) {
  (void)state;
  const char *bad = test_path("%s/broken.png", dir);
  assert_int_equal(test_write_file(bad, "\x89PNG\r\n\x1a\n garbage", 17), 0);
  const char *csv = test_path("%s/partial.csv", dir);
  char *out, *err;
  int rc = test_osseg_run(&out, &err, "predict", "--model", model, "-o", csv,
               test_path("%s/imgs/a_2.png", dir), bad, test_path("%s/imgs/b_1.png", dir), NULL);
  assert_int_equal(rc, 1);
  assert_non_null(strstr(err, "broken.png"));
  assert_non_null(strstr(err, "1 of 3 image(s) failed"));
  char *text = test_read_file(csv, NULL);
  assert_non_null(text);
  assert_int_equal(count_lines(text), 1 + 2 * 29);
  assert_null(strstr(text, "broken.png"));
  free(text);
  free(out);
  free(err);

  /* Two files with one name would give repeated image_name rows. */
  char sub[4096];
  snprintf(sub, sizeof sub, "%s/other", dir);
  mkdir(sub, 0777);
  write_png(test_path("%s/other/a_2.png", dir), 50, 50, 3);
  rc = test_osseg_run(&out, &err, "predict", "--model", model, "-o", test_path("%s/dup.csv", dir),
           test_path("%s/imgs/a_2.png", dir), test_path("%s/other/a_2.png", dir), NULL);
  assert_int_equal(rc, 1);
  assert_non_null(strstr(err, "same file name"));
  free(out);
  free(err);

  /* An image over the pixel limit is refused before decoding. */
  rc = test_osseg_run(&out, &err, "predict", "--model", model, "--max-pixels", "5000", "-o",
           test_path("%s/limit.csv", dir), test_path("%s/imgs/a_2.png", dir), NULL);
  assert_int_equal(rc, 1);
  assert_non_null(strstr(err, "a_2.png"));
  free(out);
  free(err);
}

static void test_predict_overlays(void **state) {
  (void)state;
  const char *gt = test_path("%s/gt.csv", dir);
  const char gt_text[] = "image_name,class,rle\nb_1.png,Radius,1 500\n";
  assert_int_equal(test_write_file(gt, gt_text, sizeof gt_text - 1), 0);
  const char *ov = test_path("%s/overlays", dir);
  char ovdir[4096];
  snprintf(ovdir, sizeof ovdir, "%s", ov);
  assert_int_equal(test_osseg_run(NULL, NULL, "predict", "--model", model, "-o",
                       test_path("%s/ov.csv", dir), "--overlay-dir", ovdir, "--gt", gt,
                       test_path("%s/imgs/b_1.png", dir), NULL),
                   0);
  struct osseg_image img = {0};
  assert_int_equal(
      osseg_png_decode_file(test_path("%s/b_1.png.overlay.png", ovdir), NULL, &img, NULL), 0);
  /* Three panels of 100 px separated by 8 px. */
  assert_int_equal(img.width, 3 * 100 + 2 * 8);
  assert_int_equal(img.height, 120);
  osseg_image_free(&img);

  /* A valid very wide image: the automatic shrink (3) is more than its
   * height, and the panels are one row high rather than an error. */
  const char *wide = test_path("%s/wide.png", dir);
  char widepath[4096];
  snprintf(widepath, sizeof widepath, "%s", wide);
  write_png(widepath, 2, 3000, 4);
  char *werr;
  int wrc = test_osseg_run(NULL, &werr, "predict", "--model", model, "-o",
                           test_path("%s/wide.csv", dir), "--overlay-dir", ovdir, widepath, NULL);
  if (wrc != 0) fail_msg("exit %d: %s", wrc, werr);
  free(werr);
  assert_int_equal(
      osseg_png_decode_file(test_path("%s/wide.png.overlay.png", ovdir), NULL, &img, NULL), 0);
  assert_int_equal(img.width, 2 * 1000 + 8);
  assert_int_equal(img.height, 1);
  osseg_image_free(&img);

  /* A ground truth with two rows for one (image, class) is refused as
   * dice and ensemble refuse it, naming both lines. */
  const char *dup = test_path("%s/gt_dup.csv", dir);
  const char dup_text[] =
      "image_name,class,rle\nb_1.png,Radius,1 500\nb_1.png,Ulna,\nb_1.png,Radius,1 5\n";
  assert_int_equal(test_write_file(dup, dup_text, sizeof dup_text - 1), 0);
  char *err;
  assert_int_equal(test_osseg_run(NULL, &err, "predict", "--model", model, "-o",
                                  test_path("%s/ov_dup.csv", dir), "--overlay-dir", ovdir, "--gt",
                                  dup, test_path("%s/imgs/b_1.png", dir), NULL),
                   1);
  char expected[8192];
  snprintf(expected, sizeof expected,
           "osseg predict: %s:4: duplicate row for image 'b_1.png', class 'Radius' (first at line "
           "2)\n",
           dup);
  assert_string_equal(err, expected);
  free(err);
}

/* An overlay that cannot be written does not undo a good prediction: the
 * image's rows stay in the CSV, and the run reports an overlay failure (not
 * a failed image) and exits 1. */
static void test_predict_overlay_failure(void **state) {
  (void)state;
  char ovdir[4096], csv[4096];
  snprintf(ovdir, sizeof ovdir, "%s/ovfail", dir);
  snprintf(csv, sizeof csv, "%s/ovfail.csv", dir);
  assert_int_equal(mkdir(ovdir, 0777), 0);
  /* A directory where a_2's overlay file should go. */
  assert_int_equal(mkdir(test_path("%s/a_2.png.overlay.png", ovdir), 0777), 0);
  const char *a = test_path("%s/imgs/a_2.png", dir);
  char apath[4096];
  snprintf(apath, sizeof apath, "%s", a);
  char *out, *err;
  int rc = test_osseg_run(&out, &err, "predict", "--model", model, "-o", csv, "--json",
                          "--overlay-dir", ovdir, apath, test_path("%s/imgs/b_1.png", dir), NULL);
  assert_int_equal(rc, 1);
  char expected[8192];
  snprintf(expected, sizeof expected, "osseg predict: overlay for %s failed: ", apath);
  const char *at = strstr(err, expected);
  if (!at) fail_msg("stderr '%s' lacks '%s'", err, expected);
  assert_ptr_equal(strchr(at, '\n'), strstr(at, "\nosseg predict: 1 of 2 overlay(s) failed"));
  snprintf(expected, sizeof expected,
           "osseg predict: 1 of 2 overlay(s) failed; the rows of those images are in %s\n", csv);
  assert_non_null(strstr(err, expected));
  assert_null(strstr(err, "image(s) failed"));
  /* The prediction itself is reported as good, with the overlay error. */
  assert_true(strstr(out, "{\"image\":\"a_2.png\",\"status\":\"ok\"") == out);
  const char *ov_err = strstr(out, "\"overlay_error\":\"");
  assert_non_null(ov_err);
  assert_true(ov_err < strchr(out, '\n'));                 /* on a_2's line */
  assert_null(strstr(strchr(out, '\n'), "overlay_error")); /* b_1 is fine */
  /* Both images' rows are in the CSV; b_1's overlay was written. */
  char *text = test_read_file(csv, NULL);
  assert_non_null(text);
  assert_int_equal(count_lines(text), 1 + 2 * 29);
  assert_non_null(strstr(text, "\na_2.png,finger-1,"));
  assert_non_null(strstr(text, "\nb_1.png,finger-1,"));
  free(text);
  struct osseg_image img = {0};
  assert_int_equal(
      osseg_png_decode_file(test_path("%s/b_1.png.overlay.png", ovdir), NULL, &img, NULL), 0);
  osseg_image_free(&img);
  free(out);
  free(err);
}

/* -o at a device node writes through it (the node stays, as /dev/null
 * must); -o at a symlink writes the file it points at and keeps the link. */
static void test_predict_output_device_and_symlink(void **state) {
  (void)state;
  const char *img = test_path("%s/imgs/a_2.png", dir);
  char ref[4096], dev[4096], real[4096], link[4096];
  snprintf(ref, sizeof ref, "%s/ref.csv", dir);
  snprintf(dev, sizeof dev, "%s/null", dir);
  snprintf(real, sizeof real, "%s/real.csv", dir);
  snprintf(link, sizeof link, "%s/link.csv", dir);
  test_mknod_null(dev);
  assert_int_equal(test_osseg_run(NULL, NULL, "predict", "--model", model, "-o", ref, img, NULL), 0);
  assert_int_equal(test_osseg_run(NULL, NULL, "predict", "--model", model, "-o", dev, img, NULL), 0);
  assert_true(test_is_null_device(dev));
  assert_int_equal(test_write_file(real, "old", 3), 0);
  assert_int_equal(symlink("real.csv", link), 0);
  assert_int_equal(test_osseg_run(NULL, NULL, "predict", "--model", model, "-o", link, img, NULL),
                   0);
  struct stat st;
  assert_int_equal(lstat(link, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  char *want = test_read_file(ref, NULL), *got = test_read_file(real, NULL);
  assert_non_null(want);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(want);
  free(got);
  unlink(dev);
  unlink(link);
  unlink(real);
  unlink(ref);
}

static void test_predict_usage_errors(void **state) {
  (void)state;
  char *err;
  const char *img = test_path("%s/imgs/a_2.png", dir);
  struct {
    const char *args[8];
    const char *needle;
    int code;
  } cases[] = {
      {{"predict", "-o", "x.csv", img, NULL}, "--model is required", 2},
      {{"predict", "--model", model, img, NULL}, "-o OUT.csv is required", 2},
      {{"predict", "--model", model, "-o", "x.csv", NULL}, "no images given", 2},
      {{"predict", "--model", model, "--threshold", "1.5", "-o", "x.csv", img}, "(0, 1)", 2},
      {{"predict", "--model", model, "--precision", "fp8", "-o", "x.csv", img}, "fp32, bf16, bf16-mixed, int8 or auto", 2},
      {{"predict", "--model", model, "--vote", "maybe", "-o", "x.csv", img}, "hard or soft", 2},
      {{"predict", "--model", model, "--class-threshold", "Femur=0.3", "-o", "x.csv"},
       "no images given", 2},
      {{"predict", "--model", model, "--class-threshold", "Femur=0.3", "-o",
        test_path("%s/f.csv", dir), img},
       "no such class", 1},
      {{"predict", "--model", "/nonexistent.onnx", "-o", test_path("%s/n.csv", dir), img},
       "nonexistent.onnx", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *argv[12];
    int n = 0;
    argv[n++] = test_osseg_bin();
    for (int j = 0; j < 8 && cases[i].args[j]; j++) argv[n++] = cases[i].args[j];
    argv[n] = NULL;
    int rc = test_run(argv, NULL, &err, 60);
    if (rc != cases[i].code || !strstr(err, cases[i].needle))
      fail_msg("case %zu: exit %d, stderr '%s' (want %d, '%s')", i, rc, err, cases[i].code,
               cases[i].needle);
    free(err);
  }
  char *out;
  assert_int_equal(test_osseg_run(&out, NULL, "predict", "--help", NULL), 0);
  assert_non_null(strstr(out, "--overlay-dir"));
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_predict_directory),
      cmocka_unit_test(test_predict_bad_image_among_good),
      cmocka_unit_test(test_predict_overlays),
      cmocka_unit_test(test_predict_output_device_and_symlink),
      cmocka_unit_test(test_predict_overlay_failure),
      cmocka_unit_test(test_predict_usage_errors),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
