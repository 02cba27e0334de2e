/* Softmax through the oneDNN softmax primitive (accurate: max-subtracted,
 * fp32 accumulation also for bf16 data).
 *
 * Opset >= 13 normalises along one axis: the primitive runs on the tensor in
 * its engine layout (nhwc for rank 4) with that logical axis. Before opset 13
 * the input is coerced to 2-D at `axis` (rows = dims before it, columns =
 * all dims from it), which needs row-major bytes. */
#include "build.h"
#include "bf16.h"
#include "view.h"

#include <string.h>

static int infer_softmax(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *y = &g->tensors[n->out[0]];
  if (x->rank < 1) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "scalar input", OSSEG__NODEARG);
  osseg__same_shape(x, y);
  int64_t a = osseg__attr_int(n, "axis", g->opset < 13 ? 1 : -1);
  if (a < -x->rank || a >= x->rank)
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "axis %lld out of range for rank %d", OSSEG__NODEARG,
                (long long)a, x->rank);
  return 0;
}


static int compile_softmax(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int ni = (int)(n - g->nodes), x = n->in[0], y = n->out[0];
  int rank = g->tensors[x].rank;
  int64_t axis = osseg__attr_int(n, "axis", g->opset < 13 ? 1 : -1);
  if (axis < 0) axis += rank;
  int x_t = x, y_t = y;
  dnnl_memory_desc_t xmd, ymd;
  int max = (int)axis;
  if (g->opset < 13 && axis != rank - 1) {
    if ((x_t = osseg__plain_in(m, ni, x, diag)) < 0) return x_t;
    if ((y_t = osseg__plain_out(m, y, diag)) < 0) return y_t;
    int64_t d2[2] = {1, 1};
    const struct osseg__tensor *xt = &g->tensors[x];
    for (int i = 0; i < rank; i++) d2[i < axis ? 0 : 1] *= xt->dims[i];
    if (osseg__plain_md(&xmd, d2, 2, m->act_dt)) return osseg__fail(diag, OSSEG_EBACKEND, "md");
    ymd = xmd;
    max = 1;
  } else {
    xmd = m->md[x];
    ymd = m->md[y];
  }
  if (x_t == x && y_t == y && osseg__can_inplace(m, x)) osseg__alias(m, y, x);
  dnnl_softmax_v2_desc_t sd;
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_softmax_v2_forward_desc_init(&sd, dnnl_forward_inference,
                                                       dnnl_softmax_accurate, &xmd, &ymd, max);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &sd, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "softmax descriptor", n);
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_PRIM, ni);
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC, x_t, &xmd);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, y_t, &ymd);
  int err = osseg__finish_prim(m, s, pd, n, diag);
  if (err) return err;
  return osseg__plain_out_done(m, ni, y_t, y, diag);
}

const struct osseg__op osseg__ops_softmax[] = {
    {"Softmax", 1, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_softmax, NULL, compile_softmax},
    {0},
};
