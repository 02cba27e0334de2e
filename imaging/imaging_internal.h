/* Internal interfaces of imaging/, shared between png.c, png_fast.c and the
 * tests. Not installed, not part of the public API. */
#ifndef OSSEG_IMAGING_INTERNAL_H
#define OSSEG_IMAGING_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_imaging.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returned by osseg__png_fast_decode when the file is outside what the fast
 * path handles; the caller then decodes it with libpng. Positive, so that it
 * can never be mistaken for an OSSEG_E* code. */
#define OSSEG__PNG_FALLBACK 1

/* The fast decoder for the common radiograph layout: non-interlaced 8- or
 * 16-bit grayscale with only IHDR, IDAT, IEND and ancillary chunks. The
 * caller has checked the signature and the IHDR dimensions against lim
 * (osseg_png_decode_mem does); they are checked again here, cheaply, so the
 * function is safe on its own.
 *
 * Returns 0 with *out filled (freed with osseg_image_free; the buffer may be
 * a few bytes longer than stride * height), a negative OSSEG_E* code with
 * detail in diag for a file that is certainly broken (libpng would reject it
 * too), or OSSEG__PNG_FALLBACK, leaving *out and diag untouched, for
 * anything it does not handle or that libpng judges more leniently (bad CRC
 * on an ancillary chunk, extra image data). */
int osseg__png_fast_decode(const uint8_t *data, size_t size,
                           const struct osseg_png_limits *lim, struct osseg_image *out,
                           struct osseg_diag *diag);

/* The general libpng decoder behind osseg_png_decode_mem, without the fast
 * path and without the header precheck (tests compare the two paths). The
 * limits are applied through libpng only. */
int osseg__png_decode_libpng(const void *data, size_t size,
                             const struct osseg_png_limits *lim, struct osseg_image *out,
                             struct osseg_diag *diag);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_IMAGING_INTERNAL_H */
