/* The build API (build.h): steps, temporaries, memory descriptors, constant
 * memories, primitive attributes with the fused post-ops, storage aliasing
 * and plain-layout staging. What every op file uses to compile its nodes;
 * it knows no op. */
#include "engine_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int osseg__dnnl_fail(struct osseg_diag *diag, dnnl_status_t st, const char *what,
                     const struct osseg__node *n) {
  if (n)
    return osseg__fail(diag, st == dnnl_out_of_memory ? OSSEG_ENOMEM : OSSEG_EBACKEND,
                       "node '%s' (%s): oneDNN %s failed (status %d)", n->name, n->op, what,
                       (int)st);
  return osseg__fail(diag, st == dnnl_out_of_memory ? OSSEG_ENOMEM : OSSEG_EBACKEND,
                     "oneDNN %s failed (status %d)", what, (int)st);
}

void *osseg__model_alloc(struct osseg_model *m, size_t bytes) {
  if (m->nowned == m->capowned) {
    int cap = m->capowned ? m->capowned * 2 : 64;
    dnnl_memory_t *om = osseg__realloc(m->owned_mem, (size_t)cap * sizeof *om);
    if (!om) return NULL;
    m->owned_mem = om;
    void **ob = osseg__realloc(m->owned_buf, (size_t)cap * sizeof *ob);
    if (!ob) return NULL;
    m->owned_buf = ob;
    m->capowned = cap;
  }
  void *p = osseg__aligned_alloc(64, bytes ? bytes : 1);
  if (!p) return NULL;
  m->owned_buf[m->nowned] = p;
  m->owned_mem[m->nowned] = NULL;
  m->nowned++;
  return p;
}

struct osseg__step *osseg__add_step(struct osseg_model *m, int kind, int node) {
  if (m->nsteps == m->capsteps) {
    int cap = m->capsteps ? m->capsteps * 2 : 64;
    struct osseg__step *s = osseg__realloc(m->steps, (size_t)cap * sizeof *s);
    if (!s) return NULL;
    m->steps = s;
    m->capsteps = cap;
  }
  struct osseg__step *s = &m->steps[m->nsteps++];
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->node = node;
  s->in = s->out = -1;
  s->info_in = s->info_out = -1;
  return s;
}

void osseg__set_dims(dnnl_dims_t d, const int64_t *src, int rank) {
  for (int i = 0; i < rank; i++) d[i] = src[i];
}

static void add_use(struct osseg__step *s, int t) {
  if (t < 0) return;
  for (int i = 0; i < s->nuses; i++)
    if (s->uses[i] == t) return;
  if (s->nuses < OSSEG__MAX_ARGS) s->uses[s->nuses++] = t;
}

int osseg__tensor_md(struct osseg_model *m, int t, dnnl_data_type_t dt, dnnl_memory_desc_t *md) {
  struct osseg__tensor *x = &m->g.tensors[t];
  if (m->md[t].ndims == 0) {
    dnnl_dims_t d;
    int rank = x->rank;
    if (rank == 0) {
      d[0] = 1;
      rank = 1;
    } else {
      osseg__set_dims(d, x->dims, rank);
    }
    static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                              dnnl_abcde, dnnl_abcdef};
    if (rank > 6) return OSSEG_EUNSUPPORTED;
    dnnl_format_tag_t tag = rank == 4 ? dnnl_acdb : plain[rank];
    if (dnnl_memory_desc_init_by_tag(&m->md[t], rank, d, dt, tag) != dnnl_success)
      return OSSEG_EBACKEND;
  }
  if (md) *md = m->md[t];
  return 0;
}

void osseg__step_arg_tensor(struct osseg_model *m, struct osseg__step *s, int kind, int tensor,
                            const dnnl_memory_desc_t *md) {
  int i = s->nargs++;
  s->arg_kind[i] = kind;
  s->arg_tensor[i] = tensor;
  s->arg_mem[i] = NULL;
  if (md) s->arg_md[i] = *md;
  else if (tensor >= 0) s->arg_md[i] = m->md[tensor];
  add_use(s, tensor);
}

void osseg__step_own(struct osseg__step *s, const char *impl, int conv, int x, int y) {
  s->impl = impl;
  s->conv = conv;
  s->info_in = x;
  s->info_out = y;
}

void osseg__step_arg_mem(struct osseg__step *s, int kind, dnnl_memory_t mem) {
  int i = s->nargs++;
  s->arg_kind[i] = kind;
  s->arg_tensor[i] = -1;
  s->arg_mem[i] = mem;
}

int osseg__const_memory(struct osseg_model *m, const dnnl_memory_desc_t *dst_md,
                        const dnnl_memory_desc_t *src_md, const void *src, dnnl_memory_t *out,
                        struct osseg_diag *diag) {
  size_t bytes = dnnl_memory_desc_get_size(dst_md);
  void *buf = osseg__model_alloc(m, bytes);
  if (!buf) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory for constants");
  m->weight_bytes += bytes;
  dnnl_memory_t dst = NULL, srcm = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t r = NULL;
  dnnl_status_t st = dnnl_memory_create(&dst, dst_md, m->eng, buf);
  if (st == dnnl_success) m->owned_mem[m->nowned - 1] = dst;
  if (st == dnnl_success && dnnl_memory_desc_equal(dst_md, src_md)) {
    memcpy(buf, src, bytes); /* same layout and type: no reorder primitive */
    *out = dst;
    return 0;
  }
  if (st == dnnl_success) st = dnnl_memory_create(&srcm, src_md, m->eng, (void *)src);
  if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&pd, src_md, m->eng, dst_md, m->eng, NULL);
  if (st == dnnl_success) st = dnnl_primitive_create(&r, pd);
  if (st == dnnl_success) {
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_SRC, srcm}, {DNNL_ARG_DST, dst}};
    st = dnnl_primitive_execute(r, m->stream, 2, a);
  }
  if (st == dnnl_success) st = dnnl_stream_wait(m->stream);
  if (r) dnnl_primitive_destroy(r);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (srcm) dnnl_memory_destroy(srcm);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "constant reorder", NULL);
  *out = dst;
  return 0;
}

int osseg__finish_prim(struct osseg_model *m, struct osseg__step *s, dnnl_primitive_desc_t pd,
                       const struct osseg__node *n, struct osseg_diag *diag) {
  const char *impl = NULL;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  dnnl_primitive_kind_t kind = dnnl_undefined_primitive;
  dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &kind);
  const int conv = kind == dnnl_convolution || kind == dnnl_deconvolution;
  /* warnings: reference code anywhere, and under bf16 a convolution (not
   * the reorders around it) that does not run on the CPU's best native
   * bf16 unit (AMX where there is AMX, else AVX512_BF16; every one where
   * bf16 is emulated) */
  const char *bf16_tag = conv && m->act_dt == dnnl_bf16 ? osseg__bf16_kernel_tag() : NULL;
  if (impl && (strncmp(impl, "ref", 3) == 0 || strstr(impl, ":ref") ||
               (conv && m->act_dt == dnnl_bf16 && !(bf16_tag && strstr(impl, bf16_tag)))))
    osseg__log(&m->opt.log, OSSEG_LOG_WARN, "node '%s' (%s) runs on oneDNN '%s'", n ? n->name : "-",
               n ? n->op : "reorder", impl);
  if (impl && strncmp(impl, "ref", 3) == 0) m->warned_ref++;
  /* reference code anywhere, or a convolution as im2col + gemm (for matmul
   * the gemm implementations are the fast ones) */
  if (impl && (!strncmp(impl, "ref", 3) || strstr(impl, ":ref") || (conv && strstr(impl, "gemm")))) {
    m->slow_steps++;
    s->slow = 1;
  }
  /* what osseg_model_step_info() reports; the name lives in the model, as
   * pd (which owns `impl`) is destroyed below: shared with an earlier step
   * of the same implementation (a model has a handful of them) */
  if (!impl) impl = "?";
  for (int k = m->nsteps - 1; k >= 0 && !s->impl; k--)
    if (m->steps[k].kind == OSSEG__STEP_PRIM && m->steps[k].impl && !strcmp(m->steps[k].impl, impl))
      s->impl = m->steps[k].impl;
  if (!s->impl) {
    size_t len = strlen(impl);
    char *name = osseg__model_alloc(m, len + 1);
    if (!name) {
      dnnl_primitive_desc_destroy(pd);
      return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    }
    memcpy(name, impl, len + 1);
    s->impl = name;
  }
  s->conv = conv;
  s->prim_kind = kind;
  const dnnl_memory_desc_t *src = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
  const dnnl_memory_desc_t *wei = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
  s->src_dt = src && src->ndims ? src->data_type : dnnl_data_type_undef;
  s->wei_dt = wei && wei->ndims ? wei->data_type : dnnl_data_type_undef;
  s->dst_dt = dst && dst->ndims ? dst->data_type : dnnl_data_type_undef;
  const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  if (smd) {
    s->scratch_md = *smd;
    size_t sz = dnnl_memory_desc_get_size(smd);
    if (sz > m->scratch_bytes) m->scratch_bytes = sz;
  }
  dnnl_status_t st = dnnl_primitive_create(&s->prim, pd);
  dnnl_primitive_desc_destroy(pd);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "primitive creation", n);
  return 0;
}

/* A reorder step, quantizing when `scale` is set: round(x / *scale) + zero. */
static int reorder_step(struct osseg_model *m, int node, int src_t, const dnnl_memory_desc_t *smd,
                        int dst_t, const dnnl_memory_desc_t *dmd, const float *scale, int zero,
                        struct osseg_diag *diag) {
  const struct osseg__node *n = node >= 0 ? &m->g.nodes[node] : NULL;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_primitive_desc_t pd = NULL;
  const float inv = scale ? 1.f / *scale : 1.f;
  const int32_t zps[1] = {zero};
  dnnl_status_t st = dnnl_primitive_attr_create(&attr);
  if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  if (st == dnnl_success && scale) st = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &inv);
  if (st == dnnl_success && zero) st = dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, zps);
  if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&pd, smd, m->eng, dmd, m->eng, attr);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, scale ? "quantizing reorder" : "reorder", n);
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_PRIM, node);
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC, src_t, smd);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, dst_t, dmd);
  return osseg__finish_prim(m, s, pd, n, diag);
}

int osseg__reorder_step(struct osseg_model *m, int node, int src_t, const dnnl_memory_desc_t *smd,
                        int dst_t, const dnnl_memory_desc_t *dmd, struct osseg_diag *diag) {
  return reorder_step(m, node, src_t, smd, dst_t, dmd, NULL, 0, diag);
}

int osseg__add_temp(struct osseg_model *m, int like, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  /* never grow: compile steps may hold pointers into g->tensors / m->md */
  if (g->ntensors >= m->tensor_cap)
    return osseg__fail(diag, OSSEG_EINTERNAL, "temporary tensor budget of %d exceeded", m->tensor_cap);
  int t = osseg__graph_add_tensor(g, NULL, 0);
  if (t < 0) return osseg__fail(diag, t, "out of memory");
  memset(&m->md[t], 0, sizeof m->md[t]);
  m->aliased[t] = 0;
  struct osseg__tensor *x = &g->tensors[t];
  x->dtype = OSSEG__DT_FLOAT;
  x->storage = t;
  if (like >= 0) {
    x->rank = g->tensors[like].rank;
    memcpy(x->dims, g->tensors[like].dims, sizeof x->dims);
  }
  return t;
}

int osseg__md_dense_nhwc(const dnnl_memory_desc_t *md) {
  if (md->ndims != 4 || md->format_kind != dnnl_blocked || md->format_desc.blocking.inner_nblks ||
      md->offset0)
    return 0;
  const dnnl_dim_t *st = md->format_desc.blocking.strides, *d = md->dims;
  return st[1] == 1 && st[3] == d[1] && st[2] == d[3] * d[1] &&
         (d[0] == 1 || st[0] == d[2] * d[3] * d[1]);
}

int osseg__root(const struct osseg_model *m, int t) {
  while (m->g.tensors[t].storage != t) t = m->g.tensors[t].storage;
  return t;
}

int osseg__can_inplace(const struct osseg_model *m, int t) {
  const struct osseg__graph *g = &m->g;
  if (t < 0 || g->tensors[t].data || t == g->input || g->tensors[t].uses != 1) return 0;
  int r = osseg__root(m, t);
  return r == t && !m->aliased[t];
}

void osseg__alias(struct osseg_model *m, int t, int onto) {
  int r = osseg__root(m, onto);
  m->g.tensors[t].storage = r;
  m->aliased[r] = 1;
}

void *osseg__tensor_ptr(const struct osseg_model *m, int t) {
  int r = osseg__root(m, t);
  return (char *)m->arena + m->g.tensors[r].offset;
}

int osseg__make_attr(struct osseg_model *m, const struct osseg__node *n, dnnl_primitive_attr_t *attr) {
  return osseg__make_attr_sum(m, n, NULL, attr, NULL);
}

int osseg__make_attr_sum(struct osseg_model *m, const struct osseg__node *n,
                         const dnnl_memory_desc_t *sum_md, dnnl_primitive_attr_t *attr,
                         int *sum_idx) {
  (void)m;
  if (sum_idx) *sum_idx = -1;
  dnnl_status_t st = dnnl_primitive_attr_create(attr);
  if (st != dnnl_success) return OSSEG_EBACKEND;
  st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
  if (st == dnnl_success && n && n->npost) {
    dnnl_post_ops_t po;
    st = dnnl_post_ops_create(&po);
    for (int i = 0; st == dnnl_success && i < n->npost; i++) {
      const struct osseg__post *p = &n->post[i];
      float lo = p->alpha < -3e38f ? -3e38f : p->alpha, hi = p->beta > 3e38f ? 3e38f : p->beta;
      switch (p->kind) {
        case OSSEG__POST_RELU: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, p->alpha, 0); break;
        case OSSEG__POST_SIGMOID: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_logistic, 0, 0); break;
        case OSSEG__POST_SWISH: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_swish, 1.f, 0); break;
        case OSSEG__POST_CLIP: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_clip, lo, hi); break;
        case OSSEG__POST_LINEAR: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_linear, p->alpha, p->beta); break;
        case OSSEG__POST_HARDSWISH: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_hardswish, 0, 0); break;
        case OSSEG__POST_SUM:
          if (!sum_md) {
            st = dnnl_post_ops_append_sum(po, 1.f);
          } else { /* residual as a binary add reading the addend: no copy into dst */
            st = dnnl_post_ops_append_binary(po, dnnl_binary_add, sum_md);
            if (sum_idx) *sum_idx = i;
          }
          break;
        case OSSEG__POST_GELU_ERF: st = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_gelu_erf, 0, 0); break;
        default: st = dnnl_invalid_arguments; break;
      }
    }
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, po);
    dnnl_post_ops_destroy(po);
  }
  if (st != dnnl_success) {
    dnnl_primitive_attr_destroy(*attr);
    *attr = NULL;
    return OSSEG_EBACKEND;
  }
  return 0;
}


int osseg__eltwise_step(struct osseg_model *m, struct osseg__node *n, int x, int y,
                        dnnl_alg_kind_t alg, float alpha, float beta, struct osseg_diag *diag) {
  dnnl_eltwise_desc_t ed;
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg, &m->md[x], alpha, beta);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &ed, attr, m->eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "eltwise descriptor", n);
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_PRIM, (int)(n - m->g.nodes));
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC, x, &m->md[x]);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, y, &m->md[x]);
  size_t e;
  if (!osseg__tensor_elems(&m->g, &m->g.tensors[y], &e)) m->flops += e;
  return osseg__finish_prim(m, s, pd, n, diag);
}

/* ---- Plain row-major staging (transformer ops work on token matrices). */

int osseg__plain_md(dnnl_memory_desc_t *md, const int64_t *dims, int rank, dnnl_data_type_t dt) {
  static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                            dnnl_abcde, dnnl_abcdef};
  dnnl_dims_t d;
  if (rank > 6) return OSSEG_EUNSUPPORTED;
  if (rank == 0) d[0] = 1;
  for (int i = 0; i < rank; i++) d[i] = dims[i];
  return dnnl_memory_desc_init_by_tag(md, rank ? rank : 1, d, dt, plain[rank]) == dnnl_success
             ? 0 : OSSEG_EBACKEND;
}

static int is_plain(const struct osseg__tensor *t) {
  return t->rank != 4 || t->dims[1] == 1 || (t->dims[2] == 1 && t->dims[3] == 1);
}

int osseg__plain_in(struct osseg_model *m, int node, int t, struct osseg_diag *diag) {
  if (is_plain(&m->g.tensors[t])) return t;
  int tmp = osseg__add_temp(m, t, diag);
  if (tmp < 0) return tmp;
  const struct osseg__tensor *x = &m->g.tensors[t];
  if (osseg__plain_md(&m->md[tmp], x->dims, x->rank, m->act_dt))
    return osseg__fail(diag, OSSEG_EBACKEND, "plain layout");
  int err = osseg__reorder_step(m, node, t, &m->md[t], tmp, &m->md[tmp], diag);
  return err ? err : tmp;
}

int osseg__plain_out(struct osseg_model *m, int y, struct osseg_diag *diag) {
  if (is_plain(&m->g.tensors[y])) return y;
  int tmp = osseg__add_temp(m, y, diag);
  if (tmp < 0) return tmp;
  const struct osseg__tensor *x = &m->g.tensors[y];
  if (osseg__plain_md(&m->md[tmp], x->dims, x->rank, m->act_dt))
    return osseg__fail(diag, OSSEG_EBACKEND, "plain layout");
  return tmp;
}

int osseg__plain_out_done(struct osseg_model *m, int node, int tmp, int y, struct osseg_diag *diag) {
  if (tmp == y) return 0;
  return osseg__reorder_step(m, node, tmp, &m->md[tmp], y, &m->md[y], diag);
}

/* ---- Broadcast copies (Expand, binary ops whose operands both broadcast). */

struct bcast {
  int rank;
  int64_t dims[OSSEG_MAX_RANK];   /* the output's */
  int64_t xstride[OSSEG_MAX_RANK]; /* elements; 0 on broadcast dims */
};

static dnnl_status_t run_broadcast(struct osseg_model *m, struct osseg__step *s) {
  const struct bcast *b = s->priv;
  const size_t es = osseg__step_es(m, s);
  const unsigned char *x = osseg__tensor_ptr(m, s->in);
  unsigned char *y = osseg__tensor_ptr(m, s->out);
  const int r = b->rank;
  const int64_t inner = b->dims[r - 1], xin = b->xstride[r - 1];
  int64_t rows = 1;
  for (int i = 0; i < r - 1; i++) rows *= b->dims[i];
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; row++) {
    int64_t rem = row, xoff = 0;
    for (int i = r - 2; i >= 0; i--) {
      xoff += (rem % b->dims[i]) * b->xstride[i];
      rem /= b->dims[i];
    }
    unsigned char *d = y + (size_t)(row * inner) * es;
    const unsigned char *src = x + (size_t)xoff * es;
    if (xin) {
      memcpy(d, src, (size_t)inner * es);
    } else {
      for (int64_t i = 0; i < inner; i++) memcpy(d + (size_t)i * es, src, es);
    }
  }
  return dnnl_success;
}

int osseg__broadcast_step(struct osseg_model *m, int node, int x, int y, struct osseg_diag *diag) {
  const struct osseg__tensor *xt = &m->g.tensors[x], *yt = &m->g.tensors[y];
  if (yt->rank < 1 || xt->rank > yt->rank)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "broadcast of rank %d to rank %d", xt->rank,
                       yt->rank);
  struct bcast *b = osseg__model_alloc(m, sizeof *b);
  if (!b) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  memset(b, 0, sizeof *b);
  b->rank = yt->rank;
  int64_t st = 1;
  for (int i = yt->rank - 1; i >= 0; i--) {
    int xi = i - (yt->rank - xt->rank);
    int64_t xd = xi >= 0 ? xt->dims[xi] : 1;
    if (xd != 1 && xd != yt->dims[i])
      return osseg__fail(diag, OSSEG_ESHAPE, "broadcast of dim %lld to %lld", (long long)xd,
                         (long long)yt->dims[i]);
    b->dims[i] = yt->dims[i];
    b->xstride[i] = xd == 1 ? 0 : st;
    st *= xd;
  }
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, node);
  if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  s->run = run_broadcast;
  s->priv = b;
  osseg__step_own(s, "own: broadcast", 0, x, y);
  s->in = x;
  s->out = y;
  s->uses[s->nuses++] = x;
  s->uses[s->nuses++] = y;
  return 0;
}

/* ---- Quantization (int8 convolutions of QDQ models). */

int osseg__qtemp(struct osseg_model *m, int node, int x, float scale, int zero, int sgn, int *made,
                 struct osseg_diag *diag) {
  *made = 0;
  for (struct osseg__qtemp *q = m->qtemps; q; q = q->next)
    if (q->src == x && q->scale == scale && q->zero == zero && q->sgn == sgn) {
      m->g.tensors[q->dst].uses++; /* (never overwritten in place) */
      return q->dst;
    }
  struct osseg__qtemp *q = osseg__model_alloc(m, sizeof *q);
  if (!q) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  int xq = osseg__add_temp(m, x, diag);
  if (xq < 0) return xq;
  int err = osseg__tensor_md(m, xq, sgn ? dnnl_s8 : dnnl_u8, NULL);
  if (err) return osseg__fail(diag, err, "node '%s': layout", m->g.nodes[node].name);
  m->g.tensors[xq].uses = 1;
  *q = (struct osseg__qtemp){.src = x, .dst = xq, .zero = zero, .sgn = sgn, .scale = scale,
                             .next = m->qtemps};
  m->qtemps = q;
  *made = 1;
  return xq;
}

int osseg__quantized_input(struct osseg_model *m, int node, int x, float scale, int zero, int sgn,
                           struct osseg_diag *diag) {
  const dnnl_data_type_t dt = m->md[x].data_type;
  if (dt == dnnl_u8 || dt == dnnl_s8) { /* its producer wrote it on that grid */
    if ((dt == dnnl_s8) != sgn)
      return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': 8-bit input '%s' of the other signedness",
                         m->g.nodes[node].name, m->g.tensors[x].name);
    return x;
  }
  int made, xq = osseg__qtemp(m, node, x, scale, zero, sgn, &made, diag);
  if (xq < 0 || !made) return xq;
  int err = osseg__quantize_step(m, node, x, &m->md[x], xq, &m->md[xq], scale, zero, diag);
  return err ? err : xq;
}

int osseg__input_grid(const struct osseg__node *n, int i, float *scale, int *zero, int *sgn) {
  char name[40];
  snprintf(name, sizeof name, "osseg.q_scale_in%d", i);
  const struct osseg__attr *a = osseg__attr_find(n, name);
  if (!a) return 0;
  *scale = a->f;
  snprintf(name, sizeof name, "osseg.q_zero_in%d", i);
  *zero = (int)osseg__attr_int(n, name, 0);
  snprintf(name, sizeof name, "osseg.q_signed_in%d", i);
  *sgn = (int)osseg__attr_int(n, name, 0);
  return 1;
}

int osseg__quantize_step(struct osseg_model *m, int node, int src_t, const dnnl_memory_desc_t *smd,
                         int dst_t, const dnnl_memory_desc_t *dmd, float scale, int zero,
                         struct osseg_diag *diag) {
  return reorder_step(m, node, src_t, smd, dst_t, dmd, &scale, zero, diag);
}

/* ---- Convolution steps (ops/conv*.c). */

int osseg__conv_step(struct osseg_model *m, const struct osseg__node *n, dnnl_primitive_desc_t pd,
                     int x, const dnnl_memory_desc_t *xmd, size_t xoff, int y,
                     const dnnl_memory_desc_t *ymd, size_t yoff, const dnnl_memory_desc_t *wuser,
                     const void *w, const float *bias, struct osseg__conv_consts *c,
                     const struct osseg__post *post, int npost, struct osseg_diag *diag) {
  const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  int err = 0;
  if (!c->w || !dnnl_memory_desc_equal(wmd, &c->wmd)) {
    c->wmd = *wmd;
    err = osseg__const_memory(m, wmd, wuser, w, &c->w, diag);
    if (!err && bias) {
      const dnnl_memory_desc_t *bmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
      dnnl_memory_desc_t bsrc; /* the caller's bias: plain f32 */
      dnnl_memory_desc_init_by_tag(&bsrc, 1, bmd->dims, dnnl_f32, dnnl_a);
      err = osseg__const_memory(m, bmd, &bsrc, bias, &c->b, diag);
    }
  }
  struct osseg__step *s = err ? NULL : osseg__add_step(m, OSSEG__STEP_PRIM, (int)(n - m->g.nodes));
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return err ? err : osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_SRC, x, xmd);
  s->arg_off[s->nargs - 1] = xoff;
  osseg__step_arg_mem(s, DNNL_ARG_WEIGHTS, c->w);
  if (bias) osseg__step_arg_mem(s, DNNL_ARG_BIAS, c->b);
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, y, ymd);
  s->arg_off[s->nargs - 1] = yoff;
  for (int p = 0; p < npost; p++)
    if (post[p].kind == OSSEG__POST_SUM && post[p].arg >= 0 && s->nuses < OSSEG__MAX_ARGS)
      s->uses[s->nuses++] = post[p].arg; /* keep the addend alive until here */
  return osseg__finish_prim(m, s, pd, n, diag);
}
