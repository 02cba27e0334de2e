/* ossegd: maps the command line onto struct ossegd_options and runs the
 * daemon (daemon/ossegd.h has the contract). Exit status: 0 after a
 * SIGINT/SIGTERM drain, 1 when start-up fails (a model that does not load,
 * the socket), 2 for bad usage. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ossegd.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: ossegd --socket PATH --model NAME=MODEL.onnx[,OPT=V...] [--model ...]\n"
          "              [options]\n"
          "\n"
          "model options (after the file, comma-separated):\n"
          "  size=S                     input size for models with a symbolic size\n"
          "  precision=fp32|bf16|bf16-mixed\n"
          "  normalize=SPEC             div255 | imagenet | mean=a,b,c;std=d,e,f\n"
          "  classes=a;b;c              class names in output-channel order\n"
          "\n"
          "options:\n"
          "  --threads N            inference (oneDNN) threads, default all cores\n"
          "  --workers N            request worker threads, default 2\n"
          "  --max-frame-bytes N    largest request frame, default 67108864\n"
          "  --max-image-pixels N   largest image (width x height), default 268435456\n"
          "  --max-image-side N     largest width, and largest height, default 16384\n"
          "  --max-connections N    default 256\n"
          "  --max-in-flight N      requests in flight per connection, default 64\n"
          "  --max-queue N          Segment requests waiting for a worker, default 256\n"
          "  --max-output-bytes N   bytes queued for one connection before the daemon\n"
          "                         stops reading it, default 67108864\n"
          "  --metrics-file PATH    write the statistics in the Prometheus text format to\n"
          "                         PATH (atomically replaced), e.g. for node_exporter's\n"
          "                         textfile collector\n"
          "  --metrics-interval SEC seconds between two writes of --metrics-file,\n"
          "                         0.01..86400, default 15\n"
          "  -v, --verbose          engine warnings (e.g. slow reference kernels)\n");
}

static void log_stderr(void *ctx, enum osseg_log_level level, const char *message) {
  fprintf(stderr, "ossegd: %s: %s\n", osseg_log_level_name(level), message);
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
  char *end;
  errno = 0;
  if (!s[0] || s[0] == '-') return -1;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

/* A number of seconds (decimals allowed) as whole milliseconds in
 * [lo_ms, hi_ms]. */
static int parse_seconds_ms(const char *s, uint32_t lo_ms, uint32_t hi_ms, uint32_t *out) {
  char *end;
  errno = 0;
  if (!s[0] || !strchr("0123456789.", s[0])) return -1;
  double v = strtod(s, &end);
  if (errno || *end || !(v * 1000 >= lo_ms && v * 1000 <= hi_ms)) return -1;
  *out = (uint32_t)(v * 1000 + 0.5);
  return 0;
}

/* Is p (just after a comma) the start of a known model option? */
static int option_start(const char *p) {
  static const char *const keys[] = {"size=", "precision=", "normalize=", "classes="};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    if (strncmp(p, keys[i], strlen(keys[i])) == 0) return 1;
  return 0;
}

/* NAME=FILE[,size=S][,precision=P][,normalize=SPEC][,classes=a;b;c]. The
 * argument is modified in place (argv strings are ours); a comma belongs
 * to the previous value unless a known option follows it, so normalize's
 * "mean=a,b,c;std=d,e,f" keeps its commas. */
static int parse_model(char *arg, struct osseg_model_spec *spec) {
  char *eq = strchr(arg, '=');
  if (!eq || eq == arg) {
    fprintf(stderr, "ossegd: --model takes NAME=MODEL.onnx[,...], not '%s'\n", arg);
    return -1;
  }
  *eq = '\0';
  spec->name = arg;
  char *p = eq + 1;
  char *fields[8];
  size_t n = 0;
  fields[n++] = p;
  for (char *c = p; *c; c++)
    if (*c == ',' && option_start(c + 1)) {
      if (n == 8) {
        fprintf(stderr, "ossegd: --model %s: too many options\n", arg);
        return -1;
      }
      *c = '\0';
      fields[n++] = c + 1;
    }
  spec->path = fields[0];
  if (!spec->path[0]) {
    fprintf(stderr, "ossegd: --model %s: no model file\n", arg);
    return -1;
  }
  for (size_t i = 1; i < n; i++) {
    char *f = fields[i];
    char *v = strchr(f, '=') + 1;
    if (strncmp(f, "size=", 5) == 0) {
      uint64_t s;
      if (parse_u64(v, 1, 16384, &s) != 0) {
        fprintf(stderr, "ossegd: --model %s: size must be 1..16384, not '%s'\n", arg, v);
        return -1;
      }
      spec->input_size = (int64_t)s;
    } else if (strncmp(f, "precision=", 10) == 0) {
      if (osseg_precision_parse(v, &spec->precision) != 0) {
        fprintf(stderr, "ossegd: --model %s: precision must be fp32, bf16 or bf16-mixed, not '%s'\n",
                arg, v);
        return -1;
      }
    } else if (strncmp(f, "normalize=", 10) == 0) {
      spec->normalize = v;
    } else {
      for (char *c = v; *c; c++)
        if (*c == ';') *c = ',';
      spec->classes = v;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *disable = getenv("OSSEG_DISABLE_CPU_FEATURES");
  if (disable && osseg_cpu_features_disable(disable) != 0) {
    fprintf(stderr, "ossegd: OSSEG_DISABLE_CPU_FEATURES: unknown feature in '%s'\n", disable);
    return 2;
  }
  struct ossegd_options o;
  ossegd_options_default(&o);
  int verbose = 0;
  enum { O_SOCKET = 256, O_MODEL, O_THREADS, O_WORKERS, O_FRAME, O_PIXELS, O_SIDE, O_CONN,
         O_INFLIGHT, O_QUEUE, O_OUTPUT, O_METRICS_FILE, O_METRICS_INTERVAL };
  static const struct option opts[] = {{"socket", required_argument, NULL, O_SOCKET},
                                       {"model", required_argument, NULL, O_MODEL},
                                       {"threads", required_argument, NULL, O_THREADS},
                                       {"workers", required_argument, NULL, O_WORKERS},
                                       {"max-frame-bytes", required_argument, NULL, O_FRAME},
                                       {"max-image-pixels", required_argument, NULL, O_PIXELS},
                                       {"max-image-side", required_argument, NULL, O_SIDE},
                                       {"max-connections", required_argument, NULL, O_CONN},
                                       {"max-in-flight", required_argument, NULL, O_INFLIGHT},
                                       {"max-queue", required_argument, NULL, O_QUEUE},
                                       {"max-output-bytes", required_argument, NULL, O_OUTPUT},
                                       {"metrics-file", required_argument, NULL, O_METRICS_FILE},
                                       {"metrics-interval", required_argument, NULL,
                                        O_METRICS_INTERVAL},
                                       {"verbose", no_argument, NULL, 'v'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  opterr = 0;
  int c;
  uint64_t v;
  while ((c = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
    switch (c) {
      case O_SOCKET: o.socket_path = optarg; break;
      case O_MODEL:
        if (o.nmodels == OSSEGD_MAX_MODELS) {
          fprintf(stderr, "ossegd: at most %d models\n", OSSEGD_MAX_MODELS);
          return 2;
        }
        if (parse_model(optarg, &o.models[o.nmodels]) != 0) return 2;
        o.nmodels++;
        break;
#define NUMBER(code, flag, lo, hi, field)                                              \
  case code:                                                                           \
    if (parse_u64(optarg, lo, hi, &v) != 0) {                                          \
      fprintf(stderr, "ossegd: " flag " must be %llu..%llu, not '%s'\n",               \
              (unsigned long long)(lo), (unsigned long long)(hi), optarg);             \
      return 2;                                                                        \
    }                                                                                  \
    field = v;                                                                         \
    break;
      NUMBER(O_THREADS, "--threads", 1, 1024, o.engine.threads)
      NUMBER(O_WORKERS, "--workers", 1, 64, o.workers)
      NUMBER(O_FRAME, "--max-frame-bytes", 16, UINT32_MAX, o.max_frame_bytes)
      NUMBER(O_PIXELS, "--max-image-pixels", 1, OSSEG_MAX_PIXELS, o.max_image_pixels)
      NUMBER(O_SIDE, "--max-image-side", 1, OSSEG_MAX_SIDE, o.max_image_side)
      NUMBER(O_CONN, "--max-connections", 1, 1000000, o.max_connections)
      NUMBER(O_INFLIGHT, "--max-in-flight", 1, 1000000, o.max_in_flight)
      NUMBER(O_QUEUE, "--max-queue", 1, 1000000, o.max_queue)
      NUMBER(O_OUTPUT, "--max-output-bytes", 1, UINT64_MAX / 2, o.max_output_bytes)
#undef NUMBER
      case O_METRICS_FILE:
        if (!optarg[0]) {
          fprintf(stderr, "ossegd: --metrics-file needs a path\n");
          return 2;
        }
        o.metrics_file = optarg;
        break;
      case O_METRICS_INTERVAL:
        if (parse_seconds_ms(optarg, 10, 86400000, &o.metrics_interval_ms) != 0) {
          fprintf(stderr, "ossegd: --metrics-interval must be 0.01..86400 seconds, not '%s'\n",
                  optarg);
          return 2;
        }
        break;
      case 'v': verbose = 1; break;
      case 'h': usage(stdout); return 0;
      case ':': fprintf(stderr, "ossegd: option %s needs a value\n", argv[optind - 1]); return 2;
      default:
        fprintf(stderr, "ossegd: unknown option '%s'\n", argv[optind - 1]);
        usage(stderr);
        return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "ossegd: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!o.socket_path || o.nmodels == 0) {
    fprintf(stderr, "ossegd: %s is required\n", !o.socket_path ? "--socket" : "--model");
    usage(stderr);
    return 2;
  }
  o.log.fn = log_stderr;
  o.log.max_level = OSSEG_LOG_INFO;
  o.engine.log.fn = log_stderr;
  o.engine.log.max_level = verbose ? OSSEG_LOG_WARN : OSSEG_LOG_ERROR;
  /* A client that went away must not kill the daemon with SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);

  struct ossegd *d = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (ossegd_create(&d, &o, &diag) != 0) {
    fprintf(stderr, "ossegd: %s\n", diag.message[0] ? diag.message : "start-up failed");
    return 1;
  }
  int rc = ossegd_run(d);
  /* Drained: a second signal during the teardown changes nothing. */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  ossegd_free(d);
  return rc == 0 ? 0 : 1;
}
