/* Tests for pipeline/: the composition of preprocessing, engine, fused
 * upsample + threshold and voting, checked against a straightforward
 * per-pixel evaluation of the reference pipeline; configuration errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_pipeline.h"
#include "pipeline_internal.h"
#include "test_support.h"

#define IMG_H 257
#define IMG_W 300

static const char *fixture(const char *name) {
  return test_path("%s/tests/data/models/%s.onnx", test_source_dir(), name);
}

/* A smooth gray test image with some structure, deterministic. */
static void make_image(struct osseg_image *img, uint32_t h, uint32_t w, uint64_t seed) {
  assert_int_equal(osseg_image_init(img, w, h, 1, 8), 0);
  struct test_rng rng;
  test_rng_seed(&rng, seed);
  double cx = 0.3 + 0.4 * test_rng_unit(&rng), cy = 0.3 + 0.4 * test_rng_unit(&rng);
  for (uint32_t y = 0; y < h; y++)
    for (uint32_t x = 0; x < w; x++) {
      double dx = (double)x / w - cx, dy = (double)y / h - cy;
      double v = 128 + 100 * sin(9 * dx) * cos(7 * dy) + (double)test_rng_below(&rng, 20);
      img->data[(size_t)y * img->stride + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

/* PyTorch 1.13's bilinear source index for one axis (align_corners=False):
 * the float ratio, the source position in double, the weight rounded to
 * float (what the fused kernel reproduces bit for bit). */
static void src_index(uint32_t dst, uint32_t in, uint32_t out, uint32_t *i0, uint32_t *i1,
                      float *l) {
  float ratio = (float)in / (float)out;
  double s = (double)ratio * ((double)dst + 0.5) - 0.5;
  if (s < 0) s = 0;
  uint32_t a = (uint32_t)s;
  if (a > in - 1) a = in - 1;
  *i0 = a;
  *i1 = a + (a < in - 1);
  float lam = (float)(s - (double)a);
  *l = lam > 1 ? 1 : lam;
}

static float upsampled(const float *plane, uint32_t h, uint32_t w, uint32_t oy, uint32_t ox,
                       uint32_t oh, uint32_t ow) {
  uint32_t y0, y1, x0, x1;
  float ly, lx;
  src_index(oy, h, oh, &y0, &y1, &ly);
  src_index(ox, w, ow, &x0, &x1, &lx);
  float wx0 = 1.0f - lx, wy0 = 1.0f - ly;
  float top = fmaf(plane[y0 * w + x0], wx0, plane[y0 * w + x1] * lx);
  float bot = fmaf(plane[y1 * w + x0], wx0, plane[y1 * w + x1] * lx);
  return fmaf(top, wy0, bot * ly);
}

struct collected {
  size_t calls;
  size_t next_class;
  struct osseg_runs runs[OSSEG_MAX_CLASSES];
  int cancel_at;
};

static int collect_cb(void *vctx, size_t cls, const char *name, const struct osseg_bitmask *mask,
                      const struct osseg_run *runs, size_t nruns) {
  struct collected *c = vctx;
  assert_int_equal(cls, c->next_class);
  assert_non_null(name);
  assert_non_null(mask);
  c->next_class++;
  c->calls++;
  if (c->cancel_at >= 0 && (size_t)c->cancel_at == cls) return OSSEG_ECANCELED;
  c->runs[cls].n = 0;
  for (size_t i = 0; i < nruns; i++)
    assert_int_equal(osseg_runs_push(&c->runs[cls], runs[i].start, runs[i].len), 0);
  return 0;
}

static void collected_free(struct collected *c) {
  for (size_t i = 0; i < OSSEG_MAX_CLASSES; i++) osseg_runs_free(&c->runs[i]);
}

/* Runs a single model the long way: preprocess, engine, per-pixel
 * upsampling; returns the logits (caller frees). */
static float *reference_logits(const char *model_path, const struct osseg_image *img,
                               uint32_t *oh, uint32_t *ow, size_t *nclasses) {
  struct osseg_engine_options eo;
  osseg_engine_options_default(&eo);
  struct osseg_model *m;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_model_load(&m, model_path, &eo, &d), 0);
  const struct osseg_tensor_info *in = osseg_model_input(m), *out = osseg_model_output(m);
  float *input = malloc(osseg_model_input_elems(m) * sizeof(float));
  float *logits = malloc(osseg_model_output_elems(m) * sizeof(float));
  assert_int_equal(osseg_preprocess_gray(img, (uint32_t)in->dims[2], NULL, input), 0);
  assert_int_equal(osseg_model_run(m, input, logits, &d), 0);
  *nclasses = (size_t)out->dims[1];
  *oh = (uint32_t)out->dims[2];
  *ow = (uint32_t)out->dims[3];
  free(input);
  osseg_model_free(m);
  return logits;
}

/* Reference mask of one class as runs. */
static void reference_runs(const float *plane, uint32_t h, uint32_t w, float thr_logit,
                           struct osseg_runs *out) {
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, IMG_H, IMG_W), 0);
  for (uint32_t y = 0; y < IMG_H; y++)
    for (uint32_t x = 0; x < IMG_W; x++)
      if (upsampled(plane, h, w, y, x, IMG_H, IMG_W) > thr_logit) {
        uint64_t p = (uint64_t)y * IMG_W + x;
        m.bits[p / 64] |= 1ull << (p % 64);
      }
  assert_int_equal(osseg_bitmask_to_runs(&m, out), 0);
  osseg_bitmask_free(&m);
}

static void assert_runs_equal(const struct osseg_runs *a, const struct osseg_runs *b) {
  assert_int_equal(a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    assert_int_equal(a->v[i].start, b->v[i].start);
    assert_int_equal(a->v[i].len, b->v[i].len);
  }
}

static void test_single_model_matches_reference(void **state) {
  (void)state;
  struct osseg_image img = {0};
  make_image(&img, IMG_H, IMG_W, 1);
  struct osseg_pipeline_config cfg;
  osseg_pipeline_config_default(&cfg);
  cfg.models[0].path = fixture("unetpp_r18_tiny_op13");
  cfg.nmodels = 1;
  cfg.threshold = 0.5f;
  cfg.class_thresholds[0].name = "Radius";
  cfg.class_thresholds[0].threshold = 0.3f;
  cfg.nclass_thresholds = 1;
  struct osseg_pipeline *p;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_create(&p, &cfg, &d), 0);
  assert_int_equal(osseg_pipeline_class_count(p), 29);
  assert_string_equal(osseg_pipeline_class_name(p, 0), "finger-1");
  assert_string_equal(osseg_pipeline_class_name(p, 28), "Ulna");
  assert_int_equal(osseg_pipeline_model_input_size(p, 0), 64);

  struct osseg_workspace *ws;
  assert_int_equal(osseg_workspace_create(&ws, p), 0);
  struct collected got = {.cancel_at = -1};
  struct osseg_timings t;
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, collect_cb, &got, &t, &d), 0);
  assert_int_equal(got.calls, 29);
  assert_true(t.total_ms >= t.inference_ms && t.inference_ms > 0);

  uint32_t oh, ow;
  size_t nc;
  float *logits = reference_logits(cfg.models[0].path, &img, &oh, &ow, &nc);
  size_t nonempty = 0;
  for (size_t c = 0; c < nc; c++) {
    float thr = c == 27 ? logf(0.3f / 0.7f) : 0.0f;
    struct osseg_runs ref = {0};
    reference_runs(logits + c * oh * ow, oh, ow, thr, &ref);
    assert_runs_equal(&got.runs[c], &ref);
    nonempty += ref.n > 0;
    osseg_runs_free(&ref);
  }
  assert_true(nonempty > 0); /* the comparison is not vacuous */

  /* A second run through the same workspace gives the same answer. */
  struct collected again = {.cancel_at = -1};
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, collect_cb, &again, NULL, &d), 0);
  for (size_t c = 0; c < nc; c++) assert_runs_equal(&got.runs[c], &again.runs[c]);

  free(logits);
  collected_free(&got);
  collected_free(&again);
  osseg_workspace_free(ws);
  osseg_pipeline_free(p);
  osseg_image_free(&img);
}

/* Hard voting of three models equals voting their single-model masks. */
static void test_hard_and_soft_voting(void **state) {
  (void)state;
  struct osseg_image img = {0};
  make_image(&img, IMG_H, IMG_W, 2);
  const char *names[3] = {"unetpp_r18_tiny_op13", "unet_effb0_tiny_op13",
                          "deeplabv3p_r50_tiny_op13"};
  float *logits[3];
  uint32_t oh = 0, ow = 0;
  size_t nc = 0;
  for (int i = 0; i < 3; i++) logits[i] = reference_logits(fixture(names[i]), &img, &oh, &ow, &nc);

  for (int mode = 0; mode < 2; mode++) {
    struct osseg_pipeline_config cfg;
    osseg_pipeline_config_default(&cfg);
    for (int i = 0; i < 3; i++) cfg.models[i].path = fixture(names[i]);
    cfg.nmodels = 3;
    cfg.vote = mode == 0 ? OSSEG_VOTE_HARD : OSSEG_VOTE_SOFT;
    struct osseg_pipeline *p;
    struct osseg_diag d;
    osseg_diag_clear(&d);
    assert_int_equal(osseg_pipeline_create(&p, &cfg, &d), 0);
    struct osseg_workspace *ws;
    assert_int_equal(osseg_workspace_create(&ws, p), 0);
    struct collected got = {.cancel_at = -1};
    assert_int_equal(osseg_pipeline_run_image(p, ws, &img, collect_cb, &got, NULL, &d), 0);
    size_t nonempty = 0;
    for (size_t c = 0; c < nc; c++) {
      struct osseg_bitmask m;
      assert_int_equal(osseg_bitmask_init(&m, IMG_H, IMG_W), 0);
      size_t near = 0;
      for (uint32_t y = 0; y < IMG_H; y++)
        for (uint32_t x = 0; x < IMG_W; x++) {
          int set;
          if (mode == 0) {
            int votes = 0;
            for (int i = 0; i < 3; i++)
              votes += upsampled(logits[i] + c * oh * ow, oh, ow, y, x, IMG_H, IMG_W) > 0.0f;
            set = votes > 1; /* default threshold: 3 / 2 = 1 */
          } else {
            double mean = 0;
            for (int i = 0; i < 3; i++)
              mean += 1.0 / (1.0 + exp(-(double)upsampled(logits[i] + c * oh * ow, oh, ow, y,
                                                           x, IMG_H, IMG_W)));
            mean /= 3;
            set = mean > 0.5;
            near += fabs(mean - 0.5) < 1e-6;
          }
          if (set) {
            uint64_t px = (uint64_t)y * IMG_W + x;
            m.bits[px / 64] |= 1ull << (px % 64);
          }
        }
      struct osseg_runs ref = {0};
      assert_int_equal(osseg_bitmask_to_runs(&m, &ref), 0);
      if (near == 0) assert_runs_equal(&got.runs[c], &ref);
      nonempty += ref.n > 0;
      osseg_runs_free(&ref);
      osseg_bitmask_free(&m);
    }
    assert_true(nonempty > 0);
    collected_free(&got);
    osseg_workspace_free(ws);
    osseg_pipeline_free(p);
  }
  for (int i = 0; i < 3; i++) free(logits[i]);
  osseg_image_free(&img);
}

static void test_callback_cancel_and_bad_png(void **state) {
  (void)state;
  struct osseg_pipeline_config cfg;
  osseg_pipeline_config_default(&cfg);
  cfg.models[0].path = fixture("unetpp_r18_tiny_op13");
  cfg.nmodels = 1;
  struct osseg_pipeline *p;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_create(&p, &cfg, &d), 0);
  struct osseg_workspace *ws;
  assert_int_equal(osseg_workspace_create(&ws, p), 0);

  struct osseg_image img = {0};
  make_image(&img, 70, 90, 3);
  struct collected got = {.cancel_at = 5};
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, collect_cb, &got, NULL, &d),
                   OSSEG_ECANCELED);
  assert_int_equal(got.calls, 6);

  /* A valid PNG runs; every truncation of it fails cleanly. */
  uint8_t *png;
  size_t png_size;
  assert_int_equal(osseg_png_encode_mem(&img, 6, &png, &png_size, &d), 0);
  struct collected ok = {.cancel_at = -1};
  assert_int_equal(osseg_pipeline_run_png(p, ws, png, png_size, collect_cb, &ok, NULL, &d), 0);
  assert_int_equal(ok.calls, 29);
  assert_non_null(osseg_workspace_image(ws));
  for (size_t cut = 0; cut < png_size; cut += 1 + cut / 4) {
    osseg_diag_clear(&d);
    int rc = osseg_pipeline_run_png(p, ws, png, cut, NULL, NULL, NULL, &d);
    assert_true(rc < 0);
    assert_true(d.message[0] != '\0');
  }
  /* Size limits are checked before decoding. */
  osseg_pipeline_free(p);
  osseg_workspace_free(ws);
  cfg.png.max_pixels = 1000;
  assert_int_equal(osseg_pipeline_create(&p, &cfg, &d), 0);
  assert_int_equal(osseg_workspace_create(&ws, p), 0);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_run_png(p, ws, png, png_size, NULL, NULL, NULL, &d),
                   OSSEG_ELIMIT);
  osseg__free(png);
  collected_free(&got);
  collected_free(&ok);
  osseg_workspace_free(ws);
  osseg_pipeline_free(p);
  osseg_image_free(&img);
}

static void expect_create_error(struct osseg_pipeline_config *cfg, int code, const char *needle) {
  struct osseg_pipeline *p = (struct osseg_pipeline *)(uintptr_t)1;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_create(&p, cfg, &d), code);
  assert_null(p);
  if (!strstr(d.message, needle)) fail_msg("message '%s' lacks '%s'", d.message, needle);
}

static void test_config_errors(void **state) {
  (void)state;
  struct osseg_pipeline_config cfg;
  osseg_pipeline_config_default(&cfg);
  expect_create_error(&cfg, OSSEG_EINVAL, "no model");

  cfg.models[0].path = fixture("unetpp_r18_tiny_op13");
  cfg.nmodels = 1;
  cfg.threshold = 1.0f;
  expect_create_error(&cfg, OSSEG_EINVAL, "not in (0, 1)");
  cfg.threshold = 0.5f;

  cfg.class_thresholds[0].name = "Femur";
  cfg.class_thresholds[0].threshold = 0.4f;
  cfg.nclass_thresholds = 1;
  expect_create_error(&cfg, OSSEG_EINVAL, "no such class");
  cfg.nclass_thresholds = 0;

  cfg.models[0].classes = "a,b,c";
  expect_create_error(&cfg, OSSEG_EINVAL, "3 class names for 29 output channels");
  cfg.models[0].classes = NULL;

  cfg.models[0].normalize = "mean=0.5;std=0";
  expect_create_error(&cfg, OSSEG_EINVAL, "std <= 0");
  cfg.models[0].normalize = "gamma";
  expect_create_error(&cfg, OSSEG_EINVAL, "normalisation 'gamma'");
  cfg.models[0].normalize = NULL;

  cfg.models[1].path = fixture("unetpp_r18_tiny_op13");
  cfg.nmodels = 2;
  cfg.vote_threshold = 2;
  expect_create_error(&cfg, OSSEG_EINVAL, "every mask would be empty");
  cfg.nmodels = 1; /* not ignored for one model */
  cfg.vote_threshold = 1;
  expect_create_error(&cfg, OSSEG_EINVAL, "every mask would be empty");
  cfg.nmodels = 2;
  cfg.vote_threshold = -1;

  cfg.models[1].path = fixture("unetpp_r18_tiny_op13_96x64");
  expect_create_error(&cfg, OSSEG_EUNSUPPORTED, "(1, 3, S, S)");

  cfg.models[1].path = test_path("%s/no/such/model.onnx", test_source_dir());
  struct osseg_pipeline *p;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_true(osseg_pipeline_create(&p, &cfg, &d) < 0);
  assert_true(strstr(d.message, "model.onnx") != NULL);
}

static void test_metadata_parsers(void **state) {
  (void)state;
  struct osseg_normalize n;
  assert_int_equal(osseg__parse_normalize("imagenet", &n, NULL, "x"), 0);
  assert_true(fabsf(n.mean[1] - 0.456f) < 1e-7f && fabsf(n.std[2] - 0.225f) < 1e-7f);
  assert_int_equal(osseg__parse_normalize("mean=0.5;std=0.25", &n, NULL, "x"), 0);
  assert_true(n.mean[2] == 0.5f && n.std[0] == 0.25f);
  assert_int_equal(osseg__parse_normalize("mean=0.1,0.2,0.3;std=1,2,3", &n, NULL, "x"), 0);
  assert_true(n.mean[1] == 0.2f && n.std[2] == 3.0f);
  const char *bad[] = {"mean=1,2;std=1", "mean=1,2,3,4;std=1", "mean=;std=1", "mean=1",
                       "mean=1;std=x", "mean=nan;std=1", "std=1;mean=1", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(osseg__parse_normalize(bad[i], &n, NULL, "x"), OSSEG_EINVAL);

  char *names[4];
  assert_int_equal(osseg__parse_class_list(" a , b,c ", names, 4, NULL, "x"), 3);
  assert_string_equal(names[0], "a");
  assert_string_equal(names[2], "c");
  for (int i = 0; i < 3; i++) osseg__free(names[i]);
  assert_int_equal(osseg__parse_class_list("a,,b", names, 4, NULL, "x"), OSSEG_EINVAL);
  assert_int_equal(osseg__parse_class_list("a,b,a", names, 4, NULL, "x"), OSSEG_EINVAL);
  assert_int_equal(osseg__parse_class_list("a,b,c,d,e", names, 4, NULL, "x"), OSSEG_ELIMIT);
  assert_string_equal(osseg_canonical_class(19), "Trapezium");
  assert_null(osseg_canonical_class(29));
}

/* Every allocation of workspace creation and a run may fail: clean errors,
 * no leaks (ASan checks). The engine sweeps its own loader; here creation
 * is swept coarsely to check the pipeline's own clean-up around it. */
static void test_allocation_failure_sweep(void **state) {
  (void)state;
  struct osseg_image img = {0};
  make_image(&img, 40, 50, 4);
  struct osseg_pipeline_config cfg;
  osseg_pipeline_config_default(&cfg);
  cfg.models[0].path = fixture("unetpp_r18_tiny_op13");
  cfg.nmodels = 1;
  struct osseg_pipeline *p = NULL;
  int failures = 0;
  for (uint64_t nth = 1; p == NULL; nth = nth * 3 / 2 + 1) {
    osseg__alloc_fail_at(nth);
    int rc = osseg_pipeline_create(&p, &cfg, NULL);
    osseg__alloc_fail_at(0);
    if (rc) {
      assert_true(rc < 0);
      assert_null(p);
      failures++;
    }
  }
  assert_true(failures > 0);

  int succeeded = 0;
  for (uint64_t nth = 1; !succeeded; nth++) {
    struct osseg_workspace *ws = NULL;
    osseg__alloc_fail_at(nth);
    int rc = osseg_workspace_create(&ws, p);
    if (rc == 0) rc = osseg_pipeline_run_image(p, ws, &img, NULL, NULL, NULL, NULL);
    osseg__alloc_fail_at(0);
    if (rc == 0) succeeded = 1;
    else assert_int_equal(rc, OSSEG_ENOMEM);
    osseg_workspace_free(ws);
  }
  osseg_pipeline_free(p);
  osseg_image_free(&img);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_single_model_matches_reference),
      cmocka_unit_test(test_hard_and_soft_voting),
      cmocka_unit_test(test_callback_cancel_and_bad_png),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_metadata_parsers),
      cmocka_unit_test(test_allocation_failure_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
