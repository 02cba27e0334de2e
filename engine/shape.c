/* Static shape inference for a fixed input size, node by node in file
 * order, with constant folding of nodes whose inputs are all known. */
#include "engine_internal.h"

#include <math.h>
#include <string.h>

/* Allow-list: op name, first supported opset, runtime-capable (else it is
 * only accepted when it can be folded to a constant). */
struct op_entry {
  const char *op;
  int min_opset;
  int runtime;
};
static const struct op_entry ops[] = {
    {"Conv", 1, 1},         {"ConvTranspose", 1, 1},   {"BatchNormalization", 7, 1},
    {"Relu", 6, 1},         {"LeakyRelu", 6, 1},       {"Sigmoid", 6, 1},
    {"HardSigmoid", 6, 1},  {"HardSwish", 14, 1},      {"Clip", 6, 1},
    {"Mul", 7, 1},          {"Add", 7, 1},             {"Sub", 7, 1},
    {"Div", 7, 1},          {"MaxPool", 1, 1},         {"AveragePool", 1, 1},
    {"GlobalAveragePool", 1, 1}, {"GlobalMaxPool", 1, 1}, {"ReduceMean", 1, 1},
    {"Resize", 10, 1},      {"Upsample", 7, 1},        {"Concat", 4, 1},
    {"Pad", 2, 1},          {"Identity", 1, 1},        {"Dropout", 7, 1},
    {"Flatten", 1, 1},      {"Reshape", 5, 1},         {"Transpose", 1, 1},
    {"Squeeze", 1, 1},      {"Unsqueeze", 1, 1},
    /* transformer ops (shape rules in transformer_shape.c) */
    {"MatMul", 1, 1},       {"Gemm", 7, 1},            {"Softmax", 1, 1},
    {"LayerNormalization", 17, 1}, {"Erf", 9, 1},      {"Gelu", 20, 1},
    {"Split", 2, 1},
    /* shape arithmetic: constant folding only */
    {"Shape", 1, 0},        {"Gather", 1, 1},          {"Cast", 6, 0},
    {"ConstantOfShape", 9, 0}, {"Slice", 1, 1},        {"Equal", 7, 0},
    {"Where", 9, 0},        {"Expand", 8, 0},          {"Floor", 6, 0},
    {"Ceil", 6, 0},         {"Neg", 6, 0},             {"Sqrt", 6, 1},
    {"Reciprocal", 6, 0},   {"Range", 11, 0},          {"Less", 7, 0},
    {"Greater", 7, 0},      {"Not", 1, 0},             {"Min", 6, 0},
    {"Max", 6, 0},          {"Pow", 7, 1},             {"Abs", 6, 0},
};

static const struct op_entry *find_op(const char *op) {
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strcmp(ops[i].op, op) == 0) return &ops[i];
  return NULL;
}

#define FAIL(code, ...) osseg__fail(diag, code, __VA_ARGS__)
#define NODEFMT "node '%s' (%s, opset %d): "
#define NODEARG n->name, n->op, g->opset

static struct osseg__tensor *IN(struct osseg__graph *g, struct osseg__node *n, int i) {
  return i < n->nin && n->in[i] >= 0 ? &g->tensors[n->in[i]] : NULL;
}

int osseg__broadcast(const struct osseg__tensor *a, const struct osseg__tensor *b,
                     struct osseg__tensor *out) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 0; i < r; i++) {
    int ia = i - (r - a->rank), ib = i - (r - b->rank);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da != db && da != 1 && db != 1) return OSSEG_ESHAPE;
    out->dims[i] = da == 1 ? db : da;
  }
  out->rank = r;
  return 0;
}

/* Reads an int list from attribute `attr` or constant input `idx`. Returns
 * count, 0 if absent, <0 on error (non-constant input). */
static int int_list(struct osseg__graph *g, struct osseg__node *n, const char *attr, int idx,
                    int64_t *out, int max, struct osseg_diag *diag) {
  const struct osseg__attr *a = attr ? osseg__attr_find(n, attr) : NULL;
  if (a && a->type == OSSEG__ATTR_INTS) {
    if (a->n > (size_t)max) return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "attribute '%s' too long", NODEARG, attr);
    for (size_t i = 0; i < a->n; i++) out[i] = a->ints[i];
    return (int)a->n;
  }
  struct osseg__tensor *t = idx >= 0 ? IN(g, n, idx) : NULL;
  if (!t) return 0;
  if (!t->data)
    return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "input %d ('%s') must be a constant (computed at load)",
                NODEARG, idx, t->name);
  size_t e;
  if (osseg__tensor_elems(g, t, &e) || e > (size_t)max)
    return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "input '%s' has too many values", NODEARG, t->name);
  for (size_t i = 0; i < e; i++) out[i] = osseg__const_i64(t, i);
  return (int)e;
}

static int need_rank4(struct osseg__graph *g, struct osseg__node *n, struct osseg__tensor *x,
                      struct osseg_diag *diag) {
  if (!x || x->rank != 4)
    return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "needs a 4-D (N,C,H,W) input, got rank %d", NODEARG,
                x ? x->rank : -1);
  return 0;
}

/* Spatial output size and begin/end pads for conv and pooling. */
static int window(struct osseg__graph *g, struct osseg__node *n, const int64_t *in_hw,
                  const int64_t *k, int64_t *strides, int64_t *dil, int64_t *pb, int64_t *pe,
                  int ceil_mode, int64_t *out_hw, struct osseg_diag *diag) {
  int64_t tmp[8];
  int c = int_list(g, n, "strides", -1, tmp, 8, diag);
  if (c < 0) return c;
  for (int i = 0; i < 2; i++) strides[i] = c == 2 ? tmp[i] : 1;
  c = int_list(g, n, "dilations", -1, tmp, 8, diag);
  if (c < 0) return c;
  for (int i = 0; i < 2; i++) dil[i] = c == 2 ? tmp[i] : 1;
  c = int_list(g, n, "pads", -1, tmp, 8, diag);
  if (c < 0) return c;
  if (c != 0 && c != 4) return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "pads must have 4 values", NODEARG);
  for (int i = 0; i < 2; i++) {
    pb[i] = c == 4 ? tmp[i] : 0;
    pe[i] = c == 4 ? tmp[i + 2] : 0;
  }
  const char *ap = osseg__attr_str(n, "auto_pad", "NOTSET");
  for (int i = 0; i < 2; i++) {
    if (strides[i] < 1 || strides[i] > 64 || dil[i] < 1 || dil[i] > 1024 || k[i] < 1 ||
        k[i] > 4096 || pb[i] < 0 || pe[i] < 0 || pb[i] > 4096 || pe[i] > 4096)
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "kernel/stride/dilation/pad out of range", NODEARG);
    int64_t keff = (k[i] - 1) * dil[i] + 1;
    if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
      int64_t o = (in_hw[i] + strides[i] - 1) / strides[i];
      int64_t tot = (o - 1) * strides[i] + keff - in_hw[i];
      if (tot < 0) tot = 0;
      pb[i] = strcmp(ap, "SAME_UPPER") == 0 ? tot / 2 : tot - tot / 2;
      pe[i] = tot - pb[i];
    } else if (strcmp(ap, "VALID") == 0) {
      pb[i] = pe[i] = 0;
    } else if (strcmp(ap, "NOTSET") != 0) {
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "auto_pad '%s' unknown", NODEARG, ap);
    }
    int64_t span = in_hw[i] + pb[i] + pe[i] - keff;
    if (span < 0) return FAIL(OSSEG_ESHAPE, NODEFMT "kernel larger than padded input", NODEARG);
    int64_t o = ceil_mode ? (span + strides[i] - 1) / strides[i] + 1 : span / strides[i] + 1;
    if (ceil_mode && (o - 1) * strides[i] >= in_hw[i] + pb[i]) o--;
    out_hw[i] = o;
  }
  return 0;
}

int osseg__window_of(struct osseg__graph *g, struct osseg__node *n, struct osseg__window *w,
                     struct osseg_diag *diag) {
  struct osseg__tensor *x = IN(g, n, 0);
  int deconv = strcmp(n->op, "ConvTranspose") == 0;
  memset(w, 0, sizeof *w);
  if (!strcmp(n->op, "BatchNormalization")) {
    for (int i = 0; i < 2; i++) w->k[i] = w->s[i] = w->d[i] = 1, w->out[i] = x->dims[2 + i];
    return 0;
  }
  if (!strncmp(n->op, "Global", 6)) {
    for (int i = 0; i < 2; i++) w->k[i] = x->dims[2 + i], w->s[i] = w->d[i] = w->out[i] = 1;
    return 0;
  }
  if (!strcmp(n->op, "Conv") || deconv) {
    struct osseg__tensor *wt = IN(g, n, 1);
    w->k[0] = wt->dims[2];
    w->k[1] = wt->dims[3];
  } else {
    int c = int_list(g, n, "kernel_shape", -1, w->k, 2, diag);
    if (c < 0) return c;
    if (c != 2) return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "kernel_shape must have 2 values", NODEARG);
  }
  int ceil_mode = (int)osseg__attr_int(n, "ceil_mode", 0);
  if (!deconv)
    return window(g, n, &x->dims[2], w->k, w->s, w->d, w->pb, w->pe, ceil_mode, w->out, diag);
  /* ConvTranspose: parse attributes through window(), then the transposed
   * output formula. */
  int64_t big[2] = {x->dims[2] + 8192, x->dims[3] + 8192}, o[2];
  int err = window(g, n, big, w->k, w->s, w->d, w->pb, w->pe, 0, o, diag);
  if (err) return err;
  int64_t op[8], os[8];
  int nop = int_list(g, n, "output_padding", -1, op, 8, diag);
  int nos = int_list(g, n, "output_shape", -1, os, 8, diag);
  if (nop < 0 || nos < 0) return -1;
  const char *ap = osseg__attr_str(n, "auto_pad", "NOTSET");
  for (int i = 0; i < 2; i++) {
    int64_t opad = nop == 2 ? op[i] : 0;
    if (opad < 0 || opad >= w->s[i] + w->d[i])
      return FAIL(OSSEG_ESHAPE, NODEFMT "output_padding out of range", NODEARG);
    int64_t keff = (w->k[i] - 1) * w->d[i] + 1;
    int64_t full = w->s[i] * (x->dims[2 + i] - 1) + opad + keff;
    if (nos >= 2 || strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
      int64_t want = nos >= 2 ? os[nos - 2 + i] : x->dims[2 + i] * w->s[i];
      int64_t tot = full - want;
      if (tot < 0) return FAIL(OSSEG_ESHAPE, NODEFMT "output_shape too large", NODEARG);
      w->pb[i] = strcmp(ap, "SAME_LOWER") == 0 ? tot - tot / 2 : tot / 2;
      w->pe[i] = tot - w->pb[i];
    }
    w->out[i] = full - w->pb[i] - w->pe[i];
    if (w->out[i] < 1) return FAIL(OSSEG_ESHAPE, NODEFMT "output size < 1", NODEARG);
  }
  return 0;
}

static int infer_conv(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = IN(g, n, 0), *w = IN(g, n, 1), *b = IN(g, n, 2);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err = need_rank4(g, n, x, diag);
  if (err) return err;
  if (!w || !w->data || w->rank != 4 || w->dtype != OSSEG__DT_FLOAT)
    return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "weights must be a constant float32 4-D tensor",
                NODEARG);
  if (b && (!b->data || b->rank != 1 || b->dtype != OSSEG__DT_FLOAT))
    return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "bias must be a constant float32 vector", NODEARG);
  int64_t group = osseg__attr_int(n, "group", 1);
  int deconv = strcmp(n->op, "ConvTranspose") == 0;
  int64_t C = x->dims[1];
  int64_t M = deconv ? w->dims[1] * group : w->dims[0];
  if (group < 1 || C % group || (deconv ? w->dims[0] != C : w->dims[1] * group != C) ||
      (!deconv && M % group))
    return FAIL(OSSEG_ESHAPE, NODEFMT "weights %lldx%lldx%lldx%lld do not match %lld input "
                "channels with group %lld", NODEARG, (long long)w->dims[0], (long long)w->dims[1],
                (long long)w->dims[2], (long long)w->dims[3], (long long)C, (long long)group);
  if (b && b->dims[0] != M)
    return FAIL(OSSEG_ESHAPE, NODEFMT "bias has %lld values, need %lld", NODEARG,
                (long long)b->dims[0], (long long)M);
  int64_t k[2] = {w->dims[2], w->dims[3]}, ks[8];
  int c = int_list(g, n, "kernel_shape", -1, ks, 8, diag);
  if (c < 0) return c;
  if (c && (c != 2 || ks[0] != k[0] || ks[1] != k[1]))
    return FAIL(OSSEG_ESHAPE, NODEFMT "kernel_shape disagrees with the weights", NODEARG);
  struct osseg__window win;
  err = osseg__window_of(g, n, &win, diag);
  if (err) return err;
  int64_t *o = win.out;
  y->dtype = OSSEG__DT_FLOAT;
  y->rank = 4;
  y->dims[0] = x->dims[0];
  y->dims[1] = M;
  y->dims[2] = o[0];
  y->dims[3] = o[1];
  return 0;
}

static int infer_pool(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = IN(g, n, 0), *y = &g->tensors[n->out[0]];
  int err = need_rank4(g, n, x, diag);
  if (err) return err;
  y->dtype = x->dtype;
  y->rank = 4;
  y->dims[0] = x->dims[0];
  y->dims[1] = x->dims[1];
  if (strncmp(n->op, "Global", 6) == 0) {
    y->dims[2] = y->dims[3] = 1;
    return 0;
  }
  if (n->nout > 1) return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "Indices output unsupported", NODEARG);
  struct osseg__window win;
  err = osseg__window_of(g, n, &win, diag);
  if (err) return err;
  y->dims[2] = win.out[0];
  y->dims[3] = win.out[1];
  return 0;
}

/* Resize/Upsample: output dims; scales from constant input, attr or sizes. */
int osseg__resize_scales(struct osseg__graph *g, struct osseg__node *n, double *scales,
                         int64_t *sizes, struct osseg_diag *diag) {
  struct osseg__tensor *x = IN(g, n, 0), *st = NULL, *sz = NULL;
  int up = strcmp(n->op, "Upsample") == 0;
  int have_scales = 0;
  if (up || g->opset < 11) {
    st = IN(g, n, 1);
  } else {
    st = IN(g, n, 2);
    sz = IN(g, n, 3);
  }
  if (st && st->data && st->rank == 1 && st->dims[0] == 0) st = NULL; /* empty = absent */
  if (sz && sz->data && sz->rank == 1 && sz->dims[0] == 0) sz = NULL;
  if (sz) {
    if (!sz->data || sz->rank != 1 || sz->dims[0] != x->rank)
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "sizes must be a constant of %d values", NODEARG,
                  x->rank);
    for (int i = 0; i < x->rank; i++) {
      sizes[i] = osseg__const_i64(sz, (size_t)i);
      if (sizes[i] < 1 || sizes[i] > (1 << 20))
        return FAIL(OSSEG_ESHAPE, NODEFMT "output size %lld out of range", NODEARG,
                    (long long)sizes[i]);
      scales[i] = (double)sizes[i] / (double)x->dims[i];
    }
    return 0;
  }
  if (st) {
    if (!st->data || st->rank != 1 || st->dims[0] != x->rank)
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "scales must be a constant of %d values", NODEARG,
                  x->rank);
    for (int i = 0; i < x->rank; i++) scales[i] = osseg__const_f64(st, (size_t)i);
    have_scales = 1;
  } else {
    const struct osseg__attr *a = osseg__attr_find(n, "scales");
    if (up && a && a->type == OSSEG__ATTR_FLOATS && a->n == (size_t)x->rank) {
      for (int i = 0; i < x->rank; i++) scales[i] = a->floats[i];
      have_scales = 1;
    }
  }
  if (!have_scales) return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "neither scales nor sizes given", NODEARG);
  for (int i = 0; i < x->rank; i++) {
    if (!(scales[i] > 0 && scales[i] <= 1024))
      return FAIL(OSSEG_ESHAPE, NODEFMT "scale %g out of range", NODEARG, scales[i]);
    sizes[i] = (int64_t)floor((double)x->dims[i] * scales[i]);
    if (sizes[i] < 1 || sizes[i] > (1 << 20))
      return FAIL(OSSEG_ESHAPE, NODEFMT "output size out of range", NODEARG);
  }
  return 0;
}

static int infer_resize(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = IN(g, n, 0), *y = &g->tensors[n->out[0]];
  int err = need_rank4(g, n, x, diag);
  if (err) return err;
  double sc[4];
  int64_t sz[4];
  err = osseg__resize_scales(g, n, sc, sz, diag);
  if (err) return err;
  if (sz[0] != x->dims[0] || sz[1] != x->dims[1])
    return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "resizing batch or channels is not supported", NODEARG);
  y->dtype = x->dtype;
  y->rank = 4;
  memcpy(y->dims, sz, sizeof sz);
  return 0;
}

static int norm_axis(struct osseg__graph *g, struct osseg__node *n, int64_t a, int rank,
                     int *out, struct osseg_diag *diag) {
  if (a < -rank || a >= rank)
    return FAIL(OSSEG_ESHAPE, NODEFMT "axis %lld out of range for rank %d", NODEARG,
                (long long)a, rank);
  *out = (int)(a < 0 ? a + rank : a);
  return 0;
}

int osseg__infer_node(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  const char *op = n->op;
  struct osseg__tensor *x = IN(g, n, 0);
  if (n->nout < 1) return FAIL(OSSEG_EPARSE, NODEFMT "has no output", NODEARG);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err;
  /* Every input must have a known shape by now (file order is topological). */
  for (int i = 0; i < n->nin; i++) {
    struct osseg__tensor *t = IN(g, n, i);
    if (t && t->rank < 0)
      return FAIL(OSSEG_EPARSE, NODEFMT "input '%s' has no shape (produced later or unused "
                  "output)", NODEARG, t->name);
  }
  if (!x && strcmp(op, "Range") != 0)
    return FAIL(OSSEG_EPARSE, NODEFMT "missing first input", NODEARG);
  if (!strcmp(op, "Conv") || !strcmp(op, "ConvTranspose")) return infer_conv(g, n, diag);
  if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool") || !strcmp(op, "GlobalAveragePool") ||
      !strcmp(op, "GlobalMaxPool"))
    return infer_pool(g, n, diag);
  if (!strcmp(op, "Resize") || !strcmp(op, "Upsample")) return infer_resize(g, n, diag);
  if (!strcmp(op, "BatchNormalization")) {
    err = need_rank4(g, n, x, diag);
    if (err) return err;
    for (int i = 1; i < 5; i++) {
      struct osseg__tensor *p = IN(g, n, i);
      if (!p || !p->data || p->rank != 1 || p->dims[0] != x->dims[1])
        return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "parameters must be constant vectors of %lld "
                    "values", NODEARG, (long long)x->dims[1]);
    }
    if (osseg__attr_int(n, "training_mode", 0))
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "training_mode=1", NODEARG);
    for (int i = 1; i < n->nout; i++)
      if (g->tensors[n->out[i]].name[0] != '#')
        return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "training outputs", NODEARG);
    *y = (struct osseg__tensor){.name = y->name, .dtype = x->dtype, .rank = 4,
                                .producer = y->producer, .storage = -1, .offset = -1};
    memcpy(y->dims, x->dims, sizeof x->dims);
    return 0;
  }
  if (!strcmp(op, "Relu") || !strcmp(op, "LeakyRelu") || !strcmp(op, "Sigmoid") ||
      !strcmp(op, "HardSigmoid") || !strcmp(op, "HardSwish") || !strcmp(op, "Clip") ||
      !strcmp(op, "Identity") || !strcmp(op, "Dropout") || !strcmp(op, "Floor") ||
      !strcmp(op, "Ceil") || !strcmp(op, "Neg") || !strcmp(op, "Sqrt") ||
      !strcmp(op, "Reciprocal") || !strcmp(op, "Abs") || !strcmp(op, "Not") ||
      !strcmp(op, "Cast")) {
    y->dtype = x->dtype;
    if (!strcmp(op, "Cast")) y->dtype = (int)osseg__attr_int(n, "to", 0);
    if (!strcmp(op, "Not")) y->dtype = OSSEG__DT_BOOL;
    if (!osseg__dtype_size(y->dtype))
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "dtype %s unsupported", NODEARG,
                  osseg__dtype_name(y->dtype));
    y->rank = x->rank;
    memcpy(y->dims, x->dims, sizeof x->dims);
    for (int i = 1; i < n->nout; i++) { /* Dropout mask output */
      struct osseg__tensor *mk = &g->tensors[n->out[i]];
      mk->dtype = OSSEG__DT_BOOL;
      mk->rank = x->rank;
      memcpy(mk->dims, x->dims, sizeof x->dims);
    }
    return 0;
  }
  if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div") ||
      !strcmp(op, "Equal") || !strcmp(op, "Less") || !strcmp(op, "Greater") ||
      !strcmp(op, "Pow") || !strcmp(op, "Min") || !strcmp(op, "Max") || !strcmp(op, "Where")) {
    struct osseg__tensor *b = IN(g, n, 1);
    if (!b) return FAIL(OSSEG_EPARSE, NODEFMT "needs two inputs", NODEARG);
    if (osseg__broadcast(x, b, y))
      return FAIL(OSSEG_ESHAPE, NODEFMT "shapes of '%s' and '%s' do not broadcast", NODEARG,
                  x->name, b->name);
    y->dtype = x->dtype;
    if (!strcmp(op, "Equal") || !strcmp(op, "Less") || !strcmp(op, "Greater"))
      y->dtype = OSSEG__DT_BOOL;
    if (!strcmp(op, "Where")) {
      struct osseg__tensor *c = IN(g, n, 2), tmp = *y;
      if (!c || osseg__broadcast(&tmp, c, y))
        return FAIL(OSSEG_ESHAPE, NODEFMT "shapes do not broadcast", NODEARG);
      y->dtype = b->dtype;
    }
    if (n->nin > 2 && strcmp(op, "Where") != 0)
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "more than two inputs", NODEARG);
    return 0;
  }
  if (!strcmp(op, "ReduceMean")) {
    int64_t axes[8];
    int na = int_list(g, n, "axes", g->opset >= 18 ? 1 : -1, axes, 8, diag);
    if (na < 0) return na;
    int keep = (int)osseg__attr_int(n, "keepdims", 1);
    int red[OSSEG_MAX_RANK] = {0};
    for (int i = 0; i < na; i++) {
      int a;
      if ((err = norm_axis(g, n, axes[i], x->rank, &a, diag))) return err;
      red[a] = 1;
    }
    if (na == 0)
      for (int i = 0; i < x->rank; i++) red[i] = 1;
    y->dtype = x->dtype;
    y->rank = 0;
    for (int i = 0; i < x->rank; i++) {
      if (!red[i]) y->dims[y->rank++] = x->dims[i];
      else if (keep) y->dims[y->rank++] = 1;
    }
    return 0;
  }
  if (!strcmp(op, "Concat")) {
    int axis;
    if ((err = norm_axis(g, n, osseg__attr_int(n, "axis", 0), x->rank, &axis, diag))) return err;
    *y = (struct osseg__tensor){.name = y->name, .dtype = x->dtype, .rank = x->rank,
                                .producer = y->producer, .storage = -1, .offset = -1};
    memcpy(y->dims, x->dims, sizeof x->dims);
    y->dims[axis] = 0;
    for (int i = 0; i < n->nin; i++) {
      struct osseg__tensor *t = IN(g, n, i);
      if (!t) return FAIL(OSSEG_EPARSE, NODEFMT "empty input", NODEARG);
      if (t->rank != x->rank) return FAIL(OSSEG_ESHAPE, NODEFMT "input ranks differ", NODEARG);
      for (int d = 0; d < x->rank; d++)
        if (d != axis && t->dims[d] != x->dims[d])
          return FAIL(OSSEG_ESHAPE, NODEFMT "input '%s' dim %d is %lld, expected %lld", NODEARG,
                      t->name, d, (long long)t->dims[d], (long long)x->dims[d]);
      if (osseg__mul_i64(1, y->dims[axis] + t->dims[axis], &y->dims[axis]) || y->dims[axis] > (1LL << 40))
        return FAIL(OSSEG_EOVERFLOW, NODEFMT "size overflow", NODEARG);
    }
    return 0;
  }
  if (!strcmp(op, "Pad")) {
    int64_t pads[16];
    int np = int_list(g, n, "pads", g->opset >= 11 ? 1 : -1, pads, 16, diag);
    if (np < 0) return np;
    if (np != 2 * x->rank) return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "pads must have %d values", NODEARG, 2 * x->rank);
    if (g->opset >= 18 && IN(g, n, 3)) return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "axes input", NODEARG);
    y->dtype = x->dtype;
    y->rank = x->rank;
    for (int i = 0; i < x->rank; i++) {
      if (pads[i] < -x->dims[i] || pads[i] > 65536 || pads[i + x->rank] > 65536)
        return FAIL(OSSEG_ESHAPE, NODEFMT "pad out of range", NODEARG);
      y->dims[i] = x->dims[i] + pads[i] + pads[i + x->rank];
      if (y->dims[i] < 0) return FAIL(OSSEG_ESHAPE, NODEFMT "negative output size", NODEARG);
    }
    return 0;
  }
  if (!strcmp(op, "Flatten")) {
    int axis;
    int64_t a = osseg__attr_int(n, "axis", 1);
    if (a == x->rank) axis = x->rank;
    else if ((err = norm_axis(g, n, a, x->rank, &axis, diag))) return err;
    int64_t d0 = 1, d1 = 1;
    for (int i = 0; i < x->rank; i++)
      if (osseg__mul_i64(i < axis ? d0 : d1, x->dims[i], i < axis ? &d0 : &d1))
        return FAIL(OSSEG_EOVERFLOW, NODEFMT "size overflow", NODEARG);
    y->dtype = x->dtype;
    y->rank = 2;
    y->dims[0] = d0;
    y->dims[1] = d1;
    return 0;
  }
  if (!strcmp(op, "Reshape")) {
    int64_t sh[OSSEG_MAX_RANK];
    struct osseg__tensor *st = IN(g, n, 1);
    if (!st || !st->data) return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "shape must be constant", NODEARG);
    int ns = int_list(g, n, NULL, 1, sh, OSSEG_MAX_RANK, diag);
    if (ns < 0) return ns;
    int allowzero = (int)osseg__attr_int(n, "allowzero", 0);
    size_t total;
    if ((err = osseg__dims_elems(x->dims, x->rank, &total)))
      return FAIL(err, NODEFMT "bad input size", NODEARG);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ns; i++) {
      if (sh[i] == 0 && !allowzero) {
        if (i >= x->rank) return FAIL(OSSEG_ESHAPE, NODEFMT "0 dim beyond input rank", NODEARG);
        sh[i] = x->dims[i];
      }
      if (sh[i] == -1) {
        if (infer >= 0) return FAIL(OSSEG_ESHAPE, NODEFMT "two -1 dims", NODEARG);
        infer = i;
        continue;
      }
      if (sh[i] < 0) return FAIL(OSSEG_ESHAPE, NODEFMT "negative dim", NODEARG);
      if (osseg__mul_i64(known, sh[i], &known)) return FAIL(OSSEG_EOVERFLOW, NODEFMT "overflow", NODEARG);
    }
    if (infer >= 0) {
      if (known == 0 || (int64_t)total % known)
        return FAIL(OSSEG_ESHAPE, NODEFMT "cannot infer -1 dim", NODEARG);
      sh[infer] = (int64_t)total / known;
      known *= sh[infer];
    }
    if ((size_t)known != total)
      return FAIL(OSSEG_ESHAPE, NODEFMT "reshape of %zu elements to %lld", NODEARG, total,
                  (long long)known);
    y->dtype = x->dtype;
    y->rank = ns;
    memcpy(y->dims, sh, sizeof(int64_t) * (size_t)ns);
    return 0;
  }
  if (!strcmp(op, "Transpose")) {
    int64_t perm[OSSEG_MAX_RANK];
    int np = int_list(g, n, "perm", -1, perm, OSSEG_MAX_RANK, diag);
    if (np < 0) return np;
    if (np == 0) {
      np = x->rank;
      for (int i = 0; i < np; i++) perm[i] = np - 1 - i;
    }
    if (np != x->rank) return FAIL(OSSEG_ESHAPE, NODEFMT "perm length differs from rank", NODEARG);
    int seen[OSSEG_MAX_RANK] = {0};
    for (int i = 0; i < np; i++) {
      if (perm[i] < 0 || perm[i] >= np || seen[perm[i]]++)
        return FAIL(OSSEG_ESHAPE, NODEFMT "perm is not a permutation", NODEARG);
      y->dims[i] = x->dims[perm[i]];
    }
    y->dtype = x->dtype;
    y->rank = np;
    return 0;
  }
  if (!strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze")) {
    int64_t axes[OSSEG_MAX_RANK];
    int na = int_list(g, n, "axes", g->opset >= 13 ? 1 : -1, axes, OSSEG_MAX_RANK, diag);
    if (na < 0) return na;
    int sq = op[0] == 'S';
    int orank = sq ? x->rank - na : x->rank + na;
    if (sq && na == 0) {
      orank = 0;
      for (int i = 0; i < x->rank; i++) orank += x->dims[i] != 1;
    }
    if (orank < 0 || orank > OSSEG_MAX_RANK) return FAIL(OSSEG_ESHAPE, NODEFMT "bad rank", NODEARG);
    int mark[OSSEG_MAX_RANK] = {0};
    for (int i = 0; i < na; i++) {
      int a;
      if ((err = norm_axis(g, n, axes[i], sq ? x->rank : orank, &a, diag))) return err;
      if (mark[a]++) return FAIL(OSSEG_ESHAPE, NODEFMT "repeated axis", NODEARG);
      if (sq && x->dims[a] != 1) return FAIL(OSSEG_ESHAPE, NODEFMT "squeezed dim is not 1", NODEARG);
    }
    int r = 0, j = 0;
    if (sq) {
      for (int i = 0; i < x->rank; i++)
        if (!(na ? mark[i] : x->dims[i] == 1)) y->dims[r++] = x->dims[i];
    } else {
      for (int i = 0; i < orank; i++) y->dims[r++] = mark[i] ? 1 : x->dims[j++];
    }
    y->dtype = x->dtype;
    y->rank = r;
    return 0;
  }
  if (!strcmp(op, "Shape")) {
    int64_t s = osseg__attr_int(n, "start", 0), e = osseg__attr_int(n, "end", x->rank);
    if (s < 0) s += x->rank;
    if (e < 0) e += x->rank;
    if (s < 0) s = 0;
    if (e > x->rank) e = x->rank;
    if (e < s) e = s;
    y->dtype = OSSEG__DT_INT64;
    y->rank = 1;
    y->dims[0] = e - s;
    return 0;
  }
  if (!strcmp(op, "Gather")) {
    struct osseg__tensor *idx = IN(g, n, 1);
    int axis;
    if (!idx) return FAIL(OSSEG_EPARSE, NODEFMT "needs indices", NODEARG);
    if ((err = norm_axis(g, n, osseg__attr_int(n, "axis", 0), x->rank, &axis, diag))) return err;
    int r = x->rank - 1 + idx->rank;
    if (r > OSSEG_MAX_RANK) return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "rank too high", NODEARG);
    int k = 0;
    for (int i = 0; i < axis; i++) y->dims[k++] = x->dims[i];
    for (int i = 0; i < idx->rank; i++) y->dims[k++] = idx->dims[i];
    for (int i = axis + 1; i < x->rank; i++) y->dims[k++] = x->dims[i];
    y->rank = r;
    y->dtype = x->dtype;
    return 0;
  }
  if (!strcmp(op, "ConstantOfShape")) {
    int64_t sh[OSSEG_MAX_RANK];
    int ns = int_list(g, n, NULL, 0, sh, OSSEG_MAX_RANK, diag);
    if (ns < 0) return ns;
    for (int i = 0; i < ns; i++)
      if (sh[i] < 0) return FAIL(OSSEG_ESHAPE, NODEFMT "negative dim", NODEARG);
    const struct osseg__attr *a = osseg__attr_find(n, "value");
    y->dtype = a && a->type == OSSEG__ATTR_TENSOR ? g->tensors[a->tensor].dtype : OSSEG__DT_FLOAT;
    y->rank = ns;
    memcpy(y->dims, sh, sizeof(int64_t) * (size_t)ns);
    return 0;
  }
  if (!strcmp(op, "Expand")) {
    int64_t sh[OSSEG_MAX_RANK];
    int ns = int_list(g, n, NULL, 1, sh, OSSEG_MAX_RANK, diag);
    if (ns < 0) return ns;
    struct osseg__tensor s = {.rank = ns};
    memcpy(s.dims, sh, sizeof(int64_t) * (size_t)ns);
    if (osseg__broadcast(x, &s, y)) return FAIL(OSSEG_ESHAPE, NODEFMT "shape does not broadcast", NODEARG);
    y->dtype = x->dtype;
    return 0;
  }
  if (!strcmp(op, "Slice")) {
    int64_t st[OSSEG_MAX_RANK], en[OSSEG_MAX_RANK], ax[OSSEG_MAX_RANK], sp[OSSEG_MAX_RANK];
    int ns, ne, na, nsp;
    if (g->opset < 10) {
      ns = int_list(g, n, "starts", -1, st, OSSEG_MAX_RANK, diag);
      ne = int_list(g, n, "ends", -1, en, OSSEG_MAX_RANK, diag);
      na = int_list(g, n, "axes", -1, ax, OSSEG_MAX_RANK, diag);
      nsp = 0;
    } else {
      ns = int_list(g, n, NULL, 1, st, OSSEG_MAX_RANK, diag);
      ne = int_list(g, n, NULL, 2, en, OSSEG_MAX_RANK, diag);
      na = int_list(g, n, NULL, 3, ax, OSSEG_MAX_RANK, diag);
      nsp = int_list(g, n, NULL, 4, sp, OSSEG_MAX_RANK, diag);
    }
    if (ns < 0 || ne < 0 || na < 0 || nsp < 0) return -1;
    if (ns != ne || (na && na != ns) || (nsp && nsp != ns))
      return FAIL(OSSEG_ESHAPE, NODEFMT "starts/ends/axes/steps lengths differ", NODEARG);
    y->dtype = x->dtype;
    y->rank = x->rank;
    memcpy(y->dims, x->dims, sizeof x->dims);
    for (int i = 0; i < ns; i++) {
      int a;
      if ((err = norm_axis(g, n, na ? ax[i] : i, x->rank, &a, diag))) return err;
      int64_t step = nsp ? sp[i] : 1, dim = x->dims[a], s = st[i], e = en[i];
      if (step == 0) return FAIL(OSSEG_ESHAPE, NODEFMT "step 0", NODEARG);
      if (step == INT64_MIN) step = -INT64_MAX; /* same count; keeps -step defined */
      if (s < 0) s += dim;
      if (e < 0 && e > INT64_MIN + dim) e += dim;
      if (step > 0) {
        s = s < 0 ? 0 : s > dim ? dim : s;
        e = e < 0 ? 0 : e > dim ? dim : e;
        y->dims[a] = e > s ? (e - s - 1) / step + 1 : 0;
      } else {
        s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
        e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
        y->dims[a] = s > e ? (s - e - 1) / (-step) + 1 : 0;
      }
    }
    return 0;
  }
  if (!strcmp(op, "Range")) {
    struct osseg__tensor *a = IN(g, n, 0), *b = IN(g, n, 1), *c = IN(g, n, 2);
    if (!a || !b || !c || !a->data || !b->data || !c->data)
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "inputs must be constants", NODEARG);
    double s = osseg__const_f64(a, 0), e = osseg__const_f64(b, 0), d = osseg__const_f64(c, 0);
    double cnt = d != 0 ? ceil((e - s) / d) : -1;
    if (!(cnt >= -1e18 && cnt <= (1 << 24)) || d == 0)
      return FAIL(OSSEG_ESHAPE, NODEFMT "bad range", NODEARG);
    y->dtype = a->dtype;
    y->rank = 1;
    y->dims[0] = cnt > 0 ? (int64_t)cnt : 0;
    return 0;
  }
  err = osseg__infer_transformer(g, n, diag);
  if (err != 1) return err;
  return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "no shape rule", NODEARG);
}

int osseg__infer_and_fold(struct osseg__graph *g, struct osseg_diag *diag) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    const struct op_entry *e = find_op(n->op);
    if (!e || g->opset < e->min_opset)
      return FAIL(OSSEG_EUNSUPPORTED, "node '%s': op %s (opset %d) is not supported", n->name,
                  n->op, g->opset);
    int err = osseg__infer_node(g, n, diag);
    if (err) return err;
    for (int o = 0; o < n->nout; o++) {
      size_t el;
      struct osseg__tensor *t = &g->tensors[n->out[o]];
      err = osseg__tensor_elems(g, t, &el);
      if (err)
        return FAIL(err, NODEFMT "output '%s' is too large (%s)", NODEARG, t->name,
                    err == OSSEG_ELIMIT ? "over the tensor size limit" : "overflow");
    }
    int all_const = 1;
    for (int i = 0; i < n->nin; i++)
      if (n->in[i] >= 0 && !g->tensors[n->in[i]].data) all_const = 0;
    if (!strcmp(n->op, "Shape")) all_const = 1; /* static shapes: always known */
    if (all_const && osseg__can_fold(n->op)) {
      err = osseg__fold_node(g, n, diag);
      if (err) return err;
      n->dead = 1;
      continue;
    }
    if (!e->runtime)
      return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "runs on a non-constant input; only shape "
                  "computations of this op are supported", NODEARG);
    for (int i = 0; i < n->nout; i++) {
      struct osseg__tensor *t = &g->tensors[n->out[i]];
      if (i == 0 && t->dtype != OSSEG__DT_FLOAT)
        return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "runtime tensor '%s' has dtype %s (only float32 "
                    "activations are supported)", NODEARG, t->name, osseg__dtype_name(t->dtype));
    }
    for (int i = 0; i < n->nin; i++) {
      struct osseg__tensor *t = IN(g, n, i);
      if (t && !t->data && t->dtype != OSSEG__DT_FLOAT)
        return FAIL(OSSEG_EUNSUPPORTED, NODEFMT "runtime input '%s' is %s", NODEARG, t->name,
                    osseg__dtype_name(t->dtype));
    }
  }
  if (g->tensors[g->output].data)
    return FAIL(OSSEG_EUNSUPPORTED, "graph output '%s' is a constant", g->tensors[g->output].name);
  return 0;
}
