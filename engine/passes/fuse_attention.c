/* Attention (MatMul(Q, K^T) [* scale] -> Softmax(-1) -> MatMul(., V), with
 * Q/K/V/output reached through layout-only ops) -> osseg.Attention
 * (attention.c), whose operands are strided views of the token tensors (no
 * transposed copies, no score matrix beyond one tile). The views are
 * computed on physical strides (view.c), so the rewrite is checked for exact
 * byte equivalence rather than assumed from the pattern. */
#include "../view.h"
#include "graph_edit.h"
#include "pass_list.h"

#include <string.h>

static void to4(struct osseg__view *v) {
  while (v->rank < 4) {
    memmove(v->dims + 1, v->dims, sizeof(int64_t) * (size_t)v->rank);
    memmove(v->strides + 1, v->strides, sizeof(int64_t) * (size_t)v->rank);
    v->dims[0] = 1;
    v->strides[0] = 0;
    v->rank++;
  }
}

/* The view has the wanted dims, up to broadcast batch dims (stride 0). */
static int view_fits(struct osseg__view *v, const int64_t *want) {
  for (int i = 0; i < 4; i++) {
    if (v->dims[i] == want[i]) continue;
    if (v->dims[i] != 1 || i >= 2) return 0;
    v->dims[i] = want[i];
    v->strides[i] = 0;
  }
  return 1;
}

static int view_attr(struct osseg__node *n, const char *name, const struct osseg__view *v) {
  int64_t a[9];
  a[0] = v->offset;
  for (int i = 0; i < 4; i++) a[1 + i] = v->dims[i], a[5 + i] = v->strides[i];
  return osseg__add_attr_ints(n, name, a, 9);
}

static int fuse_attention(struct osseg__graph *g, struct osseg__node *sm, struct osseg_diag *diag) {
  struct osseg__tensor *st = &g->tensors[sm->in[0]];
  int r = st->rank;
  if (r < 2 || r > 4) return 0;
  int64_t ax = osseg__attr_int(sm, "axis", g->opset < 13 ? 1 : -1);
  if (ax < 0) ax += r;
  if (ax != r - 1) return 0;
  double scale = 1.0;
  struct osseg__node *sc = osseg__producer(g, sm->in[0], NULL), *qk;
  if (!sc) return 0;
  if ((!strcmp(sc->op, "Mul") || !strcmp(sc->op, "Div")) && sc->nin == 2) {
    double c = osseg__const_scalar(g, sc->in[1]);
    int mm = sc->in[0];
    if (c != c && !strcmp(sc->op, "Mul")) c = osseg__const_scalar(g, sc->in[0]), mm = sc->in[1];
    if (!(c == c) || c == 0) return 0;
    scale = !strcmp(sc->op, "Mul") ? c : 1.0 / c;
    qk = osseg__producer(g, mm, "MatMul");
    if (!qk || osseg__only_consumer(g, qk->out[0]) != sc) return 0;
  } else if (!strcmp(sc->op, "MatMul")) {
    qk = sc;
    sc = NULL;
  } else {
    return 0;
  }
  if (osseg__only_consumer(g, sm->in[0]) != sm) return 0;
  struct osseg__node *pv = osseg__only_consumer(g, sm->out[0]);
  if (!pv || strcmp(pv->op, "MatMul") || pv->nin != 2 || pv->in[0] != sm->out[0]) return 0;
  int A = qk->in[0], Bt = qk->in[1], V = pv->in[1];
  if (g->tensors[A].data || g->tensors[Bt].data || g->tensors[V].data) return 0;
  if (g->tensors[A].rank != r || g->tensors[Bt].rank != r || g->tensors[V].rank != r) return 0;
  struct osseg__view qv, kv, vv, ov;
  int qb, kb, vb;
  osseg__view_trace(g, A, &qv, &qb);
  osseg__view_trace(g, Bt, &kv, &kb);
  osseg__view_trace(g, V, &vv, &vb);
  to4(&qv), to4(&kv), to4(&vv);
  /* output chain: single-use layout ops after pv */
  int O = pv->out[0], Y = O, chain[16], nchain = 0;
  for (;;) {
    struct osseg__node *c = osseg__only_consumer(g, Y);
    if (!c || Y == g->output || nchain == 16 || c->in[0] != Y || !osseg__is_layout_op(c->op) ||
        !strcmp(c->op, "Gather") || !strcmp(c->op, OSSEG__OP_VIEW))
      break;
    chain[nchain++] = (int)(c - g->nodes);
    Y = c->out[0];
  }
  for (;;) {
    struct osseg__view v;
    osseg__view_physical(&g->tensors[Y], &v);
    int ok = 1;
    for (int i = nchain - 1; i >= 0 && ok; i--) {
      struct osseg__node *c = &g->nodes[chain[i]];
      const struct osseg__tensor *in = &g->tensors[c->in[0]];
      if (!strcmp(c->op, "Transpose")) {
        int perm[OSSEG_MAX_RANK];
        osseg__transpose_perm(c, v.rank, perm);
        struct osseg__view w = v;
        for (int k = 0; k < v.rank; k++) w.dims[perm[k]] = v.dims[k], w.strides[perm[k]] = v.strides[k];
        v = w;
      } else {
        struct osseg__view w;
        ok = osseg__view_reshape(&v, in->dims, in->rank, &w) == 0;
        v = w;
      }
    }
    if (ok) {
      ov = v;
      break;
    }
    if (nchain == 0) return 0;
    nchain = 0;
    Y = O;
  }
  to4(&ov);
  const struct osseg__tensor *ot = &g->tensors[O];
  int64_t od[4] = {1, 1, 1, 1};
  for (int i = 0; i < r; i++) od[4 - r + i] = ot->dims[i];
  int64_t Bn = od[0], H = od[1], N = od[2], D = od[3], M = g->tensors[Bt].dims[r - 1];
  int64_t wq[4] = {Bn, H, N, g->tensors[A].dims[r - 1]}, wk[4] = {Bn, H, wq[3], M},
          wv[4] = {Bn, H, M, D};
  if (!view_fits(&qv, wq) || !view_fits(&kv, wk) || !view_fits(&vv, wv) ||
      memcmp(ov.dims, od, sizeof od)) /* the output is written, never broadcast */
    return 0;
  struct osseg__node *an = pv;
  int in[3] = {qb, kb, vb};
  int err = osseg__set_inputs(an, in, 3);
  if (!err) err = osseg__set_op(an, OSSEG__OP_ATTENTION);
  osseg__node_clear_attrs(an);
  if (!err) err = view_attr(an, "q", &qv);
  if (!err) err = view_attr(an, "k", &kv);
  if (!err) err = view_attr(an, "v", &vv);
  if (!err) err = view_attr(an, "o", &ov);
  if (!err) err = osseg__add_attr_float(an, "scale", (float)scale);
  if (err) return osseg__fail(diag, err, "out of memory");
  for (int i = 0; i < nchain; i++) g->nodes[chain[i]].dead = 1;
  an->out[0] = Y;
  g->tensors[Y].producer = (int)(an - g->nodes);
  sm->dead = qk->dead = 1;
  if (sc) sc->dead = 1;
  return 1;
}

int osseg__fuse_attentions(struct osseg__graph *g, struct osseg_diag *diag) {
  int err;
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead || strcmp(g->nodes[ni].op, "Softmax")) continue;
    if ((err = fuse_attention(g, &g->nodes[ni], diag)) < 0) return err;
  }
  return 0;
}
