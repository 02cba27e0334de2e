/* An activation behind an osseg.View of a Conv output moves in front of the
 * view, so the conv epilogue pass can make it the conv's post-op (Mix-FFN
 * dwconv + GELU):
 * Conv -> osseg.View -> activation  ==>  Conv -> activation -> osseg.View */
#include "../view.h"
#include "graph_edit.h"
#include "pass_list.h"

#include <string.h>

static void act_before_view(struct osseg__graph *g, struct osseg__node *act) {
  struct osseg__node *vw = osseg__producer(g, act->in[0], OSSEG__OP_VIEW);
  if (!vw || osseg__only_consumer(g, vw->out[0]) != act) return;
  struct osseg__node *cv = osseg__producer(g, vw->in[0], "Conv");
  if (!cv || osseg__only_consumer(g, cv->out[0]) != vw) return;
  int c = cv->out[0], v = vw->out[0], y = act->out[0];
  act->in[0] = c;
  act->out[0] = v;
  g->tensors[v].rank = g->tensors[c].rank;
  memcpy(g->tensors[v].dims, g->tensors[c].dims, sizeof g->tensors[c].dims);
  g->tensors[v].producer = (int)(act - g->nodes);
  vw->in[0] = v;
  vw->out[0] = y;
  g->tensors[y].producer = (int)(vw - g->nodes);
  /* keep topological order: the activation now runs before the view */
  struct osseg__node tmp = *act;
  *act = *vw;
  *vw = tmp;
  g->tensors[v].producer = (int)(vw - g->nodes);
  g->tensors[y].producer = (int)(act - g->nodes);
}

void osseg__move_activations_before_views(struct osseg__graph *g) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (!n->dead && !strcmp(n->op, "Gelu") && n->nin == 1) act_before_view(g, n);
  }
}
