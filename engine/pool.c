/* Pooling (MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool) and
 * ReduceMean, as oneDNN pooling / reduction primitives on nhwc. */
#include "engine_internal.h"

#include <string.h>

static int simple_step(struct osseg_model *m, struct osseg__node *n, dnnl_primitive_desc_t pd,
                       int x, const dnnl_memory_desc_t *xmd, int y, const dnnl_memory_desc_t *ymd,
                       struct osseg_diag *diag) {
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_PRIM, (int)(n - m->g.nodes));
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC, x, xmd);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, y, ymd);
  return osseg__finish_prim(m, s, pd, n, diag);
}

int osseg__compile_pool(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  struct osseg__tensor *xt = &g->tensors[x];
  struct osseg__window w;
  int err = osseg__window_of(g, n, &w, diag);
  if (err) return err;
  dnnl_alg_kind_t alg;
  if (strstr(n->op, "Max")) {
    alg = dnnl_pooling_max;
  } else if (strncmp(n->op, "Global", 6) == 0) {
    alg = dnnl_pooling_avg_exclude_padding;
  } else {
    alg = osseg__attr_int(n, "count_include_pad", 0) ? dnnl_pooling_avg_include_padding
                                                      : dnnl_pooling_avg_exclude_padding;
  }
  dnnl_dims_t strides, kernel, dil, pl, pr;
  for (int i = 0; i < 2; i++) {
    int64_t keff = (w.k[i] - 1) * w.d[i] + 1, in = xt->dims[2 + i];
    strides[i] = w.s[i], kernel[i] = w.k[i], dil[i] = w.d[i] - 1, pl[i] = w.pb[i];
    pr[i] = w.pe[i];
    if ((in + pl[i] + pr[i] - keff) / w.s[i] + 1 != w.out[i]) /* ceil_mode */
      pr[i] = (w.out[i] - 1) * w.s[i] + keff - in - pl[i];
  }
  dnnl_pooling_v2_desc_t pdsc;
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_pooling_v2_forward_desc_init(&pdsc, dnnl_forward_inference, alg,
                                                       &m->md[x], &m->md[y], strides, kernel,
                                                       dil, pl, pr);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &pdsc, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "pooling descriptor", n);
  return simple_step(m, n, pd, x, NULL, y, NULL, diag);
}

int osseg__compile_reduce(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y];
  /* Destination with the source rank (reduced dims = 1). With keepdims the
   * output tensor's own layout; without, a plain layout, which has the same
   * bytes as the lower-rank plain output tensor. */
  int64_t axes[OSSEG_MAX_RANK];
  int na = 0;
  const struct osseg__attr *a = osseg__attr_find(n, "axes");
  if (a && a->type == OSSEG__ATTR_INTS) {
    for (size_t i = 0; i < a->n && i < OSSEG_MAX_RANK; i++) axes[na++] = a->ints[i];
  } else if (n->nin > 1 && n->in[1] >= 0) {
    struct osseg__tensor *at = &g->tensors[n->in[1]];
    size_t e;
    osseg__tensor_elems(g, at, &e);
    for (size_t i = 0; i < e && i < OSSEG_MAX_RANK; i++) axes[na++] = osseg__const_i64(at, i);
  }
  int red[OSSEG_MAX_RANK] = {0};
  for (int i = 0; i < na; i++) red[axes[i] < 0 ? axes[i] + xt->rank : axes[i]] = 1;
  if (na == 0)
    for (int i = 0; i < xt->rank; i++) red[i] = 1;
  dnnl_dims_t dd;
  for (int i = 0; i < xt->rank; i++) dd[i] = red[i] ? 1 : xt->dims[i];
  dnnl_memory_desc_t dmd;
  if (yt->rank == xt->rank) {
    dmd = m->md[y];
  } else {
    static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                              dnnl_abcde, dnnl_abcdef};
    if (xt->rank > 6) return osseg__fail(diag, OSSEG_EUNSUPPORTED, "rank");
    dnnl_memory_desc_init_by_tag(&dmd, xt->rank, dd, m->act_dt, plain[xt->rank]);
  }
  dnnl_reduction_desc_t rd;
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_reduction_desc_init(&rd, dnnl_reduction_mean, &m->md[x], &dmd, 0, 0);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &rd, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "reduction descriptor", n);
  return simple_step(m, n, pd, x, NULL, y, &dmd, diag);
}
