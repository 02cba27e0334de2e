/* Chains of layout-only ops whose result has the same bytes as their source
 * in the engine layout -> osseg.View (shared storage). A rank-4 activation is
 * nhwc, so (1,C,H,W) -> Reshape(1,C,HW) -> Transpose(0,2,1) is the (HW, C)
 * token matrix itself, and the way back is free too. */
#include "../view.h"
#include "graph_edit.h"
#include "pass_list.h"

int osseg__collapse_views(struct osseg__graph *g, struct osseg_diag *diag) {
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
    int err = osseg__set_inputs(n, in, 1);
    if (!err) err = osseg__set_op(n, OSSEG__OP_VIEW);
    osseg__node_clear_attrs(n);
    if (err) return osseg__fail(diag, err, "out of memory");
  }
  return 0;
}
