/* Graph IR of the engine: plain structs, independent of the ONNX wire format.
 *
 * Tensors are identified by index into graph->tensors. A tensor is either a
 * constant (data != NULL, row-major, owned by the IR) or a runtime value
 * produced by one node (or the graph input). Dims are logical (NCHW order).
 * Nodes keep their ONNX op type and typed attributes; passes mark nodes dead
 * instead of compacting the array, so indices stay stable. */
#ifndef OSSEG_ENGINE_IR_H
#define OSSEG_ENGINE_IR_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_base.h"
#include "osseg_engine.h"

/* ONNX TensorProto.DataType numbering. */
enum osseg__dtype {
  OSSEG__DT_UNDEFINED = 0,
  OSSEG__DT_FLOAT = 1,
  OSSEG__DT_UINT8 = 2,
  OSSEG__DT_INT8 = 3,
  OSSEG__DT_UINT16 = 4,
  OSSEG__DT_INT16 = 5,
  OSSEG__DT_INT32 = 6,
  OSSEG__DT_INT64 = 7,
  OSSEG__DT_STRING = 8,
  OSSEG__DT_BOOL = 9,
  OSSEG__DT_FLOAT16 = 10,
  OSSEG__DT_DOUBLE = 11,
  OSSEG__DT_UINT32 = 12,
  OSSEG__DT_UINT64 = 13,
  OSSEG__DT_BFLOAT16 = 16,
};
/* Element size in bytes, 0 for types the engine does not handle. */
size_t osseg__dtype_size(int dtype);
const char *osseg__dtype_name(int dtype);

struct osseg__tensor {
  char *name;
  int dtype;
  int rank; /* -1 while unknown */
  int64_t dims[OSSEG_MAX_RANK];
  void *data; /* constant value, row-major, osseg__malloc'ed; NULL = runtime */
  size_t nbytes;
  /* A constant made by folding DequantizeLinear of int8 values with zero
   * points 0: its qcount scales along axis qaxis (1: per tensor), so the
   * int8 values can be recovered exactly for int8 kernels. NULL otherwise. */
  float *qscale;
  int qcount, qaxis;
  int producer; /* node index; -1 for the graph input and constants */
  int uses;     /* live consumer references (recounted by passes) */
  /* Set by the planner / compiler. */
  int storage;    /* tensor whose arena block this one uses (itself or an alias root) */
  int64_t offset; /* byte offset in the arena, -1 = none */
  void *rt;       /* compiler-private per-tensor state */
};

enum osseg__attr_type {
  OSSEG__ATTR_FLOAT = 1,
  OSSEG__ATTR_INT = 2,
  OSSEG__ATTR_STRING = 3,
  OSSEG__ATTR_TENSOR = 4,
  OSSEG__ATTR_FLOATS = 6,
  OSSEG__ATTR_INTS = 7,
  OSSEG__ATTR_OTHER = 99, /* present but not representable (graphs, strings lists) */
};

struct osseg__attr {
  char *name;
  int type;
  float f;
  int64_t i;
  char *s; /* NUL-terminated */
  int64_t *ints;
  float *floats;
  size_t n; /* count of ints / floats */
  int tensor; /* OSSEG__ATTR_TENSOR: index of a constant tensor */
};

/* Fused epilogue of a compute node (conv, deconv): applied in order. */
enum osseg__post_kind {
  OSSEG__POST_RELU,       /* alpha = negative slope */
  OSSEG__POST_SIGMOID,
  OSSEG__POST_SWISH,      /* x * sigmoid(x) */
  OSSEG__POST_CLIP,       /* alpha = lo, beta = hi */
  OSSEG__POST_LINEAR,     /* alpha * x + beta */
  OSSEG__POST_HARDSWISH,
  OSSEG__POST_SUM,        /* dst += tensor `arg` (in place, residual) */
  OSSEG__POST_GELU_ERF,   /* 0.5 x (1 + erf(x / sqrt 2)) */
};
#define OSSEG__MAX_POST 6
/* Most tensors one executable step reads or writes (a fused node made by a
 * pass must stay within it). */
#define OSSEG__MAX_ARGS 16
struct osseg__post {
  int kind;
  float alpha, beta;
  int arg;
};

struct osseg__node {
  char *name;
  char *op;
  int *in; /* tensor indices; -1 for an omitted optional input */
  int nin;
  int *out;
  int nout;
  struct osseg__attr *attrs;
  int nattrs;
  int dead;
  struct osseg__post post[OSSEG__MAX_POST];
  int npost;
};

struct osseg__kv {
  char *key, *value;
};

struct osseg__graph {
  struct osseg__tensor *tensors;
  int ntensors, captensors;
  struct osseg__node *nodes;
  int nnodes, capnodes;
  int opset;
  int input;  /* tensor index of the single runtime input */
  int output; /* tensor index of the single output */
  int input_symbolic; /* 1 if the file's input had symbolic H/W */
  struct osseg__kv *meta;
  int nmeta;
  char **ophist_name; /* op histogram of the file, before any pass */
  int *ophist_count;
  int nophist;
  int nodes_onnx;
  /* name -> tensor index hash (open addressing), used while loading */
  int *hash;
  size_t hashcap;
  uint64_t max_tensor_bytes;
};

void osseg__graph_free(struct osseg__graph *g);
/* Frees a node's strings, tensor lists and attributes (not the node). */
void osseg__node_free(struct osseg__node *n);
/* Frees a node's attributes (the node then has none). */
void osseg__node_clear_attrs(struct osseg__node *n);
/* Makes room for `extra` more tensors without moving g->tensors; 0,
 * OSSEG_ENOMEM or OSSEG_ELIMIT. */
int osseg__graph_reserve_tensors(struct osseg__graph *g, int extra);
/* Adds a tensor with a copy of name (may be NULL); returns index or <0. */
int osseg__graph_add_tensor(struct osseg__graph *g, const char *name, size_t namelen);
int osseg__graph_find(const struct osseg__graph *g, const char *name);

/* Elements of a tensor with known shape; OSSEG_EOVERFLOW / ELIMIT via
 * checking against max bytes. */
int osseg__tensor_elems(const struct osseg__graph *g, const struct osseg__tensor *t,
                        size_t *elems);
int osseg__dims_elems(const int64_t *dims, int rank, size_t *elems);

const struct osseg__attr *osseg__attr_find(const struct osseg__node *n, const char *name);
int64_t osseg__attr_int(const struct osseg__node *n, const char *name, int64_t dflt);
float osseg__attr_float(const struct osseg__node *n, const char *name, float dflt);
const char *osseg__attr_str(const struct osseg__node *n, const char *name, const char *dflt);

/* Reads element i of a constant numeric tensor as int64 / double. */
int64_t osseg__const_i64(const struct osseg__tensor *t, size_t i);
double osseg__const_f64(const struct osseg__tensor *t, size_t i);

/* Makes tensor t constant with freshly allocated zeroed data of its shape
 * (dtype and dims must be set). */
int osseg__tensor_alloc_const(struct osseg__graph *g, struct osseg__tensor *t,
                              struct osseg_diag *diag);

/* Internal ops the graph passes make (never read from a file; their op
 * table entries are flagged OSSEG__OP_INTERNAL). */
#define OSSEG__OP_VIEW "osseg.View"           /* output shares the input's bytes */
#define OSSEG__OP_ATTENTION "osseg.Attention" /* softmax(scale Q K^T) V, tiled */
#define OSSEG__OP_FAKE_QUANT "osseg.FakeQuant" /* a QuantizeLinear -> DequantizeLinear pair */
#define OSSEG__OP_QADD "osseg.QAdd"            /* an Add of two 8-bit maps (int8) */
#define OSSEG__OP_OBSERVE "osseg.Observe"      /* hands a tensor to the caller's observer */
#define OSSEG__MAX_OBSERVED 4096

/* ---- Shape rules' helpers (dims.c, resample.c), for the op files. */

/* Shape rules fail through their `diag` argument, messages prefixed with
 * "node 'NAME' (OP, opset N): ":
 *   return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "...", OSSEG__NODEARG, ...);
 * (NODEARG needs locals g and n). */
#define OSSEG__FAIL(code, ...) osseg__fail(diag, code, __VA_ARGS__)
#define OSSEG__NODEFMT "node '%s' (%s, opset %d): "
#define OSSEG__NODEARG n->name, n->op, g->opset

/* Input i of n, NULL when absent or omitted. */
struct osseg__tensor *osseg__in(struct osseg__graph *g, const struct osseg__node *n, int i);
/* y gets x's dtype, rank and dims (elementwise ops, normalisations). */
void osseg__same_shape(const struct osseg__tensor *x, struct osseg__tensor *y);
/* Sets out's rank and dims to the numpy broadcast of a and b; 0 or
 * OSSEG_ESHAPE. */
int osseg__broadcast(const struct osseg__tensor *a, const struct osseg__tensor *b,
                     struct osseg__tensor *out);
/* An int list from attribute `attr` (NULL: none) or else constant input
 * `idx` (-1: none): its count, 0 if absent, <0 on error (a runtime input,
 * more than max values). */
int osseg__int_list(struct osseg__graph *g, struct osseg__node *n, const char *attr, int idx,
                    int64_t *out, int max, struct osseg_diag *diag);
/* Axis a in [-rank, rank) as a non-negative index in *out. */
int osseg__norm_axis(struct osseg__graph *g, struct osseg__node *n, int64_t a, int rank, int *out,
                     struct osseg_diag *diag);
int osseg__need_rank4(struct osseg__graph *g, struct osseg__node *n, struct osseg__tensor *x,
                      struct osseg_diag *diag);
/* Geometry of Conv/ConvTranspose/pooling/BatchNormalization node n (from
 * attributes and the input size): kernel, strides, dilations (ONNX, >= 1),
 * begin/end pads, output size. */
struct osseg__window {
  int64_t k[2], s[2], d[2], pb[2], pe[2], out[2];
};
int osseg__window_of(struct osseg__graph *g, struct osseg__node *n, struct osseg__window *w,
                     struct osseg_diag *diag);

/* Resize / Upsample (resample.c): output sizes and scales per dim. */
int osseg__resize_scales(struct osseg__graph *g, struct osseg__node *n, double *scales,
                         int64_t *sizes, struct osseg_diag *diag);
/* Its modes: linear or nearest, coordinate mode cmode (0 half_pixel,
 * 1 pytorch_half_pixel, 2 align_corners, 3 asymmetric, 4 tf_half_pixel_for_nn)
 * and nearest rounding nmode (0 round_prefer_floor, 1 round_prefer_ceil,
 * 2 floor, 3 ceil, 4 before opset 11), and the scales. */
int osseg__resize_parse(struct osseg__graph *g, struct osseg__node *n, int *linear, int *cmode,
                        int *nmode, double *scales, struct osseg_diag *diag);
/* Source coordinate of output index o; nearest source index of coordinate x. */
double osseg__resize_coord(int cmode, int64_t o, double scale, int64_t in, int64_t out);
int32_t osseg__resize_nearest(int nmode, double x, int64_t in, double scale);
/* One axis's table of a linear resize of in -> out samples: output o blends
 * sources i0[o] and i1[o], weight w[o] on i1; source coordinates are
 * clamped to the map. */
void osseg__linear_axis(int cmode, double scale, int64_t in, int64_t out, int32_t *i0, int32_t *i1,
                        float *w);
/* Is n a Resize/Upsample whose every output row and column copies source
 * o / 2 (a nearest 2x upsample, whatever modes say so)? */
int osseg__resize_is_nearest2x(struct osseg__graph *g, struct osseg__node *n);

/* ---- Constant elements (const.c), for the op files' constant folding. */

int osseg__dtype_is_float(int dtype);
/* double -> int64, saturating; NaN -> 0. */
int64_t osseg__sat_i64(double v);
int64_t osseg__sat_add_i64(int64_t a, int64_t b);
int64_t osseg__sat_sub_i64(int64_t a, int64_t b);
int64_t osseg__sat_mul_i64(int64_t a, int64_t b);
/* Writes element i of constant t, converted to its dtype. */
void osseg__const_set_f64(struct osseg__tensor *t, size_t i, double v);
void osseg__const_set_i64(struct osseg__tensor *t, size_t i, int64_t v);
/* Row-major strides of t aligned to rank r, 0 on broadcast dims of the
 * output dims odims; the index into t of output element o. */
void osseg__bcast_strides(const struct osseg__tensor *t, int r, const int64_t *odims, size_t *st);
size_t osseg__bcast_index(size_t o, int r, const int64_t *odims, const size_t *st);
/* Multi-index of row-major element o of dims. */
void osseg__unravel(size_t o, const int64_t *dims, int r, int64_t *idx);
/* Constant evaluator of ops whose output has their input's bytes
 * (Identity, Dropout, Reshape, Flatten, Squeeze, Unsqueeze). */
int osseg__fold_copy(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag);

#endif
