/* Fast PNG decode for the common radiograph layout.
 *
 * Why: libpng inflates with zlib in small steps and unfilters through a
 * generic row pipeline; on a 2048 x 2048 gray radiograph that was ~40 ms
 * of CPU, most of the pipeline's non-inference budget. Here the chunk
 * structure is walked by hand, the IDAT payload is inflated in one call by
 * libdeflate (several times faster than zlib, with a CRC-32 that uses
 * carry-less multiplication), and the rows are unfiltered in place in the
 * buffer that becomes the image, so no second 4 MB buffer is touched.
 *
 * Scope: colour type 0 (gray), bit depth 8 or 16, no interlace, and no
 * critical chunk other than IHDR, IDAT and IEND. Everything else goes back
 * to libpng (OSSEG__PNG_FALLBACK), as do inputs that libpng merely warns
 * about (a bad CRC on an ancillary chunk, more image data than the image
 * needs, a non-empty IEND), so that the fast path never changes the result
 * of a file libpng accepts: it either yields exactly libpng's pixels, or an
 * error for a file libpng also rejects (a wrong zlib Adler-32 included), or
 * hands the file to libpng. */
#include <libdeflate.h>
#include <string.h>

#include "imaging_internal.h"

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int is_letter(uint8_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

/* A chunk is critical unless bit 5 of its first name byte (lower case) is
 * set; readers must refuse unknown critical chunks. */
static int is_ancillary(const uint8_t *name) { return (name[0] & 0x20) != 0; }

/* The PNG Paeth predictor, exactly as the specification writes it (ties go
 * to a, then b). */
static inline unsigned paeth(unsigned a, unsigned b, unsigned c) {
  int p = (int)a + (int)b - (int)c;
  int pa = p > (int)a ? p - (int)a : (int)a - p;
  int pb = p > (int)b ? p - (int)b : (int)b - p;
  int pc = p > (int)c ? p - (int)c : (int)c - p;
  if (pa <= pb && pa <= pc) return a;
  if (pb <= pc) return b;
  return c;
}

/* Unfilters one row of n bytes with bpp bytes per pixel (1 or 2; n is a
 * multiple of bpp). dst may lie before src in the same buffer (dst <= src):
 * every src byte is read before the dst byte at the same index is written.
 * prior is the previous decoded row, or NULL for the first row (the
 * specification's all-zero row). Returns 0, or -1 for an unknown filter.
 *
 * Sub, Average and Paeth are serial chains through the decoded left
 * neighbour. The neighbours live in scalar locals (l0 for the first byte of
 * a pixel, l1 for the second), never in an array or re-read from dst: a
 * round trip through memory would put store-to-load forwarding latency
 * (~5 cycles) into every step. With bpp 2 the two byte lanes are
 * independent chains and overlap. Always inlined so bpp is a constant. */
static inline __attribute__((always_inline)) int
unfilter_row(uint8_t *dst, const uint8_t *src, const uint8_t *prior, size_t n, unsigned bpp,
             unsigned ft) {
  unsigned l0 = 0, l1 = 0;
  switch (ft) {
    case 0: /* None */
      memmove(dst, src, n);
      return 0;
    case 2: /* Up */
      if (prior) {
        for (size_t i = 0; i < n; i++) dst[i] = (uint8_t)(src[i] + prior[i]);
        return 0;
      }
      memmove(dst, src, n);
      return 0;
    case 4: /* Paeth */
      if (prior) {
        unsigned u0 = 0, u1 = 0;
        for (size_t i = 0; i < n; i += bpp) {
          unsigned b0 = prior[i];
          l0 = (src[i] + paeth(l0, b0, u0)) & 0xff;
          u0 = b0;
          dst[i] = (uint8_t)l0;
          if (bpp == 2) {
            unsigned b1 = prior[i + 1];
            l1 = (src[i + 1] + paeth(l1, b1, u1)) & 0xff;
            u1 = b1;
            dst[i + 1] = (uint8_t)l1;
          }
        }
        return 0;
      }
      /* With b = c = 0 the predictor is the left byte: the Sub filter. */
      /* fall through */
    case 1: /* Sub */
      for (size_t i = 0; i < n; i += bpp) {
        l0 = (src[i] + l0) & 0xff;
        dst[i] = (uint8_t)l0;
        if (bpp == 2) {
          l1 = (src[i + 1] + l1) & 0xff;
          dst[i + 1] = (uint8_t)l1;
        }
      }
      return 0;
    case 3: /* Average */
      if (prior) {
        for (size_t i = 0; i < n; i += bpp) {
          l0 = (src[i] + ((l0 + prior[i]) >> 1)) & 0xff;
          dst[i] = (uint8_t)l0;
          if (bpp == 2) {
            l1 = (src[i + 1] + ((l1 + prior[i + 1]) >> 1)) & 0xff;
            dst[i + 1] = (uint8_t)l1;
          }
        }
      } else {
        for (size_t i = 0; i < n; i += bpp) {
          l0 = (src[i] + (l0 >> 1)) & 0xff;
          dst[i] = (uint8_t)l0;
          if (bpp == 2) {
            l1 = (src[i + 1] + (l1 >> 1)) & 0xff;
            dst[i + 1] = (uint8_t)l1;
          }
        }
      }
      return 0;
    default:
      return -1;
  }
}

/* Specialised per bpp so that the inner loops see a constant. */
static int unfilter_row_bpp1(uint8_t *dst, const uint8_t *src, const uint8_t *prior,
                             size_t n, unsigned ft) {
  return unfilter_row(dst, src, prior, n, 1, ft);
}
static int unfilter_row_bpp2(uint8_t *dst, const uint8_t *src, const uint8_t *prior,
                             size_t n, unsigned ft) {
  return unfilter_row(dst, src, prior, n, 2, ft);
}

/* Average-filtered 8-bit rows a and b = a + 1 (a not the first row) in one
 * pass. Each row alone is one serial chain of ~4 cycles per byte (add,
 * shift, add, mask); byte i of b needs only byte i of a, so running b one
 * byte behind a gives two independent chains that overlap, about twice the
 * throughput. Radiograph encoders commonly put Average on every row.
 * sa must not alias db: decoding in place, row b's output would overwrite
 * the tail of row a's filtered bytes before they are read, so the caller
 * passes a copy of them. The other in-place rules of unfilter_row hold. */
static void avg_pair_bpp1(uint8_t *da, const uint8_t *sa, const uint8_t *pa, uint8_t *db,
                          const uint8_t *sb, size_t n) {
  unsigned la = (sa[0] + (pa[0] >> 1)) & 0xff, lb = 0;
  da[0] = (uint8_t)la;
  for (size_t i = 1; i < n; i++) {
    unsigned a_prev = la; /* a[i - 1], the prior byte of b[i - 1] */
    la = (sa[i] + ((la + pa[i]) >> 1)) & 0xff;
    da[i] = (uint8_t)la;
    lb = (sb[i - 1] + ((lb + a_prev) >> 1)) & 0xff;
    db[i - 1] = (uint8_t)lb;
  }
  lb = (sb[n - 1] + ((lb + la) >> 1)) & 0xff;
  db[n - 1] = (uint8_t)lb;
}

static void swap16_row(uint8_t *row, size_t n) {
  uint16_t *p = (uint16_t *)row;
  for (size_t i = 0; i < n / 2; i++) p[i] = __builtin_bswap16(p[i]);
}

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  return *(const uint8_t *)&one == 1;
}

int osseg__png_fast_decode_into(struct osseg_png_decoder *dec, const uint8_t *d,
                                size_t size, const struct osseg_png_limits *lim,
                                struct osseg_image *out, struct osseg_diag *diag) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  /* Signature, IHDR header and body, IHDR CRC. */
  if (!d || size < 33 || memcmp(d, sig, 8) != 0 || be32(d + 8) != 13 ||
      memcmp(d + 12, "IHDR", 4) != 0)
    return OSSEG__PNG_FALLBACK;
  const uint8_t *ihdr = d + 16;
  uint32_t w = be32(ihdr), h = be32(ihdr + 4);
  unsigned depth = ihdr[8], ctype = ihdr[9];
  if (w == 0 || h == 0 || w > lim->max_width || h > lim->max_height ||
      (uint64_t)w * h > lim->max_pixels)
    return OSSEG__PNG_FALLBACK; /* the caller's precheck reports these */
  if (ctype != 0 || (depth != 8 && depth != 16) || ihdr[10] != 0 || ihdr[11] != 0 ||
      ihdr[12] != 0)
    return OSSEG__PNG_FALLBACK;
  if (libdeflate_crc32(0, d + 12, 4 + 13) != be32(d + 29))
    return osseg__fail(diag, OSSEG_EPARSE, "corrupt PNG: IHDR chunk has a bad CRC");

  /* Walk the chunks up to IEND. The IDAT chunks must form one run; their
   * payloads are concatenated below. Every length is checked against the
   * bytes that remain before anything is read or allocated. */
  size_t pos = 33, idat_first = 0, idat_bytes = 0, idat_count = 0;
  int idat_done = 0;
  for (;;) {
    if (size - pos < 12)
      return osseg__fail(diag, OSSEG_EPARSE, "corrupt PNG: file is truncated (no IEND)");
    uint32_t len = be32(d + pos);
    const uint8_t *name = d + pos + 4;
    if (!is_letter(name[0]) || !is_letter(name[1]) || !is_letter(name[2]) ||
        !is_letter(name[3]) || len > 0x7fffffffu)
      return OSSEG__PNG_FALLBACK; /* libpng names the problem */
    if (size - pos - 12 < len)
      return osseg__fail(diag, OSSEG_EPARSE,
                         "corrupt PNG: file is truncated inside a %.4s chunk", name);
    int crc_ok = libdeflate_crc32(0, name, (size_t)len + 4) == be32(d + pos + 8 + len);
    if (memcmp(name, "IDAT", 4) == 0) {
      if (idat_done) return OSSEG__PNG_FALLBACK; /* split IDAT runs: libpng decides */
      if (!crc_ok) return osseg__fail(diag, OSSEG_EPARSE, "corrupt PNG: IDAT CRC error");
      if (idat_count++ == 0) idat_first = pos;
      idat_bytes += len; /* bounded by size: no overflow */
    } else {
      if (idat_count) idat_done = 1;
      if (memcmp(name, "IEND", 4) == 0) {
        if (!crc_ok) return osseg__fail(diag, OSSEG_EPARSE, "corrupt PNG: IEND CRC error");
        if (len != 0 || !idat_count) return OSSEG__PNG_FALLBACK;
        break;
      }
      /* Ancillary chunks do not change the decoded pixels; libpng skips
       * them, and only warns about a bad CRC, so such a file is left to it. */
      if (!is_ancillary(name) || !crc_ok) return OSSEG__PNG_FALLBACK;
    }
    pos += (size_t)len + 12;
  }

  size_t rowbytes = (size_t)w * (depth / 8), need;
  if (osseg__mul_size(rowbytes + 1, h, &need)) return OSSEG__PNG_FALLBACK;
  /* DEFLATE cannot expand data by more than 1032:1 (a 258-byte match in two
   * bits), so a header that promises far more pixels than the IDAT data could
   * hold is refused before the image is allocated. */
  if (need / 1032 > idat_bytes)
    return osseg__fail(diag, OSSEG_EPARSE,
                       "corrupt PNG: %zu bytes of image data cannot hold a %ux%u image",
                       idat_bytes, w, h);

  /* Every buffer comes from dec and stays there, so the error paths below
   * have nothing to free, and a decoder that already holds buffers this
   * large allocates nothing. */
  const uint8_t *zin = d + idat_first + 8;
  if (idat_count > 1) {
    if (osseg__png_reserve(&dec->idat, idat_bytes))
      return osseg__fail(diag, OSSEG_ENOMEM, "out of memory for a %ux%u PNG", w, h);
    uint8_t *gathered = dec->idat.p;
    size_t p = idat_first, o = 0;
    for (size_t i = 0; i < idat_count; i++) {
      uint32_t len = be32(d + p);
      memcpy(gathered + o, d + p + 8, len);
      o += len;
      p += (size_t)len + 12;
    }
    zin = gathered;
  }
  /* The image buffer holds the filtered rows (one filter byte each) first;
   * the rows are then unfiltered forward in place, to stride = rowbytes.
   * One more row at the end is scratch for avg_pair_bpp1. */
  size_t alloc;
  if (osseg__add_size(need, rowbytes, &alloc)) return OSSEG__PNG_FALLBACK;
  if (osseg__png_reserve(&dec->pixels, alloc))
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory for a %ux%u PNG", w, h);
  /* libdeflate 1.14 allocates with malloc (its allocator hook is global),
   * so this one allocation is not seen by osseg__malloc's counters; it is
   * made once per decoder. */
  if (!dec->inflater && !(dec->inflater = libdeflate_alloc_decompressor()))
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory for a %ux%u PNG", w, h);
  uint8_t *pix = dec->pixels.p;
  /* With no actual-size pointer libdeflate insists on exactly `need` bytes
   * and verifies the zlib header and the Adler-32. */
  enum libdeflate_result zr =
      libdeflate_zlib_decompress(dec->inflater, zin, idat_bytes, pix, need, NULL);
  if (zr == LIBDEFLATE_SHORT_OUTPUT)
    return osseg__fail(diag, OSSEG_EPARSE,
                       "corrupt PNG: not enough image data for a %ux%u image", w, h);
  /* More data than the image needs: libpng ignores the excess with a
   * warning, so leave the file to it. */
  if (zr == LIBDEFLATE_INSUFFICIENT_SPACE) return OSSEG__PNG_FALLBACK;
  if (zr != LIBDEFLATE_SUCCESS)
    return osseg__fail(diag, OSSEG_EPARSE,
                       "corrupt PNG: image data is not a valid zlib stream (bad header, "
                       "DEFLATE data or Adler-32)");

  int swap = depth == 16 && host_is_little_endian();
  for (uint32_t y = 0; y < h; y++) {
    const uint8_t *src = pix + (size_t)y * (rowbytes + 1);
    uint8_t *dst = pix + (size_t)y * rowbytes;
    const uint8_t *prior = y ? dst - rowbytes : NULL;
    unsigned ft = src[0];
    if (depth == 8 && ft == 3 && y > 0 && y + 1 < h && src[rowbytes + 1] == 3) {
      uint8_t *scratch = pix + need;
      memcpy(scratch, src + 1, rowbytes);
      avg_pair_bpp1(dst, scratch, prior, dst + rowbytes, src + rowbytes + 2, rowbytes);
      y++;
      continue;
    }
    int bad = depth == 8 ? unfilter_row_bpp1(dst, src + 1, prior, rowbytes, ft)
                         : unfilter_row_bpp2(dst, src + 1, prior, rowbytes, ft);
    if (bad)
      return osseg__fail(diag, OSSEG_EPARSE, "corrupt PNG: invalid filter type %u in row %u",
                         ft, y);
    /* The previous row served as `prior` in the file's big-endian order;
     * now it can take the host's. */
    if (swap && y) swap16_row(dst - rowbytes, rowbytes);
  }
  if (swap) swap16_row(pix + (size_t)(h - 1) * rowbytes, rowbytes);

  memset(out, 0, sizeof *out);
  out->width = w;
  out->height = h;
  out->channels = 1;
  out->bit_depth = depth;
  out->stride = rowbytes;
  out->data = pix;
  return 0;
}
