/* Reshape, Flatten, Squeeze, Unsqueeze, Transpose on runtime tensors.
 * Rank-4 activations live in nhwc, others in plain row-major order, so a
 * logical reshape is: view the source as plain (reorder to a plain
 * temporary when its bytes are not already in row-major order), then
 * reorder that plain view (permuted for Transpose) into the destination
 * layout. When both sides are byte-identical the output aliases the input. */
#include "build.h"

#include <string.h>

static int infer_flatten(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err;
  int axis;
  int64_t a = osseg__attr_int(n, "axis", 1);
  if (a == x->rank) axis = x->rank;
  else if ((err = osseg__norm_axis(g, n, a, x->rank, &axis, diag))) return err;
  int64_t d0 = 1, d1 = 1;
  for (int i = 0; i < x->rank; i++)
    if (osseg__mul_i64(i < axis ? d0 : d1, x->dims[i], i < axis ? &d0 : &d1))
      return OSSEG__FAIL(OSSEG_EOVERFLOW, OSSEG__NODEFMT "size overflow", OSSEG__NODEARG);
  y->dtype = x->dtype;
  y->rank = 2;
  y->dims[0] = d0;
  y->dims[1] = d1;
  return 0;
}

static int infer_reshape(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err;
  int64_t sh[OSSEG_MAX_RANK];
  struct osseg__tensor *st = osseg__in(g, n, 1);
  if (!st || !st->data) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "shape must be constant", OSSEG__NODEARG);
  int ns = osseg__int_list(g, n, NULL, 1, sh, OSSEG_MAX_RANK, diag);
  if (ns < 0) return ns;
  int allowzero = (int)osseg__attr_int(n, "allowzero", 0);
  size_t total;
  if ((err = osseg__dims_elems(x->dims, x->rank, &total)))
    return OSSEG__FAIL(err, OSSEG__NODEFMT "bad input size", OSSEG__NODEARG);
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < ns; i++) {
    if (sh[i] == 0 && !allowzero) {
      if (i >= x->rank) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "0 dim beyond input rank", OSSEG__NODEARG);
      sh[i] = x->dims[i];
    }
    if (sh[i] == -1) {
      if (infer >= 0) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "two -1 dims", OSSEG__NODEARG);
      infer = i;
      continue;
    }
    if (sh[i] < 0) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "negative dim", OSSEG__NODEARG);
    if (osseg__mul_i64(known, sh[i], &known)) return OSSEG__FAIL(OSSEG_EOVERFLOW, OSSEG__NODEFMT "overflow", OSSEG__NODEARG);
  }
  if (infer >= 0) {
    if (known == 0 || (int64_t)total % known)
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "cannot infer -1 dim", OSSEG__NODEARG);
    sh[infer] = (int64_t)total / known;
    known *= sh[infer];
  }
  if ((size_t)known != total)
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "reshape of %zu elements to %lld", OSSEG__NODEARG, total,
                (long long)known);
  y->dtype = x->dtype;
  y->rank = ns;
  memcpy(y->dims, sh, sizeof(int64_t) * (size_t)ns);
  return 0;
}

static int infer_transpose(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int64_t perm[OSSEG_MAX_RANK];
  int np = osseg__int_list(g, n, "perm", -1, perm, OSSEG_MAX_RANK, diag);
  if (np < 0) return np;
  if (np == 0) {
    np = x->rank;
    for (int i = 0; i < np; i++) perm[i] = np - 1 - i;
  }
  if (np != x->rank) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "perm length differs from rank", OSSEG__NODEARG);
  int seen[OSSEG_MAX_RANK] = {0};
  for (int i = 0; i < np; i++) {
    if (perm[i] < 0 || perm[i] >= np || seen[perm[i]]++)
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "perm is not a permutation", OSSEG__NODEARG);
    y->dims[i] = x->dims[perm[i]];
  }
  y->dtype = x->dtype;
  y->rank = np;
  return 0;
}

static int infer_squeeze(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  const char *op = n->op;
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err;
  int64_t axes[OSSEG_MAX_RANK];
  int na = osseg__int_list(g, n, "axes", g->opset >= 13 ? 1 : -1, axes, OSSEG_MAX_RANK, diag);
  if (na < 0) return na;
  int sq = op[0] == 'S';
  int orank = sq ? x->rank - na : x->rank + na;
  if (sq && na == 0) {
    orank = 0;
    for (int i = 0; i < x->rank; i++) orank += x->dims[i] != 1;
  }
  if (orank < 0 || orank > OSSEG_MAX_RANK) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "bad rank", OSSEG__NODEARG);
  int mark[OSSEG_MAX_RANK] = {0};
  for (int i = 0; i < na; i++) {
    int a;
    if ((err = osseg__norm_axis(g, n, axes[i], sq ? x->rank : orank, &a, diag))) return err;
    if (mark[a]++) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "repeated axis", OSSEG__NODEARG);
    if (sq && x->dims[a] != 1) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "squeezed dim is not 1", OSSEG__NODEARG);
  }
  int r = 0, j = 0;
  if (sq) {
    for (int i = 0; i < x->rank; i++)
      if (!(na ? mark[i] : x->dims[i] == 1)) y->dims[r++] = x->dims[i];
  } else {
    for (int i = 0; i < orank; i++) y->dims[r++] = mark[i] ? 1 : x->dims[j++];
  }
  y->dtype = x->dtype;
  y->rank = r;
  return 0;
}

static int fold_transpose(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  (void)diag;
  struct osseg__tensor *y = &g->tensors[n->out[0]], *x = &g->tensors[n->in[0]];
  size_t ne, es = osseg__dtype_size(y->dtype);
  osseg__tensor_elems(g, y, &ne);
  int64_t perm[OSSEG_MAX_RANK];
  int r = y->rank;
  const struct osseg__attr *a = osseg__attr_find(n, "perm");
  int have = a && a->type == OSSEG__ATTR_INTS && a->n == (size_t)r; /* empty = reverse */
  for (int i = 0; i < r; i++) perm[i] = have ? a->ints[i] : r - 1 - i;
  size_t xs[OSSEG_MAX_RANK], s = 1;
  for (int i = x->rank - 1; i >= 0; i--) xs[i] = s, s *= (size_t)x->dims[i];
  int64_t idx[OSSEG_MAX_RANK];
  for (size_t o = 0; o < ne; o++) {
    osseg__unravel(o, y->dims, r, idx);
    size_t src = 0;
    for (int i = 0; i < r; i++) src += (size_t)idx[i] * xs[perm[i]];
    memcpy((char *)y->data + o * es, (const char *)x->data + src * es, es);
  }
  return 0;
}

/* osseg.View (made by the passes): the output shares the input's bytes. */
static int compile_view(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  (void)diag;
  osseg__alias(m, n->out[0], n->in[0]);
  return 0;
}

static const dnnl_format_tag_t plain_tag[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                              dnnl_abcde, dnnl_abcdef};

/* nhwc equals row-major when at most one of C and H*W is > 1. */
static int plain_bytes(const struct osseg__tensor *t) {
  return t->rank != 4 || t->dims[1] == 1 || (t->dims[2] == 1 && t->dims[3] == 1);
}

static int compile_reshape(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y];
  int ni = (int)(n - g->nodes);
  int transpose = !strcmp(n->op, "Transpose");
  if (xt->rank > 6 || yt->rank > 6)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (%s): rank > 6", n->name, n->op);
  dnnl_dims_t xd, yd;
  osseg__set_dims(xd, xt->dims, xt->rank);
  osseg__set_dims(yd, yt->dims, yt->rank);
  int xr = xt->rank ? xt->rank : 1, yr = yt->rank ? yt->rank : 1;
  if (!xt->rank) xd[0] = 1;
  if (!yt->rank) yd[0] = 1;
  /* source as a plain row-major buffer */
  int src = x;
  dnnl_memory_desc_t xplain;
  dnnl_memory_desc_init_by_tag(&xplain, xr, xd, m->act_dt, plain_tag[xr]);
  if (!plain_bytes(xt)) {
    int tmp = osseg__add_temp(m, x, diag);
    if (tmp < 0) return tmp;
    m->md[tmp] = xplain;
    int err = osseg__reorder_step(m, ni, x, &m->md[x], tmp, &xplain, diag);
    if (err) return err;
    src = tmp;
    yt = &g->tensors[y];
  }
  if (!transpose && plain_bytes(yt)) {
    /* Same bytes: share storage. Aliased storage is never written in place
     * (osseg__can_inplace), so other readers of x stay correct. */
    osseg__alias(m, y, src);
    return 0;
  }
  dnnl_memory_desc_t view;
  if (transpose) {
    int perm[OSSEG_MAX_RANK];
    const struct osseg__attr *a = osseg__attr_find(n, "perm");
    for (int i = 0; i < xr; i++) {
      int p = a && a->type == OSSEG__ATTR_INTS && a->n == (size_t)xr ? (int)a->ints[i] : xr - 1 - i;
      perm[p] = i; /* input axis p goes to output position i */
    }
    if (dnnl_memory_desc_permute_axes(&view, &xplain, perm) != dnnl_success)
      return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': permute", n->name);
  } else {
    dnnl_memory_desc_init_by_tag(&view, yr, yd, m->act_dt, plain_tag[yr]);
  }
  return osseg__reorder_step(m, ni, src, &view, y, &m->md[y], diag);
}

const struct osseg__op osseg__ops_reshape[] = {
    {"Reshape", 5, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_reshape, osseg__fold_copy, compile_reshape},
    {"Flatten", 1, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_flatten, osseg__fold_copy, compile_reshape},
    {"Squeeze", 1, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_squeeze, osseg__fold_copy, compile_reshape},
    {"Unsqueeze", 1, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_squeeze, osseg__fold_copy, compile_reshape},
    {"Transpose", 1, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_transpose, fold_transpose, compile_reshape},
    {"osseg.View", 0, 0, OSSEG__OP_INTERNAL, OSSEG__PREC_RUNTIME, NULL, NULL, compile_view},
    {0},
};
