/* OpenMP wait policy of the osseg tool.
 *
 * oneDNN runs hundreds of parallel regions per inference (SegFormer's tiled
 * attention many more), so how long an idle OpenMP thread spins at a barrier
 * before it sleeps matters both ways:
 *   - spinning forever wastes the core a busy machine needs for the working
 *     thread (libgomp's default, 300000 spins: UNet++ R18 @512 fp32 990 ms
 *     CPU on a loaded 2-vCPU VM, bench/ENGINE_RESULTS.md);
 *   - never spinning (OMP_WAIT_POLICY=passive) pays a wake-up at every
 *     barrier: on a quiet machine SegFormer-b0 @1024 took 570 ms instead of
 *     344 ms.
 * GOMP_SPINCOUNT=100000 measured within noise of the best on a quiet machine
 * (SegFormer-b0 @1024 338 ms, R18 @512 373 ms vs 344 / 371 ms active) and
 * bounds the spinning on a loaded one.
 *
 * libgomp reads these variables once, in its ELF constructor, before main(),
 * and no API changes them later; .preinit_array runs earlier but libc's own
 * start-up then replaces the environment again (tried: no effect). So the
 * tool sets the variable and re-executes itself (same pid, ~1 ms) unless the
 * user chose a policy; if exec fails it just goes on with the default. */
#include <stdlib.h>
#include <unistd.h>

#include "commands.h"

void osseg_cli_omp_policy(char **argv) {
  if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", "100000", 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("GOMP_SPINCOUNT"); /* exec failed: libgomp's default is in force */
}
