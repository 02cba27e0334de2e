/* Tests for pipeline/registry.c: loading by name, hashing, reference
 * counting across a reload, concurrent lookups while models are replaced. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_pipeline.h"
#include "test_support.h"

static const char *fixture(const char *name) {
  return test_path("%s/tests/data/models/%s.onnx", test_source_dir(), name);
}

static void load(struct osseg_registry *r, const char *name, const char *file, int *replaced) {
  struct osseg_model_spec spec = {.name = name, .path = fixture(file)};
  struct osseg_diag d;
  osseg_diag_clear(&d);
  if (osseg_registry_load(r, &spec, replaced, &d) != 0) fail_msg("%s: %s", file, d.message);
}

static uint8_t *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc((size_t)n);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

/* Runs the model's engine on a fixed input; caller frees. */
static float *infer(const struct osseg_loaded_model *m) {
  struct osseg_model *e = osseg_loaded_model_engine(m);
  size_t nin = osseg_model_input_elems(e), nout = osseg_model_output_elems(e);
  float *in = malloc(nin * sizeof *in), *out = malloc(nout * sizeof *out);
  assert_non_null(in);
  assert_non_null(out);
  for (size_t i = 0; i < nin; i++) in[i] = (float)((i * 37) % 255) / 255.0f;
  assert_int_equal(osseg_model_run(e, in, out, NULL), 0);
  free(in);
  return out;
}

static void test_load_get_hash(void **state) {
  (void)state;
  struct osseg_registry *r;
  assert_int_equal(osseg_registry_create(&r, NULL), 0);
  load(r, "b", "unetpp_r18_tiny_op13", NULL);
  /* NULL name: the file's base name */
  struct osseg_model_spec spec = {.path = fixture("segformer_tiny_op13")};
  assert_int_equal(osseg_registry_load(r, &spec, NULL, NULL), 0);
  assert_int_equal(osseg_registry_count(r), 2);

  struct osseg_loaded_model *m;
  assert_int_equal(osseg_registry_get(r, "nope", &m), OSSEG_ENOTFOUND);
  assert_null(m);
  assert_int_equal(osseg_registry_get(r, "b", &m), 0);
  assert_string_equal(osseg_loaded_model_name(m), "b");
  assert_string_equal(osseg_loaded_model_path(m), fixture("unetpp_r18_tiny_op13"));
  /* Known answer: `sha256sum tests/data/models/unetpp_r18_tiny_op13.onnx` */
  assert_string_equal(osseg_loaded_model_sha256(m),
                      "b9565c51b14c38631242f0a6618417dd87804a77295a2049859fb03ad98944d8");
  assert_int_equal(osseg_loaded_model_input_size(m), 64);
  assert_int_equal(osseg_loaded_model_class_count(m), 29);
  assert_string_equal(osseg_loaded_model_class_name(m, 27), "Radius");
  assert_null(osseg_loaded_model_class_name(m, 29));
  osseg_loaded_model_unref(m);

  /* Listing in name order. */
  assert_int_equal(osseg_registry_get_at(r, 0, &m), 0);
  assert_string_equal(osseg_loaded_model_name(m), "b");
  osseg_loaded_model_unref(m);
  assert_int_equal(osseg_registry_get_at(r, 1, &m), 0);
  assert_string_equal(osseg_loaded_model_name(m), "segformer_tiny_op13.onnx");
  osseg_loaded_model_unref(m);
  assert_int_equal(osseg_registry_get_at(r, 2, &m), OSSEG_ENOTFOUND);

  /* From memory: the same bytes hash the same; messages name the model. */
  size_t size;
  uint8_t *bytes = read_all(fixture("unetpp_r18_tiny_op13"), &size);
  spec = (struct osseg_model_spec){.name = "mem", .data = bytes, .size = size};
  assert_int_equal(osseg_registry_load(r, &spec, NULL, NULL), 0);
  assert_int_equal(osseg_registry_get(r, "mem", &m), 0);
  assert_string_equal(osseg_loaded_model_path(m), "");
  assert_string_equal(osseg_loaded_model_sha256(m),
                      "b9565c51b14c38631242f0a6618417dd87804a77295a2049859fb03ad98944d8");
  osseg_loaded_model_unref(m);
  spec.name = "truncated";
  spec.size = size / 2;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_true(osseg_registry_load(r, &spec, NULL, &d) < 0);
  assert_non_null(strstr(d.message, "model truncated"));
  assert_int_equal(osseg_registry_get(r, "truncated", &m), OSSEG_ENOTFOUND);
  free(bytes);

  assert_int_equal(osseg_registry_unload(r, "mem"), 0);
  assert_int_equal(osseg_registry_unload(r, "mem"), OSSEG_ENOTFOUND);
  assert_int_equal(osseg_registry_count(r), 2);
  osseg_registry_free(r);
}

/* A reload replaces the model for new lookups while holders keep the old
 * one, which stays fully usable, and lives until the last holder lets go
 * (ASan reports a use after free or a leak otherwise). */
static void test_reload_keeps_old_model_for_holders(void **state) {
  (void)state;
  struct osseg_registry *r;
  assert_int_equal(osseg_registry_create(&r, NULL), 0);
  load(r, "seg", "unetpp_r18_tiny_op13", NULL);
  struct osseg_loaded_model *old;
  assert_int_equal(osseg_registry_get(r, "seg", &old), 0);
  uint64_t gen = osseg_loaded_model_generation(old);

  /* A pipeline made now holds the old model too. */
  struct osseg_pipeline_options o;
  osseg_pipeline_options_default(&o);
  o.models[0] = "seg";
  o.nmodels = 1;
  struct osseg_pipeline *p;
  assert_int_equal(osseg_pipeline_create(&p, r, &o, NULL), 0);
  float *before = infer(old);

  int replaced = 0;
  load(r, "seg", "unet_effb0_tiny_op13", &replaced);
  assert_true(replaced);
  struct osseg_loaded_model *cur;
  assert_int_equal(osseg_registry_get(r, "seg", &cur), 0);
  assert_true(cur != old);
  assert_true(osseg_loaded_model_generation(cur) > gen);
  assert_string_equal(osseg_loaded_model_path(cur), fixture("unet_effb0_tiny_op13"));
  assert_string_not_equal(osseg_loaded_model_sha256(cur), osseg_loaded_model_sha256(old));
  assert_ptr_equal(osseg_pipeline_model(p, 0), old);

  /* The old model still computes what it computed before the reload. */
  float *after = infer(old);
  size_t n = osseg_model_output_elems(osseg_loaded_model_engine(old));
  assert_memory_equal(before, after, n * sizeof *before);
  free(before);
  free(after);

  /* Unloading and freeing the registry does not take models from holders. */
  assert_int_equal(osseg_registry_unload(r, "seg"), 0);
  osseg_registry_free(r);
  assert_string_equal(osseg_loaded_model_name(cur), "seg");
  osseg_loaded_model_unref(old);
  struct osseg_image img = {0};
  assert_int_equal(osseg_image_init(&img, 40, 30, 1, 8), 0);
  struct osseg_workspace *ws;
  assert_int_equal(osseg_workspace_create(&ws, 0), 0);
  assert_int_equal(osseg_pipeline_run_image(p, ws, &img, NULL, NULL), 0);
  osseg_workspace_free(ws);
  osseg_image_free(&img);
  osseg_pipeline_free(p); /* the last reference to the old model */
  osseg_loaded_model_unref(cur);
}

/* Lookups on several threads while the main thread reloads the name over
 * and over: every lookup gets a whole model (TSan/ASan check the rest). */
struct lookup_job {
  struct osseg_registry *r;
  _Atomic int *stop;
  size_t gets;
  int bad;
};

static void *lookup_loop(void *arg) {
  struct lookup_job *j = arg;
  while (!atomic_load(j->stop) || j->gets < 10) {
    struct osseg_loaded_model *m;
    if (osseg_registry_get(j->r, "seg", &m) != 0) {
      j->bad++;
      continue;
    }
    if (osseg_loaded_model_class_count(m) != 29 ||
        strlen(osseg_loaded_model_sha256(m)) != 64)
      j->bad++;
    osseg_loaded_model_unref(m);
    j->gets++;
  }
  return NULL;
}

static void test_concurrent_lookups_during_reloads(void **state) {
  (void)state;
  struct osseg_registry *r;
  assert_int_equal(osseg_registry_create(&r, NULL), 0);
  load(r, "seg", "unetpp_r18_tiny_op13", NULL);
  _Atomic int stop = 0;
  struct lookup_job jobs[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    jobs[i] = (struct lookup_job){r, &stop, 0, 0};
    assert_int_equal(pthread_create(&th[i], NULL, lookup_loop, &jobs[i]), 0);
  }
  for (int k = 0; k < 4; k++)
    load(r, "seg", k % 2 ? "unetpp_r18_tiny_op13" : "unet_effb0_tiny_op13", NULL);
  atomic_store(&stop, 1);
  for (int i = 0; i < 3; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(jobs[i].bad, 0);
    assert_true(jobs[i].gets >= 10);
  }
  struct osseg_loaded_model *m;
  assert_int_equal(osseg_registry_get(r, "seg", &m), 0);
  assert_int_equal(osseg_loaded_model_generation(m), 5);
  osseg_loaded_model_unref(m);
  osseg_registry_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_get_hash),
      cmocka_unit_test(test_reload_keeps_old_model_for_holders),
      cmocka_unit_test(test_concurrent_lookups_during_reloads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
