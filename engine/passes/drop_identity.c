/* Identity / Dropout / no-op pass-throughs are removed: their consumers
 * read the input directly. An Identity from the graph input straight to the
 * graph output stays (it needs a copy). */
#include "graph_edit.h"
#include "pass_list.h"

#include <string.h>

void osseg__drop_identity(struct osseg__graph *g) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead || (strcmp(n->op, "Identity") && strcmp(n->op, "Dropout"))) continue;
    if (n->in[0] == g->input && n->out[0] == g->output) continue; /* keep: needs a copy */
    n->dead = 1;
    osseg__rewire(g, n->out[0], n->in[0]);
  }
}
