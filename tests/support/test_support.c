#include "test_support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void test_rng_seed(struct test_rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t test_rng_next(struct test_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t test_rng_below(struct test_rng *rng, uint64_t bound) {
  return (uint64_t)(((unsigned __int128)test_rng_next(rng) * bound) >> 64);
}

double test_rng_unit(struct test_rng *rng) {
  return (double)(test_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* Layout: [header page(s) ... data ...][guard page]. The mapping base and
 * length are stored just before the user pointer. */
struct guard_header {
  void *base;
  size_t length;
};

void *test_guarded_alloc(size_t size) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t data_pages = (size + sizeof(struct guard_header) + page - 1) / page + 1;
  size_t length = (data_pages + 1) * page;
  char *base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return NULL;
  char *guard = base + data_pages * page;
  if (mprotect(guard, page, PROT_NONE) != 0) {
    munmap(base, length);
    return NULL;
  }
  char *user = guard - size;
  struct guard_header h = {base, length};
  memcpy(user - sizeof h, &h, sizeof h);
  return user;
}

void test_guarded_free(void *p) {
  if (!p) return;
  struct guard_header h;
  memcpy(&h, (char *)p - sizeof h, sizeof h);
  munmap(h.base, h.length);
}

const char *test_source_dir(void) {
  const char *d = getenv("OSSEG_SOURCE_DIR");
  return d ? d : ".";
}

const char *test_binary_dir(void) {
  const char *d = getenv("OSSEG_BINARY_DIR");
  return d ? d : ".";
}

const char *test_path(const char *fmt, ...) {
  static char bufs[8][4096];
  static int next;
  char *b = bufs[next++ & 7];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof bufs[0], fmt, ap);
  va_end(ap);
  return b;
}

const char *test_tmpdir(void) {
  static char path[4096];
  const char *base = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/osseg-test-XXXXXX", base ? base : "/tmp");
  if (!mkdtemp(path)) return NULL;
  return path;
}

void test_mknod_null(const char *path) {
  if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) == 0) return;
  if (errno == EPERM) skip();
  fail_msg("mknod %s: %s", path, strerror(errno));
}

int test_is_null_device(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 &&
         minor(st.st_rdev) == 3;
}

int test_write_file(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, size, f);
  int rc = fclose(f);
  return (w == size && rc == 0) ? 0 : -1;
}

char *test_read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap + 1);
  for (;;) {
    if (len == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
    }
    size_t r = fread(buf + len, 1, cap - len, f);
    if (r == 0) break;
    len += r;
  }
  fclose(f);
  buf[len] = '\0';
  if (size) *size = len;
  return buf;
}

/* Appends what is readable on fd to a growing string; returns 0 at EOF. */
static int drain(int fd, char **buf, size_t *len, size_t *cap) {
  char tmp[65536];
  ssize_t r = read(fd, tmp, sizeof tmp);
  if (r <= 0) return 0;
  if (*len + (size_t)r + 1 > *cap) {
    while (*len + (size_t)r + 1 > *cap) *cap = *cap ? *cap * 2 : 65536;
    *buf = realloc(*buf, *cap);
  }
  memcpy(*buf + *len, tmp, (size_t)r);
  *len += (size_t)r;
  (*buf)[*len] = '\0';
  return 1;
}

int test_run(const char *const *argv, char **out, char **err, int timeout_s) {
  int po[2], pe[2];
  if (pipe(po) != 0) return -1;
  if (pipe(pe) != 0) {
    close(po[0]);
    close(po[1]);
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(po[1], 1);
    dup2(pe[1], 2);
    close(po[0]);
    close(pe[0]);
    close(po[1]);
    close(pe[1]);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(po[1]);
  close(pe[1]);
  char *ob = NULL, *eb = NULL;
  size_t ol = 0, oc = 0, el = 0, ec = 0;
  struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
  int open_fds = 2;
  time_t deadline = time(NULL) + timeout_s;
  int killed = 0;
  while (open_fds > 0) {
    int ms = (int)(deadline - time(NULL)) * 1000;
    if (ms <= 0) {
      kill(pid, SIGKILL);
      killed = 1;
      break;
    }
    int n = poll(fds, 2, ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int more = i == 0 ? drain(fds[i].fd, &ob, &ol, &oc) : drain(fds[i].fd, &eb, &el, &ec);
      if (!more) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      }
    }
  }
  for (int i = 0; i < 2; i++)
    if (fds[i].fd >= 0) close(fds[i].fd);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!ob) ob = calloc(1, 1);
  if (!eb) eb = calloc(1, 1);
  if (out) *out = ob; else free(ob);
  if (err) *err = eb; else free(eb);
  if (killed) return 128 + SIGKILL;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

const char *test_osseg_bin(void) {
  static char path[4096];
  if (!path[0]) snprintf(path, sizeof path, "%s/bin/osseg", test_binary_dir());
  return path;
}

static int osseg_runv(char **out, char **err, va_list ap) {
  const char *argv[32];
  int n = 0;
  argv[n++] = test_osseg_bin();
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 31) argv[n++] = a;
  argv[n] = NULL;
  return test_run(argv, out, err, 120);
}

int test_osseg_run(char **out, char **err, ...) {
  va_list ap;
  va_start(ap, err);
  int rc = osseg_runv(out, err, ap);
  va_end(ap);
  return rc;
}

void test_osseg_expect_fail(int code, const char *msg, ...) {
  char *out, *err;
  va_list ap;
  va_start(ap, msg);
  int rc = osseg_runv(&out, &err, ap);
  va_end(ap);
  if (rc != code || strcmp(err, msg) != 0)
    fail_msg("exit %d, stderr '%s', expected %d '%s'", rc, err, code, msg);
  assert_string_equal(out, "");
  free(out);
  free(err);
}
