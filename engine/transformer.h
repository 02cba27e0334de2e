/* Private declarations of the transformer ops (SegFormer / Mix Transformer):
 * strided views through layout-only ops, the op compilers and the
 * graph-rewrite helpers shared by transformer_fuse.c and the op files. */
#ifndef OSSEG_ENGINE_TRANSFORMER_H
#define OSSEG_ENGINE_TRANSFORMER_H

#include "bf16.h"
#include "engine_internal.h"

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

/* Op compilers. */
int osseg__compile_matmul(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_softmax(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_layernorm(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_attention(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_resize_sum(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_resize_planar(struct osseg_model *m, struct osseg__node *n,
                                 struct osseg_diag *diag);

/* Tensor t in plain row-major bytes: t itself, or a temporary filled by a
 * reorder step (rank-4 nhwc tensors with C > 1 and H*W > 1). <0 on error. */
int osseg__tr_plain_in(struct osseg_model *m, int node, int t, struct osseg_diag *diag);
/* Where an op should write output y in plain bytes: y, or a temporary that
 * osseg__tr_plain_out_done() then reorders into y. */
int osseg__tr_plain_out(struct osseg_model *m, int y, struct osseg_diag *diag);
int osseg__tr_plain_out_done(struct osseg_model *m, int node, int tmp, int y,
                             struct osseg_diag *diag);
/* Plain row-major md of dims with data type dt. */
int osseg__tr_plain_md(dnnl_memory_desc_t *md, const int64_t *dims, int rank, dnnl_data_type_t dt);

#endif
