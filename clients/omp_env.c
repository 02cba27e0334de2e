/* OpenMP wait policy of the osseg tool.
 *
 * Default "passive": oneDNN runs ~100 parallel regions per inference, and
 * with libgomp's default policy each idle thread spins up to 300000
 * iterations at every barrier. On this shared 2-vCPU VM that spinning is
 * charged as CPU time and takes cycles from the thread that is working:
 * UNet++ R18 @512 fp32, 2 threads: 990 ms CPU (default) vs 740 ms (passive)
 * vs 770 ms (GOMP_SPINCOUNT=10000), wall time likewise
 * (bench/ENGINE_RESULTS.md).
 *
 * libgomp reads the policy once, in its ELF constructor, before main(), and
 * no API changes it later; .preinit_array runs earlier but libc's own start-up
 * then replaces the environment again (tried: no effect). So the tool sets
 * the variable and re-executes itself (same pid, ~1 ms) unless the user chose
 * a policy; if exec fails it just goes on with the default. */
#include <stdlib.h>
#include <unistd.h>

void osseg_cli_omp_policy(char **argv);
void osseg_cli_omp_policy(char **argv) {
  if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("OMP_WAIT_POLICY"); /* exec failed: the policy in force is libgomp's default */
}
