/* CPU feature detection, done once.
 *
 * A feature counts only when the CPU reports it *and* the OS saves the
 * register state it needs (XCR0), as a VM or an old kernel may not. The
 * environment variable OSSEG_DISABLE_CPU_FEATURES removes features so the
 * test suite can run every code path on one machine. */
#include "osseg_kernels.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define XCR0_SSE (1u << 1)
#define XCR0_AVX (1u << 2)
#define XCR0_OPMASK (1u << 5)
#define XCR0_ZMM_HI256 (1u << 6)
#define XCR0_HI16_ZMM (1u << 7)
#define XCR0_TILECFG (1u << 17)
#define XCR0_TILEDATA (1u << 18)

static unsigned features;
static char features_string[64];
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static uint64_t read_xcr0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

static unsigned detect(void) {
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, NULL) < 7) return 0;
  __cpuid(1, a, b, c, d);
  int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
  if (!osxsave || !avx) return 0;
  uint64_t xcr0 = read_xcr0();
  if ((xcr0 & (XCR0_SSE | XCR0_AVX)) != (XCR0_SSE | XCR0_AVX)) return 0;

  unsigned f = 0;
  __cpuid_count(7, 0, a, b, c, d);
  unsigned b7 = b, c7 = c, d7 = d;
  int avx2 = (b7 >> 5) & 1, bmi1 = (b7 >> 3) & 1, bmi2 = (b7 >> 8) & 1;
  if (avx2 && fma && bmi1 && bmi2) f |= OSSEG_CPU_AVX2;

  uint64_t zmm = XCR0_OPMASK | XCR0_ZMM_HI256 | XCR0_HI16_ZMM;
  int avx512f = (b7 >> 16) & 1, avx512dq = (b7 >> 17) & 1;
  int avx512cd = (b7 >> 28) & 1, avx512bw = (b7 >> 30) & 1;
  int avx512vl = (b7 >> 31) & 1, vpopcntdq = (c7 >> 14) & 1;
  if ((f & OSSEG_CPU_AVX2) && (xcr0 & zmm) == zmm && avx512f && avx512dq &&
      avx512cd && avx512bw && avx512vl && vpopcntdq)
    f |= OSSEG_CPU_AVX512;

  __cpuid_count(7, 1, a, b, c, d);
  if ((f & OSSEG_CPU_AVX512) && ((a >> 5) & 1)) f |= OSSEG_CPU_AVX512_BF16;

  int amx_bf16 = (d7 >> 22) & 1, amx_tile = (d7 >> 24) & 1;
  if ((f & OSSEG_CPU_AVX512) && amx_bf16 && amx_tile &&
      (xcr0 & (XCR0_TILECFG | XCR0_TILEDATA)) == (XCR0_TILECFG | XCR0_TILEDATA))
    f |= OSSEG_CPU_AMX;
  return f;
}

/* Removes the features named in a comma-separated list. */
static unsigned apply_disable(unsigned f, const char *list) {
  if (!list) return f;
  const char *p = list;
  while (*p) {
    size_t n = strcspn(p, ",");
    if (n == 6 && strncmp(p, "avx512", n) == 0)
      f &= ~(unsigned)(OSSEG_CPU_AVX512 | OSSEG_CPU_AVX512_BF16 | OSSEG_CPU_AMX);
    else if (n == 4 && strncmp(p, "avx2", n) == 0)
      f = 0; /* everything else builds on AVX2 */
    else if (n == 4 && strncmp(p, "bf16", n) == 0)
      f &= ~(unsigned)OSSEG_CPU_AVX512_BF16;
    else if (n == 3 && strncmp(p, "amx", n) == 0)
      f &= ~(unsigned)OSSEG_CPU_AMX;
    p += n;
    if (*p == ',') p++;
  }
  return f;
}

static void init_features(void) {
  features = apply_disable(detect(), getenv("OSSEG_DISABLE_CPU_FEATURES"));
  char *s = features_string;
  s[0] = '\0';
  if (features & OSSEG_CPU_AVX2) strcat(s, "avx2 ");
  if (features & OSSEG_CPU_AVX512) strcat(s, "avx512 ");
  if (features & OSSEG_CPU_AVX512_BF16) strcat(s, "avx512_bf16 ");
  if (features & OSSEG_CPU_AMX) strcat(s, "amx ");
  size_t len = strlen(s);
  if (len == 0)
    strcpy(s, "generic");
  else
    s[len - 1] = '\0';
}

unsigned osseg_cpu_features(void) {
  pthread_once(&features_once, init_features);
  return features;
}

const char *osseg_cpu_features_string(void) {
  pthread_once(&features_once, init_features);
  return features_string;
}
