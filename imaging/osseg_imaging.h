/* osseg imaging: PNG decode/encode, preprocessing for the models, overlays.
 *
 * Depends on libpng, the base layer and kernels/ (bitmasks for overlays).
 * All functions are reentrant; an image is owned by whoever initialised it
 * and freed with osseg_image_free, except an image from a reusable PNG
 * decoder, which the decoder owns (see osseg_png_decoder_decode_mem).
 * Errors are OSSEG_E* codes with detail in the optional struct osseg_diag.
 */
#ifndef OSSEG_IMAGING_H
#define OSSEG_IMAGING_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_base.h"
#include "osseg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------- images --- */

/* An interleaved image: channels 1 (gray) or 3 (RGB), 8 or 16 bits per
 * sample. 16-bit samples are uint16_t in host byte order. Rows are
 * `stride` bytes apart (stride = width * channels * bytes per sample: no
 * padding). Zero-initialise ({0}) before use. */
struct osseg_image {
  uint32_t width;
  uint32_t height;
  uint32_t channels;  /* 1 or 3 */
  uint32_t bit_depth; /* 8 or 16 */
  size_t stride;
  uint8_t *data; /* owned */
};

/* Allocates a zeroed image. OSSEG_EINVAL for bad channels/depth or a zero
 * side, OSSEG_ERANGE above OSSEG_MAX_SIDE, OSSEG_ENOMEM. */
int osseg_image_init(struct osseg_image *img, uint32_t width, uint32_t height,
                     uint32_t channels, uint32_t bit_depth);
void osseg_image_free(struct osseg_image *img);

/* ---------------------------------------------------------------- PNG --- */

/* Checked against the PNG header before any pixel memory is allocated. */
struct osseg_png_limits {
  uint32_t max_width;   /* default 16384 (OSSEG_MAX_SIDE) */
  uint32_t max_height;  /* default 16384 */
  uint64_t max_pixels;  /* default 16384 * 16384 */
  uint64_t max_bytes;   /* file size, default 1 GiB */
};
void osseg_png_limits_default(struct osseg_png_limits *lim);

/* Decodes a PNG into gray (channels = 1) at the file's precision: 16-bit
 * files give 16-bit images, everything else (1/2/4/8-bit gray, palette)
 * gives 8-bit. The conversion rule:
 *   - gray: as is (low bit depths are scaled to the full 8-bit range);
 *   - palette: expanded to RGB first;
 *   - RGB: Y = (6966 R + 23436 G + 2366 B + 16384) >> 15, the BT.709 luma
 *     weights (0.2126, 0.7152, 0.0722) in 15-bit fixed point, applied to
 *     the stored values (no gamma handling), computed by osseg itself so the
 *     rule does not depend on the libpng version;
 *   - alpha (gray+alpha, RGBA, tRNS): ignored (dropped), since radiographs
 *     are opaque and compositing onto a chosen background would invent data.
 * Interlaced files are accepted. NULL limits = defaults. Errors:
 * OSSEG_EIO (file), OSSEG_EPARSE (not a PNG, corrupt or truncated data,
 * with libpng's message), OSSEG_ELIMIT (dimensions or file size above the
 * limits, detected from the header), OSSEG_ENOMEM. On error *out is empty. */
int osseg_png_decode_file(const char *path, const struct osseg_png_limits *lim,
                          struct osseg_image *out, struct osseg_diag *diag);
int osseg_png_decode_mem(const void *data, size_t size,
                         const struct osseg_png_limits *lim,
                         struct osseg_image *out, struct osseg_diag *diag);

/* The checks every decode makes first, alone: the byte count, the
 * signature and the IHDR's dimensions against the limits (NULL =
 * defaults), with the same codes and messages; nothing is decoded or
 * allocated. For a server that refuses an oversized or malformed image
 * before queueing it, and needs the size early (to check ground truth).
 * *width and *height get the dimensions (either pointer may be NULL).
 * OSSEG_EPARSE (not a PNG, a truncated or malformed header), OSSEG_ELIMIT.
 * A 0 does not promise that the rest of the file decodes. */
int osseg_png_check_header(const void *data, size_t size, const struct osseg_png_limits *lim,
                           uint32_t *width, uint32_t *height, struct osseg_diag *diag);

/* A reusable PNG decoder, for a server that decodes one PNG per request.
 * It keeps its buffers between calls (the file read by decode_file, the
 * image data gathered from split IDAT chunks, the pixels, and the inflate
 * state) and grows one only when a larger file or image arrives (to at least
 * 1.5 times its old size, since compressed sizes vary); buffers never
 * shrink: free the decoder to give the memory back.
 *
 * Allocation: decoding a plain 8- or 16-bit gray, non-interlaced PNG (the
 * radiographs) allocates nothing once the decoder has decoded a file and an
 * image at least as large. Every other layout (palette, RGB, alpha, 1/2/4-bit
 * gray, interlaced, or a file the fast path leaves to libpng, such as one
 * with a bad ancillary CRC) is decoded by libpng, which allocates and frees
 * its own state on every call; the pixels still land in the decoder's
 * buffer.
 *
 * A decoder is not thread-safe: one per thread or worker. */
struct osseg_png_decoder;

/* *out gets a new empty decoder. OSSEG_EINVAL (NULL out), OSSEG_ENOMEM. */
int osseg_png_decoder_create(struct osseg_png_decoder **out);
/* Frees the decoder and its buffers, which ends the last image. NULL is
 * allowed. */
void osseg_png_decoder_free(struct osseg_png_decoder *d);

/* Decode like osseg_png_decode_mem / osseg_png_decode_file: the same
 * conversion rule, limits (checked before anything is allocated), error
 * codes and messages. The difference is ownership: out->data points into
 * the decoder. The image is valid until the next decode on d or
 * osseg_png_decoder_free(d), and must not be passed to osseg_image_free
 * (copy it to keep it). `data` must not point into d's image. On error *out
 * is empty; the decoder stays usable (an allocation failure may have freed
 * a buffer, which is allocated again by the next decode that needs it).
 * OSSEG_EINVAL for a NULL d or out. */
int osseg_png_decoder_decode_mem(struct osseg_png_decoder *d, const void *data, size_t size,
                                 const struct osseg_png_limits *lim, struct osseg_image *out,
                                 struct osseg_diag *diag);
int osseg_png_decoder_decode_file(struct osseg_png_decoder *d, const char *path,
                                  const struct osseg_png_limits *lim, struct osseg_image *out,
                                  struct osseg_diag *diag);

/* Encodes an 8- or 16-bit gray or RGB image. level is the zlib level 0..9
 * (-1 = libpng's default). The bytes depend only on the image and level.
 * encode_mem returns a buffer the caller frees with osseg__free; encode_file
 * writes it through osseg_output (a regular file is replaced atomically, a
 * device, FIFO or symlink written through). */
int osseg_png_encode_file(const char *path, const struct osseg_image *img,
                          int level, struct osseg_diag *diag);
int osseg_png_encode_mem(const struct osseg_image *img, int level,
                         uint8_t **out, size_t *out_size,
                         struct osseg_diag *diag);
/* Encodes a mask as a 1-bit gray PNG: img is 8-bit gray, and a pixel is 1
 * (white) where img is non-zero, 0 (black) elsewhere. Eight times smaller
 * rows than an 8-bit PNG of the same mask; decoders that expand to 8 bits
 * (osseg_png_decode_*) give 0 and 255. Same level, ownership and errors as
 * osseg_png_encode_mem. */
int osseg_png_encode_mask_mem(const struct osseg_image *img, int level,
                              uint8_t **out, size_t *out_size,
                              struct osseg_diag *diag);

/* ------------------------------------------------------- preprocessing --- */

/* Bilinear resize with PyTorch's F.interpolate(mode="bilinear",
 * align_corners=False, antialias=False) semantics (equal to OpenCV's
 * INTER_LINEAR on float input): output pixel (oy, ox) samples the input at
 * sy = max(0, (oy + 0.5) * ih / oh - 0.5) (likewise x), with the upper
 * neighbour clamped to the last row/column. Float in, float out, one plane;
 * strides in elements; src and dst must not overlap. OSSEG_EINVAL (a zero
 * side, a stride below the width, NULL), OSSEG_ENOMEM (a table of ow
 * column taps is allocated). */
int osseg_resize_bilinear_f32(const float *src, uint32_t ih, uint32_t iw,
                              size_t src_stride, float *dst, uint32_t oh,
                              uint32_t ow, size_t dst_stride);

/* Model input normalisation: value = (pixel / maxval - mean[c]) / std[c],
 * maxval 255 for 8-bit and 65535 for 16-bit images. The default (all
 * models trained on 3 identical gray channels with "div255") is mean 0,
 * std 1. */
struct osseg_normalize {
  float mean[3];
  float std[3];
};

/* Gray image (channels 1, 8 or 16 bit) -> float32 NCHW tensor (1, 3, S, S)
 * in out (3 * S * S floats, caller-owned): the image scaled to [0, 1],
 * resized bilinearly to S x S as above, then normalised per channel. NULL
 * norm = mean 0, std 1. Reads only the source rows the interpolation needs;
 * temporaries are O(S) (no float copy of the image). The result has the
 * same bits as osseg_resize_bilinear_f32 on the scaled float plane.
 * OSSEG_EINVAL (not a gray image, S == 0, std 0), OSSEG_ENOMEM. */
int osseg_preprocess_gray(const struct osseg_image *img, uint32_t size,
                          const struct osseg_normalize *norm, float *out);

/* ------------------------------------------------------------ overlays --- */

/* The colour of class i (0..28) in overlays: a fixed palette of well
 * separated hues, listed in README.md ("Overlays"); rgb gets 3 bytes.
 * Classes past 28 repeat it (i % 29). */
void osseg_overlay_class_color(unsigned cls, uint8_t rgb[3]);

/* Blends masks over a gray image into an 8-bit RGB image *out (allocated
 * here): out = (1 - alpha) * gray + alpha * colour where any mask is set
 * (the highest-index set mask wins the colour), then each mask's outline
 * drawn opaque. masks[i] may be NULL (class absent); nmasks <= 64; masks
 * must match the image size. 16-bit images are shown at their top 8 bits.
 * alpha in [0, 1]. */
int osseg_overlay_masks(const struct osseg_image *gray,
                        const struct osseg_bitmask *const *masks, size_t nmasks,
                        float alpha, struct osseg_image *out);

/* Side-by-side panels image | ground truth | prediction (each panel an
 * overlay as above; gt or pred may be NULL to leave the panel out): the
 * untitled, legend-free case of osseg_overlay_compose below, each
 * downscaled by an integer factor `shrink` >= 1 (box average) to keep
 * demo files small, separated by 8 black pixels. A panel is at least one
 * pixel wide and high: a side shorter than `shrink` is averaged whole. */
int osseg_overlay_panels(const struct osseg_image *gray,
                         const struct osseg_bitmask *const *gt,
                         const struct osseg_bitmask *const *pred, size_t nmasks,
                         float alpha, uint32_t shrink, struct osseg_image *out);

/* Composed overlays: any number of panels (plain image, colour overlay of
 * masks, or a diff of masks against ground truth), each optionally titled,
 * and a legend of text rows with colour swatches. osseg_overlay_panels is
 * this with two or three untitled panels and no legend.
 *
 * Diff mode colours, per pixel, over the classes i where masks[i] or
 * truth[i] is given (a NULL entry is an empty mask): a false negative
 * (truth set, mask not) in any class is drawn in OSSEG_OVERLAY_FN, else a
 * false positive (mask set, truth not) in OSSEG_OVERLAY_FP, else a true
 * positive in OSSEG_OVERLAY_TP: errors are never hidden under agreement.
 * They are blended like class colours (same alpha formula), without
 * outlines. */
enum osseg_overlay_diff_kind { OSSEG_OVERLAY_TP, OSSEG_OVERLAY_FP, OSSEG_OVERLAY_FN };
/* TP green (0, 200, 0), FP red (255, 0, 0), FN blue (0, 96, 255). */
void osseg_overlay_diff_color(enum osseg_overlay_diff_kind kind, uint8_t rgb[3]);

struct osseg_overlay_panel {
  /* nmasks entries (entries may be NULL); NULL = the plain image. */
  const struct osseg_bitmask *const *masks;
  /* Non-NULL: a diff panel of masks against these (nmasks entries). */
  const struct osseg_bitmask *const *truth;
  const char *title; /* NULL = none; drawn in white, cut at the panel's edge */
};

struct osseg_overlay_legend_row {
  const char *text;
  int swatch;     /* non-zero: a square of rgb before the text */
  uint8_t rgb[3];
};

/* The blend is the one of osseg_overlay_masks:
 *   a = round(alpha * 256), out = (gray * (256 - a) + colour * a + 128) >> 8
 * with outlines opaque in colour mode.
 *
 * Layout, in pixels times s = text_scale (0 counts as 1), black background:
 *   - a title bar 10s high on top when any panel has a title; a title's
 *     text starts at (panel's x + s, s);
 *   - the panels side by side, 8 pixels apart (not scaled), each the image
 *     downscaled `shrink` times as in osseg_overlay_panels;
 *   - a legend below when nlegend > 0, from 4s under the panels: rows 10s
 *     high in columns (column-major) of width (10 + 6 * longest text + 6)s,
 *     as many as fit in the panels' width (at least one; the image widens
 *     to it). In row r of column c, at cx = c * column width and ry =
 *     legend top + 10s * r: the swatch is the 7s x 7s square at (cx + s,
 *     ry + s), the text starts at (cx + 10s, ry + s), in white.
 * Each glyph is 5x7 font pixels in a 6x10 cell (imaging/font.c).
 * 1 <= npanels <= 64, nmasks <= 64, shrink >= 1, alpha in [0, 1], masks of
 * the image's size, else OSSEG_EINVAL / OSSEG_ESHAPE; OSSEG_ERANGE when the
 * result would pass OSSEG_MAX_SIDE; OSSEG_ENOMEM. *out is allocated here. */
struct osseg_overlay_layout {
  const struct osseg_overlay_panel *panels;
  size_t npanels;
  size_t nmasks;
  float alpha;
  uint32_t shrink;
  uint32_t text_scale;
  const struct osseg_overlay_legend_row *legend;
  size_t nlegend;
};
int osseg_overlay_compose(const struct osseg_image *gray, const struct osseg_overlay_layout *l,
                          struct osseg_image *out);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_IMAGING_H */
