/* Compilation driver: every live node, in file order, through its op
 * table entry, at the precision the precision plan gives it; then the
 * reorders from the caller's NCHW input and to its output. */
#include "engine_internal.h"

#include <string.h>

static int compile_node_dt(struct osseg_model *m, int ni, struct osseg_diag *diag) {
  struct osseg__node *n = &m->g.nodes[ni];
  const char *op = n->op;
  const struct osseg__op *def = osseg__op_lookup(op);
  for (int i = 0; i < n->nout; i++) {
    if (i > 0 && m->g.tensors[n->out[i]].uses == 0) continue;
    if (i > 0 && def && (def->flags & OSSEG__OP_ALL_OUTPUTS)) continue; /* laid out by the op */
    if (i > 0) return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s' (%s): second output used",
                                  n->name, op);
    int err = osseg__tensor_md(m, n->out[i], i == 0 ? osseg__out_dt(m, n) : m->act_dt, NULL);
    if (err) return osseg__fail(diag, err, "node '%s' (%s): output layout", n->name, op);
  }
  for (int i = 0; i < n->nin; i++) {
    int t = n->in[i];
    if (t >= 0 && !m->g.tensors[t].data && m->md[t].ndims == 0)
      return osseg__fail(diag, OSSEG_EINTERNAL, "node '%s': input '%s' not computed", n->name,
                         m->g.tensors[t].name);
  }
  if (!def || !def->compile)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, "node '%s': op %s (opset %d) has no kernel",
                       n->name, op, m->g.opset);
  return def->compile(m, n, diag);
}

/* Every op compiler builds its outputs, weights and temporaries in
 * m->act_dt: it is switched to the node's precision for the node. */
static int compile_node(struct osseg_model *m, int ni, struct osseg_diag *diag) {
  dnnl_data_type_t saved = m->act_dt, dt = osseg__node_dt(m, &m->g.nodes[ni]);
  int err = osseg__convert_inputs(m, ni, dt, diag);
  if (err) return err;
  m->act_dt = dt;
  err = compile_node_dt(m, ni, diag);
  m->act_dt = saved;
  return err;
}

int osseg__compile(struct osseg_model *m, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  dnnl_status_t st = dnnl_engine_create(&m->eng, dnnl_cpu, 0);
  if (st == dnnl_success) st = dnnl_stream_create(&m->stream, m->eng, dnnl_stream_default_flags);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "engine creation", NULL);
  m->act_dt = m->opt.precision == OSSEG_PRECISION_BF16 || m->opt.precision == OSSEG_PRECISION_BF16_MIXED
                  ? dnnl_bf16
                  : dnnl_f32; /* (int8: fp32 between the int8 convs) */
  /* Temporaries added while compiling a node: at most one conversion per
   * input (compile_node) plus one per input and two more in the op itself
   * (concat, conv/upconv, reshape, resize, attention). Reserved up front. */
  int64_t budget = 16;
  for (int ni = 0; ni < g->nnodes; ni++)
    if (!g->nodes[ni].dead) budget += 2 * (int64_t)g->nodes[ni].nin + 4;
  if (budget > (1 << 24) - (int64_t)g->ntensors)
    return osseg__fail(diag, OSSEG_ELIMIT, "graph too large (%d nodes)", g->nnodes);
  int err = osseg__graph_reserve_tensors(g, (int)budget);
  if (err) return osseg__fail(diag, err, "out of memory");
  m->tensor_cap = g->captensors;
  m->md = osseg__calloc((size_t)m->tensor_cap, sizeof *m->md);
  m->aliased = osseg__calloc((size_t)m->tensor_cap, 1);
  if (!m->md || !m->aliased) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  for (int t = 0; t < g->ntensors; t++) g->tensors[t].storage = t;
  /* Input: caller's NCHW float32 -> internal layout. */
  int in = g->input;
  err = osseg__tensor_md(m, in, dnnl_f32, NULL); /* fp32 in every precision (node_dt) */
  if (err) return osseg__fail(diag, err, "input layout");
  dnnl_memory_desc_t umd;
  dnnl_dims_t d;
  osseg__set_dims(d, g->tensors[in].dims, 4);
  dnnl_memory_desc_init_by_tag(&umd, 4, d, dnnl_f32, dnnl_abcd);
  if ((err = osseg__reorder_step(m, -1, -2, &umd, in, &m->md[in], diag))) return err;
  for (int ni = 0; ni < g->nnodes; ni++) {
    if (g->nodes[ni].dead) continue;
    if ((err = compile_node(m, ni, diag))) return err;
  }
  int out = g->output;
  if (m->md[out].ndims == 0) return osseg__fail(diag, OSSEG_EINTERNAL, "output not computed");
  const struct osseg__tensor *ot = &g->tensors[out];
  dnnl_memory_desc_t omd;
  static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd,
                                            dnnl_abcde, dnnl_abcdef};
  if (ot->rank > 6) return osseg__fail(diag, OSSEG_EUNSUPPORTED, "output rank %d", ot->rank);
  dnnl_dims_t od;
  osseg__set_dims(od, ot->dims, ot->rank ? ot->rank : 1);
  if (!ot->rank) od[0] = 1;
  dnnl_memory_desc_init_by_tag(&omd, ot->rank ? ot->rank : 1, od, dnnl_f32, plain[ot->rank]);
  if ((err = osseg__reorder_step(m, -1, out, &m->md[out], -3, &omd, diag))) return err;
  return 0;
}
