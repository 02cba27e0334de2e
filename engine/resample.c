/* Resize / Upsample geometry shared by the resize ops and the passes that
 * recognise resizes: output size and scales, the ONNX modes, source
 * coordinates and per-axis source tables. */
#include "ir.h"

#include <math.h>
#include <string.h>

/* Resize/Upsample: output dims; scales from constant input, attr or sizes. */
int osseg__resize_scales(struct osseg__graph *g, struct osseg__node *n, double *scales,
                         int64_t *sizes, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *st = NULL, *sz = NULL;
  int up = strcmp(n->op, "Upsample") == 0;
  int have_scales = 0;
  if (up || g->opset < 11) {
    st = osseg__in(g, n, 1);
  } else {
    st = osseg__in(g, n, 2);
    sz = osseg__in(g, n, 3);
  }
  if (st && st->data && st->rank == 1 && st->dims[0] == 0) st = NULL; /* empty = absent */
  if (sz && sz->data && sz->rank == 1 && sz->dims[0] == 0) sz = NULL;
  if (sz) {
    if (!sz->data || sz->rank != 1 || sz->dims[0] != x->rank)
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "sizes must be a constant of %d values", OSSEG__NODEARG,
                  x->rank);
    for (int i = 0; i < x->rank; i++) {
      sizes[i] = osseg__const_i64(sz, (size_t)i);
      if (sizes[i] < 1 || sizes[i] > (1 << 20))
        return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "output size %lld out of range", OSSEG__NODEARG,
                    (long long)sizes[i]);
      scales[i] = (double)sizes[i] / (double)x->dims[i];
    }
    return 0;
  }
  if (st) {
    if (!st->data || st->rank != 1 || st->dims[0] != x->rank)
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "scales must be a constant of %d values", OSSEG__NODEARG,
                  x->rank);
    for (int i = 0; i < x->rank; i++) scales[i] = osseg__const_f64(st, (size_t)i);
    have_scales = 1;
  } else {
    const struct osseg__attr *a = osseg__attr_find(n, "scales");
    if (up && a && a->type == OSSEG__ATTR_FLOATS && a->n == (size_t)x->rank) {
      for (int i = 0; i < x->rank; i++) scales[i] = a->floats[i];
      have_scales = 1;
    }
  }
  if (!have_scales) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "neither scales nor sizes given", OSSEG__NODEARG);
  for (int i = 0; i < x->rank; i++) {
    if (!(scales[i] > 0 && scales[i] <= 1024))
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "scale %g out of range", OSSEG__NODEARG, scales[i]);
    sizes[i] = (int64_t)floor((double)x->dims[i] * scales[i]);
    if (sizes[i] < 1 || sizes[i] > (1 << 20))
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "output size out of range", OSSEG__NODEARG);
  }
  return 0;
}

/* Source coordinate of output index o (ONNX coordinate_transformation_mode). */
double osseg__resize_coord(int mode, int64_t o, double scale, int64_t in, int64_t out) {
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
    double c = osseg__resize_coord(cmode, o, scale, in, out);
    if (!(c >= 0)) c = 0; /* (NaN too) */
    if (c > (double)(in - 1)) c = (double)(in - 1);
    int64_t f = (int64_t)floor(c);
    i0[o] = (int32_t)f;
    i1[o] = (int32_t)(f + 1 < in ? f + 1 : in - 1);
    w[o] = (float)(c - (double)f);
  }
}

int32_t osseg__resize_nearest(int nmode, double x, int64_t in, double scale) {
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
/* Resize attributes of node n: linear or nearest, coordinate mode (cmode,
 * see src_coord) and rounding (nmode, see nearest), scales. */
int osseg__resize_parse(struct osseg__graph *g, struct osseg__node *n, int *linear_out,
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
  if (osseg__resize_parse(g, n, &linear, &cmode, &nmode, sc, NULL) || linear) return 0;
  /* the actual source index of every output row / column must be o / 2 (what
   * the run-time tables would hold), whatever modes produced it */
  for (int axis = 0; axis < 2; axis++) {
    int64_t in = xt->dims[2 + axis], out = yt->dims[2 + axis];
    if (in < 1 || out != 2 * in) return 0;
    for (int64_t o = 0; o < out; o++)
      if (osseg__resize_nearest(nmode, osseg__resize_coord(cmode, o, sc[2 + axis], in, out), in, sc[2 + axis]) != o / 2)
        return 0;
  }
  return 1;
}
