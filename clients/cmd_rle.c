/* osseg rle: between prediction CSV rows and PNG masks.
 *
 *   decode: one (image, class) row of a CSV -> an 8-bit gray PNG, 255 inside
 *           the mask and 0 outside (written through osseg_output like every
 *           output of the tool: a file is replaced atomically, a device,
 *           FIFO or symlink written through);
 *   encode: the non-zero pixels of a PNG (8- or 16-bit, any colour type
 *           imaging/ reads) -> the competition RLE text, or a CSV row.
 * Runs come from kernels/ (osseg_rle_parse / osseg_rle_format), so the text
 * is exactly what `osseg ensemble` would write for the same mask. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "csv_index.h"
#include "csv_input.h"
#include "osseg_imaging.h"

#define CMD "rle"

static const char usage_text[] =
    "usage: osseg rle decode [--height H --width W] -o MASK.png CSV IMAGE_NAME CLASS\n"
    "       osseg rle encode [--image IMAGE_NAME --class CLASS] MASK.png\n"
    "\n"
    "decode writes the mask of the (IMAGE_NAME, CLASS) row of CSV as an 8-bit\n"
    "gray PNG of H x W pixels (default 2048 x 2048): 255 inside, 0 outside.\n"
    "encode prints the RLE (1-based \"start length ...\", row-major) of the\n"
    "non-zero pixels of MASK.png; with --image and --class it prints a CSV\n"
    "(header and one row) instead.\n"
    "Exit status: 0 done, 1 bad input, 2 usage error.\n";

static int parse_size(int argc, char **argv, int allow_size, uint32_t *height, uint32_t *width,
                      const char **out, const char **image, const char **cls) {
  static const struct option opts[] = {{"height", required_argument, NULL, 'H'},
                                       {"width", required_argument, NULL, 'W'},
                                       {"output", required_argument, NULL, 'o'},
                                       {"image", required_argument, NULL, 'I'},
                                       {"class", required_argument, NULL, 'C'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *sub = allow_size ? "decode" : "encode";
  opterr = 0;
  optind = 1;
  int o, li = -1;
  while ((o = getopt_long(argc, argv, ":o:h", opts, &li)) != -1) {
    /* The option as named on the command line: its long name, or -o. */
    const char *name = li >= 0 ? opts[li].name : NULL;
    li = -1;
    int taken = (o == 'H' || o == 'W' || o == 'o') ? allow_size
                : (o == 'I' || o == 'C')           ? !allow_size
                                                   : 1;
    if (!taken) {
      cli_error(CMD, "%s does not take %s%s (see 'osseg rle --help')", sub, name ? "--" : "-o",
                name ? name : "");
      return CLI_USAGE;
    }
    switch (o) {
      case 'H':
      case 'W':
        if (cli_parse_u32(optarg, 1, OSSEG_MAX_SIDE, o == 'H' ? height : width) != 0) {
          cli_error(CMD, "--%s: expected an integer in 1..%u, got '%s'",
                    o == 'H' ? "height" : "width", OSSEG_MAX_SIDE, optarg);
          return CLI_USAGE;
        }
        break;
      case 'o':
        *out = optarg;
        break;
      case 'I':
      case 'C':
        *(o == 'I' ? image : cls) = optarg;
        break;
      case 'h':
        fputs(usage_text, stdout);
        return -1;
      case ':':
        cli_error(CMD, "option '%s' needs a value (see 'osseg rle --help')", argv[optind - 1]);
        return CLI_USAGE;
      default:
        /* optopt is the letter of an unknown short option (which may sit
         * inside a group such as -xo), 0 for an unknown long one. */
        if (optopt)
          cli_error(CMD, "unknown option '-%c' (see 'osseg rle --help')", optopt);
        else
          cli_error(CMD, "unknown option '%s' (see 'osseg rle --help')", argv[optind - 1]);
        return CLI_USAGE;
    }
  }
  return 0;
}

static int cmd_decode(int argc, char **argv) {
  uint32_t height = 2048, width = 2048;
  const char *out = NULL, *unused_image = NULL, *unused_cls = NULL;
  int rc = parse_size(argc, argv, 1, &height, &width, &out, &unused_image, &unused_cls);
  if (rc != 0) return rc < 0 ? CLI_OK : rc;
  if (argc - optind != 3 || !out) {
    cli_error(CMD, "decode needs -o MASK.png CSV IMAGE_NAME CLASS (see 'osseg rle --help')");
    return CLI_USAGE;
  }
  const char *path = argv[optind], *image = argv[optind + 1], *cls = argv[optind + 2];
  /* Loaded and indexed like the inputs of dice and ensemble, so a file
   * with two rows for one (image, class) is rejected here as well (naming
   * both lines) instead of silently decoding the first. */
  struct osseg_csv csv = {0};
  struct csv_index ix = {0};
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  int status = CLI_FAILED;
  struct osseg_runs runs = {0};
  struct osseg_image img = {0};
  const struct osseg_csv_row *row = NULL;
  if (csv_input_load_all(CMD, &argv[optind], 1, 1, &csv, &ix) != 0) goto out;
  size_t ilen = strlen(image), clen = strlen(cls);
  size_t found = csv_index_find(&ix, csv_index_hash(image, ilen, cls, clen), image, ilen, cls, clen);
  if (found != CSV_INDEX_NONE) row = &csv.rows[found];
  if (!row) {
    char a[256], b[128];
    cli_error(CMD, "%s: no row for image '%s', class '%s'", path,
              cli_printable(a, sizeof a, image, strlen(image)),
              cli_printable(b, sizeof b, cls, strlen(cls)));
    goto out;
  }
  if (osseg_rle_parse(row->rle, row->rle_len, (uint64_t)height * width, &runs, &diag) != 0) {
    cli_error(CMD, "%s:%u: rle: %s", path, row->line, diag.message);
    goto out;
  }
  osseg_diag_clear(&diag);
  if (osseg_image_init(&img, width, height, 1, 8) != 0) {
    cli_error(CMD, "out of memory");
    goto out;
  }
  /* Rows are not padded (stride = width), so a run is one memset. */
  for (size_t i = 0; i < runs.n; i++) memset(img.data + runs.v[i].start, 255, runs.v[i].len);
  if (osseg_png_encode_file(out, &img, 6, &diag) != 0) {
    cli_error(CMD, "%s", diag.message);
    goto out;
  }
  status = CLI_OK;
out:
  osseg_image_free(&img);
  osseg_runs_free(&runs);
  csv_input_free(1, &csv, &ix);
  return status;
}

static int cmd_encode(int argc, char **argv) {
  uint32_t unused_h = 0, unused_w = 0;
  const char *unused_out = NULL, *image = NULL, *cls = NULL;
  int rc = parse_size(argc, argv, 0, &unused_h, &unused_w, &unused_out, &image, &cls);
  if (rc != 0) return rc < 0 ? CLI_OK : rc;
  if (argc - optind != 1 || (!image) != (!cls)) {
    cli_error(CMD, "encode needs MASK.png, and --image with --class or neither "
                   "(see 'osseg rle --help')");
    return CLI_USAGE;
  }
  const char *path = argv[optind];
  struct osseg_image img = {0};
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (osseg_png_decode_file(path, NULL, &img, &diag) != 0) {
    cli_error(CMD, "%s", diag.message);
    return CLI_FAILED;
  }
  int status = CLI_FAILED;
  struct osseg_runs runs = {0};
  char *text = NULL;
  /* Runs of non-zero pixels in row-major order (canonical by construction:
   * a run ends at a zero pixel). The mask is flattened row-major across row
   * ends, as the competition's RLE is. */
  size_t bps = img.bit_depth / 8, npix = (size_t)img.width * img.height;
  size_t start = 0;
  int inside = 0;
  for (size_t p = 0; p <= npix; p++) {
    int on = 0;
    if (p < npix) {
      const uint8_t *px = img.data + p * bps;
      on = bps == 2 ? (px[0] | px[1]) != 0 : px[0] != 0;
    }
    if (on && !inside) {
      start = p;
      inside = 1;
    } else if (!on && inside) {
      if (osseg_runs_push(&runs, (uint32_t)start, (uint32_t)(p - start)) != 0) {
        cli_error(CMD, "out of memory");
        goto out;
      }
      inside = 0;
    }
  }
  text = malloc(osseg_rle_format_bound(runs.n) + 1);
  if (!text) {
    cli_error(CMD, "out of memory");
    goto out;
  }
  size_t len = osseg_rle_format(runs.v, runs.n, text);
  if (image) {
    char *field = malloc(osseg_csv_field_bound(strlen(image)) + osseg_csv_field_bound(strlen(cls)) + 2);
    if (!field) {
      cli_error(CMD, "out of memory");
      goto out;
    }
    char *e = osseg_csv_put_field(field, image, strlen(image));
    *e++ = ',';
    e = osseg_csv_put_field(e, cls, strlen(cls));
    printf("image_name,class,rle\n%.*s,", (int)(e - field), field);
    free(field);
  }
  printf("%.*s\n", (int)len, text);
  status = fflush(stdout) == 0 ? CLI_OK : CLI_FAILED;
out:
  free(text);
  osseg_runs_free(&runs);
  osseg_image_free(&img);
  return status;
}

int osseg_cmd_rle(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "decode") == 0) return cmd_decode(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "encode") == 0) return cmd_encode(argc - 1, argv + 1);
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(usage_text, stdout);
    return CLI_OK;
  }
  cli_error(CMD, "expected 'decode' or 'encode' (see 'osseg rle --help')");
  return CLI_USAGE;
}
