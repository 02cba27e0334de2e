/* Helpers shared by the cmocka test programs. */
#ifndef OSSEG_TEST_SUPPORT_H
#define OSSEG_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/* Deterministic PRNG (splitmix64 seeded xoshiro256**). */
struct test_rng {
  uint64_t s[4];
};
void test_rng_seed(struct test_rng *rng, uint64_t seed);
uint64_t test_rng_next(struct test_rng *rng);
/* Uniform in [0, bound); bound > 0. */
uint64_t test_rng_below(struct test_rng *rng, uint64_t bound);
double test_rng_unit(struct test_rng *rng); /* [0, 1) */

/* A buffer of `size` bytes whose last byte sits right before an inaccessible
 * page, so any read past the end faults. `offset` shifts the start by that
 * many bytes from page alignment (0..4095) to test alignments at the start
 * as well; pass SIZE_MAX for "end at the guard page". Free with
 * test_guarded_free. */
void *test_guarded_alloc(size_t size);
void test_guarded_free(void *p);

/* Paths of the source and build trees (from the environment CTest sets, or
 * the current directory). Returned strings are static. */
const char *test_source_dir(void);
const char *test_binary_dir(void);
/* snprintf into a static rotating buffer: handy for building paths. */
const char *test_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Creates a fresh empty temporary directory; returns its path (static). */
const char *test_tmpdir(void);
/* Writes data to path; returns 0 or -1. */
int test_write_file(const char *path, const void *data, size_t size);
/* Reads a whole file; *size gets its length; NULL on error. free() it. */
char *test_read_file(const char *path, size_t *size);

/* Makes path a character device node with the numbers of /dev/null (1, 3),
 * mode 0666: a stand-in for /dev/null that a test can afford to lose.
 * Skips the test (cmocka's skip()) where mknod is not permitted (EPERM: not
 * root or no CAP_MKNOD) and fails it on any other error. */
void test_mknod_null(const char *path);
/* Whether path itself (symlinks not followed) is such a device node. */
int test_is_null_device(const char *path);

/* Runs argv (argv[0] a path) with stdout and stderr captured into malloc'ed
 * NUL-terminated strings (either out pointer may be NULL). Returns the exit
 * status, or 128+signal if it was killed, or -1 if it could not start.
 * Kills the child after timeout_s seconds. */
int test_run(const char *const *argv, char **out, char **err, int timeout_s);

/* Path of the built osseg tool, <build>/bin/osseg (static storage). */
const char *test_osseg_bin(void);
/* Runs the osseg tool with a NULL-terminated list of at most 30 arguments,
 * capturing output as test_run does, with a 120 s timeout. */
int test_osseg_run(char **out, char **err, ...);
/* Runs the osseg tool like test_osseg_run and fails the test unless it
 * exits with `code`, prints exactly `msg` on stderr and nothing on stdout. */
void test_osseg_expect_fail(int code, const char *msg, ...);

#endif
