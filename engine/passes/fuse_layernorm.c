/* Decomposed LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div
 * [, Mul, Add]) -> one LayerNormalization node (ops/norm.c), with constant
 * scale 1 / bias 0 when the export has no affine Mul / Add. */
#include "graph_edit.h"
#include "pass_list.h"

#include <string.h>

/* Trailing reduction axes of ReduceMean n over rank r: first axis or -1. */
static int trailing_axes(struct osseg__graph *g, const struct osseg__node *n, int r) {
  int64_t ax[OSSEG_MAX_RANK];
  int na = 0;
  const struct osseg__attr *a = osseg__attr_find(n, "axes");
  if (a && a->type == OSSEG__ATTR_INTS && a->n <= OSSEG_MAX_RANK) {
    na = (int)a->n;
    for (int i = 0; i < na; i++) ax[i] = a->ints[i];
  } else if (n->nin > 1 && n->in[1] >= 0 && g->tensors[n->in[1]].data) {
    size_t e;
    if (osseg__tensor_elems(g, &g->tensors[n->in[1]], &e) || e > OSSEG_MAX_RANK) return -1;
    na = (int)e;
    for (int i = 0; i < na; i++) ax[i] = osseg__const_i64(&g->tensors[n->in[1]], (size_t)i);
  }
  if (na < 1 || osseg__attr_int(n, "keepdims", 1) != 1) return -1;
  int mark[OSSEG_MAX_RANK] = {0};
  for (int i = 0; i < na; i++) {
    int64_t v = ax[i] < 0 ? ax[i] + r : ax[i];
    if (v < 0 || v >= r || mark[v]++) return -1;
  }
  for (int i = r - na; i < r; i++)
    if (!mark[i]) return -1;
  return r - na;
}

/* Constant usable as LayerNorm scale/bias over the dims from `axis`. */
static int ln_param_ok(struct osseg__graph *g, int t, const struct osseg__tensor *x, int axis) {
  const struct osseg__tensor *p = &g->tensors[t];
  if (!p->data || p->dtype != OSSEG__DT_FLOAT || p->rank > x->rank - axis) return 0;
  for (int i = 0; i < p->rank; i++) {
    int64_t d = p->dims[p->rank - 1 - i], xd = x->dims[x->rank - 1 - i];
    if (d != 1 && d != xd) return 0;
  }
  return 1;
}

/* New float32 constant with the dims of X from `axis` on, filled with v. */
static int const_fill(struct osseg__graph *g, int X, int axis, float v, struct osseg_diag *diag) {
  int64_t dims[OSSEG_MAX_RANK]; /* copied: adding a tensor may move g->tensors */
  int rank = g->tensors[X].rank - axis;
  memcpy(dims, g->tensors[X].dims + axis, sizeof(int64_t) * (size_t)rank);
  int t = osseg__new_const(g, rank, dims, diag);
  if (t < 0) return t;
  struct osseg__tensor *c = &g->tensors[t];
  size_t e = c->nbytes / sizeof(float);
  for (size_t i = 0; i < e; i++) ((float *)c->data)[i] = v;
  return t;
}

static int fuse_layernorm(struct osseg__graph *g, int si, struct osseg_diag *diag) {
  struct osseg__node *sub = &g->nodes[si];
  if (sub->nin != 2) return 0;
  int X = sub->in[0], d = sub->out[0];
  struct osseg__node *m1 = osseg__producer(g, sub->in[1], "ReduceMean");
  if (!m1 || m1->in[0] != X || g->tensors[X].data) return 0;
  const struct osseg__tensor *xt = &g->tensors[X];
  int axis = trailing_axes(g, m1, xt->rank);
  if (axis < 0 || osseg__consumers(g, m1->out[0], &(int){0}) != 1) return 0;
  /* d feeds exactly one Pow(d, 2) and one Div(d, sqrt) */
  struct osseg__node *pw = NULL, *dv = NULL;
  int nd = 0;
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead) continue;
    for (int i = 0; i < n->nin; i++) nd += n->in[i] == d;
    if (!strcmp(n->op, "Pow") && n->nin == 2 && n->in[0] == d) pw = n;
    if (!strcmp(n->op, "Div") && n->nin == 2 && n->in[0] == d) dv = n;
  }
  if (nd != 2 || d == g->output || !pw || !dv || osseg__const_scalar(g, pw->in[1]) != 2.0) return 0;
  struct osseg__node *m2 = osseg__only_consumer(g, pw->out[0]);
  if (!m2 || strcmp(m2->op, "ReduceMean") || trailing_axes(g, m2, xt->rank) != axis) return 0;
  struct osseg__node *ad = osseg__only_consumer(g, m2->out[0]);
  if (!ad || strcmp(ad->op, "Add")) return 0;
  double eps = osseg__const_scalar(g, osseg__other_input(ad, m2->out[0]));
  if (!(eps >= 0 && eps < 1)) return 0;
  struct osseg__node *sq = osseg__only_consumer(g, ad->out[0]);
  if (!sq || strcmp(sq->op, "Sqrt") || osseg__only_consumer(g, sq->out[0]) != dv ||
      dv->in[1] != sq->out[0])
    return 0;
  struct osseg__node *last = dv, *mul = osseg__only_consumer(g, dv->out[0]);
  int W = -1, B = -1;
  if (mul && !strcmp(mul->op, "Mul")) {
    int w = osseg__other_input(mul, dv->out[0]);
    if (w >= 0 && ln_param_ok(g, w, xt, axis)) {
      W = w;
      last = mul;
      struct osseg__node *add = osseg__only_consumer(g, mul->out[0]);
      if (add && !strcmp(add->op, "Add")) {
        int b = osseg__other_input(add, mul->out[0]);
        if (b >= 0 && ln_param_ok(g, b, xt, axis)) B = b, last = add;
      }
    }
  }
  int ln_index = (int)(last - g->nodes), matched_mul = W >= 0;
  if (W < 0 && (W = const_fill(g, X, axis, 1.0f, diag)) < 0) return W;
  if (B < 0 && (B = const_fill(g, X, axis, 0.0f, diag)) < 0) return B;
  last = &g->nodes[ln_index];
  int in[3] = {X, W, B};
  int err = osseg__set_inputs(last, in, 3);
  if (!err) err = osseg__set_op(last, "LayerNormalization");
  osseg__node_clear_attrs(last);
  if (!err) err = osseg__add_attr_int(last, "axis", axis);
  if (!err) err = osseg__add_attr_float(last, "epsilon", (float)eps);
  if (err) return osseg__fail(diag, err, "out of memory");
  m1->dead = sub->dead = pw->dead = m2->dead = ad->dead = sq->dead = 1;
  if (dv != last) dv->dead = 1;
  if (matched_mul && mul != last) mul->dead = 1;
  return 1;
}

int osseg__fuse_layernorms(struct osseg__graph *g, struct osseg_diag *diag) {
  int err;
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead || strcmp(g->nodes[ni].op, "Sub")) continue;
    if ((err = fuse_layernorm(g, ni, diag)) < 0) return err;
  }
  return 0;
}
