/* What the osseg tool says about a loaded model's compiled steps: their
 * data types, how many run in each precision, and which run on slow
 * fallback code (step_summary.c; model-info, and --verbose of predict and
 * run-model). */
#ifndef OSSEG_CLIENTS_STEP_SUMMARY_H
#define OSSEG_CLIENTS_STEP_SUMMARY_H

#include <stddef.h>
#include <stdio.h>

#include "osseg_engine.h"

/* Steps (and convolutions among them) by precision, and the slow ones. */
enum { CLI_PREC_INT8, CLI_PREC_BF16, CLI_PREC_FP32, CLI_NPREC };
struct cli_step_counts {
  int steps[CLI_NPREC], convs[CLI_NPREC];
  int slow, slow_int8;
};
void cli_step_counts(const struct osseg_model *m, struct cli_step_counts *c);

/* A step's data types: "u8,s8->u8" (source, weights -> destination), or one
 * name when they are all the same ("f32"); "-" when none is known. */
const char *cli_step_types(char *buf, size_t cap, const struct osseg_step_info *s);

/* "5 int8 (3 convs), 40 fp32 (2 convs)": the counts in precision order,
 * the empty ones left out. */
const char *cli_step_precisions(char *buf, size_t cap, const struct cli_step_counts *c);

/* The load-time lines of --verbose on stderr, each starting "osseg CMD: ":
 * the steps by precision, then every step on slow code with its index,
 * node, op, types and implementation. */
void cli_print_step_notes(FILE *f, const char *cmd, const struct osseg_model *m);

#endif
