/* Loader: ONNX bytes -> protobuf-c unpack -> IR. The protobuf is freed before
 * returning; the IR owns copies (or stolen buffers) of all constant data.
 *
 * Hostile input policy: every count and size read from the file is checked
 * against a limit before it sizes an allocation; protobuf-c allocates through
 * an allocator that charges a budget proportional to the file size. */
#include "engine_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"

/* protobuf-c allocator with a byte budget (and osseg__malloc for the
 * allocation-failure sweep). Each block carries its size in a header. */
struct pb_budget {
  size_t used, limit;
};

static void *pb_alloc(void *ud, size_t size) {
  struct pb_budget *b = ud;
  size_t total;
  if (osseg__add_size(size, 16, &total)) return NULL;
  if (b->used + total > b->limit || b->used + total < b->used) return NULL;
  unsigned char *p = osseg__malloc(total);
  if (!p) return NULL;
  memcpy(p, &total, sizeof total);
  b->used += total;
  return p + 16;
}

static void pb_free(void *ud, void *ptr) {
  if (!ptr) return;
  struct pb_budget *b = ud;
  unsigned char *p = (unsigned char *)ptr - 16;
  size_t total;
  memcpy(&total, p, sizeof total);
  b->used -= total;
  osseg__free(p);
}

/* Real smp exports have a few hundred to a few thousand nodes; the cap keeps
 * hostile files from making the quadratic passes (arena plan) slow. */
#define MAX_NODES 20000
#define MAX_IO 4096
#define MAX_ATTRS 256

static int copy_str(char **dst, const char *src) {
  *dst = osseg__strndup(src ? src : "", 1 << 16);
  return *dst ? 0 : OSSEG_ENOMEM;
}

/* Fills t (dtype, dims, data) from a TensorProto. `what` names it in errors. */
static int tensor_from_proto(struct osseg__graph *g, struct osseg__tensor *t,
                             const Onnx__TensorProto *tp, struct osseg_diag *diag) {
  const char *what = t->name;
  if (tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL || tp->n_external_data)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                       "tensor '%s' uses external data (a separate weights file); "
                       "export with the weights embedded (size < 2 GiB)", what);
  if (tp->has_segment)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "tensor '%s' is segmented", what);
  if (tp->n_dims > OSSEG_MAX_RANK)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "tensor '%s' has rank %zu (max %d)", what,
                       tp->n_dims, OSSEG_MAX_RANK);
  t->dtype = tp->data_type;
  size_t es = osseg__dtype_size(t->dtype);
  if (!es)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "tensor '%s' has unsupported data type %d (%s)",
                       what, (int)tp->data_type, osseg__dtype_name(t->dtype));
  t->rank = (int)tp->n_dims;
  for (size_t i = 0; i < tp->n_dims; i++) {
    if (tp->dims[i] < 0)
      return osseg__fail(diag, OSSEG_EPARSE, "tensor '%s' has negative dim %lld", what,
                         (long long)tp->dims[i]);
    t->dims[i] = tp->dims[i];
  }
  size_t n;
  int err = osseg__tensor_elems(g, t, &n);
  if (err)
    return osseg__fail(diag, err, "tensor '%s': element count %s", what,
                       err == OSSEG_ELIMIT ? "exceeds the tensor size limit" : "overflows");
  size_t bytes = n * es;
  if (tp->has_raw_data) {
    if (tp->raw_data.len != bytes)
      return osseg__fail(diag, OSSEG_EPARSE,
                         "tensor '%s': raw_data has %zu bytes, shape needs %zu", what,
                         tp->raw_data.len, bytes);
    t->data = osseg__malloc(bytes ? bytes : 1);
    if (!t->data) return osseg__fail(diag, OSSEG_ENOMEM, "tensor '%s': out of memory", what);
    if (bytes) memcpy(t->data, tp->raw_data.data, bytes);
    t->nbytes = bytes;
    return 0;
  }
  size_t have;
  switch (t->dtype) {
    case OSSEG__DT_FLOAT: have = tp->n_float_data; break;
    case OSSEG__DT_INT64: have = tp->n_int64_data; break;
    case OSSEG__DT_DOUBLE: have = tp->n_double_data; break;
    case OSSEG__DT_UINT64: case OSSEG__DT_UINT32: have = tp->n_uint64_data; break;
    default: have = tp->n_int32_data; break; /* int32, int16, int8, uint8, bool, f16, bf16 */
  }
  if (have != n)
    return osseg__fail(diag, OSSEG_EPARSE, "tensor '%s' has %zu values, shape needs %zu", what,
                       have, n);
  t->data = osseg__malloc(bytes ? bytes : 1);
  if (!t->data) return osseg__fail(diag, OSSEG_ENOMEM, "tensor '%s': out of memory", what);
  t->nbytes = bytes;
  unsigned char *d = t->data;
  for (size_t i = 0; i < n; i++) {
    switch (t->dtype) {
      case OSSEG__DT_FLOAT: ((float *)d)[i] = tp->float_data[i]; break;
      case OSSEG__DT_INT64: ((int64_t *)d)[i] = tp->int64_data[i]; break;
      case OSSEG__DT_DOUBLE: ((double *)d)[i] = tp->double_data[i]; break;
      case OSSEG__DT_UINT64: ((uint64_t *)d)[i] = tp->uint64_data[i]; break;
      case OSSEG__DT_UINT32: ((uint32_t *)d)[i] = (uint32_t)tp->uint64_data[i]; break;
      case OSSEG__DT_INT32: ((int32_t *)d)[i] = tp->int32_data[i]; break;
      case OSSEG__DT_INT16: case OSSEG__DT_UINT16: case OSSEG__DT_FLOAT16:
      case OSSEG__DT_BFLOAT16: ((uint16_t *)d)[i] = (uint16_t)tp->int32_data[i]; break;
      default: d[i] = (unsigned char)tp->int32_data[i]; break;
    }
  }
  return 0;
}

/* Adds an anonymous constant tensor from a TensorProto; returns its index. */
static int add_const(struct osseg__graph *g, const char *name, const Onnx__TensorProto *tp,
                     struct osseg_diag *diag) {
  int idx = osseg__graph_add_tensor(g, name, name ? strlen(name) : 0);
  if (idx < 0) return osseg__fail(diag, idx, "adding tensor: %s", osseg_strerror(idx));
  int err = tensor_from_proto(g, &g->tensors[idx], tp, diag);
  return err ? err : idx;
}

static int count_op(struct osseg__graph *g, const char *op) {
  for (int i = 0; i < g->nophist; i++)
    if (strcmp(g->ophist_name[i], op) == 0) {
      g->ophist_count[i]++;
      return 0;
    }
  if (g->nophist >= 4096) return 0;
  char **nn = osseg__realloc(g->ophist_name, (size_t)(g->nophist + 1) * sizeof *nn);
  if (!nn) return OSSEG_ENOMEM;
  g->ophist_name = nn;
  int *nc = osseg__realloc(g->ophist_count, (size_t)(g->nophist + 1) * sizeof *nc);
  if (!nc) return OSSEG_ENOMEM;
  g->ophist_count = nc;
  if (copy_str(&g->ophist_name[g->nophist], op)) return OSSEG_ENOMEM;
  g->ophist_count[g->nophist++] = 1;
  return 0;
}

/* Constant node -> constant tensor named after its output. */
static int constant_node(struct osseg__graph *g, const Onnx__NodeProto *np,
                         struct osseg_diag *diag) {
  const char *nm = np->name ? np->name : "";
  if (np->n_output != 1 || np->n_attribute != 1)
    return osseg__fail(diag, OSSEG_EPARSE, "Constant node '%s': needs 1 output and 1 attribute",
                       nm);
  const char *oname = np->output[0];
  if (osseg__graph_find(g, oname) >= 0)
    return osseg__fail(diag, OSSEG_EDUPLICATE, "Constant node '%s': output '%s' defined twice",
                       nm, oname);
  const Onnx__AttributeProto *a = np->attribute[0];
  const char *an = a->name ? a->name : "";
  if (strcmp(an, "value") == 0 && a->t) {
    int r = add_const(g, oname, a->t, diag);
    return r < 0 ? r : 0;
  }
  int idx = osseg__graph_add_tensor(g, oname, strlen(oname));
  if (idx < 0) return osseg__fail(diag, idx, "Constant node '%s': %s", nm, osseg_strerror(idx));
  struct osseg__tensor *t = &g->tensors[idx];
  if (strcmp(an, "value_float") == 0) {
    t->dtype = OSSEG__DT_FLOAT, t->rank = 0;
  } else if (strcmp(an, "value_int") == 0) {
    t->dtype = OSSEG__DT_INT64, t->rank = 0;
  } else if (strcmp(an, "value_floats") == 0) {
    t->dtype = OSSEG__DT_FLOAT, t->rank = 1, t->dims[0] = (int64_t)a->n_floats;
  } else if (strcmp(an, "value_ints") == 0) {
    t->dtype = OSSEG__DT_INT64, t->rank = 1, t->dims[0] = (int64_t)a->n_ints;
  } else {
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "Constant node '%s': attribute '%s' unsupported",
                       nm, an);
  }
  int err = osseg__tensor_alloc_const(g, t, diag);
  if (err) return err;
  if (strcmp(an, "value_float") == 0) ((float *)t->data)[0] = a->f;
  if (strcmp(an, "value_int") == 0) ((int64_t *)t->data)[0] = a->i;
  if (strcmp(an, "value_floats") == 0) memcpy(t->data, a->floats, a->n_floats * sizeof(float));
  if (strcmp(an, "value_ints") == 0) memcpy(t->data, a->ints, a->n_ints * sizeof(int64_t));
  return 0;
}

static int translate_attr(struct osseg__graph *g, struct osseg__node *n,
                          const Onnx__AttributeProto *a, struct osseg_diag *diag) {
  struct osseg__attr *d = &n->attrs[n->nattrs];
  memset(d, 0, sizeof *d);
  d->tensor = -1;
  if (copy_str(&d->name, a->name)) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  n->nattrs++;
  int type = a->has_type ? (int)a->type : 0;
  if (a->ref_attr_name)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (%s): attribute '%s' is a reference",
                       n->name, n->op, d->name);
  switch (type) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
      d->type = OSSEG__ATTR_FLOAT, d->f = a->f;
      break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
      d->type = OSSEG__ATTR_INT, d->i = a->i;
      break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
      d->type = OSSEG__ATTR_STRING;
      d->s = osseg__strndup(a->has_s ? (const char *)a->s.data : "", a->has_s ? a->s.len : 0);
      if (!d->s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
      if (!a->t)
        return osseg__fail(diag, OSSEG_EPARSE, "node '%s' (%s): tensor attribute '%s' is empty",
                           n->name, n->op, d->name);
      int idx = add_const(g, NULL, a->t, diag);
      if (idx < 0) return idx;
      d->type = OSSEG__ATTR_TENSOR, d->tensor = idx;
      break;
    }
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
      d->type = OSSEG__ATTR_FLOATS, d->n = a->n_floats;
      d->floats = osseg__malloc((a->n_floats ? a->n_floats : 1) * sizeof(float));
      if (!d->floats) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      if (a->n_floats) memcpy(d->floats, a->floats, a->n_floats * sizeof(float));
      break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
      d->type = OSSEG__ATTR_INTS, d->n = a->n_ints;
      d->ints = osseg__malloc((a->n_ints ? a->n_ints : 1) * sizeof(int64_t));
      if (!d->ints) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      if (a->n_ints) memcpy(d->ints, a->ints, a->n_ints * sizeof(int64_t));
      break;
    default:
      d->type = OSSEG__ATTR_OTHER;
      break;
  }
  return 0;
}

static int translate_node(struct osseg__graph *g, const Onnx__NodeProto *np,
                          struct osseg_diag *diag) {
  const char *op = np->op_type ? np->op_type : "";
  int err = count_op(g, op);
  if (err) return osseg__fail(diag, err, "out of memory");
  if (np->domain && np->domain[0] && strcmp(np->domain, "ai.onnx") != 0)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                       "node '%s': op %s of domain '%s' is not supported (opset %d)",
                       np->name ? np->name : "", op, np->domain, g->opset);
  if (np->n_input > MAX_IO || np->n_output > MAX_IO || np->n_attribute > MAX_ATTRS)
    return osseg__fail(diag, OSSEG_ELIMIT, "node '%s' (%s): too many inputs/outputs/attributes",
                       np->name ? np->name : "", op);
  if (strcmp(op, "Constant") == 0) return constant_node(g, np, diag);
  if (g->nnodes == g->capnodes) {
    int cap = g->capnodes ? g->capnodes * 2 : 64;
    struct osseg__node *nn = osseg__realloc(g->nodes, (size_t)cap * sizeof *nn);
    if (!nn) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    g->nodes = nn;
    g->capnodes = cap;
  }
  int ni = g->nnodes;
  struct osseg__node *n = &g->nodes[ni];
  memset(n, 0, sizeof *n);
  g->nnodes++;
  if (copy_str(&n->op, op)) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  if (np->name && np->name[0]) {
    if (copy_str(&n->name, np->name)) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  } else {
    char buf[48];
    snprintf(buf, sizeof buf, "%.24s#%d", op[0] ? op : "node", ni); /* unnamed node */
    if (copy_str(&n->name, buf)) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  n->in = osseg__malloc((np->n_input ? np->n_input : 1) * sizeof(int));
  n->out = osseg__malloc((np->n_output ? np->n_output : 1) * sizeof(int));
  n->attrs = osseg__calloc(np->n_attribute ? np->n_attribute : 1, sizeof *n->attrs);
  if (!n->in || !n->out || !n->attrs) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  for (size_t i = 0; i < np->n_input; i++) {
    const char *in = np->input[i];
    if (!in || !in[0]) {
      n->in[n->nin++] = -1;
      continue;
    }
    int t = osseg__graph_find(g, in);
    if (t < 0)
      return osseg__fail(diag, OSSEG_EPARSE,
                         "node '%s' (%s): input '%s' is not produced by an earlier node "
                         "(graph not topologically sorted or tensor missing)",
                         n->name, op, in);
    n->in[n->nin++] = t;
  }
  for (size_t i = 0; i < np->n_output; i++) {
    const char *on = np->output[i] ? np->output[i] : "";
    if (on[0] && osseg__graph_find(g, on) >= 0)
      return osseg__fail(diag, OSSEG_EDUPLICATE, "node '%s' (%s): output '%s' defined twice",
                         n->name, op, on);
    int t = on[0] ? osseg__graph_add_tensor(g, on, strlen(on)) : osseg__graph_add_tensor(g, NULL, 0);
    if (t < 0) return osseg__fail(diag, t, "node '%s': %s", n->name, osseg_strerror(t));
    g->tensors[t].producer = ni;
    n->out[n->nout++] = t;
  }
  for (size_t i = 0; i < np->n_attribute; i++) {
    /* translate_attr may add constant tensors (not nodes), so n stays valid */
    err = translate_attr(g, n, np->attribute[i], diag);
    if (err) return err;
  }
  return 0;
}

static int translate_input(struct osseg__graph *g, const Onnx__ValueInfoProto *vi,
                           const struct osseg_engine_options *o, struct osseg_diag *diag) {
  const char *name = vi->name ? vi->name : "";
  if (!vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
      !vi->type->tensor_type)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "graph input '%s' is not a tensor", name);
  const Onnx__TypeProto__Tensor *tt = vi->type->tensor_type;
  if (tt->elem_type != OSSEG__DT_FLOAT)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "graph input '%s' has dtype %s (need float32)",
                       name, osseg__dtype_name(tt->elem_type));
  if (!tt->shape || tt->shape->n_dim != 4)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                       "graph input '%s' must have rank 4 (N,C,H,W), has %s", name,
                       tt->shape ? "another rank" : "no shape");
  int idx = osseg__graph_add_tensor(g, name, strlen(name));
  if (idx < 0) return osseg__fail(diag, idx, "graph input: %s", osseg_strerror(idx));
  struct osseg__tensor *t = &g->tensors[idx];
  t->dtype = OSSEG__DT_FLOAT;
  t->rank = 4;
  for (int i = 0; i < 4; i++) {
    const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
    int64_t v = -1;
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0)
      v = d->dim_value;
    if (i == 0) {
      if (v > 1)
        return osseg__fail(diag, OSSEG_EUNSUPPORTED, "graph input '%s': batch %lld (need 1)",
                           name, (long long)v);
      v = 1;
    } else if (i == 1) {
      if (v < 1 || v > 4096)
        return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                           "graph input '%s': channel count must be fixed (1..4096)", name);
    } else {
      if (v < 0) {
        g->input_symbolic = 1;
        if (o->input_size <= 0)
          return osseg__fail(diag, OSSEG_EINVAL,
                             "graph input '%s' has a symbolic size (dim %d); give the input "
                             "size (--size S)", name, i);
        v = o->input_size;
      } else if (o->input_size > 0 && o->input_size != v) {
        return osseg__fail(diag, OSSEG_EINVAL,
                           "graph input '%s' is fixed at %lld, requested size %lld differs "
                           "(re-export the model for that size)",
                           name, (long long)v, (long long)o->input_size);
      }
      if (v > 65536)
        return osseg__fail(diag, OSSEG_ELIMIT, "graph input '%s': size %lld too large", name,
                           (long long)v);
    }
    t->dims[i] = v;
  }
  size_t e;
  int err = osseg__tensor_elems(g, t, &e);
  if (err) return osseg__fail(diag, err, "graph input '%s': too large", name);
  g->input = idx;
  return 0;
}

static int translate_model(struct osseg__graph *g, const Onnx__ModelProto *mp,
                           const struct osseg_engine_options *o, struct osseg_diag *diag) {
  g->opset = -1;
  for (size_t i = 0; i < mp->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *os = mp->opset_import[i];
    if (!os->domain || !os->domain[0] || strcmp(os->domain, "ai.onnx") == 0)
      g->opset = os->has_version ? (int)(os->version > 1000 ? 1000 : os->version) : -1;
  }
  if (g->opset < 0)
    return osseg__fail(diag, OSSEG_EPARSE, "model has no opset import for the ONNX domain");
  if (g->opset < 7 || g->opset > 18)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "opset %d is not supported (7..18)", g->opset);
  if (mp->n_functions)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "model-local functions are not supported");
  const Onnx__GraphProto *gp = mp->graph;
  if (!gp) return osseg__fail(diag, OSSEG_EPARSE, "model has no graph");
  if (gp->n_sparse_initializer)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "sparse initializers are not supported");
  if (gp->n_node > MAX_NODES)
    return osseg__fail(diag, OSSEG_ELIMIT, "graph has %zu nodes (max %d)", gp->n_node, MAX_NODES);
  for (size_t i = 0; i < mp->n_metadata_props && i < 1024; i++) {
    const Onnx__StringStringEntryProto *kv = mp->metadata_props[i];
    struct osseg__kv *m = osseg__realloc(g->meta, (size_t)(g->nmeta + 1) * sizeof *m);
    if (!m) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    g->meta = m;
    m[g->nmeta].key = m[g->nmeta].value = NULL;
    g->nmeta++;
    if (copy_str(&m[g->nmeta - 1].key, kv->key) || copy_str(&m[g->nmeta - 1].value, kv->value))
      return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  g->input = g->output = -1;
  for (size_t i = 0; i < gp->n_initializer; i++) {
    const Onnx__TensorProto *tp = gp->initializer[i];
    const char *name = tp->name ? tp->name : "";
    if (!name[0]) return osseg__fail(diag, OSSEG_EPARSE, "initializer %zu has no name", i);
    if (osseg__graph_find(g, name) >= 0)
      return osseg__fail(diag, OSSEG_EDUPLICATE, "initializer '%s' defined twice", name);
    int err = add_const(g, name, tp, diag);
    if (err < 0) return err;
  }
  for (size_t i = 0; i < gp->n_input; i++) {
    const char *name = gp->input[i]->name ? gp->input[i]->name : "";
    if (osseg__graph_find(g, name) >= 0) continue; /* initializer listed as input */
    if (g->input >= 0)
      return osseg__fail(diag, OSSEG_EUNSUPPORTED, "model has more than one input ('%s', '%s')",
                         g->tensors[g->input].name, name);
    int err = translate_input(g, gp->input[i], o, diag);
    if (err) return err;
  }
  if (g->input < 0) return osseg__fail(diag, OSSEG_EPARSE, "model has no runtime input");
  for (size_t i = 0; i < gp->n_node; i++) {
    int err = translate_node(g, gp->node[i], diag);
    if (err) return err;
  }
  g->nodes_onnx = (int)gp->n_node;
  if (gp->n_output != 1)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "model has %zu outputs (need exactly 1)",
                       gp->n_output);
  const char *oname = gp->output[0]->name ? gp->output[0]->name : "";
  g->output = osseg__graph_find(g, oname);
  if (g->output < 0)
    return osseg__fail(diag, OSSEG_EPARSE, "graph output '%s' is not produced by any node", oname);
  return 0;
}

int osseg__load_graph(struct osseg__graph *g, const void *data, size_t size,
                      const struct osseg_engine_options *o, struct osseg_diag *diag) {
  memset(g, 0, sizeof *g);
  g->max_tensor_bytes = o->max_tensor_bytes;
  if (size == 0) return osseg__fail(diag, OSSEG_EPARSE, "model file is empty");
  if (o->max_model_bytes && size > o->max_model_bytes)
    return osseg__fail(diag, OSSEG_ELIMIT, "model is %zu bytes, limit %llu", size,
                       (unsigned long long)o->max_model_bytes);
  /* Unpacked structs cost at most a small multiple of the wire size (each
   * varint byte can become an 8-byte value, each message a struct). */
  struct pb_budget budget = {0, size > (SIZE_MAX - (1u << 20)) / 24 ? SIZE_MAX : size * 24 + (1u << 20)};
  ProtobufCAllocator alloc = {pb_alloc, pb_free, &budget};
  Onnx__ModelProto *mp = onnx__model_proto__unpack(&alloc, size, data);
  if (!mp) {
    if (budget.used + 64 >= budget.limit)
      return osseg__fail(diag, OSSEG_ELIMIT, "model protobuf needs too much memory to unpack");
    return osseg__fail(diag, OSSEG_EPARSE,
                       "not a valid ONNX model (protobuf parse failed: truncated or corrupted, "
                       "or out of memory)");
  }
  int err = translate_model(g, mp, o, diag);
  onnx__model_proto__free_unpacked(mp, &alloc);
  if (!err) {
    osseg__free(g->hash); /* names stay; lookups are done */
    g->hash = NULL;
    g->hashcap = 0;
  }
  return err;
}

/* Distinct (domain, op) pairs of the file's main graph in order of first
 * use, with counts, and its ONNX opset (-1 if it imports none): what
 * osseg_model_check_ops reports, without translating anything else. */
int osseg__load_op_list(const void *data, size_t size, uint64_t max_bytes, int *opset,
                        struct osseg__op_use **uses, int *nuses, struct osseg_diag *diag) {
  *uses = NULL;
  *nuses = 0;
  *opset = -1;
  if (size == 0) return osseg__fail(diag, OSSEG_EPARSE, "model file is empty");
  if (max_bytes && size > max_bytes)
    return osseg__fail(diag, OSSEG_ELIMIT, "model is %zu bytes, limit %llu", size,
                       (unsigned long long)max_bytes);
  struct pb_budget budget = {0, size > (SIZE_MAX - (1u << 20)) / 24 ? SIZE_MAX : size * 24 + (1u << 20)};
  ProtobufCAllocator alloc = {pb_alloc, pb_free, &budget};
  Onnx__ModelProto *mp = onnx__model_proto__unpack(&alloc, size, data);
  if (!mp) return osseg__fail(diag, OSSEG_EPARSE, "not a valid ONNX model (protobuf parse failed)");
  int err = 0;
  for (size_t i = 0; i < mp->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *os = mp->opset_import[i];
    if (!os->domain || !os->domain[0] || strcmp(os->domain, "ai.onnx") == 0)
      *opset = os->has_version ? (int)(os->version > 1000 ? 1000 : os->version) : -1;
  }
  const Onnx__GraphProto *gp = mp->graph;
  size_t nn = gp ? gp->n_node : 0;
  if (nn > MAX_NODES) err = osseg__fail(diag, OSSEG_ELIMIT, "graph has %zu nodes (max %d)", nn, MAX_NODES);
  struct osseg__op_use *u = err ? NULL : osseg__calloc(nn ? nn : 1, sizeof *u);
  if (!err && !u) err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  int n = 0;
  for (size_t i = 0; i < nn && !err; i++) {
    const char *op = gp->node[i]->op_type ? gp->node[i]->op_type : "";
    const char *dom = gp->node[i]->domain ? gp->node[i]->domain : "";
    if (!strcmp(dom, "ai.onnx")) dom = "";
    int k = 0;
    while (k < n && (strcmp(u[k].op, op) || strcmp(u[k].domain, dom))) k++;
    if (k == n) {
      snprintf(u[k].op, sizeof u[k].op, "%s", op);
      snprintf(u[k].domain, sizeof u[k].domain, "%s", dom);
      n++;
    }
    u[k].count++;
  }
  onnx__model_proto__free_unpacked(mp, &alloc);
  if (err) {
    osseg__free(u);
    return err;
  }
  *uses = u;
  *nuses = n;
  return 0;
}
