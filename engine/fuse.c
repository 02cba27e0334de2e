/* Graph rewrites before compilation: drop Identity/Dropout, fold
 * BatchNormalization into the preceding Conv, fuse activations and residual
 * adds into conv epilogues (oneDNN post-ops). */
#include "engine_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void osseg__count_uses(struct osseg__graph *g) {
  for (int i = 0; i < g->ntensors; i++) g->tensors[i].uses = 0;
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead) continue;
    for (int i = 0; i < n->nin; i++)
      if (n->in[i] >= 0) g->tensors[n->in[i]].uses++;
    for (int p = 0; p < n->npost; p++)
      if (n->post[p].kind == OSSEG__POST_SUM) g->tensors[n->post[p].arg].uses++;
  }
  g->tensors[g->output].uses++;
}

/* Replaces every reference to tensor `from` by `to` in live nodes. */
static void rewire(struct osseg__graph *g, int from, int to) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead) continue;
    for (int i = 0; i < n->nin; i++)
      if (n->in[i] == from) n->in[i] = to;
  }
  if (g->output == from) g->output = to;
}

/* New constant tensor copying src's shape and data. */
static int clone_const(struct osseg__graph *g, int src, struct osseg_diag *diag) {
  int t = osseg__graph_add_tensor(g, NULL, 0);
  if (t < 0) return osseg__fail(diag, t, "out of memory");
  struct osseg__tensor *d = &g->tensors[t], *s = &g->tensors[src];
  d->dtype = s->dtype;
  d->rank = s->rank;
  memcpy(d->dims, s->dims, sizeof d->dims);
  int err = osseg__tensor_alloc_const(g, d, diag);
  if (err) return err;
  memcpy(d->data, s->data, s->nbytes);
  return t;
}

static int fold_bn(struct osseg__graph *g, struct osseg__node *conv, struct osseg__node *bn,
                   struct osseg_diag *diag) {
  int deconv = strcmp(conv->op, "ConvTranspose") == 0;
  int wt = clone_const(g, conv->in[1], diag);
  if (wt < 0) return wt;
  struct osseg__tensor *w = &g->tensors[wt];
  int64_t M = g->tensors[conv->out[0]].dims[1];
  int bt;
  if (conv->nin > 2 && conv->in[2] >= 0) {
    bt = clone_const(g, conv->in[2], diag);
    if (bt < 0) return bt;
  } else {
    bt = osseg__graph_add_tensor(g, NULL, 0);
    if (bt < 0) return osseg__fail(diag, bt, "out of memory");
    g->tensors[bt].dtype = OSSEG__DT_FLOAT;
    g->tensors[bt].rank = 1;
    g->tensors[bt].dims[0] = M;
    int err = osseg__tensor_alloc_const(g, &g->tensors[bt], diag);
    if (err) return err;
    w = &g->tensors[wt];
  }
  if (conv->nin < 3) {
    int *in = osseg__realloc(conv->in, 3 * sizeof(int));
    if (!in) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    conv->in = in;
    conv->nin = 3;
  }
  conv->in[1] = wt;
  conv->in[2] = bt;
  float eps = osseg__attr_float(bn, "epsilon", 1e-5f);
  const struct osseg__tensor *gm = &g->tensors[bn->in[1]], *bt2 = &g->tensors[bn->in[2]],
                             *mean = &g->tensors[bn->in[3]], *var = &g->tensors[bn->in[4]];
  float *wd = w->data, *bd = g->tensors[bt].data;
  int64_t group = osseg__attr_int(conv, "group", 1);
  size_t k = (size_t)(w->dims[2] * w->dims[3]);
  for (int64_t m = 0; m < M; m++) {
    double sc = osseg__const_f64(gm, (size_t)m) / sqrt(osseg__const_f64(var, (size_t)m) + eps);
    bd[m] = (float)((bd[m] - osseg__const_f64(mean, (size_t)m)) * sc + osseg__const_f64(bt2, (size_t)m));
    if (!deconv) {
      size_t per = (size_t)w->dims[1] * k;
      for (size_t i = 0; i < per; i++) wd[(size_t)m * per + i] = (float)(wd[(size_t)m * per + i] * sc);
    } else {
      int64_t mg = M / group, gi = m / mg, j = m % mg, cg = w->dims[0] / group;
      for (int64_t c = 0; c < cg; c++) {
        float *p = wd + (((size_t)(gi * cg + c) * (size_t)w->dims[1]) + (size_t)j) * k;
        for (size_t i = 0; i < k; i++) p[i] = (float)(p[i] * sc);
      }
    }
  }
  return 0;
}

static int act_post(struct osseg__graph *g, struct osseg__node *c, struct osseg__post *p,
                    int *np) {
  const char *op = c->op;
  if (!strcmp(op, "Relu")) {
    p[0] = (struct osseg__post){OSSEG__POST_RELU, 0, 0, -1};
    *np = 1;
  } else if (!strcmp(op, "LeakyRelu")) {
    p[0] = (struct osseg__post){OSSEG__POST_RELU, osseg__attr_float(c, "alpha", 0.01f), 0, -1};
    *np = 1;
  } else if (!strcmp(op, "Sigmoid")) {
    p[0] = (struct osseg__post){OSSEG__POST_SIGMOID, 0, 0, -1};
    *np = 1;
  } else if (!strcmp(op, "Gelu") && !strcmp(osseg__attr_str(c, "approximate", "none"), "none")) {
    p[0] = (struct osseg__post){OSSEG__POST_GELU_ERF, 0, 0, -1};
    *np = 1;
  } else if (!strcmp(op, "HardSwish")) {
    p[0] = (struct osseg__post){OSSEG__POST_HARDSWISH, 0, 0, -1};
    *np = 1;
  } else if (!strcmp(op, "HardSigmoid")) {
    p[0] = (struct osseg__post){OSSEG__POST_LINEAR, osseg__attr_float(c, "alpha", 0.2f),
                                osseg__attr_float(c, "beta", 0.5f), -1};
    p[1] = (struct osseg__post){OSSEG__POST_CLIP, 0, 1, -1};
    *np = 2;
  } else if (!strcmp(op, "Clip")) {
    float lo = -INFINITY, hi = INFINITY;
    if (g->opset < 11) {
      lo = osseg__attr_float(c, "min", -INFINITY);
      hi = osseg__attr_float(c, "max", INFINITY);
    } else {
      if (c->nin > 1 && c->in[1] >= 0) {
        if (!g->tensors[c->in[1]].data) return 0;
        lo = (float)osseg__const_f64(&g->tensors[c->in[1]], 0);
      }
      if (c->nin > 2 && c->in[2] >= 0) {
        if (!g->tensors[c->in[2]].data) return 0;
        hi = (float)osseg__const_f64(&g->tensors[c->in[2]], 0);
      }
    }
    p[0] = (struct osseg__post){OSSEG__POST_CLIP, lo, hi, -1};
    *np = 1;
  } else {
    return 0;
  }
  return 1;
}

static int same_dims(const struct osseg__tensor *a, const struct osseg__tensor *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}


static int ints_all(const struct osseg__node *n, const char *name, int64_t v, size_t count) {
  const struct osseg__attr *a = osseg__attr_find(n, name);
  if (!a) return 1; /* ONNX defaults: strides/dilations 1, pads 0 (checked by caller) */
  if (a->type != OSSEG__ATTR_INTS || a->n != count) return 0;
  for (size_t i = 0; i < a->n; i++)
    if (a->ints[i] != v) return 0;
  return 1;
}

/* Conv 3x3 (stride 1, pad 1, group 1) whose input is a nearest-2x upsample,
 * alone or as the first part of a channel Concat, becomes osseg.UpConv2x
 * with inputs [low-res x, W, B or -1, other concat inputs...] (compiled in
 * conv.c). UNet/UNet++ decoders spend ~15 % of their time in those Resize and
 * Concat copies and a quarter of their conv FLOPs on the upsampled channels,
 * where a 3x3 conv of a 2x nearest upsample equals four 2x2 convs at low
 * resolution (2.25x fewer MACs); the other concat inputs are convolved with
 * their slice of the weights and accumulated with a sum post-op, so neither
 * the upsampled tensor nor the concat is ever materialised. */
static int fuse_upconv(struct osseg__graph *g, struct osseg_diag *diag) {
  osseg__count_uses(g);  /* after the epilogue fusions above */
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead || strcmp(n->op, "Conv") || n->nin < 2) continue;
    const struct osseg__tensor *wt = &g->tensors[n->in[1]];
    if (!wt->data || wt->dtype != OSSEG__DT_FLOAT || wt->rank != 4 || wt->dims[2] != 3 ||
        wt->dims[3] != 3)
      continue;
    if (n->nin > 2 && n->in[2] >= 0 &&
        (!g->tensors[n->in[2]].data || g->tensors[n->in[2]].dtype != OSSEG__DT_FLOAT))
      continue;
    if (osseg__attr_int(n, "group", 1) != 1 || !ints_all(n, "strides", 1, 2) ||
        !ints_all(n, "dilations", 1, 2) || !osseg__attr_find(n, "pads") ||
        !ints_all(n, "pads", 1, 4) || strcmp(osseg__attr_str(n, "auto_pad", "NOTSET"), "NOTSET"))
      continue;
    int has_sum = 0;
    for (int p = 0; p < n->npost; p++) has_sum |= n->post[p].kind == OSSEG__POST_SUM;
    int x = n->in[0];
    if (has_sum || x == g->output || g->tensors[x].uses != 1 || g->tensors[x].producer < 0) continue;
    struct osseg__node *pn = &g->nodes[g->tensors[x].producer], *cat = NULL, *rs = NULL;
    if (pn->dead) continue;
    if (!strcmp(pn->op, "Concat")) {
      int64_t axis = osseg__attr_int(pn, "axis", 0);
      if ((axis != 1 && axis != -3) || pn->nin < 2 || pn->nin > OSSEG__MAX_ARGS - 6) continue;
      int r0 = pn->in[0];
      if (r0 < 0 || r0 == g->output || g->tensors[r0].uses != 1 || g->tensors[r0].producer < 0)
        continue;
      int ok = 1;
      for (int i = 1; i < pn->nin && ok; i++) {
        const struct osseg__tensor *st = pn->in[i] >= 0 ? &g->tensors[pn->in[i]] : NULL;
        ok = st && !st->data && st->rank == 4 && st->dims[0] == 1 &&
             st->dims[2] == g->tensors[x].dims[2] && st->dims[3] == g->tensors[x].dims[3];
      }
      if (!ok) continue;
      cat = pn;
      rs = &g->nodes[g->tensors[r0].producer];
    } else {
      rs = pn;
    }
    if (rs->dead || !osseg__resize_is_nearest2x(g, rs) || g->tensors[rs->in[0]].dims[0] != 1 ||
        g->tensors[rs->in[0]].data)
      continue;
    int nskip = cat ? cat->nin - 1 : 0;
    int *in = osseg__malloc((size_t)(3 + nskip) * sizeof(int));
    char *op = osseg__strndup("osseg.UpConv2x", 14);
    if (!in || !op) {
      osseg__free(in), osseg__free(op);
      return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    }
    in[0] = rs->in[0];
    in[1] = n->in[1];
    in[2] = n->nin > 2 ? n->in[2] : -1;
    for (int i = 0; i < nskip; i++) in[3 + i] = cat->in[1 + i];
    osseg__free(n->in);
    osseg__free(n->op);
    n->in = in;
    n->nin = 3 + nskip;
    n->op = op;
    rs->dead = 1;
    if (cat) cat->dead = 1;
    /* uses are unchanged: x, r0 now have no consumer and are never looked
     * at again; u and the other inputs moved from the dead nodes to n */
  }
  return 0;
}

/* Sets a conv's 4 "pads" (begin H, W, end H, W), adding the attribute if
 * the node has none. */
static int set_conv_pads(struct osseg__node *c, const int64_t pads[4]) {
  for (int i = 0; i < c->nattrs; i++) {
    struct osseg__attr *a = &c->attrs[i];
    if (strcmp(a->name, "pads")) continue;
    if (a->type != OSSEG__ATTR_INTS || a->n != 4) return OSSEG_EUNSUPPORTED;
    memcpy(a->ints, pads, 4 * sizeof *pads);
    return 0;
  }
  struct osseg__attr *attrs = osseg__realloc(c->attrs, ((size_t)c->nattrs + 1) * sizeof *attrs);
  if (!attrs) return OSSEG_ENOMEM;
  c->attrs = attrs;
  struct osseg__attr *a = &attrs[c->nattrs];
  memset(a, 0, sizeof *a);
  a->name = osseg__strndup("pads", 4);
  a->ints = osseg__malloc(4 * sizeof *a->ints);
  if (!a->name || !a->ints) {
    osseg__free(a->name), osseg__free(a->ints);
    return OSSEG_ENOMEM;
  }
  a->type = OSSEG__ATTR_INTS;
  a->n = 4;
  memcpy(a->ints, pads, 4 * sizeof *pads);
  c->nattrs++;
  return 0;
}

/* A zero Pad of H and W whose only consumer is a Conv becomes the Conv's
 * padding. smp's efficientnet encoders pad explicitly before their convs
 * (static "same" padding): 17 Pad nodes in UNet-effb0, each a copy of its
 * map (6 % of the inference at 512², measured). Returns 0 or an error. */
static int fold_pad_into_conv(struct osseg__graph *g, struct osseg__node *c) {
  int t = c->nin > 0 ? c->in[0] : -1;
  if (t < 0 || t == g->output || g->tensors[t].uses != 1 || g->tensors[t].producer < 0) return 0;
  struct osseg__node *p = &g->nodes[g->tensors[t].producer];
  if (p->dead || strcmp(p->op, "Pad") || p->nin < 1 || p->in[0] < 0 || p->out[0] != t) return 0;
  if (strcmp(osseg__attr_str(p, "mode", "constant"), "constant") ||
      strcmp(osseg__attr_str(c, "auto_pad", "NOTSET"), "NOTSET"))
    return 0;
  const struct osseg__tensor *x = &g->tensors[p->in[0]];
  if (x->rank != 4 || g->tensors[t].rank != 4) return 0;
  int64_t pads[8];
  double value = 0;
  if (g->opset < 11) {
    const struct osseg__attr *a = osseg__attr_find(p, "pads");
    if (!a || a->type != OSSEG__ATTR_INTS || a->n != 8) return 0;
    memcpy(pads, a->ints, sizeof pads);
    value = osseg__attr_float(p, "value", 0);
  } else {
    if (p->nin < 2 || p->in[1] < 0) return 0;
    const struct osseg__tensor *pt = &g->tensors[p->in[1]];
    size_t e;
    if (!pt->data || osseg__tensor_elems(g, pt, &e) || e != 8) return 0;
    for (int i = 0; i < 8; i++) pads[i] = osseg__const_i64(pt, (size_t)i);
    if (p->nin > 2 && p->in[2] >= 0) {
      const struct osseg__tensor *vt = &g->tensors[p->in[2]];
      if (!vt->data) return 0;
      value = osseg__const_f64(vt, 0);
    }
    if (p->nin > 3 && p->in[3] >= 0) return 0; /* axes (opset 18) */
  }
  if (value != 0 || pads[0] || pads[1] || pads[4] || pads[5]) return 0;
  for (int i = 0; i < 8; i++)
    if (pads[i] < 0 || pads[i] > 1024) return 0;
  int64_t cp[4] = {0, 0, 0, 0};
  const struct osseg__attr *ca = osseg__attr_find(c, "pads");
  if (ca) {
    if (ca->type != OSSEG__ATTR_INTS || ca->n != 4) return 0;
    memcpy(cp, ca->ints, sizeof cp);
  }
  const int64_t np[4] = {cp[0] + pads[2], cp[1] + pads[3], cp[2] + pads[6], cp[3] + pads[7]};
  int err = set_conv_pads(c, np);
  if (err == OSSEG_EUNSUPPORTED) return 0;
  if (err) return err;
  c->in[0] = p->in[0];
  p->dead = 1;
  g->tensors[t].uses = 0;
  return 0;
}

int osseg__fuse(struct osseg__graph *g, int upconv, struct osseg_diag *diag) {
  /* 1. Identity / Dropout / no-op pass-throughs. */
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead || (strcmp(n->op, "Identity") && strcmp(n->op, "Dropout"))) continue;
    if (n->in[0] == g->input && n->out[0] == g->output) continue; /* keep: needs a copy */
    n->dead = 1;
    rewire(g, n->out[0], n->in[0]);
  }
  osseg__count_uses(g);
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead || strcmp(n->op, "Conv")) continue;
    int err = fold_pad_into_conv(g, n);
    if (err) return osseg__fail(diag, err, "out of memory");
  }
  osseg__count_uses(g);
  /* Consumer lists (CSR). Rewiring below only ever replaces a conv's output
   * by a downstream tensor whose consumers these lists still describe. */
  int nt = g->ntensors;
  int *cstart = osseg__calloc((size_t)nt + 1, sizeof(int));
  if (!cstart) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead) continue;
    for (int i = 0; i < g->nodes[ni].nin; i++)
      if (g->nodes[ni].in[i] >= 0) cstart[g->nodes[ni].in[i] + 1]++;
  }
  for (int t = 0; t < nt; t++) cstart[t + 1] += cstart[t];
  int *clist = osseg__malloc(((size_t)cstart[nt] + 1) * sizeof(int));
  int *fill = osseg__calloc((size_t)nt + 1, sizeof(int));
  if (!clist || !fill) {
    osseg__free(cstart), osseg__free(clist), osseg__free(fill);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead) continue;
    for (int i = 0; i < g->nodes[ni].nin; i++) {
      int t = g->nodes[ni].in[i];
      if (t >= 0 && (i == 0 || g->nodes[ni].in[i - 1] != t)) clist[cstart[t] + fill[t]++] = ni;
      else if (t >= 0) clist[cstart[t] + fill[t]++] = -1; /* same tensor twice */
    }
  }
#define CONSUMER(t, k) clist[cstart[t] + (k)]
  int err = 0;
  for (int ni = 0; ni < g->nnodes && !err; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead || (strcmp(n->op, "Conv") && strcmp(n->op, "ConvTranspose"))) continue;
    for (;;) {
      int t = n->out[0];
      if (t >= nt || t == g->output) break;
      struct osseg__tensor *tt = &g->tensors[t];
      if (tt->uses == 1 && CONSUMER(t, 0) >= 0) {
        struct osseg__node *c = &g->nodes[CONSUMER(t, 0)];
        if (c->dead || c->in[0] != t) {
          /* Add(other, conv) is handled below by position-agnostic check */
          if (c->dead || strcmp(c->op, "Add") || c->nin != 2 || c->in[1] != t) break;
        }
        struct osseg__post p[2];
        int np = 0;
        if (!strcmp(c->op, "BatchNormalization") && n->npost == 0) {
          if ((err = fold_bn(g, n, c, diag))) break;
        } else if (act_post(g, c, p, &np)) {
          if (n->npost + np > OSSEG__MAX_POST) break;
          for (int i = 0; i < np; i++) n->post[n->npost++] = p[i];
        } else if (!strcmp(c->op, "Add") && c->nin == 2 && n->npost == 0) {
          int other = c->in[0] == t ? c->in[1] : c->in[0];
          struct osseg__tensor *ot = &g->tensors[other];
          /* the addend must exist when the conv runs (at the conv's position) */
          if (other == t || ot->data || !same_dims(ot, &g->tensors[c->out[0]]) ||
              !same_dims(ot, tt) || ot->producer >= ni)
            break;
          n->post[n->npost++] = (struct osseg__post){OSSEG__POST_SUM, 1, 0, other};
        } else {
          break;
        }
        c->dead = 1;
        n->out[0] = c->out[0];
        g->tensors[n->out[0]].producer = ni;
        continue;
      }
      if (tt->uses == 2 && n->npost + 1 <= OSSEG__MAX_POST) {
        /* x * sigmoid(x) (SiLU / Swish as exported by PyTorch). */
        int a = CONSUMER(t, 0), b = CONSUMER(t, 1);
        if (a < 0 || b < 0) break;
        struct osseg__node *s = &g->nodes[a], *mu = &g->nodes[b];
        if (strcmp(s->op, "Sigmoid")) {
          struct osseg__node *tmp = s;
          s = mu, mu = tmp;
        }
        if (s->dead || mu->dead || strcmp(s->op, "Sigmoid") || strcmp(mu->op, "Mul") ||
            mu->nin != 2)
          break;
        int u = s->out[0];
        if (g->tensors[u].uses != 1 || u == g->output ||
            !((mu->in[0] == t && mu->in[1] == u) || (mu->in[1] == t && mu->in[0] == u)))
          break;
        n->post[n->npost++] = (struct osseg__post){OSSEG__POST_SWISH, 1, 0, -1};
        s->dead = mu->dead = 1;
        n->out[0] = mu->out[0];
        g->tensors[n->out[0]].producer = ni;
        continue;
      }
      break;
    }
  }
#undef CONSUMER
  osseg__free(cstart);
  osseg__free(clist);
  osseg__free(fill);
  /* no_upconv keeps Resize + Concat + Conv (A/B benchmarks, tests) */
  if (!err && upconv) err = fuse_upconv(g, diag);
  osseg__count_uses(g);
  return err;
}
