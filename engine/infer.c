/* Shape inference for a fixed input size, node by node in file order, with
 * constant folding of nodes whose inputs are all known. Every node goes
 * through its op table entry: an op that is not in the table, or not at
 * the model's opset, is "not supported" here; the entry's shape rule sets
 * the outputs; its constant evaluator folds the node when it can. */
#include "engine_internal.h"

#include <string.h>

/* Checks what every shape rule relies on, then runs the op's rule. */
static int infer_node(struct osseg__graph *g, struct osseg__node *n, const struct osseg__op *op,
                      struct osseg_diag *diag) {
  if (n->nout < 1) return OSSEG__FAIL(OSSEG_EPARSE, OSSEG__NODEFMT "has no output", OSSEG__NODEARG);
  /* Every input must have a known shape by now (file order is topological). */
  for (int i = 0; i < n->nin; i++) {
    struct osseg__tensor *t = osseg__in(g, n, i);
    if (t && t->rank < 0)
      return OSSEG__FAIL(OSSEG_EPARSE, OSSEG__NODEFMT "input '%s' has no shape (produced later or unused "
                  "output)", OSSEG__NODEARG, t->name);
  }
  if (!osseg__in(g, n, 0) && strcmp(n->op, "Range") != 0)
    return OSSEG__FAIL(OSSEG_EPARSE, OSSEG__NODEFMT "missing first input", OSSEG__NODEARG);
  return op->infer(g, n, diag);
}

/* Evaluates node n, whose inputs are all constant: its outputs become
 * constants (secondary outputs, i.e. Dropout's mask, all ones). */
static int fold_node(struct osseg__graph *g, struct osseg__node *n, const struct osseg__op *op,
                     struct osseg_diag *diag) {
  int err = osseg__tensor_alloc_const(g, &g->tensors[n->out[0]], diag);
  if (err) return err;
  for (int i = 1; i < n->nout; i++) {
    struct osseg__tensor *t = &g->tensors[n->out[i]];
    if ((err = osseg__tensor_alloc_const(g, t, diag))) return err;
    memset(t->data, 1, t->nbytes);
  }
  return op->fold(g, n, diag);
}

int osseg__infer_and_fold(struct osseg__graph *g, struct osseg_diag *diag) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    const struct osseg__op *e = osseg__op_lookup(n->op);
    if (!e || (e->flags & OSSEG__OP_INTERNAL) || g->opset < e->since || g->opset > e->until)
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, "node '%s': op %s (opset %d) is not supported", n->name,
                  n->op, g->opset);
    int err = infer_node(g, n, e, diag);
    if (err) return err;
    for (int o = 0; o < n->nout; o++) {
      size_t el;
      struct osseg__tensor *t = &g->tensors[n->out[o]];
      err = osseg__tensor_elems(g, t, &el);
      if (err)
        return OSSEG__FAIL(err, OSSEG__NODEFMT "output '%s' is too large (%s)", OSSEG__NODEARG, t->name,
                    err == OSSEG_ELIMIT ? "over the tensor size limit" : "overflow");
    }
    int all_const = 1;
    for (int i = 0; i < n->nin; i++)
      if (n->in[i] >= 0 && !g->tensors[n->in[i]].data) all_const = 0;
    if (e->flags & OSSEG__OP_FOLD_ALWAYS) all_const = 1;
    if (all_const && e->fold) {
      err = fold_node(g, n, e, diag);
      if (err) return err;
      n->dead = 1;
      continue;
    }
    if (!e->compile && !(e->flags & OSSEG__OP_IN_PATTERN))
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "runs on a non-constant input; only shape "
                  "computations of this op are supported", OSSEG__NODEARG);
    if (e->flags & OSSEG__OP_QUANT_IO) continue; /* 8-bit until the QDQ pass pairs them */
    for (int i = 0; i < n->nout; i++) {
      struct osseg__tensor *t = &g->tensors[n->out[i]];
      if (i == 0 && t->dtype != OSSEG__DT_FLOAT)
        return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "runtime tensor '%s' has dtype %s (only float32 "
                    "activations are supported)", OSSEG__NODEARG, t->name, osseg__dtype_name(t->dtype));
    }
    for (int i = 0; i < n->nin; i++) {
      struct osseg__tensor *t = osseg__in(g, n, i);
      if (t && !t->data && t->dtype != OSSEG__DT_FLOAT)
        return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "runtime input '%s' is %s", OSSEG__NODEARG, t->name,
                    osseg__dtype_name(t->dtype));
    }
  }
  if (g->tensors[g->output].data)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, "graph output '%s' is a constant", g->tensors[g->output].name);
  return 0;
}
