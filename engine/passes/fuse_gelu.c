/* GELU from its Erf form (Div, Erf, Add, Mul, Mul, in either of PyTorch's
 * two association orders) -> one Gelu node. */
#include "graph_edit.h"
#include "pass_list.h"

#include <math.h>
#include <string.h>

static int near(double a, double b) { return fabs(a - b) <= 1e-4 * fabs(b); }

static int fuse_gelu(struct osseg__graph *g, struct osseg__node *erf, struct osseg_diag *diag) {
  struct osseg__node *pre = osseg__producer(g, erf->in[0], NULL);
  if (!pre || pre->nin != 2 || g->tensors[erf->in[0]].uses > 1) return 0;
  int x = pre->in[0];
  double c = osseg__const_scalar(g, pre->in[1]);
  if (!strcmp(pre->op, "Div")) {
    if (!near(c, sqrt(2.0))) return 0;
  } else if (!strcmp(pre->op, "Mul")) {
    if (!near(c, sqrt(0.5))) {
      x = pre->in[1];
      if (!near(osseg__const_scalar(g, pre->in[0]), sqrt(0.5))) return 0;
    }
  } else {
    return 0;
  }
  if (g->tensors[x].data || osseg__only_consumer(g, pre->out[0]) != erf) return 0;
  struct osseg__node *add = osseg__only_consumer(g, erf->out[0]);
  if (!add || strcmp(add->op, "Add") ||
      osseg__const_scalar(g, osseg__other_input(add, erf->out[0])) != 1.0)
    return 0;
  struct osseg__node *m1 = osseg__only_consumer(g, add->out[0]);
  if (!m1 || strcmp(m1->op, "Mul")) return 0;
  int o = osseg__other_input(m1, add->out[0]);
  struct osseg__node *last = NULL, *half = NULL;
  if (o == x) { /* (x * (1 + erf)) * 0.5 */
    last = osseg__only_consumer(g, m1->out[0]);
    if (!last || strcmp(last->op, "Mul") ||
        osseg__const_scalar(g, osseg__other_input(last, m1->out[0])) != 0.5)
      return 0;
  } else { /* (x * 0.5) * (1 + erf) */
    half = osseg__producer(g, o, "Mul");
    if (!half || osseg__other_input(half, x) < 0 ||
        osseg__const_scalar(g, osseg__other_input(half, x)) != 0.5 ||
        osseg__only_consumer(g, o) != m1)
      return 0;
    last = m1;
  }
  int in[1] = {x};
  int err = osseg__set_inputs(last, in, 1);
  if (!err) err = osseg__set_op(last, "Gelu");
  osseg__node_clear_attrs(last);
  if (err) return osseg__fail(diag, err, "out of memory");
  pre->dead = erf->dead = add->dead = 1;
  if (m1 != last) m1->dead = 1;
  if (half) half->dead = 1;
  return 1;
}

/* Use counts are recounted after each match: fuse_gelu checks them. */
int osseg__fuse_gelus(struct osseg__graph *g, struct osseg_diag *diag) {
  int err;
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead || strcmp(g->nodes[ni].op, "Erf")) continue;
    if ((err = fuse_gelu(g, &g->nodes[ni], diag)) < 0) return err;
    osseg__count_uses(g);
  }
  return 0;
}
