/* osseg.Observe (made by passes/insert_observers.c for the options'
 * observer, e.g. the calibration of osseg quantize): the output is the
 * input's bytes; a step hands the tensor, in plain NCHW float32, to the
 * observer's callback during every run. */
#include "build.h"

struct observe_step {
  int x; /* the tensor in plain row-major layout */
  size_t index, elems;
};

static dnnl_status_t run_observe(struct osseg_model *m, struct osseg__step *s) {
  const struct observe_step *p = s->priv;
  m->opt.observe.fn(m->opt.observe.ctx, p->index, osseg__tensor_ptr(m, p->x), p->elems);
  return dnnl_success;
}

static int compile_observe(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  const int ni = (int)(n - g->nodes), x = n->in[0];
  if (g->tensors[x].data || m->act_dt != dnnl_f32)
    return OSSEG__FAIL(OSSEG_EUNSUPPORTED, OSSEG__NODEFMT "observes a constant or non-fp32 tensor",
                       OSSEG__NODEARG);
  struct observe_step *p = osseg__model_alloc(m, sizeof *p);
  if (!p) return OSSEG__FAIL(OSSEG_ENOMEM, "out of memory");
  int err = osseg__tensor_elems(g, &g->tensors[x], &p->elems);
  if (err) return OSSEG__FAIL(err, OSSEG__NODEFMT "size", OSSEG__NODEARG);
  p->index = (size_t)osseg__attr_int(n, "index", 0);
  p->x = osseg__plain_in(m, ni, x, diag);
  if (p->x < 0) return p->x;
  struct osseg__step *s = osseg__add_step(m, OSSEG__STEP_CUSTOM, ni);
  if (!s) return OSSEG__FAIL(OSSEG_ENOMEM, "out of memory");
  osseg__step_own(s, "own: observe", 0, p->x, -1);
  s->run = run_observe;
  s->priv = p;
  s->uses[s->nuses++] = p->x;
  s->uses[s->nuses++] = n->out[0];
  osseg__alias(m, n->out[0], x);
  return 0;
}

const struct osseg__op osseg__ops_observe[] = {
    {"osseg.Observe", 0, 0, OSSEG__OP_INTERNAL, OSSEG__PREC_FP32, NULL, NULL, compile_observe},
    {0},
};
