/* Execution: bind step arguments to arena memory once, then run the steps
 * in order on every call. */
#include "engine_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int osseg__bind(struct osseg_model *m, struct osseg_diag *diag) {
  m->arena = osseg__aligned_alloc(4096, m->arena_bytes ? m->arena_bytes : 1);
  if (!m->arena)
    return osseg__fail(diag, OSSEG_ENOMEM, "cannot allocate the %zu-byte activation arena",
                       m->arena_bytes);
  if (m->scratch_bytes) {
    m->scratch = osseg__aligned_alloc(4096, m->scratch_bytes);
    if (!m->scratch) return osseg__fail(diag, OSSEG_ENOMEM, "cannot allocate the scratchpad");
    memset(m->scratch, 0, m->scratch_bytes);
  }

  for (int si = 0; si < m->nsteps; si++) {
    struct osseg__step *s = &m->steps[si];
    if (s->kind != OSSEG__STEP_PRIM) continue;
    for (int a = 0; a < s->nargs; a++) {
      int t = s->arg_tensor[a];
      if (t != -1) {
        void *ptr = t >= 0 ? (char *)osseg__tensor_ptr(m, t) + s->arg_off[a] : DNNL_MEMORY_NONE;
        dnnl_status_t st = dnnl_memory_create(&s->arg_mem[a], &s->arg_md[a], m->eng, ptr);
        if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "memory creation", NULL);
        if (t == -2) m->user_in = s->arg_mem[a];
        if (t == -3) m->user_out = s->arg_mem[a];
      }
      s->args[a].arg = s->arg_kind[a];
      s->args[a].memory = s->arg_mem[a];
    }
    if (s->scratch_md.ndims) {
      dnnl_memory_t sm;
      dnnl_status_t st = dnnl_memory_create(&sm, &s->scratch_md, m->eng, m->scratch);
      if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "scratchpad memory", NULL);
      s->arg_kind[s->nargs] = DNNL_ARG_SCRATCHPAD;
      s->arg_tensor[s->nargs] = -4; /* owned by the step */
      s->arg_mem[s->nargs] = sm;
      s->args[s->nargs].arg = DNNL_ARG_SCRATCHPAD;
      s->args[s->nargs].memory = sm;
      s->nargs++;
    }
  }
  return 0;
}

/* Steps executed by every run of every model (osseg_engine_steps). */
static _Atomic uint64_t steps_executed;

uint64_t osseg_engine_steps(void) {
  return atomic_load_explicit(&steps_executed, memory_order_relaxed);
}

static double now_ms(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static const char *step_kind_name(int k) {
  switch (k) {
    case OSSEG__STEP_PRIM: return "prim";
    case OSSEG__STEP_GATHER2D: return "gather2d";
    case OSSEG__STEP_LINEAR2D: return "linear2d";
    case OSSEG__STEP_CONCAT_C: return "concat_c";
    case OSSEG__STEP_UPCONV_SCATTER: return "upconv_scatter";
    default: return "custom";
  }
}

/* The option `profile`: one table per inference through the log at
 * OSSEG_LOG_INFO, wall and process CPU milliseconds per step (the stream is
 * waited on after every step, so the numbers are per step; CPU time
 * includes OpenMP spin-waiting, which is what the shared machine charges
 * us for). Off costs one branch. */
static int profile_enabled(const struct osseg_model *m) {
  return m->opt.profile && osseg__log_on(&m->opt.log, OSSEG_LOG_INFO);
}

/* Profile detail of a primitive step: oneDNN's implementation name (a "ref"
 * or "gemm" here means a slow fallback) and, for convolutions, the GFLOP it
 * computes (2 x output elements x input channels per group x kernel area). */
static void prim_profile(const struct osseg__step *s, const char **impl, double *gflop) {
  const_dnnl_primitive_desc_t pd = NULL;
  *impl = "-";
  *gflop = 0;
  if (s->kind != OSSEG__STEP_PRIM || dnnl_primitive_get_primitive_desc(s->prim, &pd) != dnnl_success)
    return;
  const char *str = NULL;
  if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &str) == dnnl_success && str)
    *impl = str;
  dnnl_primitive_kind_t kind;
  if (dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &kind) != dnnl_success ||
      kind != dnnl_convolution)
    return;
  const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *d = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
  if (!w || !d || d->ndims < 2 || d->dims[1] <= 0) return;
  double wn = 1, dn = 1;
  for (int i = 0; i < w->ndims; i++) wn *= (double)w->dims[i];
  for (int i = 0; i < d->ndims; i++) dn *= (double)d->dims[i];
  *gflop = 2.0 * dn * (wn / (double)d->dims[1]) * 1e-9;
}

/* The run was interrupted before step si (of nsteps): leaves the model
 * ready for the next run and reports why. */
static int stopped(struct osseg_model *m, int code, int si, struct osseg_diag *diag) {
  dnnl_stream_wait(m->stream);
  return osseg__fail(diag, code, "%s after %d of %d steps",
                     code == OSSEG_ECANCELED ? "canceled" : "deadline exceeded", si, m->nsteps);
}

static int execute(struct osseg_model *m, const float *input, float *output,
                   struct osseg_diag *diag) {
  const int prof = profile_enabled(m);
  const struct osseg_log *log = &m->opt.log;
  double tw0 = 0, tc0 = 0, sum_w = 0, sum_c = 0;
  if (dnnl_memory_set_data_handle(m->user_in, (void *)input) != dnnl_success ||
      dnnl_memory_set_data_handle(m->user_out, output) != dnnl_success)
    return osseg__fail(diag, OSSEG_EBACKEND, "binding input/output");
  if (prof) osseg__log(log, OSSEG_LOG_INFO, "step kind node op wall_ms cpu_ms gflop gflop/s impl");
  for (int si = 0; si < m->nsteps; si++) {
    struct osseg__step *s = &m->steps[si];
    dnnl_status_t st = dnnl_success;
    /* Between every two steps (and before the first): the interruption
     * latency is at most one step, and own loops check inside too. */
    int code = osseg__should_stop(m);
    if (code) return stopped(m, code, si, diag);
    if (prof) {
      tw0 = now_ms(CLOCK_MONOTONIC);
      tc0 = now_ms(CLOCK_PROCESS_CPUTIME_ID);
    }
    if (s->kind == OSSEG__STEP_PRIM)
      st = dnnl_primitive_execute(s->prim, m->stream, s->nargs, s->args);
    else /* own loops */
      st = s->run(m, s);
    if (prof) {
      if (st == dnnl_success) st = dnnl_stream_wait(m->stream);
      double w = now_ms(CLOCK_MONOTONIC) - tw0, c = now_ms(CLOCK_PROCESS_CPUTIME_ID) - tc0;
      const struct osseg__node *n = s->node >= 0 ? &m->g.nodes[s->node] : NULL;
      const char *impl;
      double gf;
      prim_profile(s, &impl, &gf);
      osseg__log(log, OSSEG_LOG_INFO, "%4d %-14s %-48s %-12s %9.3f %9.3f %7.3f %6.0f %s", si,
                 step_kind_name(s->kind), n ? n->name : "-", n ? n->op : "-", w, c, gf,
                 gf > 0 && w > 0 ? gf / (w * 1e-3) : 0.0, impl);
      sum_w += w;
      sum_c += c;
    }
    if (st != dnnl_success) {
      const struct osseg__node *n = s->node >= 0 ? &m->g.nodes[s->node] : NULL;
      return osseg__dnnl_fail(diag, st, "execution", n);
    }
    /* an own loop that saw the run control left its output incomplete */
    code = atomic_load_explicit(&m->stop, memory_order_relaxed);
    if (code) return stopped(m, code, si, diag);
    atomic_fetch_add_explicit(&steps_executed, 1, memory_order_relaxed);
    if (m->step_hook) m->step_hook(m->step_hook_ctx, si);
  }
  dnnl_status_t st = dnnl_stream_wait(m->stream);
  if (st != dnnl_success) return osseg__dnnl_fail(diag, st, "stream wait", NULL);
  if (prof)
    osseg__log(log, OSSEG_LOG_INFO, "total %d steps wall %.3f ms cpu %.3f ms", m->nsteps, sum_w,
               sum_c);
  return 0;
}

int osseg__execute(struct osseg_model *m, const float *input, float *output,
                   const struct osseg_run_control *ctl, struct osseg_diag *diag) {
  m->ctl = ctl && (ctl->cancel || ctl->deadline_ns) ? ctl : NULL;
  atomic_store(&m->stop, 0);
  int err = execute(m, input, output, diag);
  m->ctl = NULL;
  atomic_store(&m->stop, 0);
  return err;
}
