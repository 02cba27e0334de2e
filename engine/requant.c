/* Requantization of 8-bit maps from one grid onto another, as a QDQ file
 * computes DequantizeLinear then QuantizeLinear: round((q - zi) si / so)
 * + zo, saturated. ONNX Runtime quantizes each input of a Concat on its own
 * grid and the output on another: the 8-bit concat requantizes its inputs
 * while copying them into their channel slices (ops/concat.c), the int8
 * upconv, which reads the concat's inputs itself, requantizes each into a
 * temporary on its conv grid (ops/conv_upconv_int8.c). */
#include "build.h"
#include "isa_variants.h"

#include <math.h>
#include <stdint.h>

/* n values: the QDQ arithmetic in float, the same operations in the same
 * order at every ISA level (isa_variants.h). */
static inline __attribute__((always_inline)) void requant_span_impl(const struct osseg__requant *r,
                                                                    const unsigned char *q,
                                                                    unsigned char *d, int64_t n) {
  const float si = r->si, zi = r->zi, so = r->so, zo = r->zo, lo = r->lo, hi = r->hi;
  if (r->sgi) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
      float u = nearbyintf((((float)(int8_t)q[j] - zi) * si) / so) + zo;
      u = u < lo ? lo : u > hi ? hi : u;
      d[j] = (unsigned char)(int32_t)u; /* (s8: the same byte, modulo 256) */
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
      float u = nearbyintf((((float)q[j] - zi) * si) / so) + zo;
      u = u < lo ? lo : u > hi ? hi : u;
      d[j] = (unsigned char)(int32_t)u;
    }
  }
}
OSSEG__ISA_VARIANTS(requant_span,
                    (const struct osseg__requant *r, const unsigned char *q, unsigned char *d, int64_t n),
                    (r, q, d, n))

osseg__requant_fn osseg__requant_select(void) { return requant_span_select(); }

const struct osseg__requant *osseg__requant_of(struct osseg_model *m, float si, int zi, int gi, float so,
                                               int zo, int go) {
  struct osseg__requant *r = osseg__model_alloc(m, sizeof *r);
  if (r)
    *r = (struct osseg__requant){.si = si, .zi = (float)zi, .so = so, .zo = (float)zo,
                                 .lo = go ? -128.f : 0.f, .hi = go ? 127.f : 255.f, .sgi = gi};
  return r;
}

struct requant_map {
  const struct osseg__requant *rq;
  int64_t n; /* bytes of the (dense) map */
};

#define CHUNK ((int64_t)1 << 16) /* bytes per task */

static dnnl_status_t run_requant(struct osseg_model *m, struct osseg__step *s) {
  const struct requant_map *r = s->priv;
  const unsigned char *x = osseg__tensor_ptr(m, s->in);
  unsigned char *y = osseg__tensor_ptr(m, s->out);
  const osseg__requant_fn span = osseg__requant_select();
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < (r->n + CHUNK - 1) / CHUNK; k++) {
    const int64_t j = k * CHUNK;
    span(r->rq, x + j, y + j, r->n - j < CHUNK ? r->n - j : CHUNK);
  }
  return dnnl_success;
}

int osseg__requantized_input(struct osseg_model *m, int node, int x, float si, int zi, int gi, float so,
                             int zo, int go, struct osseg_diag *diag) {
  const struct osseg__tensor *xt = &m->g.tensors[x];
  if (xt->rank != 4 || xt->dims[0] != 1 || !osseg__md_dense_nhwc(&m->md[x]))
    return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': requantizing '%s': not a dense 8-bit map",
                       m->g.nodes[node].name, xt->name);
  int made, xq = osseg__qtemp(m, node, x, so, zo, go, &made, diag);
  if (xq < 0 || !made) return xq;
  struct requant_map *r = osseg__model_alloc(m, sizeof *r);
  const struct osseg__requant *rq = osseg__requant_of(m, si, zi, gi, so, zo, go);
  struct osseg__step *s = r && rq ? osseg__add_step(m, OSSEG__STEP_CUSTOM, node) : NULL;
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  *r = (struct requant_map){.rq = rq, .n = xt->dims[1] * xt->dims[2] * xt->dims[3]};
  s->run = run_requant;
  s->priv = r;
  s->in = x;
  s->out = xq;
  s->uses[s->nuses++] = x;
  s->uses[s->nuses++] = xq;
  osseg__step_own(s, "own: 8-bit requantization", 0, x, xq);
  return xq;
}
