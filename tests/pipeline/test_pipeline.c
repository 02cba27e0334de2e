/* Tests for pipeline/: the composition of preprocessing, engine, fused
 * upsample + threshold and voting, checked against a straightforward
 * per-pixel evaluation of the reference pipeline; configuration errors. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_pipeline.h"
#include "pipeline_internal.h"
#include "workspace_internal.h"
#include "test_support.h"

#define IMG_H 257
#define IMG_W 300

static const char *fixture(const char *name) {
  return test_path("%s/tests/data/models/%s.onnx", test_source_dir(), name);
}

/* Loads a fixture model into r under the fixture's name. */
static void load_fixture(struct osseg_registry *r, const char *name) {
  struct osseg_model_spec spec = {.name = name, .path = fixture(name)};
  struct osseg_diag d;
  osseg_diag_clear(&d);
  if (osseg_registry_load(r, &spec, NULL, &d) != 0) fail_msg("%s: %s", name, d.message);
}

static struct osseg_registry *new_registry(void) {
  struct osseg_registry *r;
  assert_int_equal(osseg_registry_create(&r, NULL), 0);
  return r;
}

/* Runs img with on_class = collect_cb into got. */
struct collected;
static int run_collect(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                       const struct osseg_image *img, struct collected *got,
                       struct osseg_timings *t, struct osseg_diag *d);

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

static int run_collect(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                       const struct osseg_image *img, struct collected *got,
                       struct osseg_timings *t, struct osseg_diag *d) {
  struct osseg_run_request rq = {.on_class = collect_cb, .ctx = got, .timings = t};
  return osseg_pipeline_run_image(p, ws, img, &rq, d);
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
  struct osseg_registry *r = new_registry();
  load_fixture(r, "unetpp_r18_tiny_op13");
  struct osseg_pipeline_options cfg;
  osseg_pipeline_options_default(&cfg);
  cfg.models[0] = "unetpp_r18_tiny_op13";
  cfg.nmodels = 1;
  cfg.threshold = 0.5f;
  cfg.class_thresholds[0].name = "Radius";
  cfg.class_thresholds[0].threshold = 0.3f;
  cfg.nclass_thresholds = 1;
  struct osseg_pipeline *p;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_create(&p, r, &cfg, &d), 0);
  assert_int_equal(osseg_pipeline_class_count(p), 29);
  assert_string_equal(osseg_pipeline_class_name(p, 0), "finger-1");
  assert_string_equal(osseg_pipeline_class_name(p, 28), "Ulna");
  assert_int_equal(osseg_loaded_model_input_size(osseg_pipeline_model(p, 0)), 64);

  struct osseg_workspace *ws;
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);
  struct collected got = {.cancel_at = -1};
  struct osseg_timings t;
  assert_int_equal(run_collect(p, ws, &img, &got, &t, &d), 0);
  assert_int_equal(got.calls, 29);
  assert_true(t.total_ms >= t.inference_ms && t.inference_ms > 0);

  uint32_t oh, ow;
  size_t nc;
  float *logits = reference_logits(fixture("unetpp_r18_tiny_op13"), &img, &oh, &ow, &nc);
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
  assert_int_equal(run_collect(p, ws, &img, &again, NULL, &d), 0);
  for (size_t c = 0; c < nc; c++) assert_runs_equal(&got.runs[c], &again.runs[c]);

  free(logits);
  collected_free(&got);
  collected_free(&again);
  osseg_workspace_free(ws);
  osseg_pipeline_free(p);
  osseg_registry_free(r);
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

  struct osseg_registry *r = new_registry();
  for (int i = 0; i < 3; i++) load_fixture(r, names[i]);
  /* One workspace serves both pipelines, one after the other. */
  struct osseg_workspace *ws;
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);
  for (int mode = 0; mode < 2; mode++) {
    struct osseg_pipeline_options cfg;
    osseg_pipeline_options_default(&cfg);
    for (int i = 0; i < 3; i++) cfg.models[i] = names[i];
    cfg.nmodels = 3;
    cfg.vote = mode == 0 ? OSSEG_VOTE_HARD : OSSEG_VOTE_SOFT;
    struct osseg_pipeline *p;
    struct osseg_diag d;
    osseg_diag_clear(&d);
    assert_int_equal(osseg_pipeline_create(&p, r, &cfg, &d), 0);
    struct collected got = {.cancel_at = -1};
    assert_int_equal(run_collect(p, ws, &img, &got, NULL, &d), 0);
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
    osseg_pipeline_free(p);
  }
  osseg_workspace_free(ws);
  osseg_registry_free(r);
  for (int i = 0; i < 3; i++) free(logits[i]);
  osseg_image_free(&img);
}

static int run_with(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                    const struct osseg_image *img, struct collected *got, int parallel) {
  struct osseg_diag d;
  osseg_diag_clear(&d);
  struct osseg_run_request rq = {.on_class = collect_cb, .ctx = got,
                                 .parallel_postprocess = parallel};
  return osseg_pipeline_run_image(p, ws, img, &rq, &d);
}

/* on_class_work: records each class's run count in its own slot (it may
 * run on the helper thread); fails at fail_at. on_class then checks that
 * the work of its class was done before it. */
struct work_seen {
  size_t nruns[OSSEG_MAX_CLASSES];
  unsigned char done[OSSEG_MAX_CLASSES];
  int fail_at;
  size_t calls;
};

static int work_cb(void *vctx, size_t cls, const char *name, const struct osseg_bitmask *mask,
                   const struct osseg_run *runs, size_t nruns) {
  (void)name;
  (void)mask;
  (void)runs;
  struct work_seen *w = vctx;
  if (w->fail_at >= 0 && (size_t)w->fail_at == cls) return OSSEG_EIO;
  w->nruns[cls] = nruns;
  w->done[cls] = 1;
  return 0;
}

static int after_work_cb(void *vctx, size_t cls, const char *name,
                         const struct osseg_bitmask *mask, const struct osseg_run *runs,
                         size_t nruns) {
  (void)name;
  (void)mask;
  (void)runs;
  struct work_seen *w = vctx;
  assert_true(w->done[cls]);
  assert_int_equal(w->nruns[cls], nruns);
  w->calls++;
  return 0;
}

static void check_class_work(const struct osseg_pipeline *p, struct osseg_workspace *ws,
                             const struct osseg_image *img) {
  for (int parallel = 0; parallel < 2; parallel++) {
    struct work_seen w = {.fail_at = -1};
    struct osseg_diag d;
    osseg_diag_clear(&d);
    struct osseg_run_request rq = {.on_class = after_work_cb, .on_class_work = work_cb,
                                   .ctx = &w, .parallel_postprocess = parallel};
    assert_int_equal(osseg_pipeline_run_image(p, ws, img, &rq, &d), 0);
    assert_int_equal(w.calls, osseg_pipeline_class_count(p));
    /* A failing work call fails the run, naming its class. */
    struct work_seen f = {.fail_at = 1};
    rq.ctx = &f;
    osseg_diag_clear(&d);
    assert_int_equal(osseg_pipeline_run_image(p, ws, img, &rq, &d), OSSEG_EIO);
    assert_non_null(strstr(d.message, osseg_pipeline_class_name(p, 1)));
    assert_int_equal(f.calls, 1);
  }
}

/* Post-processing on two threads gives the callbacks the same runs in the
 * same class order as on one, for one model, hard and soft voting and a
 * class subset with an odd count; a callback that stops the run at the
 * second class of a pair (the helper's) ends it cleanly and the workspace
 * serves the next run; a workspace capped below the second lane runs on
 * one thread with the same result. */
static void test_parallel_postprocess(void **state) {
  (void)state;
  struct osseg_image img = {0};
  make_image(&img, IMG_H, IMG_W, 5);
  const char *names[3] = {"unetpp_r18_tiny_op13", "unet_effb0_tiny_op13",
                          "deeplabv3p_r50_tiny_op13"};
  struct osseg_registry *r = new_registry();
  for (int i = 0; i < 3; i++) load_fixture(r, names[i]);
  struct osseg_workspace *ws, *small;
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);
  for (int mode = 0; mode < 4; mode++) {
    struct osseg_pipeline_options cfg;
    osseg_pipeline_options_default(&cfg);
    cfg.nmodels = mode == 0 || mode == 3 ? 1 : 3;
    for (size_t i = 0; i < cfg.nmodels; i++) cfg.models[i] = names[i];
    if (mode == 1) cfg.vote = OSSEG_VOTE_HARD;
    if (mode == 2) cfg.vote = OSSEG_VOTE_SOFT;
    struct osseg_pipeline *whole = NULL;
    if (mode == 3) {
      struct osseg_diag d0;
      osseg_diag_clear(&d0);
      assert_int_equal(osseg_pipeline_create(&whole, r, &cfg, &d0), 0);
      for (size_t k = 0; k < 3; k++) cfg.classes[k] = osseg_pipeline_class_name(whole, 4 + k);
      cfg.nclasses = 3;
    }
    struct osseg_pipeline *p;
    struct osseg_diag d;
    osseg_diag_clear(&d);
    if (osseg_pipeline_create(&p, r, &cfg, &d) != 0) fail_msg("mode %d: %s", mode, d.message);
    if (mode == 3) osseg_pipeline_free(whole);
    /* collect_cb checks that classes come in order from next_class. */
    size_t first = mode == 3 ? 4 : 0;
    struct collected one = {.cancel_at = -1, .next_class = first};
    struct collected two = {.cancel_at = -1, .next_class = first};
    assert_int_equal(run_with(p, ws, &img, &one, 0), 0);
    assert_int_equal(run_with(p, ws, &img, &two, 1), 0);
    assert_non_null(ws->helper); /* the engine was idle: the helper ran */
    assert_int_equal(two.calls, one.calls);
    assert_int_equal(one.calls, mode == 3 ? 3 : osseg_pipeline_class_count(p));
    for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++) assert_runs_equal(&two.runs[c], &one.runs[c]);
    collected_free(&one);
    collected_free(&two);
    osseg_pipeline_free(p);
  }
  /* on_class_work, on one thread and on two. */
  {
    struct osseg_pipeline_options c1;
    osseg_pipeline_options_default(&c1);
    c1.models[0] = names[0];
    c1.nmodels = 1;
    struct osseg_pipeline *p1;
    struct osseg_diag d1;
    osseg_diag_clear(&d1);
    assert_int_equal(osseg_pipeline_create(&p1, r, &c1, &d1), 0);
    check_class_work(p1, ws, &img);
    osseg_pipeline_free(p1);
  }
  /* A stop at class 1, which the helper computed. */
  struct osseg_pipeline_options cfg;
  osseg_pipeline_options_default(&cfg);
  cfg.models[0] = names[0];
  cfg.nmodels = 1;
  struct osseg_pipeline *p;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_create(&p, r, &cfg, &d), 0);
  struct collected stop = {.cancel_at = 1}, ref = {.cancel_at = -1}, again = {.cancel_at = -1};
  assert_int_equal(run_with(p, ws, &img, &stop, 1), OSSEG_ECANCELED);
  assert_int_equal(stop.calls, 2);
  assert_int_equal(run_with(p, ws, &img, &ref, 0), 0);
  assert_int_equal(run_with(p, ws, &img, &again, 1), 0);
  for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++) assert_runs_equal(&again.runs[c], &ref.runs[c]);
  /* Capped at what one lane needs: one thread, same runs. */
  assert_int_equal(osseg_workspace_create(&small, osseg_workspace_bytes(ws) / 2 + 4096), 0);
  struct collected capped = {.cancel_at = -1};
  int rc = run_with(p, small, &img, &capped, 1);
  if (rc == OSSEG_ELIMIT) {
    /* The cap was below even one lane on this geometry: nothing to check. */
    print_message("workspace cap below one lane; capped case not exercised\n");
  } else {
    assert_int_equal(rc, 0);
    assert_null(small->helper);
    for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++)
      assert_runs_equal(&capped.runs[c], &ref.runs[c]);
  }
  collected_free(&capped);
  osseg_workspace_free(small);
  collected_free(&stop);
  collected_free(&ref);
  collected_free(&again);
  osseg_pipeline_free(p);
  osseg_workspace_free(ws);
  osseg_registry_free(r);
  osseg_image_free(&img);
}

static void test_callback_cancel_and_bad_png(void **state) {
  (void)state;
  struct osseg_registry *r = new_registry();
  load_fixture(r, "unetpp_r18_tiny_op13");
  struct osseg_pipeline_options cfg;
  osseg_pipeline_options_default(&cfg);
  cfg.models[0] = "unetpp_r18_tiny_op13";
  cfg.nmodels = 1;
  struct osseg_pipeline *p;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_create(&p, r, &cfg, &d), 0);
  struct osseg_workspace *ws;
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);

  struct osseg_image img = {0};
  make_image(&img, 70, 90, 3);
  struct collected got = {.cancel_at = 5};
  assert_int_equal(run_collect(p, ws, &img, &got, NULL, &d), OSSEG_ECANCELED);
  assert_int_equal(got.calls, 6);

  /* A valid PNG runs; every truncation of it fails cleanly. */
  uint8_t *png;
  size_t png_size;
  assert_int_equal(osseg_png_encode_mem(&img, 6, &png, &png_size, &d), 0);
  struct collected ok = {.cancel_at = -1};
  struct osseg_run_request rq = {.on_class = collect_cb, .ctx = &ok};
  assert_int_equal(osseg_pipeline_run_png(p, ws, png, png_size, &rq, &d), 0);
  assert_int_equal(ok.calls, 29);
  assert_non_null(osseg_workspace_image(ws));
  for (size_t cut = 0; cut < png_size; cut += 1 + cut / 4) {
    osseg_diag_clear(&d);
    int rc = osseg_pipeline_run_png(p, ws, png, cut, NULL, &d);
    assert_true(rc < 0);
    assert_true(d.message[0] != '\0');
  }
  /* Size limits are checked before decoding. */
  osseg_pipeline_free(p);
  cfg.png.max_pixels = 1000;
  assert_int_equal(osseg_pipeline_create(&p, r, &cfg, &d), 0);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_run_png(p, ws, png, png_size, NULL, &d), OSSEG_ELIMIT);
  osseg__free(png);
  collected_free(&got);
  collected_free(&ok);
  osseg_workspace_free(ws);
  osseg_pipeline_free(p);
  osseg_registry_free(r);
  osseg_image_free(&img);
}

static void expect_create_error(struct osseg_registry *r, struct osseg_pipeline_options *cfg,
                                int code, const char *needle) {
  struct osseg_pipeline *p = (struct osseg_pipeline *)(uintptr_t)1;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_create(&p, r, cfg, &d), code);
  assert_null(p);
  if (!strstr(d.message, needle)) fail_msg("message '%s' lacks '%s'", d.message, needle);
}

static void expect_load_error(struct osseg_registry *r, const struct osseg_model_spec *spec,
                              int code, const char *needle) {
  struct osseg_diag d;
  osseg_diag_clear(&d);
  size_t before = osseg_registry_count(r);
  assert_int_equal(osseg_registry_load(r, spec, NULL, &d), code);
  assert_int_equal(osseg_registry_count(r), before);
  if (!strstr(d.message, needle)) fail_msg("message '%s' lacks '%s'", d.message, needle);
}

static void test_config_errors(void **state) {
  (void)state;
  struct osseg_registry *r = new_registry();
  struct osseg_pipeline_options cfg;
  osseg_pipeline_options_default(&cfg);
  expect_create_error(r, &cfg, OSSEG_EINVAL, "no model");
  cfg.models[0] = "m";
  cfg.nmodels = 1;
  expect_create_error(r, &cfg, OSSEG_ENOTFOUND, "model 'm' is not loaded");

  /* Load-time errors name the file. */
  struct osseg_model_spec spec = {.name = "m", .path = fixture("unetpp_r18_tiny_op13")};
  spec.classes = "a,b,c";
  expect_load_error(r, &spec, OSSEG_EINVAL, "3 class names for 29 output channels");
  spec.classes = NULL;
  spec.normalize = "mean=0.5;std=0";
  expect_load_error(r, &spec, OSSEG_EINVAL, "std <= 0");
  spec.normalize = "gamma";
  expect_load_error(r, &spec, OSSEG_EINVAL, "normalisation 'gamma'");
  spec.normalize = NULL;
  spec.name = "bad/name";
  expect_load_error(r, &spec, OSSEG_EINVAL, "model name 'bad/name'");
  spec.name = "m";
  spec.path = test_path("%s/no/such/model.onnx", test_source_dir());
  expect_load_error(r, &spec, OSSEG_EIO, "model.onnx");
  /* Not a model: the message names the file once. */
  spec.path = test_path("%s/data/samples/images/phantom_1000100.png", test_source_dir());
  {
    struct osseg_diag d;
    osseg_diag_clear(&d);
    assert_true(osseg_registry_load(r, &spec, NULL, &d) < 0);
    const char *first = strstr(d.message, "phantom_1000100.png");
    assert_non_null(first);
    assert_null(strstr(first + 1, "phantom_1000100.png"));
  }
  spec.path = fixture("unetpp_r18_tiny_op13_96x64");
  spec.name = "rect";
  expect_load_error(r, &spec, OSSEG_EUNSUPPORTED, "(1, 3, S, S)");

  load_fixture(r, "unetpp_r18_tiny_op13");
  cfg.models[0] = "unetpp_r18_tiny_op13";
  cfg.threshold = 1.0f;
  expect_create_error(r, &cfg, OSSEG_EINVAL, "not in (0, 1)");
  cfg.threshold = 0.5f;

  cfg.class_thresholds[0].name = "Femur";
  cfg.class_thresholds[0].threshold = 0.4f;
  cfg.nclass_thresholds = 1;
  expect_create_error(r, &cfg, OSSEG_EINVAL, "no such class");
  cfg.nclass_thresholds = 0;
  cfg.classes[0] = "Femur";
  cfg.nclasses = 1;
  expect_create_error(r, &cfg, OSSEG_EINVAL, "class 'Femur'");
  cfg.nclasses = 0;

  /* A vote threshold must be possible, with one model too. */
  cfg.vote_threshold = 1;
  expect_create_error(r, &cfg, OSSEG_EINVAL, "every mask would be empty");
  cfg.models[1] = "unetpp_r18_tiny_op13";
  cfg.nmodels = 2;
  cfg.vote_threshold = 2;
  expect_create_error(r, &cfg, OSSEG_EINVAL, "every mask would be empty");
  cfg.vote_threshold = -1;

  /* Models whose classes differ cannot be combined. */
  spec = (struct osseg_model_spec){.name = "renamed", .path = fixture("unetpp_r18_tiny_op13")};
  char list[1024] = "";
  for (int c = 0; c < 29; c++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%sc%d", c ? "," : "", c);
  spec.classes = list;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_registry_load(r, &spec, NULL, &d), 0);
  cfg.models[1] = "renamed";
  expect_create_error(r, &cfg, OSSEG_EINVAL, "classes differ");
  osseg_registry_free(r);
}
/* Probability threshold -> logit threshold, as the pipeline computes it. */
static float logit_thr(float t) { return (float)log((double)t / (1.0 - (double)t)); }

/* A model's own thresholds (its load spec) apply unless the request sets
 * one: per model with one model and hard voting, their mean with soft
 * voting. */
static void test_model_thresholds(void **state) {
  (void)state;
  struct osseg_image img = {0};
  make_image(&img, IMG_H, IMG_W, 3);
  const char *files[2] = {"unetpp_r18_tiny_op13", "unet_effb0_tiny_op13"};
  float *logits[2];
  uint32_t oh = 0, ow = 0;
  size_t nc = 0;
  for (int i = 0; i < 2; i++) logits[i] = reference_logits(fixture(files[i]), &img, &oh, &ow, &nc);

  struct osseg_registry *r = new_registry();
  const struct osseg_class_threshold own_ct[] = {{"Radius", 0.7f}, {"finger-1", 0.2f}};
  struct osseg_model_spec spec = {.name = "own", .path = fixture(files[0]), .threshold = 0.3f,
                                  .class_thresholds = own_ct, .nclass_thresholds = 2};
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_model_spec_check(&spec, &d), 0);
  assert_int_equal(osseg_registry_load(r, &spec, NULL, &d), 0);
  load_fixture(r, files[1]);
  struct osseg_loaded_model *m;
  assert_int_equal(osseg_registry_get(r, "own", &m), 0);
  assert_true(osseg_loaded_model_threshold(m, 0) == 0.2f);
  assert_true(osseg_loaded_model_threshold(m, 1) == 0.3f);
  assert_true(osseg_loaded_model_threshold(m, 27) == 0.7f);
  assert_true(osseg_loaded_model_threshold(m, 29) == 0.0f);
  osseg_loaded_model_unref(m);
  assert_int_equal(osseg_registry_get(r, files[1], &m), 0);
  assert_true(osseg_loaded_model_threshold(m, 27) == 0.5f);
  osseg_loaded_model_unref(m);

  /* Threshold of model i for class c in each case. */
  float own[OSSEG_MAX_CLASSES];
  for (size_t c = 0; c < nc; c++) own[c] = c == 0 ? 0.2f : c == 27 ? 0.7f : 0.3f;
  struct osseg_workspace *ws;
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);
  /* case 0: "own" alone, its thresholds; 1: request threshold 0.5 and
   * Radius 0.6 override them; 2: hard voting of both, each its own (count
   * > 1: both); 3: soft voting, mean of the two thresholds. */
  for (int kase = 0; kase < 4; kase++) {
    struct osseg_pipeline_options cfg;
    osseg_pipeline_options_default(&cfg);
    assert_true(cfg.threshold == 0.0f);
    cfg.models[0] = "own";
    cfg.models[1] = files[1];
    cfg.nmodels = kase < 2 ? 1 : 2;
    cfg.vote = kase == 3 ? OSSEG_VOTE_SOFT : OSSEG_VOTE_HARD;
    if (kase == 1) {
      cfg.threshold = 0.5f;
      cfg.class_thresholds[0] = (struct osseg_class_threshold){"Radius", 0.6f};
      cfg.nclass_thresholds = 1;
    }
    struct osseg_pipeline *p;
    osseg_diag_clear(&d);
    assert_int_equal(osseg_pipeline_create(&p, r, &cfg, &d), 0);
    struct collected got = {.cancel_at = -1};
    assert_int_equal(run_collect(p, ws, &img, &got, NULL, &d), 0);
    size_t nonempty = 0, differs = 0;
    for (size_t c = 0; c < nc; c++) {
      float t0 = kase == 1 ? (c == 27 ? 0.6f : 0.5f) : own[c];
      struct osseg_bitmask mk;
      assert_int_equal(osseg_bitmask_init(&mk, IMG_H, IMG_W), 0);
      size_t near = 0;
      for (uint32_t y = 0; y < IMG_H; y++)
        for (uint32_t x = 0; x < IMG_W; x++) {
          float u0 = upsampled(logits[0] + c * oh * ow, oh, ow, y, x, IMG_H, IMG_W);
          float u1 = upsampled(logits[1] + c * oh * ow, oh, ow, y, x, IMG_H, IMG_W);
          int set;
          if (kase < 2) {
            set = u0 > logit_thr(t0);
            differs += (u0 > 0.0f) != set;
          } else if (kase == 2) {
            set = u0 > logit_thr(t0) && u1 > 0.0f;
          } else {
            double mean = (1.0 / (1.0 + exp(-(double)u0)) + 1.0 / (1.0 + exp(-(double)u1))) / 2;
            double t = ((double)t0 + 0.5) / 2;
            set = mean > t;
            near += fabs(mean - t) < 1e-6;
          }
          if (set) {
            uint64_t px = (uint64_t)y * IMG_W + x;
            mk.bits[px / 64] |= 1ull << (px % 64);
          }
        }
      struct osseg_runs ref = {0};
      assert_int_equal(osseg_bitmask_to_runs(&mk, &ref), 0);
      if (near == 0) assert_runs_equal(&got.runs[c], &ref);
      nonempty += ref.n > 0;
      osseg_runs_free(&ref);
      osseg_bitmask_free(&mk);
    }
    assert_true(nonempty > 0);
    /* The thresholds changed masks (the comparison is not vacuous). */
    if (kase < 2) assert_true(differs > 0);
    collected_free(&got);
    osseg_pipeline_free(p);
  }
  osseg_workspace_free(ws);

  /* Errors: a class the model lacks (at load), a threshold outside (0, 1),
   * a class not in the spec's own list (checked without loading). */
  const struct osseg_class_threshold femur[] = {{"Femur", 0.4f}};
  spec = (struct osseg_model_spec){.name = "bad", .path = fixture(files[0]),
                                   .class_thresholds = femur, .nclass_thresholds = 1};
  osseg_diag_clear(&d);
  assert_int_equal(osseg_model_spec_check(&spec, &d), 0);
  expect_load_error(r, &spec, OSSEG_EINVAL, "threshold for class 'Femur': the model has no such");
  spec.nclass_thresholds = 0;
  spec.threshold = 1.5f;
  expect_load_error(r, &spec, OSSEG_EINVAL, "threshold 1.5 is not in (0, 1)");
  spec.threshold = 0;
  spec.classes = "a,b";
  spec.nclass_thresholds = 1;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_model_spec_check(&spec, &d), OSSEG_EINVAL);
  assert_non_null(strstr(d.message, "class 'Femur': not among its classes"));
  const struct osseg_class_threshold twice[] = {{"a", 0.4f}, {"a", 0.6f}};
  spec.class_thresholds = twice;
  spec.nclass_thresholds = 2;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_model_spec_check(&spec, &d), OSSEG_EINVAL);
  assert_non_null(strstr(d.message, "class a has two thresholds"));

  osseg_registry_free(r);
  for (int i = 0; i < 2; i++) free(logits[i]);
  osseg_image_free(&img);
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
  struct osseg_registry *r = NULL;
  int failures = 0;
  for (uint64_t nth = 1; r == NULL; nth = nth * 3 / 2 + 1) {
    osseg__alloc_fail_at(nth);
    int rc = osseg_registry_create(&r, NULL);
    struct osseg_model_spec spec = {.name = "m", .path = fixture("unetpp_r18_tiny_op13")};
    if (rc == 0) rc = osseg_registry_load(r, &spec, NULL, NULL);
    osseg__alloc_fail_at(0);
    if (rc) {
      assert_true(rc < 0);
      assert_int_equal(r ? osseg_registry_count(r) : 0, 0);
      osseg_registry_free(r);
      r = NULL;
      failures++;
    }
  }
  assert_true(failures > 0);

  struct osseg_pipeline_options cfg;
  osseg_pipeline_options_default(&cfg);
  cfg.models[0] = "m";
  cfg.nmodels = 1;
  int succeeded = 0;
  for (uint64_t nth = 1; !succeeded; nth++) {
    struct osseg_workspace *ws = NULL;
    struct osseg_pipeline *p = NULL;
    osseg__alloc_fail_at(nth);
    int rc = osseg_pipeline_create(&p, r, &cfg, NULL);
    if (rc == 0) rc = osseg_workspace_create(&ws, 0);
    if (rc == 0) rc = osseg_pipeline_run_image(p, ws, &img, NULL, NULL);
    osseg__alloc_fail_at(0);
    if (rc == 0) succeeded = 1;
    else assert_int_equal(rc, OSSEG_ENOMEM);
    osseg_workspace_free(ws);
    osseg_pipeline_free(p);
  }
  osseg_registry_free(r);
  osseg_image_free(&img);
}

/* Two models of different input sizes in one hard vote: the result is the
 * vote of what each model gives alone. */
static void test_models_of_different_sizes(void **state) {
  (void)state;
  struct osseg_registry *r = new_registry();
  load_fixture(r, "unetpp_r18_tiny_op13");
  struct osseg_model_spec big = {
      .name = "big", .path = test_path("%s/data/models/unetpp_demo.onnx", test_source_dir())};
  assert_int_equal(osseg_registry_load(r, &big, NULL, NULL), 0);
  struct osseg_image img = {0};
  make_image(&img, IMG_H, IMG_W, 7);
  const char *names[2] = {"unetpp_r18_tiny_op13", "big"};
  struct collected single[2] = {{.cancel_at = -1}, {.cancel_at = -1}};
  struct osseg_workspace *ws;
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);
  for (int i = 0; i < 2; i++) {
    struct osseg_pipeline_options o;
    osseg_pipeline_options_default(&o);
    o.models[0] = names[i];
    o.nmodels = 1;
    struct osseg_pipeline *p;
    assert_int_equal(osseg_pipeline_create(&p, r, &o, NULL), 0);
    assert_int_equal(run_collect(p, ws, &img, &single[i], NULL, NULL), 0);
    osseg_pipeline_free(p);
  }
  for (int t = 0; t < 2; t++) {
    /* T = 0: either model (union); T = 1: both (intersection) */
    struct osseg_pipeline_options o;
    osseg_pipeline_options_default(&o);
    o.models[0] = names[0];
    o.models[1] = names[1];
    o.nmodels = 2;
    o.vote_threshold = t;
    struct osseg_pipeline *p;
    assert_int_equal(osseg_pipeline_create(&p, r, &o, NULL), 0);
    struct collected got = {.cancel_at = -1};
    struct osseg_timings tm;
    memset(&tm, 0xff, sizeof tm); /* every field is written by the run */
    assert_int_equal(run_collect(p, ws, &img, &got, &tm, NULL), 0);
    /* Per-model engine times: the 256x256 demo model costs more than the
     * 64x64 tiny one, and the two add up to the total. */
    assert_true(tm.model_ms[0] > 0 && tm.model_ms[1] > tm.model_ms[0]);
    assert_true(fabs(tm.model_ms[0] + tm.model_ms[1] - tm.inference_ms) < 1e-9);
    for (size_t i = 2; i < OSSEG_MAX_MODELS; i++) assert_true(tm.model_ms[i] == 0);
    size_t differ = 0;
    for (size_t c = 0; c < 29; c++) {
      struct osseg_bitmask m[2], want;
      for (int i = 0; i < 2; i++) {
        assert_int_equal(osseg_bitmask_init(&m[i], IMG_H, IMG_W), 0);
        assert_int_equal(osseg_bitmask_paint_runs(&m[i], single[i].runs[c].v, single[i].runs[c].n), 0);
      }
      assert_int_equal(osseg_bitmask_init(&want, IMG_H, IMG_W), 0);
      for (size_t w = 0; w < want.nwords; w++)
        want.bits[w] = t == 0 ? m[0].bits[w] | m[1].bits[w] : m[0].bits[w] & m[1].bits[w];
      struct osseg_runs ref = {0};
      assert_int_equal(osseg_bitmask_to_runs(&want, &ref), 0);
      assert_runs_equal(&got.runs[c], &ref);
      differ += osseg_runs_area(single[0].runs[c].v, single[0].runs[c].n) !=
                osseg_runs_area(single[1].runs[c].v, single[1].runs[c].n);
      osseg_runs_free(&ref);
      osseg_bitmask_free(&want);
      for (int i = 0; i < 2; i++) osseg_bitmask_free(&m[i]);
    }
    assert_true(differ > 0); /* the two models do disagree somewhere */
    collected_free(&got);
    osseg_pipeline_free(p);
  }
  for (int i = 0; i < 2; i++) collected_free(&single[i]);
  osseg_workspace_free(ws);
  osseg_registry_free(r);
  osseg_image_free(&img);
}

/* Dice in the pipeline: against a ground truth that is another model's
 * prediction, per scored class equal to osseg_dice_runs of the two run
 * lists (what `osseg dice` computes per row), only for the classes that
 * have ground truth and are produced, and after the class results. */
struct dice_seen {
  struct collected c;
  struct osseg_dice_report report;
  int reports;
  size_t classes_before_report;
};

static int dice_class_cb(void *vctx, size_t cls, const char *name, const struct osseg_bitmask *mask,
                         const struct osseg_run *runs, size_t nruns) {
  struct dice_seen *s = vctx;
  assert_int_equal(s->reports, 0); /* Dice comes after every class */
  s->c.next_class = cls;
  return collect_cb(&s->c, cls, name, mask, runs, nruns);
}

static int dice_cb(void *vctx, const struct osseg_dice_report *r) {
  struct dice_seen *s = vctx;
  s->report = *r;
  s->reports++;
  s->classes_before_report = s->c.calls;
  return 0;
}

static void test_dice_and_class_subset(void **state) {
  (void)state;
  struct osseg_registry *r = new_registry();
  load_fixture(r, "unetpp_r18_tiny_op13");
  load_fixture(r, "unet_effb0_tiny_op13");
  struct osseg_image img = {0};
  make_image(&img, IMG_H, IMG_W, 8);
  struct osseg_workspace *ws;
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);

  /* Ground truth: the second model's masks. */
  struct osseg_pipeline_options o;
  osseg_pipeline_options_default(&o);
  o.models[0] = "unet_effb0_tiny_op13";
  o.nmodels = 1;
  struct osseg_pipeline *p;
  assert_int_equal(osseg_pipeline_create(&p, r, &o, NULL), 0);
  struct collected truth = {.cancel_at = -1};
  assert_int_equal(run_collect(p, ws, &img, &truth, NULL, NULL), 0);
  osseg_pipeline_free(p);
  struct osseg_ground_truth gt;
  memset(&gt, 0, sizeof gt);
  for (size_t c = 0; c < 29; c++)
    if (c != 3) { /* class 3 has no ground truth: not scored */
      gt.has[c] = 1;
      gt.runs[c] = truth.runs[c].v;
      gt.nruns[c] = truth.runs[c].n;
    }

  o.models[0] = "unetpp_r18_tiny_op13";
  const char *wanted[] = {"Ulna", "finger-4", "finger-2", "Radius", "Capitate"};
  for (size_t i = 0; i < 5; i++) o.classes[i] = wanted[i];
  o.nclasses = 5;
  assert_int_equal(osseg_pipeline_create(&p, r, &o, NULL), 0);
  assert_true(osseg_pipeline_class_selected(p, 28));
  assert_false(osseg_pipeline_class_selected(p, 0));
  struct dice_seen seen = {.c = {.cancel_at = -1}};
  struct osseg_run_request rq = {.on_class = dice_class_cb, .on_dice = dice_cb, .ctx = &seen, .gt = &gt};
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, &rq, NULL), 0);
  assert_int_equal(seen.c.calls, 5);
  assert_int_equal(seen.reports, 1);
  assert_int_equal(seen.classes_before_report, 5);
  /* Produced in class order: finger-2 (1), finger-4 (3), Capitate (21),
   * Radius (27), Ulna (28); finger-4 has no ground truth. */
  static const size_t scored[] = {1, 21, 27, 28};
  assert_int_equal(seen.report.n, 4);
  double sum = 0;
  int imperfect = 0;
  for (size_t i = 0; i < 4; i++) {
    size_t c = scored[i];
    assert_int_equal(seen.report.cls[i], c);
    double want = osseg_dice_runs(seen.c.runs[c].v, seen.c.runs[c].n, truth.runs[c].v,
                                  truth.runs[c].n);
    assert_true(seen.report.dice[i] == want);
    imperfect += want < 1.0;
    sum += want;
  }
  assert_true(imperfect > 0);
  assert_true(fabs(seen.report.mean - sum / 4) < 1e-15);

  /* Ground truth past the image's end is refused, not scored. */
  struct osseg_run past = {(uint32_t)(IMG_H * IMG_W) - 2, 5};
  gt.runs[27] = &past;
  gt.nruns[27] = 1;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, &rq, &d), OSSEG_ERANGE);
  assert_non_null(strstr(d.message, "Radius"));

  collected_free(&seen.c);
  collected_free(&truth);
  osseg_pipeline_free(p);
  osseg_workspace_free(ws);
  osseg_registry_free(r);
  osseg_image_free(&img);
}

/* A set cancel flag or a passed deadline ends the run with its code, and
 * the workspace gives the right answer on the next run. */
static void test_cancel_and_deadline(void **state) {
  (void)state;
  struct osseg_registry *r = new_registry();
  load_fixture(r, "unetpp_r18_tiny_op13");
  load_fixture(r, "unet_effb0_tiny_op13");
  struct osseg_pipeline_options o;
  osseg_pipeline_options_default(&o);
  o.models[0] = "unetpp_r18_tiny_op13";
  o.models[1] = "unet_effb0_tiny_op13";
  o.nmodels = 2;
  struct osseg_pipeline *p;
  assert_int_equal(osseg_pipeline_create(&p, r, &o, NULL), 0);
  struct osseg_image img = {0};
  make_image(&img, 90, 70, 9);
  struct osseg_workspace *ws;
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);
  struct collected ref = {.cancel_at = -1};
  assert_int_equal(run_collect(p, ws, &img, &ref, NULL, NULL), 0);

  _Atomic int cancel = 1;
  struct collected got = {.cancel_at = -1};
  struct osseg_run_request rq = {.on_class = collect_cb, .ctx = &got, .cancel = &cancel};
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, &rq, &d), OSSEG_ECANCELED);
  assert_int_equal(got.calls, 0);
  assert_non_null(strstr(d.message, "cancel"));
  atomic_store(&cancel, 0);
  rq.deadline_ns = osseg_now_ns() - 1;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, &rq, &d), OSSEG_ETIMEDOUT);
  assert_int_equal(got.calls, 0);
  /* A deadline far away does not fire. */
  rq.deadline_ns = osseg_now_ns() + 60ull * 1000000000ull;
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, &rq, NULL), 0);
  assert_int_equal(got.calls, 29);
  for (size_t c = 0; c < 29; c++) assert_runs_equal(&got.runs[c], &ref.runs[c]);
  collected_free(&got);
  collected_free(&ref);
  osseg_workspace_free(ws);
  osseg_pipeline_free(p);
  osseg_registry_free(r);
  osseg_image_free(&img);
}

/* Several threads, each with its own workspace, run images through shared
 * models (one pipeline shared, and pipelines of their own) at once: every
 * result equals the one-thread result. */
#define NTHREADS 3
#define NIMAGES 4
struct thread_job {
  struct osseg_registry *r;
  const struct osseg_pipeline *shared;
  const struct osseg_image *imgs;
  struct collected out[NIMAGES];
  int rc;
};

static void *thread_run(void *arg) {
  struct thread_job *j = arg;
  struct osseg_workspace *ws;
  if ((j->rc = osseg_workspace_create(&ws, 0)) != 0) return NULL;
  struct osseg_pipeline_options o;
  osseg_pipeline_options_default(&o);
  o.models[0] = "unetpp_r18_tiny_op13";
  o.models[1] = "segformer_tiny_op13";
  o.nmodels = 2;
  o.vote = OSSEG_VOTE_SOFT;
  for (int i = 0; i < NIMAGES && j->rc == 0; i++) {
    /* odd images through a pipeline made by this thread */
    struct osseg_pipeline *own = NULL;
    if (i % 2 && (j->rc = osseg_pipeline_create(&own, j->r, &o, NULL)) != 0) break;
    j->out[i].cancel_at = -1;
    struct osseg_run_request rq = {.on_class = collect_cb, .ctx = &j->out[i]};
    j->rc = osseg_pipeline_run_image(own ? own : j->shared, ws, &j->imgs[i], &rq, NULL);
    osseg_pipeline_free(own);
  }
  osseg_workspace_free(ws);
  return NULL;
}

static void test_threads_share_models(void **state) {
  (void)state;
  struct osseg_registry *r = new_registry();
  load_fixture(r, "unetpp_r18_tiny_op13");
  load_fixture(r, "segformer_tiny_op13");
  struct osseg_pipeline_options o;
  osseg_pipeline_options_default(&o);
  o.models[0] = "unetpp_r18_tiny_op13";
  o.models[1] = "segformer_tiny_op13";
  o.nmodels = 2;
  o.vote = OSSEG_VOTE_SOFT;
  struct osseg_pipeline *shared;
  assert_int_equal(osseg_pipeline_create(&shared, r, &o, NULL), 0);
  struct osseg_image imgs[NIMAGES] = {{0}};
  for (int i = 0; i < NIMAGES; i++) make_image(&imgs[i], 100 + 13 * (uint32_t)i, 120, 20 + (uint64_t)i);

  struct thread_job ref = {r, shared, imgs, {{0}}, 0};
  thread_run(&ref);
  assert_int_equal(ref.rc, 0);
  struct thread_job jobs[NTHREADS];
  pthread_t th[NTHREADS];
  for (int t = 0; t < NTHREADS; t++) {
    jobs[t] = (struct thread_job){r, shared, imgs, {{0}}, 0};
    assert_int_equal(pthread_create(&th[t], NULL, thread_run, &jobs[t]), 0);
  }
  for (int t = 0; t < NTHREADS; t++) {
    pthread_join(th[t], NULL);
    assert_int_equal(jobs[t].rc, 0);
    for (int i = 0; i < NIMAGES; i++) {
      assert_int_equal(jobs[t].out[i].calls, 29);
      for (size_t c = 0; c < 29; c++) assert_runs_equal(&jobs[t].out[i].runs[c], &ref.out[i].runs[c]);
      collected_free(&jobs[t].out[i]);
    }
  }
  for (int i = 0; i < NIMAGES; i++) {
    collected_free(&ref.out[i]);
    osseg_image_free(&imgs[i]);
  }
  osseg_pipeline_free(shared);
  osseg_registry_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_single_model_matches_reference),
      cmocka_unit_test(test_hard_and_soft_voting),
      cmocka_unit_test(test_parallel_postprocess),
      cmocka_unit_test(test_model_thresholds),
      cmocka_unit_test(test_callback_cancel_and_bad_png),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_metadata_parsers),
      cmocka_unit_test(test_allocation_failure_sweep),
      cmocka_unit_test(test_models_of_different_sizes),
      cmocka_unit_test(test_dice_and_class_subset),
      cmocka_unit_test(test_cancel_and_deadline),
      cmocka_unit_test(test_threads_share_models),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
