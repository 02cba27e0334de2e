/* BatchNormalization after a Conv / ConvTranspose is folded into the conv's
 * weights and bias (new constants; the originals may be shared). Called by
 * the conv epilogue walk (fuse_conv_epilogue.c), which meets the
 * BatchNormalization as one link of the conv's output chain. */
#include "graph_edit.h"
#include "pass_list.h"

#include <math.h>
#include <string.h>

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

int osseg__fold_batchnorm(struct osseg__graph *g, struct osseg__node *conv,
                          struct osseg__node *bn, struct osseg_diag *diag) {
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
