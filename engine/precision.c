/* Precision planning: the type each node computes in under the two bf16
 * modes, from the op table's precision flags and the graph around the node.
 * fp32 models compute everything in fp32. (int8 will plug in here: a
 * per-node choice the op compilers read from m->act_dt.) */
#include "engine_internal.h"

#include <string.h>

static int has_flag(const struct osseg__node *n, unsigned flag) {
  const struct osseg__op *op = osseg__op_lookup(n->op);
  return op && (op->flags & flag);
}

/* Precision per node under the two bf16 modes (see osseg_engine.h): under
 * OSSEG_PRECISION_BF16_MIXED, CNN nodes whose output has at least the
 * reference output's height / 2^tail run in fp32 (activations and weights),
 * the rest in bf16; OSSEG_PRECISION_BF16 has no such cut-off. Measured on the
 * random-weight UNet++ benchmark models (bench/ENGINE_RESULTS.md): the
 * high-resolution levels are where bf16 rounding turns into flipped mask
 * pixels, but they also hold most of the FLOPs, so the cut-off costs most of
 * the AMX speed-up. The option bf16_tail (octaves) sets the cut-off
 * (-1 = no cut-off, i.e. the same as OSSEG_PRECISION_BF16). */
static int bf16_tail_octaves(const struct osseg_model *m) {
  if (m->opt.precision != OSSEG_PRECISION_BF16_MIXED) return -1;
  return m->opt.bf16_tail;
}

static int is_global_vector(const struct osseg__tensor *t) {
  return t->rank == 4 && t->dims[2] == 1 && t->dims[3] == 1;
}

/* The tensor whose resolution the tail cut-off is measured against: the
 * graph output, or, when that is a Resize of a lower-resolution map (the
 * DeepLabV3+ head predicts at 1/4 and upsamples the logits x4 bilinearly),
 * the Resize's input, since that is where the network's finest features
 * are. Measured on deeplabv3p_r50_512: the 1/16 encoder and ASPP were bf16
 * against the 512-px output (97.9 % mask agreement) but are 1/4 of the
 * 128-px logits, the level that is fp32 in UNet-style models (100.0 %). */
static const struct osseg__tensor *bf16_ref_output(const struct osseg_model *m) {
  const struct osseg__tensor *o = &m->g.tensors[m->g.output];
  for (int k = 0; k < 4 && o->producer >= 0 && o->producer < m->g.nnodes; k++) {
    const struct osseg__node *p = &m->g.nodes[o->producer];
    int resize = has_flag(p, OSSEG__OP_UPSAMPLES); /* (SegFormer's is fused) */
    if (p->dead || !resize || p->nin < 1 || p->in[0] < 0) break;
    const struct osseg__tensor *x = &m->g.tensors[p->in[0]];
    if (x->rank != 4 || o->rank != 4 || x->dims[2] > o->dims[2] || x->dims[3] > o->dims[3]) break;
    o = x;
  }
  return o;
}

/* Is tensor t the graph output or a Resize output between the finest logits
 * map (bf16_ref_output) and it? Under bf16 those stay fp32 (see
 * logits_dt). */
static int after_logits(const struct osseg_model *m, int t) {
  const struct osseg__tensor *ref = bf16_ref_output(m);
  int o = m->g.output;
  for (int k = 0; k < 5 && o >= 0; k++) {
    if (&m->g.tensors[o] == ref) return 0;
    if (o == t) return 1;
    int p = m->g.tensors[o].producer;
    if (p < 0 || p >= m->g.nnodes || m->g.nodes[p].nin < 1) return 0;
    o = m->g.nodes[p].in[0];
  }
  return 0;
}

/* Output type of node n: its compute type, except under bf16 for the conv
 * that produces the logits, which writes fp32 from its bf16 inputs and
 * weights (the same AMX kernel, fp32 accumulators stored without rounding):
 * rounding the logits to bf16's 8 bits would flip the masks of every pixel
 * within 2^-9 of the threshold relative to the largest logit. */
dnnl_data_type_t osseg__out_dt(const struct osseg_model *m, const struct osseg__node *n) {
  /* int8: a concat that only int8 convs read is written in 8 bits
   * (passes/fuse_qdq.c) */
  if (m->opt.precision == OSSEG_PRECISION_INT8 && osseg__attr_find(n, "osseg.q_out_scale"))
    return osseg__attr_int(n, "osseg.q_out_signed", 0) ? dnnl_s8 : dnnl_u8;
  if (m->act_dt != dnnl_bf16 || !has_flag(n, OSSEG__OP_PREC_F32_OUT) || n->nout < 1) return m->act_dt;
  const struct osseg__tensor *ref = bf16_ref_output(m);
  return &m->g.tensors[n->out[0]] == ref && ref->rank == 4 ? dnnl_f32 : m->act_dt;
}

dnnl_data_type_t osseg__node_dt(const struct osseg_model *m, const struct osseg__node *n) {
  if (m->act_dt != dnnl_bf16) return m->act_dt;
  /* the Resize of the (fp32) logits to the output size stays fp32 */
  if (n->nout > 0 && after_logits(m, n->out[0])) return dnnl_f32;
  int cnn = has_flag(n, OSSEG__OP_PREC_SPATIAL);
  /* the image itself stays fp32 (rounding it to bf16 alone flips 0.7 % of
   * the R18 @512 mask), so its consumers (the stem conv: 3 input channels,
   * ~1 % of the FLOPs) run in fp32 */
  for (int i = 0; i < n->nin; i++)
    if (cnn && n->in[i] == m->g.input) return dnnl_f32;
  int tail = bf16_tail_octaves(m);
  const struct osseg__tensor *o = bf16_ref_output(m), *y = &m->g.tensors[n->out[0]];
  /* Global vectors ([N, C, 1, 1]: GlobalAveragePool / ReduceMean and the
   * 1x1 convs, activations and products on them, i.e. the EfficientNet
   * squeeze-excitation path and the DeepLab ASPP pooling branch) stay fp32
   * at any resolution cut-off: they are tiny, and an SE scale rounded to
   * bf16 rescales every pixel of its channel by the same error. Measured on
   * unet_effb0_512 in bf16-mixed with OSSEG_BF16_TAIL=5: mask agreement
   * 98.2 % with the SE path in bf16, 99.999 % with it in fp32. Both bf16
   * modes keep them. */
  int global_op = has_flag(n, OSSEG__OP_PREC_GLOBAL);
  if ((cnn || global_op) && is_global_vector(y) && o->rank == 4 &&
      !is_global_vector(o))
    return dnnl_f32;
  if (!cnn || tail < 0 || tail > 30 || o->rank != 4 || y->rank != 4 || y->data) return dnnl_bf16;
  return y->dims[2] << tail >= o->dims[2] && y->dims[3] << tail >= o->dims[3] ? dnnl_f32 : dnnl_bf16;
}

/* Under bf16, runtime inputs of node ni stored in another type than dt
 * (fp32 image, fp32 levels of bf16-mixed, fp32 global vectors) are
 * converted by a reorder into a temporary that the node reads instead. */
int osseg__convert_inputs(struct osseg_model *m, int ni, dnnl_data_type_t dt,
                          struct osseg_diag *diag) {
  struct osseg__node *n = &m->g.nodes[ni];
  for (int i = 0; i < n->nin && m->act_dt == dnnl_bf16; i++) {
    int t = n->in[i];
    if (t < 0 || m->g.tensors[t].data || m->md[t].ndims == 0) continue;
    dnnl_data_type_t tdt = m->md[t].data_type;
    if ((tdt != dnnl_f32 && tdt != dnnl_bf16) || tdt == dt) continue;
    /* a bf16 map times an fp32 per-channel vector (SE scale): oneDNN's
     * binary takes an fp32 src1 with a bf16 src0, so the scale keeps its
     * precision and costs no conversion */
    if (dt == dnnl_bf16 && tdt == dnnl_f32 && n->nin == 2 && is_global_vector(&m->g.tensors[t]) &&
        !is_global_vector(&m->g.tensors[n->out[0]]) && has_flag(n, OSSEG__OP_PREC_F32_VECTOR))
      continue;
    int c = osseg__add_temp(m, t, diag);
    if (c < 0) return c;
    n = &m->g.nodes[ni];
    int err = osseg__tensor_md(m, c, dt, NULL);
    if (err) return osseg__fail(diag, err, "node '%s': layout", n->name);
    dnnl_memory_desc_t smd = m->md[t], dmd = m->md[c];
    if ((err = osseg__reorder_step(m, ni, t, &smd, c, &dmd, diag))) return err;
    m->g.tensors[c].uses = 1;
    for (int j = i; j < n->nin; j++)
      if (n->in[j] == t) n->in[j] = c;
  }
  return 0;
}
