/* osseg-phantom: writes synthetic hand radiographs with exact ground truth.
 *
 *   osseg-phantom --seed S --count N --out DIR [--size 2048]
 *
 * Image i (0 <= i < N) uses seed S + i and is named phantom_<seed>:
 *   DIR/images/phantom_<seed>.png   8-bit gray
 *   DIR/labels/phantom_<seed>.json  {"annotations":[{"label":..,"points":[[x,y],..]},..]}
 *   DIR/gt.csv                      image_name,class,rle: 29 rows per image,
 *                                   classes in canonical order; image_name
 *                                   is the file name (phantom_<seed>.png)
 * The masks behind gt.csv are the label polygons rasterised by
 * osseg_polygon_fill (cv2.fillPoly semantics), so re-rasterising the JSON
 * gives gt.csv exactly. Output is a function of (seed, size) only. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "phantom.h"

#define MAX_COUNT 100000u
#define MIN_SIZE 64u
#define MAX_SIZE 16384u

static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg-phantom --seed S --count N --out DIR [--size PIXELS]\n"
          "  --seed S      first seed, 0 .. 2^64-1 (image i uses S + i)\n"
          "  --count N     number of images, 1 .. %u\n"
          "  --out DIR     output folder (created if missing): images/, labels/, gt.csv\n"
          "  --size PIXELS image side, %u .. %u (default 2048)\n",
          MAX_COUNT, MIN_SIZE, MAX_SIZE);
}

/* Strict unsigned decimal: digits only, no sign, no overflow. */
static int parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s) return -1;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) return -2;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

static int mkdir_p(const char *path) {
  char buf[4096];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] == '/' || buf[i] == '\0') {
      char c = buf[i];
      buf[i] = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
      struct stat st;
      if (stat(buf, &st) != 0) return -1;
      if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
      }
      buf[i] = c;
    }
  }
  return access(path, W_OK | X_OK);
}

/* 1-based "start len ..." text of canonical runs (the kernels' formatter,
 * the one every other CSV writer in osseg uses), NUL-terminated. */
static size_t format_rle(const struct osseg_runs *runs, char **buf, size_t *cap) {
  size_t need = osseg_rle_format_bound(runs->n) + 1;
  if (need > *cap) {
    char *nb = realloc(*buf, need);
    if (!nb) return (size_t)-1;
    *buf = nb;
    *cap = need;
  }
  size_t len = osseg_rle_format(runs->v, runs->n, *buf);
  (*buf)[len] = '\0';
  return len;
}

static int write_json(const char *path, const struct phantom_scene *sc,
                      struct osseg_diag *diag) {
  struct osseg_output out;
  FILE *f;
  int rc = osseg_output_open(&out, path, diag);
  if (rc == 0) rc = osseg_output_stream(&out, &f, diag);
  if (rc) {
    osseg_output_abort(&out);
    return rc;
  }
  fputs("{\"annotations\":[", f);
  int first = 1;
  for (int c = 0; c < PHANTOM_NCLASSES; c++) {
    const struct phantom_bone *b = &sc->bones[c];
    if (b->n == 0) continue; /* outside the image: no annotation */
    fprintf(f, "%s{\"label\":\"%s\",\"points\":[", first ? "" : ",", phantom_class_names[c]);
    for (size_t i = 0; i < b->n; i++)
      fprintf(f, "%s[%" PRId32 ",%" PRId32 "]", i ? "," : "", b->pts[i].x, b->pts[i].y);
    fputs("]}", f);
    first = 0;
  }
  fputs("]}\n", f);
  return osseg_output_commit(&out, diag); /* checks the stream's errors */
}

int main(int argc, char **argv) {
  /* The libraries never read the environment; OSSEG_DISABLE_CPU_FEATURES
   * (avx512, avx2, bf16, amx) forces the lower code paths. */
  if (osseg_cpu_features_disable(getenv("OSSEG_DISABLE_CPU_FEATURES"))) {
    fprintf(stderr, "%s: OSSEG_DISABLE_CPU_FEATURES: expected a comma-separated list of "
                    "avx512, avx2, bf16, amx\n", "osseg-phantom");
    return 2;
  }
  const char *seed_s = NULL, *count_s = NULL, *out = NULL, *size_s = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    const char **slot = strcmp(a, "--seed") == 0    ? &seed_s
                        : strcmp(a, "--count") == 0 ? &count_s
                        : strcmp(a, "--out") == 0   ? &out
                        : strcmp(a, "--size") == 0  ? &size_s
                                                    : NULL;
    if (!slot) {
      fprintf(stderr, "osseg-phantom: unknown argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "osseg-phantom: %s needs a value\n", a);
      return 2;
    }
    if (*slot) {
      fprintf(stderr, "osseg-phantom: %s given twice\n", a);
      return 2;
    }
    *slot = argv[++i];
  }
  if (!seed_s || !count_s || !out) {
    fprintf(stderr, "osseg-phantom: --seed, --count and --out are required\n");
    usage(stderr);
    return 2;
  }
  uint64_t seed, count, size = 2048;
  int prc = parse_u64(seed_s, &seed);
  if (prc) {
    fprintf(stderr, "osseg-phantom: --seed '%s' is not %s\n", seed_s,
            prc == -2 ? "below 2^64 (too large)" : "an unsigned decimal integer");
    return 2;
  }
  if (parse_u64(count_s, &count) || count < 1 || count > MAX_COUNT) {
    fprintf(stderr, "osseg-phantom: --count '%s' must be an integer in 1..%u\n", count_s,
            MAX_COUNT);
    return 2;
  }
  if (size_s && (parse_u64(size_s, &size) || size < MIN_SIZE || size > MAX_SIZE)) {
    fprintf(stderr, "osseg-phantom: --size '%s' must be an integer in %u..%u\n", size_s,
            MIN_SIZE, MAX_SIZE);
    return 2;
  }
  if (seed > UINT64_MAX - (count - 1)) {
    fprintf(stderr,
            "osseg-phantom: --seed %" PRIu64 " + --count %" PRIu64
            " overflows 64 bits (the last seed would be past 2^64-1)\n",
            seed, count);
    return 2;
  }
  if (!*out) {
    fprintf(stderr, "osseg-phantom: --out must not be empty\n");
    return 2;
  }
  char images[4096], labels[4096], csv_path[4096], path[4400];
  if (snprintf(images, sizeof images, "%s/images", out) >= (int)sizeof images ||
      snprintf(labels, sizeof labels, "%s/labels", out) >= (int)sizeof labels ||
      snprintf(csv_path, sizeof csv_path, "%s/gt.csv", out) >= (int)sizeof csv_path) {
    fprintf(stderr, "osseg-phantom: --out path is too long\n");
    return 2;
  }
  if (mkdir_p(out) != 0 || mkdir_p(images) != 0 || mkdir_p(labels) != 0) {
    fprintf(stderr, "osseg-phantom: cannot create output folder '%s': %s\n", out,
            strerror(errno));
    return 1;
  }

  /* gt.csv appears (or is replaced) only once every image is done. */
  struct osseg_csv_writer *csv;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (osseg_csv_writer_open(&csv, csv_path, &diag) != 0) {
    fprintf(stderr, "osseg-phantom: %s\n", diag.message);
    return 1;
  }
  struct phantom_scene *sc = malloc(sizeof *sc);
  char *rle = NULL;
  size_t rle_cap = 0;
  struct osseg_runs runs = {0};
  int status = 0, write_failed = 0;
  if (!sc) {
    fprintf(stderr, "osseg-phantom: out of memory\n");
    status = 1;
  }
  for (uint64_t i = 0; i < count && status == 0; i++) {
    uint64_t s = seed + i;
    char name[64];
    snprintf(name, sizeof name, "phantom_%" PRIu64, s);
    phantom_build_scene(s, (uint32_t)size, sc);
    struct osseg_bitmask masks[PHANTOM_NCLASSES];
    struct osseg_image img;
    int rc = phantom_render(sc, masks, &img);
    if (rc < 0) {
      fprintf(stderr, "osseg-phantom: %s: %s\n", name, osseg_strerror(rc));
      status = 1;
      break;
    }
    osseg_diag_clear(&diag);
    snprintf(path, sizeof path, "%s/%s.png", images, name);
    rc = osseg_png_encode_file(path, &img, 3, &diag);
    if (rc < 0) {
      fprintf(stderr, "osseg-phantom: %s\n", diag.message);
      status = 1;
    }
    snprintf(path, sizeof path, "%s/%s.json", labels, name);
    if (status == 0 && write_json(path, sc, &diag) != 0) {
      fprintf(stderr, "osseg-phantom: %s\n", diag.message);
      status = 1;
    }
    for (int c = 0; c < PHANTOM_NCLASSES && status == 0; c++) {
      rc = osseg_bitmask_to_runs(&masks[c], &runs);
      size_t len = rc < 0 ? (size_t)-1 : format_rle(&runs, &rle, &rle_cap);
      if (len == (size_t)-1) {
        fprintf(stderr, "osseg-phantom: out of memory\n");
        status = 1;
        break;
      }
      /* image_name is the image's file name, as in the dataset's
       * submissions and in `osseg predict` output. */
      char image_name[80];
      int ilen = snprintf(image_name, sizeof image_name, "%s.png", name);
      const char *cls = phantom_class_names[c];
      rc = osseg_csv_write_row(csv, image_name, (size_t)ilen, cls, strlen(cls), rle, len);
      if (rc == OSSEG_ENOMEM) fprintf(stderr, "osseg-phantom: out of memory\n");
      write_failed = rc == OSSEG_EIO; /* osseg_csv_writer_close tells why */
      if (rc) {
        status = 1;
        break;
      }
    }
    for (int c = 0; c < PHANTOM_NCLASSES; c++) osseg_bitmask_free(&masks[c]);
    osseg_image_free(&img);
  }
  if (status == 0 || write_failed) {
    osseg_diag_clear(&diag);
    if (osseg_csv_writer_close(csv, &diag) != 0) {
      fprintf(stderr, "osseg-phantom: %s\n", diag.message);
      status = 1;
    }
  } else {
    osseg_csv_writer_abort(csv);
  }
  osseg_runs_free(&runs);
  free(rle);
  free(sc);
  return status;
}
