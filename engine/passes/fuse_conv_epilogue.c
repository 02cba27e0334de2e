/* Conv / ConvTranspose epilogues: the chain of single consumers behind a
 * conv becomes oneDNN post-ops of the conv, link by link: BatchNormalization
 * (folded into the weights, fold_batchnorm.c), activations (Relu, LeakyRelu,
 * Sigmoid, erf Gelu, HardSwish, HardSigmoid, Clip), a residual Add (sum
 * post-op) and x * sigmoid(x) (SiLU / Swish as exported by PyTorch). The
 * fused nodes are marked dead and the conv writes the chain's output. */
#include "graph_edit.h"
#include "pass_list.h"

#include <math.h>
#include <string.h>

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

int osseg__fuse_conv_epilogues(struct osseg__graph *g, struct osseg_diag *diag) {
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
          if ((err = osseg__fold_batchnorm(g, n, c, diag))) break;
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
  return err;
}
