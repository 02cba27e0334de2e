/* CPU feature detection (base/cpu_features.c) and its disable switch. This
 * program runs once per ISA level (cmake/osseg_test.cmake); test_cpu_env.c
 * applies OSSEG_DISABLE_CPU_FEATURES before main, so these tests prove that
 * the per-level runs of every other test really take the lower paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_base.h"

static int listed(const char *list, const char *name) {
  if (!list) return 0;
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    size_t k = strcspn(p, ",");
    if (k == n && !strncmp(p, name, n)) return 1;
    p += k;
    if (*p == ',') p++;
  }
  return 0;
}

/* The level's features are what the environment asked for. */
static void test_level_applied(void **state) {
  (void)state;
  const char *env = getenv("OSSEG_DISABLE_CPU_FEATURES");
  unsigned f = osseg_cpu_features();
  const char *s = osseg_cpu_features_string();
  print_message("OSSEG_DISABLE_CPU_FEATURES='%s': %s\n", env ? env : "", s);
  __builtin_cpu_init();
  if (listed(env, "avx2")) {
    assert_int_equal(f, 0);
    assert_string_equal(s, "generic");
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    assert_true(f & OSSEG_CPU_AVX2); /* (this machine has it: the level differs) */
  }
  if (listed(env, "avx512") || listed(env, "avx2")) {
    assert_int_equal(f & (OSSEG_CPU_AVX512 | OSSEG_CPU_AVX512_BF16 | OSSEG_CPU_AMX), 0);
    assert_null(strstr(s, "avx512"));
  } else if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512vpopcntdq")) {
    assert_true(f & OSSEG_CPU_AVX512);
    assert_non_null(strstr(s, "avx512"));
  }
  if (listed(env, "bf16")) assert_int_equal(f & OSSEG_CPU_AVX512_BF16, 0);
  if (listed(env, "amx")) assert_int_equal(f & OSSEG_CPU_AMX, 0);
  /* features build on each other */
  if (f & OSSEG_CPU_AVX512) assert_true(f & OSSEG_CPU_AVX2);
  if (f & (OSSEG_CPU_AVX512_BF16 | OSSEG_CPU_AMX)) assert_true(f & OSSEG_CPU_AVX512);
}

/* Unknown names are rejected whenever they come; after detection a valid
 * list is refused and the features in use stay. */
static void test_disable_rules(void **state) {
  (void)state;
  unsigned f = osseg_cpu_features();
  assert_int_equal(osseg_cpu_features_disable("avx3"), OSSEG_EINVAL);
  assert_int_equal(osseg_cpu_features_disable("avx2,sse9"), OSSEG_EINVAL);
  assert_int_equal(osseg_cpu_features_disable("AVX2"), OSSEG_EINVAL);
  assert_int_equal(osseg_cpu_features_disable(NULL), 0);
  assert_int_equal(osseg_cpu_features_disable(""), 0);
  assert_int_equal(osseg_cpu_features_disable(",,"), 0);
  if (f) {
    assert_int_equal(osseg_cpu_features_disable("avx2"), OSSEG_EUNSUPPORTED);
    assert_int_equal(osseg_cpu_features(), f);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_level_applied),
      cmocka_unit_test(test_disable_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
