/* Private declarations of the transformer ops (SegFormer / Mix Transformer):
 * strided views through layout-only ops, the op compilers and the
 * graph-rewrite helpers shared by transformer_fuse.c and the op files. */
#ifndef OSSEG_ENGINE_TRANSFORMER_H
#define OSSEG_ENGINE_TRANSFORMER_H

#include "bf16.h"
#include "build.h"

/* Internal op names created by transformer_fuse.c (never in ONNX files). */
#define OSSEG__OP_VIEW "osseg.View"           /* output shares the input's bytes */
#define OSSEG__OP_ATTENTION "osseg.Attention" /* softmax(scale Q K^T) V, tiled */

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

#endif
