/* Graph rewrites between shape inference (infer.c) and compilation
 * (compile.c), one file per pass in this folder; passes.c holds their order. */
#ifndef OSSEG_ENGINE_PASSES_PASSES_H
#define OSSEG_ENGINE_PASSES_PASSES_H

#include "../ir.h"

/* Runs every pass on g: the transformer fusions (transformer graphs only),
 * then the CNN fusions; with `upconv`, conv-of-nearest-2x-upsample becomes
 * osseg.UpConv2x. Leaves the use counts recounted. 0 or an error. */
int osseg__passes_run(struct osseg__graph *g, int upconv, struct osseg_diag *diag);

#endif
