/* Shape-rule helpers shared by the op files' shape inference: operand
 * access, numpy broadcasting, int lists from attributes or constant inputs,
 * axis normalisation, and the window geometry of Conv, ConvTranspose and
 * pooling. */
#include "ir.h"

#include <string.h>

struct osseg__tensor *osseg__in(struct osseg__graph *g, const struct osseg__node *n, int i) {
  return i < n->nin && n->in[i] >= 0 ? &g->tensors[n->in[i]] : NULL;
}

void osseg__same_shape(const struct osseg__tensor *x, struct osseg__tensor *y) {
  y->dtype = x->dtype;
  y->rank = x->rank;
  memcpy(y->dims, x->dims, sizeof x->dims);
}

int osseg__broadcast(const struct osseg__tensor *a, const struct osseg__tensor *b,
                     struct osseg__tensor *out) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 0; i < r; i++) {
    int ia = i - (r - a->rank), ib = i - (r - b->rank);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da != db && da != 1 && db != 1) return OSSEG_ESHAPE;
    out->dims[i] = da == 1 ? db : da;
  }
  out->rank = r;
  return 0;
}

/* Reads an int list from attribute `attr` or constant input `idx`. Returns
 * count, 0 if absent, <0 on error (non-constant input). */
int osseg__int_list(struct osseg__graph *g, struct osseg__node *n, const char *attr, int idx,
                    int64_t *out, int max, struct osseg_diag *diag) {
  const struct osseg__attr *a = attr ? osseg__attr_find(n, attr) : NULL;
  if (a && a->type == OSSEG__ATTR_INTS) {
    if (a->n > (size_t)max) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "attribute '%s' too long", OSSEG__NODEARG, attr);
    for (size_t i = 0; i < a->n; i++) out[i] = a->ints[i];
    return (int)a->n;
  }
  struct osseg__tensor *t = idx >= 0 ? osseg__in(g, n, idx) : NULL;
  if (!t) return 0;
  if (!t->data)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "input %d ('%s') must be a constant (computed at load)",
                OSSEG__NODEARG, idx, t->name);
  size_t e;
  if (osseg__tensor_elems(g, t, &e) || e > (size_t)max)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "input '%s' has too many values", OSSEG__NODEARG, t->name);
  for (size_t i = 0; i < e; i++) out[i] = osseg__const_i64(t, i);
  return (int)e;
}

int osseg__need_rank4(struct osseg__graph *g, struct osseg__node *n, struct osseg__tensor *x,
                      struct osseg_diag *diag) {
  if (!x || x->rank != 4)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "needs a 4-D (N,C,H,W) input, got rank %d", OSSEG__NODEARG,
                x ? x->rank : -1);
  return 0;
}


/* Spatial output size and begin/end pads for conv and pooling. */
static int window(struct osseg__graph *g, struct osseg__node *n, const int64_t *in_hw,
                  const int64_t *k, int64_t *strides, int64_t *dil, int64_t *pb, int64_t *pe,
                  int ceil_mode, int64_t *out_hw, struct osseg_diag *diag) {
  int64_t tmp[8];
  int c = osseg__int_list(g, n, "strides", -1, tmp, 8, diag);
  if (c < 0) return c;
  for (int i = 0; i < 2; i++) strides[i] = c == 2 ? tmp[i] : 1;
  c = osseg__int_list(g, n, "dilations", -1, tmp, 8, diag);
  if (c < 0) return c;
  for (int i = 0; i < 2; i++) dil[i] = c == 2 ? tmp[i] : 1;
  c = osseg__int_list(g, n, "pads", -1, tmp, 8, diag);
  if (c < 0) return c;
  if (c != 0 && c != 4) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "pads must have 4 values", OSSEG__NODEARG);
  for (int i = 0; i < 2; i++) {
    pb[i] = c == 4 ? tmp[i] : 0;
    pe[i] = c == 4 ? tmp[i + 2] : 0;
  }
  const char *ap = osseg__attr_str(n, "auto_pad", "NOTSET");
  for (int i = 0; i < 2; i++) {
    if (strides[i] < 1 || strides[i] > 64 || dil[i] < 1 || dil[i] > 1024 || k[i] < 1 ||
        k[i] > 4096 || pb[i] < 0 || pe[i] < 0 || pb[i] > 4096 || pe[i] > 4096)
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "kernel/stride/dilation/pad out of range", OSSEG__NODEARG);
    int64_t keff = (k[i] - 1) * dil[i] + 1;
    if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
      int64_t o = (in_hw[i] + strides[i] - 1) / strides[i];
      int64_t tot = (o - 1) * strides[i] + keff - in_hw[i];
      if (tot < 0) tot = 0;
      pb[i] = strcmp(ap, "SAME_UPPER") == 0 ? tot / 2 : tot - tot / 2;
      pe[i] = tot - pb[i];
    } else if (strcmp(ap, "VALID") == 0) {
      pb[i] = pe[i] = 0;
    } else if (strcmp(ap, "NOTSET") != 0) {
      return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "auto_pad '%s' unknown", OSSEG__NODEARG, ap);
    }
    int64_t span = in_hw[i] + pb[i] + pe[i] - keff;
    if (span < 0) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "kernel larger than padded input", OSSEG__NODEARG);
    int64_t o = ceil_mode ? (span + strides[i] - 1) / strides[i] + 1 : span / strides[i] + 1;
    if (ceil_mode && (o - 1) * strides[i] >= in_hw[i] + pb[i]) o--;
    out_hw[i] = o;
  }
  return 0;
}

int osseg__window_of(struct osseg__graph *g, struct osseg__node *n, struct osseg__window *w,
                     struct osseg_diag *diag) {
  struct osseg__tensor *x = osseg__in(g, n, 0);
  int deconv = strcmp(n->op, "ConvTranspose") == 0;
  memset(w, 0, sizeof *w);
  if (!strcmp(n->op, "BatchNormalization")) {
    for (int i = 0; i < 2; i++) w->k[i] = w->s[i] = w->d[i] = 1, w->out[i] = x->dims[2 + i];
    return 0;
  }
  if (!strncmp(n->op, "Global", 6)) {
    for (int i = 0; i < 2; i++) w->k[i] = x->dims[2 + i], w->s[i] = w->d[i] = w->out[i] = 1;
    return 0;
  }
  if (!strcmp(n->op, "Conv") || deconv) {
    struct osseg__tensor *wt = osseg__in(g, n, 1);
    w->k[0] = wt->dims[2];
    w->k[1] = wt->dims[3];
  } else {
    int c = osseg__int_list(g, n, "kernel_shape", -1, w->k, 2, diag);
    if (c < 0) return c;
    if (c != 2) return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "kernel_shape must have 2 values", OSSEG__NODEARG);
  }
  int ceil_mode = (int)osseg__attr_int(n, "ceil_mode", 0);
  if (!deconv)
    return window(g, n, &x->dims[2], w->k, w->s, w->d, w->pb, w->pe, ceil_mode, w->out, diag);
  /* ConvTranspose: parse attributes through window(), then the transposed
   * output formula. */
  int64_t big[2] = {x->dims[2] + 8192, x->dims[3] + 8192}, o[2];
  int err = window(g, n, big, w->k, w->s, w->d, w->pb, w->pe, 0, o, diag);
  if (err) return err;
  int64_t op[8], os[8];
  int nop = osseg__int_list(g, n, "output_padding", -1, op, 8, diag);
  int nos = osseg__int_list(g, n, "output_shape", -1, os, 8, diag);
  if (nop < 0 || nos < 0) return -1;
  const char *ap = osseg__attr_str(n, "auto_pad", "NOTSET");
  for (int i = 0; i < 2; i++) {
    int64_t opad = nop == 2 ? op[i] : 0;
    if (opad < 0 || opad >= w->s[i] + w->d[i])
      return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "output_padding out of range", OSSEG__NODEARG);
    int64_t keff = (w->k[i] - 1) * w->d[i] + 1;
    int64_t full = w->s[i] * (x->dims[2 + i] - 1) + opad + keff;
    if (nos >= 2 || strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
      int64_t want = nos >= 2 ? os[nos - 2 + i] : x->dims[2 + i] * w->s[i];
      int64_t tot = full - want;
      if (tot < 0) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "output_shape too large", OSSEG__NODEARG);
      w->pb[i] = strcmp(ap, "SAME_LOWER") == 0 ? tot - tot / 2 : tot / 2;
      w->pe[i] = tot - w->pb[i];
    }
    w->out[i] = full - w->pb[i] - w->pe[i];
    if (w->out[i] < 1) return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "output size < 1", OSSEG__NODEARG);
  }
  return 0;
}

int osseg__norm_axis(struct osseg__graph *g, struct osseg__node *n, int64_t a, int rank,
                     int *out, struct osseg_diag *diag) {
  if (a < -rank || a >= rank)
    return OSSEG__FAIL(OSSEG_ESHAPE, OSSEG__NODEFMT "axis %lld out of range for rank %d", OSSEG__NODEARG,
                (long long)a, rank);
  *out = (int)(a < 0 ? a + rank : a);
  return 0;
}
