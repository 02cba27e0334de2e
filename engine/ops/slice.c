/* Slicing ops: Slice, Gather and Split. On constants they fold; on runtime
 * data they are strided views of the input copied by reorder steps (Slice
 * with positive steps, Gather with at most 64 constant indices, Split one
 * copy per used output). */
#include "build.h"
#include "view.h"

#include <string.h>

static int infer_gather(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err;
  struct osseg__tensor *idx = osseg__in(g, n, 1);
  int axis;
  if (!idx) return OSSEG__FAIL(OSSEG_EPARSE, OSSEG__NODEFMT "needs indices", OSSEG__NODEARG);
  if ((err = osseg__norm_axis(g, n, osseg__attr_int(n, "axis", 0), x->rank, &axis, diag))) return err;
  int r = x->rank - 1 + idx->rank;
  if (r > OSSEG_MAX_RANK) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "rank too high", OSSEG__NODEARG);
  int k = 0;
  for (int i = 0; i < axis; i++) y->dims[k++] = x->dims[i];
  for (int i = 0; i < idx->rank; i++) y->dims[k++] = idx->dims[i];
  for (int i = axis + 1; i < x->rank; i++) y->dims[k++] = x->dims[i];
  y->rank = r;
  y->dtype = x->dtype;
  return 0;
}

static int infer_slice(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err;
  int64_t st[OSSEG_MAX_RANK], en[OSSEG_MAX_RANK], ax[OSSEG_MAX_RANK], sp[OSSEG_MAX_RANK];
  int ns, ne, na, nsp;
  if (g->opset < 10) {
    ns = osseg__int_list(g, n, "starts", -1, st, OSSEG_MAX_RANK, diag);
    ne = osseg__int_list(g, n, "ends", -1, en, OSSEG_MAX_RANK, diag);
    na = osseg__int_list(g, n, "axes", -1, ax, OSSEG_MAX_RANK, diag);
    nsp = 0;
  } else {
    ns = osseg__int_list(g, n, NULL, 1, st, OSSEG_MAX_RANK, diag);
    ne = osseg__int_list(g, n, NULL, 2, en, OSSEG_MAX_RANK, diag);
    na = osseg__int_list(g, n, NULL, 3, ax, OSSEG_MAX_RANK, diag);
    nsp = osseg__int_list(g, n, NULL, 4, sp, OSSEG_MAX_RANK, diag);
  }
  if (ns < 0 || ne < 0 || na < 0 || nsp < 0) return -1;
  if (ns != ne || (na && na != ns) || (nsp && nsp != ns))
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "starts/ends/axes/steps lengths differ", OSSEG__NODEARG);
  osseg__same_shape(x, y);
  for (int i = 0; i < ns; i++) {
    int a;
    if ((err = osseg__norm_axis(g, n, na ? ax[i] : i, x->rank, &a, diag))) return err;
    int64_t step = nsp ? sp[i] : 1, dim = x->dims[a], s = st[i], e = en[i];
    if (step == 0) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "step 0", OSSEG__NODEARG);
    if (step == INT64_MIN) step = -INT64_MAX; /* same count; keeps -step defined */
    if (s < 0) s += dim;
    if (e < 0 && e > INT64_MIN + dim) e += dim;
    if (step > 0) {
      s = s < 0 ? 0 : s > dim ? dim : s;
      e = e < 0 ? 0 : e > dim ? dim : e;
      y->dims[a] = e > s ? (e - s - 1) / step + 1 : 0;
    } else {
      s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
      e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
      y->dims[a] = s > e ? (s - e - 1) / (-step) + 1 : 0;
    }
  }
  return 0;
}

/* Split: sizes from the `split` attribute (< 13) or input 1, else equal
 * parts (opset 18: num_outputs, last part smaller). */
static int infer_split(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  int64_t a = osseg__attr_int(n, "axis", 0);
  if (a < -x->rank || a >= x->rank)
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "axis %lld out of range", OSSEG__NODEARG, (long long)a);
  int axis = (int)(a < 0 ? a + x->rank : a);
  int64_t parts[64], dim = x->dims[axis], sum = 0;
  int np = 0;
  if (n->nout > 64) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "more than 64 outputs", OSSEG__NODEARG);
  const struct osseg__attr *at = osseg__attr_find(n, "split");
  struct osseg__tensor *st = g->opset >= 13 ? osseg__in(g, n, 1) : NULL;
  if (at && at->type == OSSEG__ATTR_INTS) {
    if (at->n != (size_t)n->nout) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "split has %zu values for %d outputs", OSSEG__NODEARG, at->n, n->nout);
    for (size_t i = 0; i < at->n; i++) parts[np++] = at->ints[i];
  } else if (st) {
    size_t e;
    if (!st->data || osseg__tensor_elems(g, st, &e) || e != (size_t)n->nout)
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "split sizes must be a constant of %d values", OSSEG__NODEARG, n->nout);
    for (size_t i = 0; i < e; i++) parts[np++] = osseg__const_i64(st, i);
  } else {
    int64_t k = n->nout, per = (dim + k - 1) / k;
    for (int i = 0; i < k; i++) parts[np++] = dim - per * i < per ? dim - per * i : per;
    if (g->opset < 18 && dim % k)
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "%lld not divisible into %d parts", OSSEG__NODEARG, (long long)dim, n->nout);
  }
  for (int i = 0; i < np; i++) {
    if (parts[i] < 0 || parts[i] > dim)
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "split size %lld out of range", OSSEG__NODEARG, (long long)parts[i]);
    sum += parts[i]; /* <= 64 * dim: no overflow */
  }
  if (sum != dim) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "split sizes sum to %lld, dim is %lld", OSSEG__NODEARG, (long long)sum, (long long)dim);
  for (int i = 0; i < n->nout; i++) {
    struct osseg__tensor *y = &g->tensors[n->out[i]];
    y->dtype = x->dtype;
    y->rank = x->rank;
    memcpy(y->dims, x->dims, sizeof x->dims);
    y->dims[axis] = parts[i];
  }
  return 0;
}


static int fold_gather(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  struct osseg__tensor *x = &g->tensors[n->in[0]];
  size_t es = osseg__dtype_size(y->dtype);
  struct osseg__tensor *ix = &g->tensors[n->in[1]];
  int axis = (int)osseg__attr_int(n, "axis", 0);
  if (axis < 0) axis += x->rank;
  size_t outer = 1, inner = es, ni;
  for (int i = 0; i < axis; i++) outer *= (size_t)x->dims[i];
  for (int i = axis + 1; i < x->rank; i++) inner *= (size_t)x->dims[i];
  osseg__tensor_elems(g, ix, &ni);
  char *dst = y->data;
  for (size_t o = 0; o < outer; o++)
    for (size_t k = 0; k < ni; k++) {
      int64_t j = osseg__const_i64(ix, k);
      if (j < 0) j += x->dims[axis];
      if (j < 0 || j >= x->dims[axis])
        return osseg__fail(diag, OSSEG_ERANGE, "node '%s' (Gather): index %lld out of range",
                           n->name, (long long)j);
      memcpy(dst, (const char *)x->data + (o * (size_t)x->dims[axis] + (size_t)j) * inner, inner);
      dst += inner;
    }
  return 0;
}

static int fold_slice(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  (void)diag;
  struct osseg__tensor *y = &g->tensors[n->out[0]], *x = &g->tensors[n->in[0]];
  size_t ne, es = osseg__dtype_size(y->dtype);
  osseg__tensor_elems(g, y, &ne);
  int64_t start[OSSEG_MAX_RANK], step[OSSEG_MAX_RANK];
  int r = y->rank;
  for (int i = 0; i < r; i++) start[i] = 0, step[i] = 1;
  /* Recompute clamped starts like shape inference did. */
  int64_t st[OSSEG_MAX_RANK], ax[OSSEG_MAX_RANK], sp[OSSEG_MAX_RANK];
  int ns = 0, na = 0, nsp = 0;
  const struct osseg__attr *a;
  if (g->opset < 10) {
    if ((a = osseg__attr_find(n, "starts"))) { ns = (int)a->n; for (int i = 0; i < ns; i++) st[i] = a->ints[i]; }
    if ((a = osseg__attr_find(n, "axes"))) { na = (int)a->n; for (int i = 0; i < na; i++) ax[i] = a->ints[i]; }
  } else {
    struct osseg__tensor *t;
    size_t c;
    t = &g->tensors[n->in[1]];
    osseg__tensor_elems(g, t, &c); ns = (int)c;
    for (int i = 0; i < ns; i++) st[i] = osseg__const_i64(t, (size_t)i);
    if (n->nin > 3 && n->in[3] >= 0) {
      t = &g->tensors[n->in[3]]; osseg__tensor_elems(g, t, &c); na = (int)c;
      for (int i = 0; i < na; i++) ax[i] = osseg__const_i64(t, (size_t)i);
    }
    if (n->nin > 4 && n->in[4] >= 0) {
      t = &g->tensors[n->in[4]]; osseg__tensor_elems(g, t, &c); nsp = (int)c;
      for (int i = 0; i < nsp; i++) sp[i] = osseg__const_i64(t, (size_t)i);
    }
  }
  for (int i = 0; i < ns; i++) {
    int64_t a2 = na ? ax[i] : i;
    if (a2 < 0) a2 += r;
    int64_t dim = x->dims[a2], s = st[i], sv = nsp ? sp[i] : 1;
    if (sv == INT64_MIN) sv = -INT64_MAX;
    if (s < 0) s += dim;
    if (sv > 0) s = s < 0 ? 0 : s > dim ? dim : s;
    else s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
    start[a2] = s;
    step[a2] = sv;
  }
  size_t xs[OSSEG_MAX_RANK], s = 1;
  for (int i = x->rank - 1; i >= 0; i--) xs[i] = s, s *= (size_t)x->dims[i];
  int64_t idx[OSSEG_MAX_RANK];
  for (size_t o = 0; o < ne; o++) {
    osseg__unravel(o, y->dims, r, idx);
    size_t src = 0;
    for (int i = 0; i < r; i++) src += (size_t)(start[i] + idx[i] * step[i]) * xs[i];
    memcpy((char *)y->data + o * es, (const char *)x->data + src * es, es);
  }
  return 0;
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


const struct osseg__op osseg__ops_slice[] = {
    {"Slice", 1, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_slice, fold_slice, compile_slice_gather},
    {"Gather", 1, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_gather, fold_gather, compile_slice_gather},
    {"Split", 2, OSSEG__OPSET_MAX, OSSEG__OP_ALL_OUTPUTS, OSSEG__PREC_RUNTIME, infer_split, NULL, compile_split},
    {0},
};
