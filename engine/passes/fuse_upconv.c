/* Conv 3x3 (stride 1, pad 1, group 1) whose input is a nearest-2x upsample,
 * alone or as the first part of a channel Concat, becomes osseg.UpConv2x
 * with inputs [low-res x, W, B or -1, other concat inputs...] (compiled in
 * conv.c; the upsample may be any input of the concat). UNet/UNet++ decoders spend ~15 % of their time in those Resize and
 * Concat copies and a quarter of their conv FLOPs on the upsampled channels,
 * where a 3x3 conv of a 2x nearest upsample equals four 2x2 convs at low
 * resolution (2.25x fewer MACs); the other concat inputs are convolved with
 * their slice of the weights and accumulated with a sum post-op, so neither
 * the upsampled tensor nor the concat is ever materialised. An int8 form
 * (osseg__fuse_int8_upconvs) does the same for the int8 convs of QDQ models. */
#include "../ir.h"
#include "graph_edit.h"
#include "pass_list.h"

#include <string.h>

static int ints_all(const struct osseg__node *n, const char *name, int64_t v, size_t count) {
  const struct osseg__attr *a = osseg__attr_find(n, name);
  if (!a) return 1; /* ONNX defaults: strides/dilations 1, pads 0 (checked by caller) */
  if (a->type != OSSEG__ATTR_INTS || a->n != count) return 0;
  for (size_t i = 0; i < a->n; i++)
    if (a->ints[i] != v) return 0;
  return 1;
}

/* Is tensor t a nearest-2x upsample of a runtime map of one image that only
 * one node reads? Its Resize, or NULL. */
static struct osseg__node *upsample_of(struct osseg__graph *g, int t) {
  if (t < 0 || t == g->output || g->tensors[t].uses != 1 || g->tensors[t].producer < 0) return NULL;
  struct osseg__node *rs = &g->nodes[g->tensors[t].producer];
  if (rs->dead || !osseg__resize_is_nearest2x(g, rs) || g->tensors[rs->in[0]].dims[0] != 1 ||
      g->tensors[rs->in[0]].data)
    return NULL;
  return rs;
}

/* Does Conv n read a 2x nearest upsample of a runtime map, alone or as an
 * input of a channel Concat (the first such; smp's decoders put it first,
 * others last), with nothing else reading the upsample or the concat? Then
 * *rs is the Resize, *cat the Concat (or NULL) and *k the upsample's
 * position among the concat's inputs. The conv itself is 3x3, stride 1,
 * pad 1, group 1, with constant float weights (and bias) and no residual
 * sum. */
static int upconv_pattern(struct osseg__graph *g, struct osseg__node *n, struct osseg__node **rs_out,
                          struct osseg__node **cat_out, int *k_out) {
  if (n->dead || strcmp(n->op, "Conv") || n->nin < 2) return 0;
  const struct osseg__tensor *wt = &g->tensors[n->in[1]];
  if (!wt->data || wt->dtype != OSSEG__DT_FLOAT || wt->rank != 4 || wt->dims[2] != 3 || wt->dims[3] != 3)
    return 0;
  if (n->nin > 2 && n->in[2] >= 0 &&
      (!g->tensors[n->in[2]].data || g->tensors[n->in[2]].dtype != OSSEG__DT_FLOAT))
    return 0;
  if (osseg__attr_int(n, "group", 1) != 1 || !ints_all(n, "strides", 1, 2) ||
      !ints_all(n, "dilations", 1, 2) || !osseg__attr_find(n, "pads") || !ints_all(n, "pads", 1, 4) ||
      strcmp(osseg__attr_str(n, "auto_pad", "NOTSET"), "NOTSET"))
    return 0;
  for (int p = 0; p < n->npost; p++)
    if (n->post[p].kind == OSSEG__POST_SUM) return 0;
  int x = n->in[0];
  if (x < 0 || x == g->output || g->tensors[x].uses != 1 || g->tensors[x].producer < 0) return 0;
  struct osseg__node *pn = &g->nodes[g->tensors[x].producer], *cat = NULL, *rs = NULL;
  int k = 0;
  if (pn->dead) return 0;
  if (!strcmp(pn->op, "Concat")) {
    int64_t axis = osseg__attr_int(pn, "axis", 0);
    if ((axis != 1 && axis != -3) || pn->nin < 2 || pn->nin > OSSEG__MAX_ARGS - 6) return 0;
    for (int i = 0; i < pn->nin; i++) {
      const struct osseg__tensor *st = pn->in[i] >= 0 ? &g->tensors[pn->in[i]] : NULL;
      if (!st || st->data || st->rank != 4 || st->dims[0] != 1 || st->dims[2] != g->tensors[x].dims[2] ||
          st->dims[3] != g->tensors[x].dims[3])
        return 0;
      if (!rs && (rs = upsample_of(g, pn->in[i])) != NULL) k = i;
    }
    cat = pn;
  } else {
    rs = upsample_of(g, x);
  }
  if (!rs) return 0;
  *rs_out = rs;
  *cat_out = cat;
  *k_out = k;
  return 1;
}

/* The concat's inputs other than the k-th into rest; their count. The
 * upsampled channels' offset among the conv's input channels, when not 0,
 * goes on n as osseg.up_offset (ops/conv.c and conv_upconv_int8.c slice the
 * weights by it). */
static int others(struct osseg__graph *g, struct osseg__node *n, const struct osseg__node *cat, int k,
                  int *rest, struct osseg_diag *diag) {
  int nrest = 0;
  int64_t off = 0;
  for (int i = 0; cat && i < cat->nin; i++) {
    if (i == k) continue;
    rest[nrest++] = cat->in[i];
    if (i < k) off += g->tensors[cat->in[i]].dims[1];
  }
  if (off && osseg__add_attr_int(n, "osseg.up_offset", off))
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  return nrest;
}

/* n becomes osseg.UpConv2x with inputs [u, W, B or -1, rest...]. */
static int make_upconv(struct osseg__node *n, int u, const int *rest, int nrest, struct osseg_diag *diag) {
  int *in = osseg__malloc((size_t)(3 + nrest) * sizeof(int));
  char *op = osseg__strndup("osseg.UpConv2x", 14);
  if (!in || !op) {
    osseg__free(in), osseg__free(op);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  in[0] = u;
  in[1] = n->in[1];
  in[2] = n->nin > 2 ? n->in[2] : -1;
  for (int i = 0; i < nrest; i++) in[3 + i] = rest[i];
  osseg__free(n->in);
  osseg__free(n->op);
  n->in = in;
  n->nin = 3 + nrest;
  n->op = op;
  return 0;
}

int osseg__fuse_upconvs(struct osseg__graph *g, struct osseg_diag *diag) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni], *rs, *cat;
    int k, rest[OSSEG__MAX_ARGS];
    if (!upconv_pattern(g, n, &rs, &cat, &k)) continue;
    int nrest = others(g, n, cat, k, rest, diag);
    if (nrest < 0) return nrest;
    int err = make_upconv(n, rs->in[0], rest, nrest, diag);
    if (err) return err;
    rs->dead = 1;
    if (cat) cat->dead = 1;
    /* uses are unchanged: x, r0 now have no consumer and are never looked
     * at again; u and the other inputs moved from the dead nodes to n */
  }
  return 0;
}

/* The int8 form (ops/conv_upconv_int8.c), for convs that passes/fuse_qdq.c made
 * int8 (osseg.q_scale) and whose epilogue is at most a ReLU: inputs
 * [u, W, B or -1] and, when the concat has other inputs, a fourth, S: the
 * concat of those others (the concat node, its upsampled input removed), or
 * the single other input itself. So the skip maps are still gathered by one
 * 8-bit concat and convolved by one conv, not one conv each with a float
 * sum between them. Only where the upsampled input has at least min_cu
 * channels: the rewrite saves 5/9 of the MACs on those channels but moves
 * two float maps of the output's size (the phase conv's and the skip
 * conv's, summed by an own loop), which costs more than it saves on thin
 * maps (bench/ENGINE_RESULTS.md). */
int osseg__fuse_int8_upconvs(struct osseg__graph *g, int min_cu, struct osseg_diag *diag) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni], *rs, *cat;
    int k, rest[OSSEG__MAX_ARGS];
    if (!osseg__attr_find(n, "osseg.q_scale") || !upconv_pattern(g, n, &rs, &cat, &k)) continue;
    int ok = 1;
    for (int p = 0; p < n->npost; p++) ok &= n->post[p].kind == OSSEG__POST_RELU && n->post[p].alpha == 0;
    const int u = rs->in[0];
    if (!ok || g->tensors[u].dims[1] < min_cu) continue;
    int nrest = others(g, n, cat, k, rest, diag), s = -1, err;
    if (nrest < 0) return nrest;
    if (nrest == 1) {
      s = rest[0];
      cat->dead = 1;
    } else if (nrest > 1) { /* the concat keeps its other inputs */
      int x = cat->out[0];
      for (int i = 0; i < nrest; i++) cat->in[i] = rest[i];
      cat->nin = nrest;
      g->tensors[x].dims[1] -= g->tensors[u].dims[1];
      s = x;
    }
    err = make_upconv(n, u, &s, s >= 0, diag);
    if (err) return err;
    rs->dead = 1;
  }
  osseg__count_uses(g);
  return 0;
}
