/* osseg base layer: error codes, diagnostics, checked allocation, logging,
 * writing output files, CPU features.
 *
 * Every other layer depends on this one and on libc only through it. The
 * rules it encodes:
 *   - Functions that can fail return int: 0 on success or a negative
 *     OSSEG_E* code from OSSEG_ERRNO_MAP. No errno globals, no printing.
 *   - Human-readable detail ("gt.csv:17: run past the image end") travels in
 *     an optional struct osseg_diag the caller passes in; NULL is allowed.
 *   - Library code allocates through osseg__malloc and friends so tests can
 *     fail the Nth allocation and check that every path cleans up.
 *   - CPU feature detection lives here, so that every layer (kernels/ and
 *     engine/ alike) selects its ISA variants from one answer.
 */
#ifndef OSSEG_BASE_H
#define OSSEG_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* XX(NAME, message). Codes are negative and stable within a build. */
#define OSSEG_ERRNO_MAP(XX)                                        \
  XX(NOMEM, "out of memory")                                       \
  XX(INVAL, "invalid argument")                                    \
  XX(IO, "input/output error")                                     \
  XX(PARSE, "malformed input")                                     \
  XX(RANGE, "value out of range")                                  \
  XX(LIMIT, "configured limit exceeded")                           \
  XX(OVERFLOW, "size computation overflows")                       \
  XX(UNSUPPORTED, "unsupported feature")                           \
  XX(NOTFOUND, "not found")                                        \
  XX(SHAPE, "shape mismatch")                                      \
  XX(DUPLICATE, "duplicate entry")                                 \
  XX(BACKEND, "compute backend error")                             \
  XX(CANCELED, "operation canceled")                               \
  XX(TIMEDOUT, "deadline exceeded")                                \
  XX(INTERNAL, "internal error")

enum osseg__errno_index {
  OSSEG__ERRNO_INDEX_ZERO = 0,
#define OSSEG__XX(name, msg) OSSEG__ERRNO_INDEX_##name,
  OSSEG_ERRNO_MAP(OSSEG__XX)
#undef OSSEG__XX
  OSSEG__ERRNO_INDEX_COUNT
};

typedef enum {
  OSSEG_OK = 0,
#define OSSEG__XX(name, msg) OSSEG_E##name = -OSSEG__ERRNO_INDEX_##name,
  OSSEG_ERRNO_MAP(OSSEG__XX)
#undef OSSEG__XX
} osseg_errno_t;

/* Message for an error code ("out of memory"); never NULL. */
const char *osseg_strerror(int err);
/* Symbolic name ("OSSEG_ENOMEM"); never NULL. */
const char *osseg_err_name(int err);

/* Optional detail that goes with an error code. Functions write at most
 * sizeof message bytes, always NUL-terminated; the first error wins unless
 * the callee documents otherwise. */
struct osseg_diag {
  int code;
  char message[512];
};

void osseg_diag_clear(struct osseg_diag *diag);

/* Records err and a printf-style message in diag (if non-NULL and still
 * empty) and returns err, so that `return osseg__fail(d, OSSEG_EPARSE, ...)`
 * reads naturally. */
int osseg__fail(struct osseg_diag *diag, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int osseg__vfail(struct osseg_diag *diag, int err, const char *fmt, va_list ap);

/* Allocation. These behave like their libc namesakes; they exist so that the
 * test suite can make the Nth allocation fail (see osseg__alloc_fail_at). */
void *osseg__malloc(size_t size);
void *osseg__calloc(size_t count, size_t size);
void *osseg__realloc(void *ptr, size_t size);
void osseg__free(void *ptr);
char *osseg__strndup(const char *s, size_t n);
/* Aligned allocation (alignment a power of two >= sizeof(void*)). Free with
 * osseg__free. */
void *osseg__aligned_alloc(size_t alignment, size_t size);

/* Test hook: make the nth allocation from now (1-based) and every one after
 * it fail; 0 disables. Returns the number of allocations attempted since the
 * previous call, so a sweep knows when it has covered a whole path. Not
 * thread-safe with concurrent allocation; tests call it between runs. */
uint64_t osseg__alloc_fail_at(uint64_t nth);

/* Overflow-checked size arithmetic: return 0 and store the result, or
 * OSSEG_EOVERFLOW. */
static inline int osseg__mul_size(size_t a, size_t b, size_t *out) {
  return __builtin_mul_overflow(a, b, out) ? OSSEG_EOVERFLOW : 0;
}
static inline int osseg__add_size(size_t a, size_t b, size_t *out) {
  return __builtin_add_overflow(a, b, out) ? OSSEG_EOVERFLOW : 0;
}
static inline int osseg__mul_i64(int64_t a, int64_t b, int64_t *out) {
  return __builtin_mul_overflow(a, b, out) ? OSSEG_EOVERFLOW : 0;
}

/* Maps a whole regular, non-empty file read-only: OSSEG_EIO (open, not a
 * regular file, mmap), OSSEG_EPARSE (empty), OSSEG_ELIMIT (over max_bytes,
 * checked before mapping; 0 = no limit). Messages name the path. */
int osseg__map_file(const char *path, uint64_t max_bytes, void **map, size_t *size,
                    struct osseg_diag *diag);
void osseg__unmap_file(void *map, size_t size);

/* CPU features, detected once on first use. A feature counts only when the
 * CPU reports it and the OS saves the register state it needs (XCR0). */
enum osseg_cpu_feature {
  OSSEG_CPU_AVX2 = 1u << 0,   /* AVX2 + FMA + BMI1/2, OS saves YMM */
  OSSEG_CPU_AVX512 = 1u << 1, /* F, BW, DQ, VL, CD, VPOPCNTDQ; OS saves ZMM */
  OSSEG_CPU_AVX512_BF16 = 1u << 2,
  OSSEG_CPU_AMX = 1u << 3 /* AMX-TILE + AMX-BF16, OS saves tile state */
};
/* Features usable on this machine, minus those disabled below. Every layer
 * picks its ISA variants from this one answer. */
unsigned osseg_cpu_features(void);
/* Human-readable list of the active features, e.g. "avx2 avx512". */
const char *osseg_cpu_features_string(void);
/* Removes features from what osseg_cpu_features() will report, so that the
 * lower code paths can be run (and tested) on a machine that has more.
 * `list` is comma-separated: avx512, avx2, bf16, amx ("avx2" also removes
 * avx512, which builds on it); NULL or "" removes nothing. The library never
 * reads the environment: executables pass OSSEG_DISABLE_CPU_FEATURES here.
 * Call it before anything uses the features (first thing in main).
 * Returns 0, OSSEG_EINVAL for an unknown name (nothing is removed), or
 * OSSEG_EUNSUPPORTED when detection already ran (the features in use stay). */
int osseg_cpu_features_disable(const char *list);

/* Monotonic clock in nanoseconds, for timings reported to users. */
uint64_t osseg_now_ns(void);

/* Logging. Libraries never print: what they have to say (warnings about slow
 * kernels, profiles, progress) goes to a callback the caller supplies in its
 * options. The message is one line without a trailing newline, valid only
 * during the call; the callback runs on the thread doing the work, so it must
 * be thread-safe if the library is used from several threads. */
enum osseg_log_level {
  OSSEG_LOG_ERROR = 0,
  OSSEG_LOG_WARN = 1,
  OSSEG_LOG_INFO = 2,
  OSSEG_LOG_DEBUG = 3 /* per-step detail, e.g. profiles */
};
typedef void (*osseg_log_fn)(void *ctx, enum osseg_log_level level, const char *message);
struct osseg_log {
  osseg_log_fn fn; /* NULL: messages are dropped */
  void *ctx;
  enum osseg_log_level max_level; /* messages above this level are dropped */
};
/* "error", "warning", "info", "debug". */
const char *osseg_log_level_name(enum osseg_log_level level);
/* Formats and delivers a message if log, log->fn are set and level <=
 * log->max_level. Long messages are cut at 1023 bytes. */
void osseg__log(const struct osseg_log *log, enum osseg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether a message at level would be delivered (skip costly formatting). */
static inline int osseg__log_on(const struct osseg_log *log, enum osseg_log_level level) {
  return log && log->fn && level <= log->max_level;
}

/* Writing an output file (output_file.c). Every file the project writes
 * goes through this, so that:
 *   - a regular file, or a path where nothing exists yet, is replaced
 *     atomically: the bytes go to a temporary file with an unpredictable
 *     name in the same folder (created with O_CREAT|O_EXCL|O_NOFOLLOW, so a
 *     planted symlink is never followed), fsync'ed and renamed over the
 *     destination on commit. Readers see the old file or the complete new
 *     one. A replaced file keeps its mode (and, for root, its owner); a new
 *     one gets 0666 less the umask.
 *   - a symlink is followed and its target decides; the link stays a link
 *     and the file it points at gets the new contents (a dangling link
 *     creates its target).
 *   - a character or block device, FIFO or socket is opened O_WRONLY and
 *     written through, never replaced (`-o /dev/null` keeps /dev/null).
 *     Opening a FIFO waits for a reader, as a shell redirection does.
 *   - a folder is an OSSEG_EINVAL error "PATH: is a directory".
 * Errors name the path as given. A struct osseg_output is used by one
 * thread; it owns the descriptor and the strings until commit or abort. */
struct osseg_output {
  int fd;        /* write here (or through osseg_output_stream, not both) */
  int atomic;    /* 1: fd is the temporary file, renamed over target on commit */
  FILE *stream;  /* set by osseg_output_stream */
  char *path;    /* as given, for messages */
  char *target;  /* path with symlinks at its end followed */
  char *tmp;     /* the temporary file while there is one */
};
/* Opens path for writing as above. On failure o is left released (abort is
 * a no-op on it). */
int osseg_output_open(struct osseg_output *o, const char *path, struct osseg_diag *diag);
/* Writes all of data (retrying short writes); "PATH: write failed: ...". */
int osseg_output_write(struct osseg_output *o, const void *data, size_t size,
                       struct osseg_diag *diag);
/* A stdio stream on the output, for formatted writing; created on the first
 * call and owned by o (do not fclose it). Do not mix with osseg_output_write. */
int osseg_output_stream(struct osseg_output *o, FILE **f, struct osseg_diag *diag);
/* Flushes, fsyncs (atomic case), closes and renames onto the destination.
 * Always releases o; on failure the temporary file is removed and the
 * destination is untouched. */
int osseg_output_commit(struct osseg_output *o, struct osseg_diag *diag);
/* Gives up: closes, removes the temporary file, releases o. A no-op on a
 * zeroed o or one already released by open, commit or abort. */
void osseg_output_abort(struct osseg_output *o);
/* open + write + commit of one buffer. */
int osseg_output_write_file(const char *path, const void *data, size_t size,
                            struct osseg_diag *diag);
/* Test hook: while fn is set, the temporary name's random part for the
 * given attempt (0, 1, ... on EEXIST) is fn(ctx, attempt) instead, so a
 * test can plant files at the names that will be tried. NULL restores
 * random names. Not thread-safe; tests call it between runs. */
void osseg__output_name_hook(const char *(*fn)(void *ctx, unsigned attempt), void *ctx);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_BASE_H */
