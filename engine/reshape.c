/* Reshape, Flatten, Squeeze, Unsqueeze, Transpose on runtime tensors.
 * Rank-4 activations live in nhwc, others in plain row-major order, so a
 * logical reshape is: view the source as plain (reorder to a plain
 * temporary when its bytes are not already in row-major order), then
 * reorder that plain view (permuted for Transpose) into the destination
 * layout. When both sides are byte-identical the output aliases the input. */
#include "engine_internal.h"

#include <string.h>

static const dnnl_format_tag_t plain_tag[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                              dnnl_abcde, dnnl_abcdef};

/* nhwc equals row-major when at most one of C and H*W is > 1. */
static int plain_bytes(const struct osseg__tensor *t) {
  return t->rank != 4 || t->dims[1] == 1 || (t->dims[2] == 1 && t->dims[3] == 1);
}

int osseg__compile_reshape(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y];
  int ni = (int)(n - g->nodes);
  int transpose = !strcmp(n->op, "Transpose");
  if (xt->rank > 6 || yt->rank > 6)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (%s): rank > 6", n->name, n->op);
  dnnl_dims_t xd, yd;
  osseg__set_dims(xd, xt->dims, xt->rank);
  osseg__set_dims(yd, yt->dims, yt->rank);
  int xr = xt->rank ? xt->rank : 1, yr = yt->rank ? yt->rank : 1;
  if (!xt->rank) xd[0] = 1;
  if (!yt->rank) yd[0] = 1;
  /* source as a plain row-major buffer */
  int src = x;
  dnnl_memory_desc_t xplain;
  dnnl_memory_desc_init_by_tag(&xplain, xr, xd, m->act_dt, plain_tag[xr]);
  if (!plain_bytes(xt)) {
    int tmp = osseg__add_temp(m, x, diag);
    if (tmp < 0) return tmp;
    m->md[tmp] = xplain;
    int err = osseg__reorder_step(m, ni, x, &m->md[x], tmp, &xplain, diag);
    if (err) return err;
    src = tmp;
    yt = &g->tensors[y];
  }
  if (!transpose && plain_bytes(yt)) {
    /* Same bytes: share storage. Aliased storage is never written in place
     * (osseg__can_inplace), so other readers of x stay correct. */
    osseg__alias(m, y, src);
    return 0;
  }
  dnnl_memory_desc_t view;
  if (transpose) {
    int perm[OSSEG_MAX_RANK];
    const struct osseg__attr *a = osseg__attr_find(n, "perm");
    for (int i = 0; i < xr; i++) {
      int p = a && a->type == OSSEG__ATTR_INTS && a->n == (size_t)xr ? (int)a->ints[i] : xr - 1 - i;
      perm[p] = i; /* input axis p goes to output position i */
    }
    if (dnnl_memory_desc_permute_axes(&view, &xplain, perm) != dnnl_success)
      return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': permute", n->name);
  } else {
    dnnl_memory_desc_init_by_tag(&view, yr, yd, m->act_dt, plain_tag[yr]);
  }
  return osseg__reorder_step(m, ni, src, &view, y, &m->md[y], diag);
}
