/* osseg quantize: an fp32 ONNX model -> a QDQ (int8) ONNX model, calibrated
 * on radiographs preprocessed as the model's own runs preprocess them.
 * The work is the quantize library's (quantize/osseg_quantize.h); this file
 * maps options, reads the images, shows progress and prints the summary. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "engine_env.h"
#include "image_list.h"
#include "osseg_imaging.h"
#include "osseg_pipeline.h"
#include "osseg_quantize.h"

#define CMD "quantize"
#define MAX_CALIB 4096

static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg quantize --model M.onnx --calib DIR|IMAGE.png... -o OUT.onnx\n"
          "         [--calib-count N] [--method minmax|percentile|mse|entropy] [--percentile P]\n"
          "         [--placement convs|ort] [--fp32-layers auto|NAME,...] [--target-agreement PCT]\n"
          "         [--sensitivity-images N] [--eval-precision int8|fp32] [--size S]\n"
          "         [--threads N] [--json] [--quiet] [--verbose]\n"
          "Writes a quantized (QDQ) copy of an fp32 model: every Conv's input is quantized\n"
          "per tensor (uint8 with a zero point, range from the calibration images by\n"
          "--method; default minmax), its weights per output channel (int8). osseg runs it\n"
          "with --precision int8 (or auto); ONNX Runtime runs it as it is. The model's\n"
          "metadata (classes, input size, normalisation) is kept.\n"
          "  --calib          PNG radiographs or folders of them (name order); they go\n"
          "                   through the model's own preprocessing. Use images you do not\n"
          "                   evaluate on.\n"
          "  --calib-count N  use the first N images (default 16)\n"
          "  --percentile P   the percentile method's cut-off, in (90, 100] (default 99.999)\n"
          "  --placement      where the quantization points go: convs (default: only the\n"
          "                   conv inputs; best fidelity) or ort (also the inputs of Add,\n"
          "                   Concat, MaxPool and nearest Resize, where ONNX Runtime's\n"
          "                   quantize_static puts them: ONNX Runtime runs the file much\n"
          "                   faster, osseg a little faster and in less memory; check the\n"
          "                   agreement; for convolutional models: SegFormer's adds join\n"
          "                   float matmuls, and it loses there)\n"
          "  --fp32-layers    Conv nodes to keep in fp32: names, and/or 'auto': measure each\n"
          "                   conv's sensitivity (logit error with only it quantized) and keep\n"
          "                   the worst in fp32 until the masks agree with fp32's on the\n"
          "                   calibration images at --target-agreement (mean Dice, percent;\n"
          "                   default 99.5)\n"
          "  --sensitivity-images N  images the sensitivity is measured on (default 4)\n"
          "  --eval-precision how the agreement is measured: int8 (default where the CPU\n"
          "                   has VNNI or AMX) or fp32 (the quantization computed in float)\n"
          "  --json           print the report as JSON (per conv: range, scale, kept or not)\n"
          "Progress goes to stderr on a terminal; --quiet drops it.\n");
}

struct progress_state {
  int on;
  const char *last;
};

static void on_progress(void *ctx, const char *stage, size_t done, size_t total) {
  struct progress_state *p = ctx;
  if (!p->on) return;
  fprintf(stderr, "\rosseg quantize: %-12s %zu/%zu\033[K", stage, done + 1 > total ? total : done + 1,
          total);
  fflush(stderr);
  p->last = stage;
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static void print_json(const struct osseg_quantize_report *r, const char *out, size_t bytes,
                       const char *method) {
  printf("{\"output\": ");
  json_str(stdout, out);
  printf(", \"bytes\": %zu, \"method\": \"%s\", \"placement\": \"%s\", \"inputs\": %zu,"
         " \"convs\": %zu, \"quantized\": %zu, \"other_points\": %zu,"
         " \"agreement\": %.6f, \"agreement_all_int8\": %.6f, \"eval_precision\": \"%s\","
         " \"seconds\": %.3f, \"layers\": [",
         bytes, method, osseg_qdq_placement_name(r->placement), r->inputs, r->convs, r->quantized,
         r->other_points, r->agreement, r->agreement_all, osseg_precision_name(r->eval_precision),
         r->seconds);
  for (size_t i = 0; i < r->convs; i++) {
    const struct osseg_quantize_conv *c = &r->conv[i];
    printf("%s\n  {\"name\": ", i ? "," : "");
    json_str(stdout, c->name);
    printf(", \"input\": ");
    json_str(stdout, c->input);
    printf(", \"int8\": %s", c->quantized ? "true" : "false");
    if (!c->quantized) {
      printf(", \"why\": ");
      json_str(stdout, c->why);
    }
    if (c->sensitivity >= 0) printf(", \"sensitivity\": %.6g", c->sensitivity);
    if (isfinite(c->lo) && isfinite(c->hi))
      printf(", \"min\": %.6g, \"max\": %.6g", (double)c->lo, (double)c->hi);
    printf(", \"scale\": %.6g, \"zero_point\": %d}", (double)c->scale, c->zero_point);
  }
  printf("]}\n");
}

static void print_summary(const struct osseg_quantize_report *r, const char *out, size_t bytes,
                          const char *method, size_t images) {
  printf("osseg quantize: %zu of %zu convs int8 -> %s (%.1f MB)\n", r->quantized, r->convs, out,
         (double)bytes / 1e6);
  printf("  calibration   %s on %zu images, %.1f s\n", method, images, r->seconds);
  if (r->placement == OSSEG_QDQ_ORT)
    printf("  placement     ort: %zu more tensors quantized for Add, Concat, MaxPool and nearest Resize\n",
           r->other_points);
  size_t kept = r->convs - r->quantized;
  if (kept) {
    printf("  kept in fp32  %zu:\n", kept);
    for (size_t i = 0; i < r->convs; i++) {
      const struct osseg_quantize_conv *c = &r->conv[i];
      if (c->quantized) continue;
      if (c->sensitivity >= 0)
        printf("    %s  (%s: logit error %.2f %% when only it is int8)\n", c->name, c->why,
               100 * c->sensitivity);
      else
        printf("    %s  (%s)\n", c->name, c->why);
    }
  }
  printf("  agreement     mean Dice %.4f against fp32 masks on the calibration images (%s run)",
         r->agreement, osseg_precision_name(r->eval_precision));
  if (r->agreement_all != r->agreement) printf("; %.4f with every conv int8", r->agreement_all);
  printf("\n");
}

/* Same file as the model? (so -o cannot overwrite what is being read) */
static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int osseg_cmd_quantize(int argc, char **argv) {
  const char *model = NULL, *out = NULL;
  struct image_list calib = {0};
  uint32_t count = 16, size = 0, threads = 0, sens = 4;
  int json = 0, quiet = 0, verbose = 0, rc = CLI_FAILED;
  char *layers = NULL;
  struct osseg_quantize_options qo;
  osseg_quantize_options_default(&qo);
  const char **names = NULL;
  size_t nnames = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      image_list_free(&calib);
      return CLI_OK;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--quiet")) {
      quiet = 1;
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      verbose = 1;
    } else if (!v) {
      cli_error(CMD, "%s: unknown option or missing value (see --help)", a);
      goto usage_error;
    } else if (!strcmp(a, "--model")) {
      model = argv[++i];
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      out = argv[++i];
    } else if (!strcmp(a, "--calib")) {
      /* one or more paths, up to the next option */
      while (i + 1 < argc && argv[i + 1][0] != '-')
        if (image_list_add(&calib, "quantize", argv[++i])) goto done;
    } else if (!strcmp(a, "--calib-count")) {
      if (cli_parse_u32(argv[++i], 1, MAX_CALIB, &count)) {
        cli_error(CMD, "--calib-count must be 1..%d", MAX_CALIB);
        goto usage_error;
      }
    } else if (!strcmp(a, "--method")) {
      enum osseg_calib_method m;
      if (osseg_calib_method_parse(argv[++i], &m)) {
        cli_error(CMD, "--method must be minmax, percentile, mse or entropy");
        goto usage_error;
      }
      qo.method = m;
    } else if (!strcmp(a, "--placement")) {
      enum osseg_qdq_placement pl;
      if (osseg_qdq_placement_parse(argv[++i], &pl)) {
        cli_error(CMD, "--placement must be convs or ort");
        goto usage_error;
      }
      qo.placement = pl;
    } else if (!strcmp(a, "--percentile")) {
      double p;
      if (cli_parse_nonneg_double(argv[++i], &p) || !(p > 90 && p <= 100)) {
        cli_error(CMD, "--percentile must be in (90, 100]");
        goto usage_error;
      }
      qo.percentile = p;
    } else if (!strcmp(a, "--target-agreement")) {
      double p;
      const char *s = argv[++i];
      char buf[64];
      snprintf(buf, sizeof buf, "%s", s);
      size_t l = strlen(buf);
      if (l && buf[l - 1] == '%') buf[l - 1] = '\0';
      if (cli_parse_nonneg_double(buf, &p) || !(p > 0 && p <= 100)) {
        cli_error(CMD, "--target-agreement must be a percentage in (0, 100]");
        goto usage_error;
      }
      qo.target_agreement = p / 100;
    } else if (!strcmp(a, "--sensitivity-images")) {
      if (cli_parse_u32(argv[++i], 1, MAX_CALIB, &sens)) {
        cli_error(CMD, "--sensitivity-images must be 1..%d", MAX_CALIB);
        goto usage_error;
      }
    } else if (!strcmp(a, "--eval-precision")) {
      const char *s = argv[++i];
      if (!strcmp(s, "int8")) qo.eval_precision = OSSEG_PRECISION_INT8;
      else if (!strcmp(s, "fp32")) qo.eval_precision = OSSEG_PRECISION_FP32;
      else {
        cli_error(CMD, "--eval-precision must be int8 or fp32");
        goto usage_error;
      }
    } else if (!strcmp(a, "--fp32-layers")) {
      free(layers);
      layers = strdup(argv[++i]);
      if (!layers) goto done;
    } else if (!strcmp(a, "--size")) {
      if (cli_parse_u32(argv[++i], 1, 65536, &size)) {
        cli_error(CMD, "--size must be 1..65536");
        goto usage_error;
      }
    } else if (!strcmp(a, "--threads")) {
      if (cli_parse_u32(argv[++i], 1, 4096, &threads)) {
        cli_error(CMD, "--threads must be 1..4096");
        goto usage_error;
      }
    } else {
      cli_error(CMD, "unknown option %s (see --help)", a);
      goto usage_error;
    }
  }
  if (!model || !out || !calib.n) {
    cli_error(CMD, "--model, --calib and -o are required (see --help)");
    goto usage_error;
  }
  if (same_file(model, out)) {
    cli_error(CMD, "%s: -o names the model being quantized; write to another file", out);
    goto usage_error;
  }
  /* --fp32-layers: names and/or auto */
  if (layers) {
    size_t cap = 1;
    for (const char *p = layers; *p; p++) cap += *p == ',';
    names = calloc(cap, sizeof *names);
    if (!names) goto done;
    for (char *save = NULL, *t = strtok_r(layers, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      if (!strcmp(t, "auto")) qo.fp32_auto = 1;
      else names[nnames++] = t;
    }
    qo.fp32_layers = names;
    qo.nfp32_layers = nnames;
  }
  qo.sensitivity_inputs = sens;
  if (cli_engine_options_from_env(&qo.engine, CMD, verbose) != 0) goto usage_error;
  qo.engine.threads = (int)threads;
  qo.engine.input_size = size;

  /* the model's own preprocessing and thresholds, from the pipeline */
  struct osseg_diag diag = {0};
  struct osseg_registry *reg = NULL;
  struct osseg_loaded_model *lm = NULL;
  float **inputs = NULL;
  size_t ninputs = calib.n < count ? calib.n : count;
  float thr[OSSEG_MAX_CLASSES];
  void *map = NULL, *qbytes = NULL;
  size_t msize = 0, qsize = 0;
  struct osseg_quantize_report rep = {0};
  struct progress_state ps = {!quiet && !json && isatty(2), NULL};
  struct osseg_model_spec spec = {.path = model, .precision = OSSEG_PRECISION_FP32,
                                  .input_size = size};
  if (osseg_registry_create(&reg, &qo.engine) || osseg_registry_load(reg, &spec, NULL, &diag) ||
      osseg_registry_get_at(reg, 0, &lm)) {
    cli_error_file(CMD, model, diag.message[0] ? diag.message : "cannot load the model");
    goto cleanup;
  }
  size_t elems = osseg_model_input_elems(osseg_loaded_model_engine(lm));
  size_t nclasses = osseg_loaded_model_class_count(lm);
  for (size_t c = 0; c < nclasses && c < OSSEG_MAX_CLASSES; c++) thr[c] = osseg_loaded_model_threshold(lm, c);
  qo.thresholds = thr;
  qo.nthresholds = nclasses;
  inputs = calloc(ninputs, sizeof *inputs);
  if (!inputs) goto cleanup;
  for (size_t i = 0; i < ninputs; i++) {
    struct osseg_image img = {0};
    if (ps.on) {
      fprintf(stderr, "\rosseg quantize: %-12s %zu/%zu\033[K", "reading", i + 1, ninputs);
      fflush(stderr);
    }
    inputs[i] = malloc(elems * sizeof(float));
    if (!inputs[i]) {
      cli_error(CMD, "out of memory for %zu calibration images", ninputs);
      goto cleanup;
    }
    if (osseg_png_decode_file(calib.paths[i], NULL, &img, &diag)) {
      if (ps.on) fputc('\n', stderr);
      cli_error_file(CMD, calib.paths[i], diag.message);
      goto cleanup;
    }
    int prc = osseg_loaded_model_preprocess(lm, &img, inputs[i]);
    osseg_image_free(&img);
    if (prc) {
      if (ps.on) fputc('\n', stderr);
      cli_error(CMD, "%s: preprocessing failed: %s", calib.paths[i], osseg_strerror(prc));
      goto cleanup;
    }
  }
  osseg_loaded_model_unref(lm);
  lm = NULL;
  osseg_registry_free(reg); /* its model is not needed any more */
  reg = NULL;
  if (osseg__map_file(model, qo.engine.max_model_bytes, &map, &msize, &diag)) {
    cli_error_file(CMD, model, diag.message);
    goto cleanup;
  }
  qo.progress = on_progress;
  qo.progress_ctx = &ps;
  int qrc = osseg_quantize(map, msize, (const float *const *)inputs, ninputs, &qo, &qbytes, &qsize,
                           &rep, &diag);
  if (ps.on && ps.last) fputc('\n', stderr);
  if (qrc) {
    cli_error_file(CMD, model, diag.message);
    goto cleanup;
  }
  if (osseg_output_write_file(out, qbytes, qsize, &diag)) {
    cli_error_file(CMD, out, diag.message);
    goto cleanup;
  }
  if (json)
    print_json(&rep, out, qsize, osseg_calib_method_name(qo.method));
  else
    print_summary(&rep, out, qsize, osseg_calib_method_name(qo.method), ninputs);
  rc = CLI_OK;
cleanup:
  osseg_quantize_report_free(&rep);
  osseg__free(qbytes);
  if (map) osseg__unmap_file(map, msize);
  for (size_t i = 0; inputs && i < ninputs; i++) free(inputs[i]);
  free(inputs);
  if (lm) osseg_loaded_model_unref(lm);
  osseg_registry_free(reg);
done:
  free(names);
  free(layers);
  image_list_free(&calib);
  return rc;
usage_error:
  free(names);
  free(layers);
  image_list_free(&calib);
  return CLI_USAGE;
}
