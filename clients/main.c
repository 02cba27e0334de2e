/* osseg: the command-line tool. Dispatches to one subcommand per file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "osseg_base.h"

struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
};

static const struct command commands[] = {
    {"predict", osseg_cmd_predict, "segment PNG images with an ONNX model into a submission CSV"},
    {"ensemble", osseg_cmd_ensemble, "hard-voting ensemble of prediction CSVs"},
    {"dice", osseg_cmd_dice, "score a prediction CSV against ground truth"},
    {"overlay", osseg_cmd_overlay, "draw an image's ground truth and predictions over it (PNG)"},
    {"view", osseg_cmd_view, "print the file:// URL of the web viewer (clients/viewer)"},
    {"rle", osseg_cmd_rle, "convert between CSV rows and PNG masks"},
    {"run-model", osseg_cmd_run_model, "run an ONNX model on a .npy input, with timings"},
    {"quantize", osseg_cmd_quantize, "quantize an fp32 ONNX model to int8 (QDQ), calibrated on images"},
    {"model-info", osseg_cmd_model_info, "describe an ONNX model: inputs, outputs, ops, FLOPs"},
    {"segment", osseg_cmd_segment, "segment images with the ossegd daemon into a submission CSV"},
    {"batch", osseg_cmd_batch, "segment folders with ossegd: progress line, resumable output"},
    {"health", osseg_cmd_health, "ask ossegd whether it is ready"},
    {"models", osseg_cmd_models, "list the models ossegd serves"},
    {"stats", osseg_cmd_stats, "print ossegd's statistics"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: osseg <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\n'osseg <command> --help' describes a command.\n");
}

int main(int argc, char **argv) {
  /* The libraries never read the environment; OSSEG_DISABLE_CPU_FEATURES
   * (avx512, avx2, bf16, amx) forces the lower code paths. */
  if (osseg_cpu_features_disable(getenv("OSSEG_DISABLE_CPU_FEATURES"))) {
    fprintf(stderr, "%s: OSSEG_DISABLE_CPU_FEATURES: expected a comma-separated list of "
                    "avx512, avx2, bf16, amx\n", "osseg");
    return 2;
  }
  osseg_cli_omp_policy(argv);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "osseg: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
