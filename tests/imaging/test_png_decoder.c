/* Tests of the reusable PNG decoder (osseg_png_decoder_*, imaging/png.c):
 * one decoder fed the fixtures of tests/data/imaging in sequence gives the
 * one-shot decoder's pixels whatever came before (larger, smaller, other
 * layouts), a repeated decode of a plain gray PNG allocates nothing, a
 * corrupt file in between leaves the decoder usable, errors name a file
 * once, limits are checked before anything is allocated, and every
 * allocation failure gives a clean error (ASan checks for leaks). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>

#include <cmocka.h>

#include "imaging_internal.h"
#include "test_support.h"

/* ----------------------------------------------------------- fixtures --- */

struct fixture {
  const char *name;
  uint32_t w, h, depth; /* of the decoded (gray) image */
  int fast;             /* plain gray: the allocation-free path */
  char *data;
  size_t size;
  const char *path;
};

static struct fixture fixtures[] = {
    {"gray8_200x150.png", 200, 150, 8, 1, NULL, 0, NULL},
    {"gray8_23x17.png", 23, 17, 8, 1, NULL, 0, NULL},
    {"gray16_40x30.png", 40, 30, 16, 1, NULL, 0, NULL},
    {"palette_33x21.png", 33, 21, 8, 0, NULL, 0, NULL},
    {"rgb_120x90.png", 120, 90, 8, 0, NULL, 0, NULL},
    {"interlaced_29x27.png", 29, 27, 8, 0, NULL, 0, NULL},
};
enum { NFIX = sizeof fixtures / sizeof fixtures[0] };
enum { GRAY8_BIG, GRAY8_SMALL, GRAY16, PALETTE, RGB, INTERLACED };

static int load_fixtures(void **state) {
  (void)state;
  for (size_t i = 0; i < NFIX; i++) {
    struct fixture *f = &fixtures[i];
    f->path = strdup(test_path("%s/tests/data/imaging/%s", test_source_dir(), f->name));
    f->data = test_read_file(f->path, &f->size);
    if (!f->data) {
      fprintf(stderr, "cannot read %s\n", f->path);
      return -1;
    }
  }
  return 0;
}

static int free_fixtures(void **state) {
  (void)state;
  for (size_t i = 0; i < NFIX; i++) {
    free(fixtures[i].data);
    free((char *)fixtures[i].path);
  }
  return 0;
}

/* ------------------------------------------------------------ helpers --- */

static void assert_same_image(const struct osseg_image *a, const struct osseg_image *b,
                              const char *what) {
  if (a->width != b->width || a->height != b->height || a->channels != b->channels ||
      a->bit_depth != b->bit_depth || a->stride != b->stride)
    fail_msg("%s: %ux%u c%u d%u s%zu, want %ux%u c%u d%u s%zu", what, a->width, a->height,
             a->channels, a->bit_depth, a->stride, b->width, b->height, b->channels,
             b->bit_depth, b->stride);
  for (uint32_t y = 0; y < a->height; y++)
    if (memcmp(a->data + (size_t)y * a->stride, b->data + (size_t)y * b->stride, a->stride))
      fail_msg("%s: row %u differs from the one-shot decoder", what, y);
}

static void assert_empty(const struct osseg_image *im) {
  assert_null(im->data);
  assert_int_equal(im->width, 0);
  assert_int_equal(im->height, 0);
  assert_int_equal(im->stride, 0);
}

/* The one-shot decode of fixture i (the reference), checked against the
 * fixture's declared shape. */
static void one_shot(size_t i, struct osseg_image *ref) {
  const struct fixture *f = &fixtures[i];
  struct osseg_diag d;
  osseg_diag_clear(&d);
  int rc = osseg_png_decode_mem(f->data, f->size, NULL, ref, &d);
  if (rc != 0) fail_msg("%s: one-shot rc %d (%s)", f->name, rc, d.message);
  assert_int_equal(ref->width, f->w);
  assert_int_equal(ref->height, f->h);
  assert_int_equal(ref->channels, 1);
  assert_int_equal(ref->bit_depth, f->depth);
}

/* Decodes fixture i on dec (from memory or from its file) and compares the
 * result with the one-shot decoder. */
static void decode_and_check(struct osseg_png_decoder *dec, size_t i, int from_file,
                             struct osseg_image *got) {
  const struct fixture *f = &fixtures[i];
  struct osseg_diag d;
  osseg_diag_clear(&d);
  int rc = from_file ? osseg_png_decoder_decode_file(dec, f->path, NULL, got, &d)
                     : osseg_png_decoder_decode_mem(dec, f->data, f->size, NULL, got, &d);
  if (rc != 0) fail_msg("%s (%s): rc %d (%s)", f->name, from_file ? "file" : "mem", rc,
                        d.message);
  struct osseg_image ref;
  one_shot(i, &ref);
  char what[96];
  snprintf(what, sizeof what, "%s (%s)", f->name, from_file ? "file" : "mem");
  assert_same_image(got, &ref, what);
  osseg_image_free(&ref);
}

/* Allocations made by one decode of fixture i on dec, as counted through osseg__malloc & co. */
static uint64_t count_allocs_decode(struct osseg_png_decoder *dec, size_t i, int from_file,
                                    struct osseg_image *got) {
  osseg__alloc_fail_at(0);
  const struct fixture *f = &fixtures[i];
  int rc = from_file ? osseg_png_decoder_decode_file(dec, f->path, NULL, got, NULL)
                     : osseg_png_decoder_decode_mem(dec, f->data, f->size, NULL, got, NULL);
  uint64_t n = osseg__alloc_fail_at(0);
  assert_int_equal(rc, 0);
  return n;
}

/* -------------------------------------------------------------- tests --- */

/* The one-shot decoder agrees with libpng alone on every fixture, so the
 * fixtures are sound references (the gray ones take the fast path there). */
static void test_fixtures_decode(void **state) {
  (void)state;
  for (size_t i = 0; i < NFIX; i++) {
    struct osseg_image ref, lib;
    one_shot(i, &ref);
    assert_int_equal(
        osseg__png_decode_libpng(fixtures[i].data, fixtures[i].size, NULL, &lib, NULL), 0);
    assert_same_image(&ref, &lib, fixtures[i].name);
    struct osseg_image fast = {0};
    int rc = osseg__png_fast_decode((const uint8_t *)fixtures[i].data, fixtures[i].size,
                                    &(struct osseg_png_limits){16384, 16384, 1ull << 28,
                                                               1ull << 30},
                                    &fast, NULL);
    assert_int_equal(rc, fixtures[i].fast ? 0 : OSSEG__PNG_FALLBACK);
    osseg_image_free(&fast);
    osseg_image_free(&ref);
    osseg_image_free(&lib);
  }
}

/* One decoder, the fixtures in several orders (big -> small -> big, every
 * layout after every other), from memory and from files: always the
 * one-shot decoder's pixels. */
static void test_sequence_matches_one_shot(void **state) {
  (void)state;
  static const size_t orders[][10] = {
      {GRAY8_BIG, GRAY8_SMALL, GRAY8_BIG, GRAY16, GRAY8_SMALL, GRAY16, GRAY8_BIG, 99},
      {GRAY8_SMALL, PALETTE, GRAY8_BIG, RGB, GRAY16, INTERLACED, GRAY8_SMALL, RGB, GRAY8_BIG,
       99},
      {INTERLACED, RGB, PALETTE, GRAY16, GRAY8_SMALL, GRAY8_BIG, PALETTE, INTERLACED, GRAY16,
       99},
      {RGB, GRAY8_SMALL, RGB, GRAY8_BIG, INTERLACED, GRAY8_BIG, PALETTE, GRAY8_SMALL, 99},
  };
  for (size_t o = 0; o < sizeof orders / sizeof orders[0]; o++) {
    for (int from_file = 0; from_file < 2; from_file++) {
      struct osseg_png_decoder *dec = NULL;
      assert_int_equal(osseg_png_decoder_create(&dec), 0);
      for (size_t k = 0; orders[o][k] != 99; k++) {
        struct osseg_image im;
        decode_and_check(dec, orders[o][k], from_file, &im);
      }
      osseg_png_decoder_free(dec);
    }
  }
  /* Alternating memory and file decodes on one decoder. */
  struct osseg_png_decoder *dec = NULL;
  assert_int_equal(osseg_png_decoder_create(&dec), 0);
  for (size_t k = 0; k < 2 * NFIX; k++) {
    struct osseg_image im;
    decode_and_check(dec, (k * 5) % NFIX, (int)(k & 1), &im);
  }
  osseg_png_decoder_free(dec);
}

/* Once a decoder has seen an image and a file at least as large, a plain
 * gray decode allocates nothing: the same file again, smaller ones, from
 * memory and from files. The result lands in the same pixel buffer. */
static void test_repeat_allocates_nothing(void **state) {
  (void)state;
  struct osseg_png_decoder *dec = NULL;
  assert_int_equal(osseg_png_decoder_create(&dec), 0);
  struct osseg_image im;
  assert_true(count_allocs_decode(dec, GRAY8_BIG, 0, &im) > 0); /* warm-up */
  const uint8_t *buffer = im.data;
  for (int rep = 0; rep < 3; rep++) {
    assert_int_equal(count_allocs_decode(dec, GRAY8_BIG, 0, &im), 0);
    assert_ptr_equal(im.data, buffer);
  }
  decode_and_check(dec, GRAY8_BIG, 0, &im);
  assert_int_equal(count_allocs_decode(dec, GRAY8_SMALL, 0, &im), 0);
  assert_ptr_equal(im.data, buffer);
  decode_and_check(dec, GRAY8_SMALL, 0, &im);
  assert_int_equal(count_allocs_decode(dec, GRAY16, 0, &im), 0);
  decode_and_check(dec, GRAY16, 0, &im);
  assert_int_equal(count_allocs_decode(dec, GRAY8_BIG, 0, &im), 0);

  /* Not merely uncounted: with every allocation made to fail, the decode
   * still succeeds. */
  osseg__alloc_fail_at(1);
  int rc = osseg_png_decoder_decode_mem(dec, fixtures[GRAY8_SMALL].data,
                                        fixtures[GRAY8_SMALL].size, NULL, &im, NULL);
  osseg__alloc_fail_at(0);
  assert_int_equal(rc, 0);

  /* From files: the first needs the file buffer, later ones nothing. */
  assert_true(count_allocs_decode(dec, GRAY8_BIG, 1, &im) > 0);
  for (int rep = 0; rep < 2; rep++)
    assert_int_equal(count_allocs_decode(dec, GRAY8_BIG, 1, &im), 0);
  assert_int_equal(count_allocs_decode(dec, GRAY8_SMALL, 1, &im), 0);
  assert_int_equal(count_allocs_decode(dec, GRAY16, 1, &im), 0);
  assert_ptr_equal(im.data, buffer);
  decode_and_check(dec, GRAY16, 1, &im);

  /* The libpng path may allocate (its own state), but its image lands in
   * the decoder's buffer too, and a gray decode after it is still free. */
  assert_true(count_allocs_decode(dec, PALETTE, 0, &im) > 0);
  assert_ptr_equal(im.data, buffer);
  assert_int_equal(count_allocs_decode(dec, GRAY8_BIG, 0, &im), 0);
  osseg_png_decoder_free(dec);
}

/* A decoder that only ever saw small files grows once for a big one, then
 * decodes it and everything smaller without allocating. */
static void test_grows_once(void **state) {
  (void)state;
  struct osseg_png_decoder *dec = NULL;
  assert_int_equal(osseg_png_decoder_create(&dec), 0);
  struct osseg_image im;
  count_allocs_decode(dec, GRAY8_SMALL, 0, &im);
  assert_int_equal(count_allocs_decode(dec, GRAY8_SMALL, 0, &im), 0);
  assert_true(count_allocs_decode(dec, GRAY8_BIG, 0, &im) > 0);
  assert_int_equal(count_allocs_decode(dec, GRAY8_BIG, 0, &im), 0);
  assert_int_equal(count_allocs_decode(dec, GRAY8_SMALL, 0, &im), 0);
  decode_and_check(dec, GRAY8_SMALL, 0, &im);
  osseg_png_decoder_free(dec);
}

/* Writes data to a fresh file under dir and returns its path (static). */
static const char *write_tmp(const char *dir, const char *name, const void *data, size_t n) {
  const char *path = test_path("%s/%s", dir, name);
  assert_int_equal(test_write_file(path, data, n), 0);
  return path;
}

static size_t count_substr(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

/* Corrupt input between good files: a clean error and an empty image each
 * time, then the good file decodes as before, without allocating. A file's
 * error names it exactly once. */
static void test_corrupt_between_good(void **state) {
  (void)state;
  const struct fixture *big = &fixtures[GRAY8_BIG], *pal = &fixtures[PALETTE];
  struct corrupt {
    const char *name;
    char *data;
    size_t size;
    int code;
  } bad[6];
  size_t nbad = 0;
  /* Truncated inside the image data (fast path). */
  bad[nbad++] = (struct corrupt){"cut.png", malloc(big->size), big->size / 2, OSSEG_EPARSE};
  /* One flipped byte inside the first IDAT payload: a CRC error. */
  bad[nbad++] = (struct corrupt){"flip.png", malloc(big->size), big->size, OSSEG_EPARSE};
  /* Not a PNG. */
  bad[nbad++] = (struct corrupt){"text.png", malloc(big->size), big->size, OSSEG_EPARSE};
  /* A palette file truncated (libpng path). */
  bad[nbad++] = (struct corrupt){"palcut.png", malloc(pal->size), pal->size - 20, OSSEG_EPARSE};
  /* Dimensions above the limits. */
  bad[nbad++] = (struct corrupt){"huge.png", malloc(big->size), big->size, OSSEG_ELIMIT};
  memcpy(bad[0].data, big->data, big->size);
  memcpy(bad[1].data, big->data, big->size);
  /* The first chunk after IHDR (33 bytes) is tEXt; find the first IDAT. */
  const char *idat = memmem(big->data, big->size, "IDAT", 4);
  assert_non_null(idat);
  bad[1].data[(idat - big->data) + 100] ^= 0x40;
  memset(bad[2].data, 'x', big->size);
  memcpy(bad[3].data, pal->data, pal->size);
  memcpy(bad[4].data, big->data, big->size);
  bad[4].data[16] = 0x00, bad[4].data[17] = 0x01; /* width 65536 + 200 */

  const char *dir = test_tmpdir();
  for (int from_file = 0; from_file < 2; from_file++) {
    struct osseg_png_decoder *dec = NULL;
    assert_int_equal(osseg_png_decoder_create(&dec), 0);
    struct osseg_image im;
    decode_and_check(dec, GRAY8_BIG, from_file, &im);
    for (size_t b = 0; b < nbad; b++) {
      struct osseg_diag d;
      osseg_diag_clear(&d);
      const char *path = NULL;
      int rc;
      if (from_file) {
        path = write_tmp(dir, bad[b].name, bad[b].data, bad[b].size);
        rc = osseg_png_decoder_decode_file(dec, path, NULL, &im, &d);
      } else {
        rc = osseg_png_decoder_decode_mem(dec, bad[b].data, bad[b].size, NULL, &im, &d);
      }
      if (rc != bad[b].code)
        fail_msg("%s (%s): rc %d, want %d (%s)", bad[b].name, from_file ? "file" : "mem", rc,
                 bad[b].code, d.message);
      assert_int_equal(d.code, bad[b].code);
      assert_empty(&im);
      assert_true(d.message[0] != '\0');
      if (from_file) {
        /* "PATH: message", the path once. */
        assert_int_equal(strncmp(d.message, path, strlen(path)), 0);
        assert_int_equal(strncmp(d.message + strlen(path), ": ", 2), 0);
        if (count_substr(d.message, path) != 1) fail_msg("path not named once: %s", d.message);
        if (bad[b].code == OSSEG_EPARSE && b != 2)
          assert_non_null(strstr(d.message, ": corrupt PNG"));
      } else {
        assert_null(strstr(d.message, bad[b].name));
      }
      /* The good files still decode right, and the fast one for free. */
      decode_and_check(dec, PALETTE, from_file, &im);
      decode_and_check(dec, GRAY8_BIG, from_file, &im);
      assert_int_equal(count_allocs_decode(dec, GRAY8_BIG, from_file, &im), 0);
    }
    osseg_png_decoder_free(dec);
  }
  /* The one-shot file decoder names the path once too. */
  struct osseg_image im;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  const char *path = write_tmp(dir, "cut1.png", bad[0].data, bad[0].size);
  assert_int_equal(osseg_png_decode_file(path, NULL, &im, &d), OSSEG_EPARSE);
  assert_int_equal(count_substr(d.message, path), 1);
  assert_int_equal(strncmp(d.message, path, strlen(path)), 0);
  for (size_t b = 0; b < nbad; b++) free(bad[b].data);
}

/* Limits are checked before anything is allocated, on a fresh decoder as on
 * a warm one: with every allocation failing the answer is OSSEG_ELIMIT. */
static void test_limits_before_allocation(void **state) {
  (void)state;
  const struct fixture *f = &fixtures[GRAY8_BIG];
  struct osseg_png_decoder *dec = NULL;
  assert_int_equal(osseg_png_decoder_create(&dec), 0);
  struct osseg_image im;
  struct osseg_png_limits lim;
  for (int warm = 0; warm < 2; warm++) {
    for (int from_file = 0; from_file < 2; from_file++) {
      for (int which = 0; which < 3; which++) {
        osseg_png_limits_default(&lim);
        if (which == 0) lim.max_width = f->w - 1;
        if (which == 1) lim.max_pixels = (uint64_t)f->w * f->h - 1;
        if (which == 2) lim.max_bytes = f->size - 1;
        struct osseg_diag d;
        osseg_diag_clear(&d);
        osseg__alloc_fail_at(1);
        int rc = from_file ? osseg_png_decoder_decode_file(dec, f->path, &lim, &im, &d)
                           : osseg_png_decoder_decode_mem(dec, f->data, f->size, &lim, &im, &d);
        uint64_t attempts = osseg__alloc_fail_at(0);
        if (rc != OSSEG_ELIMIT)
          fail_msg("warm %d file %d limit %d: rc %d (%s)", warm, from_file, which, rc,
                   d.message);
        assert_int_equal(attempts, 0);
        assert_non_null(strstr(d.message, "limit"));
        assert_empty(&im);
      }
    }
    decode_and_check(dec, GRAY8_SMALL, 0, &im); /* warm it with a smaller image */
  }
  osseg_png_decoder_free(dec);
}

/* Fail the Nth allocation (N = 1, 2, ...) of creating a decoder and decoding
 * each fixture from memory and from its file, until a run succeeds: every
 * failure is a clean OSSEG_ENOMEM with an empty image, and the decoder can
 * then decode the file. Also on a warm decoder that must grow. */
static void test_alloc_failures(void **state) {
  (void)state;
  for (size_t i = 0; i < NFIX; i++) {
    for (int from_file = 0; from_file < 2; from_file++) {
      for (int warm = 0; warm < 2; warm++) {
        for (uint64_t nth = 1;; nth++) {
          assert_true(nth < 2000);
          struct osseg_png_decoder *dec = NULL;
          struct osseg_image im = {0};
          struct osseg_diag d;
          osseg_diag_clear(&d);
          if (warm) {
            /* A decoder that has only decoded a small image. */
            assert_int_equal(osseg_png_decoder_create(&dec), 0);
            decode_and_check(dec, GRAY8_SMALL, 0, &im);
          }
          osseg__alloc_fail_at(nth);
          int rc = warm ? 0 : osseg_png_decoder_create(&dec);
          if (rc == 0)
            rc = from_file
                     ? osseg_png_decoder_decode_file(dec, fixtures[i].path, NULL, &im, &d)
                     : osseg_png_decoder_decode_mem(dec, fixtures[i].data, fixtures[i].size,
                                                    NULL, &im, &d);
          else
            assert_null(dec);
          uint64_t attempts = osseg__alloc_fail_at(0);
          if (rc == 0) {
            assert_true(attempts < nth);
            struct osseg_image ref;
            one_shot(i, &ref);
            assert_same_image(&im, &ref, fixtures[i].name);
            osseg_image_free(&ref);
            osseg_png_decoder_free(dec);
            break;
          }
          if (rc != OSSEG_ENOMEM)
            fail_msg("%s nth %llu: rc %d (%s)", fixtures[i].name, (unsigned long long)nth, rc,
                     d.message);
          assert_empty(&im);
          if (dec) {
            if (from_file) assert_int_equal(count_substr(d.message, fixtures[i].path), 1);
            /* Still usable once memory is back. */
            decode_and_check(dec, i, from_file, &im);
            decode_and_check(dec, GRAY8_SMALL, from_file, &im);
          }
          osseg_png_decoder_free(dec);
        }
      }
    }
  }
}

static void test_invalid_args(void **state) {
  (void)state;
  struct osseg_png_decoder *dec = NULL;
  struct osseg_image im;
  assert_int_equal(osseg_png_decoder_create(NULL), OSSEG_EINVAL);
  assert_int_equal(osseg_png_decoder_create(&dec), 0);
  const struct fixture *f = &fixtures[GRAY8_SMALL];
  assert_int_equal(osseg_png_decoder_decode_mem(NULL, f->data, f->size, NULL, &im, NULL),
                   OSSEG_EINVAL);
  assert_empty(&im);
  assert_int_equal(osseg_png_decoder_decode_mem(dec, f->data, f->size, NULL, NULL, NULL),
                   OSSEG_EINVAL);
  assert_int_equal(osseg_png_decoder_decode_mem(dec, NULL, 5, NULL, &im, NULL), OSSEG_EINVAL);
  assert_int_equal(osseg_png_decoder_decode_mem(dec, NULL, 0, NULL, &im, NULL), OSSEG_EPARSE);
  assert_int_equal(osseg_png_decoder_decode_file(dec, NULL, NULL, &im, NULL), OSSEG_EINVAL);
  assert_int_equal(osseg_png_decoder_decode_file(NULL, f->path, NULL, &im, NULL), OSSEG_EINVAL);
  struct osseg_diag d;
  osseg_diag_clear(&d);
  const char *missing = test_path("%s/missing.png", test_tmpdir());
  assert_int_equal(osseg_png_decoder_decode_file(dec, missing, NULL, &im, &d), OSSEG_EIO);
  assert_int_equal(count_substr(d.message, missing), 1);
  assert_empty(&im);
  decode_and_check(dec, GRAY8_SMALL, 1, &im);
  osseg_png_decoder_free(dec);
  osseg_png_decoder_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fixtures_decode),
      cmocka_unit_test(test_sequence_matches_one_shot),
      cmocka_unit_test(test_repeat_allocates_nothing),
      cmocka_unit_test(test_grows_once),
      cmocka_unit_test(test_corrupt_between_good),
      cmocka_unit_test(test_limits_before_allocation),
      cmocka_unit_test(test_alloc_failures),
      cmocka_unit_test(test_invalid_args),
  };
  return cmocka_run_group_tests(tests, load_fixtures, free_fixtures);
}
