/* Resize / Upsample and Pad as own loops on nhwc tensors.
 *
 * Nearest resize and pad are both "gathers": every output pixel copies one
 * input pixel (all channels) or a constant, so they share one kernel driven
 * by per-row and per-column source tables built at load. Bilinear resize
 * blends four pixels with per-row/column weights (half_pixel,
 * pytorch_half_pixel, align_corners, asymmetric). Memory-bound loops, split
 * across OpenMP threads by output row. */
#include "bf16.h"
#include "build.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* 8-bit gathers whose pixels are whole 64-byte lines (64-channel maps or
 * slices, aligned), with AVX-512 non-temporal stores: an int8 model's
 * upsampled map goes into a concat output far larger than the cache, read
 * only later by a conv (as ops/concat.c's copies). */
__attribute__((target("avx512f"))) static void gather2d_nt(const struct osseg__resize *r,
                                                           const unsigned char *src, unsigned char *dst) {
  const size_t C = (size_t)r->c, opix = (size_t)r->out_pix;
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t y = 0; y < r->oh; y++) {
      unsigned char *drow = dst + (size_t)y * (size_t)r->ow * opix + (size_t)r->out_coff;
      const unsigned char *srow = src + (size_t)r->y0[y] * (size_t)r->iw * C;
      for (int64_t x = 0; x < r->ow; x++) {
        const unsigned char *q = srow + (size_t)r->x0[x] * C;
        unsigned char *d = drow + (size_t)x * opix;
        for (size_t j = 0; j < C; j += 64) _mm512_stream_si512((void *)(d + j), _mm512_loadu_si512(q + j));
      }
    }
    _mm_sfence(); /* (each thread's streamed stores, before the barrier) */
  }
}

static int gather2d_lines_only(const struct osseg__resize *r, const void *dst) {
  return !(((uintptr_t)dst | (uintptr_t)r->c | (uintptr_t)r->out_pix | (uintptr_t)r->out_coff) % 64) &&
         (osseg_cpu_features() & OSSEG_CPU_AVX512);
}

static void run_gather2d(const struct osseg__resize *r, size_t es, const void *src, void *dst) {
  const int64_t C = r->c;
  const size_t pix = (size_t)C * es, opix = (size_t)r->out_pix * es, coff = (size_t)r->out_coff * es;
  uint32_t fill32;
  uint16_t fill16 = osseg__f32_bf16(r->value);
  memcpy(&fill32, &r->value, 4);
#pragma omp parallel for schedule(static)
  for (int64_t y = 0; y < r->oh; y++) {
    unsigned char *drow = (unsigned char *)dst + (size_t)y * (size_t)r->ow * opix + coff;
    int32_t sy = r->y0[y];
    for (int64_t x = 0; x < r->ow; x++) {
      int32_t sx = r->x0[x];
      unsigned char *d = drow + (size_t)x * opix;
      if (sy < 0 || sx < 0) {
        /* (8-bit maps are resized only, never padded: no fill) */
        if (es == 4) for (int64_t c = 0; c < C; c++) memcpy(d + c * 4, &fill32, 4);
        else if (es == 2) for (int64_t c = 0; c < C; c++) memcpy(d + c * 2, &fill16, 2);
        continue;
      }
      memcpy(d, (const unsigned char *)src + ((size_t)sy * (size_t)r->iw + (size_t)sx) * pix, pix);
    }
  }
}

static void run_linear2d(const struct osseg__resize *r, int bf16, const void *src, void *dst) {
  const int64_t C = r->c;
#pragma omp parallel for schedule(static)
  for (int64_t y = 0; y < r->oh; y++) {
    float wy = r->wy[y];
    size_t r0 = (size_t)r->y0[y] * (size_t)r->iw, r1 = (size_t)r->y1[y] * (size_t)r->iw;
    for (int64_t x = 0; x < r->ow; x++) {
      float wx = r->wx[x];
      size_t p00 = (r0 + (size_t)r->x0[x]) * (size_t)C, p01 = (r0 + (size_t)r->x1[x]) * (size_t)C;
      size_t p10 = (r1 + (size_t)r->x0[x]) * (size_t)C, p11 = (r1 + (size_t)r->x1[x]) * (size_t)C;
      size_t o = ((size_t)y * (size_t)r->ow + (size_t)x) * (size_t)r->out_pix + (size_t)r->out_coff;
      if (!bf16) {
        const float *s = src;
        float *d = dst;
        for (int64_t c = 0; c < C; c++) {
          float top = s[p00 + c] + (s[p01 + c] - s[p00 + c]) * wx;
          float bot = s[p10 + c] + (s[p11 + c] - s[p10 + c]) * wx;
          d[o + c] = top + (bot - top) * wy;
        }
      } else {
        const uint16_t *s = src;
        uint16_t *d = dst;
        for (int64_t c = 0; c < C; c++) {
          float a = osseg__bf16_f32(s[p00 + c]), b = osseg__bf16_f32(s[p01 + c]);
          float e = osseg__bf16_f32(s[p10 + c]), f = osseg__bf16_f32(s[p11 + c]);
          float top = a + (b - a) * wx, bot = e + (f - e) * wx;
          d[o + c] = osseg__f32_bf16(top + (bot - top) * wy);
        }
      }
    }
  }
}


static int infer_resize(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *y = &g->tensors[n->out[0]];
  int err = osseg__need_rank4(g, n, x, diag);
  if (err) return err;
  double sc[4];
  int64_t sz[4];
  err = osseg__resize_scales(g, n, sc, sz, diag);
  if (err) return err;
  if (sz[0] != x->dims[0] || sz[1] != x->dims[1])
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "resizing batch or channels is not supported", OSSEG__NODEARG);
  y->dtype = x->dtype;
  y->rank = 4;
  memcpy(y->dims, sz, sizeof sz);
  return 0;
}

static int infer_pad(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int64_t pads[16];
  int np = osseg__int_list(g, n, "pads", g->opset >= 11 ? 1 : -1, pads, 16, diag);
  if (np < 0) return np;
  if (np != 2 * x->rank) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "pads must have %d values", OSSEG__NODEARG, 2 * x->rank);
  if (g->opset >= 18 && osseg__in(g, n, 3)) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "axes input", OSSEG__NODEARG);
  y->dtype = x->dtype;
  y->rank = x->rank;
  for (int i = 0; i < x->rank; i++) {
    if (pads[i] < -x->dims[i] || pads[i] > 65536 || pads[i + x->rank] > 65536)
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "pad out of range", OSSEG__NODEARG);
    y->dims[i] = x->dims[i] + pads[i] + pads[i + x->rank];
    if (y->dims[i] < 0) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "negative output size", OSSEG__NODEARG);
  }
  return 0;
}

static dnnl_status_t run_gather2d_step(struct osseg_model *m, struct osseg__step *s) {
  const size_t es = osseg__step_es(m, s);
  void *dst = osseg__tensor_ptr(m, s->out);
  /* (a resize: no padded rows or columns, so no fill) */
  if (es == 1 && gather2d_lines_only(&s->rs, dst))
    gather2d_nt(&s->rs, osseg__tensor_ptr(m, s->in), dst);
  else
    run_gather2d(&s->rs, es, osseg__tensor_ptr(m, s->in), dst);
  return dnnl_success;
}

static dnnl_status_t run_linear2d_step(struct osseg_model *m, struct osseg__step *s) {
  run_linear2d(&s->rs, osseg__step_es(m, s) == 2, osseg__tensor_ptr(m, s->in),
               osseg__tensor_ptr(m, s->out));
  return dnnl_success;
}

static int own_step(struct osseg_model *m, struct osseg__node *n, int kind, int x, int y,
                    const struct osseg__resize *rs, struct osseg_diag *diag) {
  struct osseg__step *s = osseg__add_step(m, kind, (int)(n - m->g.nodes));
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->run = kind == OSSEG__STEP_LINEAR2D ? run_linear2d_step : run_gather2d_step;
  osseg__step_own(s, kind == OSSEG__STEP_LINEAR2D ? "own: bilinear resize" : "own: gather (nearest resize, pad)", 0, x, y);
  s->in = x;
  s->out = y;
  s->rs = *rs;
  s->uses[s->nuses++] = x;
  s->uses[s->nuses++] = y;
  return 0;
}

static int compile_resize(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y];
  double sc[4];
  int linear, cmode, nmode;
  int err = osseg__resize_parse(g, n, &linear, &cmode, &nmode, sc, diag);
  if (err) return err;
  /* 8-bit output (int8 models, passes/fuse_qdq.c: a nearest resize whose
   * readers take 8 bits): the input is quantized first, at its lower
   * resolution, unless its producer wrote 8 bits already; then bytes move */
  dnnl_data_type_t ydt = m->md[y].data_type;
  if ((ydt == dnnl_u8 || ydt == dnnl_s8) && m->md[x].data_type != ydt) {
    if (linear)
      return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': 8-bit linear resize", n->name);
    int xq = osseg__quantized_input(m, (int)(n - g->nodes), x,
                                    osseg__attr_float(n, "osseg.q_out_scale", 1.f),
                                    (int)osseg__attr_int(n, "osseg.q_out_zero", 0), ydt == dnnl_s8, diag);
    if (xq < 0) return xq;
    xt = &g->tensors[x], yt = &g->tensors[y];
    x = xq;
  }
  struct osseg__resize rs = {0};
  rs.mode_linear = linear;
  rs.ih = xt->dims[2], rs.iw = xt->dims[3], rs.oh = yt->dims[2], rs.ow = yt->dims[3];
  rs.c = xt->dims[1];
  rs.out_pix = rs.c;
  size_t tab = (size_t)(rs.oh + rs.ow) * (2 * sizeof(int32_t) + sizeof(float));
  unsigned char *buf = osseg__model_alloc(m, tab);
  if (!buf) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  rs.y0 = (int32_t *)buf;
  rs.y1 = rs.y0 + rs.oh;
  rs.x0 = rs.y1 + rs.oh;
  rs.x1 = rs.x0 + rs.ow;
  rs.wy = (float *)(rs.x1 + rs.ow);
  rs.wx = rs.wy + rs.oh;
  for (int axis = 0; axis < 2; axis++) {
    int64_t in = axis ? rs.iw : rs.ih, out = axis ? rs.ow : rs.oh;
    int32_t *i0 = axis ? rs.x0 : rs.y0, *i1 = axis ? rs.x1 : rs.y1;
    float *wt = axis ? rs.wx : rs.wy;
    double scale = sc[2 + axis];
    if (linear) {
      osseg__linear_axis(cmode, scale, in, out, i0, i1, wt);
      continue;
    }
    for (int64_t o = 0; o < out; o++) {
      i0[o] = i1[o] = osseg__resize_nearest(nmode, osseg__resize_coord(cmode, o, scale, in, out), in, scale);
      wt[o] = 0;
    }
  }
  return own_step(m, n, linear ? OSSEG__STEP_LINEAR2D : OSSEG__STEP_GATHER2D, x, y, &rs, diag);
}

static int compile_pad(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y];
  int64_t pads[8];
  const struct osseg__attr *a = osseg__attr_find(n, "pads");
  float value = 0;
  if (g->opset < 11) {
    for (int i = 0; i < 8; i++) pads[i] = a->ints[i];
    value = osseg__attr_float(n, "value", 0);
  } else {
    struct osseg__tensor *pt = &g->tensors[n->in[1]];
    for (int i = 0; i < 8; i++) pads[i] = osseg__const_i64(pt, (size_t)i);
    if (n->nin > 2 && n->in[2] >= 0) {
      struct osseg__tensor *vt = &g->tensors[n->in[2]];
      if (!vt->data)
        return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Pad): value must be constant", n->name);
      value = (float)osseg__const_f64(vt, 0);
    }
  }
  if (pads[0] || pads[1] || pads[4] || pads[5])
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Pad): only spatial padding is supported",
                       n->name);
  const char *mode = osseg__attr_str(n, "mode", "constant");
  int md;
  if (!strcmp(mode, "constant")) md = 0;
  else if (!strcmp(mode, "reflect")) md = 1;
  else if (!strcmp(mode, "edge")) md = 2;
  else
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Pad): mode '%s' unsupported", n->name, mode);
  struct osseg__resize rs = {0};
  rs.value = value;
  rs.ih = xt->dims[2], rs.iw = xt->dims[3], rs.oh = yt->dims[2], rs.ow = yt->dims[3];
  rs.c = xt->dims[1];
  rs.out_pix = rs.c;
  if (md == 1 && (pads[2] >= rs.ih || pads[6] >= rs.ih || pads[3] >= rs.iw || pads[7] >= rs.iw))
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Pad): reflect pad >= input size", n->name);
  if (rs.ih == 0 || rs.iw == 0)
    return osseg__fail(diag, OSSEG_ESHAPE, "node '%s' (Pad): empty input", n->name);
  int32_t *buf = osseg__model_alloc(m, (size_t)(rs.oh + rs.ow) * sizeof(int32_t));
  if (!buf) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  rs.y0 = rs.y1 = buf;
  rs.x0 = rs.x1 = buf + rs.oh;
  for (int axis = 0; axis < 2; axis++) {
    int64_t in = axis ? rs.iw : rs.ih, out = axis ? rs.ow : rs.oh, before = pads[2 + axis];
    int32_t *idx = axis ? rs.x0 : rs.y0;
    for (int64_t o = 0; o < out; o++) {
      int64_t s = o - before;
      if (s < 0 || s >= in) {
        if (md == 0) s = -1;
        else if (md == 2) s = s < 0 ? 0 : in - 1;
        else s = s < 0 ? -s : 2 * (in - 1) - s;
      }
      idx[o] = (int32_t)s;
    }
  }
  return own_step(m, n, OSSEG__STEP_GATHER2D, x, y, &rs, diag);
}

const struct osseg__op osseg__ops_resize_pad[] = {
    {"Resize", 10, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL | OSSEG__OP_UPSAMPLES, OSSEG__PREC_RUNTIME, infer_resize, NULL, compile_resize},
    {"Upsample", 7, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL | OSSEG__OP_UPSAMPLES, OSSEG__PREC_RUNTIME, infer_resize, NULL, compile_resize},
    {"Pad", 2, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, infer_pad, NULL, compile_pad},
    {0},
};
