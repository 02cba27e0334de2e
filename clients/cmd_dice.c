/* osseg dice: score a prediction CSV against ground truth.
 *
 * Dice per (image, class) = (2|A∩B| + 1e-4) / (|A| + |B| + 1e-4), computed
 * on run lists (never on decoded masks), averaged over the images of each
 * class, then over classes. Rows of GT are split into one chunk per core;
 * each row's score is stored by row number and the sums are taken in GT
 * order afterwards, so the result does not depend on the thread count. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "csv_index.h"
#include "csv_input.h"

#define CMD "dice"

static const char usage_text[] =
    "usage: osseg dice [--json] [--height H --width W] [--threads N] PRED.csv GT.csv\n"
    "\n"
    "Dice of each (image, class) row of GT.csv against the same row of\n"
    "PRED.csv, (2|A&B| + 1e-4) / (|A| + |B| + 1e-4), averaged over images per\n"
    "class, then over classes. Classes are listed in the order they first\n"
    "appear in GT.csv.\n"
    "\n"
    "      --json        print {\"mean\":..,\"per_class\":{..},\"images\":N} instead\n"
    "                    of a table\n"
    "      --height H    image height in pixels (default 2048)\n"
    "      --width W     image width in pixels (default 2048)\n"
    "      --threads N   worker threads (default: one per CPU)\n"
    "  -h, --help        this text\n"
    "\n"
    "A GT row missing from PRED.csv scores as an empty prediction (one warning\n"
    "with the count); PRED rows not in GT.csv are checked and ignored (one\n"
    "warning).\n"
    "Exit status: 0 done, 1 bad input (\"FILE:LINE: problem\"), 2 usage error.\n";

struct ctx {
  const struct osseg_csv *pred, *gt;
  const struct csv_index *pred_ix;
  unsigned char *used; /* used[pred row] */
  double *dice;        /* dice[gt row] */
  uint64_t npixels;
};

struct job {
  const struct ctx *ctx;
  size_t begin, end;
  size_t missing;
  int rc;
  const struct osseg_csv *err_csv;
  const struct osseg_csv_row *err_row;
  struct osseg_diag diag;
};

static void *run_job(void *arg) {
  struct job *j = arg;
  const struct ctx *c = j->ctx;
  struct osseg_runs a = {0}, b = {0};
  uint64_t next_h = 0;
  if (j->begin < j->end) {
    const struct osseg_csv_row *g = &c->gt->rows[j->begin];
    next_h = csv_index_hash(g->image, g->image_len, g->cls, g->cls_len);
  }
  for (size_t r = j->begin; r < j->end; r++) {
    const struct osseg_csv_row *g = &c->gt->rows[r];
    uint64_t h = next_h;
    a.n = b.n = 0;
    /* The next row's slot is fetched while this row is scored. */
    if (r + 2 < j->end) __builtin_prefetch(g[2].image); /* hashed next round */
    if (r + 1 < j->end) {
      next_h = csv_index_hash(g[1].image, g[1].image_len, g[1].cls, g[1].cls_len);
      csv_index_prefetch(c->pred_ix, next_h);
    }
    int rc = osseg_rle_parse(g->rle, g->rle_len, c->npixels, &a, &j->diag);
    if (rc < 0) {
      j->rc = rc;
      j->err_csv = c->gt;
      j->err_row = g;
      break;
    }
    size_t p = csv_index_find(c->pred_ix, h, g->image, g->image_len, g->cls, g->cls_len);
    if (p == CSV_INDEX_NONE) {
      j->missing++;
    } else {
      c->used[p] = 1;
      const struct osseg_csv_row *pr = &c->pred->rows[p];
      rc = osseg_rle_parse(pr->rle, pr->rle_len, c->npixels, &b, &j->diag);
      if (rc < 0) {
        j->rc = rc;
        j->err_csv = c->pred;
        j->err_row = pr;
        break;
      }
    }
    c->dice[r] = osseg_dice_runs(b.v, b.n, a.v, a.n);
  }
  osseg_runs_free(&a);
  osseg_runs_free(&b);
  return NULL;
}

/* Writes s as a JSON string. */
static void put_json_string(const char *s, size_t len) {
  putchar('"');
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\')
      printf("\\%c", ch);
    else if (ch < 0x20)
      printf("\\u%04x", ch);
    else
      putchar(ch);
  }
  putchar('"');
}

struct class_stat {
  const struct osseg_csv_row *first; /* row that names the class */
  double sum;
  size_t n;
};

/* Terminal columns taken by a UTF-8 string, for aligning the table (class
 * names come from CSVs and may be in any script): one per code point,
 * except combining marks (0) and East Asian wide characters and emoji (2).
 * A byte that does not start a valid sequence counts as one column, as the
 * replacement character a terminal shows for it does. */
static size_t display_width(const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  size_t w = 0;
  while (*s) {
    unsigned c = *s, n = c >= 0xF0 && c < 0xF5 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 ? 1 : 0;
    if (c < 0x80 || n == 0) {
      w++;
      s++;
      continue;
    }
    uint32_t cp = c & (0x3Fu >> n);
    unsigned i = 1;
    for (; i <= n && (s[i] & 0xC0) == 0x80; i++) cp = cp << 6 | (s[i] & 0x3Fu);
    if (i <= n) { /* truncated sequence */
      w++;
      s++;
      continue;
    }
    s += n + 1;
    if ((cp >= 0x300 && cp <= 0x36F) || (cp >= 0x1AB0 && cp <= 0x1AFF) ||
        (cp >= 0x1DC0 && cp <= 0x1DFF) || (cp >= 0x20D0 && cp <= 0x20FF) ||
        (cp >= 0xFE20 && cp <= 0xFE2F) || cp == 0x200B || cp == 0x200D)
      continue;
    w += (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF && cp != 0x303F) ||
                 (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
                 (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
                 (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
                 (cp >= 0x1F900 && cp <= 0x1F9FF) || (cp >= 0x20000 && cp <= 0x3FFFD)
             ? 2
             : 1;
  }
  return w;
}

/* Prints s left-aligned in a field of `width` terminal columns. */
static void put_padded(const char *s, size_t width) {
  fputs(s, stdout);
  for (size_t w = display_width(s); w < width; w++) putchar(' ');
}

static int report(const struct osseg_csv *gt, const double *dice, int json) {
  struct csv_index classes, images;
  int status = CLI_FAILED;
  struct class_stat *st = calloc(gt->nrows, sizeof *st);
  if (!st || csv_index_init(&classes, CSV_KEY_CLASS, 64) < 0) {
    free(st);
    cli_error(CMD, "out of memory");
    return CLI_FAILED;
  }
  if (csv_index_init(&images, CSV_KEY_IMAGE, gt->nrows / 16 + 16) < 0) {
    csv_index_free(&classes);
    free(st);
    cli_error(CMD, "out of memory");
    return CLI_FAILED;
  }
  size_t nclasses = 0;
  for (size_t r = 0; r < gt->nrows; r++) {
    const struct osseg_csv_row *g = &gt->rows[r];
    size_t id = csv_index_insert(&classes, g, nclasses);
    if (id == CSV_INDEX_NONE - 1 ||
        csv_index_insert(&images, g, r) == CSV_INDEX_NONE - 1) {
      cli_error(CMD, "out of memory");
      goto out;
    }
    if (id == CSV_INDEX_NONE) {
      id = nclasses++;
      st[id].first = g;
    }
    st[id].sum += dice[r];
    st[id].n++;
  }
  double mean = 0;
  for (size_t i = 0; i < nclasses; i++) mean += st[i].sum / (double)st[i].n;
  mean /= (double)nclasses;
  if (json) {
    printf("{\"mean\":%.10g,\"per_class\":{", mean);
    for (size_t i = 0; i < nclasses; i++) {
      if (i) putchar(',');
      put_json_string(st[i].first->cls, st[i].first->cls_len);
      printf(":%.10g", st[i].sum / (double)st[i].n);
    }
    printf("},\"images\":%zu}\n", images.count);
  } else {
    /* Padding counts terminal columns, not bytes, so that names in UTF-8
     * keep the columns aligned. */
    size_t width = 5;
    char name[160];
    for (size_t i = 0; i < nclasses; i++) {
      cli_printable(name, sizeof name, st[i].first->cls, st[i].first->cls_len);
      size_t w = display_width(name);
      if (w > width) width = w;
    }
    if (width > 40) width = 40;
    put_padded("class", width);
    printf("  %6s  %6s\n", "dice", "images");
    for (size_t i = 0; i < nclasses; i++) {
      cli_printable(name, sizeof name, st[i].first->cls, st[i].first->cls_len);
      put_padded(name, width);
      printf("  %6.4f  %6zu\n", st[i].sum / (double)st[i].n, st[i].n);
    }
    put_padded("mean", width);
    printf("  %6.4f  %6zu\n", mean, images.count);
  }
  status = fflush(stdout) == 0 ? CLI_OK : CLI_FAILED;
out:
  csv_index_free(&classes);
  csv_index_free(&images);
  free(st);
  return status;
}

int osseg_cmd_dice(int argc, char **argv) {
  static const struct option opts[] = {{"json", no_argument, NULL, 'J'},
                                       {"height", required_argument, NULL, 'H'},
                                       {"width", required_argument, NULL, 'W'},
                                       {"threads", required_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int json = 0;
  uint32_t height = 2048, width = 2048, threads = cli_default_threads();
  opterr = 0;
  optind = 1;
  int o;
  while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (o) {
      case 'J':
        json = 1;
        break;
      case 'H':
      case 'W':
        if (cli_parse_u32(optarg, 1, OSSEG_MAX_SIDE, o == 'H' ? &height : &width) != 0) {
          cli_error(CMD, "--%s: expected an integer in 1..%u, got '%s'",
                    o == 'H' ? "height" : "width", OSSEG_MAX_SIDE, optarg);
          return CLI_USAGE;
        }
        break;
      case 'j':
        if (cli_parse_u32(optarg, 1, 64, &threads) != 0) {
          cli_error(CMD, "--threads: expected an integer in 1..64, got '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case 'h':
        fputs(usage_text, stdout);
        return CLI_OK;
      case ':':
        cli_error(CMD, "option '%s' needs a value (see 'osseg dice --help')", argv[optind - 1]);
        return CLI_USAGE;
      default:
        cli_error(CMD, "unknown option '%s' (see 'osseg dice --help')", argv[optind - 1]);
        return CLI_USAGE;
    }
  }
  if (argc - optind != 2) {
    cli_error(CMD, "expected PRED.csv GT.csv, got %d file%s (see 'osseg dice --help')",
              argc - optind, argc - optind == 1 ? "" : "s");
    return CLI_USAGE;
  }
  int status = CLI_FAILED;
  struct osseg_csv csv[2];
  struct csv_index ix[2];
  memset(csv, 0, sizeof csv);
  memset(ix, 0, sizeof ix);
  struct osseg_csv *pred = &csv[0], *gt = &csv[1];
  unsigned char *used = NULL;
  double *dice = NULL;
  struct job *jobs = NULL;
  size_t njobs = 0;
  if (csv_input_load_all(CMD, argv + optind, 2, threads, csv, ix) != 0) goto out;
  if (gt->nrows == 0) {
    cli_error(CMD, "%s:2: no rows: nothing to score", gt->path);
    goto out;
  }
  used = calloc(pred->nrows + 1, 1);
  dice = calloc(gt->nrows, sizeof *dice);
  njobs = gt->nrows < threads ? gt->nrows : threads;
  jobs = calloc(njobs, sizeof *jobs);
  if (!used || !dice || !jobs) {
    cli_error(CMD, "out of memory");
    goto out;
  }
  struct ctx c = {pred, gt, &ix[0], used, dice, (uint64_t)height * width};
  size_t bounds[65];
  osseg_csv_split(gt, njobs, bounds);
  for (size_t t = 0; t < njobs; t++) {
    jobs[t].ctx = &c;
    jobs[t].begin = bounds[t];
    jobs[t].end = bounds[t + 1];
  }
  cli_run_jobs(run_job, jobs, sizeof *jobs, njobs);
  size_t missing = 0, unused = 0;
  for (size_t t = 0; t < njobs; t++) {
    if (jobs[t].rc < 0) {
      csv_input_rle_error(CMD, jobs[t].err_csv, jobs[t].err_row, &jobs[t].diag);
      goto out;
    }
    missing += jobs[t].missing;
  }
  if (csv_input_check_unused(CMD, pred, used, c.npixels, &unused) != 0) goto out;
  if (missing)
    cli_error(CMD, "warning: %s: %zu of the %zu rows of %s are missing; scored as empty masks",
              pred->path, missing, gt->nrows, gt->path);
  if (unused)
    cli_error(CMD, "warning: %s: %zu rows have no (image, class) in %s; ignored", pred->path,
              unused, gt->path);
  status = report(gt, dice, json);
out:
  free(jobs);
  free(dice);
  free(used);
  csv_input_free(2, csv, ix);
  return status;
}
