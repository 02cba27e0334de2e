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
#include <dirent.h>

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

void engine_fixture_load(struct engine_fixture *f, const char *dir, const char *name,
                         const struct osseg_engine_options *o) {
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  memset(f, 0, sizeof *f);
  int err = npy_read(test_path("%s/%s.input.npy", dir, name), 1 << 30, &f->in, &diag);
  if (!err) err = osseg_model_load(&f->m, test_path("%s/%s.onnx", dir, name), o, &diag);
  if (err) print_error("%s: %s\n", name, diag.message);
  assert_int_equal(err, 0);
  assert_int_equal(osseg_model_input_elems(f->m), f->in.count);
  f->nout = osseg_model_output_elems(f->m);
  f->out = malloc(f->nout * sizeof(float));
  assert_non_null(f->out);
}

void engine_fixture_free(struct engine_fixture *f) {
  osseg_model_free(f->m);
  npy_free(&f->in);
  free(f->out);
  memset(f, 0, sizeof *f);
}

const char *engine_models_dir(void) { return test_path("%s/tests/data/models", test_source_dir()); }

int engine_test_threads(int wanted) {
#ifdef __SANITIZE_THREAD__
  /* libgomp is not instrumented: under ThreadSanitizer an OpenMP team's
   * hand-offs look like races, so the TSan build runs one thread a model
   * (the threads under test are the callers and the executor). */
  (void)wanted;
  return 1;
#else
  return wanted;
#endif
}

struct osseg_engine_options engine_test_opts(enum osseg_precision p) {
  struct osseg_engine_options o;
  osseg_engine_options_default(&o);
  o.precision = p;
  o.threads = engine_test_threads(2);
  return o;
}

void expect_load_error(const char *dir, const char *file, int code, const char *needle) {
  expect_load_error_opts(dir, file, OSSEG_PRECISION_FP32, code, needle);
}

void expect_load_error_opts(const char *dir, const char *file, enum osseg_precision p, int code,
                            const char *needle) {
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  struct osseg_engine_options o = engine_test_opts(p);
  int err = osseg_model_load(&m, test_path("%s/%s", dir, file), &o, &diag);
  if (err != code || !strstr(diag.message, needle))
    print_error("%s: got %d '%s', want %d '%s'\n", file, err, diag.message, code, needle);
  assert_int_equal(err, code);
  assert_non_null(strstr(diag.message, needle));
  assert_null(m);
}

void engine_check_damaged(const char *buf, size_t size, size_t cuts, int iters, uint64_t seed) {
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
  o.max_tensor_bytes = 64 << 20;
  int failures = 0;
  for (size_t cut = 0; cut < size; cut += size / cuts + 1) {
    struct osseg_model *m = NULL;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    if (osseg_model_load_buffer(&m, buf, cut, &o, &diag)) {
      failures++;
      assert_true(diag.message[0] != 0);
      assert_null(m);
    }
    osseg_model_free(m);
  }
  assert_true(failures > 50);
  struct test_rng rng;
  test_rng_seed(&rng, seed);
  char *copy = malloc(size);
  assert_non_null(copy);
  for (int it = 0; it < iters; it++) {
    memcpy(copy, buf, size);
    int flips = 1 + (int)test_rng_below(&rng, 4);
    for (int k = 0; k < flips; k++)
      copy[test_rng_below(&rng, size)] ^= (char)(1 + test_rng_below(&rng, 255));
    struct osseg_model *m = NULL;
    if (osseg_model_load_buffer(&m, copy, size, &o, NULL) == 0) {
      size_t ni = osseg_model_input_elems(m), no = osseg_model_output_elems(m);
      if (ni <= (1u << 20) && no <= (1u << 22)) {
        float *in = calloc(ni, sizeof(float)), *out = malloc(no * sizeof(float));
        if (in && out) osseg_model_run(m, in, out, NULL);
        free(in);
        free(out);
      }
    }
    osseg_model_free(m);
  }
  free(copy);
}

uint64_t engine_alloc_sweep(const char *buf, size_t size, uint64_t max_n) {
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
  return engine_alloc_sweep_opts(buf, size, max_n, &o);
}

uint64_t engine_alloc_sweep_opts(const char *buf, size_t size, uint64_t max_n,
                                 const struct osseg_engine_options *opts) {
  struct osseg_engine_options o = *opts;
  uint64_t n;
  int ok = 0;
  for (n = 1; n < max_n && !ok; n++) {
    struct osseg_model *m = NULL;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    osseg__alloc_fail_at(n);
    int err = osseg_model_load_buffer(&m, buf, size, &o, &diag);
    osseg__alloc_fail_at(0);
    if (err == 0) {
      ok = 1;
      osseg_model_free(m);
    } else {
      assert_null(m);
      assert_true(err == OSSEG_ENOMEM || err == OSSEG_EPARSE || err == OSSEG_ELIMIT ||
                  err == OSSEG_EBACKEND);
    }
  }
  assert_true(ok);
  return n;
}

int engine_dir_parity(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *e;
  int count = 0;
  const char *suf = ".output.npy";
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l <= strlen(suf) || strcmp(e->d_name + l - strlen(suf), suf)) continue;
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(l - strlen(suf)), e->d_name);
    static const enum osseg_precision precs[2] = {OSSEG_PRECISION_FP32, OSSEG_PRECISION_BF16};
    static const double tol[2] = {1e-4, 0.1};
    for (int i = 0; i < 2; i++) {
      struct osseg_engine_options o = engine_test_opts(precs[i]);
      if (!strcmp(name, "symbolic_size")) o.input_size = 16;
      struct parity p;
      struct osseg_diag diag;
      osseg_diag_clear(&diag);
      int err = engine_parity(dir, name, &o, &p, &diag);
      if (err || p.rel_err > tol[i])
        print_error("%s %s: err %d (%s) rel %.3g\n", name, osseg_precision_name(precs[i]), err,
                    diag.message, err ? -1.0 : p.rel_err);
      assert_int_equal(err, 0);
      assert_true(p.rel_err <= tol[i]);
    }
    count++;
  }
  closedir(d);
  return count;
}
