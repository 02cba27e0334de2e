/* Observers (osseg_engine_options.observe): an osseg.Observe node right
 * after the producer of every observed tensor, which hands the tensor's
 * values to the caller during each run. Its consumers read the Observe
 * node's output (the same bytes), so no pass can fuse the tensor away: an
 * observed model computes the same values, only without the fusions across
 * the observed tensors. Runs after shape inference, before the passes. */
#include "passes.h"

#include <string.h>

#include "graph_edit.h"

/* Tensor index of observed name i, or an error naming it. */
static int observed_tensor(struct osseg__graph *g, const char *name, struct osseg_diag *diag) {
  int t = -1; /* (the loader's name index is gone by now) */
  for (int i = 0; name && i < g->ntensors && t < 0; i++)
    if (g->tensors[i].name && !strcmp(g->tensors[i].name, name)) t = i;
  if (t < 0) return osseg__fail(diag, OSSEG_EINVAL, "observe: no tensor '%s' in the graph",
                                name ? name : "(null)");
  const struct osseg__tensor *x = &g->tensors[t];
  if (t == g->input)
    return osseg__fail(diag, OSSEG_EINVAL, "observe: '%s' is the graph input (the caller has it)",
                       name);
  if (x->data || x->producer < 0)
    return osseg__fail(diag, OSSEG_EINVAL, "observe: '%s' is a constant, not computed by a run",
                       name);
  if (x->dtype != OSSEG__DT_FLOAT || x->rank < 0)
    return osseg__fail(diag, OSSEG_EINVAL, "observe: '%s' is not a float tensor of known shape",
                       name);
  return t;
}

int osseg__insert_observers(struct osseg__graph *g, const struct osseg_engine_observer *obs,
                            struct osseg_diag *diag) {
  if (!obs->count) return 0;
  if (!obs->tensors || !obs->fn || obs->count > (size_t)OSSEG__MAX_OBSERVED)
    return osseg__fail(diag, OSSEG_EINVAL, "observe: invalid observer (%zu tensors, at most %d)",
                       obs->count, OSSEG__MAX_OBSERVED);
  const int n = (int)obs->count;
  struct osseg__node *obsn = osseg__calloc((size_t)n, sizeof *obsn);
  struct osseg__node *nodes = osseg__calloc((size_t)g->nnodes + (size_t)n, sizeof *nodes);
  int err = obsn && nodes ? osseg__graph_reserve_tensors(g, n) : OSSEG_ENOMEM;
  if (err) osseg__fail(diag, err, "out of memory");
  /* every Observe node made first: nothing below can fail */
  for (int i = 0; !err && i < n; i++) {
    int t = observed_tensor(g, obs->tensors[i], diag);
    if (t < 0) err = t;
    for (int j = 0; !err && j < i; j++)
      if (obsn[j].in[0] == t)
        err = osseg__fail(diag, OSSEG_EINVAL, "observe: tensor '%s' listed twice", obs->tensors[i]);
    if (err) break;
    /* the observed value under a new name; consumers move to it below */
    char name[64];
    snprintf(name, sizeof name, "osseg.observed#%d", i);
    int y = osseg__graph_add_tensor(g, name, strlen(name));
    struct osseg__node *o = &obsn[i];
    snprintf(name, sizeof name, "osseg.observe#%d", i);
    o->name = osseg__strndup(name, sizeof name);
    o->in = osseg__malloc(sizeof(int));
    o->out = osseg__malloc(sizeof(int));
    if (y < 0 || !o->name || !o->in || !o->out || osseg__set_op(o, OSSEG__OP_OBSERVE) ||
        osseg__add_attr_int(o, "index", i)) {
      err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      break;
    }
    osseg__same_shape(&g->tensors[t], &g->tensors[y]);
    o->in[0] = t;
    o->out[0] = y;
    o->nin = o->nout = 1;
  }
  if (err) {
    for (int i = 0; obsn && i < n; i++) osseg__node_free(&obsn[i]);
    osseg__free(obsn);
    osseg__free(nodes);
    return err;
  }
  /* consumers of each observed tensor read the observer's output instead;
   * the graph output stays the producer's tensor */
  const int out = g->output;
  for (int i = 0; i < n; i++) osseg__rewire(g, obsn[i].in[0], obsn[i].out[0]);
  g->output = out;
  /* each Observe right after its tensor's producer, so the node array stays
   * in topological (compile) order */
  int nn = 0;
  for (int ni = 0; ni < g->nnodes; ni++) {
    nodes[nn++] = g->nodes[ni];
    for (int i = 0; i < n; i++)
      if (g->tensors[obsn[i].in[0]].producer == ni) nodes[nn++] = obsn[i];
  }
  osseg__free(g->nodes);
  osseg__free(obsn);
  g->nodes = nodes;
  g->nnodes = g->capnodes = nn;
  for (int t = 0; t < g->ntensors; t++) g->tensors[t].producer = -1;
  for (int ni = 0; ni < g->nnodes; ni++)
    for (int o = 0; o < g->nodes[ni].nout; o++)
      if (g->nodes[ni].out[o] >= 0) g->tensors[g->nodes[ni].out[o]].producer = ni;
  osseg__count_uses(g);
  return 0;
}
