/* Binary elementwise ops with numpy broadcasting: Add, Sub, Mul, Div on
 * runtime data (oneDNN binary steps; src1 may broadcast, constants are
 * materialised once in the activation layout; residual Adds and x*sigmoid(x)
 * are fused into convs by the passes), Pow with a constant exponent, and
 * the comparisons, Min, Max and Where of shape computations, which only
 * ever run on constants. */
#include "build.h"

#include <math.h>
#include <string.h>

static int infer_binary(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  const char *op = n->op;
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  struct osseg__tensor *b = osseg__in(g, n, 1);
  if (!b) return OSSEG__FAIL(OSSEG_EPARSE, OSSEG__NODEFMT "needs two inputs", OSSEG__NODEARG);
  if (osseg__broadcast(x, b, y))
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "shapes of '%s' and '%s' do not broadcast", OSSEG__NODEARG,
                x->name, b->name);
  y->dtype = x->dtype;
  if (!strcmp(op, "Equal") || !strcmp(op, "Less") || !strcmp(op, "Greater"))
    y->dtype = OSSEG__DT_BOOL;
  if (!strcmp(op, "Where")) {
    struct osseg__tensor *c = osseg__in(g, n, 2), tmp = *y;
    if (!c || osseg__broadcast(&tmp, c, y))
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "shapes do not broadcast", OSSEG__NODEARG);
    y->dtype = b->dtype;
  }
  if (n->nin > 2 && strcmp(op, "Where") != 0)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "more than two inputs", OSSEG__NODEARG);
  return 0;
}

static double binop(const char *op, double a, double b) {
  switch (op[0]) {
    case 'A': return a + b;
    case 'S': return a - b;
    case 'M':
      if (op[1] == 'u') return a * b;
      if (op[1] == 'i') return a < b ? a : b;
      return a > b ? a : b;
    case 'D': return a / b;
    case 'P': return pow(a, b);
    case 'E': return a == b;
    case 'L': return a < b;
    case 'G': return a > b;
    default: return 0;
  }
}

static int64_t binop_i(const char *op, int64_t a, int64_t b) {
  switch (op[0]) {
    case 'A': return osseg__sat_add_i64(a, b);
    case 'S': return osseg__sat_sub_i64(a, b);
    case 'M':
      if (op[1] == 'u') return osseg__sat_mul_i64(a, b);
      if (op[1] == 'i') return a < b ? a : b;
      return a > b ? a : b;
    case 'D':
      if (b == 0 || (a == INT64_MIN && b == -1)) return 0;
      /* ONNX integer Div truncates like C. */
      return a / b;
    case 'E': return a == b;
    case 'L': return a < b;
    case 'G': return a > b;
    case 'P': return osseg__sat_i64(pow((double)a, (double)b));
    default: return 0;
  }
}

static int fold_binary(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  struct osseg__tensor *x = &g->tensors[n->in[0]];
  const char *op = n->op;
  size_t ne;
  osseg__tensor_elems(g, y, &ne);
  struct osseg__tensor *b = &g->tensors[n->in[1]];
  size_t sa[OSSEG_MAX_RANK], sb[OSSEG_MAX_RANK];
  osseg__bcast_strides(x, y->rank, y->dims, sa);
  osseg__bcast_strides(b, y->rank, y->dims, sb);
  int fl = osseg__dtype_is_float(x->dtype) || osseg__dtype_is_float(b->dtype);
  for (size_t i = 0; i < ne; i++) {
    size_t ia = osseg__bcast_index(i, y->rank, y->dims, sa), ib = osseg__bcast_index(i, y->rank, y->dims, sb);
    if (fl) osseg__const_set_f64(y, i, binop(op, osseg__const_f64(x, ia), osseg__const_f64(b, ib)));
    else osseg__const_set_i64(y, i, binop_i(op, osseg__const_i64(x, ia), osseg__const_i64(b, ib)));
  }
  return 0;
}

static int fold_where(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  (void)diag;
  struct osseg__tensor *y = &g->tensors[n->out[0]], *c = &g->tensors[n->in[0]];
  struct osseg__tensor *a = &g->tensors[n->in[1]], *b = &g->tensors[n->in[2]];
  size_t ne, es = osseg__dtype_size(y->dtype);
  osseg__tensor_elems(g, y, &ne);
  size_t sc[OSSEG_MAX_RANK], sa[OSSEG_MAX_RANK], sb[OSSEG_MAX_RANK];
  osseg__bcast_strides(a, y->rank, y->dims, sa);
  osseg__bcast_strides(c, y->rank, y->dims, sc);
  osseg__bcast_strides(b, y->rank, y->dims, sb);
  for (size_t i = 0; i < ne; i++) {
    int pick_a = osseg__const_i64(c, osseg__bcast_index(i, y->rank, y->dims, sc)) != 0;
    const struct osseg__tensor *s = pick_a ? a : b;
    size_t si = osseg__bcast_index(i, y->rank, y->dims, pick_a ? sa : sb);
    memcpy((char *)y->data + i * es, (const char *)s->data + si * es, es);
  }
  return 0;
}

static int same_dims(const struct osseg__tensor *a, const struct osseg__tensor *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

/* Runtime operand *t broadcast into a new temporary of the node's output
 * shape and layout (a broadcast copy in plain bytes, reordered into nhwc
 * for rank 4), which replaces it. */
static int expand_operand(struct osseg_model *m, struct osseg__node *n, int *t,
                          struct osseg_diag *diag) {
  int ni = (int)(n - m->g.nodes), y = n->out[0];
  int x = osseg__plain_in(m, ni, *t, diag);
  if (x < 0) return x;
  int full = osseg__add_temp(m, y, diag);
  if (full < 0) return full;
  int err = osseg__tensor_md(m, full, m->act_dt, NULL);
  if (err) return osseg__fail(diag, err, "node '%s': layout", n->name);
  int fp = osseg__plain_out(m, full, diag);
  if (fp < 0) return fp;
  if ((err = osseg__broadcast_step(m, ni, x, fp, diag))) return err;
  if ((err = osseg__plain_out_done(m, ni, fp, full, diag))) return err;
  m->g.tensors[full].uses = 1;
  *t = full;
  return 0;
}

static int compile_binary(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int a = n->in[0], b = n->in[1], y = n->out[0];
  struct osseg__tensor *yt = &g->tensors[y];
  char op = n->op[0];
  int negate = 0;
  /* src0 must have the output's dims; swap operands when only src1 has. */
  if (!same_dims(&g->tensors[a], yt) && !same_dims(&g->tensors[b], yt) &&
      !g->tensors[a].data && !g->tensors[b].data) {
    /* both broadcast (a [N,1,H,W] map and a [N,C,1,1] vector): src0 is
     * expanded to the output's shape first */
    int err = expand_operand(m, n, &a, diag);
    if (err) return err;
  }
  if (!same_dims(&g->tensors[a], yt) || g->tensors[a].data) {
    if (!same_dims(&g->tensors[b], yt) || g->tensors[b].data)
      return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                         "node '%s' (%s): both operands broadcast (or are constant); unsupported",
                         n->name, n->op);
    if (op == 'D')
      return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                         "node '%s' (Div): broadcasting numerator unsupported", n->name);
    if (op == 'S') negate = 1;
    int t = a;
    a = b, b = t;
  }
  struct osseg__tensor *bt = &g->tensors[b];
  int r = yt->rank;
  if (bt->rank > r || r > 6) return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s': rank", n->name);
  dnnl_dims_t bd;
  for (int i = 0; i < r; i++) bd[i] = i < r - bt->rank ? 1 : bt->dims[i - (r - bt->rank)];
  dnnl_memory_desc_t bmd;
  dnnl_memory_t bmem = NULL;
  static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                            dnnl_abcde, dnnl_abcdef};
  dnnl_format_tag_t tag = r == 4 ? dnnl_acdb : plain[r];
  int err;
  if (bt->data) {
    /* constant: float32 in the activation layout (f32 src1 keeps precision) */
    size_t e;
    osseg__tensor_elems(g, bt, &e);
    float *tmp = osseg__malloc((e ? e : 1) * sizeof(float));
    if (!tmp) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    for (size_t i = 0; i < e; i++) tmp[i] = (float)osseg__const_f64(bt, i);
    dnnl_memory_desc_t src_md;
    dnnl_memory_desc_init_by_tag(&src_md, r, bd, dnnl_f32, plain[r]);
    dnnl_memory_desc_init_by_tag(&bmd, r, bd, dnnl_f32, tag);
    err = osseg__const_memory(m, &bmd, &src_md, tmp, &bmem, diag);
    osseg__free(tmp);
    if (err) return err;
  } else {
    if (bt->rank != r)
      return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (%s): operand ranks differ", n->name,
                         n->op);
    bmd = m->md[b];
  }
  dnnl_alg_kind_t alg = op == 'A' ? dnnl_binary_add : op == 'M' ? dnnl_binary_mul
                      : op == 'S' ? dnnl_binary_sub : dnnl_binary_div;
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  if (negate) {
    dnnl_post_ops_t po;
    dnnl_post_ops_create(&po);
    dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_linear, -1.f, 0.f);
    dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
  }
  if (osseg__can_inplace(m, a)) osseg__alias(m, y, a);
  dnnl_binary_desc_t bdsc;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_binary_desc_init(&bdsc, alg, &m->md[a], &bmd, &m->md[y]);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &bdsc, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "binary descriptor", n);
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_PRIM, (int)(n - g->nodes));
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC_0, a, NULL);
  if (bmem) osseg__step_arg_mem(s, DNNL_ARG_SRC_1, bmem);
  else osseg__step_arg_tensor(m, s, DNNL_ARG_SRC_1, b, NULL);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, y, NULL);
  size_t e;
  osseg__tensor_elems(g, yt, &e);
  m->flops += e;
  return osseg__finish_prim(m, s, pd, n, diag);
}

/* Pow on runtime data: a runtime base with a constant scalar exponent, as
 * an eltwise step (square for 2, LayerNorm's variance). */
static int compile_pow(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  const struct osseg__tensor *e = &g->tensors[n->in[1]];
  size_t cnt;
  if (!e->data || osseg__tensor_elems(g, e, &cnt) || cnt != 1 || g->tensors[n->in[0]].data)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                       "node '%s' (Pow, opset %d): only a runtime base with a constant scalar "
                       "exponent is supported", n->name, g->opset);
  double p = osseg__const_f64(e, 0);
  int x = n->in[0], y = n->out[0];
  if (osseg__can_inplace(m, x)) osseg__alias(m, y, x);
  if (p == 2.0) return osseg__eltwise_step(m, n, x, y, dnnl_eltwise_square, 0, 0, diag);
  return osseg__eltwise_step(m, n, x, y, dnnl_eltwise_pow, 1.0f, (float)p, diag);
}

const struct osseg__op osseg__ops_binary[] = {
    {"Add", 7, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL | OSSEG__OP_PREC_F32_VECTOR, OSSEG__PREC_RUNTIME, infer_binary, fold_binary, compile_binary},
    {"Sub", 7, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_binary, fold_binary, compile_binary},
    {"Mul", 7, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL | OSSEG__OP_PREC_F32_VECTOR, OSSEG__PREC_RUNTIME, infer_binary, fold_binary, compile_binary},
    {"Div", 7, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_binary, fold_binary, compile_binary},
    {"Pow", 7, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_binary, fold_binary, compile_pow},
    {"Min", 6, OSSEG__OPSET_MAX, 0, 0, infer_binary, fold_binary, NULL},
    {"Max", 6, OSSEG__OPSET_MAX, 0, 0, infer_binary, fold_binary, NULL},
    {"Equal", 7, OSSEG__OPSET_MAX, 0, 0, infer_binary, fold_binary, NULL},
    {"Less", 7, OSSEG__OPSET_MAX, 0, 0, infer_binary, fold_binary, NULL},
    {"Greater", 7, OSSEG__OPSET_MAX, 0, 0, infer_binary, fold_binary, NULL},
    {"Where", 9, OSSEG__OPSET_MAX, 0, 0, infer_binary, fold_where, NULL},
    {0},
};
