/* `osseg quantize` on the bundled UNet++ demo model with two of the sample
 * radiographs: the written QDQ model keeps the model's metadata and runs in
 * int8 through the whole pipeline; --json, --fp32-layers, the summary; and
 * the refusals with their messages and exit statuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "osseg_engine.h"
#include "test_support.h"

static char model[4096], img1[4096], img2[4096], dir[2048];

static int setup(void **state) {
  (void)state;
  snprintf(model, sizeof model, "%s/data/models/unetpp_demo.onnx", test_source_dir());
  snprintf(img1, sizeof img1, "%s/data/samples/images/phantom_1000100.png", test_source_dir());
  snprintf(img2, sizeof img2, "%s/data/samples/images/phantom_1000101.png", test_source_dir());
  snprintf(dir, sizeof dir, "%s", test_tmpdir());
  return access(model, R_OK) || access(img1, R_OK) || access(img2, R_OK) ? -1 : 0;
}

static void test_quantize_demo(void **state) {
  (void)state;
  char out[4096], csv[4096];
  snprintf(out, sizeof out, "%s/demo_int8.onnx", dir);
  snprintf(csv, sizeof csv, "%s/pred.csv", dir);
  char *o = NULL, *e = NULL;
  int rc = test_osseg_run(&o, &e, "quantize", "--model", model, "--calib", img1, img2, "-o", out, NULL);
  if (rc) fail_msg("exit %d: %s", rc, e);
  /* the summary: counts, the method, the agreement */
  assert_non_null(strstr(o, "of 39 convs int8 -> "));
  assert_non_null(strstr(o, "minmax on 2 images"));
  assert_non_null(strstr(o, "mean Dice 0.99"));
  assert_string_equal(e, ""); /* no progress off a terminal */
  free(o), free(e);
  /* the metadata stays; the int8 model runs */
  struct osseg_model *a = NULL, *b = NULL;
  struct osseg_diag d = {0};
  struct osseg_engine_options eo;
  osseg_engine_options_default(&eo);
  eo.threads = 2;
  assert_int_equal(osseg_model_load(&a, model, &eo, &d), 0);
  eo.precision = OSSEG_PRECISION_INT8;
  if (osseg_model_load(&b, out, &eo, &d)) fail_msg("%s", d.message);
  const char *keys[] = {"osseg.classes", "osseg.input_size", "osseg.normalize"};
  for (size_t i = 0; i < 3; i++) {
    assert_non_null(osseg_model_metadata(a, keys[i]));
    assert_string_equal(osseg_model_metadata(a, keys[i]), osseg_model_metadata(b, keys[i]));
  }
  assert_non_null(osseg_model_metadata(b, "osseg.quantized"));
  struct osseg_model_stats st;
  osseg_model_get_stats(b, &st);
  assert_int_equal(st.int8_convs, 39);
  osseg_model_free(a);
  osseg_model_free(b);
  rc = test_osseg_run(&o, &e, "predict", "--model", out, "--precision", "int8", "-o", csv, img1, NULL);
  if (rc) fail_msg("predict exit %d: %s", rc, e);
  free(o), free(e);

  /* --json, one conv named to stay fp32, another method */
  const char *keep = "/head/Conv";
  rc = test_osseg_run(&o, &e, "quantize", "--model", model, "--calib", img1, "--fp32-layers", keep,
                      "--method", "percentile", "--json", "-o", out, NULL);
  if (rc) fail_msg("exit %d: %s", rc, e);
  assert_non_null(strstr(o, "\"method\": \"percentile\""));
  assert_non_null(strstr(o, "\"convs\": 39, \"quantized\": 38"));
  assert_non_null(strstr(o, "{\"name\": \"/head/Conv\""));
  assert_non_null(strstr(o, "\"int8\": false, \"why\": \"named to stay fp32\""));
  assert_non_null(strstr(o, "\"placement\": \"convs\""));
  assert_non_null(strstr(o, "\"other_points\": 0,"));
  free(o), free(e);

  /* ONNX Runtime's placement: the residual adds, concats, pool and nearest
   * resizes quantized too (not the logits' bilinear upsampling); osseg runs
   * every step in 8 bits but the input and output reorders and that
   * upsampling */
  rc = test_osseg_run(&o, &e, "quantize", "--model", model, "--calib", img1, img2, "--placement",
                      "ort", "-o", out, NULL);
  if (rc) fail_msg("exit %d: %s", rc, e);
  assert_non_null(strstr(o, "placement     ort: 30 more tensors quantized"));
  assert_non_null(strstr(o, "mean Dice 0.99"));
  free(o), free(e);
  eo.precision = OSSEG_PRECISION_INT8;
  if (osseg_model_load(&b, out, &eo, &d)) fail_msg("%s", d.message);
  osseg_model_get_stats(b, &st);
  assert_int_equal(st.int8_convs, 39);
  int float_steps = 0;
  for (int i = 0; i < osseg_model_step_count(b); i++) {
    struct osseg_step_info si;
    assert_int_equal(osseg_model_step_info(b, i, &si), 0);
    float_steps += strcmp(si.precision, "int8") != 0;
  }
  assert_int_equal(float_steps, 3);
  assert_non_null(strstr(osseg_model_metadata(b, "osseg.quantized"), "ort placement"));
  osseg_model_free(b);
}

static void test_refusals(void **state) {
  (void)state;
  char out[4096], bad[4096], msg[8192];
  snprintf(out, sizeof out, "%s/x.onnx", dir);
  test_osseg_expect_fail(2, "osseg quantize: --model, --calib and -o are required (see --help)\n",
                         "quantize", "--model", model, "-o", out, NULL);
  test_osseg_expect_fail(2, "osseg quantize: --method must be minmax, percentile, mse or entropy\n",
                         "quantize", "--model", model, "--calib", img1, "--method", "median", "-o",
                         out, NULL);
  test_osseg_expect_fail(2, "osseg quantize: --placement must be convs or ort\n", "quantize",
                         "--model", model, "--calib", img1, "--placement", "qdq", "-o", out, NULL);
  test_osseg_expect_fail(2, "osseg quantize: --target-agreement must be a percentage in (0, 100]\n",
                         "quantize", "--model", model, "--calib", img1, "--target-agreement", "101",
                         "-o", out, NULL);
  snprintf(msg, sizeof msg,
           "osseg quantize: %s: -o names the model being quantized; write to another file\n", model);
  test_osseg_expect_fail(2, msg, "quantize", "--model", model, "--calib", img1, "-o", model, NULL);
  /* an unknown conv name; a file that is not a PNG (named) */
  snprintf(msg, sizeof msg,
           "osseg quantize: %s: fp32 layer 'nope': the model has no Conv of that name\n", model);
  test_osseg_expect_fail(1, msg, "quantize", "--model", model, "--calib", img1, "--fp32-layers",
                         "nope", "-o", out, NULL);
  snprintf(bad, sizeof bad, "%s/bad.png", dir);
  assert_int_equal(test_write_file(bad, "not a png", 9), 0);
  char *o = NULL, *e = NULL;
  int rc = test_osseg_run(&o, &e, "quantize", "--model", model, "--calib", bad, "-o", out, NULL);
  assert_int_equal(rc, 1);
  assert_non_null(strstr(e, bad));
  assert_string_equal(o, "");
  free(o), free(e);
  assert_int_not_equal(access(out, F_OK), 0); /* nothing written */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quantize_demo),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
