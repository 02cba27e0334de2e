/* Resize / Upsample and Pad as own loops on nhwc tensors.
 *
 * Nearest resize and pad are both "gathers": every output pixel copies one
 * input pixel (all channels) or a constant, so they share one kernel driven
 * by per-row and per-column source tables built at load. Bilinear resize
 * blends four pixels with per-row/column weights (half_pixel,
 * pytorch_half_pixel, align_corners, asymmetric). Memory-bound loops, split
 * across OpenMP threads by output row. */
#include "bf16.h"
#include "engine_internal.h"

#include <math.h>
#include <string.h>

void osseg__run_gather2d(const struct osseg__resize *r, size_t es, const void *src, void *dst) {
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
        if (es == 4) for (int64_t c = 0; c < C; c++) memcpy(d + c * 4, &fill32, 4);
        else for (int64_t c = 0; c < C; c++) memcpy(d + c * 2, &fill16, 2);
        continue;
      }
      memcpy(d, (const unsigned char *)src + ((size_t)sy * (size_t)r->iw + (size_t)sx) * pix, pix);
    }
  }
}

void osseg__run_linear2d(const struct osseg__resize *r, int bf16, const void *src, void *dst) {
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

/* Source coordinate of output index o (ONNX coordinate_transformation_mode). */
static double src_coord(int mode, int64_t o, double scale, int64_t in, int64_t out) {
  switch (mode) {
    case 0: return ((double)o + 0.5) / scale - 0.5;                      /* half_pixel */
    case 1: return out > 1 ? ((double)o + 0.5) / scale - 0.5 : 0.0;      /* pytorch_half_pixel */
    case 2: return out > 1 ? (double)o * (double)(in - 1) / (double)(out - 1) : 0.0; /* align_corners */
    case 3: return (double)o / scale;                                    /* asymmetric */
    default: return ((double)o + 0.5) / scale;                           /* tf_half_pixel_for_nn */
  }
}

void osseg__linear_axis(int cmode, double scale, int64_t in, int64_t out, int32_t *i0, int32_t *i1,
                       float *w) {
  for (int64_t o = 0; o < out; o++) {
    double c = src_coord(cmode, o, scale, in, out);
    if (!(c >= 0)) c = 0; /* (NaN too) */
    if (c > (double)(in - 1)) c = (double)(in - 1);
    int64_t f = (int64_t)floor(c);
    i0[o] = (int32_t)f;
    i1[o] = (int32_t)(f + 1 < in ? f + 1 : in - 1);
    w[o] = (float)(c - (double)f);
  }
}

static int32_t nearest(int nmode, double x, int64_t in, double scale) {
  double v;
  switch (nmode) {
    case 0: v = x == floor(x) + 0.5 ? floor(x) : floor(x + 0.5); break; /* round_prefer_floor */
    case 1: v = floor(x + 0.5); break; /* round_prefer_ceil */
    case 2: v = floor(x); break;
    case 3: v = ceil(x); break;
    default: v = scale < 1 ? ceil(x) : floor(x); break; /* opset < 11 */
  }
  if (!(v >= 0)) v = 0; /* (NaN too) */
  if (v > (double)(in - 1)) v = (double)(in - 1);
  return (int32_t)v;
}

static int own_step(struct osseg_model *m, struct osseg__node *n, int kind, int x, int y,
                    const struct osseg__resize *rs, struct osseg_diag *diag) {
  struct osseg__step *s = osseg__add_step(m, kind, (int)(n - m->g.nodes));
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->in = x;
  s->out = y;
  s->rs = *rs;
  s->uses[s->nuses++] = x;
  s->uses[s->nuses++] = y;
  return 0;
}

/* Resize attributes of node n: linear or nearest, coordinate mode (cmode,
 * see src_coord) and rounding (nmode, see nearest), scales. */
static int parse_resize(struct osseg__graph *g, struct osseg__node *n, int *linear_out,
                        int *cmode_out, int *nmode_out, double *sc, struct osseg_diag *diag) {
  int64_t sz[4];
  int err = osseg__resize_scales(g, n, sc, sz, diag);
  if (err) return err;
  const char *mode = osseg__attr_str(n, "mode", "nearest");
  int legacy = !strcmp(n->op, "Upsample") || g->opset < 11;
  const char *ctm = legacy ? "asymmetric" : osseg__attr_str(n, "coordinate_transformation_mode", "half_pixel");
  const char *nm = osseg__attr_str(n, "nearest_mode", "round_prefer_floor");
  int cmode;
  if (!strcmp(ctm, "half_pixel")) cmode = 0;
  else if (!strcmp(ctm, "pytorch_half_pixel")) cmode = 1;
  else if (!strcmp(ctm, "align_corners")) cmode = 2;
  else if (!strcmp(ctm, "asymmetric")) cmode = 3;
  else if (!strcmp(ctm, "tf_half_pixel_for_nn")) cmode = 4;
  else
    return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                       "node '%s' (%s, opset %d): coordinate_transformation_mode '%s' unsupported",
                       n->name, n->op, g->opset, ctm);
  if (osseg__attr_int(n, "antialias", 0))
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Resize): antialias unsupported", n->name);
  const char *kar = osseg__attr_str(n, "keep_aspect_ratio_policy", "stretch");
  if (strcmp(kar, "stretch"))
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Resize): keep_aspect_ratio_policy '%s'",
                       n->name, kar);
  int linear;
  if (!strcmp(mode, "nearest")) linear = 0;
  else if (!strcmp(mode, "linear") || !strcmp(mode, "bilinear")) linear = 1;
  else
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (%s, opset %d): mode '%s' unsupported",
                       n->name, n->op, g->opset, mode);
  int nmode;
  if (legacy) nmode = 4;
  else if (!strcmp(nm, "round_prefer_floor")) nmode = 0;
  else if (!strcmp(nm, "round_prefer_ceil")) nmode = 1;
  else if (!strcmp(nm, "floor")) nmode = 2;
  else if (!strcmp(nm, "ceil")) nmode = 3;
  else
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s': nearest_mode '%s' unsupported",
                       n->name, nm);
  *linear_out = linear, *cmode_out = cmode, *nmode_out = nmode;
  return 0;
}

int osseg__resize_is_nearest2x(struct osseg__graph *g, struct osseg__node *n) {
  if (strcmp(n->op, "Resize") && strcmp(n->op, "Upsample")) return 0;
  const struct osseg__tensor *xt = &g->tensors[n->in[0]], *yt = &g->tensors[n->out[0]];
  if (xt->rank != 4 || yt->rank != 4 || xt->dims[0] != yt->dims[0] || xt->dims[1] != yt->dims[1])
    return 0;
  int linear, cmode, nmode;
  double sc[4];
  if (parse_resize(g, n, &linear, &cmode, &nmode, sc, NULL) || linear) return 0;
  /* the actual source index of every output row / column must be o / 2 (what
   * the run-time tables would hold), whatever modes produced it */
  for (int axis = 0; axis < 2; axis++) {
    int64_t in = xt->dims[2 + axis], out = yt->dims[2 + axis];
    if (in < 1 || out != 2 * in) return 0;
    for (int64_t o = 0; o < out; o++)
      if (nearest(nmode, src_coord(cmode, o, sc[2 + axis], in, out), in, sc[2 + axis]) != o / 2)
        return 0;
  }
  return 1;
}

int osseg__compile_resize(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y];
  double sc[4];
  int linear, cmode, nmode;
  int err = parse_resize(g, n, &linear, &cmode, &nmode, sc, diag);
  if (err) return err;
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
      i0[o] = i1[o] = nearest(nmode, src_coord(cmode, o, scale, in, out), in, scale);
      wt[o] = 0;
    }
  }
  return own_step(m, n, linear ? OSSEG__STEP_LINEAR2D : OSSEG__STEP_GATHER2D, x, y, &rs, diag);
}

int osseg__compile_pad(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
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

void osseg__run_concat_c(const struct osseg__step *s, size_t es, const struct osseg_model *m) {
  unsigned char *dst = osseg__tensor_ptr(m, s->out);
  const unsigned char *src[OSSEG__MAX_ARGS];
  for (int k = 0; k < s->cat_n; k++) src[k] = osseg__tensor_ptr(m, s->cat_t[k]);
  const size_t opix = (size_t)s->cat_cout * es;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < s->cat_pixels; p++)
    for (int k = 0; k < s->cat_n; k++)
      memcpy(dst + (size_t)p * opix + (size_t)s->cat_off[k] * es,
             src[k] + (size_t)p * (size_t)s->cat_c[k] * es, (size_t)s->cat_c[k] * es);
}
