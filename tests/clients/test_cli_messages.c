/* Messages and exit statuses of the osseg tool's subcommands (issue 9,
 * section 3), run as a program: every model error names the model file, a
 * file is named once, bad option values are usage errors (exit 2) that
 * quote what was typed, and an option a subcommand does not take is named
 * as such. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_engine.h"
#include "osseg_imaging.h"
#include "test_support.h"

static char *dir;
static char model[4096], image[4096];

/* The text of a message naming `path`, then `msg`: "osseg CMD: PATH: MSG\n". */
static const char *msg_for(const char *cmd, const char *path, const char *msg) {
  return test_path("osseg %s: %s: %s\n", cmd, path, msg);
}

static size_t count(const char *haystack, const char *needle) {
  size_t n = 0;
  for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

static int setup(void **state) {
  (void)state;
  dir = strdup(test_tmpdir());
  if (!dir) return -1;
  snprintf(model, sizeof model, "%s/tests/data/models/unetpp_r18_tiny_op13.onnx",
           test_source_dir());
  snprintf(image, sizeof image, "%s/img.png", dir);
  struct osseg_image img = {0};
  if (osseg_image_init(&img, 40, 30, 1, 8) != 0) return -1;
  for (size_t i = 0; i < (size_t)img.stride * img.height; i++) img.data[i] = (uint8_t)(i * 7);
  int rc = osseg_png_encode_file(image, &img, 1, NULL);
  osseg_image_free(&img);
  return rc;
}

static int teardown(void **state) {
  (void)state;
  const char *argv[] = {"/bin/rm", "-rf", dir, NULL};
  test_run(argv, NULL, NULL, 30);
  free(dir);
  return 0;
}

/* A bad model file among several: the message says which one. */
static void test_model_errors_name_the_model(void **state) {
  (void)state;
  size_t size;
  char *onnx = test_read_file(model, &size);
  assert_non_null(onnx);
  char truncated[4096], garbage[4096], png[4096];
  snprintf(truncated, sizeof truncated, "%s/truncated.onnx", dir);
  snprintf(garbage, sizeof garbage, "%s/garbage.onnx", dir);
  snprintf(png, sizeof png, "%s/picture.onnx", dir);
  assert_int_equal(test_write_file(truncated, onnx, size / 2), 0);
  assert_int_equal(test_write_file(garbage, "not a model\n", 12), 0);
  char *pic = test_read_file(image, &size);
  assert_non_null(pic);
  assert_int_equal(test_write_file(png, pic, size), 0);
  free(pic);
  free(onnx);
  const char *csv = test_path("%s/out.csv", dir);
  char out_csv[4096];
  snprintf(out_csv, sizeof out_csv, "%s", csv);
  const char *bad[] = {truncated, garbage, png};
  for (size_t i = 0; i < 3; i++) {
    const char *want = msg_for("predict", bad[i],
                               "not a valid ONNX model (protobuf parse failed: truncated or "
                               "corrupted, or out of memory)");
    char msg[8192];
    snprintf(msg, sizeof msg, "%s", want);
    test_osseg_expect_fail(1, msg, "predict", "--model", model, "--model", bad[i], "-o", out_csv,
                           image, NULL);
    test_osseg_expect_fail(1, msg_for("run-model", bad[i],
                                      "not a valid ONNX model (protobuf parse failed: truncated "
                                      "or corrupted, or out of memory)"),
                           "run-model", bad[i], NULL);
    test_osseg_expect_fail(1, msg_for("model-info", bad[i],
                                      "not a valid ONNX model (protobuf parse failed: truncated "
                                      "or corrupted, or out of memory)"),
                           "model-info", bad[i], NULL);
  }
  /* --size that the model's fixed input size contradicts */
  test_osseg_expect_fail(1, msg_for("predict", model,
                                    "graph input 'input' is fixed at 64, requested size 32 "
                                    "differs (re-export the model for that size)"),
                         "predict", "--model", model, "--size", "32", "-o", out_csv, image, NULL);
  /* a file the engine cannot open is named once too */
  char missing[4096];
  snprintf(missing, sizeof missing, "%s/missing.onnx", dir);
  test_osseg_expect_fail(1, msg_for("run-model", missing, "No such file or directory"),
                         "run-model", missing, NULL);
  test_osseg_expect_fail(1, msg_for("model-info", missing, "No such file or directory"),
                         "model-info", missing, NULL);
}

/* A corrupt image is named once in predict's message. */
static void test_png_error_names_the_file_once(void **state) {
  (void)state;
  char bad[4096];
  snprintf(bad, sizeof bad, "%s/broken.png", dir);
  assert_int_equal(test_write_file(bad, "\x89PNG\r\n\x1a\n garbage", 17), 0);
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "predict", "--model", model, "-o",
                                  test_path("%s/p.csv", dir), bad, NULL),
                   1);
  const char *want = msg_for("predict", bad, "PNG is truncated inside its header");
  if (!strstr(err, want) || count(err, bad) != 1) fail_msg("stderr: %s", err);
  free(out);
  free(err);
}

/* A threshold the pipeline cannot use is a usage error quoting the text as
 * typed, also when it is in (0, 1) as a double but rounds to 0 or 1 as the
 * float the pipeline keeps. */
static void test_threshold_usage_errors(void **state) {
  (void)state;
  static const struct {
    const char *typed, *why;
  } cases[] = {
      {"1e-300", " (it rounds to 0 in single precision)"},
      {"0.99999999999", " (it rounds to 1 in single precision)"},
      {"0", ""},
      {"1", ""},
      {"-0.5", ""},
      {"0.5x", ""},
      {"nan", ""},
  };
  char csv[4096], msg[8192], arg[256];
  snprintf(csv, sizeof csv, "%s/t.csv", dir);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(msg, sizeof msg, "osseg predict: --threshold must be a number in (0, 1), not '%s'%s\n",
             cases[i].typed, cases[i].why);
    test_osseg_expect_fail(2, msg, "predict", "--model", model, "--threshold", cases[i].typed,
                           "-o", csv, image, NULL);
    snprintf(msg, sizeof msg,
             "osseg predict: --class-threshold Radius: the threshold must be a number in (0, 1), "
             "not '%s'%s\n",
             cases[i].typed, cases[i].why);
    snprintf(arg, sizeof arg, "Radius=%s", cases[i].typed);
    test_osseg_expect_fail(2, msg, "predict", "--model", model, "--class-threshold", arg, "-o",
                           csv, image, NULL);
  }
  /* thresholds near 0 or 1 that a float still tells apart from them are fine */
  assert_int_equal(test_osseg_run(NULL, NULL, "predict", "--model", model, "--threshold", "1e-40",
                                  "--class-threshold", "Radius=0.99999994", "-o", csv, image, NULL),
                   0);
}

/* An option the rle subcommand does not take is named, not its value, and
 * not mistaken for a bad value of an option the other subcommand takes. */
static void test_rle_names_the_option(void **state) {
  (void)state;
#define RLE_HELP " (see 'osseg rle --help')\n"
  test_osseg_expect_fail(2, "osseg rle: decode does not take --image" RLE_HELP, "rle", "decode",
                         "--image", "x", NULL);
  test_osseg_expect_fail(2, "osseg rle: decode does not take --class" RLE_HELP, "rle", "decode",
                         "--class=Ulna", NULL);
  test_osseg_expect_fail(2, "osseg rle: encode does not take --height" RLE_HELP, "rle", "encode",
                         "--height", "5", NULL);
  test_osseg_expect_fail(2, "osseg rle: encode does not take --width" RLE_HELP, "rle", "encode",
                         "--width", "5000000", NULL);
  test_osseg_expect_fail(2, "osseg rle: encode does not take -o" RLE_HELP, "rle", "encode", "-o",
                         "m.png", NULL);
  test_osseg_expect_fail(2, "osseg rle: encode does not take --output" RLE_HELP, "rle", "encode",
                         "--output", "m.png", NULL);
  test_osseg_expect_fail(2, "osseg rle: unknown option '--bogus'" RLE_HELP, "rle", "encode",
                         "--bogus", NULL);
  test_osseg_expect_fail(2, "osseg rle: unknown option '-x'" RLE_HELP, "rle", "decode", "-xo",
                         "m.png", NULL);
  test_osseg_expect_fail(2, "osseg rle: option '--height' needs a value" RLE_HELP, "rle", "decode",
                         "--height", NULL);
  /* a bad value of an option the subcommand does take still says so */
  test_osseg_expect_fail(2, "osseg rle: --height: expected an integer in 1..16384, got '0'\n", "rle",
                         "decode", "--height", "0", NULL);
#undef RLE_HELP
}

/* --vote-threshold is checked against the number of models, one as well
 * as several: a usage error quoting the value as typed. */
static void test_vote_threshold_against_models(void **state) {
  (void)state;
  char csv[4096];
  snprintf(csv, sizeof csv, "%s/v.csv", dir);
  test_osseg_expect_fail(2,
                         "osseg predict: --vote-threshold 5: a pixel would need more than 5 votes "
                         "of 1 model(s), so every mask would be empty; give a number below 1\n",
                         "predict", "--model", model, "--vote-threshold", "5", "-o", csv, image,
                         NULL);
  test_osseg_expect_fail(2,
                         "osseg predict: --vote-threshold 2.0: a pixel would need more than 2.0 "
                         "votes of 2 model(s), so every mask would be empty; give a number below "
                         "2\n",
                         "predict", "--model", model, "--model", model, "--vote-threshold", "2.0",
                         "-o", csv, image, NULL);
  /* below the number of models it is used, with one model too */
  assert_int_equal(test_osseg_run(NULL, NULL, "predict", "--model", model, "--vote-threshold",
                                  "0.5", "-o", csv, image, NULL),
                   0);
}

/* model-info --help explains its options, --size among them. */
static void test_model_info_help(void **state) {
  (void)state;
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "model-info", "--help", NULL), 0);
  if (!strstr(out, "\n  --size S ") || !strstr(out, "symbolic input size") ||
      !strstr(out, "\n  --precision P "))
    fail_msg("help: %s", out);
  assert_string_equal(err, "");
  free(out);
  free(err);
}

/* Runs `osseg run-model` and `osseg predict` on the tiny model with the
 * precision given and checks that each prints the note about emulated bf16
 * exactly when `want_note`, naming the ISA `isa`. */
static void check_bf16_note(const char *precision, int want_note, const char *isa) {
  char note[256];
  snprintf(note, sizeof note,
           ": note: this CPU has no native bf16 (oneDNN ISA %s, below avx512_core_bf16): "
           "emulated, bf16 runs slower than fp32 here\n",
           isa);
  char *out, *err;
  assert_int_equal(test_osseg_run(&out, &err, "run-model", model, "--precision", precision, NULL),
                   0);
  if ((strstr(err, note) != NULL) != want_note || count(err, "note:") != (size_t)want_note)
    fail_msg("run-model --precision %s, note expected: %d, stderr: %s", precision, want_note, err);
  free(out);
  free(err);
  assert_int_equal(test_osseg_run(&out, &err, "predict", "--model", model, "--precision", precision,
                                  "-o", test_path("%s/bf16.csv", dir), image, NULL),
                   0);
  if ((strstr(err, note) != NULL) != want_note || count(err, "note:") != (size_t)want_note)
    fail_msg("predict --precision %s, note expected: %d, stderr: %s", precision, want_note, err);
  free(out);
  free(err);
}

/* The bf16 note is printed iff bf16 is not native here; a CPU with
 * AVX512_BF16 (no AMX needed) is native, and bf16 is faster than fp32 on
 * it. Capping oneDNN's ISA below avx512_core_bf16 makes it emulated. */
static void test_bf16_note_only_without_native_bf16(void **state) {
  (void)state;
  const char *isa;
  int native = osseg_engine_bf16_native(&isa);
  const char *cap = getenv("ONEDNN_MAX_CPU_ISA") ? getenv("ONEDNN_MAX_CPU_ISA")
                                                 : getenv("DNNL_MAX_CPU_ISA");
  __builtin_cpu_init();
  if (!cap && __builtin_cpu_supports("avx512bf16")) assert_true(native);
  if (native) assert_true(strcmp(isa, "avx512_core_bf16") == 0 || strcmp(isa, "avx512_core_amx") == 0);
  check_bf16_note("bf16", !native, isa);
  check_bf16_note("bf16-mixed", !native, isa);
  check_bf16_note("fp32", 0, isa);
  if (cap || !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl") ||
      !__builtin_cpu_supports("avx512dq"))
    return;
  /* The same machine with oneDNN held to avx512_core: emulated bf16. */
  setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE", 1);
  check_bf16_note("bf16", 1, "avx512_core");
  check_bf16_note("fp32", 0, "avx512_core");
  unsetenv("ONEDNN_MAX_CPU_ISA");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_model_errors_name_the_model),
      cmocka_unit_test(test_png_error_names_the_file_once),
      cmocka_unit_test(test_threshold_usage_errors),
      cmocka_unit_test(test_rle_names_the_option),
      cmocka_unit_test(test_vote_threshold_against_models),
      cmocka_unit_test(test_model_info_help),
      cmocka_unit_test(test_bf16_note_only_without_native_bf16),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
