/* osseg health: asks ossegd whether it is ready, and prints its answer. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "client_segment.h"
#include "commands.h"

static const char *const CMD = "health";

static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg health --socket SOCK [--json]\n"
          "\n"
          "Asks the ossegd daemon on SOCK for its health: ready (models loaded and\n"
          "warmed up), version, models, queue, connections, uptime and limits.\n"
          "Exit status 0 when it answers ready, 1 when it is not ready or does not\n"
          "answer.\n");
}

int client_simple_args(const char *cmd, int argc, char **argv, void (*usage_fn)(FILE *),
                       const char **socket, int *json, int *prometheus) {
  static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"prometheus", no_argument, NULL, 'p'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
      case 's': *socket = optarg; break;
      case 'j': *json = 1; break;
      case 'p':
        if (prometheus) {
          *prometheus = 1;
          break;
        }
        cli_error(cmd, "unknown option '%s'", argv[optind - 1]);
        usage_fn(stderr);
        return CLI_USAGE;
      case 'h': usage_fn(stdout); return CLI_OK;
      case ':':
        cli_error(cmd, "option %s needs a value", argv[optind - 1]);
        return CLI_USAGE;
      default:
        cli_error(cmd, "unknown option '%s'", argv[optind - 1]);
        usage_fn(stderr);
        return CLI_USAGE;
    }
  }
  if (optind < argc) {
    cli_error(cmd, "unexpected argument '%s'", argv[optind]);
    usage_fn(stderr);
    return CLI_USAGE;
  }
  if (prometheus && *prometheus && *json) {
    cli_error(cmd, "--json and --prometheus exclude each other");
    usage_fn(stderr);
    return CLI_USAGE;
  }
  if (!*socket) {
    cli_error(cmd, "--socket PATH is required");
    usage_fn(stderr);
    return CLI_USAGE;
  }
  return -1;
}

int osseg_cmd_health(int argc, char **argv) {
  const char *socket = NULL;
  int json = 0;
  int rc = client_simple_args(CMD, argc, argv, usage, &socket, &json, NULL);
  if (rc >= 0) return rc;
  Osseg__Wire__Response *r;
  if ((rc = client_ask(CMD, socket, osseg_client_health, 30000, &r)) != 0) return rc;
  if (r->kind_case != OSSEG__WIRE__RESPONSE__KIND_HEALTH) {
    cli_error(CMD, "%s: unexpected answer (kind %d) to a health request", socket,
              (int)r->kind_case);
    osseg__wire__response__free_unpacked(r, NULL);
    return CLI_FAILED;
  }
  const Osseg__Wire__Health *h = r->health;
  if (json) {
    printf("{\"ready\":%s,\"version\":", h->ready ? "true" : "false");
    client_json_string(stdout, h->version);
    printf(",\"models\":%u,\"queue_depth\":%u,\"in_flight\":%u,\"connections\":%u,"
           "\"uptime_s\":%.3f,\"max_frame_bytes\":%llu,\"max_image_pixels\":%llu",
           h->models, h->queue_depth, h->in_flight, h->connections, h->uptime_s,
           (unsigned long long)h->max_frame_bytes, (unsigned long long)h->max_image_pixels);
    if (h->has_max_image_side) printf(",\"max_image_side\":%u", h->max_image_side);
    printf("}\n");
  } else {
    printf("ready:            %s\n", h->ready ? "yes" : "no");
    printf("version:          %s\n", h->version);
    printf("models:           %u\n", h->models);
    printf("queue depth:      %u\n", h->queue_depth);
    printf("in flight:        %u\n", h->in_flight);
    printf("connections:      %u\n", h->connections);
    printf("uptime:           %.1f s\n", h->uptime_s);
    printf("max frame bytes:  %llu\n", (unsigned long long)h->max_frame_bytes);
    printf("max image pixels: %llu\n", (unsigned long long)h->max_image_pixels);
    if (h->has_max_image_side) printf("max image side:   %u\n", h->max_image_side);
  }
  int ready = h->ready;
  osseg__wire__response__free_unpacked(r, NULL);
  return ready ? CLI_OK : CLI_FAILED;
}
