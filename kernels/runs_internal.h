/* Internals of the run-list kernels shared between kernels/ files and their
 * tests. Not part of the public API. */
#ifndef OSSEG_RUNS_INTERNAL_H
#define OSSEG_RUNS_INTERNAL_H

#include "osseg_kernels.h"

/* Ensures runs->cap >= min_cap, growing geometrically (so that repeated
 * calls with n + 1 are amortised O(1)). 0, OSSEG_ENOMEM or OSSEG_EOVERFLOW;
 * on failure the list is unchanged. */
int osseg__runs_grow(struct osseg_runs *runs, size_t min_cap);

/* Sorts runs by start (not stable with respect to len; canonicalisation
 * does not need it). Never fails: when the radix sort's scratch memory is
 * unavailable it sorts in place with a heapsort. */
void osseg__runs_sort(struct osseg_run *v, size_t n);

#endif
