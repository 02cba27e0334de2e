/* A zero Pad of H and W whose only consumer is a Conv becomes the Conv's
 * padding. smp's efficientnet encoders pad explicitly before their convs
 * (static "same" padding): 17 Pad nodes in UNet-effb0, each a copy of its
 * map (6 % of the inference at 512², measured). */
#include "graph_edit.h"
#include "pass_list.h"

#include <string.h>

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

/* Folds the Pad in front of conv c, if any. Returns 0 or an error. */
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

int osseg__fold_pads(struct osseg__graph *g, struct osseg_diag *diag) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead || strcmp(n->op, "Conv")) continue;
    int err = fold_pad_into_conv(g, n);
    if (err) return osseg__fail(diag, err, "out of memory");
  }
  return 0;
}
