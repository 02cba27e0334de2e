/* osseg kernels: post-processing of segmentation masks.
 *
 * Depends on libc (and the base layer) only. Every kernel has a plain C
 * reference (`*_generic`, in the *_generic.c / same file, never compiled with
 * -mavx*) and, where SIMD pays, AVX2 and AVX-512 variants chosen once at
 * start-up by osseg_cpu_features() (osseg_base.h). Integer kernels give
 * results identical to the reference; float kernels state their tolerance.
 *
 * Conventions
 *   - A mask of H x W pixels is addressed in row-major order, pixel index
 *     p = y * W + x, 0 <= p < H * W <= OSSEG_MAX_PIXELS.
 *   - A run is {start, len} with a 0-based start. RLE *text* is 1-based
 *     ("start len start len ...") as in the competition format; the text
 *     functions convert.
 *   - A run list is canonical when runs are sorted by start, have len > 0,
 *     and neither overlap nor touch (start[i+1] > start[i] + len[i]). All
 *     outputs are canonical. Inputs may be anything that lies inside the
 *     image; functions that need canonical input say so, and
 *     osseg_runs_canonicalize() produces it.
 *   - Thread-safety: all functions are reentrant; objects are not shared.
 */
#ifndef OSSEG_KERNELS_H
#define OSSEG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 16384 x 16384: every pixel index and run length fits in uint32_t. */
#define OSSEG_MAX_SIDE 16384u
#define OSSEG_MAX_PIXELS ((uint64_t)OSSEG_MAX_SIDE * OSSEG_MAX_SIDE)

/* ---------------------------------------------------------------- runs --- */

struct osseg_run {
  uint32_t start; /* 0-based pixel index */
  uint32_t len;
};

/* A growable run list. Zero-initialise ({0}) before first use. */
struct osseg_runs {
  struct osseg_run *v;
  size_t n;
  size_t cap;
};

/* Ensures capacity for cap runs (never shrinks). 0, OSSEG_ENOMEM or
 * OSSEG_EOVERFLOW; on failure the list is unchanged. */
int osseg_runs_reserve(struct osseg_runs *runs, size_t cap);
/* Appends a run (amortised O(1)); same errors as osseg_runs_reserve. */
int osseg_runs_push(struct osseg_runs *runs, uint32_t start, uint32_t len);
/* Frees the storage and leaves an empty list, ready for reuse. */
void osseg_runs_free(struct osseg_runs *runs);
/* Sorts, merges overlapping and touching runs, drops empty ones. In place;
 * never fails (already-sorted input skips the sort; the radix sort falls
 * back to an in-place heapsort when its scratch memory is unavailable). */
void osseg_runs_canonicalize(struct osseg_runs *runs);
/* Number of pixels covered; runs must be canonical. */
uint64_t osseg_runs_area(const struct osseg_run *v, size_t n);
/* |A ∩ B| for canonical run lists, in O(na + nb). */
uint64_t osseg_runs_intersection(const struct osseg_run *a, size_t na,
                                 const struct osseg_run *b, size_t nb);

/* ---------------------------------------------------------- RLE text --- */

/* Parses 1-based RLE text "s l s l ..." (tokens separated by one or more
 * spaces; leading/trailing spaces allowed; empty text = empty mask) into
 * runs, appending to *out, then canonicalises *out when the input was not
 * already canonical. npixels bounds the image. Errors (OSSEG_EPARSE or
 * OSSEG_ERANGE, with the offending token's byte offset in diag): a
 * non-digit character, an odd number of numbers, a start of 0, a number
 * with more than 10 digits or above 2^32 - 1, a run that ends past npixels
 * (or a start past it). Zero-length runs are legal and dropped. On error
 * *out keeps exactly the runs it had. If *out was canonical on entry it is
 * canonical on return. 1 <= npixels <= OSSEG_MAX_PIXELS (else OSSEG_EINVAL).
 * Every CPU level gives identical runs and identical error messages. */
int osseg_rle_parse(const char *text, size_t len, uint64_t npixels,
                    struct osseg_runs *out, struct osseg_diag *diag);

/* Upper bound on the bytes osseg_rle_format writes for n runs. */
size_t osseg_rle_format_bound(size_t n);
/* Writes the 1-based text of canonical runs (no trailing space, no NUL) to
 * out, which must hold osseg_rle_format_bound(n) bytes; returns the length.
 * Bytes of out past the returned length (within the bound) may be
 * overwritten: the formatter stores 8 bytes at a time. */
size_t osseg_rle_format(const struct osseg_run *v, size_t n, char *out);

/* ----------------------------------------------------------- bitmask --- */

/* A bit-packed binary mask: pixel p is bit (p % 64) of word p / 64
 * (LSB first), rows are not padded. Bits past height*width are always 0. */
struct osseg_bitmask {
  uint32_t height;
  uint32_t width;
  size_t nwords;
  uint64_t *bits; /* 64-byte aligned, owned */
};

/* Allocates a cleared mask. OSSEG_ERANGE if a side is 0 or > OSSEG_MAX_SIDE. */
int osseg_bitmask_init(struct osseg_bitmask *m, uint32_t height, uint32_t width);
void osseg_bitmask_free(struct osseg_bitmask *m);
void osseg_bitmask_clear(struct osseg_bitmask *m);
/* Sets the pixels of runs (any order, may overlap). OSSEG_ERANGE (and m
 * unchanged) if a run ends past height * width. */
int osseg_bitmask_paint_runs(struct osseg_bitmask *m, const struct osseg_run *v,
                             size_t n);
/* Replaces *out's contents with the canonical runs of m (RLE encode).
 * OSSEG_ENOMEM leaves *out empty (n = 0) but keeps its storage. */
int osseg_bitmask_to_runs(const struct osseg_bitmask *m, struct osseg_runs *out);
uint64_t osseg_bitmask_count(const struct osseg_bitmask *m);
/* |A ∩ B|; masks must have equal dimensions (asserted). */
uint64_t osseg_bitmask_count_and(const struct osseg_bitmask *a,
                                 const struct osseg_bitmask *b);

/* ----------------------------------------------------------- polygon --- */

/* An integer vertex, in pixels (x to the right, y down). */
struct osseg_point {
  int32_t x;
  int32_t y;
};

/* Sets the pixels of m that cv2.fillPoly(mask, contours, 1) sets (lineType
 * LINE_8, shift 0, OpenCV 4.6): every edge drawn as an 8-connected line plus
 * an even-odd scanline fill, contours filled together (so a contour inside
 * another makes a hole). Vertices may lie outside the mask; they are clipped
 * as OpenCV clips them. Existing bits of m are kept (painting is OR).
 * Contours with 0 points are skipped. OSSEG_EINVAL for NULL arguments,
 * OSSEG_ELIMIT above 2^24 vertices in total, OSSEG_ENOMEM. */
int osseg_polygon_fill(struct osseg_bitmask *m,
                       const struct osseg_point *const *contours,
                       const size_t *counts, size_t ncontours);
/* One contour. */
int osseg_polygon_fill1(struct osseg_bitmask *m, const struct osseg_point *pts,
                        size_t n);

/* ------------------------------------------------------------ voting --- */

/* Hard voting: out pixel set where more than min_votes - 1 of the k inputs
 * are set, i.e. count >= min_votes (the CLI maps "count > T" to
 * min_votes = floor(T) + 1). 1 <= k <= 64 and min_votes >= 1, else
 * OSSEG_EINVAL; min_votes > k gives an empty mask. out is an initialised
 * mask of the inputs' dimensions (else OSSEG_ESHAPE) and may be one of the
 * inputs. */
int osseg_vote_masks(const struct osseg_bitmask *const *masks, size_t k,
                     unsigned min_votes, struct osseg_bitmask *out);
/* The same on canonical run lists, without materialising masks: replaces
 * *out's contents with the canonical runs where count >= min_votes.
 * O(total runs * log k). Same k/min_votes rules; OSSEG_EINVAL if a list is
 * not canonical or out is one of the inputs; OSSEG_ENOMEM leaves out empty. */
int osseg_vote_runs(const struct osseg_runs *const *lists, size_t k,
                    unsigned min_votes, struct osseg_runs *out);

/* -------------------------------------------------------------- Dice --- */

/* (2|A∩B| + 1e-4) / (|A| + |B| + 1e-4) in double: two empty masks score 1.
 * osseg_dice_masks needs equal dimensions (asserted; NaN without asserts). */
double osseg_dice_from_counts(uint64_t intersection, uint64_t area_a,
                              uint64_t area_b);
double osseg_dice_masks(const struct osseg_bitmask *a,
                        const struct osseg_bitmask *b);
/* Canonical run lists. */
double osseg_dice_runs(const struct osseg_run *a, size_t na,
                       const struct osseg_run *b, size_t nb);

/* ----------------------------------------------- upsample + threshold --- */

/* Bilinear upsampling of low-resolution logits fused with thresholding,
 * straight to a bitmask: the full-resolution float plane is never built.
 *
 * Semantics are PyTorch's `F.interpolate(x, size=(H, W), mode="bilinear",
 * align_corners=False)` on a float32 NCHW tensor, per axis:
 *   ratio = (float)in / (float)out
 *   src = ratio * (dst + 0.5) - 0.5 evaluated in double, clamped below at 0
 *   i0 = floor(src), i1 = i0 + (i0 < in - 1)
 *   w1 = (float)(src - i0), w0 = 1.0f - w1   (in == out: i1 = i0, w0 = 1, w1 = 0)
 * and value = fma(t0, wy0, t1 * wy1), t_r = fma(v[y_r][x0], wx0, v[y_r][x1] * wx1)
 * (fma = one rounding). That is exactly what torch 1.13's CPU kernel (the
 * NCHW path, i.e. any tensor with more than one channel) computes in its
 * AVX2 / AVX-512 builds: the result equals PyTorch's output bit for bit
 * (tested against PyTorch fixtures). PyTorch builds without FMA, or newer
 * releases that compute src in float, differ by a few ulp, so only pixels
 * within ~1e-6 (relative) of the threshold can disagree with those. A pixel
 * is set when value > threshold (strict; NaN is never set). Up- and
 * downsampling and any ratio work.
 *
 * Work is done per low-resolution cell: a cell whose four corners are all
 * clearly on one side of the threshold (by a margin that covers float
 * rounding of the interpolation) fills or skips its whole output block;
 * only the others are interpolated per pixel. The result is identical on
 * every CPU level and to a per-pixel evaluation of the formula above.
 *
 * A plan holds the per-axis index/weight tables for one geometry; it is
 * read-only after init and may be shared by threads. */
struct osseg_upsample_plan {
  uint32_t in_height, in_width;   /* logits plane */
  uint32_t out_height, out_width; /* masks */
  void *impl_;                    /* tables; private */
};

/* Sides must be 1..OSSEG_MAX_SIDE (OSSEG_ERANGE); OSSEG_ENOMEM. On error
 * the plan is left empty (free is still allowed). */
int osseg_upsample_plan_init(struct osseg_upsample_plan *plan, uint32_t in_height,
                             uint32_t in_width, uint32_t out_height,
                             uint32_t out_width);
void osseg_upsample_plan_free(struct osseg_upsample_plan *plan);
/* Reserves scratch memory in the plan for calls with up to k models (1 for
 * osseg_upsample_threshold), so that those calls allocate nothing. A plan
 * with a reservation is no longer read-only: calls through it must not run
 * on two threads at once (give each thread its own plan). OSSEG_EINVAL for
 * k outside 1..64, OSSEG_ENOMEM. */
int osseg_upsample_plan_reserve(struct osseg_upsample_plan *plan, size_t k);

/* One class: logits is the in_height x in_width plane, row i at
 * logits + i * row_stride (row_stride >= in_width floats). For a
 * probability threshold t pass threshold_logit = log(t / (1 - t)).
 * out must be initialised with out_height x out_width (OSSEG_ESHAPE); its
 * contents are replaced. OSSEG_EINVAL for a NULL pointer or a short stride,
 * OSSEG_EOVERFLOW if the plane's extent overflows, OSSEG_ENOMEM for scratch
 * memory (one allocation per call unless the plan has a reservation). */
int osseg_upsample_threshold(const struct osseg_upsample_plan *plan,
                             const float *logits, size_t row_stride,
                             float threshold_logit, struct osseg_bitmask *out);

/* Soft voting of k models (1 <= k <= 64) for one class: a pixel is set
 * when mean_j sigmoid(value_j) > prob_threshold, value_j interpolated from
 * logits[j] as above (all planes share row_stride). 0 < prob_threshold < 1
 * (else OSSEG_EINVAL). Cells are decided without interpolating only where
 * every corner of every model lies beyond logit(prob_threshold) by a safe
 * margin on the same side. Tolerance: sigmoid is computed with expf in the
 * generic path and a polynomial exp (max error a few ulp) in the SIMD
 * paths, so pixels whose mean probability is within 1e-6 of the threshold
 * may differ between CPU levels; all others agree exactly. */
int osseg_upsample_soft_vote(const struct osseg_upsample_plan *plan,
                             const float *const *logits, size_t k,
                             size_t row_stride, float prob_threshold,
                             struct osseg_bitmask *out);

/* --------------------------------------------------- prediction CSV --- */

/* A prediction/submission CSV: header `image_name,class,rle`, one row per
 * (image, class). Fields follow RFC 4180 (quotes, doubled quotes inside
 * quotes); CRLF and LF line ends are accepted, a final newline is optional.
 * The parser is strict: wrong header, wrong field count, stray quotes, NUL
 * bytes, a blank line before another row, a bare CR, an empty image_name or
 * class, or a field over the limit are errors naming file, line and problem
 * ("a.csv:17: ..."). Blank lines at the end of the file (LF or CRLF, as
 * editors and pandas leave them) are ignored, and a UTF-8 byte order mark
 * before the header is skipped. The rle field is
 * not interpreted here: osseg_rle_parse() checks it when it is used.
 */
struct osseg_csv_limits {
  uint64_t max_file_bytes; /* default 4 GiB */
  uint32_t max_field_bytes; /* default 64 MiB (an RLE of a 16384^2 mask) */
  uint64_t max_rows;        /* default 100 million */
};

struct osseg_csv_row {
  const char *image; /* not NUL-terminated; points into the file or arena */
  const char *cls;
  const char *rle;
  uint32_t image_len;
  uint32_t cls_len;
  uint32_t rle_len;
  uint32_t line; /* 1-based line number of the row's start, for messages */
};

struct osseg_csv {
  char *path;                 /* copy of the path, for messages */
  struct osseg_csv_row *rows; /* in file order */
  size_t nrows;
  void *impl_; /* mapping and unquoting arena; private */
};

/* Maps the file (read-only, prefaulted) and parses it. NULL limits =
 * defaults. On error, *csv is left empty (nothing to close); diag gets
 * "PATH:LINE: problem" or "PATH: problem". */
int osseg_csv_open(struct osseg_csv *csv, const char *path,
                   const struct osseg_csv_limits *limits,
                   struct osseg_diag *diag);
/* Parses a caller-owned buffer, which must outlive csv. name is used in
 * messages. */
int osseg_csv_parse(struct osseg_csv *csv, const char *name, const char *data,
                    size_t size, const struct osseg_csv_limits *limits,
                    struct osseg_diag *diag);
void osseg_csv_close(struct osseg_csv *csv);

/* Splits rows [0, nrows) into nparts contiguous ranges of about equal rle
 * bytes, for threads: part i is rows [bounds[i], bounds[i+1]); bounds has
 * nparts + 1 entries, bounds[0] = 0, bounds[nparts] = nrows. nparts >= 1. */
void osseg_csv_split(const struct osseg_csv *csv, size_t nparts, size_t *bounds);

/* Formatting a field into memory, for callers that build rows themselves
 * (e.g. one buffer per thread): the field is quoted (RFC 4180) when it holds
 * a comma, a quote, CR or LF (an empty field stays empty). out must hold
 * osseg_csv_field_bound(len) bytes; returns the end of what was written. */
size_t osseg_csv_field_bound(size_t len);
char *osseg_csv_put_field(char *out, const char *s, size_t len);

/* A buffered CSV writer that quotes fields when they need it. The file is
 * written through osseg_output (osseg_base.h): a regular destination is
 * replaced only in osseg_csv_writer_close, from a temporary file in its
 * folder, so an interrupted or failed run never leaves a partial file under
 * the final name; a device, FIFO or symlink is written through, not
 * replaced. open writes the header; rows end in LF. One writer is used by
 * one thread. */
struct osseg_csv_writer;
int osseg_csv_writer_open(struct osseg_csv_writer **w, const char *path,
                          struct osseg_diag *diag);
int osseg_csv_write_row(struct osseg_csv_writer *w, const char *image,
                        size_t image_len, const char *cls, size_t cls_len,
                        const char *rle, size_t rle_len);
/* Appends bytes that already are complete CSV rows. */
int osseg_csv_write_raw(struct osseg_csv_writer *w, const char *data, size_t len);
/* Flushes and commits the output (fsync and rename for a regular file),
 * reports any deferred write error (then the temporary file is removed and
 * the destination is untouched); frees w. */
int osseg_csv_writer_close(struct osseg_csv_writer *w, struct osseg_diag *diag);
/* Gives up: removes the temporary file and frees w. NULL is a no-op. */
void osseg_csv_writer_abort(struct osseg_csv_writer *w);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_KERNELS_H */
