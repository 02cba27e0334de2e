/* Graph rewrites between shape inference (infer.c) and compilation
 * (compile.c), one file per pass in this folder; passes.c holds their order. */
#ifndef OSSEG_ENGINE_PASSES_PASSES_H
#define OSSEG_ENGINE_PASSES_PASSES_H

#include "../ir.h"

/* Runs every pass on g: QDQ pairs, the transformer fusions (transformer
 * graphs only), then the CNN fusions; with `upconv`, conv-of-nearest-2x-
 * upsample becomes osseg.UpConv2x; with `int8`, convs of quantized inputs
 * and weights are marked to run in int8 (and, with upconv, int8 convs of
 * an upsample of >= int8_upconv_min channels become osseg.UpConv2x).
 * Leaves the use counts recounted. 0 or an error. */
int osseg__passes_run(struct osseg__graph *g, int upconv, int int8, int int8_upconv_min,
                      struct osseg_diag *diag);

/* Inserts an osseg.Observe node after the producer of every tensor the
 * observer names (insert_observers.c); before the other passes. */
int osseg__insert_observers(struct osseg__graph *g, const struct osseg_engine_observer *obs,
                            struct osseg_diag *diag);

#endif
