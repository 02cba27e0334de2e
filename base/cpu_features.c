/* CPU feature detection, done once.
 *
 * A feature counts only when the CPU reports it *and* the OS saves the
 * register state it needs (XCR0), as a VM or an old kernel may not.
 * osseg_cpu_features_disable() removes features before first use, so that
 * an executable (the test programs read OSSEG_DISABLE_CPU_FEATURES) can run
 * every code path on one machine; the library itself never reads the
 * environment. */
#include "osseg_base.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdatomic.h>
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
/* Features removed by osseg_cpu_features_disable(); `detected` is set once
 * the mask has been applied, after which it can no longer change. */
static _Atomic unsigned disabled;
static atomic_int detected;

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

/* The features a name removes (0 for an unknown name). */
static unsigned disable_mask(const char *name, size_t n) {
  if (n == 6 && strncmp(name, "avx512", n) == 0)
    return OSSEG_CPU_AVX512 | OSSEG_CPU_AVX512_BF16 | OSSEG_CPU_AMX;
  if (n == 4 && strncmp(name, "avx2", n) == 0)
    return ~0u; /* everything else builds on AVX2 */
  if (n == 4 && strncmp(name, "bf16", n) == 0) return OSSEG_CPU_AVX512_BF16;
  if (n == 3 && strncmp(name, "amx", n) == 0) return OSSEG_CPU_AMX;
  return 0;
}

int osseg_cpu_features_disable(const char *list) {
  if (!list) return 0;
  unsigned mask = 0;
  for (const char *p = list; *p;) {
    size_t n = strcspn(p, ",");
    if (n > 0) {
      unsigned m = disable_mask(p, n);
      if (!m) return OSSEG_EINVAL;
      mask |= m;
    }
    p += n;
    if (*p == ',') p++;
  }
  if (!mask) return 0;
  /* Detection already ran: the selection made then stays (kernels may have
   * cached it), so say the request came too late. */
  if (atomic_load(&detected)) return OSSEG_EUNSUPPORTED;
  atomic_fetch_or(&disabled, mask);
  return 0;
}

static void init_features(void) {
  features = detect() & ~atomic_load(&disabled);
  atomic_store(&detected, 1);
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
