/* Shape arithmetic: Constant (read by the loader), Shape, ConstantOfShape,
 * Expand and Range. Exports compute sizes with them (Shape -> Gather ->
 * Concat -> Resize sizes); with static shapes they fold at load. Expand
 * also runs on activations (DPT's class-token readout: the token expanded
 * over every patch) as a broadcast copy. */
#include "build.h"

#include <math.h>
#include <string.h>

static int infer_shape(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int64_t s = osseg__attr_int(n, "start", 0), e = osseg__attr_int(n, "end", x->rank);
  if (s < 0) s += x->rank;
  if (e < 0) e += x->rank;
  if (s < 0) s = 0;
  if (e > x->rank) e = x->rank;
  if (e < s) e = s;
  y->dtype = OSSEG__DT_INT64;
  y->rank = 1;
  y->dims[0] = e - s;
  return 0;
}

static int infer_constant_of_shape(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int64_t sh[OSSEG_MAX_RANK];
  int ns = osseg__int_list(g, n, NULL, 0, sh, OSSEG_MAX_RANK, diag);
  if (ns < 0) return ns;
  for (int i = 0; i < ns; i++)
    if (sh[i] < 0) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "negative dim", OSSEG__NODEARG);
  const struct osseg__attr *a = osseg__attr_find(n, "value");
  y->dtype = a && a->type == OSSEG__ATTR_TENSOR ? g->tensors[a->tensor].dtype : OSSEG__DT_FLOAT;
  y->rank = ns;
  memcpy(y->dims, sh, sizeof(int64_t) * (size_t)ns);
  return 0;
}

static int infer_expand(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int64_t sh[OSSEG_MAX_RANK];
  int ns = osseg__int_list(g, n, NULL, 1, sh, OSSEG_MAX_RANK, diag);
  if (ns < 0) return ns;
  struct osseg__tensor s = {.rank = ns};
  memcpy(s.dims, sh, sizeof(int64_t) * (size_t)ns);
  if (osseg__broadcast(x, &s, y)) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "shape does not broadcast", OSSEG__NODEARG);
  y->dtype = x->dtype;
  return 0;
}

static int infer_range(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  struct osseg__tensor *a = osseg__in(g, n, 0), *b = osseg__in(g, n, 1), *c = osseg__in(g, n, 2);
  if (!a || !b || !c || !a->data || !b->data || !c->data)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "inputs must be constants", OSSEG__NODEARG);
  double s = osseg__const_f64(a, 0), e = osseg__const_f64(b, 0), d = osseg__const_f64(c, 0);
  double cnt = d != 0 ? ceil((e - s) / d) : -1;
  if (!(cnt >= -1e18 && cnt <= (1 << 24)) || d == 0)
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "bad range", OSSEG__NODEARG);
  y->dtype = a->dtype;
  y->rank = 1;
  y->dims[0] = cnt > 0 ? (int64_t)cnt : 0;
  return 0;
}

static int fold_shape(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  struct osseg__tensor *x = &g->tensors[n->in[0]];
  size_t ne;
  osseg__tensor_elems(g, y, &ne);
  int64_t s = osseg__attr_int(n, "start", 0);
  if (s < 0) s += x->rank;
  if (s < 0) s = 0;
  for (size_t i = 0; i < ne; i++) ((int64_t *)y->data)[i] = x->dims[(size_t)s + i];
  return 0;
}

static int fold_constant_of_shape(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  size_t ne, es = osseg__dtype_size(y->dtype);
  osseg__tensor_elems(g, y, &ne);
  const struct osseg__attr *a = osseg__attr_find(n, "value");
  if (a && a->type == OSSEG__ATTR_TENSOR) {
    struct osseg__tensor *v = &g->tensors[a->tensor];
    if (v->nbytes != es)
      return osseg__fail(diag, OSSEG_EPARSE, "node '%s' (ConstantOfShape): value must have "
                         "one element", n->name);
    for (size_t i = 0; i < ne; i++) memcpy((char *)y->data + i * es, v->data, es);
  }
  return 0;
}

static int fold_range(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  size_t ne;
  osseg__tensor_elems(g, y, &ne);
  struct osseg__tensor *a = &g->tensors[n->in[0]], *d = &g->tensors[n->in[2]];
  for (size_t i = 0; i < ne; i++) {
    if (osseg__dtype_is_float(y->dtype)) osseg__const_set_f64(y, i, osseg__const_f64(a, 0) + (double)i * osseg__const_f64(d, 0));
    else  /* saturating, like the other integer folds */
      osseg__const_set_i64(y, i, osseg__sat_add_i64(osseg__const_i64(a, 0),
                                                    osseg__sat_mul_i64((int64_t)i, osseg__const_i64(d, 0))));
  }
  return 0;
}

static int fold_expand(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  (void)diag;
  struct osseg__tensor *y = &g->tensors[n->out[0]], *x = &g->tensors[n->in[0]];
  size_t ne, es = osseg__dtype_size(y->dtype);
  osseg__tensor_elems(g, y, &ne);
  size_t sa[OSSEG_MAX_RANK];
  osseg__bcast_strides(x, y->rank, y->dims, sa);
  for (size_t i = 0; i < ne; i++) {
    size_t si = osseg__bcast_index(i, y->rank, y->dims, sa);
    memcpy((char *)y->data + i * es, (const char *)x->data + si * es, es);
  }
  return 0;
}

static int compile_expand(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  int ni = (int)(n - m->g.nodes), y = n->out[0];
  int x = osseg__plain_in(m, ni, n->in[0], diag);
  if (x < 0) return x;
  int yp = osseg__plain_out(m, y, diag);
  if (yp < 0) return yp;
  int err = osseg__broadcast_step(m, ni, x, yp, diag);
  return err ? err : osseg__plain_out_done(m, ni, yp, y, diag);
}

const struct osseg__op osseg__ops_shape_arith[] = {
    {"Constant", 1, OSSEG__OPSET_MAX, OSSEG__OP_LOADER, 0, NULL, NULL, NULL},
    {"Shape", 1, OSSEG__OPSET_MAX, OSSEG__OP_FOLD_ALWAYS, 0, infer_shape, fold_shape, NULL},
    {"ConstantOfShape", 9, OSSEG__OPSET_MAX, 0, 0, infer_constant_of_shape, fold_constant_of_shape, NULL},
    {"Expand", 8, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_expand, fold_expand, compile_expand},
    {"Range", 11, OSSEG__OPSET_MAX, 0, 0, infer_range, fold_range, NULL},
    {0},
};
