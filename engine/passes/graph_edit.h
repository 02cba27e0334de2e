/* Graph-editing helpers shared by the graph passes (the files of passes/). */
#ifndef OSSEG_ENGINE_PASSES_GRAPH_EDIT_H
#define OSSEG_ENGINE_PASSES_GRAPH_EDIT_H

#include "../ir.h"

/* Recounts every tensor's uses: inputs of live nodes, sum post-op addends,
 * and one for the graph output. */
void osseg__count_uses(struct osseg__graph *g);
/* Marks nodes none of whose outputs is used dead (last to first), then
 * recounts uses. */
void osseg__eliminate_dead(struct osseg__graph *g);

/* How often node n reads tensor t (inputs and residual sums). */
int osseg__reads(const struct osseg__node *n, int t);
/* Live consumers of tensor t: count and the first one (index). */
int osseg__consumers(const struct osseg__graph *g, int t, int *first);
/* The single live consumer of t (and t is not the graph output), or NULL. */
struct osseg__node *osseg__only_consumer(struct osseg__graph *g, int t);
/* The live node whose first output is t, if its op is `op` (any op when
 * NULL), or NULL. */
struct osseg__node *osseg__producer(struct osseg__graph *g, int t, const char *op);
/* Value of a constant tensor with exactly one element, else NAN. */
double osseg__const_scalar(const struct osseg__graph *g, int t);
/* Other input of binary node n than t (or -1 if t is not an input). */
int osseg__other_input(const struct osseg__node *n, int t);

/* New float32 constant tensor of the given dims, zero-filled: its index, or
 * an error (after osseg__fail). */
int osseg__new_const(struct osseg__graph *g, int rank, const int64_t *dims,
                     struct osseg_diag *diag);

/* Replaces every reference to tensor `from` by `to`: inputs and residual
 * addends of live nodes, and the graph output. */
void osseg__rewire(struct osseg__graph *g, int from, int to);
/* In-place node edits; 0 or OSSEG_ENOMEM. */
int osseg__set_op(struct osseg__node *n, const char *op);
int osseg__set_inputs(struct osseg__node *n, const int *in, int nin);
/* Appends an attribute of the given type (value zeroed), or NULL. */
struct osseg__attr *osseg__add_attr(struct osseg__node *n, const char *name, int type);
int osseg__add_attr_float(struct osseg__node *n, const char *name, float f);
int osseg__add_attr_int(struct osseg__node *n, const char *name, int64_t i);
int osseg__add_attr_ints(struct osseg__node *n, const char *name, const int64_t *v, size_t cnt);

#endif
