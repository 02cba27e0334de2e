/* Concat through the oneDNN concat primitive in the activation layout
 * (channel concat in nhwc; a conv writing into a channel slice would fall
 * back to a reference kernel, see ONEDNN_NOTES.md). */
#include "build.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

static int infer_concat(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  int err;
  int axis;
  if ((err = osseg__norm_axis(g, n, osseg__attr_int(n, "axis", 0), x->rank, &axis, diag))) return err;
  *y = (struct osseg__tensor){.name = y->name, .dtype = x->dtype, .rank = x->rank,
                              .producer = y->producer, .storage = -1, .offset = -1};
  memcpy(y->dims, x->dims, sizeof x->dims);
  y->dims[axis] = 0;
  for (int i = 0; i < n->nin; i++) {
    struct osseg__tensor *t = osseg__in(g, n, i);
    if (!t) return OSSEG__FAIL(OSSEG_EPARSE, OSSEG__NODEFMT "empty input", OSSEG__NODEARG);
    if (t->rank != x->rank) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "input ranks differ", OSSEG__NODEARG);
    for (int d = 0; d < x->rank; d++)
      if (d != axis && t->dims[d] != x->dims[d])
        return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "input '%s' dim %d is %lld, expected %lld", OSSEG__NODEARG,
                    t->name, d, (long long)t->dims[d], (long long)x->dims[d]);
    if (osseg__mul_i64(1, y->dims[axis] + t->dims[axis], &y->dims[axis]) || y->dims[axis] > (1LL << 40))
      return OSSEG__FAIL(OSSEG_EOVERFLOW, OSSEG__NODEFMT "size overflow", OSSEG__NODEARG);
  }
  return 0;
}

static int fold_concat(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__tensor *y = &g->tensors[n->out[0]];
  size_t es = osseg__dtype_size(y->dtype);
  int axis = (int)osseg__attr_int(n, "axis", 0);
  if (axis < 0) axis += y->rank;
  size_t outer = 1, inner = es;
  for (int i = 0; i < axis; i++) outer *= (size_t)y->dims[i];
  for (int i = axis + 1; i < y->rank; i++) inner *= (size_t)y->dims[i];
  char *dst = y->data;
  for (size_t o = 0; o < outer; o++)
    for (int k = 0; k < n->nin; k++) {
      struct osseg__tensor *t = &g->tensors[n->in[k]];
      if (t->dtype != y->dtype)
        return osseg__fail(diag, OSSEG_EPARSE, "node '%s' (Concat): input dtypes differ", n->name);
      size_t chunk = inner * (size_t)t->dims[axis];
      memcpy(dst, (const char *)t->data + o * chunk, chunk);
      dst += chunk;
    }
  return 0;
}

/* 8-bit copies whose every slice is whole 64-byte lines (64-channel
 * slices of 64-byte aligned pixels), with AVX-512 non-temporal stores: an
 * int8 model's concat output is far larger than the cache and read only
 * later, by a conv, so writing around the cache spares reading each line
 * before it is overwritten. */
__attribute__((target("avx512f"))) static void copy_slices_nt(const struct osseg__step *s,
                                                              unsigned char *dst,
                                                              const unsigned char *const *src) {
  const size_t opix = (size_t)s->cat_cout;
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t p = 0; p < s->cat_pixels; p++)
      for (int k = 0; k < s->cat_n; k++) {
        unsigned char *d = dst + (size_t)p * opix + (size_t)s->cat_off[k];
        const unsigned char *q = src[k] + (size_t)p * (size_t)s->cat_c[k];
        for (int64_t j = 0; j < s->cat_c[k]; j += 64)
          _mm512_stream_si512((void *)(d + j), _mm512_loadu_si512(q + j));
      }
    _mm_sfence(); /* (each thread's streamed stores, before the barrier) */
  }
}

static int lines_only(const struct osseg__step *s, const unsigned char *dst) {
  if (((uintptr_t)dst | (uintptr_t)s->cat_cout) % 64) return 0;
  for (int k = 0; k < s->cat_n; k++)
    if ((s->cat_c[k] | s->cat_off[k]) % 64 || s->cat_rq[k]) return 0;
  return (osseg_cpu_features() & OSSEG_CPU_AVX512) != 0;
}

/* Copies the inputs not written in place into their channel slices. */
static dnnl_status_t run_concat_c(struct osseg_model *m, struct osseg__step *s) {
  const size_t es = osseg__step_es(m, s);
  unsigned char *dst = osseg__tensor_ptr(m, s->out);
  const unsigned char *src[OSSEG__MAX_ARGS];
  for (int k = 0; k < s->cat_n; k++) src[k] = osseg__tensor_ptr(m, s->cat_t[k]);
  if (es == 1 && lines_only(s, dst)) {
    copy_slices_nt(s, dst, src);
    return dnnl_success;
  }
  const size_t opix = (size_t)s->cat_cout * es;
  const osseg__requant_fn requant = osseg__requant_select();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < s->cat_pixels; p++)
    for (int k = 0; k < s->cat_n; k++) {
      unsigned char *d = dst + (size_t)p * opix + (size_t)s->cat_off[k] * es;
      const unsigned char *q = src[k] + (size_t)p * (size_t)s->cat_c[k] * es;
      if (s->cat_rq[k]) /* (8-bit: es == 1) */
        requant(s->cat_rq[k], q, d, s->cat_c[k]);
      else
        memcpy(d, q, (size_t)s->cat_c[k] * es);
    }
  return dnnl_success;
}

/* The step that last wrote tensor t, when it is an own resize loop whose
 * output may move into a channel slice of y at channel off (t is read only
 * by this concat): it then writes there directly. */
static int retarget_resize(struct osseg_model *m, int t, int y, int64_t off) {
  if (!osseg__can_inplace(m, t)) return 0;
  for (int k = m->nsteps - 1; k >= 0; k--) {
    struct osseg__step *p = &m->steps[k];
    if ((p->kind != OSSEG__STEP_GATHER2D && p->kind != OSSEG__STEP_LINEAR2D) || p->out != t) continue;
    p->out = y;
    p->rs.out_pix = m->g.tensors[y].dims[1];
    p->rs.out_coff = off;
    for (int u = 0; u < p->nuses; u++)
      if (p->uses[u] == t) p->uses[u] = y;
    return 1;
  }
  return 0;
}

/* Do several nodes take float tensor t quantized like concat n: other 8-bit
 * concats, 8-bit resizes and int8 convs of the same scale, zero point and
 * signedness (the UNet++ skips: one encoder map read by up to four concats
 * and a resize)? */
static int quantized_elsewhere(const struct osseg_model *m, const struct osseg__node *n, int t) {
  const struct osseg__graph *g = &m->g;
  const float scale = osseg__attr_float(n, "osseg.q_out_scale", 1.f);
  const int64_t zero = osseg__attr_int(n, "osseg.q_out_zero", 0);
  const int64_t sgn = osseg__attr_int(n, "osseg.q_out_signed", 0);
  for (int ni = 0; ni < g->nnodes; ni++) {
    const struct osseg__node *r = &g->nodes[ni];
    if (r->dead || r == n) continue;
    int conv = !strcmp(r->op, "Conv"), cat = !strcmp(r->op, "Concat");
    int rs = !strcmp(r->op, "Resize") || !strcmp(r->op, "Upsample");
    if (!conv && !cat && !rs) continue;
    for (int i = 0; i < r->nin; i++) {
      if (r->in[i] != t || (i && !cat)) continue;
      const struct osseg__attr *qs = osseg__attr_find(r, conv ? "osseg.q_scale" : "osseg.q_out_scale");
      if (qs && qs->f == scale &&
          osseg__attr_int(r, conv ? "osseg.q_zero" : "osseg.q_out_zero", 0) == zero &&
          osseg__attr_int(r, conv ? "osseg.q_signed" : "osseg.q_out_signed", 0) == sgn)
        return 1;
    }
  }
  return 0;
}

/* Adds input t (c channels at channel off, requantized by rq or copied)
 * to the copying step s. */
static void add_copy(struct osseg__step *s, int t, int64_t c, int64_t off, const struct osseg__requant *rq) {
  s->cat_t[s->cat_n] = t;
  s->cat_c[s->cat_n] = c;
  s->cat_off[s->cat_n] = off;
  s->cat_rq[s->cat_n] = rq;
  s->cat_n++;
  if (s->nuses < OSSEG__MAX_ARGS) s->uses[s->nuses++] = t;
}

/* Input i's own grid, when the concat took its quantization over
 * (passes/fuse_qdq.c) and it differs from the concat's: 1, else 0. */
static int input_grid(const struct osseg__node *n, int i, float *s, int *z, int *sg) {
  return osseg__input_grid(n, i, s, z, sg) &&
         !(*s == osseg__attr_float(n, "osseg.q_out_scale", 1.f) &&
           *z == (int)osseg__attr_int(n, "osseg.q_out_zero", 0) &&
           *sg == (int)osseg__attr_int(n, "osseg.q_out_signed", 0));
}

/* An 8-bit output (int8 models: only 8-bit readers of one quantization,
 * passes/fuse_qdq.c): every float input is quantized by a reorder straight
 * into its channel slice, unless other nodes need the same quantized map:
 * then it is quantized once (osseg__quantized_input) and copied like the
 * 8-bit inputs, which their producers quantized alike and which are
 * written into their slice by their resize loop or copied. An input whose
 * quantization the concat took over is read on its own grid and
 * requantized onto the concat's. */
static int compile_quantized_concat(struct osseg_model *m, struct osseg__node *n,
                                    struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int y = n->out[0], ni = (int)(n - g->nodes);
  const float scale = osseg__attr_float(n, "osseg.q_out_scale", 1.f);
  const int zero = (int)osseg__attr_int(n, "osseg.q_out_zero", 0);
  struct osseg__step copy = {.kind = OSSEG__STEP_CONCAT_C, .node = ni, .out = y, .in = -1};
  copy.cat_pixels = g->tensors[y].dims[2] * g->tensors[y].dims[3];
  copy.cat_cout = g->tensors[y].dims[1];
  copy.uses[copy.nuses++] = y;
  int64_t off = 0;
  for (int i = 0; i < n->nin; i++) {
    int t = n->in[i];
    const struct osseg__tensor *tt = &g->tensors[t];
    const int64_t c = tt->dims[1];
    dnnl_data_type_t tdt = m->md[t].data_type;
    float gs;
    int gz, gsg;
    if (input_grid(n, i, &gs, &gz, &gsg)) {
      /* on its own grid first (its producer wrote it so, or a reorder
       * quantizes it), then requantized onto ours */
      if ((t = osseg__quantized_input(m, ni, t, gs, gz, gsg, diag)) < 0) return t;
      const struct osseg__requant *rq = osseg__requant_of(m, gs, gz, gsg, scale, zero, m->md[y].data_type == dnnl_s8);
      if (!rq) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      add_copy(&copy, t, c, off, rq);
      off += c;
      continue;
    }
    if (tdt != dnnl_u8 && tdt != dnnl_s8 && quantized_elsewhere(m, n, t)) {
      t = osseg__quantized_input(m, ni, t, scale, zero, m->md[y].data_type == dnnl_s8, diag);
      if (t < 0) return t;
      tt = &g->tensors[t];
      tdt = m->md[t].data_type;
    }
    if (tdt == dnnl_u8 || tdt == dnnl_s8) {
      if (tdt != m->md[y].data_type)
        return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': 8-bit input '%s' of another type",
                           n->name, tt->name);
      if (!retarget_resize(m, t, y, off)) add_copy(&copy, t, c, off, NULL);
      off += c;
      continue;
    }
    dnnl_dims_t d, o = {0, off, 0, 0};
    osseg__set_dims(d, tt->dims, 4);
    dnnl_memory_desc_t sub;
    if (dnnl_memory_desc_init_submemory(&sub, &m->md[y], d, o) != dnnl_success)
      return osseg__fail(diag, OSSEG_EBACKEND, "node '%s': channel slice", n->name);
    int err = osseg__quantize_step(m, ni, t, &m->md[t], y, &sub, scale, zero, diag);
    if (err) return err;
    off += c;
  }
  if (copy.cat_n) {
    struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CONCAT_C, ni);
    if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    *s = copy;
    s->run = run_concat_c;
    int requant = 0;
    for (int k = 0; k < s->cat_n; k++) requant |= s->cat_rq[k] != NULL;
    osseg__step_own(s, requant ? "own: 8-bit channel concat, requantizing" : "own: 8-bit channel concat", 0,
                    s->cat_t[0], y);
  }
  return 0;
}

static int compile_concat(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int y = n->out[0];
  int axis = (int)osseg__attr_int(n, "axis", 0);
  if (axis < 0) axis += g->tensors[y].rank;
  if (n->nin > OSSEG__MAX_ARGS - 2)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (Concat): more than %d inputs", n->name,
                       OSSEG__MAX_ARGS - 2);
  if (m->md[y].data_type == dnnl_u8 || m->md[y].data_type == dnnl_s8)
    return compile_quantized_concat(m, n, diag);
  struct osseg__tensor *yt = &g->tensors[y];
  int all_runtime = 1;
  for (int i = 0; i < n->nin; i++) all_runtime &= !g->tensors[n->in[i]].data;
  if (yt->rank == 4 && axis == 1 && all_runtime && yt->dims[0] == 1) {
    /* Own channel concat: inputs made by our resize/pad loops and used only
     * here are written straight into their channel slice (no copy); the
     * rest are copied pixel by pixel. */
    struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CONCAT_C, (int)(n - g->nodes));
    if (!s) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    s->run = run_concat_c;
    osseg__step_own(s, "own: channel concat", 0, n->in[0], y);
    s->out = y;
    s->cat_pixels = yt->dims[2] * yt->dims[3];
    s->cat_cout = yt->dims[1];
    s->uses[s->nuses++] = y;
    int64_t off = 0;
    for (int i = 0; i < n->nin; i++) {
      int t = n->in[i];
      int64_t c = g->tensors[t].dims[1];
      if (!retarget_resize(m, t, y, off)) {
        s->cat_t[s->cat_n] = t;
        s->cat_c[s->cat_n] = c;
        s->cat_off[s->cat_n] = off;
        s->cat_n++;
        if (s->nuses < OSSEG__MAX_ARGS) s->uses[s->nuses++] = t;
      }
      off += c;
    }
    return 0;
  }
  dnnl_memory_desc_t mds[OSSEG__MAX_ARGS];
  dnnl_memory_t cmem[OSSEG__MAX_ARGS] = {0};
  int src[OSSEG__MAX_ARGS], ns = 0;
  for (int i = 0; i < n->nin; i++) {
    int t = n->in[i];
    struct osseg__tensor *tt = &g->tensors[t];
    if (tt->dims[axis] == 0) continue;
    if (tt->data) {
      /* constant input: materialise in the activation layout */
      int tmp = osseg__add_temp(m, t, diag);
      if (tmp < 0) return tmp;
      int err = osseg__tensor_md(m, tmp, m->act_dt, &mds[ns]);
      if (err) return osseg__fail(diag, err, "layout");
      size_t e;
      osseg__tensor_elems(g, &g->tensors[t], &e);
      float *f = osseg__malloc((e ? e : 1) * sizeof(float));
      if (!f) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      for (size_t k = 0; k < e; k++) f[k] = (float)osseg__const_f64(&g->tensors[t], k);
      dnnl_memory_desc_t smd;
      dnnl_dims_t d;
      osseg__set_dims(d, g->tensors[t].dims, g->tensors[t].rank);
      static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                                dnnl_abcde, dnnl_abcdef};
      dnnl_memory_desc_init_by_tag(&smd, g->tensors[t].rank, d, dnnl_f32, plain[g->tensors[t].rank]);
      err = osseg__const_memory(m, &mds[ns], &smd, f, &cmem[ns], diag);
      osseg__free(f);
      if (err) return err;
      src[ns++] = -1;
      continue;
    }
    mds[ns] = m->md[t];
    src[ns++] = t;
  }
  dnnl_primitive_attr_t attr;
  if (osseg__make_attr(m, NULL, &attr)) return osseg__fail(diag, OSSEG_EBACKEND, "attr");
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_concat_primitive_desc_create(&pd, &m->md[y], ns, axis, mds, attr, m->eng);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "concat descriptor", n);
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_PRIM, (int)(n - g->nodes));
  if (!s) {
    dnnl_primitive_desc_destroy(pd);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  for (int i = 0; i < ns; i++) {
    if (src[i] >= 0) osseg__step_arg_tensor(m, s, DNNL_ARG_MULTIPLE_SRC + i, src[i], NULL);
    else osseg__step_arg_mem(s, DNNL_ARG_MULTIPLE_SRC + i, cmem[i]);
  }
  osseg__step_arg_tensor(m, s, DNNL_ARG_DST, y, NULL);
  return osseg__finish_prim(m, s, pd, n, diag);
}

const struct osseg__op osseg__ops_concat[] = {
    {"Concat", 4, OSSEG__OPSET_MAX, OSSEG__OP_PREC_SPATIAL, OSSEG__PREC_RUNTIME, infer_concat, fold_concat, compile_concat},
    {0},
};
