/* osseg.ResizeSum: y = act(bias + sum_i bilinear_resize_i(x_i)) on nhwc
 * tensors with the same channel count, one pass over the output.
 *
 * passes/fuse_segformer_decoder.c rewrites the SegFormer (All-MLP) decoder into it:
 * Concat(Resize(Linear_i(x_i))) -> 1x1 Conv [-> ReLU] equals
 * sum_i Resize((W_i Linear_i)(x_i)) + b [-> ReLU], because a 1x1 conv is a
 * per-pixel linear map over the concatenated channels (W_i = its column
 * block for branch i) and bilinear resizing is a per-channel convex
 * combination, so both commute (biases included: the weights sum to 1).
 * The 1x1 conv then runs at each branch's own resolution inside its Linear,
 * and neither the four resized tensors nor their concat is materialised. */
#include "build.h"
#include "bf16.h"
#include "view.h"
#include "isa_variants.h"

#include <math.h>
#include <omp.h>
#include <string.h>



#define MAX_BRANCH 8
#define MAX_CH 4096

struct rs_branch {
  int t, identity;
  int64_t ih, iw;
  int32_t *y0, *y1, *x0, *x1;
  float *wy, *wx;
};

struct rs_step {
  int nb, y, relu, bf16;
  int64_t oh, ow, c;
  const float *bias;
  struct rs_branch b[MAX_BRANCH];
};


/* Memory-bound: compiled for AVX-512 / AVX2 / baseline (isa_variants.h). */
static inline __attribute__((always_inline)) void rs_rows_impl(const struct rs_step *r,
                                                              const void *const *src,
                                                              void *dst, int64_t y0,
                                                              int64_t y1) {
  const int64_t C = r->c;
  float acc[MAX_CH];
  for (int64_t y = y0; y < y1; y++) {
    for (int64_t x = 0; x < r->ow; x++) {
      memcpy(acc, r->bias, sizeof(float) * (size_t)C);
      for (int i = 0; i < r->nb; i++) {
        const struct rs_branch *b = &r->b[i];
        if (b->identity) { /* same size, zero weights: a plain add */
          size_t p = ((size_t)y * (size_t)r->ow + (size_t)x) * (size_t)C;
          if (!r->bf16) {
            const float *sp = (const float *)src[i] + p;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) acc[c] += sp[c];
          } else {
            const uint16_t *sp = (const uint16_t *)src[i] + p;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) acc[c] += osseg__bf16_f32(sp[c]);
          }
          continue;
        }
        const float wy = b->wy[y], wx = b->wx[x];
        size_t r0 = (size_t)b->y0[y] * (size_t)b->iw, r1 = (size_t)b->y1[y] * (size_t)b->iw;
        size_t p00 = (r0 + (size_t)b->x0[x]) * (size_t)C, p01 = (r0 + (size_t)b->x1[x]) * (size_t)C;
        size_t p10 = (r1 + (size_t)b->x0[x]) * (size_t)C, p11 = (r1 + (size_t)b->x1[x]) * (size_t)C;
        if (!r->bf16) {
          const float *sp = src[i];
#pragma omp simd
          for (int64_t c = 0; c < C; c++) {
            float top = sp[p00 + c] + (sp[p01 + c] - sp[p00 + c]) * wx;
            float bot = sp[p10 + c] + (sp[p11 + c] - sp[p10 + c]) * wx;
            acc[c] += top + (bot - top) * wy;
          }
        } else {
          const uint16_t *sp = src[i];
#pragma omp simd
          for (int64_t c = 0; c < C; c++) {
            float a = osseg__bf16_f32(sp[p00 + c]), bb = osseg__bf16_f32(sp[p01 + c]);
            float e = osseg__bf16_f32(sp[p10 + c]), f = osseg__bf16_f32(sp[p11 + c]);
            float top = a + (bb - a) * wx, bot = e + (f - e) * wx;
            acc[c] += top + (bot - top) * wy;
          }
        }
      }
      size_t o = ((size_t)y * (size_t)r->ow + (size_t)x) * (size_t)C;
      if (r->relu) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) acc[c] = acc[c] > 0.f ? acc[c] : 0.f;
      }
      if (!r->bf16) memcpy((float *)dst + o, acc, sizeof(float) * (size_t)C);
      else {
        uint16_t *d = (uint16_t *)dst + o;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) d[c] = osseg__f32_bf16_v(acc[c]);
      }
    }
  }
}

OSSEG__ISA_VARIANTS(rs_rows, (const struct rs_step *r, const void *const *src, void *dst, int64_t y0, int64_t y1),
                    (r, src, dst, y0, y1))


static dnnl_status_t run_rs(struct osseg_model *m, struct osseg__step *s) {
  const struct rs_step *r = s->priv;
  const void *src[MAX_BRANCH];
  for (int i = 0; i < r->nb; i++) src[i] = osseg__tensor_ptr(m, r->b[i].t);
  void *dst = osseg__tensor_ptr(m, r->y);
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int64_t per = (r->oh + nt - 1) / nt, y0 = id * per, y1 = y0 + per < r->oh ? y0 + per : r->oh;
    if (y0 < y1) rs_rows_select()(r, src, dst, y0, y1);
  }
  return dnnl_success;
}

static int compile_resize_sum(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int ni = (int)(n - g->nodes), nb = n->nin - 1;
  const struct osseg__attr *modes = osseg__attr_find(n, "modes"), *scales = osseg__attr_find(n, "scales");
  const struct osseg__tensor *yt = &g->tensors[n->out[0]];
  if (nb < 1 || nb > MAX_BRANCH || !modes || !scales || modes->n != (size_t)nb ||
      scales->n != (size_t)(2 * nb) || yt->rank != 4 || yt->dims[1] > MAX_CH || yt->dims[0] != 1)
    return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': bad osseg.ResizeSum", n->name);
  struct rs_step *r = osseg__model_alloc(m, sizeof *r);
  if (!r) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  memset(r, 0, sizeof *r);
  r->nb = nb, r->y = n->out[0], r->relu = (int)osseg__attr_int(n, "relu", 0);
  r->bf16 = m->act_dt == dnnl_bf16;
  r->oh = yt->dims[2], r->ow = yt->dims[3], r->c = yt->dims[1];
  const struct osseg__tensor *bt = &g->tensors[n->in[nb]];
  float *bias = osseg__model_alloc(m, sizeof(float) * (size_t)r->c);
  if (!bias) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  for (int64_t c = 0; c < r->c; c++) bias[c] = (float)osseg__const_f64(bt, (size_t)c);
  r->bias = bias;
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, ni);
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->run = run_rs;
  osseg__step_own(s, "own: resize and sum", 0, n->in[0], r->y);
  s->priv = r;
  s->uses[s->nuses++] = r->y;
  for (int i = 0; i < nb; i++) {
    struct rs_branch *b = &r->b[i];
    const struct osseg__tensor *xt = &g->tensors[n->in[i]];
    b->t = n->in[i];
    b->ih = xt->dims[2], b->iw = xt->dims[3];
    s->uses[s->nuses++] = b->t;
    size_t tab = (size_t)(r->oh + r->ow) * (2 * sizeof(int32_t) + sizeof(float));
    unsigned char *buf = osseg__model_alloc(m, tab);
    if (!buf) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    b->y0 = (int32_t *)buf;
    b->y1 = b->y0 + r->oh;
    b->x0 = b->y1 + r->oh;
    b->x1 = b->x0 + r->ow;
    b->wy = (float *)(b->x1 + r->ow);
    b->wx = b->wy + r->oh;
    for (int axis = 0; axis < 2; axis++) {
      int64_t in = axis ? b->iw : b->ih, out = axis ? r->ow : r->oh;
      int32_t *i0 = axis ? b->x0 : b->y0, *i1 = axis ? b->x1 : b->y1;
      float *wt = axis ? b->wx : b->wy;
      osseg__linear_axis((int)modes->ints[i], scales->floats[2 * i + axis], in, out, i0, i1, wt);
    }
    b->identity = b->ih == r->oh && b->iw == r->ow;
    for (int64_t o = 0; o < r->oh && b->identity; o++) b->identity = b->y0[o] == o && b->wy[o] == 0.f;
    for (int64_t o = 0; o < r->ow && b->identity; o++) b->identity = b->x0[o] == o && b->wx[o] == 0.f;
  }
  m->flops += (uint64_t)(r->oh * r->ow * r->c) * (uint64_t)(nb * 7 + 1);
  return 0;
}

/* osseg.ResizePlanar: the graph's final bilinear Resize (the segmentation
 * head's x4 upsampling) writing NCHW directly, so the output needs no nhwc
 * -> nchw transposition afterwards. Per channel: each source row is
 * interpolated horizontally once (cached while output rows use it), then
 * output rows are vertical blends; the blend formula is resize_pad.c's. */
struct rp_step {
  int x, y, bf16;
  int64_t c, ih, iw, oh, ow, cap;
  int tmp;
  int32_t *y0, *y1, *x0, *x1;
  float *wy, *wx;
};

static inline __attribute__((always_inline)) void rp_channel_impl(const struct rp_step *r,
                                                                 const void *src, void *dst,
                                                                 int64_t c, float *h0,
                                                                 float *h1) {
  int64_t have0 = -1, have1 = -1;
  const int64_t C = r->c, iw = r->iw, ow = r->ow;
  for (int64_t y = 0; y < r->oh; y++) {
    int64_t sy[2] = {r->y0[y], r->y1[y]};
    for (int k = 0; k < 2; k++) {
      float *h = k ? h1 : h0;
      int64_t *have = k ? &have1 : &have0;
      if (*have == sy[k]) continue;
      /* reuse the other cached row when it is the one needed */
      int64_t other = k ? have0 : have1;
      if (other == sy[k]) {
        memcpy(h, k ? h0 : h1, sizeof(float) * (size_t)ow);
      } else if (!r->bf16) {
        const float *row = (const float *)src + (size_t)sy[k] * (size_t)iw * (size_t)C + (size_t)c;
        for (int64_t x = 0; x < ow; x++) {
          float a = row[(size_t)r->x0[x] * (size_t)C], b = row[(size_t)r->x1[x] * (size_t)C];
          h[x] = a + (b - a) * r->wx[x];
        }
      } else {
        const uint16_t *row = (const uint16_t *)src + (size_t)sy[k] * (size_t)iw * (size_t)C + (size_t)c;
        for (int64_t x = 0; x < ow; x++) {
          float a = osseg__bf16_f32(row[(size_t)r->x0[x] * (size_t)C]);
          float b = osseg__bf16_f32(row[(size_t)r->x1[x] * (size_t)C]);
          h[x] = a + (b - a) * r->wx[x];
        }
      }
      *have = sy[k];
    }
    const float wy = r->wy[y];
    size_t o = ((size_t)c * (size_t)r->oh + (size_t)y) * (size_t)ow;
    if (!r->bf16) {
      float *d = (float *)dst + o;
#pragma omp simd
      for (int64_t x = 0; x < ow; x++) d[x] = h0[x] + (h1[x] - h0[x]) * wy;
    } else {
      uint16_t *d = (uint16_t *)dst + o;
      for (int64_t x = 0; x < ow; x++) d[x] = osseg__f32_bf16(h0[x] + (h1[x] - h0[x]) * wy);
    }
  }
}

OSSEG__ISA_VARIANTS(rp_channel, (const struct rp_step *r, const void *src, void *dst, int64_t c, float *h0, float *h1),
                    (r, src, dst, c, h0, h1))


static dnnl_status_t run_rp(struct osseg_model *m, struct osseg__step *s) {
  const struct rp_step *r = s->priv;
  const void *src = osseg__tensor_ptr(m, r->x);
  void *dst = osseg__tensor_ptr(m, r->y);
  float *tmp = osseg__tensor_ptr(m, r->tmp);
  int nt = omp_get_max_threads();
  if (nt > r->cap) nt = (int)r->cap;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t c = 0; c < r->c; c++) {
    float *h = tmp + (size_t)omp_get_thread_num() * 2 * (size_t)r->ow;
    rp_channel_select()(r, src, dst, c, h, h + r->ow);
  }
  return dnnl_success;
}

static int compile_resize_planar(struct osseg_model *m, struct osseg__node *n,
                                 struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int ni = (int)(n - g->nodes);
  double sc[4];
  int64_t sz[4];
  int err = osseg__resize_scales(g, n, sc, sz, diag);
  if (err) return err;
  const char *ctm = osseg__attr_str(n, "coordinate_transformation_mode", "half_pixel");
  int mode;
  if (!strcmp(ctm, "half_pixel")) mode = 0;
  else if (!strcmp(ctm, "pytorch_half_pixel")) mode = 1;
  else if (!strcmp(ctm, "align_corners")) mode = 2;
  else if (!strcmp(ctm, "asymmetric")) mode = 3;
  else return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': resize mode", n->name);
  struct rp_step *r = osseg__model_alloc(m, sizeof *r);
  if (!r) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  memset(r, 0, sizeof *r);
  const struct osseg__tensor *xt = &g->tensors[n->in[0]], *yt = &g->tensors[n->out[0]];
  r->x = n->in[0], r->y = n->out[0], r->bf16 = m->act_dt == dnnl_bf16;
  r->c = xt->dims[1], r->ih = xt->dims[2], r->iw = xt->dims[3], r->oh = yt->dims[2], r->ow = yt->dims[3];
  r->cap = omp_get_max_threads();
  if (r->cap > 256) r->cap = 256;
  size_t tab = (size_t)(r->oh + r->ow) * (2 * sizeof(int32_t) + sizeof(float));
  unsigned char *buf = osseg__model_alloc(m, tab);
  if (!buf) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  r->y0 = (int32_t *)buf;
  r->y1 = r->y0 + r->oh;
  r->x0 = r->y1 + r->oh;
  r->x1 = r->x0 + r->ow;
  r->wy = (float *)(r->x1 + r->ow);
  r->wx = r->wy + r->oh;
  for (int axis = 0; axis < 2; axis++) {
    int64_t in = axis ? r->iw : r->ih, out = axis ? r->ow : r->oh;
    int32_t *i0 = axis ? r->x0 : r->y0, *i1 = axis ? r->x1 : r->y1;
    float *wt = axis ? r->wx : r->wy;
    osseg__linear_axis(mode, sc[2 + axis], in, out, i0, i1, wt);
  }
  /* the output tensor is NCHW (the final reorder to the caller becomes a copy) */
  if (osseg__plain_md(&m->md[r->y], yt->dims, 4, m->act_dt))
    return osseg__fail(diag, OSSEG_EBACKEND, "md");
  r->tmp = osseg__add_temp(m, -1, diag);
  if (r->tmp < 0) return r->tmp;
  int64_t td[1] = {2 * r->ow * r->cap};
  g->tensors[r->tmp].rank = 1;
  g->tensors[r->tmp].dims[0] = td[0];
  if (osseg__plain_md(&m->md[r->tmp], td, 1, dnnl_f32)) return osseg__fail(diag, OSSEG_EBACKEND, "md");
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, ni);
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->run = run_rp;
  osseg__step_own(s, "own: planar resize", 0, r->x, r->y);
  s->priv = r;
  s->uses[s->nuses++] = r->x;
  s->uses[s->nuses++] = r->y;
  s->uses[s->nuses++] = r->tmp;
  m->flops += (uint64_t)(r->oh * r->ow * r->c) * 3;
  return 0;
}

const struct osseg__op osseg__ops_resize_fused[] = {
    {"osseg.ResizeSum", 0, 0, OSSEG__OP_INTERNAL, OSSEG__PREC_RUNTIME, NULL, NULL, compile_resize_sum},
    {"osseg.ResizePlanar", 0, 0, OSSEG__OP_INTERNAL | OSSEG__OP_UPSAMPLES, OSSEG__PREC_RUNTIME, NULL, NULL, compile_resize_planar},
    {0},
};
