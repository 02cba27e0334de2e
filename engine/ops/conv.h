/* The conv family's own paths (private to ops/conv*.c): where oneDNN is
 * slow, conv.c hands a conv to one of these loops. */
#ifndef OSSEG_ENGINE_OPS_CONV_H
#define OSSEG_ENGINE_OPS_CONV_H

#include "build.h"

/* conv_depthwise.c: depthwise conv (weights [C, 1, kh, kw], optional bias,
 * no post-ops) of dense nhwc x into y as an own loop. */
int osseg__compile_dwconv(struct osseg_model *m, struct osseg__node *n, const float *wdata,
                          const int64_t *wdims, const float *bias, const struct osseg__window *win,
                          struct osseg_diag *diag);
/* conv_winograd.c: 3x3 or 2x2 (k) stride-1 fp32 conv (OIHW weights, group
 * 1) of dense nhwc x into y by Winograd F(2x2, 3x3) / F(2x2, 2x2); the
 * epilogue may hold SUM (y holds the addend) and RELU entries. _eligible
 * says whether it applies. */
int osseg__winograd_eligible(const struct osseg_model *m, int x, int y, int64_t kh, int64_t kw,
                             int64_t IC, int64_t OC, const int64_t stride[2],
                             const int64_t dil[2], const int64_t pb[2], const int64_t pe[2],
                             const struct osseg__post *post, int npost);
int osseg__compile_winograd(struct osseg_model *m, const struct osseg__node *n, int x, int y,
                            const float *wt, int64_t k, int64_t IC, int64_t OC,
                            const float *bias, const int64_t pb[2],
                            const struct osseg__post *post, int npost, struct osseg_diag *diag);

/* conv_upconv_int8.c: osseg.UpConv2x of an int8 conv (osseg.q_scale) as an
 * int8 phase conv, an int8 skip conv and an own loop summing them into the
 * (8-bit or float) output. */
int osseg__compile_upconv_int8(struct osseg_model *m, struct osseg__node *n, struct osseg_diag *diag);

#endif
