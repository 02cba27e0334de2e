/* MatMul / Gemm epilogues: the chain of single consumers behind a MatMul
 * becomes part of it: a constant bias Add (third input), a residual Add (sum
 * post-op) and Gelu / Relu / Sigmoid (post-ops), as matmul.c runs them. */
#include "graph_edit.h"
#include "pass_list.h"

#include <string.h>

static int fuse_matmul(struct osseg__graph *g, int ni, struct osseg_diag *diag) {
  struct osseg__node *n = &g->nodes[ni];
  int isgemm = !strcmp(n->op, "Gemm");
  const struct osseg__tensor *yt = &g->tensors[n->out[0]];
  if (yt->rank < 1) return 0;
  int64_t K = yt->dims[yt->rank - 1];
  for (;;) {
    int t = n->out[0];
    if (t == g->output) return 0; /* the graph's output itself must stay */
    struct osseg__node *c = osseg__only_consumer(g, t);
    if (!c || c->dead) return 0;
    if (!strcmp(c->op, "Add") && c->nin == 2) {
      int o = osseg__other_input(c, t);
      if (o < 0 || o == t) return 0;
      struct osseg__tensor *ot = &g->tensors[o];
      size_t e;
      if (ot->data && n->npost == 0 && !isgemm && n->nin == 2 && ot->dtype == OSSEG__DT_FLOAT &&
          !osseg__tensor_elems(g, ot, &e) && (int64_t)e == K && ot->rank <= yt->rank &&
          ot->rank >= 1 && ot->dims[ot->rank - 1] == K) {
        int in[3] = {n->in[0], n->in[1], o};
        int err = osseg__set_inputs(n, in, 3);
        if (err) return osseg__fail(diag, err, "out of memory");
      } else if (!ot->data && n->npost < OSSEG__MAX_POST && ot->rank == yt->rank &&
                 !memcmp(ot->dims, g->tensors[c->out[0]].dims, sizeof(int64_t) * (size_t)ot->rank) &&
                 !memcmp(ot->dims, yt->dims, sizeof(int64_t) * (size_t)ot->rank) &&
                 ot->producer < ni) {
        int has_sum = 0;
        for (int p = 0; p < n->npost; p++) has_sum |= n->post[p].kind == OSSEG__POST_SUM;
        if (has_sum) return 0;
        n->post[n->npost++] = (struct osseg__post){OSSEG__POST_SUM, 1, 0, o};
      } else {
        return 0;
      }
    } else if (!strcmp(c->op, "Gelu") && !strcmp(osseg__attr_str(c, "approximate", "none"), "none") &&
               n->npost < OSSEG__MAX_POST) {
      n->post[n->npost++] = (struct osseg__post){OSSEG__POST_GELU_ERF, 0, 0, -1};
    } else if (!strcmp(c->op, "Relu") && n->npost < OSSEG__MAX_POST) {
      n->post[n->npost++] = (struct osseg__post){OSSEG__POST_RELU, 0, 0, -1};
    } else if (!strcmp(c->op, "Sigmoid") && n->npost < OSSEG__MAX_POST) {
      n->post[n->npost++] = (struct osseg__post){OSSEG__POST_SIGMOID, 0, 0, -1};
    } else {
      return 0;
    }
    c->dead = 1;
    n->out[0] = c->out[0];
    g->tensors[n->out[0]].producer = ni;
    yt = &g->tensors[n->out[0]];
  }
}

int osseg__fuse_matmul_epilogues(struct osseg__graph *g, struct osseg_diag *diag) {
  int err;
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead || (strcmp(g->nodes[ni].op, "MatMul") && strcmp(g->nodes[ni].op, "Gemm")))
      continue;
    if ((err = fuse_matmul(g, ni, diag)) < 0) return err;
  }
  return 0;
}
