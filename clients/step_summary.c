/* The osseg tool's view of a model's compiled steps (step_summary.h). */
#include "step_summary.h"

#include <string.h>

static int prec_index(const char *p) {
  return !strcmp(p, "int8") ? CLI_PREC_INT8 : !strcmp(p, "bf16") ? CLI_PREC_BF16 : CLI_PREC_FP32;
}

static const char *const prec_names[CLI_NPREC] = {"int8", "bf16", "fp32"};

void cli_step_counts(const struct osseg_model *m, struct cli_step_counts *c) {
  memset(c, 0, sizeof *c);
  for (int i = 0; i < osseg_model_step_count(m); i++) {
    struct osseg_step_info s;
    if (osseg_model_step_info(m, i, &s)) continue;
    int p = prec_index(s.precision);
    c->steps[p]++;
    c->convs[p] += s.conv;
    c->slow += s.slow;
    c->slow_int8 += s.slow && p == CLI_PREC_INT8;
  }
}

const char *cli_step_types(char *buf, size_t cap, const struct osseg_step_info *s) {
  const char *src = s->src_type, *wei = s->weights_type, *dst = s->dst_type;
  if (!src && !dst && !wei) {
    snprintf(buf, cap, "-");
  } else if (src && dst && !strcmp(src, dst) && (!wei || !strcmp(wei, src))) {
    snprintf(buf, cap, "%s", src);
  } else {
    snprintf(buf, cap, "%s%s%s->%s", src ? src : "?", wei ? "," : "", wei ? wei : "",
             dst ? dst : "?");
  }
  return buf;
}

const char *cli_step_precisions(char *buf, size_t cap, const struct cli_step_counts *c) {
  size_t len = 0;
  buf[0] = '\0';
  for (int p = 0; p < CLI_NPREC; p++) {
    if (!c->steps[p] || len >= cap) continue;
    int w;
    if (c->convs[p])
      w = snprintf(buf + len, cap - len, "%s%d %s (%d conv%s)", len ? ", " : "", c->steps[p],
                   prec_names[p], c->convs[p], c->convs[p] == 1 ? "" : "s");
    else
      w = snprintf(buf + len, cap - len, "%s%d %s", len ? ", " : "", c->steps[p], prec_names[p]);
    len += w > 0 ? (size_t)w : 0;
  }
  if (!buf[0]) snprintf(buf, cap, "none");
  return buf;
}

void cli_print_step_notes(FILE *f, const char *cmd, const struct osseg_model *m) {
  struct cli_step_counts c;
  char prec[256];
  cli_step_counts(m, &c);
  fprintf(f, "osseg %s: %d steps: %s; %d on slow code (%d of them int8)\n", cmd,
          osseg_model_step_count(m), cli_step_precisions(prec, sizeof prec, &c), c.slow,
          c.slow_int8);
  for (int i = 0; i < osseg_model_step_count(m); i++) {
    struct osseg_step_info s;
    char types[64];
    if (osseg_model_step_info(m, i, &s) || !s.slow) continue;
    fprintf(f, "osseg %s: slow step %d: %s '%s' (%s) %s on '%s'\n", cmd, i, s.precision,
            s.node[0] ? s.node : "-", s.op, cli_step_types(types, sizeof types, &s), s.impl);
  }
}
