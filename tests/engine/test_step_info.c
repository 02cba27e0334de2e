/* osseg_model_step_count / osseg_model_step_info (engine/step_info.c): the
 * compiled steps' data types, implementations and slow flags, on the QDQ
 * fixture at int8 and fp32, a fixture with own loops (Winograd) and one
 * whose reductions oneDNN runs on reference code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "engine_test_util.h"
#include "osseg_base.h"
#include "osseg_engine.h"
#include "test_support.h"

static struct osseg_model *load(const char *name, enum osseg_precision p) {
  struct osseg_engine_options o = engine_test_opts(p);
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  int err = osseg_model_load(&m, test_path("%s/tests/data/engine/%s.onnx", test_source_dir(), name),
                             &o, &diag);
  if (err) print_error("%s: %s\n", name, diag.message);
  assert_int_equal(err, 0);
  return m;
}

static int is_8bit(const char *t) { return t && (!strcmp(t, "u8") || !strcmp(t, "s8")); }

/* What holds for every step of every model: a count equal to the stats',
 * non-empty strings, the slow flags adding up to stats.slow_steps, and
 * indexes out of range refused. Returns the number of slow steps. */
static int check_common(const struct osseg_model *m) {
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  assert_int_equal(osseg_model_step_count(m), st.steps);
  assert_true(st.steps > 0);
  int slow = 0;
  for (int i = 0; i < st.steps; i++) {
    struct osseg_step_info s;
    assert_int_equal(osseg_model_step_info(m, i, &s), 0);
    assert_non_null(s.node);
    assert_non_null(s.op);
    assert_true(s.op[0] != '\0');
    assert_non_null(s.kind);
    assert_non_null(s.impl);
    assert_true(s.impl[0] != '\0');
    assert_non_null(s.precision);
    assert_true(!strcmp(s.precision, "int8") || !strcmp(s.precision, "bf16") ||
                !strcmp(s.precision, "fp32"));
    if (!strcmp(s.kind, "own")) assert_true(!strncmp(s.impl, "own: ", 5));
    /* the steps the engine adds itself are the input and output reorders */
    if (!s.node[0]) assert_string_equal(s.op, "reorder");
    if (s.slow) assert_true(strstr(s.impl, "ref") || strstr(s.impl, "gemm"));
    slow += s.slow;
  }
  assert_int_equal(slow, st.slow_steps);
  struct osseg_step_info s;
  assert_int_equal(osseg_model_step_info(m, -1, &s), OSSEG_EINVAL);
  assert_int_equal(osseg_model_step_info(m, st.steps, &s), OSSEG_EINVAL);
  assert_int_equal(osseg_model_step_info(m, 0, NULL), OSSEG_EINVAL);
  assert_int_equal(osseg_model_step_info(NULL, 0, &s), OSSEG_EINVAL);
  return slow;
}

/* The QDQ fixture: at int8 its three convs read u8 (or s8) with s8
 * weights; at fp32 the same convs read and write f32. */
static void test_step_info_qdq(void **state) {
  (void)state;
  struct osseg_model *m = load("qdq_conv_u8", OSSEG_PRECISION_INT8);
  check_common(m);
  int convs = 0, int8 = 0;
  for (int i = 0; i < osseg_model_step_count(m); i++) {
    struct osseg_step_info s;
    assert_int_equal(osseg_model_step_info(m, i, &s), 0);
    int8 += !strcmp(s.precision, "int8");
    if (!s.conv) continue;
    convs++;
    assert_string_equal(s.kind, "convolution");
    assert_string_equal(s.op, "Conv");
    assert_true(is_8bit(s.src_type));
    assert_non_null(s.weights_type);
    assert_string_equal(s.weights_type, "s8");
    assert_non_null(s.dst_type);
    assert_string_equal(s.precision, "int8");
  }
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  assert_int_equal(convs, st.int8_convs);
  assert_int_equal(convs, 3);
  assert_true(int8 > convs); /* and the reorder quantizing the input */
  osseg_model_free(m);

  m = load("qdq_conv_u8", OSSEG_PRECISION_FP32);
  check_common(m);
  convs = 0;
  for (int i = 0; i < osseg_model_step_count(m); i++) {
    struct osseg_step_info s;
    assert_int_equal(osseg_model_step_info(m, i, &s), 0);
    assert_string_equal(s.precision, "fp32");
    assert_false(is_8bit(s.src_type) || is_8bit(s.dst_type));
    if (!s.conv) continue;
    convs++;
    assert_string_equal(s.src_type, "f32");
    assert_string_equal(s.weights_type, "f32");
    assert_string_equal(s.dst_type, "f32");
  }
  assert_int_equal(convs, 3);
  osseg_model_free(m);
}

/* Own loops name themselves: the Winograd conv of wg_plain. */
static void test_step_info_own(void **state) {
  (void)state;
  struct osseg_model *m = load("wg_plain", OSSEG_PRECISION_FP32);
  check_common(m);
  int wg = 0;
  for (int i = 0; i < osseg_model_step_count(m); i++) {
    struct osseg_step_info s;
    assert_int_equal(osseg_model_step_info(m, i, &s), 0);
    if (strcmp(s.impl, "own: winograd")) continue;
    wg++;
    assert_string_equal(s.kind, "own");
    assert_true(s.conv);
    assert_false(s.slow);
    assert_string_equal(s.src_type, "f32");
    assert_string_equal(s.dst_type, "f32");
    assert_null(s.weights_type);
  }
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  assert_int_equal(wg, st.winograd_convs);
  assert_int_equal(wg, 1);
  osseg_model_free(m);
}

/* Slow flags match stats.slow_steps where oneDNN has only reference code
 * (the reductions of reduce_sum_max, on the CPUs seen so far). */
static void test_step_info_slow(void **state) {
  (void)state;
  struct osseg_model *m = load("reduce_sum_max", OSSEG_PRECISION_FP32);
  int slow = check_common(m);
  print_message("reduce_sum_max: %d slow steps\n", slow);
  osseg_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_step_info_qdq),
      cmocka_unit_test(test_step_info_own),
      cmocka_unit_test(test_step_info_slow),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
