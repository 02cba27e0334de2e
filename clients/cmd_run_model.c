/* osseg run-model: run an ONNX model on a .npy input with timings.
 *
 *   osseg run-model MODEL.onnx [--input IN.npy] [--output OUT.npy]
 *       [--precision fp32|bf16|bf16-mixed|int8|auto] [--threads N] [--repeat R] [--size S] [--json]
 *       [--verbose]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "npy.h"
#include "cli_util.h"
#include "engine_env.h"
#include "osseg_engine.h"
#include "step_summary.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg run-model MODEL.onnx [--input IN.npy] [--output OUT.npy]\n"
          "         [--precision fp32|bf16|bf16-mixed|int8|auto] [--threads N] [--repeat R] [--size S] [--json]\n"
          "         [--verbose]\n"
          "Runs the model on a float32 NCHW .npy (default: seeded random input of the\n"
          "model's input shape), writes the float32 output, prints load time, median/min\n"
          "latency over R runs and peak resident memory. --verbose prints the model's\n"
          "steps by precision (int8, bf16, fp32), names every step on slow code (oneDNN\n"
          "reference or im2col+gemm) with its types, and warns about every step oneDNN\n"
          "runs on reference code and, under bf16, every conv not on the CPU's native\n"
          "bf16 unit (AMX, else AVX512_BF16). Under bf16 on a CPU without\n"
          "native bf16 a note says that bf16 is emulated there, slower than fp32.\n");
}

static double peak_rss_mb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  double mb = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0) mb = strtod(line + 6, NULL) / 1024.0;
  fclose(f);
  return mb;
}

/* CPU time of the whole process (all threads), ms: a steadier measure than
 * wall time when the machine is shared. */
static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int osseg_cmd_run_model(int argc, char **argv) {
  const char *model = NULL, *in_path = NULL, *out_path = NULL;
  struct osseg_engine_options opt;
  osseg_engine_options_default(&opt);
  long repeat = 1, v;
  int json = 0, verbose = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--verbose")) {
      verbose = 1;
    } else if (!strcmp(a, "--input") && val) {
      in_path = val, i++;
    } else if (!strcmp(a, "--output") && val) {
      out_path = val, i++;
    } else if (!strcmp(a, "--precision") && val) {
      if (osseg_precision_parse(val, &opt.precision)) {
        fprintf(stderr, "osseg run-model: --precision must be fp32, bf16, bf16-mixed, int8 or auto\n");
        return 2;
      }
      i++;
    } else if (!strcmp(a, "--threads") && val) {
      if (parse_int(val, 0, 1024, &v)) {
        fprintf(stderr, "osseg run-model: --threads must be 0..1024\n");
        return 2;
      }
      opt.threads = (int)v, i++;
    } else if (!strcmp(a, "--repeat") && val) {
      if (parse_int(val, 1, 100000, &repeat)) {
        fprintf(stderr, "osseg run-model: --repeat must be 1..100000\n");
        return 2;
      }
      i++;
    } else if (!strcmp(a, "--size") && val) {
      if (parse_int(val, 1, 65536, &v)) {
        fprintf(stderr, "osseg run-model: --size must be 1..65536\n");
        return 2;
      }
      opt.input_size = v, i++;
    } else if (a[0] != '-' && !model) {
      model = a;
    } else {
      fprintf(stderr, "osseg run-model: unexpected argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!model) {
    usage(stderr);
    return 2;
  }
  if (cli_engine_options_from_env(&opt, "run-model", verbose)) return 2;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  struct npy_array in = {0};
  /* Read the input first when its shape can fix a symbolic model size. */
  if (in_path) {
    if (npy_read(in_path, 1ull << 32, &in, &diag)) {
      cli_error_file("run-model", in_path, diag.message);
      return 1;
    }
    if (in.rank == 4 && !opt.input_size && in.dims[2] == in.dims[3]) opt.input_size = 0;
  }
  uint64_t t0 = osseg_now_ns();
  struct osseg_model *m = NULL;
  int err = osseg_model_load(&m, model, &opt, &diag);
  if (err && in_path && in.rank == 4 && !opt.input_size && strstr(diag.message, "symbolic")) {
    /* symbolic size: take it from the input array */
    opt.input_size = in.dims[2];
    osseg_diag_clear(&diag);
    t0 = osseg_now_ns();
    err = osseg_model_load(&m, model, &opt, &diag);
  }
  double load_ms = (double)(osseg_now_ns() - t0) / 1e6;
  if (err) {
    cli_error_file("run-model", model, diag.message);
    npy_free(&in);
    return 1;
  }
  cli_note_bf16("run-model", opt.precision == OSSEG_PRECISION_BF16 || opt.precision == OSSEG_PRECISION_BF16_MIXED);
  if (verbose) cli_print_step_notes(stderr, "run-model", m);
  const struct osseg_tensor_info *ii = osseg_model_input(m), *oi = osseg_model_output(m);
  size_t nin = osseg_model_input_elems(m), nout = osseg_model_output_elems(m);
  int rc = 1;
  float *input = NULL, *output = NULL;
  double *times = NULL, *cpus = NULL;
  if (in_path) {
    int ok = in.rank == ii->rank;
    for (int i = 0; ok && i < ii->rank; i++) ok = in.dims[i] == ii->dims[i];
    if (!ok) {
      char got[128] = "", want[128] = "";
      for (int i = 0; i < in.rank; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "x" : "", (long long)in.dims[i]);
      for (int i = 0; i < ii->rank; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "x" : "", (long long)ii->dims[i]);
      fprintf(stderr, "osseg run-model: %s has shape %s, model input '%s' needs %s\n", in_path,
              got, ii->name, want);
      goto done;
    }
    input = in.data;
  } else {
    input = malloc(nin * sizeof(float));
    if (!input) goto oom;
    uint64_t s = 0x853c49e6748fea9bull;
    for (size_t i = 0; i < nin; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      input[i] = (float)((s >> 40) & 0xffffff) / 16777216.0f;
    }
  }
  output = malloc(nout * sizeof(float));
  times = malloc((size_t)repeat * sizeof(double));
  cpus = malloc((size_t)repeat * sizeof(double));
  if (!output || !times || !cpus) goto oom;
  if (repeat > 1 && osseg_model_run(m, input, output, &diag)) goto runfail; /* warm-up */
  for (long r = 0; r < repeat; r++) {
    uint64_t a = osseg_now_ns();
    double c = cpu_ms();
    if (osseg_model_run(m, input, output, &diag)) goto runfail;
    times[r] = (double)(osseg_now_ns() - a) / 1e6;
    cpus[r] = cpu_ms() - c;
  }
  if (out_path && npy_write(out_path, output, oi->dims, oi->rank, &diag)) {
    fprintf(stderr, "osseg run-model: %s\n", diag.message);
    goto done;
  }
  double mn = times[0];
  for (long r = 1; r < repeat; r++) mn = times[r] < mn ? times[r] : mn;
  qsort(times, (size_t)repeat, sizeof *times, cmp_double);
  qsort(cpus, (size_t)repeat, sizeof *cpus, cmp_double);
  double cpu_med = cpus[repeat / 2];
  double med = repeat % 2 ? times[repeat / 2] : 0.5 * (times[repeat / 2 - 1] + times[repeat / 2]);
  struct osseg_model_stats st;
  osseg_model_get_stats(m, &st);
  double rss = peak_rss_mb();
  if (json) {
    printf("{\"model\": \"%s\", \"precision\": \"%s\", \"threads\": %d, \"input\": [", model,
           osseg_precision_name(st.precision), st.threads);
    for (int i = 0; i < ii->rank; i++) printf("%s%lld", i ? ", " : "", (long long)ii->dims[i]);
    printf("], \"output\": [");
    for (int i = 0; i < oi->rank; i++) printf("%s%lld", i ? ", " : "", (long long)oi->dims[i]);
    printf("], \"repeat\": %ld, \"load_ms\": %.3f, \"median_ms\": %.3f, \"min_ms\": %.3f, "
           "\"cpu_median_ms\": %.3f, \"peak_rss_mb\": %.1f, \"arena_mb\": %.1f, \"gflop\": %.3f}\n",
           repeat, load_ms, med, mn, cpu_med, rss, (double)st.arena_bytes / 1048576.0, (double)st.flops / 1e9);
  } else {
    printf("model      %s\n", model);
    printf("precision  %s, %d threads\n", osseg_precision_name(st.precision), st.threads);
    printf("load       %.1f ms\n", load_ms);
    printf("latency    median %.2f ms, min %.2f ms over %ld run%s\n", med, mn, repeat,
           repeat == 1 ? "" : "s");
    printf("peak RSS   %.1f MiB (VmHWM)\n", rss);
    if (out_path) printf("output     %s\n", out_path);
  }
  rc = 0;
  goto done;
runfail:
  fprintf(stderr, "osseg run-model: inference failed: %s\n", diag.message);
  goto done;
oom:
  fprintf(stderr, "osseg run-model: out of memory\n");
done:
  if (input != in.data) free(input);
  free(output);
  free(times);
  free(cpus);
  npy_free(&in);
  osseg_model_free(m);
  return rc;
}
