/* Graph rewrites for transformer exports (SegFormer / Mix Transformer), run
 * after shape inference and before the CNN fusions (fuse.c):
 *
 *  1. decomposed LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div
 *     [, Mul, Add]) -> one LayerNormalization node;
 *  2. GELU from its Erf form (Div, Erf, Add, Mul, Mul) -> one Gelu node;
 *  3. attention (MatMul(Q, K^T) [* scale] -> Softmax(-1) -> MatMul(., V),
 *     with Q/K/V/output reached through layout-only ops) -> osseg.Attention,
 *     whose operands are strided views of the token tensors (no transposed
 *     copies, no score matrix beyond one tile);
 *  4. chains of layout-only ops whose result has the same bytes as their
 *     source in the engine layout -> osseg.View (shared storage). A rank-4
 *     activation is nhwc, so (1,C,H,W) -> Reshape(1,C,HW) -> Transpose(0,2,1)
 *     is the (HW, C) token matrix itself, and the way back is free too;
 *  5. MatMul/Gemm epilogues: bias Add, residual Add, activation;
 *  6. an activation behind an osseg.View of a Conv output moves in front of
 *     the view, so fuse.c can make it the conv's post-op (Mix-FFN dwconv+GELU);
 *  7. dead-node elimination.
 * Views are computed on physical strides, so every rewrite is checked for
 * exact byte equivalence rather than assumed from the pattern. */
#include "transformer.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------- graph helpers */

static char *dupstr(const char *s) {
  size_t l = strlen(s) + 1;
  char *d = osseg__malloc(l);
  if (d) memcpy(d, s, l);
  return d;
}

static int set_op(struct osseg__node *n, const char *op) {
  char *s = dupstr(op);
  if (!s) return OSSEG_ENOMEM;
  osseg__free(n->op);
  n->op = s;
  return 0;
}

static struct osseg__attr *add_attr(struct osseg__node *n, const char *name, int type) {
  struct osseg__attr *a = osseg__realloc(n->attrs, (size_t)(n->nattrs + 1) * sizeof *a);
  if (!a) return NULL;
  n->attrs = a;
  a = &n->attrs[n->nattrs];
  memset(a, 0, sizeof *a);
  a->name = dupstr(name);
  if (!a->name) return NULL;
  a->type = type;
  a->tensor = -1;
  n->nattrs++;
  return a;
}

static int attr_float(struct osseg__node *n, const char *name, float f) {
  struct osseg__attr *a = add_attr(n, name, OSSEG__ATTR_FLOAT);
  if (!a) return OSSEG_ENOMEM;
  a->f = f;
  return 0;
}

static int attr_int(struct osseg__node *n, const char *name, int64_t i) {
  struct osseg__attr *a = add_attr(n, name, OSSEG__ATTR_INT);
  if (!a) return OSSEG_ENOMEM;
  a->i = i;
  return 0;
}

static int attr_ints(struct osseg__node *n, const char *name, const int64_t *v, size_t cnt) {
  struct osseg__attr *a = add_attr(n, name, OSSEG__ATTR_INTS);
  if (!a) return OSSEG_ENOMEM;
  a->ints = osseg__malloc(cnt * sizeof(int64_t));
  if (!a->ints) return OSSEG_ENOMEM;
  memcpy(a->ints, v, cnt * sizeof(int64_t));
  a->n = cnt;
  return 0;
}

static int set_inputs(struct osseg__node *n, const int *in, int nin) {
  int *p = osseg__realloc(n->in, (size_t)(nin > 0 ? nin : 1) * sizeof(int));
  if (!p) return OSSEG_ENOMEM;
  n->in = p;
  memcpy(p, in, sizeof(int) * (size_t)nin);
  n->nin = nin;
  return 0;
}

/* Live consumers of tensor t: count and the first one (index). */
static int consumers(const struct osseg__graph *g, int t, int *first) {
  int c = 0;
  *first = -1;
  for (int ni = 0; ni < g->nnodes; ni++) {
    const struct osseg__node *n = &g->nodes[ni];
    if (n->dead) continue;
    int uses = 0;
    for (int i = 0; i < n->nin; i++) uses += n->in[i] == t;
    for (int p = 0; p < n->npost; p++) uses += n->post[p].kind == OSSEG__POST_SUM && n->post[p].arg == t;
    if (uses && *first < 0) *first = ni;
    c += uses;
  }
  if (t == g->output) c++;
  return c;
}

/* The single live consumer of t (and t is not the graph output), or NULL. */
static struct osseg__node *only_consumer(struct osseg__graph *g, int t) {
  int first;
  if (t < 0 || consumers(g, t, &first) != 1 || first < 0) return NULL;
  return &g->nodes[first];
}

static struct osseg__node *producer(struct osseg__graph *g, int t, const char *op) {
  if (t < 0) return NULL;
  int p = g->tensors[t].producer;
  if (p < 0 || g->nodes[p].dead || g->nodes[p].nout < 1 || g->nodes[p].out[0] != t) return NULL;
  return op && strcmp(g->nodes[p].op, op) ? NULL : &g->nodes[p];
}

/* Value of a constant tensor with exactly one element, else NAN. */
static double scalar(const struct osseg__graph *g, int t) {
  if (t < 0 || !g->tensors[t].data) return NAN;
  size_t e;
  if (osseg__tensor_elems(g, &g->tensors[t], &e) || e != 1) return NAN;
  return osseg__const_f64(&g->tensors[t], 0);
}

/* Other input of binary node n than t (or -1 if t is not an input). */
static int other_input(const struct osseg__node *n, int t) {
  if (n->nin != 2) return -1;
  if (n->in[0] == t) return n->in[1];
  if (n->in[1] == t) return n->in[0];
  return -1;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-4 * fabs(b); }

/* ----------------------------------------------------------- LayerNorm */

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
  int t = osseg__graph_add_tensor(g, NULL, 0);
  if (t < 0) return osseg__fail(diag, t, "out of memory");
  struct osseg__tensor *c = &g->tensors[t], *x = &g->tensors[X];
  c->dtype = OSSEG__DT_FLOAT;
  c->rank = x->rank - axis;
  memcpy(c->dims, x->dims + axis, sizeof(int64_t) * (size_t)c->rank);
  c->producer = -1;
  int err = osseg__tensor_alloc_const(g, c, diag);
  if (err) return err;
  size_t e = c->nbytes / sizeof(float);
  for (size_t i = 0; i < e; i++) ((float *)c->data)[i] = v;
  return t;
}

static int fuse_layernorm(struct osseg__graph *g, int si, struct osseg_diag *diag) {
  struct osseg__node *sub = &g->nodes[si];
  if (sub->nin != 2) return 0;
  int X = sub->in[0], d = sub->out[0];
  struct osseg__node *m1 = producer(g, sub->in[1], "ReduceMean");
  if (!m1 || m1->in[0] != X || g->tensors[X].data) return 0;
  const struct osseg__tensor *xt = &g->tensors[X];
  int axis = trailing_axes(g, m1, xt->rank);
  if (axis < 0 || consumers(g, m1->out[0], &(int){0}) != 1) return 0;
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
  if (nd != 2 || d == g->output || !pw || !dv || scalar(g, pw->in[1]) != 2.0) return 0;
  struct osseg__node *m2 = only_consumer(g, pw->out[0]);
  if (!m2 || strcmp(m2->op, "ReduceMean") || trailing_axes(g, m2, xt->rank) != axis) return 0;
  struct osseg__node *ad = only_consumer(g, m2->out[0]);
  if (!ad || strcmp(ad->op, "Add")) return 0;
  double eps = scalar(g, other_input(ad, m2->out[0]));
  if (!(eps >= 0 && eps < 1)) return 0;
  struct osseg__node *sq = only_consumer(g, ad->out[0]);
  if (!sq || strcmp(sq->op, "Sqrt") || only_consumer(g, sq->out[0]) != dv || dv->in[1] != sq->out[0])
    return 0;
  struct osseg__node *last = dv, *mul = only_consumer(g, dv->out[0]);
  int W = -1, B = -1;
  if (mul && !strcmp(mul->op, "Mul")) {
    int w = other_input(mul, dv->out[0]);
    if (w >= 0 && ln_param_ok(g, w, xt, axis)) {
      W = w;
      last = mul;
      struct osseg__node *add = only_consumer(g, mul->out[0]);
      if (add && !strcmp(add->op, "Add")) {
        int b = other_input(add, mul->out[0]);
        if (b >= 0 && ln_param_ok(g, b, xt, axis)) B = b, last = add;
      }
    }
  }
  int ln_index = (int)(last - g->nodes), matched_mul = W >= 0;
  if (W < 0 && (W = const_fill(g, X, axis, 1.0f, diag)) < 0) return W;
  if (B < 0 && (B = const_fill(g, X, axis, 0.0f, diag)) < 0) return B;
  last = &g->nodes[ln_index];
  int in[3] = {X, W, B};
  int err = set_inputs(last, in, 3);
  if (!err) err = set_op(last, "LayerNormalization");
  osseg__node_clear_attrs(last);
  if (!err) err = attr_int(last, "axis", axis);
  if (!err) err = attr_float(last, "epsilon", (float)eps);
  if (err) return osseg__fail(diag, err, "out of memory");
  m1->dead = sub->dead = pw->dead = m2->dead = ad->dead = sq->dead = 1;
  if (dv != last) dv->dead = 1;
  if (matched_mul && mul != last) mul->dead = 1;
  return 1;
}

/* ---------------------------------------------------------------- GELU */

static int fuse_gelu(struct osseg__graph *g, struct osseg__node *erf, struct osseg_diag *diag) {
  struct osseg__node *pre = producer(g, erf->in[0], NULL);
  if (!pre || pre->nin != 2 || g->tensors[erf->in[0]].uses > 1) return 0;
  int x = pre->in[0];
  double c = scalar(g, pre->in[1]);
  if (!strcmp(pre->op, "Div")) {
    if (!near(c, sqrt(2.0))) return 0;
  } else if (!strcmp(pre->op, "Mul")) {
    if (!near(c, sqrt(0.5))) {
      x = pre->in[1];
      if (!near(scalar(g, pre->in[0]), sqrt(0.5))) return 0;
    }
  } else {
    return 0;
  }
  if (g->tensors[x].data || only_consumer(g, pre->out[0]) != erf) return 0;
  struct osseg__node *add = only_consumer(g, erf->out[0]);
  if (!add || strcmp(add->op, "Add") || scalar(g, other_input(add, erf->out[0])) != 1.0) return 0;
  struct osseg__node *m1 = only_consumer(g, add->out[0]);
  if (!m1 || strcmp(m1->op, "Mul")) return 0;
  int o = other_input(m1, add->out[0]);
  struct osseg__node *last = NULL, *half = NULL;
  if (o == x) { /* (x * (1 + erf)) * 0.5 */
    last = only_consumer(g, m1->out[0]);
    if (!last || strcmp(last->op, "Mul") || scalar(g, other_input(last, m1->out[0])) != 0.5)
      return 0;
  } else { /* (x * 0.5) * (1 + erf) */
    half = producer(g, o, "Mul");
    if (!half || other_input(half, x) < 0 || scalar(g, other_input(half, x)) != 0.5 ||
        only_consumer(g, o) != m1)
      return 0;
    last = m1;
  }
  int in[1] = {x};
  int err = set_inputs(last, in, 1);
  if (!err) err = set_op(last, "Gelu");
  osseg__node_clear_attrs(last);
  if (err) return osseg__fail(diag, err, "out of memory");
  pre->dead = erf->dead = add->dead = 1;
  if (m1 != last) m1->dead = 1;
  if (half) half->dead = 1;
  return 1;
}

/* ----------------------------------------------------------- attention */

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
  return attr_ints(n, name, a, 9);
}

static int fuse_attention(struct osseg__graph *g, struct osseg__node *sm, struct osseg_diag *diag) {
  struct osseg__tensor *st = &g->tensors[sm->in[0]];
  int r = st->rank;
  if (r < 2 || r > 4) return 0;
  int64_t ax = osseg__attr_int(sm, "axis", g->opset < 13 ? 1 : -1);
  if (ax < 0) ax += r;
  if (ax != r - 1) return 0;
  double scale = 1.0;
  struct osseg__node *sc = producer(g, sm->in[0], NULL), *qk;
  if (!sc) return 0;
  if ((!strcmp(sc->op, "Mul") || !strcmp(sc->op, "Div")) && sc->nin == 2) {
    double c = scalar(g, sc->in[1]);
    int mm = sc->in[0];
    if (c != c && !strcmp(sc->op, "Mul")) c = scalar(g, sc->in[0]), mm = sc->in[1];
    if (!(c == c) || c == 0) return 0;
    scale = !strcmp(sc->op, "Mul") ? c : 1.0 / c;
    qk = producer(g, mm, "MatMul");
    if (!qk || only_consumer(g, qk->out[0]) != sc) return 0;
  } else if (!strcmp(sc->op, "MatMul")) {
    qk = sc;
    sc = NULL;
  } else {
    return 0;
  }
  if (only_consumer(g, sm->in[0]) != sm) return 0;
  struct osseg__node *pv = only_consumer(g, sm->out[0]);
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
    struct osseg__node *c = only_consumer(g, Y);
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
  int err = set_inputs(an, in, 3);
  if (!err) err = set_op(an, OSSEG__OP_ATTENTION);
  osseg__node_clear_attrs(an);
  if (!err) err = view_attr(an, "q", &qv);
  if (!err) err = view_attr(an, "k", &kv);
  if (!err) err = view_attr(an, "v", &vv);
  if (!err) err = view_attr(an, "o", &ov);
  if (!err) err = attr_float(an, "scale", (float)scale);
  if (err) return osseg__fail(diag, err, "out of memory");
  for (int i = 0; i < nchain; i++) g->nodes[chain[i]].dead = 1;
  an->out[0] = Y;
  g->tensors[Y].producer = (int)(an - g->nodes);
  sm->dead = qk->dead = 1;
  if (sc) sc->dead = 1;
  return 1;
}

/* -------------------------------------------------------- view chains */

static int collapse_views(struct osseg__graph *g, struct osseg_diag *diag) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead || !osseg__is_layout_op(n->op) || n->nin < 1 || n->in[0] < 0 ||
        g->tensors[n->in[0]].data || n->out[0] == g->output)
      continue;
    struct osseg__view v, p;
    int base;
    osseg__view_trace(g, n->out[0], &v, &base);
    osseg__view_physical(&g->tensors[n->out[0]], &p);
    if (base == n->out[0] || !osseg__view_same(&v, &p)) continue;
    int in[1] = {base};
    int err = set_inputs(n, in, 1);
    if (!err) err = set_op(n, OSSEG__OP_VIEW);
    osseg__node_clear_attrs(n);
    if (err) return osseg__fail(diag, err, "out of memory");
  }
  return 0;
}

/* -------------------------------------------------- MatMul epilogues */

static int fuse_matmul(struct osseg__graph *g, int ni, struct osseg_diag *diag) {
  struct osseg__node *n = &g->nodes[ni];
  int isgemm = !strcmp(n->op, "Gemm");
  const struct osseg__tensor *yt = &g->tensors[n->out[0]];
  if (yt->rank < 1) return 0;
  int64_t K = yt->dims[yt->rank - 1];
  for (;;) {
    int t = n->out[0];
    struct osseg__node *c = only_consumer(g, t);
    if (!c || c->dead) return 0;
    if (!strcmp(c->op, "Add") && c->nin == 2) {
      int o = other_input(c, t);
      if (o < 0 || o == t) return 0;
      struct osseg__tensor *ot = &g->tensors[o];
      size_t e;
      if (ot->data && n->npost == 0 && !isgemm && n->nin == 2 && ot->dtype == OSSEG__DT_FLOAT &&
          !osseg__tensor_elems(g, ot, &e) && (int64_t)e == K && ot->rank <= yt->rank &&
          ot->rank >= 1 && ot->dims[ot->rank - 1] == K) {
        int in[3] = {n->in[0], n->in[1], o};
        int err = set_inputs(n, in, 3);
        if (err) return osseg__fail(diag, err, "out of memory");
      } else if (!ot->data && n->npost < OSSEG__MAX_POST && ot->rank == yt->rank &&
                 !memcmp(ot->dims, g->tensors[c->out[0]].dims, sizeof(int64_t) * (size_t)ot->rank) &&
                 !memcmp(ot->dims, yt->dims, sizeof(int64_t) * (size_t)ot->rank) &&
                 ot->producer < ni) {
        int has_sum = 0;
        for (int p = 0; p < n->npost; p++) has_sum |= n->post[p].kind == OSSEG__POST_SUM;
        if (has_sum) return 0;
        n->post[n->npost++] = (struct osseg__post){OSSEG__POST_SUM, 1, 0, o};
      } else {
        return 0;
      }
    } else if (!strcmp(c->op, "Gelu") && !strcmp(osseg__attr_str(c, "approximate", "none"), "none") &&
               n->npost < OSSEG__MAX_POST) {
      n->post[n->npost++] = (struct osseg__post){OSSEG__POST_GELU_ERF, 0, 0, -1};
    } else if (!strcmp(c->op, "Relu") && n->npost < OSSEG__MAX_POST) {
      n->post[n->npost++] = (struct osseg__post){OSSEG__POST_RELU, 0, 0, -1};
    } else if (!strcmp(c->op, "Sigmoid") && n->npost < OSSEG__MAX_POST) {
      n->post[n->npost++] = (struct osseg__post){OSSEG__POST_SIGMOID, 0, 0, -1};
    } else {
      return 0;
    }
    c->dead = 1;
    n->out[0] = c->out[0];
    g->tensors[n->out[0]].producer = ni;
    yt = &g->tensors[n->out[0]];
  }
}

/* Conv -> osseg.View -> activation  ==>  Conv -> activation -> osseg.View */
static void act_before_view(struct osseg__graph *g, struct osseg__node *act) {
  struct osseg__node *vw = producer(g, act->in[0], OSSEG__OP_VIEW);
  if (!vw || only_consumer(g, vw->out[0]) != act) return;
  struct osseg__node *cv = producer(g, vw->in[0], "Conv");
  if (!cv || only_consumer(g, cv->out[0]) != vw) return;
  int c = cv->out[0], v = vw->out[0], y = act->out[0];
  act->in[0] = c;
  act->out[0] = v;
  g->tensors[v].rank = g->tensors[c].rank;
  memcpy(g->tensors[v].dims, g->tensors[c].dims, sizeof g->tensors[c].dims);
  g->tensors[v].producer = (int)(act - g->nodes);
  vw->in[0] = v;
  vw->out[0] = y;
  g->tensors[y].producer = (int)(vw - g->nodes);
  /* keep topological order: the activation now runs before the view */
  struct osseg__node tmp = *act;
  *act = *vw;
  *vw = tmp;
  g->tensors[v].producer = (int)(vw - g->nodes);
  g->tensors[y].producer = (int)(act - g->nodes);
}

/* ------------------------------------------------ All-MLP decoder */

static int attr_floats(struct osseg__node *n, const char *name, const float *v, size_t cnt) {
  struct osseg__attr *a = add_attr(n, name, OSSEG__ATTR_FLOATS);
  if (!a) return OSSEG_ENOMEM;
  a->floats = osseg__malloc(cnt * sizeof(float));
  if (!a->floats) return OSSEG_ENOMEM;
  memcpy(a->floats, v, cnt * sizeof(float));
  a->n = cnt;
  return 0;
}

static int new_const(struct osseg__graph *g, int rank, const int64_t *dims, struct osseg_diag *diag) {
  int t = osseg__graph_add_tensor(g, NULL, 0);
  if (t < 0) return osseg__fail(diag, t, "out of memory");
  struct osseg__tensor *c = &g->tensors[t];
  c->dtype = OSSEG__DT_FLOAT;
  c->rank = rank;
  memcpy(c->dims, dims, sizeof(int64_t) * (size_t)rank);
  c->producer = -1;
  int err = osseg__tensor_alloc_const(g, c, diag);
  return err ? err : t;
}

/* Concat(axis 1) of [Resize(linear)] osseg.View(MatMul + bias) branches ->
 * 1x1 Conv [-> Relu]  ==>  MatMul with the conv folded in per branch ->
 * osseg.View -> osseg.ResizeSum (see resize_sum.c). */
static int fuse_decoder(struct osseg__graph *g, struct osseg__node *cv, struct osseg_diag *diag) {
  const struct osseg__tensor *wt = &g->tensors[cv->in[1]];
  if (cv->nin < 2 || !wt->data || wt->rank != 4 || wt->dims[2] != 1 || wt->dims[3] != 1 ||
      osseg__attr_int(cv, "group", 1) != 1 || cv->npost)
    return 0;
  struct osseg__window w;
  if (osseg__window_of(g, cv, &w, NULL)) return 0;
  if (w.s[0] != 1 || w.s[1] != 1 || w.pb[0] || w.pb[1] || w.pe[0] || w.pe[1]) return 0;
  struct osseg__node *cat = producer(g, cv->in[0], "Concat");
  if (!cat || only_consumer(g, cat->out[0]) != cv || osseg__attr_int(cat, "axis", 0) != 1 ||
      cat->nin < 1 || cat->nin > 8)
    return 0;
  const struct osseg__tensor *yt = &g->tensors[cv->out[0]];
  int64_t Mc = wt->dims[0], Cin = wt->dims[1];
  struct osseg__node *mm[8], *vw[8], *rz[8];
  int64_t coff[8], off = 0;
  int modes[8];
  float scl[16];
  for (int i = 0; i < cat->nin; i++) {
    int u = cat->in[i];
    rz[i] = producer(g, u, "Resize");
    int x = u;
    modes[i] = 0;
    scl[2 * i] = scl[2 * i + 1] = 1.f;
    if (rz[i]) {
      if (only_consumer(g, u) != cat || strcmp(osseg__attr_str(rz[i], "mode", "nearest"), "linear") ||
          g->opset < 11 || osseg__attr_int(rz[i], "antialias", 0))
        return 0;
      const char *ctm = osseg__attr_str(rz[i], "coordinate_transformation_mode", "half_pixel");
      if (!strcmp(ctm, "half_pixel")) modes[i] = 0;
      else if (!strcmp(ctm, "pytorch_half_pixel")) modes[i] = 1;
      else if (!strcmp(ctm, "align_corners")) modes[i] = 2;
      else if (!strcmp(ctm, "asymmetric")) modes[i] = 3;
      else return 0;
      double sc[4];
      int64_t sz[4];
      if (osseg__resize_scales(g, rz[i], sc, sz, NULL)) return 0;
      scl[2 * i] = (float)sc[2], scl[2 * i + 1] = (float)sc[3];
      x = rz[i]->in[0];
    }
    vw[i] = producer(g, x, OSSEG__OP_VIEW);
    if (!vw[i] || only_consumer(g, x) != (rz[i] ? rz[i] : cat)) return 0;
    mm[i] = producer(g, vw[i]->in[0], "MatMul");
    if (!mm[i] || only_consumer(g, vw[i]->in[0]) != vw[i] || mm[i]->nin != 3 || mm[i]->npost ||
        !g->tensors[mm[i]->in[1]].data || g->tensors[mm[i]->in[1]].rank != 2 ||
        g->tensors[x].rank != 4 || g->tensors[x].dims[0] != 1)
      return 0;
    coff[i] = off;
    off += g->tensors[x].dims[1];
  }
  if (off != Cin || yt->dims[0] != 1) return 0;
  /* fold the conv's column block into each branch's Linear */
  for (int i = 0; i < cat->nin; i++) {
    const struct osseg__tensor *B = &g->tensors[mm[i]->in[1]], *bb = &g->tensors[mm[i]->in[2]];
    int64_t K = B->dims[0], Mo = B->dims[1];
    int64_t nd[2] = {K, Mc}, bd[1] = {Mc};
    int nB = new_const(g, 2, nd, diag);
    if (nB < 0) return nB;
    int nb = new_const(g, 1, bd, diag);
    if (nb < 0) return nb;
    B = &g->tensors[mm[i]->in[1]], bb = &g->tensors[mm[i]->in[2]], wt = &g->tensors[cv->in[1]];
    float *o = g->tensors[nB].data, *ob = g->tensors[nb].data;
    for (int64_t k = 0; k < K; k++)
      for (int64_t mo = 0; mo < Mc; mo++) {
        double acc = 0;
        for (int64_t j = 0; j < Mo; j++)
          acc += osseg__const_f64(B, (size_t)(k * Mo + j)) *
                 osseg__const_f64(wt, (size_t)(mo * Cin + coff[i] + j));
        o[k * Mc + mo] = (float)acc;
      }
    for (int64_t mo = 0; mo < Mc; mo++) {
      double acc = 0;
      for (int64_t j = 0; j < Mo; j++)
        acc += osseg__const_f64(bb, (size_t)(j % (int64_t)(bb->nbytes / 4))) *
               osseg__const_f64(wt, (size_t)(mo * Cin + coff[i] + j));
      ob[mo] = (float)acc;
    }
    mm[i]->in[1] = nB, mm[i]->in[2] = nb;
    struct osseg__tensor *t = &g->tensors[mm[i]->out[0]];
    t->dims[t->rank - 1] = Mc;
    t = &g->tensors[vw[i]->out[0]];
    t->dims[1] = Mc;
  }
  int bias = -1;
  if (cv->nin > 2 && cv->in[2] >= 0) {
    bias = cv->in[2];
  } else {
    int64_t bd[1] = {Mc};
    if ((bias = new_const(g, 1, bd, diag)) < 0) return bias;
  }
  int in[9];
  for (int i = 0; i < cat->nin; i++) in[i] = vw[i]->out[0];
  in[cat->nin] = bias;
  int nbr = cat->nin;
  int err = set_inputs(cv, in, nbr + 1);
  if (!err) err = set_op(cv, "osseg.ResizeSum");
  osseg__node_clear_attrs(cv);
  int64_t md[8];
  for (int i = 0; i < nbr; i++) md[i] = modes[i];
  if (!err) err = attr_ints(cv, "modes", md, (size_t)nbr);
  if (!err) err = attr_floats(cv, "scales", scl, (size_t)(2 * nbr));
  struct osseg__node *relu = only_consumer(g, cv->out[0]);
  int fuse_relu = relu && !strcmp(relu->op, "Relu") && relu->in[0] == cv->out[0];
  if (!err) err = attr_int(cv, "relu", fuse_relu);
  if (err) return osseg__fail(diag, err, "out of memory");
  if (fuse_relu) {
    relu->dead = 1;
    cv->out[0] = relu->out[0];
    g->tensors[cv->out[0]].producer = (int)(cv - g->nodes);
  }
  cat->dead = 1;
  for (int i = 0; i < nbr; i++)
    if (rz[i]) rz[i]->dead = 1;
  return 1;
}

/* ---------------------------------------------------------------- DCE */

static void eliminate_dead(struct osseg__graph *g) {
  osseg__count_uses(g);
  for (int ni = g->nnodes - 1; ni >= 0; ni--) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead) continue;
    int used = 0;
    for (int o = 0; o < n->nout; o++)
      used |= n->out[o] >= 0 && (g->tensors[n->out[o]].uses > 0 || n->out[o] == g->output);
    if (used) continue;
    n->dead = 1;
    for (int i = 0; i < n->nin; i++)
      if (n->in[i] >= 0) g->tensors[n->in[i]].uses--;
    for (int p = 0; p < n->npost; p++)
      if (n->post[p].kind == OSSEG__POST_SUM) g->tensors[n->post[p].arg].uses--;
  }
  osseg__count_uses(g);
}

int osseg__transformer_fuse(struct osseg__graph *g, struct osseg_diag *diag) {
  int any = 0, err;
  for (int ni = 0; ni < g->nnodes; ni++) {
    const char *op = g->nodes[ni].op;
    if (!g->nodes[ni].dead && (!strcmp(op, "MatMul") || !strcmp(op, "Gemm") || !strcmp(op, "Softmax") ||
                               !strcmp(op, "LayerNormalization") || !strcmp(op, "Erf") ||
                               !strcmp(op, "Pow") || !strcmp(op, "Gelu")))
      any = 1;
  }
  if (!any) return 0; /* CNN graphs: nothing to do, keep them untouched */
  osseg__count_uses(g);
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead || strcmp(g->nodes[ni].op, "Sub")) continue;
    if ((err = fuse_layernorm(g, ni, diag)) < 0) return err;
  }
  osseg__count_uses(g);
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead || strcmp(g->nodes[ni].op, "Erf")) continue;
    if ((err = fuse_gelu(g, &g->nodes[ni], diag)) < 0) return err;
    osseg__count_uses(g);
  }
  eliminate_dead(g);
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead || strcmp(g->nodes[ni].op, "Softmax")) continue;
    if ((err = fuse_attention(g, &g->nodes[ni], diag)) < 0) return err;
  }
  eliminate_dead(g);
  if ((err = collapse_views(g, diag))) return err;
  eliminate_dead(g);
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead || (strcmp(g->nodes[ni].op, "MatMul") && strcmp(g->nodes[ni].op, "Gemm")))
      continue;
    if ((err = fuse_matmul(g, ni, diag)) < 0) return err;
  }
  eliminate_dead(g);
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (!n->dead && !strcmp(n->op, "Gelu") && n->nin == 1) act_before_view(g, n);
  }
  eliminate_dead(g);
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead || strcmp(g->nodes[ni].op, "Conv")) continue;
    if ((err = fuse_decoder(g, &g->nodes[ni], diag)) < 0) return err;
  }
  /* the final bilinear upsampling writes NCHW directly */
  struct osseg__node *last = producer(g, g->output, "Resize");
  int first_use;
  if (last && consumers(g, g->output, &first_use) == 1 && /* nothing else reads it */
      g->tensors[g->output].rank == 4 && g->tensors[g->output].dims[0] == 1 &&
      g->opset >= 11 && !strcmp(osseg__attr_str(last, "mode", "nearest"), "linear") &&
      !osseg__attr_int(last, "antialias", 0) && !g->tensors[last->in[0]].data) {
    const char *ctm = osseg__attr_str(last, "coordinate_transformation_mode", "half_pixel");
    if (!strcmp(ctm, "half_pixel") || !strcmp(ctm, "pytorch_half_pixel") ||
        !strcmp(ctm, "align_corners") || !strcmp(ctm, "asymmetric")) {
      double sc[4];
      int64_t sz[4];
      if (!osseg__resize_scales(g, last, sc, sz, NULL) && sz[0] == 1 &&
          sz[1] == g->tensors[last->in[0]].dims[1] && set_op(last, "osseg.ResizePlanar"))
        return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    }
  }
  eliminate_dead(g);
  return 0;
}
