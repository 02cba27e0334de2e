/* Compile dispatch of the transformer ops, plus the small ones: osseg.View
 * (shared storage), Gelu, runtime Sqrt and Pow. */
#include "transformer.h"

#include <math.h>
#include <string.h>

int osseg__tr_plain_md(dnnl_memory_desc_t *md, const int64_t *dims, int rank, dnnl_data_type_t dt) {
  static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                            dnnl_abcde, dnnl_abcdef};
  dnnl_dims_t d;
  if (rank > 6) return OSSEG_EUNSUPPORTED;
  if (rank == 0) d[0] = 1;
  for (int i = 0; i < rank; i++) d[i] = dims[i];
  return dnnl_memory_desc_init_by_tag(md, rank ? rank : 1, d, dt, plain[rank]) == dnnl_success
             ? 0 : OSSEG_EBACKEND;
}

static int is_plain(const struct osseg__tensor *t) {
  return t->rank != 4 || t->dims[1] == 1 || (t->dims[2] == 1 && t->dims[3] == 1);
}

int osseg__tr_plain_in(struct osseg_model *m, int node, int t, struct osseg_diag *diag) {
  if (is_plain(&m->g.tensors[t])) return t;
  int tmp = osseg__add_temp(m, t, diag);
  if (tmp < 0) return tmp;
  const struct osseg__tensor *x = &m->g.tensors[t];
  if (osseg__tr_plain_md(&m->md[tmp], x->dims, x->rank, m->act_dt))
    return osseg__fail(diag, OSSEG_EBACKEND, "plain layout");
  int err = osseg__reorder_step(m, node, t, &m->md[t], tmp, &m->md[tmp], diag);
  return err ? err : tmp;
}

int osseg__tr_plain_out(struct osseg_model *m, int y, struct osseg_diag *diag) {
  if (is_plain(&m->g.tensors[y])) return y;
  int tmp = osseg__add_temp(m, y, diag);
  if (tmp < 0) return tmp;
  const struct osseg__tensor *x = &m->g.tensors[y];
  if (osseg__tr_plain_md(&m->md[tmp], x->dims, x->rank, m->act_dt))
    return osseg__fail(diag, OSSEG_EBACKEND, "plain layout");
  return tmp;
}

int osseg__tr_plain_out_done(struct osseg_model *m, int node, int tmp, int y,
                             struct osseg_diag *diag) {
  if (tmp == y) return 0;
  return osseg__reorder_step(m, node, tmp, &m->md[tmp], y, &m->md[y], diag);
}

static int eltwise(struct osseg_model *m, struct osseg__node *n, dnnl_alg_kind_t alg, float alpha,
                   float beta, struct osseg_diag *diag) {
  int x = n->in[0], y = n->out[0];
  if (osseg__can_inplace(m, x)) osseg__alias(m, y, x);
  return osseg__eltwise_step(m, n, x, y, alg, alpha, beta, diag);
}

/* Copy of a strided view of x (element offset, dims, strides) into the
 * (possibly strided) destination view of y, as one reorder step. */
static int view_copy(struct osseg_model *m, int ni, int x, const struct osseg__view *sv, int y,
                     const struct osseg__view *dv, struct osseg_diag *diag) {
  dnnl_memory_desc_t smd, dmd;
  dnnl_dims_t d, ss, ds;
  int r = sv->rank ? sv->rank : 1;
  for (int i = 0; i < r; i++) {
    d[i] = sv->rank ? sv->dims[i] : 1;
    ss[i] = sv->rank ? sv->strides[i] : 1;
    ds[i] = dv->rank ? dv->strides[i] : 1;
    if (ss[i] < 0) return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s': negative steps",
                                      m->g.nodes[ni].name);
  }
  if (dnnl_memory_desc_init_by_strides(&smd, r, d, m->act_dt, ss) != dnnl_success ||
      dnnl_memory_desc_init_by_strides(&dmd, r, d, m->act_dt, ds) != dnnl_success)
    return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': view descriptors", m->g.nodes[ni].name);
  smd.offset0 = sv->offset;
  dmd.offset0 = dv->offset;
  return osseg__reorder_step(m, ni, x, &smd, y, &dmd, diag);
}

/* Runtime Slice (positive steps) and Gather with constant indices: views of
 * the input copied by reorders (one per gathered index). */
static int compile_slice_gather(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int ni = (int)(n - g->nodes), x = n->in[0], y = n->out[0];
  const struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y];
  struct osseg__view xv, yv;
  osseg__view_physical(xt, &xv);
  osseg__view_physical(yt, &yv);
  if (!strcmp(n->op, "Gather")) {
    const struct osseg__tensor *ix = n->nin > 1 && n->in[1] >= 0 ? &g->tensors[n->in[1]] : NULL;
    int64_t a = osseg__attr_int(n, "axis", 0);
    if (a < 0) a += xt->rank;
    size_t cnt;
    if (!ix || !ix->data || osseg__tensor_elems(g, ix, &cnt) || cnt > 64)
      return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Gather, opset %d): runtime data "
                         "needs at most 64 constant indices", n->name, g->opset);
    /* y dims: x dims with dim a replaced by the index dims; view y as x-shaped
     * with dim a of size 1 at each index position */
    for (size_t k = 0; k < cnt; k++) {
      int64_t j = osseg__const_i64(ix, k);
      if (j < 0) j += xt->dims[a];
      if (j < 0 || j >= xt->dims[a])
        return osseg__fail(diag, OSSEG_ERANGE, "node '%s' (Gather): index out of range", n->name);
      struct osseg__view sv = xv, dv;
      sv.dims[a] = 1;
      sv.offset = j * xv.strides[a];
      int64_t dd[OSSEG_MAX_RANK];
      memcpy(dd, xt->dims, sizeof dd);
      dd[a] = (int64_t)cnt;
      if (osseg__view_reshape(&yv, dd, xt->rank, &dv))
        return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Gather): layout", n->name);
      dv.dims[a] = 1;
      dv.offset = (int64_t)k * dv.strides[a];
      int err = view_copy(m, ni, x, &sv, y, &dv, diag);
      if (err) return err;
    }
    return 0;
  }
  /* Slice: per-axis start and step, clamped as in shape inference */
  int64_t st[OSSEG_MAX_RANK], ax[OSSEG_MAX_RANK], sp[OSSEG_MAX_RANK];
  int ns = 0, na = 0, nsp = 0;
  const struct osseg__attr *at;
  if (g->opset < 10) {
    if ((at = osseg__attr_find(n, "starts"))) { ns = (int)at->n; for (int i = 0; i < ns; i++) st[i] = at->ints[i]; }
    if ((at = osseg__attr_find(n, "axes"))) { na = (int)at->n; for (int i = 0; i < na; i++) ax[i] = at->ints[i]; }
  } else {
    const int idx[3] = {1, 3, 4};
    int64_t *dst[3] = {st, ax, sp};
    int *cntp[3] = {&ns, &na, &nsp};
    for (int q = 0; q < 3; q++) {
      if (n->nin <= idx[q] || n->in[idx[q]] < 0) continue;
      const struct osseg__tensor *t = &g->tensors[n->in[idx[q]]];
      size_t c;
      if (!t->data || osseg__tensor_elems(g, t, &c) || c > OSSEG_MAX_RANK)
        return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Slice): non-constant bounds", n->name);
      *cntp[q] = (int)c;
      for (size_t i = 0; i < c; i++) dst[q][i] = osseg__const_i64(t, i);
    }
  }
  struct osseg__view sv = xv;
  memcpy(sv.dims, yt->dims, sizeof(int64_t) * (size_t)yt->rank);
  for (int i = 0; i < ns; i++) {
    int64_t a = na ? ax[i] : i;
    if (a < 0) a += xt->rank;
    int64_t dim = xt->dims[a], s = st[i], step = nsp ? sp[i] : 1;
    if (step < 1)
      return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Slice, opset %d): negative steps "
                         "on runtime data", n->name, g->opset);
    if (s < 0) s += dim;
    s = s < 0 ? 0 : s > dim ? dim : s;
    /* a step >= dim selects at most one element: clamp it before the
     * multiply (steps up to 2^63 are legal in the file) */
    if (step > dim) step = dim > 0 ? dim : 1;
    sv.offset += s * xv.strides[a];
    sv.strides[a] = xv.strides[a] * step;
  }
  return view_copy(m, ni, x, &sv, y, &yv, diag);
}

/* Split on runtime data: one strided copy per used output. */
static int compile_split(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int ni = (int)(n - g->nodes), x = n->in[0];
  const struct osseg__tensor *xt = &g->tensors[x];
  if (xt->data)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Split, opset %d): constant input",
                       n->name, g->opset);
  int64_t a = osseg__attr_int(n, "axis", 0);
  if (a < 0) a += xt->rank;
  struct osseg__view xv;
  osseg__view_physical(xt, &xv);
  int64_t start = 0;
  for (int i = 0; i < n->nout; i++) {
    int y = n->out[i];
    const struct osseg__tensor *yt = &g->tensors[y];
    int64_t len = yt->dims[a];
    if (g->tensors[y].uses > 0 || y == g->output) {
      if (m->md[y].ndims == 0 && osseg__tensor_md(m, y, m->act_dt, NULL))
        return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': output layout", n->name);
      struct osseg__view sv = xv, yv;
      sv.dims[a] = len;
      sv.offset = start * xv.strides[a];
      osseg__view_physical(&g->tensors[y], &yv);
      if (len > 0) {
        int err = view_copy(m, ni, x, &sv, y, &yv, diag);
        if (err) return err;
      }
    }
    start += len;
  }
  return 0;
}

int osseg__compile_transformer(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  const char *op = n->op;
  struct osseg__graph *g = &m->g;
  if (!strcmp(op, OSSEG__OP_VIEW)) {
    osseg__alias(m, n->out[0], n->in[0]);
    return 0;
  }
  if (!strcmp(op, "MatMul") || !strcmp(op, "Gemm")) return osseg__compile_matmul(m, n, diag);
  if (!strcmp(op, "Softmax")) return osseg__compile_softmax(m, n, diag);
  if (!strcmp(op, "LayerNormalization")) return osseg__compile_layernorm(m, n, diag);
  if (!strcmp(op, OSSEG__OP_ATTENTION)) return osseg__compile_attention(m, n, diag);
  if (!strcmp(op, "osseg.ResizeSum")) return osseg__compile_resize_sum(m, n, diag);
  if (!strcmp(op, "osseg.ResizePlanar")) return osseg__compile_resize_planar(m, n, diag);
  if (!strcmp(op, "Gelu"))
    return eltwise(m, n, strcmp(osseg__attr_str(n, "approximate", "none"), "tanh")
                             ? dnnl_eltwise_gelu_erf : dnnl_eltwise_gelu_tanh, 0, 0, diag);
  if (!strcmp(op, "Slice") || !strcmp(op, "Gather")) return compile_slice_gather(m, n, diag);
  if (!strcmp(op, "Split")) return compile_split(m, n, diag);
  /* A lone Erf (outside the GELU pattern) has no kernel: load error. */
  if (!strcmp(op, "Sqrt")) return eltwise(m, n, dnnl_eltwise_sqrt, 0, 0, diag);
  if (!strcmp(op, "Pow")) {
    const struct osseg__tensor *e = &g->tensors[n->in[1]];
    size_t cnt;
    if (!e->data || osseg__tensor_elems(g, e, &cnt) || cnt != 1 ||
        g->tensors[n->in[0]].data)
      return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                         "node '%s' (Pow, opset %d): only a runtime base with a constant scalar "
                         "exponent is supported", n->name, g->opset);
    double p = osseg__const_f64(e, 0);
    if (p == 2.0) return eltwise(m, n, dnnl_eltwise_square, 0, 0, diag);
    return eltwise(m, n, dnnl_eltwise_pow, 1.0f, (float)p, diag);
  }
  return 1;
}
