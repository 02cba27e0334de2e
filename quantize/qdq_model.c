/* The model being quantized: its ONNX protobuf, its Convs with their int8
 * weights, the tensors they read; and the QDQ writer, which packs the
 * original message with new node and initializer lists (every message the
 * quantizer does not change is written as it was read, unknown fields
 * included). */
#include "quantize_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "onnx.pb-c.h"

/* ---- Allocations of one write, freed together. */

struct pool {
  void **p;
  size_t n, cap;
};

static void *pool_alloc(struct pool *pl, size_t size) {
  if (pl->n == pl->cap) {
    size_t cap = pl->cap ? 2 * pl->cap : 256;
    void **p = osseg__realloc(pl->p, cap * sizeof *p);
    if (!p) return NULL;
    pl->p = p, pl->cap = cap;
  }
  void *b = osseg__calloc(1, size ? size : 1);
  if (b) pl->p[pl->n++] = b;
  return b;
}

static char *pool_printf(struct pool *pl, const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 1;
  char *s = pool_alloc(pl, n);
  if (s) snprintf(s, n, "%s%s", a, b);
  return s;
}

static void pool_free(struct pool *pl) {
  for (size_t i = 0; i < pl->n; i++) osseg__free(pl->p[i]);
  osseg__free(pl->p);
}

/* ---- Parsing. */

static int is_onnx_op(const Onnx__NodeProto *n, const char *op) {
  return n->op_type && !strcmp(n->op_type, op) &&
         (!n->domain || !n->domain[0] || !strcmp(n->domain, "ai.onnx"));
}

static int find_init(const Onnx__GraphProto *g, const char *name) {
  for (size_t i = 0; name && i < g->n_initializer; i++)
    if (g->initializer[i]->name && !strcmp(g->initializer[i]->name, name)) return (int)i;
  return -1;
}

static int find_act(struct osseg__qmodel *qm, const char *name) {
  for (size_t i = 0; i < qm->nact; i++)
    if (!strcmp(qm->act[i].name, name)) return (int)i;
  return -1;
}

/* The activation of tensor name, added to the list (room is reserved) if
 * new. */
static int activation(struct osseg__qmodel *qm, const char *name, const char *input) {
  int a = find_act(qm, name);
  if (a >= 0) return a;
  a = (int)qm->nact++;
  qm->act[a].name = name;
  qm->act[a].is_input = input && !strcmp(name, input);
  qm->act[a].grid_of = -1;
  qm->act[a].lo = INFINITY;
  qm->act[a].hi = -INFINITY;
  return a;
}

/* Is tensor name computed at run time (not empty, not an initializer, not
 * a Constant's output)? */
static int computed(const Onnx__GraphProto *g, const char *name) {
  if (!name || !name[0] || find_init(g, name) >= 0) return 0;
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    if (n->n_output && !strcmp(n->output[0], name)) return !is_onnx_op(n, "Constant");
  }
  return 1; /* a graph input, or a later output of some node (not a Constant's) */
}

/* Is node n's string attribute name equal to value (def: when absent)?
 * (The bytes are not NUL-terminated.) */
static int string_attr_is(const Onnx__NodeProto *n, const char *name, const char *value, int def) {
  for (size_t a = 0; a < n->n_attribute; a++)
    if (n->attribute[a]->name && !strcmp(n->attribute[a]->name, name))
      return n->attribute[a]->s.len == strlen(value) &&
             !memcmp(n->attribute[a]->s.data, value, n->attribute[a]->s.len);
  return def;
}

/* Does node n only select values of its input 0 (MaxPool, nearest Resize),
 * so that its output can stay on the input's grid? */
static int selects_values(const Onnx__NodeProto *n) {
  if (n->n_output != 1) return 0; /* (MaxPool's indices) */
  if (is_onnx_op(n, "MaxPool")) return 1;
  return is_onnx_op(n, "Resize") && string_attr_is(n, "mode", "nearest", 1);
}

/* ONNX Runtime's placement: every computed input of an Add of two computed
 * tensors, of a Concat, of a MaxPool or nearest Resize (input 0), and the
 * output of the last two again on their input's grid. A linear or cubic
 * Resize computes new values and stays float, input and output (ONNX
 * Runtime would quantize it too; where a model upsamples its logits, that
 * would quantize the logits). */
static void place_others(struct osseg__qmodel *qm, const char *input) {
  const Onnx__GraphProto *g = ((const Onnx__ModelProto *)qm->proto)->graph;
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    const int add = is_onnx_op(n, "Add"), cat = is_onnx_op(n, "Concat");
    const int one = selects_values(n);
    if (add && (n->n_input != 2 || !computed(g, n->input[0]) || !computed(g, n->input[1])))
      continue;
    size_t nin = add || cat ? n->n_input : one && n->n_input ? 1 : 0;
    for (size_t k = 0; k < nin; k++) {
      if (!computed(g, n->input[k])) continue;
      int a = activation(qm, n->input[k], input);
      qm->act[a].used = 1;
      qm->read[qm->nread++] = (struct osseg__qread){i, k, a};
    }
  }
  for (size_t i = 0; i < g->n_node; i++) { /* in node order: a chain's grid is set first */
    const Onnx__NodeProto *n = g->node[i];
    if (!n->n_input || !selects_values(n)) continue;
    int a = find_act(qm, n->input[0]);
    if (a < 0 || !qm->act[a].used) continue;
    int o = activation(qm, n->output[0], input);
    qm->act[o].used = 1;
    qm->act[o].grid_of = qm->act[a].grid_of >= 0 ? qm->act[a].grid_of : a;
  }
}

/* The float values of a weight initializer (NULL + *why when unusable). */
static const float *weight_values(const Onnx__TensorProto *t, size_t *count, const char **why) {
  size_t n = 1;
  if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || t->n_dims != 4) {
    *why = "weights are not a float32 4-D initializer";
    return NULL;
  }
  for (size_t d = 0; d < 4; d++) {
    if (t->dims[d] <= 0 || osseg__mul_size(n, (size_t)t->dims[d], &n)) {
      *why = "weights have an invalid shape";
      return NULL;
    }
  }
  *count = n;
  if (t->n_external_data || (t->has_data_location && t->data_location)) {
    *why = "weights are stored outside the file";
    return NULL;
  }
  if (t->has_raw_data && t->raw_data.len == n * sizeof(float)) return (const float *)t->raw_data.data;
  if (t->n_float_data == n) return t->float_data;
  *why = "weights have the wrong number of values";
  return NULL;
}

static void quantize_channels(struct osseg__qconv *c, const float *w);

/* Per output channel symmetric int8: scale = max |w| / 127 (1 for an
 * all-zero channel, whose values are 0 anyway). */
static int quantize_weights(struct osseg__qconv *c, const Onnx__TensorProto *t, const float *mul) {
  size_t n = 0;
  const float *w = weight_values(t, &n, &c->why);
  if (!w) return 0;
  float *folded = NULL;
  if (mul) { /* BN folded: w * mul[oc] */
    if (!(folded = osseg__malloc(n * sizeof *folded))) return OSSEG_ENOMEM;
    size_t per = n / (size_t)t->dims[0];
    for (size_t i = 0; i < n; i++) folded[i] = w[i] * mul[i / per];
    w = folded;
  }
  c->oc = t->dims[0];
  c->per_oc = n / (size_t)c->oc;
  c->w8 = osseg__malloc(n);
  c->wscale = osseg__malloc((size_t)c->oc * sizeof(float));
  int err = c->w8 && c->wscale ? 0 : OSSEG_ENOMEM;
  if (!err) quantize_channels(c, w);
  osseg__free(folded);
  return err;
}

static void quantize_channels(struct osseg__qconv *c, const float *w) {
  for (int64_t o = 0; o < c->oc; o++) {
    const float *wo = w + (size_t)o * c->per_oc;
    float mx = 0;
    for (size_t i = 0; i < c->per_oc; i++) {
      float v = wo[i];
      if (!isfinite(v)) {
        c->why = "weights are not finite";
        return;
      }
      mx = fmaxf(mx, fabsf(v));
    }
    float s = mx > 0 ? (float)((double)mx / 127.0) : 1.0f;
    if (!(s > 0) || !isfinite(s)) s = 1.0f; /* subnormal max: values round to 0 */
    c->wscale[o] = s;
    for (size_t i = 0; i < c->per_oc; i++) {
      double q = nearbyint((double)wo[i] / (double)s);
      c->w8[(size_t)o * c->per_oc + i] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
    }
  }
}

/* The float values of an initializer named name with exactly n of them. */
static const float *float_init(const Onnx__GraphProto *g, const char *name, size_t n) {
  int i = find_init(g, name);
  if (i < 0) return NULL;
  const Onnx__TensorProto *t = g->initializer[i];
  if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || t->n_external_data) return NULL;
  if (t->has_raw_data && t->raw_data.len == n * sizeof(float)) return (const float *)t->raw_data.data;
  return t->n_float_data == n ? t->float_data : NULL;
}

/* The BatchNormalization (inference form, constant parameters) that is the
 * only reader of conv node ci's output, or -1; its scale per output channel
 * into mul and the folded bias into c->bias. */
static int find_bn(const Onnx__GraphProto *g, size_t ci, int64_t oc, struct osseg__qconv *c,
                   float **mul) {
  const Onnx__NodeProto *conv = g->node[ci];
  const char *y = conv->n_output == 1 ? conv->output[0] : NULL;
  if (!y || oc <= 0) return -1;
  int bn = -1, readers = 0;
  for (size_t i = 0; i < g->n_node; i++)
    for (size_t k = 0; k < g->node[i]->n_input; k++)
      if (!strcmp(g->node[i]->input[k], y)) readers++, bn = is_onnx_op(g->node[i], "BatchNormalization") ? (int)i : bn;
  for (size_t i = 0; i < g->n_output; i++) readers += g->output[i]->name && !strcmp(g->output[i]->name, y);
  if (readers != 1 || bn < 0) return -1;
  const Onnx__NodeProto *b = g->node[bn];
  if (b->n_input != 5 || b->n_output != 1) return -1;
  double eps = 1e-5;
  for (size_t a = 0; a < b->n_attribute; a++) {
    if (b->attribute[a]->name && !strcmp(b->attribute[a]->name, "epsilon")) eps = b->attribute[a]->f;
    if (b->attribute[a]->name && !strcmp(b->attribute[a]->name, "training_mode") && b->attribute[a]->i)
      return -1;
  }
  const size_t n = (size_t)oc;
  const float *sc = float_init(g, b->input[1], n), *bb = float_init(g, b->input[2], n),
              *mean = float_init(g, b->input[3], n), *var = float_init(g, b->input[4], n);
  const float *bias = conv->n_input >= 3 && conv->input[2][0] ? float_init(g, conv->input[2], n) : NULL;
  if (!sc || !bb || !mean || !var || (conv->n_input >= 3 && conv->input[2][0] && !bias)) return -1;
  *mul = osseg__malloc(n * sizeof **mul);
  c->bias = osseg__malloc(n * sizeof *c->bias);
  if (!*mul || !c->bias) return -2;
  for (size_t o = 0; o < n; o++) {
    double s = (double)sc[o] / sqrt((double)var[o] + eps);
    (*mul)[o] = (float)s;
    c->bias[o] = (float)(((bias ? bias[o] : 0.0) - mean[o]) * s + bb[o]);
    if (!isfinite((*mul)[o]) || !isfinite(c->bias[o])) return -1;
  }
  return bn;
}

void osseg__qmodel_free(struct osseg__qmodel *qm) {
  for (size_t i = 0; i < qm->nconv; i++) {
    osseg__free(qm->conv[i].name);
    osseg__free(qm->conv[i].w8);
    osseg__free(qm->conv[i].wscale);
    osseg__free(qm->conv[i].bias);
  }
  for (size_t i = 0; i < qm->nact; i++) osseg__free(qm->act[i].hist);
  osseg__free(qm->conv);
  osseg__free(qm->act);
  osseg__free(qm->read);
  if (qm->proto) onnx__model_proto__free_unpacked(qm->proto, NULL);
  memset(qm, 0, sizeof *qm);
}

int osseg__qmodel_parse(struct osseg__qmodel *qm, const void *data, size_t size,
                        enum osseg_qdq_placement placement, struct osseg_diag *diag) {
  memset(qm, 0, sizeof *qm);
  Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, size, data);
  if (!mp || !mp->graph) {
    if (mp) onnx__model_proto__free_unpacked(mp, NULL);
    return osseg__fail(diag, OSSEG_EPARSE, "not an ONNX model (protobuf parse failed)");
  }
  qm->proto = mp;
  const Onnx__GraphProto *g = mp->graph;
  qm->opset = -1;
  for (size_t i = 0; i < mp->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
    if (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) qm->opset = (int)o->version;
  }
  int err = 0;
  if (qm->opset < 13)
    err = osseg__fail(diag, OSSEG_EUNSUPPORTED,
                      "opset %d: quantizing needs opset 13 or later (per-channel "
                      "DequantizeLinear); export the model with opset_version >= 13",
                      qm->opset);
  size_t nconv = 0;
  size_t nothers = 0; /* other reads and outputs the ort placement may quantize */
  for (size_t i = 0; !err && i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    if (is_onnx_op(n, "QuantizeLinear") || is_onnx_op(n, "DequantizeLinear") ||
        is_onnx_op(n, "QLinearConv") || is_onnx_op(n, "ConvInteger"))
      err = osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (%s): the model is quantized already",
                        n->name ? n->name : "", n->op_type);
    nconv += is_onnx_op(n, "Conv") && n->n_input >= 2;
    if (is_onnx_op(n, "Add") || is_onnx_op(n, "Concat")) nothers += n->n_input;
    if (is_onnx_op(n, "MaxPool") || is_onnx_op(n, "Resize")) nothers += 2;
  }
  if (placement == OSSEG_QDQ_CONVS) nothers = 0;
  if (!err && !nconv) err = osseg__fail(diag, OSSEG_EUNSUPPORTED, "the model has no Conv to quantize");
  if (!err) {
    qm->conv = osseg__calloc(nconv, sizeof *qm->conv);
    qm->act = osseg__calloc(nconv + nothers, sizeof *qm->act);
    qm->read = osseg__calloc(nothers + 1, sizeof *qm->read);
    if (!qm->conv || !qm->act || !qm->read) err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  const char *input = NULL; /* the graph input that is not an initializer */
  for (size_t i = 0; !err && i < g->n_input && !input; i++)
    if (find_init(g, g->input[i]->name) < 0) input = g->input[i]->name;
  for (size_t i = 0; !err && i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    if (!is_onnx_op(n, "Conv") || n->n_input < 2) continue;
    struct osseg__qconv *c = &qm->conv[qm->nconv++];
    c->node = i;
    c->weight = -1;
    c->bn = -1;
    char buf[32];
    snprintf(buf, sizeof buf, "Conv#%zu", i);
    c->name = osseg__strndup(n->name && n->name[0] ? n->name : buf, 4096);
    if (!c->name) {
      err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      break;
    }
    const char *x = n->input[0];
    int a = activation(qm, x, input);
    c->act = a;
    int w = find_init(g, n->input[1]);
    if (find_init(g, x) >= 0) {
      c->why = "its input is a constant";
    } else if (w < 0) {
      c->why = "weights are not an initializer";
    } else {
      float *mul = NULL;
      const Onnx__TensorProto *wt = g->initializer[w];
      c->bn = wt->n_dims == 4 ? find_bn(g, i, wt->dims[0], c, &mul) : -1;
      if (c->bn < 0) { /* (none, or not foldable: the conv is quantized as it is) */
        osseg__free(mul);
        osseg__free(c->bias);
        mul = NULL, c->bias = NULL;
      }
      err = c->bn == -2 ? OSSEG_ENOMEM : quantize_weights(c, wt, mul);
      osseg__free(mul);
      if (err) {
        err = osseg__fail(diag, err, "out of memory");
        break;
      }
      if (!c->why) c->weight = w;
    }
    if (c->weight >= 0) qm->act[a].used = 1;
  }
  if (!err && placement == OSSEG_QDQ_ORT) place_others(qm, input);
  if (err) osseg__qmodel_free(qm);
  return err;
}

/* ---- Writing. */

/* Is name taken by any tensor or node output of the model? */
static int name_taken(const Onnx__GraphProto *g, const char *name) {
  for (size_t i = 0; i < g->n_node; i++)
    for (size_t o = 0; o < g->node[i]->n_output; o++)
      if (!strcmp(g->node[i]->output[o], name)) return 1;
  for (size_t i = 0; i < g->n_input; i++)
    if (g->input[i]->name && !strcmp(g->input[i]->name, name)) return 1;
  return find_init(g, name) >= 0;
}

static Onnx__TensorProto *new_tensor(struct pool *pl, const char *name, int dtype,
                                     const int64_t *dims, size_t rank, const void *data,
                                     size_t bytes) {
  Onnx__TensorProto *t = pool_alloc(pl, sizeof *t);
  int64_t *d = pool_alloc(pl, rank * sizeof *d);
  void *b = pool_alloc(pl, bytes);
  if (!t || !d || !b) return NULL;
  onnx__tensor_proto__init(t);
  t->name = (char *)name;
  t->has_data_type = 1;
  t->data_type = dtype;
  if (rank) memcpy(d, dims, rank * sizeof *d);
  t->n_dims = rank;
  t->dims = d;
  memcpy(b, data, bytes);
  t->has_raw_data = 1;
  t->raw_data.len = bytes;
  t->raw_data.data = b;
  return t;
}

static Onnx__NodeProto *new_node(struct pool *pl, const char *op, const char *name,
                                 const char *in0, const char *in1, const char *in2,
                                 const char *out, int axis) {
  Onnx__NodeProto *n = pool_alloc(pl, sizeof *n);
  char **in = pool_alloc(pl, 3 * sizeof *in), **o = pool_alloc(pl, sizeof *o);
  if (!n || !in || !o) return NULL;
  onnx__node_proto__init(n);
  n->op_type = (char *)op;
  n->name = (char *)name;
  in[0] = (char *)in0, in[1] = (char *)in1, in[2] = (char *)in2;
  n->n_input = 3;
  n->input = in;
  o[0] = (char *)out;
  n->n_output = 1;
  n->output = o;
  if (axis >= 0) {
    Onnx__AttributeProto *a = pool_alloc(pl, sizeof *a);
    Onnx__AttributeProto **al = pool_alloc(pl, sizeof *al);
    if (!a || !al) return NULL;
    onnx__attribute_proto__init(a);
    a->name = "axis";
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = axis;
    al[0] = a;
    n->n_attribute = 1;
    n->attribute = al;
  }
  return n;
}

/* Names of the tensors one quantized activation or weight adds. */
struct qnames {
  char *scale, *zero, *q, *dq, *qnode, *dqnode;
};

static int make_names(struct pool *pl, const Onnx__GraphProto *g, const char *base,
                      struct qnames *nm, struct osseg_diag *diag) {
  nm->scale = pool_printf(pl, base, "_scale");
  nm->zero = pool_printf(pl, base, "_zero_point");
  nm->q = pool_printf(pl, base, "_quantized");
  nm->dq = pool_printf(pl, base, "_dequantized");
  nm->qnode = pool_printf(pl, base, "_QuantizeLinear");
  nm->dqnode = pool_printf(pl, base, "_DequantizeLinear");
  if (!nm->scale || !nm->zero || !nm->q || !nm->dq || !nm->qnode || !nm->dqnode)
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  const char *all[] = {nm->scale, nm->zero, nm->q, nm->dq};
  for (size_t i = 0; i < 4; i++)
    if (name_taken(g, all[i]))
      return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                         "tensor '%s' exists already: cannot name the quantization of '%s'",
                         all[i], base);
  return 0;
}

/* Does any of the n nodes read tensor name? */
static int read_by(Onnx__NodeProto *const *nodes, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < nodes[i]->n_input; k++)
      if (!strcmp(nodes[i]->input[k], name)) return 1;
  return 0;
}

/* The quantized conv of node i, or NULL. */
static const struct osseg__qconv *quantized_conv(const struct osseg__qmodel *qm,
                                                 const unsigned char *quantize, size_t i, int bn) {
  for (size_t k = 0; k < qm->nconv; k++)
    if (quantize[k] && qm->conv[k].weight >= 0 && (bn ? qm->conv[k].bn == (int)i : qm->conv[k].node == i))
      return &qm->conv[k];
  return NULL;
}

/* Quantize -> Dequantize of activation a (its first quantized reader is
 * next), into nodes[] and added[]; *dq: the dequantized tensor's name. */
static int quantize_activation(struct pool *pl, const Onnx__GraphProto *g,
                               const struct osseg__qact *a, Onnx__NodeProto **nodes, size_t *nn,
                               Onnx__TensorProto **added, size_t *na, char **dq_name,
                               struct osseg_diag *diag) {
  struct qnames nm;
  int err = make_names(pl, g, a->name, &nm, diag);
  if (err) return err;
  const int64_t none = 0;
  const uint8_t z = (uint8_t)a->zero;
  Onnx__TensorProto *ts = new_tensor(pl, nm.scale, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, &none, 0,
                                     &a->scale, sizeof a->scale);
  Onnx__TensorProto *tz = new_tensor(pl, nm.zero, ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, &none, 0,
                                     &z, 1);
  Onnx__NodeProto *q = new_node(pl, "QuantizeLinear", nm.qnode, a->name, nm.scale, nm.zero, nm.q,
                                -1);
  Onnx__NodeProto *dq = new_node(pl, "DequantizeLinear", nm.dqnode, nm.q, nm.scale, nm.zero,
                                 nm.dq, -1);
  if (!ts || !tz || !q || !dq) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  added[(*na)++] = ts, added[(*na)++] = tz;
  nodes[(*nn)++] = q, nodes[(*nn)++] = dq;
  *dq_name = nm.dq;
  return 0;
}

int osseg__qmodel_write(const struct osseg__qmodel *qm, const unsigned char *quantize, int others,
                        const char *note, void **out, size_t *size, struct osseg_diag *diag) {
  const Onnx__ModelProto *mp = qm->proto;
  const Onnx__GraphProto *g = mp->graph;
  struct pool pl = {0};
  int err = 0;
  *out = NULL;
  *size = 0;
  /* at most 2 nodes per activation and 1 per weight (plus the conv copy);
   * 2 initializers per activation, 4 per conv */
  size_t cap_nodes = g->n_node + 2 * qm->nact + qm->nconv,
         cap_new = 2 * qm->nact + 4 * qm->nconv + 1;
  Onnx__NodeProto **nodes = pool_alloc(&pl, cap_nodes * sizeof *nodes);
  Onnx__TensorProto **added = pool_alloc(&pl, cap_new * sizeof *added);
  Onnx__TensorProto **inits = pool_alloc(&pl, (g->n_initializer + cap_new) * sizeof *inits);
  Onnx__ValueInfoProto **inputs = pool_alloc(&pl, (g->n_input + 1) * sizeof *inputs);
  Onnx__StringStringEntryProto **meta = pool_alloc(&pl, (mp->n_metadata_props + 1) * sizeof *meta);
  unsigned char *act_done = pool_alloc(&pl, qm->nact + 1);
  char **act_dq = pool_alloc(&pl, (qm->nact + 1) * sizeof *act_dq);
  /* per initializer: its int8 version written (unfolded weights shared by
   * several convs are written once), and its DequantizeLinear output */
  unsigned char *init_done = pool_alloc(&pl, g->n_initializer + 1);
  char **init_dq = pool_alloc(&pl, (g->n_initializer + 1) * sizeof *init_dq);
  unsigned char *dropped = pool_alloc(&pl, g->n_initializer + 1);
  if (!nodes || !added || !inits || !inputs || !meta || !act_done || !act_dq || !init_done ||
      !init_dq || !dropped) {
    pool_free(&pl);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  size_t nn = 0, na = 0, r = 0;
  for (size_t i = 0; !err && i < g->n_node; i++) {
    if (quantized_conv(qm, quantize, i, 1)) continue; /* a BN folded into its conv */
    const struct osseg__qconv *c = quantized_conv(qm, quantize, i, 0);
    /* Q -> DQ of each quantized input before its first quantized reader:
     * this node's reads of the placement read[r0..r), or a conv's input */
    size_t r0 = r;
    while (r < qm->nread && qm->read[r].node == i) r++;
    if (!others) r0 = r; /* (this node's reads stay float) */
    const size_t nq = r - r0 + (c != NULL);
    for (size_t k = 0; !err && k < nq; k++) {
      int a = r0 + k < r ? qm->read[r0 + k].act : c->act;
      if (!act_done[a])
        err = quantize_activation(&pl, g, &qm->act[a], nodes, &nn, added, &na, &act_dq[a], diag);
      act_done[a] = 1;
    }
    if (err) break;
    if (!c && r0 == r) {
      nodes[nn++] = g->node[i];
      continue;
    }
    if (!c) { /* another operator reading dequantized inputs */
      Onnx__NodeProto *copy = pool_alloc(&pl, sizeof *copy);
      char **in = pool_alloc(&pl, g->node[i]->n_input * sizeof *in);
      if (!copy || !in) {
        err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
        break;
      }
      *copy = *g->node[i];
      memcpy(in, copy->input, copy->n_input * sizeof *in);
      for (size_t k = r0; k < r; k++) in[qm->read[k].input] = act_dq[qm->read[k].act];
      copy->input = in;
      nodes[nn++] = copy;
      continue;
    }
    struct qnames nm;
    const Onnx__NodeProto *orig = g->node[i];
    const Onnx__NodeProto *bn = c->bn >= 0 ? g->node[c->bn] : NULL;
    const Onnx__TensorProto *wt = g->initializer[c->weight];
    const char *wdq = init_dq[c->weight], *bias = NULL;
    if (bn || !init_done[c->weight]) { /* int8 weights and their DequantizeLinear */
      /* folded weights are the conv's own: named after the BN's output */
      char *base = bn ? pool_printf(&pl, bn->output[0], "_weight") : wt->name;
      if (!base || (err = make_names(&pl, g, base, &nm, diag))) {
        if (!err) err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
        break;
      }
      const int64_t oc = c->oc;
      int8_t *zeros = pool_alloc(&pl, (size_t)oc);
      Onnx__TensorProto *tw = new_tensor(&pl, nm.q, ONNX__TENSOR_PROTO__DATA_TYPE__INT8, wt->dims, 4,
                                         c->w8, (size_t)oc * c->per_oc);
      Onnx__TensorProto *ts = new_tensor(&pl, nm.scale, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, &oc,
                                         1, c->wscale, (size_t)oc * sizeof(float));
      Onnx__TensorProto *tz = zeros ? new_tensor(&pl, nm.zero, ONNX__TENSOR_PROTO__DATA_TYPE__INT8,
                                                 &oc, 1, zeros, (size_t)oc)
                                    : NULL;
      Onnx__NodeProto *dq = new_node(&pl, "DequantizeLinear", nm.dqnode, nm.q, nm.scale, nm.zero,
                                     nm.dq, 0);
      if (!tw || !ts || !tz || !dq) {
        err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
        break;
      }
      added[na++] = tw, added[na++] = ts, added[na++] = tz;
      nodes[nn++] = dq;
      wdq = nm.dq;
      if (!bn) init_done[c->weight] = 1, init_dq[c->weight] = nm.dq;
    }
    if (bn) { /* the folded bias */
      char *bname = pool_printf(&pl, bn->output[0], "_bias");
      const int64_t oc = c->oc;
      Onnx__TensorProto *tb = bname ? new_tensor(&pl, bname, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
                                                 &oc, 1, c->bias, (size_t)oc * sizeof(float))
                                    : NULL;
      if (!tb) {
        err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
        break;
      }
      if (name_taken(g, bname)) {
        err = osseg__fail(diag, OSSEG_EUNSUPPORTED, "tensor '%s' exists already", bname);
        break;
      }
      added[na++] = tb;
      bias = bname;
    }
    /* the conv itself, reading the dequantized input and weights (and
     * writing the BN's output when it took the BN over) */
    Onnx__NodeProto *conv = pool_alloc(&pl, sizeof *conv);
    size_t nin = orig->n_input < 3 && bias ? 3 : orig->n_input;
    char **in = pool_alloc(&pl, nin * sizeof *in);
    if (!conv || !in) {
      err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      break;
    }
    *conv = *orig;
    memcpy(in, orig->input, orig->n_input * sizeof *in);
    in[0] = act_dq[c->act];
    in[1] = (char *)wdq;
    if (bias) {
      in[2] = (char *)bias;
      conv->output = bn->output;
      conv->n_output = 1;
    }
    conv->input = in;
    conv->n_input = nin;
    nodes[nn++] = conv;
  }
  /* initializers: the original ones some node still reads (or no node
   * read before), then the new ones; graph inputs naming dropped
   * initializers (old exports list them) go too */
  size_t ni = 0;
  for (size_t i = 0; !err && i < g->n_initializer; i++) {
    const char *name = g->initializer[i]->name;
    dropped[i] = name && !read_by(nodes, nn, name) && read_by(g->node, g->n_node, name);
    if (!dropped[i]) inits[ni++] = g->initializer[i];
  }
  for (size_t i = 0; i < na; i++) inits[ni++] = added[i];
  size_t nin = 0;
  for (size_t i = 0; i < g->n_input; i++) {
    int w = find_init(g, g->input[i]->name);
    if (w < 0 || !dropped[w]) inputs[nin++] = g->input[i];
  }
  size_t nmeta = mp->n_metadata_props;
  if (mp->n_metadata_props) memcpy(meta, mp->metadata_props, nmeta * sizeof *meta);
  if (!err && note) {
    Onnx__StringStringEntryProto *e = pool_alloc(&pl, sizeof *e);
    if (!e) err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    if (!err) {
      onnx__string_string_entry_proto__init(e);
      e->key = "osseg.quantized";
      e->value = (char *)note;
      meta[nmeta++] = e;
    }
  }
  if (!err) {
    Onnx__GraphProto g2 = *g;
    Onnx__ModelProto m2 = *mp;
    g2.node = nodes, g2.n_node = nn;
    g2.initializer = inits, g2.n_initializer = ni;
    g2.input = inputs, g2.n_input = nin;
    m2.graph = &g2;
    m2.metadata_props = meta, m2.n_metadata_props = nmeta;
    size_t bytes = onnx__model_proto__get_packed_size(&m2);
    uint8_t *buf = osseg__malloc(bytes ? bytes : 1);
    if (!buf) {
      err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory (%zu bytes)", bytes);
    } else {
      onnx__model_proto__pack(&m2, buf);
      *out = buf;
      *size = bytes;
    }
  }
  pool_free(&pl);
  return err;
}
