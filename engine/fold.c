/* Constant folding: evaluates nodes whose inputs are all constant (shape
 * subgraphs such as Shape -> Gather -> Unsqueeze -> Concat -> Resize sizes,
 * and weight preprocessing). Plain loops over small tensors; the output
 * tensor's shape and dtype were already set by shape inference. */
#include "bf16.h"
#include "engine_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const foldable[] = {
    "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "ConstantOfShape", "Slice",
    "Equal", "Where", "Expand", "Reshape", "Flatten", "Identity", "Dropout", "Transpose",
    "Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Less", "Greater", "Floor", "Ceil",
    "Neg", "Sqrt", "Reciprocal", "Abs", "Not", "Range", "Relu", "Sigmoid",
};

int osseg__can_fold(const char *op) {
  for (size_t i = 0; i < sizeof foldable / sizeof foldable[0]; i++)
    if (strcmp(foldable[i], op) == 0) return 1;
  return 0;
}

static int is_float(int dt) {
  return dt == OSSEG__DT_FLOAT || dt == OSSEG__DT_DOUBLE || dt == OSSEG__DT_FLOAT16 ||
         dt == OSSEG__DT_BFLOAT16;
}

/* double -> int64, saturating (an out-of-range conversion is undefined
 * behaviour; found by libFuzzer through an integer Pow); NaN -> 0. */
static int64_t sat_i64(double v) {
  if (!(v == v)) return 0;
  if (v >= 0x1p63) return INT64_MAX;
  if (v < -0x1p63) return INT64_MIN;
  return (int64_t)v;
}

static void set_f64(struct osseg__tensor *t, size_t i, double v) {
  void *d = t->data;
  switch (t->dtype) {
    case OSSEG__DT_FLOAT: ((float *)d)[i] = (float)v; return;
    case OSSEG__DT_DOUBLE: ((double *)d)[i] = v; return;
    case OSSEG__DT_BFLOAT16: ((uint16_t *)d)[i] = osseg__f32_bf16((float)v); return;
    default: break;
  }
  int64_t iv = sat_i64(v);
  switch (t->dtype) {
    case OSSEG__DT_INT64: ((int64_t *)d)[i] = iv; return;
    case OSSEG__DT_INT32: ((int32_t *)d)[i] = (int32_t)iv; return;
    case OSSEG__DT_UINT32: ((uint32_t *)d)[i] = (uint32_t)iv; return;
    case OSSEG__DT_UINT64: ((uint64_t *)d)[i] = (uint64_t)iv; return;
    case OSSEG__DT_INT16: case OSSEG__DT_UINT16: ((uint16_t *)d)[i] = (uint16_t)iv; return;
    case OSSEG__DT_BOOL: ((uint8_t *)d)[i] = v != 0; return;
    default: ((uint8_t *)d)[i] = (uint8_t)iv; return;
  }
}

static void set_i64(struct osseg__tensor *t, size_t i, int64_t v) {
  if (is_float(t->dtype)) {
    set_f64(t, i, (double)v);
    return;
  }
  void *d = t->data;
  switch (t->dtype) {
    case OSSEG__DT_INT64: ((int64_t *)d)[i] = v; return;
    case OSSEG__DT_INT32: ((int32_t *)d)[i] = (int32_t)v; return;
    case OSSEG__DT_UINT32: ((uint32_t *)d)[i] = (uint32_t)v; return;
    case OSSEG__DT_UINT64: ((uint64_t *)d)[i] = (uint64_t)v; return;
    case OSSEG__DT_INT16: case OSSEG__DT_UINT16: ((uint16_t *)d)[i] = (uint16_t)v; return;
    case OSSEG__DT_BOOL: ((uint8_t *)d)[i] = v != 0; return;
    default: ((uint8_t *)d)[i] = (uint8_t)v; return;
  }
}

/* Row-major strides of t, with 0 for broadcast dims when aligned to rank r. */
static void bstrides(const struct osseg__tensor *t, int r, const int64_t *odims, size_t *st) {
  size_t s = 1;
  for (int i = r - 1; i >= 0; i--) {
    int ti = i - (r - t->rank);
    if (ti < 0) {
      st[i] = 0;
      continue;
    }
    st[i] = t->dims[ti] == 1 && odims[i] != 1 ? 0 : s;
    s *= (size_t)t->dims[ti];
  }
}

/* Linear index into a broadcast input for output linear index o. */
static size_t bindex(size_t o, int r, const int64_t *odims, const size_t *st) {
  size_t idx = 0;
  for (int i = r - 1; i >= 0; i--) {
    size_t d = (size_t)odims[i];
    idx += (o % d) * st[i];
    o /= d;
  }
  return idx;
}

static double binop(const char *op, double a, double b) {
  switch (op[0]) {
    case 'A': return a + b;
    case 'S': return a - b;
    case 'M':
      if (op[1] == 'u') return a * b;
      if (op[1] == 'i') return a < b ? a : b;
      return a > b ? a : b;
    case 'D': return a / b;
    case 'P': return pow(a, b);
    case 'E': return a == b;
    case 'L': return a < b;
    case 'G': return a > b;
    default: return 0;
  }
}

static int64_t binop_i(const char *op, int64_t a, int64_t b) {
  int64_t r = 0;
  switch (op[0]) {
    case 'A': return __builtin_add_overflow(a, b, &r) ? (b > 0 ? INT64_MAX : INT64_MIN) : r;
    case 'S': return __builtin_sub_overflow(a, b, &r) ? (b < 0 ? INT64_MAX : INT64_MIN) : r;
    case 'M':
      if (op[1] == 'u') return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
      if (op[1] == 'i') return a < b ? a : b;
      return a > b ? a : b;
    case 'D':
      if (b == 0 || (a == INT64_MIN && b == -1)) return 0;
      /* ONNX integer Div truncates like C. */
      return a / b;
    case 'E': return a == b;
    case 'L': return a < b;
    case 'G': return a > b;
    case 'P': return sat_i64(pow((double)a, (double)b));
    default: return 0;
  }
}

static double unop(const char *op, double a) {
  if (!strcmp(op, "Floor")) return floor(a);
  if (!strcmp(op, "Ceil")) return ceil(a);
  if (!strcmp(op, "Neg")) return -a;
  if (!strcmp(op, "Sqrt")) return sqrt(a);
  if (!strcmp(op, "Reciprocal")) return 1.0 / a;
  if (!strcmp(op, "Abs")) return fabs(a);
  if (!strcmp(op, "Not")) return a == 0;
  if (!strcmp(op, "Relu")) return a > 0 ? a : 0;
  if (!strcmp(op, "Sigmoid")) return 1.0 / (1.0 + exp(-a));
  return a;
}

static void unravel(size_t o, const int64_t *dims, int r, int64_t *idx) {
  for (int i = r - 1; i >= 0; i--) {
    idx[i] = dims[i] ? (int64_t)(o % (size_t)dims[i]) : 0;
    if (dims[i]) o /= (size_t)dims[i];
  }
}

int osseg__fold_node(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  struct osseg__tensor *x = n->nin > 0 && n->in[0] >= 0 ? &g->tensors[n->in[0]] : NULL;
  const char *op = n->op;
  int err = osseg__tensor_alloc_const(g, y, diag);
  if (err) return err;
  size_t ne, es = osseg__dtype_size(y->dtype);
  osseg__tensor_elems(g, y, &ne);
  /* Secondary outputs (Dropout mask) fold to zeros/ones. */
  for (int i = 1; i < n->nout; i++) {
    struct osseg__tensor *t = &g->tensors[n->out[i]];
    if ((err = osseg__tensor_alloc_const(g, t, diag))) return err;
    memset(t->data, 1, t->nbytes);
  }
  if (!strcmp(op, "Shape")) {
    int64_t s = osseg__attr_int(n, "start", 0);
    if (s < 0) s += x->rank;
    if (s < 0) s = 0;
    for (size_t i = 0; i < ne; i++) ((int64_t *)y->data)[i] = x->dims[(size_t)s + i];
    return 0;
  }
  if (!strcmp(op, "Identity") || !strcmp(op, "Dropout") || !strcmp(op, "Reshape") ||
      !strcmp(op, "Flatten") || !strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze")) {
    memcpy(y->data, x->data, y->nbytes);
    return 0;
  }
  if (!strcmp(op, "Cast")) {
    for (size_t i = 0; i < ne; i++) {
      if (is_float(x->dtype)) set_f64(y, i, osseg__const_f64(x, i));
      else set_i64(y, i, osseg__const_i64(x, i));
    }
    return 0;
  }
  if (!strcmp(op, "ConstantOfShape")) {
    const struct osseg__attr *a = osseg__attr_find(n, "value");
    if (a && a->type == OSSEG__ATTR_TENSOR) {
      struct osseg__tensor *v = &g->tensors[a->tensor];
      if (v->nbytes != es)
        return osseg__fail(diag, OSSEG_EPARSE, "node '%s' (ConstantOfShape): value must have "
                           "one element", n->name);
      for (size_t i = 0; i < ne; i++) memcpy((char *)y->data + i * es, v->data, es);
    }
    return 0;
  }
  if (!strcmp(op, "Range")) {
    struct osseg__tensor *a = &g->tensors[n->in[0]], *d = &g->tensors[n->in[2]];
    for (size_t i = 0; i < ne; i++) {
      if (is_float(y->dtype)) set_f64(y, i, osseg__const_f64(a, 0) + (double)i * osseg__const_f64(d, 0));
      else  /* saturating, like the other integer folds */
        set_i64(y, i, binop_i("Add", osseg__const_i64(a, 0), binop_i("Mul", (int64_t)i, osseg__const_i64(d, 0))));
    }
    return 0;
  }
  if (!strcmp(op, "Floor") || !strcmp(op, "Ceil") || !strcmp(op, "Neg") || !strcmp(op, "Sqrt") ||
      !strcmp(op, "Reciprocal") || !strcmp(op, "Abs") || !strcmp(op, "Not") ||
      !strcmp(op, "Relu") || !strcmp(op, "Sigmoid")) {
    for (size_t i = 0; i < ne; i++) {
      if (is_float(x->dtype) || !strcmp(op, "Sqrt") || !strcmp(op, "Reciprocal") ||
          !strcmp(op, "Sigmoid"))
        set_f64(y, i, unop(op, osseg__const_f64(x, i)));
      else if (!strcmp(op, "Neg") || !strcmp(op, "Abs")) {
        /* (saturating: -INT64_MIN overflows) */
        int64_t v = osseg__const_i64(x, i);
        set_i64(y, i, v == INT64_MIN ? INT64_MAX : !strcmp(op, "Abs") && v >= 0 ? v : -v);
      } else {
        set_i64(y, i, sat_i64(unop(op, (double)osseg__const_i64(x, i))));
      }
    }
    return 0;
  }
  if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div") ||
      !strcmp(op, "Pow") || !strcmp(op, "Min") || !strcmp(op, "Max") || !strcmp(op, "Equal") ||
      !strcmp(op, "Less") || !strcmp(op, "Greater")) {
    struct osseg__tensor *b = &g->tensors[n->in[1]];
    size_t sa[OSSEG_MAX_RANK], sb[OSSEG_MAX_RANK];
    bstrides(x, y->rank, y->dims, sa);
    bstrides(b, y->rank, y->dims, sb);
    int fl = is_float(x->dtype) || is_float(b->dtype);
    for (size_t i = 0; i < ne; i++) {
      size_t ia = bindex(i, y->rank, y->dims, sa), ib = bindex(i, y->rank, y->dims, sb);
      if (fl) set_f64(y, i, binop(op, osseg__const_f64(x, ia), osseg__const_f64(b, ib)));
      else set_i64(y, i, binop_i(op, osseg__const_i64(x, ia), osseg__const_i64(b, ib)));
    }
    return 0;
  }
  if (!strcmp(op, "Where") || !strcmp(op, "Expand")) {
    int where = op[0] == 'W';
    struct osseg__tensor *c = where ? x : NULL, *a = where ? &g->tensors[n->in[1]] : x,
                         *b = where ? &g->tensors[n->in[2]] : NULL;
    size_t sc[OSSEG_MAX_RANK], sa[OSSEG_MAX_RANK], sb[OSSEG_MAX_RANK];
    bstrides(a, y->rank, y->dims, sa);
    if (where) {
      bstrides(c, y->rank, y->dims, sc);
      bstrides(b, y->rank, y->dims, sb);
    }
    for (size_t i = 0; i < ne; i++) {
      int pick_a = !where || osseg__const_i64(c, bindex(i, y->rank, y->dims, sc)) != 0;
      const struct osseg__tensor *s = pick_a ? a : b;
      size_t si = bindex(i, y->rank, y->dims, pick_a ? sa : sb);
      memcpy((char *)y->data + i * es, (const char *)s->data + si * es, es);
    }
    return 0;
  }
  if (!strcmp(op, "Concat")) {
    int axis = (int)osseg__attr_int(n, "axis", 0);
    if (axis < 0) axis += y->rank;
    size_t outer = 1, inner = es;
    for (int i = 0; i < axis; i++) outer *= (size_t)y->dims[i];
    for (int i = axis + 1; i < y->rank; i++) inner *= (size_t)y->dims[i];
    char *dst = y->data;
    for (size_t o = 0; o < outer; o++)
      for (int k = 0; k < n->nin; k++) {
        struct osseg__tensor *t = &g->tensors[n->in[k]];
        if (t->dtype != y->dtype)
          return osseg__fail(diag, OSSEG_EPARSE, "node '%s' (Concat): input dtypes differ", n->name);
        size_t chunk = inner * (size_t)t->dims[axis];
        memcpy(dst, (const char *)t->data + o * chunk, chunk);
        dst += chunk;
      }
    return 0;
  }
  if (!strcmp(op, "Gather")) {
    struct osseg__tensor *ix = &g->tensors[n->in[1]];
    int axis = (int)osseg__attr_int(n, "axis", 0);
    if (axis < 0) axis += x->rank;
    size_t outer = 1, inner = es, ni;
    for (int i = 0; i < axis; i++) outer *= (size_t)x->dims[i];
    for (int i = axis + 1; i < x->rank; i++) inner *= (size_t)x->dims[i];
    osseg__tensor_elems(g, ix, &ni);
    char *dst = y->data;
    for (size_t o = 0; o < outer; o++)
      for (size_t k = 0; k < ni; k++) {
        int64_t j = osseg__const_i64(ix, k);
        if (j < 0) j += x->dims[axis];
        if (j < 0 || j >= x->dims[axis])
          return osseg__fail(diag, OSSEG_ERANGE, "node '%s' (Gather): index %lld out of range",
                             n->name, (long long)j);
        memcpy(dst, (const char *)x->data + (o * (size_t)x->dims[axis] + (size_t)j) * inner, inner);
        dst += inner;
      }
    return 0;
  }
  if (!strcmp(op, "Transpose") || !strcmp(op, "Slice")) {
    /* Generic: map each output index to an input index. */
    int64_t perm[OSSEG_MAX_RANK], start[OSSEG_MAX_RANK], step[OSSEG_MAX_RANK];
    int r = y->rank;
    for (int i = 0; i < r; i++) perm[i] = i, start[i] = 0, step[i] = 1;
    if (op[0] == 'T') {
      const struct osseg__attr *a = osseg__attr_find(n, "perm");
      int have = a && a->type == OSSEG__ATTR_INTS && a->n == (size_t)r; /* empty = reverse */
      for (int i = 0; i < r; i++) perm[i] = have ? a->ints[i] : r - 1 - i;
    } else {
      /* Recompute clamped starts like shape inference did. */
      int64_t st[OSSEG_MAX_RANK], ax[OSSEG_MAX_RANK], sp[OSSEG_MAX_RANK];
      int ns = 0, na = 0, nsp = 0;
      const struct osseg__attr *a;
      if (g->opset < 10) {
        if ((a = osseg__attr_find(n, "starts"))) { ns = (int)a->n; for (int i = 0; i < ns; i++) st[i] = a->ints[i]; }
        if ((a = osseg__attr_find(n, "axes"))) { na = (int)a->n; for (int i = 0; i < na; i++) ax[i] = a->ints[i]; }
      } else {
        struct osseg__tensor *t;
        size_t c;
        t = &g->tensors[n->in[1]];
        osseg__tensor_elems(g, t, &c); ns = (int)c;
        for (int i = 0; i < ns; i++) st[i] = osseg__const_i64(t, (size_t)i);
        if (n->nin > 3 && n->in[3] >= 0) {
          t = &g->tensors[n->in[3]]; osseg__tensor_elems(g, t, &c); na = (int)c;
          for (int i = 0; i < na; i++) ax[i] = osseg__const_i64(t, (size_t)i);
        }
        if (n->nin > 4 && n->in[4] >= 0) {
          t = &g->tensors[n->in[4]]; osseg__tensor_elems(g, t, &c); nsp = (int)c;
          for (int i = 0; i < nsp; i++) sp[i] = osseg__const_i64(t, (size_t)i);
        }
      }
      for (int i = 0; i < ns; i++) {
        int64_t a2 = na ? ax[i] : i;
        if (a2 < 0) a2 += r;
        int64_t dim = x->dims[a2], s = st[i], sv = nsp ? sp[i] : 1;
        if (sv == INT64_MIN) sv = -INT64_MAX;
        if (s < 0) s += dim;
        if (sv > 0) s = s < 0 ? 0 : s > dim ? dim : s;
        else s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
        start[a2] = s;
        step[a2] = sv;
      }
    }
    size_t xs[OSSEG_MAX_RANK], s = 1;
    for (int i = x->rank - 1; i >= 0; i--) xs[i] = s, s *= (size_t)x->dims[i];
    int64_t idx[OSSEG_MAX_RANK];
    for (size_t o = 0; o < ne; o++) {
      unravel(o, y->dims, r, idx);
      size_t src = 0;
      for (int i = 0; i < r; i++) {
        if (op[0] == 'T') src += (size_t)idx[i] * xs[perm[i]];
        else src += (size_t)(start[i] + idx[i] * step[i]) * xs[i];
      }
      memcpy((char *)y->data + o * es, (const char *)x->data + src * es, es);
    }
    return 0;
  }
  return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s': op %s cannot be constant-folded",
                     n->name, op);
}
