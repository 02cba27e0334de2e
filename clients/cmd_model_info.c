/* osseg model-info: describe an ONNX model (inputs, outputs, op histogram,
 * parameters, FLOPs, planned arena) after loading it through the engine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "engine_env.h"
#include "osseg_engine.h"
#include "step_summary.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg model-info MODEL.onnx [--steps] [--size S] [--precision fp32|bf16|bf16-mixed|int8|auto]\n"
          "       osseg model-info --ops [MODEL.onnx [--size S] [--precision P]]\n"
          "\n"
          "Loads the model through the engine and prints its input and output shapes,\n"
          "op histogram, parameters, FLOPs, planned arena and its steps by precision.\n"
          "\n"
          "With --steps: one line per compiled step instead (index, node, op, oneDNN\n"
          "primitive or own loop, data types as source[,weights]->destination, the\n"
          "implementation, SLOW for reference or im2col+gemm code), then the steps and\n"
          "convolutions per precision.\n"
          "\n"
          "With --ops and no model: the engine's op table (every ONNX op it supports,\n"
          "its opsets, precisions and the file under engine/ops/ implementing it).\n"
          "With --ops and a model: every op type the model uses, checked against the\n"
          "table at the model's opset (all unsupported ops are named, not only the\n"
          "first), then whether the model loads; exit status 1 if it does not.\n"
          "\n"
          "options:\n"
          "  --size S        input height and width (1..65536) for a model exported with\n"
          "                  a symbolic input size, which cannot be loaded without it;\n"
          "                  a model with a fixed size accepts only that size\n"
          "  --precision P   plan for fp32 (default), bf16, bf16-mixed, int8 or auto: the arena and\n"
          "                  weight sizes depend on it\n"
          "Exit status: 0 done, 1 bad model, 2 usage error.\n");
}

static const char *precisions(unsigned p) {
  return (p & OSSEG_OP_PREC_FP32) && (p & OSSEG_OP_PREC_BF16) ? "fp32 bf16"
         : (p & OSSEG_OP_PREC_FP32)                          ? "fp32"
                                                              : "-";
}

static void opsets(char *buf, size_t cap, int since, int until) {
  if (until >= since && until > 0) snprintf(buf, cap, "%d-%d", since, until);
  else if (since > 0) snprintf(buf, cap, "%d+", since);
  else snprintf(buf, cap, "-");
}

/* The op table (osseg model-info --ops). */
static int print_op_table(void) {
  printf("%-20s %-8s %-8s %-10s %-26s %s\n", "op", "domain", "opsets", "precision",
         "file", "notes");
  for (int i = 0; i < osseg_engine_op_count(); i++) {
    struct osseg_op_info o;
    if (osseg_engine_op_info(i, &o)) return 1;
    char os[32], file[64];
    opsets(os, sizeof os, o.since, o.until);
    snprintf(file, sizeof file, "engine/ops/%s.c", o.family);
    const char *note = o.internal            ? "made by the graph passes"
                       : o.loader          ? "read by the loader as a constant tensor"
                       : o.since > o.until ? "made by the graph passes (from Erf) at opsets read"
                       : o.in_pattern ? "only inside the pattern a pass rewrites"
                       : !o.runtime   ? "constants only (folded at load)"
                       : o.folds      ? "folded when its inputs are constants"
                                      : "";
    printf("%-20s %-8s %-8s %-10s %-26s %s\n", o.name, o.domain, os,
           o.runtime ? precisions(o.precisions) : "-", file, note);
  }
  return 0;
}

struct check_ctx {
  int bad;
  int opset;
};

static void print_check(void *ctx, const struct osseg_op_check *c) {
  struct check_ctx *k = ctx;
  char os[32];
  opsets(os, sizeof os, c->since, c->until);
  const char *what = "";
  char buf[160];
  switch (c->support) {
    case OSSEG_OP_SUPPORTED:
      snprintf(buf, sizeof buf, "supported (engine/ops/%s.c)", c->family);
      what = buf;
      break;
    case OSSEG_OP_CONSTANTS_ONLY:
      what = "on constants only: the load fails if it runs on activations";
      break;
    case OSSEG_OP_IN_PATTERN:
      what = "only inside the pattern a graph pass rewrites (e.g. Erf in GELU)";
      break;
    case OSSEG_OP_OTHER_OPSET:
      snprintf(buf, sizeof buf, "NOT SUPPORTED at opset %d (supported at %s)", k->opset, os);
      what = buf;
      k->bad = 1;
      break;
    case OSSEG_OP_UNKNOWN:
      what = "NOT SUPPORTED (not in the op table)";
      k->bad = 1;
      break;
    case OSSEG_OP_OTHER_DOMAIN:
      snprintf(buf, sizeof buf, "NOT SUPPORTED (domain '%s')", c->domain);
      what = buf;
      k->bad = 1;
      break;
  }
  printf("  %-22s %5d  %s\n", c->name, c->count, what);
}

/* osseg model-info MODEL --ops: the model's ops against the table, then a
 * real load (shape rules and kernels have conditions of their own). */
static int check_model_ops(const char *model, const struct osseg_engine_options *opt) {
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  struct check_ctx k = {0, -1};
  printf("model       %s\n", model);
  printf("ops         (count, and what the engine's op table says)\n");
  /* (k.opset is set before the first call of print_check) */
  if (osseg_model_check_ops(model, &k.opset, print_check, &k, &diag)) {
    cli_error_file("model-info", model, diag.message);
    return 1;
  }
  printf("opset       %d\n", k.opset);
  struct osseg_model *m = NULL;
  if (osseg_model_load(&m, model, opt, &diag)) {
    printf("loads       no: %s\n", diag.message);
    return 1;
  }
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  osseg_model_free(m);
  printf("loads       yes (%s%s)\n", osseg_precision_name(st.precision),
         opt->precision == OSSEG_PRECISION_AUTO ? ", chosen by auto" : "");
  return k.bad;
}

/* osseg model-info MODEL --steps: every compiled step, then the counts. */
static void print_steps(const struct osseg_model *m) {
  printf("%4s  %-40s %-16s %-12s %-16s %s\n", "step", "node", "op", "kind", "types", "impl");
  for (int i = 0; i < osseg_model_step_count(m); i++) {
    struct osseg_step_info s;
    char types[64];
    if (osseg_model_step_info(m, i, &s)) continue;
    printf("%4d  %-40s %-16s %-12s %-16s %s%s\n", i, s.node[0] ? s.node : "-", s.op, s.kind,
           cli_step_types(types, sizeof types, &s), s.impl, s.slow ? "  SLOW" : "");
  }
  struct cli_step_counts c;
  char prec[256];
  cli_step_counts(m, &c);
  printf("steps       %d: %s\n", osseg_model_step_count(m), cli_step_precisions(prec, sizeof prec, &c));
  printf("slow        %d steps on oneDNN reference or im2col+gemm code, %d of them int8\n", c.slow,
         c.slow_int8);
}

/* The model-info line on steps by precision, and the int8 steps on slow
 * code (the first few named). */
static void print_step_summary(const struct osseg_model *m) {
  struct cli_step_counts c;
  char prec[256];
  cli_step_counts(m, &c);
  printf("precision   %s; int8 steps on slow code: %d", cli_step_precisions(prec, sizeof prec, &c),
         c.slow_int8);
  int named = 0;
  for (int i = 0; i < osseg_model_step_count(m) && named < c.slow_int8; i++) {
    struct osseg_step_info s;
    if (osseg_model_step_info(m, i, &s) || !s.slow || strcmp(s.precision, "int8")) continue;
    if (named == 3) {
      printf(", ...");
      break;
    }
    printf("%s%s (%s, %s)", named ? ", " : " (", s.node[0] ? s.node : "-", s.op, s.impl);
    named++;
  }
  printf("%s\n", named ? ")" : "");
}

static void print_dims(const struct osseg_tensor_info *t) {
  printf("%s [", t->name);
  for (int i = 0; i < t->rank; i++) printf("%s%lld", i ? ", " : "", (long long)t->dims[i]);
  printf("] float32\n");
}

int osseg_cmd_model_info(int argc, char **argv) {
  const char *model = NULL;
  int ops = 0, steps = 0;
  struct osseg_engine_options opt;
  osseg_engine_options_default(&opt);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
      char *end;
      long v = strtol(argv[++i], &end, 10);
      if (*end || v < 1 || v > 65536) {
        fprintf(stderr, "osseg model-info: --size must be 1..65536\n");
        return 2;
      }
      opt.input_size = v;
    } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
      if (osseg_precision_parse(argv[++i], &opt.precision)) {
        fprintf(stderr, "osseg model-info: --precision must be fp32, bf16, bf16-mixed, int8 or auto\n");
        return 2;
      }
    } else if (!strcmp(argv[i], "--ops")) {
      ops = 1;
    } else if (!strcmp(argv[i], "--steps")) {
      steps = 1;
    } else if (argv[i][0] != '-' && !model) {
      model = argv[i];
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (ops && steps) {
    fprintf(stderr, "osseg model-info: --ops and --steps do not go together\n");
    return 2;
  }
  if (ops && !model) return print_op_table();
  if (!model) {
    usage(stderr);
    return 2;
  }
  /* (the A/B switches change the counts below; no warnings, as before) */
  if (cli_engine_options_from_env(&opt, "model-info", 0)) return 2;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  struct osseg_model *m = NULL;
  opt.threads = 1;
  if (ops) return check_model_ops(model, &opt);
  if (osseg_model_load(&m, model, &opt, &diag)) {
    cli_error_file("model-info", model, diag.message);
    return 1;
  }
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  if (steps) {
    print_steps(m);
    osseg_model_free(m);
    return 0;
  }
  printf("model       %s (opset %d)\n", model, st.opset);
  printf("input       ");
  print_dims(osseg_model_input(m));
  printf("output      ");
  print_dims(osseg_model_output(m));
  printf("nodes       %d in file, %d steps after folding and fusion\n", st.nodes_onnx, st.steps);
  if (st.int8_convs) printf("int8        %d convs in int8 (u8/s8 x s8)\n", st.int8_convs);
  print_step_summary(m);
  if (st.winograd_convs)
    printf("winograd    %d convs by Winograd F(2x2, 3x3) / F(2x2, 2x2)\n", st.winograd_convs);
  if (st.slow_steps)
    printf("slow steps  %d on oneDNN reference or im2col+gemm kernels (OSSEG_PROFILE=1 names them)\n",
           st.slow_steps);
  printf("params      %llu (%.2f M)\n", (unsigned long long)st.params, (double)st.params / 1e6);
  printf("flops       %.3f GFLOP (2 x MACs)\n", (double)st.flops / 1e9);
  printf("arena       %llu bytes (%.1f MiB, %s)\n", (unsigned long long)st.arena_bytes,
         (double)st.arena_bytes / 1048576.0, osseg_precision_name(st.precision));
  printf("weights     %.1f MiB, scratchpad %.1f MiB\n", (double)st.weight_bytes / 1048576.0,
         (double)st.scratch_bytes / 1048576.0);
  printf("ops:\n");
  for (int i = 0; i < osseg_model_op_count(m); i++) {
    const char *op;
    int c;
    osseg_model_op_at(m, i, &op, &c);
    printf("  %-22s %d\n", op, c);
  }
  osseg_model_free(m);
  return 0;
}
