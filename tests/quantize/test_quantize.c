/* osseg quantize (quantize/), on the fixture quant_src of
 * tools/fixtures/make_op_tests.py --quantize-only: an fp32 conv net, its
 * calibration inputs, the uint8 parameters minmax must find and the
 * forward of the QDQ model they define. Also the engine's observers, which
 * the calibration runs through. */
#include <math.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine_test_util.h"
#include "osseg_quantize.h"
#include "test_support.h"

struct fixture {
  char *onnx;
  size_t size;
  struct npy_array calib, input, ref, qparams;
  const float *inputs[16];
  size_t ninputs;
};

static struct fixture fx;

static const char *engine_dir(void) { return test_path("%s/tests/data/engine", test_source_dir()); }

static void read_npy(const char *name, struct npy_array *a) {
  struct osseg_diag d = {0};
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", engine_dir(), name);
  if (npy_read(path, 1 << 26, a, &d)) fail_msg("%s: %s", path, d.message);
}

static int setup(void **state) {
  (void)state;
  char path[4096];
  snprintf(path, sizeof path, "%s/quant_src.onnx", engine_dir());
  fx.onnx = test_read_file(path, &fx.size);
  if (!fx.onnx) return -1;
  read_npy("quant_src.calib.npy", &fx.calib);
  read_npy("quant_src.input.npy", &fx.input);
  read_npy("quant_src.fq_output.npy", &fx.ref);
  read_npy("quant_src.qparams.npy", &fx.qparams);
  fx.ninputs = (size_t)fx.calib.dims[0];
  size_t per = fx.calib.count / fx.ninputs;
  if (fx.ninputs > 16 || per != fx.input.count) return -1;
  for (size_t i = 0; i < fx.ninputs; i++) fx.inputs[i] = fx.calib.data + i * per;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  free(fx.onnx);
  npy_free(&fx.calib);
  npy_free(&fx.input);
  npy_free(&fx.ref);
  npy_free(&fx.qparams);
  return 0;
}

static struct osseg_quantize_options opts(enum osseg_calib_method m) {
  struct osseg_quantize_options o;
  osseg_quantize_options_default(&o);
  o.method = m;
  o.engine = engine_test_opts(OSSEG_PRECISION_FP32);
  return o;
}

/* osseg_quantize on the fixture's calibration inputs, which must succeed. */
static void quantize_ok(const struct osseg_quantize_options *o, void **q, size_t *qs,
                        struct osseg_quantize_report *r) {
  struct osseg_diag d = {0};
  if (osseg_quantize(fx.onnx, fx.size, fx.inputs, fx.ninputs, o, q, qs, r, &d))
    fail_msg("%s: %s", osseg_calib_method_name(o->method), d.message);
}

/* max |out - ref| / max |ref| of a model (bytes) at precision p on the
 * fixture's input. */
static double run_rel_err(const void *bytes, size_t size, enum osseg_precision p, int *int8_convs) {
  struct osseg_engine_options eo = engine_test_opts(p);
  struct osseg_model *m = NULL;
  struct osseg_diag d = {0};
  if (p == OSSEG_PRECISION_INT8 && !osseg_engine_int8_native()) {
    /* no VNNI/AMX (or oneDNN capped below them): int8 is refused */
    assert_int_equal(osseg_model_load_buffer(&m, bytes, size, &eo, &d), OSSEG_EUNSUPPORTED);
    assert_non_null(strstr(d.message, "dot-product"));
    assert_null(m);
    return -1;
  }
  if (osseg_model_load_buffer(&m, bytes, size, &eo, &d)) fail_msg("load: %s", d.message);
  assert_int_equal(osseg_model_output_elems(m), fx.ref.count);
  float *out = malloc(fx.ref.count * sizeof *out);
  assert_non_null(out);
  assert_int_equal(osseg_model_run(m, fx.input.data, out, &d), 0);
  double num = 0, den = 0;
  for (size_t i = 0; i < fx.ref.count; i++) {
    num = fmax(num, fabs((double)out[i] - fx.ref.data[i]));
    den = fmax(den, fabs((double)fx.ref.data[i]));
  }
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  if (int8_convs) *int8_convs = st.int8_convs;
  free(out);
  osseg_model_free(m);
  return num / den;
}

/* minmax finds the fixture's parameters, and the written QDQ model computes
 * the fixture's reference forward in fp32 (the QDQ computed in float) and in
 * int8 (oneDNN int8 convolutions). */
static void test_minmax_round_trip(void **state) {
  (void)state;
  struct osseg_quantize_options o = opts(OSSEG_CALIB_MINMAX);
  void *q = NULL;
  size_t qs = 0;
  struct osseg_quantize_report r;
  struct osseg_diag d = {0};
  quantize_ok(&o, &q, &qs, &r);
  assert_int_equal(r.convs, 4);
  assert_int_equal(r.quantized, 4);
  assert_int_equal(r.inputs, fx.ninputs);
  assert_int_equal(fx.qparams.count, 2 * r.convs);
  for (size_t c = 0; c < r.convs; c++) {
    assert_true(r.conv[c].quantized);
    assert_null(r.conv[c].why);
    /* (oneDNN's fp32 convs round differently from PyTorch's: the ranges of
     * the later tensors differ in their last bits) */
    assert_float_equal(r.conv[c].scale, fx.qparams.data[2 * c], 1e-5 * fx.qparams.data[2 * c]);
    assert_int_equal(r.conv[c].zero_point, (int)fx.qparams.data[2 * c + 1]);
    assert_true(r.conv[c].lo <= r.conv[c].hi);
  }
  /* the input conv reads the graph input; c2 and c4 share the first ReLU's output */
  assert_string_equal(r.conv[1].input, r.conv[3].input);
  assert_true(r.agreement > 0.9 && r.agreement <= 1);
  assert_int_equal(r.eval_precision,
                   osseg_engine_int8_native() ? OSSEG_PRECISION_INT8 : OSSEG_PRECISION_FP32);
  int n8 = 0;
  double e32 = run_rel_err(q, qs, OSSEG_PRECISION_FP32, NULL);
  double e8 = run_rel_err(q, qs, OSSEG_PRECISION_INT8, &n8);
  assert_true(e32 < 1e-5);
  if (e8 >= 0) {
    assert_true(e8 < 1e-5);
    assert_int_equal(n8, 4);
  }
  /* the fp32 model, for scale: quantization moves the output by far more */
  double efp = run_rel_err(fx.onnx, fx.size, OSSEG_PRECISION_FP32, NULL);
  assert_true(efp > 20 * e32);
  /* metadata: the note, loadable again */
  struct osseg_model *m = NULL;
  struct osseg_engine_options eo = engine_test_opts(OSSEG_PRECISION_FP32);
  assert_int_equal(osseg_model_load_buffer(&m, q, qs, &eo, &d), 0);
  const char *note = osseg_model_metadata(m, "osseg.quantized");
  assert_non_null(note);
  assert_non_null(strstr(note, "4 of 4 convs int8"));
  assert_non_null(strstr(note, "minmax"));
  osseg_model_free(m);
  /* quantizing a quantized model is refused */
  void *q2 = NULL;
  size_t qs2 = 0;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_quantize(q, qs, fx.inputs, fx.ninputs, &o, &q2, &qs2, NULL, &d),
                   OSSEG_EUNSUPPORTED);
  assert_non_null(strstr(d.message, "quantized already"));
  assert_null(q2);
  osseg__free(q);
  osseg_quantize_report_free(&r);
}

/* The other methods narrow the range (never widen it) and stay usable. */
static void test_methods(void **state) {
  (void)state;
  struct osseg_quantize_report base;
  void *q = NULL;
  size_t qs = 0;
  struct osseg_quantize_options o = opts(OSSEG_CALIB_MINMAX);
  quantize_ok(&o, &q, &qs, &base);
  osseg__free(q);
  const enum osseg_calib_method ms[] = {OSSEG_CALIB_PERCENTILE, OSSEG_CALIB_MSE, OSSEG_CALIB_ENTROPY};
  for (size_t k = 0; k < 3; k++) {
    struct osseg_quantize_report r;
    o = opts(ms[k]);
    o.percentile = 99.0 + 0.9; /* 99.9: cuts into 480-value calibration tensors */
    quantize_ok(&o, &q, &qs, &r);
    int narrower = 0;
    for (size_t c = 0; c < r.convs; c++) {
      assert_true(r.conv[c].scale > 0);
      assert_true(r.conv[c].scale <= base.conv[c].scale * (1 + 1e-6));
      assert_true(r.conv[c].zero_point >= 0 && r.conv[c].zero_point <= 255);
      narrower += r.conv[c].scale < base.conv[c].scale * (1 - 1e-6);
    }
    /* the graph input keeps its whole range */
    assert_float_equal(r.conv[0].scale, base.conv[0].scale, 0);
    if (ms[k] == OSSEG_CALIB_PERCENTILE && !narrower) /* by definition; the others may keep it */
      fail_msg("%s: no range narrower than minmax", osseg_calib_method_name(ms[k]));
    assert_true(r.agreement > 0.5);
    int n8 = 4;
    double e = run_rel_err(q, qs, OSSEG_PRECISION_INT8, &n8);
    if (e < 0) e = run_rel_err(q, qs, OSSEG_PRECISION_FP32, NULL);
    assert_int_equal(n8, 4);
    assert_true(e < 0.5); /* still the same function, roughly */
    osseg__free(q);
    osseg_quantize_report_free(&r);
  }
  osseg_quantize_report_free(&base);
}

/* Named convs stay fp32; an unknown name is an error that names it. */
static void test_fp32_layers(void **state) {
  (void)state;
  struct osseg_quantize_report r;
  struct osseg_diag d = {0};
  void *q = NULL;
  size_t qs = 0;
  struct osseg_quantize_options o = opts(OSSEG_CALIB_MINMAX);
  quantize_ok(&o, &q, &qs, &r);
  char keep[256];
  snprintf(keep, sizeof keep, "%s", r.conv[2].name);
  osseg__free(q);
  osseg_quantize_report_free(&r);
  const char *names[] = {keep};
  o.fp32_layers = names;
  o.nfp32_layers = 1;
  quantize_ok(&o, &q, &qs, &r);
  assert_int_equal(r.quantized, 3);
  assert_false(r.conv[2].quantized);
  assert_non_null(r.conv[2].why);
  int n8 = 3;
  run_rel_err(q, qs, OSSEG_PRECISION_INT8, &n8);
  assert_int_equal(n8, 3);
  osseg__free(q);
  osseg_quantize_report_free(&r);
  const char *bad[] = {"no_such_conv"};
  o.fp32_layers = bad;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_quantize(fx.onnx, fx.size, fx.inputs, fx.ninputs, &o, &q, &qs, &r, &d),
                   OSSEG_EINVAL);
  assert_non_null(strstr(d.message, "no_such_conv"));
  assert_null(q);
}

/* fp32_auto: below the all-int8 agreement nothing is kept; above it the
 * most sensitive convs are kept until the target holds. */
static void test_fp32_auto(void **state) {
  (void)state;
  struct osseg_quantize_report r;
  struct osseg_diag d = {0};
  void *q = NULL;
  size_t qs = 0;
  struct osseg_quantize_options o = opts(OSSEG_CALIB_MINMAX);
  o.eval_precision = OSSEG_PRECISION_FP32;
  o.fp32_auto = 1;
  o.target_agreement = 0.01;
  quantize_ok(&o, &q, &qs, &r);
  assert_int_equal(r.quantized, 4);
  const double all = r.agreement;
  assert_true(all == r.agreement_all);
  for (size_t c = 0; c < r.convs; c++) assert_true(r.conv[c].sensitivity < 0); /* not measured */
  osseg__free(q);
  osseg_quantize_report_free(&r);
  if (all >= 1) skip(); /* no disagreement to remove on this CPU */
  o.target_agreement = all + (1 - all) / 2;
  int rc = osseg_quantize(fx.onnx, fx.size, fx.inputs, fx.ninputs, &o, &q, &qs, &r, &d);
  if (rc == OSSEG_EUNSUPPORTED) { /* every conv had to stay fp32 */
    print_message("fp32_auto: %s\n", d.message);
    assert_non_null(strstr(d.message, "target"));
    return;
  }
  assert_int_equal(rc, 0);
  assert_true(r.agreement >= o.target_agreement);
  assert_true(r.agreement_all == all);
  assert_true(r.quantized < 4 && r.quantized >= 1);
  double kept_min = INFINITY, int8_max = -1;
  for (size_t c = 0; c < r.convs; c++) {
    assert_true(r.conv[c].sensitivity >= 0);
    if (r.conv[c].quantized) {
      int8_max = fmax(int8_max, r.conv[c].sensitivity);
    } else {
      assert_string_equal(r.conv[c].why, "sensitive");
      kept_min = fmin(kept_min, r.conv[c].sensitivity);
    }
  }
  assert_true(kept_min >= int8_max);
  print_message("fp32_auto: %zu of 4 int8, agreement %.4f (all int8 %.4f, target %.4f)\n",
                r.quantized, r.agreement, all, o.target_agreement);
  osseg__free(q);
  osseg_quantize_report_free(&r);
}

/* A conv whose output only a BatchNormalization reads (an export without
 * BN folding): the BN is folded into the int8 weights and a new bias. */
static void test_batchnorm_folded(void **state) {
  (void)state;
  char path[4096];
  snprintf(path, sizeof path, "%s/conv_bn_relu_nofold.onnx", engine_dir());
  size_t n = 0;
  char *src = test_read_file(path, &n);
  assert_non_null(src);
  struct osseg_engine_options eo = engine_test_opts(OSSEG_PRECISION_FP32);
  struct osseg_model *m = NULL;
  struct osseg_diag d = {0};
  assert_int_equal(osseg_model_load_buffer(&m, src, n, &eo, &d), 0);
  size_t in = osseg_model_input_elems(m), on = osseg_model_output_elems(m);
  float *x = malloc(2 * in * sizeof *x), *ref = malloc(on * sizeof *ref), *y = malloc(on * sizeof *y);
  assert_non_null(x);
  struct test_rng rng;
  test_rng_seed(&rng, 5);
  for (size_t i = 0; i < 2 * in; i++) x[i] = (float)(test_rng_unit(&rng) * 2 - 1);
  assert_int_equal(osseg_model_run(m, x, ref, &d), 0);
  osseg_model_free(m);
  const float *inputs[2] = {x, x + in};
  struct osseg_quantize_options o = opts(OSSEG_CALIB_MINMAX);
  struct osseg_quantize_report r;
  void *q = NULL;
  size_t qs = 0;
  if (osseg_quantize(src, n, inputs, 2, &o, &q, &qs, &r, &d)) fail_msg("%s", d.message);
  assert_int_equal(r.quantized, 1);
  /* no BatchNormalization left; the QDQ model computes nearly the same */
  eo = engine_test_opts(osseg_engine_int8_native() ? OSSEG_PRECISION_INT8 : OSSEG_PRECISION_FP32);
  assert_int_equal(osseg_model_load_buffer(&m, q, qs, &eo, &d), 0);
  for (int i = 0; i < osseg_model_op_count(m); i++) {
    const char *op;
    int cnt;
    osseg_model_op_at(m, i, &op, &cnt);
    assert_string_not_equal(op, "BatchNormalization");
  }
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  if (eo.precision == OSSEG_PRECISION_INT8) assert_int_equal(st.int8_convs, 1);
  assert_int_equal(osseg_model_run(m, x, y, &d), 0);
  double num = 0, den = 0;
  for (size_t i = 0; i < on; i++) num = fmax(num, fabs((double)y[i] - ref[i])), den = fmax(den, fabs(ref[i]));
  assert_true(num / den < 0.02);
  assert_true(num > 0); /* quantized, not copied */
  osseg_model_free(m);
  osseg__free(q);
  osseg_quantize_report_free(&r);
  free(x), free(ref), free(y), free(src);
}

static void test_bad_input(void **state) {
  (void)state;
  struct osseg_diag d = {0};
  void *q = NULL;
  size_t qs = 0;
  struct osseg_quantize_options o = opts(OSSEG_CALIB_MINMAX);
  /* opset 11: no per-channel DequantizeLinear */
  char path[4096];
  snprintf(path, sizeof path, "%s/quant_opset11.onnx", engine_dir());
  size_t n = 0;
  char *old = test_read_file(path, &n);
  assert_non_null(old);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_quantize(old, n, fx.inputs, fx.ninputs, &o, &q, &qs, NULL, &d),
                   OSSEG_EUNSUPPORTED);
  assert_non_null(strstr(d.message, "opset 11"));
  free(old);
  /* not a model; no inputs; bad options */
  osseg_diag_clear(&d);
  assert_true(osseg_quantize("not onnx", 8, fx.inputs, fx.ninputs, &o, &q, &qs, NULL, &d) < 0);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_quantize(fx.onnx, fx.size, fx.inputs, 0, &o, &q, &qs, NULL, &d), OSSEG_EINVAL);
  o.target_agreement = 1.5;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_quantize(fx.onnx, fx.size, fx.inputs, 1, &o, &q, &qs, NULL, &d), OSSEG_EINVAL);
  o = opts(OSSEG_CALIB_PERCENTILE);
  o.percentile = 50;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_quantize(fx.onnx, fx.size, fx.inputs, 1, &o, &q, &qs, NULL, &d), OSSEG_EINVAL);
  o = opts(OSSEG_CALIB_MINMAX);
  float thr[2] = {0.5f, 0.5f};
  o.thresholds = thr;
  o.nthresholds = 2; /* the model has 8 classes */
  osseg_diag_clear(&d);
  assert_int_equal(osseg_quantize(fx.onnx, fx.size, fx.inputs, 1, &o, &q, &qs, NULL, &d), OSSEG_EINVAL);
  assert_null(q);
  /* cancelled */
  _Atomic int cancel = 1;
  o.nthresholds = 0;
  o.cancel = &cancel;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_quantize(fx.onnx, fx.size, fx.inputs, 1, &o, &q, &qs, NULL, &d),
                   OSSEG_ECANCELED);
  assert_null(q);
}

/* ---- Observers. */

struct seen {
  size_t calls[2], n[2];
  float min[2], max[2];
};

static void on_tensor(void *ctx, size_t index, const float *data, size_t n) {
  struct seen *s = ctx;
  assert_true(index < 2);
  s->calls[index]++;
  s->n[index] = n;
  for (size_t i = 0; i < n; i++) {
    s->min[index] = fminf(s->min[index], data[i]);
    s->max[index] = fmaxf(s->max[index], data[i]);
  }
}

static void test_observer(void **state) {
  (void)state;
  /* the tensors the convs read, as the quantizer names them */
  struct osseg_quantize_report r;
  struct osseg_diag d = {0};
  void *q = NULL;
  size_t qs = 0;
  struct osseg_quantize_options qo = opts(OSSEG_CALIB_MINMAX);
  assert_int_equal(osseg_quantize(fx.onnx, fx.size, fx.inputs, 1, &qo, &q, &qs, &r, &d), 0);
  osseg__free(q);
  const char *names[2] = {r.conv[1].input, r.conv[2].input}; /* ReLU output, the concat */
  struct seen s = {{0, 0}, {0, 0}, {INFINITY, INFINITY}, {-INFINITY, -INFINITY}};
  struct osseg_engine_options eo = engine_test_opts(OSSEG_PRECISION_FP32);
  eo.observe = (struct osseg_engine_observer){names, 2, on_tensor, &s};
  struct osseg_model *m = NULL, *plain = NULL;
  assert_int_equal(osseg_model_load_buffer(&m, fx.onnx, fx.size, &eo, &d), 0);
  struct osseg_engine_options po = engine_test_opts(OSSEG_PRECISION_FP32);
  assert_int_equal(osseg_model_load_buffer(&plain, fx.onnx, fx.size, &po, &d), 0);
  float *a = malloc(fx.ref.count * sizeof *a), *b = malloc(fx.ref.count * sizeof *b);
  assert_int_equal(osseg_model_run(m, fx.input.data, a, &d), 0);
  assert_int_equal(osseg_model_run(m, fx.input.data, a, &d), 0);
  assert_int_equal(osseg_model_run(plain, fx.input.data, b, &d), 0);
  assert_int_equal(s.calls[0], 2);
  assert_int_equal(s.calls[1], 2);
  assert_int_equal(s.n[0], 16 * 12 * 10);
  assert_int_equal(s.n[1], 32 * 12 * 10);
  assert_true(s.min[0] >= 0 && s.max[0] > 0); /* after a ReLU */
  double e = 0;
  for (size_t i = 0; i < fx.ref.count; i++) e = fmax(e, fabs((double)a[i] - b[i]));
  assert_true(e < 1e-5); /* observing changes nothing */
  free(a);
  free(b);
  osseg_model_free(m);
  osseg_model_free(plain);
  /* errors name the tensor; observers need fp32 */
  const char *none[] = {"no_such_tensor"};
  eo.observe.tensors = none;
  eo.observe.count = 1;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_model_load_buffer(&m, fx.onnx, fx.size, &eo, &d), OSSEG_EINVAL);
  assert_non_null(strstr(d.message, "no_such_tensor"));
  assert_null(m);
  eo.observe.tensors = names;
  eo.precision = OSSEG_PRECISION_BF16;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_model_load_buffer(&m, fx.onnx, fx.size, &eo, &d), OSSEG_EINVAL);
  if (!strstr(d.message, "fp32")) fail_msg("%s", d.message);
  const char *twice[] = {names[0], names[0]};
  eo.precision = OSSEG_PRECISION_FP32;
  eo.observe.tensors = twice;
  eo.observe.count = 2;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_model_load_buffer(&m, fx.onnx, fx.size, &eo, &d), OSSEG_EINVAL);
  assert_non_null(strstr(d.message, "twice"));
  osseg_quantize_report_free(&r);
}

static int steps_with_impl(const struct osseg_model *m, const char *impl) {
  int n = 0;
  for (int i = 0; i < osseg_model_step_count(m); i++) {
    struct osseg_step_info si;
    assert_int_equal(osseg_model_step_info(m, i, &si), 0);
    n += si.impl && !strcmp(si.impl, impl);
  }
  return n;
}

static int op_count(const struct osseg_model *m, const char *op) {
  for (int i = 0; i < osseg_model_op_count(m); i++) {
    const char *o;
    int n;
    osseg_model_op_at(m, i, &o, &n);
    if (!strcmp(o, op)) return n;
  }
  return 0;
}

/* max |out - ref| / max |ref| of the QDQ model q at precision p; NULL
 * *mp: freed, else the loaded model is handed back. -1: int8 not native. */
static double ort_rel_err(const void *q, size_t qs, enum osseg_precision p, const struct npy_array *in,
                          const struct npy_array *ref, struct osseg_model **mp) {
  struct osseg_engine_options eo = engine_test_opts(p);
  struct osseg_model *m = NULL;
  struct osseg_diag d = {0};
  if (p == OSSEG_PRECISION_INT8 && !osseg_engine_int8_native()) return -1;
  if (osseg_model_load_buffer(&m, q, qs, &eo, &d)) fail_msg("load: %s", d.message);
  assert_int_equal(osseg_model_output_elems(m), ref->count);
  float *out = malloc(ref->count * sizeof *out);
  assert_non_null(out);
  assert_int_equal(osseg_model_run(m, in->data, out, &d), 0);
  double num = 0, den = 0;
  for (size_t i = 0; i < ref->count; i++) {
    num = fmax(num, fabs((double)out[i] - ref->data[i]));
    den = fmax(den, fabs((double)ref->data[i]));
  }
  free(out);
  if (mp) *mp = m;
  else osseg_model_free(m);
  return num / den;
}

/* quant_ort_src.onnx and its calibration inputs; NULL: absent (skip). */
static char *read_ort_fixture(size_t *size, struct npy_array *calib) {
  char path[4096];
  snprintf(path, sizeof path, "%s/quant_ort_src.onnx", engine_dir());
  char *onnx = test_read_file(path, size);
  if (onnx) read_npy("quant_ort_src.calib.npy", calib);
  return onnx;
}

/* --placement ort on quant_ort_src (make_op_tests.py --quantizeort-only): the
 * written model quantizes what ONNX Runtime's quantize_static does (the
 * inputs of the convs, of the residual Add, of the Concat, of the MaxPool
 * and the Resize, and their outputs again on their input's grid), with the
 * minmax parameters, so that it computes PyTorch's forward of that
 * placement; osseg runs it in 8 bits throughout. */
static void test_ort_placement(void **state) {
  (void)state;
  size_t size = 0;
  struct npy_array calib, input, ref;
  char *onnx = read_ort_fixture(&size, &calib);
  if (!onnx) {
    skip();
    return;
  }
  read_npy("quant_ort_src.input.npy", &input);
  read_npy("quant_ort_src.fq_output.npy", &ref);
  const float *inputs[4];
  assert_int_equal(calib.dims[0], 4);
  for (size_t i = 0; i < 4; i++) inputs[i] = calib.data + i * input.count;
  struct osseg_quantize_options o = opts(OSSEG_CALIB_MINMAX);
  o.placement = OSSEG_QDQ_ORT;
  struct osseg_quantize_report r;
  struct osseg_diag d = {0};
  void *q = NULL;
  size_t qs = 0;
  if (osseg_quantize(onnx, size, inputs, 4, &o, &q, &qs, &r, &d)) fail_msg("%s", d.message);
  assert_int_equal(r.placement, OSSEG_QDQ_ORT);
  assert_int_equal(r.convs, 4);
  assert_int_equal(r.quantized, 4);
  /* only for other readers: the first conv's output (pool, concat), the
   * add's conv input, the sum (resize) and the resize's output (concat) */
  assert_int_equal(r.other_points, 4);
  assert_true(r.agreement > 0.9 && r.agreement <= 1);
  struct osseg_model *m = NULL;
  double e32 = ort_rel_err(q, qs, OSSEG_PRECISION_FP32, &input, &ref, &m);
  assert_true(e32 < 1e-5);
  /* 8 tensors: the input, the first conv's output, the pool's (on that
   * grid, not on its own range), the ReLU's, the add's conv input, the sum,
   * the resize's, the concat's */
  assert_int_equal(op_count(m, "QuantizeLinear"), 8);
  assert_int_equal(op_count(m, "DequantizeLinear"), 8 + 4);
  const char *note = osseg_model_metadata(m, "osseg.quantized");
  assert_non_null(note);
  assert_non_null(strstr(note, "ort placement, 4 other tensors quantized"));
  osseg_model_free(m);
  double e8 = ort_rel_err(q, qs, OSSEG_PRECISION_INT8, &input, &ref, &m);
  if (e8 >= 0) {
    assert_true(e8 < 1e-5);
    struct osseg_model_stats st;
    osseg_model_get_stats(m, &st);
    assert_int_equal(st.int8_convs, 4);
    assert_int_equal(steps_with_impl(m, "own: 8-bit add"), 1);
    assert_int_equal(steps_with_impl(m, "own: fake quantization"), 0);
    osseg_model_free(m);
  }
  /* the convs placement of the same net quantizes 4 tensors and computes
   * something else */
  void *q2 = NULL;
  size_t qs2 = 0;
  struct osseg_quantize_report r2;
  o.placement = OSSEG_QDQ_CONVS;
  if (osseg_quantize(onnx, size, inputs, 4, &o, &q2, &qs2, &r2, &d)) fail_msg("%s", d.message);
  assert_int_equal(r2.other_points, 0);
  double ec = ort_rel_err(q2, qs2, OSSEG_PRECISION_FP32, &input, &ref, &m);
  assert_int_equal(op_count(m, "QuantizeLinear"), 4);
  osseg_model_free(m);
  assert_true(ec > 20 * e32 && ec > 1e-4);
  /* an unknown placement is refused */
  o.placement = (enum osseg_qdq_placement)7;
  void *q3 = NULL;
  size_t qs3 = 0;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_quantize(onnx, size, inputs, 4, &o, &q3, &qs3, NULL, &d), OSSEG_EINVAL);
  assert_non_null(strstr(d.message, "placement"));
  assert_null(q3);
  enum osseg_qdq_placement pl;
  assert_int_equal(osseg_qdq_placement_parse("ort", &pl), 0);
  assert_int_equal(pl, OSSEG_QDQ_ORT);
  assert_int_equal(osseg_qdq_placement_parse("convs", &pl), 0);
  assert_int_equal(pl, OSSEG_QDQ_CONVS);
  assert_int_equal(osseg_qdq_placement_parse("qdq", &pl), OSSEG_EINVAL);
  assert_string_equal(osseg_qdq_placement_name(OSSEG_QDQ_ORT), "ort");
  osseg_quantize_report_free(&r);
  osseg_quantize_report_free(&r2);
  osseg__free(q);
  osseg__free(q2);
  npy_free(&calib);
  npy_free(&input);
  npy_free(&ref);
  free(onnx);
}

/* Every allocation of a quantization in ONNX Runtime's placement failing in
 * turn: a clean OSSEG_ENOMEM (or the backend's error, or protobuf-c's parse
 * failure, which cannot tell out of memory from a bad file) with nothing written,
 * until it succeeds (leaks: the ASan build). */
static void test_alloc_failure_sweep(void **state) {
  (void)state;
  size_t size = 0;
  struct npy_array calib;
  char *onnx = read_ort_fixture(&size, &calib);
  if (!onnx) {
    skip();
    return;
  }
  const float *inputs[2] = {calib.data, calib.data + calib.count / (size_t)calib.dims[0]};
  struct osseg_quantize_options o = opts(OSSEG_CALIB_MINMAX);
  o.placement = OSSEG_QDQ_ORT;
  o.eval_precision = OSSEG_PRECISION_FP32;
  uint64_t n;
  int ok = 0;
  for (n = 1; n < 100000 && !ok; n++) {
    void *q = NULL;
    size_t qs = 0;
    struct osseg_quantize_report r;
    struct osseg_diag d = {0};
    osseg__alloc_fail_at(n);
    int err = osseg_quantize(onnx, size, inputs, 2, &o, &q, &qs, &r, &d);
    osseg__alloc_fail_at(0);
    if (!err) {
      ok = 1;
      assert_true(qs > 0);
      osseg_quantize_report_free(&r);
      osseg__free(q);
    } else {
      if (err != OSSEG_ENOMEM && err != OSSEG_EBACKEND && err != OSSEG_EPARSE)
        fail_msg("allocation %llu: %s", (unsigned long long)n, d.message);
      assert_null(q);
      assert_int_equal(qs, 0);
    }
  }
  assert_true(ok);
  assert_true(n > 50);
  print_message("allocation sweep: %llu failing quantizations, clean\n", (unsigned long long)n - 1);
  npy_free(&calib);
  free(onnx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_minmax_round_trip), cmocka_unit_test(test_methods),
      cmocka_unit_test(test_fp32_layers),       cmocka_unit_test(test_fp32_auto),
      cmocka_unit_test(test_batchnorm_folded),  cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_observer),          cmocka_unit_test(test_ort_placement),
      cmocka_unit_test(test_alloc_failure_sweep),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
