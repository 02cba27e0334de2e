/* Constant tensor elements for constant folding: typed writes (reads are
 * osseg__const_i64 / osseg__const_f64 in ir.c), saturating integer maths,
 * and the index maps of broadcasting and of unravelled positions. */
#include "bf16.h"
#include "ir.h"

#include <string.h>

int osseg__dtype_is_float(int dt) {
  return dt == OSSEG__DT_FLOAT || dt == OSSEG__DT_DOUBLE || dt == OSSEG__DT_FLOAT16 ||
         dt == OSSEG__DT_BFLOAT16;
}

/* double -> int64, saturating (an out-of-range conversion is undefined
 * behaviour; found by libFuzzer through an integer Pow); NaN -> 0. */
int64_t osseg__sat_i64(double v) {
  if (!(v == v)) return 0;
  if (v >= 0x1p63) return INT64_MAX;
  if (v < -0x1p63) return INT64_MIN;
  return (int64_t)v;
}

void osseg__const_set_f64(struct osseg__tensor *t, size_t i, double v) {
  void *d = t->data;
  switch (t->dtype) {
    case OSSEG__DT_FLOAT: ((float *)d)[i] = (float)v; return;
    case OSSEG__DT_DOUBLE: ((double *)d)[i] = v; return;
    case OSSEG__DT_BFLOAT16: ((uint16_t *)d)[i] = osseg__f32_bf16((float)v); return;
    default: break;
  }
  int64_t iv = osseg__sat_i64(v);
  switch (t->dtype) {
    case OSSEG__DT_INT64: ((int64_t *)d)[i] = iv; return;
    case OSSEG__DT_INT32: ((int32_t *)d)[i] = (int32_t)iv; return;
    case OSSEG__DT_UINT32: ((uint32_t *)d)[i] = (uint32_t)iv; return;
    case OSSEG__DT_UINT64: ((uint64_t *)d)[i] = (uint64_t)iv; return;
    case OSSEG__DT_INT16: case OSSEG__DT_UINT16: ((uint16_t *)d)[i] = (uint16_t)iv; return;
    case OSSEG__DT_BOOL: ((uint8_t *)d)[i] = v != 0; return;
    default: ((uint8_t *)d)[i] = (uint8_t)iv; return;
  }
}

void osseg__const_set_i64(struct osseg__tensor *t, size_t i, int64_t v) {
  if (osseg__dtype_is_float(t->dtype)) {
    osseg__const_set_f64(t, i, (double)v);
    return;
  }
  void *d = t->data;
  switch (t->dtype) {
    case OSSEG__DT_INT64: ((int64_t *)d)[i] = v; return;
    case OSSEG__DT_INT32: ((int32_t *)d)[i] = (int32_t)v; return;
    case OSSEG__DT_UINT32: ((uint32_t *)d)[i] = (uint32_t)v; return;
    case OSSEG__DT_UINT64: ((uint64_t *)d)[i] = (uint64_t)v; return;
    case OSSEG__DT_INT16: case OSSEG__DT_UINT16: ((uint16_t *)d)[i] = (uint16_t)v; return;
    case OSSEG__DT_BOOL: ((uint8_t *)d)[i] = v != 0; return;
    default: ((uint8_t *)d)[i] = (uint8_t)v; return;
  }
}

/* Row-major strides of t, with 0 for broadcast dims when aligned to rank r. */
void osseg__bcast_strides(const struct osseg__tensor *t, int r, const int64_t *odims, size_t *st) {
  size_t s = 1;
  for (int i = r - 1; i >= 0; i--) {
    int ti = i - (r - t->rank);
    if (ti < 0) {
      st[i] = 0;
      continue;
    }
    st[i] = t->dims[ti] == 1 && odims[i] != 1 ? 0 : s;
    s *= (size_t)t->dims[ti];
  }
}

/* Linear index into a broadcast input for output linear index o. */
size_t osseg__bcast_index(size_t o, int r, const int64_t *odims, const size_t *st) {
  size_t idx = 0;
  for (int i = r - 1; i >= 0; i--) {
    size_t d = (size_t)odims[i];
    idx += (o % d) * st[i];
    o /= d;
  }
  return idx;
}

void osseg__unravel(size_t o, const int64_t *dims, int r, int64_t *idx) {
  for (int i = r - 1; i >= 0; i--) {
    idx[i] = dims[i] ? (int64_t)(o % (size_t)dims[i]) : 0;
    if (dims[i]) o /= (size_t)dims[i];
  }
}

int64_t osseg__sat_add_i64(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? (b > 0 ? INT64_MAX : INT64_MIN) : r;
}

int64_t osseg__sat_sub_i64(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_sub_overflow(a, b, &r) ? (b < 0 ? INT64_MAX : INT64_MIN) : r;
}

/* (INT64_MAX on overflow of either sign, as the folds always did) */
int64_t osseg__sat_mul_i64(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

int osseg__fold_copy(struct osseg__graph *g, struct osseg__node *n, struct osseg_diag *diag) {
  (void)diag;
  struct osseg__tensor *y = &g->tensors[n->out[0]], *x = &g->tensors[n->in[0]];
  memcpy(y->data, x->data, y->nbytes);
  return 0;
}
