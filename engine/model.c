/* Public API: options, load pipeline (parse -> infer/fold -> fuse -> compile
 * -> plan -> bind), introspection, run, free. */
#include "engine_internal.h"
#include "engine_test_hooks.h"
#include "passes/passes.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

const char *osseg_precision_name(enum osseg_precision p) {
  return p == OSSEG_PRECISION_BF16         ? "bf16"
         : p == OSSEG_PRECISION_BF16_MIXED ? "bf16-mixed"
         : p == OSSEG_PRECISION_INT8       ? "int8"
         : p == OSSEG_PRECISION_AUTO       ? "auto"
                                           : "fp32";
}



int osseg_precision_parse(const char *s, enum osseg_precision *out) {
  if (!s) return OSSEG_EINVAL;
  if (!strcmp(s, "fp32") || !strcmp(s, "f32") || !strcmp(s, "float32")) {
    *out = OSSEG_PRECISION_FP32;
    return 0;
  }
  if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) {
    *out = OSSEG_PRECISION_BF16;
    return 0;
  }
  if (!strcmp(s, "bf16-mixed")) {
    *out = OSSEG_PRECISION_BF16_MIXED;
    return 0;
  }
  if (!strcmp(s, "int8")) {
    *out = OSSEG_PRECISION_INT8;
    return 0;
  }
  if (!strcmp(s, "auto")) {
    *out = OSSEG_PRECISION_AUTO;
    return 0;
  }
  return OSSEG_EINVAL;
}

void osseg_engine_options_default(struct osseg_engine_options *o) {
  memset(o, 0, sizeof *o);
  o->precision = OSSEG_PRECISION_FP32;
  o->threads = 0;
  o->input_size = 0;
  o->max_model_bytes = 2ull << 30;
  o->max_tensor_bytes = 4ull << 30;
  o->bf16_tail = OSSEG_BF16_TAIL_DEFAULT;
}

void osseg_model_free(struct osseg_model *m) {
  if (!m) return;
  for (int si = 0; si < m->nsteps; si++) {
    struct osseg__step *s = &m->steps[si];
    if (s->prim) dnnl_primitive_destroy(s->prim);
    if (s->destroy) s->destroy(s);
    for (int a = 0; a < s->nargs; a++)
      if (s->arg_tensor[a] != -1 && s->arg_mem[a]) dnnl_memory_destroy(s->arg_mem[a]);
  }
  osseg__free(m->steps);
  for (int i = 0; i < m->nowned; i++) {
    if (m->owned_mem[i]) dnnl_memory_destroy(m->owned_mem[i]);
    osseg__free(m->owned_buf[i]);
  }
  osseg__free(m->owned_mem);
  osseg__free(m->owned_buf);
  osseg__free(m->md);
  osseg__free(m->aliased);
  osseg__free(m->arena);
  osseg__free(m->scratch);
  if (m->stream) dnnl_stream_destroy(m->stream);
  if (m->eng) dnnl_engine_destroy(m->eng);
  osseg__graph_free(&m->g);
  osseg__free(m);
}

/* Drops constant data no step needs any more (weights live in oneDNN
 * layouts now) to lower resident memory. */
static void drop_constants(struct osseg_model *m) {
  struct osseg__graph *g = &m->g;
  for (int t = 0; t < g->ntensors; t++) {
    if (!g->tensors[t].data) continue;
    osseg__free(g->tensors[t].data);
    g->tensors[t].data = NULL;
    g->tensors[t].nbytes = 0;
  }
}

/* OSSEG_PRECISION_AUTO: int8 for a QDQ model (QuantizeLinear or
 * DequantizeLinear in its graph) where oneDNN's ISA has int8 dot products
 * (AVX512_VNNI, AVX-VNNI or AMX), bf16 where bf16 is native, else fp32.
 * (A file that cannot be read gets fp32; the load then reports why.) */
static enum osseg_precision auto_precision(const void *data, size_t size) {
  struct osseg__op_use *uses = NULL;
  int n = 0, opset, qdq = 0;
  if (!osseg__load_op_list(data, size, 0, &opset, &uses, &n, NULL)) {
    for (int i = 0; i < n; i++)
      qdq |= !uses[i].domain[0] &&
             (!strcmp(uses[i].op, "QuantizeLinear") || !strcmp(uses[i].op, "DequantizeLinear"));
    osseg__free(uses);
  }
  if (qdq && osseg__int8_native()) return OSSEG_PRECISION_INT8;
  if (osseg_engine_bf16_native(NULL)) return OSSEG_PRECISION_BF16;
  return OSSEG_PRECISION_FP32;
}

int osseg_model_load_buffer(struct osseg_model **out, const void *data, size_t size,
                            const struct osseg_engine_options *o, struct osseg_diag *diag) {
  struct osseg_engine_options def;
  if (!out || (!data && size)) return osseg__fail(diag, OSSEG_EINVAL, "invalid arguments");
  *out = NULL;
  if (!o) {
    osseg_engine_options_default(&def);
    o = &def;
  }
  if (o->threads < 0 || o->threads > 4096 || o->input_size < 0 || o->input_size > 65536 ||
      (o->precision != OSSEG_PRECISION_FP32 && o->precision != OSSEG_PRECISION_BF16 &&
       o->precision != OSSEG_PRECISION_BF16_MIXED && o->precision != OSSEG_PRECISION_INT8 &&
       o->precision != OSSEG_PRECISION_AUTO) ||
      o->bf16_tail < -1 || o->bf16_tail > 30 || o->int8_upconv_min < -1)
    return osseg__fail(diag, OSSEG_EINVAL, "invalid engine options");
  struct osseg_model *m = osseg__calloc(1, sizeof *m);
  if (!m) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  m->opt = *o;
  if (o->precision == OSSEG_PRECISION_AUTO) m->opt.precision = auto_precision(data, size);
  o = &m->opt;
  int err = 0;
  /* Without dot-product units oneDNN's int8 convs multiply u8 x s8 pairs
   * into saturating 16-bit sums (vpmaddubsw): measured on the int8 demo
   * model with oneDNN capped at avx512_core, its masks agree with fp32's at
   * a Dice of 0.91 instead of 0.9975. A wrong answer is worse than a slow
   * one: refused, where fp32 computes the same quantization in float. */
  if (o->precision == OSSEG_PRECISION_INT8 && !osseg__int8_native())
    err = osseg__fail(diag, OSSEG_EUNSUPPORTED,
                      "precision int8 needs int8 dot-product units (AVX512_VNNI, AVX-VNNI or "
                      "AMX), which this CPU lacks (oneDNN's int8 sums saturate without them); "
                      "run the model in fp32, which computes its quantization in float");
  if (!err) err = osseg__load_graph(&m->g, data, size, o, diag);
  if (!err) err = osseg__infer_and_fold(&m->g, diag);
  if (!err && o->observe.count && o->precision != OSSEG_PRECISION_FP32)
    err = osseg__fail(diag, OSSEG_EINVAL, "observing tensors needs precision fp32");
  if (!err) err = osseg__insert_observers(&m->g, &o->observe, diag);
  const int int8 = o->precision == OSSEG_PRECISION_INT8;
  const int umin = o->int8_upconv_min < 0   ? -1
                   : o->int8_upconv_min ? o->int8_upconv_min
                                        : OSSEG_INT8_UPCONV_MIN_DEFAULT;
  if (!err) err = osseg__passes_run(&m->g, !o->no_upconv, int8, umin, diag);
  if (!err && int8) { /* int8 needs a model that says how to quantize */
    int q = 0;
    for (int i = 0; i < m->g.nnodes; i++)
      q |= !m->g.nodes[i].dead && osseg__attr_find(&m->g.nodes[i], "osseg.q_scale") != NULL;
    if (!q)
      err = osseg__fail(diag, OSSEG_EUNSUPPORTED, "precision int8 needs a quantized (QDQ) model: "
                        "no convolution has quantized inputs and int8 weights");
  }
  /* oneDNN sizes a primitive's thread grid when it is created (brgconv
   * runs `threads` ways whatever the team later is): create them for the
   * model's thread count, on this thread's team, restored after */
  const int team = omp_get_max_threads();
  if (o->threads > 0 && o->threads != team) omp_set_num_threads(o->threads);
  if (!err) err = osseg__compile(m, diag);
  if (o->threads > 0 && o->threads != team) omp_set_num_threads(team);
  if (!err) err = osseg__plan(m, diag);
  if (!err) err = osseg__bind(m, diag);
  if (err) {
    osseg_model_free(m);
    return err;
  }
  struct osseg__graph *g = &m->g;
  const struct osseg__tensor *it = &g->tensors[g->input], *ot = &g->tensors[g->output];
  m->in_info.name = it->name;
  m->in_info.rank = it->rank;
  memcpy(m->in_info.dims, it->dims, sizeof it->dims);
  m->out_info.name = ot->name;
  m->out_info.rank = ot->rank;
  memcpy(m->out_info.dims, ot->dims, sizeof ot->dims);
  osseg__dims_elems(it->dims, it->rank, &m->in_elems);
  osseg__dims_elems(ot->dims, ot->rank, &m->out_elems);
  drop_constants(m);
  /* Touch every arena page now (after the constants are gone, so the peak
   * stays low) so the first inference does not pay the page faults. */
  memset(m->arena, 0, m->arena_bytes);
  *out = m;
  return 0;
}

int osseg_model_load(struct osseg_model **out, const char *path,
                     const struct osseg_engine_options *o, struct osseg_diag *diag) {
  struct osseg_engine_options def;
  if (!out || !path) return osseg__fail(diag, OSSEG_EINVAL, "invalid arguments");
  *out = NULL;
  if (!o) {
    osseg_engine_options_default(&def);
    o = &def;
  }
  void *map;
  size_t size;
  int err = osseg__map_file(path, o->max_model_bytes, &map, &size, diag);
  if (err) return err;
  err = osseg_model_load_buffer(out, map, size, o, diag);
  osseg__unmap_file(map, size);
  if (err && diag) {
    /* Messages from the buffer loader know no file; with several models
     * (an ensemble) the user must see which one is bad. Shift the message
     * right and put "PATH: " in front (a long one is cut at its end). */
    char *msg = diag->message;
    const size_t cap = sizeof diag->message;
    if (!msg[0]) snprintf(msg, cap, "%s", osseg_strerror(err));
    size_t pl = strlen(path), ml = strlen(msg);
    if (pl > cap / 2) pl = cap / 2;
    if (pl + 2 + ml > cap - 1) ml = cap - 1 - pl - 2;
    memmove(msg + pl + 2, msg, ml);
    memcpy(msg, path, pl);
    memcpy(msg + pl, ": ", 2);
    msg[pl + 2 + ml] = '\0';
  }
  return err;
}

const struct osseg_tensor_info *osseg_model_input(const struct osseg_model *m) { return &m->in_info; }
const struct osseg_tensor_info *osseg_model_output(const struct osseg_model *m) { return &m->out_info; }
size_t osseg_model_input_elems(const struct osseg_model *m) { return m->in_elems; }
size_t osseg_model_output_elems(const struct osseg_model *m) { return m->out_elems; }

const char *osseg_model_metadata(const struct osseg_model *m, const char *key) {
  for (int i = 0; i < m->g.nmeta; i++)
    if (!strcmp(m->g.meta[i].key, key)) return m->g.meta[i].value;
  return NULL;
}

void osseg_model_get_stats(const struct osseg_model *m, struct osseg_model_stats *st) {
  memset(st, 0, sizeof *st);
  st->params = m->params;
  st->flops = m->flops;
  st->arena_bytes = m->arena_bytes;
  st->weight_bytes = m->weight_bytes;
  st->scratch_bytes = m->scratch_bytes;
  st->nodes_onnx = m->g.nodes_onnx;
  st->steps = m->nsteps;
  st->slow_steps = m->slow_steps;
  st->winograd_convs = m->winograd_convs;
  st->int8_convs = m->int8_convs;
  st->precision = m->opt.precision;
  /* 0 = OpenMP's default: all online cores unless OMP_NUM_THREADS says less */
  st->threads = m->opt.threads > 0 ? m->opt.threads : omp_get_max_threads();
  st->opset = m->g.opset;
}

int osseg_model_op_count(const struct osseg_model *m) { return m->g.nophist; }

void osseg_model_op_at(const struct osseg_model *m, int i, const char **op, int *count) {
  /* i-th by descending count (ties by name), computed by selection: small n */
  int n = m->g.nophist;
  int chosen = -1;
  for (int rank = 0; rank <= i; rank++) {
    int best = -1;
    for (int k = 0; k < n; k++) {
      /* skip ones ranked earlier: strictly "greater" in (count desc, name asc) than prev */
      if (chosen >= 0) {
        int ck = m->g.ophist_count[k], cc = m->g.ophist_count[chosen];
        if (ck > cc || (ck == cc && strcmp(m->g.ophist_name[k], m->g.ophist_name[chosen]) <= 0))
          continue;
      }
      if (best < 0 || m->g.ophist_count[k] > m->g.ophist_count[best] ||
          (m->g.ophist_count[k] == m->g.ophist_count[best] &&
           strcmp(m->g.ophist_name[k], m->g.ophist_name[best]) < 0))
        best = k;
    }
    chosen = best;
  }
  *op = chosen >= 0 ? m->g.ophist_name[chosen] : "";
  *count = chosen >= 0 ? m->g.ophist_count[chosen] : 0;
}

int osseg_model_run_ctl(struct osseg_model *m, const float *input, float *output,
                        const struct osseg_run_control *ctl, struct osseg_diag *diag) {
  if (!m || !input || !output) return osseg__fail(diag, OSSEG_EINVAL, "invalid arguments");
  return osseg__executor_run(m, input, output, ctl, diag);
}

int osseg_model_run(struct osseg_model *m, const float *input, float *output,
                    struct osseg_diag *diag) {
  return osseg_model_run_ctl(m, input, output, NULL, diag);
}

void osseg__model_set_step_hook(struct osseg_model *m, void (*fn)(void *ctx, int step), void *ctx) {
  m->step_hook = fn;
  m->step_hook_ctx = ctx;
}
