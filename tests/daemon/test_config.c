/* Tests for daemon/config.c: a configuration file onto struct
 * ossegd_options, and every kind of error naming FILE:LINE. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon_internal.h"
#include "ossegd.h"
#include "test_support.h"

/* Messages the config delivered, one per line. */
static char messages[16384];
static size_t nmessages;

static void collect(void *ctx, enum osseg_log_level level, const char *message) {
  (void)ctx;
  assert_int_equal(level, OSSEG_LOG_ERROR);
  size_t used = strlen(messages);
  snprintf(messages + used, sizeof messages - used, "%s\n", message);
  nmessages++;
}

static const struct osseg_log errors = {collect, NULL, OSSEG_LOG_DEBUG};

static const char *model_file(const char *name) {
  return test_path("%s/tests/data/models/%s.onnx", test_source_dir(), name);
}

static char dir[512]; /* this program's temporary folder */

/* Writes text (printf-style) to a fresh file; returns its path. */
static const char *write_conf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *write_conf(const char *fmt, ...) {
  static char path[600];
  static char text[16384];
  static int n;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  snprintf(path, sizeof path, "%s/c%d.conf", dir, n++);
  assert_int_equal(test_write_file(path, text, strlen(text)), 0);
  return path;
}

static struct ossegd_config *load_ok(const char *path) {
  messages[0] = '\0';
  nmessages = 0;
  struct ossegd_config *c = NULL;
  int rc = ossegd_config_load(&c, path, &errors);
  if (rc != 0) fail_msg("%s: %s", osseg_strerror(rc), messages);
  assert_int_equal(nmessages, 0);
  return c;
}

/* Loads a file that must fail with exactly the given messages (each
 * "LINE: text", the path prefixed here), in that order. */
static void load_bad(const char *path, int code, ...) {
  messages[0] = '\0';
  nmessages = 0;
  struct ossegd_config *c = (struct ossegd_config *)(uintptr_t)1;
  assert_int_equal(ossegd_config_load(&c, path, &errors), code);
  assert_null(c);
  char want[16384] = "";
  va_list ap;
  va_start(ap, code);
  const char *m;
  while ((m = va_arg(ap, const char *)) != NULL)
    snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s%s\n", path,
             m[0] >= '0' && m[0] <= '9' ? ":" : ": ", m);
  va_end(ap);
  assert_string_equal(messages, want);
}

/* A line longer than libinih's default limit of 200 bytes. */
static const char all_classes[] =
    "finger-1,finger-2,finger-3,finger-4,finger-5,finger-6,finger-7,finger-8,finger-9,"
    "finger-10,finger-11,finger-12,finger-13,finger-14,finger-15,finger-16,finger-17,"
    "finger-18,finger-19,Trapezium,Trapezoid,Capitate,Hamate,Scaphoid,Lunate,Triquetrum,"
    "Pisiform,Radius,Ulna";

static void test_good_file(void **state) {
  (void)state;
  const char *path = write_conf(
      "; a comment\n"
      "# another\n"
      "[socket]\n"
      "path = /run/osseg/ossegd.sock\n"
      "mode = 0600\n"
      "group = root\n"
      "\n"
      "[access]\n"
      "users = root, 65534 nobody\n"
      "groups = nogroup,0\n"
      "[limits]\n"
      "max_frame_bytes = 32 MiB\n"
      "max_image_pixels = 4194304\n"
      "max_image_side = 4096\n"
      "max_connections = 10\n"
      "max_in_flight = 4\n"
      "max_in_flight_total = 20\n"
      "max_queue = 8\n"
      "max_output_bytes = 1GiB ; inline comment\n"
      "request_timeout_ms = 30000\n"
      "[daemon]\n"
      "threads = 3\n"
      "workers = 5\n"
      "workspace_bytes = 2048MiB\n"
      "[audit]\n"
      "file = /tmp/audit.log\n"
      "include_image_name = yes\n"
      "[metrics]\n"
      "file = /tmp/ossegd.prom\n"
      "interval_ms = 2500\n"
      "[model  unetpp]\n"
      "path = %s\n"
      "size = 64\n"
      "precision = bf16\n"
      "normalize = mean=0.5;std=0.25\n"
      "threshold = 0.4\n"
      "threshold.Radius = 0.7\n"
      "threshold.Ulna = 0.3\n"
      "[model b]\n"
      "path = %s\n"
      "classes = %s\n",
      model_file("unetpp_r18_tiny_op13"), model_file("unet_effb0_tiny_op13"), all_classes);
  struct ossegd_config *c = load_ok(path);
  const struct ossegd_options *o = ossegd_config_options(c);
  assert_string_equal(o->socket_path, "/run/osseg/ossegd.sock");
  assert_int_equal(o->socket_mode, 0600);
  assert_string_equal(o->socket_group, "root");
  assert_int_equal(o->nallow_users, 3);
  assert_string_equal(o->allow_users[0], "root");
  assert_string_equal(o->allow_users[1], "65534");
  assert_string_equal(o->allow_users[2], "nobody");
  assert_int_equal(o->nallow_groups, 2);
  assert_string_equal(o->allow_groups[0], "nogroup");
  assert_string_equal(o->allow_groups[1], "0");
  assert_int_equal(o->max_frame_bytes, 32u << 20);
  assert_int_equal(o->max_image_pixels, 4194304);
  assert_int_equal(o->max_image_side, 4096);
  assert_int_equal(o->max_connections, 10);
  assert_int_equal(o->max_in_flight, 4);
  assert_int_equal(o->max_in_flight_total, 20);
  assert_int_equal(o->max_queue, 8);
  assert_int_equal(o->max_output_bytes, 1u << 30);
  assert_int_equal(o->request_timeout_ms, 30000);
  assert_int_equal(o->engine.threads, 3);
  assert_int_equal(o->workers, 5);
  assert_int_equal(o->workspace_bytes, (uint64_t)2048 << 20);
  assert_string_equal(o->audit_file, "/tmp/audit.log");
  assert_int_equal(o->audit_image_name, 1);
  assert_string_equal(o->metrics_file, "/tmp/ossegd.prom");
  assert_int_equal(o->metrics_interval_ms, 2500);
  assert_int_equal(o->nmodels, 2);
  const struct osseg_model_spec *m = &o->models[0];
  assert_string_equal(m->name, "unetpp");
  assert_string_equal(m->path, model_file("unetpp_r18_tiny_op13"));
  assert_int_equal(m->input_size, 64);
  assert_int_equal(m->precision, OSSEG_PRECISION_BF16);
  assert_string_equal(m->normalize, "mean=0.5;std=0.25");
  assert_null(m->classes);
  assert_true(m->threshold == 0.4f);
  assert_int_equal(m->nclass_thresholds, 2);
  assert_string_equal(m->class_thresholds[0].name, "Radius");
  assert_true(m->class_thresholds[0].threshold == 0.7f);
  assert_string_equal(m->class_thresholds[1].name, "Ulna");
  assert_true(m->class_thresholds[1].threshold == 0.3f);
  assert_string_equal(o->models[1].name, "b");
  assert_true(strlen(all_classes) > 200);
  assert_string_equal(o->models[1].classes, all_classes);
  assert_int_equal(ossegd_config_check(c, path, &errors), 0);

  /* The options load: the registry takes the model with its thresholds. */
  struct osseg_registry *r;
  assert_int_equal(osseg_registry_create(&r, NULL), 0);
  struct osseg_diag d;
  osseg_diag_clear(&d);
  struct osseg_model_spec spec = *m;
  spec.precision = OSSEG_PRECISION_FP32;
  if (osseg_registry_load(r, &spec, NULL, &d) != 0) fail_msg("%s", d.message);
  struct osseg_loaded_model *lm;
  assert_int_equal(osseg_registry_get(r, "unetpp", &lm), 0);
  assert_true(osseg_loaded_model_threshold(lm, 27) == 0.7f);
  assert_true(osseg_loaded_model_threshold(lm, 0) == 0.4f);
  osseg_loaded_model_unref(lm);
  osseg_registry_free(r);

  /* The allow-list resolves. */
  struct ossegd__acl acl;
  assert_int_equal(ossegd__acl_init(&acl, o, &d), 0);
  assert_true(acl.active);
  assert_int_equal(acl.uids[0], 0);
  assert_int_equal(acl.uids[1], 65534);
  assert_int_equal(acl.gids[1], 0);
  ossegd_config_free(c);
}

/* A file with only a model: everything else keeps its default. */
static void test_defaults(void **state) {
  (void)state;
  const char *path = write_conf("[model a]\npath = %s\n", model_file("unetpp_r18_tiny_op13"));
  struct ossegd_config *c = load_ok(path);
  const struct ossegd_options *o = ossegd_config_options(c);
  struct ossegd_options def;
  ossegd_options_default(&def);
  assert_null(o->socket_path);
  assert_int_equal(o->socket_mode, 0660);
  assert_null(o->socket_group);
  assert_int_equal(o->nallow_users + o->nallow_groups, 0);
  assert_int_equal(o->max_frame_bytes, def.max_frame_bytes);
  assert_int_equal(o->max_image_pixels, def.max_image_pixels);
  assert_int_equal(o->max_image_side, def.max_image_side);
  assert_int_equal(o->max_connections, 256);
  assert_int_equal(o->max_in_flight, 64);
  assert_int_equal(o->max_in_flight_total, 1024);
  assert_int_equal(o->max_queue, 256);
  assert_int_equal(o->max_output_bytes, 64u << 20);
  assert_int_equal(o->request_timeout_ms, 0);
  assert_int_equal(o->workers, 2);
  assert_int_equal(o->engine.threads, def.engine.threads);
  assert_string_equal(o->audit_file, "stderr");
  assert_int_equal(o->audit_image_name, 0);
  assert_null(o->metrics_file);
  assert_int_equal(o->metrics_interval_ms, 15000);
  assert_int_equal(o->nmodels, 1);
  assert_true(o->models[0].threshold == 0.0f);
  assert_int_equal(o->models[0].nclass_thresholds, 0);

  /* The socket path is missing: only the whole check can tell. */
  messages[0] = '\0';
  assert_int_equal(ossegd_config_check(c, path, &errors), OSSEG_EPARSE);
  char want[1024];
  snprintf(want, sizeof want, "%s: no socket path ([socket] path, or --socket)\n", path);
  assert_string_equal(messages, want);
  ossegd_config_free(c);

  /* audit: none turns it off. */
  path = write_conf("[audit]\nfile = none\ninclude_image_name = off\n");
  c = load_ok(path);
  assert_null(ossegd_config_options(c)->audit_file);
  messages[0] = '\0';
  assert_int_equal(ossegd_config_check(c, path, &errors), OSSEG_EPARSE);
  snprintf(want, sizeof want,
           "%s: no socket path ([socket] path, or --socket)\n"
           "%s: no model ([model NAME] sections, or --model)\n",
           path, path);
  assert_string_equal(messages, want);
  ossegd_config_free(c);
}

/* The errors: each names the file and the line, all are reported, in line
 * order. */
static void test_errors(void **state) {
  (void)state;
  const char *good = model_file("unetpp_r18_tiny_op13");
  load_bad(write_conf("[sockets]\npath = /x\n"), OSSEG_EPARSE,
           "1: unknown section [sockets] (sections: socket, access, limits, daemon, audit, "
           "metrics, model NAME)",
           NULL);
  load_bad(write_conf("[socket]\npth = /x\n"), OSSEG_EPARSE,
           "2: unknown key 'pth' in [socket] (keys: path, mode, group)", NULL);
  load_bad(write_conf("[limits]\nmax_queue = 10\nmax_quue = 3\n"), OSSEG_EPARSE,
           "3: unknown key 'max_quue' in [limits] (keys: max_frame_bytes, max_image_pixels, "
           "max_image_side, max_connections, max_in_flight, max_in_flight_total, max_queue, "
           "max_output_bytes, request_timeout_ms)",
           NULL);
  load_bad(write_conf("[metrics]\npath = /x\nfile = /no/such/dir/x.prom\ninterval_ms = 5\n"),
           OSSEG_EPARSE, "2: unknown key 'path' in [metrics] (keys: file, interval_ms)",
           "3: [metrics] file: the folder /no/such/dir does not exist",
           "4: [metrics] interval_ms: '5' is not a whole number of milliseconds in 10..86400000",
           NULL);
  /* Numbers: range, garbage, units. */
  load_bad(write_conf("[limits]\nmax_connections = 0\nmax_queue = 12x\nmax_in_flight = -1\n"
                      "max_frame_bytes = 8\nmax_image_side = 4 KiB\nmax_output_bytes = 3 MB\n"
                      "request_timeout_ms = 99999999999999999999999\n"
                      "[daemon]\nworkers = 65\nthreads = 1.5\n"),
           OSSEG_EPARSE,
           "2: [limits] max_connections: '0' is not a whole number of connections in 1..1000000",
           "3: [limits] max_queue: '12x' is not a whole number of requests in 1..1000000",
           "4: [limits] max_in_flight: '-1' is not a whole number of requests in 1..1000000",
           "5: [limits] max_frame_bytes: '8' is not a whole number of bytes in 16..4294967295 "
           "(or with a suffix: KiB, MiB, GiB, TiB)",
           "6: [limits] max_image_side: '4 KiB' is not a whole number of pixels in 1..16384",
           "7: [limits] max_output_bytes: '3 MB' is not a whole number of bytes in "
           "1..9223372036854775807 (or with a suffix: KiB, MiB, GiB, TiB)",
           "8: [limits] request_timeout_ms: '99999999999999999999999' is not a whole number of "
           "milliseconds in 0..86400000",
           "10: [daemon] workers: '65' is not a whole number of threads in 1..64",
           "11: [daemon] threads: '1.5' is not a whole number of threads in 0..1024", NULL);
  /* Repeated sections and keys. */
  load_bad(write_conf("[limits]\nmax_queue = 10\n\n[limits]\nmax_queue = 11\n"), OSSEG_EPARSE,
           "4: section [limits] again (first at line 1); give each section once", NULL);
  load_bad(write_conf("[model a]\npath = %s\n[model  a]\npath = %s\n", good, good),
           OSSEG_EPARSE, "3: section [model a] again (first at line 1); give each section once",
           NULL);
  load_bad(write_conf("[limits]\nmax_queue = 10\nmax_queue = 11\n"), OSSEG_EPARSE,
           "3: [limits] max_queue given again (first at line 2)", NULL);
  /* Models: missing file, no path, relative path, options. */
  load_bad(write_conf("[model a]\npath = /no/such/model.onnx\n"), OSSEG_EPARSE,
           "2: [model a] path: /no/such/model.onnx: No such file or directory", NULL);
  load_bad(write_conf("[model a]\npath = %s\n", test_source_dir()), OSSEG_EPARSE,
           test_path("2: [model a] path: %s: not a regular file", test_source_dir()), NULL);
  load_bad(write_conf("[model a]\nsize = 64\n[model b]\n"), OSSEG_EPARSE,
           "1: [model a]: no path (the model's ONNX file)",
           "3: [model b]: no path (the model's ONNX file)", NULL);
  load_bad(write_conf("[model a]\npath = models/a.onnx\n"), OSSEG_EPARSE,
           "2: [model a] path: 'models/a.onnx' is not an absolute path", NULL);
  load_bad(write_conf("[model]\npath = %s\n[model a/b]\n", good), OSSEG_EPARSE,
           "1: [model]: a model section is [model NAME], NAME 1..127 characters of A-Z a-z 0-9 "
           ". _ + -",
           "3: [model a/b]: a model section is [model NAME], NAME 1..127 characters of A-Z a-z "
           "0-9 . _ + -",
           NULL);
  load_bad(write_conf("[model a]\npath = %s\nsize = 0\nprecision = fp16\nthreshold = 1\n"
                      "threshold.Radius = 0\ncolor = red\n",
                      good),
           OSSEG_EPARSE, "3: [model a] size: '0' is not an input size of 1..16384 pixels",
           "4: [model a] precision: 'fp16' is not fp32, bf16, bf16-mixed, int8 or auto",
           "5: [model a] threshold: '1' is not a probability in (0, 1)",
           "6: [model a] threshold.Radius: '0' is not a probability in (0, 1)",
           "7: unknown key 'color' in [model a] (keys: path, size, precision, normalize, "
           "classes, threshold, threshold.CLASS)",
           NULL);
  /* Whole-section checks name the section's line. */
  load_bad(write_conf("\n[model a]\npath = %s\nnormalize = gamma\n", good), OSSEG_EPARSE,
           test_path("2: [model a]: %s: normalisation 'gamma' is not div255, imagenet or "
                     "mean=a[,b,c];std=d[,e,f]",
                     good),
           NULL);
  load_bad(write_conf("[model a]\npath = %s\nclasses = x,y\nthreshold.z = 0.5\n", good),
           OSSEG_EPARSE,
           test_path("1: [model a]: %s: threshold for class 'z': not among its classes", good),
           NULL);
  /* Socket, access, audit. */
  load_bad(write_conf("[socket]\npath = run/x.sock\nmode = 0860\ngroup = no-such-group-x\n"
                      "[access]\nusers = root, no-such-user-x\ngroups = 4294967295\n"),
           OSSEG_EPARSE, "2: [socket] path: 'run/x.sock' is not an absolute path",
           "3: [socket] mode: '0860' is not octal permission bits 0000..0777",
           "4: [socket] group: no such group 'no-such-group-x'",
           "6: [access] users: no such user 'no-such-user-x'",
           "7: [access] groups: not a valid id: '4294967295'", NULL);
  load_bad(write_conf("[socket]\nmode = 01777\n[access]\nusers = ,\ngroups =\n"), OSSEG_EPARSE,
           "2: [socket] mode: '01777' is not octal permission bits 0000..0777",
           "4: [access] users: an empty list; leave the key out to let in everyone who can "
           "open the socket",
           "5: [access] groups has no value", NULL);
  load_bad(write_conf("[audit]\nfile = /no/such/dir/audit.log\ninclude_image_name = maybe\n"),
           OSSEG_EPARSE, "2: [audit] file: the folder /no/such/dir does not exist",
           "3: [audit] include_image_name: 'maybe' is not yes or no", NULL);
  /* Syntax. */
  load_bad(write_conf("max_queue = 3\n[limits\n[limits]\njust words\n  max_queue = 4\n"),
           OSSEG_EPARSE,
           "1: 'max_queue' is outside any section; put it under one ([socket], ...)",
           "2: a section header needs a closing ']'", "4: expected a [section] or key = value",
           NULL);
  /* A NUL byte (written directly: write_conf would stop at it). */
  const char *nul = test_path("%s/nul.conf", dir);
  assert_int_equal(test_write_file(nul, "[limits]\n\nmax_queue = 3\0\n", 25), 0);
  load_bad(nul, OSSEG_EPARSE, "3: a NUL byte: not a text file", NULL);
  /* Files that cannot be read. */
  load_bad("/no/such/ossegd.conf", OSSEG_EIO, "No such file or directory", NULL);
  load_bad(dir, OSSEG_EIO, "not a regular file", NULL);
}

/* Command-line models: added, or replacing the file's model of that name;
 * the whole check looks at their files. */
static void test_set_model(void **state) {
  (void)state;
  const char *a = model_file("unetpp_r18_tiny_op13"), *b = model_file("unet_effb0_tiny_op13");
  const char *path =
      write_conf("[socket]\npath = /tmp/x.sock\n[model a]\npath = %s\nthreshold = 0.3\n", a);
  struct ossegd_config *c = load_ok(path);
  struct ossegd_options *o = ossegd_config_options(c);
  char name[8] = "a", file[512];
  snprintf(file, sizeof file, "%s", b);
  struct osseg_class_threshold ct = {"Radius", 0.6f};
  struct osseg_model_spec spec = {.name = name, .path = file, .class_thresholds = &ct,
                                  .nclass_thresholds = 1};
  assert_int_equal(ossegd_config_set_model(c, &spec), 0);
  name[0] = 'x'; /* copied */
  file[0] = '\0';
  assert_int_equal(o->nmodels, 1);
  assert_string_equal(o->models[0].name, "a");
  assert_string_equal(o->models[0].path, b);
  assert_true(o->models[0].threshold == 0.0f); /* replaced entirely */
  assert_string_equal(o->models[0].class_thresholds[0].name, "Radius");
  spec = (struct osseg_model_spec){.name = "c", .path = "/no/such.onnx"};
  assert_int_equal(ossegd_config_set_model(c, &spec), 0);
  assert_int_equal(o->nmodels, 2);
  messages[0] = '\0';
  assert_int_equal(ossegd_config_check(c, path, &errors), OSSEG_EPARSE);
  assert_string_equal(messages, "model c: /no/such.onnx: No such file or directory\n");
  ossegd_config_free(c);
}

/* ossegd_create resolves names before it loads any model: an unknown group
 * or user fails at once, named (the model file here does not exist). */
static void test_create_resolves_names_first(void **state) {
  (void)state;
  struct ossegd_options o;
  ossegd_options_default(&o);
  o.socket_path = test_path("%s/never.sock", dir);
  o.models[0] = (struct osseg_model_spec){.name = "a", .path = "/no/such/model.onnx"};
  o.nmodels = 1;
  o.socket_group = "no-such-group-x";
  struct ossegd *d = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  assert_int_equal(ossegd_create(&d, &o, &diag), OSSEG_ENOTFOUND);
  assert_null(d);
  assert_string_equal(diag.message, "socket group 'no-such-group-x': no such group");
  o.socket_group = NULL;
  o.allow_users[0] = "no-such-user-x";
  o.nallow_users = 1;
  osseg_diag_clear(&diag);
  assert_int_equal(ossegd_create(&d, &o, &diag), OSSEG_ENOTFOUND);
  assert_string_equal(diag.message, "allowed user 'no-such-user-x': no such user");
  o.nallow_users = 0;
  o.allow_groups[0] = "12x";
  o.nallow_groups = 1;
  osseg_diag_clear(&diag);
  assert_int_equal(ossegd_create(&d, &o, &diag), OSSEG_ENOTFOUND);
  assert_string_equal(diag.message, "allowed group '12x': no such group");
  o.nallow_groups = 0;
  o.socket_mode = 01777;
  osseg_diag_clear(&diag);
  assert_int_equal(ossegd_create(&d, &o, &diag), OSSEG_EINVAL);
  assert_non_null(strstr(diag.message, "socket mode 01777"));
  /* With good names it gets as far as the model. */
  o.socket_mode = 0660;
  o.socket_group = "0";
  o.allow_users[0] = "root";
  o.nallow_users = 1;
  o.audit_file = test_path("%s/audit.log", dir);
  osseg_diag_clear(&diag);
  assert_int_equal(ossegd_create(&d, &o, &diag), OSSEG_EIO);
  assert_non_null(strstr(diag.message, "/no/such/model.onnx"));
  /* An audit file that cannot be opened fails before the models too. */
  o.audit_file = "/no/such/dir/audit.log";
  osseg_diag_clear(&diag);
  assert_int_equal(ossegd_create(&d, &o, &diag), OSSEG_EIO);
  assert_string_equal(diag.message,
                      "audit file /no/such/dir/audit.log: No such file or directory");
}

static int setup(void **state) {
  (void)state;
  const char *t = test_tmpdir();
  if (!t) return -1;
  snprintf(dir, sizeof dir, "%s", t);
  return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int teardown(void **state) {
  (void)state;
  return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good_file),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_set_model),
      cmocka_unit_test(test_create_resolves_names_first),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
