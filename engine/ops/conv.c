/* Convolutions: Conv (dense, grouped, depthwise, dilated, strided, padded),
 * standalone BatchNormalization (as a depthwise 1x1 conv), ConvTranspose.
 * Weights are reordered once into the layout the primitive picked
 * (format_tag_any); activations are nhwc. Two own paths take over where
 * oneDNN is slow: 3x3 stride-1 fp32 convs by Winograd (conv_winograd.c) and
 * depthwise convs it would run as im2col + gemm (conv_depthwise.c). */
#include "build.h"
#include "engine_test_hooks.h"
#include "ops/conv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int infer_conv(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *w = osseg__in(g, n, 1), *b = osseg__in(g, n, 2);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err = osseg__need_rank4(g, n, x, diag);
  if (err) return err;
  if (!w || !w->data || w->rank != 4 || w->dtype != OSSEG__DT_FLOAT)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "weights must be a constant float32 4-D tensor",
                OSSEG__NODEARG);
  if (b && (!b->data || b->rank != 1 || b->dtype != OSSEG__DT_FLOAT))
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "bias must be a constant float32 vector", OSSEG__NODEARG);
  int64_t group = osseg__attr_int(n, "group", 1);
  int deconv = strcmp(n->op, "ConvTranspose") == 0;
  int64_t C = x->dims[1];
  int64_t M = deconv ? w->dims[1] * group : w->dims[0];
  if (group < 1 || C % group || (deconv ? w->dims[0] != C : w->dims[1] * group != C) ||
      (!deconv && M % group))
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "weights %lldx%lldx%lldx%lld do not match %lld input "
                "channels with group %lld", OSSEG__NODEARG, (long long)w->dims[0], (long long)w->dims[1],
                (long long)w->dims[2], (long long)w->dims[3], (long long)C, (long long)group);
  if (b && b->dims[0] != M)
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "bias has %lld values, need %lld", OSSEG__NODEARG,
                (long long)b->dims[0], (long long)M);
  int64_t k[2] = {w->dims[2], w->dims[3]}, ks[8];
  int c = osseg__int_list(g, n, "kernel_shape", -1, ks, 8, diag);
  if (c < 0) return c;
  if (c && (c != 2 || ks[0] != k[0] || ks[1] != k[1]))
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "kernel_shape disagrees with the weights", OSSEG__NODEARG);
  struct osseg__window win;
  err = osseg__window_of(g, n, &win, diag);
  if (err) return err;
  int64_t *o = win.out;
  y->dtype = OSSEG__DT_FLOAT;
  y->rank = 4;
  y->dims[0] = x->dims[0];
  y->dims[1] = M;
  y->dims[2] = o[0];
  y->dims[3] = o[1];
  return 0;
}

static int infer_batchnorm(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err;
  err = osseg__need_rank4(g, n, x, diag);
  if (err) return err;
  for (int i = 1; i < 5; i++) {
    struct osseg__tensor *p = osseg__in(g, n, i);
    if (!p || !p->data || p->rank != 1 || p->dims[0] != x->dims[1])
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "parameters must be constant vectors of %lld "
                  "values", OSSEG__NODEARG, (long long)x->dims[1]);
  }
  if (osseg__attr_int(n, "training_mode", 0))
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "training_mode=1", OSSEG__NODEARG);
  for (int i = 1; i < n->nout; i++)
    if (g->tensors[n->out[i]].name[0] != '#')
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "training outputs", OSSEG__NODEARG);
  *y = (struct osseg__tensor){.name = y->name, .dtype = x->dtype, .rank = 4,
                              .producer = y->producer, .storage = -1, .offset = -1};
  memcpy(y->dims, x->dims, sizeof x->dims);
  return 0;
}

/* Is the storage of runtime tensor t, read by node n, read by no node after
 * n: neither t nor any tensor sharing its storage (an earlier in-place
 * output) has a reader after n? Then n may overwrite it. */
static int last_read_here(const struct osseg_model *m, const struct osseg__node *n, int t) {
  const struct osseg__graph *g = &m->g;
  if (t < 0 || g->tensors[t].data) return 0;
  const int root = osseg__root(m, t);
  for (int u = 0; u < g->ntensors; u++) {
    if (g->tensors[u].data || osseg__root(m, u) != root) continue;
    if (u == g->input || u == g->output) return 0;
    for (const struct osseg__node *r = n + 1; r < g->nodes + g->nnodes; r++) {
      if (r->dead) continue;
      for (int i = 0; i < r->nin; i++)
        if (r->in[i] == u) return 0;
      for (int p = 0; p < r->npost; p++)
        if (r->post[p].kind == OSSEG__POST_SUM && r->post[p].arg == u) return 0;
    }
  }
  return 1;
}

/* Residual sum post-op: the destination must hold the addend before the conv
 * runs. Reuse the addend's storage when it dies here, else copy it first.
 * An int8 conv also takes over an addend whose other readers all ran before
 * it (a ResNet block's input, read by conv1's quantizing reorder and by the
 * last conv's sum): no copy of the float map. */
static int prepare_sum(struct osseg_model *m, struct osseg__node *n, int y, struct osseg_diag *diag) {
  const int int8 = m->opt.precision == OSSEG_PRECISION_INT8 && osseg__attr_find(n, "osseg.q_scale");
  for (int p = 0; p < n->npost; p++) {
    if (n->post[p].kind != OSSEG__POST_SUM) continue;
    int other = n->post[p].arg;
    /* (the addend may be stored in the other precision: then the reorder
     * converts it) */
    if ((osseg__can_inplace(m, other) || (int8 && last_read_here(m, n, other))) && other != n->in[0] &&
        m->md[other].data_type == m->md[y].data_type) {
      osseg__alias(m, y, other);
    } else {
      int err = osseg__reorder_step(m, (int)(n - m->g.nodes), other, &m->md[other], y, &m->md[y], diag);
      if (err) return err;
    }
  }
  return 0;
}

/* The step of a whole conv whose descriptor pd is made (osseg__conv_step on
 * the tensors themselves), after (sum_from_node) moving the node's residual
 * addends into y. Takes pd. */
static int conv_prim_step(struct osseg_model *m, struct osseg__node *n, dnnl_primitive_desc_t pd,
                          int x, int y, const dnnl_memory_desc_t *wuser, const void *w,
                          const float *bias, const struct osseg__post *post, int npost,
                          int sum_from_node, struct osseg_diag *diag) {
  int err = sum_from_node ? prepare_sum(m, n, y, diag) : 0;
  if (err) {
    dnnl_primitive_desc_destroy(pd);
    return err;
  }
  struct osseg__conv_consts c = {0};
  return osseg__conv_step(m, n, pd, x, NULL, 0, y, NULL, 0, wuser, w, bias, &c, post, npost, diag);
}

/* Did oneDNN pick im2col + gemm or reference code? For a depthwise conv
 * that means a shape its direct kernels reject (conv_depthwise.c runs it instead,
 * as it does every dilated depthwise conv: oneDNN's jit kernel ran the
 * ASPP's dilation-12/24 ones at 5 GFLOP/s, 6-8 ms each at 512²). */
static int slow_impl(const_dnnl_primitive_desc_t pd) {
  const char *impl = NULL;
  if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl)
    return 0;
  return strstr(impl, "gemm") != NULL || strncmp(impl, "ref", 3) == 0 || strstr(impl, ":ref") != NULL;
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
  if (!deconv && group == 1 &&
      osseg__winograd_eligible(m, x, y, wdims[2], wdims[3], C, M, w.s, w.d, w.pb, w.pe, n->post,
                               n->npost)) {
    if ((err = prepare_sum(m, n, y, diag))) return err;
    return osseg__compile_winograd(m, n, x, y, wdata, wdims[2], C, M, bias, w.pb, n->post, n->npost,
                                   diag);
  }
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, n, &attr))
    return osseg__fail(diag, OSSEG_EBACKEND, "node '%s' (%s): post-ops", n->name, n->op);
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st;
  if (!deconv) {
    dnnl_convolution_desc_t cd;
    /* oneDNN 2.6 has Winograd only for blocked layouts (measured:
     * unimplemented for nhwc): direct here, 3x3 convs that qualify went to
     * conv_winograd.c above. */
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
  /* (the option no_dwconv keeps oneDNN's choice: A/B measurements) */
  if (!deconv && group == C && M == C && wdims[1] == 1 && n->npost == 0 && !m->opt.no_dwconv &&
      (slow_impl(pd) || w.d[0] > 1 || w.d[1] > 1) && osseg__md_dense_nhwc(&m->md[x]) &&
      osseg__md_dense_nhwc(&m->md[y]) &&
      (m->md[x].data_type == dnnl_f32 || m->md[x].data_type == dnnl_bf16) &&
      (m->md[y].data_type == dnnl_f32 || m->md[y].data_type == dnnl_bf16)) {
    dnnl_primitive_desc_destroy(pd);
    return osseg__compile_dwconv(m, n, wdata, wdims, bias, &w, diag);
  }
  size_t welems = (size_t)(M * (deconv ? C : C / group) * k / (deconv ? group : 1));
  m->params += welems + (bias ? (size_t)M : 0);
  size_t spatial = deconv ? (size_t)(xt->dims[2] * xt->dims[3]) : (size_t)(yt->dims[2] * yt->dims[3]);
  m->flops += 2ull * spatial * (uint64_t)(deconv ? C * (M / group) : M * (C / group)) * (uint64_t)k;
  return conv_prim_step(m, n, pd, x, y, &wuser, wdata, bias, n->post, n->npost, 1, diag);
}


/* Int8 convolution of a QDQ model (--precision int8; passes/fuse_qdq.c
 * marked the node): the float input x is quantized by a reorder into an
 * 8-bit temporary with the input's scale and zero point (the same integers
 * its QuantizeLinear makes), the weights are the file's int8 values
 * (recovered exactly from their dequantized floats and scales), and the
 * conv runs u8s8 (or s8s8) with int32 accumulation, per-output-channel
 * scales s_x * s_w[oc], the float bias (divided by those scales, because
 * oneDNN adds the bias before scaling), float output and the node's
 * post-ops. */
static int compile_qconv(struct osseg_model *m, struct osseg__node *n, const struct osseg__attr *qs,
                         struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0], ni = (int)(n - g->nodes);
  const struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y], *wt = &g->tensors[n->in[1]];
  const struct osseg__tensor *bt = n->nin > 2 && n->in[2] >= 0 ? &g->tensors[n->in[2]] : NULL;
  const float sx = qs->f;
  const int zp = (int)osseg__attr_int(n, "osseg.q_zero", 0);
  const int sgn = (int)osseg__attr_int(n, "osseg.q_signed", 0);
  const int64_t group = osseg__attr_int(n, "group", 1);
  struct osseg__window w;
  int err = osseg__window_of(g, n, &w, diag);
  if (err) return err;
  const int64_t C = xt->dims[1], M = yt->dims[1], kh = wt->dims[2], kw = wt->dims[3], k = kh * kw;
  const int64_t per = (C / group) * k;
  /* 8-bit input: quantized by a reorder, unless its producer (a concat of
   * quantized inputs, ops/concat.c) wrote it in 8 bits already */
  const int xq = osseg__quantized_input(m, ni, x, sx, zp, sgn, diag);
  if (xq < 0) return xq;
  int32_t zps[1] = {zp};
  dnnl_status_t st;
  /* An 8-bit output (passes/fuse_qdq.c: only int8 convs of one quantization
   * read it): the conv writes the next conv's quantized input itself,
   * round(relu(s_x s_w acc + b) / s_out) + z_out, folding 1 / s_out into the
   * output scales (ReLU commutes with a positive scale). */
  float out_scale = 1.f;
  int32_t out_zero = 0;
  if (m->md[y].data_type == dnnl_u8 || m->md[y].data_type == dnnl_s8) {
    out_scale = osseg__attr_float(n, "osseg.q_out_scale", 1.f);
    out_zero = (int32_t)osseg__attr_int(n, "osseg.q_out_zero", 0);
  }
  int32_t ozps[1] = {out_zero};
  /* int8 weights, scales, bias in the accumulator's units */
  int8_t *wq = osseg__malloc((size_t)(M * per) + 1);
  float *sc = osseg__malloc((size_t)M * sizeof(float)), *bq = osseg__malloc((size_t)M * sizeof(float));
  if (!wq || !sc || !bq) {
    osseg__free(wq), osseg__free(sc), osseg__free(bq);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  const float *wf = wt->data;
  for (int64_t oc = 0; oc < M; oc++) {
    float swc = wt->qcount > 1 ? wt->qscale[oc] : wt->qscale[0];
    sc[oc] = sx * swc;
    bq[oc] = bt ? ((const float *)bt->data)[oc] / sc[oc] : 0.f;
    sc[oc] /= out_scale; /* (1 unless the output is 8-bit, below) */
    for (int64_t i = 0; i < per; i++) {
      float q = nearbyintf(wf[oc * per + i] / swc);
      wq[oc * per + i] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
    }
  }
  dnnl_memory_desc_t wuser, wany, bmd, src_md = m->md[xq], dst_md = m->md[y];
  dnnl_dims_t wd, ws;
  int wnd = group == 1 ? 4 : 5;
  if (group == 1) {
    wd[0] = M, wd[1] = C, wd[2] = kh, wd[3] = kw;
    ws[0] = C * k, ws[1] = k, ws[2] = kw, ws[3] = 1;
  } else {
    wd[0] = group, wd[1] = M / group, wd[2] = C / group, wd[3] = kh, wd[4] = kw;
    ws[0] = (M / group) * per, ws[1] = per, ws[2] = k, ws[3] = kw, ws[4] = 1;
  }
  dnnl_dims_t bd = {M};
  dnnl_memory_desc_init_by_strides(&wuser, wnd, wd, dnnl_s8, ws);
  dnnl_memory_desc_init_by_tag(&wany, wnd, wd, dnnl_s8, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a);
  dnnl_dims_t strides = {w.s[0], w.s[1]}, dil = {w.d[0] - 1, w.d[1] - 1}, pl = {w.pb[0], w.pb[1]},
              pr = {w.pe[0], w.pe[1]};
  dnnl_primitive_attr_t attr;
  dnnl_primitive_desc_t pd = NULL;
  if (osseg__make_attr(m, n, &attr)) err = osseg__fail(diag, OSSEG_EBACKEND, "node '%s': post-ops", n->name);
  if (!err) {
    st = dnnl_primitive_attr_set_output_scales(attr, M, 1 << 1, sc);
    if (st == dnnl_success && zp) st = dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, zps);
    if (st == dnnl_success && out_zero)
      st = dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, ozps);
    dnnl_convolution_desc_t cd;
    if (st == dnnl_success)
      st = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                      &src_md, &wany, &bmd, &dst_md, strides, dil, pl, pr);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &cd, attr, m->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) err = osseg__dnnl_fail(diag, st, "int8 convolution descriptor", n);
  }
  if (!err) {
    m->params += (uint64_t)(M * per + M);
    m->flops += 2ull * (uint64_t)(yt->dims[2] * yt->dims[3]) * (uint64_t)(M * per);
    m->int8_convs++;
    err = conv_prim_step(m, n, pd, xq, y, &wuser, wq, bq, n->post, n->npost, 1, diag);
  }
  osseg__free(wq), osseg__free(sc), osseg__free(bq);
  return err;
}

static int compile_conv(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
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
  const struct osseg__attr *qs = osseg__attr_find(n, "osseg.q_scale");
  if (qs && m->opt.precision == OSSEG_PRECISION_INT8) return compile_qconv(m, n, qs, diag);
  struct osseg__tensor *wt = &g->tensors[n->in[1]];
  struct osseg__tensor *bt = n->nin > 2 && n->in[2] >= 0 ? &g->tensors[n->in[2]] : NULL;
  return conv_common(m, n, 0, wt->data, wt->dims, bt ? bt->data : NULL,
                     osseg__attr_int(n, "group", 1), diag);
}

static int compile_deconv(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  const struct osseg__attr *qs = osseg__attr_find(n, "osseg.q_scale");
  if (qs && m->opt.precision == OSSEG_PRECISION_INT8) return compile_qconv(m, n, qs, diag);
  struct osseg__tensor *wt = &g->tensors[n->in[1]];
  struct osseg__tensor *bt = n->nin > 2 && n->in[2] >= 0 ? &g->tensors[n->in[2]] : NULL;
  return conv_common(m, n, 1, wt->data, wt->dims, bt ? bt->data : NULL,
                     osseg__attr_int(n, "group", 1), diag);
}

/* Plain conv step (group 1, stride 1, no dilation) of runtime tensor x into
 * y with OIHW weights w and the given epilogue (a SUM entry means y already
 * holds the addend). */
/* Interruption latency (osseg_model_run_ctl) is bounded by the longest
 * single primitive. The UNet++ R50 decoder convs at 1024² are ~70 GFLOP
 * each, 250-450 ms on 2 cores, so convs above BAND_FLOPS (~20-40 ms) run as
 * several primitives over bands of output rows, with the run control
 * checked between them. A band of rows of a dense nhwc tensor is itself a
 * dense nhwc tensor at an offset, so every band keeps oneDNN's fast kernel;
 * only the few input rows at band edges are read twice. */
#define BAND_FLOPS 6000000000ull
static _Atomic uint64_t band_flops_override; /* engine_test_hooks.h */

void osseg__set_conv_band_flops(uint64_t flops) { atomic_store(&band_flops_override, flops); }

/* Stride-1, dilation-1 conv x -> y (symmetric pad) as bands of output rows,
 * when it is big, both tensors are dense nhwc of one image with separate
 * storage and the epilogue is in place (eltwise, sum into y). Returns 1
 * when it does not apply (the caller builds one primitive), else 0 or an
 * error. */
static int banded_conv(struct osseg_model *m, struct osseg__node *n, int x, int y,
                       const dnnl_memory_desc_t *wuser, const float *w, const dnnl_memory_desc_t *wany,
                       const float *bias, const dnnl_memory_desc_t *bmd, int64_t kh,
                       const int64_t pad[2], const struct osseg__node *tmp, struct osseg_diag *diag) {
  if (x < 0 || y < 0) return 1;
  const dnnl_memory_desc_t *xmd = &m->md[x], *ymd = &m->md[y];
  if (!osseg__md_dense_nhwc(xmd) || !osseg__md_dense_nhwc(ymd) ||
      xmd->dims[0] != 1 || osseg__root(m, x) == osseg__root(m, y))
    return 1;
  const int64_t H = xmd->dims[2], OH = ymd->dims[2];
  const double flops = 2.0 * (double)(OH * ymd->dims[3]) * (double)ymd->dims[1] *
                       (double)xmd->dims[1] * (double)(kh * wuser->dims[3]);
  uint64_t limit = atomic_load(&band_flops_override);
  if (!limit) limit = BAND_FLOPS;
  int64_t nb = (int64_t)(flops / (double)limit) + 1;
  if (nb > OH / 4) nb = OH / 4; /* (bands of at least 4 rows) */
  if (nb < 2) return 1;
  const size_t xrow = dnnl_memory_desc_get_size(xmd) / (size_t)H;
  const size_t yrow = dnnl_memory_desc_get_size(ymd) / (size_t)OH;
  struct osseg__conv_consts c = {0}; /* the bands share them */
  for (int64_t b = 0; b < nb; b++) {
    const int64_t r0 = OH * b / nb, r1 = OH * (b + 1) / nb;
    const int64_t i0 = r0 - pad[0] > 0 ? r0 - pad[0] : 0;
    const int64_t iend = r1 - 1 - pad[0] + kh, i1 = iend < H ? iend : H;
    dnnl_dims_t sd = {1, xmd->dims[1], i1 - i0, xmd->dims[3]}, dd = {1, ymd->dims[1], r1 - r0, ymd->dims[3]};
    dnnl_dims_t strides = {1, 1}, dil = {0, 0}, pl = {i0 - (r0 - pad[0]), pad[1]},
                pr = {iend - i1, pad[1]};
    dnnl_memory_desc_t smd, dmd;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    if (osseg__make_attr(m, tmp, &attr))
      return osseg__fail(diag, OSSEG_EBACKEND, "node '%s' (%s): post-ops", n->name, n->op);
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&smd, 4, sd, xmd->data_type, dnnl_nhwc);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&dmd, 4, dd, ymd->data_type, dnnl_nhwc);
    if (st == dnnl_success)
      st = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                      dnnl_convolution_direct, &smd, wany,
                                                      bias ? bmd : NULL, &dmd, strides, dil, pl, pr);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &cd, attr, m->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "convolution band descriptor", n);
    /* the bands share reordered weights unless oneDNN picks another layout */
    int err = osseg__conv_step(m, n, pd, x, &smd, (size_t)i0 * xrow, y, &dmd, (size_t)r0 * yrow, wuser, w,
                               bias, &c, tmp->post, tmp->npost, diag);
    if (err) return err;
  }
  return 0;
}

static int plain_conv(struct osseg_model *m, struct osseg__node *n, int x, int y, const float *w,
                      int64_t M, int64_t C, int64_t kh, int64_t kw, const float *bias,
                      const int64_t pad[2], const struct osseg__post *post, int npost,
                      struct osseg_diag *diag) {
  static const int64_t one[2] = {1, 1};
  if (osseg__winograd_eligible(m, x, y, kh, kw, C, M, one, one, pad, pad, post, npost))
    return osseg__compile_winograd(m, n, x, y, w, kh, C, M, bias, pad, post, npost, diag);
  dnnl_memory_desc_t wuser, wany, bmd;
  dnnl_dims_t wd = {M, C, kh, kw}, bd = {M};
  if (dnnl_memory_desc_init_by_tag(&wuser, 4, wd, dnnl_f32, dnnl_abcd) != dnnl_success ||
      dnnl_memory_desc_init_by_tag(&wany, 4, wd, m->act_dt, dnnl_format_tag_any) != dnnl_success ||
      dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a) != dnnl_success)
    return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': weight descriptor", n->name);
  struct osseg__node tmp = *n; /* same name for messages, this step's epilogue */
  tmp.npost = npost;
  for (int i = 0; i < npost; i++) tmp.post[i] = post[i];
  int banded = banded_conv(m, n, x, y, &wuser, w, &wany, bias, &bmd, kh, pad, &tmp, diag);
  if (banded != 1) return banded;
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, &tmp, &attr))
    return osseg__fail(diag, OSSEG_EBACKEND, "node '%s' (%s): post-ops", n->name, n->op);
  dnnl_dims_t strides = {1, 1}, dil = {0, 0}, pl = {pad[0], pad[1]}, pr = {pad[0], pad[1]};
  dnnl_memory_desc_t src_md = m->md[x], dst_md = m->md[y];
  dnnl_convolution_desc_t cd;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_dilated_convolution_forward_desc_init(
      &cd, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &wany, bias ? &bmd : NULL,
      &dst_md, strides, dil, pl, pr);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &cd, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "convolution descriptor", n);
  return conv_prim_step(m, n, pd, x, y, &wuser, w, bias, post, npost, 0, diag);
}

/* y[2i+a][2j+b][:] = P[i+a][j+b][(2a+b)M : (2a+b+1)M] (see above). */
static dnnl_status_t run_upconv_scatter(struct osseg_model *m, struct osseg__step *s) {
  const size_t es = osseg__step_es(m, s);
  const unsigned char *src = osseg__tensor_ptr(m, s->in);
  unsigned char *dst = osseg__tensor_ptr(m, s->out);
  const int64_t H = s->rs.ih, W = s->rs.iw;
  const size_t row = (size_t)s->rs.c * es, spix = 4 * row, sw = (size_t)(W + 1) * spix;
#pragma omp parallel for schedule(static)
  for (int64_t oy = 0; oy < 2 * H; oy++) {
    const int64_t i = oy >> 1, a = oy & 1;
    const unsigned char *srow = src + (size_t)(i + a) * sw + (size_t)(2 * a) * row;
    unsigned char *drow = dst + (size_t)oy * (size_t)(2 * W) * row;
    for (int64_t j = 0; j < W; j++) {
      memcpy(drow + (size_t)(2 * j) * row, srow + (size_t)j * spix, row);
      memcpy(drow + (size_t)(2 * j + 1) * row, srow + (size_t)(j + 1) * spix + row, row);
    }
  }
  return dnnl_success;
}

/* osseg.UpConv2x (passes/fuse_upconv.c): y = Conv3x3(Concat(Upsample2x(u), s1, s2, ...)),
 * pad 1, with inputs [u, W, B, s1, ...].
 *
 * Upsampled part: output row 2i+a reads upsampled rows 2i+a-1 .. 2i+a+1,
 * i.e. low-res rows i-1+a and i+a, the middle kernel row going to the same
 * low-res row as its upper (a = 1) or lower (a = 0) neighbour. So each of the
 * four output phases (a, b) is a 2x2 conv of u with summed weights, and all
 * four are one 2x2 conv with pad 1 and 4M outputs of size (H+1)x(W+1):
 * phase (a, b) of low-res pixel (i, j) is P[i+a][j+b][(2a+b)M + m]. The
 * scatter step interleaves them into y; then every other input is convolved
 * with its slice of W and added in place (sum post-op), the node's epilogue
 * going on the last conv (or on the phase conv when there is none: an
 * elementwise epilogue commutes with the interleave). */
static int compile_upconv(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  if (m->opt.precision == OSSEG_PRECISION_INT8 && osseg__attr_find(n, "osseg.q_scale"))
    return osseg__compile_upconv_int8(m, n, diag);
  struct osseg__graph *g = &m->g;
  int u = n->in[0], y = n->out[0], nskip = n->nin - 3;
  const float *W = g->tensors[n->in[1]].data;
  const float *B = n->in[2] >= 0 ? g->tensors[n->in[2]].data : NULL;
  const int64_t M = g->tensors[n->in[1]].dims[0], Ct = g->tensors[n->in[1]].dims[1];
  const int64_t Cu = g->tensors[u].dims[1], H = g->tensors[u].dims[2], Wd = g->tensors[u].dims[3];
  /* the upsampled channels' place among the conv's input channels */
  const int64_t uoff = osseg__attr_int(n, "osseg.up_offset", 0);
  /* the output dims, copied (cheap, and independent of g->tensors) */
  int64_t yd[4];
  memcpy(yd, g->tensors[y].dims, sizeof yd);
  int64_t csum = Cu;
  for (int k = 0; k < nskip; k++) csum += g->tensors[n->in[3 + k]].dims[1];
  if (csum != Ct || yd[1] != M || yd[2] != 2 * H || yd[3] != 2 * Wd || nskip < 0 || uoff < 0 ||
      uoff > Ct - Cu)
    return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s' (%s): inconsistent shapes", n->name, n->op);
  size_t nwp = (size_t)(4 * M * Cu * 4);
  float *wp = osseg__malloc(nwp * sizeof(float) + (size_t)(4 * M) * sizeof(float));
  if (!wp) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  float *bp = wp + nwp;
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 2; b++)
      for (int64_t o = 0; o < M; o++) {
        int64_t ph = (2 * a + b) * M + o;
        bp[ph] = B ? B[o] : 0.f;
        for (int64_t c = 0; c < Cu; c++)
          for (int ty = 0; ty < 2; ty++)
            for (int tx = 0; tx < 2; tx++) {
              /* kernel rows feeding tap ty of phase a: a=0: {0},{1,2}; a=1: {0,1},{2} */
              int ylo = ty == 0 ? 0 : 1 + a, yhi = ty == 0 ? a : 2;
              int xlo = tx == 0 ? 0 : 1 + b, xhi = tx == 0 ? b : 2;
              double acc = 0;
              for (int ky = ylo; ky <= yhi; ky++)
                for (int kx = xlo; kx <= xhi; kx++)
                  acc += W[((size_t)(o * Ct + uoff + c)) * 9 + (size_t)(ky * 3 + kx)];
              wp[((size_t)(ph * Cu + c)) * 4 + (size_t)(ty * 2 + tx)] = (float)acc;
            }
      }
  int P = osseg__add_temp(m, -1, diag);
  if (P < 0) {
    osseg__free(wp);
    return P;
  }
  struct osseg__tensor *pt = &g->tensors[P];
  pt->rank = 4;
  pt->dims[0] = 1, pt->dims[1] = 4 * M, pt->dims[2] = H + 1, pt->dims[3] = Wd + 1;
  int err = osseg__tensor_md(m, P, m->act_dt, NULL);
  if (err) err = osseg__fail(diag, err, "node '%s': layout", n->name);
  static const int64_t pad1[2] = {1, 1};
  if (!err)
    err = plain_conv(m, n, u, P, wp, 4 * M, Cu, 2, 2, bp, pad1, n->post, nskip ? 0 : n->npost, diag);
  osseg__free(wp);
  if (err) return err;
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_UPCONV_SCATTER, (int)(n - g->nodes));
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->run = run_upconv_scatter;
  osseg__step_own(s, "own: upconv scatter", 0, P, y);
  s->in = P;
  s->out = y;
  s->rs.ih = H, s->rs.iw = Wd, s->rs.c = M;
  s->uses[s->nuses++] = P;
  s->uses[s->nuses++] = y;
  int64_t off = 0; /* the other inputs' channels, in order, around the upsampled ones */
  for (int k = 0; k < nskip && !err; k++) {
    int t = n->in[3 + k];
    int64_t ck = g->tensors[t].dims[1];
    if (off == uoff) off += Cu;
    float *ws = osseg__malloc((size_t)(M * ck * 9) * sizeof(float));
    if (!ws) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    for (int64_t o = 0; o < M; o++)
      memcpy(ws + (size_t)(o * ck) * 9, W + ((size_t)(o * Ct + off)) * 9, (size_t)ck * 9 * sizeof(float));
    struct osseg__post post[OSSEG__MAX_POST];
    int np = 0;
    post[np++] = (struct osseg__post){OSSEG__POST_SUM, 1, 0, -1};
    if (k == nskip - 1)
      for (int p = 0; p < n->npost && np < OSSEG__MAX_POST; p++) post[np++] = n->post[p];
    err = plain_conv(m, n, t, y, ws, M, ck, 3, 3, NULL, pad1, post, np, diag);
    osseg__free(ws);
    off += ck;
  }
  if (err) return err;
  /* stats: the model's nominal conv, not the cheaper one executed */
  m->params += (uint64_t)(M * Ct * 9 + (B ? M : 0));
  m->flops += 2ull * (uint64_t)(yd[2] * yd[3]) * (uint64_t)(M * Ct * 9);
  return 0;
}


const struct osseg__op osseg__ops_conv[] = {
    {"Conv", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL | OSSEG__OP_PREC_F32_OUT, OSSEG__PREC_RUNTIME, infer_conv, NULL, compile_conv},
    {"ConvTranspose", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, infer_conv, NULL, compile_deconv},
    {"BatchNormalization", 7, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, infer_batchnorm, NULL, compile_conv},
    {"osseg.UpConv2x", 0, 0, OSSEG__OP_INTERNAL | OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, NULL, NULL, compile_upconv},
    {0},
};
