/* Depthwise convolution as an own loop, for the shapes oneDNN 2.6 only runs
 * as im2col + gemm or reference code: the dilated 3x3 depthwise convs of
 * DeepLabV3+'s ASPP (dilation 12 / 24 / 36 on the 1/16 map, 32x32 at 512²),
 * whose dilated extent exceeds the map, so that most taps fall into the
 * padding. oneDNN ran them as x64:gemm:jit in 52-60 ms each (im2col over
 * 2048 groups); they are 9 multiply-adds per output element. The loop visits
 * only the taps inside the map, vectorised over the contiguous channels of
 * nhwc; fp32 accumulation for both precisions. */
#include "build.h"
#include "ops/conv.h"
#include "isa_variants.h"
#include "bf16.h"

#include <omp.h>
#include <string.h>

#define DW_CBLOCK 64   /* channels accumulated in registers at once */
#define DW_ROW_BLOCK 8 /* output rows between run-control checks */

struct dw_step {
  int x, y;
  int64_t n, C, H, W, OH, OW;
  int64_t kh, kw, sh, sw, dh, dw, ph, pw;
  float *w; /* [kh * kw][C] */
  float *b; /* [C] */
  int x_bf16, y_bf16; /* the conv producing the logits reads bf16, writes fp32 */
};

/* Output rows [r0, r1) of all images (row r = image r / OH, row r % OH). */
static inline __attribute__((always_inline)) void dw_rows_impl(const struct dw_step *d,
                                                              const void *xp, void *yp,
                                                              int64_t r0, int64_t r1) {
  const int64_t C = d->C;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t img = r / d->OH, oh = r % d->OH;
    for (int64_t ow = 0; ow < d->OW; ow++) {
      const size_t opix = (size_t)((img * d->OH + oh) * d->OW + ow) * (size_t)C;
      for (int64_t c0 = 0; c0 < C; c0 += DW_CBLOCK) {
        const int64_t nc = C - c0 < DW_CBLOCK ? C - c0 : DW_CBLOCK;
        float acc[DW_CBLOCK];
        for (int64_t c = 0; c < nc; c++) acc[c] = d->b[c0 + c];
        for (int64_t i = 0; i < d->kh; i++) {
          const int64_t ih = oh * d->sh - d->ph + i * d->dh;
          if (ih < 0 || ih >= d->H) continue;
          for (int64_t j = 0; j < d->kw; j++) {
            const int64_t iw = ow * d->sw - d->pw + j * d->dw;
            if (iw < 0 || iw >= d->W) continue;
            const float *wt = d->w + (size_t)(i * d->kw + j) * (size_t)C + (size_t)c0;
            const size_t ipix = (size_t)((img * d->H + ih) * d->W + iw) * (size_t)C + (size_t)c0;
            if (d->x_bf16) {
              const uint16_t *xr = (const uint16_t *)xp + ipix;
#pragma omp simd
              for (int64_t c = 0; c < nc; c++) acc[c] += wt[c] * osseg__bf16_f32(xr[c]);
            } else {
              const float *xr = (const float *)xp + ipix;
#pragma omp simd
              for (int64_t c = 0; c < nc; c++) acc[c] += wt[c] * xr[c];
            }
          }
        }
        if (d->y_bf16) {
          uint16_t *yr = (uint16_t *)yp + opix + c0;
#pragma omp simd
          for (int64_t c = 0; c < nc; c++) yr[c] = osseg__f32_bf16_v(acc[c]);
        } else {
          memcpy((float *)yp + opix + c0, acc, (size_t)nc * sizeof(float));
        }
      }
    }
  }
}

OSSEG__ISA_VARIANTS(dw_rows, (const struct dw_step *d, const void *xp, void *yp, int64_t r0, int64_t r1),
                    (d, xp, yp, r0, r1))

static dnnl_status_t run_dw(struct osseg_model *m, struct osseg__step *s) {
  const struct dw_step *d = s->priv;
  const void *x = osseg__tensor_ptr(m, d->x);
  void *y = osseg__tensor_ptr(m, d->y);
  const dw_rows_fn fn = dw_rows_select();
  const int64_t rows = d->n * d->OH;
  /* blocks of rows, so the run control is checked every few output rows
   * (a stopped run's output is discarded by the caller) */
  const int64_t block = DW_ROW_BLOCK;
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    for (int64_t r = r0; r < r1 && !osseg__should_stop(m); r += block)
      fn(d, x, y, r, r + block < r1 ? r + block : r1);
  }
  return dnnl_success;
}

int osseg__compile_dwconv(struct osseg_model *m, struct osseg__node *n, const float *wdata,
                          const int64_t *wdims, const float *bias, const struct osseg__window *win,
                          struct osseg_diag *diag) {
  const struct osseg__graph *g = &m->g;
  const int x = n->in[0], y = n->out[0];
  const struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y];
  struct dw_step *d = osseg__model_alloc(m, sizeof *d);
  if (!d) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  d->x = x, d->y = y;
  d->n = xt->dims[0], d->C = xt->dims[1], d->H = xt->dims[2], d->W = xt->dims[3];
  d->OH = yt->dims[2], d->OW = yt->dims[3];
  d->kh = wdims[2], d->kw = wdims[3];
  d->sh = win->s[0], d->sw = win->s[1], d->dh = win->d[0], d->dw = win->d[1];
  d->ph = win->pb[0], d->pw = win->pb[1];
  d->x_bf16 = m->md[x].data_type == dnnl_bf16;
  d->y_bf16 = m->md[y].data_type == dnnl_bf16;
  const int64_t taps = d->kh * d->kw, C = d->C;
  d->w = osseg__model_alloc(m, (size_t)(taps * C) * sizeof(float));
  d->b = osseg__model_alloc(m, (size_t)C * sizeof(float));
  if (!d->w || !d->b) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  /* ONNX [C, 1, kh, kw] -> [kh * kw][C] */
  for (int64_t c = 0; c < C; c++) {
    for (int64_t t = 0; t < taps; t++) d->w[t * C + c] = wdata[c * taps + t];
    d->b[c] = bias ? bias[c] : 0.f;
  }
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, (int)(n - g->nodes));
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->run = run_dw;
  osseg__step_own(s, "own: depthwise conv", 1, x, y);
  s->priv = d;
  s->uses[s->nuses++] = x;
  s->uses[s->nuses++] = y;
  m->params += (uint64_t)(taps * C + (bias ? C : 0));
  m->flops += 2ull * (uint64_t)(d->n * d->OH * d->OW) * (uint64_t)(C * taps);
  return 0;
}
