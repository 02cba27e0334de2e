/* bf16 <-> f32 scalar conversions for the engine's own loops (internal). */
#ifndef OSSEG_ENGINE_BF16_H
#define OSSEG_ENGINE_BF16_H

#include <stdint.h>

/* Exact (bf16 is the upper half of an f32); branch-free, vectorises. */
static inline float osseg__bf16_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

/* Round to nearest even; NaN stays a quiet NaN. */
static inline uint16_t osseg__f32_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Branch-free form of the rounding for vectorised loops (the NaN case is
 * not needed for finite activations; the default quiet NaN survives the
 * truncation anyway). */
static inline uint16_t osseg__f32_bf16_v(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#endif
