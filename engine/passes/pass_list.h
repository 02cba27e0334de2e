/* Entry points of the graph passes, one file each; passes.c runs them in
 * order. Each returns 0 or an error (after osseg__fail). */
#ifndef OSSEG_ENGINE_PASSES_PASS_LIST_H
#define OSSEG_ENGINE_PASSES_PASS_LIST_H

#include "../ir.h"

/* QDQ models (fuse_qdq.c): Q -> DQ pairs on activations -> osseg.FakeQuant
 * (keep_min: see commute_repeated_fake_quant); under int8, convs take over
 * their input's quantization. */
int osseg__pair_qdq(struct osseg__graph *g, int64_t keep_min, struct osseg_diag *diag);
int osseg__quantize_convs(struct osseg__graph *g, int upconv_min, struct osseg_diag *diag);
/* Transformer exports (SegFormer / Mix Transformer). */
int osseg__fuse_layernorms(struct osseg__graph *g, struct osseg_diag *diag);
int osseg__fuse_gelus(struct osseg__graph *g, struct osseg_diag *diag);
int osseg__fuse_attentions(struct osseg__graph *g, struct osseg_diag *diag);
int osseg__collapse_views(struct osseg__graph *g, struct osseg_diag *diag);
int osseg__fuse_matmul_epilogues(struct osseg__graph *g, struct osseg_diag *diag);
void osseg__move_activations_before_views(struct osseg__graph *g);
int osseg__fuse_segformer_decoders(struct osseg__graph *g, struct osseg_diag *diag);
int osseg__resize_output_planar(struct osseg__graph *g, struct osseg_diag *diag);

/* CNNs (and what the transformer passes leave of a transformer graph). */
void osseg__drop_identity(struct osseg__graph *g);
int osseg__fold_pads(struct osseg__graph *g, struct osseg_diag *diag);
/* Folds BatchNormalization bn into conv's weights and bias (new constants). */
int osseg__fold_batchnorm(struct osseg__graph *g, struct osseg__node *conv,
                          struct osseg__node *bn, struct osseg_diag *diag);
int osseg__fuse_conv_epilogues(struct osseg__graph *g, struct osseg_diag *diag);
int osseg__fuse_upconvs(struct osseg__graph *g, struct osseg_diag *diag);
int osseg__fuse_int8_upconvs(struct osseg__graph *g, int min_cu, struct osseg_diag *diag);

#endif
