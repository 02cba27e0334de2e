/* osseg.UpConv2x in int8 (passes/fuse_upconv.c's int8 form): an int8 conv
 * 3x3, pad 1, of Concat(Upsample2x(u), S), with inputs [u, W, B, S] (S
 * absent when the upsample is the conv's whole input) and at most a ReLU.
 *
 * As in the float rewrite (compile_upconv in conv.c), the upsampled part is
 * four 2x2 convs of u at low resolution, one conv with 4M outputs whose
 * weights are the 3x3 weights summed per phase: 2.25x fewer MACs on those
 * channels, and neither the upsample nor the concat is written. In int8 the
 * sums of the file's int8 weights (up to four, so up to 508 in magnitude)
 * must fit 8 bits again: per phase and output channel whose sums exceed
 * 127, they are divided by max|sum| / 127 and rounded, and the channel's
 * scale grows by the same factor (where they fit, nothing changes). That
 * one rounding of the summed weights is the rewrite's only departure from
 * the QDQ model's arithmetic (measured in bench/ENGINE_RESULTS.md; the
 * engine option int8_upconv_min = -1 or no_upconv turn it off).
 *
 * Steps, per band of rows: the phase conv writes P (float, rows of
 * (W+1)x4M, bias included), the skip conv writes T (float, rows of 2WxM),
 * both int8 oneDNN convs with float output; then an own loop interleaves
 * P's phases, adds T, applies the ReLU and quantizes into the 8-bit output
 * (or writes float). Bands share one phase row (the last of one is the
 * first of the next): the sum step carries it over, so no phase row is
 * computed twice. The two float maps cost memory traffic the direct
 * conv does not have, so the pass rewrites only convs of upsampled maps
 * with many channels (osseg_engine_options.int8_upconv_min). */
#include "build.h"
#include "engine_test_hooks.h"
#include "isa_variants.h"
#include "ops/conv.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* Bytes of float P and T rows per band (see osseg__compile_upconv_int8).
 * Measured on UNet++ R50 at 1024² (2 threads, interleaved rounds): 24 MiB
 * bands were as fast as one band, 6 MiB 2 % and 2 MiB 20 % slower (thin
 * bands run the convs less efficiently and read their weights again), and
 * bands sized by the weights (8x, within 4-24 MiB), though they halved the
 * sums of the thin 512²-level nodes, were 2 % slower end to end. */
#define BAND_BYTES (24ull << 20)
static _Atomic uint64_t band_bytes_override; /* engine_test_hooks.h */

void osseg__set_int8_upconv_band_bytes(uint64_t bytes) { atomic_store(&band_bytes_override, bytes); }

/* One int8 conv step over a band: rows [r0, r0 + rows) of 8-bit x (all of
 * x when it is not dense nhwc: then r0 = 0, rows = its height) into rows
 * [y0, y0 + yrows) of float y, 3x3 or 2x2 OIHW int8 weights w, per output
 * channel scales sc (acc -> float), bias bq in accumulator units (or NULL),
 * pads top / bottom / left-and-right, the input's zero point, no post-ops;
 * the bands of one conv share their reordered weights through qw. */
static int qconv_band(struct osseg_model *m, const struct osseg__node *n, int x, int64_t r0, int64_t rows,
                      int y, int64_t y0, int64_t yrows, const int8_t *w, int64_t M, int64_t C, int64_t k,
                      const float *sc, const float *bq, int64_t pt, int64_t pb, int64_t pw, int32_t zp,
                      struct osseg__conv_consts *qw, struct osseg_diag *diag) {
  const dnnl_memory_desc_t *xmd = &m->md[x];
  dnnl_memory_desc_t wuser, wany, bmd, src_md, dst_md;
  dnnl_dims_t wd = {M, C, k, k}, bd = {M}, strides = {1, 1}, dil = {0, 0}, pl = {pt, pw}, pr = {pb, pw};
  dnnl_dims_t sd = {1, C, rows, xmd->dims[3]}, dd = {1, M, yrows, m->md[y].dims[3]};
  dnnl_memory_desc_init_by_tag(&wuser, 4, wd, dnnl_s8, dnnl_oihw);
  dnnl_memory_desc_init_by_tag(&wany, 4, wd, dnnl_s8, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a);
  dnnl_memory_desc_init_by_tag(&dst_md, 4, dd, dnnl_f32, dnnl_nhwc);
  if (osseg__md_dense_nhwc(xmd)) dnnl_memory_desc_init_by_tag(&src_md, 4, sd, xmd->data_type, dnnl_nhwc);
  else src_md = *xmd; /* (r0 = 0, rows = its height) */
  struct osseg__node plain = *n; /* same name for messages, no epilogue */
  plain.npost = 0;
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, &plain, &attr))
    return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': attributes", n->name);
  dnnl_status_t st = dnnl_primitive_attr_set_output_scales(attr, M, 1 << 1, sc);
  if (st == dnnl_success && zp) st = dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &zp);
  dnnl_convolution_desc_t cd;
  dnnl_primitive_desc_t pd = NULL;
  if (st == dnnl_success)
    st = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                    &src_md, &wany, bq ? &bmd : NULL, &dst_md, strides,
                                                    dil, pl, pr);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &cd, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "int8 upconv descriptor", n);
  const size_t xoff = (size_t)r0 * dnnl_memory_desc_get_size(xmd) / (size_t)xmd->dims[2];
  const size_t yoff = (size_t)y0 * dnnl_memory_desc_get_size(&m->md[y]) / (size_t)m->md[y].dims[2];
  return osseg__conv_step(m, n, pd, x, &src_md, xoff, y, &dst_md, yoff, &wuser, w, bq, qw, NULL, 0, diag);
}

/* A float temporary of dims (1, c, h, w), nhwc. */
static int float_temp(struct osseg_model *m, int64_t c, int64_t h, int64_t w, struct osseg_diag *diag) {
  int t = osseg__add_temp(m, -1, diag);
  if (t < 0) return t;
  struct osseg__tensor *tt = &m->g.tensors[t];
  tt->rank = 4;
  tt->dims[0] = 1, tt->dims[1] = c, tt->dims[2] = h, tt->dims[3] = w;
  int err = osseg__tensor_md(m, t, dnnl_f32, NULL);
  return err ? osseg__fail(diag, err, "int8 upconv: layout") : t;
}

struct upc {
  int P, T, y;          /* T: -1 without skip maps */
  int64_t H, W, M;      /* low-res size, output channels */
  int64_t q0, q1;       /* the band: low-res rows [q0, q1), output rows
                           [2 q0, 2 q1); P holds rows q0..q1, T rows 2 q0.. */
  int out;              /* 0 float, 1 u8, 2 s8 */
  int relu;
  int carry;            /* another band follows: P's last row moves to row 0 */
  float inv, zero, lo, hi; /* 8-bit output: 1 / scale, zero point, range */
};

/* Output row oy: y[oy][x][:] = out(P[i+a][j+b][(2a+b)M + :] + T[oy][x][:])
 * with i = oy/2, a = oy%2, j = x/2, b = x%2 (P and T rows counted from the
 * band's first). Memory-bound, compiled per ISA
 * level (isa_variants.h); rounding as in ops/pool.c's qpool_row (ties to
 * even, like the quantizing reorders). */
static inline __attribute__((always_inline)) void upc_row_impl(const struct upc *c, const float *P,
                                                               const float *T, void *y, int64_t oy) {
  const int64_t W = c->W, M = c->M, i = oy >> 1, a = oy & 1;
  const float *prow = P + (size_t)((i + a - c->q0) * (W + 1) * 4 * M + 2 * a * M);
  const float *trow = T ? T + (size_t)((oy - 2 * c->q0) * 2 * W * M) : NULL;
  const float floor_v = c->relu ? 0.f : -INFINITY, inv = c->inv, zero = c->zero, lo = c->lo,
              hi = c->hi, magic = 12582912.f;
  float v[64];
  for (int64_t x = 0; x < 2 * W; x++) {
    const int64_t j = x >> 1, b = x & 1;
    const float *p = prow + (size_t)((j + b) * 4 * M + b * M);
    const float *t = trow ? trow + (size_t)(x * M) : NULL;
    for (int64_t c0 = 0; c0 < M; c0 += 64) {
      const int64_t nc = M - c0 < 64 ? M - c0 : 64;
      if (t) {
#pragma omp simd
        for (int64_t k = 0; k < nc; k++) {
          float s = p[c0 + k] + t[c0 + k];
          v[k] = s > floor_v ? s : floor_v;
        }
      } else {
#pragma omp simd
        for (int64_t k = 0; k < nc; k++) v[k] = p[c0 + k] > floor_v ? p[c0 + k] : floor_v;
      }
      const size_t o = (size_t)((oy * 2 * W + x) * M + c0);
      if (c->out == 0) {
        memcpy((float *)y + o, v, (size_t)nc * sizeof(float));
      } else { /* u8 or s8: the same bytes (int32 -> unsigned char is modulo 256) */
        unsigned char *q = (unsigned char *)y + o;
#pragma omp simd
        for (int64_t k = 0; k < nc; k++) {
          float u = v[k] * inv + zero;
          u = u < lo ? lo : u > hi ? hi : u;
          q[k] = (unsigned char)(int32_t)((u + magic) - magic);
        }
      }
    }
  }
}
OSSEG__ISA_VARIANTS(upc_row, (const struct upc *c, const float *P, const float *T, void *y, int64_t oy),
                    (c, P, T, y, oy))

static dnnl_status_t run_upc(struct osseg_model *m, struct osseg__step *s) {
  const struct upc *c = s->priv;
  const float *P = osseg__tensor_ptr(m, c->P);
  const float *T = c->T >= 0 ? osseg__tensor_ptr(m, c->T) : NULL;
  void *y = osseg__tensor_ptr(m, c->y);
  const upc_row_fn row = upc_row_select();
#pragma omp parallel for schedule(static)
  for (int64_t oy = 2 * c->q0; oy < 2 * c->q1; oy++)
    if (!osseg__should_stop(m)) row(c, P, T, y, oy);
  if (c->carry) { /* (the next band's first phase row: see the band loop) */
    const size_t rowf = (size_t)((c->W + 1) * 4 * c->M);
    memcpy((float *)P, P + (size_t)(c->q1 - c->q0) * rowf, rowf * sizeof(float));
  }
  return dnnl_success;
}

/* Input i (0: u, 3: the skip maps) in 8 bits on the conv's grid (sx, zp,
 * sgn): as its producer wrote it, or quantized by a reorder. An input
 * whose own quantization the upconv took over (ONNX Runtime quantizes each
 * concat input on its own grid, passes/fuse_qdq.c) is read on that grid
 * and requantized onto the conv's, as the file computes it. */
static int on_conv_grid(struct osseg_model *m, const struct osseg__node *n, int i, float sx, int zp, int sgn,
                        struct osseg_diag *diag) {
  const int ni = (int)(n - m->g.nodes);
  float gs;
  int gz, gsg;
  if (!osseg__input_grid(n, i, &gs, &gz, &gsg)) gs = sx, gz = zp, gsg = sgn;
  const int t = osseg__quantized_input(m, ni, n->in[i], gs, gz, gsg, diag);
  if (t < 0 || (gs == sx && gz == zp && gsg == sgn)) return t;
  return osseg__requantized_input(m, ni, t, gs, gz, gsg, sx, zp, sgn, diag);
}

int osseg__compile_upconv_int8(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  const int ni = (int)(n - g->nodes), y = n->out[0];
  const struct osseg__tensor *wt = &g->tensors[n->in[1]];
  const struct osseg__tensor *bt = n->in[2] >= 0 ? &g->tensors[n->in[2]] : NULL;
  const float sx = osseg__attr_float(n, "osseg.q_scale", 1.f);
  const int zp = (int)osseg__attr_int(n, "osseg.q_zero", 0);
  const int sgn = (int)osseg__attr_int(n, "osseg.q_signed", 0);
  const int64_t M = wt->dims[0], Ct = wt->dims[1];
  const int64_t Cu = g->tensors[n->in[0]].dims[1], H = g->tensors[n->in[0]].dims[2],
                W = g->tensors[n->in[0]].dims[3];
  const int64_t Cs = n->nin > 3 ? g->tensors[n->in[3]].dims[1] : 0;
  /* the upsampled channels' place among the conv's input channels: S holds
   * the others, in order */
  const int64_t uoff = osseg__attr_int(n, "osseg.up_offset", 0);
  const dnnl_data_type_t ydt = m->md[y].data_type;
  if (Cu + Cs != Ct || uoff < 0 || uoff > Cs || g->tensors[y].dims[1] != M || g->tensors[y].dims[2] != 2 * H ||
      g->tensors[y].dims[3] != 2 * W || (ydt != dnnl_f32 && ydt != dnnl_u8 && ydt != dnnl_s8) ||
      !wt->qscale || !osseg__md_dense_nhwc(&m->md[y]))
    return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s' (%s): inconsistent int8 upconv", n->name, n->op);
  const int u = on_conv_grid(m, n, 0, sx, zp, sgn, diag);
  if (u < 0) return u;
  const int s = Cs ? on_conv_grid(m, n, 3, sx, zp, sgn, diag) : -1;
  if (Cs && s < 0) return s;
  /* the file's int8 weights, as compile_qconv recovers them */
  const size_t nq = (size_t)(M * Ct * 9), np = (size_t)(4 * M * Cu * 4);
  int32_t *q = osseg__malloc(nq * sizeof(int32_t) + np * sizeof(int32_t));
  int8_t *w8 = osseg__malloc(np + (size_t)(M * Cs * 9) + 1);
  float *sc = osseg__malloc((size_t)(10 * M) * sizeof(float));
  if (!q || !w8 || !sc) {
    osseg__free(q), osseg__free(w8), osseg__free(sc);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  int32_t *sum = q + nq;
  float *bq = sc + 4 * M, *sw = bq + 4 * M;
  const float *wf = wt->data;
  for (int64_t o = 0; o < M; o++) {
    sw[o] = wt->qcount > 1 ? wt->qscale[o] : wt->qscale[0];
    for (int64_t i = 0; i < Ct * 9; i++) {
      float v = nearbyintf(wf[o * Ct * 9 + i] / sw[o]);
      q[o * Ct * 9 + i] = (int32_t)(v < -128 ? -128 : v > 127 ? 127 : v);
    }
  }
  /* phase (a, b) of output channel o is channel (2a + b) M + o of the phase
   * conv; its tap (ty, tx) sums the kernel rows feeding it (a = 0: {0},
   * {1, 2}; a = 1: {0, 1}, {2}) and likewise the columns */
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 2; b++)
      for (int64_t o = 0; o < M; o++) {
        const int64_t ph = (2 * a + b) * M + o;
        int32_t mx = 0;
        for (int64_t c = 0; c < Cu; c++)
          for (int ty = 0; ty < 2; ty++)
            for (int tx = 0; tx < 2; tx++) {
              const int ylo = ty == 0 ? 0 : 1 + a, yhi = ty == 0 ? a : 2;
              const int xlo = tx == 0 ? 0 : 1 + b, xhi = tx == 0 ? b : 2;
              int32_t acc = 0;
              for (int ky = ylo; ky <= yhi; ky++)
                for (int kx = xlo; kx <= xhi; kx++) acc += q[(o * Ct + uoff + c) * 9 + ky * 3 + kx];
              sum[(ph * Cu + c) * 4 + ty * 2 + tx] = acc;
              mx = acc > mx ? acc : -acc > mx ? -acc : mx;
            }
        const float f = mx > 127 ? (float)mx / 127.f : 1.f;
        for (int64_t i = 0; i < Cu * 4; i++) {
          const int32_t v = sum[ph * Cu * 4 + i];
          const float r = f == 1.f ? (float)v : nearbyintf((float)v / f);
          w8[ph * Cu * 4 + i] = (int8_t)(r < -127 ? -127 : r > 127 ? 127 : r);
        }
        sc[ph] = sx * sw[o] * f;
        bq[ph] = bt ? ((const float *)bt->data)[o] / sc[ph] : 0.f;
      }
  int err = 0;
  if (Cs) {
    int8_t *ws = w8 + np;
    for (int64_t o = 0; o < M; o++)
      for (int64_t i = 0; i < Cs * 9; i++) {
        const int64_t c = i / 9 < uoff ? i / 9 : i / 9 + Cu; /* skip the upsampled channels */
        ws[o * Cs * 9 + i] = (int8_t)q[(o * Ct + c) * 9 + i % 9];
      }
  }
  float *ss = sw + M; /* the skip conv's scales */
  for (int64_t o = 0; o < M; o++) ss[o] = sx * sw[o];
  /* Bands of low-res rows (band_bytes of P and T rows): each is computed,
   * summed and quantized before the next, so P and T are temporaries of a
   * band, not of the whole map, and the run control is checked between
   * bands. */
  const int64_t row_bytes = (W + 1) * 4 * M * 4 + (Cs ? 2 * (2 * W * M * 4) : 0);
  uint64_t band_bytes = atomic_load(&band_bytes_override);
  if (!band_bytes) band_bytes = BAND_BYTES;
  int64_t bl = (int64_t)(band_bytes / (uint64_t)row_bytes);
  bl = bl < 1 ? 1 : bl > H ? H : bl;
  if (!osseg__md_dense_nhwc(&m->md[u]) || (Cs && !osseg__md_dense_nhwc(&m->md[s]))) bl = H;
  bl = (H + (H + bl - 1) / bl - 1) / ((H + bl - 1) / bl); /* equal bands */
  const int P = float_temp(m, 4 * M, bl + 1, W + 1, diag);
  const int T = err || P < 0 || !Cs ? -1 : float_temp(m, M, 2 * bl, 2 * W, diag);
  if (P < 0) err = P;
  if (!err && Cs && T < 0) err = T;
  const int out = ydt == dnnl_u8 ? 1 : ydt == dnnl_s8 ? 2 : 0;
  struct osseg__conv_consts qp = {0}, qs = {0};
  for (int64_t q0 = 0; q0 < H && !err; q0 += bl) {
    const int64_t q1 = q0 + bl < H ? q0 + bl : H;
    /* the band's phase rows q0..q1 (P rows 0..q1-q0); row q0 of a later
     * band is the previous band's last, which its sum step carried to P's
     * row 0, so only rows p0..q1 are computed, reading u rows p0-1..q1
     * (row -1 and row H: padding) */
    const int64_t p0 = q0 > 0 ? q0 + 1 : 0;
    const int64_t u0 = p0 > 0 ? p0 - 1 : 0, u1 = q1 < H ? q1 : H - 1;
    const int dense_u = osseg__md_dense_nhwc(&m->md[u]);
    err = qconv_band(m, n, u, dense_u ? u0 : 0, dense_u ? u1 - u0 + 1 : H, P, p0 - q0, q1 - p0 + 1, w8, 4 * M,
                     Cu, 2, sc, bq, dense_u ? u0 - (p0 - 1) : 1, dense_u ? q1 - u1 : 1, 1, zp, &qp, diag);
    if (!err && Cs) {
      /* output rows 2q0..2q1-1 read skip rows 2q0-1..2q1 */
      const int dense_s = osseg__md_dense_nhwc(&m->md[s]);
      const int64_t s0 = q0 > 0 ? 2 * q0 - 1 : 0, s1 = q1 < H ? 2 * q1 : 2 * H - 1;
      err = qconv_band(m, n, s, dense_s ? s0 : 0, dense_s ? s1 - s0 + 1 : 2 * H, T, 0, 2 * (q1 - q0), w8 + np, M,
                       Cs, 3, ss, NULL, dense_s ? s0 - (2 * q0 - 1) : 1, dense_s ? 2 * q1 - s1 : 1, 1, zp, &qs,
                       diag);
    }
    struct upc *c = err ? NULL : osseg__model_alloc(m, sizeof *c);
    if (!err && !c) err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    if (err) break;
    *c = (struct upc){.P = P, .T = T, .y = y, .H = H, .W = W, .M = M, .q0 = q0, .q1 = q1, .out = out,
                      .relu = n->npost > 0, .carry = q1 < H,
                      .inv = out ? 1.f / osseg__attr_float(n, "osseg.q_out_scale", 1.f) : 1.f,
                      .zero = out ? (float)osseg__attr_int(n, "osseg.q_out_zero", 0) : 0.f,
                      .lo = out == 2 ? -128.f : 0.f, .hi = out == 2 ? 127.f : 255.f};
    struct osseg__step *st = osseg__add_step(m, OSSEG__STEP_CUSTOM, ni);
    if (!st) {
      err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      break;
    }
    osseg__step_own(st, "own: upconv phases + skip sum", 0, P, y);
    st->run = run_upc;
    st->priv = c;
    st->in = P;
    st->out = y;
    st->uses[st->nuses++] = P;
    if (T >= 0) st->uses[st->nuses++] = T;
    st->uses[st->nuses++] = y;
  }
  osseg__free(q), osseg__free(w8), osseg__free(sc);
  if (err) return err;
  /* stats: the model's nominal conv, not the cheaper one executed */
  m->params += (uint64_t)(M * Ct * 9 + (bt ? M : 0));
  m->flops += 2ull * (uint64_t)(4 * H * W) * (uint64_t)(M * Ct * 9);
  m->int8_convs++;
  return 0;
}
