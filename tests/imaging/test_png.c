/* Tests of imaging/png.c: round trips, every PNG colour type and bit depth,
 * truncated and corrupt files, header limits checked before allocation,
 * allocation failures. */
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_imaging.h"
#include "test_support.h"

/* ------------------------------------------------- helpers (via libpng) --- */

struct membuf {
  uint8_t *p;
  size_t n, cap;
};

static void mem_write(png_structp png, png_bytep d, size_t n) {
  struct membuf *b = png_get_io_ptr(png);
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}
static void mem_flush(png_structp png) { (void)png; }

/* Writes a PNG of any colour type straight through libpng; rows hold the
 * packed samples in PNG (big-endian) order. */
static struct membuf make_png(uint32_t w, uint32_t h, int depth, int ctype, int interlace,
                              const uint8_t *rows, size_t stride, const png_color *pal,
                              int npal, const png_byte *trns, int ntrns) {
  struct membuf b = {0};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  assert_non_null(info);
  if (setjmp(png_jmpbuf(png))) fail_msg("libpng write failed");
  png_set_write_fn(png, &b, mem_write, mem_flush);
  png_set_IHDR(png, info, w, h, depth, ctype,
               interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (pal) png_set_PLTE(png, info, pal, npal);
  if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
  png_write_info(png, info);
  png_bytep *rp = malloc(h * sizeof *rp);
  for (uint32_t y = 0; y < h; y++) rp[y] = (png_bytep)rows + (size_t)y * stride;
  png_write_image(png, rp);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(rp);
  return b;
}

static uint8_t px8(const struct osseg_image *im, uint32_t x, uint32_t y) {
  return im->data[(size_t)y * im->stride + x];
}
static uint16_t px16(const struct osseg_image *im, uint32_t x, uint32_t y) {
  return ((const uint16_t *)(im->data + (size_t)y * im->stride))[x];
}

static uint8_t luma8(unsigned r, unsigned g, unsigned b) {
  return (uint8_t)((6966u * r + 23436u * g + 2366u * b + 16384u) >> 15);
}

static void random_image(struct osseg_image *im, uint32_t w, uint32_t h, uint32_t ch,
                         uint32_t depth, uint64_t seed) {
  assert_int_equal(osseg_image_init(im, w, h, ch, depth), 0);
  struct test_rng rng;
  test_rng_seed(&rng, seed);
  for (size_t i = 0; i < im->stride * h; i++) im->data[i] = (uint8_t)test_rng_next(&rng);
}

/* ------------------------------------------------------------ tests --- */

static void test_roundtrip_gray8(void **state) {
  (void)state;
  for (uint32_t w = 1; w < 70; w += 23) {
    struct osseg_image im, back;
    random_image(&im, w, 37, 1, 8, w);
    uint8_t *buf;
    size_t size;
    assert_int_equal(osseg_png_encode_mem(&im, 6, &buf, &size, NULL), 0);
    assert_int_equal(osseg_png_decode_mem(buf, size, NULL, &back, NULL), 0);
    assert_int_equal(back.width, w);
    assert_int_equal(back.height, 37);
    assert_int_equal(back.channels, 1);
    assert_int_equal(back.bit_depth, 8);
    assert_memory_equal(back.data, im.data, im.stride * im.height);
    /* Encoding is deterministic. */
    uint8_t *buf2;
    size_t size2;
    assert_int_equal(osseg_png_encode_mem(&im, 6, &buf2, &size2, NULL), 0);
    assert_int_equal(size, size2);
    assert_memory_equal(buf, buf2, size);
    osseg__free(buf);
    osseg__free(buf2);
    osseg_image_free(&im);
    osseg_image_free(&back);
  }
}

static void test_roundtrip_gray16(void **state) {
  (void)state;
  struct osseg_image im, back;
  random_image(&im, 33, 20, 1, 16, 7);
  uint8_t *buf;
  size_t size;
  assert_int_equal(osseg_png_encode_mem(&im, -1, &buf, &size, NULL), 0);
  /* The file stores big-endian samples: check one against the host value. */
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_png_decode_mem(buf, size, NULL, &back, &d), 0);
  assert_int_equal(back.bit_depth, 16);
  assert_int_equal(back.channels, 1);
  for (uint32_t y = 0; y < 20; y++)
    for (uint32_t x = 0; x < 33; x++) assert_int_equal(px16(&back, x, y), px16(&im, x, y));
  osseg__free(buf);
  osseg_image_free(&im);
  osseg_image_free(&back);
}

static void test_rgb_to_gray(void **state) {
  (void)state;
  struct osseg_image im, back;
  random_image(&im, 17, 9, 3, 8, 3);
  uint8_t *buf;
  size_t size;
  assert_int_equal(osseg_png_encode_mem(&im, 1, &buf, &size, NULL), 0);
  assert_int_equal(osseg_png_decode_mem(buf, size, NULL, &back, NULL), 0);
  assert_int_equal(back.channels, 1);
  assert_int_equal(back.stride, 17);
  for (uint32_t y = 0; y < 9; y++)
    for (uint32_t x = 0; x < 17; x++) {
      const uint8_t *p = im.data + (size_t)y * im.stride + 3 * (size_t)x;
      assert_int_equal(px8(&back, x, y), luma8(p[0], p[1], p[2]));
    }
  /* Pure primaries and gray stay where the rule puts them. */
  assert_int_equal(luma8(255, 255, 255), 255);
  assert_int_equal(luma8(0, 0, 0), 0);
  assert_int_equal(luma8(100, 100, 100), 100);
  osseg__free(buf);
  osseg_image_free(&im);
  osseg_image_free(&back);
}

/* Every colour type and legal bit depth, interlaced or not, against the
 * documented conversion rule. */
static void test_all_color_types(void **state) {
  (void)state;
  const uint32_t w = 13, h = 7;
  struct test_rng rng;
  test_rng_seed(&rng, 99);
  static const struct {
    int ctype, depth;
  } kinds[] = {
      {PNG_COLOR_TYPE_GRAY, 1},       {PNG_COLOR_TYPE_GRAY, 2},
      {PNG_COLOR_TYPE_GRAY, 4},       {PNG_COLOR_TYPE_GRAY, 8},
      {PNG_COLOR_TYPE_GRAY, 16},      {PNG_COLOR_TYPE_GRAY_ALPHA, 8},
      {PNG_COLOR_TYPE_GRAY_ALPHA, 16}, {PNG_COLOR_TYPE_RGB, 8},
      {PNG_COLOR_TYPE_RGB, 16},       {PNG_COLOR_TYPE_RGB_ALPHA, 8},
      {PNG_COLOR_TYPE_RGB_ALPHA, 16}, {PNG_COLOR_TYPE_PALETTE, 1},
      {PNG_COLOR_TYPE_PALETTE, 2},    {PNG_COLOR_TYPE_PALETTE, 4},
      {PNG_COLOR_TYPE_PALETTE, 8},
  };
  png_color pal[256];
  png_byte trns[256];
  for (int i = 0; i < 256; i++) {
    pal[i].red = (png_byte)test_rng_next(&rng);
    pal[i].green = (png_byte)test_rng_next(&rng);
    pal[i].blue = (png_byte)test_rng_next(&rng);
    trns[i] = (png_byte)test_rng_next(&rng);
  }
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    for (int interlace = 0; interlace < 2; interlace++) {
      int ctype = kinds[k].ctype, depth = kinds[k].depth;
      int nch = ctype == PNG_COLOR_TYPE_GRAY         ? 1
                : ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                : ctype == PNG_COLOR_TYPE_RGB        ? 3
                : ctype == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                                                     : 1;
      /* Unpacked sample values, then packed rows. */
      unsigned maxv = (1u << depth) - 1;
      unsigned *val = malloc(sizeof *val * w * h * (size_t)nch);
      for (size_t i = 0; i < (size_t)w * h * nch; i++)
        val[i] = (unsigned)test_rng_below(&rng, (uint64_t)maxv + 1);
      size_t stride = ((size_t)w * nch * depth + 7) / 8;
      uint8_t *rows = calloc(stride * h, 1);
      for (uint32_t y = 0; y < h; y++)
        for (uint32_t i = 0; i < w * (uint32_t)nch; i++) {
          unsigned v = val[(size_t)y * w * nch + i];
          uint8_t *r = rows + (size_t)y * stride;
          if (depth == 16) {
            r[2 * i] = (uint8_t)(v >> 8);
            r[2 * i + 1] = (uint8_t)v;
          } else if (depth == 8) {
            r[i] = (uint8_t)v;
          } else {
            size_t bitpos = (size_t)i * depth;
            r[bitpos / 8] |= (uint8_t)(v << (8 - depth - bitpos % 8));
          }
        }
      int with_trns = ctype == PNG_COLOR_TYPE_PALETTE && interlace;
      struct membuf b = make_png(w, h, depth, ctype, interlace, rows, stride,
                                 ctype == PNG_COLOR_TYPE_PALETTE ? pal : NULL,
                                 ctype == PNG_COLOR_TYPE_PALETTE ? 1 << depth : 0,
                                 with_trns ? trns : NULL, with_trns ? 1 << depth : 0);
      struct osseg_image im;
      struct osseg_diag d;
      osseg_diag_clear(&d);
      int rc = osseg_png_decode_mem(b.p, b.n, NULL, &im, &d);
      if (rc != 0) fail_msg("type %d depth %d interlace %d: %s", ctype, depth, interlace,
                            d.message);
      assert_int_equal(im.channels, 1);
      assert_int_equal(im.bit_depth, depth == 16 ? 16 : 8);
      for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
          const unsigned *v = val + ((size_t)y * w + x) * nch;
          unsigned want;
          if (ctype == PNG_COLOR_TYPE_PALETTE) {
            want = luma8(pal[v[0]].red, pal[v[0]].green, pal[v[0]].blue);
          } else if (nch >= 3) {
            want = depth == 16 ? (unsigned)((6966ull * v[0] + 23436ull * v[1] +
                                             2366ull * v[2] + 16384) >> 15)
                               : luma8(v[0], v[1], v[2]);
          } else if (depth < 8) {
            want = v[0] * 255 / maxv; /* low depths scale to the full range */
          } else {
            want = v[0]; /* alpha, if any, is dropped */
          }
          unsigned got = depth == 16 ? px16(&im, x, y) : px8(&im, x, y);
          if (got != want)
            fail_msg("type %d depth %d interlace %d pixel (%u,%u): got %u want %u", ctype,
                     depth, interlace, x, y, got, want);
        }
      osseg_image_free(&im);
      free(b.p);
      free(rows);
      free(val);
    }
  }
}

static struct membuf sample_png(void) {
  struct osseg_image im;
  random_image(&im, 40, 30, 1, 8, 5);
  uint8_t *buf;
  size_t size;
  assert_int_equal(osseg_png_encode_mem(&im, 9, &buf, &size, NULL), 0);
  struct membuf b = {malloc(size), size, size};
  memcpy(b.p, buf, size);
  osseg__free(buf);
  osseg_image_free(&im);
  return b;
}

/* Every prefix of a valid file is rejected with OSSEG_EPARSE and a message;
 * the buffer ends at a guard page, so no read runs past it. */
static void test_truncated(void **state) {
  (void)state;
  struct membuf b = sample_png();
  for (size_t cut = 0; cut < b.n; cut++) {
    uint8_t *g = test_guarded_alloc(cut ? cut : 1);
    memcpy(g, b.p, cut);
    struct osseg_image im = {0};
    struct osseg_diag d;
    osseg_diag_clear(&d);
    int rc = osseg_png_decode_mem(g, cut, NULL, &im, &d);
    if (rc != OSSEG_EPARSE) fail_msg("cut at %zu of %zu: rc %d (%s)", cut, b.n, rc, d.message);
    assert_true(d.message[0] != '\0');
    assert_null(im.data);
    test_guarded_free(g);
  }
  /* The whole file decodes from a guarded buffer too. */
  uint8_t *g = test_guarded_alloc(b.n);
  memcpy(g, b.p, b.n);
  struct osseg_image im;
  assert_int_equal(osseg_png_decode_mem(g, b.n, NULL, &im, NULL), 0);
  osseg_image_free(&im);
  test_guarded_free(g);
  free(b.p);
}

/* Flipped bytes anywhere either decode (ancillary damage) or fail cleanly
 * with OSSEG_EPARSE; never crash. Flips inside the image data fail (CRC). */
static void test_corrupt(void **state) {
  (void)state;
  struct membuf b = sample_png();
  struct test_rng rng;
  test_rng_seed(&rng, 11);
  int failures = 0;
  for (int iter = 0; iter < 400; iter++) {
    uint8_t *c = malloc(b.n);
    memcpy(c, b.p, b.n);
    size_t pos = (size_t)test_rng_below(&rng, b.n);
    c[pos] ^= (uint8_t)(1 + test_rng_below(&rng, 255));
    struct osseg_image im = {0};
    struct osseg_diag d;
    osseg_diag_clear(&d);
    int rc = osseg_png_decode_mem(c, b.n, NULL, &im, &d);
    assert_true(rc == 0 || rc == OSSEG_EPARSE || rc == OSSEG_ELIMIT);
    if (rc != 0) failures++;
    osseg_image_free(&im);
    free(c);
  }
  assert_true(failures > 300);
  free(b.p);
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* A header claiming huge dimensions is refused from the IHDR alone: with
 * every allocation failing, the answer is still OSSEG_ELIMIT, not ENOMEM. */
static void test_absurd_dimensions(void **state) {
  (void)state;
  struct membuf b = sample_png();
  uint32_t dims[][2] = {{1000000, 1000000}, {16385, 1}, {1, 16385}, {0x7fffffff, 0x7fffffff}};
  for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
    put32(b.p + 16, dims[i][0]);
    put32(b.p + 20, dims[i][1]);
    struct osseg_image im = {0};
    struct osseg_diag d;
    osseg_diag_clear(&d);
    osseg__alloc_fail_at(1);
    int rc = osseg_png_decode_mem(b.p, b.n, NULL, &im, &d);
    uint64_t attempts = osseg__alloc_fail_at(0);
    assert_int_equal(rc, OSSEG_ELIMIT);
    assert_int_equal(attempts, 0);
    assert_non_null(strstr(d.message, "limit"));
  }
  /* Zero and > 2^31 - 1 dimensions are malformed rather than too large. */
  put32(b.p + 16, 0);
  struct osseg_image im = {0};
  assert_int_equal(osseg_png_decode_mem(b.p, b.n, NULL, &im, NULL), OSSEG_EPARSE);
  put32(b.p + 16, 0x80000000u);
  assert_int_equal(osseg_png_decode_mem(b.p, b.n, NULL, &im, NULL), OSSEG_EPARSE);
  free(b.p);

  /* Caller-chosen limits apply to real files too. */
  b = sample_png(); /* 40 x 30 */
  struct osseg_png_limits lim;
  osseg_png_limits_default(&lim);
  lim.max_width = 39;
  assert_int_equal(osseg_png_decode_mem(b.p, b.n, &lim, &im, NULL), OSSEG_ELIMIT);
  osseg_png_limits_default(&lim);
  lim.max_pixels = 40 * 30 - 1;
  assert_int_equal(osseg_png_decode_mem(b.p, b.n, &lim, &im, NULL), OSSEG_ELIMIT);
  osseg_png_limits_default(&lim);
  lim.max_bytes = b.n - 1;
  assert_int_equal(osseg_png_decode_mem(b.p, b.n, &lim, &im, NULL), OSSEG_ELIMIT);
  lim.max_bytes = b.n;
  assert_int_equal(osseg_png_decode_mem(b.p, b.n, &lim, &im, NULL), 0);
  osseg_image_free(&im);
  free(b.p);
}

/* The header check alone: what decode refuses for the header, with the
 * same code, and the dimensions of what it accepts, allocating nothing. */
static void test_check_header(void **state) {
  (void)state;
  struct membuf b = sample_png(); /* 40 x 30 */
  uint32_t w = 0, h = 0;
  osseg__alloc_fail_at(1);
  int rc = osseg_png_check_header(b.p, b.n, NULL, &w, &h, NULL);
  uint64_t attempts = osseg__alloc_fail_at(0);
  assert_int_equal(rc, 0);
  assert_int_equal(attempts, 0);
  assert_int_equal(w, 40);
  assert_int_equal(h, 30);
  struct osseg_png_limits lim;
  osseg_png_limits_default(&lim);
  lim.max_pixels = 40 * 30 - 1;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_png_check_header(b.p, b.n, &lim, &w, &h, &d), OSSEG_ELIMIT);
  assert_non_null(strstr(d.message, "PNG is 40x30, above the limit of"));
  osseg_png_limits_default(&lim);
  lim.max_bytes = b.n - 1;
  assert_int_equal(osseg_png_check_header(b.p, b.n, &lim, NULL, NULL, NULL), OSSEG_ELIMIT);
  put32(b.p + 16, 100000);
  assert_int_equal(osseg_png_check_header(b.p, b.n, NULL, NULL, NULL, NULL), OSSEG_ELIMIT);
  put32(b.p + 16, 0);
  assert_int_equal(osseg_png_check_header(b.p, b.n, NULL, NULL, NULL, NULL), OSSEG_EPARSE);
  assert_int_equal(osseg_png_check_header(b.p, 20, NULL, NULL, NULL, NULL), OSSEG_EPARSE);
  assert_int_equal(osseg_png_check_header("GIF89a", 6, NULL, NULL, NULL, NULL), OSSEG_EPARSE);
  free(b.p);
}

static void test_not_png(void **state) {
  (void)state;
  struct osseg_image im = {0};
  struct osseg_diag d;
  osseg_diag_clear(&d);
  const char *text = "this is not a PNG file at all, just some text";
  assert_int_equal(osseg_png_decode_mem(text, strlen(text), NULL, &im, &d), OSSEG_EPARSE);
  assert_non_null(strstr(d.message, "signature"));
  assert_int_equal(osseg_png_decode_mem(NULL, 0, NULL, &im, NULL), OSSEG_EPARSE);
}

static void test_files(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  struct osseg_image im, back;
  random_image(&im, 21, 11, 1, 8, 9);
  const char *path = test_path("%s/a.png", dir);
  assert_int_equal(osseg_png_encode_file(path, &im, 6, NULL), 0);
  assert_int_equal(osseg_png_decode_file(path, NULL, &back, NULL), 0);
  assert_memory_equal(back.data, im.data, im.stride * im.height);
  osseg_image_free(&back);

  struct osseg_diag d;
  osseg_diag_clear(&d);
  const char *missing = test_path("%s/missing.png", dir);
  assert_int_equal(osseg_png_decode_file(missing, NULL, &back, &d), OSSEG_EIO);
  assert_non_null(strstr(d.message, "missing.png"));

  /* A truncated file names itself in the message. */
  size_t size;
  char *data = test_read_file(path, &size);
  const char *cut = test_path("%s/cut.png", dir);
  assert_int_equal(test_write_file(cut, data, size / 2), 0);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_png_decode_file(cut, NULL, &back, &d), OSSEG_EPARSE);
  assert_non_null(strstr(d.message, "cut.png"));
  free(data);

  osseg_diag_clear(&d);
  assert_int_equal(osseg_png_encode_file(test_path("%s/no/such/dir/x.png", dir), &im, 6, &d),
                   OSSEG_EIO);
  osseg_image_free(&im);
}

/* Fail the Nth allocation of a decode and of an encode, for every N: the
 * result is a clean OSSEG_ENOMEM (ASan checks for leaks). */
struct memread {
  const uint8_t *p;
  size_t n, off;
};

static void mem_read(png_structp png, png_bytep d, size_t n) {
  struct memread *r = png_get_io_ptr(png);
  if (n > r->n - r->off) png_error(png, "read past the end");
  memcpy(d, r->p + r->off, n);
  r->off += n;
}

/* Decodes a 1-bit gray PNG with libpng itself (not our decoder): checks the
 * header and returns the pixels as 0/1 bytes, w per row (caller frees). */
static uint8_t *libpng_read_mask(const uint8_t *buf, size_t size, uint32_t w, uint32_t h) {
  struct memread r = {buf, size, 0};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  assert_non_null(info);
  if (setjmp(png_jmpbuf(png))) fail_msg("libpng read failed");
  png_set_read_fn(png, &r, mem_read);
  png_read_info(png, info);
  assert_int_equal(png_get_image_width(png, info), w);
  assert_int_equal(png_get_image_height(png, info), h);
  assert_int_equal(png_get_bit_depth(png, info), 1);
  assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_GRAY);
  png_set_packing(png); /* one byte per pixel, 0 or 1 */
  png_read_update_info(png, info);
  assert_int_equal(png_get_rowbytes(png, info), w);
  uint8_t *px = malloc((size_t)w * h);
  assert_non_null(px);
  for (uint32_t y = 0; y < h; y++) png_read_row(png, px + (size_t)y * w, NULL);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  return px;
}

/* Masks as 1-bit PNGs: libpng reads back exactly the mask (non-zero = 1),
 * for widths around the 8-pixel byte boundary and all-0 / all-1 / random /
 * alternating content; our decoder expands them to 0/255. */
static void test_mask_1bit(void **state) {
  (void)state;
  static const uint32_t widths[] = {1, 7, 8, 9, 16, 37, 64, 101};
  for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++) {
    for (int kind = 0; kind < 4; kind++) {
      uint32_t w = widths[wi], h = 13;
      struct osseg_image im;
      random_image(&im, w, h, 1, 8, 100 + wi);
      for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
          uint8_t *p = im.data + (size_t)y * im.stride + x;
          if (kind == 0) *p = 0;
          else if (kind == 1) *p = 255;
          else if (kind == 2) *p = *p & 1 ? *p : 0; /* any non-zero value is set */
          else *p = (x + y) & 1;
        }
      uint8_t *buf;
      size_t size;
      assert_int_equal(osseg_png_encode_mask_mem(&im, 6, &buf, &size, NULL), 0);
      uint8_t *px = libpng_read_mask(buf, size, w, h);
      for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
          assert_int_equal(px[(size_t)y * w + x], px8(&im, x, y) != 0);
      struct osseg_image back;
      assert_int_equal(osseg_png_decode_mem(buf, size, NULL, &back, NULL), 0);
      assert_int_equal(back.bit_depth, 8);
      for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
          assert_int_equal(px8(&back, x, y), px8(&im, x, y) ? 255 : 0);
      free(px);
      osseg_image_free(&back);
      osseg__free(buf);
      osseg_image_free(&im);
    }
  }
  /* Only 8-bit gray images are masks. */
  struct osseg_image im;
  uint8_t *buf;
  size_t size;
  assert_int_equal(osseg_image_init(&im, 4, 4, 3, 8), 0);
  assert_int_equal(osseg_png_encode_mask_mem(&im, 6, &buf, &size, NULL), OSSEG_EINVAL);
  osseg_image_free(&im);
  assert_int_equal(osseg_image_init(&im, 4, 4, 1, 16), 0);
  assert_int_equal(osseg_png_encode_mask_mem(&im, 6, &buf, &size, NULL), OSSEG_EINVAL);
  osseg_image_free(&im);
  /* Allocation failures: a clean OSSEG_ENOMEM at every point. */
  random_image(&im, 30, 30, 1, 8, 2);
  for (uint64_t nth = 1;; nth++) {
    buf = NULL;
    osseg__alloc_fail_at(nth);
    int rc = osseg_png_encode_mask_mem(&im, 6, &buf, &size, NULL);
    uint64_t attempts = osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_true(attempts < nth);
      osseg__free(buf);
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
    assert_true(nth < 1000);
  }
  osseg_image_free(&im);
}

static void test_alloc_failures(void **state) {
  (void)state;
  struct membuf b = sample_png();
  for (uint64_t nth = 1;; nth++) {
    struct osseg_image im = {0};
    osseg__alloc_fail_at(nth);
    int rc = osseg_png_decode_mem(b.p, b.n, NULL, &im, NULL);
    uint64_t attempts = osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_true(attempts < nth);
      osseg_image_free(&im);
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
    assert_null(im.data);
    assert_true(nth < 1000);
  }
  struct osseg_image src;
  random_image(&src, 30, 30, 1, 8, 1);
  for (uint64_t nth = 1;; nth++) {
    uint8_t *buf = NULL;
    size_t size = 0;
    osseg__alloc_fail_at(nth);
    int rc = osseg_png_encode_mem(&src, 6, &buf, &size, NULL);
    uint64_t attempts = osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_true(attempts < nth);
      osseg__free(buf);
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
    assert_true(nth < 1000);
  }
  osseg_image_free(&src);
  free(b.p);
}

static void test_invalid_args(void **state) {
  (void)state;
  struct osseg_image im;
  assert_int_equal(osseg_image_init(&im, 0, 5, 1, 8), OSSEG_EINVAL);
  assert_int_equal(osseg_image_init(&im, 5, 5, 2, 8), OSSEG_EINVAL);
  assert_int_equal(osseg_image_init(&im, 5, 5, 1, 12), OSSEG_EINVAL);
  assert_int_equal(osseg_image_init(&im, 16385, 5, 1, 8), OSSEG_ERANGE);
  uint8_t *buf;
  size_t size;
  assert_int_equal(osseg_image_init(&im, 4, 4, 1, 8), 0);
  assert_int_equal(osseg_png_encode_mem(&im, 10, &buf, &size, NULL), OSSEG_EINVAL);
  assert_int_equal(osseg_png_encode_mem(NULL, 1, &buf, &size, NULL), OSSEG_EINVAL);
  osseg_image_free(&im);
  osseg_image_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_gray8),   cmocka_unit_test(test_roundtrip_gray16),
      cmocka_unit_test(test_rgb_to_gray),       cmocka_unit_test(test_all_color_types),
      cmocka_unit_test(test_truncated),         cmocka_unit_test(test_corrupt),
      cmocka_unit_test(test_absurd_dimensions), cmocka_unit_test(test_not_png),
      cmocka_unit_test(test_files),             cmocka_unit_test(test_alloc_failures),
      cmocka_unit_test(test_invalid_args),      cmocka_unit_test(test_mask_1bit),
      cmocka_unit_test(test_check_header),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
