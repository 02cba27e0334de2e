/* Fused bilinear upsample + threshold (and soft voting): plan tables, the
 * cell-row driver, dispatch, and the generic reference inner loops. The
 * AVX2 / AVX-512 inner loops are in upsample_threshold_avx2.c / _avx512.c.
 *
 * Why cells: with 512x512 logits and 2048x2048 masks, a bone covers a few
 * percent of the image, so nearly every 4x4 output block lies entirely
 * inside or outside it. Deciding a block from its four source corners
 * costs one comparison per low-resolution pixel instead of 16 bilinear
 * evaluations; only blocks on a blob boundary are interpolated, and those
 * exactly as PyTorch would. */
#include "upsample_threshold_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define UT_MAX_K 64

/* Mixed ranges of a cell row closer than this (output pixels) are merged. */
#define MERGE_GAP 64u

/* ------------------------------------------------------------ dispatch --- */

static const struct osseg__ut_ops *dispatched;
static pthread_once_t dispatch_once = PTHREAD_ONCE_INIT;

static void dispatch_init(void) {
  unsigned f = osseg_cpu_features();
  if (f & OSSEG_CPU_AVX512)
    dispatched = &osseg__ut_ops_avx512;
  else if (f & OSSEG_CPU_AVX2)
    dispatched = &osseg__ut_ops_avx2;
  else
    dispatched = &osseg__ut_ops_generic;
}

const struct osseg__ut_ops *osseg__ut_ops_dispatch(void) {
  pthread_once(&dispatch_once, dispatch_init);
  return dispatched;
}

/* ---------------------------------------------------------------- plan --- */

/* One axis of PyTorch's compute_source_index_and_lambda (align_corners =
 * False, no explicit scale) as torch 1.13 evaluates it: the ratio is a
 * float, but `ratio * (dst + 0.5) - 0.5` has double literals, so the source
 * coordinate and lambda are computed in double and lambda is rounded to
 * float only when stored. This reproduces PyTorch's weights bit for bit
 * (see tests/kernels/test_upsample_threshold.c, which checks against
 * PyTorch output), where an all-float evaluation differs in ~80% of pixels
 * of non-integer ratios. */
static void axis_tables(uint32_t in, uint32_t out, uint32_t *i0, uint32_t *i1,
                        float *w0, float *w1) {
  float ratio = (float)in / (float)out;
  for (uint32_t d = 0; d < out; d++) {
    if (in == out) {
      i0[d] = i1[d] = d;
      w0[d] = 1.0f;
      w1[d] = 0.0f;
      continue;
    }
    double src = (double)ratio * ((double)d + 0.5) - 0.5;
    if (src < 0.0) src = 0.0;
    /* src >= 0, so truncation is floor (and needs no libm). src < in - 0.5
     * always, but clamp anyway as newer PyTorch does. */
    uint32_t idx = (uint32_t)src;
    if (idx > in - 1) idx = in - 1;
    double l = src - (double)idx;
    if (l > 1.0) l = 1.0;
    i0[d] = idx;
    i1[d] = idx + (idx < in - 1 ? 1u : 0u);
    w1[d] = (float)l;
    w0[d] = 1.0f - w1[d];
  }
}

/* groups[c] = first output index whose source index is >= c, for c in
 * [0, in]; needs the source indices to be non-decreasing, which holds
 * because float rounding and floor are monotonic. */
static int axis_groups(const uint32_t *i0, uint32_t out, uint32_t in, uint32_t *groups) {
  uint32_t c = 0;
  for (uint32_t d = 0; d < out; d++) {
    if (d > 0 && i0[d] < i0[d - 1]) return OSSEG_EINTERNAL;
    while (c <= i0[d]) groups[c++] = d;
  }
  while (c <= in) groups[c++] = out;
  return 0;
}

int osseg_upsample_plan_init(struct osseg_upsample_plan *plan, uint32_t in_height,
                             uint32_t in_width, uint32_t out_height,
                             uint32_t out_width) {
  memset(plan, 0, sizeof *plan);
  if (in_height == 0 || in_width == 0 || out_height == 0 || out_width == 0 ||
      in_height > OSSEG_MAX_SIDE || in_width > OSSEG_MAX_SIDE ||
      out_height > OSSEG_MAX_SIDE || out_width > OSSEG_MAX_SIDE)
    return OSSEG_ERANGE;
  /* Sides are at most 2^14, so these element counts cannot overflow; the
   * byte total is still computed with checks for uniformity. */
  size_t nx = out_width, ny = out_height;
  size_t elems = 4 * nx + 4 * ny + (size_t)in_width + 1 + (size_t)in_height + 1, bytes;
  if (osseg__mul_size(elems, 4, &bytes) != 0) return OSSEG_EOVERFLOW;
  size_t hdr = (sizeof(struct osseg__ut_tables) + 63) & ~(size_t)63;
  if (osseg__add_size(bytes, hdr, &bytes) != 0) return OSSEG_EOVERFLOW;
  char *mem = osseg__aligned_alloc(64, bytes);
  if (!mem) return OSSEG_ENOMEM;
  struct osseg__ut_tables *t = (struct osseg__ut_tables *)(void *)mem;
  uint32_t *u = (uint32_t *)(void *)(mem + hdr);
  t->x0 = u, u += nx;
  t->x1 = u, u += nx;
  t->y0 = u, u += ny;
  t->y1 = u, u += ny;
  t->xs = u, u += (size_t)in_width + 1;
  t->ys = u, u += (size_t)in_height + 1;
  float *f = (float *)(void *)u;
  t->wx0 = f, f += nx;
  t->wx1 = f, f += nx;
  t->wy0 = f, f += ny;
  t->wy1 = f;
  axis_tables(in_width, out_width, t->x0, t->x1, t->wx0, t->wx1);
  axis_tables(in_height, out_height, t->y0, t->y1, t->wy0, t->wy1);
  int rc = axis_groups(t->x0, out_width, in_width, t->xs);
  if (rc == 0) rc = axis_groups(t->y0, out_height, in_height, t->ys);
  if (rc < 0) {
    osseg__free(mem);
    return rc;
  }
  plan->in_height = in_height;
  plan->in_width = in_width;
  plan->out_height = out_height;
  plan->out_width = out_width;
  t->scratch = NULL;
  t->scratch_k = 0;
  t->in_width = in_width;
  plan->impl_ = t;
  return 0;
}

void osseg_upsample_plan_free(struct osseg_upsample_plan *plan) {
  struct osseg__ut_tables *t = plan->impl_;
  if (t) osseg__free(t->scratch);
  osseg__free(plan->impl_);
  memset(plan, 0, sizeof *plan);
}

/* -------------------------------------------------------------- driver --- */

/* Finds the first run of set bits at or after *pos in a bit array whose
 * bits past its end are 0; returns 0 when there is none. */
static int next_run(const uint64_t *bits, size_t nwords, uint32_t *pos, uint32_t *a,
                    uint32_t *b) {
  size_t wi = *pos / 64;
  if (wi >= nwords) return 0;
  uint64_t x = bits[wi] & (~0ull << (*pos % 64));
  while (!x) {
    if (++wi >= nwords) return 0;
    x = bits[wi];
  }
  uint32_t s = (uint32_t)(wi * 64 + (unsigned)__builtin_ctzll(x));
  /* Now the first clear bit at or after s. */
  uint64_t y = ~bits[wi] & (~0ull << (s % 64));
  while (!y) {
    if (++wi >= nwords) {
      *a = s;
      *b = *pos = (uint32_t)(nwords * 64);
      return 1;
    }
    y = ~bits[wi];
  }
  *a = s;
  *b = *pos = (uint32_t)(wi * 64 + (unsigned)__builtin_ctzll(y));
  return 1;
}

/* Sets bits [a, b) of a row buffer. */
static void set_bits(uint64_t *bits, uint32_t a, uint32_t b) {
  if (a >= b) return;
  uint32_t w0 = a / 64, w1 = (b - 1) / 64;
  uint64_t head = ~0ull << (a % 64), tail = ~0ull >> (63 - (b - 1) % 64);
  if (w0 == w1) {
    bits[w0] |= head & tail;
    return;
  }
  bits[w0] |= head;
  for (uint32_t i = w0 + 1; i < w1; i++) bits[i] = ~0ull;
  bits[w1] |= tail;
}

/* ORs a row of `width` bits (bits past width are 0) into the cleared mask at
 * row y; rows are not padded, so the row starts at an arbitrary bit. */
static void blit_row(struct osseg_bitmask *out, const uint64_t *row, size_t rw,
                     uint32_t y) {
  uint64_t o = (uint64_t)y * out->width;
  size_t wi = (size_t)(o / 64);
  unsigned sh = (unsigned)(o % 64);
  uint64_t *dst = out->bits;
  for (size_t i = 0; i < rw; i++) {
    uint64_t x = row[i];
    if (!x) continue;
    dst[wi + i] |= x << sh;
    if (sh && wi + i + 1 < out->nwords) dst[wi + i + 1] |= x >> (64 - sh);
  }
}

/* Per-row classification bits (below / above for each model) of one
 * source row, cached because every row serves two cell rows. */
struct row_feat {
  uint64_t *bits; /* nmodels * 2 * cw words: model j below, model j above */
  uint32_t row;
  int valid;
};

/* Scratch memory of one call, carved from one allocation. */
struct scratch {
  uint64_t *on, *mixed, *lo, *hi; /* cw words each */
  uint64_t *tmpl, *row;           /* rw words each */
  struct row_feat feat[2];
  uint32_t *ranges;               /* 2 * (in_width + 1) */
  float *h;                       /* 2 * k rows of out_width */
  /* Hard threshold: the source row whose full-width interpolation is in
   * row full_buf (0 or 1) of h, or UINT32_MAX. */
  uint32_t full_row;
  int full_buf;
  size_t cw, rw;
  void *mem;
};

/* Bytes of scratch for k models on plan's geometry. */
static int scratch_bytes(const struct osseg_upsample_plan *plan, size_t k, size_t *out,
                         size_t *off_h, size_t *off_r) {
  size_t cw = ((size_t)plan->in_width + 63) / 64, rw = ((size_t)plan->out_width + 63) / 64;
  /* k <= 64 and cw <= 256, so the feature words cannot overflow. */
  size_t words = 4 * cw + 2 * rw + 2 * (2 * k * cw);
  size_t nranges = 2 * ((size_t)plan->in_width + 1);
  size_t hfloats, bytes;
  if (osseg__mul_size(2 * k, plan->out_width, &hfloats) != 0) return OSSEG_EOVERFLOW;
  /* Layout: words (8-byte), then floats (64-byte aligned for full-line
   * loads), then ranges. */
  *off_h = (words * 8 + 63) & ~(size_t)63;
  if (osseg__mul_size(hfloats, sizeof(float), &bytes) != 0) return OSSEG_EOVERFLOW;
  if (osseg__add_size(*off_h, bytes, &bytes) != 0) return OSSEG_EOVERFLOW;
  *off_r = bytes;
  if (osseg__add_size(bytes, nranges * sizeof(uint32_t), out) != 0) return OSSEG_EOVERFLOW;
  return 0;
}

/* Carves the call's scratch from the plan's reservation when it is large
 * enough, else from one new allocation (s->mem, freed by the caller). */
static int scratch_alloc(struct scratch *s, const struct osseg_upsample_plan *plan,
                         size_t k) {
  s->cw = ((size_t)plan->in_width + 63) / 64;
  s->rw = ((size_t)plan->out_width + 63) / 64;
  size_t bytes, off_h, off_r;
  int rc = scratch_bytes(plan, k, &bytes, &off_h, &off_r);
  if (rc) return rc;
  const struct osseg__ut_tables *t = plan->impl_;
  char *mem;
  s->mem = NULL;
  if (t->scratch && k <= t->scratch_k) {
    mem = t->scratch;
  } else {
    mem = osseg__aligned_alloc(64, bytes);
    if (!mem) return OSSEG_ENOMEM;
    s->mem = mem;
  }
  uint64_t *w = (uint64_t *)(void *)mem;
  s->on = w, w += s->cw;
  s->mixed = w, w += s->cw;
  s->lo = w, w += s->cw;
  s->hi = w, w += s->cw;
  s->tmpl = w, w += s->rw;
  s->row = w, w += s->rw;
  for (int i = 0; i < 2; i++) {
    s->feat[i].bits = w, w += 2 * k * s->cw;
    s->feat[i].valid = 0;
    s->feat[i].row = 0;
  }
  s->h = (float *)(void *)(mem + off_h);
  s->full_row = UINT32_MAX;
  s->full_buf = 0;
  s->ranges = (uint32_t *)(void *)(mem + off_r);
  return 0;
}

static int check_args(const struct osseg_upsample_plan *plan, size_t row_stride,
                      const struct osseg_bitmask *out) {
  if (!plan || !plan->impl_ || !out || !out->bits) return OSSEG_EINVAL;
  if (row_stride < plan->in_width) return OSSEG_EINVAL;
  /* The last row's end must be addressable: a stride from a corrupted
   * tensor header must not wrap the pointer arithmetic. */
  size_t span;
  if (osseg__mul_size((size_t)plan->in_height - 1, row_stride, &span) != 0 ||
      osseg__add_size(span, plan->in_width, &span) != 0 ||
      span > PTRDIFF_MAX / sizeof(float))
    return OSSEG_EOVERFLOW;
  if (out->height != plan->out_height || out->width != plan->out_width)
    return OSSEG_ESHAPE;
  return 0;
}

/* Classification bits of source row j for all models, computed at most
 * once per call: the cell-row loop asks for rows r and r + 1 in increasing
 * order, so two slots suffice; `keep` is the row that must stay cached. */
static const uint64_t *row_features(const struct osseg__ut_ops *ops,
                                    const float *const *planes, size_t nmodels,
                                    size_t row_stride, uint32_t w, float t_lo,
                                    float t_hi, struct scratch *s, uint32_t j,
                                    uint32_t keep) {
  for (int i = 0; i < 2; i++)
    if (s->feat[i].valid && s->feat[i].row == j) return s->feat[i].bits;
  int slot = s->feat[0].valid && s->feat[0].row == keep ? 1 : 0;
  struct row_feat *f = &s->feat[slot];
  for (size_t m = 0; m < nmodels; m++)
    ops->classify_row(planes[m] + (size_t)j * row_stride, w, t_lo, t_hi,
                      f->bits + 2 * m * s->cw, f->bits + (2 * m + 1) * s->cw);
  f->row = j;
  f->valid = 1;
  return f->bits;
}

/* on / mixed bits of the cells of cell row r (source rows r and rn): a
 * cell is off when all four corners of every model are below, on when all
 * are above. lo and hi first collect "below/above in both rows, in every
 * model"; cell c then needs columns c and c + 1 (c alone for the last
 * column, where the source index is clamped), i.e. x & (x >> 1). */
static void classify_cells(const uint64_t *fr, const uint64_t *fn, size_t nmodels,
                           uint32_t w, struct scratch *s) {
  size_t cw = s->cw;
  for (size_t i = 0; i < cw; i++) {
    uint64_t lo = ~0ull, hi = ~0ull;
    for (size_t m = 0; m < nmodels; m++) {
      lo &= fr[2 * m * cw + i] & fn[2 * m * cw + i];
      hi &= fr[(2 * m + 1) * cw + i] & fn[(2 * m + 1) * cw + i];
    }
    s->lo[i] = lo;
    s->hi[i] = hi;
  }
  /* Column w does not exist: treat it as agreeing, so the last cell depends
   * on column w - 1 alone. Bits past w stay 0 (the rows' bits are 0 there). */
  unsigned tail = w % 64;
  if (tail) {
    s->lo[cw - 1] |= 1ull << tail;
    s->hi[cw - 1] |= 1ull << tail;
  }
  for (size_t i = 0; i < cw; i++) {
    uint64_t next_lo = i + 1 < cw ? s->lo[i + 1] : (tail ? 0 : 1);
    uint64_t next_hi = i + 1 < cw ? s->hi[i + 1] : (tail ? 0 : 1);
    uint64_t off = s->lo[i] & ((s->lo[i] >> 1) | (next_lo << 63));
    uint64_t on = s->hi[i] & ((s->hi[i] >> 1) | (next_hi << 63));
    uint64_t valid = i + 1 < cw || !tail ? ~0ull : (1ull << tail) - 1;
    s->on[i] = on & valid;
    s->mixed[i] = ~(on | off) & valid;
  }
}

/* Shared cell-row loop of both entry points. k == 0 means the hard
 * threshold on planes[0] with threshold thr (t_lo = t_hi = thr); k >= 1
 * the soft vote with probability threshold p and logit-space
 * classification thresholds t_lo / t_hi: all models below logit(p) means
 * every probability and hence their mean is below p (and symmetrically
 * above). */
static void run_driver(const struct osseg__ut_ops *ops,
                       const struct osseg_upsample_plan *plan,
                       const float *const *planes, size_t k, size_t row_stride,
                       float thr, float p, float t_lo, float t_hi, struct scratch *s,
                       struct osseg_bitmask *out) {
  const struct osseg__ut_tables *t = plan->impl_;
  uint32_t in_h = plan->in_height, in_w = plan->in_width, out_w = plan->out_width;
  size_t nmodels = k ? k : 1;
  size_t hstride = out_w;
  if (k == 0) t_lo = t_hi = thr;
  osseg_bitmask_clear(out);
  for (uint32_t r = 0; r < in_h; r++) {
    uint32_t ya = t->ys[r], yb = t->ys[r + 1];
    if (ya == yb) continue; /* downsampling skipped this source row */
    uint32_t rn = r + 1 < in_h ? r + 1 : r;
    const uint64_t *fr = row_features(ops, planes, nmodels, row_stride, in_w, t_lo, t_hi,
                                      s, r, UINT32_MAX);
    const uint64_t *fn = row_features(ops, planes, nmodels, row_stride, in_w, t_lo, t_hi,
                                      s, rn, r);
    classify_cells(fr, fn, nmodels, in_w, s);
    const uint64_t *on = s->on, *mixed = s->mixed;
    int any_on = 0;
    uint32_t nmixed = 0;
    for (size_t i = 0; i < s->cw; i++) {
      any_on |= on[i] != 0;
      nmixed += (uint32_t)__builtin_popcountll(mixed[i]);
    }
    int any_mixed = nmixed > 0;
    if (!any_on && !any_mixed) {
      s->full_row = UINT32_MAX;
      continue;
    }

    /* Mixed cells: the output column ranges to interpolate. Ranges closer
     * than MERGE_GAP are merged, and a row that is mostly mixed becomes
     * one full-width range: interpolating a decided cell exactly gives the
     * bit the template already has (that is what the margins guarantee),
     * and a few long ranges cost far less than many short ones, each with
     * its masked head and tail. Noisy logits (an untrained model) make
     * nearly every cell mixed. */
    uint32_t nr = 0, covered = 0, pos = 0, ca, cb;
    /* Half the cells mixed: full width without listing them. */
    if (nmixed >= in_w / 2 && in_w >= 2) covered = out_w;
    while (any_mixed && covered < out_w && next_run(mixed, s->cw, &pos, &ca, &cb)) {
      uint32_t xa = t->xs[ca], xb = t->xs[cb > in_w ? in_w : cb];
      if (xa == xb) continue;
      if (nr > 0 && xa - s->ranges[2 * nr - 1] < MERGE_GAP) {
        covered += xb - s->ranges[2 * nr - 1];
        s->ranges[2 * nr - 1] = xb;
        continue;
      }
      s->ranges[2 * nr] = xa;
      s->ranges[2 * nr + 1] = xb;
      covered += xb - xa;
      nr++;
    }
    int full = covered >= out_w / 2;
    if (full) {
      nr = 1;
      s->ranges[0] = 0;
      s->ranges[1] = out_w;
    }

    /* The on-cells give the same bits on every output row of this cell
     * row: build that template once (a full-width range sets them all by
     * itself). */
    memset(s->tmpl, 0, s->rw * sizeof(uint64_t));
    pos = 0;
    while (any_on && !full && next_run(on, s->cw, &pos, &ca, &cb))
      set_bits(s->tmpl, t->xs[ca], t->xs[cb > in_w ? in_w : cb]);
    if (nr == 0) {
      for (uint32_t y = ya; y < yb; y++) blit_row(out, s->tmpl, s->rw, y);
      s->full_row = UINT32_MAX;
      continue;
    }

    uint32_t r1 = t->y1[ya];
    if (k == 0) {
      /* Hard threshold: two row buffers, swapped rather than recomputed
       * when this cell row's top source row is the previous one's bottom
       * row, as it is whenever consecutive cell rows are both full. */
      float *h0 = s->h, *h1 = s->h + hstride;
      if (full && s->full_row == r) {
        if (s->full_buf != 0) {
          float *tmp = h0;
          h0 = h1;
          h1 = tmp;
        }
      } else {
        for (uint32_t i = 0; i < nr; i++)
          ops->hinterp(planes[0] + (size_t)r * row_stride, t, s->ranges[2 * i],
                       s->ranges[2 * i + 1], h0);
      }
      for (uint32_t i = 0; i < nr; i++)
        ops->hinterp(planes[0] + (size_t)r1 * row_stride, t, s->ranges[2 * i],
                     s->ranges[2 * i + 1], h1);
      /* h1 now holds the whole of source row r1 when full. */
      s->full_row = full ? r1 : UINT32_MAX;
      s->full_buf = h1 == s->h ? 0 : 1;
      if (full && out_w % 64 == 0) {
        /* Rows start on word boundaries of the cleared mask: threshold
         * straight into it. */
        for (uint32_t y = ya; y < yb; y++)
          ops->vthresh(h0, h1, t->wy0[y], t->wy1[y], thr, 0, out_w,
                       out->bits + (size_t)y * (out_w / 64));
        continue;
      }
      for (uint32_t y = ya; y < yb; y++) {
        memcpy(s->row, s->tmpl, s->rw * sizeof(uint64_t));
        for (uint32_t i = 0; i < nr; i++)
          ops->vthresh(h0, h1, t->wy0[y], t->wy1[y], thr, s->ranges[2 * i],
                       s->ranges[2 * i + 1], s->row);
        blit_row(out, s->row, s->rw, y);
      }
      continue;
    }
    for (size_t j = 0; j < nmodels; j++) {
      float *h0 = s->h + 2 * j * hstride, *h1 = h0 + hstride;
      for (uint32_t i = 0; i < nr; i++) {
        ops->hinterp(planes[j] + (size_t)r * row_stride, t, s->ranges[2 * i],
                     s->ranges[2 * i + 1], h0);
        ops->hinterp(planes[j] + (size_t)r1 * row_stride, t, s->ranges[2 * i],
                     s->ranges[2 * i + 1], h1);
      }
    }
    for (uint32_t y = ya; y < yb; y++) {
      memcpy(s->row, s->tmpl, s->rw * sizeof(uint64_t));
      for (uint32_t i = 0; i < nr; i++)
        ops->vsoft(s->h, hstride, k, t->wy0[y], t->wy1[y], p, s->ranges[2 * i],
                   s->ranges[2 * i + 1], s->row);
      blit_row(out, s->row, s->rw, y);
    }
  }
}

int osseg_upsample_plan_reserve(struct osseg_upsample_plan *plan, size_t k) {
  struct osseg__ut_tables *t = plan->impl_;
  if (!t || k == 0 || k > UT_MAX_K) return OSSEG_EINVAL;
  if (t->scratch && t->scratch_k >= k) return 0;
  size_t bytes, off_h, off_r;
  int rc = scratch_bytes(plan, k, &bytes, &off_h, &off_r);
  if (rc) return rc;
  void *mem = osseg__aligned_alloc(64, bytes);
  if (!mem) return OSSEG_ENOMEM;
  osseg__free(t->scratch);
  t->scratch = mem;
  t->scratch_k = k;
  return 0;
}

int osseg__upsample_threshold_ops(const struct osseg__ut_ops *ops,
                                  const struct osseg_upsample_plan *plan,
                                  const float *logits, size_t row_stride,
                                  float threshold_logit, struct osseg_bitmask *out) {
  int rc = check_args(plan, row_stride, out);
  if (rc < 0) return rc;
  if (!logits) return OSSEG_EINVAL;
  struct scratch s;
  rc = scratch_alloc(&s, plan, 1);
  if (rc < 0) return rc;
  const float *planes[1] = {logits};
  run_driver(ops, plan, planes, 0, row_stride, threshold_logit, 0.0f, 0.0f, 0.0f, &s, out);
  osseg__free(s.mem);
  return 0;
}

int osseg__upsample_soft_vote_ops(const struct osseg__ut_ops *ops,
                                  const struct osseg_upsample_plan *plan,
                                  const float *const *logits, size_t k,
                                  size_t row_stride, float prob_threshold,
                                  struct osseg_bitmask *out) {
  int rc = check_args(plan, row_stride, out);
  if (rc < 0) return rc;
  if (!logits || k == 0 || k > UT_MAX_K) return OSSEG_EINVAL;
  if (!(prob_threshold > 0.0f && prob_threshold < 1.0f)) return OSSEG_EINVAL;
  for (size_t j = 0; j < k; j++)
    if (!logits[j]) return OSSEG_EINVAL;
  /* Classification thresholds in logit space. The margin delta makes
   * sigmoid(logit(p) -/+ delta) differ from p by about p(1-p)delta, far more
   * than the few-ulp error of sigmoid and of the mean, for any p. */
  double pd = prob_threshold;
  double lg = log(pd) - log1p(-pd);
  double delta = 0x1p-10 + 0x1p-14 / (pd * (1.0 - pd));
  float t_lo = (float)(lg - delta), t_hi = (float)(lg + delta);
  struct scratch s;
  rc = scratch_alloc(&s, plan, k);
  if (rc < 0) return rc;
  run_driver(ops, plan, logits, k, row_stride, 0.0f, prob_threshold, t_lo, t_hi, &s, out);
  osseg__free(s.mem);
  return 0;
}

int osseg_upsample_threshold(const struct osseg_upsample_plan *plan,
                             const float *logits, size_t row_stride,
                             float threshold_logit, struct osseg_bitmask *out) {
  return osseg__upsample_threshold_ops(osseg__ut_ops_dispatch(), plan, logits,
                                       row_stride, threshold_logit, out);
}

int osseg_upsample_soft_vote(const struct osseg_upsample_plan *plan,
                             const float *const *logits, size_t k,
                             size_t row_stride, float prob_threshold,
                             struct osseg_bitmask *out) {
  return osseg__upsample_soft_vote_ops(osseg__ut_ops_dispatch(), plan, logits, k,
                                       row_stride, prob_threshold, out);
}

/* ----------------------------------------------------- generic loops --- */

static void classify_row_generic(const float *row, uint32_t w, float t_lo, float t_hi,
                                 uint64_t *below, uint64_t *above) {
  size_t nw = ((size_t)w + 63) / 64;
  memset(below, 0, nw * sizeof(uint64_t));
  memset(above, 0, nw * sizeof(uint64_t));
  osseg__ut_classify_range(row, 0, w, t_lo, t_hi, below, above);
}

static void hinterp_generic(const float *row, const struct osseg__ut_tables *t,
                            uint32_t xa, uint32_t xb, float *h) {
  for (uint32_t x = xa; x < xb; x++)
    h[x] = osseg__ut_lerp(row[t->x0[x]], t->wx0[x], row[t->x1[x]], t->wx1[x]);
}

static void vthresh_generic(const float *h0, const float *h1, float wy0, float wy1,
                            float thr, uint32_t xa, uint32_t xb, uint64_t *bits) {
  for (uint32_t x = xa; x < xb; x++)
    if (osseg__ut_lerp(h0[x], wy0, h1[x], wy1) > thr) bits[x / 64] |= 1ull << (x % 64);
}

static void vsoft_generic(const float *h, size_t hstride, size_t k, float wy0,
                          float wy1, float p, uint32_t xa, uint32_t xb,
                          uint64_t *bits) {
  for (uint32_t x = xa; x < xb; x++) {
    float sum = 0.0f;
    for (size_t j = 0; j < k; j++) {
      const float *h0 = h + 2 * j * hstride, *h1 = h0 + hstride;
      float v = osseg__ut_lerp(h0[x], wy0, h1[x], wy1);
      sum += 1.0f / (1.0f + expf(-v));
    }
    if (sum / (float)k > p) bits[x / 64] |= 1ull << (x % 64);
  }
}

const struct osseg__ut_ops osseg__ut_ops_generic = {
    classify_row_generic, hinterp_generic, vthresh_generic, vsoft_generic, "generic"};
