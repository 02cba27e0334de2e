/* LayerNormalization (opset 17, and the decomposed opset-13 form that
 * passes/fuse_layernorm.c recognises) and InstanceNormalization (what
 * PyTorch exports GroupNorm as: Reshape to [N, groups, -1],
 * InstanceNormalization with unit scale, Reshape back, Mul, Add; smp's FPN
 * decoder) as one own loop: rows x D in row-major
 * bytes, statistics in fp32 for both precisions (bf16 data is widened on
 * load), two passes over each row (mean, then centred variance), like
 * PyTorch. In place when the input dies here. Memory-bound; rows are split
 * across OpenMP threads. (oneDNN 2.6's layer norm is the non-JIT
 * simple_layer_normalization and only normalises the last dim.) */
#include "build.h"
#include "bf16.h"
#include "view.h"
#include "isa_variants.h"

#include <math.h>
#include <omp.h>
#include <string.h>

static int infer_layernorm(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *y = &g->tensors[n->out[0]];
  if (x->rank < 1) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "scalar input", OSSEG__NODEARG);
  osseg__same_shape(x, y);
  int64_t a = osseg__attr_int(n, "axis", -1);
  if (a < -x->rank || a >= x->rank)
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "axis %lld out of range for rank %d", OSSEG__NODEARG,
                (long long)a, x->rank);
  int axis = (int)(a < 0 ? a + x->rank : a);
  struct osseg__tensor tail = {.rank = x->rank - axis};
  memcpy(tail.dims, x->dims + axis, sizeof(int64_t) * (size_t)tail.rank);
  for (int i = 1; i < 3; i++) {
    struct osseg__tensor *p = osseg__in(g, n, i), tmp;
    if (!p) {
      if (i == 1) return OSSEG__FAIL(OSSEG_EPARSE, OSSEG__NODEFMT "needs a scale input", OSSEG__NODEARG);
      continue;
    }
    if (!p->data || p->dtype != OSSEG__DT_FLOAT)
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "scale/bias must be float32 constants", OSSEG__NODEARG);
    if (p->rank > tail.rank || osseg__broadcast(&tail, p, &tmp) || tmp.rank != tail.rank)
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "scale/bias '%s' does not broadcast over the "
                  "normalised dims", OSSEG__NODEARG, p->name);
    for (int d = 0; d < tail.rank; d++)
      if (tmp.dims[d] != tail.dims[d])
        return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "scale/bias '%s' too large", OSSEG__NODEARG, p->name);
  }
  if (osseg__attr_int(n, "stash_type", 1) != 1)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "stash_type other than float32", OSSEG__NODEARG);
  for (int i = 1; i < n->nout; i++) { /* Mean, InvStdDev */
    struct osseg__tensor *t = &g->tensors[n->out[i]];
    t->dtype = OSSEG__DT_FLOAT;
    t->rank = x->rank;
    for (int d = 0; d < x->rank; d++) t->dims[d] = d < axis ? x->dims[d] : 1;
  }
  return 0;
}


struct ln_step {
  int x, y;
  int64_t rows, D;
  float eps;
  const float *w, *b; /* per column (LayerNorm) or, with chan, per row */
  int64_t chan;       /* InstanceNorm: row r uses w[r % chan], b[r % chan] */
  int bf16;
};

/* Mean and 1 / sqrt(variance + eps) of one row: two passes (mean, then
 * centred variance), in fp32 whatever the storage type. */
static inline __attribute__((always_inline)) void row_stats_f32(const float *xr, int64_t D,
                                                                float eps, float *mean,
                                                                float *inv) {
  float sum = 0.f, sq = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < D; i++) sum += xr[i];
  const float m = sum / (float)D;
#pragma omp simd reduction(+ : sq)
  for (int64_t i = 0; i < D; i++) sq += (xr[i] - m) * (xr[i] - m);
  *mean = m;
  *inv = 1.f / sqrtf(sq / (float)D + eps);
}

static inline __attribute__((always_inline)) void row_stats_bf16(const uint16_t *xr, int64_t D,
                                                                 float eps, float *mean,
                                                                 float *inv) {
  float sum = 0.f, sq = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < D; i++) sum += osseg__bf16_f32(xr[i]);
  const float m = sum / (float)D;
#pragma omp simd reduction(+ : sq)
  for (int64_t i = 0; i < D; i++) {
    float d = osseg__bf16_f32(xr[i]) - m;
    sq += d * d;
  }
  *mean = m;
  *inv = 1.f / sqrtf(sq / (float)D + eps);
}

/* Rows [r0, r1); compiled for AVX-512 / AVX2 / baseline (isa_variants.h).
 * LayerNorm scales column i by w[i] (plus b[i]); InstanceNorm (chan) row r
 * by w[r % chan] (plus b[r % chan]). */
static inline __attribute__((always_inline)) void ln_rows_impl(const struct ln_step *l,
                                                              const void *xp, void *yp,
                                                              int64_t r0, int64_t r1) {
  const int64_t D = l->D;
  const float *w = l->w, *b = l->b;
  const float eps = l->eps;
  for (int64_t r = r0; r < r1; r++) {
    float mean, inv;
    if (!l->bf16) {
      const float *xr = (const float *)xp + r * D;
      float *yr = (float *)yp + r * D;
      row_stats_f32(xr, D, eps, &mean, &inv);
      if (l->chan) {
        const float sc = inv * w[r % l->chan], br = b[r % l->chan];
#pragma omp simd
        for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - mean) * sc + br;
      } else {
#pragma omp simd
        for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - mean) * inv * w[i] + b[i];
      }
    } else {
      const uint16_t *xr = (const uint16_t *)xp + r * D;
      uint16_t *yr = (uint16_t *)yp + r * D;
      row_stats_bf16(xr, D, eps, &mean, &inv);
      if (l->chan) {
        const float sc = inv * w[r % l->chan], br = b[r % l->chan];
#pragma omp simd
        for (int64_t i = 0; i < D; i++) yr[i] = osseg__f32_bf16_v((osseg__bf16_f32(xr[i]) - mean) * sc + br);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < D; i++)
          yr[i] = osseg__f32_bf16_v((osseg__bf16_f32(xr[i]) - mean) * inv * w[i] + b[i]);
      }
    }
  }
}

OSSEG__ISA_VARIANTS(ln_rows, (const struct ln_step *l, const void *xp, void *yp, int64_t r0, int64_t r1),
                    (l, xp, yp, r0, r1))


static dnnl_status_t run_ln(struct osseg_model *m, struct osseg__step *s) {
  const struct ln_step *l = s->priv;
  const void *x = osseg__tensor_ptr(m, l->x);
  void *y = osseg__tensor_ptr(m, l->y);
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int64_t per = (l->rows + nt - 1) / nt, r0 = id * per, r1 = r0 + per < l->rows ? r0 + per : l->rows;
    if (r0 < r1) ln_rows_select()(l, x, y, r0, r1);
  }
  return dnnl_success;
}

/* Expands a scale/bias constant broadcast over the normalised dims. */
static float *expand_param(struct osseg_model *m, const struct osseg__tensor *p,
                           const int64_t *tail, int tr, int64_t D, float dflt) {
  float *out = osseg__model_alloc(m, (size_t)D * sizeof(float));
  if (!out) return NULL;
  m->weight_bytes += (size_t)D * sizeof(float);
  for (int64_t i = 0; i < D; i++) {
    if (!p) {
      out[i] = dflt;
      continue;
    }
    int64_t rem = i, src = 0, stride = 1;
    for (int d = tr - 1; d >= 0; d--) {
      int64_t idx = rem % tail[d];
      rem /= tail[d];
      int pd = d - (tr - p->rank);
      if (pd >= 0) {
        if (p->dims[pd] != 1) src += idx * stride;
        stride *= p->dims[pd];
      }
    }
    out[i] = (float)osseg__const_f64(p, (size_t)src);
  }
  return out;
}

static int norm_step(struct osseg_model *m, struct osseg__node *n, struct ln_step *l,
                     int64_t params, struct osseg_diag *diag);

static int compile_layernorm(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0];
  if (g->tensors[x].data)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (LayerNormalization): constant input",
                       n->name);
  int rank = g->tensors[x].rank;
  int64_t axis = osseg__attr_int(n, "axis", -1);
  if (axis < 0) axis += rank;
  int64_t tail[OSSEG_MAX_RANK], D = 1, rows = 1;
  int tr = rank - (int)axis;
  for (int i = 0; i < rank; i++) {
    if (i < axis) rows *= g->tensors[x].dims[i];
    else D *= (tail[i - axis] = g->tensors[x].dims[i]);
  }
  struct ln_step *l = osseg__model_alloc(m, sizeof *l);
  if (!l) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  memset(l, 0, sizeof *l); /* (chan = 0: LayerNorm's per-column scale and bias) */
  const struct osseg__tensor *wt = n->nin > 1 && n->in[1] >= 0 ? &g->tensors[n->in[1]] : NULL;
  const struct osseg__tensor *bt = n->nin > 2 && n->in[2] >= 0 ? &g->tensors[n->in[2]] : NULL;
  l->w = expand_param(m, wt, tail, tr, D, 1.f);
  l->b = expand_param(m, bt, tail, tr, D, 0.f);
  if (!l->w || !l->b) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  l->rows = rows, l->D = D;
  l->eps = osseg__attr_float(n, "epsilon", 1e-5f);
  l->bf16 = m->act_dt == dnnl_bf16;
  return norm_step(m, n, l, D * 2, diag);
}

/* The step of a normalisation l of node n (plain row-major staging of x
 * and y as needed, in place when x dies here). */
static int norm_step(struct osseg_model *m, struct osseg__node *n, struct ln_step *l,
                     int64_t params, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int ni = (int)(n - g->nodes), x = n->in[0], y = n->out[0];
  const int64_t rows = l->rows, D = l->D;
  int x_t = osseg__plain_in(m, ni, x, diag);
  if (x_t < 0) return x_t;
  int y_t;
  if (x_t == x && osseg__can_inplace(m, x) && m->g.tensors[y].rank != 4) {
    osseg__alias(m, y, x);
    y_t = y;
  } else if ((y_t = osseg__plain_out(m, y, diag)) < 0) {
    return y_t;
  }
  l->x = x_t, l->y = y_t;
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, ni);
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->run = run_ln;
  osseg__step_own(s, "own: layernorm", 0, x_t, y_t);
  s->priv = l;
  s->uses[s->nuses++] = x_t;
  s->uses[s->nuses++] = y_t;
  m->flops += (uint64_t)(rows * D) * 8;
  m->params += (uint64_t)params;
  return osseg__plain_out_done(m, ni, y_t, y, diag);
}

/* InstanceNormalization: x [N, C, D1, ...] normalised over D1... per (n, c),
 * then scale[c] and bias[c]. */
static int infer_instancenorm(struct osseg__graph *g, struct osseg__node *n,
                              struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *y = &g->tensors[n->out[0]];
  if (x->rank < 3)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "needs an input of rank 3 or more, got %d", OSSEG__NODEARG,
                x->rank);
  for (int i = 1; i < 3; i++) {
    struct osseg__tensor *p = osseg__in(g, n, i);
    if (!p || !p->data || p->dtype != OSSEG__DT_FLOAT || p->rank != 1 || p->dims[0] != x->dims[1])
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "%s must be a float32 constant of %lld values",
                  OSSEG__NODEARG, i == 1 ? "scale" : "B", (long long)x->dims[1]);
  }
  osseg__same_shape(x, y);
  return 0;
}

static int compile_instancenorm(struct osseg_model *m, struct osseg__node *n,
                                struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  const struct osseg__tensor *xt = &g->tensors[n->in[0]];
  int64_t C = xt->dims[1], rows = xt->dims[0] * C, D = 1;
  for (int i = 2; i < xt->rank; i++) D *= xt->dims[i];
  struct ln_step *l = osseg__model_alloc(m, sizeof *l);
  float *w = osseg__model_alloc(m, (size_t)C * 2 * sizeof(float));
  if (!l || !w) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  m->weight_bytes += (size_t)C * 2 * sizeof(float);
  for (int64_t c = 0; c < C; c++) {
    w[c] = (float)osseg__const_f64(&g->tensors[n->in[1]], (size_t)c);
    w[C + c] = (float)osseg__const_f64(&g->tensors[n->in[2]], (size_t)c);
  }
  *l = (struct ln_step){.rows = rows, .D = D, .w = w, .b = w + C, .chan = C,
                        .eps = osseg__attr_float(n, "epsilon", 1e-5f),
                        .bf16 = m->act_dt == dnnl_bf16};
  return norm_step(m, n, l, 2 * C, diag);
}


const struct osseg__op osseg__ops_norm[] = {
    {"InstanceNormalization", 6, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_instancenorm, NULL, compile_instancenorm},
    {"LayerNormalization", 17, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_layernorm, NULL, compile_layernorm},
    {0},
};
