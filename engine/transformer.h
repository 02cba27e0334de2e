/* Private declarations of the transformer ops (SegFormer / Mix Transformer):
 * the op compilers and their plain-layout helpers. The strided views through
 * layout-only ops they address operands with are in view.h. */
#ifndef OSSEG_ENGINE_TRANSFORMER_H
#define OSSEG_ENGINE_TRANSFORMER_H

#include "bf16.h"
#include "engine_internal.h"
#include "view.h"

/* Internal op name created by the graph passes (never in ONNX files);
 * osseg.View (OSSEG__OP_VIEW) is in view.h. */
#define OSSEG__OP_ATTENTION "osseg.Attention" /* softmax(scale Q K^T) V, tiled */

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
