/* Engine tests: per-op parity against PyTorch references
 * (tests/data/engine, from tools/fixtures/make_op_tests.py), whole-model
 * parity on the smp-like fixtures (tests/data/models), error paths,
 * truncated/corrupted files, and an allocation-failure sweep over load. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "engine_test_hooks.h"
#include "engine_test_util.h"
#include "npy.h"
#include "osseg_base.h"
#include "osseg_engine.h"
#include "test_support.h"

static const char *engine_dir(void) { return test_path("%s/tests/data/engine", test_source_dir()); }

/* Every per-op graph (engine_dir_parity: fp32 and bf16). */
static void test_op_parity(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", engine_dir());
  /* All 77 op fixtures of tests/data/engine (more may be added): losing
   * some, or the whole directory, fails here. */
  int count = engine_dir_parity(dir);
  assert_true(count >= 77);
}

/* smp-like fixtures (tools/fixtures/make_fixtures.py): CNN families. */
static void test_model_parity(void **state) {
  (void)state;
  static const char *names[] = {
      "unetpp_r18_tiny_op11", "unetpp_r18_tiny_op13", "unetpp_r18_tiny_op17",
      "unetpp_r18_tiny_op13_nofold", "unetpp_r18_tiny_op13_96x64", "unetpp_r50_tiny_op13",
      "unet_effb0_tiny_op13", "unet_timm_effb0_tiny_op13", "deeplabv3p_r50_tiny_op13",
      "deeplabv3p_r50_tiny_op13_nofold"};
  const char *dir = test_path("%s/tests/data/models", test_source_dir());
  char d[4096];
  snprintf(d, sizeof d, "%s", dir);
  /* Every listed fixture must be there and run: a missing one (or a lost
   * tests/data/models) fails instead of shrinking the test to nothing. */
  size_t checked = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/%s.onnx", d, names[i]);
    FILE *f = fopen(probe, "rb");
    if (!f) {
      print_error("%s: fixture missing\n", probe);
      continue;
    }
    fclose(f);
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
    struct parity p;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    int err = engine_parity(d, names[i], &o, &p, &diag);
    print_message("%-34s fp32 rel %.2e mask %.6f\n", names[i], p.rel_err, p.mask_agree);
    if (err) print_error("%s: %s\n", names[i], diag.message);
    assert_int_equal(err, 0);
    assert_true(p.rel_err <= 1e-4);
    assert_true(p.mask_agree >= 0.9999);
    o.precision = OSSEG_PRECISION_BF16;
    err = engine_parity(d, names[i], &o, &p, &diag);
    print_message("%-34s bf16 rel %.2e mask %.6f\n", names[i], p.rel_err, p.mask_agree);
    assert_int_equal(err, 0);
    /* Tiny random-weight fixtures put many logits near 0; real exports
     * are checked separately (bench/). */
    assert_true(p.mask_agree >= 0.9);
    checked++;
  }
  assert_int_equal(checked, sizeof names / sizeof names[0]);
}

/* Steps of a model loaded with the given options (0 on load failure) and
 * its arena size. */
static int load_stats(const char *dir, const char *name, const struct osseg_engine_options *o,
                      struct osseg_model_stats *st) {
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  int err = osseg_model_load(&m, test_path("%s/%s.onnx", dir, name), o, &diag);
  if (err) return err;
  osseg_model_get_stats(m, st);
  osseg_model_free(m);
  return 0;
}

static int model_steps(const char *dir, const char *name, const struct osseg_engine_options *o,
                       uint64_t *arena) {
  struct osseg_model_stats st;
  if (load_stats(dir, name, o, &st)) return 0;
  *arena = st.arena_bytes;
  return st.steps;
}

/* Parity of dir/name with its PyTorch output under o (which must run) and
 * the stats of the compiled model. */
static struct parity parity_stats(const char *dir, const char *name,
                                  const struct osseg_engine_options *o,
                                  struct osseg_model_stats *st) {
  struct parity p;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  int err = engine_parity(dir, name, o, &p, &diag);
  if (err) print_error("%s: %s\n", name, diag.message);
  assert_int_equal(err, 0);
  assert_int_equal(load_stats(dir, name, o, st), 0);
  return p;
}

/* Conv over nearest-2x upsample (+ concat) is rewritten into phase convs
 * (passes/fuse_upconv.c): the rewrite must actually happen on the decoder pattern (Resize
 * + Concat + Conv = 3 steps become phase conv + interleave + one conv per
 * other concat input), match PyTorch in both precisions (test_op_parity runs
 * the same files), and the option no_upconv must give the plain path the
 * same answer. */
static void test_upconv_rewrite(void **state) {
  (void)state;
  const char *dir = engine_dir();
  char d[4096];
  snprintf(d, sizeof d, "%s", dir);
  static const struct { const char *name; int extra; } cases[] = {
      {"upconv_cat", 1}, {"upconv_cat_op11", 1}, {"upconv_pure", 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
    uint64_t fused_arena = 0, plain_arena = 0;
    int fused = model_steps(d, cases[i].name, &o, &fused_arena);
    o.no_upconv = 1;
    int plain = model_steps(d, cases[i].name, &o, &plain_arena);
    struct parity p;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    int err = engine_parity(d, cases[i].name, &o, &p, &diag);
    o.no_upconv = 0;
    print_message("%-16s steps fused %d plain %d, plain rel %.2e\n", cases[i].name, fused, plain,
                  p.rel_err);
    assert_int_equal(err, 0);
    assert_true(p.rel_err <= 1e-4);
    assert_true(fused > 0 && plain > 0);
    assert_int_equal(fused, plain + cases[i].extra);
    /* neither the upsampled tensor nor the concat exists any more */
    assert_true(fused_arena != plain_arena);
    for (int prec = 0; prec < 2; prec++) {
      o.precision = prec ? OSSEG_PRECISION_BF16 : OSSEG_PRECISION_FP32;
      err = engine_parity(d, cases[i].name, &o, &p, &diag);
      print_message("%-16s %s fused rel %.2e\n", cases[i].name, prec ? "bf16" : "fp32", p.rel_err);
      assert_int_equal(err, 0);
      assert_true(p.rel_err <= (prec ? 0.02 : 1e-5));
    }
  }
}

/* Parity with the option bf16_tail set to `tail` (NULL: the default). */
/* Big stride-1 convs run as bands of output rows (conv.c banded_conv, so
 * that a run can be interrupted between them): with the threshold forced
 * down, the upconv fixtures (phase conv and skip convs, with the sum and
 * ReLU epilogues) and a whole UNet++ split into many more steps and still
 * match PyTorch. */
static void test_conv_bands(void **state) {
  (void)state;
  static const struct { const char *dir, *name; } cases[] = {
      {"engine", "upconv_cat"}, {"engine", "upconv_cat_op11"},
      {"models", "unetpp_r18_tiny_op13"}, {"models", "unetpp_r50_tiny_op13"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char d[4096];
    snprintf(d, sizeof d, "%s/tests/data/%s", test_source_dir(), cases[i].dir);
    for (int prec = 0; prec < 2; prec++) {
      struct osseg_engine_options o =
          engine_test_opts(prec ? OSSEG_PRECISION_BF16 : OSSEG_PRECISION_FP32);
      o.no_winograd = 1; /* (Winograd-eligible convs are chunked instead) */
      struct osseg_model_stats whole, banded;
      struct parity p0 = parity_stats(d, cases[i].name, &o, &whole);
      osseg__set_conv_band_flops(1);
      struct parity p1 = parity_stats(d, cases[i].name, &o, &banded);
      osseg__set_conv_band_flops(0);
      print_message("%-22s %s steps %d -> %d banded, rel %.2e -> %.2e\n", cases[i].name,
                    prec ? "bf16" : "fp32", whole.steps, banded.steps, p0.rel_err, p1.rel_err);
      assert_true(banded.steps > whole.steps);
      /* as close to PyTorch as one primitive (bf16 on these random-weight
       * models: ~0.06 either way) */
      assert_true(fabs(p1.rel_err - p0.rel_err) <= (prec ? 0.01 : 1e-6));
      if (!prec) assert_true(p1.rel_err <= 1e-4);
    }
  }
}

static int parity_env(const char *dir, const char *name, enum osseg_precision prec,
                      const char *tail, struct parity *p) {
  struct osseg_engine_options o = engine_test_opts(prec);
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (tail) o.bf16_tail = atoi(tail);
  int err = engine_parity(dir, name, &o, p, &diag);
  if (err) print_error("%s %s tail %s: %s\n", name, osseg_precision_name(prec), tail ? tail : "-",
                       diag.message);
  return err;
}

/* bf16 precision split (compile.c node_dt): every boundary between fp32
 * and bf16 nodes (pool, residual sum, concat, upconv inputs converted by a
 * reorder) must work for any bf16-mixed cut-off; bf16-mixed with no cut-off
 * (bf16_tail -1) is exactly bf16, which ignores the option; and the
 * default mixed split is not worse than bf16. */
static void test_bf16_mixed_precision(void **state) {
  (void)state;
  static const char *names[] = {"unetpp_r18_tiny_op13", "unetpp_r50_tiny_op13",
                                "unet_effb0_tiny_op13", "deeplabv3p_r50_tiny_op13"};
  const char *dir = test_path("%s/tests/data/models", test_source_dir());
  char d[4096];
  snprintf(d, sizeof d, "%s", dir);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    struct parity plain, plain_env, p;
    assert_int_equal(parity_env(d, names[i], OSSEG_PRECISION_BF16, NULL, &plain), 0);
    assert_int_equal(parity_env(d, names[i], OSSEG_PRECISION_BF16, "3", &plain_env), 0);
    assert_true(plain_env.rel_err == plain.rel_err);
    print_message("%-26s bf16            rel %.2e mask %.6f\n", names[i], plain.rel_err,
                  plain.mask_agree);
    for (int tail = -1; tail <= 4; tail++) {
      char v[16];
      snprintf(v, sizeof v, "%d", tail);
      assert_int_equal(parity_env(d, names[i], OSSEG_PRECISION_BF16_MIXED, tail == 4 ? NULL : v, &p), 0);
      print_message("%-26s bf16-mixed %-4s rel %.2e mask %.6f\n", names[i], tail == 4 ? "def" : v,
                    p.rel_err, p.mask_agree);
      assert_true(p.mask_agree >= 0.9);
      if (tail == -1) assert_true(p.rel_err == plain.rel_err);
      if (tail == 4) assert_true(p.rel_err <= plain.rel_err);
    }
  }
}

/* bf16 mask agreement with PyTorch fp32 on the EfficientNet and DeepLabV3+
 * fixtures. bf16-mixed: before the squeeze-excitation vectors were kept in
 * fp32 and the DeepLab cut-off was measured against the pre-upsample logits
 * (compile.c node_dt), these were 0.9798 (effb0) and 0.9824 (DeepLab) on
 * AVX512_BF16; then 0.9864 and 0.99998. bf16 (no cut-off): 0.9534,
 * 0.9857 and 0.9605 on these tiny random-weight models. */
static void test_bf16_mask_agreement(void **state) {
  (void)state;
  static const struct { const char *name; enum osseg_precision prec; double min_agree; } cases[] = {
      {"unet_effb0_tiny_op13", OSSEG_PRECISION_BF16_MIXED, 0.985},
      {"unet_timm_effb0_tiny_op13", OSSEG_PRECISION_BF16_MIXED, 0.985},
      {"deeplabv3p_r50_tiny_op13", OSSEG_PRECISION_BF16_MIXED, 0.999},
      {"unet_effb0_tiny_op13", OSSEG_PRECISION_BF16, 0.945},
      {"unet_timm_effb0_tiny_op13", OSSEG_PRECISION_BF16, 0.98},
      {"deeplabv3p_r50_tiny_op13", OSSEG_PRECISION_BF16, 0.95}};
  const char *dir = test_path("%s/tests/data/models", test_source_dir());
  char d[4096];
  snprintf(d, sizeof d, "%s", dir);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct parity p;
    assert_int_equal(parity_env(d, cases[i].name, cases[i].prec, NULL, &p), 0);
    print_message("%-26s %-10s mask %.6f (min %.3f)\n", cases[i].name,
                  osseg_precision_name(cases[i].prec), p.mask_agree, cases[i].min_agree);
    assert_true(p.mask_agree >= cases[i].min_agree);
  }
}

/* A zero spatial Pad whose only consumer is a Conv becomes the Conv's pads
 * (engine/passes/fold_pad.c): one step fewer, same result; reflect, non-zero and shared
 * Pads stay steps of their own. Under bf16 the folded conv reads the image
 * itself and so stays fp32 (as a padded stem conv of smp's EfficientNet
 * should). */
static void test_pad_folding(void **state) {
  (void)state;
  static const struct { const char *name; int steps; enum osseg_precision prec; } cases[] = {
      {"pad_fold_conv", 3, OSSEG_PRECISION_FP32},    {"pad_reflect_conv", 4, OSSEG_PRECISION_FP32},
      {"pad_value_conv", 4, OSSEG_PRECISION_FP32},   {"pad_shared_conv", 5, OSSEG_PRECISION_FP32},
      {"pad_fold_conv", 3, OSSEG_PRECISION_BF16}};
  char d[4096];
  snprintf(d, sizeof d, "%s", engine_dir());
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct osseg_engine_options o = engine_test_opts(cases[i].prec);
    struct osseg_model_stats st;
    struct parity p = parity_stats(d, cases[i].name, &o, &st);
    print_message("%-18s %s rel %.2e, %d steps\n", cases[i].name, osseg_precision_name(cases[i].prec),
                  p.rel_err, st.steps);
    assert_true(p.rel_err <= 1e-5);
    assert_int_equal(st.steps, cases[i].steps);
  }
}

/* 3x3 / 2x2 stride-1 fp32 convs with >= 32 channels run by Winograd
 * F(2x2, 3x3) / F(2x2, 2x2) (engine/ops/conv_winograd.c): parity with PyTorch on odd
 * maps (partial tiles),
 * pads 0/1/2, several chunks, the residual sum + ReLU epilogue and the
 * upconv's skip convs; the same through oneDNN's direct conv with
 * the option no_winograd; the same result for 1 and 2 threads; under bf16 only
 * the convs reading the image (which stay fp32) use it. Runs at every CPU
 * level (ISA variants of the transforms). */
static void test_winograd(void **state) {
  (void)state;
  static const struct { const char *name; int convs, convs_bf16; } cases[] = {
      {"wg_plain", 1, 1}, {"wg_pads", 3, 1}, {"wg_chunks", 1, 1}, {"wg_k2", 2, 1}, {"wg_residual", 2, 0},
      {"wg_upconv_cat", 2, 0}}; /* upconv: the 2x2 phase conv (F(2x2, 2x2)) and the skip conv */
  char d[4096];
  snprintf(d, sizeof d, "%s", engine_dir());
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    double rel_2threads = -1;
    for (int mode = 0; mode < 4; mode++) { /* wg 2 threads, wg 1 thread, direct, bf16 */
      struct osseg_engine_options o =
          engine_test_opts(mode == 3 ? OSSEG_PRECISION_BF16 : OSSEG_PRECISION_FP32);
      if (mode == 1) o.threads = 1;
      o.no_winograd = mode == 2;
      struct osseg_model_stats st;
      struct parity p = parity_stats(d, cases[i].name, &o, &st);
      static const char *mode_name[] = {"winograd 2T", "winograd 1T", "direct", "bf16"};
      print_message("%-14s %-11s rel %.2e, %d Winograd convs\n", cases[i].name, mode_name[mode],
                    p.rel_err, st.winograd_convs);
      assert_true(p.rel_err <= (mode == 3 ? 0.02 : 5e-6));
      assert_int_equal(st.winograd_convs,
                       mode < 2 ? cases[i].convs : mode == 3 ? cases[i].convs_bf16 : 0);
      if (mode == 0) rel_2threads = p.rel_err;
      if (mode == 1) assert_true(p.rel_err == rel_2threads);
    }
  }
}

/* Depthwise convs whose dilated extent is wider than the map (DeepLabV3+'s
 * ASPP): oneDNN runs them as im2col + gemm; engine/ops/conv_depthwise.c replaces that.
 * It also runs every other dilated depthwise conv (oneDNN's jit kernel is
 * slow on them). Parity against PyTorch with the own loop (no slow step
 * left) and, with the option no_dwconv, through oneDNN (where the first three
 * fall back to gemm, which proves they reach the own loop at all). Runs at
 * every CPU level (ISA variants). */
static void test_depthwise_fallback(void **state) {
  (void)state;
  static const struct { const char *name; int onednn_slow; } cases[] = {
      {"dw_dilated_wide", 1}, {"dw_dilated_bias_strided", 1}, {"dw_dilated_rect", 1},
      {"dw_dilated_small", 0}}; /* oneDNN: jit, but 5 GFLOP/s on dilated dw */
  char d[4096];
  snprintf(d, sizeof d, "%s", engine_dir());
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *name = cases[i].name;
    for (int own = 1; own >= 0; own--) {
      for (int prec = 0; prec < 2; prec++) {
        struct osseg_engine_options o =
            engine_test_opts(prec ? OSSEG_PRECISION_BF16 : OSSEG_PRECISION_FP32);
        o.no_dwconv = !own;
        struct osseg_model_stats st;
        struct parity p = parity_stats(d, name, &o, &st);
        print_message("%-24s %s %s: rel %.2e, %d slow steps\n", name, prec ? "bf16" : "fp32",
                      own ? "own loop" : "oneDNN  ", p.rel_err, st.slow_steps);
        assert_true(p.rel_err <= (prec ? 0.01 : 1e-5));
        if (own) assert_int_equal(st.slow_steps, 0);
        else assert_int_equal(st.slow_steps > 0, cases[i].onednn_slow);
      }
    }
  }
}

/* GlobalAveragePool and ReduceMean over a 512x512 map (the first
 * squeeze-excitation of an EfficientNet at 1024^2) against means in double:
 * oneDNN's fp32 pooling/reduction were 1.3e-5 relative off here, which moved
 * UNet-effb0 @1024's logits by 2.4e-4 of their maximum; the own loop
 * (pool.c) must be within 1e-6 and give the same bits for 1 and 2 threads.
 * Under bf16 this graph's output is itself a global vector, so it runs in
 * bf16 through oneDNN's pooling/reduction: the fallback, within bf16's
 * rounding. */
static void test_spatial_mean_accuracy(void **state) {
  (void)state;
  const char *path = test_path("%s/spatial_mean_512.onnx", engine_dir());
  char p[4096];
  snprintf(p, sizeof p, "%s", path);
  const size_t C = 32, HW = 512 * 512;
  float *in = malloc(C * HW * sizeof *in);
  double *ref = calloc(C, sizeof *ref);
  float out[3][64];
  assert_non_null(in);
  assert_non_null(ref);
  struct test_rng rng;
  test_rng_seed(&rng, 20261126);
  for (size_t c = 0; c < C; c++) {
    /* offsets up to 16 with small spread: a long fp32 running sum of such
     * values loses the low bits */
    double off = 1.0 + (double)c * 0.5;
    for (size_t i = 0; i < HW; i++) {
      in[c * HW + i] = (float)(off + test_rng_unit(&rng));
      ref[c] += in[c * HW + i];
    }
    ref[c] /= (double)HW;
  }
  static const struct { enum osseg_precision prec; int threads; } runs[3] = {
      {OSSEG_PRECISION_FP32, 2}, {OSSEG_PRECISION_FP32, 1}, {OSSEG_PRECISION_BF16, 2}};
  for (int r = 0; r < 3; r++) {
    struct osseg_engine_options o = engine_test_opts(runs[r].prec);
    o.threads = runs[r].threads;
    struct osseg_model *m = NULL;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    int err = osseg_model_load(&m, p, &o, &diag);
    if (err) print_error("%s\n", diag.message);
    assert_int_equal(err, 0);
    assert_int_equal(osseg_model_run(m, in, out[r], &diag), 0);
    osseg_model_free(m);
    double worst = 0;
    for (size_t c = 0; c < 2 * C; c++) {
      double e = fabs((double)out[r][c] - ref[c % C]) / ref[c % C];
      if (e > worst) worst = e;
    }
    print_message("spatial mean %s %d threads: max rel err %.2e\n",
                  osseg_precision_name(runs[r].prec), runs[r].threads, worst);
    if (runs[r].prec == OSSEG_PRECISION_BF16) {
      assert_true(worst <= 1.0 / 256);
    } else {
      assert_true(worst <= 1e-6);
      assert_memory_equal(out[r], out[0], sizeof out[0]);
    }
  }
  free(in);
  free(ref);
}

/* Under bf16 the conv producing the logits writes fp32 (compile.c out_dt)
 * and the Resize after it (DeepLabV3+, SegFormer) runs in fp32: the output
 * must not be bf16-rounded values (whose low 16 bits are all zero). */
static void test_bf16_logits_fp32(void **state) {
  (void)state;
  static const char *names[] = {"unetpp_r18_tiny_op13", "deeplabv3p_r50_tiny_op13",
                                "segformer_tiny_op13"};
  char d[4096];
  snprintf(d, sizeof d, "%s", test_path("%s/tests/data/models", test_source_dir()));
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_BF16);
    struct osseg_model *m = NULL;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    assert_int_equal(osseg_model_load(&m, test_path("%s/%s.onnx", d, names[i]), &o, &diag), 0);
    struct npy_array in;
    assert_int_equal(npy_read(test_path("%s/%s.input.npy", d, names[i]), 1u << 30, &in, &diag), 0);
    assert_int_equal(in.count, osseg_model_input_elems(m));
    size_t n = osseg_model_output_elems(m), full = 0;
    float *out = malloc(n * sizeof *out);
    assert_non_null(out);
    assert_int_equal(osseg_model_run(m, in.data, out, &diag), 0);
    for (size_t k = 0; k < n; k++) {
      uint32_t u;
      memcpy(&u, &out[k], 4);
      full += (u & 0xffffu) != 0;
    }
    print_message("%-26s bf16: %zu of %zu logits carry more than bf16's bits\n", names[i], full, n);
    assert_true(full > n / 2);
    free(out);
    npy_free(&in);
    osseg_model_free(m);
  }
}

static void test_errors(void **state) {
  (void)state;
  expect_load_error(engine_dir(), "bad_unsupported_op.onnx", OSSEG_EUNSUPPORTED, "'the_erf_node': op Erf (opset 13)");
  expect_load_error(engine_dir(), "bad_external_data.onnx", OSSEG_EUNSUPPORTED, "external data");
  expect_load_error(engine_dir(), "bad_absurd_dims.onnx", OSSEG_ELIMIT, "tensor 'w'");
  expect_load_error(engine_dir(), "bad_short_data.onnx", OSSEG_EPARSE, "8 values");
  expect_load_error(engine_dir(), "bad_huge_expand.onnx", OSSEG_ELIMIT, "too large");
  expect_load_error(engine_dir(), "bad_cycle.onnx", OSSEG_EPARSE, "not produced by an earlier node");
  expect_load_error(engine_dir(), "bad_opset.onnx", OSSEG_EUNSUPPORTED, "opset 99");
  expect_load_error(engine_dir(), "symbolic_size.onnx", OSSEG_EINVAL, "symbolic size");
  expect_load_error(engine_dir(), "does_not_exist.onnx", OSSEG_EIO, "does_not_exist");
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  assert_int_equal(osseg_model_load_buffer(&m, "", 0, NULL, &diag), OSSEG_EPARSE);
  assert_int_equal(osseg_model_load_buffer(&m, "garbage!", 8, NULL, &diag), OSSEG_EPARSE);
  /* fixed-size model with a different requested size */
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
  o.input_size = 32;
  osseg_diag_clear(&diag);
  assert_int_equal(osseg_model_load(&m, test_path("%s/relu.onnx", engine_dir()), &o, &diag),
                   OSSEG_EINVAL);
  /* an int8 upconv threshold below -1 (never) */
  o = engine_test_opts(OSSEG_PRECISION_FP32);
  o.int8_upconv_min = -2;
  assert_int_equal(osseg_model_load(&m, test_path("%s/relu.onnx", engine_dir()), &o, &diag),
                   OSSEG_EINVAL);
  assert_null(m);
  /* model size limit */
  o = engine_test_opts(OSSEG_PRECISION_FP32);
  o.max_model_bytes = 16;
  assert_int_equal(osseg_model_load(&m, test_path("%s/relu.onnx", engine_dir()), &o, &diag),
                   OSSEG_ELIMIT);
}


/* Steps of a loaded model whose implementation is `impl`. */
static int steps_with_impl(const struct osseg_model *m, const char *impl) {
  int count = 0, n = osseg_model_step_count(m);
  for (int i = 0; i < n; i++) {
    struct osseg_step_info si;
    assert_int_equal(osseg_model_step_info(m, i, &si), 0);
    count += si.impl && !strcmp(si.impl, impl);
  }
  return count;
}

/* The upconv rewrite with the upsample in the middle of a concat and last
 * in another (upconv_cat_mid): both convs rewritten, fp32 and bf16 close
 * to PyTorch, the channels of the other inputs sliced around the
 * upsampled ones. */
static void test_upconv_concat_order(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", engine_dir());
  for (int prec = 0; prec < 2; prec++)
    for (int plain = 0; plain < 2; plain++) {
      struct osseg_engine_options o = engine_test_opts(prec ? OSSEG_PRECISION_BF16 : OSSEG_PRECISION_FP32);
      o.no_upconv = plain;
      struct parity p;
      struct osseg_diag diag;
      osseg_diag_clear(&diag);
      int err = engine_parity(dir, "upconv_cat_mid", &o, &p, &diag);
      if (err) print_error("upconv_cat_mid: %s\n", diag.message);
      assert_int_equal(err, 0);
      print_message("upconv_cat_mid %s %s rel %.2e\n", prec ? "bf16" : "fp32", plain ? "plain" : "fused",
                    p.rel_err);
      assert_true(p.rel_err <= (prec ? 2e-2 : 1e-4));
      struct osseg_model *m = NULL;
      assert_int_equal(osseg_model_load(&m, test_path("%s/upconv_cat_mid.onnx", dir), &o, &diag), 0);
      assert_int_equal(steps_with_impl(m, "own: upconv scatter"), plain ? 0 : 2);
      osseg_model_free(m);
    }
}

/* The int8 upconv rewrite (passes/fuse_upconv.c, ops/conv_upconv_int8.c):
 * int8 convs of a nearest 2x upsample [+ concat] as an int8 phase conv at
 * low resolution, an int8 skip conv and an own loop summing them.
 * qdq_upconv's int8 weights are small enough that their sums per phase fit
 * 8 bits: the rewrite must then match the fake-quantized reference as
 * tightly as the plain int8 path (a wrong phase, scale, bias, zero point or
 * skip slice would be far off), with uint8 and (qdq_upconv_s8) int8
 * activations. qdq_upsample's weights use the whole int8
 * range, so its sums are rounded once more: close, not exact. Below the
 * channel threshold (the default, 128, on these small graphs) or with
 * int8_upconv_min = -1 nothing is rewritten. */
static void test_int8_upconv(void **state) {
  (void)state;
  if (!osseg_engine_int8_native()) skip(); /* int8 is refused there (test_int8_qdq) */
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", engine_dir());
  static const char *own = "own: upconv phases + skip sum";
  static const struct {
    const char *name;
    int umin, rewritten, convs;
    double tol;
  } cases[] = {
      {"qdq_upconv", 1, 3, 7, 1e-4}, {"qdq_upconv", 0, 0, 7, 1e-4}, {"qdq_upconv", -1, 0, 7, 1e-4},
      {"qdq_upconv_s8", 1, 3, 7, 1e-4}, {"qdq_upconv_s8", -1, 0, 7, 1e-4},
      {"qdq_upsample", 1, 2, 4, 0.08}, {"qdq_upsample", 0, 0, 4, 1e-4},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_INT8);
    o.int8_upconv_min = cases[i].umin;
    struct parity p;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    int err = engine_parity(dir, cases[i].name, &o, &p, &diag);
    if (err) print_error("%s: %s\n", cases[i].name, diag.message);
    assert_int_equal(err, 0);
    print_message("%-14s int8_upconv_min %3d: rel %.2e mask %.6f\n", cases[i].name, cases[i].umin,
                  p.rel_err, p.mask_agree);
    assert_true(p.rel_err <= cases[i].tol);
    struct osseg_model *m = NULL;
    assert_int_equal(osseg_model_load(&m, test_path("%s/%s.onnx", dir, cases[i].name), &o, &diag), 0);
    assert_int_equal(steps_with_impl(m, own), cases[i].rewritten);
    struct osseg_model_stats st;
    osseg_model_get_stats(m, &st);
    assert_int_equal(st.int8_convs, cases[i].convs);
    osseg_model_free(m);
  }
  /* in bands of one low-res row (qdq_upconv: 6 + 6 + 12 bands of its three
   * rewritten convs; qdq_upsample: 6 + 12): the same bytes as in one band */
  static const struct {
    const char *name;
    int rewritten, bands;
  } banded[] = {{"qdq_upconv", 3, 24}, {"qdq_upsample", 2, 18}};
  for (size_t i = 0; i < sizeof banded / sizeof banded[0]; i++) {
    struct osseg_engine_options bo = engine_test_opts(OSSEG_PRECISION_INT8);
    bo.int8_upconv_min = 1;
    struct engine_fixture one, rows;
    engine_fixture_load(&one, dir, banded[i].name, &bo);
    osseg__set_int8_upconv_band_bytes(1);
    engine_fixture_load(&rows, dir, banded[i].name, &bo);
    osseg__set_int8_upconv_band_bytes(0);
    struct osseg_diag bd;
    osseg_diag_clear(&bd);
    assert_int_equal(osseg_model_run(one.m, one.in.data, one.out, &bd), 0);
    assert_int_equal(osseg_model_run(rows.m, rows.in.data, rows.out, &bd), 0);
    assert_int_equal(steps_with_impl(one.m, own), banded[i].rewritten);
    assert_int_equal(steps_with_impl(rows.m, own), banded[i].bands);
    assert_int_equal(one.nout, rows.nout);
    assert_memory_equal(one.out, rows.out, one.nout * sizeof(float));
    engine_fixture_free(&one);
    engine_fixture_free(&rows);
  }
  /* ONNX Runtime's placement: from the threshold on, a resize read only
   * by concats keeps the pattern (its repeated quantization dropped), so
   * the rewrite applies there too. qdq_ort_upconv: the upconvs read their
   * upsampled map and a single skip map in 8 bits on those maps' own grids,
   * as their producers wrote them, and requantize them onto the conv grid
   * (three requantizations, for c4's upsampled map and c6's two inputs; c4's
   * two skip maps stay a requantizing concat), with no float fake
   * quantization, and match the fake-quantized reference as tightly as the
   * unrewritten graph (test_int8_qdq); the requantizations run at every CPU
   * level the suite runs */
  {
    struct osseg_engine_options oo = engine_test_opts(OSSEG_PRECISION_INT8);
    oo.int8_upconv_min = 1;
    struct osseg_model *mm = NULL;
    struct osseg_diag dd;
    osseg_diag_clear(&dd);
    assert_int_equal(osseg_model_load(&mm, test_path("%s/qdq_ort_residual.onnx", dir), &oo, &dd), 0);
    assert_true(steps_with_impl(mm, own) >= 1);
    osseg_model_free(mm);
    struct parity p;
    int err = engine_parity(dir, "qdq_ort_upconv", &oo, &p, &dd);
    if (err) print_error("qdq_ort_upconv: %s\n", dd.message);
    assert_int_equal(err, 0);
    print_message("%-14s int8_upconv_min   1: rel %.2e mask %.6f\n", "qdq_ort_upconv", p.rel_err, p.mask_agree);
    assert_true(p.rel_err <= 1e-4);
    assert_int_equal(osseg_model_load(&mm, test_path("%s/qdq_ort_upconv.onnx", dir), &oo, &dd), 0);
    struct osseg_model_stats st;
    osseg_model_get_stats(mm, &st);
    assert_int_equal(st.int8_convs, 6);
    assert_int_equal(st.steps, 17);
    assert_int_equal(steps_with_impl(mm, own), 2);
    assert_int_equal(steps_with_impl(mm, "own: 8-bit requantization"), 3);
    assert_int_equal(steps_with_impl(mm, "own: 8-bit channel concat, requantizing"), 1);
    assert_int_equal(steps_with_impl(mm, "own: fake quantization"), 0);
    osseg_model_free(mm);
  }
  /* no_upconv turns the int8 rewrite off too */
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_INT8);
  o.int8_upconv_min = 1;
  o.no_upconv = 1;
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  assert_int_equal(osseg_model_load(&m, test_path("%s/qdq_upconv.onnx", dir), &o, &diag), 0);
  assert_int_equal(steps_with_impl(m, own), 0);
  osseg_model_free(m);
}

/* QDQ models: every precision runs the quantization as written (fp32 and
 * bf16 parity: test_op_parity); int8 runs the quantized convs in int8 and
 * matches PyTorch's fake-quantized forward as closely as fp32 does. */
static void test_int8_qdq(void **state) {
  (void)state;
  /* (qdq_concat: a concat read only by an int8 conv is written in 8 bits;
   * qdq_maxpool: a max pool of a float map written in 8 bits for two int8
   * convs; qdq_upsample: conv -> nearest upsample -> concat -> conv and
   * conv -> upsample -> conv carried in 8 bits; qdq_ort_residual: ONNX
   * Runtime's placement, Q/DQ around the residual Add, the MaxPool, the
   * Resize and the Concat too: the resizes (8 channels, too few for an
   * int8 upconv) read their input before its quantization, which their
   * output repeats on one grid, and move bytes, the concat requantizes
   * what it reads on its inputs' grids, the Add and its ReLU are one 8-bit
   * add of the convs' 8-bit outputs (19 steps with the float Add);
   * qdq_ort_pool_resize: a pool and a resize read by convs, the same way:
   * an 8-bit chain without float fake quantization;
   * qdq_ort_chain: two residual blocks of that placement, all in 8 bits;
   * qdq_ort_int_weights: ONNX Runtime's weights, int8 initializers behind a
   * DequantizeLinear alone, and int32 biases dequantized with s_x s_w;
   * qdq_ort_add_sliced: an 8-bit add of float inputs, quantized for it;
   * qdq_ort_concat: a concat of inputs each on its own grid (u8, s8, and
   * a float one quantized onto its grid first), the convs writing them so
   * and the concat requantizing them: 13 steps with the inputs' fake
   * quantizations run in float; qdq_ort_upconv: convs of upsampled maps in
   * concats, below the int8 upconv threshold here: resizes and requantizing
   * concats in 8 bits, test_int8_upconv rewrites them) */
  static const char *names[] = {"qdq_conv_u8", "qdq_conv_s8", "qdq_conv_residual", "qdq_concat",
                                "qdq_maxpool", "qdq_upsample", "qdq_ort_residual", "qdq_ort_chain",
                                "qdq_ort_int_weights", "qdq_ort_add_sliced", "qdq_ort_concat",
                                "qdq_ort_pool_resize", "qdq_ort_upconv"};
  static const int convs[] = {3, 3, 3, 3, 3, 4, 3, 4, 2, 2, 4, 3, 6};
  /* steps: no quantizing reorder where a producer writes 8 bits; one for
   * the convs sharing a quantized input (qdq_upsample's first two) */
  static const int steps[] = {6, 6, 9, 11, 11, 10, 15, 9, 5, 10, 9, 8, 13};
  static const int adds[] = {0, 0, 0, 0, 0, 0, 1, 2, 0, 1, 0, 0, 0}; /* own 8-bit adds */
  static const int requants[] = {0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 2}; /* requantizing concats */
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", engine_dir());
  /* without int8 dot products int8 is refused (its sums would saturate) */
  const int native = osseg_engine_int8_native();
  if (!native) expect_load_error_opts(dir, "qdq_conv_u8.onnx", OSSEG_PRECISION_INT8,
                                      OSSEG_EUNSUPPORTED, "dot-product");
  for (size_t i = 0; native && i < sizeof names / sizeof names[0]; i++) {
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_INT8);
    struct parity p;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    int err = engine_parity(dir, names[i], &o, &p, &diag);
    if (err) print_error("%s: %s\n", names[i], diag.message);
    assert_int_equal(err, 0);
    print_message("%-20s int8 rel %.2e mask %.6f\n", names[i], p.rel_err, p.mask_agree);
    assert_true(p.rel_err <= 1e-4);
    struct osseg_model *m = NULL;
    assert_int_equal(osseg_model_load(&m, test_path("%s/%s.onnx", dir, names[i]), &o, &diag), 0);
    struct osseg_model_stats st;
    osseg_model_get_stats(m, &st);
    assert_int_equal(st.int8_convs, convs[i]); /* every conv of each fixture */
    assert_int_equal(st.steps, steps[i]);
    assert_int_equal(steps_with_impl(m, "own: 8-bit add"), adds[i]);
    assert_int_equal(steps_with_impl(m, "own: 8-bit channel concat, requantizing"), requants[i]);
    if (!strncmp(names[i], "qdq_ort_", 8) && strcmp(names[i], "qdq_ort_residual"))
      assert_int_equal(steps_with_impl(m, "own: fake quantization"), 0);
    if (!strcmp(names[i], "qdq_ort_chain")) { /* the sums stay 8-bit: s8 (ReLU), then u8 */
      const char *want[] = {"s8", "u8"};
      int k = 0;
      for (int j = 0; j < osseg_model_step_count(m); j++) {
        struct osseg_step_info si;
        assert_int_equal(osseg_model_step_info(m, j, &si), 0);
        if (!si.impl || strcmp(si.impl, "own: 8-bit add")) continue;
        assert_true(k < 2);
        assert_non_null(si.dst_type);
        assert_string_equal(si.dst_type, want[k++]);
      }
      assert_int_equal(k, 2);
    }
    osseg_model_free(m);
    o = engine_test_opts(OSSEG_PRECISION_FP32);
    assert_int_equal(osseg_model_load(&m, test_path("%s/%s.onnx", dir, names[i]), &o, &diag), 0);
    osseg_model_get_stats(m, &st);
    assert_int_equal(st.int8_convs, 0);
    osseg_model_free(m);
  }
  /* the quantized demo model: every conv in int8 */
  if (native) {
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_INT8);
    struct osseg_model *m = NULL;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    const char *path = test_path("%s/data/models/unetpp_demo_int8.onnx", test_source_dir());
    assert_int_equal(osseg_model_load(&m, path, &o, &diag), 0);
    struct osseg_model_stats st;
    osseg_model_get_stats(m, &st);
    assert_int_equal(st.int8_convs, 39);
    assert_non_null(osseg_model_metadata(m, "osseg.quantized"));
    osseg_model_free(m);
  }
  /* auto: int8 for a QDQ model where int8 is native, else bf16 where bf16
   * is native, else fp32 */
  {
    const char *isa;
    int bf16 = osseg_engine_bf16_native(&isa);
    int vnni = strstr(isa, "amx") || strstr(isa, "bf16"); /* (those ISAs have VNNI) */
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_AUTO);
    struct osseg_model *m = NULL;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    struct osseg_model_stats st;
    assert_int_equal(osseg_model_load(&m, test_path("%s/qdq_conv_u8.onnx", dir), &o, &diag), 0);
    osseg_model_get_stats(m, &st);
    if (vnni) assert_int_equal(st.precision, OSSEG_PRECISION_INT8);
    assert_true(st.precision != OSSEG_PRECISION_AUTO);
    osseg_model_free(m);
    assert_int_equal(osseg_model_load(&m, test_path("%s/residual.onnx", dir), &o, &diag), 0);
    osseg_model_get_stats(m, &st);
    assert_int_equal(st.precision, bf16 ? OSSEG_PRECISION_BF16 : OSSEG_PRECISION_FP32);
    osseg_model_free(m);
    print_message("auto on %s: QDQ -> %s\n", isa, vnni ? "int8" : "(int8 not asserted)");
  }
  /* int8 needs a QDQ model */
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_INT8);
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  assert_int_equal(osseg_model_load(&m, test_path("%s/residual.onnx", dir), &o, &diag),
                   OSSEG_EUNSUPPORTED);
  assert_non_null(strstr(diag.message, native ? "QDQ" : "dot-product"));
  enum osseg_precision pr;
  assert_int_equal(osseg_precision_parse("int8", &pr), 0);
  assert_int_equal(pr, OSSEG_PRECISION_INT8);
  assert_string_equal(osseg_precision_name(OSSEG_PRECISION_INT8), "int8");
  /* malformed QDQ graphs */
  expect_load_error(dir, "bad_qdq_scale_zero.onnx", OSSEG_ERANGE, "scale 0 (must be positive");
  expect_load_error(dir, "bad_qdq_scale_negative.onnx", OSSEG_ERANGE, "scale -0.5");
  expect_load_error(dir, "bad_qdq_scale_nan.onnx", OSSEG_ERANGE, "scale nan");
  expect_load_error(dir, "bad_qdq_unpaired.onnx", OSSEG_EUNSUPPORTED, "must be followed only by");
  expect_load_error(dir, "bad_qdq_axis.onnx", OSSEG_ESHAPE, "4 scales for axis 1 of size 3");
  expect_load_error(dir, "bad_qdq_zero_type.onnx", OSSEG_EUNSUPPORTED, "zero point of type int32");
}

static void test_metadata_and_info(void **state) {
  (void)state;
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
  assert_int_equal(osseg_model_load(&m, test_path("%s/metadata.onnx", engine_dir()), &o, &diag), 0);
  assert_string_equal(osseg_model_metadata(m, "classes"), "29");
  assert_string_equal(osseg_model_metadata(m, "input_size"), "8");
  assert_null(osseg_model_metadata(m, "nope"));
  assert_int_equal(osseg_model_input(m)->dims[2], 8);
  osseg_model_free(m);
  assert_int_equal(osseg_model_load(&m, test_path("%s/concat.onnx", engine_dir()), &o, &diag), 0);
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  assert_true(st.params == 4 * 3 * 9 + 3);
  assert_true(st.flops >= 2ull * 3 * 4 * 9 * 120);
  assert_true(st.arena_bytes > 0);
  assert_true(osseg_model_op_count(m) >= 2);
  const char *op;
  int c;
  osseg_model_op_at(m, 0, &op, &c);
  assert_true(c >= 1);
  osseg_model_free(m);
}

struct run_ctx {
  struct osseg_model *m;
  const float *in;
  float *out;
  int err;
};

static void *run_thread(void *p) {
  struct run_ctx *c = p;
  for (int i = 0; i < 5 && !c->err; i++) c->err = osseg_model_run(c->m, c->in, c->out, NULL);
  return NULL;
}

/* Concurrent runs on one model are serialised and give identical results. */
static void test_concurrent_runs(void **state) {
  (void)state;
  struct osseg_model *m = NULL;
  struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_FP32);
  assert_int_equal(osseg_model_load(&m, test_path("%s/residual.onnx", engine_dir()), &o, NULL), 0);
  size_t ni = osseg_model_input_elems(m), no = osseg_model_output_elems(m);
  float *in = malloc(ni * sizeof(float)), *o1 = malloc(no * sizeof(float)),
        *o2 = malloc(no * sizeof(float)), *o3 = malloc(no * sizeof(float));
  for (size_t i = 0; i < ni; i++) in[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
  assert_int_equal(osseg_model_run(m, in, o1, NULL), 0);
  struct run_ctx a = {m, in, o2, 0}, b = {m, in, o3, 0};
  pthread_t ta, tb;
  pthread_create(&ta, NULL, run_thread, &a);
  pthread_create(&tb, NULL, run_thread, &b);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  assert_int_equal(a.err, 0);
  assert_int_equal(b.err, 0);
  assert_memory_equal(o1, o2, no * sizeof(float));
  assert_memory_equal(o1, o3, no * sizeof(float));
  free(in), free(o1), free(o2), free(o3);
  osseg_model_free(m);
}

static char *read_model(const char *name, size_t *size) {
  char *buf = test_read_file(test_path("%s/%s", engine_dir(), name), size);
  assert_non_null(buf);
  return buf;
}

/* Truncation at many cut points and random byte corruption: an error or a
 * model, never a crash (ASan build checks memory safety). */
static void test_truncated_and_corrupted(void **state) {
  (void)state;
  size_t size;
  char *buf = read_model("conv_bn_relu_nofold.onnx", &size);
  engine_check_damaged(buf, size, 97, 150, 42);
  free(buf);
}

/* Fail the Nth allocation of a whole load for every N: clean error, no leak. */
static void test_alloc_failure_sweep(void **state) {
  (void)state;
  size_t size;
  char *buf = read_model("se_block.onnx", &size);
  assert_true(engine_alloc_sweep(buf, size, 5000) > 20);
  free(buf);
  buf = read_model("wg_residual.onnx", &size); /* Winograd compile paths */
  assert_true(engine_alloc_sweep(buf, size, 5000) > 20);
  free(buf);
  if (osseg_engine_int8_native()) { /* the int8 passes and the int8 upconv */
    struct osseg_engine_options o = engine_test_opts(OSSEG_PRECISION_INT8);
    o.int8_upconv_min = 1;
    buf = read_model("qdq_upconv.onnx", &size);
    uint64_t loads = engine_alloc_sweep_opts(buf, size, 20000, &o);
    print_message("qdq_upconv int8: %llu loads\n", (unsigned long long)loads);
    assert_true(loads > 20);
    free(buf);
    buf = read_model("qdq_ort_residual.onnx", &size); /* 8-bit adds, dropped requantizations */
    loads = engine_alloc_sweep_opts(buf, size, 20000, &o);
    print_message("qdq_ort_residual int8: %llu loads\n", (unsigned long long)loads);
    assert_true(loads > 20);
    free(buf);
    buf = read_model("qdq_ort_concat.onnx", &size); /* requantizing concat */
    loads = engine_alloc_sweep_opts(buf, size, 20000, &o);
    print_message("qdq_ort_concat int8: %llu loads\n", (unsigned long long)loads);
    assert_true(loads > 20);
    free(buf);
    buf = read_model("qdq_ort_upconv.onnx", &size); /* upconv inputs requantized */
    loads = engine_alloc_sweep_opts(buf, size, 20000, &o);
    print_message("qdq_ort_upconv int8: %llu loads\n", (unsigned long long)loads);
    assert_true(loads > 20);
    free(buf);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_op_parity),
      cmocka_unit_test(test_model_parity),
      cmocka_unit_test(test_upconv_rewrite),
      cmocka_unit_test(test_conv_bands),
      cmocka_unit_test(test_bf16_mixed_precision),
      cmocka_unit_test(test_bf16_mask_agreement),
      cmocka_unit_test(test_pad_folding),
      cmocka_unit_test(test_winograd),
      cmocka_unit_test(test_depthwise_fallback),
      cmocka_unit_test(test_spatial_mean_accuracy),
      cmocka_unit_test(test_bf16_logits_fp32),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_int8_qdq),
      cmocka_unit_test(test_upconv_concat_order),
      cmocka_unit_test(test_int8_upconv),
      cmocka_unit_test(test_metadata_and_info),
      cmocka_unit_test(test_concurrent_runs),
      cmocka_unit_test(test_truncated_and_corrupted),
      cmocka_unit_test(test_alloc_failure_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
