/* Interruptible runs (engine/execute.c) and the engine's silence: a cancel
 * flag set after any step stops the run with OSSEG_ECANCELED and the next
 * run is exact; a passed deadline gives OSSEG_ETIMEDOUT; warnings and the
 * profile go to the log callback, never to stderr. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine_test_hooks.h"
#include "engine_test_util.h"
#include "osseg_engine.h"
#include "test_support.h"

/* Sets the flag when step `at` finishes; records the last step seen. */
struct cancel_hook {
  _Atomic int flag;
  int at;
  int last;
  int calls;
};

static void on_step(void *ctx, int step) {
  struct cancel_hook *h = ctx;
  h->last = step;
  h->calls++;
  if (step == h->at) atomic_store(&h->flag, 1);
}

/* For every k: cancel after step k -> OSSEG_ECANCELED, no step after k ran;
 * (after the last step the run is complete and succeeds); then a normal run
 * equals the uninterrupted reference bit for bit. Models with the own loops
 * (Winograd, depthwise, attention, upconv scatter) in their step lists. */
static void test_cancel_after_every_step(void **state) {
  (void)state;
  static const struct { const char *dir, *name; } cases[] = {
      {"models", "unetpp_r18_tiny_op13"},  /* upconv, concat, Winograd */
      {"models", "segformer_tiny_op13"},   /* attention, transformer ops */
      {"models", "deeplabv3p_r50_tiny_op13"}, /* dilated depthwise (own loop) */
      {"engine", "wg_chunks"},             /* Winograd with several chunks */
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/data/%s", test_source_dir(), cases[c].dir);
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
    struct engine_fixture f;
    engine_fixture_load(&f, dir, cases[c].name, &o);
    struct osseg_model_stats st;
    osseg_model_get_stats(f.m, &st);
    float *ref = malloc(f.nout * sizeof(float));
    assert_non_null(ref);
    assert_int_equal(osseg_model_run(f.m, f.in.data, ref, NULL), 0);
    struct cancel_hook h;
    struct osseg_run_control ctl = {&h.flag, 0};
    osseg__model_set_step_hook(f.m, on_step, &h);
    for (int k = 0; k < st.steps; k++) {
      atomic_store(&h.flag, 0);
      h.at = k, h.last = -1, h.calls = 0;
      struct osseg_diag diag;
      osseg_diag_clear(&diag);
      memset(f.out, 0xff, f.nout * sizeof(float));
      int err = osseg_model_run_ctl(f.m, f.in.data, f.out, &ctl, &diag);
      if (k < st.steps - 1) {
        if (err != OSSEG_ECANCELED) print_error("%s step %d: %d %s\n", cases[c].name, k, err, diag.message);
        assert_int_equal(err, OSSEG_ECANCELED);
        assert_int_equal(diag.code, OSSEG_ECANCELED);
        assert_non_null(strstr(diag.message, "canceled"));
      } else {
        assert_int_equal(err, 0); /* the flag came after the last step */
        assert_memory_equal(f.out, ref, f.nout * sizeof(float));
      }
      assert_int_equal(h.last, k);
      assert_int_equal(h.calls, k + 1);
      /* usable afterwards: the same result as an uninterrupted run */
      atomic_store(&h.flag, 0);
      h.at = -1;
      memset(f.out, 0, f.nout * sizeof(float));
      assert_int_equal(osseg_model_run_ctl(f.m, f.in.data, f.out, &ctl, NULL), 0);
      assert_memory_equal(f.out, ref, f.nout * sizeof(float));
    }
    print_message("%-26s canceled after each of %d steps, then exact\n", cases[c].name, st.steps);
    osseg__model_set_step_hook(f.m, NULL, NULL);
    free(ref);
    engine_fixture_free(&f);
  }
}

/* A deadline already passed: OSSEG_ETIMEDOUT before any step; a distant
 * one changes nothing; a cancel flag already set: OSSEG_ECANCELED. */
static void test_deadline(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", engine_models_dir());
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
  struct engine_fixture f;
  engine_fixture_load(&f, dir, "unetpp_r18_tiny_op13", &o);
  float *ref = malloc(f.nout * sizeof(float));
  assert_non_null(ref);
  assert_int_equal(osseg_model_run(f.m, f.in.data, ref, NULL), 0);
  struct cancel_hook h = {0};
  h.at = -1;
  osseg__model_set_step_hook(f.m, on_step, &h);
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  struct osseg_run_control past = {NULL, osseg_now_ns() - 1};
  assert_int_equal(osseg_model_run_ctl(f.m, f.in.data, f.out, &past, &diag), OSSEG_ETIMEDOUT);
  assert_int_equal(diag.code, OSSEG_ETIMEDOUT);
  assert_string_equal(osseg_strerror(OSSEG_ETIMEDOUT), "deadline exceeded");
  assert_string_equal(osseg_err_name(OSSEG_ETIMEDOUT), "OSSEG_ETIMEDOUT");
  assert_int_equal(h.calls, 0);
  struct osseg_run_control later = {NULL, osseg_now_ns() + 3600ull * 1000000000ull};
  assert_int_equal(osseg_model_run_ctl(f.m, f.in.data, f.out, &later, NULL), 0);
  assert_memory_equal(f.out, ref, f.nout * sizeof(float));
  atomic_store(&h.flag, 1);
  struct osseg_run_control canceled = {&h.flag, 0};
  h.calls = 0;
  assert_int_equal(osseg_model_run_ctl(f.m, f.in.data, f.out, &canceled, NULL), OSSEG_ECANCELED);
  assert_int_equal(h.calls, 0);
  /* both: the flag wins */
  struct osseg_run_control both = {&h.flag, osseg_now_ns() - 1};
  assert_int_equal(osseg_model_run_ctl(f.m, f.in.data, f.out, &both, NULL), OSSEG_ECANCELED);
  struct osseg_run_control none = {NULL, 0};
  assert_int_equal(osseg_model_run_ctl(f.m, f.in.data, f.out, &none, NULL), 0);
  assert_memory_equal(f.out, ref, f.nout * sizeof(float));
  osseg__model_set_step_hook(f.m, NULL, NULL);
  free(ref);
  engine_fixture_free(&f);
}

struct log_seen {
  int warn, info, other;
  int header, total;
};

static void record(void *ctx, enum osseg_log_level level, const char *msg) {
  struct log_seen *s = ctx;
  if (level == OSSEG_LOG_WARN) s->warn++;
  else if (level == OSSEG_LOG_INFO) s->info++;
  else s->other++;
  if (!strncmp(msg, "step kind node op", 17)) s->header++;
  if (!strncmp(msg, "total ", 6)) s->total++;
  assert_null(strchr(msg, '\n'));
  assert_null(strstr(msg, "osseg profile:"));
}

/* The engine never prints: with a log callback at the highest level and the
 * profile on, stderr (fd 2) stays empty through load, runs and free, while
 * the callback gets the profile table (header, one line per step, total)
 * and, where bf16 is emulated, the warnings about its convs. Then the
 * same with no callback at all. */
static void test_engine_never_prints(void **state) {
  (void)state;
  char dir[4096], errfile[4096];
  snprintf(dir, sizeof dir, "%s", engine_models_dir());
  snprintf(errfile, sizeof errfile, "%s/stderr.txt", test_tmpdir());
  for (int with_log = 1; with_log >= 0; with_log--) {
    struct log_seen seen = {0};
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_BF16);
    o.profile = 1;
    if (with_log) o.log = (struct osseg_log){record, &seen, OSSEG_LOG_DEBUG};
    fflush(stderr);
    int saved = dup(2);
    int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    struct engine_fixture f;
    engine_fixture_load(&f, dir, "unetpp_r18_tiny_op13", &o);
    struct osseg_model_stats st;
    osseg_model_get_stats(f.m, &st);
    int e1 = osseg_model_run(f.m, f.in.data, f.out, NULL);
    int e2 = osseg_model_run(f.m, f.in.data, f.out, NULL);
    engine_fixture_free(&f);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(e1, 0);
    assert_int_equal(e2, 0);
    struct stat sb;
    assert_int_equal(stat(errfile, &sb), 0);
    if (sb.st_size) {
      size_t n;
      char *text = test_read_file(errfile, &n);
      print_error("stderr: %s\n", text ? text : "?");
      free(text);
    }
    assert_int_equal(sb.st_size, 0);
    if (!with_log) continue;
    print_message("log: %d warnings, %d profile lines (%d steps)\n", seen.warn, seen.info, st.steps);
    assert_int_equal(seen.header, 2);
    assert_int_equal(seen.total, 2);
    assert_int_equal(seen.info, 2 * (st.steps + 2));
    if (!osseg_engine_bf16_native(NULL)) assert_true(seen.warn > 0);
    assert_int_equal(seen.other, 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_engine_never_prints),
      cmocka_unit_test(test_cancel_after_every_step),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
