/* See cli_util.h. */
#include "cli_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cli_error(const char *cmd, const char *fmt, ...) {
  /* One fprintf so that the line is not interleaved with other output. */
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "osseg %s: %s\n", cmd, msg);
}

void cli_error_file(const char *cmd, const char *path, const char *msg) {
  size_t n = strlen(path);
  if (strncmp(msg, path, n) == 0 && msg[n] == ':')
    cli_error(cmd, "%s", msg);
  else
    cli_error(cmd, "%s: %s", path, msg);
}

const char *cli_printable(char *buf, size_t size, const char *s, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (n + 4 >= size) {
      memcpy(buf + n, "...", 3);
      n += 3;
      break;
    }
    unsigned char c = (unsigned char)s[i];
    buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  buf[n] = '\0';
  return buf;
}

int cli_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
  if (!s || *s < '0' || *s > '9') return -1; /* strtoul would accept "-1" */
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end != '\0' || v < lo || v > hi) return -1;
  *out = (uint32_t)v;
  return 0;
}

int cli_parse_nonneg_double(const char *s, double *out) {
  if (!s || *s == '\0') return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end != '\0' || !isfinite(v) || v < 0) return -1;
  *out = v;
  return 0;
}

int cli_parse_probability(const char *s, float *out) {
  double d;
  if (cli_parse_nonneg_double(s, &d) != 0 || !(d > 0 && d < 1)) return -1;
  *out = (float)d;
  return *out > 0.0f && *out < 1.0f ? 0 : -2;
}

unsigned cli_default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > 64) n = 64;
  return (unsigned)n;
}

void cli_run_jobs(void *(*fn)(void *), void *jobs, size_t job_size, size_t n) {
  pthread_t tid[64];
  int started[64] = {0};
  if (n > 64) n = 64;
  for (size_t i = 1; i < n; i++)
    started[i] = pthread_create(&tid[i], NULL, fn, (char *)jobs + i * job_size) == 0;
  if (n > 0) fn(jobs);
  for (size_t i = 1; i < n; i++) {
    if (started[i])
      pthread_join(tid[i], NULL);
    else
      fn((char *)jobs + i * job_size);
  }
}

int cli_read_file(const char *path, size_t max_bytes, char **data, size_t *size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  int e = 0;
  if (fstat(fd, &st) != 0) e = errno;
  else if (!S_ISREG(st.st_mode)) e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
  else if (max_bytes && (uint64_t)st.st_size > max_bytes) e = EFBIG;
  /* One byte more than the file: end of file is seen without growing, and
   * the NUL has its place. */
  char *p = NULL;
  size_t cap = e ? 0 : (size_t)st.st_size + 1, len = 0;
  if (!e && !(p = malloc(cap))) e = ENOMEM;
  while (!e) {
    if (len == cap) { /* the file grew since fstat */
      if (max_bytes && len > max_bytes) {
        e = EFBIG;
        break;
      }
      char *q = realloc(p, cap *= 2);
      if (!q) {
        e = ENOMEM;
        break;
      }
      p = q;
    }
    ssize_t n = read(fd, p + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) e = errno;
    if (n <= 0) break;
    len += (size_t)n;
  }
  if (!e && max_bytes && len > max_bytes) e = EFBIG;
  close(fd);
  if (e) {
    free(p);
    errno = e;
    return -1;
  }
  p[len] = '\0';
  *data = p;
  *size = len;
  return 0;
}
