/* Internal interfaces of imaging/, shared between png.c, png_fast.c and the
 * tests. Not installed, not part of the public API. */
#ifndef OSSEG_IMAGING_INTERNAL_H
#define OSSEG_IMAGING_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_imaging.h"

struct libdeflate_decompressor;

#ifdef __cplusplus
extern "C" {
#endif

/* Returned by osseg__png_fast_decode when the file is outside what the fast
 * path handles; the caller then decodes it with libpng. Positive, so that it
 * can never be mistaken for an OSSEG_E* code. */
#define OSSEG__PNG_FALLBACK 1

/* A buffer that is grown, never shrunk, and whose contents do not survive
 * growth. */
struct osseg__png_buf {
  void *p;
  size_t cap; /* bytes */
};

/* Makes b hold at least need bytes (need > 0). Growth frees the old buffer
 * first and allocates max(need, 1.5 * cap), so that files whose sizes creep
 * up (compressed sizes vary between radiographs of the same size) do not
 * allocate on every call. Returns 0, or OSSEG_ENOMEM with b empty. */
int osseg__png_reserve(struct osseg__png_buf *b, size_t need);

/* The state behind struct osseg_png_decoder (osseg_imaging.h), shared by
 * png.c and png_fast.c. The one-shot functions decode with a zeroed one on
 * the stack and then take its pixel buffer. */
struct osseg_png_decoder {
  struct libdeflate_decompressor *inflater; /* created by the first fast decode */
  struct osseg__png_buf file;   /* decode_file: the whole file */
  struct osseg__png_buf idat;   /* fast path: IDAT payloads gathered into one */
  struct osseg__png_buf pixels; /* the image; the last result points here */
  struct osseg__png_buf rows;   /* libpng path: row pointers */
};

/* Frees every buffer of d and zeroes it (d itself is not freed). */
void osseg__png_decoder_release(struct osseg_png_decoder *d);

/* The fast decoder for the common radiograph layout: non-interlaced 8- or
 * 16-bit grayscale with only IHDR, IDAT, IEND and ancillary chunks. The
 * caller has checked the signature and the IHDR dimensions against lim
 * (osseg_png_decode_mem does); they are checked again here, cheaply, so the
 * function is safe on its own.
 *
 * Returns 0 with *out filled, its data in dec->pixels (the buffer may be a
 * few bytes longer than stride * height), a negative OSSEG_E* code with
 * detail in diag for a file that is certainly broken (libpng would reject it
 * too), or OSSEG__PNG_FALLBACK, leaving *out and diag untouched, for
 * anything it does not handle or that libpng judges more leniently (bad CRC
 * on an ancillary chunk, extra image data). Allocates only to grow dec's
 * buffers (and its decompressor, once). */
int osseg__png_fast_decode_into(struct osseg_png_decoder *dec, const uint8_t *data,
                                size_t size, const struct osseg_png_limits *lim,
                                struct osseg_image *out, struct osseg_diag *diag);

/* The general libpng decoder, without the fast path and without the header
 * precheck. The limits are applied through libpng only. The pixels land in
 * dec->pixels; libpng's own state is allocated and freed on every call. */
int osseg__png_libpng_decode_into(struct osseg_png_decoder *dec, const void *data,
                                  size_t size, const struct osseg_png_limits *lim,
                                  struct osseg_image *out, struct osseg_diag *diag);

/* One-shot forms of the two above (the tests compare the paths): *out owns
 * its buffer and is freed with osseg_image_free. */
int osseg__png_fast_decode(const uint8_t *data, size_t size,
                           const struct osseg_png_limits *lim, struct osseg_image *out,
                           struct osseg_diag *diag);
int osseg__png_decode_libpng(const void *data, size_t size,
                             const struct osseg_png_limits *lim, struct osseg_image *out,
                             struct osseg_diag *diag);

/* The built-in 5x7 font of overlay titles and legends (font.c): printable
 * ASCII, anything else drawn as '?'. A glyph is 7 rows of 5 bits (bit 4
 * the leftmost column); characters advance OSSEG__FONT_CELL_W pixels and
 * lines OSSEG__FONT_CELL_H, times the scale. */
#define OSSEG__FONT_CELL_W 6
#define OSSEG__FONT_CELL_H 10
const uint8_t *osseg__font_glyph(unsigned char c);
/* Draws text with its top-left corner at (x, y) of an 8-bit RGB image in
 * rgb, each font pixel a scale x scale square (scale 0 = 1), clipped to
 * the image and to columns before x_end. Only glyph pixels are written. */
void osseg__font_draw(struct osseg_image *img, int32_t x, int32_t y, uint32_t x_end,
                      const char *text, uint32_t scale, const uint8_t rgb[3]);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_IMAGING_INTERNAL_H */
