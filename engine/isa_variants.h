/* Plain C loops compiled once per ISA level, chosen at run time.
 *
 * A memory-bound loop written in portable C (with `#pragma omp simd` hints)
 * gains from wider vectors, so it is compiled three times: for AVX-512, for
 * AVX2 and for baseline x86-64. The variant is chosen by the base layer's
 * CPU detection, osseg_cpu_features(), and not by GCC's target_clones/ifunc:
 * that way osseg_cpu_features_disable() (OSSEG_DISABLE_CPU_FEATURES in the
 * executables) selects the AVX2 and generic variants too, and the test
 * suite, which runs once per level, checks all three.
 *
 * Usage: write the body as
 *   static inline __attribute__((always_inline)) void NAME_impl(PARAMS) {...}
 * then OSSEG__ISA_VARIANTS(NAME, (PARAMS), (ARGS)) defines NAME_avx512,
 * NAME_avx2, NAME_generic and NAME_select(), which returns the variant for
 * this CPU. All variants compute the same operations in the same order per
 * element (ISO C mode: no FMA contraction); only reductions vectorised with
 * `omp simd reduction` may sum in a different order. */
#ifndef OSSEG_ENGINE_ISA_VARIANTS_H
#define OSSEG_ENGINE_ISA_VARIANTS_H

#include "osseg_base.h"

#define OSSEG__ISA_VARIANTS(name, params, args)                                        \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi,bmi2")))      \
  static void name##_avx512 params { name##_impl args; }                               \
  __attribute__((target("avx2,fma,bmi,bmi2"))) static void name##_avx2 params {        \
    name##_impl args;                                                                  \
  }                                                                                    \
  static void name##_generic params { name##_impl args; }                              \
  typedef void(*name##_fn) params;                                                     \
  static name##_fn name##_select(void) {                                               \
    unsigned f = osseg_cpu_features();                                                 \
    return (f & OSSEG_CPU_AVX512) ? name##_avx512                                      \
           : (f & OSSEG_CPU_AVX2) ? name##_avx2                                        \
                                  : name##_generic;                                    \
  }

#endif
