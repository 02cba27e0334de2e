/* Compilation: one or more steps per live node, oneDNN primitives created
 * once; then the arena plan and binding of memories to arena offsets. */
#include "engine_internal.h"

#include <stdlib.h>
#include <string.h>

int osseg__dnnl_fail(struct osseg_diag *diag, dnnl_status_t st, const char *what,
                     const struct osseg__node *n) {
  if (n)
    return osseg__fail(diag, st == dnnl_out_of_memory ? OSSEG_ENOMEM : OSSEG_EBACKEND,
                       "node '%s' (%s): oneDNN %s failed (status %d)", n->name, n->op, what,
                       (int)st);
  return osseg__fail(diag, st == dnnl_out_of_memory ? OSSEG_ENOMEM : OSSEG_EBACKEND,
                     "oneDNN %s failed (status %d)", what, (int)st);
}

void *osseg__model_alloc(struct osseg_model *m, size_t bytes) {
  if (m->nowned == m->capowned) {
    int cap = m->capowned ? m->capowned * 2 : 64;
    dnnl_memory_t *om = osseg__realloc(m->owned_mem, (size_t)cap * sizeof *om);
    if (!om) return NULL;
    m->owned_mem = om;
    void **ob = osseg__realloc(m->owned_buf, (size_t)cap * sizeof *ob);
    if (!ob) return NULL;
    m->owned_buf = ob;
    m->capowned = cap;
  }
  void *p = osseg__aligned_alloc(64, bytes ? bytes : 1);
  if (!p) return NULL;
  m->owned_buf[m->nowned] = p;
  m->owned_mem[m->nowned] = NULL;
  m->nowned++;
  return p;
}

struct osseg__step *osseg__add_step(struct osseg_model *m, int kind, int node) {
  if (m->nsteps == m->capsteps) {
    int cap = m->capsteps ? m->capsteps * 2 : 64;
    struct osseg__step *s = osseg__realloc(m->steps, (size_t)cap * sizeof *s);
    if (!s) return NULL;
    m->steps = s;
    m->capsteps = cap;
  }
  struct osseg__step *s = &m->steps[m->nsteps++];
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->node = node;
  s->in = s->out = -1;
  return s;
}

void osseg__set_dims(dnnl_dims_t d, const int64_t *src, int rank) {
  for (int i = 0; i < rank; i++) d[i] = src[i];
}

static void add_use(struct osseg__step *s, int t) {
  if (t < 0) return;
  for (int i = 0; i < s->nuses; i++)
    if (s->uses[i] == t) return;
  if (s->nuses < OSSEG__MAX_ARGS) s->uses[s->nuses++] = t;
}

int osseg__tensor_md(struct osseg_model *m, int t, dnnl_data_type_t dt, dnnl_memory_desc_t *md) {
  struct osseg__tensor *x = &m->g.tensors[t];
  if (m->md[t].ndims == 0) {
    dnnl_dims_t d;
    int rank = x->rank;
    if (rank == 0) {
      d[0] = 1;
      rank = 1;
    } else {
      osseg__set_dims(d, x->dims, rank);
    }
    static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                              dnnl_abcde, dnnl_abcdef};
    if (rank > 6) return OSSEG_EUNSUPPORTED;
    dnnl_format_tag_t tag = rank == 4 ? dnnl_acdb : plain[rank];
    if (dnnl_memory_desc_init_by_tag(&m->md[t], rank, d, dt, tag) != dnnl_success)
      return OSSEG_EBACKEND;
  }
  if (md) *md = m->md[t];
  return 0;
}

void osseg__step_arg_tensor(struct osseg_model *m, struct osseg__step *s, int kind, int tensor,
                            const dnnl_memory_desc_t *md) {
  int i = s->nargs++;
  s->arg_kind[i] = kind;
  s->arg_tensor[i] = tensor;
  s->arg_mem[i] = NULL;
  if (md) s->arg_md[i] = *md;
  else if (tensor >= 0) s->arg_md[i] = m->md[tensor];
  add_use(s, tensor);
}

void osseg__step_arg_mem(struct osseg__step *s, int kind, dnnl_memory_t mem) {
  int i = s->nargs++;
  s->arg_kind[i] = kind;
  s->arg_tensor[i] = -1;
  s->arg_mem[i] = mem;
}

int osseg__const_memory(struct osseg_model *m, const dnnl_memory_desc_t *dst_md,
                        const dnnl_memory_desc_t *src_md, const void *src, dnnl_memory_t *out,
                        struct osseg_diag *diag) {
  size_t bytes = dnnl_memory_desc_get_size(dst_md);
  void *buf = osseg__model_alloc(m, bytes);
  if (!buf) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory for constants");
  m->weight_bytes += bytes;
  dnnl_memory_t dst = NULL, srcm = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t r = NULL;
  dnnl_status_t st = dnnl_memory_create(&dst, dst_md, m->eng, buf);
  if (st == dnnl_success) m->owned_mem[m->nowned - 1] = dst;
  if (st == dnnl_success && dnnl_memory_desc_equal(dst_md, src_md)) {
    memcpy(buf, src, bytes); /* same layout and type: no reorder primitive */
    *out = dst;
    return 0;
  }
  if (st == dnnl_success) st = dnnl_memory_create(&srcm, src_md, m->eng, (void *)src);
  if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&pd, src_md, m->eng, dst_md, m->eng, NULL);
  if (st == dnnl_success) st = dnnl_primitive_create(&r, pd);
  if (st == dnnl_success) {
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_SRC, srcm}, {DNNL_ARG_DST, dst}};
    st = dnnl_primitive_execute(r, m->stream, 2, a);
  }
  if (st == dnnl_success) st = dnnl_stream_wait(m->stream);
  if (r) dnnl_primitive_destroy(r);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (srcm) dnnl_memory_destroy(srcm);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "constant reorder", NULL);
  *out = dst;
  return 0;
}

int osseg__finish_prim(struct osseg_model *m, struct osseg__step *s, dnnl_primitive_desc_t pd,
                       const struct osseg__node *n, struct osseg_diag *diag) {
  const char *impl = NULL;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  dnnl_primitive_kind_t kind = dnnl_undefined_primitive;
  dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &kind);
  const int conv = kind == dnnl_convolution || kind == dnnl_deconvolution;
  /* warnings: reference code anywhere, and under bf16 a convolution (not
   * the reorders around it) that does not run on the CPU's best native
   * bf16 unit (AMX where there is AMX, else AVX512_BF16; every one where
   * bf16 is emulated) */
  const char *bf16_tag = conv && m->act_dt == dnnl_bf16 ? osseg__bf16_kernel_tag() : NULL;
  if (impl && (strncmp(impl, "ref", 3) == 0 || strstr(impl, ":ref") ||
               (conv && m->act_dt == dnnl_bf16 && !(bf16_tag && strstr(impl, bf16_tag)))))
    osseg__log(&m->opt.log, OSSEG_LOG_WARN, "node '%s' (%s) runs on oneDNN '%s'", n ? n->name : "-",
               n ? n->op : "reorder", impl);
  if (impl && strncmp(impl, "ref", 3) == 0) m->warned_ref++;
  /* reference code anywhere, or a convolution as im2col + gemm (for matmul
   * the gemm implementations are the fast ones) */
  if (impl && (!strncmp(impl, "ref", 3) || strstr(impl, ":ref") || (conv && strstr(impl, "gemm"))))
    m->slow_steps++;
  const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  if (smd) {
    s->scratch_md = *smd;
    size_t sz = dnnl_memory_desc_get_size(smd);
    if (sz > m->scratch_bytes) m->scratch_bytes = sz;
  }
  dnnl_status_t st = dnnl_primitive_create(&s->prim, pd);
  dnnl_primitive_desc_destroy(pd);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "primitive creation", n);
  return 0;
}

/* Reorder step between two views (used for I/O and layout changes). */
static int reorder_step(struct osseg_model *m, int node, int src_t, const dnnl_memory_desc_t *smd,
                        int dst_t, const dnnl_memory_desc_t *dmd, struct osseg_diag *diag) {
  dnnl_primitive_attr_t attr = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_primitive_attr_create(&attr);
  if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&pd, smd, m->eng, dmd, m->eng, attr);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "reorder", node >= 0 ? &m->g.nodes[node] : NULL);
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_PRIM, node);
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC, src_t, smd);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, dst_t, dmd);
  return osseg__finish_prim(m, s, pd, node >= 0 ? &m->g.nodes[node] : NULL, diag);
}

int osseg__reorder_step(struct osseg_model *m, int node, int src_t, const dnnl_memory_desc_t *smd,
                        int dst_t, const dnnl_memory_desc_t *dmd, struct osseg_diag *diag);
int osseg__reorder_step(struct osseg_model *m, int node, int src_t, const dnnl_memory_desc_t *smd,
                        int dst_t, const dnnl_memory_desc_t *dmd, struct osseg_diag *diag) {
  return reorder_step(m, node, src_t, smd, dst_t, dmd, diag);
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
    int resize = !strcmp(p->op, "Resize") || !strcmp(p->op, "Upsample") ||
                 !strcmp(p->op, "osseg.ResizePlanar"); /* (SegFormer's, fused) */
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
static dnnl_data_type_t out_dt(const struct osseg_model *m, const struct osseg__node *n) {
  if (m->act_dt != dnnl_bf16 || strcmp(n->op, "Conv") || n->nout < 1) return m->act_dt;
  const struct osseg__tensor *ref = bf16_ref_output(m);
  return &m->g.tensors[n->out[0]] == ref && ref->rank == 4 ? dnnl_f32 : m->act_dt;
}

static dnnl_data_type_t node_dt(const struct osseg_model *m, const struct osseg__node *n) {
  if (m->act_dt != dnnl_bf16) return m->act_dt;
  /* the Resize of the (fp32) logits to the output size stays fp32 */
  if (n->nout > 0 && after_logits(m, n->out[0])) return dnnl_f32;
  static const char *const cnn_ops[] = {"Conv", "osseg.UpConv2x", "ConvTranspose", "Resize",
                                        "Upsample", "Concat", "Relu", "Sigmoid", "Add", "Mul",
                                        "BatchNormalization", "Pad", "Identity", "Dropout",
                                        "MaxPool", "AveragePool"};
  int cnn = 0;
  for (size_t i = 0; i < sizeof cnn_ops / sizeof cnn_ops[0]; i++) cnn |= !strcmp(n->op, cnn_ops[i]);
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
  int global_op = !strcmp(n->op, "GlobalAveragePool") || !strcmp(n->op, "GlobalMaxPool") ||
                  !strcmp(n->op, "ReduceMean");
  if ((cnn || global_op) && is_global_vector(y) && o->rank == 4 &&
      !is_global_vector(o))
    return dnnl_f32;
  if (!cnn || tail < 0 || tail > 30 || o->rank != 4 || y->rank != 4 || y->data) return dnnl_bf16;
  return y->dims[2] << tail >= o->dims[2] && y->dims[3] << tail >= o->dims[3] ? dnnl_f32 : dnnl_bf16;
}

static int compile_node_dt(struct osseg_model *m, int ni, struct osseg_diag *diag);
static int compile_node(struct osseg_model *m, int ni, struct osseg_diag *diag) {
  /* Every op compiler builds its outputs, weights and temporaries in
   * m->act_dt: switch it for this node; runtime inputs stored in the other
   * type are converted first by a reorder into a temporary. */
  struct osseg__node *n = &m->g.nodes[ni];
  dnnl_data_type_t saved = m->act_dt, dt = node_dt(m, n);
  for (int i = 0; i < n->nin && saved == dnnl_bf16; i++) {
    int t = n->in[i];
    if (t < 0 || m->g.tensors[t].data || m->md[t].ndims == 0) continue;
    dnnl_data_type_t tdt = m->md[t].data_type;
    if ((tdt != dnnl_f32 && tdt != dnnl_bf16) || tdt == dt) continue;
    /* a bf16 map times an fp32 per-channel vector (SE scale): oneDNN's
     * binary takes an fp32 src1 with a bf16 src0, so the scale keeps its
     * precision and costs no conversion */
    if (dt == dnnl_bf16 && tdt == dnnl_f32 && n->nin == 2 && is_global_vector(&m->g.tensors[t]) &&
        !is_global_vector(&m->g.tensors[n->out[0]]) &&
        (!strcmp(n->op, "Mul") || !strcmp(n->op, "Add")))
      continue;
    int c = osseg__add_temp(m, t, diag);
    if (c < 0) return c;
    n = &m->g.nodes[ni];
    int err = osseg__tensor_md(m, c, dt, NULL);
    if (err) return osseg__fail(diag, err, "node '%s': layout", n->name);
    dnnl_memory_desc_t smd = m->md[t], dmd = m->md[c];
    if ((err = reorder_step(m, ni, t, &smd, c, &dmd, diag))) return err;
    m->g.tensors[c].uses = 1;
    for (int j = i; j < n->nin; j++)
      if (n->in[j] == t) n->in[j] = c;
  }
  m->act_dt = dt;
  int err = compile_node_dt(m, ni, diag);
  m->act_dt = saved;
  return err;
}

static int compile_node_dt(struct osseg_model *m, int ni, struct osseg_diag *diag) {
  struct osseg__node *n = &m->g.nodes[ni];
  const char *op = n->op;
  for (int i = 0; i < n->nout; i++) {
    if (i > 0 && m->g.tensors[n->out[i]].uses == 0) continue;
    if (i > 0 && !strcmp(op, "Split")) continue; /* outputs laid out by compile_split */
    if (i > 0) return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (%s): second output used",
                                  n->name, op);
    int err = osseg__tensor_md(m, n->out[i], i == 0 ? out_dt(m, n) : m->act_dt, NULL);
    if (err) return osseg__fail(diag, err, "node '%s' (%s): output layout", n->name, op);
  }
  for (int i = 0; i < n->nin; i++) {
    int t = n->in[i];
    if (t >= 0 && !m->g.tensors[t].data && m->md[t].ndims == 0)
      return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': input '%s' not computed", n->name,
                         m->g.tensors[t].name);
  }
  if (!strcmp(op, "Conv") || !strcmp(op, "BatchNormalization")) return osseg__compile_conv(m, n, diag);
  if (!strcmp(op, "ConvTranspose")) return osseg__compile_deconv(m, n, diag);
  if (!strcmp(op, "osseg.UpConv2x")) return osseg__compile_upconv(m, n, diag);
  if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool") || !strcmp(op, "GlobalAveragePool") ||
      !strcmp(op, "GlobalMaxPool"))
    return osseg__compile_pool(m, n, diag);
  if (!strcmp(op, "ReduceMean")) return osseg__compile_reduce(m, n, diag);
  if (!strcmp(op, "Relu") || !strcmp(op, "LeakyRelu") || !strcmp(op, "Sigmoid") ||
      !strcmp(op, "HardSigmoid") || !strcmp(op, "HardSwish") || !strcmp(op, "Clip") ||
      !strcmp(op, "Identity") || !strcmp(op, "Dropout"))
    return osseg__compile_eltwise(m, n, diag);
  if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div"))
    return osseg__compile_binary(m, n, diag);
  if (!strcmp(op, "Concat")) return osseg__compile_concat(m, n, diag);
  if (!strcmp(op, "Resize") || !strcmp(op, "Upsample")) return osseg__compile_resize(m, n, diag);
  if (!strcmp(op, "Pad")) return osseg__compile_pad(m, n, diag);
  if (!strcmp(op, "Reshape") || !strcmp(op, "Flatten") || !strcmp(op, "Transpose") ||
      !strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze"))
    return osseg__compile_reshape(m, n, diag);
  int err = osseg__compile_transformer(m, n, diag);
  if (err != 1) return err;
  return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s': op %s (opset %d) has no kernel",
                     n->name, op, m->g.opset);
}

int osseg__compile(struct osseg_model *m, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  dnnl_status_t st = dnnl_engine_create(&m->eng, dnnl_cpu, 0);
  if (st == dnnl_success) st = dnnl_stream_create(&m->stream, m->eng, dnnl_stream_default_flags);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "engine creation", NULL);
  m->act_dt = m->opt.precision != OSSEG_PRECISION_FP32 ? dnnl_bf16 : dnnl_f32;
  /* Temporaries added while compiling a node: at most one conversion per
   * input (compile_node) plus one per input and two more in the op itself
   * (concat, conv/upconv, reshape, resize, attention). Reserved up front. */
  int64_t budget = 16;
  for (int ni = 0; ni < g->nnodes; ni++)
    if (!g->nodes[ni].dead) budget += 2 * (int64_t)g->nodes[ni].nin + 4;
  if (budget > (1 << 24) - (int64_t)g->ntensors)
    return osseg__fail(diag, OSSEG_ELIMIT, "graph too large (%d nodes)", g->nnodes);
  int err = osseg__graph_reserve_tensors(g, (int)budget);
  if (err) return osseg__fail(diag, err, "out of memory");
  m->tensor_cap = g->captensors;
  m->md = osseg__calloc((size_t)m->tensor_cap, sizeof *m->md);
  m->aliased = osseg__calloc((size_t)m->tensor_cap, 1);
  if (!m->md || !m->aliased) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  for (int t = 0; t < g->ntensors; t++) g->tensors[t].storage = t;
  /* Input: caller's NCHW float32 -> internal layout. */
  int in = g->input;
  err = osseg__tensor_md(m, in, dnnl_f32, NULL); /* fp32 in every precision (node_dt) */
  if (err) return osseg__fail(diag, err, "input layout");
  dnnl_memory_desc_t umd;
  dnnl_dims_t d;
  osseg__set_dims(d, g->tensors[in].dims, 4);
  dnnl_memory_desc_init_by_tag(&umd, 4, d, dnnl_f32, dnnl_abcd);
  if ((err = reorder_step(m, -1, -2, &umd, in, &m->md[in], diag))) return err;
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead) continue;
    if ((err = compile_node(m, ni, diag))) return err;
  }
  int out = g->output;
  if (m->md[out].ndims == 0) return osseg__fail(diag, OSSEG_EINTERNAL, "output not computed");
  const struct osseg__tensor *ot = &g->tensors[out];
  dnnl_memory_desc_t omd;
  static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                            dnnl_abcde, dnnl_abcdef};
  if (ot->rank > 6) return osseg__fail(diag, OSSEG_EUNSUPPORTED, "output rank %d", ot->rank);
  dnnl_dims_t od;
  osseg__set_dims(od, ot->dims, ot->rank ? ot->rank : 1);
  if (!ot->rank) od[0] = 1;
  dnnl_memory_desc_init_by_tag(&omd, ot->rank ? ot->rank : 1, od, dnnl_f32, plain[ot->rank]);
  if ((err = reorder_step(m, -1, out, &m->md[out], -3, &omd, diag))) return err;
  return 0;
}

int osseg__add_temp(struct osseg_model *m, int like, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  /* never grow: compile steps may hold pointers into g->tensors / m->md */
  if (g->ntensors >= m->tensor_cap)
    return osseg__fail(diag, OSSEG_EINTERNAL, "temporary tensor budget of %d exceeded", m->tensor_cap);
  int t = osseg__graph_add_tensor(g, NULL, 0);
  if (t < 0) return osseg__fail(diag, t, "out of memory");
  memset(&m->md[t], 0, sizeof m->md[t]);
  m->aliased[t] = 0;
  struct osseg__tensor *x = &g->tensors[t];
  x->dtype = OSSEG__DT_FLOAT;
  x->storage = t;
  if (like >= 0) {
    x->rank = g->tensors[like].rank;
    memcpy(x->dims, g->tensors[like].dims, sizeof x->dims);
  }
  return t;
}

int osseg__md_dense_nhwc(const dnnl_memory_desc_t *md) {
  if (md->ndims != 4 || md->format_kind != dnnl_blocked || md->format_desc.blocking.inner_nblks ||
      md->offset0)
    return 0;
  const dnnl_dim_t *st = md->format_desc.blocking.strides, *d = md->dims;
  return st[1] == 1 && st[3] == d[1] && st[2] == d[3] * d[1] &&
         (d[0] == 1 || st[0] == d[2] * d[3] * d[1]);
}

int osseg__root(const struct osseg_model *m, int t) {
  while (m->g.tensors[t].storage != t) t = m->g.tensors[t].storage;
  return t;
}

int osseg__can_inplace(const struct osseg_model *m, int t) {
  const struct osseg__graph *g = &m->g;
  if (t < 0 || g->tensors[t].data || t == g->input || g->tensors[t].uses != 1) return 0;
  int r = osseg__root(m, t);
  return r == t && !m->aliased[t];
}

void osseg__alias(struct osseg_model *m, int t, int onto) {
  int r = osseg__root(m, onto);
  m->g.tensors[t].storage = r;
  m->aliased[r] = 1;
}

void *osseg__tensor_ptr(const struct osseg_model *m, int t) {
  int r = osseg__root(m, t);
  return (char *)m->arena + m->g.tensors[r].offset;
}

int osseg__make_attr(struct osseg_model *m, const struct osseg__node *n, dnnl_primitive_attr_t *attr) {
  return osseg__make_attr_sum(m, n, NULL, attr, NULL);
}

int osseg__make_attr_sum(struct osseg_model *m, const struct osseg__node *n,
                         const dnnl_memory_desc_t *sum_md, dnnl_primitive_attr_t *attr,
                         int *sum_idx) {
  (void)m;
  if (sum_idx) *sum_idx = -1;
  dnnl_status_t st = dnnl_primitive_attr_create(attr);
  if (st != dnnl_success) return OSSEG_EBACKEND;
  st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
  if (st == dnnl_success && n && n->npost) {
    dnnl_post_ops_t po;
    st = dnnl_post_ops_create(&po);
    for (int i = 0; st == dnnl_success && i < n->npost; i++) {
      const struct osseg__post *p = &n->post[i];
      float lo = p->alpha < -3e38f ? -3e38f : p->alpha, hi = p->beta > 3e38f ? 3e38f : p->beta;
      switch (p->kind) {
        case OSSEG__POST_RELU: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, p->alpha, 0); break;
        case OSSEG__POST_SIGMOID: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_logistic, 0, 0); break;
        case OSSEG__POST_SWISH: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_swish, 1.f, 0); break;
        case OSSEG__POST_CLIP: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_clip, lo, hi); break;
        case OSSEG__POST_LINEAR: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_linear, p->alpha, p->beta); break;
        case OSSEG__POST_HARDSWISH: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_hardswish, 0, 0); break;
        case OSSEG__POST_SUM:
          if (!sum_md) {
            st = dnnl_post_ops_append_sum(po, 1.f);
          } else { /* residual as a binary add reading the addend: no copy into dst */
            st = dnnl_post_ops_append_binary(po, dnnl_binary_add, sum_md);
            if (sum_idx) *sum_idx = i;
          }
          break;
        case OSSEG__POST_GELU_ERF: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_gelu_erf, 0, 0); break;
        default: st = dnnl_invalid_arguments; break;
      }
    }
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, po);
    dnnl_post_ops_destroy(po);
  }
  if (st != dnnl_success) {
    dnnl_primitive_attr_destroy(*attr);
    *attr = NULL;
    return OSSEG_EBACKEND;
  }
  return 0;
}
