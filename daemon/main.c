/* ossegd: maps the configuration file and the command line onto struct
 * ossegd_options and runs the daemon (daemon/ossegd.h has the contract).
 * Flags override the file; a --model replaces the file's model of that
 * name, or adds one. Exit status: 0 after a SIGINT/SIGTERM drain (or a good
 * --check-config), 1 when the configuration is bad or start-up fails (a
 * model that does not load, the socket), 2 for bad usage.
 *
 * systemd glue lives here only (the daemon library never reads the
 * environment): sd_listen_fds() for socket activation, sd_notify() behind
 * the daemon's notify callback, sd_watchdog_enabled() for the watchdog
 * interval, and the reload callback that reads the file (and the flags)
 * again on SIGHUP. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "ossegd.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: ossegd --socket PATH --model NAME=MODEL.onnx[,OPT=V...] [--model ...]\n"
          "              [options]\n"
          "       ossegd --config FILE [options]\n"
          "       ossegd --check-config FILE [options]\n"
          "\n"
          "  --config FILE          read the configuration file (see\n"
          "                         systemd/ossegd.conf.example); flags override it\n"
          "  --check-config FILE    check the file (with the flags) and exit: 0 when\n"
          "                         good, 1 with every error named FILE:LINE\n"
          "\n"
          "model options (after the file, comma-separated):\n"
          "  size=S                     input size for models with a symbolic size\n"
          "  precision=fp32|bf16|bf16-mixed|int8|auto\n"
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
          "  --max-in-flight-total N  requests in flight in all, default 1024\n"
          "  --max-queue N          Segment requests waiting for a worker, default 256\n"
          "  --request-timeout-ms N deadline of a Segment without one, 0 = none (default)\n"
          "  --max-output-bytes N   bytes queued for one connection before the daemon\n"
          "                         stops reading it, default 67108864\n"
          "  --metrics-file PATH    write the statistics in the Prometheus text format to\n"
          "                         PATH (atomically replaced), e.g. for node_exporter's\n"
          "                         textfile collector\n"
          "  --metrics-interval SEC seconds between two writes of --metrics-file,\n"
          "                         0.01..86400, default 15\n"
          "  --drain-timeout-ms N   on SIGTERM, how long requests in flight may take to\n"
          "                         finish before they are cancelled, default 30000\n"
          "\n"
          "Under systemd: socket activation (LISTEN_FDS, one AF_UNIX stream socket),\n"
          "Type=notify (READY=1 once every model is warmed up) and the watchdog\n"
          "(WatchdogSec=). SIGHUP reads the configuration again and reloads the models\n"
          "that changed; SIGTERM drains.\n"
          "  -v, --verbose          engine warnings (e.g. slow reference kernels)\n");
}

static void log_stderr(void *ctx, enum osseg_log_level level, const char *message) {
  fprintf(stderr, "ossegd: %s: %s\n", osseg_log_level_name(level), message);
}

/* Configuration errors already say where ("FILE:LINE: ..."). */
static void log_config(void *ctx, enum osseg_log_level level, const char *message) {
  fprintf(stderr, "ossegd: %s\n", message);
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

/* NAME=FILE[,size=S][,precision=P][,normalize=SPEC][,classes=a;b;c]. arg
 * is a copy the caller frees; a comma belongs to the previous value unless
 * a known option follows it, so normalize's "mean=a,b,c;std=d,e,f" keeps
 * its commas. spec's strings point into arg. */
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
        fprintf(stderr, "ossegd: --model %s: precision must be fp32, bf16, bf16-mixed, int8 or auto, not '%s'\n",
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

/* What the command line says besides the options. */
struct cli {
  const char *config; /* --config or --check-config */
  int check_only;
  int verbose;
};

/* Reads the command line. With c NULL it only checks the usage and fills
 * cli; with a config it lays the flags over it (run once more for that, so
 * the pass can be repeated over a freshly read config). Returns -1 to go
 * on, else the exit status (0 after --help, 2 for bad usage, 1 when out of
 * memory). */
static int parse_args(int argc, char **argv, struct ossegd_config *c, struct cli *cli) {
  struct ossegd_options scratch, *o = c ? ossegd_config_options(c) : &scratch;
  ossegd_options_default(&scratch);
  enum { O_SOCKET = 256, O_MODEL, O_THREADS, O_WORKERS, O_FRAME, O_PIXELS, O_SIDE, O_CONN,
         O_INFLIGHT, O_QUEUE, O_OUTPUT, O_METRICS_FILE, O_METRICS_INTERVAL, O_CONFIG, O_CHECK,
         O_INFLIGHT_TOTAL, O_TIMEOUT, O_DRAIN };
  static const struct option opts[] = {{"socket", required_argument, NULL, O_SOCKET},
                                       {"model", required_argument, NULL, O_MODEL},
                                       {"threads", required_argument, NULL, O_THREADS},
                                       {"workers", required_argument, NULL, O_WORKERS},
                                       {"max-frame-bytes", required_argument, NULL, O_FRAME},
                                       {"max-image-pixels", required_argument, NULL, O_PIXELS},
                                       {"max-image-side", required_argument, NULL, O_SIDE},
                                       {"max-connections", required_argument, NULL, O_CONN},
                                       {"max-in-flight", required_argument, NULL, O_INFLIGHT},
                                       {"max-in-flight-total", required_argument, NULL,
                                        O_INFLIGHT_TOTAL},
                                       {"max-queue", required_argument, NULL, O_QUEUE},
                                       {"max-output-bytes", required_argument, NULL, O_OUTPUT},
                                       {"metrics-file", required_argument, NULL, O_METRICS_FILE},
                                       {"metrics-interval", required_argument, NULL,
                                        O_METRICS_INTERVAL},
                                       {"request-timeout-ms", required_argument, NULL, O_TIMEOUT},
                                       {"drain-timeout-ms", required_argument, NULL, O_DRAIN},
                                       {"config", required_argument, NULL, O_CONFIG},
                                       {"check-config", required_argument, NULL, O_CHECK},
                                       {"verbose", no_argument, NULL, 'v'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  opterr = 0;
  optind = 0; /* GNU getopt: start over, also on a second pass */
  int ch;
  uint64_t v;
  while ((ch = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
    switch (ch) {
      case O_SOCKET: o->socket_path = optarg; break;
      case O_MODEL: {
        char *copy = strdup(optarg);
        struct osseg_model_spec spec;
        memset(&spec, 0, sizeof spec);
        if (!copy) return 1;
        if (parse_model(copy, &spec) != 0) {
          free(copy);
          return 2;
        }
        int rc = c ? ossegd_config_set_model(c, &spec) : 0;
        free(copy);
        if (rc == OSSEG_ELIMIT) {
          fprintf(stderr, "ossegd: at most %d models\n", OSSEGD_MAX_MODELS);
          return 2;
        }
        if (rc) return 1;
        break;
      }
      case O_CONFIG: cli->config = optarg; break;
      case O_CHECK:
        cli->config = optarg;
        cli->check_only = 1;
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
      NUMBER(O_THREADS, "--threads", 1, 1024, o->engine.threads)
      NUMBER(O_WORKERS, "--workers", 1, 64, o->workers)
      NUMBER(O_FRAME, "--max-frame-bytes", 16, UINT32_MAX, o->max_frame_bytes)
      NUMBER(O_PIXELS, "--max-image-pixels", 1, OSSEG_MAX_PIXELS, o->max_image_pixels)
      NUMBER(O_SIDE, "--max-image-side", 1, OSSEG_MAX_SIDE, o->max_image_side)
      NUMBER(O_CONN, "--max-connections", 1, 1000000, o->max_connections)
      NUMBER(O_INFLIGHT, "--max-in-flight", 1, 1000000, o->max_in_flight)
      NUMBER(O_INFLIGHT_TOTAL, "--max-in-flight-total", 1, 1000000, o->max_in_flight_total)
      NUMBER(O_QUEUE, "--max-queue", 1, 1000000, o->max_queue)
      NUMBER(O_OUTPUT, "--max-output-bytes", 1, UINT64_MAX / 2, o->max_output_bytes)
      NUMBER(O_TIMEOUT, "--request-timeout-ms", 0, 86400000, o->request_timeout_ms)
      NUMBER(O_DRAIN, "--drain-timeout-ms", 0, 3600000, o->drain_timeout_ms)
#undef NUMBER
      case O_METRICS_FILE:
        if (!optarg[0]) {
          fprintf(stderr, "ossegd: --metrics-file needs a path\n");
          return 2;
        }
        o->metrics_file = optarg;
        break;
      case O_METRICS_INTERVAL:
        if (parse_seconds_ms(optarg, 10, 86400000, &o->metrics_interval_ms) != 0) {
          fprintf(stderr, "ossegd: --metrics-interval must be 0.01..86400 seconds, not '%s'\n",
                  optarg);
          return 2;
        }
        break;
      case 'v': cli->verbose = 1; break;
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
  return -1;
}

static void notify_systemd(void *ctx, const char *state) {
  (void)ctx;
  /* Nothing without NOTIFY_SOCKET. sd_notify() sends a datagram and
   * blocks while the manager's queue is full: systemd reads it at once,
   * and a manager that stopped reading has bigger problems. */
  sd_notify(0, state);
}

/* SIGHUP: the configuration made again the way main made it (the file, if
 * any, then the flags over it), on a libuv pool thread while the loop
 * serves; the main thread is inside ossegd_run meanwhile, so getopt's
 * globals are ours. */
struct reload_ctx {
  int argc;
  char **argv;
  const char *config;
};

static int reload_config(void *vctx, struct ossegd_config **out) {
  struct reload_ctx *r = vctx;
  const struct osseg_log config_log = {log_config, NULL, OSSEG_LOG_ERROR};
  struct ossegd_config *cfg = NULL;
  int rc = r->config ? ossegd_config_load(&cfg, r->config, &config_log)
                     : ossegd_config_create(&cfg);
  if (rc) return rc;
  struct cli cli = {0};
  if (parse_args(r->argc, r->argv, cfg, &cli) >= 0 ||
      ossegd_config_check(cfg, r->config, &config_log) != 0) {
    ossegd_config_free(cfg);
    return OSSEG_EPARSE;
  }
  *out = cfg;
  return 0;
}

int main(int argc, char **argv) {
  const char *disable = getenv("OSSEG_DISABLE_CPU_FEATURES");
  if (disable && osseg_cpu_features_disable(disable) != 0) {
    fprintf(stderr, "ossegd: OSSEG_DISABLE_CPU_FEATURES: unknown feature in '%s'\n", disable);
    return 2;
  }
  struct cli cli = {0};
  int rc = parse_args(argc, argv, NULL, &cli);
  if (rc >= 0) return rc;
  /* The file, then the flags over it. */
  const struct osseg_log config_log = {log_config, NULL, OSSEG_LOG_ERROR};
  struct ossegd_config *cfg = NULL;
  rc = cli.config ? ossegd_config_load(&cfg, cli.config, &config_log) : ossegd_config_create(&cfg);
  if (rc) {
    if (rc == OSSEG_ENOMEM && !cli.config) fprintf(stderr, "ossegd: out of memory\n");
    return 1;
  }
  rc = parse_args(argc, argv, cfg, &cli);
  if (rc >= 0) {
    ossegd_config_free(cfg);
    return rc;
  }
  struct ossegd_options *o = ossegd_config_options(cfg);
  if (cli.config) {
    if (ossegd_config_check(cfg, cli.config, &config_log) != 0) {
      ossegd_config_free(cfg);
      return 1;
    }
  } else if (!o->socket_path || o->nmodels == 0) {
    fprintf(stderr, "ossegd: %s is required\n", !o->socket_path ? "--socket" : "--model");
    usage(stderr);
    ossegd_config_free(cfg);
    return 2;
  }
  if (cli.check_only) {
    printf("%s: good: socket %s, %zu model(s)\n", cli.config, o->socket_path, o->nmodels);
    ossegd_config_free(cfg);
    return 0;
  }
  o->log.fn = log_stderr;
  o->log.max_level = OSSEG_LOG_INFO;
  o->engine.log.fn = log_stderr;
  o->engine.log.max_level = cli.verbose ? OSSEG_LOG_WARN : OSSEG_LOG_ERROR;
  /* systemd: an activated socket, notifications, the watchdog. */
  int nfds = sd_listen_fds(1);
  if (nfds < 0) {
    fprintf(stderr, "ossegd: socket activation: %s\n", strerror(-nfds));
    ossegd_config_free(cfg);
    return 1;
  }
  if (nfds > 1) {
    fprintf(stderr, "ossegd: socket activation: %d sockets passed, ossegd serves one "
                    "(one ListenStream= in ossegd.socket)\n", nfds);
    ossegd_config_free(cfg);
    return 1;
  }
  if (nfds == 1) o->listen_fd = SD_LISTEN_FDS_START;
  o->notify.fn = notify_systemd;
  uint64_t wd_usec = 0;
  if (sd_watchdog_enabled(1, &wd_usec) > 0) o->watchdog_usec = wd_usec;
  struct reload_ctx reload = {argc, argv, cli.config};
  o->reload.fn = reload_config;
  o->reload.ctx = &reload;
  /* A client that went away must not kill the daemon with SIGPIPE; a
   * SIGHUP (logrotate) while the models load must not kill it either (the
   * daemon handles it once it runs). */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);

  struct ossegd *d = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (ossegd_create(&d, o, &diag) != 0) {
    fprintf(stderr, "ossegd: %s\n", diag.message[0] ? diag.message : "start-up failed");
    ossegd_config_free(cfg);
    return 1;
  }
  rc = ossegd_run(d);
  /* Drained: a second signal during the teardown changes nothing. */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  ossegd_free(d);
  ossegd_config_free(cfg);
  return rc == 0 ? 0 : 1;
}
