/* The op table: every op the engine knows, family by family (one family
 * per file of ops/). Lookups by name; the listing behind
 * `osseg model-info --ops`. */
#include "engine_internal.h"

#include <string.h>

extern const struct osseg__op osseg__ops_conv[], osseg__ops_pool[], osseg__ops_eltwise[],
    osseg__ops_binary[], osseg__ops_concat[], osseg__ops_resize_pad[], osseg__ops_resize_fused[],
    osseg__ops_reshape[], osseg__ops_slice[], osseg__ops_shape_arith[], osseg__ops_matmul[],
    osseg__ops_norm[], osseg__ops_softmax[], osseg__ops_attention[], osseg__ops_quant[],
    osseg__ops_add_int8[], osseg__ops_observe[];

static const struct family {
  const char *name; /* its file: ops/NAME.c */
  const struct osseg__op *ops; /* terminated by an entry without a name */
} families[] = {
    {"conv", osseg__ops_conv},
    {"pool", osseg__ops_pool},
    {"eltwise", osseg__ops_eltwise},
    {"binary", osseg__ops_binary},
    {"concat", osseg__ops_concat},
    {"resize_pad", osseg__ops_resize_pad},
    {"resize_fused", osseg__ops_resize_fused},
    {"reshape", osseg__ops_reshape},
    {"slice", osseg__ops_slice},
    {"shape_arith", osseg__ops_shape_arith},
    {"matmul", osseg__ops_matmul},
    {"norm", osseg__ops_norm},
    {"softmax", osseg__ops_softmax},
    {"attention", osseg__ops_attention},
    {"quant", osseg__ops_quant},
    {"add_int8", osseg__ops_add_int8},
    {"observe", osseg__ops_observe},
};
#define NFAM ((int)(sizeof families / sizeof families[0]))

const struct osseg__op *osseg__op_lookup(const char *name) {
  for (int f = 0; f < NFAM; f++)
    for (const struct osseg__op *op = families[f].ops; op->name; op++)
      if (!strcmp(op->name, name)) return op;
  return NULL;
}

int osseg__op_table_size(void) {
  int n = 0;
  for (int f = 0; f < NFAM; f++)
    for (const struct osseg__op *op = families[f].ops; op->name; op++) n++;
  return n;
}

const struct osseg__op *osseg__op_table_at(int i, const char **family) {
  for (int f = 0; f < NFAM; f++)
    for (const struct osseg__op *op = families[f].ops; op->name; op++)
      if (i-- == 0) {
        if (family) *family = families[f].name;
        return op;
      }
  return NULL;
}

int osseg_engine_op_count(void) { return osseg__op_table_size(); }

int osseg_engine_op_info(int i, struct osseg_op_info *out) {
  const char *family = NULL;
  const struct osseg__op *op = i >= 0 ? osseg__op_table_at(i, &family) : NULL;
  if (!op || !out) return OSSEG_EINVAL;
  memset(out, 0, sizeof *out);
  out->name = op->name;
  out->family = family;
  out->internal = (op->flags & OSSEG__OP_INTERNAL) != 0;
  out->domain = out->internal ? "osseg" : "ai.onnx";
  /* (the loader reads opsets OSSEG__OPSET_MIN..MAX only) */
  out->since = out->internal ? 0 : op->since < OSSEG__OPSET_MIN ? OSSEG__OPSET_MIN : op->since;
  out->until = out->internal ? 0 : op->until;
  out->precisions = op->precisions;
  out->runtime = op->compile != NULL;
  out->folds = op->fold != NULL;
  out->in_pattern = (op->flags & OSSEG__OP_IN_PATTERN) != 0;
  out->loader = (op->flags & OSSEG__OP_LOADER) != 0;
  return 0;
}
