/* SegFormer / transformer ops of the engine: per-op parity against PyTorch
 * and NumPy references (tests/data/engine/transformer, from
 * tools/fixtures/make_transformer_op_tests.py), whole-model parity on the
 * tiny SegFormer fixtures (opset 13 decomposed LayerNorm, opset 17 native),
 * that the fusions happen (both opsets compile to the same steps), clear
 * load errors, truncated/corrupted SegFormer files, an allocation-failure
 * sweep through the transformer passes, and full-size mit-b0 parity when
 * bench/models holds the (gitignored) exports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine_test_util.h"
#include "osseg_base.h"
#include "osseg_engine.h"
#include "test_support.h"

static const char *tr_dir(void) {
  return test_path("%s/tests/data/engine/transformer", test_source_dir());
}

static void test_transformer_op_parity(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", tr_dir());
  int count = engine_dir_parity(dir);
  assert_true(count >= 29);
}

static void model_parity(const char *dir, const char *name, double bf16_mask) {
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
  struct parity p;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  int err = engine_parity(dir, name, &o, &p, &diag);
  if (err) print_error("%s: %s\n", name, diag.message);
  assert_int_equal(err, 0);
  print_message("%-26s fp32 rel %.2e mask %.6f\n", name, p.rel_err, p.mask_agree);
  assert_true(p.rel_err <= 1e-4);
  assert_true(p.mask_agree >= 0.9999);
  o.precision = OSSEG_PRECISION_BF16;
  err = engine_parity(dir, name, &o, &p, &diag);
  assert_int_equal(err, 0);
  print_message("%-26s bf16 rel %.2e mask %.6f\n", name, p.rel_err, p.mask_agree);
  assert_true(p.mask_agree >= bf16_mask);
}

static void test_segformer_fixtures(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", test_path("%s/tests/data/models", test_source_dir()));
  model_parity(dir, "segformer_tiny_op13", 0.99);
  model_parity(dir, "segformer_tiny_op17", 0.99);
}

/* The decomposed (opset 13) and native (opset 17) exports fuse to the same
 * executable steps: one per LayerNorm, one per attention, no Softmax. */
static void test_segformer_fusions(void **state) {
  (void)state;
  struct osseg_model_stats st13, st17;
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  const char *dir = test_path("%s/tests/data/models", test_source_dir());
  char p13[4096], p17[4096];
  snprintf(p13, sizeof p13, "%s/segformer_tiny_op13.onnx", dir);
  snprintf(p17, sizeof p17, "%s/segformer_tiny_op17.onnx", dir);
  assert_int_equal(osseg_model_load(&m, p13, &o, &diag), 0);
  osseg_model_get_stats(m, &st13);
  osseg_model_free(m);
  assert_int_equal(osseg_model_load(&m, p17, &o, &diag), 0);
  osseg_model_get_stats(m, &st17);
  osseg_model_free(m);
  print_message("steps: opset 13 %d (of %d nodes), opset 17 %d (of %d nodes)\n", st13.steps,
                st13.nodes_onnx, st17.steps, st17.nodes_onnx);
  assert_int_equal(st13.steps, st17.steps);
  /* 30 LayerNorms + 8 attentions + 60 MatMul-derived ... well below the
   * ~300 compute nodes left after constant folding */
  assert_true(st13.steps <= 130);
  assert_true(st13.params == st17.params);
}

static void test_bad_graphs(void **state) {
  (void)state;
  expect_load_error(tr_dir(), "bad_pow_runtime_exponent.onnx", OSSEG_EUNSUPPORTED, "constant scalar exponent");
  expect_load_error(tr_dir(), "bad_matmul_inner.onnx", OSSEG_ESHAPE, "(MatMul, opset 13): inner dims differ");
  expect_load_error(tr_dir(), "bad_softmax_axis.onnx", OSSEG_ESHAPE, "axis 4 out of range");
  expect_load_error(tr_dir(), "bad_gelu_approximate.onnx", OSSEG_EUNSUPPORTED, "opset 20");
  expect_load_error(tr_dir(), "bad_layernorm_stash.onnx", OSSEG_EUNSUPPORTED, "stash_type");
  expect_load_error(tr_dir(), "bad_lone_erf.onnx", OSSEG_EUNSUPPORTED, "op Erf (opset 13) has no kernel");
  expect_load_error(tr_dir(), "bad_slice_negative_step.onnx", OSSEG_EUNSUPPORTED, "negative steps");
}

/* Truncation and byte corruption of a SegFormer export: an error with a
 * message or a model that runs, never a crash (the ASan build checks). */
static void test_truncated_and_corrupted(void **state) {
  (void)state;
  size_t size;
  char *buf = test_read_file(test_path("%s/tests/data/models/segformer_tiny_op17.onnx",
                                       test_source_dir()), &size);
  assert_non_null(buf);
  engine_check_damaged(buf, size, 61, 60, 7);
  free(buf);
}

/* Fail the Nth allocation of a load through every transformer pass. */
static void test_alloc_failure_sweep(void **state) {
  (void)state;
  size_t size;
  char *buf = test_read_file(test_path("%s/attention_sr2.onnx", tr_dir()), &size);
  assert_non_null(buf);
  assert_true(engine_alloc_sweep(buf, size, 20000) > 50);
  free(buf);
}

/* Full-size smp SegFormer mit-b0 exports (tools/fixtures/make_bench_models.py;
 * gitignored). When none is there the test is reported as skipped (cmocka's
 * skip()), not as passed; the ones present are checked. */
static void test_full_size(void **state) {
  (void)state;
  static const char *names[] = {"segformer_b0_512", "segformer_b0_512_op17"};
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", test_path("%s/bench/models", test_source_dir()));
  size_t checked = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/%s.output.npy", dir, names[i]);
    FILE *f = fopen(probe, "rb");
    if (!f) {
      print_message("%s: absent (%s)\n", names[i], probe);
      continue;
    }
    fclose(f);
    model_parity(dir, names[i], 0.99);
    checked++;
  }
  if (checked == 0) skip();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transformer_op_parity),
      cmocka_unit_test(test_segformer_fixtures),
      cmocka_unit_test(test_segformer_fusions),
      cmocka_unit_test(test_bad_graphs),
      cmocka_unit_test(test_truncated_and_corrupted),
      cmocka_unit_test(test_alloc_failure_sweep),
      cmocka_unit_test(test_full_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
