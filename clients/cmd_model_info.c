/* osseg model-info: describe an ONNX model (inputs, outputs, op histogram,
 * parameters, FLOPs, planned arena) after loading it through the engine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "engine_env.h"
#include "osseg_engine.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg model-info MODEL.onnx [--size S] [--precision fp32|bf16|bf16-mixed]\n"
          "\n"
          "Loads the model through the engine and prints its input and output shapes,\n"
          "op histogram, parameters, FLOPs and planned arena.\n"
          "\n"
          "options:\n"
          "  --size S        input height and width (1..65536) for a model exported with\n"
          "                  a symbolic input size, which cannot be loaded without it;\n"
          "                  a model with a fixed size accepts only that size\n"
          "  --precision P   plan for fp32 (default), bf16 or bf16-mixed: the arena and\n"
          "                  weight sizes depend on it\n"
          "Exit status: 0 done, 1 bad model, 2 usage error.\n");
}

static void print_dims(const struct osseg_tensor_info *t) {
  printf("%s [", t->name);
  for (int i = 0; i < t->rank; i++) printf("%s%lld", i ? ", " : "", (long long)t->dims[i]);
  printf("] float32\n");
}

int osseg_cmd_model_info(int argc, char **argv) {
  const char *model = NULL;
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
        fprintf(stderr, "osseg model-info: --precision must be fp32, bf16 or bf16-mixed\n");
        return 2;
      }
    } else if (argv[i][0] != '-' && !model) {
      model = argv[i];
    } else {
      usage(stderr);
      return 2;
    }
  }
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
  if (osseg_model_load(&m, model, &opt, &diag)) {
    cli_error_file("model-info", model, diag.message);
    return 1;
  }
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  printf("model       %s (opset %d)\n", model, st.opset);
  printf("input       ");
  print_dims(osseg_model_input(m));
  printf("output      ");
  print_dims(osseg_model_output(m));
  printf("nodes       %d in file, %d steps after folding and fusion\n", st.nodes_onnx, st.steps);
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
