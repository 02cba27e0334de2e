/* Checked allocation with a failure-injection hook for tests.
 *
 * Policy (see STYLE.md): on request paths an allocation failure becomes
 * OSSEG_ENOMEM and the caller cleans up; nothing here aborts. */
#include "osseg_base.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t alloc_count;
static _Atomic uint64_t alloc_fail_nth;

uint64_t osseg__alloc_fail_at(uint64_t nth) {
  uint64_t seen = atomic_exchange(&alloc_count, 0);
  atomic_store(&alloc_fail_nth, nth);
  return seen;
}

/* True when this allocation must fail to simulate exhaustion. */
static int should_fail(void) {
  uint64_t n = atomic_fetch_add(&alloc_count, 1) + 1;
  uint64_t nth = atomic_load(&alloc_fail_nth);
  return nth != 0 && n >= nth;
}

void *osseg__malloc(size_t size) {
  if (should_fail()) return NULL;
  return malloc(size ? size : 1);
}

void *osseg__calloc(size_t count, size_t size) {
  if (should_fail()) return NULL;
  if (count == 0 || size == 0) count = size = 1;
  return calloc(count, size);
}

void *osseg__realloc(void *ptr, size_t size) {
  if (should_fail()) return NULL;
  return realloc(ptr, size ? size : 1);
}

void osseg__free(void *ptr) { free(ptr); }

char *osseg__strndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *copy = osseg__malloc(len + 1);
  if (!copy) return NULL;
  memcpy(copy, s, len);
  copy[len] = '\0';
  return copy;
}

void *osseg__aligned_alloc(size_t alignment, size_t size) {
  if (should_fail()) return NULL;
  void *p = NULL;
  if (posix_memalign(&p, alignment, size ? size : 1) != 0) return NULL;
  return p;
}
