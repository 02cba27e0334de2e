/* Strided-view maths: physical strides in the engine layout, reshapes and
 * transposes of views without copies, and tracing a tensor back through
 * live layout-only nodes to the runtime tensor whose bytes it reads. */
#include "view.h"

#include <string.h>

void osseg__view_physical(const struct osseg__tensor *t, struct osseg__view *v) {
  memset(v, 0, sizeof *v);
  v->rank = t->rank;
  memcpy(v->dims, t->dims, sizeof(int64_t) * (size_t)(t->rank > 0 ? t->rank : 0));
  if (t->rank == 4) { /* nhwc */
    int64_t C = t->dims[1], H = t->dims[2], W = t->dims[3];
    v->strides[0] = H * W * C, v->strides[1] = 1, v->strides[2] = W * C, v->strides[3] = C;
    return;
  }
  int64_t s = 1;
  for (int i = t->rank - 1; i >= 0; i--) v->strides[i] = s, s *= t->dims[i];
}

int osseg__view_reshape(const struct osseg__view *v, const int64_t *dims, int rank,
                        struct osseg__view *out) {
  int64_t od[OSSEG_MAX_RANK], os[OSSEG_MAX_RANK], ne_old = 1, ne_new = 1;
  int on = 0;
  for (int i = 0; i < v->rank; i++) {
    ne_old *= v->dims[i];
    if (v->dims[i] != 1) od[on] = v->dims[i], os[on] = v->strides[i], on++;
  }
  for (int i = 0; i < rank; i++) ne_new *= dims[i];
  if (ne_old != ne_new || ne_old == 0 || rank > OSSEG_MAX_RANK) return -1;
  struct osseg__view r = {.rank = rank, .offset = v->offset};
  memcpy(r.dims, dims, sizeof(int64_t) * (size_t)rank);
  int oi = 0, ni = 0;
  while (ni < rank && oi < on) {
    int nj = ni + 1, oj = oi + 1;
    int64_t np = dims[ni], op = od[oi];
    while (np != op) {
      if (np < op) {
        if (nj >= rank) return -1;
        np *= dims[nj++];
      } else {
        if (oj >= on) return -1;
        op *= od[oj++];
      }
    }
    for (int k = oi; k < oj - 1; k++)
      if (os[k] != od[k + 1] * os[k + 1]) return -1;
    r.strides[nj - 1] = os[oj - 1];
    for (int k = nj - 1; k > ni; k--) r.strides[k - 1] = r.strides[k] * dims[k];
    ni = nj;
    oi = oj;
  }
  for (; ni < rank; ni++) r.strides[ni] = 1; /* trailing size-1 dims */
  *out = r;
  return 0;
}

int osseg__view_same(const struct osseg__view *a, const struct osseg__view *b) {
  if (a->offset != b->offset) return 0;
  int i = 0, j = 0;
  for (;;) {
    while (i < a->rank && a->dims[i] == 1) i++;
    while (j < b->rank && b->dims[j] == 1) j++;
    if (i == a->rank || j == b->rank) return i == a->rank && j == b->rank;
    if (a->dims[i] != b->dims[j] || a->strides[i] != b->strides[j]) return 0;
    i++, j++;
  }
}

int osseg__is_layout_op(const char *op) {
  return !strcmp(op, "Reshape") || !strcmp(op, "Transpose") || !strcmp(op, "Flatten") ||
         !strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze") || !strcmp(op, "Gather") ||
         !strcmp(op, "Identity") || !strcmp(op, "Dropout") || !strcmp(op, OSSEG__OP_VIEW);
}

void osseg__transpose_perm(const struct osseg__node *n, int rank, int *perm) {
  const struct osseg__attr *a = osseg__attr_find(n, "perm");
  for (int i = 0; i < rank; i++)
    perm[i] = a && a->type == OSSEG__ATTR_INTS && a->n == (size_t)rank ? (int)a->ints[i]
                                                                        : rank - 1 - i;
}

/* Applies layout node n (input view v) to get the view of its output. */
static int apply_layout(struct osseg__graph *g, const struct osseg__node *n,
                        const struct osseg__view *v, struct osseg__view *out) {
  const struct osseg__tensor *y = &g->tensors[n->out[0]];
  if (!strcmp(n->op, "Transpose")) {
    int perm[OSSEG_MAX_RANK];
    if (v->rank != y->rank) return -1;
    osseg__transpose_perm(n, v->rank, perm);
    *out = *v;
    for (int i = 0; i < v->rank; i++) {
      if (perm[i] < 0 || perm[i] >= v->rank) return -1;
      out->dims[i] = v->dims[perm[i]];
      out->strides[i] = v->strides[perm[i]];
    }
    return 0;
  }
  if (!strcmp(n->op, "Gather")) {
    const struct osseg__tensor *ix = n->nin > 1 && n->in[1] >= 0 ? &g->tensors[n->in[1]] : NULL;
    int64_t a = osseg__attr_int(n, "axis", 0);
    if (a < 0) a += v->rank;
    if (!ix || !ix->data || a < 0 || a >= v->rank || ix->rank > 1) return -1;
    if (ix->rank == 1 && ix->dims[0] != 1) return -1;
    int64_t k = osseg__const_i64(ix, 0);
    if (k < 0) k += v->dims[a];
    if (k < 0 || k >= v->dims[a]) return -1;
    *out = *v;
    out->offset += k * v->strides[a];
    if (ix->rank == 0) {
      for (int i = (int)a; i < v->rank - 1; i++)
        out->dims[i] = v->dims[i + 1], out->strides[i] = v->strides[i + 1];
      out->rank--;
    } else {
      out->dims[a] = 1;
    }
    return out->rank == y->rank ? 0 : -1;
  }
  if (!strcmp(n->op, "Identity") || !strcmp(n->op, "Dropout")) {
    *out = *v;
    return 0;
  }
  if (!strcmp(n->op, OSSEG__OP_VIEW)) { /* same bytes as the input */
    struct osseg__view p;
    osseg__view_physical(&g->tensors[n->in[0]], &p);
    p.offset = v->offset;
    if (!osseg__view_same(v, &p)) return -1;
    osseg__view_physical(y, out);
    out->offset = v->offset;
    return 0;
  }
  /* Reshape, Flatten, Squeeze, Unsqueeze, osseg.View: output dims are known */
  return osseg__view_reshape(v, y->dims, y->rank, out);
}

void osseg__view_trace(struct osseg__graph *g, int t, struct osseg__view *v, int *base) {
  const struct osseg__tensor *tt = &g->tensors[t];
  int p = tt->producer;
  if (p >= 0 && !g->nodes[p].dead && g->nodes[p].nout >= 1 && g->nodes[p].out[0] == t &&
      osseg__is_layout_op(g->nodes[p].op) && g->nodes[p].nin >= 1 && g->nodes[p].in[0] >= 0 &&
      !g->tensors[g->nodes[p].in[0]].data) {
    struct osseg__view in;
    osseg__view_trace(g, g->nodes[p].in[0], &in, base);
    if (apply_layout(g, &g->nodes[p], &in, v) == 0) return;
  }
  osseg__view_physical(tt, v);
  *base = t;
}
