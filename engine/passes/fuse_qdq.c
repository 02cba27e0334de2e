/* QDQ models (quantized ONNX: QuantizeLinear -> DequantizeLinear around
 * each quantized activation).
 *
 * pair_qdq: a QuantizeLinear on activations whose every consumer is a
 * DequantizeLinear with the same scale and zero point becomes one
 * osseg.FakeQuant node (float -> float, ops/quant.c), the DequantizeLinears
 * disappear and their readers read the FakeQuant's output: the model runs
 * exactly as quantized, in float, at every precision. A MaxPool or
 * nearest Resize between two FakeQuants of one grid (ONNX Runtime's
 * placement) reads the first one's input instead, or, a resize that only
 * concats read, drops the second: the same values either way.
 *
 * quantize_convs (--precision int8): a Conv reading an osseg.FakeQuant
 * output, whose weights are symmetric int8 values (a folded
 * DequantizeLinear, ir.h's qscale), takes over the quantization of its
 * input: it records the scale, zero point and signedness as attributes
 * (osseg.q_scale, osseg.q_zero, osseg.q_signed) and reads the float input,
 * which ops/conv.c quantizes to 8 bits itself (the same integers) before
 * an int8 convolution. An Add of two FakeQuant outputs (ONNX Runtime
 * quantizes a residual Add's inputs) takes over both quantizations alike,
 * with the ReLU after it, as osseg.QAdd (ops/add_int8.c), and a channel
 * Concat that will be written in 8 bits takes over the quantizations of
 * its FakeQuant inputs (ONNX Runtime quantizes each on its own grid) and
 * requantizes them onto its own (ops/concat.c), as an int8 upconv does
 * for the maps it reads in the concat's place (ops/conv_upconv_int8.c). A
 * node whose every reader takes its output in 8 bits of one quantization
 * writes that output in 8 bits instead (osseg.q_out_scale,
 * osseg.q_out_zero, osseg.q_out_signed): an int8 conv
 * with at most a ReLU epilogue requantizes its accumulators (ops/conv.c); a
 * channel Concat quantizes its float inputs straight into their channel
 * slices and copies its 8-bit ones (ops/concat.c); a nearest Resize and a
 * MaxPool, which give the same integers whether the quantization comes
 * before or after them, quantize their input (the smaller side of a resize)
 * or their result and move bytes (ops/resize_pad.c, ops/pool.c). Readers
 * taking 8 bits are int8 convs (their input), 8-bit adds (both inputs, an
 * 8-bit add is marked like a conv) and the nodes so marked, which
 * are decided first (readers before producers), so chains such as conv ->
 * resize -> concat -> conv carry 8 bits end to end: no float copy and no
 * separate quantizing pass. Before that, with upconv_min >= 0, int8 convs
 * of a nearest-2x upsample [+ concat] become osseg.UpConv2x
 * (fuse_upconv.c), which read the upsample's input and the concat's other
 * inputs in 8 bits alike. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph_edit.h"
#include "pass_list.h"

/* Same constant scalar-or-vector tensors (scale or zero point)? */
static int same_const(const struct osseg__graph *g, int a, int b) {
  if (a == b) return 1;
  if (a < 0 || b < 0) return 0;
  const struct osseg__tensor *x = &g->tensors[a], *y = &g->tensors[b];
  return x->data && y->data && x->dtype == y->dtype && x->nbytes == y->nbytes &&
         !memcmp(x->data, y->data, x->nbytes);
}

/* Do fake quantizations a and b round to one grid: the same scale, and
 * zero points of one type and value (an absent one is uint8 0)? */
static int same_grid(const struct osseg__graph *g, const struct osseg__node *a,
                     const struct osseg__node *b) {
  if (!same_const(g, a->in[1], b->in[1])) return 0;
  int za = a->nin > 2 ? a->in[2] : -1, zb = b->nin > 2 ? b->in[2] : -1;
  if (same_const(g, za, zb)) return 1;
  int z = za >= 0 ? za : zb; /* (the other one is absent) */
  return (za < 0 || zb < 0) && g->tensors[z].dtype == OSSEG__DT_UINT8 && osseg__const_scalar(g, z) == 0;
}

/* ONNX Runtime's quantize_static quantizes the output of a MaxPool and of a
 * Resize again, with the scale and zero point of their input ("8-bit
 * direct" operators): FakeQuant(MaxPool(FakeQuant(x))) with one grid. Both
 * select values of their input (a nearest resize copies them) and a
 * quantization never reorders values, so quantizing before or after them
 * gives the same values: the first quantization is skipped for them
 * (MaxPool(x) is read, the second one kept). The int8 path then sees a
 * pool or resize of the producer's output, read on one grid, and carries
 * it in 8 bits (quantize_convs), and a conv reading the resize still has
 * its quantization to run in int8; in float the first quantization
 * disappears where nothing else reads it. A resize read only by concats
 * may instead keep its input's quantization and drop the second, which
 * changes nothing: a conv of that concat is then an upconv (fuse_upconv.c),
 * reading the quantized low-resolution map. That is done in float (the
 * quantization at low resolution is cheaper too) and, in int8, where the
 * upsampled map has as many channels as the int8 upconv rewrites
 * (keep_min: the rewrite's threshold, or -1 without it). */
static int selects_values(struct osseg__graph *g, const struct osseg__node *x) {
  if (x->nout != 1) return 0;
  if (!strcmp(x->op, "MaxPool")) return 1;
  if (strcmp(x->op, "Resize") && strcmp(x->op, "Upsample")) return 0;
  int linear, cmode, nmode;
  double sc[4];
  return !osseg__resize_parse(g, (struct osseg__node *)x, &linear, &cmode, &nmode, sc, NULL) && !linear;
}

static int is_concat(const struct osseg__graph *g, const struct osseg__node *n) {
  (void)g;
  return !strcmp(n->op, "Concat");
}

/* Does t have live readers, all (inputs and residual sums alike) nodes
 * that pass test ok? */
static int read_only_by(const struct osseg__graph *g, int t,
                        int (*ok)(const struct osseg__graph *, const struct osseg__node *)) {
  int readers = 0;
  for (int ni = 0; ni < g->nnodes; ni++) {
    const struct osseg__node *r = &g->nodes[ni];
    if (r->dead) continue;
    const int uses = osseg__reads(r, t);
    if (uses && !ok(g, r)) return 0;
    readers += uses;
  }
  return readers > 0 && t != g->output;
}

static void commute_repeated_fake_quant(struct osseg__graph *g, int64_t keep_min) {
  for (int fi = 0; fi < g->nnodes; fi++) {
    struct osseg__node *f = &g->nodes[fi];
    if (f->dead || strcmp(f->op, OSSEG__OP_FAKE_QUANT)) continue;
    /* the chain of selecting nodes before f, each read only by the next */
    struct osseg__node *x = osseg__producer(g, f->in[0], NULL);
    if (!x || !selects_values(g, x) || osseg__only_consumer(g, x->out[0]) != f) continue;
    for (;;) {
      struct osseg__node *p = osseg__producer(g, x->in[0], NULL);
      if (!p || !selects_values(g, p) || osseg__only_consumer(g, p->out[0]) != x) break;
      x = p;
    }
    struct osseg__node *q = osseg__producer(g, x->in[0], OSSEG__OP_FAKE_QUANT);
    if (!q || !same_grid(g, q, f)) continue;
    const struct osseg__node *last = osseg__producer(g, f->in[0], NULL);
    if (keep_min >= 0 && strcmp(last->op, "MaxPool") && read_only_by(g, f->out[0], is_concat) &&
        g->tensors[last->in[0]].dims[1] >= keep_min) {
      f->dead = 1; /* (a resize that only concats read: see above) */
      osseg__rewire(g, f->out[0], f->in[0]);
    } else {
      x->in[0] = q->in[0];
    }
  }
}

int osseg__pair_qdq(struct osseg__graph *g, int64_t keep_min, struct osseg_diag *diag) {
  osseg__count_uses(g);
  for (int qi = 0; qi < g->nnodes; qi++) {
    struct osseg__node *q = &g->nodes[qi];
    if (q->dead || strcmp(q->op, "QuantizeLinear") || g->tensors[q->in[0]].data) continue;
    int t = q->out[0], ok = t != g->output, nd = 0;
    int zq = q->nin > 2 ? q->in[2] : -1;
    for (int ni = 0; ni < g->nnodes && ok; ni++) {
      struct osseg__node *c = &g->nodes[ni];
      if (c->dead) continue;
      for (int i = 0; i < c->nin && ok; i++) {
        if (c->in[i] != t) continue;
        int zd = c->nin > 2 ? c->in[2] : -1;
        ok = !strcmp(c->op, "DequantizeLinear") && i == 0 && same_const(g, c->in[1], q->in[1]) &&
             (same_const(g, zd, zq) || (zd < 0 && zq >= 0 && osseg__const_scalar(g, zq) == 0) ||
              (zq < 0 && zd >= 0 && osseg__const_scalar(g, zd) == 0)) &&
             osseg__attr_int(c, "axis", 1) == osseg__attr_int(q, "axis", 1);
        nd++;
      }
    }
    if (!ok || nd == 0) continue; /* left for compile_unpaired's error */
    for (int ni = 0; ni < g->nnodes; ni++) {
      struct osseg__node *c = &g->nodes[ni];
      if (c->dead || strcmp(c->op, "DequantizeLinear") || c->in[0] != t) continue;
      c->dead = 1;
      osseg__rewire(g, c->out[0], t);
    }
    g->tensors[t].dtype = OSSEG__DT_FLOAT;
    int err = osseg__set_op(q, OSSEG__OP_FAKE_QUANT);
    if (err) return osseg__fail(diag, err, "out of memory");
  }
  commute_repeated_fake_quant(g, keep_min);
  osseg__eliminate_dead(g);
  return 0;
}

/* The per-tensor quantization of fake quantization f as attributes of n
 * (names with suffix sfx: "" for input 0, "1" for input 1), 0 when f is
 * per-axis. */
static int take_quantization(struct osseg__graph *g, struct osseg__node *n, const struct osseg__node *f,
                             const char *sfx, struct osseg_diag *diag) {
  const struct osseg__tensor *s = &g->tensors[f->in[1]];
  const struct osseg__tensor *z = f->nin > 2 && f->in[2] >= 0 ? &g->tensors[f->in[2]] : NULL;
  size_t ns;
  if (osseg__tensor_elems(g, s, &ns) || ns != 1) return 0;
  char name[32];
  snprintf(name, sizeof name, "osseg.q_scale%s", sfx);
  int err = osseg__add_attr_float(n, name, (float)osseg__const_f64(s, 0));
  snprintf(name, sizeof name, "osseg.q_zero%s", sfx);
  if (!err) err = osseg__add_attr_int(n, name, z ? osseg__const_i64(z, 0) : 0);
  snprintf(name, sizeof name, "osseg.q_signed%s", sfx);
  if (!err) err = osseg__add_attr_int(n, name, z && z->dtype == OSSEG__DT_INT8);
  return err ? osseg__fail(diag, err, "out of memory") : 1;
}

/* Adds of two fake-quantized maps of one shape (ONNX Runtime quantizes both
 * inputs of a residual Add) become osseg.QAdd (ops/add_int8.c), which takes
 * over both quantizations as the int8 convs take over theirs, and the ReLU
 * that alone reads the sum: its inputs can then stay in 8 bits. */
static int quantize_adds(struct osseg__graph *g, struct osseg_diag *diag) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead || strcmp(n->op, "Add") || n->nin != 2 || n->npost || n->out[0] == g->output) continue;
    struct osseg__node *fa = osseg__producer(g, n->in[0], OSSEG__OP_FAKE_QUANT);
    struct osseg__node *fb = osseg__producer(g, n->in[1], OSSEG__OP_FAKE_QUANT);
    const struct osseg__tensor *a = &g->tensors[n->in[0]], *b = &g->tensors[n->in[1]],
                               *y = &g->tensors[n->out[0]];
    if (!fa || !fb || y->rank != 4 || a->rank != 4 || b->rank != 4 ||
        memcmp(a->dims, y->dims, 4 * sizeof y->dims[0]) || memcmp(b->dims, y->dims, 4 * sizeof y->dims[0]))
      continue;
    const struct osseg__tensor *sa = &g->tensors[fa->in[1]], *sb = &g->tensors[fb->in[1]];
    size_t na, nb;
    if (osseg__tensor_elems(g, sa, &na) || osseg__tensor_elems(g, sb, &nb) || na != 1 || nb != 1) continue;
    int err = take_quantization(g, n, fa, "", diag);
    if (err >= 0) err = take_quantization(g, n, fb, "1", diag);
    if (err < 0) return err;
    n->in[0] = fa->in[0];
    n->in[1] = fb->in[0];
    struct osseg__node *r = osseg__only_consumer(g, n->out[0]);
    if (r && !strcmp(r->op, "Relu") && !r->npost) {
      if ((err = osseg__add_attr_int(n, "osseg.relu", 1))) return osseg__fail(diag, err, "out of memory");
      r->dead = 1;
      osseg__rewire(g, r->out[0], n->out[0]);
    }
    if ((err = osseg__set_op(n, OSSEG__OP_QADD))) return osseg__fail(diag, err, "out of memory");
  }
  return 0;
}

/* The grid on which node r reads its input i in 8 bits (its scale; zero
 * point and signedness into *z, *sg), or NULL: an int8 conv its input (and
 * an int8 upconv its skip maps, input 3) on its conv grid, an 8-bit add
 * each input on its own, a concat or an upconv an input whose quantization
 * it took over on that grid and the concat the others on its output's,
 * and a node marked as writing 8 bits (resize, max pool) its data input on
 * its output's grid. */
static const struct osseg__attr *read_grid(const struct osseg__node *r, int i, int64_t *z, int64_t *sg) {
  const int upconv = !strcmp(r->op, "osseg.UpConv2x"), concat = !strcmp(r->op, "Concat");
  const char *sn = "osseg.q_out_scale", *zn = "osseg.q_out_zero", *gn = "osseg.q_out_signed";
  char si[40], zi[40], gi[40]; /* (names of input grids taken over) */
  if (upconv || !strcmp(r->op, "Conv")) {
    if (i != 0 && !(upconv && i == 3)) return NULL;
    sn = "osseg.q_scale", zn = "osseg.q_zero", gn = "osseg.q_signed";
  } else if (!strcmp(r->op, OSSEG__OP_QADD)) {
    sn = i ? "osseg.q_scale1" : "osseg.q_scale";
    zn = i ? "osseg.q_zero1" : "osseg.q_zero";
    gn = i ? "osseg.q_signed1" : "osseg.q_signed";
  } else if (!concat && i != 0) {
    return NULL;
  }
  if (concat || upconv) {
    snprintf(si, sizeof si, "osseg.q_scale_in%d", i);
    if (osseg__attr_find(r, si)) {
      snprintf(zi, sizeof zi, "osseg.q_zero_in%d", i);
      snprintf(gi, sizeof gi, "osseg.q_signed_in%d", i);
      sn = si, zn = zi, gn = gi;
    }
  }
  *z = osseg__attr_int(r, zn, 0);
  *sg = osseg__attr_int(r, gn, 0);
  return osseg__attr_find(r, sn);
}

/* Is tensor t read only by int8 convs, all on one grid (their input; an
 * int8 upconv's skip maps, input 3, too)? */
static int read_by_int8_convs(const struct osseg__graph *g, int t) {
  int readers = 0;
  const struct osseg__attr *first = NULL;
  int64_t fz = 0, fs = 0;
  if (t == g->output) return 0;
  for (int ni = 0; ni < g->nnodes; ni++) {
    const struct osseg__node *r = &g->nodes[ni];
    if (r->dead) continue;
    const int conv = !strcmp(r->op, "osseg.UpConv2x") || !strcmp(r->op, "Conv");
    for (int p = 0; p < r->npost; p++)
      if (r->post[p].kind == OSSEG__POST_SUM && r->post[p].arg == t) return 0;
    for (int i = 0; i < r->nin; i++) {
      if (r->in[i] != t) continue;
      int64_t z, sg;
      const struct osseg__attr *qs = conv ? read_grid(r, i, &z, &sg) : NULL;
      if (!qs || (first && (qs->f != first->f || z != fz || sg != fs))) return 0;
      first = qs, fz = z, fs = sg;
      readers++;
    }
  }
  return readers > 0;
}

/* ONNX Runtime quantizes each input of a Concat on its own grid, then the
 * output on another. A channel Concat that will be written in 8 bits (read
 * only by int8 convs of one grid) takes over the quantizations of its
 * FakeQuant inputs (osseg.q_scale_inI, q_zero_inI, q_signed_inI): it reads
 * such an input on its grid, so the input's producer may write it in 8
 * bits, and requantizes it onto its own, Q_cat(DQ_i(q)), as the file does
 * (ops/concat.c). An int8 upconv, which took that concat's place, does the
 * same for its upsampled map (input 0) and a single skip map (input 3;
 * several stay a concat, which takes theirs over): it requantizes them
 * onto its conv grid (ops/conv_upconv_int8.c). */
static int concat_in_8bit(const struct osseg__graph *g, const struct osseg__node *c) {
  if (c->dead || strcmp(c->op, "Concat") || c->nout != 1) return 0;
  const struct osseg__tensor *y = &g->tensors[c->out[0]];
  const int64_t axis = osseg__attr_int(c, "axis", 0);
  int ok = y->rank == 4 && y->dims[0] == 1 && (axis == 1 || axis == -3);
  for (int i = 0; i < c->nin && ok; i++) ok = c->in[i] >= 0 && !g->tensors[c->in[i]].data;
  return ok && read_by_int8_convs(g, c->out[0]);
}

static int int8_upconv(const struct osseg__graph *g, const struct osseg__node *n) {
  (void)g;
  return !n->dead && !strcmp(n->op, "osseg.UpConv2x") && osseg__attr_find(n, "osseg.q_scale");
}

/* Does r read its runtime inputs each on a grid of its own choosing? */
static int takes_input_grids(const struct osseg__graph *g, const struct osseg__node *r) {
  return concat_in_8bit(g, r) || int8_upconv(g, r);
}

static int take_input_quantizations(struct osseg__graph *g, struct osseg_diag *diag) {
  for (int ci = 0; ci < g->nnodes; ci++) {
    struct osseg__node *c = &g->nodes[ci];
    const int upconv = int8_upconv(g, c);
    if (!upconv && !concat_in_8bit(g, c)) continue;
    for (int i = 0; i < c->nin; i++) {
      if (upconv && i != 0 && i != 3) continue; /* (weights and bias) */
      struct osseg__node *f = osseg__producer(g, c->in[i], OSSEG__OP_FAKE_QUANT);
      /* (only when no other node reads f's float output: then f is no
       * longer run; otherwise quantizing that output directly is one pass
       * cheaper than quantizing twice) */
      if (!f || !read_only_by(g, f->out[0], takes_input_grids)) continue;
      char sfx[24];
      snprintf(sfx, sizeof sfx, "_in%d", i);
      int err = take_quantization(g, c, f, sfx, diag);
      if (err < 0) return err;
      if (err) c->in[i] = f->in[0];
    }
  }
  return 0;
}

int osseg__quantize_convs(struct osseg__graph *g, int upconv_min, struct osseg_diag *diag) {
  osseg__count_uses(g);
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead || strcmp(n->op, "Conv") || n->nin < 2) continue;
    const struct osseg__tensor *w = &g->tensors[n->in[1]];
    struct osseg__node *fq = osseg__producer(g, n->in[0], OSSEG__OP_FAKE_QUANT);
    if (!fq || !w->qscale || (w->qcount > 1 && (w->qaxis != 0 || w->qcount != w->dims[0])))
      continue;
    const struct osseg__tensor *s = &g->tensors[fq->in[1]];
    const struct osseg__tensor *z = fq->nin > 2 && fq->in[2] >= 0 ? &g->tensors[fq->in[2]] : NULL;
    size_t ns;
    if (osseg__tensor_elems(g, s, &ns) || ns != 1) continue; /* per-tensor activations only */
    int err = osseg__add_attr_float(n, "osseg.q_scale", (float)osseg__const_f64(s, 0));
    if (!err) err = osseg__add_attr_int(n, "osseg.q_zero", z ? osseg__const_i64(z, 0) : 0);
    if (!err) err = osseg__add_attr_int(n, "osseg.q_signed", z && z->dtype == OSSEG__DT_INT8);
    if (err) return osseg__fail(diag, err, "out of memory");
    n->in[0] = fq->in[0];
  }
  int qerr = quantize_adds(g, diag);
  if (qerr) return qerr;
  osseg__eliminate_dead(g);
  osseg__count_uses(g);
  if (upconv_min >= 0) {
    int err = osseg__fuse_int8_upconvs(g, upconv_min, diag);
    if (err) return err;
    osseg__eliminate_dead(g);
    osseg__count_uses(g);
  }
  if ((qerr = take_input_quantizations(g, diag))) return qerr;
  osseg__eliminate_dead(g);
  osseg__count_uses(g);
  /* Producers of 8-bit outputs, readers before writers (file order is
   * topological), so that a concat, resize or max pool already marked makes
   * its own producer eligible. */
  for (int ci = g->nnodes - 1; ci >= 0; ci--) {
    struct osseg__node *c = &g->nodes[ci];
    if (c->dead || c->nout < 1 || c->out[0] == g->output) continue;
    const struct osseg__tensor *y = &g->tensors[c->out[0]];
    int ok = 1;
    if (!strcmp(c->op, "Concat")) { /* channel concat of runtime maps */
      int64_t axis = osseg__attr_int(c, "axis", 0);
      if (y->rank != 4 || y->dims[0] != 1 || (axis != 1 && axis != -3)) continue;
      for (int i = 0; i < c->nin && ok; i++) ok = c->in[i] >= 0 && !g->tensors[c->in[i]].data;
    } else if (!strcmp(c->op, "Resize") || !strcmp(c->op, "Upsample")) {
      /* nearest: every output value is an input value, so quantizing before
       * or after it gives the same integers */
      int linear, cmode, nmode;
      double sc[4];
      if (y->rank != 4 || c->in[0] < 0 || g->tensors[c->in[0]].data ||
          osseg__resize_parse(g, c, &linear, &cmode, &nmode, sc, NULL) || linear)
        continue;
    } else if (!strcmp(c->op, "MaxPool")) {
      /* the maximum commutes with a non-decreasing quantization */
      if (y->rank != 4 || c->nout != 1 || g->tensors[c->in[0]].data) continue;
    } else if (!strcmp(c->op, OSSEG__OP_QADD)) {
      /* its sum, after the ReLU, rounded on its readers' grid */
    } else if ((!strcmp(c->op, "Conv") || !strcmp(c->op, "osseg.UpConv2x")) &&
               osseg__attr_find(c, "osseg.q_scale")) {
      /* an int8 conv whose epilogue is at most a ReLU (no residual sum, no
       * other activation: they do not commute with the output scale) */
      for (int p = 0; p < c->npost && ok; p++)
        ok = c->post[p].kind == OSSEG__POST_RELU && c->post[p].alpha == 0;
    } else {
      continue;
    }
    /* every reader takes it as 8 bits of one quantization (read_grid) */
    const struct osseg__node *first = NULL;
    float fs = 0;
    int64_t fz = 0, fsg = 0;
    int readers = 0;
    for (int ni = 0; ni < g->nnodes && ok; ni++) {
      const struct osseg__node *r = &g->nodes[ni];
      if (r->dead) continue;
      for (int i = 0; i < r->nin && ok; i++) {
        if (r->in[i] != c->out[0]) continue;
        int64_t z, sg;
        const struct osseg__attr *qs = read_grid(r, i, &z, &sg);
        ok = qs != NULL;
        if (!ok) break;
        if (first) ok = qs->f == fs && z == fz && sg == fsg;
        else first = r, fs = qs->f, fz = z, fsg = sg;
        readers++;
      }
      for (int p = 0; p < r->npost && ok; p++)
        ok = !(r->post[p].kind == OSSEG__POST_SUM && r->post[p].arg == c->out[0]);
    }
    if (!ok || !readers) continue;
    int err = osseg__add_attr_float(c, "osseg.q_out_scale", fs);
    if (!err) err = osseg__add_attr_int(c, "osseg.q_out_zero", fz);
    if (!err) err = osseg__add_attr_int(c, "osseg.q_out_signed", fsg);
    if (err) return osseg__fail(diag, err, "out of memory");
  }
  return 0;
}
