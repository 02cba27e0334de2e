/* PNG decode and encode with libpng.
 *
 * Error handling: libpng reports errors by calling our error function,
 * which records the message and longjmps back to the setjmp in the function
 * that owns the png_struct. Everything that must be freed after such a jump
 * lives in a context struct reached through a pointer (never in a local that
 * changes after setjmp), so the cleanup path sees its current value.
 *
 * Limits: the IHDR is parsed by hand before libpng sees the data, so a
 * header that claims absurd dimensions is rejected without allocating; the
 * same limits are also handed to libpng (png_set_user_limits) as a second
 * line of defence.
 *
 * Buffers: every decode runs on a struct osseg_png_decoder
 * (imaging_internal.h) whose buffers it grows as needed. The reusable
 * decoder keeps them across calls; the one-shot functions decode with a
 * zeroed one on the stack, hand its pixel buffer to the caller and free the
 * rest, so both share one decode path. */
#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imaging_internal.h"

/* ------------------------------------------------------------- images --- */

int osseg_image_init(struct osseg_image *img, uint32_t width, uint32_t height,
                     uint32_t channels, uint32_t bit_depth) {
  memset(img, 0, sizeof *img);
  if ((channels != 1 && channels != 3) || (bit_depth != 8 && bit_depth != 16) ||
      width == 0 || height == 0)
    return OSSEG_EINVAL;
  if (width > OSSEG_MAX_SIDE || height > OSSEG_MAX_SIDE) return OSSEG_ERANGE;
  size_t stride = (size_t)width * channels * (bit_depth / 8), total;
  if (osseg__mul_size(stride, height, &total)) return OSSEG_EOVERFLOW;
  img->data = osseg__calloc(1, total);
  if (!img->data) return OSSEG_ENOMEM;
  img->width = width;
  img->height = height;
  img->channels = channels;
  img->bit_depth = bit_depth;
  img->stride = stride;
  return 0;
}

void osseg_image_free(struct osseg_image *img) {
  if (!img) return;
  osseg__free(img->data);
  memset(img, 0, sizeof *img);
}

void osseg_png_limits_default(struct osseg_png_limits *lim) {
  lim->max_width = OSSEG_MAX_SIDE;
  lim->max_height = OSSEG_MAX_SIDE;
  lim->max_pixels = OSSEG_MAX_PIXELS;
  lim->max_bytes = (uint64_t)1 << 30;
}

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  return *(const uint8_t *)&one == 1;
}

/* ------------------------------------------------------- libpng glue --- */

struct png_ctx {
  jmp_buf jmp;
  char message[200]; /* libpng's error message */
  int nomem;         /* an allocation failed (libpng then reports an error) */
  /* decode source */
  const uint8_t *src;
  size_t src_size;
  size_t src_pos;
  /* encode destination */
  uint8_t *buf;
  size_t buf_len;
  size_t buf_cap;
};

static void on_error(png_structp png, png_const_charp msg) {
  struct png_ctx *ctx = png_get_error_ptr(png);
  snprintf(ctx->message, sizeof ctx->message, "%s", msg ? msg : "libpng error");
  longjmp(ctx->jmp, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg; /* warnings (ancillary chunk CRCs and the like) are not errors */
}

static png_voidp on_malloc(png_structp png, png_alloc_size_t size) {
  void *p = osseg__malloc(size);
  if (!p) {
    struct png_ctx *ctx = png_get_error_ptr(png);
    if (ctx) ctx->nomem = 1;
  }
  return p;
}

static void on_free(png_structp png, png_voidp p) {
  (void)png;
  osseg__free(p);
}

static void on_read(png_structp png, png_bytep out, size_t n) {
  struct png_ctx *ctx = png_get_io_ptr(png);
  if (n > ctx->src_size - ctx->src_pos) png_error(png, "file is truncated");
  memcpy(out, ctx->src + ctx->src_pos, n);
  ctx->src_pos += n;
}

/* ------------------------------------------------------------- decode --- */

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks the signature and the IHDR's dimensions against the limits. */
static int precheck(const uint8_t *d, size_t size, const struct osseg_png_limits *lim,
                    struct osseg_diag *diag) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size < 8 || memcmp(d, sig, 8) != 0)
    return osseg__fail(diag, OSSEG_EPARSE, "not a PNG file (bad signature)");
  if (size < 8 + 8 + 13)
    return osseg__fail(diag, OSSEG_EPARSE, "PNG is truncated inside its header");
  if (be32(d + 8) != 13 || memcmp(d + 12, "IHDR", 4) != 0)
    return osseg__fail(diag, OSSEG_EPARSE, "PNG does not start with a valid IHDR chunk");
  uint32_t w = be32(d + 16), h = be32(d + 20);
  if (w == 0 || h == 0 || w > 0x7fffffffu || h > 0x7fffffffu)
    return osseg__fail(diag, OSSEG_EPARSE, "PNG header has invalid dimensions %ux%u", w,
                       h);
  if (w > lim->max_width || h > lim->max_height ||
      (uint64_t)w * h > lim->max_pixels)
    return osseg__fail(diag, OSSEG_ELIMIT,
                       "PNG is %ux%u, above the limit of %ux%u and %llu pixels", w, h,
                       lim->max_width, lim->max_height,
                       (unsigned long long)lim->max_pixels);
  return 0;
}

/* Converts decoded RGB rows (in place, front to back) to gray with the
 * BT.709 weights documented in the header. */
static void rgb_to_gray(struct osseg_image *img) {
  for (uint32_t y = 0; y < img->height; y++) {
    uint8_t *row = img->data + (size_t)y * img->stride;
    if (img->bit_depth == 8) {
      for (uint32_t x = 0; x < img->width; x++) {
        const uint8_t *p = row + 3 * (size_t)x;
        row[x] = (uint8_t)((6966u * p[0] + 23436u * p[1] + 2366u * p[2] + 16384u) >> 15);
      }
    } else {
      uint16_t *r16 = (uint16_t *)row;
      for (uint32_t x = 0; x < img->width; x++) {
        const uint16_t *p = r16 + 3 * (size_t)x;
        r16[x] = (uint16_t)((6966ull * p[0] + 23436ull * p[1] + 2366ull * p[2] + 16384u) >>
                            15);
      }
    }
  }
  img->channels = 1;
  img->stride = (size_t)img->width * (img->bit_depth / 8);
  /* Rows were written front to back over their own start, row y's gray
   * values landing at y * old_stride; compact them. */
  size_t old_stride = img->stride * 3;
  for (uint32_t y = 1; y < img->height; y++)
    memmove(img->data + (size_t)y * img->stride, img->data + (size_t)y * old_stride,
            img->stride);
}

/* ------------------------------------------------------ decoder state --- */

int osseg__png_reserve(struct osseg__png_buf *b, size_t need) {
  if (need == 0) need = 1;
  if (need <= b->cap) return 0;
  size_t grown = b->cap + b->cap / 2;
  if (grown < b->cap || grown < need) grown = need;
  /* The contents are not needed: free first, so that peak memory is the new
   * buffer alone, and nothing is copied. */
  osseg__free(b->p);
  b->p = osseg__malloc(grown);
  b->cap = b->p ? grown : 0;
  return b->p ? 0 : OSSEG_ENOMEM;
}

void osseg__png_decoder_release(struct osseg_png_decoder *d) {
  libdeflate_free_decompressor(d->inflater);
  osseg__free(d->file.p);
  osseg__free(d->idat.p);
  osseg__free(d->pixels.p);
  osseg__free(d->rows.p);
  memset(d, 0, sizeof *d);
}

/* Ends a one-shot decode on the stack decoder d: on success the pixel
 * buffer moves to *out (the caller's, freed with osseg_image_free), and
 * everything else is freed. */
static int one_shot_finish(struct osseg_png_decoder *d, int rc, struct osseg_image *out) {
  if (rc == 0) {
    d->pixels.p = NULL;
    d->pixels.cap = 0;
  } else if (out) {
    memset(out, 0, sizeof *out);
  }
  osseg__png_decoder_release(d);
  return rc;
}

/* ------------------------------------------------------------- decode --- */

int osseg_png_check_header(const void *data, size_t size, const struct osseg_png_limits *lim_in,
                           uint32_t *width, uint32_t *height, struct osseg_diag *diag) {
  struct osseg_png_limits lim;
  if (lim_in)
    lim = *lim_in;
  else
    osseg_png_limits_default(&lim);
  if (!data && size) return OSSEG_EINVAL;
  if (size > lim.max_bytes)
    return osseg__fail(diag, OSSEG_ELIMIT, "PNG is %zu bytes, above the limit of %llu",
                       size, (unsigned long long)lim.max_bytes);
  int rc = precheck(data, size, &lim, diag);
  if (rc < 0) return rc;
  if (width) *width = be32((const uint8_t *)data + 16);
  if (height) *height = be32((const uint8_t *)data + 20);
  return 0;
}

static int decode_mem(struct osseg_png_decoder *d, const void *data, size_t size,
                      const struct osseg_png_limits *lim_in, struct osseg_image *out,
                      struct osseg_diag *diag) {
  struct osseg_png_limits lim;
  if (lim_in)
    lim = *lim_in;
  else
    osseg_png_limits_default(&lim);
  if (!out || (!data && size)) return OSSEG_EINVAL;
  memset(out, 0, sizeof *out);
  if (size > lim.max_bytes)
    return osseg__fail(diag, OSSEG_ELIMIT, "PNG is %zu bytes, above the limit of %llu",
                       size, (unsigned long long)lim.max_bytes);
  int rc = precheck(data, size, &lim, diag);
  if (rc < 0) return rc;
  /* Plain 8/16-bit gray files (the radiographs) take the fast path in
   * png_fast.c; it hands everything else back to libpng. */
  rc = osseg__png_fast_decode_into(d, data, size, &lim, out, diag);
  if (rc != OSSEG__PNG_FALLBACK) return rc;
  return osseg__png_libpng_decode_into(d, data, size, &lim, out, diag);
}

int osseg__png_libpng_decode_into(struct osseg_png_decoder *d, const void *data,
                                  size_t size, const struct osseg_png_limits *lim_in,
                                  struct osseg_image *out, struct osseg_diag *diag) {
  struct osseg_png_limits lim;
  if (lim_in)
    lim = *lim_in;
  else
    osseg_png_limits_default(&lim);
  if (!out || (!data && size)) return OSSEG_EINVAL;
  memset(out, 0, sizeof *out);
  int rc;
  struct png_ctx *ctx = osseg__calloc(1, sizeof *ctx);
  if (!ctx) return OSSEG_ENOMEM;
  ctx->src = data;
  ctx->src_size = size;
  png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, ctx, on_error,
                                             on_warning, NULL, on_malloc, on_free);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    osseg__free(ctx);
    return OSSEG_ENOMEM;
  }
  if (setjmp(ctx->jmp)) {
    rc = ctx->nomem ? OSSEG_ENOMEM : OSSEG_EPARSE;
    if (rc == OSSEG_ENOMEM)
      osseg__fail(diag, rc, "out of memory while decoding PNG");
    else
      osseg__fail(diag, rc, "corrupt PNG: %s", ctx->message);
    goto done;
  }
  png_set_read_fn(png, ctx, on_read);
  png_set_user_limits(png, lim.max_width, lim.max_height);
  /* Bound the memory ancillary chunks (text, ICC profiles) may take. */
  png_set_chunk_malloc_max(png, 8u << 20);
  png_read_info(png, info);

  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int depth = png_get_bit_depth(png, info);
  int ctype = png_get_color_type(png, info);
  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  /* Palette expansion turns a tRNS chunk into an alpha channel as well;
   * alpha is dropped in every case (see the header). */
  if ((ctype & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
    png_set_strip_alpha(png);
  if (depth == 16 && host_is_little_endian()) png_set_swap(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);

  uint32_t channels = png_get_channels(png, info);
  uint32_t out_depth = png_get_bit_depth(png, info);
  if ((channels != 1 && channels != 3) || (out_depth != 8 && out_depth != 16)) {
    rc = osseg__fail(diag, OSSEG_EUNSUPPORTED, "PNG layout not supported (%u channels, %u bits)",
                     channels, out_depth);
    goto done;
  }
  size_t stride = (size_t)w * channels * (out_depth / 8), total, rows_size;
  if (png_get_rowbytes(png, info) != stride || osseg__mul_size(stride, h, &total) ||
      osseg__mul_size(h, sizeof(png_bytep), &rows_size)) {
    rc = osseg__fail(diag, OSSEG_EPARSE, "PNG row size is inconsistent");
    goto done;
  }
  /* The pixels and row pointers live in the decoder (d is not changed after
   * setjmp, and its buffers are reached through it, so a longjmp from
   * png_read_image leaves them owned and consistent). */
  if (osseg__png_reserve(&d->pixels, total) || osseg__png_reserve(&d->rows, rows_size)) {
    rc = osseg__fail(diag, OSSEG_ENOMEM, "out of memory for a %ux%u PNG", w, h);
    goto done;
  }
  uint8_t *pixels = d->pixels.p;
  png_bytep *rows = d->rows.p;
  for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * stride;
  png_read_image(png, rows);
  png_read_end(png, NULL);

  out->width = w;
  out->height = h;
  out->channels = channels;
  out->bit_depth = out_depth;
  out->stride = stride;
  out->data = pixels;
  if (channels == 3) rgb_to_gray(out);
  rc = 0;

done:
  png_destroy_read_struct(&png, &info, NULL);
  osseg__free(ctx);
  if (rc != 0) memset(out, 0, sizeof *out);
  return rc;
}

/* Reads up to n bytes; returns how many were read (fewer at end of file or
 * on an error). */
static size_t read_full(int fd, uint8_t *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got;
}

/* Reads path whole into d->file and decodes it. Every error names the path
 * once, here: the layers below never see it. */
static int decode_file(struct osseg_png_decoder *d, const char *path,
                       const struct osseg_png_limits *lim_in, struct osseg_image *out,
                       struct osseg_diag *diag) {
  struct osseg_png_limits lim;
  if (lim_in)
    lim = *lim_in;
  else
    osseg_png_limits_default(&lim);
  if (!path || !out) return OSSEG_EINVAL;
  memset(out, 0, sizeof *out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return osseg__fail(diag, OSSEG_EIO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return osseg__fail(diag, OSSEG_EIO, "%s: not a regular file", path);
  }
  if ((uint64_t)st.st_size > lim.max_bytes) {
    close(fd);
    return osseg__fail(diag, OSSEG_ELIMIT, "%s: %lld bytes, above the limit of %llu", path,
                       (long long)st.st_size, (unsigned long long)lim.max_bytes);
  }
  /* The signature and IHDR are read and checked first, so that a header
   * above the limits is refused before the file buffer is allocated. */
  size_t size = (size_t)st.st_size;
  uint8_t head[33];
  size_t head_len = size < sizeof head ? size : sizeof head;
  struct osseg_diag local;
  osseg_diag_clear(&local);
  int rc = 0;
  if (read_full(fd, head, head_len) != head_len) {
    rc = osseg__fail(&local, OSSEG_EIO, "short read");
    goto out;
  }
  rc = precheck(head, head_len, &lim, &local);
  if (rc < 0) goto out;
  if (osseg__png_reserve(&d->file, size)) {
    rc = osseg__fail(&local, OSSEG_ENOMEM, "out of memory for %zu bytes", size);
    goto out;
  }
  uint8_t *buf = d->file.p;
  memcpy(buf, head, head_len);
  if (read_full(fd, buf + head_len, size - head_len) != size - head_len) {
    rc = osseg__fail(&local, OSSEG_EIO, "short read");
    goto out;
  }
  close(fd);
  fd = -1;
  rc = decode_mem(d, buf, size, &lim, out, &local);
out:
  if (fd >= 0) close(fd);
  if (rc < 0) {
    /* Messages from here and from below carry no path: name it once. */
    if (local.message[0])
      osseg__fail(diag, rc, "%s: %s", path, local.message);
    else
      osseg__fail(diag, rc, "%s: %s", path, osseg_strerror(rc));
  }
  return rc;
}

/* ---------------------------------------------------- one-shot decode --- */

int osseg_png_decode_mem(const void *data, size_t size, const struct osseg_png_limits *lim,
                         struct osseg_image *out, struct osseg_diag *diag) {
  struct osseg_png_decoder d = {0};
  return one_shot_finish(&d, decode_mem(&d, data, size, lim, out, diag), out);
}

int osseg_png_decode_file(const char *path, const struct osseg_png_limits *lim,
                          struct osseg_image *out, struct osseg_diag *diag) {
  struct osseg_png_decoder d = {0};
  return one_shot_finish(&d, decode_file(&d, path, lim, out, diag), out);
}

int osseg__png_fast_decode(const uint8_t *data, size_t size,
                           const struct osseg_png_limits *lim, struct osseg_image *out,
                           struct osseg_diag *diag) {
  struct osseg_png_decoder d = {0};
  int rc = osseg__png_fast_decode_into(&d, data, size, lim, out, diag);
  /* OSSEG__PNG_FALLBACK leaves *out untouched, as documented. */
  if (rc == OSSEG__PNG_FALLBACK) {
    osseg__png_decoder_release(&d);
    return rc;
  }
  return one_shot_finish(&d, rc, out);
}

int osseg__png_decode_libpng(const void *data, size_t size,
                             const struct osseg_png_limits *lim, struct osseg_image *out,
                             struct osseg_diag *diag) {
  struct osseg_png_decoder d = {0};
  return one_shot_finish(&d, osseg__png_libpng_decode_into(&d, data, size, lim, out, diag),
                         out);
}

/* ------------------------------------------------------ reusable decode --- */

int osseg_png_decoder_create(struct osseg_png_decoder **out) {
  if (!out) return OSSEG_EINVAL;
  *out = osseg__calloc(1, sizeof **out);
  return *out ? 0 : OSSEG_ENOMEM;
}

void osseg_png_decoder_free(struct osseg_png_decoder *d) {
  if (!d) return;
  osseg__png_decoder_release(d);
  osseg__free(d);
}

int osseg_png_decoder_decode_mem(struct osseg_png_decoder *d, const void *data, size_t size,
                                 const struct osseg_png_limits *lim, struct osseg_image *out,
                                 struct osseg_diag *diag) {
  if (!d) {
    if (out) memset(out, 0, sizeof *out);
    return OSSEG_EINVAL;
  }
  int rc = decode_mem(d, data, size, lim, out, diag);
  if (rc != 0 && out) memset(out, 0, sizeof *out);
  return rc;
}

int osseg_png_decoder_decode_file(struct osseg_png_decoder *d, const char *path,
                                  const struct osseg_png_limits *lim, struct osseg_image *out,
                                  struct osseg_diag *diag) {
  if (!d) {
    if (out) memset(out, 0, sizeof *out);
    return OSSEG_EINVAL;
  }
  int rc = decode_file(d, path, lim, out, diag);
  if (rc != 0 && out) memset(out, 0, sizeof *out);
  return rc;
}

/* ------------------------------------------------------------- encode --- */

static void on_write(png_structp png, png_bytep data, size_t n) {
  struct png_ctx *ctx = png_get_io_ptr(png);
  if (n > ctx->buf_cap - ctx->buf_len) {
    size_t cap = ctx->buf_cap ? ctx->buf_cap : 65536;
    while (cap - ctx->buf_len < n) {
      if (cap > SIZE_MAX / 2) png_error(png, "PNG too large");
      cap *= 2;
    }
    uint8_t *nb = osseg__realloc(ctx->buf, cap);
    if (!nb) {
      ctx->nomem = 1;
      png_error(png, "out of memory");
    }
    ctx->buf = nb;
    ctx->buf_cap = cap;
  }
  memcpy(ctx->buf + ctx->buf_len, data, n);
  ctx->buf_len += n;
}

static void on_flush(png_structp png) { (void)png; }

/* mask: write img (8-bit gray) as a 1-bit image, non-zero = 1. */
static int encode_mem(const struct osseg_image *img, int level, int mask, uint8_t **out,
                      size_t *out_size, struct osseg_diag *diag) {
  if (!img || !img->data || !out || !out_size || level < -1 || level > 9 ||
      (img->channels != 1 && img->channels != 3) ||
      (img->bit_depth != 8 && img->bit_depth != 16) || img->width == 0 ||
      img->height == 0 || (mask && (img->channels != 1 || img->bit_depth != 8)))
    return osseg__fail(diag, OSSEG_EINVAL, "PNG encode: invalid image or level");
  *out = NULL;
  *out_size = 0;
  struct png_ctx *ctx = osseg__calloc(1, sizeof *ctx);
  if (!ctx) return OSSEG_ENOMEM;
  /* A mask row as 0/1 bytes, which libpng packs 8 to a byte
   * (png_set_packing). Allocated before the setjmp so that the error path
   * frees it. */
  uint8_t *row01 = mask ? osseg__malloc(img->width) : NULL;
  if (mask && !row01) {
    osseg__free(ctx);
    return OSSEG_ENOMEM;
  }
  int rc;
  png_structp png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, ctx, on_error,
                                              on_warning, NULL, on_malloc, on_free);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info) {
    png_destroy_write_struct(png ? &png : NULL, NULL);
    osseg__free(row01);
    osseg__free(ctx);
    return OSSEG_ENOMEM;
  }
  if (setjmp(ctx->jmp)) {
    rc = ctx->nomem ? OSSEG_ENOMEM : OSSEG_EINTERNAL;
    osseg__fail(diag, rc, "PNG encode failed: %s", ctx->message);
    goto done;
  }
  png_set_write_fn(png, ctx, on_write, on_flush);
  if (level >= 0) png_set_compression_level(png, level);
  png_set_IHDR(png, info, img->width, img->height, mask ? 1 : (int)img->bit_depth,
               img->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  if (mask) png_set_packing(png);
  if (img->bit_depth == 16 && host_is_little_endian()) png_set_swap(png);
  for (uint32_t y = 0; y < img->height; y++) {
    const uint8_t *row = img->data + (size_t)y * img->stride;
    if (mask) {
      for (uint32_t x = 0; x < img->width; x++) row01[x] = row[x] != 0;
      row = row01;
    }
    png_write_row(png, (png_bytep)row);
  }
  png_write_end(png, NULL);
  *out = ctx->buf;
  *out_size = ctx->buf_len;
  ctx->buf = NULL;
  rc = 0;
done:
  png_destroy_write_struct(&png, &info);
  osseg__free(ctx->buf);
  osseg__free(ctx);
  osseg__free(row01);
  return rc;
}

int osseg_png_encode_mem(const struct osseg_image *img, int level, uint8_t **out,
                         size_t *out_size, struct osseg_diag *diag) {
  return encode_mem(img, level, 0, out, out_size, diag);
}

int osseg_png_encode_mask_mem(const struct osseg_image *img, int level, uint8_t **out,
                              size_t *out_size, struct osseg_diag *diag) {
  return encode_mem(img, level, 1, out, out_size, diag);
}

int osseg_png_encode_file(const char *path, const struct osseg_image *img, int level,
                          struct osseg_diag *diag) {
  uint8_t *buf;
  size_t size;
  struct osseg_diag why;
  osseg_diag_clear(&why);
  int rc = osseg_png_encode_mem(img, level, &buf, &size, &why);
  if (rc < 0) return osseg__fail(diag, rc, "%s: %s", path, why.message);
  rc = osseg_output_write_file(path, buf, size, diag);
  osseg__free(buf);
  return rc;
}
