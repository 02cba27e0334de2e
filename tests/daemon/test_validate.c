/* Tests for daemon/validate.c: every invalid field of a Segment gets its
 * Error.Code and a message naming the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "daemon_internal.h"
#include "test_support.h"

#define CODE(x) OSSEG__WIRE__ERROR__CODE__##x

static struct osseg_registry *reg;
static const struct ossegd__limits lim = {.max_image_pixels = 10000, .max_image_side = 200};

static int setup(void **state) {
  (void)state;
  if (osseg_registry_create(&reg, NULL) != 0) return -1;
  const char *files[] = {"unetpp_r18_tiny_op13", "unet_effb0_tiny_op13"};
  const char *names[] = {"a", "b"};
  for (int i = 0; i < 2; i++) {
    struct osseg_model_spec spec = {
        .name = names[i],
        .path = test_path("%s/tests/data/models/%s.onnx", test_source_dir(), files[i])};
    if (osseg_registry_load(reg, &spec, NULL, NULL) != 0) return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  osseg_registry_free(reg);
  return 0;
}

/* A valid request, edited by each case. */
struct fixture {
  Osseg__Wire__Segment s;
  Osseg__Wire__RawImage raw;
  Osseg__Wire__Vote vote;
  Osseg__Wire__ClassThreshold ct, *ctp[1];
  Osseg__Wire__GroundTruth gt;
  Osseg__Wire__ClassRles rles;
  Osseg__Wire__ClassRle rle, *rlep[1];
  Osseg__Wire__ImageFd fd;
  char *models[9];
  char *classes[1];
  uint8_t pixels[64 * 64 * 2];
};

static void make(struct fixture *f) {
  memset(f, 0, sizeof *f);
  osseg__wire__segment__init(&f->s);
  osseg__wire__raw_image__init(&f->raw);
  osseg__wire__vote__init(&f->vote);
  osseg__wire__class_threshold__init(&f->ct);
  osseg__wire__ground_truth__init(&f->gt);
  osseg__wire__class_rles__init(&f->rles);
  osseg__wire__class_rle__init(&f->rle);
  osseg__wire__image_fd__init(&f->fd);
  f->raw.width = 64;
  f->raw.height = 64;
  f->raw.bit_depth = 8;
  f->raw.pixels.data = f->pixels;
  f->raw.pixels.len = 64 * 64;
  f->s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_RAW;
  f->s.raw = &f->raw;
  for (int i = 0; i < 9; i++) f->models[i] = i % 2 ? "b" : "a";
  f->s.models = f->models;
  f->s.n_models = 1;
}

static void expect(struct fixture *f, int code, const char *needle) {
  struct ossegd__segment out;
  char msg[512];
  int got = -1;
  int rc = ossegd__validate_segment(&f->s, reg, &lim, &out, &got, msg, sizeof msg);
  if (code < 0) {
    if (rc != 0) fail_msg("expected success, got %d: %s", got, msg);
    assert_non_null(out.pipeline);
    ossegd__segment_release(&out);
    return;
  }
  if (rc != -1) fail_msg("expected code %d (%s), got success", code, needle);
  assert_null(out.pipeline);
  if (got != code) fail_msg("expected code %d, got %d (%s)", code, got, msg);
  if (!strstr(msg, needle)) fail_msg("message '%s' does not contain '%s'", msg, needle);
}

/* A PNG: a real 8x8 one with its IHDR's dimensions changed (the data is
 * not looked at by validation). free() it. */
static uint8_t *png_with_header(uint32_t w, uint32_t h, size_t *size) {
  struct osseg_image img = {0};
  assert_int_equal(osseg_image_init(&img, 8, 8, 1, 8), 0);
  uint8_t *enc = NULL;
  assert_int_equal(osseg_png_encode_mem(&img, 1, &enc, size, NULL), 0);
  osseg_image_free(&img);
  uint8_t *png = malloc(*size);
  assert_non_null(png);
  memcpy(png, enc, *size);
  osseg__free(enc);
  const uint32_t v[2] = {w, h};
  for (int k = 0; k < 2; k++)
    for (int b = 0; b < 4; b++) png[16 + 4 * k + b] = (uint8_t)(v[k] >> (24 - 8 * b));
  /* The IHDR's CRC, so that no decoder refuses it for that. */
  uint32_t c = 0xffffffffu;
  for (size_t i = 12; i < 29; i++) {
    c ^= png[i];
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
  }
  c ^= 0xffffffffu;
  for (int b = 0; b < 4; b++) png[29 + b] = (uint8_t)(c >> (24 - 8 * b));
  return png;
}

static void test_valid(void **state) {
  (void)state;
  struct fixture f;
  make(&f);
  expect(&f, -1, NULL);
  f.s.n_models = 2;
  f.s.vote = &f.vote;
  f.vote.has_kind = 1;
  f.vote.kind = OSSEG__WIRE__VOTE__KIND__SOFT;
  expect(&f, -1, NULL);
  /* A PNG's header is read here (not the image data). */
  make(&f);
  size_t size;
  uint8_t *png = png_with_header(100, 90, &size);
  f.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_PNG;
  f.s.png.data = png;
  f.s.png.len = size;
  struct ossegd__segment out;
  char msg[512];
  int code = -1;
  assert_int_equal(ossegd__validate_segment(&f.s, reg, &lim, &out, &code, msg, sizeof msg), 0);
  assert_int_equal(out.width, 100);
  assert_int_equal(out.height, 90);
  ossegd__segment_release(&out);
  free(png);
}

static void test_image(void **state) {
  (void)state;
  struct fixture f;
  make(&f);
  f.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE__NOT_SET;
  expect(&f, CODE(BAD_REQUEST), "image: one of png, raw or fd");
  make(&f);
  f.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_FD;
  f.s.fd = &f.fd;
  expect(&f, -1, NULL); /* the descriptor itself is the session's to check */
  make(&f);
  f.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_PNG;
  f.s.png.len = 0;
  expect(&f, CODE(BAD_IMAGE), "image.png: empty");
  make(&f);
  f.raw.bit_depth = 12;
  expect(&f, CODE(BAD_REQUEST), "image.raw.bit_depth");
  make(&f);
  f.raw.width = 0;
  expect(&f, CODE(BAD_REQUEST), "image.raw: width and height");
  make(&f);
  f.raw.width = 201;
  expect(&f, CODE(IMAGE_TOO_LARGE), "image.raw: 201x64");
  make(&f);
  f.raw.width = f.raw.height = 101; /* 10201 pixels > 10000 */
  expect(&f, CODE(IMAGE_TOO_LARGE), "pixels is over the limit of 10000");
  /* PNG headers against the same limits (side 200, 10000 pixels), and
   * bytes that are no PNG. */
  static const struct {
    uint32_t w, h;
    int code;
    const char *needle;
  } png_cases[] = {
      {201, 10, CODE(IMAGE_TOO_LARGE), "image.png: PNG is 201x10, above the limit of 200x200"},
      {10, 201, CODE(IMAGE_TOO_LARGE), "PNG is 10x201"},
      {101, 100, CODE(IMAGE_TOO_LARGE), "and 10000 pixels"},
      {100000, 100000, CODE(IMAGE_TOO_LARGE), "PNG is 100000x100000"},
      {0, 5, CODE(BAD_IMAGE), "image.png: PNG header has invalid dimensions 0x5"},
  };
  for (size_t i = 0; i < sizeof png_cases / sizeof *png_cases; i++) {
    make(&f);
    size_t size;
    uint8_t *png = png_with_header(png_cases[i].w, png_cases[i].h, &size);
    f.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_PNG;
    f.s.png.data = png;
    f.s.png.len = size;
    expect(&f, png_cases[i].code, png_cases[i].needle);
    f.s.png.len = 20; /* cut inside the header */
    expect(&f, CODE(BAD_IMAGE), "image.png: PNG is truncated inside its header");
    free(png);
  }
  make(&f);
  f.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_PNG;
  f.s.png.data = f.pixels;
  f.s.png.len = 10;
  expect(&f, CODE(BAD_IMAGE), "image.png: not a PNG file (bad signature)");
  make(&f);
  f.raw.pixels.len = 64 * 64 - 1;
  expect(&f, CODE(BAD_REQUEST), "image.raw.pixels: 4095 bytes");
  make(&f);
  f.raw.bit_depth = 16; /* needs twice the bytes */
  expect(&f, CODE(BAD_REQUEST), "needs 8192");
  f.raw.pixels.len = 8192;
  expect(&f, -1, NULL);
}

static void test_image_name(void **state) {
  (void)state;
  struct fixture f;
  make(&f);
  f.s.image_name = "";
  expect(&f, CODE(BAD_REQUEST), "image_name: must be 1..255 bytes");
  char long_name[300];
  memset(long_name, 'x', sizeof long_name - 1);
  long_name[299] = '\0';
  f.s.image_name = long_name;
  expect(&f, CODE(BAD_REQUEST), "not 299");
  f.s.image_name = "a\nb";
  expect(&f, CODE(BAD_REQUEST), "image_name: control character 0x0a at byte 1");
  f.s.image_name = "hand 1.png";
  expect(&f, -1, NULL);
}

static void test_models(void **state) {
  (void)state;
  struct fixture f;
  make(&f);
  f.s.n_models = 0;
  expect(&f, CODE(BAD_REQUEST), "models: give 1..8 model names, not 0");
  f.s.n_models = 9;
  expect(&f, CODE(BAD_REQUEST), "not 9");
  f.s.n_models = 2;
  f.models[1] = "nope";
  expect(&f, CODE(UNKNOWN_MODEL), "models[1]: no model named 'nope'");
}

static void test_thresholds(void **state) {
  (void)state;
  struct fixture f;
  make(&f);
  f.s.has_threshold = 1;
  f.s.threshold = 1.0f;
  expect(&f, CODE(BAD_REQUEST), "threshold: must be in (0, 1)");
  f.s.threshold = 0.0f;
  expect(&f, CODE(BAD_REQUEST), "threshold: must be in (0, 1)");
  f.s.threshold = 0.3f;
  expect(&f, -1, NULL);
  make(&f);
  f.ct.name = "Radius";
  f.ct.threshold = 1.5f;
  f.ctp[0] = &f.ct;
  f.s.class_thresholds = f.ctp;
  f.s.n_class_thresholds = 1;
  expect(&f, CODE(BAD_REQUEST), "class_thresholds[0].threshold");
  f.ct.threshold = 0.4f;
  expect(&f, -1, NULL);
  f.ct.name = "Femur";
  expect(&f, CODE(BAD_REQUEST), "class_thresholds[0].name: no class 'Femur'");
}

static void test_vote(void **state) {
  (void)state;
  struct fixture f;
  make(&f);
  f.s.n_models = 2;
  f.s.vote = &f.vote;
  f.vote.has_threshold = 1;
  f.vote.threshold = 2;
  expect(&f, CODE(BAD_REQUEST), "vote.threshold: must be >= 0 and below the number of models (2)");
  f.vote.threshold = -1;
  expect(&f, CODE(BAD_REQUEST), "vote.threshold");
  f.vote.threshold = 1;
  expect(&f, -1, NULL);
  f.vote.has_kind = 1;
  f.vote.kind = 7;
  expect(&f, CODE(BAD_REQUEST), "vote.kind: unknown value 7");
}

static void test_enums_and_classes(void **state) {
  (void)state;
  struct fixture f;
  make(&f);
  f.s.has_output = 1;
  f.s.output = 9;
  expect(&f, CODE(BAD_REQUEST), "output: unknown value 9");
  make(&f);
  f.s.has_priority = 1;
  f.s.priority = 5;
  expect(&f, CODE(BAD_REQUEST), "priority: unknown value 5");
  make(&f);
  f.classes[0] = "Tibia";
  f.s.classes = f.classes;
  f.s.n_classes = 1;
  expect(&f, CODE(BAD_REQUEST), "classes[0]: no class 'Tibia'");
  f.classes[0] = "Ulna";
  expect(&f, -1, NULL);
}

static void test_ground_truth(void **state) {
  (void)state;
  struct fixture f;
  make(&f);
  f.s.ground_truth = &f.gt;
  expect(&f, CODE(BAD_REQUEST), "ground_truth: rles or label_json required");
  f.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_LABEL_JSON;
  f.gt.label_json = "{}";
  expect(&f, CODE(BAD_REQUEST), "ground_truth.label_json: no \"annotations\" at the top level");
  f.gt.label_json = "{\"annotations\": [";
  expect(&f, CODE(BAD_REQUEST), "ground_truth.label_json:1:17: ");
  f.gt.label_json = "{\"annotations\": [{\"label\": \"Kneecap\", \"points\": [[0,0],[9,0],[9,9]]}]}";
  expect(&f, CODE(BAD_REQUEST),
         "ground_truth.label_json: annotations[0].label: 'Kneecap' is none of the 29 classes");
  f.gt.label_json = "{\"annotations\": [{\"label\": \"Ulna\", \"points\": [[0,0],[9.5,0],[9,9]]}]}";
  expect(&f, CODE(BAD_REQUEST), "ground_truth.label_json: annotations[0] (Ulna): points[1][0]");
  f.gt.label_json = "{\"annotations\": [{\"label\": \"Ulna\", \"points\": [[0,0],[9,0],[9,9]]}]}";
  expect(&f, -1, NULL);
  {
    struct ossegd__segment out;
    char msg[512];
    int got = -1;
    assert_int_equal(ossegd__validate_segment(&f.s, reg, &lim, &out, &got, msg, sizeof msg), 0);
    assert_true(out.has_gt);
    assert_non_null(out.gt_labels);
    assert_int_equal(osseg_labels_polygon_count(out.gt_labels, 28), 1);
    ossegd__segment_release(&out);
    assert_null(out.gt_labels);
  }
  /* Text over 64 KiB waits for the worker (the loop does not parse it),
   * even with a bad label; over 4 MiB it is refused at once. */
  {
    size_t big = ((size_t)64 << 10) + 100;
    char *text = malloc(((size_t)4 << 20) + 10);
    assert_non_null(text);
    const char *head = "{\"annotations\": [{\"label\": \"Kneecap\", \"points\": "
                       "[[0,0],[9,0],[9,9]]}], \"pad\": \"";
    size_t n = strlen(head);
    memcpy(text, head, n);
    memset(text + n, 'x', big - n - 2);
    memcpy(text + big - 2, "\"}", 3);
    f.gt.label_json = text;
    struct ossegd__segment out;
    char msg[512];
    int got = -1;
    assert_int_equal(ossegd__validate_segment(&f.s, reg, &lim, &out, &got, msg, sizeof msg), 0);
    assert_null(out.gt_labels);
    assert_ptr_equal(out.gt_label_json, text);
    assert_true(out.has_gt);
    /* What the worker does with it: the same check, the same message. */
    struct osseg_labels *labels = NULL;
    assert_int_equal(ossegd__parse_label_json(text, out.pipeline, &labels, &got, msg, sizeof msg),
                     -1);
    assert_int_equal(got, CODE(BAD_REQUEST));
    assert_non_null(strstr(msg, "ground_truth.label_json: annotations[0].label: 'Kneecap'"));
    assert_null(labels);
    ossegd__segment_release(&out);
    size_t huge = ((size_t)4 << 20) + 1;
    memset(text + n, 'x', huge - n - 2);
    memcpy(text + huge - 2, "\"}", 3);
    expect(&f, CODE(BAD_REQUEST), "ground_truth.label_json: 4194305 bytes, over the limit of 4194304");
    free(text);
  }
  /* Dice only: label JSON is ground truth for every class. */
  f.s.has_output = 1;
  f.s.output = OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY;
  f.gt.label_json = "{\"annotations\": []}";
  expect(&f, -1, NULL);
  f.s.has_output = 0;
  f.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES;
  f.gt.rles = &f.rles;
  f.rle.name = "Kneecap";
  f.rle.rle = "1 2";
  f.rlep[0] = &f.rle;
  f.rles.classes = f.rlep;
  f.rles.n_classes = 1;
  expect(&f, CODE(BAD_REQUEST), "ground_truth.rles.classes[0].name: no class 'Kneecap'");
  f.rle.name = "Radius";
  expect(&f, -1, NULL);
  /* The RLE text is parsed here, against the raw image's 64x64 pixels. */
  static const struct {
    const char *rle, *needle;
  } rle_cases[] = {
      {"1 x",
       "ground_truth.rles.classes[0].rle: class 'Radius': offset 2: unexpected character 'x'"},
      {"5", "class 'Radius': offset 1: odd number of numbers"},
      {"0 3", "class 'Radius': offset 0: start of 0"},
      {"99999999999 1", "class 'Radius': offset 0: number longer than 10 digits"},
      {"4000 98", "class 'Radius': offset 0: run '4000 98' ends past the image end (4096 pixels)"},
      {"4097 0", "ends past the image end (4096 pixels)"},
      {"1 2\n", "unexpected byte 0x0a"},
  };
  for (size_t i = 0; i < sizeof rle_cases / sizeof *rle_cases; i++) {
    f.rle.rle = (char *)rle_cases[i].rle;
    expect(&f, CODE(BAD_REQUEST), rle_cases[i].needle);
  }
  f.rle.rle = "4000 97 1 3";
  expect(&f, -1, NULL);
  /* A PNG's size comes from its header (120x90 = 10800 pixels: over the
   * 10000 limit, so 100x90). */
  size_t size;
  uint8_t *png = png_with_header(100, 90, &size);
  f.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_PNG;
  f.s.png.data = png;
  f.s.png.len = size;
  f.rle.rle = "9000 1";
  expect(&f, -1, NULL);
  f.rle.rle = "9000 2";
  expect(&f, CODE(BAD_REQUEST), "ends past the image end (9000 pixels)");
  free(png);
  /* An ImageFd's size is not known here: runs are checked against the
   * pixel limit, the rest by the pipeline. */
  f.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_FD;
  f.s.fd = &f.fd;
  f.rle.rle = "9999 2";
  expect(&f, -1, NULL);
  f.rle.rle = "9999 3";
  expect(&f, CODE(BAD_REQUEST), "ends past the image end (10000 pixels)");
  make(&f);
  f.s.ground_truth = &f.gt;
  f.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES;
  f.gt.rles = &f.rles;
  f.rle.name = "Radius";
  f.rle.rle = "1 2";
  f.rlep[0] = &f.rle;
  f.rles.classes = f.rlep;
  f.rles.n_classes = 1;
  f.s.has_output = 1;
  f.s.output = OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY;
  expect(&f, -1, NULL);
  f.s.ground_truth = NULL;
  expect(&f, CODE(BAD_REQUEST), "OUTPUT_DICE_ONLY needs ground_truth");
}

static void test_envelope(void **state) {
  (void)state;
  Osseg__Wire__Request r = OSSEG__WIRE__REQUEST__INIT;
  char msg[256];
  int code = -1;
  assert_int_equal(ossegd__validate_request(&r, &code, msg, sizeof msg), -1);
  assert_int_equal(code, CODE(BAD_REQUEST));
  assert_non_null(strstr(msg, "kind:"));
  Osseg__Wire__HealthRequest h = OSSEG__WIRE__HEALTH_REQUEST__INIT;
  r.kind_case = OSSEG__WIRE__REQUEST__KIND_HEALTH;
  r.health = &h;
  assert_int_equal(ossegd__validate_request(&r, &code, msg, sizeof msg), 0);
  r.has_version = 1;
  r.version = 2;
  assert_int_equal(ossegd__validate_request(&r, &code, msg, sizeof msg), -1);
  assert_non_null(strstr(msg, "version: 2 is not supported"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid),       cmocka_unit_test(test_image),
      cmocka_unit_test(test_image_name),  cmocka_unit_test(test_models),
      cmocka_unit_test(test_thresholds),  cmocka_unit_test(test_vote),
      cmocka_unit_test(test_enums_and_classes), cmocka_unit_test(test_ground_truth),
      cmocka_unit_test(test_envelope),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
