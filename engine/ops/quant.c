/* Quantization ops of QDQ models (ONNX Runtime's quantize_static, NNCF):
 * QuantizeLinear and DequantizeLinear. On constants they fold (int8 weights
 * become their float values, which remember their scales so int8 kernels
 * can recover the integers exactly). On activations a QuantizeLinear must be
 * followed by DequantizeLinears of the same parameters: passes/fuse_qdq.c
 * turns each such pair into osseg.FakeQuant, a float -> float own loop
 * computing what the pair computes, (clamp(round(x / s) + z) - z) * s, so
 * every precision runs the model as quantized; under --precision int8 the
 * pass hands the quantization of a conv's input to the conv itself
 * (ops/conv.c), which then runs in int8. */
#include "bf16.h"
#include "build.h"

#include <math.h>
#include <omp.h>

/* The scale/zero-point inputs of node n (inputs 1 and 2): per tensor (one
 * value) or per axis (a vector along `axis` of x). */
static int check_qparams(struct osseg__graph *g, struct osseg__node *n, int qtype,
                         struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *s = osseg__in(g, n, 1), *z = osseg__in(g, n, 2);
  if (!s || !s->data || (s->dtype != OSSEG__DT_FLOAT))
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "y_scale must be a float32 constant",
                       OSSEG__NODEARG);
  size_t ns;
  if (osseg__tensor_elems(g, s, &ns) || s->rank > 1)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "scale must be a scalar or a vector",
                       OSSEG__NODEARG);
  if (ns > 1) {
    int a;
    int err = osseg__norm_axis(g, n, osseg__attr_int(n, "axis", 1), x->rank, &a, diag);
    if (err) return err;
    if ((int64_t)ns != x->dims[a])
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "%zu scales for axis %d of size %lld",
                         OSSEG__NODEARG, ns, a, (long long)x->dims[a]);
  }
  for (size_t i = 0; i < ns; i++) {
    double v = osseg__const_f64(s, i);
    if (!(v > 0) || !isfinite(v))
      return OSSEG__FAIL(OSSEG_ERANGE, OSSEG__NODEFMT "scale %g (must be positive and finite)",
                         OSSEG__NODEARG, v);
  }
  if (z) {
    size_t nz;
    if (!z->data || osseg__tensor_elems(g, z, &nz) || nz != ns)
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "zero point must be a constant "
                         "shaped like the scale", OSSEG__NODEARG);
    if (z->dtype != OSSEG__DT_INT8 && z->dtype != OSSEG__DT_UINT8)
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "zero point of type %s (int8 and "
                         "uint8 are supported)", OSSEG__NODEARG, osseg__dtype_name(z->dtype));
    if (qtype && z->dtype != qtype)
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "zero point type differs from the "
                         "data's", OSSEG__NODEARG);
  }
  return 0;
}

static int infer_quantize(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *y = &g->tensors[n->out[0]];
  struct osseg__tensor *z = osseg__in(g, n, 2);
  if (x->dtype != OSSEG__DT_FLOAT)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "input of type %s", OSSEG__NODEARG,
                       osseg__dtype_name(x->dtype));
  int err = check_qparams(g, n, 0, diag);
  if (err) return err;
  osseg__same_shape(x, y);
  y->dtype = z ? z->dtype : OSSEG__DT_UINT8; /* (no zero point: uint8) */
  return 0;
}

static int infer_dequantize(struct osseg__graph *g, struct osseg__node *n,
                            struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *y = &g->tensors[n->out[0]];
  if (x->dtype != OSSEG__DT_INT8 && x->dtype != OSSEG__DT_UINT8 && x->dtype != OSSEG__DT_INT32)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "input of type %s (int8, uint8 or "
                       "int32)", OSSEG__NODEARG, osseg__dtype_name(x->dtype));
  int err = check_qparams(g, n, x->dtype == OSSEG__DT_INT32 ? 0 : x->dtype, diag);
  if (err) return err;
  osseg__same_shape(x, y);
  y->dtype = OSSEG__DT_FLOAT;
  return 0;
}

/* Index along the quantization axis of element i of x, for per-axis params. */
static size_t axis_index(const struct osseg__tensor *x, int axis, size_t i) {
  size_t inner = 1;
  for (int d = axis + 1; d < x->rank; d++) inner *= (size_t)x->dims[d];
  return (i / inner) % (size_t)x->dims[axis];
}

static int param_axis(const struct osseg__tensor *x, const struct osseg__node *n) {
  int64_t a = osseg__attr_int(n, "axis", 1);
  return (int)(a < 0 ? a + x->rank : a);
}

static int fold_quantize(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  (void)diag;
  struct osseg__tensor *x = osseg__in(g, n, 0), *s = osseg__in(g, n, 1), *z = osseg__in(g, n, 2);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  size_t ne, ns;
  osseg__tensor_elems(g, y, &ne);
  osseg__tensor_elems(g, s, &ns);
  int axis = param_axis(x, n);
  const double lo = y->dtype == OSSEG__DT_INT8 ? -128 : 0, hi = y->dtype == OSSEG__DT_INT8 ? 127 : 255;
  for (size_t i = 0; i < ne; i++) {
    size_t k = ns > 1 ? axis_index(x, axis, i) : 0;
    /* round half to even (the default rounding mode), then saturate */
    double q = nearbyint(osseg__const_f64(x, i) / osseg__const_f64(s, k)) +
               (z ? (double)osseg__const_i64(z, k) : 0);
    osseg__const_set_i64(y, i, (int64_t)(q < lo ? lo : q > hi ? hi : q));
  }
  return 0;
}

static int fold_dequantize(struct osseg__graph *g, struct osseg__node *n,
                           struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *s = osseg__in(g, n, 1), *z = osseg__in(g, n, 2);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  size_t ne, ns;
  osseg__tensor_elems(g, y, &ne);
  osseg__tensor_elems(g, s, &ns);
  int axis = param_axis(x, n);
  int zero = 1;
  for (size_t k = 0; z && k < ns; k++) zero &= osseg__const_i64(z, k) == 0;
  for (size_t i = 0; i < ne; i++) {
    size_t k = ns > 1 ? axis_index(x, axis, i) : 0;
    float v = (float)(osseg__const_i64(x, i) - (z ? osseg__const_i64(z, k) : 0)) *
              (float)osseg__const_f64(s, k);
    ((float *)y->data)[i] = v;
  }
  /* symmetric int8 values (weights): remember the scales (ir.h) */
  if (x->dtype == OSSEG__DT_INT8 && zero) {
    y->qscale = osseg__malloc(ns * sizeof(float));
    if (!y->qscale) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    for (size_t k = 0; k < ns; k++) y->qscale[k] = (float)osseg__const_f64(s, k);
    y->qcount = (int)ns;
    y->qaxis = ns > 1 ? axis : -1;
  }
  return 0;
}

/* A QuantizeLinear or DequantizeLinear left on activations by the passes
 * (not in a Q -> DQ pair of equal parameters): clear load error. */
static int compile_unpaired(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  (void)m;
  return osseg__fail(diag, OSSEG_EUNSUPPORTED,
                     "node '%s' (%s): on activations, a QuantizeLinear must be followed only by "
                     "DequantizeLinears of the same scale and zero point (and a DequantizeLinear "
                     "must follow such a QuantizeLinear)", n->name, n->op);
}

/* ---- osseg.FakeQuant: inputs x, scale, zero point (as the pair had). */

struct fq {
  float scale, inv, zero, lo, hi;
  int bf16;
  int64_t count;
};

static dnnl_status_t run_fake_quant(struct osseg_model *m, struct osseg__step *s) {
  const struct fq *q = s->priv;
  const void *x = osseg__tensor_ptr(m, s->in);
  void *y = osseg__tensor_ptr(m, s->out);
  const float sc = q->scale, z = q->zero, lo = q->lo, hi = q->hi;
  if (!q->bf16) {
    const float *xs = x;
    float *ys = y;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < q->count; i++) {
      float v = nearbyintf(xs[i] / sc) + z;
      v = v < lo ? lo : v > hi ? hi : v;
      ys[i] = (v - z) * sc;
    }
  } else {
    const uint16_t *xs = x;
    uint16_t *ys = y;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < q->count; i++) {
      float v = nearbyintf(osseg__bf16_f32(xs[i]) / sc) + z;
      v = v < lo ? lo : v > hi ? hi : v;
      ys[i] = osseg__f32_bf16((v - z) * sc);
    }
  }
  return dnnl_success;
}

static int compile_fake_quant(struct osseg_model *m, struct osseg__node *n,
                              struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  const struct osseg__tensor *s = &g->tensors[n->in[1]];
  const struct osseg__tensor *z = n->nin > 2 && n->in[2] >= 0 ? &g->tensors[n->in[2]] : NULL;
  size_t ns;
  osseg__tensor_elems(g, s, &ns);
  if (ns != 1)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (QuantizeLinear): per-axis "
                       "quantization of activations is not supported", n->name);
  struct fq *q = osseg__model_alloc(m, sizeof *q);
  if (!q) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  int sgn = z && z->dtype == OSSEG__DT_INT8;
  *q = (struct fq){.scale = (float)osseg__const_f64(s, 0), .zero = z ? (float)osseg__const_i64(z, 0) : 0,
                   .lo = sgn ? -128 : 0, .hi = sgn ? 127 : 255, .bf16 = m->act_dt == dnnl_bf16};
  size_t e;
  osseg__tensor_elems(g, &g->tensors[y], &e);
  q->count = (int64_t)e;
  /* elementwise: any layout, the same on both sides (y is made like x) */
  if (!dnnl_memory_desc_equal(&m->md[x], &m->md[y]))
    return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': layouts differ", n->name);
  if (osseg__can_inplace(m, x)) osseg__alias(m, y, x);
  struct osseg__step *st = osseg__add_step(m, OSSEG__STEP_CUSTOM, (int)(n - g->nodes));
  if (!st) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  st->run = run_fake_quant;
  osseg__step_own(st, "own: fake quantization", 0, x, y);
  st->priv = q;
  st->in = x;
  st->out = y;
  st->uses[st->nuses++] = x;
  st->uses[st->nuses++] = y;
  m->flops += e * 4;
  return 0;
}

const struct osseg__op osseg__ops_quant[] = {
    {"QuantizeLinear", 13, OSSEG__OPSET_MAX, OSSEG__OP_QUANT_IO, OSSEG__PREC_RUNTIME, infer_quantize, fold_quantize, compile_unpaired},
    {"DequantizeLinear", 13, OSSEG__OPSET_MAX, OSSEG__OP_QUANT_IO, OSSEG__PREC_RUNTIME, infer_dequantize, fold_dequantize, compile_unpaired},
    {OSSEG__OP_FAKE_QUANT, 0, 0, OSSEG__OP_INTERNAL, OSSEG__PREC_RUNTIME, NULL, NULL, compile_fake_quant},
    {0},
};
