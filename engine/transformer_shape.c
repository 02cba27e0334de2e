/* Shape rules of the transformer ops: MatMul (numpy semantics: 1-D
 * operands, broadcast batch dims), Gemm, Softmax, LayerNormalization, Erf,
 * Gelu. Called by osseg__infer_node for ops it has no rule for. */
#include "transformer.h"

#include <string.h>

#define FAIL(code, ...) osseg__fail(diag, code, __VA_ARGS__)
#define NODEFMT "node '%s' (%s, opset %d): "
#define NODEARG n->name, n->op, g->opset

static struct osseg__tensor *IN(struct osseg__graph *g, struct osseg__node *n, int i) {
  return i < n->nin && n->in[i] >= 0 ? &g->tensors[n->in[i]] : NULL;
}

static int infer_matmul(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *a = IN(g, n, 0), *b = IN(g, n, 1), *y = &g->tensors[n->out[0]];
  if (!a || !b || n->nin != 2)
    return FAIL(OSSEG_EPARSE, NODEFMT "needs exactly two inputs", NODEARG);
  if (a->rank < 1 || b->rank < 1 || a->rank > 6 || b->rank > 6)
    return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "operand ranks %d and %d (1..6 supported)", NODEARG,
                a->rank, b->rank);
  int64_t ad[8], bd[8];
  int ar = a->rank, br = b->rank;
  memcpy(ad, a->dims, sizeof(int64_t) * (size_t)ar);
  memcpy(bd, b->dims, sizeof(int64_t) * (size_t)br);
  if (ar == 1) ad[1] = ad[0], ad[0] = 1, ar = 2;
  if (br == 1) bd[1] = 1, br = 2;
  if (ad[ar - 1] != bd[br - 2])
    return FAIL(OSSEG_ESHAPE, NODEFMT "inner dims differ (%lld vs %lld)", NODEARG,
                (long long)ad[ar - 1], (long long)bd[br - 2]);
  int r = ar > br ? ar : br;
  for (int i = 0; i < r - 2; i++) {
    int ia = i - (r - ar), ib = i - (r - br);
    int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return FAIL(OSSEG_ESHAPE, NODEFMT "batch dims do not broadcast", NODEARG);
    y->dims[i] = da == 1 ? db : da;
  }
  int k = r - 2;
  if (a->rank > 1) y->dims[k++] = ad[ar - 2];
  if (b->rank > 1) y->dims[k++] = bd[br - 1];
  y->rank = k;
  y->dtype = a->dtype;
  return 0;
}

static int infer_gemm(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *a = IN(g, n, 0), *b = IN(g, n, 1), *c = IN(g, n, 2);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  if (!a || !b || a->rank != 2 || b->rank != 2)
    return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "A and B must be 2-D", NODEARG);
  int ta = (int)osseg__attr_int(n, "transA", 0), tb = (int)osseg__attr_int(n, "transB", 0);
  int64_t M = ta ? a->dims[1] : a->dims[0], K = ta ? a->dims[0] : a->dims[1];
  int64_t K2 = tb ? b->dims[1] : b->dims[0], N = tb ? b->dims[0] : b->dims[1];
  if (K != K2) return FAIL(OSSEG_ESHAPE, NODEFMT "inner dims differ", NODEARG);
  y->rank = 2;
  y->dims[0] = M;
  y->dims[1] = N;
  y->dtype = a->dtype;
  if (c) {
    struct osseg__tensor tmp;
    if (c->rank > 2 || osseg__broadcast(y, c, &tmp) || tmp.rank != 2 || tmp.dims[0] != M ||
        tmp.dims[1] != N)
      return FAIL(OSSEG_ESHAPE, NODEFMT "C does not broadcast to (%lld, %lld)", NODEARG,
                  (long long)M, (long long)N);
  }
  return 0;
}

/* Split: sizes from the `split` attribute (< 13) or input 1, else equal
 * parts (opset 18: num_outputs, last part smaller). */
static int infer_split(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = IN(g, n, 0);
  int64_t a = osseg__attr_int(n, "axis", 0);
  if (a < -x->rank || a >= x->rank)
    return FAIL(OSSEG_ESHAPE, NODEFMT "axis %lld out of range", NODEARG, (long long)a);
  int axis = (int)(a < 0 ? a + x->rank : a);
  int64_t parts[64], dim = x->dims[axis], sum = 0;
  int np = 0;
  if (n->nout > 64) return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "more than 64 outputs", NODEARG);
  const struct osseg__attr *at = osseg__attr_find(n, "split");
  struct osseg__tensor *st = g->opset >= 13 ? IN(g, n, 1) : NULL;
  if (at && at->type == OSSEG__ATTR_INTS) {
    if (at->n != (size_t)n->nout) return FAIL(OSSEG_ESHAPE, NODEFMT "split has %zu values for %d outputs", NODEARG, at->n, n->nout);
    for (size_t i = 0; i < at->n; i++) parts[np++] = at->ints[i];
  } else if (st) {
    size_t e;
    if (!st->data || osseg__tensor_elems(g, st, &e) || e != (size_t)n->nout)
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "split sizes must be a constant of %d values", NODEARG, n->nout);
    for (size_t i = 0; i < e; i++) parts[np++] = osseg__const_i64(st, i);
  } else {
    int64_t k = n->nout, per = (dim + k - 1) / k;
    for (int i = 0; i < k; i++) parts[np++] = dim - per * i < per ? dim - per * i : per;
    if (g->opset < 18 && dim % k)
      return FAIL(OSSEG_ESHAPE, NODEFMT "%lld not divisible into %d parts", NODEARG, (long long)dim, n->nout);
  }
  for (int i = 0; i < np; i++) {
    if (parts[i] < 0 || parts[i] > dim)
      return FAIL(OSSEG_ESHAPE, NODEFMT "split size %lld out of range", NODEARG, (long long)parts[i]);
    sum += parts[i]; /* <= 64 * dim: no overflow */
  }
  if (sum != dim) return FAIL(OSSEG_ESHAPE, NODEFMT "split sizes sum to %lld, dim is %lld", NODEARG, (long long)sum, (long long)dim);
  for (int i = 0; i < n->nout; i++) {
    struct osseg__tensor *y = &g->tensors[n->out[i]];
    y->dtype = x->dtype;
    y->rank = x->rank;
    memcpy(y->dims, x->dims, sizeof x->dims);
    y->dims[axis] = parts[i];
  }
  return 0;
}

int osseg__infer_transformer(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  const char *op = n->op;
  struct osseg__tensor *x = IN(g, n, 0), *y = &g->tensors[n->out[0]];
  if (!strcmp(op, "MatMul")) return infer_matmul(g, n, diag);
  if (!strcmp(op, "Split")) return infer_split(g, n, diag);
  if (!strcmp(op, "Gemm")) return infer_gemm(g, n, diag);
  if (!strcmp(op, "Softmax") || !strcmp(op, "Erf") || !strcmp(op, "Gelu") ||
      !strcmp(op, "LayerNormalization")) {
    if (x->rank < 1 && strcmp(op, "Erf") != 0)
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "scalar input", NODEARG);
    y->dtype = x->dtype;
    y->rank = x->rank;
    memcpy(y->dims, x->dims, sizeof x->dims);
    if (!strcmp(op, "Gelu")) {
      const char *ap = osseg__attr_str(n, "approximate", "none");
      if (strcmp(ap, "none") && strcmp(ap, "tanh"))
        return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "approximate '%s' unknown", NODEARG, ap);
    }
    if (!strcmp(op, "Softmax") || !strcmp(op, "LayerNormalization")) {
      int64_t a = osseg__attr_int(n, "axis", !strcmp(op, "Softmax") && g->opset < 13 ? 1 : -1);
      if (a < -x->rank || a >= x->rank)
        return FAIL(OSSEG_ESHAPE, NODEFMT "axis %lld out of range for rank %d", NODEARG,
                    (long long)a, x->rank);
    }
    if (!strcmp(op, "LayerNormalization")) {
      int64_t a = osseg__attr_int(n, "axis", -1);
      int axis = (int)(a < 0 ? a + x->rank : a);
      struct osseg__tensor tail = {.rank = x->rank - axis};
      memcpy(tail.dims, x->dims + axis, sizeof(int64_t) * (size_t)tail.rank);
      for (int i = 1; i < 3; i++) {
        struct osseg__tensor *p = IN(g, n, i), tmp;
        if (!p) {
          if (i == 1) return FAIL(OSSEG_EPARSE, NODEFMT "needs a scale input", NODEARG);
          continue;
        }
        if (!p->data || p->dtype != OSSEG__DT_FLOAT)
          return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "scale/bias must be float32 constants", NODEARG);
        if (p->rank > tail.rank || osseg__broadcast(&tail, p, &tmp) || tmp.rank != tail.rank)
          return FAIL(OSSEG_ESHAPE, NODEFMT "scale/bias '%s' does not broadcast over the "
                      "normalised dims", NODEARG, p->name);
        for (int d = 0; d < tail.rank; d++)
          if (tmp.dims[d] != tail.dims[d])
            return FAIL(OSSEG_ESHAPE, NODEFMT "scale/bias '%s' too large", NODEARG, p->name);
      }
      if (osseg__attr_int(n, "stash_type", 1) != 1)
        return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "stash_type other than float32", NODEARG);
      for (int i = 1; i < n->nout; i++) { /* Mean, InvStdDev */
        struct osseg__tensor *t = &g->tensors[n->out[i]];
        t->dtype = OSSEG__DT_FLOAT;
        t->rank = x->rank;
        for (int d = 0; d < x->rank; d++) t->dims[d] = d < axis ? x->dims[d] : 1;
      }
    }
    return 0;
  }
  return 1;
}
