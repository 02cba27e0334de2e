/* The engine's driver: the load pipeline's stages (parse, shape inference
 * and folding, graph passes, precision planning, compilation, memory
 * planning, binding) and execution. Op files (ops/) never include it: they
 * see build.h and ir.h only, and the driver reaches them through the op
 * table. */
#ifndef OSSEG_ENGINE_INTERNAL_H
#define OSSEG_ENGINE_INTERNAL_H

#include <pthread.h>

#include "build.h"

/* cpu.c: the part of a oneDNN implementation name
 * (dnnl_query_impl_info_str) that marks a bf16 kernel on this CPU's best
 * native bf16 unit: "amx" on AMX machines, "avx512_core_bf16" with
 * AVX512_BF16 alone; NULL when bf16 has no native support here (oneDNN
 * emulates it). */
const char *osseg__bf16_kernel_tag(void);
/* Whether oneDNN runs int8 convolutions on dot-product units here
 * (AVX512_VNNI, AVX-VNNI, AMX). */
int osseg__int8_native(void);

/* loader.c: ONNX bytes -> IR. */
int osseg__load_graph(struct osseg__graph *g, const void *data, size_t size,
                      const struct osseg_engine_options *o, struct osseg_diag *diag);

/* One op type of a file and how often its main graph uses it. */
struct osseg__op_use {
  char domain[64], op[64]; /* (cut to fit; "" = the ONNX domain) */
  int count;
};
int osseg__load_op_list(const void *data, size_t size, uint64_t max_bytes, int *opset,
                        struct osseg__op_use **uses, int *nuses, struct osseg_diag *diag);

/* op_table.c: the entry of op `name` (ONNX or internal), NULL if none; the
 * whole table for listings. */
const struct osseg__op *osseg__op_lookup(const char *name);
int osseg__op_table_size(void);
const struct osseg__op *osseg__op_table_at(int i, const char **family);

/* infer.c: checks every node against the op table, infers static shapes
 * node by node and folds nodes whose inputs are all constant. */
int osseg__infer_and_fold(struct osseg__graph *g, struct osseg_diag *diag);

/* passes/: graph rewrites between shape inference and compilation. */
#include "passes/passes.h"

/* precision.c: the type node n computes in (m->act_dt is the model's:
 * f32, or bf16 under both bf16 modes) and the type of its first output;
 * converts runtime inputs stored in another type into temporaries. */
dnnl_data_type_t osseg__node_dt(const struct osseg_model *m, const struct osseg__node *n);
dnnl_data_type_t osseg__out_dt(const struct osseg_model *m, const struct osseg__node *n);
int osseg__convert_inputs(struct osseg_model *m, int ni, dnnl_data_type_t dt,
                          struct osseg_diag *diag);

/* compile.c: every live node's steps, with the I/O reorders. */
int osseg__compile(struct osseg_model *m, struct osseg_diag *diag);

/* plan.c: liveness-based arena offsets for all runtime tensors. */
int osseg__plan(struct osseg_model *m, struct osseg_diag *diag);

/* execute.c: binds the steps' arguments to the arena; runs the steps on the
 * calling thread (the executor's). */
int osseg__bind(struct osseg_model *m, struct osseg_diag *diag);
int osseg__execute(struct osseg_model *m, const float *input, float *output,
                   const struct osseg_run_control *ctl, struct osseg_diag *diag);

/* executor.c: queues the run for the executor thread and waits for it. */
int osseg__executor_run(struct osseg_model *m, const float *input, float *output,
                        const struct osseg_run_control *ctl, struct osseg_diag *diag);

#endif
