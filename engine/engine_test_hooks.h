/* Internal hooks for the engine's tests (not part of the public API; no
 * oneDNN types, so test programs can include it). */
#ifndef OSSEG_ENGINE_TEST_HOOKS_H
#define OSSEG_ENGINE_TEST_HOOKS_H

#include <stdint.h>

#include "osseg_engine.h"

/* fn(ctx, step) is called on the executor thread after each step of every
 * run of m finishes (step = 0 .. steps - 1); NULL removes it. Set it while
 * no run of m is queued or executing. */
void osseg__model_set_step_hook(struct osseg_model *m, void (*fn)(void *ctx, int step), void *ctx);

/* Convolutions of more than `flops` (2 x MACs) run as several primitives
 * over bands of output rows (conv.c); 0 restores the default. Affects
 * models loaded afterwards. */
void osseg__set_conv_band_flops(uint64_t flops);

/* int8 upconvs (ops/conv_upconv_int8.c) run in bands of rows whose float
 * partial maps take at most `bytes`; 0 restores the default. Affects
 * models loaded afterwards. */
void osseg__set_int8_upconv_band_bytes(uint64_t bytes);

struct osseg__executor_stats {
  uint64_t runs;           /* graph executions (started) since the last reset */
  uint64_t runs_elsewhere; /* of which not on the executor thread (must be 0) */
  int max_concurrent;      /* most graph executions in progress at once */
  int started;             /* the executor thread exists */
  long thread_tid;         /* its kernel thread id (gettid), 0 before start */
};
/* Copies the counters; with reset, clears runs, runs_elsewhere and
 * max_concurrent afterwards. */
void osseg__executor_get_stats(struct osseg__executor_stats *st, int reset);

#endif
