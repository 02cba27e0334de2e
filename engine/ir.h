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

#endif
