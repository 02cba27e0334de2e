/* SegFormer's All-MLP decoder: Concat(axis 1) of [Resize(linear)]
 * osseg.View(MatMul + bias) branches -> 1x1 Conv [-> Relu]  ==>  MatMul with
 * the conv folded in per branch -> osseg.View -> osseg.ResizeSum (see
 * ops/resize_fused.c). Also the final bilinear upsampling of the graph output,
 * rewritten to osseg.ResizePlanar so that it writes NCHW directly. */
#include "../ir.h"
#include "../view.h"
#include "graph_edit.h"
#include "pass_list.h"

#include <string.h>

static int attr_floats(struct osseg__node *n, const char *name, const float *v, size_t cnt) {
  struct osseg__attr *a = osseg__add_attr(n, name, OSSEG__ATTR_FLOATS);
  if (!a) return OSSEG_ENOMEM;
  a->floats = osseg__malloc(cnt * sizeof(float));
  if (!a->floats) return OSSEG_ENOMEM;
  memcpy(a->floats, v, cnt * sizeof(float));
  a->n = cnt;
  return 0;
}

/* Concat(axis 1) of [Resize(linear)] osseg.View(MatMul + bias) branches ->
 * 1x1 Conv [-> Relu]  ==>  MatMul with the conv folded in per branch ->
 * osseg.View -> osseg.ResizeSum (see ops/resize_fused.c). */
static int fuse_decoder(struct osseg__graph *g, struct osseg__node *cv, struct osseg_diag *diag) {
  const struct osseg__tensor *wt = &g->tensors[cv->in[1]];
  if (cv->nin < 2 || !wt->data || wt->rank != 4 || wt->dims[2] != 1 || wt->dims[3] != 1 ||
      osseg__attr_int(cv, "group", 1) != 1 || cv->npost)
    return 0;
  struct osseg__window w;
  if (osseg__window_of(g, cv, &w, NULL)) return 0;
  if (w.s[0] != 1 || w.s[1] != 1 || w.pb[0] || w.pb[1] || w.pe[0] || w.pe[1]) return 0;
  struct osseg__node *cat = osseg__producer(g, cv->in[0], "Concat");
  if (!cat || osseg__only_consumer(g, cat->out[0]) != cv || osseg__attr_int(cat, "axis", 0) != 1 ||
      cat->nin < 1 || cat->nin > 8)
    return 0;
  const struct osseg__tensor *yt = &g->tensors[cv->out[0]];
  int64_t Mc = wt->dims[0], Cin = wt->dims[1];
  struct osseg__node *mm[8], *vw[8], *rz[8];
  int64_t coff[8], off = 0;
  int modes[8];
  float scl[16];
  for (int i = 0; i < cat->nin; i++) {
    int u = cat->in[i];
    rz[i] = osseg__producer(g, u, "Resize");
    int x = u;
    modes[i] = 0;
    scl[2 * i] = scl[2 * i + 1] = 1.f;
    if (rz[i]) {
      if (osseg__only_consumer(g, u) != cat ||
          strcmp(osseg__attr_str(rz[i], "mode", "nearest"), "linear") ||
          g->opset < 11 || osseg__attr_int(rz[i], "antialias", 0))
        return 0;
      const char *ctm = osseg__attr_str(rz[i], "coordinate_transformation_mode", "half_pixel");
      if (!strcmp(ctm, "half_pixel")) modes[i] = 0;
      else if (!strcmp(ctm, "pytorch_half_pixel")) modes[i] = 1;
      else if (!strcmp(ctm, "align_corners")) modes[i] = 2;
      else if (!strcmp(ctm, "asymmetric")) modes[i] = 3;
      else return 0;
      double sc[4];
      int64_t sz[4];
      if (osseg__resize_scales(g, rz[i], sc, sz, NULL)) return 0;
      scl[2 * i] = (float)sc[2], scl[2 * i + 1] = (float)sc[3];
      x = rz[i]->in[0];
    }
    vw[i] = osseg__producer(g, x, OSSEG__OP_VIEW);
    if (!vw[i] || osseg__only_consumer(g, x) != (rz[i] ? rz[i] : cat)) return 0;
    mm[i] = osseg__producer(g, vw[i]->in[0], "MatMul");
    if (!mm[i] || osseg__only_consumer(g, vw[i]->in[0]) != vw[i] || mm[i]->nin != 3 ||
        mm[i]->npost ||
        !g->tensors[mm[i]->in[1]].data || g->tensors[mm[i]->in[1]].rank != 2 ||
        g->tensors[x].rank != 4 || g->tensors[x].dims[0] != 1)
      return 0;
    coff[i] = off;
    off += g->tensors[x].dims[1];
  }
  if (off != Cin || yt->dims[0] != 1) return 0;
  /* fold the conv's column block into each branch's Linear */
  for (int i = 0; i < cat->nin; i++) {
    const struct osseg__tensor *B = &g->tensors[mm[i]->in[1]], *bb = &g->tensors[mm[i]->in[2]];
    int64_t K = B->dims[0], Mo = B->dims[1];
    int64_t nd[2] = {K, Mc}, bd[1] = {Mc};
    int nB = osseg__new_const(g, 2, nd, diag);
    if (nB < 0) return nB;
    int nb = osseg__new_const(g, 1, bd, diag);
    if (nb < 0) return nb;
    B = &g->tensors[mm[i]->in[1]], bb = &g->tensors[mm[i]->in[2]], wt = &g->tensors[cv->in[1]];
    float *o = g->tensors[nB].data, *ob = g->tensors[nb].data;
    for (int64_t k = 0; k < K; k++)
      for (int64_t mo = 0; mo < Mc; mo++) {
        double acc = 0;
        for (int64_t j = 0; j < Mo; j++)
          acc += osseg__const_f64(B, (size_t)(k * Mo + j)) *
                 osseg__const_f64(wt, (size_t)(mo * Cin + coff[i] + j));
        o[k * Mc + mo] = (float)acc;
      }
    for (int64_t mo = 0; mo < Mc; mo++) {
      double acc = 0;
      for (int64_t j = 0; j < Mo; j++)
        acc += osseg__const_f64(bb, (size_t)(j % (int64_t)(bb->nbytes / 4))) *
               osseg__const_f64(wt, (size_t)(mo * Cin + coff[i] + j));
      ob[mo] = (float)acc;
    }
    mm[i]->in[1] = nB, mm[i]->in[2] = nb;
    struct osseg__tensor *t = &g->tensors[mm[i]->out[0]];
    t->dims[t->rank - 1] = Mc;
    t = &g->tensors[vw[i]->out[0]];
    t->dims[1] = Mc;
  }
  int bias = -1;
  if (cv->nin > 2 && cv->in[2] >= 0) {
    bias = cv->in[2];
  } else {
    int64_t bd[1] = {Mc};
    if ((bias = osseg__new_const(g, 1, bd, diag)) < 0) return bias;
  }
  int in[9];
  for (int i = 0; i < cat->nin; i++) in[i] = vw[i]->out[0];
  in[cat->nin] = bias;
  int nbr = cat->nin;
  int err = osseg__set_inputs(cv, in, nbr + 1);
  if (!err) err = osseg__set_op(cv, "osseg.ResizeSum");
  osseg__node_clear_attrs(cv);
  int64_t md[8];
  for (int i = 0; i < nbr; i++) md[i] = modes[i];
  if (!err) err = osseg__add_attr_ints(cv, "modes", md, (size_t)nbr);
  if (!err) err = attr_floats(cv, "scales", scl, (size_t)(2 * nbr));
  struct osseg__node *relu = osseg__only_consumer(g, cv->out[0]);
  int fuse_relu = relu && !strcmp(relu->op, "Relu") && relu->in[0] == cv->out[0];
  if (!err) err = osseg__add_attr_int(cv, "relu", fuse_relu);
  if (err) return osseg__fail(diag, err, "out of memory");
  if (fuse_relu) {
    relu->dead = 1;
    cv->out[0] = relu->out[0];
    g->tensors[cv->out[0]].producer = (int)(cv - g->nodes);
  }
  cat->dead = 1;
  for (int i = 0; i < nbr; i++)
    if (rz[i]) rz[i]->dead = 1;
  return 1;
}

int osseg__fuse_segformer_decoders(struct osseg__graph *g, struct osseg_diag *diag) {
  int err;
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead || strcmp(g->nodes[ni].op, "Conv")) continue;
    if ((err = fuse_decoder(g, &g->nodes[ni], diag)) < 0) return err;
  }
  return 0;
}

int osseg__resize_output_planar(struct osseg__graph *g, struct osseg_diag *diag) {
  /* the final bilinear upsampling writes NCHW directly */
  struct osseg__node *last = osseg__producer(g, g->output, "Resize");
  int first_use;
  if (last && osseg__consumers(g, g->output, &first_use) == 1 && /* nothing else reads it */
      g->tensors[g->output].rank == 4 && g->tensors[g->output].dims[0] == 1 &&
      g->opset >= 11 && !strcmp(osseg__attr_str(last, "mode", "nearest"), "linear") &&
      !osseg__attr_int(last, "antialias", 0) && !g->tensors[last->in[0]].data) {
    const char *ctm = osseg__attr_str(last, "coordinate_transformation_mode", "half_pixel");
    if (!strcmp(ctm, "half_pixel") || !strcmp(ctm, "pytorch_half_pixel") ||
        !strcmp(ctm, "align_corners") || !strcmp(ctm, "asymmetric")) {
      double sc[4];
      int64_t sz[4];
      if (!osseg__resize_scales(g, last, sc, sz, NULL) && sz[0] == 1 &&
          sz[1] == g->tensors[last->in[0]].dims[1] && osseg__set_op(last, "osseg.ResizePlanar"))
        return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    }
  }
  return 0;
}
