/* osseg.Attention: O = softmax(scale * Q K^T) V per (batch, head), computed
 * in tiles of T query rows so that only a T x M score tile exists (SegFormer
 * stage 1 at 1024^2 has 65536 queries x 1024 keys: 256 MiB if materialised).
 *
 * Q, K, V and O are strided views of the token tensors found by
 * passes/fuse_attention.c (head h of Q is the column block h*d of the (L, C)
 * query matrix, K^T is read transposed through its strides), so no head
 * split / transpose copies run. Per tile: matmul (Q K^T, output scale =
 * scale, f32 scores), softmax in fp32 (accurate), matmul (P V) writing the
 * tile's rows of O in place. In fp32 the softmax is an own pass instead
 * (AVX-512 exp, generic expf fallback) that leaves exp(s - max) unnormalised
 * and scales the tile's d-wide output rows by 1/sum after P V: one pass
 * over the scores fewer (~8% of the attention time at 1024^2). Primitives are created once per tile height
 * (full tiles and the last partial one); each call only moves the memory
 * handles (dnnl_memory_set_data_handle). bf16: Q/K/V/O and the
 * probabilities are bf16, scores and softmax statistics fp32. */
#include "build.h"
#include "bf16.h"
#include "view.h"
#include "isa_variants.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>



enum { PQK, PSM, PPV, NPRIM };

struct attn_var {
  int64_t T;
  dnnl_primitive_t prim[NPRIM];
  dnnl_memory_t q, k, s, p, v, o, scr[NPRIM];
  dnnl_exec_arg_t args[NPRIM][4];
  int nargs[NPRIM];
};

struct attn {
  int tq, tk, tv, to, ts, tp;
  int own_sm; /* fp32: exp pass here, 1/sum applied to the P V rows */
  int avx512;
  int64_t B, H, N, M;
  int64_t q[9], k[9], v[9], o[9]; /* offset, dims[4], strides[4] (elements) */
  size_t es;
  int nvar;
  struct attn_var var[2];
};

static void destroy_attn(struct osseg__step *s) {
  struct attn *a = s->priv;
  if (!a) return;
  for (int i = 0; i < a->nvar; i++) {
    struct attn_var *v = &a->var[i];
    for (int p = 0; p < NPRIM; p++) {
      if (v->prim[p]) dnnl_primitive_destroy(v->prim[p]);
      if (v->scr[p]) dnnl_memory_destroy(v->scr[p]);
    }
    dnnl_memory_t mems[] = {v->q, v->k, v->s, v->p != v->s ? v->p : NULL, v->v, v->o};
    for (size_t k = 0; k < sizeof mems / sizeof mems[0]; k++)
      if (mems[k]) dnnl_memory_destroy(mems[k]);
  }
  a->nvar = 0;
}

/* exp(s - max(s)) in place over one row of scores; returns the sum. */
__attribute__((target("avx512f")))
static float exp_row_avx512(float *s, int64_t M) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= M; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + i));
  if (i < M) {
    __mmask16 k = (__mmask16)((1u << (M - i)) - 1);
    vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, s + i));
  }
  const float mx = _mm512_reduce_max_ps(vmax);
  /* 2^t, t = (s - max) log2(e): 2^frac by a degree-7 Taylor polynomial of
   * e^(f ln 2), |f| <= 1/2 (relative error < 2e-8), scaled by 2^round(t) */
  const __m512 l2e = _mm512_set1_ps(1.44269504088896341f), off = _mm512_set1_ps(mx * 1.44269504088896341f);
  const __m512 lo = _mm512_set1_ps(-127.f);
  const __m512 c1 = _mm512_set1_ps(0.693147180559945f), c2 = _mm512_set1_ps(0.240226506959101f),
               c3 = _mm512_set1_ps(0.0555041086648216f), c4 = _mm512_set1_ps(0.00961812910762848f),
               c5 = _mm512_set1_ps(0.00133335581464284f), c6 = _mm512_set1_ps(0.000154035303933816f),
               c7 = _mm512_set1_ps(1.52527338040598e-05f), one = _mm512_set1_ps(1.f);
#define OSSEG_EXP2_POLY(t, e)                                                              \
  do {                                                                                     \
    __m512 t_ = _mm512_max_ps(t, lo);                                                      \
    __m512 n_ = _mm512_roundscale_ps(t_, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);   \
    __m512 f_ = _mm512_sub_ps(t_, n_);                                                     \
    __m512 p_ = _mm512_fmadd_ps(c7, f_, c6);                                               \
    p_ = _mm512_fmadd_ps(p_, f_, c5);                                                      \
    p_ = _mm512_fmadd_ps(p_, f_, c4);                                                      \
    p_ = _mm512_fmadd_ps(p_, f_, c3);                                                      \
    p_ = _mm512_fmadd_ps(p_, f_, c2);                                                      \
    p_ = _mm512_fmadd_ps(p_, f_, c1);                                                      \
    p_ = _mm512_fmadd_ps(p_, f_, one);                                                     \
    e = _mm512_scalef_ps(p_, n_);                                                          \
  } while (0)
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (i = 0; i + 32 <= M; i += 32) { /* two independent chains */
    __m512 e0, e1;
    __m512 t0 = _mm512_fmsub_ps(_mm512_loadu_ps(s + i), l2e, off);
    __m512 t1 = _mm512_fmsub_ps(_mm512_loadu_ps(s + i + 16), l2e, off);
    OSSEG_EXP2_POLY(t0, e0);
    OSSEG_EXP2_POLY(t1, e1);
    _mm512_storeu_ps(s + i, e0);
    _mm512_storeu_ps(s + i + 16, e1);
    acc0 = _mm512_add_ps(acc0, e0);
    acc1 = _mm512_add_ps(acc1, e1);
  }
  for (; i < M; i += 16) {
    __mmask16 k = M - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (M - i)) - 1);
    __m512 e, t = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, s + i), l2e, off);
    OSSEG_EXP2_POLY(t, e);
    _mm512_mask_storeu_ps(s + i, k, e);
    acc0 = _mm512_mask_add_ps(acc0, k, acc0, e);
  }
#undef OSSEG_EXP2_POLY
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

static float exp_row_generic(float *s, int64_t M) {
  float mx = -INFINITY, sum = 0.f;
  for (int64_t i = 0; i < M; i++) mx = s[i] > mx ? s[i] : mx;
  for (int64_t i = 0; i < M; i++) sum += (s[i] = expf(s[i] - mx));
  return sum;
}

/* Unnormalised softmax of T rows of M scores: inv[r] = 1 / sum_r. */
static void exp_rows(float *s, float *inv, int64_t T, int64_t M, int avx512) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < T; r++) {
    float sum = avx512 ? exp_row_avx512(s + r * M, M) : exp_row_generic(s + r * M, M);
    inv[r] = 1.f / sum;
  }
}

/* O rows (stride rs, d contiguous) scaled by inv. */
static void scale_rows(float *o, int64_t rs, int64_t cs, const float *inv, int64_t T, int64_t D) {
  for (int64_t r = 0; r < T; r++)
    for (int64_t j = 0; j < D; j++) o[r * rs + j * cs] *= inv[r];
}

static dnnl_status_t run_attn(struct osseg_model *m, struct osseg__step *s) {
  struct attn *a = s->priv;
  char *qb = osseg__tensor_ptr(m, a->tq), *kb = osseg__tensor_ptr(m, a->tk);
  char *vb = osseg__tensor_ptr(m, a->tv), *ob = osseg__tensor_ptr(m, a->to);
  void *sp = osseg__tensor_ptr(m, a->ts), *pp = a->tp >= 0 ? osseg__tensor_ptr(m, a->tp) : sp;
  const size_t es = a->es;
  dnnl_status_t st = dnnl_success;
  for (int i = 0; i < a->nvar; i++) {
    struct attn_var *v = &a->var[i];
    st = dnnl_memory_set_data_handle(v->s, sp);
    if (st == dnnl_success && v->p != v->s) st = dnnl_memory_set_data_handle(v->p, pp);
    for (int p = 0; p < NPRIM && st == dnnl_success; p++)
      if (v->scr[p]) st = dnnl_memory_set_data_handle(v->scr[p], m->scratch);
    if (st != dnnl_success) return st;
  }
  for (int64_t b = 0; b < a->B; b++)
    for (int64_t h = 0; h < a->H; h++) {
      char *kp = kb + (size_t)(a->k[0] + b * a->k[5] + h * a->k[6]) * es;
      char *vp = vb + (size_t)(a->v[0] + b * a->v[5] + h * a->v[6]) * es;
      for (int i = 0; i < a->nvar && st == dnnl_success; i++) {
        st = dnnl_memory_set_data_handle(a->var[i].k, kp);
        if (st == dnnl_success) st = dnnl_memory_set_data_handle(a->var[i].v, vp);
      }
      for (int64_t t0 = 0; t0 < a->N && st == dnnl_success; t0 += a->var[0].T) {
        /* per query tile: the caller sees m->stop and discards the output */
        if (osseg__should_stop(m)) return dnnl_success;
        struct attn_var *v = &a->var[t0 + a->var[0].T <= a->N ? 0 : 1];
        size_t qo = (size_t)(a->q[0] + b * a->q[5] + h * a->q[6] + t0 * a->q[7]);
        size_t oo = (size_t)(a->o[0] + b * a->o[5] + h * a->o[6] + t0 * a->o[7]);
        st = dnnl_memory_set_data_handle(v->q, qb + qo * es);
        if (st == dnnl_success) st = dnnl_memory_set_data_handle(v->o, ob + oo * es);
        if (!a->own_sm) {
          for (int p = 0; p < NPRIM && st == dnnl_success; p++)
            st = dnnl_primitive_execute(v->prim[p], m->stream, v->nargs[p], v->args[p]);
          continue;
        }
        /* fp32: scores -> exp in place (+ row sums) -> E V -> rows / sum */
        float *inv = (float *)sp + v->T * a->M;
        st = dnnl_primitive_execute(v->prim[PQK], m->stream, v->nargs[PQK], v->args[PQK]);
        if (st != dnnl_success) break;
        exp_rows(sp, inv, v->T, a->M, a->avx512);
        st = dnnl_primitive_execute(v->prim[PPV], m->stream, v->nargs[PPV], v->args[PPV]);
        if (st == dnnl_success)
          scale_rows((float *)(ob + oo * es), a->o[7], a->o[8], inv, v->T, a->v[4]);
      }
      if (st != dnnl_success) return st;
    }
  return st;
}

static int mem(struct osseg_model *m, const dnnl_memory_desc_t *md, dnnl_memory_t *out) {
  return dnnl_memory_create(out, md, m->eng, DNNL_MEMORY_NONE) == dnnl_success ? 0 : -1;
}

/* Creates the primitive of pd into v (slot p), with a scratchpad memory. */
static int finish(struct osseg_model *m, struct attn_var *v, int p, dnnl_primitive_desc_t pd,
                  const struct osseg__node *n, struct osseg_diag *diag) {
  const char *impl = NULL;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  if (impl && (!strncmp(impl, "ref", 3) || strstr(impl, ":ref")))
    osseg__log(&m->opt.log, OSSEG_LOG_WARN, "node '%s' (attention part %d) runs on oneDNN '%s'",
               n->name, p, impl);
  if (impl && !strncmp(impl, "ref", 3)) m->warned_ref++;
  const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  if (smd && dnnl_memory_desc_get_size(smd)) {
    size_t sz = dnnl_memory_desc_get_size(smd);
    if (sz > m->scratch_bytes) m->scratch_bytes = sz;
    if (mem(m, smd, &v->scr[p])) {
      dnnl_primitive_desc_destroy(pd);
      return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': scratchpad memory", n->name);
    }
  }
  dnnl_status_t st = dnnl_primitive_create(&v->prim[p], pd);
  dnnl_primitive_desc_destroy(pd);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "attention primitive", n);
  if (v->scr[p]) {
    v->args[p][v->nargs[p]].arg = DNNL_ARG_SCRATCHPAD;
    v->args[p][v->nargs[p]++].memory = v->scr[p];
  }
  return 0;
}

static void arg(struct attn_var *v, int p, int kind, dnnl_memory_t mm) {
  v->args[p][v->nargs[p]].arg = kind;
  v->args[p][v->nargs[p]++].memory = mm;
}

static int build_var(struct osseg_model *m, const struct osseg__node *n, struct attn *a,
                     struct attn_var *v, int64_t T, float scale, struct osseg_diag *diag) {
  dnnl_data_type_t dt = m->act_dt;
  int64_t Dq = a->q[4], Dv = a->v[4], M = a->M;
  dnnl_memory_desc_t qmd, kmd, smd, pmd, vmd, omd;
  dnnl_dims_t d, s;
  int ok = 1;
  v->T = T;
  d[0] = T, d[1] = Dq, s[0] = a->q[7], s[1] = a->q[8];
  ok &= dnnl_memory_desc_init_by_strides(&qmd, 2, d, dt, s) == dnnl_success;
  d[0] = Dq, d[1] = M, s[0] = a->k[7], s[1] = a->k[8];
  ok &= dnnl_memory_desc_init_by_strides(&kmd, 2, d, dt, s) == dnnl_success;
  d[0] = T, d[1] = M;
  ok &= dnnl_memory_desc_init_by_tag(&smd, 2, d, dnnl_f32, dnnl_ab) == dnnl_success;
  ok &= dnnl_memory_desc_init_by_tag(&pmd, 2, d, dt, dnnl_ab) == dnnl_success;
  d[0] = M, d[1] = Dv, s[0] = a->v[7], s[1] = a->v[8];
  ok &= dnnl_memory_desc_init_by_strides(&vmd, 2, d, dt, s) == dnnl_success;
  d[0] = T, d[1] = Dv, s[0] = a->o[7], s[1] = a->o[8];
  ok &= dnnl_memory_desc_init_by_strides(&omd, 2, d, dt, s) == dnnl_success;
  if (!ok) return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': attention descriptors", n->name);
  if (mem(m, &qmd, &v->q) || mem(m, &kmd, &v->k) || mem(m, &smd, &v->s) || mem(m, &vmd, &v->v) ||
      mem(m, &omd, &v->o))
    return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': attention memories", n->name);
  v->p = v->s;
  if (dt != dnnl_f32 && mem(m, &pmd, &v->p))
    return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': attention memories", n->name);
  dnnl_primitive_attr_t attr;
  dnnl_primitive_desc_t pd = NULL;
  int err;
  /* scores = scale * Q K^T */
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_status_t st = scale != 1.f ? dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale)
                                  : dnnl_success;
  dnnl_matmul_desc_t md;
  if (st == dnnl_success) st = dnnl_matmul_desc_init(&md, &qmd, &kmd, NULL, &smd);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &md, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "attention Q.K^T", n);
  arg(v, PQK, DNNL_ARG_SRC, v->q);
  arg(v, PQK, DNNL_ARG_WEIGHTS, v->k);
  arg(v, PQK, DNNL_ARG_DST, v->s);
  if ((err = finish(m, v, PQK, pd, n, diag))) return err;
  /* probabilities = softmax(scores) along the keys (fp32: own exp pass) */
  if (a->own_sm) goto pv;
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_softmax_v2_desc_t sd;
  st = dnnl_softmax_v2_forward_desc_init(&sd, dnnl_forward_inference, dnnl_softmax_accurate, &smd,
                                         &pmd, 1);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &sd, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "attention softmax", n);
  arg(v, PSM, DNNL_ARG_SRC, v->s);
  arg(v, PSM, DNNL_ARG_DST, v->p);
  if ((err = finish(m, v, PSM, pd, n, diag))) return err;
pv:
  /* O rows = P V */
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  st = dnnl_matmul_desc_init(&md, &pmd, &vmd, NULL, &omd);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &md, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "attention P.V", n);
  arg(v, PPV, DNNL_ARG_SRC, v->p);
  arg(v, PPV, DNNL_ARG_WEIGHTS, v->v);
  arg(v, PPV, DNNL_ARG_DST, v->o);
  return finish(m, v, PPV, pd, n, diag);
}

static int get_view(const struct osseg__node *n, const char *name, int64_t *out) {
  const struct osseg__attr *at = osseg__attr_find(n, name);
  if (!at || at->type != OSSEG__ATTR_INTS || at->n != 9) return -1;
  memcpy(out, at->ints, 9 * sizeof(int64_t));
  return 0;
}

static int compile_attention(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int ni = (int)(n - g->nodes);
  struct attn *a = osseg__model_alloc(m, sizeof *a);
  if (!a) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  memset(a, 0, sizeof *a);
  if (get_view(n, "q", a->q) || get_view(n, "k", a->k) || get_view(n, "v", a->v) ||
      get_view(n, "o", a->o))
    return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': attention views missing", n->name);
  a->tq = n->in[0], a->tk = n->in[1], a->tv = n->in[2], a->to = n->out[0];
  a->B = a->o[1], a->H = a->o[2], a->N = a->o[3], a->M = a->k[4];
  a->es = m->act_dt == dnnl_bf16 ? 2 : 4;
  float scale = osseg__attr_float(n, "scale", 1.f);
  /* Tile: about 1 MiB of fp32 scores (fits L2), 16..N rows. */
  int64_t T = (int64_t)(262144 / (a->M > 0 ? a->M : 1));
  if (T < 16) T = 16;
  if (T > a->N) T = a->N;
  a->own_sm = m->act_dt == dnnl_f32;
  /* The base layer's CPU detection honours osseg_cpu_features_disable(), so
   * the test suite covers the generic exp loop on this machine too. */
  a->avx512 = (osseg_cpu_features() & OSSEG_CPU_AVX512) != 0;
  a->ts = osseg__add_temp(m, -1, diag);
  if (a->ts < 0) return a->ts;
  int64_t sd[2] = {T, a->M}, sflat[1] = {T * a->M + T}; /* scores, then 1/row sums */
  g->tensors[a->ts].rank = 1;
  g->tensors[a->ts].dims[0] = sflat[0];
  if (osseg__plain_md(&m->md[a->ts], sflat, 1, dnnl_f32)) return osseg__fail(diag, OSSEG_EBACKEND, "md");
  a->tp = -1;
  if (m->act_dt != dnnl_f32) {
    if ((a->tp = osseg__add_temp(m, -1, diag)) < 0) return a->tp;
    g->tensors[a->tp].rank = 2;
    memcpy(g->tensors[a->tp].dims, sd, sizeof sd);
    if (osseg__plain_md(&m->md[a->tp], sd, 2, m->act_dt)) return osseg__fail(diag, OSSEG_EBACKEND, "md");
  }
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, ni);
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->run = run_attn;
  osseg__step_own(s, "own: attention", 0, a->tq, a->to);
  s->destroy = destroy_attn;
  s->priv = a;
  int uses[] = {a->tq, a->tk, a->tv, a->to, a->ts, a->tp};
  for (size_t i = 0; i < sizeof uses / sizeof uses[0]; i++)
    if (uses[i] >= 0) s->uses[s->nuses++] = uses[i];
  n = &m->g.nodes[ni];
  a->nvar = 1;
  int err = build_var(m, n, a, &a->var[0], T, scale, diag);
  if (!err && a->N % T) {
    a->nvar = 2;
    err = build_var(m, n, a, &a->var[1], a->N % T, scale, diag);
  }
  uint64_t bh = (uint64_t)(a->B * a->H);
  m->flops += bh * 2ull * (uint64_t)a->N * (uint64_t)a->M * (uint64_t)(a->q[4] + a->v[4]);
  return err;
}

const struct osseg__op osseg__ops_attention[] = {
    {"osseg.Attention", 0, 0, OSSEG__OP_INTERNAL, OSSEG__PREC_RUNTIME, NULL, NULL, compile_attention},
    {0},
};
