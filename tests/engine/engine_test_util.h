/* Shared helpers of the engine tests: load a model and compare against a
 * reference .npy written by tools/fixtures. */
#ifndef OSSEG_TESTS_ENGINE_UTIL_H
#define OSSEG_TESTS_ENGINE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "npy.h"
#include "osseg_engine.h"

struct parity {
  double rel_err;   /* max|a-b| / max|b| */
  double mask_agree; /* fraction with (a>0) == (b>0) */
};

/* Loads dir/name.onnx, runs it on name.input.npy and compares with
 * name.output.npy. Returns 0 or an error (message in diag). */
int engine_parity(const char *dir, const char *name, const struct osseg_engine_options *o,
                  struct parity *p, struct osseg_diag *diag);

/* Every fixture NAME.onnx in dir with a NAME.output.npy: fp32 within
 * 1e-4 of max|ref|, bf16 within 0.1 (it must run and stay close on these
 * small graphs). The fixture "symbolic_size" runs with input size 16.
 * Returns how many were checked. */
int engine_dir_parity(const char *dir);

/* A loaded fixture ready to run: dir/name.onnx, its name.input.npy and a
 * malloc'ed output buffer. engine_fixture_free releases all three. */
struct engine_fixture {
  struct osseg_model *m;
  struct npy_array in;
  float *out;
  size_t nout;
};
void engine_fixture_load(struct engine_fixture *f, const char *dir, const char *name,
                         const struct osseg_engine_options *o);
void engine_fixture_free(struct engine_fixture *f);
const char *engine_models_dir(void); /* tests/data/models */

/* Engine options of the tests: precision p, 2 threads, other defaults. */
/* Engine threads for a test: `wanted`, or 1 under ThreadSanitizer. */
int engine_test_threads(int wanted);
struct osseg_engine_options engine_test_opts(enum osseg_precision p);

/* Asserts that loading dir/file fails with code and a message containing
 * needle, and leaves no model behind. */
void expect_load_error(const char *dir, const char *file, int code, const char *needle);
/* The same at precision p. */
void expect_load_error_opts(const char *dir, const char *file, enum osseg_precision p, int code,
                            const char *needle);

/* Loads buf truncated at `cuts` evenly spaced points (asserting more than
 * 50 clean failures with a message and no model), then `iters` copies with
 * 1-4 random bytes flipped (seeded): each must fail cleanly or give a model
 * that runs. Memory safety is checked by the ASan build. */
void engine_check_damaged(const char *buf, size_t size, size_t cuts, int iters, uint64_t seed);

/* Fails the Nth allocation of a load for N = 1, 2, ... until a load
 * succeeds (at most max_n): every failure must be a clean error with no
 * model. Returns the number of loads tried. */
uint64_t engine_alloc_sweep(const char *buf, size_t size, uint64_t max_n);
/* The same with options o (fp32 above). */
uint64_t engine_alloc_sweep_opts(const char *buf, size_t size, uint64_t max_n,
                                 const struct osseg_engine_options *o);

#endif
