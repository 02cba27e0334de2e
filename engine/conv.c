/* Convolutions: Conv (dense, grouped, depthwise, dilated, strided, padded),
 * standalone BatchNormalization (as a depthwise 1x1 conv), ConvTranspose.
 * Weights are reordered once into the layout the primitive picked
 * (format_tag_any); activations are nhwc. */
#include "engine_internal.h"

#include <math.h>
#include <string.h>

/* Residual sum post-op: the destination must hold the addend before the conv
 * runs. Reuse the addend's storage when it dies here, else copy it first. */
static int prepare_sum(struct osseg_model *m, struct osseg__node *n, int y, struct osseg_diag *diag) {
  for (int p = 0; p < n->npost; p++) {
    if (n->post[p].kind != OSSEG__POST_SUM) continue;
    int other = n->post[p].arg;
    if (osseg__can_inplace(m, other) && other != n->in[0]) {
      osseg__alias(m, y, other);
    } else {
      int err = osseg__reorder_step(m, (int)(n - m->g.nodes), other, &m->md[other], y, &m->md[y], diag);
      if (err) return err;
    }
  }
  return 0;
}

static int conv_common(struct osseg_model *m, struct osseg__node *n, int deconv,
                       const float *wdata, const int64_t *wdims, const float *bias, int64_t group,
                       struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y];
  struct osseg__window w;
  int err = osseg__window_of(g, n, &w, diag);
  if (err) return err;
  int64_t C = xt->dims[1], M = yt->dims[1];
  /* Weights as ONNX stores them, described by strides. */
  dnnl_memory_desc_t wuser, wany, bmd;
  dnnl_dims_t wd, ws;
  int wnd;
  int64_t k = wdims[2] * wdims[3];
  if (!deconv) { /* [M, C/g, kh, kw] -> (g, M/g, C/g, kh, kw) */
    if (group == 1) {
      wnd = 4;
      wd[0] = M, wd[1] = C, wd[2] = wdims[2], wd[3] = wdims[3];
      ws[0] = C * k, ws[1] = k, ws[2] = wdims[3], ws[3] = 1;
    } else {
      wnd = 5;
      wd[0] = group, wd[1] = M / group, wd[2] = C / group, wd[3] = wdims[2], wd[4] = wdims[3];
      ws[0] = (M / group) * (C / group) * k, ws[1] = (C / group) * k, ws[2] = k, ws[3] = wdims[3], ws[4] = 1;
    }
  } else { /* [C, M/g, kh, kw]: (g, M/g, C/g, kh, kw) with swapped strides */
    if (group == 1) {
      wnd = 4;
      wd[0] = M, wd[1] = C, wd[2] = wdims[2], wd[3] = wdims[3];
      ws[0] = k, ws[1] = M * k, ws[2] = wdims[3], ws[3] = 1;
    } else {
      wnd = 5;
      int64_t mg = M / group, cg = C / group;
      wd[0] = group, wd[1] = mg, wd[2] = cg, wd[3] = wdims[2], wd[4] = wdims[3];
      ws[0] = cg * mg * k, ws[1] = k, ws[2] = mg * k, ws[3] = wdims[3], ws[4] = 1;
    }
  }
  if (dnnl_memory_desc_init_by_strides(&wuser, wnd, wd, dnnl_f32, ws) != dnnl_success ||
      dnnl_memory_desc_init_by_tag(&wany, wnd, wd, m->act_dt, dnnl_format_tag_any) != dnnl_success)
    return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': weight descriptor", n->name);
  dnnl_dims_t bd = {M};
  dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a);
  dnnl_dims_t strides = {w.s[0], w.s[1]}, dil = {w.d[0] - 1, w.d[1] - 1},
              pl = {w.pb[0], w.pb[1]}, pr = {w.pe[0], w.pe[1]};
  dnnl_memory_desc_t src_md = m->md[x], dst_md = m->md[y];
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, n, &attr))
    return osseg__fail(diag, OSSEG_EBACKEND, "node '%s' (%s): post-ops", n->name, n->op);
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st;
  if (!deconv) {
    dnnl_convolution_desc_t cd;
    /* Winograd has no nhwc implementation in oneDNN 2.6 (measured:
     * unimplemented), so direct convolution only. */
    st = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                    dnnl_convolution_direct, &src_md, &wany,
                                                    bias ? &bmd : NULL, &dst_md, strides, dil, pl, pr);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &cd, attr, m->eng, NULL);
  } else {
    dnnl_deconvolution_desc_t dd;
    st = dnnl_dilated_deconvolution_forward_desc_init(&dd, dnnl_forward_inference,
                                                      dnnl_deconvolution_direct, &src_md, &wany,
                                                      bias ? &bmd : NULL, &dst_md, strides, dil, pl, pr);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &dd, attr, m->eng, NULL);
  }
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "convolution descriptor", n);
  const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  dnnl_memory_t wmem = NULL, bmem = NULL;
  err = osseg__const_memory(m, wmd, &wuser, wdata, &wmem, diag);
  if (!err && bias) err = osseg__const_memory(m, &bmd, &bmd, bias, &bmem, diag);
  if (!err) err = prepare_sum(m, n, y, diag);
  struct osseg__step *s = err ? NULL : osseg__add_step(m, OSSEG__STEP_PRIM, (int)(n - g->nodes));
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return err ? err : osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC, x, NULL);
  osseg__step_arg_mem(s, DNNL_ARG_WEIGHTS, wmem);
  if (bmem) osseg__step_arg_mem(s, DNNL_ARG_BIAS, bmem);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, y, NULL);
  for (int p = 0; p < n->npost; p++)
    if (n->post[p].kind == OSSEG__POST_SUM) {
      /* keep the addend alive until here */
      int t = n->post[p].arg;
      if (s->nuses < OSSEG__MAX_ARGS) s->uses[s->nuses++] = t;
    }
  size_t welems = (size_t)(M * (deconv ? C : C / group) * k / (deconv ? group : 1));
  m->params += welems + (bias ? (size_t)M : 0);
  size_t spatial = deconv ? (size_t)(xt->dims[2] * xt->dims[3]) : (size_t)(yt->dims[2] * yt->dims[3]);
  m->flops += 2ull * spatial * (uint64_t)(deconv ? C * (M / group) : M * (C / group)) * (uint64_t)k;
  return osseg__finish_prim(m, s, pd, n, diag);
}

int osseg__compile_conv(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  if (!strcmp(n->op, "BatchNormalization")) {
    /* y = x * scale + shift per channel, as a depthwise 1x1 conv. */
    int64_t C = g->tensors[n->in[0]].dims[1];
    float *wb = osseg__malloc((size_t)C * 2 * sizeof(float));
    if (!wb) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    float eps = osseg__attr_float(n, "epsilon", 1e-5f);
    for (int64_t c = 0; c < C; c++) {
      double sc = osseg__const_f64(&g->tensors[n->in[1]], (size_t)c) /
                  sqrt(osseg__const_f64(&g->tensors[n->in[4]], (size_t)c) + eps);
      wb[c] = (float)sc;
      wb[C + c] = (float)(osseg__const_f64(&g->tensors[n->in[2]], (size_t)c) -
                          osseg__const_f64(&g->tensors[n->in[3]], (size_t)c) * sc);
    }
    int64_t wdims[4] = {C, 1, 1, 1};
    int err = conv_common(m, n, 0, wb, wdims, wb + C, C, diag);
    osseg__free(wb);
    return err;
  }
  struct osseg__tensor *wt = &g->tensors[n->in[1]];
  struct osseg__tensor *bt = n->nin > 2 && n->in[2] >= 0 ? &g->tensors[n->in[2]] : NULL;
  return conv_common(m, n, 0, wt->data, wt->dims, bt ? bt->data : NULL,
                     osseg__attr_int(n, "group", 1), diag);
}

int osseg__compile_deconv(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  struct osseg__tensor *wt = &g->tensors[n->in[1]];
  struct osseg__tensor *bt = n->nin > 2 && n->in[2] >= 0 ? &g->tensors[n->in[2]] : NULL;
  return conv_common(m, n, 1, wt->data, wt->dims, bt ? bt->data : NULL,
                     osseg__attr_int(n, "group", 1), diag);
}
