/* Linked into every test program (cmake/osseg_test.cmake): applies
 * OSSEG_DISABLE_CPU_FEATURES before main, as the osseg tool does in its
 * main. CTest sets it per ISA level (NAME, NAME.noavx512, NAME.generic), and
 * the libraries no longer read the environment themselves, so without this
 * every level would run the best paths. */
#include <stdio.h>
#include <stdlib.h>

#include "osseg_base.h"

__attribute__((constructor)) static void test_cpu_env(void) {
  const char *list = getenv("OSSEG_DISABLE_CPU_FEATURES");
  if (osseg_cpu_features_disable(list)) {
    fprintf(stderr, "OSSEG_DISABLE_CPU_FEATURES='%s': not applied\n", list ? list : "");
    abort();
  }
}
