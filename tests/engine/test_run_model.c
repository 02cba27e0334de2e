/* Tests of `osseg run-model` and `osseg model-info` (the engine's command
 * line front ends): output file, JSON fields, clear errors with exit 1/2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "npy.h"
#include "osseg_engine.h"
#include "test_support.h"

static const char *osseg_bin(void) { return test_path("%s/bin/osseg", test_binary_dir()); }
static const char *data(const char *f) { return test_path("%s/tests/data/engine/%s", test_source_dir(), f); }

static int run(const char *const *argv, char **out, char **err) {
  return test_run(argv, out, err, 120);
}

static void test_run_model_json_and_output(void **state) {
  (void)state;
  char bin[4096], model[4096], in[4096], outp[4096];
  snprintf(bin, sizeof bin, "%s", osseg_bin());
  snprintf(model, sizeof model, "%s", data("residual.onnx"));
  snprintf(in, sizeof in, "%s", data("residual.input.npy"));
  snprintf(outp, sizeof outp, "%s/out.npy", test_tmpdir());
  const char *argv[] = {bin, "run-model", model, "--input", in, "--output", outp,
                        "--threads", "2", "--repeat", "3", "--json", NULL};
  char *out = NULL, *err = NULL;
  int rc = run(argv, &out, &err);
  if (rc) print_error("%s\n", err);
  assert_int_equal(rc, 0);
  static const char *keys[] = {"\"load_ms\"", "\"median_ms\"", "\"min_ms\"", "\"peak_rss_mb\"",
                               "\"precision\": \"fp32\"", "\"threads\": 2"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) assert_non_null(strstr(out, keys[i]));
  struct npy_array a, ref;
  assert_int_equal(npy_read(outp, 1 << 20, &a, NULL), 0);
  assert_int_equal(npy_read(data("residual.output.npy"), 1 << 20, &ref, NULL), 0);
  assert_int_equal(a.count, ref.count);
  assert_int_equal(a.rank, 4);
  for (size_t i = 0; i < a.count; i++) assert_true(a.data[i] - ref.data[i] < 1e-4 && ref.data[i] - a.data[i] < 1e-4);
  npy_free(&a);
  npy_free(&ref);
  free(out);
  free(err);
  /* bf16 and a seeded random input (no --input) */
  const char *argv2[] = {bin, "run-model", model, "--precision", "bf16", "--json", NULL};
  rc = run(argv2, &out, &err);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "\"precision\": \"bf16\""));
  /* the note about emulated bf16 appears exactly when bf16 is not native */
  assert_int_equal(strstr(err, "bf16 runs slower than fp32") != NULL, !osseg_engine_bf16_native(NULL));
  free(out);
  free(err);
  /* --verbose names every bf16 conv that does not run on native bf16 */
  const char *argv4[] = {bin, "run-model", model, "--precision", "bf16", "--verbose", NULL};
  rc = run(argv4, &out, &err);
  assert_int_equal(rc, 0);
  assert_int_equal(strstr(err, "warning: node") != NULL, !osseg_engine_bf16_native(NULL));
  free(out);
  free(err);
  const char *argv3[] = {bin, "run-model", model, "--precision", "bf16-mixed", "--json", NULL};
  rc = run(argv3, &out, &err);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "\"precision\": \"bf16-mixed\""));
  free(out);
  free(err);
}

static void expect_fail(const char *const *argv, int code, const char *needle) {
  char *out = NULL, *err = NULL;
  int rc = run(argv, &out, &err);
  if (rc != code || !strstr(err, needle)) print_error("rc %d stderr: %s\n", rc, err);
  assert_int_equal(rc, code);
  assert_non_null(strstr(err, needle));
  free(out);
  free(err);
}

static void test_run_model_errors(void **state) {
  (void)state;
  char bin[4096], model[4096], sym[4096], bad[4096], wrong[4096];
  snprintf(bin, sizeof bin, "%s", osseg_bin());
  snprintf(model, sizeof model, "%s", data("residual.onnx"));
  snprintf(sym, sizeof sym, "%s", data("symbolic_size.onnx"));
  snprintf(bad, sizeof bad, "%s", data("bad_unsupported_op.onnx"));
  snprintf(wrong, sizeof wrong, "%s", data("relu.input.npy")); /* 1x4x12x10 vs symbolic 3ch */
  const char *a1[] = {bin, "run-model", bad, NULL};
  expect_fail(a1, 1, "the_erf_node");
  const char *a2[] = {bin, "run-model", sym, NULL};
  expect_fail(a2, 1, "--size");
  const char *a3[] = {bin, "run-model", model, "--precision", "fp16", NULL};
  expect_fail(a3, 2, "--precision");
  const char *a4[] = {bin, "run-model", sym, "--size", "16", "--input", wrong, NULL};
  expect_fail(a4, 1, "needs 1x3x16x16");
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s/f64.npy", test_tmpdir());
  /* float64 .npy header */
  const char hdr[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
  char buf[256] = {0};
  memcpy(buf, hdr, sizeof hdr - 1);
  memset(buf + sizeof hdr - 1, ' ', 128 - (sizeof hdr - 1));
  buf[127] = '\n';
  assert_int_equal(test_write_file(tmp, buf, 136), 0);
  const char *a5[] = {bin, "run-model", model, "--input", tmp, NULL};
  expect_fail(a5, 1, "dtype");
  const char *a6[] = {bin, "model-info", sym, "--size", "32", NULL};
  char *out = NULL, *err = NULL;
  assert_int_equal(run(a6, &out, &err), 0);
  assert_non_null(strstr(out, "[1, 3, 32, 32]"));
  assert_non_null(strstr(out, "arena"));
  assert_non_null(strstr(out, "Conv"));
  free(out);
  free(err);
}

/* The op table as the API lists it: names unique, every family file
 * exists under engine/ops/, opsets and precisions consistent. */
static void test_op_table(void **state) {
  (void)state;
  int n = osseg_engine_op_count();
  assert_true(n > 40);
  int conv = 0, erf = 0, shape = 0;
  for (int i = 0; i < n; i++) {
    struct osseg_op_info o;
    assert_int_equal(osseg_engine_op_info(i, &o), 0);
    for (int j = 0; j < i; j++) {
      struct osseg_op_info p;
      assert_int_equal(osseg_engine_op_info(j, &p), 0);
      assert_string_not_equal(o.name, p.name);
    }
    assert_int_equal(access(test_path("%s/engine/ops/%s.c", test_source_dir(), o.family), R_OK), 0);
    if (o.internal) {
      assert_int_equal(strncmp(o.name, "osseg.", 6), 0);
      assert_true(o.runtime);
    } else {
      assert_string_equal(o.domain, "ai.onnx");
      assert_true(o.since >= 7);
    }
    if (o.runtime) assert_true(o.precisions & OSSEG_OP_PREC_FP32);
    conv += !strcmp(o.name, "Conv") && o.runtime && o.until >= 17 && !strcmp(o.family, "conv");
    erf += !strcmp(o.name, "Erf") && o.in_pattern && !o.runtime;
    shape += !strcmp(o.name, "Shape") && o.folds && !o.runtime;
  }
  assert_int_equal(conv + erf + shape, 3);
  struct osseg_op_info o;
  assert_int_equal(osseg_engine_op_info(n, &o), OSSEG_EINVAL);
  assert_int_equal(osseg_engine_op_info(-1, &o), OSSEG_EINVAL);
}

struct seen_ops {
  int n, supported, other_opset;
  char names[8][32];
};
static void collect_op(void *ctx, const struct osseg_op_check *c) {
  struct seen_ops *s = ctx;
  if (s->n < 8) snprintf(s->names[s->n], sizeof s->names[0], "%s", c->name);
  s->n++;
  s->supported += c->support == OSSEG_OP_SUPPORTED;
  s->other_opset += c->support == OSSEG_OP_OTHER_OPSET;
}

/* osseg_model_check_ops and `osseg model-info --ops`: every op type of a
 * model against the table, then the load. */
static void test_model_info_ops(void **state) {
  (void)state;
  struct seen_ops s = {0};
  int opset = 0;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  assert_int_equal(osseg_model_check_ops(data("residual.onnx"), &opset, collect_op, &s, &diag), 0);
  assert_int_equal(s.n, 3); /* Conv, Relu, Add */
  assert_int_equal(s.supported, 3);
  memset(&s, 0, sizeof s);
  assert_int_equal(osseg_model_check_ops(data("bad_opset.onnx"), &opset, collect_op, &s, &diag), 0);
  assert_int_equal(opset, 99);
  assert_int_equal(s.other_opset, 1);
  assert_string_equal(s.names[0], "Relu");
  assert_int_not_equal(osseg_model_check_ops(data("no_such.onnx"), &opset, collect_op, &s, &diag), 0);
  assert_non_null(strstr(diag.message, "no_such.onnx"));

  char bin[4096];
  snprintf(bin, sizeof bin, "%s", osseg_bin());
  char *out = NULL, *err = NULL;
  const char *a1[] = {bin, "model-info", "--ops", NULL};
  assert_int_equal(run(a1, &out, &err), 0);
  assert_non_null(strstr(out, "engine/ops/conv.c"));
  assert_non_null(strstr(out, "osseg.Attention"));
  int lines = 0;
  for (const char *p = out; (p = strchr(p, '\n')); p++) lines++;
  assert_int_equal(lines, osseg_engine_op_count() + 1); /* + the heading */
  free(out);
  free(err);
  char model[4096];
  snprintf(model, sizeof model, "%s", data("residual.onnx"));
  const char *a2[] = {bin, "model-info", model, "--ops", NULL};
  assert_int_equal(run(a2, &out, &err), 0);
  assert_non_null(strstr(out, "supported (engine/ops/conv.c)"));
  assert_non_null(strstr(out, "loads       yes"));
  free(out);
  free(err);
  snprintf(model, sizeof model, "%s", data("bad_unsupported_op.onnx"));
  const char *a3[] = {bin, "model-info", model, "--ops", NULL};
  assert_int_equal(run(a3, &out, &err), 1);
  assert_non_null(strstr(out, "only inside the pattern"));
  assert_non_null(strstr(out, "loads       no"));
  assert_non_null(strstr(out, "the_erf_node"));
  free(out);
  free(err);
  snprintf(model, sizeof model, "%s", data("bad_opset.onnx"));
  const char *a4[] = {bin, "model-info", model, "--ops", NULL};
  assert_int_equal(run(a4, &out, &err), 1);
  assert_non_null(strstr(out, "NOT SUPPORTED at opset 99 (supported at 7-18)"));
  free(out);
  free(err);
}

/* `osseg model-info --steps`: a line per step with its types and
 * implementation, then the counts by precision; plain model-info's line on
 * them; run-model --verbose's summary at load. */
static void test_model_info_steps(void **state) {
  (void)state;
  char bin[4096], model[4096];
  snprintf(bin, sizeof bin, "%s", osseg_bin());
  snprintf(model, sizeof model, "%s", data("qdq_conv_u8.onnx"));
  char *out = NULL, *err = NULL;
  const char *a1[] = {bin, "model-info", model, "--steps", "--precision", "int8", NULL};
  assert_int_equal(run(a1, &out, &err), 0);
  /* a line of an int8 conv: "   2  /Conv  Conv  convolution  u8,s8->u8  jit_int8:..." */
  int int8_convs = 0, lines = 0;
  for (char *l = out; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
    char idx[16], node[128], op[64], kind[64], types[64], impl[128];
    if (sscanf(l, "%15s %127s %63s %63s %63s %127s", idx, node, op, kind, types, impl) != 6 ||
        idx[0] < '0' || idx[0] > '9')
      continue;
    lines++;
    if (!strcmp(kind, "convolution") && !strcmp(op, "Conv") &&
        (!strncmp(types, "u8,s8->", 7) || !strncmp(types, "s8,s8->", 7)))
      int8_convs++;
  }
  struct osseg_engine_options o;
  osseg_engine_options_default(&o);
  o.precision = OSSEG_PRECISION_INT8;
  o.threads = 1;
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  assert_int_equal(osseg_model_load(&m, model, &o, &diag), 0);
  assert_int_equal(lines, osseg_model_step_count(m));
  osseg_model_free(m);
  assert_int_equal(int8_convs, 3);
  assert_non_null(strstr(out, "int8 (3 convs)"));
  assert_non_null(strstr(out, "\nslow        "));
  free(out), free(err);

  const char *a2[] = {bin, "model-info", model, "--precision", "int8", NULL};
  assert_int_equal(run(a2, &out, &err), 0);
  assert_non_null(strstr(out, "\nprecision   "));
  assert_non_null(strstr(out, "int8 (3 convs)"));
  assert_non_null(strstr(out, "int8 steps on slow code: "));
  free(out), free(err);

  const char *a3[] = {bin, "model-info", model, "--steps", NULL};
  assert_int_equal(run(a3, &out, &err), 0);
  assert_null(strstr(out, "int8 ("));
  assert_null(strstr(out, "u8"));
  assert_non_null(strstr(out, "fp32 (3 convs)"));
  free(out), free(err);

  const char *a4[] = {bin, "run-model", model, "--precision", "int8", "--verbose", NULL};
  assert_int_equal(run(a4, &out, &err), 0);
  assert_non_null(strstr(err, "osseg run-model: "));
  assert_non_null(strstr(err, " steps: "));
  assert_non_null(strstr(err, "int8 (3 convs)"));
  free(out), free(err);
  const char *a5[] = {bin, "run-model", model, "--precision", "int8", NULL};
  assert_int_equal(run(a5, &out, &err), 0);
  assert_null(strstr(err, " steps: "));
  free(out), free(err);

  /* every step on slow code is named (the reductions of reduce_sum_max run
   * on oneDNN reference code on the CPUs seen so far) */
  snprintf(model, sizeof model, "%s", data("reduce_sum_max.onnx"));
  o.precision = OSSEG_PRECISION_FP32;
  assert_int_equal(osseg_model_load(&m, model, &o, &diag), 0);
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  osseg_model_free(m);
  const char *a7[] = {bin, "run-model", model, "--verbose", NULL};
  assert_int_equal(run(a7, &out, &err), 0);
  int named = 0;
  for (const char *p = err; (p = strstr(p, "osseg run-model: slow step ")); p++) named++;
  assert_int_equal(named, st.slow_steps);
  if (st.slow_steps) assert_non_null(strstr(err, "' (ReduceSum) f32 on 'ref"));
  free(out), free(err);

  const char *a6[] = {bin, "model-info", model, "--steps", "--ops", NULL};
  assert_int_equal(run(a6, &out, &err), 2);
  free(out), free(err);
}

/* clients/omp_env.c: the tool runs OpenMP with a bounded spin count
 * (GOMP_SPINCOUNT 100000) unless the user chose a policy (libgomp shows its settings
 * with OMP_DISPLAY_ENV=verbose). */
static void test_omp_wait_policy(void **state) {
  (void)state;
  char bin[4096];
  snprintf(bin, sizeof bin, "%s", osseg_bin());
  const char *argv[] = {bin, "--help", NULL};
  char *out = NULL, *err = NULL;
  unsetenv("OMP_WAIT_POLICY");
  unsetenv("GOMP_SPINCOUNT");
  setenv("OMP_DISPLAY_ENV", "verbose", 1);
  assert_int_equal(run(argv, &out, &err), 0);
  assert_non_null(strstr(err, "GOMP_SPINCOUNT = '100000'"));
  free(out), free(err);
  setenv("OMP_WAIT_POLICY", "active", 1);
  assert_int_equal(run(argv, &out, &err), 0);
  assert_non_null(strstr(err, "OMP_WAIT_POLICY = 'ACTIVE'"));
  assert_null(strstr(err, "GOMP_SPINCOUNT = '100000'"));
  free(out), free(err);
  unsetenv("OMP_WAIT_POLICY");
  unsetenv("OMP_DISPLAY_ENV");
}

/* clients/engine_env.c: the documented switches still reach the engine
 * (which no longer reads the environment) and its log comes out on stderr
 * as before: OSSEG_PROFILE's table, OSSEG_NO_WINOGRAD in model-info's
 * counts, OSSEG_INT8_UPCONV_MIN in model-info's steps, a bad OSSEG_BF16_TAIL,
 * OSSEG_INT8_UPCONV_MIN or OSSEG_DISABLE_CPU_FEATURES is a usage error. */
static void test_env_switches(void **state) {
  (void)state;
  char bin[4096], model[4096], wg[4096];
  snprintf(bin, sizeof bin, "%s", osseg_bin());
  snprintf(model, sizeof model, "%s", data("residual.onnx"));
  snprintf(wg, sizeof wg, "%s", data("wg_plain.onnx"));
  char *out = NULL, *err = NULL;
  const char *a1[] = {bin, "run-model", model, NULL};
  setenv("OSSEG_PROFILE", "1", 1);
  assert_int_equal(run(a1, &out, &err), 0);
  unsetenv("OSSEG_PROFILE");
  assert_non_null(strstr(err, "osseg profile: step kind node op wall_ms cpu_ms gflop gflop/s impl\n"));
  assert_non_null(strstr(err, "osseg profile: total "));
  assert_null(strstr(err, "warning"));
  free(out), free(err);
  assert_int_equal(run(a1, &out, &err), 0);
  assert_null(strstr(err, "profile"));
  free(out), free(err);

  const char *a2[] = {bin, "model-info", wg, NULL};
  assert_int_equal(run(a2, &out, &err), 0);
  assert_non_null(strstr(out, "winograd    1 convs"));
  free(out), free(err);
  setenv("OSSEG_NO_WINOGRAD", "1", 1);
  assert_int_equal(run(a2, &out, &err), 0);
  unsetenv("OSSEG_NO_WINOGRAD");
  assert_null(strstr(out, "winograd"));
  free(out), free(err);

  setenv("OSSEG_BF16_TAIL", "two", 1);
  assert_int_equal(run(a1, &out, &err), 2);
  unsetenv("OSSEG_BF16_TAIL");
  assert_non_null(strstr(err, "osseg run-model: OSSEG_BF16_TAIL must be an integer"));
  free(out), free(err);
  setenv("OSSEG_INT8_UPCONV_MIN", "-2", 1);
  assert_int_equal(run(a1, &out, &err), 2);
  unsetenv("OSSEG_INT8_UPCONV_MIN");
  assert_non_null(strstr(err, "osseg run-model: OSSEG_INT8_UPCONV_MIN must be -1 (never) or a channel"));
  free(out), free(err);
  if (osseg_engine_int8_native()) { /* the threshold reaches the engine */
    char q[4096];
    snprintf(q, sizeof q, "%s", data("qdq_upconv.onnx"));
    const char *a3[] = {bin, "model-info", q, "--precision", "int8", "--steps", NULL};
    assert_int_equal(run(a3, &out, &err), 0);
    assert_null(strstr(out, "own: upconv phases + skip sum"));
    free(out), free(err);
    setenv("OSSEG_INT8_UPCONV_MIN", "1", 1);
    assert_int_equal(run(a3, &out, &err), 0);
    unsetenv("OSSEG_INT8_UPCONV_MIN");
    assert_non_null(strstr(out, "own: upconv phases + skip sum"));
    free(out), free(err);
  }
  const char *level = getenv("OSSEG_DISABLE_CPU_FEATURES");
  char saved[64];
  snprintf(saved, sizeof saved, "%s", level ? level : "");
  setenv("OSSEG_DISABLE_CPU_FEATURES", "avx3", 1);
  assert_int_equal(run(a1, &out, &err), 2);
  setenv("OSSEG_DISABLE_CPU_FEATURES", saved, 1);
  assert_non_null(strstr(err, "OSSEG_DISABLE_CPU_FEATURES"));
  free(out), free(err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_env_switches),
      cmocka_unit_test(test_omp_wait_policy),
      cmocka_unit_test(test_run_model_json_and_output),
      cmocka_unit_test(test_run_model_errors),
      cmocka_unit_test(test_op_table),
      cmocka_unit_test(test_model_info_ops),
      cmocka_unit_test(test_model_info_steps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
