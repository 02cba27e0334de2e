/* Tests of imaging/png_fast.c: the fast gray decoder gives libpng's pixels
 * byte for byte on every file it accepts (every filter type, odd widths, 8
 * and 16 bits, split IDATs, ancillary chunks), hands everything else back
 * to libpng, and fails cleanly on truncated or corrupt files: bad CRCs, bad
 * filter bytes, too little or too much image data, absurd headers. Files are
 * written either by libpng (with a chosen filter) or by hand here (random
 * filter bytes per row, any chunk layout), compressed with libdeflate. */
#include <libdeflate.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imaging_internal.h"
#include "test_support.h"

struct membuf {
  uint8_t *p;
  size_t n, cap;
};

static void buf_put(struct membuf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ------------------------------------------------------ libpng writer --- */

static void mem_write(png_structp png, png_bytep d, size_t n) {
  buf_put(png_get_io_ptr(png), d, n);
}
static void mem_flush(png_structp png) { (void)png; }

struct wopts {
  int filters;     /* PNG_FILTER_* mask, 0 = libpng's default */
  size_t idat_max; /* compression buffer size (IDAT size), 0 = default */
  int ancillary;   /* add tEXt, gAMA, tIME, tRNS, and text after IDAT */
  int interlace;
  int ctype;
};

/* rows: packed samples in PNG (big-endian) order, stride bytes apart. */
static struct membuf write_png(uint32_t w, uint32_t h, int depth, const uint8_t *rows,
                               size_t stride, const struct wopts *o) {
  struct membuf b = {0};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  assert_non_null(info);
  if (setjmp(png_jmpbuf(png))) fail_msg("libpng write failed");
  png_set_write_fn(png, &b, mem_write, mem_flush);
  if (o->filters) png_set_filter(png, PNG_FILTER_TYPE_BASE, o->filters);
  if (o->idat_max) png_set_compression_buffer_size(png, o->idat_max);
  png_set_IHDR(png, info, w, h, depth, o->ctype,
               o->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_text text = {0};
  if (o->ancillary) {
    text.compression = PNG_TEXT_COMPRESSION_NONE;
    text.key = "Comment";
    text.text = "hand phantom, before IDAT";
    png_set_text(png, info, &text, 1);
    png_set_gAMA(png, info, 0.45455);
    png_color_16 tc = {0};
    tc.gray = 3;
    if (o->ctype == PNG_COLOR_TYPE_GRAY) png_set_tRNS(png, info, NULL, 0, &tc);
  }
  png_write_info(png, info);
  png_bytep *rp = malloc(h * sizeof *rp);
  for (uint32_t y = 0; y < h; y++) rp[y] = (png_bytep)rows + (size_t)y * stride;
  png_write_image(png, rp);
  if (o->ancillary) {
    png_time t = {2026, 11, 26, 12, 0, 0};
    png_set_tIME(png, info, &t);
    text.text = "after IDAT";
    png_set_text(png, info, &text, 1);
  }
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  free(rp);
  return b;
}

/* -------------------------------------------------------- hand writer --- */

static void put_chunk(struct membuf *b, const char *name, const uint8_t *data, size_t len) {
  uint8_t hdr[8];
  put32(hdr, (uint32_t)len);
  memcpy(hdr + 4, name, 4);
  buf_put(b, hdr, 8);
  if (len) buf_put(b, data, len);
  /* libdeflate_crc32(crc, NULL, 0) returns the initial value, not crc. */
  uint32_t crc = libdeflate_crc32(0, name, 4);
  if (len) crc = libdeflate_crc32(crc, data, len);
  uint8_t c[4];
  put32(c, crc);
  buf_put(b, c, 4);
}

static size_t zlib_compress(const uint8_t *raw, size_t n, uint8_t **out) {
  struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
  assert_non_null(c);
  size_t cap = libdeflate_zlib_compress_bound(c, n);
  *out = malloc(cap);
  size_t z = libdeflate_zlib_compress(c, raw, n, *out, cap);
  assert_true(z > 0);
  libdeflate_free_compressor(c);
  return z;
}

/* A PNG built from already-filtered rows (filter byte first in each row):
 * IHDR with the given fields, the zlib stream split into IDATs of at most
 * idat_max bytes, IEND. */
static struct membuf hand_png(uint32_t w, uint32_t h, int depth, int ctype,
                              const uint8_t *filtered, size_t n, size_t idat_max) {
  struct membuf b = {0};
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  buf_put(&b, sig, 8);
  uint8_t ihdr[13] = {0};
  put32(ihdr, w);
  put32(ihdr + 4, h);
  ihdr[8] = (uint8_t)depth;
  ihdr[9] = (uint8_t)ctype;
  put_chunk(&b, "IHDR", ihdr, 13);
  uint8_t *z;
  size_t zn = zlib_compress(filtered, n, &z);
  for (size_t off = 0; off < zn; off += idat_max) {
    size_t len = zn - off < idat_max ? zn - off : idat_max;
    put_chunk(&b, "IDAT", z + off, len);
  }
  put_chunk(&b, "IEND", NULL, 0);
  free(z);
  return b;
}

/* Random filtered data: every byte string is valid filtered data, so random
 * bytes with random filter types 0..4 exercise each filter on arbitrary
 * neighbours, the first row included. */
static uint8_t *random_filtered(uint32_t w, uint32_t h, int depth, struct test_rng *rng,
                                size_t *n) {
  size_t rb = (size_t)w * (depth / 8) + 1;
  *n = rb * h;
  uint8_t *f = malloc(*n);
  for (size_t i = 0; i < *n; i++) f[i] = (uint8_t)test_rng_next(rng);
  /* Half the rows Average, so runs of Average rows (decoded two at a time)
   * of every length and position occur. */
  for (uint32_t y = 0; y < h; y++)
    f[(size_t)y * rb] = (uint8_t)(test_rng_below(rng, 2) ? 3 : test_rng_below(rng, 5));
  return f;
}

/* --------------------------------------------------------- comparison --- */

static void assert_same_image(const struct osseg_image *a, const struct osseg_image *b) {
  assert_int_equal(a->width, b->width);
  assert_int_equal(a->height, b->height);
  assert_int_equal(a->channels, b->channels);
  assert_int_equal(a->bit_depth, b->bit_depth);
  assert_int_equal(a->stride, b->stride);
  assert_memory_equal(a->data, b->data, a->stride * a->height);
}

/* The file must take the fast path and give libpng's image; the public
 * entry point must give it too. */
static void check_fast_equals_libpng(const struct membuf *b, const char *what) {
  struct osseg_png_limits lim;
  osseg_png_limits_default(&lim);
  struct osseg_image fast = {0}, ref = {0}, pub = {0};
  struct osseg_diag d;
  osseg_diag_clear(&d);
  int rc = osseg__png_fast_decode(b->p, b->n, &lim, &fast, &d);
  if (rc != 0) fail_msg("%s: fast path rc %d (%s)", what, rc, d.message);
  osseg_diag_clear(&d);
  rc = osseg__png_decode_libpng(b->p, b->n, &lim, &ref, &d);
  if (rc != 0) fail_msg("%s: libpng rc %d (%s)", what, rc, d.message);
  assert_same_image(&fast, &ref);
  assert_int_equal(osseg_png_decode_mem(b->p, b->n, NULL, &pub, NULL), 0);
  assert_same_image(&pub, &ref);
  osseg_image_free(&fast);
  osseg_image_free(&ref);
  osseg_image_free(&pub);
}

static int count_chunks(const struct membuf *b, const char *name) {
  int n = 0;
  for (size_t pos = 8; pos + 12 <= b->n;) {
    uint32_t len = get32(b->p + pos);
    if (memcmp(b->p + pos + 4, name, 4) == 0) n++;
    pos += (size_t)len + 12;
  }
  return n;
}

/* Smooth gradients with noise, so that libpng's filter heuristic picks
 * different filters on different rows when it may choose. */
static uint8_t *test_rows(uint32_t w, uint32_t h, int depth, struct test_rng *rng,
                          size_t *stride) {
  *stride = (size_t)w * (depth / 8);
  uint8_t *rows = malloc(*stride * h);
  for (uint32_t y = 0; y < h; y++)
    for (uint32_t x = 0; x < w; x++) {
      unsigned v = (unsigned)(x * 3 + y * 5) + (unsigned)test_rng_below(rng, y % 3 ? 4 : 256);
      uint8_t *p = rows + (size_t)y * *stride + (size_t)x * (depth / 8);
      if (depth == 16) {
        unsigned v16 = v * 131u + (unsigned)test_rng_below(rng, 300);
        p[0] = (uint8_t)(v16 >> 8);
        p[1] = (uint8_t)v16;
      } else {
        p[0] = (uint8_t)v;
      }
    }
  return rows;
}

/* ------------------------------------------------------------- tests --- */

static void test_filters_and_widths(void **state) {
  (void)state;
  static const uint32_t widths[] = {1, 2, 3, 7, 64, 65, 1000};
  static const int filters[] = {PNG_FILTER_NONE, PNG_FILTER_SUB, PNG_FILTER_UP,
                                PNG_FILTER_AVG,  PNG_FILTER_PAETH, PNG_ALL_FILTERS};
  struct test_rng rng;
  test_rng_seed(&rng, 1);
  for (int depth = 8; depth <= 16; depth += 8)
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
      for (size_t fi = 0; fi < sizeof filters / sizeof filters[0]; fi++) {
        uint32_t w = widths[wi], h = w > 100 ? 6 : 11;
        size_t stride;
        uint8_t *rows = test_rows(w, h, depth, &rng, &stride);
        struct wopts o = {.filters = filters[fi], .ctype = PNG_COLOR_TYPE_GRAY};
        struct membuf b = write_png(w, h, depth, rows, stride, &o);
        char what[64];
        snprintf(what, sizeof what, "depth %d width %u filters 0x%x", depth, w, filters[fi]);
        check_fast_equals_libpng(&b, what);
        free(b.p);
        free(rows);
      }
}

/* Random filter bytes on random data, hand-written: every filter on every
 * row position, both depths, many widths. */
static void test_random_filtered_rows(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 2);
  for (int depth = 8; depth <= 16; depth += 8)
    for (uint32_t w = 1; w <= 70; w += (w < 10 ? 1 : 13)) {
      uint32_t h = 1 + (uint32_t)test_rng_below(&rng, 20);
      size_t n;
      uint8_t *f = random_filtered(w, h, depth, &rng, &n);
      struct membuf b = hand_png(w, h, depth, 0, f, n, 1 + test_rng_below(&rng, 100));
      char what[64];
      snprintf(what, sizeof what, "hand depth %d width %u height %u", depth, w, h);
      check_fast_equals_libpng(&b, what);
      free(b.p);
      free(f);
    }
}

static void test_multiple_idat_and_ancillary(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 3);
  for (int depth = 8; depth <= 16; depth += 8) {
    size_t stride;
    uint8_t *rows = test_rows(77, 40, depth, &rng, &stride);
    struct wopts o = {.idat_max = 100, .ctype = PNG_COLOR_TYPE_GRAY};
    struct membuf b = write_png(77, 40, depth, rows, stride, &o);
    assert_true(count_chunks(&b, "IDAT") > 3);
    check_fast_equals_libpng(&b, "small IDATs");
    free(b.p);
    o.ancillary = 1;
    b = write_png(77, 40, depth, rows, stride, &o);
    assert_true(count_chunks(&b, "IDAT") > 3);
    assert_int_equal(count_chunks(&b, "tEXt"), 2);
    assert_int_equal(count_chunks(&b, "tRNS"), 1);
    assert_int_equal(count_chunks(&b, "tIME"), 1);
    check_fast_equals_libpng(&b, "ancillary chunks");
    free(b.p);
    free(rows);
  }
}

/* Interlaced, colour, low-depth and palette files go to libpng, and the
 * public entry point still decodes them as libpng does. */
static void test_fallbacks(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 4);
  static const struct {
    int ctype, depth, interlace;
  } kinds[] = {
      {PNG_COLOR_TYPE_GRAY, 8, 1},  {PNG_COLOR_TYPE_GRAY, 16, 1},
      {PNG_COLOR_TYPE_GRAY, 4, 0},  {PNG_COLOR_TYPE_RGB, 8, 0},
      {PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0}, {PNG_COLOR_TYPE_RGB_ALPHA, 16, 0},
  };
  struct osseg_png_limits lim;
  osseg_png_limits_default(&lim);
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    int nch = kinds[k].ctype == PNG_COLOR_TYPE_RGB          ? 3
              : kinds[k].ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
              : kinds[k].ctype == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                                                            : 1;
    uint32_t w = 19, h = 13;
    size_t stride = ((size_t)w * nch * kinds[k].depth + 7) / 8;
    uint8_t *rows = malloc(stride * h);
    for (size_t i = 0; i < stride * h; i++) rows[i] = (uint8_t)test_rng_next(&rng);
    struct wopts o = {.ctype = kinds[k].ctype, .interlace = kinds[k].interlace};
    struct membuf b = write_png(w, h, kinds[k].depth, rows, stride, &o);
    struct osseg_image fast = {0}, ref = {0}, pub = {0};
    struct osseg_diag d;
    osseg_diag_clear(&d);
    assert_int_equal(osseg__png_fast_decode(b.p, b.n, &lim, &fast, &d), OSSEG__PNG_FALLBACK);
    assert_null(fast.data);
    assert_string_equal(d.message, ""); /* a fallback leaves no diagnostic */
    assert_int_equal(osseg__png_decode_libpng(b.p, b.n, &lim, &ref, NULL), 0);
    assert_int_equal(osseg_png_decode_mem(b.p, b.n, NULL, &pub, NULL), 0);
    assert_same_image(&pub, &ref);
    osseg_image_free(&ref);
    osseg_image_free(&pub);
    free(b.p);
    free(rows);
  }
}

/* Splices a chunk in before IEND (the last 12 bytes). */
static struct membuf with_chunk_before_iend(const struct membuf *b, const char *name,
                                            int break_crc) {
  struct membuf c = {0};
  buf_put(&c, b->p, b->n - 12);
  const uint8_t data[5] = {1, 2, 3, 4, 5};
  put_chunk(&c, name, data, sizeof data);
  if (break_crc) c.p[c.n - 1] ^= 1;
  buf_put(&c, b->p + b->n - 12, 12);
  return c;
}

/* Chunks libpng judges (an unknown critical chunk, an ancillary chunk with
 * a bad CRC, IDATs split by another chunk) are handed to it. */
static void test_chunk_fallbacks(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 5);
  size_t n;
  uint8_t *f = random_filtered(9, 7, 8, &rng, &n);
  struct membuf b = hand_png(9, 7, 8, 0, f, n, 1000);
  check_fast_equals_libpng(&b, "plain");
  struct osseg_png_limits lim;
  osseg_png_limits_default(&lim);
  /* libpng_ok: whether libpng accepts the file (-1: not asserted; libpng
   * 1.6 even tolerates an unknown critical chunk after the image data). */
  struct {
    const char *name;
    int break_crc;
    int libpng_ok;
  } cases[] = {{"abCd", 1, 1}, {"ABCD", 0, -1}, {"IDAT", 0, -1}, {"tEXt", 1, 1}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    struct membuf c;
    if (!strcmp(cases[k].name, "IDAT")) {
      /* IDAT, tEXt, IDAT: a split run. */
      struct membuf t = with_chunk_before_iend(&b, "tEXt", 0);
      c = with_chunk_before_iend(&t, "IDAT", 0);
      free(t.p);
    } else {
      c = with_chunk_before_iend(&b, cases[k].name, cases[k].break_crc);
    }
    struct osseg_image fast = {0}, ref = {0}, pub = {0};
    assert_int_equal(osseg__png_fast_decode(c.p, c.n, &lim, &fast, NULL), OSSEG__PNG_FALLBACK);
    int rc_ref = osseg__png_decode_libpng(c.p, c.n, &lim, &ref, NULL);
    int rc_pub = osseg_png_decode_mem(c.p, c.n, NULL, &pub, NULL);
    assert_int_equal(rc_pub, rc_ref);
    if (cases[k].libpng_ok >= 0 && (rc_ref == 0) != cases[k].libpng_ok)
      fail_msg("%s: libpng rc %d", cases[k].name, rc_ref);
    if (rc_ref == 0) assert_same_image(&pub, &ref);
    osseg_image_free(&ref);
    osseg_image_free(&pub);
    free(c.p);
  }
  free(b.p);
  free(f);
}

/* Recomputes the CRC of the chunk whose data contains byte pos, so that a
 * flip reaches the zlib stream or the filter bytes rather than the CRC
 * check. */
static void fix_crcs(struct membuf *b) {
  for (size_t pos = 8; pos + 12 <= b->n;) {
    uint32_t len = get32(b->p + pos);
    if (len > b->n - pos - 12) return;
    put32(b->p + pos + 8 + len, libdeflate_crc32(0, b->p + pos + 4, (size_t)len + 4));
    pos += (size_t)len + 12;
  }
}

/* Every prefix of a small multi-IDAT file, in a buffer that ends at a guard
 * page: an EPARSE with a message from the public entry, and never a success
 * or a read past the end from the fast path. */
static void test_truncation_points(void **state) {
  (void)state;
  for (int depth = 8; depth <= 16; depth += 8) {
    struct test_rng rng;
    test_rng_seed(&rng, 6);
    size_t n;
    uint8_t *f = random_filtered(13, 9, depth, &rng, &n);
    struct membuf b = hand_png(13, 9, depth, 0, f, n, 40);
    struct osseg_png_limits lim;
    osseg_png_limits_default(&lim);
    for (size_t cut = 0; cut < b.n; cut++) {
      uint8_t *g = test_guarded_alloc(cut ? cut : 1);
      memcpy(g, b.p, cut);
      struct osseg_image im = {0};
      struct osseg_diag d;
      osseg_diag_clear(&d);
      int rc = osseg__png_fast_decode(g, cut, &lim, &im, &d);
      if (rc == 0) fail_msg("cut at %zu of %zu: fast path accepted it", cut, b.n);
      assert_null(im.data);
      osseg_diag_clear(&d);
      rc = osseg_png_decode_mem(g, cut, NULL, &im, &d);
      if (rc != OSSEG_EPARSE) fail_msg("cut at %zu of %zu: rc %d (%s)", cut, b.n, rc, d.message);
      assert_true(d.message[0] != '\0');
      assert_null(im.data);
      test_guarded_free(g);
    }
    free(b.p);
    free(f);
  }
}

/* Random byte flips, with CRCs left broken or repaired: the public entry
 * either fails with EPARSE/ELIMIT or gives libpng's image, and whenever
 * the fast path succeeds libpng succeeds with the same pixels. */
static void test_random_flips(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 7);
  struct osseg_png_limits lim;
  osseg_png_limits_default(&lim);
  int fast_errors = 0, fast_ok = 0;
  for (int depth = 8; depth <= 16; depth += 8) {
    size_t n;
    uint8_t *f = random_filtered(21, 12, depth, &rng, &n);
    struct membuf b = hand_png(21, 12, depth, 0, f, n, 64);
    for (int iter = 0; iter < 3000; iter++) {
      struct membuf c = {malloc(b.n), b.n, b.n};
      memcpy(c.p, b.p, b.n);
      int flips = 1 + (int)test_rng_below(&rng, 3);
      for (int i = 0; i < flips; i++)
        c.p[test_rng_below(&rng, b.n)] ^= (uint8_t)(1 + test_rng_below(&rng, 255));
      if (iter % 2) fix_crcs(&c);
      uint8_t *g = test_guarded_alloc(c.n);
      memcpy(g, c.p, c.n);
      struct osseg_image fast = {0}, ref = {0}, pub = {0};
      int rc_fast = osseg__png_fast_decode(g, c.n, &lim, &fast, NULL);
      int rc_ref = osseg__png_decode_libpng(g, c.n, &lim, &ref, NULL);
      int rc_pub = osseg_png_decode_mem(g, c.n, NULL, &pub, NULL);
      assert_true(rc_pub == 0 || rc_pub == OSSEG_EPARSE || rc_pub == OSSEG_ELIMIT);
      if (rc_fast == 0) {
        fast_ok++;
        if (rc_ref != 0) fail_msg("iter %d: fast path accepted what libpng rejects", iter);
        assert_same_image(&fast, &ref);
        assert_same_image(&pub, &ref);
      } else if (rc_fast < 0) {
        fast_errors++;
        assert_null(fast.data);
        assert_int_equal(rc_pub, rc_fast);
      } else {
        assert_int_equal(rc_fast, OSSEG__PNG_FALLBACK);
        if (rc_pub == 0) assert_same_image(&pub, &ref);
      }
      osseg_image_free(&fast);
      osseg_image_free(&ref);
      osseg_image_free(&pub);
      test_guarded_free(g);
      free(c.p);
    }
    free(b.p);
    free(f);
  }
  /* Both outcomes occur, so the loop tested something. */
  assert_true(fast_errors > 1000);
  assert_true(fast_ok > 10);
}

static void test_bad_crc_and_filter(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 8);
  size_t n;
  uint8_t *f = random_filtered(10, 6, 8, &rng, &n);
  struct membuf b = hand_png(10, 6, 8, 0, f, n, 1000);
  struct osseg_image im = {0};
  struct osseg_diag d;
  /* IDAT CRC (the last byte before IEND's 12 bytes). */
  b.p[b.n - 13] ^= 0x40;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_png_decode_mem(b.p, b.n, NULL, &im, &d), OSSEG_EPARSE);
  assert_non_null(strstr(d.message, "CRC"));
  b.p[b.n - 13] ^= 0x40;
  /* IHDR CRC. */
  b.p[32] ^= 1;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_png_decode_mem(b.p, b.n, NULL, &im, &d), OSSEG_EPARSE);
  assert_non_null(strstr(d.message, "CRC"));
  free(b.p);

  /* Filter byte 5 on row 3, for both depths. */
  for (int depth = 8; depth <= 16; depth += 8) {
    uint8_t *g = random_filtered(10, 6, depth, &rng, &n);
    g[3 * (n / 6)] = 5;
    b = hand_png(10, 6, depth, 0, g, n, 1000);
    osseg_diag_clear(&d);
    assert_int_equal(osseg_png_decode_mem(b.p, b.n, NULL, &im, &d), OSSEG_EPARSE);
    assert_non_null(strstr(d.message, "filter"));
    assert_non_null(strstr(d.message, "row 3"));
    assert_null(im.data);
    struct osseg_image ref = {0};
    assert_int_equal(osseg__png_decode_libpng(b.p, b.n, NULL, &ref, NULL), OSSEG_EPARSE);
    free(b.p);
    free(g);
  }
  free(f);
}

/* The zlib stream holds one byte less than the image needs, or a row more:
 * too little is an error (libpng agrees), too much is handed to libpng,
 * which ignores the excess with a warning. */
static void test_idat_length(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 9);
  struct osseg_png_limits lim;
  osseg_png_limits_default(&lim);
  for (int depth = 8; depth <= 16; depth += 8) {
    size_t n;
    uint8_t *f = random_filtered(12, 8, depth, &rng, &n); /* 8 rows of data */
    struct membuf shorter = hand_png(12, 8, depth, 0, f, n - 1, 50);
    struct osseg_image im = {0}, ref = {0};
    struct osseg_diag d;
    osseg_diag_clear(&d);
    assert_int_equal(osseg_png_decode_mem(shorter.p, shorter.n, NULL, &im, &d), OSSEG_EPARSE);
    assert_non_null(strstr(d.message, "not enough image data"));
    assert_int_equal(osseg__png_decode_libpng(shorter.p, shorter.n, NULL, &ref, NULL),
                     OSSEG_EPARSE);
    /* The header says 7 rows, the data holds 8. */
    struct membuf longer = hand_png(12, 7, depth, 0, f, n, 50);
    assert_int_equal(osseg__png_fast_decode(longer.p, longer.n, &lim, &im, NULL),
                     OSSEG__PNG_FALLBACK);
    int rc_ref = osseg__png_decode_libpng(longer.p, longer.n, NULL, &ref, NULL);
    assert_int_equal(osseg_png_decode_mem(longer.p, longer.n, NULL, &im, NULL), rc_ref);
    if (rc_ref == 0) {
      /* The first 7 rows, as a 7-row file decodes them. */
      struct membuf exact = hand_png(12, 7, depth, 0, f, n / 8 * 7, 50);
      check_fast_equals_libpng(&exact, "7 rows");
      struct osseg_image want = {0};
      assert_int_equal(osseg_png_decode_mem(exact.p, exact.n, NULL, &want, NULL), 0);
      assert_same_image(&im, &want);
      osseg_image_free(&want);
      free(exact.p);
    }
    osseg_image_free(&im);
    osseg_image_free(&ref);
    free(shorter.p);
    free(longer.p);
    free(f);
  }
}

/* A wrong zlib Adler-32 (CRCs intact) is an error, on both paths. */
static void test_bad_adler(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 12);
  size_t n;
  uint8_t *f = random_filtered(16, 5, 8, &rng, &n);
  struct membuf b = hand_png(16, 5, 8, 0, f, n, 1 << 20); /* one IDAT */
  b.p[b.n - 12 - 4 - 1] ^= 0x10; /* last Adler byte: before IDAT CRC and IEND */
  fix_crcs(&b);
  struct osseg_image im = {0};
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_png_decode_mem(b.p, b.n, NULL, &im, &d), OSSEG_EPARSE);
  assert_non_null(strstr(d.message, "Adler-32"));
  assert_null(im.data);
  struct osseg_image ref = {0};
  assert_int_equal(osseg__png_decode_libpng(b.p, b.n, NULL, &ref, NULL), OSSEG_EPARSE);
  free(b.p);
  free(f);
}

/* A header within the limits but promising far more pixels than a small
 * IDAT can hold is refused before any allocation; one above the limits is
 * OSSEG_ELIMIT, also without allocating. */
static void test_absurd_header(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 10);
  size_t n;
  uint8_t *f = random_filtered(8, 8, 8, &rng, &n);
  for (int depth = 8; depth <= 16; depth += 8) {
    struct membuf b = hand_png(16384, 16384, depth, 0, f, n, 1000);
    struct osseg_image im = {0};
    struct osseg_diag d;
    osseg_diag_clear(&d);
    osseg__alloc_fail_at(1);
    int rc = osseg_png_decode_mem(b.p, b.n, NULL, &im, &d);
    uint64_t attempts = osseg__alloc_fail_at(0);
    assert_int_equal(rc, OSSEG_EPARSE);
    assert_int_equal(attempts, 0);
    assert_non_null(strstr(d.message, "cannot hold"));
    free(b.p);
    b = hand_png(16385, 4, depth, 0, f, n, 1000);
    osseg_diag_clear(&d);
    osseg__alloc_fail_at(1);
    rc = osseg_png_decode_mem(b.p, b.n, NULL, &im, &d);
    attempts = osseg__alloc_fail_at(0);
    assert_int_equal(rc, OSSEG_ELIMIT);
    assert_int_equal(attempts, 0);
    free(b.p);
  }
  free(f);
}

/* Fail the Nth allocation of a fast decode (multi-IDAT: gather buffer and
 * image) for every N: a clean OSSEG_ENOMEM, nothing leaked. */
static void test_fast_alloc_failures(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 11);
  size_t n;
  uint8_t *f = random_filtered(30, 20, 16, &rng, &n);
  struct membuf b = hand_png(30, 20, 16, 0, f, n, 100);
  for (uint64_t nth = 1;; nth++) {
    struct osseg_image im = {0};
    osseg__alloc_fail_at(nth);
    int rc = osseg_png_decode_mem(b.p, b.n, NULL, &im, NULL);
    uint64_t attempts = osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_true(attempts < nth);
      assert_true(nth > 2); /* the gather buffer and the image were tried */
      osseg_image_free(&im);
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
    assert_null(im.data);
    assert_true(nth < 100);
  }
  free(b.p);
  free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_filters_and_widths),
      cmocka_unit_test(test_random_filtered_rows),
      cmocka_unit_test(test_multiple_idat_and_ancillary),
      cmocka_unit_test(test_fallbacks),
      cmocka_unit_test(test_chunk_fallbacks),
      cmocka_unit_test(test_truncation_points),
      cmocka_unit_test(test_random_flips),
      cmocka_unit_test(test_bad_crc_and_filter),
      cmocka_unit_test(test_idat_length),
      cmocka_unit_test(test_bad_adler),
      cmocka_unit_test(test_absurd_header),
      cmocka_unit_test(test_fast_alloc_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
