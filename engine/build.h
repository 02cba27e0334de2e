/* The build API: what an op file (engine/ops/) uses to turn its nodes into
 * executable steps, and the op table entry it fills in for each of its ops.
 *
 * An op file includes this header and ir.h, nothing else of the engine: it
 * never calls another op file or the driver (compile.c), and the driver
 * reaches it only through the op table (op_table.c). */
#ifndef OSSEG_ENGINE_BUILD_H
#define OSSEG_ENGINE_BUILD_H

#include <stdatomic.h>

#include <oneapi/dnnl/dnnl.h>

#include "ir.h"
#include "osseg_engine.h"

struct osseg_model;

/* ONNX opsets the loader accepts (default domain). */
#define OSSEG__OPSET_MIN 7
#define OSSEG__OPSET_MAX 18

/* ---- The op table's entry. */

enum osseg__op_flags {
  /* Made by a pass (domain "osseg"); never accepted from a file. */
  OSSEG__OP_INTERNAL = 1u << 0,
  /* Its value never depends on its input's data (Shape of a static shape):
   * always folded. */
  OSSEG__OP_FOLD_ALWAYS = 1u << 1,
  /* Accepted on runtime data although it has no kernel: a pass rewrites the
   * patterns it occurs in (Erf inside GELU); alone it fails to compile. */
  OSSEG__OP_IN_PATTERN = 1u << 2,
  /* Read by the loader as a constant tensor (Constant); never a node. */
  OSSEG__OP_LOADER = 1u << 9,
  /* Its runtime output (QuantizeLinear) or input (DequantizeLinear) may be
   * 8-bit: passes/fuse_qdq.c pairs them into float -> float nodes. */
  OSSEG__OP_QUANT_IO = 1u << 10,
  /* compile() lays out every output itself (Split). */
  OSSEG__OP_ALL_OUTPUTS = 1u << 3,
  /* Precision policy (precision.c). A spatial CNN op: under bf16 it runs in
   * fp32 on the image itself and, under bf16-mixed, at the resolutions of
   * the cut-off. */
  OSSEG__OP_PREC_SPATIAL = 1u << 4,
  /* Makes per-channel global vectors ([N, C, 1, 1]; GlobalAveragePool,
   * ReduceMean) kept in fp32 in both bf16 modes. */
  OSSEG__OP_PREC_GLOBAL = 1u << 5,
  /* Under bf16 takes an fp32 per-channel vector as its second operand
   * beside a bf16 map, without converting it (the SE scale). */
  OSSEG__OP_PREC_F32_VECTOR = 1u << 6,
  /* Can write fp32 from bf16 inputs and weights: the conv that produces the
   * logits does, so they are never rounded to bf16. */
  OSSEG__OP_PREC_F32_OUT = 1u << 7,
  /* Upsamples the logits to the output size (a Resize at the end of the
   * graph): the precision policy measures resolution before it. */
  OSSEG__OP_UPSAMPLES = 1u << 8,
};

/* Precisions an op runs in (a bit set; osseg_engine.h's osseg_op_info). */
#define OSSEG__PREC_FP32 OSSEG_OP_PREC_FP32
#define OSSEG__PREC_BF16 OSSEG_OP_PREC_BF16
#define OSSEG__PREC_RUNTIME (OSSEG__PREC_FP32 | OSSEG__PREC_BF16)

/* Everything the engine knows about one op. Loading, the allow-list check,
 * shape inference, folding and compilation all go through it. */
struct osseg__op {
  const char *name;   /* ONNX op type, or "osseg.X" for an internal op */
  int since, until;   /* opsets of the default domain it is supported at */
  unsigned flags;     /* enum osseg__op_flags */
  unsigned precisions; /* OSSEG__PREC_* it runs in; 0 = constants only */
  /* Sets the output tensors' dtype, rank and dims from the inputs'. */
  int (*infer)(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag);
  /* Computes the outputs (allocated, zeroed) from constant inputs; NULL:
   * the op is never folded. */
  int (*fold)(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag);
  /* Appends the node's steps; NULL: constants only (or IN_PATTERN). Runs
   * with m's activation type set to the node's precision. */
  int (*compile)(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
};

/* ---- Steps and the model being built. */

/* One executable step. Most steps are oneDNN primitives; a few ops are own
 * loops (resize, pad). */
enum osseg__step_kind {
  OSSEG__STEP_PRIM,
  OSSEG__STEP_GATHER2D, /* nearest resize, pad */
  OSSEG__STEP_LINEAR2D, /* bilinear resize */
  OSSEG__STEP_CONCAT_C, /* channel concat of nhwc tensors, own loop */
  OSSEG__STEP_CUSTOM,   /* own kernel: step->run (transformer ops) */
  OSSEG__STEP_UPCONV_SCATTER, /* conv of a nearest-2x upsample: interleave the
                                 four phase convs (conv.c) */
};

/* Own-loop kernels on nhwc tensors (ops/resize_pad.c): out[y][x][:] = in[ry[y]][rx[x]][:],
 * or `value` where ry or rx is -1 (nearest resize, pad); bilinear resize. */
struct osseg__resize {
  int mode_linear;
  float value;
  int64_t out_pix;  /* elements between output pixels (>= c: writing into a
                       channel slice of a concat output) */
  int64_t out_coff; /* first output channel */
  int64_t ih, iw, oh, ow, c;
  int32_t *y0, *y1, *x0, *x1; /* source rows/cols per output row/col */
  float *wy, *wx;             /* weight of y1/x1 (linear) */
};

/* Requantization of 8-bit values from grid (si, zi, signed sgi) onto grid
 * (so, zo) with output range [lo, hi], as a QDQ file computes it:
 * round((q - zi) si / so) + zo, saturated (requant.c). */
struct osseg__requant {
  float si, zi, so, zo, lo, hi;
  int sgi;
};

struct osseg__step {
  int kind;
  int node; /* -1 for synthetic steps */
  dnnl_primitive_t prim;
  int nargs;
  int arg_kind[OSSEG__MAX_ARGS];
  int arg_tensor[OSSEG__MAX_ARGS];         /* runtime tensor, or -1 */
  dnnl_memory_t arg_mem[OSSEG__MAX_ARGS];  /* constant memory (model-owned) or,
                                              for runtime args, created at bind */
  dnnl_memory_desc_t arg_md[OSSEG__MAX_ARGS]; /* view of the runtime tensor */
  size_t arg_off[OSSEG__MAX_ARGS];         /* bytes from the tensor's start to
                                              the view (row bands, conv.c) */
  dnnl_exec_arg_t args[OSSEG__MAX_ARGS];   /* bound after planning */
  dnnl_memory_desc_t scratch_md;
  int in, out; /* tensors of own-loop steps */
  struct osseg__resize rs;
  int cat_n; /* CONCAT_C: inputs still to copy (others were written in place) */
  int cat_t[OSSEG__MAX_ARGS];
  int64_t cat_c[OSSEG__MAX_ARGS], cat_off[OSSEG__MAX_ARGS];
  const struct osseg__requant *cat_rq[OSSEG__MAX_ARGS]; /* 8-bit input
                                                          requantized onto
                                                          the output's grid
                                                          (ops/concat.c), or
                                                          NULL: copied */
  int64_t cat_pixels, cat_cout;
  /* OSSEG__STEP_CUSTOM: run() executes the step (it may run its own oneDNN
   * primitives, kept in priv); destroy() frees priv with the model. */
  dnnl_status_t (*run)(struct osseg_model *m, struct osseg__step *s);
  void (*destroy)(struct osseg__step *s);
  void *priv;
  /* liveness: every tensor read/written by this step */
  int uses[OSSEG__MAX_ARGS];
  int nuses;
  /* What osseg_model_step_info() reports, fixed at compile time so that the
   * query needs no primitive desc: the implementation (oneDNN's name,
   * copied into model-owned memory by osseg__finish_prim, or an own loop's
   * "own: X" from osseg__step_own), whether it is a slow fallback, whether
   * the step is a convolution, and the data types it reads and writes. A
   * primitive's come from its desc; an own loop's from the tensors
   * info_in / info_out (-1: none), read when asked. */
  const char *impl;
  int slow, conv;
  dnnl_primitive_kind_t prim_kind;
  dnnl_data_type_t src_dt, wei_dt, dst_dt;
  int info_in, info_out;
};

/* A map quantized or requantized for 8-bit readers, made once
 * (osseg__qtemp). */
struct osseg__qtemp {
  int src, dst, zero, sgn; /* (dst: src on grid scale, zero, sgn) */
  float scale;
  struct osseg__qtemp *next;
};

struct osseg_model {
  struct osseg__graph g;
  struct osseg_engine_options opt;
  dnnl_engine_t eng;
  dnnl_stream_t stream;
  dnnl_data_type_t act_dt; /* f32 or bf16 */
  dnnl_memory_desc_t *md;  /* per tensor, runtime tensors only */
  dnnl_memory_t *mem;      /* per tensor */
  struct osseg__step *steps;
  int nsteps, capsteps;
  /* user I/O */
  dnnl_memory_t user_in, user_out;
  int in_tensor, out_tensor;
  void *arena;
  size_t arena_bytes;
  void *scratch;
  size_t scratch_bytes;
  dnnl_memory_t *owned_mem; /* constant memories (weights, biases, consts) */
  void **owned_buf;
  int nowned, capowned;
  size_t weight_bytes;
  /* The run in progress (set and read on the executor thread and its
   * OpenMP team only): its interruption and, once seen, the code it stops
   * with (OSSEG_ECANCELED / OSSEG_ETIMEDOUT), so every thread of an own
   * loop gives up its remaining work. */
  const struct osseg_run_control *ctl;
  atomic_int stop;
  /* test hook (engine_test_hooks.h): called after every step */
  void (*step_hook)(void *ctx, int step);
  void *step_hook_ctx;
  struct osseg_tensor_info in_info, out_info;
  size_t in_elems, out_elems;
  uint64_t params, flops;
  int warned_ref;
  int slow_steps; /* primitives on oneDNN ref / gemm implementations */
  int winograd_convs;
  int int8_convs;
  int tensor_cap; /* g->tensors, md and aliased are reserved to this many
                     entries before compiling, so that no compile step can
                     see them move (osseg__add_temp) */
  unsigned char *aliased; /* per tensor: another tensor shares its storage */
  struct osseg__qtemp *qtemps; /* quantized inputs' temporaries
                                  (model-owned list) */
};

/* Should the run in progress stop? 0, or the code to stop with, which
 * also becomes m->stop. Cheap (an atomic load and, with a deadline, a vDSO
 * clock read): own loops call it per block of work, from any thread of the
 * team. */
static inline int osseg__ctl_check(const struct osseg_run_control *c) {
  if (!c) return 0;
  if (c->cancel && atomic_load_explicit(c->cancel, memory_order_relaxed)) return OSSEG_ECANCELED;
  if (c->deadline_ns && osseg_now_ns() >= c->deadline_ns) return OSSEG_ETIMEDOUT;
  return 0;
}
static inline int osseg__should_stop(struct osseg_model *m) {
  int s = atomic_load_explicit(&m->stop, memory_order_relaxed);
  if (s || !m->ctl) return s;
  s = osseg__ctl_check(m->ctl);
  if (s) atomic_store_explicit(&m->stop, s, memory_order_relaxed);
  return s;
}

/* ---- Building steps. */

/* Failure of a oneDNN call for node n (NULL: none): OSSEG_ENOMEM or
 * OSSEG_EBACKEND with a message naming the node. */
int osseg__dnnl_fail(struct osseg_diag *diag, dnnl_status_t st, const char *what,
                     const struct osseg__node *n);
/* Appends a step; returns pointer (valid until next append) or NULL. */
struct osseg__step *osseg__add_step(struct osseg_model *m, int kind, int node);
/* Creates a primitive from pd (taking ownership of pd), checks impl, records
 * scratchpad. */
int osseg__finish_prim(struct osseg_model *m, struct osseg__step *s, dnnl_primitive_desc_t pd,
                       const struct osseg__node *n, struct osseg_diag *diag);
/* Describes an own-loop step for osseg_model_step_info(): `impl` names the
 * loop ("own: winograd"; a string literal, not copied), conv marks a
 * convolution, x and y are the tensors whose types are its precision
 * (-1: none). Every own-loop step calls it once after osseg__add_step. */
void osseg__step_own(struct osseg__step *s, const char *impl, int conv, int x, int y);
/* Runtime argument: tensor viewed through md (NULL = the tensor's own md).
 * tensor -2 / -3 = the caller's input / output buffer. */
void osseg__step_arg_tensor(struct osseg_model *m, struct osseg__step *s, int kind, int tensor,
                            const dnnl_memory_desc_t *md);
void osseg__step_arg_mem(struct osseg__step *s, int kind, dnnl_memory_t mem);
/* Model-owned constant memory with given md, filled from f32 plain data
 * (`src_md` describes its layout) through a reorder. */
int osseg__const_memory(struct osseg_model *m, const dnnl_memory_desc_t *dst_md,
                        const dnnl_memory_desc_t *src_md, const void *src,
                        dnnl_memory_t *out, struct osseg_diag *diag);
/* Owned buffer freed with the model. */
void *osseg__model_alloc(struct osseg_model *m, size_t bytes);
/* Adds a runtime temporary tensor (dims copied from `like` if >= 0). */
int osseg__add_temp(struct osseg_model *m, int like, struct osseg_diag *diag);
/* Reorder step between two views (layout or type changes, copies). */
int osseg__reorder_step(struct osseg_model *m, int node, int src_t, const dnnl_memory_desc_t *smd,
                        int dst_t, const dnnl_memory_desc_t *dmd, struct osseg_diag *diag);
/* One oneDNN eltwise step x -> y (in x's layout); counts its FLOPs. */
int osseg__eltwise_step(struct osseg_model *m, struct osseg__node *n, int x, int y,
                        dnnl_alg_kind_t alg, float alpha, float beta, struct osseg_diag *diag);
/* Own-loop step copying runtime tensor x into y with numpy broadcasting
 * (x's dims align right to y's), both in plain row-major bytes of the same
 * type: callers stage through osseg__plain_in/out. */
int osseg__broadcast_step(struct osseg_model *m, int node, int x, int y, struct osseg_diag *diag);
/* Reorder step quantizing float src (through smd) into 8-bit dst (through
 * dmd): round(x / scale) + zero, saturated. */
int osseg__quantize_step(struct osseg_model *m, int node, int src_t, const dnnl_memory_desc_t *smd,
                         int dst_t, const dnnl_memory_desc_t *dmd, float scale, int zero,
                         struct osseg_diag *diag);
/* Runtime tensor x in 8 bits with (scale, zero, signedness) for node
 * `node`: x itself when its producer wrote it in 8 bits (on that grid: the
 * passes decided so; of the other signedness an internal error), else a
 * temporary filled by osseg__quantize_step, made once per x and
 * quantization, so the convs of a ResNet block that read one input
 * (downsample and conv1) share it. <0 on error. */
int osseg__quantized_input(struct osseg_model *m, int node, int x, float scale, int zero, int sgn,
                           struct osseg_diag *diag);
/* The temporary holding runtime tensor x on grid (scale, zero, sgn) for
 * node `node`: found, or made (*made = 1: the caller appends the step that
 * fills it). <0 on error. */
int osseg__qtemp(struct osseg_model *m, int node, int x, float scale, int zero, int sgn, int *made,
                 struct osseg_diag *diag);
/* Input i's own grid, when node n took over that input's quantization
 * (passes/fuse_qdq.c: osseg.q_scale_inI, q_zero_inI, q_signed_inI): 1 with
 * the grid in *scale, *zero, *sgn; else 0. */
int osseg__input_grid(const struct osseg__node *n, int i, float *scale, int *zero, int *sgn);
/* The requantization of 8-bit grid (si, zi, signed gi) onto (so, zo,
 * signed go), model-owned; NULL when out of memory. */
const struct osseg__requant *osseg__requant_of(struct osseg_model *m, float si, int zi, int gi, float so,
                                               int zo, int go);
/* n values requantized by r from q into d, in the variant for this CPU
 * (requant.c). */
typedef void (*osseg__requant_fn)(const struct osseg__requant *r, const unsigned char *q, unsigned char *d,
                                  int64_t n);
osseg__requant_fn osseg__requant_select(void);
/* The copy of 8-bit runtime tensor x (on grid si, zi, signed gi)
 * requantized onto (so, zo, signed go) for node `node`, Q_o(DQ_i(q)) as a
 * QDQ file computes it: a temporary made once per x and target grid.
 * <0 on error. */
int osseg__requantized_input(struct osseg_model *m, int node, int x, float si, int zi, int gi, float so,
                             int zo, int go, struct osseg_diag *diag);
/* Constant weights and bias of a conv in the layouts its primitive
 * picked; the bands of one conv share them (zeroed: none yet). */
struct osseg__conv_consts {
  dnnl_memory_t w, b;
  dnnl_memory_desc_t wmd;
};
/* Appends the step of a conv primitive pd (taken, also on failure):
 * src x and dst y through the views xmd / ymd (NULL: the tensors' own) at
 * byte offsets xoff / yoff; weights w as wuser describes them and the plain
 * f32 bias (or NULL) reordered into pd's layouts unless c holds them in that
 * layout already; the addends of post's SUM entries kept alive until the
 * step. */
int osseg__conv_step(struct osseg_model *m, const struct osseg__node *n, dnnl_primitive_desc_t pd,
                     int x, const dnnl_memory_desc_t *xmd, size_t xoff, int y,
                     const dnnl_memory_desc_t *ymd, size_t yoff, const dnnl_memory_desc_t *wuser,
                     const void *w, const float *bias, struct osseg__conv_consts *c,
                     const struct osseg__post *post, int npost, struct osseg_diag *diag);

/* Attribute with user scratchpad and the node's fused post-ops. */
int osseg__make_attr(struct osseg_model *m, const struct osseg__node *n, dnnl_primitive_attr_t *attr);
/* The same, but with sum_md a residual POST_SUM becomes a binary-add
 * post-op reading tensor `arg` through sum_md (matmul), its index in the
 * post-op list in *sum_idx (-1 if none). */
int osseg__make_attr_sum(struct osseg_model *m, const struct osseg__node *n,
                         const dnnl_memory_desc_t *sum_md, dnnl_primitive_attr_t *attr,
                         int *sum_idx);
/* Root of a tensor's storage; whether it may be overwritten in place by the
 * node consuming it (single use, not the graph input, not shared). */
int osseg__root(const struct osseg_model *m, int t);
int osseg__can_inplace(const struct osseg_model *m, int t);
void osseg__alias(struct osseg_model *m, int t, int onto);
/* Runtime pointer of a tensor after binding. */
void *osseg__tensor_ptr(const struct osseg_model *m, int t);
/* Element size of the tensor an own-loop step writes (its inputs were
 * converted to its type at compile time; 8 bits: int8 models' quantized
 * maps, passes/fuse_qdq.c). */
static inline size_t osseg__step_es(const struct osseg_model *m, const struct osseg__step *s) {
  if (s->out < 0) return 4;
  dnnl_data_type_t dt = m->md[s->out].data_type;
  return dt == dnnl_bf16 ? 2 : dt == dnnl_u8 || dt == dnnl_s8 ? 1 : 4;
}
/* Runtime md of a tensor (nhwc for rank 4, plain otherwise), made on first
 * use with type dt. */
int osseg__tensor_md(struct osseg_model *m, int t, dnnl_data_type_t dt,
                     dnnl_memory_desc_t *md);
void osseg__set_dims(dnnl_dims_t d, const int64_t *src, int rank);
/* Is md a dense rank-4 nhwc layout ([N][H][W][C] bytes, no offset)? */
int osseg__md_dense_nhwc(const dnnl_memory_desc_t *md);
/* Plain row-major md of dims with data type dt. */
int osseg__plain_md(dnnl_memory_desc_t *md, const int64_t *dims, int rank, dnnl_data_type_t dt);
/* Tensor t in plain row-major bytes: t itself, or a temporary filled by a
 * reorder step (rank-4 nhwc tensors with C > 1 and H*W > 1). <0 on error. */
int osseg__plain_in(struct osseg_model *m, int node, int t, struct osseg_diag *diag);
/* Where an op should write output y in plain bytes: y, or a temporary that
 * osseg__plain_out_done() then reorders into y. */
int osseg__plain_out(struct osseg_model *m, int y, struct osseg_diag *diag);
int osseg__plain_out_done(struct osseg_model *m, int node, int tmp, int y, struct osseg_diag *diag);

#endif
