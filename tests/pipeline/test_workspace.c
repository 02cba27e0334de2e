/* Tests for pipeline/workspace.c: one workspace serves pipelines of any
 * model size (it used to overflow when a 64² pipeline's workspace ran a
 * 256² model), its memory cap is a clean error, and after the first image
 * of a size a run allocates nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_pipeline.h"
#include "test_support.h"

static struct osseg_registry *reg;

static int setup(void **state) {
  (void)state;
  if (osseg_registry_create(&reg, NULL) != 0) return -1;
  static const char *const tiny[] = {"unetpp_r18_tiny_op13", "unet_effb0_tiny_op13"};
  for (size_t i = 0; i < 2; i++) {
    struct osseg_model_spec spec = {
        .name = tiny[i],
        .path = test_path("%s/tests/data/models/%s.onnx", test_source_dir(), tiny[i])};
    if (osseg_registry_load(reg, &spec, NULL, NULL) != 0) return -1;
  }
  /* The demo UNet++ takes 256² inputs: four times the side of the tiny ones. */
  struct osseg_model_spec big = {
      .name = "big", .path = test_path("%s/data/models/unetpp_demo.onnx", test_source_dir())};
  return osseg_registry_load(reg, &big, NULL, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  osseg_registry_free(reg);
  return 0;
}

static struct osseg_pipeline *pipeline(const char *a, const char *b, enum osseg_vote vote) {
  struct osseg_pipeline_options o;
  osseg_pipeline_options_default(&o);
  o.models[o.nmodels++] = a;
  if (b) o.models[o.nmodels++] = b;
  o.vote = vote;
  struct osseg_pipeline *p;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  if (osseg_pipeline_create(&p, reg, &o, &d) != 0) fail_msg("%s", d.message);
  return p;
}

static void make_image(struct osseg_image *img, uint32_t h, uint32_t w) {
  assert_int_equal(osseg_image_init(img, w, h, 1, 8), 0);
  for (uint32_t y = 0; y < h; y++)
    for (uint32_t x = 0; x < w; x++)
      img->data[(size_t)y * img->stride + x] = (uint8_t)((x * 7 + y * 3 + (x * y) % 11) & 255);
}

/* All classes' runs of one run, concatenated with class separators. */
struct digest {
  struct osseg_runs all;
};

static int digest_cb(void *ctx, size_t cls, const char *name, const struct osseg_bitmask *mask,
                     const struct osseg_run *runs, size_t nruns) {
  struct digest *g = ctx;
  int rc = osseg_runs_push(&g->all, UINT32_MAX, (uint32_t)cls);
  for (size_t i = 0; i < nruns && rc == 0; i++) rc = osseg_runs_push(&g->all, runs[i].start, runs[i].len);
  return rc;
}

static int run(const struct osseg_pipeline *p, struct osseg_workspace *ws,
               const struct osseg_image *img, struct digest *g, struct osseg_diag *d) {
  struct osseg_run_request rq = {.on_class = g ? digest_cb : NULL, .ctx = g};
  if (g) g->all.n = 0;
  return osseg_pipeline_run_image(p, ws, img, &rq, d);
}

static void assert_same(const struct digest *a, const struct digest *b) {
  assert_int_equal(a->all.n, b->all.n);
  assert_memory_equal(a->all.v, b->all.v, a->all.n * sizeof *a->all.v);
}

/* A workspace that ran a 64² model serves a 256² one: the same masks as a
 * fresh workspace (this overflowed the model input buffer before). */
static void test_serves_larger_models(void **state) {
  (void)state;
  struct osseg_image img = {0};
  make_image(&img, 300, 280);
  struct osseg_pipeline *small = pipeline("unetpp_r18_tiny_op13", NULL, OSSEG_VOTE_HARD);
  struct osseg_pipeline *big = pipeline("big", NULL, OSSEG_VOTE_HARD);
  struct osseg_pipeline *mixed = pipeline("unetpp_r18_tiny_op13", "big", OSSEG_VOTE_HARD);
  struct osseg_workspace *used, *fresh;
  assert_int_equal(osseg_workspace_create(&used, 0), 0);
  struct digest a = {0}, b = {0};
  assert_int_equal(run(small, used, &img, &a, NULL), 0);
  uint64_t small_bytes = osseg_workspace_bytes(used);
  assert_int_equal(run(big, used, &img, &a, NULL), 0);
  assert_true(osseg_workspace_bytes(used) > small_bytes);
  assert_int_equal(osseg_workspace_create(&fresh, 0), 0);
  assert_int_equal(run(big, fresh, &img, &b, NULL), 0);
  assert_same(&a, &b);
  /* Back to the small model and on to two models of different input sizes. */
  assert_int_equal(run(small, used, &img, &a, NULL), 0);
  assert_int_equal(run(small, fresh, &img, &b, NULL), 0);
  assert_same(&a, &b);
  assert_int_equal(run(mixed, used, &img, &a, NULL), 0);
  osseg_workspace_free(fresh);
  assert_int_equal(osseg_workspace_create(&fresh, 0), 0);
  assert_int_equal(run(mixed, fresh, &img, &b, NULL), 0);
  assert_same(&a, &b);
  osseg_runs_free(&a.all);
  osseg_runs_free(&b.all);
  osseg_workspace_free(used);
  osseg_workspace_free(fresh);
  osseg_pipeline_free(small);
  osseg_pipeline_free(big);
  osseg_pipeline_free(mixed);
  osseg_image_free(&img);
}

/* Past its cap a workspace refuses with OSSEG_ELIMIT and stays usable. */
static void test_memory_cap(void **state) {
  (void)state;
  struct osseg_image img = {0};
  make_image(&img, 120, 100);
  struct osseg_pipeline *small = pipeline("unetpp_r18_tiny_op13", NULL, OSSEG_VOTE_HARD);
  struct osseg_pipeline *big = pipeline("big", NULL, OSSEG_VOTE_HARD);
  struct osseg_workspace *probe, *ws;
  assert_int_equal(osseg_workspace_create(&probe, 0), 0);
  struct digest ref = {0}, got = {0};
  assert_int_equal(run(small, probe, &img, &ref, NULL), 0);
  uint64_t need = osseg_workspace_bytes(probe);
  assert_true(need > 0);
  assert_int_equal(osseg_workspace_create(&ws, need), 0);
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(run(big, ws, &img, &got, &d), OSSEG_ELIMIT);
  assert_non_null(strstr(d.message, "above its limit"));
  assert_true(osseg_workspace_bytes(ws) <= need);
  assert_int_equal(run(small, ws, &img, &got, NULL), 0);
  assert_same(&ref, &got);
  osseg_workspace_free(ws);
  assert_int_equal(osseg_workspace_create(&ws, need - 1), 0);
  assert_int_equal(run(small, ws, &img, &got, NULL), OSSEG_ELIMIT);
  osseg_runs_free(&ref.all);
  osseg_runs_free(&got.all);
  osseg_workspace_free(ws);
  osseg_workspace_free(probe);
  osseg_pipeline_free(small);
  osseg_pipeline_free(big);
  osseg_image_free(&img);
}

/* After one image of a size, another image of that size allocates nothing
 * (counted by the allocation hook every library allocates through), for one
 * model, hard voting of models of different sizes, and soft voting. */
static void test_no_allocation_after_warm_up(void **state) {
  (void)state;
  struct osseg_image img = {0}, img2 = {0}, smaller = {0};
  make_image(&img, 257, 300);
  make_image(&img2, 257, 300);
  for (size_t i = 0; i < img2.stride * img2.height; i++) img2.data[i] ^= 0x5a;
  make_image(&smaller, 200, 111);
  struct osseg_pipeline *ps[3] = {
      pipeline("unetpp_r18_tiny_op13", NULL, OSSEG_VOTE_HARD),
      pipeline("unetpp_r18_tiny_op13", "big", OSSEG_VOTE_HARD),
      pipeline("unetpp_r18_tiny_op13", "unet_effb0_tiny_op13", OSSEG_VOTE_SOFT)};
  for (int k = 0; k < 3; k++) {
    struct osseg_workspace *ws;
    assert_int_equal(osseg_workspace_create(&ws, 0), 0);
    assert_int_equal(run(ps[k], ws, &img, NULL, NULL), 0);
    osseg__alloc_fail_at(0);
    assert_int_equal(run(ps[k], ws, &img2, NULL, NULL), 0);
    assert_int_equal(osseg__alloc_fail_at(0), 0);
    /* A smaller image reuses the buffers; only the upsampling tables of
     * the new geometry are built (table + scratch per plan). */
    assert_int_equal(run(ps[k], ws, &smaller, NULL, NULL), 0);
    uint64_t n = osseg__alloc_fail_at(0);
    assert_true(n <= 2 * osseg_pipeline_model_count(ps[k]));
    assert_int_equal(run(ps[k], ws, &smaller, NULL, NULL), 0);
    assert_int_equal(osseg__alloc_fail_at(0), 0);
    /* From PNG bytes: the workspace's decoder keeps its buffers too. */
    uint8_t *png;
    size_t png_size;
    assert_int_equal(osseg_png_encode_mem(&img2, 6, &png, &png_size, NULL), 0);
    assert_int_equal(osseg_pipeline_run_png(ps[k], ws, png, png_size, NULL, NULL), 0);
    osseg__alloc_fail_at(0);
    assert_int_equal(osseg_pipeline_run_png(ps[k], ws, png, png_size, NULL, NULL), 0);
    assert_int_equal(osseg__alloc_fail_at(0), 0);
    osseg__free(png);
    osseg_workspace_free(ws);
  }
  for (int k = 0; k < 3; k++) osseg_pipeline_free(ps[k]);
  osseg_image_free(&img);
  osseg_image_free(&img2);
  osseg_image_free(&smaller);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_serves_larger_models),
      cmocka_unit_test(test_memory_cap),
      cmocka_unit_test(test_no_allocation_after_warm_up),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
