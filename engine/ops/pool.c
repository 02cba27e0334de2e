/* Pooling (MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool) and
 * ReduceMean, as oneDNN pooling / reduction primitives on nhwc, except the
 * mean over the whole spatial extent and the max pooling of a float map
 * into 8 bits (int8 models), own loops below. */
#include "build.h"
#include "isa_variants.h"

#include <math.h>
#include <string.h>

static int infer_pool(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0), *y = &g->tensors[n->out[0]];
  int err = osseg__need_rank4(g, n, x, diag);
  if (err) return err;
  y->dtype = x->dtype;
  y->rank = 4;
  y->dims[0] = x->dims[0];
  y->dims[1] = x->dims[1];
  if (strncmp(n->op, "Global", 6) == 0) {
    y->dims[2] = y->dims[3] = 1;
    return 0;
  }
  if (n->nout > 1) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "Indices output unsupported", OSSEG__NODEARG);
  struct osseg__window win;
  err = osseg__window_of(g, n, &win, diag);
  if (err) return err;
  y->dims[2] = win.out[0];
  y->dims[3] = win.out[1];
  return 0;
}

/* ReduceMean / ReduceSum / ReduceMax / ReduceMin: axes from the attribute,
 * or from input 1 (ReduceSum from opset 13, the others from 18). */
static int infer_reduce(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err;
  int64_t axes[8];
  int axes_in = g->opset >= (strcmp(n->op, "ReduceSum") ? 18 : 13);
  int na = osseg__int_list(g, n, "axes", axes_in ? 1 : -1, axes, 8, diag);
  if (na < 0) return na;
  if (na == 0 && osseg__attr_int(n, "noop_with_empty_axes", 0))
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "noop_with_empty_axes with no axes", OSSEG__NODEARG);
  int keep = (int)osseg__attr_int(n, "keepdims", 1);
  int red[OSSEG_MAX_RANK] = {0};
  for (int i = 0; i < na; i++) {
    int a;
    if ((err = osseg__norm_axis(g, n, axes[i], x->rank, &a, diag))) return err;
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

/* Mean over H and W (GlobalAveragePool; ReduceMean over axes 2 and 3) as
 * an own loop. oneDNN's pooling and reduction add the H*W values one after
 * another in fp32: on a 32 x 512 x 512 map of values in [1, 3] that is
 * 1.3e-5 relative off, and a squeeze-excitation scale computed from such a
 * mean moved UNet-effb0 @1024's logits by 2.4e-4 of their maximum (PyTorch:
 * 1.9e-5 from a float64 forward). Here every row chunk is summed in double
 * and the chunk sums are added in a fixed order: accurate to ~1e-16 and the
 * same for any thread count. Memory-bound; chunks spread over threads.
 * fp32 in and out: under bf16 these nodes run in fp32 (compile.c node_dt)
 * and any other case falls back to oneDNN. */
#define MEAN_CHUNKS 64

struct mean_step {
  int x, y;
  int64_t n, rows, C; /* batch, H*W, channels: x is [n][rows][C] */
  double *part;       /* MEAN_CHUNKS x C partial sums */
};

static dnnl_status_t run_mean(struct osseg_model *m, struct osseg__step *s) {
  const struct mean_step *p = s->priv;
  const float *xb = osseg__tensor_ptr(m, p->x);
  float *y = osseg__tensor_ptr(m, p->y);
  const int64_t C = p->C, rows = p->rows, chunk = (rows + MEAN_CHUNKS - 1) / MEAN_CHUNKS;
  for (int64_t b = 0; b < p->n; b++) {
    const float *x = xb + b * rows * C;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < MEAN_CHUNKS; k++) {
      double *acc = p->part + (size_t)k * (size_t)C;
      for (int64_t c = 0; c < C; c++) acc[c] = 0;
      const int64_t r0 = k * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
      for (int64_t r = r0; r < r1; r++) {
        const float *row = x + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) acc[c] += (double)row[c];
      }
    }
    for (int64_t c = 0; c < C; c++) {
      double sum = 0;
      for (int k = 0; k < MEAN_CHUNKS; k++) sum += p->part[(size_t)k * (size_t)C + (size_t)c];
      y[b * C + c] = (float)(sum / (double)rows);
    }
  }
  return dnnl_success;
}

/* Output [N, C] (rank 2) or [N, C, 1, 1] with C contiguous? */
static int dense_vector(const dnnl_memory_desc_t *md, int64_t n, int64_t c) {
  if (md->format_kind != dnnl_blocked || md->format_desc.blocking.inner_nblks || md->offset0 ||
      (md->ndims != 2 && md->ndims != 4) || md->dims[0] != n || md->dims[1] != c)
    return 0;
  if (md->ndims == 4 && (md->dims[2] != 1 || md->dims[3] != 1)) return 0;
  const dnnl_dims_t *st = &md->format_desc.blocking.strides;
  return (c == 1 || (*st)[1] == 1) && (n == 1 || (*st)[0] == c);
}

/* 1 if node n (x -> y) was compiled as the own spatial mean, 0 if it is not
 * one (the caller uses oneDNN), <0 on error. */
static int try_spatial_mean(struct osseg_model *m, struct osseg__node *n, int x, int y,
                            const dnnl_memory_desc_t *ymd, struct osseg_diag *diag) {
  const dnnl_memory_desc_t *xmd = &m->md[x];
  if (!osseg__md_dense_nhwc(xmd)) return 0;
  int64_t N = xmd->dims[0], C = xmd->dims[1], rows = xmd->dims[2] * xmd->dims[3];
  if (!dense_vector(ymd, N, C) || rows <= 0 || C <= 0) return 0;
  if (xmd->data_type != dnnl_f32 || ymd->data_type != dnnl_f32) return 0;
  struct mean_step *p = osseg__model_alloc(m, sizeof *p);
  size_t pbytes;
  if (!p || osseg__mul_size((size_t)C, MEAN_CHUNKS * sizeof(double), &pbytes))
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  p->part = osseg__model_alloc(m, pbytes);
  if (!p->part) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  p->x = x, p->y = y, p->n = N, p->rows = rows, p->C = C;
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, (int)(n - m->g.nodes));
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->run = run_mean;
  s->priv = p;
  osseg__step_own(s, "own: global mean", 0, x, y);
  s->uses[s->nuses++] = x;
  s->uses[s->nuses++] = y;
  return 1;
}

static int simple_step(struct osseg_model *m, struct osseg__node *n, dnnl_primitive_desc_t pd,
                       int x, const dnnl_memory_desc_t *xmd, int y, const dnnl_memory_desc_t *ymd,
                       struct osseg_diag *diag) {
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_PRIM, (int)(n - m->g.nodes));
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC, x, xmd);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, y, ymd);
  return osseg__finish_prim(m, s, pd, n, diag);
}

/* Max pooling of a float map into 8 bits (int8 models, passes/fuse_qdq.c:
 * a MaxPool whose readers take 8 bits): the maximum of each window,
 * quantized, which equals the maximum of the quantized values (the
 * quantization never decreases) but reads the float map once and writes a
 * quarter of the bytes, with no float pooled map and no quantizing pass. */
struct qpool {
  int x, y;
  int64_t n, c, h, w, oh, ow;
  int64_t k[2], s[2], d[2], pb[2];
  float inv, zero, lo, hi;
  int sgn;
};

#define QPOOL_CHUNK 64 /* channels per pass over a window */

/* One output row; memory-bound, compiled for AVX-512 / AVX2 / baseline
 * (isa_variants.h). Rounding: v + 1.5 * 2^23 - 1.5 * 2^23 is v rounded to
 * the nearest integer, ties to even (|v| <= 255 here), as the quantizing
 * reorders round, in plain vectorisable arithmetic. */
static inline __attribute__((always_inline)) void qpool_row_impl(const struct qpool *p,
                                                                 const float *x, unsigned char *yrow,
                                                                 int64_t oy) {
  const int64_t C = p->c;
  const float inv = p->inv, zero = p->zero, lo = p->lo, hi = p->hi, magic = 12582912.f;
  float acc[QPOOL_CHUNK];
  for (int64_t ox = 0; ox < p->ow; ox++) {
    for (int64_t c0 = 0; c0 < C; c0 += QPOOL_CHUNK) {
      const int64_t nc = C - c0 < QPOOL_CHUNK ? C - c0 : QPOOL_CHUNK;
      for (int64_t c = 0; c < nc; c++) acc[c] = -INFINITY;
      for (int64_t ky = 0; ky < p->k[0]; ky++) {
        const int64_t iy = oy * p->s[0] - p->pb[0] + ky * p->d[0];
        if (iy < 0 || iy >= p->h) continue;
        for (int64_t kx = 0; kx < p->k[1]; kx++) {
          const int64_t ix = ox * p->s[1] - p->pb[1] + kx * p->d[1];
          if (ix < 0 || ix >= p->w) continue;
          const float *px = x + (size_t)((iy * p->w + ix) * C + c0);
#pragma omp simd
          for (int64_t c = 0; c < nc; c++) acc[c] = px[c] > acc[c] ? px[c] : acc[c];
        }
      }
      unsigned char *py = yrow + (size_t)(ox * C + c0);
      if (p->sgn) {
#pragma omp simd
        for (int64_t c = 0; c < nc; c++) {
          float v = acc[c] * inv + zero;
          v = v < lo ? lo : v > hi ? hi : v;
          py[c] = (unsigned char)(int8_t)(int32_t)((v + magic) - magic);
        }
      } else {
#pragma omp simd
        for (int64_t c = 0; c < nc; c++) {
          float v = acc[c] * inv + zero;
          v = v < lo ? lo : v > hi ? hi : v;
          py[c] = (unsigned char)(int32_t)((v + magic) - magic);
        }
      }
    }
  }
}
OSSEG__ISA_VARIANTS(qpool_row, (const struct qpool *p, const float *x, unsigned char *yrow, int64_t oy),
                    (p, x, yrow, oy))

static dnnl_status_t run_qpool(struct osseg_model *m, struct osseg__step *st) {
  const struct qpool *p = st->priv;
  const float *xb = osseg__tensor_ptr(m, p->x);
  unsigned char *yb = osseg__tensor_ptr(m, p->y);
  const int64_t rows = p->n * p->oh;
  const qpool_row_fn row = qpool_row_select();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++)
    row(p, xb + (size_t)(r / p->oh * p->h * p->w * p->c), yb + (size_t)(r * p->ow * p->c), r % p->oh);
  return dnnl_success;
}

static int compile_qpool(struct osseg_model *m, struct osseg__node *n, const struct osseg__window *w,
                         struct osseg_diag *diag) {
  int x = n->in[0], y = n->out[0];
  const dnnl_memory_desc_t *xmd = &m->md[x], *ymd = &m->md[y];
  if (!osseg__md_dense_nhwc(xmd) || !osseg__md_dense_nhwc(ymd) || xmd->data_type != dnnl_f32)
    return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': 8-bit max pooling of this layout", n->name);
  struct qpool *p = osseg__model_alloc(m, sizeof *p);
  if (!p) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  const int sgn = ymd->data_type == dnnl_s8;
  *p = (struct qpool){.x = x, .y = y, .n = xmd->dims[0], .c = xmd->dims[1], .h = xmd->dims[2],
                      .w = xmd->dims[3], .oh = ymd->dims[2], .ow = ymd->dims[3],
                      .inv = 1.f / osseg__attr_float(n, "osseg.q_out_scale", 1.f),
                      .zero = (float)osseg__attr_int(n, "osseg.q_out_zero", 0),
                      .lo = sgn ? -128.f : 0.f, .hi = sgn ? 127.f : 255.f, .sgn = sgn};
  for (int i = 0; i < 2; i++)
    p->k[i] = w->k[i], p->s[i] = w->s[i], p->d[i] = w->d[i], p->pb[i] = w->pb[i];
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, (int)(n - m->g.nodes));
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  osseg__step_own(s, "own: max pool into 8 bits", 0, x, y);
  s->run = run_qpool;
  s->priv = p;
  s->in = x;
  s->out = y;
  s->uses[s->nuses++] = x;
  s->uses[s->nuses++] = y;
  return 0;
}

static int compile_pool(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  struct osseg__tensor *xt = &g->tensors[x];
  struct osseg__window w;
  int err = osseg__window_of(g, n, &w, diag);
  if (err) return err;
  /* 8-bit output from a float map (an 8-bit map pools as it is, below) */
  dnnl_data_type_t ydt = m->md[y].data_type;
  if ((ydt == dnnl_u8 || ydt == dnnl_s8) && m->md[x].data_type != ydt)
    return compile_qpool(m, n, &w, diag);
  if (!strcmp(n->op, "GlobalAveragePool") && (err = try_spatial_mean(m, n, x, y, &m->md[y], diag)))
    return err < 0 ? err : 0;
  dnnl_alg_kind_t alg;
  if (strstr(n->op, "Max")) {
    alg = dnnl_pooling_max;
  } else if (strncmp(n->op, "Global", 6) == 0) {
    alg = dnnl_pooling_avg_exclude_padding;
  } else {
    alg = osseg__attr_int(n, "count_include_pad", 0) ? dnnl_pooling_avg_include_padding
                                                      : dnnl_pooling_avg_exclude_padding;
  }
  dnnl_dims_t strides, kernel, dil, pl, pr;
  for (int i = 0; i < 2; i++) {
    int64_t keff = (w.k[i] - 1) * w.d[i] + 1, in = xt->dims[2 + i];
    strides[i] = w.s[i], kernel[i] = w.k[i], dil[i] = w.d[i] - 1, pl[i] = w.pb[i];
    pr[i] = w.pe[i];
    if ((in + pl[i] + pr[i] - keff) / w.s[i] + 1 != w.out[i]) /* ceil_mode */
      pr[i] = (w.out[i] - 1) * w.s[i] + keff - in - pl[i];
  }
  dnnl_pooling_v2_desc_t pdsc;
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_pooling_v2_forward_desc_init(&pdsc, dnnl_forward_inference, alg,
                                                       &m->md[x], &m->md[y], strides, kernel,
                                                       dil, pl, pr);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &pdsc, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "pooling descriptor", n);
  return simple_step(m, n, pd, x, NULL, y, NULL, diag);
}

static int compile_reduce(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int x = n->in[0], y = n->out[0];
  struct osseg__tensor *xt = &g->tensors[x], *yt = &g->tensors[y];
  /* Destination with the source rank (reduced dims = 1). With keepdims the
   * output tensor's own layout; without, a plain layout, which has the same
   * bytes as the lower-rank plain output tensor. */
  int64_t axes[OSSEG_MAX_RANK];
  int na = 0;
  const struct osseg__attr *a = osseg__attr_find(n, "axes");
  if (a && a->type == OSSEG__ATTR_INTS) {
    for (size_t i = 0; i < a->n && i < OSSEG_MAX_RANK; i++) axes[na++] = a->ints[i];
  } else if (n->nin > 1 && n->in[1] >= 0) {
    struct osseg__tensor *at = &g->tensors[n->in[1]];
    size_t e;
    osseg__tensor_elems(g, at, &e);
    for (size_t i = 0; i < e && i < OSSEG_MAX_RANK; i++) axes[na++] = osseg__const_i64(at, i);
  }
  int red[OSSEG_MAX_RANK] = {0};
  for (int i = 0; i < na; i++) red[axes[i] < 0 ? axes[i] + xt->rank : axes[i]] = 1;
  if (na == 0)
    for (int i = 0; i < xt->rank; i++) red[i] = 1;
  dnnl_dims_t dd;
  for (int i = 0; i < xt->rank; i++) dd[i] = red[i] ? 1 : xt->dims[i];
  dnnl_memory_desc_t dmd;
  if (yt->rank == xt->rank) {
    dmd = m->md[y];
  } else if (yt->rank == 4 && m->md[y].format_kind == dnnl_blocked &&
             !m->md[y].format_desc.blocking.inner_nblks) {
    /* a rank-4 output is nhwc, not plain: view it with the source's rank
     * (the reduced dims of size 1) through its own strides; e.g. the sum
     * over the stacking axis of torch.stack(maps).sum(0) (smp's FPN) */
    dnnl_dims_t ds;
    for (int i = 0, j = 0; i < xt->rank; i++)
      ds[i] = red[i] ? 1 : m->md[y].format_desc.blocking.strides[j++];
    if (dnnl_memory_desc_init_by_strides(&dmd, xt->rank, dd, m->act_dt, ds) != dnnl_success)
      return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': output layout", n->name);
  } else {
    static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                              dnnl_abcde, dnnl_abcdef};
    if (xt->rank > 6) return osseg__fail(diag, OSSEG_EUNSUPPORTED, "rank");
    dnnl_memory_desc_init_by_tag(&dmd, xt->rank, dd, m->act_dt, plain[xt->rank]);
  }
  if (xt->rank == 4 && !red[0] && !red[1] && red[2] && red[3] && !strcmp(n->op, "ReduceMean")) {
    int err = try_spatial_mean(m, n, x, y, &dmd, diag);
    if (err) return err < 0 ? err : 0;
  }
  dnnl_reduction_desc_t rd;
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_primitive_desc_t pd = NULL;
  dnnl_alg_kind_t alg = !strcmp(n->op, "ReduceSum")   ? dnnl_reduction_sum
                        : !strcmp(n->op, "ReduceMax") ? dnnl_reduction_max
                        : !strcmp(n->op, "ReduceMin") ? dnnl_reduction_min
                                                      : dnnl_reduction_mean;
  dnnl_status_t st = dnnl_reduction_desc_init(&rd, alg, &m->md[x], &dmd, 0, 0);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &rd, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "reduction descriptor", n);
  return simple_step(m, n, pd, x, NULL, y, &dmd, diag);
}

const struct osseg__op osseg__ops_pool[] = {
    {"MaxPool", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, infer_pool, NULL, compile_pool},
    {"AveragePool", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, infer_pool, NULL, compile_pool},
    {"GlobalAveragePool", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_GLOBAL, OSSEG__PREC_RUNTIME, infer_pool, NULL, compile_pool},
    {"GlobalMaxPool", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_GLOBAL, OSSEG__PREC_RUNTIME, infer_pool, NULL, compile_pool},
    {"ReduceMean", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_GLOBAL, OSSEG__PREC_RUNTIME, infer_reduce, NULL, compile_reduce},
    {"ReduceSum", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_GLOBAL, OSSEG__PREC_RUNTIME, infer_reduce, NULL, compile_reduce},
    {"ReduceMax", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_GLOBAL, OSSEG__PREC_RUNTIME, infer_reduce, NULL, compile_reduce},
    {"ReduceMin", 1, OSSEG__OPSET_MAX, OSSEG__OP_PREC_GLOBAL, OSSEG__PREC_RUNTIME, infer_reduce, NULL, compile_reduce},
    {0},
};
