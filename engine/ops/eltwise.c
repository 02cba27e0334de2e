/* Unary elementwise ops: the activations (oneDNN eltwise steps, fused into
 * the producing conv's epilogue by the passes where they can be), GELU,
 * Sqrt, and the unary maths of shape computations (Floor, Ceil, Neg,
 * Reciprocal, Abs, Not, Cast), which only ever run on constants. Erf is
 * accepted inside GELU's pattern only. */
#include "build.h"

#include <math.h>
#include <string.h>

static int infer_unary(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  const char *op = n->op;
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  y->dtype = x->dtype;
  if (!strcmp(op, "Cast")) y->dtype = (int)osseg__attr_int(n, "to", 0);
  if (!strcmp(op, "Not")) y->dtype = OSSEG__DT_BOOL;
  if (!osseg__dtype_size(y->dtype))
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "dtype %s unsupported", OSSEG__NODEARG,
                osseg__dtype_name(y->dtype));
  y->rank = x->rank;
  memcpy(y->dims, x->dims, sizeof x->dims);
  for (int i = 1; i < n->nout; i++) { /* Dropout mask output */
    struct osseg__tensor *mk = &g->tensors[n->out[i]];
    mk->dtype = OSSEG__DT_BOOL;
    mk->rank = x->rank;
    memcpy(mk->dims, x->dims, sizeof x->dims);
  }
  return 0;
}

static int infer_gelu(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *y = &g->tensors[n->out[0]];
  if (x->rank < 1 && strcmp(n->op, "Erf") != 0)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "scalar input", OSSEG__NODEARG);
  osseg__same_shape(x, y);
  if (!strcmp(n->op, "Gelu")) {
    const char *ap = osseg__attr_str(n, "approximate", "none");
    if (strcmp(ap, "none") && strcmp(ap, "tanh"))
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "approximate '%s' unknown", OSSEG__NODEARG, ap);
  }
  return 0;
}

static double unop(const char *op, double a) {
  if (!strcmp(op, "Floor")) return floor(a);
  if (!strcmp(op, "Ceil")) return ceil(a);
  if (!strcmp(op, "Neg")) return -a;
  if (!strcmp(op, "Sqrt")) return sqrt(a);
  if (!strcmp(op, "Reciprocal")) return 1.0 / a;
  if (!strcmp(op, "Abs")) return fabs(a);
  if (!strcmp(op, "Not")) return a == 0;
  if (!strcmp(op, "Relu")) return a > 0 ? a : 0;
  if (!strcmp(op, "Sigmoid")) return 1.0 / (1.0 + exp(-a));
  return a;
}

static int fold_unary(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  struct osseg__tensor *x = &g->tensors[n->in[0]];
  const char *op = n->op;
  size_t ne;
  osseg__tensor_elems(g, y, &ne);
  for (size_t i = 0; i < ne; i++) {
    if (osseg__dtype_is_float(x->dtype) || !strcmp(op, "Sqrt") || !strcmp(op, "Reciprocal") ||
        !strcmp(op, "Sigmoid"))
      osseg__const_set_f64(y, i, unop(op, osseg__const_f64(x, i)));
    else if (!strcmp(op, "Neg") || !strcmp(op, "Abs")) {
      /* (saturating: -INT64_MIN overflows) */
      int64_t v = osseg__const_i64(x, i);
      osseg__const_set_i64(y, i, v == INT64_MIN ? INT64_MAX : !strcmp(op, "Abs") && v >= 0 ? v : -v);
    } else {
      osseg__const_set_i64(y, i, osseg__sat_i64(unop(op, (double)osseg__const_i64(x, i))));
    }
  }
  return 0;
}

static int fold_cast(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  struct osseg__tensor *x = &g->tensors[n->in[0]];
  size_t ne;
  osseg__tensor_elems(g, y, &ne);
  for (size_t i = 0; i < ne; i++) {
    if (osseg__dtype_is_float(x->dtype)) osseg__const_set_f64(y, i, osseg__const_f64(x, i));
    else osseg__const_set_i64(y, i, osseg__const_i64(x, i));
  }
  return 0;
}

static int compile_eltwise(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  const char *op = n->op;
  if (osseg__can_inplace(m, x)) osseg__alias(m, y, x);
  if (!strcmp(op, "Identity") || !strcmp(op, "Dropout"))
    return osseg__reorder_step(m, (int)(n - g->nodes), x, &m->md[x], y, &m->md[y], diag);
  if (!strcmp(op, "Relu")) return osseg__eltwise_step(m, n, x, y, dnnl_eltwise_relu, 0, 0, diag);
  if (!strcmp(op, "LeakyRelu"))
    return osseg__eltwise_step(m, n, x, y, dnnl_eltwise_relu, osseg__attr_float(n, "alpha", 0.01f), 0, diag);
  if (!strcmp(op, "Sigmoid")) return osseg__eltwise_step(m, n, x, y, dnnl_eltwise_logistic, 0, 0, diag);
  if (!strcmp(op, "HardSwish")) return osseg__eltwise_step(m, n, x, y, dnnl_eltwise_hardswish, 0, 0, diag);
  if (!strcmp(op, "HardSigmoid")) {
    int err = osseg__eltwise_step(m, n, x, y, dnnl_eltwise_linear, osseg__attr_float(n, "alpha", 0.2f),
                           osseg__attr_float(n, "beta", 0.5f), diag);
    return err ? err : osseg__eltwise_step(m, n, y, y, dnnl_eltwise_clip, 0.f, 1.f, diag);
  }
  if (!strcmp(op, "Clip")) {
    float lo = -3e38f, hi = 3e38f;
    if (g->opset < 11) {
      lo = osseg__attr_float(n, "min", lo);
      hi = osseg__attr_float(n, "max", hi);
    } else {
      for (int i = 1; i < 3 && i < n->nin; i++) {
        if (n->in[i] < 0) continue;
        struct osseg__tensor *t = &g->tensors[n->in[i]];
        if (!t->data)
          return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Clip): min/max must be constant",
                             n->name);
        float v = (float)osseg__const_f64(t, 0);
        if (i == 1) lo = v;
        else hi = v;
      }
    }
    return osseg__eltwise_step(m, n, x, y, dnnl_eltwise_clip, lo, hi, diag);
  }
  return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s': op %s", n->name, op);
}

static int compile_gelu(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  int x = n->in[0], y = n->out[0];
  if (osseg__can_inplace(m, x)) osseg__alias(m, y, x);
  return osseg__eltwise_step(m, n, x, y,
                             strcmp(osseg__attr_str(n, "approximate", "none"), "tanh")
                                 ? dnnl_eltwise_gelu_erf : dnnl_eltwise_gelu_tanh, 0, 0, diag);
}

static int compile_sqrt(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  int x = n->in[0], y = n->out[0];
  if (osseg__can_inplace(m, x)) osseg__alias(m, y, x);
  return osseg__eltwise_step(m, n, x, y, dnnl_eltwise_sqrt, 0, 0, diag);
}

const struct osseg__op osseg__ops_eltwise[] = {
    {"Relu", 6, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, infer_unary, fold_unary, compile_eltwise},
    {"LeakyRelu", 6, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_unary, NULL, compile_eltwise},
    {"Sigmoid", 6, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, infer_unary, fold_unary, compile_eltwise},
    {"HardSigmoid", 6, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_unary, NULL, compile_eltwise},
    {"HardSwish", 14, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_unary, NULL, compile_eltwise},
    {"Clip", 6, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_unary, NULL, compile_eltwise},
    {"Identity", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, infer_unary, osseg__fold_copy, compile_eltwise},
    {"Dropout", 7, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, infer_unary, osseg__fold_copy, compile_eltwise},
    {"Gelu", 20, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_gelu, NULL, compile_gelu},
    {"Erf", 9, OSSEG__OPSET_MAX, OSSEG__OP_IN_PATTERN, OSSEG__PREC_RUNTIME, infer_gelu, NULL, NULL},
    {"Sqrt", 6, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_unary, fold_unary, compile_sqrt},
    {"Floor", 6, OSSEG__OPSET_MAX, 0, 0, infer_unary, fold_unary, NULL},
    {"Ceil", 6, OSSEG__OPSET_MAX, 0, 0, infer_unary, fold_unary, NULL},
    {"Neg", 6, OSSEG__OPSET_MAX, 0, 0, infer_unary, fold_unary, NULL},
    {"Reciprocal", 6, OSSEG__OPSET_MAX, 0, 0, infer_unary, fold_unary, NULL},
    {"Abs", 6, OSSEG__OPSET_MAX, 0, 0, infer_unary, fold_unary, NULL},
    {"Not", 1, OSSEG__OPSET_MAX, 0, 0, infer_unary, fold_unary, NULL},
    {"Cast", 6, OSSEG__OPSET_MAX, 0, 0, infer_unary, fold_cast, NULL},
    {0},
};
