/* Small helpers shared by the offline subcommands of the osseg tool:
 * messages in the one format users and tests rely on, option values, and
 * running a few jobs on threads. */
#ifndef OSSEG_CLIENTS_CLI_UTIL_H
#define OSSEG_CLIENTS_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Exit statuses of every subcommand. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

/* Prints "osseg CMD: message" and a newline on stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "osseg CMD: PATH: message" for an error about the file PATH.
 * Library functions that open a file put its path at the start of their
 * messages; then PATH is printed once, not twice. */
void cli_error_file(const char *cmd, const char *path, const char *msg);
/* A note on stderr when bf16 was asked for on a CPU without native bf16
 * (oneDNN emulates it there, slower than fp32); precision_note.c, the one
 * helper here that needs the engine. */
void cli_note_bf16(const char *cmd, int bf16);

/* Copies s[0, len) into buf (size > 4) for a one-line message: control
 * bytes become '?', and a long name is cut with "...". Returns buf. */
const char *cli_printable(char *buf, size_t size, const char *s, size_t len);

/* Decimal integer in [lo, hi] with nothing after it; 0 or -1. */
int cli_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);
/* A finite number >= 0; 0 or -1 (NaN, infinity, negative, junk). */
int cli_parse_nonneg_double(const char *s, double *out);

/* A probability threshold in (0, 1) as the pipeline uses it (a float):
 * 0, -1 when s is not a number in (0, 1), or -2 when it is but rounds to
 * 0 or 1 in single precision (1e-300, 0.99999999999); *out then gets that
 * 0 or 1. */
int cli_parse_probability(const char *s, float *out);

/* Reads a whole regular file into *data (malloc'ed, NUL-terminated; the
 * NUL is not counted in *size). Returns 0, or -1 with errno set: from
 * open/read, EISDIR for a folder, EINVAL for another file that is not a
 * regular one, EFBIG past max_bytes (0 = no limit), ENOMEM. */
int cli_read_file(const char *path, size_t max_bytes, char **data, size_t *size);

/* Worker threads to use: the online CPUs, capped at 64. */
unsigned cli_default_threads(void);

/* Runs fn(jobs + i * job_size) for i in [0, n): jobs 1.. on new threads and
 * job 0 on the calling thread; returns when all are done. A thread that
 * cannot be created runs its job on the calling thread instead. */
void cli_run_jobs(void *(*fn)(void *), void *jobs, size_t job_size, size_t n);

#endif
