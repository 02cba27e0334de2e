/* osseg overlay: one radiograph with its ground truth and predictions drawn
 * over it, as a PNG: panels image | ground truth | prediction(s), or a diff
 * of each prediction against the ground truth (true positives, false
 * positives, false negatives), with a legend of the classes and, with
 * ground truth, the image's Dice per class and their mean.
 *
 * The drawing is imaging/'s (osseg_overlay_compose), the same code that
 * draws `osseg predict --overlay-dir`; this file only gathers the masks
 * from CSVs or label JSON and formats the legend. Classes are the 29
 * canonical ones (osseg_canonical_class); the class colours are
 * osseg_overlay_class_color's palette. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "csv_input.h"
#include "image_list.h"
#include "label_file.h"
#include "osseg_imaging.h"
#include "osseg_pipeline.h"

static const char *const CMD = "overlay";

#define NCLS OSSEG_CANONICAL_CLASSES
/* Panels: the image, the ground truth and up to MAX_PREDS predictions. */
#define MAX_PREDS 62

static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg overlay IMAGE.png [--gt GT.csv|LABEL.json] [--pred PRED.csv ...]\n"
          "                     [--classes NAME,...] [--mode side-by-side|diff]\n"
          "                     [--opacity A] [--shrink N] [--text-scale N] -o OUT.png\n"
          "\n"
          "Draws the image's masks over it into OUT.png: panels image | ground truth |\n"
          "one per prediction (titled with the CSV's file name), and below them a\n"
          "legend of the classes drawn, each with its colour, and with --gt the\n"
          "image's Dice per class for each prediction and their mean.\n"
          "\n"
          "  --gt FILE            ground truth: a CSV (image_name,class,rle; the rows\n"
          "                       whose image_name is IMAGE's file name) or, for a\n"
          "                       name ending in .json, the dataset's label JSON\n"
          "  --pred FILE          a prediction CSV (repeatable, up to %d)\n"
          "  --classes A,B,...    draw and score only these classes (finger-1 ...\n"
          "                       finger-19, Trapezium, Trapezoid, Capitate, Hamate,\n"
          "                       Scaphoid, Lunate, Triquetrum, Pisiform, Radius, Ulna)\n"
          "  --mode side-by-side  (default) one colour per class; outlines opaque\n"
          "  --mode diff          one panel per prediction against --gt: true positive\n"
          "                       green (0,200,0), false positive red (255,0,0), false\n"
          "                       negative blue (0,96,255); a pixel wrong in any class\n"
          "                       shows the error (FN before FP before TP)\n"
          "  --opacity A          colour weight in [0, 1] (default 0.45): out =\n"
          "                       (gray * (256 - a) + colour * a + 128) >> 8,\n"
          "                       a = round(A * 256)\n"
          "  --shrink N           downscale panels N times (default: to <= 1024 pixels)\n"
          "  --text-scale N       text and swatch size, 1..16 (default: by panel height)\n"
          "  -o, --output FILE    the PNG to write\n",
          MAX_PREDS);
}

/* One mask file's masks for the image: masks[c] is set when the file has
 * a row for class c (for label JSON: every class). */
struct mask_set {
  const char *path;
  struct osseg_bitmask mask[NCLS];
  unsigned char has[NCLS];
};

static void mask_set_free(struct mask_set *m) {
  for (size_t c = 0; c < NCLS; c++) osseg_bitmask_free(&m->mask[c]);
}

static int class_index(const char *name, size_t len) {
  for (unsigned c = 0; c < NCLS; c++) {
    const char *k = osseg_canonical_class(c);
    if (strlen(k) == len && memcmp(k, name, len) == 0) return (int)c;
  }
  return -1;
}

/* The rows of csv for image `name` into m. Prints and returns -1 when the
 * file has none, a row names an unknown class or its rle is bad. */
static int masks_from_csv(const struct osseg_csv *csv, const char *name, uint32_t w, uint32_t h,
                          struct mask_set *m) {
  size_t nlen = strlen(name), found = 0;
  struct osseg_runs runs = {0};
  int rc = 0;
  for (size_t r = 0; r < csv->nrows && rc == 0; r++) {
    const struct osseg_csv_row *row = &csv->rows[r];
    if (row->image_len != nlen || memcmp(row->image, name, nlen) != 0) continue;
    found++;
    int c = class_index(row->cls, row->cls_len);
    if (c < 0) {
      char cls[128];
      cli_error(CMD, "%s:%u: unknown class '%s'", csv->path, row->line,
                cli_printable(cls, sizeof cls, row->cls, row->cls_len));
      rc = -1;
      break;
    }
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    runs.n = 0;
    if (osseg_rle_parse(row->rle, row->rle_len, (uint64_t)w * h, &runs, &diag) != 0) {
      csv_input_rle_error(CMD, csv, row, &diag);
      rc = -1;
      break;
    }
    int e = osseg_bitmask_init(&m->mask[c], h, w);
    if (e == 0) e = osseg_bitmask_paint_runs(&m->mask[c], runs.v, runs.n);
    if (e) {
      cli_error(CMD, "%s:%u: %s", csv->path, row->line, osseg_strerror(e));
      rc = -1;
      break;
    }
    m->has[c] = 1;
  }
  osseg_runs_free(&runs);
  if (rc == 0 && found == 0) {
    cli_error(CMD, "%s: no rows for image '%s'", csv->path, name);
    rc = -1;
  }
  return rc;
}

/* Ground truth from the dataset's label JSON, drawn as the pipeline draws
 * it for `osseg predict --labels` (osseg_labels_rasterize). */
static int masks_from_json(const char *path, uint32_t w, uint32_t h, struct mask_set *m) {
  struct label_file f;
  char msg[1024];
  if (label_file_read_path(&f, path, msg, sizeof msg) != 0) {
    cli_error(CMD, "%s", msg);
    return -1;
  }
  const char *classes[NCLS];
  for (unsigned c = 0; c < NCLS; c++) classes[c] = osseg_canonical_class(c);
  struct osseg_labels *labels = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  int rc = osseg_labels_parse_json(&labels, f.path, f.text, f.len, classes, NCLS, NULL, &diag);
  label_file_free(&f);
  struct osseg_runs runs[NCLS];
  memset(runs, 0, sizeof runs);
  struct osseg_bitmask scratch = {0};
  struct osseg_ground_truth gt;
  if (rc == 0) rc = osseg_bitmask_init(&scratch, h, w);
  if (rc == 0) rc = osseg_labels_rasterize(labels, &scratch, runs, &gt, &diag);
  for (size_t c = 0; c < NCLS && rc == 0; c++) {
    if (!gt.has[c]) continue;
    rc = osseg_bitmask_init(&m->mask[c], h, w);
    if (rc == 0) rc = osseg_bitmask_paint_runs(&m->mask[c], gt.runs[c], gt.nruns[c]);
    m->has[c] = 1;
  }
  if (rc) cli_error_file(CMD, path, diag.message[0] ? diag.message : osseg_strerror(rc));
  osseg_bitmask_free(&scratch);
  for (size_t c = 0; c < NCLS; c++) osseg_runs_free(&runs[c]);
  osseg_labels_free(labels);
  return rc ? -1 : 0;
}

/* --classes A,B,...: sets show[c] for each; prints and returns -1 on an
 * unknown or empty name. */
static int parse_classes(const char *list, unsigned char *show) {
  memset(show, 0, NCLS);
  const char *p = list;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    int c = class_index(p, len);
    if (c < 0) {
      char name[128];
      cli_error(CMD, "--classes: unknown class '%s' (the classes are finger-1 ... finger-19, "
                     "Trapezium, Trapezoid, Capitate, Hamate, Scaphoid, Lunate, Triquetrum, "
                     "Pisiform, Radius, Ulna)",
                cli_printable(name, sizeof name, p, len));
      return -1;
    }
    show[c] = 1;
    if (!end) return 0;
    p = end + 1;
  }
}

/* Appends to buf (size cap) at *len. */
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
  if (*len >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
  va_end(ap);
  if (n > 0) *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

enum { O_GT = 256, O_PRED, O_CLASSES, O_MODE, O_OPACITY, O_SHRINK, O_SCALE };

int osseg_cmd_overlay(int argc, char **argv) {
  const char *output = NULL, *gt_path = NULL, *classes = NULL;
  char *preds[MAX_PREDS];
  size_t npreds = 0;
  int diff = 0;
  double opacity = 0.45;
  uint32_t shrink = 0, text_scale = 0;
  static const struct option opts[] = {
      {"gt", required_argument, NULL, O_GT},
      {"pred", required_argument, NULL, O_PRED},
      {"classes", required_argument, NULL, O_CLASSES},
      {"mode", required_argument, NULL, O_MODE},
      {"opacity", required_argument, NULL, O_OPACITY},
      {"shrink", required_argument, NULL, O_SHRINK},
      {"text-scale", required_argument, NULL, O_SCALE},
      {"output", required_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'},
      {0, 0, 0, 0},
  };
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
    switch (ch) {
      case O_GT: gt_path = optarg; break;
      case O_PRED:
        if (npreds == MAX_PREDS) {
          cli_error(CMD, "at most %d --pred files", MAX_PREDS);
          return CLI_USAGE;
        }
        preds[npreds++] = optarg;
        break;
      case O_CLASSES: classes = optarg; break;
      case O_MODE:
        if (strcmp(optarg, "diff") == 0)
          diff = 1;
        else if (strcmp(optarg, "side-by-side") == 0)
          diff = 0;
        else {
          cli_error(CMD, "--mode must be side-by-side or diff, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case O_OPACITY:
        if (cli_parse_nonneg_double(optarg, &opacity) != 0 || opacity > 1) {
          cli_error(CMD, "--opacity must be a number in [0, 1], not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case O_SHRINK:
        if (cli_parse_u32(optarg, 1, 64, &shrink) != 0) {
          cli_error(CMD, "--shrink must be 1..64, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case O_SCALE:
        if (cli_parse_u32(optarg, 1, 16, &text_scale) != 0) {
          cli_error(CMD, "--text-scale must be 1..16, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case 'o': output = optarg; break;
      case 'h': usage(stdout); return CLI_OK;
      case ':':
        cli_error(CMD, "option %s needs a value", argv[optind - 1]);
        return CLI_USAGE;
      default:
        cli_error(CMD, "unknown option '%s'", argv[optind - 1]);
        return CLI_USAGE;
    }
  }
  if (optind + 1 != argc) {
    cli_error(CMD, optind == argc ? "no image given" : "one image only, got %d", argc - optind);
    usage(stderr);
    return CLI_USAGE;
  }
  if (!output) {
    cli_error(CMD, "-o OUT.png is required");
    return CLI_USAGE;
  }
  if (diff && (!gt_path || npreds == 0)) {
    cli_error(CMD, "--mode diff needs --gt and at least one --pred");
    return CLI_USAGE;
  }
  unsigned char show[NCLS];
  memset(show, 1, sizeof show);
  if (classes && parse_classes(classes, show) != 0) return CLI_USAGE;
  const char *image_path = argv[optind];

  int status = CLI_FAILED;
  struct osseg_image img = {0}, out = {0};
  struct mask_set *sets = calloc(npreds + 1, sizeof *sets);
  struct osseg_csv csv[MAX_PREDS + 1];
  struct csv_index ix[MAX_PREDS + 1];
  char *csv_paths[MAX_PREDS + 1];
  size_t ncsv = 0;
  memset(csv, 0, sizeof csv);
  memset(ix, 0, sizeof ix);
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (!sets) {
    cli_error(CMD, "out of memory");
    return CLI_FAILED;
  }
  if (osseg_png_decode_file(image_path, NULL, &img, &diag) != 0) {
    cli_error_file(CMD, image_path, diag.message);
    goto done;
  }
  const char *name = image_base_name(image_path);
  /* sets[0] is the ground truth, sets[1..] the predictions. */
  size_t glen = gt_path ? strlen(gt_path) : 0;
  int gt_json = gt_path && glen >= 5 && strcmp(gt_path + glen - 5, ".json") == 0;
  if (gt_path && !gt_json) csv_paths[ncsv++] = (char *)gt_path;
  for (size_t i = 0; i < npreds; i++) csv_paths[ncsv++] = preds[i];
  if (ncsv && csv_input_load_all(CMD, csv_paths, ncsv, cli_default_threads(), csv, ix) != 0)
    goto done;
  size_t k = 0;
  if (gt_path) {
    sets[0].path = gt_path;
    if (gt_json ? masks_from_json(gt_path, img.width, img.height, &sets[0])
                : masks_from_csv(&csv[k++], name, img.width, img.height, &sets[0]))
      goto done;
  }
  for (size_t i = 0; i < npreds; i++, k++) {
    sets[1 + i].path = preds[i];
    if (masks_from_csv(&csv[k], name, img.width, img.height, &sets[1 + i])) goto done;
  }

  /* Masks as drawn: only the shown classes. */
  const struct osseg_bitmask *ptr[MAX_PREDS + 1][NCLS];
  for (size_t s = 0; s <= npreds; s++)
    for (size_t c = 0; c < NCLS; c++)
      ptr[s][c] = show[c] && sets[s].has[c] ? &sets[s].mask[c] : NULL;

  /* Panels: image | [ground truth |] predictions, or image | diffs. */
  struct osseg_overlay_panel panels[MAX_PREDS + 2];
  char titles[MAX_PREDS + 2][300];
  size_t np = 0;
  memset(panels, 0, sizeof panels);
  snprintf(titles[np], sizeof titles[np], "%s", name);
  panels[np].title = titles[np];
  np++;
  if (gt_path && !diff) {
    snprintf(titles[np], sizeof titles[np], "truth: %s", image_base_name(gt_path));
    panels[np].masks = ptr[0];
    panels[np].title = titles[np];
    np++;
  }
  for (size_t i = 0; i < npreds; i++, np++) {
    if (npreds > 1)
      snprintf(titles[np], sizeof titles[np], "P%zu: %s", i + 1, image_base_name(preds[i]));
    else
      snprintf(titles[np], sizeof titles[np], "%s", image_base_name(preds[i]));
    panels[np].masks = ptr[1 + i];
    panels[np].truth = diff ? ptr[0] : NULL;
    panels[np].title = titles[np];
  }

  /* Legend: in diff mode the three colours first; then every shown class
   * that the ground truth or a prediction has a row for, with its Dice per
   * prediction where there is ground truth; then the mean over those. */
  struct osseg_overlay_legend_row legend[NCLS + 5];
  char text[NCLS + 5][40 + 6 * MAX_PREDS];
  size_t nl = 0;
  const size_t tcap = sizeof text[0];
  if (diff) {
    static const char *const what[3] = {"TP: prediction and truth", "FP: prediction only",
                                        "FN: truth only"};
    for (int d = 0; d < 3; d++, nl++) {
      snprintf(text[nl], tcap, "%s", what[d]);
      legend[nl] = (struct osseg_overlay_legend_row){text[nl], 1, {0, 0, 0}};
      osseg_overlay_diff_color((enum osseg_overlay_diff_kind)d, legend[nl].rgb);
    }
  }
  int scored = gt_path && npreds > 0;
  if (scored) {
    size_t len = 0;
    append(text[nl], tcap, &len, "%-10s", "Dice");
    for (size_t i = 0; i < npreds; i++) {
      if (npreds > 1) {
        char col[24];
        snprintf(col, sizeof col, "P%zu", i + 1);
        append(text[nl], tcap, &len, " %5s", col);
      } else {
        append(text[nl], tcap, &len, " %5s", "");
      }
    }
    legend[nl] = (struct osseg_overlay_legend_row){text[nl], 0, {0, 0, 0}};
    nl++;
  }
  double sum[MAX_PREDS] = {0};
  size_t nscored = 0;
  for (unsigned c = 0; c < NCLS; c++) {
    int any = 0;
    for (size_t s = 0; s <= npreds; s++) any |= sets[s].has[c];
    if (!show[c] || !any) continue;
    size_t len = 0;
    append(text[nl], tcap, &len, "%-10s", osseg_canonical_class(c));
    if (scored && sets[0].has[c]) {
      uint64_t ng = osseg_bitmask_count(&sets[0].mask[c]);
      for (size_t i = 0; i < npreds; i++) {
        const struct mask_set *p = &sets[1 + i];
        uint64_t npx = p->has[c] ? osseg_bitmask_count(&p->mask[c]) : 0;
        uint64_t both = p->has[c] ? osseg_bitmask_count_and(&sets[0].mask[c], &p->mask[c]) : 0;
        double d = osseg_dice_from_counts(both, ng, npx);
        sum[i] += d;
        append(text[nl], tcap, &len, " %5.3f", d);
      }
      nscored++;
    } else if (scored) {
      for (size_t i = 0; i < npreds; i++) append(text[nl], tcap, &len, " %5s", "-");
    }
    legend[nl] = (struct osseg_overlay_legend_row){text[nl], !diff, {0, 0, 0}};
    osseg_overlay_class_color(c, legend[nl].rgb);
    nl++;
  }
  if (scored) {
    size_t len = 0;
    append(text[nl], tcap, &len, "%-10s", "mean");
    for (size_t i = 0; i < npreds; i++) {
      if (nscored)
        append(text[nl], tcap, &len, " %5.3f", sum[i] / (double)nscored);
      else
        append(text[nl], tcap, &len, " %5s", "-");
    }
    legend[nl] = (struct osseg_overlay_legend_row){text[nl], 0, {0, 0, 0}};
    nl++;
  }

  if (shrink == 0) {
    uint32_t side = img.width > img.height ? img.width : img.height;
    shrink = (side + 1023) / 1024;
    if (shrink == 0) shrink = 1;
  }
  if (text_scale == 0) {
    uint32_t ph = img.height / shrink;
    text_scale = ph / 400 ? ph / 400 : 1;
    if (text_scale > 16) text_scale = 16;
  }
  struct osseg_overlay_layout layout = {
      .panels = panels, .npanels = np, .nmasks = NCLS, .alpha = (float)opacity,
      .shrink = shrink, .text_scale = text_scale, .legend = legend, .nlegend = nl};
  int rc = osseg_overlay_compose(&img, &layout, &out);
  if (rc) {
    cli_error(CMD, "%s: cannot draw the overlay: %s", image_path, osseg_strerror(rc));
    goto done;
  }
  if (osseg_png_encode_file(output, &out, 3, &diag) != 0) {
    cli_error_file(CMD, output, diag.message);
    goto done;
  }
  status = CLI_OK;
done:
  osseg_image_free(&out);
  osseg_image_free(&img);
  csv_input_free(ncsv, csv, ix);
  for (size_t s = 0; s <= npreds; s++) mask_set_free(&sets[s]);
  free(sets);
  return status;
}
