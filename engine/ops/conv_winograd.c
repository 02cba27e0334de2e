/* 3x3 and 2x2 stride-1 fp32 convolutions by Winograd F(2x2, 3x3) and
 * F(2x2, 2x2).
 *
 * Each 2x2 block of outputs ("tile") is computed from a 4x4 input patch:
 *   Y = A^T [ sum_c (G g_c G^T) .* (B^T d_c B) ] A
 * i.e. 16 elementwise products per tile instead of 36 multiply-adds per
 * output quad: the 16 products over input channels are 16 matrix
 * multiplications [tiles x IC] x [IC x OC], 2.25x fewer MACs than the direct
 * convolution (F(2x2, 2x2): a 3x3 patch, 9 products instead of 16, 1.8x;
 * it serves the 2x2 phase convs of the UNet decoder's upconv rewrite,
 * conv.c). oneDNN 2.6 has Winograd only for blocked layouts (measured:
 * unimplemented for nhwc), so the transforms are own loops over the
 * contiguous nhwc channels and the 16 products one batched oneDNN matmul
 * (brgemm) per chunk of tiles.
 *
 * Work is split into chunks of tiles small enough that a chunk's
 * transformed input and products stay in the core's L2; each thread takes
 * whole chunks (input transform, matmul, output transform) and runs the
 * matmul primitive on its own buffers (inside the parallel region oneDNN
 * runs it single-threaded). Bias, a residual sum and a (leaky) ReLU are
 * fused into the output transform.
 *
 * Numerics: F(2x2, 3x3) uses only 0, +-1 and 1/2 in its transforms, so the
 * error stays within a small factor of the direct convolution's (measured
 * on the UNet++ benchmark models in bench/ENGINE_RESULTS.md). A cost model
 * (wg_pays) keeps shapes direct whose weights would be re-read from memory
 * for every chunk. The option no_winograd turns it all off (A/B measurements). */
#include "build.h"
#include "ops/conv.h"
#include "isa_variants.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define WG_MAX_THREADS 256
#define WG_CHUNK_BYTES (1u << 20) /* per-thread transformed data per chunk */

/* A thread's region of the model's shared scratchpad (all steps run one
 * after another, so every Winograd step uses the same memory):
 *   v    [np][chunk][IC] transformed input (np = 16 or 9 products)
 *   p    [np][chunk][OC] products
 *   zero IC zeros: input outside the map (padding)
 *   sink 4 x OC floats: outputs outside the map
 *   the matmul's own scratchpad
 * The memory objects are this step's views, pointed there at run time. */
struct wg_thread {
  dnnl_memory_t vm, pm, sm; /* sm: NULL when the matmul needs none */
  dnnl_stream_t stream;     /* own stream: streams are not shared between threads */
};

struct wg_step {
  int x, y;
  int64_t H, W, IC, OC, OH, OW, pt, pl; /* pads top / left */
  int64_t tiles_w, tiles, chunk, nchunks;
  int r, np; /* kernel size (3 or 2); products per tile ((r + 1)^2) */
  const float *bias; /* [OC] */
  int sum, relu;     /* epilogue: y = relu(conv + bias [+ y]) */
  float alpha;       /* ReLU's negative slope */
  dnnl_primitive_t mm;
  dnnl_memory_t wm; /* transformed weights (model-owned) */
  size_t off_p, off_zero, off_sink, off_mm, region; /* bytes, within a thread's region */
  int nthreads;
  struct wg_thread th[WG_MAX_THREADS];
};

/* Pointers to the channel vectors of tile t's a x a input patch (rows and
 * columns from 2 * tile - pad), `zero` where the patch lies in the padding. */
static inline __attribute__((always_inline)) void tile_patch(const struct wg_step *w,
                                                            const float *x, const float *zero,
                                                            int64_t t, int a, const float **d) {
  const int64_t ty = t / w->tiles_w, tx = t % w->tiles_w;
  for (int i = 0; i < a; i++) {
    const int64_t iy = 2 * ty - w->pt + i;
    for (int j = 0; j < a; j++) {
      const int64_t ix = 2 * tx - w->pl + j;
      d[a * i + j] = iy >= 0 && iy < w->H && ix >= 0 && ix < w->W
                         ? x + (size_t)(iy * w->W + ix) * (size_t)w->IC
                         : zero;
    }
  }
}

/* Pointers to tile t's four outputs in y, `sink` (4 x OC) where a row or
 * column of the tile lies past the map. */
static inline __attribute__((always_inline)) void tile_outputs(const struct wg_step *w, float *y,
                                                              float *sink, int64_t t,
                                                              float **out) {
  const int64_t ty = t / w->tiles_w, tx = t % w->tiles_w;
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++) {
      const int64_t oy = 2 * ty + i, ox = 2 * tx + j;
      out[2 * i + j] = oy < w->OH && ox < w->OW ? y + (size_t)(oy * w->OW + ox) * (size_t)w->OC
                                                : sink + (2 * i + j) * w->OC;
    }
}

/* One output value (bias included): then the addend already in y and a
 * leaky ReLU, as the epilogue asks (sum / relu are constants at every call
 * site, so each combination is its own vector loop). */
static inline __attribute__((always_inline)) void wg_store(float *y, int64_t c, float r,
                                                          const int sum, const int relu,
                                                          float alpha) {
  if (sum) r += y[c];
  if (relu) r = r > 0.f ? r : r * alpha;
  y[c] = r;
}

/* Input transform of tiles [t0, t0 + n) into v, written out per channel
 * (straight-line code, so the channel loop vectorises):
 *   r = 3, F(2x2, 3x3): V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   r = 2, F(2x2, 2x2): V = B^T d B, B^T = [1 -1 0; 0 1 0; 0 -1 1] */
static inline __attribute__((always_inline)) void wg_in_tiles(const struct wg_step *w,
                                                             const float *x, float *v,
                                                             const float *zero, int64_t t0,
                                                             int64_t n, const int r) {
  const int64_t IC = w->IC, ld = w->chunk * IC;
  for (int64_t k = 0; k < n; k++) {
    const float *d[16];
    tile_patch(w, x, zero, t0 + k, r + 1, d);
    float *o = v + k * IC;
    if (r == 3) {
      const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5],
                  *d6 = d[6], *d7 = d[7], *d8 = d[8], *d9 = d[9], *d10 = d[10], *d11 = d[11],
                  *d12 = d[12], *d13 = d[13], *d14 = d[14], *d15 = d[15];
#pragma omp simd
      for (int64_t c = 0; c < IC; c++) {
        /* t = B^T d, column j from rows 0..3 (d[4 * row + j]) */
        const float t00 = d0[c] - d8[c], t01 = d1[c] - d9[c], t02 = d2[c] - d10[c], t03 = d3[c] - d11[c];
        const float t10 = d4[c] + d8[c], t11 = d5[c] + d9[c], t12 = d6[c] + d10[c], t13 = d7[c] + d11[c];
        const float t20 = d8[c] - d4[c], t21 = d9[c] - d5[c], t22 = d10[c] - d6[c], t23 = d11[c] - d7[c];
        const float t30 = d4[c] - d12[c], t31 = d5[c] - d13[c], t32 = d6[c] - d14[c], t33 = d7[c] - d15[c];
        /* V = t B, row i */
        o[0 * ld + c] = t00 - t02, o[1 * ld + c] = t01 + t02, o[2 * ld + c] = t02 - t01, o[3 * ld + c] = t01 - t03;
        o[4 * ld + c] = t10 - t12, o[5 * ld + c] = t11 + t12, o[6 * ld + c] = t12 - t11, o[7 * ld + c] = t11 - t13;
        o[8 * ld + c] = t20 - t22, o[9 * ld + c] = t21 + t22, o[10 * ld + c] = t22 - t21, o[11 * ld + c] = t21 - t23;
        o[12 * ld + c] = t30 - t32, o[13 * ld + c] = t31 + t32, o[14 * ld + c] = t32 - t31, o[15 * ld + c] = t31 - t33;
      }
    } else {
      const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5],
                  *d6 = d[6], *d7 = d[7], *d8 = d[8];
#pragma omp simd
      for (int64_t c = 0; c < IC; c++) {
        const float t00 = d0[c] - d3[c], t01 = d1[c] - d4[c], t02 = d2[c] - d5[c];
        const float t10 = d3[c], t11 = d4[c], t12 = d5[c];
        const float t20 = d6[c] - d3[c], t21 = d7[c] - d4[c], t22 = d8[c] - d5[c];
        o[0 * ld + c] = t00 - t01, o[1 * ld + c] = t01, o[2 * ld + c] = t02 - t01;
        o[3 * ld + c] = t10 - t11, o[4 * ld + c] = t11, o[5 * ld + c] = t12 - t11;
        o[6 * ld + c] = t20 - t21, o[7 * ld + c] = t21, o[8 * ld + c] = t22 - t21;
      }
    }
  }
}

/* Output transform of tiles [t0, t0 + n) from the products p, plus bias
 * and epilogue:
 *   r = 3: Y = A^T m A, A^T = [1 1 1 0; 0 1 -1 -1]
 *   r = 2: Y = A^T m A, A^T = [1 1 0; 0 1 1] */
static inline __attribute__((always_inline)) void wg_out_tiles(const struct wg_step *w,
                                                              const float *p, float *y,
                                                              float *sink, int64_t t0, int64_t n,
                                                              const int r, const int sum,
                                                              const int relu) {
  const int64_t OC = w->OC, ld = w->chunk * OC;
  const float alpha = w->alpha;
  const float *bias = w->bias;
  for (int64_t k = 0; k < n; k++) {
    float *out[4];
    tile_outputs(w, y, sink, t0 + k, out);
    float *y0 = out[0], *y1 = out[1], *y2 = out[2], *y3 = out[3];
    const float *q = p + k * OC;
    if (r == 3) {
#pragma omp simd
      for (int64_t c = 0; c < OC; c++) {
        const float m00 = q[0 * ld + c], m01 = q[1 * ld + c], m02 = q[2 * ld + c], m03 = q[3 * ld + c];
        const float m10 = q[4 * ld + c], m11 = q[5 * ld + c], m12 = q[6 * ld + c], m13 = q[7 * ld + c];
        const float m20 = q[8 * ld + c], m21 = q[9 * ld + c], m22 = q[10 * ld + c], m23 = q[11 * ld + c];
        const float m30 = q[12 * ld + c], m31 = q[13 * ld + c], m32 = q[14 * ld + c], m33 = q[15 * ld + c];
        const float u00 = m00 + m10 + m20, u01 = m01 + m11 + m21, u02 = m02 + m12 + m22, u03 = m03 + m13 + m23;
        const float u10 = m10 - m20 - m30, u11 = m11 - m21 - m31, u12 = m12 - m22 - m32, u13 = m13 - m23 - m33;
        wg_store(y0, c, u00 + u01 + u02 + bias[c], sum, relu, alpha);
        wg_store(y1, c, u01 - u02 - u03 + bias[c], sum, relu, alpha);
        wg_store(y2, c, u10 + u11 + u12 + bias[c], sum, relu, alpha);
        wg_store(y3, c, u11 - u12 - u13 + bias[c], sum, relu, alpha);
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < OC; c++) {
        const float m00 = q[0 * ld + c], m01 = q[1 * ld + c], m02 = q[2 * ld + c];
        const float m10 = q[3 * ld + c], m11 = q[4 * ld + c], m12 = q[5 * ld + c];
        const float m20 = q[6 * ld + c], m21 = q[7 * ld + c], m22 = q[8 * ld + c];
        const float u00 = m00 + m10, u01 = m01 + m11, u02 = m02 + m12;
        const float u10 = m10 + m20, u11 = m11 + m21, u12 = m12 + m22;
        wg_store(y0, c, u00 + u01 + bias[c], sum, relu, alpha);
        wg_store(y1, c, u01 + u02 + bias[c], sum, relu, alpha);
        wg_store(y2, c, u10 + u11 + bias[c], sum, relu, alpha);
        wg_store(y3, c, u11 + u12 + bias[c], sum, relu, alpha);
      }
    }
  }
}

/* One variant per kernel size (compiled per ISA level below), each
 * dispatching the epilogue to constant arguments. */
#define WG_EPILOGUE_DISPATCH(R)                                                      \
  if (w->sum && w->relu) wg_out_tiles(w, p, y, sink, t0, n, R, 1, 1);                \
  else if (w->sum) wg_out_tiles(w, p, y, sink, t0, n, R, 1, 0);                      \
  else if (w->relu) wg_out_tiles(w, p, y, sink, t0, n, R, 0, 1);                     \
  else wg_out_tiles(w, p, y, sink, t0, n, R, 0, 0)

static inline __attribute__((always_inline)) void wg_in3_impl(const struct wg_step *w,
                                                             const float *x, float *v,
                                                             const float *zero, int64_t t0,
                                                             int64_t n) {
  wg_in_tiles(w, x, v, zero, t0, n, 3);
}
static inline __attribute__((always_inline)) void wg_in2_impl(const struct wg_step *w,
                                                             const float *x, float *v,
                                                             const float *zero, int64_t t0,
                                                             int64_t n) {
  wg_in_tiles(w, x, v, zero, t0, n, 2);
}
static inline __attribute__((always_inline)) void wg_out3_impl(const struct wg_step *w,
                                                              const float *p, float *y,
                                                              float *sink, int64_t t0,
                                                              int64_t n) {
  WG_EPILOGUE_DISPATCH(3);
}
static inline __attribute__((always_inline)) void wg_out2_impl(const struct wg_step *w,
                                                              const float *p, float *y,
                                                              float *sink, int64_t t0,
                                                              int64_t n) {
  WG_EPILOGUE_DISPATCH(2);
}
#undef WG_EPILOGUE_DISPATCH

#define WG_IN_PARAMS (const struct wg_step *w, const float *x, float *v, const float *zero, \
                      int64_t t0, int64_t n)
#define WG_OUT_PARAMS (const struct wg_step *w, const float *p, float *y, float *sink, \
                       int64_t t0, int64_t n)
OSSEG__ISA_VARIANTS(wg_in3, WG_IN_PARAMS, (w, x, v, zero, t0, n))
OSSEG__ISA_VARIANTS(wg_in2, WG_IN_PARAMS, (w, x, v, zero, t0, n))
OSSEG__ISA_VARIANTS(wg_out3, WG_OUT_PARAMS, (w, p, y, sink, t0, n))
OSSEG__ISA_VARIANTS(wg_out2, WG_OUT_PARAMS, (w, p, y, sink, t0, n))
#undef WG_IN_PARAMS
#undef WG_OUT_PARAMS

static dnnl_status_t run_wg(struct osseg_model *m, struct osseg__step *s) {
  const struct wg_step *w = s->priv;
  const float *x = osseg__tensor_ptr(m, w->x);
  float *y = osseg__tensor_ptr(m, w->y);
  const wg_in3_fn fin = w->r == 3 ? wg_in3_select() : wg_in2_select();
  const wg_out3_fn fout = w->r == 3 ? wg_out3_select() : wg_out2_select();
  int failed = 0;
#pragma omp parallel num_threads(w->nthreads)
  {
    const int tid = omp_get_thread_num();
    const struct wg_thread *t = &w->th[tid];
    char *base = (char *)m->scratch + (size_t)tid * w->region;
    float *v = (float *)base, *p = (float *)(base + w->off_p);
    float *zero = (float *)(base + w->off_zero), *sink = (float *)(base + w->off_sink);
    memset(zero, 0, (size_t)w->IC * sizeof(float));
    int ok = dnnl_memory_set_data_handle(t->vm, v) == dnnl_success &&
             dnnl_memory_set_data_handle(t->pm, p) == dnnl_success &&
             (!t->sm || dnnl_memory_set_data_handle(t->sm, base + w->off_mm) == dnnl_success);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, t->vm}, {DNNL_ARG_WEIGHTS, w->wm}, {DNNL_ARG_DST, t->pm},
                               {DNNL_ARG_SCRATCHPAD, t->sm}};
    const int nargs = t->sm ? 4 : 3;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < w->nchunks; c++) {
      const int64_t t0 = c * w->chunk, n = w->tiles - t0 < w->chunk ? w->tiles - t0 : w->chunk;
      /* a chunk is ~1 MiB of work: a cheap place to honour the run control
       * (the caller sees m->stop and discards the output) */
      if (!ok || osseg__should_stop(m)) continue;
      fin(w, x, v, zero, t0, n);
      if (dnnl_primitive_execute(w->mm, t->stream, nargs, args) != dnnl_success ||
          dnnl_stream_wait(t->stream) != dnnl_success) {
        ok = 0;
        continue;
      }
      fout(w, p, y, sink, t0, n);
    }
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
  }
  return failed ? dnnl_runtime_error : dnnl_success;
}

static void destroy_wg(struct osseg__step *s) {
  struct wg_step *w = s->priv;
  if (!w) return;
  if (w->mm) dnnl_primitive_destroy(w->mm);
  for (int i = 0; i < w->nthreads; i++) {
    if (w->th[i].vm) dnnl_memory_destroy(w->th[i].vm);
    if (w->th[i].pm) dnnl_memory_destroy(w->th[i].pm);
    if (w->th[i].sm) dnnl_memory_destroy(w->th[i].sm);
    if (w->th[i].stream) dnnl_stream_destroy(w->th[i].stream);
  }
  w->mm = NULL;
  w->nthreads = 0;
}

/* Tiles per chunk: np transformed rows of IC + OC floats in ~1 MiB, a
 * multiple of 16 between 32 and 256 (at most all tiles). */
static int64_t wg_chunk(int64_t np, int64_t IC, int64_t OC, int64_t tiles) {
  int64_t chunk = WG_CHUNK_BYTES / (np * 4 * (IC + OC));
  chunk = chunk < 32 ? 32 : chunk > 256 ? 256 : chunk / 16 * 16;
  return chunk > tiles ? tiles : chunk;
}

/* Whether Winograd is worth it for this shape, by a two-term cost model:
 * it saves (4 k^2 - np) of every tile's 4 k^2 multiply-adds per channel
 * pair, but every chunk reads the whole transformed weight matrix, which
 * beyond ~2 MiB comes from L3 or memory. With ~300 GFLOP/s of compute and
 * ~20 GB/s for that traffic (2 cores), measured cases line up: the UNet++
 * decoder's first phase conv (512 -> 4 x 256 channels, 33x33 tiles at
 * 1024²; 19 MB of weights per chunk) was 19.3 ms by F(2x2, 2x2) against
 * 13.6 ms direct, while ResNet-18's 512-channel layer4 at 32x32 (16 MB per
 * chunk, but 2.25x fewer MACs) was 10.8 against 14.2 ms. */
static int wg_pays(int64_t k, int64_t IC, int64_t OC, int64_t OH, int64_t OW) {
  const int64_t np = (k + 1) * (k + 1), tiles = ((OH + 1) / 2) * ((OW + 1) / 2);
  const int64_t chunk = wg_chunk(np, IC, OC, tiles), nchunks = (tiles + chunk - 1) / chunk;
  const double saved_flop = 2.0 * (double)tiles * (double)(4 * k * k - np) * (double)IC * (double)OC;
  const double wbytes = 4.0 * (double)np * (double)IC * (double)OC;
  /* (weights that stay in L2 cost nothing extra) */
  const double traffic = wbytes > 2.0 * 1048576 ? wbytes * (double)nchunks : 0.0;
  return saved_flop / 300e9 > traffic / 20e9;
}


int osseg__winograd_eligible(const struct osseg_model *m, int x, int y, int64_t kh, int64_t kw,
                             int64_t IC, int64_t OC, const int64_t stride[2],
                             const int64_t dil[2], const int64_t pb[2], const int64_t pe[2],
                             const struct osseg__post *post, int npost) {
  const dnnl_memory_desc_t *xmd = &m->md[x], *ymd = &m->md[y];
  if (kh != kw || (kh != 3 && kh != 2) || stride[0] != 1 || stride[1] != 1 || dil[0] != 1 ||
      dil[1] != 1)
    return 0;
  if (xmd->data_type != dnnl_f32 || ymd->data_type != dnnl_f32 || !osseg__md_dense_nhwc(xmd) ||
      !osseg__md_dense_nhwc(ymd) || xmd->dims[0] != 1 || xmd->dims[1] != IC || ymd->dims[1] != OC)
    return 0;
  /* narrow convs gain nothing: the matmul needs width to be efficient */
  if (IC < 32 || OC < 32) return 0;
  for (int i = 0; i < 2; i++)
    if (pb[i] < 0 || pb[i] > 2 || pe[i] < 0 || pe[i] > 2) return 0;
  if (ymd->dims[2] < 4 || ymd->dims[3] < 4) return 0;
  /* epilogues: [], [SUM], [RELU], [SUM, RELU] (the fused residual block) */
  if (npost > 2) return 0;
  for (int i = 0; i < npost; i++) {
    if (post[i].kind == OSSEG__POST_SUM && i != 0) return 0;
    if (post[i].kind != OSSEG__POST_SUM && post[i].kind != OSSEG__POST_RELU) return 0;
    if (post[i].kind == OSSEG__POST_RELU && i != npost - 1) return 0;
  }
  if (!wg_pays(kh, IC, OC, ymd->dims[2], ymd->dims[3])) return 0;
  return !m->opt.no_winograd;
}

int osseg__compile_winograd(struct osseg_model *m, const struct osseg__node *n, int x, int y,
                            const float *wt, int64_t k, int64_t IC, int64_t OC,
                            const float *bias, const int64_t pb[2],
                            const struct osseg__post *post, int npost, struct osseg_diag *diag) {
  const struct osseg__graph *g = &m->g;
  if (k != 2 && k != 3) return osseg__fail(diag, OSSEG_EINTERNAL, "Winograd kernel size %lld", (long long)k);
  struct wg_step *w = osseg__model_alloc(m, sizeof *w);
  if (!w) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  memset(w, 0, sizeof *w);
  w->x = x, w->y = y;
  w->H = m->md[x].dims[2], w->W = m->md[x].dims[3];
  w->OH = m->md[y].dims[2], w->OW = m->md[y].dims[3];
  w->IC = IC, w->OC = OC, w->pt = pb[0], w->pl = pb[1];
  w->r = (int)k, w->np = (int)((k + 1) * (k + 1));
  const int64_t np = w->np;
  w->tiles_w = (w->OW + 1) / 2;
  w->tiles = w->tiles_w * ((w->OH + 1) / 2);
  const int64_t chunk = wg_chunk(np, IC, OC, w->tiles);
  w->chunk = chunk;
  w->nchunks = (w->tiles + chunk - 1) / chunk;
  for (int i = 0; i < npost; i++) {
    if (post[i].kind == OSSEG__POST_SUM) w->sum = 1;
    else w->relu = 1, w->alpha = post[i].alpha;
  }
  int nth = m->opt.threads > 0 ? m->opt.threads : omp_get_max_threads();
  if (nth > WG_MAX_THREADS) nth = WG_MAX_THREADS;
  if (nth < 1) nth = 1;

  float *b = osseg__model_alloc(m, (size_t)OC * sizeof *b);
  if (!b) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  for (int64_t c = 0; c < OC; c++) b[c] = bias ? bias[c] : 0.f;
  w->bias = b;

  /* U[xi][ic][oc] = (G g G^T)[xi] with, for F(2x2, 3x3),
   * G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1], for F(2x2, 2x2) G = [1 0; 1 1; 0 1] */
  static const float G3[4][3] = {{1, 0, 0}, {.5f, .5f, .5f}, {.5f, -.5f, .5f}, {0, 0, 1}};
  static const float G2[4][3] = {{1, 0, 0}, {1, 1, 0}, {0, 1, 0}, {0, 0, 0}};
  const float(*G)[3] = k == 3 ? G3 : G2;
  const int a = (int)k + 1, kk = (int)k;
  size_t ue = (size_t)(np * IC * OC);
  float *u = osseg__malloc(ue * sizeof *u);
  if (!u) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  /* (on all threads: this is most of the load time Winograd adds) */
#pragma omp parallel for schedule(static) num_threads(nth)
  for (int64_t oc = 0; oc < OC; oc++)
    for (int64_t ic = 0; ic < IC; ic++) {
      const float *kw = wt + (size_t)(oc * IC + ic) * (size_t)(kk * kk);
      float gk[4][3] = {{0}}; /* G g */
      for (int i = 0; i < a; i++)
        for (int j = 0; j < kk; j++)
          for (int q = 0; q < kk; q++) gk[i][j] += G[i][q] * kw[q * kk + j];
      for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++) {
          float acc = 0;
          for (int q = 0; q < kk; q++) acc += gk[i][q] * G[j][q];
          u[(size_t)((a * i + j) * IC + ic) * (size_t)OC + (size_t)oc] = acc;
        }
    }

  /* matmul [np, chunk, IC] x [np, IC, OC] -> [np, chunk, OC] */
  dnnl_memory_desc_t amd, bmd, bany, cmd;
  dnnl_dims_t ad = {np, chunk, IC}, bd = {np, IC, OC}, cd = {np, chunk, OC};
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_matmul_desc_t mmd;
  /* a scratchpad per thread (the threads run the primitive concurrently),
   * allocated here: nothing is allocated per inference */
  dnnl_status_t st = dnnl_primitive_attr_create(&attr);
  if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&amd, 3, ad, dnnl_f32, dnnl_abc);
  if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&bmd, 3, bd, dnnl_f32, dnnl_abc);
  if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&bany, 3, bd, dnnl_f32, dnnl_format_tag_any);
  if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&cmd, 3, cd, dnnl_f32, dnnl_abc);
  if (st == dnnl_success) st = dnnl_matmul_desc_init(&mmd, &amd, &bany, NULL, &cmd);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &mmd, attr, m->eng, NULL);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) {
    osseg__free(u);
    return osseg__dnnl_fail(diag, st, "Winograd matmul", n);
  }
  const dnnl_memory_desc_t *smdp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  dnnl_memory_desc_t smd;
  memset(&smd, 0, sizeof smd);
  if (smdp) smd = *smdp;
  const size_t sbytes = smdp ? dnnl_memory_desc_get_size(&smd) : 0;
  int err = osseg__const_memory(m, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &bmd,
                                u, &w->wm, diag);
  osseg__free(u);
  if (!err && (st = dnnl_primitive_create(&w->mm, pd)) != dnnl_success)
    err = osseg__dnnl_fail(diag, st, "Winograd matmul", n);
  dnnl_primitive_desc_destroy(pd);
  if (err) {
    if (w->mm) dnnl_primitive_destroy(w->mm);
    return err;
  }

  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, (int)(n - g->nodes));
  if (!s) {
    dnnl_primitive_destroy(w->mm);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  s->run = run_wg;
  osseg__step_own(s, "own: winograd", 1, x, y);
  s->destroy = destroy_wg;
  s->priv = w;
  w->nthreads = nth; /* destroy_wg frees the memories of these threads */
  /* (a last, partial chunk leaves stale rows in v: their products are
   * computed and never written out) */
#define WG_ALIGN(b) (((b) + 63) & ~(size_t)63)
  w->off_p = WG_ALIGN((size_t)(np * chunk * IC) * sizeof(float));
  w->off_zero = w->off_p + WG_ALIGN((size_t)(np * chunk * OC) * sizeof(float));
  w->off_sink = w->off_zero + WG_ALIGN((size_t)IC * sizeof(float));
  w->off_mm = w->off_sink + WG_ALIGN((size_t)(4 * OC) * sizeof(float));
  w->region = WG_ALIGN(w->off_mm + sbytes);
#undef WG_ALIGN
  if ((size_t)nth * w->region > m->scratch_bytes) m->scratch_bytes = (size_t)nth * w->region;
  for (int i = 0; i < nth; i++) {
    struct wg_thread *t = &w->th[i];
    if ((st = dnnl_memory_create(&t->vm, &amd, m->eng, DNNL_MEMORY_NONE)) != dnnl_success ||
        (st = dnnl_memory_create(&t->pm, &cmd, m->eng, DNNL_MEMORY_NONE)) != dnnl_success ||
        (sbytes && (st = dnnl_memory_create(&t->sm, &smd, m->eng, DNNL_MEMORY_NONE)) != dnnl_success) ||
        (st = dnnl_stream_create(&t->stream, m->eng, dnnl_stream_default_flags)) != dnnl_success)
      return osseg__dnnl_fail(diag, st, "Winograd buffers", n);
  }
  s->uses[s->nuses++] = x;
  s->uses[s->nuses++] = y;
  for (int i = 0; i < npost; i++)
    if (post[i].kind == OSSEG__POST_SUM && post[i].arg >= 0 && s->nuses < OSSEG__MAX_ARGS)
      s->uses[s->nuses++] = post[i].arg;
  m->winograd_convs++;
  m->params += (uint64_t)(k * k * IC * OC) + (bias ? (uint64_t)OC : 0);
  m->flops += 2ull * (uint64_t)(w->OH * w->OW) * (uint64_t)(IC * OC * k * k);
  return 0;
}
