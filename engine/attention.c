/* osseg.Attention: O = softmax(scale * Q K^T) V per (batch, head), computed
 * in tiles of T query rows so that only a T x M score tile exists (SegFormer
 * stage 1 at 1024^2 has 65536 queries x 1024 keys: 256 MiB if materialised).
 *
 * Q, K, V and O are strided views of the token tensors found by
 * transformer_fuse.c (head h of Q is the column block h*d of the (L, C)
 * query matrix, K^T is read transposed through its strides), so no head
 * split / transpose copies run. Per tile: matmul (Q K^T, output scale =
 * scale, f32 scores), softmax in fp32 (accurate), matmul (P V) writing the
 * tile's rows of O in place. Primitives are created once per tile height
 * (full tiles and the last partial one); each call only moves the memory
 * handles (dnnl_memory_set_data_handle). bf16: Q/K/V/O and the
 * probabilities are bf16, scores and softmax statistics fp32. */
#include "transformer.h"

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
        struct attn_var *v = &a->var[t0 + a->var[0].T <= a->N ? 0 : 1];
        size_t qo = (size_t)(a->q[0] + b * a->q[5] + h * a->q[6] + t0 * a->q[7]);
        size_t oo = (size_t)(a->o[0] + b * a->o[5] + h * a->o[6] + t0 * a->o[7]);
        st = dnnl_memory_set_data_handle(v->q, qb + qo * es);
        if (st == dnnl_success) st = dnnl_memory_set_data_handle(v->o, ob + oo * es);
        for (int p = 0; p < NPRIM && st == dnnl_success; p++)
          st = dnnl_primitive_execute(v->prim[p], m->stream, v->nargs[p], v->args[p]);
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
  if (impl && m->opt.verbose && (!strncmp(impl, "ref", 3) || strstr(impl, ":ref")))
    fprintf(stderr, "osseg: warning: node '%s' (attention part %d) runs on oneDNN '%s'\n",
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
  int sidx, err;
  /* scores = scale * Q K^T */
  if (osseg__tr_attr(m, NULL, NULL, &attr, &sidx)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
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
  /* probabilities = softmax(scores) along the keys */
  if (osseg__tr_attr(m, NULL, NULL, &attr, &sidx)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_softmax_v2_desc_t sd;
  st = dnnl_softmax_v2_forward_desc_init(&sd, dnnl_forward_inference, dnnl_softmax_accurate, &smd,
                                         &pmd, 1);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &sd, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "attention softmax", n);
  arg(v, PSM, DNNL_ARG_SRC, v->s);
  arg(v, PSM, DNNL_ARG_DST, v->p);
  if ((err = finish(m, v, PSM, pd, n, diag))) return err;
  /* O rows = P V */
  if (osseg__tr_attr(m, NULL, NULL, &attr, &sidx)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
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

int osseg__compile_attention(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
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
  a->ts = osseg__add_temp(m, -1, diag);
  if (a->ts < 0) return a->ts;
  int64_t sd[2] = {T, a->M};
  g->tensors[a->ts].rank = 2;
  memcpy(g->tensors[a->ts].dims, sd, sizeof sd);
  if (osseg__tr_plain_md(&m->md[a->ts], sd, 2, dnnl_f32)) return osseg__fail(diag, OSSEG_EBACKEND, "md");
  a->tp = -1;
  if (m->act_dt != dnnl_f32) {
    if ((a->tp = osseg__add_temp(m, a->ts, diag)) < 0) return a->tp;
    if (osseg__tr_plain_md(&m->md[a->tp], sd, 2, m->act_dt)) return osseg__fail(diag, OSSEG_EBACKEND, "md");
  }
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, ni);
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->run = run_attn;
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
