/* The compiled steps as the public API describes them (osseg_step_info):
 * which node, oneDNN primitive or own loop, implementation, data types and
 * whether it is a slow fallback. Everything was recorded while compiling
 * (osseg__finish_prim, osseg__step_own), so a query needs no primitive
 * desc and does not allocate. */
#include "engine_internal.h"

#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

static const char *dt_name(dnnl_data_type_t dt) {
  return dt == dnnl_data_type_undef ? NULL : dnnl_dt2str(dt);
}

/* The type of an own loop's tensor t (-1: none; a tensor whose runtime
 * layout was never made has none). */
static dnnl_data_type_t tensor_dt(const struct osseg_model *m, int t) {
  if (t < 0 || t >= m->g.ntensors || m->md[t].ndims == 0) return dnnl_data_type_undef;
  return m->md[t].data_type;
}

static int is_8bit(dnnl_data_type_t dt) { return dt == dnnl_u8 || dt == dnnl_s8; }

int osseg_model_step_count(const struct osseg_model *m) { return m ? m->nsteps : 0; }

int osseg_model_step_info(const struct osseg_model *m, int i, struct osseg_step_info *out) {
  if (!m || !out || i < 0 || i >= m->nsteps) return OSSEG_EINVAL;
  const struct osseg__step *s = &m->steps[i];
  const struct osseg__node *n = s->node >= 0 ? &m->g.nodes[s->node] : NULL;
  dnnl_data_type_t src = s->src_dt, wei = s->wei_dt, dst = s->dst_dt;
  const int prim = s->kind == OSSEG__STEP_PRIM;
  if (!prim) {
    src = tensor_dt(m, s->info_in);
    wei = dnnl_data_type_undef;
    dst = tensor_dt(m, s->info_out);
  }
  memset(out, 0, sizeof *out);
  out->node = n ? n->name : "";
  out->op = n ? n->op : prim ? dnnl_prim_kind2str(s->prim_kind) : "-";
  out->kind = prim ? dnnl_prim_kind2str(s->prim_kind) : "own";
  /* (every own-loop site describes itself; "own" is a safety net) */
  out->impl = s->impl ? s->impl : "own";
  out->src_type = dt_name(src);
  out->weights_type = dt_name(wei);
  out->dst_type = dt_name(dst);
  out->precision = is_8bit(src) || is_8bit(wei) || is_8bit(dst)                       ? "int8"
                   : src == dnnl_bf16 || wei == dnnl_bf16 || dst == dnnl_bf16 ? "bf16"
                                                                                  : "fp32";
  out->conv = s->conv;
  out->slow = s->slow;
  return 0;
}
