#include "engine_test_util.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_support.h"

int engine_parity(const char *dir, const char *name, const struct osseg_engine_options *o,
                  struct parity *p, struct osseg_diag *diag) {
  struct npy_array in = {0}, ref = {0};
  struct osseg_model *m = NULL;
  float *out = NULL;
  int err = npy_read(test_path("%s/%s.input.npy", dir, name), 1 << 30, &in, diag);
  if (!err) err = npy_read(test_path("%s/%s.output.npy", dir, name), 1 << 30, &ref, diag);
  if (!err) err = osseg_model_load(&m, test_path("%s/%s.onnx", dir, name), o, diag);
  if (!err && (osseg_model_input_elems(m) != in.count || osseg_model_output_elems(m) != ref.count))
    err = osseg__fail(diag, OSSEG_ESHAPE, "%s: element counts differ", name);
  if (!err) {
    out = malloc(ref.count * sizeof(float));
    err = out ? osseg_model_run(m, in.data, out, diag) : OSSEG_ENOMEM;
  }
  if (!err) {
    double mx = 0, md = 0;
    size_t agree = 0;
    for (size_t i = 0; i < ref.count; i++) {
      double d = fabs((double)out[i] - ref.data[i]);
      if (!(d <= md)) md = d; /* NaN propagates as failure */
      if (fabs(ref.data[i]) > mx) mx = fabs(ref.data[i]);
      agree += (out[i] > 0) == (ref.data[i] > 0);
    }
    p->rel_err = mx > 0 ? md / mx : md;
    p->mask_agree = ref.count ? (double)agree / (double)ref.count : 1;
  }
  free(out);
  osseg_model_free(m);
  npy_free(&in);
  npy_free(&ref);
  return err;
}

struct osseg_engine_options engine_test_opts(enum osseg_precision p) {
  struct osseg_engine_options o;
  osseg_engine_options_default(&o);
  o.precision = p;
  o.threads = 2;
  return o;
}

void expect_load_error(const char *dir, const char *file, int code, const char *needle) {
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
  int err = osseg_model_load(&m, test_path("%s/%s", dir, file), &o, &diag);
  if (err != code || !strstr(diag.message, needle))
    print_error("%s: got %d '%s', want %d '%s'\n", file, err, diag.message, code, needle);
  assert_int_equal(err, code);
  assert_non_null(strstr(diag.message, needle));
  assert_null(m);
}
