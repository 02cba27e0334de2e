/* Elementwise ops: activations (eltwise primitive) and Add/Sub/Mul/Div with
 * numpy broadcasting (binary primitive; src1 may broadcast, constants are
 * materialised once in the activation layout). */
#include "engine_internal.h"

#include <math.h>
#include <string.h>

int osseg__eltwise_step(struct osseg_model *m, struct osseg__node *n, int x, int y,
                        dnnl_alg_kind_t alg, float alpha, float beta, struct osseg_diag *diag) {
  dnnl_eltwise_desc_t ed;
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg, &m->md[x], alpha, beta);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &ed, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "eltwise descriptor", n);
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_PRIM, (int)(n - m->g.nodes));
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC, x, &m->md[x]);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, y, &m->md[x]);
  size_t e;
  if (!osseg__tensor_elems(&m->g, &m->g.tensors[y], &e)) m->flops += e;
  return osseg__finish_prim(m, s, pd, n, diag);
}

int osseg__compile_eltwise(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
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

static int same_dims(const struct osseg__tensor *a, const struct osseg__tensor *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

int osseg__compile_binary(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int a = n->in[0], b = n->in[1], y = n->out[0];
  struct osseg__tensor *yt = &g->tensors[y];
  char op = n->op[0];
  int negate = 0;
  /* src0 must have the output's dims; swap operands when only src1 has. */
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
