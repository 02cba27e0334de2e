/* Strided views of runtime tensors through layout-only ops (Reshape,
 * Transpose, Flatten, Squeeze, Unsqueeze, single-index Gather, Identity,
 * osseg.View): which physical elements of a base tensor a layout chain's
 * result reads, so the graph passes can prove a chain costs no copy and the
 * transformer op compilers can address operands in place. */
#ifndef OSSEG_ENGINE_VIEW_H
#define OSSEG_ENGINE_VIEW_H

#include "ir.h"

/* A strided view of a tensor's physical elements: element (i0..i{r-1}) of the
 * view is element offset + sum i_k * strides[k] of the base buffer. */
struct osseg__view {
  int rank;
  int64_t dims[OSSEG_MAX_RANK];
  int64_t strides[OSSEG_MAX_RANK];
  int64_t offset;
};

/* Physical strides of runtime tensor t in the engine layout (rank 4: nhwc,
 * else row-major). */
void osseg__view_physical(const struct osseg__tensor *t, struct osseg__view *v);
/* Reshapes a view without copying; 0 or -1 when the strides do not allow it. */
int osseg__view_reshape(const struct osseg__view *v, const int64_t *dims, int rank,
                        struct osseg__view *out);
/* Compares two views on the non-trivial (size > 1) dims. */
int osseg__view_same(const struct osseg__view *a, const struct osseg__view *b);
/* Layout-only ops a view can pass through. */
int osseg__is_layout_op(const char *op);
/* Permutation of Transpose node n over rank dims ("perm", default reversed). */
void osseg__transpose_perm(const struct osseg__node *n, int rank, int *perm);
/* View of tensor t relative to the deepest runtime tensor reachable through
 * live layout-only nodes (*base). */
void osseg__view_trace(struct osseg__graph *g, int t, struct osseg__view *v, int *base);

#endif
