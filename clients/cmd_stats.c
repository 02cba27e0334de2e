/* osseg stats: prints ossegd's counters and latency histogram, as text,
 * JSON or the Prometheus text format (proto/osseg_prometheus.h, the same
 * formatter ossegd's --metrics-file uses). */
#include <stdio.h>

#include "cli_util.h"
#include "client_segment.h"
#include "commands.h"
#include "osseg_base.h"
#include "osseg_prometheus.h"

static const char *const CMD = "stats";


static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg stats --socket SOCK [--json | --prometheus]\n"
          "\n"
          "Prints the statistics of the ossegd daemon on SOCK: outcomes of requests,\n"
          "the latency histogram of finished segmentations, queue, connections,\n"
          "bytes in and out, and per-model inference times.\n"
          "\n"
          "--prometheus prints every counter in the Prometheus text exposition format\n"
          "(0.0.4): requests by outcome and by model, histograms of queue wait,\n"
          "inference per model and total time, queue depth, in-flight, connections,\n"
          "refused peers, bytes, model load times and reloads, start time, uptime.\n");
}

int osseg_cmd_stats(int argc, char **argv) {
  const char *socket = NULL;
  int json = 0, prometheus = 0;
  int rc = client_simple_args(CMD, argc, argv, usage, &socket, &json, &prometheus);
  if (rc >= 0) return rc;
  Osseg__Wire__Response *r;
  if ((rc = client_ask(CMD, socket, osseg_client_stats, 30000, &r)) != 0) return rc;
  if (r->kind_case != OSSEG__WIRE__RESPONSE__KIND_STATS) {
    cli_error(CMD, "%s: unexpected answer (kind %d) to a stats request", socket,
              (int)r->kind_case);
    osseg__wire__response__free_unpacked(r, NULL);
    return CLI_FAILED;
  }
  const Osseg__Wire__Stats *s = r->stats;
  if (prometheus) {
    char *text = NULL;
    size_t len = 0;
    rc = osseg_prometheus_format(s, &text, &len);
    osseg__wire__response__free_unpacked(r, NULL);
    if (rc) {
      cli_error(CMD, "%s", osseg_strerror(rc));
      return CLI_FAILED;
    }
    int bad = fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0;
    osseg__free(text);
    if (bad) {
      cli_error(CMD, "cannot write to standard output");
      return CLI_FAILED;
    }
    return CLI_OK;
  }
  if (json) {
    printf("{\"queue_depth\":%u,\"connections\":%u,\"connections_total\":%llu,"
           "\"refused_peers\":%llu,\"audit_errors\":%llu,"
           "\"bytes_in\":%llu,\"bytes_out\":%llu,\"outcomes\":{",
           s->queue_depth, s->connections, (unsigned long long)s->connections_total,
           (unsigned long long)s->refused_peers, (unsigned long long)s->audit_errors,
           (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out);
    for (size_t i = 0; i < s->n_outcomes; i++) {
      if (i) printf(",");
      client_json_string(stdout, s->outcomes[i]->name);
      printf(":%llu", (unsigned long long)s->outcomes[i]->count);
    }
    printf("},\"latency\":[");
    for (size_t i = 0; i < s->n_latency; i++)
      printf("%s{\"le_ms\":%.9g,\"count\":%llu}", i ? "," : "", s->latency[i]->le_ms,
             (unsigned long long)s->latency[i]->count);
    printf("],\"models\":[");
    for (size_t i = 0; i < s->n_models; i++) {
      printf("%s{\"model\":", i ? "," : "");
      client_json_string(stdout, s->models[i]->model);
      printf(",\"runs\":%llu,\"mean_ms\":%.3f,\"max_ms\":%.3f}",
             (unsigned long long)s->models[i]->runs, s->models[i]->mean_ms,
             s->models[i]->max_ms);
    }
    printf("]}\n");
  } else {
    printf("queue depth:        %u\n", s->queue_depth);
    printf("connections:        %u (%llu since start)\n", s->connections,
           (unsigned long long)s->connections_total);
    printf("refused peers:      %llu\n", (unsigned long long)s->refused_peers);
    printf("audit errors:       %llu\n", (unsigned long long)s->audit_errors);
    printf("bytes in / out:     %llu / %llu\n", (unsigned long long)s->bytes_in,
           (unsigned long long)s->bytes_out);
    printf("outcomes:\n");
    for (size_t i = 0; i < s->n_outcomes; i++)
      printf("  %-20s %llu\n", s->outcomes[i]->name, (unsigned long long)s->outcomes[i]->count);
    printf("latency (total_ms of finished segmentations):\n");
    for (size_t i = 0; i < s->n_latency; i++)
      printf("  <= %-10.9g ms %llu\n", s->latency[i]->le_ms,
             (unsigned long long)s->latency[i]->count);
    printf("models:\n");
    for (size_t i = 0; i < s->n_models; i++)
      printf("  %-20s %llu runs, mean %.1f ms, max %.1f ms\n", s->models[i]->model,
             (unsigned long long)s->models[i]->runs, s->models[i]->mean_ms,
             s->models[i]->max_ms);
  }
  osseg__wire__response__free_unpacked(r, NULL);
  return CLI_OK;
}
