/* osseg predict: segment PNG images in-process with one or more ONNX models
 * into a submission CSV (image_name,class,rle), optionally with overlays.
 *
 * Each image's rows reach the CSV only once its prediction succeeded, so a
 * failed image leaves no partial rows; the other images are still
 * processed and the exit status is 1 at the end. An overlay is written
 * after the image's rows: when it fails, the rows stay (the prediction is
 * good) and the failure is reported as an overlay failure, also exit 1. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_util.h"
#include "image_list.h"
#include "text_buf.h"
#include "commands.h"
#include "csv_index.h"
#include "engine_env.h"
#include "csv_input.h"
#include "label_file.h"
#include "osseg_pipeline.h"
#include "step_summary.h"

static const char *const CMD = "predict";

static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg predict --model MODEL.onnx [--model M2.onnx ...] -o OUT.csv\n"
          "                     [options] IMAGE.png|DIR ...\n"
          "\n"
          "Segments each image with the model(s) and writes one row per (image, class)\n"
          "to OUT.csv (image_name,class,rle; image_name is the file name). A DIR\n"
          "argument means every *.png in it, in name order.\n"
          "\n"
          "options:\n"
          "  --model FILE          ONNX model (repeat to ensemble up to %d models)\n"
          "  --precision P         fp32 (default), bf16 (fast on CPUs with AMX or\n"
          "                        AVX512_BF16), bf16-mixed, int8 (QDQ models), or\n"
          "                        auto (the fastest that keeps fidelity on this CPU)\n"
          "  --threshold T         probability threshold in (0, 1), default 0.5\n"
          "  --class-threshold C=T threshold for class C only (repeatable)\n"
          "  --vote hard|soft      combine models by hard votes (default) or mean\n"
          "                        probability\n"
          "  --vote-threshold T    hard voting keeps pixels with more than T votes,\n"
          "                        0 <= T < number of models (default: number of\n"
          "                        models / 2, rounded down)\n"
          "  --size S              model input size (for models with a symbolic size)\n"
          "  --normalize SPEC      div255 | imagenet | mean=a[,b,c];std=d[,e,f]\n"
          "                        (default: the model's metadata, else div255)\n"
          "  --classes FILE        class names, one per line or comma-separated\n"
          "                        (default: metadata, else the 29 canonical classes)\n"
          "  --threads N           inference threads (default: all cores)\n"
          "  --max-side N          refuse images wider or taller than N (default 16384)\n"
          "  --max-pixels N        refuse images with more than N pixels\n"
          "  --overlay-dir DIR     write DIR/<image>.overlay.png: image | [ground truth |]\n"
          "                        prediction, one colour per class\n"
          "  --gt GT.csv           ground truth: Dice per image and over all images\n"
          "                        (the numbers osseg dice OUT.csv GT.csv gives), and\n"
          "                        the overlays' middle panel\n"
          "  --labels DIR          ground truth from the dataset's label JSON instead:\n"
          "                        DIR/X.json for image X.png (a missing file fails\n"
          "                        the image); every class is scored\n"
          "  --overlay-shrink N    downscale overlay panels N times (default: to <= 1024)\n"
          "  --json                one JSON object per image on stdout, with timings\n"
          "  -v, --verbose         engine warnings (e.g. slow reference kernels), and at\n"
          "                        load each model's steps by precision and every step\n"
          "                        on slow code (reference or im2col+gemm)\n"
          "  -o, --output FILE     the CSV to write (required)\n",
          OSSEG_MAX_MODELS);
}

/* ------------------------------------------------------------- inputs --- */


/* Reads a class list file (names one per line, or comma-separated) into a
 * comma-separated string. */
static char *read_classes(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    cli_error(CMD, "%s: %s", path, strerror(errno));
    return NULL;
  }
  struct buf b = {0};
  int c, pending_sep = 0;
  while ((c = fgetc(f)) != EOF) {
    if (c == '\n' || c == '\r' || c == ',') {
      pending_sep = b.len > 0;
      continue;
    }
    if (pending_sep) {
      if (buf_append(&b, ",", 1)) break;
      pending_sep = 0;
    }
    char ch = (char)c;
    if (buf_append(&b, &ch, 1)) break;
  }
  fclose(f);
  if (buf_append(&b, "", 1) || b.len <= 1) {
    cli_error(CMD, "%s: no class names", path);
    free(b.data);
    return NULL;
  }
  return b.data;
}

/* ----------------------------------------------------------- per image --- */

struct predict_ctx {
  const char *image_name;
  struct buf rows;                 /* this image's CSV rows */
  int keep_masks;                  /* overlays need the masks afterwards */
  struct osseg_bitmask masks[OSSEG_MAX_CLASSES];
  struct osseg_bitmask *mask_ptrs[OSSEG_MAX_CLASSES];
  size_t nmasks;
  struct dice_sums *dice;          /* with --gt */
};

static int on_class(void *vctx, size_t cls, const char *name, const struct osseg_bitmask *mask,
                    const struct osseg_run *runs, size_t nruns) {
  struct predict_ctx *ctx = vctx;
  size_t ilen = strlen(ctx->image_name), clen = strlen(name);
  size_t need = osseg_csv_field_bound(ilen) + osseg_csv_field_bound(clen) +
                osseg_rle_format_bound(nruns) + 3;
  if (buf_reserve(&ctx->rows, need)) return OSSEG_ENOMEM;
  char *p = ctx->rows.data + ctx->rows.len;
  p = osseg_csv_put_field(p, ctx->image_name, ilen);
  *p++ = ',';
  p = osseg_csv_put_field(p, name, clen);
  *p++ = ',';
  p += osseg_rle_format(runs, nruns, p);
  *p++ = '\n';
  ctx->rows.len = (size_t)(p - ctx->rows.data);

  if (ctx->keep_masks) {
    struct osseg_bitmask *m = &ctx->masks[cls];
    if (m->height != mask->height || m->width != mask->width) {
      osseg_bitmask_free(m);
      int rc = osseg_bitmask_init(m, mask->height, mask->width);
      if (rc) return rc;
    }
    memcpy(m->bits, mask->bits, mask->nwords * sizeof *mask->bits);
    ctx->mask_ptrs[cls] = m;
    if (cls + 1 > ctx->nmasks) ctx->nmasks = cls + 1;
  }
  return 0;
}

/* Ground truth of one image from the GT CSV: runs per class, for Dice in
 * the pipeline and the overlays' middle panel. */
struct gt_image {
  struct osseg_runs runs[OSSEG_MAX_CLASSES];
  unsigned line[OSSEG_MAX_CLASSES]; /* GT line of each class's row */
  struct osseg_ground_truth gt;
};

/* Parses the image's GT rows. The image is not decoded yet, so runs are
 * bounded by the largest image here; the pipeline rejects runs past the
 * image's end (reported with the GT line by gt_past_end). A class without
 * a row is not scored, as in `osseg dice`. */
static int load_gt(const struct osseg_csv *gt, const struct csv_index *ix,
                   const struct osseg_pipeline *p, const char *image, struct gt_image *out,
                   struct osseg_diag *diag) {
  size_t ilen = strlen(image);
  memset(&out->gt, 0, sizeof out->gt);
  for (size_t c = 0; c < osseg_pipeline_class_count(p); c++) {
    const char *cls = osseg_pipeline_class_name(p, c);
    size_t clen = strlen(cls);
    size_t row = csv_index_find(ix, csv_index_hash(image, ilen, cls, clen), image, ilen, cls,
                                clen);
    if (row == CSV_INDEX_NONE) continue;
    const struct osseg_csv_row *r = &gt->rows[row];
    struct osseg_runs *runs = &out->runs[c];
    runs->n = 0;
    int rc = osseg_rle_parse(r->rle, r->rle_len, OSSEG_MAX_PIXELS, runs, diag);
    if (rc) {
      char msg[sizeof diag->message];
      snprintf(msg, sizeof msg, "%s", diag ? diag->message : "");
      osseg_diag_clear(diag);
      return osseg__fail(diag, rc, "%s:%u: %s", gt->path, r->line, msg);
    }
    out->line[c] = r->line;
    out->gt.has[c] = 1;
    out->gt.runs[c] = runs->v;
    out->gt.nruns[c] = runs->n;
  }
  return 0;
}

/* After the pipeline refused the ground truth: names the GT row whose runs
 * pass the end of the image. */
static void gt_past_end(const struct gt_image *g, const char *gt_path,
                        const struct osseg_image *img, struct osseg_diag *diag) {
  uint64_t npixels = (uint64_t)img->width * img->height;
  for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++) {
    if (!g->gt.has[c] || g->gt.nruns[c] == 0) continue;
    const struct osseg_run *last = &g->gt.runs[c][g->gt.nruns[c] - 1];
    if ((uint64_t)last->start + last->len <= npixels) continue;
    osseg_diag_clear(diag);
    osseg__fail(diag, OSSEG_ERANGE, "%s:%u: run past the end of the %ux%u image", gt_path,
                g->line[c], img->width, img->height);
    return;
  }
}

/* Ground truth masks for the overlays; classes without a row stay empty. */
static int gt_masks(const struct osseg_ground_truth *g, size_t nclasses, uint32_t h, uint32_t w,
                    struct osseg_bitmask *masks, struct osseg_bitmask **ptrs) {
  for (size_t c = 0; c < nclasses; c++) {
    ptrs[c] = NULL;
    if (!g->has[c]) continue;
    int rc = 0;
    if (masks[c].height != h || masks[c].width != w) {
      osseg_bitmask_free(&masks[c]);
      rc = osseg_bitmask_init(&masks[c], h, w);
    } else {
      osseg_bitmask_clear(&masks[c]);
    }
    if (rc == 0) rc = osseg_bitmask_paint_runs(&masks[c], g->runs[c], g->nruns[c]);
    if (rc) return rc;
    ptrs[c] = &masks[c];
  }
  return 0;
}

/* The image's --labels file parsed against the pipeline's classes;
 * messages start with the file's path. */
static int load_labels(const struct osseg_pipeline *p, const char *dir, const char *image_path,
                       struct osseg_labels **out, struct osseg_diag *diag) {
  struct label_file f;
  char msg[sizeof diag->message];
  if (label_file_read(&f, dir, image_path, msg, sizeof msg) != 0)
    return osseg__fail(diag, OSSEG_EIO, "%s", msg);
  int rc = osseg_labels_parse_json(out, f.path, f.text, f.len, osseg_pipeline_class_names(p),
                                   osseg_pipeline_class_count(p), NULL, diag);
  label_file_free(&f);
  return rc;
}

/* Dice of every image, summed per class, to report the same mean as
 * `osseg dice PRED.csv GT.csv` (per class over images, then over
 * classes). */
struct dice_sums {
  double sum[OSSEG_MAX_CLASSES];
  size_t count[OSSEG_MAX_CLASSES];
  struct osseg_dice_report last; /* this image's */
  int have_last;
};

static int on_dice(void *vctx, const struct osseg_dice_report *r) {
  struct predict_ctx *ctx = vctx;
  ctx->dice->last = *r;
  ctx->dice->have_last = 1;
  return 0;
}

static void dice_add(struct dice_sums *d) {
  for (size_t i = 0; i < d->last.n; i++) {
    d->sum[d->last.cls[i]] += d->last.dice[i];
    d->count[d->last.cls[i]]++;
  }
}

/* Mean over classes of each class's mean over images; -1 if none. */
static double dice_mean(const struct dice_sums *d, size_t *nclasses) {
  double total = 0;
  size_t n = 0;
  for (size_t c = 0; c < OSSEG_MAX_CLASSES; c++)
    if (d->count[c]) {
      total += d->sum[c] / (double)d->count[c];
      n++;
    }
  *nclasses = n;
  return n ? total / (double)n : -1.0;
}

struct overlay_opts {
  const char *dir;
  uint32_t shrink; /* 0 = automatic */
  const struct osseg_ground_truth *gt; /* this image's ground truth, or NULL */
  struct osseg_bitmask gt_masks[OSSEG_MAX_CLASSES];
};

static int write_overlay(struct overlay_opts *o, const struct osseg_pipeline *p,
                         const struct osseg_image *img, struct predict_ctx *ctx,
                         struct osseg_diag *diag) {
  struct osseg_bitmask *gt_ptrs[OSSEG_MAX_CLASSES] = {0};
  size_t ncls = osseg_pipeline_class_count(p);
  int rc = 0;
  if (o->gt) {
    rc = gt_masks(o->gt, ncls, img->height, img->width, o->gt_masks, gt_ptrs);
    if (rc) return osseg__fail(diag, rc, "overlay: %s", osseg_strerror(rc));
  }
  uint32_t shrink = o->shrink;
  if (shrink == 0) {
    uint32_t side = img->width > img->height ? img->width : img->height;
    shrink = (side + 1023) / 1024;
    if (shrink == 0) shrink = 1;
  }
  struct osseg_image out = {0};
  rc = osseg_overlay_panels(img, o->gt ? (const struct osseg_bitmask *const *)gt_ptrs : NULL,
                            (const struct osseg_bitmask *const *)ctx->mask_ptrs, ncls, 0.45f,
                            shrink, &out);
  if (rc) return osseg__fail(diag, rc, "overlay: %s", osseg_strerror(rc));
  char path[4096];
  int len = snprintf(path, sizeof path, "%s/%s.overlay.png", o->dir, ctx->image_name);
  if (len < 0 || (size_t)len >= sizeof path)
    rc = osseg__fail(diag, OSSEG_EINVAL, "overlay path too long");
  else
    rc = osseg_png_encode_file(path, &out, 3, diag);
  osseg_image_free(&out);
  return rc;
}

/* --------------------------------------------------------------- main --- */

/* Parses a probability threshold into *t; a value that is no number in
 * (0, 1), or one that rounds to 0 or 1 as a float, is reported quoting the
 * text as typed (what: "--threshold must be", ...). Returns 0 or -1. */
static int parse_threshold(const char *typed, float *t, const char *what) {
  int rc = cli_parse_probability(typed, t);
  if (rc == -1) cli_error(CMD, "%s a number in (0, 1), not '%s'", what, typed);
  if (rc == -2)
    cli_error(CMD, "%s a number in (0, 1), not '%s' (it rounds to %g in single precision)", what,
              typed, (double)*t);
  return rc ? -1 : 0;
}

int osseg_cmd_predict(int argc, char **argv) {
  struct osseg_pipeline_options cfg;
  osseg_pipeline_options_default(&cfg);
  struct osseg_model_spec specs[OSSEG_MAX_MODELS];
  memset(specs, 0, sizeof specs);
  int verbose = 0;
  const char *output = NULL, *classes_file = NULL, *normalize = NULL;
  char *gt_path = NULL;
  const char *labels_dir = NULL;
  const char *vote_thr_text = NULL;
  struct overlay_opts ov = {0};
  enum osseg_precision precision = OSSEG_PRECISION_FP32;
  uint32_t size = 0, threads = 0;
  int json = 0;

  enum { O_MODEL = 256, O_PRECISION, O_THRESHOLD, O_CLASS_THR, O_VOTE, O_VOTE_THR, O_SIZE,
         O_NORMALIZE, O_CLASSES, O_THREADS, O_MAX_SIDE, O_MAX_PIXELS, O_OVERLAY, O_GT,
         O_LABELS, O_SHRINK, O_JSON };
  static const struct option opts[] = {
      {"model", required_argument, NULL, O_MODEL},
      {"precision", required_argument, NULL, O_PRECISION},
      {"threshold", required_argument, NULL, O_THRESHOLD},
      {"class-threshold", required_argument, NULL, O_CLASS_THR},
      {"vote", required_argument, NULL, O_VOTE},
      {"vote-threshold", required_argument, NULL, O_VOTE_THR},
      {"size", required_argument, NULL, O_SIZE},
      {"normalize", required_argument, NULL, O_NORMALIZE},
      {"classes", required_argument, NULL, O_CLASSES},
      {"threads", required_argument, NULL, O_THREADS},
      {"max-side", required_argument, NULL, O_MAX_SIDE},
      {"max-pixels", required_argument, NULL, O_MAX_PIXELS},
      {"overlay-dir", required_argument, NULL, O_OVERLAY},
      {"gt", required_argument, NULL, O_GT},
      {"labels", required_argument, NULL, O_LABELS},
      {"overlay-shrink", required_argument, NULL, O_SHRINK},
      {"json", no_argument, NULL, O_JSON},
      {"verbose", no_argument, NULL, 'v'},
      {"output", required_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int o;
  while ((o = getopt_long(argc, argv, ":o:vh", opts, NULL)) != -1) {
    switch (o) {
      case O_MODEL:
        if (cfg.nmodels == OSSEG_MAX_MODELS) {
          cli_error(CMD, "at most %d models", OSSEG_MAX_MODELS);
          return CLI_USAGE;
        }
        specs[cfg.nmodels++].path = optarg;
        break;
      case O_PRECISION:
        if (osseg_precision_parse(optarg, &precision) != 0) {
          cli_error(CMD, "--precision must be fp32, bf16, bf16-mixed, int8 or auto, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case O_THRESHOLD:
        if (parse_threshold(optarg, &cfg.threshold, "--threshold must be") != 0) return CLI_USAGE;
        break;
      case O_CLASS_THR:
        if (cfg.nclass_thresholds == OSSEG_MAX_CLASSES || !strchr(optarg, '=')) {
          cli_error(CMD, "--class-threshold takes CLASS=T, not '%s'", optarg);
          return CLI_USAGE;
        }
        {
          char *eq = strchr(optarg, '=');
          *eq = '\0'; /* argv strings are ours to modify */
          char what[160];
          snprintf(what, sizeof what, "--class-threshold %.100s: the threshold must be", optarg);
          struct osseg_class_threshold *ct = &cfg.class_thresholds[cfg.nclass_thresholds];
          if (parse_threshold(eq + 1, &ct->threshold, what) != 0) return CLI_USAGE;
          ct->name = optarg;
          cfg.nclass_thresholds++;
        }
        break;
      case O_VOTE:
        if (strcmp(optarg, "hard") == 0) cfg.vote = OSSEG_VOTE_HARD;
        else if (strcmp(optarg, "soft") == 0) cfg.vote = OSSEG_VOTE_SOFT;
        else {
          cli_error(CMD, "--vote must be hard or soft, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case O_VOTE_THR:
        vote_thr_text = optarg;
        if (cli_parse_nonneg_double(optarg, &cfg.vote_threshold) != 0) {
          cli_error(CMD, "--vote-threshold must be a number >= 0, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case O_SIZE:
        if (cli_parse_u32(optarg, 1, OSSEG_MAX_SIDE, &size) != 0) {
          cli_error(CMD, "--size must be 1..%u, not '%s'", OSSEG_MAX_SIDE, optarg);
          return CLI_USAGE;
        }
        break;
      case O_NORMALIZE: normalize = optarg; break;
      case O_CLASSES: classes_file = optarg; break;
      case O_THREADS:
        if (cli_parse_u32(optarg, 1, 1024, &threads) != 0) {
          cli_error(CMD, "--threads must be 1..1024, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case O_MAX_SIDE: {
        uint32_t v;
        if (cli_parse_u32(optarg, 1, OSSEG_MAX_SIDE, &v) != 0) {
          cli_error(CMD, "--max-side must be 1..%u, not '%s'", OSSEG_MAX_SIDE, optarg);
          return CLI_USAGE;
        }
        cfg.png.max_width = cfg.png.max_height = v;
        break;
      }
      case O_MAX_PIXELS: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(optarg, &end, 10);
        if (errno || *end || v == 0 || optarg[0] == '-') {
          cli_error(CMD, "--max-pixels must be a positive integer, not '%s'", optarg);
          return CLI_USAGE;
        }
        cfg.png.max_pixels = v;
        break;
      }
      case O_OVERLAY: ov.dir = optarg; break;
      case O_GT: gt_path = optarg; break;
      case O_LABELS: labels_dir = optarg; break;
      case O_SHRINK:
        if (cli_parse_u32(optarg, 1, 64, &ov.shrink) != 0) {
          cli_error(CMD, "--overlay-shrink must be 1..64, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case O_JSON: json = 1; break;
      case 'v': verbose = 1; break;
      case 'o': output = optarg; break;
      case 'h': usage(stdout); return CLI_OK;
      case ':':
        cli_error(CMD, "option %s needs a value", argv[optind - 1]);
        return CLI_USAGE;
      default:
        cli_error(CMD, "unknown option '%s'", argv[optind - 1]);
        usage(stderr);
        return CLI_USAGE;
    }
  }
  if (cfg.nmodels == 0 || !output || optind >= argc) {
    cli_error(CMD, "%s", cfg.nmodels == 0 ? "--model is required"
                         : !output        ? "-o OUT.csv is required"
                                          : "no images given");
    usage(stderr);
    return CLI_USAGE;
  }
  if (gt_path && labels_dir) {
    cli_error(CMD, "--gt and --labels both give ground truth; use one");
    return CLI_USAGE;
  }
  /* Checked against the number of models whatever that number is: with one
   * model a threshold of 1 or more would empty every mask, as with two. */
  if (vote_thr_text && cfg.vote_threshold >= (double)cfg.nmodels) {
    cli_error(CMD,
              "--vote-threshold %s: a pixel would need more than %s votes of %zu model(s), "
              "so every mask would be empty; give a number below %zu",
              vote_thr_text, vote_thr_text, cfg.nmodels, cfg.nmodels);
    return CLI_USAGE;
  }

  int status = CLI_FAILED;
  char *classes = NULL;
  struct osseg_registry *reg = NULL;
  struct osseg_pipeline *p = NULL;
  struct osseg_workspace *ws = NULL;
  struct osseg_csv_writer *w = NULL;
  struct osseg_csv gt = {0};
  struct csv_index gt_index = {0};
  struct image_list images = {0};
  struct predict_ctx ctx = {0};
  struct dice_sums dice = {0};
  struct gt_image gti = {0};
  ctx.dice = &dice;
  struct buf line = {0};
  struct osseg_diag diag;
  osseg_diag_clear(&diag);

  if (classes_file && !(classes = read_classes(classes_file))) goto done;
  /* Models are registered as "1", "2", ... so that one file given twice,
   * or two files of the same name, stay apart; messages name the files. */
  char names[OSSEG_MAX_MODELS][24];
  for (size_t i = 0; i < cfg.nmodels; i++) {
    snprintf(names[i], sizeof names[i], "%zu", i + 1);
    specs[i].name = cfg.models[i] = names[i];
    specs[i].precision = precision;
    specs[i].input_size = size;
    specs[i].normalize = normalize;
    specs[i].classes = classes;
  }
  struct osseg_engine_options eo;
  osseg_engine_options_default(&eo);
  eo.threads = (int)threads;
  if (cli_engine_options_from_env(&eo, CMD, verbose) != 0) {
    status = CLI_USAGE;
    goto done;
  }

  for (int i = optind; i < argc; i++)
    if (image_list_add(&images, CMD, argv[i]) != 0) goto done;
  if (images.n == 0) goto done;

  if (ov.dir && mkdir(ov.dir, 0777) != 0 && errno != EEXIST) {
    cli_error(CMD, "%s: cannot create the overlay directory: %s", ov.dir, strerror(errno));
    goto done;
  }
  if (gt_path) {
    /* Parsed and indexed like the inputs of dice and ensemble: the same
     * errors, duplicates included. */
    if (csv_input_load_all(CMD, &gt_path, 1, 1, &gt, &gt_index) != 0) goto done;
  }

  uint64_t t_load = osseg_now_ns();
  if (osseg_registry_create(&reg, &eo) != 0) {
    cli_error(CMD, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < cfg.nmodels; i++)
    if (osseg_registry_load(reg, &specs[i], NULL, &diag) != 0) {
      cli_error(CMD, "%s", diag.message);
      goto done;
    }
  if (osseg_pipeline_create(&p, reg, &cfg, &diag) != 0) {
    cli_error(CMD, "%s", diag.message);
    goto done;
  }
  cli_note_bf16(CMD, precision == OSSEG_PRECISION_BF16 || precision == OSSEG_PRECISION_BF16_MIXED);
  double load_ms = (double)(osseg_now_ns() - t_load) / 1e6;
  for (size_t i = 0; verbose && i < cfg.nmodels; i++) {
    struct osseg_loaded_model *lm = NULL;
    if (osseg_registry_get(reg, names[i], &lm) != 0) continue;
    char what[4200];
    snprintf(what, sizeof what, "%s: %s", CMD, specs[i].path);
    cli_print_step_notes(stderr, what, osseg_loaded_model_engine(lm));
    osseg_loaded_model_unref(lm);
  }

  if (!json)
    fprintf(stderr, "osseg predict: %zu model(s) loaded in %.0f ms, %zu classes, %zu image(s)\n",
            osseg_pipeline_model_count(p), load_ms, osseg_pipeline_class_count(p), images.n);
  if (osseg_workspace_create(&ws, 0) != 0 || osseg_csv_writer_open(&w, output, &diag) != 0) {
    cli_error(CMD, "%s", diag.message[0] ? diag.message : "out of memory");
    goto done;
  }

  size_t failed = 0, overlays_failed = 0;
  ctx.keep_masks = ov.dir != NULL;
  for (size_t i = 0; i < images.n; i++) {
    const char *path = images.paths[i];
    const char *name = image_base_name(path);
    int dup = 0;
    for (size_t j = 0; j < i && !dup; j++) dup = strcmp(image_base_name(images.paths[j]), name) == 0;
    struct osseg_timings t = {0};
    /* Images go one at a time, so the cores are free after inference:
     * post-processing takes two threads. */
    struct osseg_run_request rq = {
        .on_class = on_class, .ctx = &ctx, .timings = &t, .parallel_postprocess = 1};
    struct osseg_labels *labels = NULL;
    if (gt_path) rq.gt = &gti.gt;
    if (gt_path || labels_dir) rq.on_dice = on_dice;
    dice.have_last = 0;
    osseg_diag_clear(&diag);
    ctx.image_name = name;
    ctx.rows.len = 0;
    memset(ctx.mask_ptrs, 0, sizeof ctx.mask_ptrs);
    int rc;
    if (dup)
      rc = osseg__fail(&diag, OSSEG_EDUPLICATE,
                       "another image has the same file name; image_name would repeat");
    else if (gt_path && (rc = load_gt(&gt, &gt_index, p, name, &gti, &diag)) != 0)
      ;
    else if (labels_dir && (rc = load_labels(p, labels_dir, path, &labels, &diag)) != 0)
      ;
    else {
      rq.labels = labels;
      rc = osseg_pipeline_run_file(p, ws, path, &rq, &diag);
      if (rc == OSSEG_ERANGE && gt_path)
        gt_past_end(&gti, gt_path, osseg_workspace_image(ws), &diag);
    }
    osseg_labels_free(labels);
    /* The overlays' middle panel: the rows of GT.csv, or the labels as the
     * pipeline drew them. */
    ov.gt = gt_path ? &gti.gt : labels_dir ? osseg_workspace_ground_truth(ws) : NULL;
    if (rc == 0) rc = osseg_csv_write_raw(w, ctx.rows.data, ctx.rows.len);
    if (rc == 0 && dice.have_last) dice_add(&dice);
    if (rc) {
      failed++;
      cli_error_file(CMD, path, diag.message[0] ? diag.message : osseg_strerror(rc));
    }
    struct osseg_diag ov_diag;
    osseg_diag_clear(&ov_diag);
    int ov_rc = 0;
    if (rc == 0 && ov.dir) {
      ov_rc = write_overlay(&ov, p, osseg_workspace_image(ws), &ctx, &ov_diag);
      if (ov_rc) {
        overlays_failed++;
        if (!ov_diag.message[0]) osseg__fail(&ov_diag, ov_rc, "%s", osseg_strerror(ov_rc));
        cli_error(CMD, "overlay for %s failed: %s", path, ov_diag.message);
      }
    }
    if (json) {
      line.len = 0;
      char num[512];
      int ok = buf_append(&line, "{\"image\":", 9) == 0 && buf_json_string(&line, name) == 0;
      if (rc == 0) {
        const struct osseg_image *img = osseg_workspace_image(ws);
        snprintf(num, sizeof num,
                 ",\"status\":\"ok\",\"width\":%u,\"height\":%u,\"decode_ms\":%.3f,"
                 "\"preprocess_ms\":%.3f,\"inference_ms\":%.3f,\"postprocess_ms\":%.3f,"
                 "\"total_ms\":%.3f",
                 img->width, img->height, t.decode_ms, t.preprocess_ms, t.inference_ms,
                 t.postprocess_ms, t.total_ms);
        ok = ok && buf_append(&line, num, strlen(num)) == 0;
        if (dice.have_last) {
          snprintf(num, sizeof num, ",\"dice\":%.9g", dice.last.mean);
          ok = ok && buf_append(&line, num, strlen(num)) == 0;
        }
        if (ov_rc)
          ok = ok && buf_append(&line, ",\"overlay_error\":", 17) == 0 &&
               buf_json_string(&line, ov_diag.message) == 0;
        ok = ok && buf_append(&line, "}\n", 2) == 0;
      } else {
        ok = ok && buf_append(&line, ",\"status\":\"error\",\"error\":", 26) == 0 &&
             buf_json_string(&line, diag.message[0] ? diag.message : osseg_strerror(rc)) == 0 &&
             buf_append(&line, "}\n", 2) == 0;
      }
      if (ok) fwrite(line.data, 1, line.len, stdout);
      fflush(stdout);
    } else if (rc == 0) {
      char dice_text[32] = "";
      if (dice.have_last) snprintf(dice_text, sizeof dice_text, ", Dice %.4f", dice.last.mean);
      fprintf(stderr,
              "osseg predict: %s: %.1f ms (decode %.1f, preprocess %.1f, inference %.1f, "
              "postprocess %.1f)%s\n",
              name, t.total_ms, t.decode_ms, t.preprocess_ms, t.inference_ms, t.postprocess_ms,
              dice_text);
    }
  }
  int rc = osseg_csv_writer_close(w, &diag);
  w = NULL;
  if (rc) {
    cli_error(CMD, "%s", diag.message);
    goto done;
  }
  size_t scored;
  double mean = dice_mean(&dice, &scored);
  if ((gt_path || labels_dir) && scored)
    fprintf(stderr, "osseg predict: mean Dice %.6f over %zu class(es) against %s\n", mean,
            scored, gt_path ? gt_path : labels_dir);
  if (failed)
    cli_error(CMD, "%zu of %zu image(s) failed; %s has the rows of the others", failed,
              images.n, output);
  if (overlays_failed)
    cli_error(CMD, "%zu of %zu overlay(s) failed; the rows of those images are in %s",
              overlays_failed, images.n - failed, output);
  status = failed || overlays_failed ? CLI_FAILED : CLI_OK;

done:
  osseg_csv_writer_abort(w);
  osseg_workspace_free(ws);
  osseg_pipeline_free(p);
  osseg_registry_free(reg);
  csv_index_free(&gt_index);
  osseg_csv_close(&gt);
  for (size_t i = 0; i < OSSEG_MAX_CLASSES; i++) {
    osseg_bitmask_free(&ctx.masks[i]);
    osseg_bitmask_free(&ov.gt_masks[i]);
    osseg_runs_free(&gti.runs[i]);
  }
  image_list_free(&images);
  free(ctx.rows.data);
  free(line.data);
  free(classes);
  return status;
}
