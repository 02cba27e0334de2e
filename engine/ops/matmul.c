/* MatMul (numpy semantics: 1-D operands, broadcast batch dims) and Gemm
 * through the oneDNN matmul primitive.
 *
 * A constant right operand (Linear layers) is reordered once into the
 * layout the primitive picks (format_tag_any) and the left operand's batch
 * dims are folded into its rows, so (1, L, C) x (C, K) runs as one 2-D
 * (L x C) x (C x K) product. Fused epilogues (passes/fuse_matmul_epilogue.c): bias
 * (third input), residual add (binary post-op reading the addend), gelu_erf
 * / relu / sigmoid. Runtime x runtime products use strided descriptors. */
#include "build.h"
#include "bf16.h"
#include "view.h"

#include <string.h>

static int infer_matmul(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *a = osseg__in(g, n, 0), *b = osseg__in(g, n, 1), *y = &g->tensors[n->out[0]];
  if (!a || !b || n->nin != 2)
    return OSSEG__FAIL(OSSEG_EPARSE, OSSEG__NODEFMT "needs exactly two inputs", OSSEG__NODEARG);
  if (a->rank < 1 || b->rank < 1 || a->rank > 6 || b->rank > 6)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "operand ranks %d and %d (1..6 supported)", OSSEG__NODEARG,
                a->rank, b->rank);
  int64_t ad[8], bd[8];
  int ar = a->rank, br = b->rank;
  memcpy(ad, a->dims, sizeof(int64_t) * (size_t)ar);
  memcpy(bd, b->dims, sizeof(int64_t) * (size_t)br);
  if (ar == 1) ad[1] = ad[0], ad[0] = 1, ar = 2;
  if (br == 1) bd[1] = 1, br = 2;
  if (ad[ar - 1] != bd[br - 2])
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "inner dims differ (%lld vs %lld)", OSSEG__NODEARG,
                (long long)ad[ar - 1], (long long)bd[br - 2]);
  int r = ar > br ? ar : br;
  for (int i = 0; i < r - 2; i++) {
    int ia = i - (r - ar), ib = i - (r - br);
    int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "batch dims do not broadcast", OSSEG__NODEARG);
    y->dims[i] = da == 1 ? db : da;
  }
  int k = r - 2;
  if (a->rank > 1) y->dims[k++] = ad[ar - 2];
  if (b->rank > 1) y->dims[k++] = bd[br - 1];
  y->rank = k;
  y->dtype = a->dtype;
  return 0;
}

static int infer_gemm(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *a = osseg__in(g, n, 0), *b = osseg__in(g, n, 1), *c = osseg__in(g, n, 2);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  if (!a || !b || a->rank != 2 || b->rank != 2)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "A and B must be 2-D", OSSEG__NODEARG);
  int ta = (int)osseg__attr_int(n, "transA", 0), tb = (int)osseg__attr_int(n, "transB", 0);
  int64_t M = ta ? a->dims[1] : a->dims[0], K = ta ? a->dims[0] : a->dims[1];
  int64_t K2 = tb ? b->dims[1] : b->dims[0], N = tb ? b->dims[0] : b->dims[1];
  if (K != K2) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "inner dims differ", OSSEG__NODEARG);
  y->rank = 2;
  y->dims[0] = M;
  y->dims[1] = N;
  y->dtype = a->dtype;
  if (c) {
    struct osseg__tensor tmp;
    if (c->rank > 2 || osseg__broadcast(y, c, &tmp) || tmp.rank != 2 || tmp.dims[0] != M ||
        tmp.dims[1] != N)
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "C does not broadcast to (%lld, %lld)", OSSEG__NODEARG,
                  (long long)M, (long long)N);
  }
  return 0;
}



#define FAILN(code, fmt, ...) \
  osseg__fail(diag, code, "node '%s' (%s, opset %d): " fmt, n->name, n->op, g->opset, __VA_ARGS__)

static void row_major(const int64_t *d, int r, dnnl_dims_t s) {
  int64_t k = 1;
  for (int i = r - 1; i >= 0; i--) s[i] = k, k *= d[i];
}

static int compile_matmul(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int ni = (int)(n - g->nodes);
  int isgemm = !strcmp(n->op, "Gemm");
  int A = n->in[0], B = n->in[1], C = n->nin > 2 ? n->in[2] : -1, y = n->out[0];
  int ta = isgemm ? (int)osseg__attr_int(n, "transA", 0) : 0;
  int tb = isgemm ? (int)osseg__attr_int(n, "transB", 0) : 0;
  float alpha = isgemm ? osseg__attr_float(n, "alpha", 1.f) : 1.f;
  float beta = isgemm ? osseg__attr_float(n, "beta", 1.f) : 1.f;
  if (g->tensors[A].data)
    return FAILN(OSSEG_EUNSUPPORTED, "constant left operand '%s' (fold it)", g->tensors[A].name);
  int bconst = g->tensors[B].data != NULL;
  if (bconst && g->tensors[B].dtype != OSSEG__DT_FLOAT)
    return FAILN(OSSEG_EUNSUPPORTED, "weights '%s' are %s", g->tensors[B].name,
                 osseg__dtype_name(g->tensors[B].dtype));
  if (C >= 0 && (!g->tensors[C].data || g->tensors[C].dtype != OSSEG__DT_FLOAT))
    return FAILN(OSSEG_EUNSUPPORTED, "bias/C '%s' must be a float32 constant", g->tensors[C].name);
  int a_t = osseg__plain_in(m, ni, A, diag);
  if (a_t < 0) return a_t;
  int b_t = B;
  if (!bconst && (b_t = osseg__plain_in(m, ni, B, diag)) < 0) return b_t;
  int y_t = osseg__plain_out(m, y, diag);
  if (y_t < 0) return y_t;
  const struct osseg__tensor *at = &g->tensors[A], *bt = &g->tensors[B], *yt = &g->tensors[y];
  /* operand dims at a common rank r (1-D operands become rows/columns) */
  int64_t ad[8], bd[8], yd[8];
  dnnl_dims_t as, bs, ys;
  int ar = at->rank, br = bt->rank;
  memcpy(ad, at->dims, sizeof(int64_t) * (size_t)ar);
  memcpy(bd, bt->dims, sizeof(int64_t) * (size_t)br);
  int a1 = ar == 1, b1 = br == 1;
  if (a1) ad[1] = ad[0], ad[0] = 1, ar = 2;
  if (b1) bd[1] = 1, br = 2;
  int r = ar > br ? ar : br;
  int64_t tmpd[8];
  memcpy(tmpd, ad, sizeof ad);
  for (int i = 0; i < r; i++) ad[i] = i < r - ar ? 1 : tmpd[i - (r - ar)];
  memcpy(tmpd, bd, sizeof bd);
  for (int i = 0; i < r; i++) bd[i] = i < r - br ? 1 : tmpd[i - (r - br)];
  row_major(ad, r, as);
  row_major(bd, r, bs);
  if (ta) { /* Gemm: logical (M, K) is the transpose of the stored (K, M) */
    int64_t t = ad[0]; ad[0] = ad[1], ad[1] = t;
    t = as[0]; as[0] = as[1], as[1] = t;
  }
  if (tb) {
    int64_t t = bd[0]; bd[0] = bd[1], bd[1] = t;
    t = bs[0]; bs[0] = bs[1], bs[1] = t;
  }
  int64_t M = ad[r - 2], K = ad[r - 1], N = bd[r - 1];
  if (bd[r - 2] != K) return FAILN(OSSEG_ESHAPE, "inner dims %lld and %lld", (long long)K, (long long)bd[r - 2]);
  for (int i = 0; i < r - 2; i++) yd[i] = ad[i] == 1 ? bd[i] : ad[i];
  yd[r - 2] = M, yd[r - 1] = N;
  /* Fold A's batch dims into rows when B is a plain 2-D constant. */
  int bbatch = 0;
  for (int i = 0; i < r - 2; i++) bbatch |= bd[i] != 1;
  if (bconst && !bbatch && !ta) {
    int64_t rows = 1;
    for (int i = 0; i < r - 1; i++) rows *= ad[i];
    ad[0] = rows, ad[1] = K, yd[0] = rows, yd[1] = N, bd[0] = K, bd[1] = N;
    as[0] = K, as[1] = 1, ys[0] = N, ys[1] = 1;
    if (tb) bs[0] = 1, bs[1] = K;
    else bs[0] = N, bs[1] = 1;
    r = 2;
  }
  row_major(yd, r, ys);
  size_t yel = 1;
  for (int i = 0; i < r; i++) yel *= (size_t)yd[i];
  size_t have;
  osseg__tensor_elems(g, yt, &have);
  if (have != yel) return FAILN(OSSEG_EINTERNAL, "output size %zu vs %zu", have, yel);
  dnnl_memory_desc_t amd, bmd, ymd, wmd_any, bias_md;
  dnnl_dims_t adn, bdn, ydn, biasd;
  for (int i = 0; i < r; i++) adn[i] = ad[i], bdn[i] = bd[i], ydn[i] = yd[i], biasd[i] = 1;
  biasd[r - 1] = N;
  dnnl_data_type_t dt = m->act_dt;
  if (dnnl_memory_desc_init_by_strides(&amd, r, adn, dt, as) != dnnl_success ||
      dnnl_memory_desc_init_by_strides(&ymd, r, ydn, dt, ys) != dnnl_success ||
      dnnl_memory_desc_init_by_strides(&bmd, r, bdn, bconst ? dnnl_f32 : dt, bs) != dnnl_success ||
      dnnl_memory_desc_init_by_tag(&wmd_any, r, bdn, dt, dnnl_format_tag_any) != dnnl_success)
    return FAILN(OSSEG_EBACKEND, "%s", "memory descriptors");
  /* bias: third MatMul input (fused Add) or Gemm's beta * C */
  float *bias = NULL;
  if (C >= 0) {
    const struct osseg__tensor *ct = &g->tensors[C];
    size_t cr = ct->rank >= 2 ? (size_t)ct->dims[ct->rank - 2] : 1;
    size_t cc = ct->rank >= 1 ? (size_t)ct->dims[ct->rank - 1] : 1;
    int full = cr != 1; /* C varies along rows (Gemm): an (M, N) bias */
    size_t cnt = full ? (size_t)(M * N) : (size_t)N;
    bias = osseg__malloc(cnt * sizeof(float));
    if (!bias) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
      size_t row = full ? i / (size_t)N : 0, col = i % (size_t)N;
      size_t src = (cr == 1 ? 0 : row) * cc + (cc == 1 ? 0 : col);
      bias[i] = (float)((isgemm ? beta : 1.0) * osseg__const_f64(ct, src));
    }
    if (full) biasd[r - 2] = M;
  }
  if (bias) dnnl_memory_desc_init_by_tag(&bias_md, r, biasd, dnnl_f32, r == 2 ? dnnl_ab : r == 3 ? dnnl_abc : r == 4 ? dnnl_abcd : r == 5 ? dnnl_abcde : dnnl_abcdef);
  /* residual addend viewed with the output's dims */
  dnnl_memory_desc_t sum_md;
  int sum_t = -1;
  for (int p = 0; p < n->npost; p++)
    if (n->post[p].kind == OSSEG__POST_SUM) sum_t = n->post[p].arg;
  if (sum_t >= 0) {
    if ((sum_t = osseg__plain_in(m, ni, sum_t, diag)) < 0) {
      osseg__free(bias);
      return sum_t;
    }
    sum_md = ymd;
    /* osseg__plain_in may add a tensor and so move g->tensors */
    at = &g->tensors[A], bt = &g->tensors[B], yt = &g->tensors[y];
  }
  dnnl_primitive_attr_t attr;
  int sidx;
  if (osseg__make_attr_sum(m, n, sum_t >= 0 ? &sum_md : NULL, &attr, &sidx)) {
    osseg__free(bias);
    return FAILN(OSSEG_EBACKEND, "%s", "post-ops");
  }
  float *wscaled = NULL;
  if (alpha != 1.f) {
    if (bconst) { /* fold alpha into the constant weights */
      size_t be;
      osseg__tensor_elems(g, bt, &be);
      wscaled = osseg__malloc((be ? be : 1) * sizeof(float));
      if (!wscaled) {
        osseg__free(bias);
        dnnl_primitive_attr_destroy(attr);
        return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      }
      for (size_t i = 0; i < be; i++) wscaled[i] = ((const float *)bt->data)[i] * alpha;
    } else {
      dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha);
    }
  }
  dnnl_matmul_desc_t md;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_matmul_desc_init(&md, &amd, bconst ? &wmd_any : &bmd, bias ? &bias_md : NULL, &ymd);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &md, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  int err = 0;
  dnnl_memory_t wmem = NULL, bmem = NULL;
  if (st != dnnl_success) err = osseg__dnnl_fail(diag, st, "matmul descriptor", n);
  if (!err && bconst) {
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    err = osseg__const_memory(m, wmd, &bmd, wscaled ? wscaled : bt->data, &wmem, diag);
  }
  if (!err && bias) err = osseg__const_memory(m, &bias_md, &bias_md, bias, &bmem, diag);
  osseg__free(bias);
  osseg__free(wscaled);
  struct osseg__step *s = err ? NULL : osseg__add_step(m, OSSEG__STEP_PRIM, ni);
  if (!s) {
    if (pd) dnnl_primitive_desc_destroy(pd);
    return err ? err : osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC, a_t, &amd);
  if (bconst) osseg__step_arg_mem(s, DNNL_ARG_WEIGHTS, wmem);
  else osseg__step_arg_tensor(m, s, DNNL_ARG_WEIGHTS, b_t, &bmd);
  if (bmem) osseg__step_arg_mem(s, DNNL_ARG_BIAS, bmem);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, y_t, &ymd);
  if (sum_t >= 0)
    osseg__step_arg_tensor(m, s, DNNL_ARG_ATTR_MULTIPLE_POST_OP(sidx) | DNNL_ARG_SRC_1, sum_t, &sum_md);
  m->flops += 2ull * (uint64_t)yel * (uint64_t)K;
  if (bconst) m->params += (uint64_t)(K * N) + (C >= 0 ? (uint64_t)N : 0);
  err = osseg__finish_prim(m, s, pd, n, diag);
  if (err) return err;
  return osseg__plain_out_done(m, ni, y_t, y, diag);
}

const struct osseg__op osseg__ops_matmul[] = {
    {"MatMul", 1, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_matmul, NULL, compile_matmul},
    {"Gemm", 7, OSSEG__OPSET_MAX, 0, OSSEG__PREC_RUNTIME, infer_gemm, NULL, compile_matmul},
    {0},
};
