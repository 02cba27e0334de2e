/* osseg.QAdd (int8 models, passes/fuse_qdq.c): an Add of two fake-quantized
 * maps, as ONNX Runtime's quantize_static writes a residual Add (Q/DQ on
 * both inputs), with the ReLU after it when there is one. Inputs [a, b] are
 * read in 8 bits on their grids (osseg.q_scale/q_zero/q_signed for a, the
 * same names ending in 1 for b): written so by their producers (an int8
 * conv requantizing its accumulators, another QAdd), else quantized by a
 * reorder. The sum is what the float graph computes,
 *   relu((a - z_a) s_a + (b - z_b) s_b),
 * written in float, or in 8 bits on the grid its readers share
 * (osseg.q_out_*), rounded as a QuantizeLinear rounds: x / s to nearest
 * even. One pass reading two bytes per value, where the float graph reads
 * and writes float maps four times (two fake quantizations, the add, the
 * ReLU). */
#include "build.h"
#include "isa_variants.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

struct qadd {
  int a, b, y;
  int64_t count;
  float sa, za, sb, zb; /* input grids */
  int sga, sgb;         /* signed inputs */
  float so, zo, lo, hi; /* 8-bit output grid and range */
  int out;              /* 0 float, 1 8-bit */
  int relu;
};

#define QADD_CHUNK 16384 /* values per task: the run control is checked between them */

/* Values [i0, i1). Memory-bound, compiled per ISA level (isa_variants.h);
 * every variant computes the same float operations in the same order.
 * Branch-free so that it vectorizes: a signed byte is b - 256 when b >=
 * 128, and v + 1.5 * 2^23 - 1.5 * 2^23 rounds v to the nearest integer,
 * ties to even, as nearbyintf does, for |v| <= 2^22, which clamping v to
 * one step beyond the output range first ensures without changing the
 * result. */
static inline __attribute__((always_inline)) void qadd_span_impl(const struct qadd *q,
                                                                 const unsigned char *a,
                                                                 const unsigned char *b, void *y,
                                                                 int64_t i0, int64_t i1) {
  const float sa = q->sa, za = q->za, sb = q->sb, zb = q->zb, so = q->so, zo = q->zo, lo = q->lo,
              hi = q->hi, floor_v = q->relu ? 0.f : -INFINITY, magic = 12582912.f;
  const float vlo = lo - zo - 1.f, vhi = hi - zo + 1.f;
  const int ma = q->sga ? 256 : 0, mb = q->sgb ? 256 : 0;
  if (!q->out) {
    float *yf = y;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
      const float qa = (float)((int)a[i] - (a[i] >> 7) * ma), qb = (float)((int)b[i] - (b[i] >> 7) * mb);
      const float v = (qa - za) * sa + (qb - zb) * sb;
      yf[i] = v > floor_v ? v : floor_v;
    }
    return;
  }
  unsigned char *yq = y; /* u8 or s8: the same bytes (int32 -> unsigned char is modulo 256) */
#pragma omp simd
  for (int64_t i = i0; i < i1; i++) {
    const float qa = (float)((int)a[i] - (a[i] >> 7) * ma), qb = (float)((int)b[i] - (b[i] >> 7) * mb);
    float v = (qa - za) * sa + (qb - zb) * sb;
    v = v > floor_v ? v : floor_v;
    float x = v / so;
    x = x < vlo ? vlo : x > vhi ? vhi : x;
    float u = ((x + magic) - magic) + zo;
    u = u < lo ? lo : u > hi ? hi : u;
    yq[i] = (unsigned char)(int32_t)u;
  }
}
OSSEG__ISA_VARIANTS(qadd_span,
                    (const struct qadd *q, const unsigned char *a, const unsigned char *b, void *y,
                     int64_t i0, int64_t i1),
                    (q, a, b, y, i0, i1))

static dnnl_status_t run_qadd(struct osseg_model *m, struct osseg__step *s) {
  const struct qadd *q = s->priv;
  const unsigned char *a = osseg__tensor_ptr(m, q->a), *b = osseg__tensor_ptr(m, q->b);
  void *y = osseg__tensor_ptr(m, q->y);
  const qadd_span_fn span = qadd_span_select();
  const int64_t tasks = (q->count + QADD_CHUNK - 1) / QADD_CHUNK;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tasks; t++) {
    if (osseg__should_stop(m)) continue;
    const int64_t i0 = t * QADD_CHUNK, i1 = i0 + QADD_CHUNK < q->count ? i0 + QADD_CHUNK : q->count;
    span(q, a, b, y, i0, i1);
  }
  return dnnl_success;
}

/* Input i of n in 8 bits on the grid n reads it with. */
static int input_8bit(struct osseg_model *m, struct osseg__node *n, int i, float *scale, float *zero,
                      int *sgn, struct osseg_diag *diag) {
  const char *sn = i ? "osseg.q_scale1" : "osseg.q_scale", *zn = i ? "osseg.q_zero1" : "osseg.q_zero",
             *gn = i ? "osseg.q_signed1" : "osseg.q_signed";
  *scale = osseg__attr_float(n, sn, 1.f);
  *zero = (float)osseg__attr_int(n, zn, 0);
  *sgn = (int)osseg__attr_int(n, gn, 0);
  return osseg__quantized_input(m, (int)(n - m->g.nodes), n->in[i], *scale, (int)*zero, *sgn, diag);
}

static int compile_qadd(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct qadd *q = osseg__model_alloc(m, sizeof *q);
  if (!q) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  memset(q, 0, sizeof *q);
  q->a = input_8bit(m, n, 0, &q->sa, &q->za, &q->sga, diag);
  if (q->a < 0) return q->a;
  q->b = input_8bit(m, n, 1, &q->sb, &q->zb, &q->sgb, diag);
  if (q->b < 0) return q->b;
  q->y = n->out[0];
  /* (8-bit maps are written by the ops that write 8 bits, or quantized
   * into temporaries, all in the runtime layout of rank-4 maps: dense nhwc) */
  const dnnl_memory_desc_t *amd = &m->md[q->a], *bmd = &m->md[q->b], *ymd = &m->md[q->y];
  int same = amd->ndims == ymd->ndims && bmd->ndims == ymd->ndims;
  for (int d = 0; same && d < ymd->ndims; d++)
    same = amd->dims[d] == ymd->dims[d] && bmd->dims[d] == ymd->dims[d];
  if (!same || !osseg__md_dense_nhwc(amd) || !osseg__md_dense_nhwc(bmd) || !osseg__md_dense_nhwc(ymd))
    return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': 8-bit add of these layouts", n->name);
  q->count = (int64_t)(dnnl_memory_desc_get_size(ymd) / (ymd->data_type == dnnl_f32 ? 4 : 1));
  q->relu = (int)osseg__attr_int(n, "osseg.relu", 0);
  if (ymd->data_type == dnnl_u8 || ymd->data_type == dnnl_s8) {
    const int sgn = ymd->data_type == dnnl_s8;
    q->out = 1;
    q->so = osseg__attr_float(n, "osseg.q_out_scale", 1.f);
    q->zo = (float)osseg__attr_int(n, "osseg.q_out_zero", 0);
    q->lo = sgn ? -128.f : 0.f, q->hi = sgn ? 127.f : 255.f;
  } else if (ymd->data_type != dnnl_f32) {
    return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': 8-bit add into this type", n->name);
  }
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, (int)(n - m->g.nodes));
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  osseg__step_own(s, "own: 8-bit add", 0, q->a, q->y);
  s->run = run_qadd;
  s->priv = q;
  s->in = q->a;
  s->out = q->y;
  s->uses[s->nuses++] = q->a;
  s->uses[s->nuses++] = q->b;
  s->uses[s->nuses++] = q->y;
  m->flops += (uint64_t)q->count * 6;
  return 0;
}

const struct osseg__op osseg__ops_add_int8[] = {
    {OSSEG__OP_QADD, 0, 0, OSSEG__OP_INTERNAL, OSSEG__PREC_RUNTIME, NULL, NULL, compile_qadd},
    {0},
};
