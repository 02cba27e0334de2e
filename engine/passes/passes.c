/* The order of the graph passes. First, for QDQ models, right after shape
 * inference: quantize -> dequantize pairs on activations -> osseg.FakeQuant
 * (fuse_qdq.c). Then transformer exports (SegFormer / Mix Transformer):
 *
 *  1. decomposed LayerNorm -> one LayerNormalization node (fuse_layernorm.c);
 *  2. GELU from its Erf form -> one Gelu node (fuse_gelu.c);
 *  3. attention -> osseg.Attention on strided views (fuse_attention.c);
 *  4. layout-only chains that keep the bytes -> osseg.View (collapse_views.c);
 *  5. MatMul/Gemm epilogues: bias Add, residual Add, activation
 *     (fuse_matmul_epilogue.c);
 *  6. an activation behind an osseg.View of a Conv output moves in front of
 *     the view, so step 10 can make it the conv's post-op
 *     (activation_before_view.c);
 *  7. the All-MLP decoder -> osseg.ResizeSum, the final bilinear upsampling
 *     -> osseg.ResizePlanar (fuse_segformer_decoder.c);
 * with dead-node elimination between the steps. Then the CNN fusions, on
 * every graph:
 *
 *  8. Identity / Dropout removal (drop_identity.c);
 *  9. zero Pads folded into the following Conv (fold_pad.c);
 * 10. conv epilogues: BatchNormalization, activations, residual Add,
 *     x * sigmoid(x) (fuse_conv_epilogue.c, fold_batchnorm.c);
 * 11. with upconv: conv of a nearest-2x upsample [+ concat] ->
 *     osseg.UpConv2x (fuse_upconv.c);
 * 12. with int8: convs of quantized inputs and weights take over their
 *     input's quantization and run in int8 (fuse_qdq.c); with upconv, those
 *     of a nearest-2x upsample of at least int8_upconv_min channels [+
 *     concat] become int8 osseg.UpConv2x (fuse_upconv.c). */
#include "passes.h"

#include <string.h>

#include "graph_edit.h"
#include "pass_list.h"

static int transformer_passes(struct osseg__graph *g, struct osseg_diag *diag) {
  int any = 0, err;
  for (int ni = 0; ni < g->nnodes; ni++) {
    const char *op = g->nodes[ni].op;
    if (!g->nodes[ni].dead && (!strcmp(op, "MatMul") || !strcmp(op, "Gemm") || !strcmp(op, "Softmax") ||
                               !strcmp(op, "LayerNormalization") || !strcmp(op, "Erf") ||
                               !strcmp(op, "Pow") || !strcmp(op, "Gelu")))
      any = 1;
  }
  if (!any) return 0; /* CNN graphs: nothing to do, keep them untouched */
  osseg__count_uses(g);
  if ((err = osseg__fuse_layernorms(g, diag))) return err;
  osseg__count_uses(g);
  if ((err = osseg__fuse_gelus(g, diag))) return err;
  osseg__eliminate_dead(g);
  if ((err = osseg__fuse_attentions(g, diag))) return err;
  osseg__eliminate_dead(g);
  if ((err = osseg__collapse_views(g, diag))) return err;
  osseg__eliminate_dead(g);
  if ((err = osseg__fuse_matmul_epilogues(g, diag))) return err;
  osseg__eliminate_dead(g);
  osseg__move_activations_before_views(g);
  osseg__eliminate_dead(g);
  if ((err = osseg__fuse_segformer_decoders(g, diag))) return err;
  if ((err = osseg__resize_output_planar(g, diag))) return err;
  osseg__eliminate_dead(g);
  return 0;
}

static int cnn_passes(struct osseg__graph *g, int upconv, struct osseg_diag *diag) {
  osseg__drop_identity(g);
  osseg__count_uses(g);
  int err = osseg__fold_pads(g, diag);
  if (err) return err;
  osseg__count_uses(g);
  err = osseg__fuse_conv_epilogues(g, diag);
  /* no_upconv keeps Resize + Concat + Conv (A/B benchmarks, tests) */
  if (!err && upconv) {
    osseg__count_uses(g); /* after the epilogue fusions */
    err = osseg__fuse_upconvs(g, diag);
  }
  osseg__count_uses(g);
  return err;
}

int osseg__passes_run(struct osseg__graph *g, int upconv, int int8, int int8_upconv_min,
                      struct osseg_diag *diag) {
  /* (a resize read only by concats keeps its input's quantization where an
   * upconv can read it: always in float, from the threshold in int8) */
  int err = osseg__pair_qdq(g, !int8 ? 0 : upconv ? int8_upconv_min : -1, diag);
  if (!err) err = transformer_passes(g, diag);
  if (!err) err = cnn_passes(g, upconv, diag);
  if (!err && int8) err = osseg__quantize_convs(g, upconv ? int8_upconv_min : -1, diag);
  if (!err) osseg__count_uses(g);
  return err;
}
