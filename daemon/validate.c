/* Validation of every field of a Request, on the loop thread, before
 * anything is queued: an invalid request costs no worker time, and is
 * answered at once rather than behind a backlog. That includes what can
 * be known without decoding: a PNG's header (an image too large is refused
 * before any pixel memory exists anywhere) and the RLE text of ground
 * truth (parsed here once, with the image's size when it is known).
 * Messages name the field as the .proto spells it. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon_internal.h"

#define CODE(x) OSSEG__WIRE__ERROR__CODE__##x

static int fail(int *code, int c, char *msg, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(int *code, int c, char *msg, size_t size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, size, fmt, ap);
  va_end(ap);
  *code = c;
  return -1;
}

int ossegd__validate_request(const Osseg__Wire__Request *r, int *code, char *msg,
                             size_t msg_size) {
  if (r->has_version && r->version != OSSEG__WIRE__VERSION__VERSION_1)
    return fail(code, CODE(BAD_REQUEST), msg, msg_size,
                "version: %d is not supported (this daemon speaks version 1)", (int)r->version);
  switch (r->kind_case) {
    case OSSEG__WIRE__REQUEST__KIND_SEGMENT:
    case OSSEG__WIRE__REQUEST__KIND_LIST_MODELS:
    case OSSEG__WIRE__REQUEST__KIND_HEALTH:
    case OSSEG__WIRE__REQUEST__KIND_STATS:
    case OSSEG__WIRE__REQUEST__KIND_CANCEL:
      return 0;
    default:
      return fail(code, CODE(BAD_REQUEST), msg, msg_size,
                  "kind: the request has none of segment, list_models, health, stats, cancel");
  }
}

/* A probability threshold as the pipeline takes it: in (0, 1). */
static int probability_ok(float t) { return t > 0.0f && t < 1.0f; }

/* Printable text for messages: names from the wire are cut and their
 * control characters replaced, so a message stays one readable line. */
static const char *quote(const char *s, char *buf, size_t size) {
  size_t i = 0;
  for (; s[i] && i + 1 < size && i < 64; i++) {
    unsigned char c = (unsigned char)s[i];
    buf[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
  }
  buf[i] = '\0';
  return buf;
}

/* Index of a class name among the pipeline's classes, or -1. */
static int class_index(const struct osseg_pipeline *p, const char *name) {
  for (size_t i = 0; i < osseg_pipeline_class_count(p); i++)
    if (strcmp(osseg_pipeline_class_name(p, i), name) == 0) return (int)i;
  return -1;
}

/* Parses one class's ground truth RLE as the worker will, into runs that
 * are thrown away: syntax, numbers, and runs inside npixels. */
static int check_rle(const char *text, uint64_t npixels, int *code, char *msg, size_t msg_size,
                     const char *field, const char *cls) {
  struct osseg_runs runs = {0};
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  int rc = osseg_rle_parse(text, strlen(text), npixels, &runs, &diag);
  osseg_runs_free(&runs);
  if (rc == 0) return 0;
  char q[80];
  return fail(code, rc == OSSEG_ENOMEM ? CODE(INTERNAL) : CODE(BAD_REQUEST), msg, msg_size,
              "%s: class '%s': %s", field, quote(cls, q, sizeof q),
              diag.message[0] ? diag.message : osseg_strerror(rc));
}

/* Class names of the first model, checked before the pipeline exists. */
static int model_has_class(const struct osseg_loaded_model *m, const char *name) {
  for (size_t i = 0; i < osseg_loaded_model_class_count(m); i++)
    if (strcmp(osseg_loaded_model_class_name(m, i), name) == 0) return 1;
  return 0;
}

int ossegd__validate_segment(const Osseg__Wire__Segment *s, struct osseg_registry *reg,
                             const struct ossegd__limits *lim, struct ossegd__segment *out,
                             int *code, char *msg, size_t msg_size) {
  char q[80];
  memset(out, 0, sizeof *out);

  /* The image: exactly one source. */
  switch (s->image_case) {
    case OSSEG__WIRE__SEGMENT__IMAGE_PNG: {
      if (s->png.len == 0)
        return fail(code, CODE(BAD_IMAGE), msg, msg_size, "image.png: empty");
      /* The decoder checks the same header again in the worker. */
      struct osseg_png_limits pl;
      osseg_png_limits_default(&pl);
      pl.max_width = pl.max_height = lim->max_image_side;
      pl.max_pixels = lim->max_image_pixels;
      struct osseg_diag diag;
      osseg_diag_clear(&diag);
      int rc = osseg_png_check_header(s->png.data, s->png.len, &pl, &out->width, &out->height,
                                      &diag);
      if (rc != 0)
        return fail(code, rc == OSSEG_ELIMIT ? CODE(IMAGE_TOO_LARGE) : CODE(BAD_IMAGE), msg,
                    msg_size, "image.png: %s",
                    diag.message[0] ? diag.message : osseg_strerror(rc));
      out->image = OSSEGD_IMAGE_PNG;
      break;
    }
    case OSSEG__WIRE__SEGMENT__IMAGE_RAW: {
      const Osseg__Wire__RawImage *raw = s->raw;
      if (raw->bit_depth != 8 && raw->bit_depth != 16)
        return fail(code, CODE(BAD_REQUEST), msg, msg_size,
                    "image.raw.bit_depth: must be 8 or 16, not %u", raw->bit_depth);
      if (raw->width == 0 || raw->height == 0)
        return fail(code, CODE(BAD_REQUEST), msg, msg_size,
                    "image.raw: width and height must be at least 1 (got %ux%u)", raw->width,
                    raw->height);
      if (raw->width > lim->max_image_side || raw->height > lim->max_image_side)
        return fail(code, CODE(IMAGE_TOO_LARGE), msg, msg_size,
                    "image.raw: %ux%u is over the limit of %u pixels a side", raw->width,
                    raw->height, lim->max_image_side);
      uint64_t pixels = (uint64_t)raw->width * raw->height;
      if (pixels > lim->max_image_pixels)
        return fail(code, CODE(IMAGE_TOO_LARGE), msg, msg_size,
                    "image.raw: %ux%u = %llu pixels is over the limit of %llu", raw->width,
                    raw->height, (unsigned long long)pixels,
                    (unsigned long long)lim->max_image_pixels);
      uint64_t bytes = pixels * (raw->bit_depth / 8);
      if (raw->pixels.len != bytes)
        return fail(code, CODE(BAD_REQUEST), msg, msg_size,
                    "image.raw.pixels: %zu bytes, but %ux%u at %u bits needs %llu",
                    raw->pixels.len, raw->width, raw->height, raw->bit_depth,
                    (unsigned long long)bytes);
      out->image = OSSEGD_IMAGE_RAW;
      out->width = raw->width;
      out->height = raw->height;
      break;
    }
    case OSSEG__WIRE__SEGMENT__IMAGE_FD:
      /* The descriptor itself is checked by the session, which has it. */
      out->image = OSSEGD_IMAGE_FD;
      break;
    default:
      return fail(code, CODE(BAD_REQUEST), msg, msg_size,
                  "image: one of png, raw or fd is required");
  }

  /* The name used in results. */
  out->image_name = "image";
  if (s->image_name) {
    size_t n = strlen(s->image_name);
    if (n == 0 || n > 255)
      return fail(code, CODE(BAD_REQUEST), msg, msg_size,
                  "image_name: must be 1..255 bytes, not %zu", n);
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)s->image_name[i];
      if (c < 0x20 || c == 0x7f)
        return fail(code, CODE(BAD_REQUEST), msg, msg_size,
                    "image_name: control character 0x%02x at byte %zu", c, i);
    }
    out->image_name = s->image_name;
  }

  /* Enumerations: protobuf-c keeps any number it reads. */
  out->output = s->has_output ? (int)s->output : OSSEG__WIRE__OUTPUT__OUTPUT_RLE;
  if (out->output < 0 || out->output > OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY)
    return fail(code, CODE(BAD_REQUEST), msg, msg_size, "output: unknown value %d", out->output);
  out->priority = s->has_priority ? (int)s->priority : OSSEG__WIRE__PRIORITY__PRIORITY_INTERACTIVE;
  if (out->priority < 0 || out->priority > OSSEG__WIRE__PRIORITY__PRIORITY_BATCH)
    return fail(code, CODE(BAD_REQUEST), msg, msg_size, "priority: unknown value %d",
                out->priority);
  out->deadline_ms = s->has_deadline_ms ? s->deadline_ms : 0;

  /* Models: 1..8 registered names. */
  if (s->n_models == 0 || s->n_models > OSSEG_MAX_MODELS)
    return fail(code, CODE(BAD_REQUEST), msg, msg_size,
                "models: give 1..%d model names, not %zu", OSSEG_MAX_MODELS, s->n_models);
  struct osseg_pipeline_options po;
  osseg_pipeline_options_default(&po);
  struct osseg_loaded_model *first = NULL;
  for (size_t i = 0; i < s->n_models; i++) {
    struct osseg_loaded_model *m = NULL;
    if (osseg_registry_get(reg, s->models[i], &m) != 0) {
      osseg_loaded_model_unref(first);
      return fail(code, CODE(UNKNOWN_MODEL), msg, msg_size, "models[%zu]: no model named '%s'",
                  i, quote(s->models[i], q, sizeof q));
    }
    if (i == 0)
      first = m;
    else
      osseg_loaded_model_unref(m);
    po.models[i] = s->models[i];
  }
  po.nmodels = s->n_models;

  int rc = -1;
  if (s->vote) {
    int kind = s->vote->has_kind ? (int)s->vote->kind : OSSEG__WIRE__VOTE__KIND__HARD;
    if (kind != OSSEG__WIRE__VOTE__KIND__HARD && kind != OSSEG__WIRE__VOTE__KIND__SOFT) {
      fail(code, CODE(BAD_REQUEST), msg, msg_size, "vote.kind: unknown value %d", kind);
      goto out;
    }
    po.vote = kind == OSSEG__WIRE__VOTE__KIND__SOFT ? OSSEG_VOTE_SOFT : OSSEG_VOTE_HARD;
    if (s->vote->has_threshold) {
      double t = s->vote->threshold;
      if (!(t >= 0) || !(t < (double)s->n_models)) {
        fail(code, CODE(BAD_REQUEST), msg, msg_size,
             "vote.threshold: must be >= 0 and below the number of models (%zu), not %g",
             s->n_models, t);
        goto out;
      }
      po.vote_threshold = t;
    }
  }
  if (s->has_threshold) {
    if (!probability_ok(s->threshold)) {
      fail(code, CODE(BAD_REQUEST), msg, msg_size, "threshold: must be in (0, 1), not %g",
           (double)s->threshold);
      goto out;
    }
    po.threshold = s->threshold;
  }
  if (s->n_class_thresholds > OSSEG_MAX_CLASSES) {
    fail(code, CODE(BAD_REQUEST), msg, msg_size, "class_thresholds: at most %d, not %zu",
         OSSEG_MAX_CLASSES, s->n_class_thresholds);
    goto out;
  }
  for (size_t i = 0; i < s->n_class_thresholds; i++) {
    const Osseg__Wire__ClassThreshold *ct = s->class_thresholds[i];
    if (!model_has_class(first, ct->name)) {
      fail(code, CODE(BAD_REQUEST), msg, msg_size,
           "class_thresholds[%zu].name: no class '%s' in model '%s'", i,
           quote(ct->name, q, sizeof q), osseg_loaded_model_name(first));
      goto out;
    }
    if (!probability_ok(ct->threshold)) {
      fail(code, CODE(BAD_REQUEST), msg, msg_size,
           "class_thresholds[%zu].threshold: must be in (0, 1), not %g", i,
           (double)ct->threshold);
      goto out;
    }
    po.class_thresholds[i].name = ct->name;
    po.class_thresholds[i].threshold = ct->threshold;
  }
  po.nclass_thresholds = s->n_class_thresholds;
  if (s->n_classes > OSSEG_MAX_CLASSES) {
    fail(code, CODE(BAD_REQUEST), msg, msg_size, "classes: at most %d names, not %zu",
         OSSEG_MAX_CLASSES, s->n_classes);
    goto out;
  }
  for (size_t i = 0; i < s->n_classes; i++) {
    if (!model_has_class(first, s->classes[i])) {
      fail(code, CODE(BAD_REQUEST), msg, msg_size, "classes[%zu]: no class '%s' in model '%s'",
           i, quote(s->classes[i], q, sizeof q), osseg_loaded_model_name(first));
      goto out;
    }
    po.classes[i] = s->classes[i];
  }
  po.nclasses = s->n_classes;
  po.png.max_width = po.png.max_height = lim->max_image_side;
  po.png.max_pixels = lim->max_image_pixels;

  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (osseg_pipeline_create(&out->pipeline, reg, &po, &diag) != 0) {
    fail(code, diag.code == OSSEG_ENOTFOUND ? CODE(UNKNOWN_MODEL) : CODE(BAD_REQUEST), msg,
         msg_size, "models: %s", diag.message[0] ? diag.message : "invalid combination");
    out->pipeline = NULL;
    goto out;
  }

  /* Ground truth: label JSON, parsed and checked here when it is short
   * (an unknown label costs no queue slot), else by the worker, and drawn
   * by the worker; or RLE text per known class, parsed here against the
   * image's size when it is known, else against the pixel limit (the
   * pipeline checks an ImageFd's runs against its decoded size). The
   * worker parses the RLE again into its own buffers. */
  if (s->ground_truth &&
      s->ground_truth->source_case == OSSEG__WIRE__GROUND_TRUTH__SOURCE_LABEL_JSON) {
    const char *json = s->ground_truth->label_json;
    struct osseg_label_json_limits ll;
    osseg_label_json_limits_default(&ll);
    size_t len = strlen(json);
    /* Text over the limit is refused here too: that costs no parsing. */
    if (len <= OSSEGD_LABEL_JSON_LOOP_BYTES || len > ll.max_bytes) {
      if (ossegd__parse_label_json(json, out->pipeline, &out->gt_labels, code, msg, msg_size))
        goto out;
    } else {
      out->gt_label_json = json;
    }
    out->has_gt = 1;
  } else if (s->ground_truth) {
    if (s->ground_truth->source_case != OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES) {
      fail(code, CODE(BAD_REQUEST), msg, msg_size, "ground_truth: rles or label_json required");
      goto out;
    }
    const Osseg__Wire__ClassRles *gr = s->ground_truth->rles;
    for (size_t i = 0; i < gr->n_classes; i++) {
      int c = class_index(out->pipeline, gr->classes[i]->name);
      if (c < 0) {
        fail(code, CODE(BAD_REQUEST), msg, msg_size,
             "ground_truth.rles.classes[%zu].name: no class '%s' in model '%s'", i,
             quote(gr->classes[i]->name, q, sizeof q), osseg_loaded_model_name(first));
        goto out;
      }
      if (out->gt_rle[c]) {
        fail(code, CODE(BAD_REQUEST), msg, msg_size,
             "ground_truth.rles.classes[%zu].name: class '%s' given twice", i,
             quote(gr->classes[i]->name, q, sizeof q));
        goto out;
      }
      uint64_t npixels = out->width ? (uint64_t)out->width * out->height : lim->max_image_pixels;
      if (npixels > OSSEG_MAX_PIXELS) npixels = OSSEG_MAX_PIXELS;
      char field[64];
      snprintf(field, sizeof field, "ground_truth.rles.classes[%zu].rle", i);
      if (check_rle(gr->classes[i]->rle, npixels, code, msg, msg_size, field,
                    gr->classes[i]->name) != 0)
        goto out;
      out->gt_rle[c] = gr->classes[i]->rle;
      out->has_gt = 1;
    }
  }
  if (out->output == OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY && !out->has_gt) {
    fail(code, CODE(BAD_REQUEST), msg, msg_size,
         "output: OUTPUT_DICE_ONLY needs ground_truth with at least one class");
    goto out;
  }
  rc = 0;
out:
  osseg_loaded_model_unref(first);
  if (rc != 0) ossegd__segment_release(out);
  return rc;
}

int ossegd__parse_label_json(const char *json, const struct osseg_pipeline *p,
                             struct osseg_labels **out, int *code, char *msg, size_t msg_size) {
  struct osseg_label_json_limits ll;
  osseg_label_json_limits_default(&ll);
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  int rc = osseg_labels_parse_json(out, "ground_truth.label_json", json, strlen(json),
                                   osseg_pipeline_class_names(p), osseg_pipeline_class_count(p),
                                   &ll, &diag);
  if (rc == 0) return 0;
  return fail(code, rc == OSSEG_ENOMEM ? CODE(INTERNAL) : CODE(BAD_REQUEST), msg, msg_size, "%s",
              diag.message[0] ? diag.message : osseg_strerror(rc));
}

void ossegd__segment_release(struct ossegd__segment *s) {
  osseg_pipeline_free(s->pipeline);
  s->pipeline = NULL;
  osseg_labels_free(s->gt_labels);
  s->gt_labels = NULL;
}
