/* Engine internals shared across the engine sources (prefix osseg__). */
#ifndef OSSEG_ENGINE_INTERNAL_H
#define OSSEG_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <oneapi/dnnl/dnnl.h>

#include "ir.h"
#include "osseg_engine.h"

/* loader.c */

/* The part of a oneDNN implementation name (dnnl_query_impl_info_str) that
 * marks a bf16 kernel on this CPU's best native bf16 unit: "amx" on AMX
 * machines, "avx512_core_bf16" with AVX512_BF16 alone; NULL when bf16 has
 * no native support here (oneDNN emulates it). */
const char *osseg__bf16_kernel_tag(void);
int osseg__load_graph(struct osseg__graph *g, const void *data, size_t size,
                      const struct osseg_engine_options *o, struct osseg_diag *diag);

/* shape.c: checks every node against the op allow-list, infers static shapes
 * node by node and folds nodes whose inputs are all constant (fold.c). */
int osseg__infer_and_fold(struct osseg__graph *g, struct osseg_diag *diag);
int osseg__infer_node(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag);
/* Geometry of Conv/ConvTranspose/pooling node n (from attributes and the
 * input size): strides, dilations (ONNX, >= 1), begin/end pads. */
struct osseg__window {
  int64_t k[2], s[2], d[2], pb[2], pe[2], out[2];
};
int osseg__window_of(struct osseg__graph *g, struct osseg__node *n, struct osseg__window *w,
                     struct osseg_diag *diag);
int osseg__resize_scales(struct osseg__graph *g, struct osseg__node *n, double *scales,
                         int64_t *sizes, struct osseg_diag *diag);
/* Sets output of a broadcasting elementwise op; 0 or OSSEG_ESHAPE. */
int osseg__broadcast(const struct osseg__tensor *a, const struct osseg__tensor *b,
                     struct osseg__tensor *out);

/* fold.c: evaluates node n whose inputs are all constant; outputs become
 * constants. OSSEG_EUNSUPPORTED when the op has no constant evaluator. */
int osseg__fold_node(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag);
int osseg__can_fold(const char *op);

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

#define OSSEG__MAX_ARGS 16
/* Own-loop kernels on nhwc tensors (resize.c): out[y][x][:] = in[ry[y]][rx[x]][:],
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
  int64_t cat_pixels, cat_cout;
  /* OSSEG__STEP_CUSTOM: run() executes the step (it may run its own oneDNN
   * primitives, kept in priv); destroy() frees priv with the model. */
  dnnl_status_t (*run)(struct osseg_model *m, struct osseg__step *s);
  void (*destroy)(struct osseg__step *s);
  void *priv;
  /* liveness: every tensor read/written by this step */
  int uses[OSSEG__MAX_ARGS];
  int nuses;
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
  int tensor_cap; /* g->tensors, md and aliased are reserved to this many
                     entries before compiling, so that no compile step can
                     see them move (osseg__add_temp) */
  unsigned char *aliased; /* per tensor: another tensor shares its storage */
};

/* compile.c + op files */
int osseg__compile(struct osseg_model *m, struct osseg_diag *diag);
int osseg__dnnl_fail(struct osseg_diag *diag, dnnl_status_t st, const char *what,
                     const struct osseg__node *n);
/* Appends a step; returns pointer (valid until next append) or NULL. */
struct osseg__step *osseg__add_step(struct osseg_model *m, int kind, int node);
/* Creates a primitive from pd (taking ownership of pd), checks impl, records
 * scratchpad. */
int osseg__finish_prim(struct osseg_model *m, struct osseg__step *s, dnnl_primitive_desc_t pd,
                       const struct osseg__node *n, struct osseg_diag *diag);
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
/* Adds a runtime temporary tensor (dims copied from `like` if >= 0). */
int osseg__add_temp(struct osseg_model *m, int like, struct osseg_diag *diag);
int osseg__reorder_step(struct osseg_model *m, int node, int src_t, const dnnl_memory_desc_t *smd,
                        int dst_t, const dnnl_memory_desc_t *dmd, struct osseg_diag *diag);
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
/* Runtime md of a tensor (nhwc for rank 4, plain otherwise). */
int osseg__tensor_md(struct osseg_model *m, int t, dnnl_data_type_t dt,
                     dnnl_memory_desc_t *md);
void osseg__set_dims(dnnl_dims_t d, const int64_t *src, int rank);

int osseg__compile_conv(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
/* eltwise.c: one oneDNN eltwise step x -> y (layout of x). */
int osseg__eltwise_step(struct osseg_model *m, struct osseg__node *n, int x, int y,
                        dnnl_alg_kind_t alg, float alpha, float beta, struct osseg_diag *diag);
/* dwconv.c: depthwise conv (weights [C, 1, kh, kw], optional bias, no
 * post-ops) of dense nhwc x into y as an own loop. */
int osseg__compile_dwconv(struct osseg_model *m, struct osseg__node *n, const float *wdata,
                          const int64_t *wdims, const float *bias, const struct osseg__window *win,
                          struct osseg_diag *diag);
/* winograd.c: 3x3 or 2x2 (k) stride-1 fp32 conv (OIHW weights, group 1) of
 * dense nhwc x into y by Winograd F(2x2, 3x3) / F(2x2, 2x2); the epilogue
 * may hold SUM (y holds the addend) and RELU entries. _eligible says
 * whether it applies. */
int osseg__winograd_eligible(const struct osseg_model *m, int x, int y, int64_t kh, int64_t kw,
                             int64_t IC, int64_t OC, const int64_t stride[2],
                             const int64_t dil[2], const int64_t pb[2], const int64_t pe[2],
                             const struct osseg__post *post, int npost);
int osseg__compile_winograd(struct osseg_model *m, const struct osseg__node *n, int x, int y,
                            const float *wt, int64_t k, int64_t IC, int64_t OC,
                            const float *bias, const int64_t pb[2],
                            const struct osseg__post *post, int npost, struct osseg_diag *diag);
/* Is md a dense rank-4 nhwc layout ([N][H][W][C] bytes, no offset)? */
int osseg__md_dense_nhwc(const dnnl_memory_desc_t *md);
int osseg__compile_deconv(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
/* passes/fuse_upconv.c makes osseg.UpConv2x (conv of a nearest-2x upsample + concat) */
int osseg__compile_upconv(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__resize_is_nearest2x(struct osseg__graph *g, struct osseg__node *n);
int osseg__compile_pool(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_reduce(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_eltwise(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_binary(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_concat(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_resize(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_pad(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_reshape(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);

/* Transformer ops (passes/, matmul.c, softmax.c, layernorm.c,
 * attention.c). infer / compile return 1 when the op is not theirs. */
int osseg__infer_transformer(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag);
int osseg__compile_transformer(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);

/* plan.c: liveness-based arena offsets for all runtime tensors. */
int osseg__plan(struct osseg_model *m, struct osseg_diag *diag);

/* execute.c: runs the steps on the calling thread (the executor's). */
int osseg__execute(struct osseg_model *m, const float *input, float *output,
                   const struct osseg_run_control *ctl, struct osseg_diag *diag);

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

/* executor.c: queues the run for the executor thread and waits for it. */
int osseg__executor_run(struct osseg_model *m, const float *input, float *output,
                        const struct osseg_run_control *ctl, struct osseg_diag *diag);
/* Bookkeeping around osseg__execute (what engine_test_hooks.h reports). */
void osseg__executor_enter(void);
void osseg__executor_leave(void);
void osseg__run_gather2d(const struct osseg__resize *r, size_t es, const void *src, void *dst);
void osseg__run_concat_c(const struct osseg__step *s, size_t es, const struct osseg_model *m);
void osseg__run_linear2d(const struct osseg__resize *r, int bf16, const void *src, void *dst);
/* resize.c: one axis's table of a linear resize of in -> out samples:
 * output o blends sources i0[o] and i1[o], weight w[o] on i1. cmode is the
 * ONNX coordinate_transformation_mode (0 half_pixel, 1 pytorch_half_pixel,
 * 2 align_corners, 3 asymmetric); source coordinates are clamped to the map. */
void osseg__linear_axis(int cmode, double scale, int64_t in, int64_t out, int32_t *i0, int32_t *i1,
                        float *w);
void osseg__run_upconv_scatter(const struct osseg__step *s, size_t es, const struct osseg_model *m);
/* Owned buffer freed with the model. */
void *osseg__model_alloc(struct osseg_model *m, size_t bytes);

#endif
