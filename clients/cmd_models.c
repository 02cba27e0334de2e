/* osseg models: lists the models ossegd serves. */
#include <stdio.h>

#include "cli_util.h"
#include "client_segment.h"
#include "commands.h"

static const char *const CMD = "models";


static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg models --socket SOCK [--json]\n"
          "\n"
          "Lists the models the ossegd daemon on SOCK serves: name, input size,\n"
          "precision, classes, generation and the SHA-256 of the ONNX file.\n");
}

int osseg_cmd_models(int argc, char **argv) {
  const char *socket = NULL;
  int json = 0;
  int rc = client_simple_args(CMD, argc, argv, usage, &socket, &json, NULL);
  if (rc >= 0) return rc;
  Osseg__Wire__Response *r;
  if ((rc = client_ask(CMD, socket, osseg_client_list_models, 30000, &r)) != 0) return rc;
  if (r->kind_case != OSSEG__WIRE__RESPONSE__KIND_MODELS) {
    cli_error(CMD, "%s: unexpected answer (kind %d) to a models request", socket,
              (int)r->kind_case);
    osseg__wire__response__free_unpacked(r, NULL);
    return CLI_FAILED;
  }
  const Osseg__Wire__ModelList *l = r->models;
  if (json) printf("[");
  for (size_t i = 0; i < l->n_models; i++) {
    const Osseg__Wire__ModelInfo *m = l->models[i];
    if (json) {
      printf("%s{\"name\":", i ? "," : "");
      client_json_string(stdout, m->name);
      printf(",\"sha256\":");
      client_json_string(stdout, m->sha256);
      printf(",\"input_size\":%u,\"precision\":", m->input_size);
      client_json_string(stdout, m->precision);
      printf(",\"generation\":%llu,\"classes\":[", (unsigned long long)m->generation);
      for (size_t c = 0; c < m->n_classes; c++) {
        if (c) printf(",");
        client_json_string(stdout, m->classes[c]);
      }
      printf("]}");
    } else {
      printf("%s\n  input size: %u\n  precision:  %s\n  sha256:     %s\n", m->name,
             m->input_size, m->precision, m->sha256);
      if (m->has_generation) printf("  generation: %llu\n", (unsigned long long)m->generation);
      printf("  classes:    %zu:", m->n_classes);
      for (size_t c = 0; c < m->n_classes; c++) printf("%s%s", c ? ", " : " ", m->classes[c]);
      printf("\n");
    }
  }
  if (json) printf("]\n");
  else if (l->n_models == 0) printf("(no models)\n");
  osseg__wire__response__free_unpacked(r, NULL);
  return CLI_OK;
}
